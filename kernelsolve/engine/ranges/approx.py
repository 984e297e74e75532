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
an infinite score and is never skipped. The kept pairs run as one
block-sparse ``sum`` on the permuted points.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import arrays, dispatch, ir
from ..request import DEFAULT_OPTIONS, ReductionOptions, ReductionRequest
from .knn import formula_bound
from .prune import CHUNK_PAIRS, Boxes, _points, grid_boxes, host_leaves, sparse_ranges

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
    if tol is not None and not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"approx_sum: tol must be None or a number >= 0, got {tol!r}")
    used = {cats[v.attrs[0]] for v in ir.variables(formula)}
    if not tol or not {ir.I, ir.J} <= used:  # exact, or nothing to cluster
        return dispatch.reduce(request), {"skipped_blocks": 0.0, "skipped_pairs": 0.0}
    xi, si = _points(leaves, cats, ir.I)
    yj, sj = _points(leaves, cats, ir.J)
    gi, gj = grid_boxes(xi, cluster_size), grid_boxes(yj, cluster_size)
    if interval is None:
        interval = _default_interval(formula, leaves, cats)
    bi, bj = Boxes(gi.lo, gi.hi, si), Boxes(gj.lo, gj.hi, sj)
    rows, cols = _kept_pairs(bi, bj, gj.ranges, interval, formula.dim, float(tol))
    host = host_leaves(leaves, cats, gi.perm, gj.perm)
    ranges = sparse_ranges(gi.ranges, gj.ranges, rows, cols)
    sparse = request._replace(arguments=host, ranges=ranges)
    res = np.asarray(arrays.to_host(dispatch.reduce(sparse)))
    out = np.empty_like(res)
    out[gi.perm] = res
    ref = next(x for x, c in zip(leaves, cats) if c != ir.P)
    if arrays.is_torch(ref):
        out = arrays.from_numpy(out, arrays.TORCH, arrays.device(ref))
    wi, wj = (g.ranges[:, 1] - g.ranges[:, 0] for g in (gi, gj))
    total_blocks, total_pairs = len(wi) * len(wj), float(wi.sum()) * float(wj.sum())
    kept = float((wi[rows] * wj[cols]).sum())
    info = {
        "skipped_blocks": 1.0 - len(rows) / total_blocks if total_blocks else 0.0,
        "skipped_pairs": 1.0 - kept / total_pairs if total_pairs else 0.0,
        "blocks": (len(wi), len(wj)),
    }
    return out, info


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


def _kept_pairs(bi: Boxes, bj: Boxes, ranges_j, interval, dim: int, tol: float):
    """``(rows, cols)``, row-major, of the block pairs not skipped."""
    n_j = (ranges_j[:, 1] - ranges_j[:, 0]).astype(np.float64)
    Ci, Cj = len(bi.lo), len(bj.lo)
    step = max(1, CHUNK_PAIRS // max(Cj * dim, 1))
    rows, cols = [], []
    for a in range(0, Ci if Cj else 0, step):
        r = slice(a, min(a + step, Ci))
        lo, hi = (np.asarray(v, dtype=np.float64) for v in interval(bi.take(r), bj))
        lo, hi = (v.reshape(v.shape[:2] + (-1,)) for v in (lo, hi))
        if lo.shape != (r.stop - a, Cj, dim) and lo.shape != (r.stop - a, Cj, 1):
            raise ValueError(
                f"interval(boxes_i, boxes_j) must return (lo, hi) shaped "
                f"{(r.stop - a, Cj)} or {(r.stop - a, Cj, dim)}, got {lo.shape}"
            )
        keep = _keep(lo, hi, n_j, tol)
        k_r, k_c = np.nonzero(keep)
        rows.append(k_r + a)
        cols.append(k_c)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)


def _keep(lo: np.ndarray, hi: np.ndarray, n_j: np.ndarray, tol: float) -> np.ndarray:
    """The pairs (rows of i-clusters, j-clusters) to evaluate: per row, the
    smallest scores are skipped while they add up to at most ``tol``."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        nan = np.isnan(lo) | np.isnan(hi)
        a_lo, a_hi = np.abs(lo), np.abs(hi)
        hi_abs = np.where(nan, np.inf, np.maximum(a_lo, a_hi))
        straddle = (lo <= 0) & (hi >= 0)
        lo_abs = np.where(nan | straddle, 0.0, np.minimum(a_lo, a_hi))
        w = n_j[None, :, None]
        L = (lo_abs * w).sum(axis=1, keepdims=True)
        L = np.where(np.isfinite(L), L, 0.0)  # an infinite L would excuse anything
        U = hi_abs * w
        s = np.where(U == 0, 0.0, U / L)  # U > 0 = L: inf; inf / inf: NaN
        score = np.nan_to_num(s.max(axis=2), nan=np.inf)
    order = np.argsort(score, axis=1, kind="stable")
    run = np.cumsum(np.take_along_axis(score, order, axis=1), axis=1)
    skip = np.zeros_like(score, dtype=bool)
    # a margin for the rounding of U / L and of the running sum
    np.put_along_axis(skip, order, run <= tol * (1 - 1e-9), axis=1)
    return ~skip
