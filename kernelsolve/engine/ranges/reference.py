"""The NumPy oracle of a block-sparse reduction.

Each group of output rows of a :class:`~.plan.BlockPlan` folds the tiles of
its j-ranges, in the order given, with the reduction's ``np_tile`` and
``np_merge``: the same semantics as the dense reference
(:mod:`..backends.reference`), restricted to the kept columns. Rows with no
kept column get the reduction's empty accumulator (its fields' initial
values) finalized.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import ir
from ..backends.reference import evaluate
from ..reductions import INDEX, Reduction
from .plan import BlockPlan


def empty_accumulator(red: Reduction, rows: int, D: int, K: int, E: int, acc_dtype) -> dict:
    """The accumulator of ``rows`` rows that have folded nothing."""
    acc = {}
    for f in red.fields(D, K, E):
        dtype = np.int64 if f.kind == INDEX else acc_dtype
        a = np.full((rows, f.size), f.init, dtype=dtype)
        # the K-min family keeps its NumPy accumulator as (rows, K, D)
        acc[f.name] = a.reshape(rows, K, D) if red.uses_k else a
    return acc


def _complete(acc, red: Reduction, rows: int, D: int, K: int, E: int, acc_dtype) -> dict:
    """The empty accumulator for rows that folded nothing; K-min lists of
    fewer than K columns padded with empty slots (+inf, index -1) after
    them, where the compiled kernels leave their unfilled slots."""
    empty = empty_accumulator(red, rows, D, K, E, acc_dtype)
    if acc is None:
        return empty
    if red.uses_k and acc["vals"].shape[-2] < K:
        k = acc["vals"].shape[-2]
        return {name: np.concatenate([acc[name], empty[name][:, k:]], axis=-2) for name in acc}
    return acc


def reduce(
    formula: ir.Node,
    red: Reduction,
    leaves: Sequence[np.ndarray],
    cats: Sequence[int],
    blocks: BlockPlan,
    *,
    weight: ir.Node | None = None,
    K: int = 0,
    dtype=np.float64,
    acc_dtype=None,
    cols: int = 2048,
) -> list[np.ndarray]:
    """Fold ``formula`` over the kept j of each row: one array per output,
    each ``(M, size)`` (no batch dimensions: ranges do not take them).

    ``leaves`` are ``(n, d)`` variables and ``(d,)`` parameters; ``cols``
    caps the columns of one tile (the tile of a group is ``rows x cols``).
    """
    dtype = np.dtype(dtype)
    acc_dtype = np.dtype(acc_dtype or dtype)
    D, E = formula.dim, (weight.dim if weight is not None else 0)
    outputs = [None] * len(red.outputs(D, K, E))
    parts = []
    for r0, r1, s0, s1 in blocks.groups(rows=256).tolist():
        # as the dense reference: the first tile is the accumulator (a row's
        # first kept column is selected even when its value is +inf), the
        # empty accumulator only for rows with nothing kept
        acc = None
        for ja, jb in blocks.red[s0:s1].tolist():
            for j0 in range(ja, jb, cols):
                j1 = min(jb, j0 + cols)
                tile = _tile(leaves, cats, r0, r1, j0, j1)
                vals = np.broadcast_to(evaluate(formula, tile, dtype), (r1 - r0, j1 - j0, D))
                w = None
                if weight is not None:
                    w = np.broadcast_to(evaluate(weight, tile, dtype), (r1 - r0, j1 - j0, E))
                with np.errstate(all="ignore"):
                    part = red.np_tile(vals, w, j0, acc_dtype)
                    acc = part if acc is None else red.np_merge(acc, part)
        acc = _complete(acc, red, r1 - r0, D, K, E, acc_dtype)
        with np.errstate(all="ignore"):
            parts.append((r0, red.np_finalize(acc)))
    for k, spec in enumerate(red.outputs(D, K, E)):
        out = np.empty((blocks.M, spec.size), np.int64 if spec.kind == INDEX else dtype)
        for r0, outs in parts:
            out[r0 : r0 + len(outs[k])] = outs[k]
        outputs[k] = out
    return outputs


def _tile(leaves, cats, r0: int, r1: int, j0: int, j1: int) -> list[np.ndarray]:
    tile = []
    for a, c in zip(leaves, cats):
        if c == ir.I:
            tile.append(a[r0:r1, None, :])
        elif c == ir.J:
            tile.append(a[None, j0:j1, :])
        else:
            tile.append(a[None, None, :])
    return tile
