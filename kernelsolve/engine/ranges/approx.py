"""Sums over j with a guaranteed relative error: skip the block pairs whose
bounded contribution fits in a budget (the engine core of ``tol=``).

Guarantee. For every output row i and coordinate d,
``|approx_i[d] - exact_i[d]| <= tol * sum_j |F_ij[d]|`` (exact arithmetic;
the computed sums add their own float rounding, as the dense sum does).

Method. The i- and j-points are clustered by :func:`.prune.grid_boxes`; the
interval of F over every (i-cluster a, j-cluster b) pair gives
``hi_abs = max(|lo|, |hi|) >= |F|`` (``inf`` where the bound is NaN) and
``lo_abs = min(|lo|, |hi|)`` (0 where the interval holds 0) ``<= |F|``. For
cluster a and coordinate d, ``L[a, d] = sum_b lo_abs * n_b`` is at most
``sum_j |F_ij[d]|`` for every row i of a, and ``U[a, b, d] = hi_abs * n_b``
at least the part of that row's sum in cluster b. A pair's score is
``s[a, b] = max_d U[a, b, d] / L[a, d]`` (0 where U is 0, ``inf`` where L is
0 or not finite); the pairs of a are skipped in ascending score while the
scores skipped add up to at most ``tol``. The skipped part of row i,
coordinate d, is then at most ``sum U[a, b, d] <= L[a, d] sum s <= tol
L[a, d] <= tol sum_j |F_ij[d]|``. A pair where F may be NaN or infinite has
an infinite score and is never skipped.

A better L. ``lo_abs`` is 0 wherever the interval holds 0 (a weight ``b_j``
of both signs in a cluster), so L is raised to a computed lower bound: one
block-sparse sum of ``concat(F, |F|)`` over the *core* pairs (kept even with
``L = sum_b U``, the largest L could be, hence kept whatever L is) gives per
row a partial sum of |F|, at most ``sum_j |F_ij|``; its minimum over the rows
of a cluster, lowered by the float rounding of that sum, is a valid L. A
second block-sparse sum of F covers the kept pairs outside the core; both
run on the permuted points. Where F's coarse bound is 0 (e.g. a Gaussian
that underflows), the fine pairs get no bound of their own: F is 0 there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from numbers import Real

import numpy as np

from .. import arrays, dispatch, ir
from ..cache import register_memo
from ..request import DEFAULT_OPTIONS, ReductionOptions, ReductionRequest
from .approx_bounds import PairBounds
from .knn import formula_bound
from .prune import Boxes, Grid, grid_boxes, host_leaves, side_points, sparse_ranges

__all__ = [
    "approx_sum",
    "cached_grid",
    "clusters",
    "default_interval",
    "deflated_min",
    "sparse_reduce",
]


def approx_sum(
    formula: ir.Node,
    leaves: tuple,
    cats: tuple,
    tol: float | None,
    *,
    interval: Callable | None = None,
    cluster_size: int = 64,
    options: ReductionOptions | None = None,
):
    """``sum`` over j of ``formula`` within ``tol`` of the exact sum, per row
    and coordinate: ``|approx_i - exact_i| <= tol * sum_j |F_ij|`` (the
    module docstring proves it); float rounding of the sums comes on top.

    Parameters
    ----------
    formula, leaves, cats:
        As in :class:`~kernelsolve.engine.request.ReductionRequest`; i- and
        j-variables are host arrays (NumPy or torch CPU) shaped (n, d).
    tol:
        Relative budget, ``>= 0``; 0 or None runs the dense reduction.
    interval:
        ``interval(boxes_i, boxes_j) -> (lo, hi)`` shaped ``(n_ci, n_cj)`` or
        ``(n_ci, n_cj, formula.dim)``: ``lo <= F <= hi`` over each pair of
        :class:`~.prune.Boxes`, NaN where F may be NaN. None: the ops'
        interval rules (:func:`.knn.formula_bound` per coordinate).
    cluster_size:
        Points per grid cell on uniform data (:func:`.prune.grid_boxes`).
    options:
        Target and accumulation of the reduction.

    Returns
    -------
    (out, info)
        ``out``: (M, formula.dim), in the leaves' library; ``info``: a dict
        with ``skipped_blocks`` and ``skipped_pairs`` (fractions of the block
        pairs and of the point pairs not evaluated) and ``blocks``
        (i-clusters, j-clusters).

    Example
    -------
    >>> x = np.linspace(0, 1, 400)[:, None]
    >>> F = ir.make("exp", ir.make("neg", ir.make("mul", ir.const(1e3),
    ...             ir.make("sqdist", ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)))))
    >>> out, info = approx_sum(F, (x, x), (ir.I, ir.J), 1e-6, cluster_size=8)
    >>> out.shape, info["skipped_blocks"] > 0.5
    ((400, 1), True)
    """
    opts = DEFAULT_OPTIONS if options is None else options
    leaves, cats = tuple(leaves), tuple(cats)
    request = ReductionRequest(formula, "sum", leaves, cats, 1, None, None, opts)
    if tol is not None and not (isinstance(tol, Real) and tol >= 0):
        raise ValueError(f"approx_sum: tol must be None or a number >= 0, got {tol!r}")
    used = {cats[v.attrs[0]] for v in ir.variables(formula)}
    if not tol or not {ir.I, ir.J} <= used:  # exact, or nothing to cluster
        return dispatch.reduce(request), {"skipped_blocks": 0.0, "skipped_pairs": 0.0}
    gi, bi, gj, bj = clusters(formula, leaves, cats, cluster_size, "approx_sum")
    if interval is None:
        interval = default_interval(formula, leaves, cats)
    bounds = PairBounds(bi, bj, gi, gj, interval, formula.dim, float(tol))
    host = host_leaves(leaves, cats, gi.perm, gj.perm)
    # 1. the pairs kept even if sum_j |F_ij| were its upper bound: F and |F| there
    core_r, core_c, L0 = bounds.core()
    both = ir.make("concat", formula, ir.make("abs", formula))
    res = sparse_reduce(request._replace(formula=both), host, gi, gj, core_r, core_c)
    D = formula.dim
    total, partial = res[:, :D], res[:, D:]
    # 2. the budget from the better lower bound of sum_j |F_ij|: the rest kept
    L = np.maximum(L0, deflated_min(partial, gi.ranges, len(gj.perm)))
    rows, cols, rest = bounds.kept_with_core(L)
    if rest.any():
        total = total + sparse_reduce(request, host, gi, gj, rows[rest], cols[rest])
    return unpermuted(total, gi.perm, leaves, cats), pair_info(gi.ranges, gj.ranges, rows, cols)


def unpermuted(total: np.ndarray, perm: np.ndarray, leaves, cats):
    """The rows of ``total`` (cluster order) back in the points' order, in
    the leaves' library."""
    out = np.empty_like(total)
    out[perm] = total
    ref = next(x for x, c in zip(leaves, cats) if c != ir.P)
    if arrays.is_torch(ref):
        out = arrays.from_numpy(out, arrays.TORCH, arrays.device(ref))
    return out


def sparse_reduce(request: ReductionRequest, host, gi, gj, rows, cols) -> np.ndarray:
    """``request`` over the block pairs ``(rows, cols)`` of the permuted
    points ``host``, on the host, in cluster order."""
    ranges = sparse_ranges(gi.ranges, gj.ranges, rows, cols)
    sparse = request._replace(arguments=host, ranges=ranges)
    return np.asarray(arrays.to_host(dispatch.reduce(sparse)))


def deflated_min(partial: np.ndarray, ranges_i, n: int) -> np.ndarray:
    """Per i-cluster and coordinate: the smallest computed partial sum of
    |F| of its rows, lowered by the rounding of a sum of ``n`` terms (each
    within a few ulps), so it stays below the exact one (NaN: 0)."""
    if not len(ranges_i):
        return np.zeros((0, partial.shape[1]))
    u = float(np.finfo(partial.dtype).eps)
    low = np.minimum.reduceat(partial.astype(np.float64), ranges_i[:, 0], axis=0)
    low = low * max(0.0, 1.0 - (n + 16) * u)
    return np.where(np.isnan(low), 0.0, np.maximum(low, 0.0))


def pair_info(ranges_i, ranges_j, rows, cols) -> dict:
    wi, wj = (r[:, 1] - r[:, 0] for r in (ranges_i, ranges_j))
    total_blocks, total_pairs = len(wi) * len(wj), float(wi.sum()) * float(wj.sum())
    kept = float((wi[rows] * wj[cols]).sum())
    return {
        "skipped_blocks": 1.0 - len(rows) / total_blocks if total_blocks else 0.0,
        "skipped_pairs": 1.0 - kept / total_pairs if total_pairs else 0.0,
        "blocks": (len(wi), len(wj)),
    }


def _paired_leaves(formula: ir.Node, cats) -> set:
    """The variables the grid cuts: those that meet a variable of the other
    side in one op (``sqdist(x, y)``, ``x - y``, ...), the points of a kernel;
    a weight such as ``b_j`` in ``k(x_i, y_j) * b_j`` would only split the
    clusters. All i- and j-variables where no op pairs them."""
    paired = set()
    for node in ir.topological_order(formula):
        direct = [a.attrs[0] for a in node.args if a.op == "var"]
        if {cats[k] for k in direct} >= {ir.I, ir.J}:
            paired.update(k for k in direct if cats[k] != ir.P)
    return paired or {k for k, c in enumerate(cats) if c != ir.P}


def clusters(formula: ir.Node, leaves, cats, cluster_size: int, caller: str):
    """``(gi, bi, gj, bj)``: the grids of the i- and j-points and the boxes of
    their clusters (``caller`` names the function in errors)."""
    grid_on = _paired_leaves(formula, cats)
    gi, bi = _side_clusters(leaves, cats, ir.I, grid_on, cluster_size, caller)
    gj, bj = _side_clusters(leaves, cats, ir.J, grid_on, cluster_size, caller)
    return gi, bi, gj, bj


def _side_clusters(leaves, cats, cat: int, grid_on: set, cluster_size: int, caller: str):
    """The grid of side ``cat`` (cut along the ``grid_on`` variables) and the
    boxes of its clusters over all that side's variables."""
    x, slices = side_points(leaves, cats, cat, caller)
    cols = [np.arange(x.shape[1])[s] for k, s in slices.items() if k in grid_on]
    g = cached_grid(x[:, np.concatenate(cols)] if cols else x, cluster_size)
    if not cols or len(np.concatenate(cols)) == x.shape[1] or not len(x):
        return g, Boxes(g.lo, g.hi, slices)
    xs, starts = x[g.perm], g.ranges[:, 0]
    lo, hi = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    return g, Boxes(lo, hi, slices)


def default_interval(formula: ir.Node, leaves, cats) -> Callable:
    """The ops' interval rules, one :func:`.knn.formula_bound` per coordinate."""
    parts = [formula] if formula.dim == 1 else [
        ir.make("elem", formula, attrs=(d,)) for d in range(formula.dim)
    ]  # fmt: skip
    bounds = [formula_bound(f, leaves, cats) for f in parts]

    def interval(bi, bj):
        pairs = [b(bi, bj) for b in bounds]
        return np.stack([p[0] for p in pairs], -1), np.stack([p[1] for p in pairs], -1)

    return interval


_grids: dict = register_memo({}, "ranges.approx.grids")
_GRIDS_KEPT = 8


def cached_grid(points: np.ndarray, cluster_size: int) -> Grid:
    """:func:`.prune.grid_boxes` of ``points``, cached by their content (a
    digest of the bytes: a second product with the same points, or the
    other side of ``K(x, x)``, reuses the grid; points changed in place get
    a new one). The last few grids are kept."""
    x = np.ascontiguousarray(points, dtype=np.float64)
    digest = hashlib.blake2b(memoryview(x).cast("B"), digest_size=16).digest()
    key = (x.shape, cluster_size, digest)
    grid = _grids.get(key)
    if grid is None:
        grid = grid_boxes(x, cluster_size)
        if len(_grids) >= _GRIDS_KEPT:
            _grids.pop(next(iter(_grids)))
        _grids[key] = grid
    return grid
