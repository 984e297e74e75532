"""Tiled NumPy evaluation of a formula and a reduction.

The oracle for every compiled target and the fallback when no compiler is
available. Memory stays bounded: the (i, j) plane is cut into tiles small
enough that every intermediate of the formula on one tile fits in
``memory_limit`` bytes; each tile is reduced over j with the reduction's
``np_tile`` and merged into the running accumulator with ``np_merge``, in
increasing j, exactly as a compiled kernel folds.

Array layout of the arguments (after :mod:`..dispatch` normalised them):
an i- or j-variable is ``batch + (n, d)``, a parameter is ``batch + (d,)``,
``batch`` having the full number of batch dimensions (size-1 dims broadcast).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import ir
from ..reductions import ACCUMULATOR, INDEX, Reduction

DEFAULT_MEMORY_LIMIT = 64 * 2**20


def evaluate(root: ir.Node, leaves: Sequence[np.ndarray], dtype) -> np.ndarray:
    """Evaluate ``root`` with NumPy broadcasting (the ops' ``numpy`` rules, :mod:`..ops`).

    ``leaves[k]`` is the array bound to variable k, already shaped so that it
    broadcasts against the others (e.g. ``(..., ti, 1, d)`` for an i-variable
    on a tile). Each node of the DAG is computed once.
    """
    values: dict[int, np.ndarray] = {}
    with np.errstate(all="ignore"):
        for node in ir.topological_order(root):
            if node.op == "var":
                out = leaves[node.attrs[0]]
            elif node.op == "const":
                value, dim = node.attrs
                out = np.full((dim,), value, dtype=dtype)
            else:
                args = [values[id(a)] for a in node.args]
                out = np.asarray(ir.OPS[node.op].numpy(*args, *node.attrs))
                if out.dtype != dtype:
                    out = out.astype(dtype)
            values[id(node)] = out
    return values[id(root)]


# ----------------------------------------------------------------------------
# Tiled map-reduce
# ----------------------------------------------------------------------------


def _tile_sizes(M, N, bytes_per_pair, min_cols, memory_limit):
    """Rows and columns of a tile whose temporaries fit ``memory_limit``."""
    pairs = max(1, memory_limit // max(1, bytes_per_pair))
    cols = min(N, max(min_cols, min(pairs, 8192)))
    rows = min(M, max(1, pairs // cols))
    return rows, cols


def neutral(red: Reduction, lead: tuple, D: int, K: int, E: int, acc_dtype) -> dict:
    """The accumulator of rows ``lead`` that folded nothing: each field's
    initial value, in the form ``np_merge`` takes (K-min: ``lead + (K, D)``)."""
    acc = {}
    for f in red.fields(D, K, E):
        a = np.full(lead + (f.size,), f.init, dtype=np.int64 if f.kind == INDEX else acc_dtype)
        acc[f.name] = a.reshape(lead + (K, D)) if red.uses_k else a
    return acc


def reduce(
    formula: ir.Node,
    reduction: Reduction,
    leaves: Sequence[np.ndarray],
    cats: Sequence[int],
    batch: tuple[int, ...],
    M: int,
    N: int,
    *,
    weight: ir.Node | None = None,
    K: int = 0,
    dtype=np.float64,
    acc_dtype=None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> list[np.ndarray]:
    """Fold ``formula`` over j for every i: one array per reduction output,
    each of shape ``batch + (M, size)``.

    ``leaves[k]`` is bound to variable k, of category ``cats[k]``; ``weight``
    is the second formula of weighted reductions. Accumulation happens in
    ``acc_dtype`` (default: ``dtype``); index outputs are int64, ACCUMULATOR
    outputs (partial results) ``acc_dtype``. No row or no column (a
    restricted plan, :mod:`..partial`): the empty accumulator, finalized.
    """
    dtype = np.dtype(dtype)
    acc_dtype = np.dtype(acc_dtype or dtype)
    D = formula.dim
    E = weight.dim if weight is not None else 0
    specs = reduction.outputs(D, K, E)
    if M == 0 or N == 0:
        return _cast(_no_pairs(reduction, batch, M, D, K, E, acc_dtype), specs, dtype, acc_dtype)

    roots = [formula] + ([weight] if weight is not None else [])
    nodes = {id(n): n for r in roots for n in ir.topological_order(r)}
    floats_per_pair = sum(n.dim for n in nodes.values()) + 4 * (D + E) + 2 * K * D
    nbatch = int(np.prod(batch, dtype=np.int64)) if batch else 1
    bytes_per_pair = nbatch * floats_per_pair * max(dtype.itemsize, acc_dtype.itemsize)
    rows, cols = _tile_sizes(M, N, bytes_per_pair, max(K, 1), memory_limit)

    nb = len(batch)
    outputs = []
    for i0 in range(0, M, rows):
        i1 = min(M, i0 + rows)
        acc = None
        for j0 in range(0, N, cols):
            j1 = min(N, j0 + cols)
            tile_leaves = []
            for arr, cat in zip(leaves, cats):
                if cat == ir.I:
                    tile_leaves.append(arr[..., i0:i1, None, :])
                elif cat == ir.J:
                    tile_leaves.append(arr[..., None, j0:j1, :])
                else:
                    tile_leaves.append(arr[..., None, None, :])
            shape = batch + (i1 - i0, j1 - j0)
            vals = evaluate(formula, tile_leaves, dtype)
            vals = np.broadcast_to(vals, shape + (D,))
            w = None
            if weight is not None:
                w = np.broadcast_to(evaluate(weight, tile_leaves, dtype), shape + (E,))
            with np.errstate(all="ignore"):
                part = reduction.np_tile(vals, w, j0, acc_dtype)
                acc = part if acc is None else reduction.np_merge(acc, part)
        outputs.append(reduction.np_finalize(acc))

    outs = [np.concatenate([o[k] for o in outputs], axis=nb) for k in range(len(outputs[0]))]
    return _cast(outs, specs, dtype, acc_dtype)


def _no_pairs(red: Reduction, batch: tuple, M: int, D: int, K: int, E: int, acc_dtype) -> list:
    """The outputs of no row (empty arrays) or of rows with no column (the
    empty accumulator, finalized): a plan restricted by :mod:`..partial`."""
    if M == 0:
        return [np.empty(batch + (0, o.size)) for o in red.outputs(D, K, E)]
    with np.errstate(all="ignore"):  # log(0) of an empty log-sum-exp
        return red.np_finalize(neutral(red, batch + (M,), D, K, E, acc_dtype))


def _cast(outs: list, specs: list, dtype, acc_dtype) -> list:
    """Index outputs as int64, partial results (ACCUMULATOR) in ``acc_dtype``,
    values in ``dtype``."""
    kinds = {INDEX: np.int64, ACCUMULATOR: acc_dtype}
    return [o.astype(kinds.get(s.kind, dtype), copy=False) for o, s in zip(outs, specs)]
