"""The leaves of a reduction over dask arrays, chunked alike.

A reduction over dask arrays (:mod:`.dask_reduce`) runs one engine call per
pair of an output chunk and a reduced chunk, so every variable of one
category must be cut at the same points, and nothing else may be cut:
:func:`aligned` rechunks the dask leaves that way (lazily) and wraps the
NumPy or CuPy arrays that a formula mixes in (a parameter, the j-points of
a prediction) as dask arrays of the same chunks, one chunk each where no
dask array of their category says otherwise. dask itself is imported only
here and in the modules that use this one, so that kernelsolve imports
without it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from ..engine import arrays, ir
from ..engine.arrays import ArrayKind

__all__ = ["aligned", "dask_array", "kind_of_leaves"]


def dask_array():
    """``dask.array``, or an ImportError saying how to install it."""
    try:
        return importlib.import_module("dask.array")
    except ImportError as error:  # pragma: no cover - dask is installed with the extra
        raise ImportError(
            "dask arrays need dask: pip install 'kernelsolve[dask]' (dask[array], distributed)"
        ) from error


def kind_of_leaves(leaves: Sequence) -> ArrayKind:
    """The dask kind of a formula's leaves (dask arrays, and NumPy or CuPy
    arrays of their chunks' library); a TypeError naming the leaves that
    cannot join (torch tensors, other chunk types, other dtypes)."""
    kind, first = None, -1
    for k, x in enumerate(leaves):
        if not arrays.is_array(x):
            continue
        mine = arrays.kind_of(x)
        if kind is None:
            kind, first = mine, k
        elif mine != kind:
            joined = arrays.with_dask(kind, mine)
            if joined is None:
                pair = arrays.as_chunks(kind, mine)
                arrays.check_same_kind(*pair, f"argument {first}", f"argument {k}")
            kind = joined
    if kind is None or kind.lib != arrays.DASK:
        raise TypeError("expected at least one dask array among the arguments")
    return kind


def aligned(leaves: Sequence, cats: Sequence[int]) -> tuple[tuple, dict]:
    """The leaves as dask arrays chunked for a reduction, and the chunks of
    each category (``{ir.I: (...), ir.J: (...)}``: the cut of the point axis).

    Variables of one category are cut where the first dask one of them is
    (one chunk where none is a dask array); every other axis, and parameters,
    in one chunk. Numbers (tuples of floats bound to parameters) stay as
    they are.
    """
    da = dask_array()
    cuts = {}
    for cat in (ir.I, ir.J):
        sized = [x for x, c in zip(leaves, cats) if c == cat and arrays.is_array(x)]
        counts = {int(x.shape[-2]) for x in sized}
        if len(counts) > 1:
            name = "i" if cat == ir.I else "j"
            raise ValueError(
                f"{name}-variables with different numbers of points: {sorted(counts)}"
            )
        first = next((x for x in sized if arrays.is_dask(x)), None)
        if first is not None:
            cuts[cat] = tuple(int(c) for c in first.chunks[-2])
        elif counts:
            cuts[cat] = (counts.pop(),)
    out = []
    for x, cat in zip(leaves, cats):
        if not arrays.is_array(x):
            out.append(x)
            continue
        chunks = tuple((int(n),) for n in x.shape)
        if cat != ir.P:
            chunks = chunks[:-2] + (cuts[cat],) + chunks[-1:]
        if not arrays.is_dask(x):
            x = da.from_array(x, chunks=chunks, asarray=False)
        elif x.chunks != chunks:
            x = x.rechunk(chunks)
        out.append(x)
    return tuple(out), cuts
