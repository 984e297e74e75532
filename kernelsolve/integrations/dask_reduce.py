"""Reductions of LazyTensors over dask arrays: lazy dask arrays out.

A LazyTensor bound to dask arrays (``Vi(da_x)``, ``LazyTensor(da_y[None])``,
NumPy parameters or j-points mixed in) hands every reduction here
(:func:`reduce`) instead of to the engine. The result is a graph, nothing
runs until it is computed:

* one task per pair of an output chunk ``a`` (the chunks of the
  i-variables of a reduction over j) and a reduced chunk ``b``: the
  accumulator state of the reduction on those points
  (:func:`kernelsolve.engine.partial.execute_partial`, the same kernel as
  in one process, on the chunks as they are: NumPy chunks on the CPU target,
  CuPy chunks on the CUDA one), its indices counted from column 0;
* per output chunk, a tree of merges over ``b`` in j order, at most
  :data:`SPLIT_EVERY` states per task (:func:`~kernelsolve.engine.partial.merge`:
  ties to the earlier column, NaN and the K-min order as in one pass);
* one finalize per output chunk (:func:`~kernelsolve.engine.partial.finalize`):
  the output block in the chunks' library and pykeops' shapes.

The plan is made once in the caller's process from arrays of the full shape
that hold no memory (its checks: dimensions, ``K`` against the reduced
count, dtype and target raise there, before any task runs) and again, by
the same signature, on each worker, which memoises it.

Example
-------
>>> import dask.array as da
>>> from kernelsolve import Vi, Vj
>>> x = da.random.default_rng(0).random((1000, 3), chunks=250)
>>> K = (-Vi(x).sqdist(Vj(x))).exp()
>>> s = K.sum(1)                 # a dask array: nothing computed yet
>>> s.shape, s.chunks[0]
((1000, 1), (250, 250, 250, 250))
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from ..engine import arrays, dispatch, ir, partial
from ..engine.request import ReductionRequest
from .dask_chunks import aligned, dask_array, kind_of_leaves

__all__ = ["SPLIT_EVERY", "reduce"]

#: states merged by one task of the tree over j
SPLIT_EVERY = 8


@dataclass(frozen=True)
class _Shape:
    """An array leaf of the request the workers plan from: its full shape."""

    shape: tuple
    dtype: str


@dataclass(frozen=True)
class _Recipe:
    """What a task needs to rebuild the plan: the request over j, its array
    leaves replaced by :class:`_Shape` (numbers kept), and the chunks' library.
    Not a tuple, so that dask passes it to the tasks unread."""

    request: ReductionRequest
    lib: str

    def standins(self) -> tuple:
        """Arrays of the leaves' shapes holding one element each (broadcast)."""
        xp = np if self.lib == arrays.NUMPY else _cupy()
        return tuple(
            xp.broadcast_to(xp.zeros((), s.dtype), s.shape) if isinstance(s, _Shape) else s
            for s in self.request.arguments
        )

    def plan(self) -> dispatch.Plan:
        return dispatch.plan(self.request._replace(arguments=self.standins()))

    def rows(self, lo: int, hi: int) -> dispatch.Plan:
        """The plan of output rows ``[lo, hi)``."""
        return partial.restrict(self.plan(), self.standins(), rows=(lo, hi))[0]

    def leaves(self, chunks) -> tuple:
        """The leaves of a task: its chunks in order, the numbers in place."""
        it = iter(chunks)
        return tuple(next(it) if isinstance(s, _Shape) else s for s in self.request.arguments)


def _cupy():
    import cupy

    return cupy


def reduce(request: ReductionRequest):
    """The reduction of ``request`` (whose arguments include dask arrays) as
    lazy dask arrays: one, or a tuple as the reduction returns (``min_argmin``),
    chunked along the output rows as the variables of that axis are.

    Raises ``ValueError`` for ``ranges=`` and ``tol=`` (not supported over
    dask arrays) and for what the engine refuses on the same shapes.
    """
    if request.ranges is not None:
        raise ValueError(
            "ranges= with dask arrays: block-sparse reductions are not supported over dask "
            "arrays; the chunks already split the work (reduce NumPy arrays for ranges=)"
        )
    if request.options.tol is not None:
        raise ValueError(
            "tol= with dask arrays: approximate sums are not supported over dask arrays; "
            "drop tol= (the chunks' sums are exact)"
        )
    request = request._replace(cats=tuple(request.cats), arguments=tuple(request.arguments))
    kind = kind_of_leaves(request.arguments)
    over = request.over_j()
    leaves, cuts = aligned(over.arguments, over.cats)
    specs = tuple(
        _Shape(tuple(int(n) for n in x.shape), kind.dtype) if arrays.is_array(x) else x
        for x in leaves
    )
    lib = arrays.NUMPY if kind.device == "cpu" else arrays.CUPY
    recipe = _Recipe(over._replace(arguments=specs), lib)
    plan = recipe.plan()  # the engine's checks, here, before any task
    rows = cuts.get(ir.I, (plan.M,))
    cols = cuts.get(ir.J, (plan.N,))
    return _arrays(recipe, leaves, rows, cols, len(plan.batch), _metas(recipe, plan.batch))


def _metas(recipe: _Recipe, batch: tuple):
    """Each output with no row (dask's ``meta``), from the finalized state of
    one row over no column (no kernel runs)."""
    p, standins = partial.restrict(recipe.plan(), recipe.standins(), rows=(0, 1))
    one = partial.finalize(p, partial.execute_partial(p, standins, cols=(0, 0)))
    first = (slice(None),) * len(batch) + (slice(0, 0),)
    return tuple(o[first] for o in one) if isinstance(one, tuple) else one[first]


def _arrays(recipe: _Recipe, leaves, rows, cols, row_axis: int, metas):
    """The dask arrays of the outputs, from the graph of the module docstring."""
    da = dask_array()
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    lazy = [x for x in leaves if arrays.is_dask(x)]
    r = recipe.request
    token = tokenize(
        r.formula.key,
        None if r.weight is None else r.weight.key,
        r.reduction,
        r.K,
        tuple(r.options),
        r.cats,
        repr(r.arguments),
        [x.name for x in lazy],
    )
    prefix = f"kernelsolve-{r.reduction}"
    graph, finals = _tasks(recipe, leaves, rows, cols, f"{prefix}-{token}")
    outs = metas if isinstance(metas, tuple) else (metas,)
    results = []
    for o, meta in enumerate(outs):
        name = f"{prefix}-out{o}-{token}"
        layer = dict(graph)
        block = (0,) * row_axis
        tail = (0,) * (meta.ndim - row_axis - 1)
        for a, key in enumerate(finals):
            task = key if len(outs) == 1 else (operator.getitem, key, o)  # a key: an alias
            layer[(name,) + block + (a,) + tail] = task
        chunks = tuple((int(n),) for n in meta.shape)
        chunks = chunks[:row_axis] + (tuple(rows),) + chunks[row_axis + 1 :]
        hlg = HighLevelGraph.from_collections(name, layer, dependencies=lazy)
        results.append(da.Array(hlg, name, chunks, meta=meta))
    return results[0] if len(results) == 1 else tuple(results)


def _tasks(recipe: _Recipe, leaves, rows, cols, name: str):
    """The partial, merge and finalize tasks; returns the graph and the key
    of each output chunk's finalized result."""
    graph = {}
    cats = recipe.request.cats
    starts_i, starts_j = np.cumsum((0,) + tuple(rows)), np.cumsum((0,) + tuple(cols))
    finals = []
    for a in range(len(rows)):
        lo, hi = int(starts_i[a]), int(starts_i[a + 1])
        level = []
        for b in range(len(cols)):
            chunk_keys = [
                _chunk_key(x, c, a, b) for x, c in zip(leaves, cats) if arrays.is_dask(x)
            ]
            key = (f"{name}-partial", a, b)
            clo, chi = int(starts_j[b]), int(starts_j[b + 1])
            graph[key] = (_partial, recipe, lo, hi, clo, chi) + tuple(chunk_keys)
            level.append(key)
        depth = 0
        while len(level) > 1:
            depth += 1
            merged = []
            for g in range(0, len(level), SPLIT_EVERY):
                key = (f"{name}-merge{depth}", a, g // SPLIT_EVERY)
                graph[key] = (_merge, recipe, lo, hi, level[g : g + SPLIT_EVERY])
                merged.append(key)
            level = merged
        key = (f"{name}-finalize", a)
        graph[key] = (_finalize, recipe, lo, hi, level[0])
        finals.append(key)
    return graph, finals


def _chunk_key(x, cat: int, a: int, b: int) -> tuple:
    """The key of the chunk of leaf ``x`` in the task of chunks ``(a, b)``."""
    index = [0] * x.ndim
    if cat != ir.P:
        index[-2] = a if cat == ir.I else b
    return (x.name, *index)


# ----------------------------------------------------------------------------
# The tasks (run on the workers)
# ----------------------------------------------------------------------------


def _partial(recipe: _Recipe, lo: int, hi: int, clo: int, chi: int, *chunks) -> dict:
    """The state of output rows ``[lo, hi)`` over columns ``[clo, chi)``."""
    sub, _ = partial.restrict(recipe.plan(), recipe.standins(), rows=(lo, hi), cols=(clo, chi))
    state = partial.execute_partial(sub, recipe.leaves(chunks))
    if clo:  # indices counted from the whole reduction's column 0
        for field in state.values():
            if field.dtype == np.int64:
                field[field >= 0] += clo
    return state


def _merge(recipe: _Recipe, lo: int, hi: int, states: list) -> dict:
    return partial.merge(recipe.rows(lo, hi), states)


def _finalize(recipe: _Recipe, lo: int, hi: int, state: dict):
    return partial.finalize(recipe.rows(lo, hi), state)
