"""Exact nearest neighbours at sub-quadratic cost: block pruning by bounds.

:func:`pruned_kmin` computes ``Kmin`` / ``argKmin`` / ``Kmin_argKmin`` /
``min`` / ``argmin`` over j of a scalar formula, with results identical to
the dense reduction (values, indices, ties and NaN included), by evaluating
only the block pairs that can hold one of the K best columns of a row.

1. **Clusters.** The i-points (all i-variables concatenated) and the
   j-points (all j-variables concatenated) are cut by a regular grid into
   cells (:func:`grid_boxes`: the cell side is chosen so that a cell holds
   about ``cluster_size`` points, 256 by default, on uniform data); every
   non-empty cell is a cluster, its box the tight bounding box of its
   points; points are permuted so that each cluster is contiguous.
2. **Bounds.** ``interval(boxes_i, boxes_j) -> (lo, hi)``, shaped
   ``(n_ci, n_cj)``: ``lo <= F(x_i, y_j) <= hi`` for every i in the i-box and
   j in the j-box, as the target computes F; NaN in ``lo`` or ``hi`` where F
   may be NaN there. It is called on chunks of i-boxes (bounded memory). The
   bound is pluggable: the engine's interval rules, or a hand-written one.
3. **Threshold.** For i-cluster a, ``T_a`` is the smallest ``hi[a, b]`` such
   that the j-clusters with ``hi <= T_a`` (NaN bounds never counted) hold at
   least K points (``+inf`` if there is no such value). Every row of a has
   then K values ``<= T_a``, so its K-th smallest value is ``<= T_a``. Block
   (a, b) is pruned iff ``lo[a, b] > T_a + slack * (|lo| + |T_a|)``: its
   values are all strictly above the K-th smallest of every row of a (the
   ``slack``, 2^-10 relative, absorbs the rounding of the computed F against
   the bound; ``<=`` keeps boundary ties; NaN bounds are always kept).
4. **One block-sparse reduction** (``ranges`` from
   :func:`~.cluster.from_matrix`) of ``Kmin_argKmin`` with K + 1 slots on the
   permuted points, indices mapped back to the original order.

Exactness. The dense result is the first K columns of a row in the order
(value ascending, NaN last; then original index). Every column whose value
is ``<= v_K`` (the dense K-th value) lies in a kept block (step 3), so the
dense answer is the first K of the kept columns in that order. The kernel
ranks the kept columns by value and breaks ties by its own (permuted)
index; so the set of its first K is right whenever the (K+1)-th kept value
differs from the K-th (or does not exist): those rows are sorted by
(value, original index) and done. A row whose K-th and (K+1)-th values tie
(NaN and NaN included) may have lost a tied column of lower original index:
those rows, and for ``min``/``argmin`` every row whose cluster keeps a
block with a NaN bound (``min`` returns the *first* NaN, which K+1 slots
sorting NaN last cannot see), are recomputed by :func:`_ordered`: one more
block-sparse reduction of the requested reduction itself over the
candidates of their cluster gathered in ascending original order, so that
the kernel's own tie rule (lowest index first) is the dense one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .. import arrays, dispatch, ir
from ..request import DEFAULT_OPTIONS, ReductionOptions, ReductionRequest
from .cluster import from_matrix

__all__ = ["Boxes", "PrunePlan", "grid_boxes", "prune_plan", "pruned_kmin", "pruning_pays"]

# reduction names accepted (pykeops' and the engine's) -> (engine name, K-min family)
_NAMES = {
    "argkmin": ("argkmin", True),
    "kmin": ("kmin", True),
    "kmin_argkmin": ("kmin_argkmin", True),
    "argmin": ("argmin", False),
    "min": ("min", False),
    "min_argmin": ("min_argmin", False),
}

#: bound entries (i-clusters x j-clusters) evaluated per call of ``interval``
CHUNK_PAIRS = 1 << 22
#: default cluster sizes keep the bound matrix (i-clusters x j-clusters) below this
MAX_BLOCK_PAIRS = 2e7


class Boxes(NamedTuple):
    """Axis-aligned boxes of point clusters: cluster c spans
    ``lo[c] <= x <= hi[c]`` (coordinates of the variables concatenated);
    ``slices[k]``: the columns of leaf ``k`` (a variable of the box's side)."""

    lo: np.ndarray  # (C, D)
    hi: np.ndarray  # (C, D)
    slices: dict

    def of(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` of the boxes restricted to the coordinates of leaf ``k``."""
        s = self.slices[k]
        return self.lo[:, s], self.hi[:, s]

    def take(self, rows) -> Boxes:
        """The boxes ``rows`` (an index or slice)."""
        return Boxes(self.lo[rows], self.hi[rows], self.slices)


def grid_boxes(points: np.ndarray, cluster_size: int = 256, cells=None):
    """Grid clustering of ``points`` (n, D): ``(perm, ranges, boxes)``.

    ``perm``: the points' order with every cluster contiguous (stable:
    ascending original index inside a cluster); ``ranges`` (C, 2): each
    cluster's ``[start, end)`` in that order; ``boxes`` (lo, hi), each (C, D):
    the tight bounding box of each cluster (NaN when a coordinate is NaN).
    ``cells``: the cell side (a number or one per dimension); None: chosen so
    that a cell holds about ``cluster_size`` points if the points filled
    their bounding box uniformly. Non-finite coordinates go to one cell of
    their own (their boxes are NaN or infinite: a sound bound keeps them).

    >>> p, r, (lo, hi) = grid_boxes(np.array([[0.0], [0.9], [0.1]]), cells=0.5)
    >>> p.tolist(), r.tolist(), lo[:, 0].tolist(), hi[:, 0].tolist()
    ([0, 2, 1], [[0, 2], [2, 3]], [0.0, 0.9], [0.1, 0.9])
    """
    x = np.asarray(points, dtype=np.float64)
    n, D = x.shape
    finite = np.isfinite(x).all(axis=1)
    if not finite.any():
        ids = np.zeros(n, dtype=np.int64)
    else:
        low, high = x[finite].min(axis=0), x[finite].max(axis=0)
        extent = high - low
        if cells is None:
            side = _cell_side(extent, int(finite.sum()), cluster_size)
        else:
            side = np.broadcast_to(np.asarray(cells, dtype=np.float64), (D,))
            if not (side > 0).all():
                raise ValueError(f"cells must be positive cell sides, got {cells!r}")
        count = np.minimum(np.floor(extent / side).astype(np.int64) + 1, 1 << 20)
        if float(np.prod(count.astype(np.float64))) >= 2.0**62:
            raise ValueError(f"cells={cells!r}: too many grid cells for {D} dimensions")
        with np.errstate(invalid="ignore"):
            c = np.floor((np.where(finite[:, None], x, low) - low) / side)
        c = np.clip(c, 0, count - 1).astype(np.int64)
        ids = np.ravel_multi_index(tuple(c.T), tuple(count)) if D else np.zeros(n, np.int64)
        ids = np.where(finite, ids, -1)  # non-finite points: one cluster, first
    perm = np.argsort(ids, kind="stable")
    sorted_ids = ids[perm]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]) if n else perm
    ends = np.r_[starts[1:], n].astype(np.int64)
    ranges = np.stack([starts, ends], axis=1).astype(np.int64)
    xs = x[perm]
    lo = np.minimum.reduceat(xs, starts, axis=0) if n else np.zeros((0, D))
    hi = np.maximum.reduceat(xs, starts, axis=0) if n else np.zeros((0, D))
    return perm, ranges, (lo, hi)


def _cell_side(extent: np.ndarray, n: int, cluster_size: int) -> np.ndarray:
    """A cube side giving about ``cluster_size`` points per cell on uniform
    points in the box ``extent`` (flat dimensions get one cell)."""
    live = extent > 0
    if not live.any():
        return np.ones_like(extent)
    volume = float(np.prod(extent[live]))
    cells = max(n / max(cluster_size, 1), 1.0)
    side = (volume / cells) ** (1.0 / int(live.sum()))
    # never more cells along one axis than points (degenerate, elongated clouds)
    side = np.maximum(side, extent / max(n, 1))
    return np.where(live, side, 1.0)


class PrunePlan(NamedTuple):
    """The pruning of one (formula, points) problem: the permutations, the
    clusters and the kept block pairs; :meth:`kept_fraction` measures it."""

    perm_i: np.ndarray  # (M,) i-points in cluster order
    perm_j: np.ndarray  # (N,)
    ranges_i: np.ndarray  # (Ci, 2) in the permuted order
    ranges_j: np.ndarray  # (Cj, 2)
    keep: np.ndarray  # (Ci, Cj) bool: block pairs evaluated
    nan_block: np.ndarray  # (Ci,) bool: the cluster keeps a block with a NaN bound

    def kept_fraction(self) -> float:
        """Fraction of the block pairs kept (1.0 for an empty problem)."""
        return float(self.keep.mean()) if self.keep.size else 1.0

    def kept_pairs(self) -> int:
        """Number of (i, j) point pairs the block-sparse reduction evaluates."""
        wi = self.ranges_i[:, 1] - self.ranges_i[:, 0]
        wj = self.ranges_j[:, 1] - self.ranges_j[:, 0]
        return int(wi @ self.keep.astype(np.int64) @ wj)


def _points(leaves, cats, cat: int) -> tuple[np.ndarray, dict]:
    """The variables of category ``cat`` concatenated (n, D), and each leaf's columns."""
    cols, slices, d = [], {}, 0
    for k, (x, c) in enumerate(zip(leaves, cats)):
        if c != cat:
            continue
        a = arrays.to_host(x) if arrays.is_array(x) else np.asarray(x)
        if a.ndim != 2:
            side = "i" if cat == ir.I else "j"
            raise ValueError(
                f"pruned_kmin: the {side}-variable leaves[{k}] must have shape (n, d) "
                f"(no batch dimensions), got {tuple(a.shape)}"
            )
        cols.append(a.astype(np.float64))
        slices[k] = slice(d, d + a.shape[1])
        d += a.shape[1]
    if not cols:
        raise ValueError(f"pruned_kmin: the formula has no {'i' if cat == ir.I else 'j'}-variable")
    return np.concatenate(cols, axis=1), slices


def prune_plan(
    leaves, cats, K: int, interval: Callable, *, formula: ir.Node | None = None,
    cluster_size: int | None = None, cells=None, slack: float = 2.0**-10,
    options: ReductionOptions = DEFAULT_OPTIONS,
) -> PrunePlan:  # fmt: skip
    """Cluster the i- and j-points of ``leaves`` and keep the block pairs that
    can hold one of the ``K`` smallest values of a row (see the module
    docstring for the threshold and ``interval``'s contract).

    With ``formula`` (the scalar F of ``interval``), the thresholds are
    tightened by one cheap block-sparse ``Kmin`` over the blocks that define
    them: ``T_a`` becomes the largest computed K-th value of a row of a over
    those blocks (at most the bound's ``T_a``, and still >= every row's K-th
    value), which keeps about 7x fewer blocks on uniform 3-D points.
    ``cluster_size`` None: 64 points per cell, raised so that the bound
    matrix has at most about 2e7 entries (the bound is evaluated on all pairs).

    >>> x = np.arange(8.0)[:, None]
    >>> def sqdist(bi, bj):  # a sound interval of (x - y)^2 on 1-D boxes
    ...     gap = np.maximum(0, np.maximum(bj.lo.T - bi.hi, bi.lo - bj.hi.T))
    ...     far = np.maximum(bj.hi.T - bi.lo, bi.hi - bj.lo.T)
    ...     return gap**2, far**2
    >>> plan = prune_plan((x, x), (ir.I, ir.J), 1, sqdist, cells=2.0)
    >>> plan.keep.astype(int).tolist()[0]  # [2, 3] touches T = 1: kept
    [1, 1, 0, 0]
    """
    xi, si = _points(leaves, cats, ir.I)
    yj, sj = _points(leaves, cats, ir.J)
    if cluster_size is None:
        cluster_size = max(64, int(np.sqrt(len(xi) * len(yj) / MAX_BLOCK_PAIRS)) + 1)
    perm_i, ranges_i, (lo_i, hi_i) = grid_boxes(xi, cluster_size, cells)
    perm_j, ranges_j, (lo_j, hi_j) = grid_boxes(yj, cluster_size, cells)
    bi, bj = Boxes(lo_i, hi_i, si), Boxes(lo_j, hi_j, sj)
    keep, lo_kept, counting, T, nan_block = _bound_pass(bi, bj, ranges_j, K, interval, slack)
    plan = PrunePlan(perm_i, perm_j, ranges_i, ranges_j, keep, nan_block)
    if formula is None or not np.isfinite(T).any():
        return plan
    T2 = _refined_thresholds(plan, formula, leaves, cats, K, counting, T, options)
    rows = np.nonzero(keep)[0]
    with np.errstate(invalid="ignore"):
        pruned = lo_kept - T2[rows] > slack * (np.abs(lo_kept) + np.abs(T2[rows]))
    keep[keep] = ~pruned  # NaN bounds compare False: never pruned
    return plan


def _bound_pass(bi: Boxes, bj: Boxes, ranges_j, K: int, interval: Callable, slack: float):
    """The bounds on all block pairs, by chunks of i-clusters: ``(keep, lo of
    the kept pairs in row-major order, counting, T, nan_block)``, where
    ``counting`` marks the blocks that define each row's threshold ``T``."""
    counts = ranges_j[:, 1] - ranges_j[:, 0]
    Ci, Cj = len(bi.lo), len(bj.lo)
    keep = np.ones((Ci, Cj), dtype=bool)
    counting = np.zeros((Ci, Cj), dtype=bool)
    T_all = np.full(Ci, np.inf)
    nan_block = np.zeros(Ci, dtype=bool)
    lo_kept = []
    step = max(1, CHUNK_PAIRS // max(Cj, 1))
    for a in range(0, Ci if Cj else 0, step):
        rows = slice(a, min(a + step, Ci))
        lo, hi = (np.asarray(v, dtype=np.float64) for v in interval(bi.take(rows), bj))
        n = rows.stop - rows.start
        if lo.shape != (n, Cj) or hi.shape != (n, Cj):
            raise ValueError(
                f"interval(boxes_i, boxes_j) must return (lo, hi) shaped ({n}, {Cj}) "
                f"(i-clusters, j-clusters), got {lo.shape} and {hi.shape}"
            )
        nan = np.isnan(lo) | np.isnan(hi)
        hi = np.where(nan, np.inf, hi)
        T = _thresholds(hi, counts, K)
        T_all[rows] = T
        T = T[:, None]
        with np.errstate(invalid="ignore"):
            pruned = lo - T > slack * (np.abs(lo) + np.abs(T))
        keep[rows] = k = ~pruned | nan
        counting[rows] = (hi <= T) & np.isfinite(T)
        lo_kept.append(lo[k])
        nan_block[rows] = nan.any(axis=1)
    lo_kept = np.concatenate(lo_kept) if lo_kept else np.zeros(0)
    return keep, lo_kept, counting, T_all, nan_block


def _refined_thresholds(plan: PrunePlan, formula, leaves, cats, K, counting, T, options):
    """Per i-cluster: min(T, the largest computed K-th value of its rows over
    the ``counting`` blocks) (T where that is NaN)."""
    host = _host_leaves(leaves, cats, plan.perm_i, plan.perm_j)
    ranges = from_matrix(plan.ranges_i, plan.ranges_j, counting)
    req = ReductionRequest(formula, "kmin", host, tuple(cats), 1, None, K, options, ranges)
    v = np.asarray(arrays.to_host(dispatch.reduce(req))).reshape(len(plan.perm_i), K)
    starts = plan.ranges_i[:, 0]
    worst = np.maximum.reduceat(v[:, K - 1].astype(np.float64), starts) if len(starts) else T
    return np.where(np.isnan(worst), T, np.minimum(T, worst))


def _thresholds(hi: np.ndarray, counts: np.ndarray, K: int) -> np.ndarray:
    """Per row: the smallest ``hi`` such that the clusters with ``hi <= T``
    hold >= K points (+inf if none). Clusters are non-empty, so the K
    smallest ``hi`` of a row suffice."""
    n, C = hi.shape
    if C == 0:
        return np.full(n, np.inf)
    k = min(K, C)
    part = np.argpartition(hi, k - 1, axis=1)[:, :k] if k < C else np.tile(np.arange(C), (n, 1))
    h = np.take_along_axis(hi, part, axis=1)
    order = np.argsort(h, axis=1, kind="stable")
    h = np.take_along_axis(h, order, axis=1)
    cum = np.cumsum(counts[np.take_along_axis(part, order, axis=1)], axis=1)
    enough = cum >= K
    first = np.argmax(enough, axis=1)
    T = h[np.arange(n), first]
    # ties of hi at T: every cluster with hi <= T counts, so T stays sound
    return np.where(enough.any(axis=1), T, np.inf)


def pruned_kmin(
    formula: ir.Node,
    leaves: tuple,
    cats: tuple,
    K: int = 1,
    *,
    reduction: str = "argKmin",
    interval: Callable,
    cluster_size: int | None = None,
    cells=None,
    slack: float = 2.0**-10,
    options: ReductionOptions = DEFAULT_OPTIONS,
    plan: PrunePlan | None = None,
):
    """``reduction`` over j (axis 1) of the scalar ``formula``, identical to
    the dense reduction, evaluating only the block pairs that bounds keep.

    Parameters
    ----------
    formula, leaves, cats:
        As in :class:`~kernelsolve.engine.request.ReductionRequest`: i- and
        j-variables are host arrays (NumPy or torch CPU) shaped (n, d), no
        batch dimensions; parameters as there. ``formula.dim`` must be 1.
    K:
        Number of smallest values (the K-min family; ignored by ``min``,
        ``argmin``, ``min_argmin``).
    reduction:
        ``"argKmin"``, ``"Kmin"``, ``"Kmin_argKmin"``, ``"argmin"``, ``"min"``
        or ``"min_argmin"`` (any case).
    interval:
        ``interval(boxes_i, boxes_j) -> (lo, hi)`` arrays (n_ci, n_cj), with
        :class:`Boxes` (``boxes.of(k)``: the box coordinates of leaf k):
        ``lo <= F <= hi`` over each pair of boxes, NaN where F may be NaN.
    cluster_size, cells:
        The grid of :func:`grid_boxes` (points per cell, or the cell side).
    slack:
        Relative margin of the pruning test (rounding of F against the bound).
    options:
        Target and accumulation of the reductions.
    plan:
        A :func:`prune_plan` of the same points and K, to reuse.

    Returns
    -------
    The dense reduction's result: arrays (M, K) (values, int64 indices, or
    both as a tuple) for the K-min family, (M, 1) for ``min`` / ``argmin``,
    in the leaves' library.

    Example
    -------
    >>> x = np.arange(6.0)[:, None]
    >>> xi, yj = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)
    >>> F = ir.make("sqnorm2", ir.make("sub", xi, yj))
    >>> def sqdist(bi, bj):
    ...     gap = np.maximum(0, np.maximum(bj.lo.T - bi.hi, bi.lo - bj.hi.T))
    ...     return gap**2, np.maximum(bj.hi.T - bi.lo, bi.hi - bj.lo.T) ** 2
    >>> pruned_kmin(F, (x, x), (ir.I, ir.J), 2, interval=sqdist, cells=2.0)[:3].tolist()
    [[0, 1], [1, 0], [2, 1]]
    """
    key = reduction.lower() if isinstance(reduction, str) else reduction
    if key not in _NAMES:
        raise ValueError(
            f"reduction={reduction!r}: expected 'argKmin', 'Kmin', 'Kmin_argKmin', "
            "'argmin', 'min' or 'min_argmin'"
        )
    name, kfamily = _NAMES[key]
    K = K if kfamily else 1
    if not isinstance(K, (int, np.integer)) or isinstance(K, bool) or K < 1:
        raise ValueError(f"pruned_kmin: K must be a positive integer, got {K!r}")
    if formula.dim != 1:
        raise ValueError(f"pruned_kmin: the formula must be scalar (dim 1), got dim {formula.dim}")
    leaves, cats = tuple(leaves), tuple(cats)
    request = ReductionRequest(formula, name, leaves, cats, 1, None, K, options)
    M, N = (_count(leaves, cats, c) for c in (ir.I, ir.J))
    if M == 0 or K >= N:  # nothing to prune: every column is needed (K > N: dense's error)
        return dispatch.reduce(request)
    if plan is None:
        plan = prune_plan(
            leaves, cats, K, interval, formula=formula, cluster_size=cluster_size,
            cells=cells, slack=slack, options=options,
        )  # fmt: skip
    vals, idx, redo = _fast(request, plan, K)
    if not kfamily:
        redo |= np.repeat(plan.nan_block, plan.ranges_i[:, 1] - plan.ranges_i[:, 0])
    redo_orig = plan.perm_i[redo]
    out_v = np.empty((M, K), dtype=vals.dtype)
    out_i = np.empty((M, K), dtype=np.int64)
    out_v[plan.perm_i], out_i[plan.perm_i] = vals, idx
    if len(redo_orig):
        rv, ri = _ordered(request, plan, redo, K if kfamily else 0)
        out_v[redo_orig], out_i[redo_orig] = rv, ri
    return _present(name, out_v, out_i, leaves, cats)


def _count(leaves, cats, cat: int) -> int:
    """The number of points of the variables of category ``cat``."""
    for x, c in zip(leaves, cats):
        if c == cat:
            shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
            return int(shape[-2]) if len(shape) >= 2 else 0
    side = "i" if cat == ir.I else "j"
    raise ValueError(f"pruned_kmin: the formula has no {side}-variable")


def _host_leaves(leaves, cats, perm_i, perm_j) -> tuple:
    """The leaves on the host, i- and j-variables taken in the given orders."""
    out = []
    for x, c in zip(leaves, cats):
        a = arrays.to_host(x) if arrays.is_array(x) else x
        if c == ir.I:
            a = np.ascontiguousarray(a[perm_i])
        elif c == ir.J:
            a = np.ascontiguousarray(a[perm_j])
        out.append(a)
    return tuple(out)


def _fast(request: ReductionRequest, plan: PrunePlan, K: int):
    """The K + 1 smallest of every row over the kept blocks, on the permuted
    points: ``(values, original indices, redo)`` for the rows in permuted
    order, the first K sorted by (value, original index); ``redo`` marks the
    rows whose K-th and (K+1)-th values tie (their set of K is uncertain)."""
    leaves = _host_leaves(request.arguments, request.cats, plan.perm_i, plan.perm_j)
    ranges = from_matrix(plan.ranges_i, plan.ranges_j, plan.keep)
    req = request._replace(reduction="kmin_argkmin", K=K + 1, arguments=leaves, ranges=ranges)
    v, j = (
        np.asarray(arrays.to_host(a)).reshape(len(plan.perm_i), K + 1)
        for a in dispatch.reduce(req)
    )
    N = len(plan.perm_j)
    orig = np.where(j >= 0, plan.perm_j[np.maximum(j, 0)], -1)
    last, nxt = v[:, K - 1], v[:, K]
    tie = (last == nxt) | (np.isnan(last) & np.isnan(nxt))
    redo = tie & (j[:, K] >= 0)
    v, orig = v[:, :K], orig[:, :K]
    # empty slots (index -1) rank after every column, +inf values included
    order = np.lexsort((np.where(orig >= 0, orig, N), v), axis=-1)
    return np.take_along_axis(v, order, 1), np.take_along_axis(orig, order, 1), redo


def _ordered(request: ReductionRequest, plan: PrunePlan, redo: np.ndarray, K: int):
    """The requested reduction, exactly, for the rows ``redo`` (a mask in
    permuted order): each row folds the kept columns of its cluster gathered
    in ascending original order, so that the kernel's tie rule (the lowest
    index first, the first NaN for ``min``) is the dense one. Returns
    ``(values, original indices)`` (n, max(K, 1)) for those rows."""
    widths_i = plan.ranges_i[:, 1] - plan.ranges_i[:, 0]
    cluster = np.repeat(np.arange(len(widths_i)), widths_i)
    rows = np.flatnonzero(redo)
    clusters, counts = np.unique(cluster[rows], return_counts=True)
    cand = []
    for a in clusters:
        segs = plan.ranges_j[plan.keep[a]]
        picked = [plan.perm_j[s:e] for s, e in segs]
        cand.append(np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64))
    seg_len = np.array([len(c) for c in cand], dtype=np.int64)
    cand_all = np.concatenate(cand) if cand else np.zeros(0, np.int64)
    ends_j, ends_i = np.cumsum(seg_len), np.cumsum(counts)
    red_j = np.stack([ends_j - seg_len, ends_j], axis=1)
    rng_i = np.stack([ends_i - counts, ends_i], axis=1)
    slices = np.arange(1, len(clusters) + 1, dtype=np.int64)
    ranges = (rng_i, slices, red_j, red_j, slices, rng_i)
    leaves = _host_leaves(request.arguments, request.cats, plan.perm_i[rows], cand_all)
    name = "kmin_argkmin" if K else "min_argmin"
    req = request._replace(reduction=name, K=K or None, arguments=leaves, ranges=ranges)
    k = max(K, 1)
    v, j = (np.asarray(arrays.to_host(a)).reshape(len(rows), k) for a in dispatch.reduce(req))
    return v, np.where(j >= 0, cand_all[np.maximum(j, 0)], -1)


def _present(name: str, v: np.ndarray, j: np.ndarray, leaves, cats):
    """The outputs of reduction ``name``, as the dense reduction shapes them,
    in the library (and device) of the first variable."""
    ref = next(x for x, c in zip(leaves, cats) if c != ir.P)
    outs = {"kmin": (v,), "argkmin": (j,), "kmin_argkmin": (v, j)}.get(name)
    if outs is None:
        outs = {"min": (v[:, :1],), "argmin": (j[:, :1],), "min_argmin": (v[:, :1], j[:, :1])}[
            name
        ]
    if arrays.is_torch(ref):
        outs = tuple(
            arrays.from_numpy(np.ascontiguousarray(o), arrays.TORCH, arrays.device(ref))
            for o in outs
        )
    return outs if len(outs) > 1 else outs[0]


def pruning_pays(M: int, N: int, dim: int) -> bool:
    """Whether :func:`pruned_kmin` is expected to beat the dense reduction
    for M rows, N columns and ``dim`` box coordinates per side.

    >>> pruning_pays(10**6, 10**6, 3), pruning_pays(1000, 1000, 3), pruning_pays(10**6, 10**6, 8)
    (True, False, False)
    """
    return M * N >= 1e8 and 1 <= dim <= 4
