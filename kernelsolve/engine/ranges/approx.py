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

from collections.abc import Callable
from numbers import Real

import numpy as np

from .. import arrays, dispatch, ir
from ..request import DEFAULT_OPTIONS, ReductionOptions, ReductionRequest
from .knn import formula_bound
from .prune import (
    CHUNK_PAIRS,
    Boxes,
    _coarse,
    _expand,
    _points,
    grid_boxes,
    host_leaves,
    sparse_ranges,
)  # fmt: skip

__all__ = ["approx_sum"]


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
    grid_on = _paired_leaves(formula, cats)
    try:
        gi, bi = _clusters(leaves, cats, ir.I, grid_on, cluster_size)
        gj, bj = _clusters(leaves, cats, ir.J, grid_on, cluster_size)
    except ValueError as e:  # prune's words name its own caller
        raise ValueError(str(e).replace("pruned_kmin", "approx_sum")) from None
    if interval is None:
        interval = _default_interval(formula, leaves, cats)
    bounds = _Bounds(bi, bj, gi, gj, interval, formula.dim, float(tol))
    host = host_leaves(leaves, cats, gi.perm, gj.perm)
    # 1. the pairs kept even if sum_j |F_ij| were its upper bound: F and |F| there
    core_r, core_c, L0 = bounds.core()
    both = ir.make("concat", formula, ir.make("abs", formula))
    res = _sparse_sum(request._replace(formula=both), host, gi, gj, core_r, core_c)
    D = formula.dim
    total, partial = res[:, :D], res[:, D:]
    # 2. the budget from the better lower bound of sum_j |F_ij|: the rest kept
    L = np.maximum(L0, _deflated_min(partial, gi.ranges, len(gj.perm)))
    rows, cols, rest = bounds.kept(L)
    if rest.any():
        total = total + _sparse_sum(request, host, gi, gj, rows[rest], cols[rest])
    out = np.empty_like(total)
    out[gi.perm] = total
    ref = next(x for x, c in zip(leaves, cats) if c != ir.P)
    if arrays.is_torch(ref):
        out = arrays.from_numpy(out, arrays.TORCH, arrays.device(ref))
    return out, _info(gi.ranges, gj.ranges, rows, cols)


def _sparse_sum(request: ReductionRequest, host, gi, gj, rows, cols) -> np.ndarray:
    """The block-sparse sum of ``request`` over the pairs, permuted order."""
    ranges = sparse_ranges(gi.ranges, gj.ranges, rows, cols)
    sparse = request._replace(arguments=host, ranges=ranges)
    return np.asarray(arrays.to_host(dispatch.reduce(sparse)))


def _deflated_min(partial: np.ndarray, ranges_i, n: int) -> np.ndarray:
    """Per i-cluster and coordinate: the smallest computed partial sum of
    |F| of its rows, lowered by the rounding of a sum of ``n`` terms (each
    within a few ulps), so it stays below the exact one (NaN: 0)."""
    if not len(ranges_i):
        return np.zeros((0, partial.shape[1]))
    u = float(np.finfo(partial.dtype).eps)
    low = np.minimum.reduceat(partial.astype(np.float64), ranges_i[:, 0], axis=0)
    low = low * max(0.0, 1.0 - (n + 16) * u)
    return np.where(np.isnan(low), 0.0, np.maximum(low, 0.0))


def _info(ranges_i, ranges_j, rows, cols) -> dict:
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


def _clusters(leaves, cats, cat: int, grid_on: set, cluster_size: int):
    """The grid of side ``cat`` (cut along the ``grid_on`` variables) and the
    boxes of its clusters over all that side's variables."""
    x, slices = _points(leaves, cats, cat)
    cols = [np.arange(x.shape[1])[s] for k, s in slices.items() if k in grid_on]
    g = grid_boxes(x[:, np.concatenate(cols)] if cols else x, cluster_size)
    if not cols or len(np.concatenate(cols)) == x.shape[1] or not len(x):
        return g, Boxes(g.lo, g.hi, slices)
    xs, starts = x[g.perm], g.ranges[:, 0]
    lo, hi = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    return g, Boxes(lo, hi, slices)


def _default_interval(formula: ir.Node, leaves, cats) -> Callable:
    """The ops' interval rules, one :func:`.knn.formula_bound` per coordinate."""
    parts = [formula] if formula.dim == 1 else [
        ir.make("elem", formula, attrs=(d,)) for d in range(formula.dim)
    ]  # fmt: skip
    bounds = [formula_bound(f, leaves, cats) for f in parts]

    def interval(bi, bj):
        pairs = [b(bi, bj) for b in bounds]
        return np.stack([p[0] for p in pairs], -1), np.stack([p[1] for p in pairs], -1)

    return interval


class _Bounds:
    """The interval bounds of the block pairs, one coarse i-cluster at a
    time (recomputed per pass: storing them all would not fit at 1e6
    points). A coarse pair whose bound is 0 (F is 0 on it, e.g. an
    underflowing Gaussian) skips the bounds of its fine pairs: they are 0."""

    def __init__(self, bi: Boxes, bj: Boxes, gi, gj, interval, dim: int, tol: float):
        self.bi, self.fj, self.interval, self.dim, self.tol = bi, _finite(bj), interval, dim, tol
        self.n_j = (gj.ranges[:, 1] - gj.ranges[:, 0]).astype(np.float64)
        self.bad_i, self.bad_j = _non_finite(bi), _non_finite(bj)
        self.gi, self.gj = gi, gj
        ci, cj = _coarse(_finite(bi), gi), _coarse(self.fj, gj)
        self.zero = np.zeros((len(gi.coarse), len(gj.coarse)), dtype=bool)
        step = max(1, CHUNK_PAIRS // max(len(gj.coarse) * dim, 1))
        for a in range(0, len(gi.coarse) if len(gj.coarse) else 0, step):
            r = slice(a, min(a + step, len(gi.coarse)))
            lo, hi = self._interval(ci.take(r), cj)
            self.zero[r] = ((lo == 0) & (hi == 0)).all(axis=2)

    def _interval(self, bi: Boxes, bj: Boxes):
        lo, hi = self.interval(bi, bj)
        lo, hi = (np.asarray(v, dtype=np.float64) for v in (lo, hi))
        lo, hi = (v[..., None] if v.ndim == 2 else v for v in (lo, hi))
        shape = (len(bi.lo), len(bj.lo))
        if lo.shape[:2] != shape or hi.shape != lo.shape or lo.shape[2] not in (1, self.dim):
            raise ValueError(
                "interval(boxes_i, boxes_j) must return (lo, hi) shaped "
                f"{shape} or {shape + (self.dim,)}, got {lo.shape} and {hi.shape}"
            )
        return lo, hi

    def _chunks(self):
        """``(fine i-clusters, their j-clusters, U, L0)`` per coarse i-cluster:
        ``U`` (rows, cols, dim) the upper bounds of the pairs' parts of
        sum_j |F_ij|, ``L0`` (rows, dim) lower bounds of that sum; the
        j-clusters left out have F = 0."""
        every = np.arange(len(self.fj.lo))
        for A, span in enumerate(self.gi.coarse if len(every) else ()):
            fi = np.arange(*span)
            fj = every
            if not self.bad_i[fi].any():
                fj = np.union1d(_expand(self.gj.coarse[~self.zero[A]]), np.flatnonzero(self.bad_j))
            lo, hi = self._interval(_finite(self.bi.take(fi)), self.fj.take(fj))
            U, L0 = _magnitudes(lo, hi, self.n_j[fj])
            U[self.bad_i[fi]] = np.inf
            U[:, self.bad_j[fj]] = np.inf
            yield fi, fj, U, L0

    def core(self):
        """``(rows, cols, L0)``: the pairs kept whatever the exact sums are
        (kept with the budget of their upper bounds), L0 per i-cluster."""
        rows, cols = [], []
        L0 = np.zeros((len(self.bi.lo), self.dim))
        self.cores = []  # kept for the second pass (bool, a few bytes a pair)
        for fi, fj, U, low in self._chunks():
            self.cores.append(_keep(U, _finite_sum(U), self.tol))
            r, c = np.nonzero(self.cores[-1])
            rows.append(fi[r])
            cols.append(fj[c])
            L0[fi] = low
        return _cat(rows), _cat(cols), L0

    def kept(self, L: np.ndarray):
        """``(rows, cols, rest)``, row-major: the pairs kept with the lower
        bounds ``L`` (i-clusters, dim) or in the core; ``rest``: not core.
        Runs after :meth:`core`."""
        rows, cols, rest = [], [], []
        for (fi, fj, U, _), core in zip(self._chunks(), self.cores):
            keep = core | _keep(U, L[fi], self.tol)
            r, c = np.nonzero(keep)
            rows.append(fi[r])
            cols.append(fj[c])
            rest.append(~core[r, c])
        return _cat(rows), _cat(cols), np.concatenate(rest) if rest else np.zeros(0, bool)


def _cat(parts) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def _finite_sum(U: np.ndarray) -> np.ndarray:
    """Per row and coordinate: the sum of the finite upper bounds."""
    return np.where(np.isfinite(U), U, 0.0).sum(axis=1)


def _magnitudes(lo: np.ndarray, hi: np.ndarray, n_j: np.ndarray):
    """``U = hi_abs * n_j`` (inf where the bound is NaN) and ``L0 = sum_b
    lo_abs * n_b`` (0 where that sum is not finite)."""
    with np.errstate(invalid="ignore", over="ignore"):
        nan = np.isnan(lo) | np.isnan(hi)
        a_lo, a_hi = np.abs(lo), np.abs(hi)
        w = n_j[None, :, None]
        U = np.where(nan, np.inf, np.maximum(a_lo, a_hi)) * w
        straddle = (lo <= 0) & (hi >= 0)
        L0 = (np.where(nan | straddle, 0.0, np.minimum(a_lo, a_hi)) * w).sum(axis=1)
    return U, np.where(np.isfinite(L0), L0, 0.0)  # an infinite L would excuse anything


def _non_finite(b: Boxes) -> np.ndarray:
    """The clusters holding a NaN or infinite coordinate: never skipped."""
    return ~(np.isfinite(b.lo).all(axis=1) & np.isfinite(b.hi).all(axis=1))


def _finite(b: Boxes) -> Boxes:
    """The boxes with non-finite coordinates replaced by 0 (their pairs are
    kept whatever the bound says; the interval rules refuse NaN boxes)."""
    bad = ~(np.isfinite(b.lo) & np.isfinite(b.hi))
    if not bad.any():
        return b
    return Boxes(np.where(bad, 0.0, b.lo), np.where(bad, 0.0, b.hi), b.slices)


def _keep(U: np.ndarray, L: np.ndarray, tol: float) -> np.ndarray:
    """The pairs (i-clusters, j-clusters) to evaluate: per row, the smallest
    scores ``max_d U / L`` are skipped while they add up to at most ``tol``."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s = np.where(U == 0, 0.0, U / L[:, None, :])  # U > 0 = L: inf; inf / inf: NaN
        score = np.nan_to_num(s.max(axis=2), nan=np.inf)
        ends = np.append(np.sort(score, axis=1), np.full((len(score), 1), np.inf), axis=1)
        run = np.cumsum(ends[:, :-1], axis=1)
    # the k smallest fit (a margin for the rounding of U / L and of the sum);
    # the scores below the (k+1)-th smallest are among them
    k = (run <= tol * (1 - 1e-9)).sum(axis=1)
    return ~(score < ends[np.arange(len(score)), k][:, None])
