"""Exact nearest neighbours at sub-quadratic cost: block pruning by bounds.

:func:`pruned_kmin` computes ``Kmin`` / ``argKmin`` / ``Kmin_argKmin`` /
``min`` / ``argmin`` / ``min_argmin`` over j of a scalar formula, with
results identical to the dense reduction (values, indices, ties and NaN
included), evaluating only the block pairs that can hold one of the K best
columns of a row: :func:`~.prune.prune_plan` clusters the points on a grid
and keeps those pairs from a pluggable bound ``interval(boxes_i, boxes_j)``;
then ONE block-sparse reduction of ``Kmin_argKmin`` with K + 1 slots runs
on the permuted points, and indices are mapped back to the original order.

Exactness. The dense result is the first K columns of a row in the order
(value ascending, NaN last; then original index). Every column whose value
is ``<= v_K`` (the dense K-th value) lies in a kept block (the pruned ones
hold only values above a threshold ``T >= v_K``), so the dense answer is
the first K of the kept columns in that order. The kernel ranks the kept
columns by value and breaks ties by its own (permuted) index, so its set of
K is right whenever the (K+1)-th kept value differs from the K-th (or does
not exist): those rows are sorted by (value, original index) and done. A
row whose K-th and (K+1)-th values tie (NaN and NaN included) may have lost
a tied column of lower original index: those rows, and for ``min`` /
``argmin`` every row whose cluster keeps a block with a NaN bound (``min``
returns the *first* NaN, which K + 1 slots that sort NaN last cannot see),
are recomputed by :func:`_ordered`: a block-sparse reduction of the
requested reduction itself over the kept columns of their cluster gathered
in ascending original order, so that the kernel's own tie rule (lowest
index first, first NaN) is the dense one. NaN never gets pruned: a bound
that is NaN keeps its block, and F can only be NaN where the bound is.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import arrays, dispatch, ir
from ..request import DEFAULT_OPTIONS, ReductionOptions, ReductionRequest
from .prune import PrunePlan, host_leaves, prune_plan

__all__ = ["formula_bound", "point_count", "pruned_kmin", "pruning_pays", "reduce_pruned"]

# reduction names accepted (pykeops' and the engine's) -> (engine name, K-min family)
_NAMES = {
    "argkmin": ("argkmin", True),
    "kmin": ("kmin", True),
    "kmin_argkmin": ("kmin_argkmin", True),
    "argmin": ("argmin", False),
    "min": ("min", False),
    "min_argmin": ("min_argmin", False),
}


def pruned_kmin(
    formula: ir.Node,
    leaves: tuple,
    cats: tuple,
    K: int = 1,
    *,
    reduction: str = "argKmin",
    interval: Callable,
    cluster_size: int = 64,
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
        :class:`~.prune.Boxes` (``boxes.of(k)``: the box coordinates of leaf k):
        ``lo <= F <= hi`` over each pair of boxes, NaN where F may be NaN.
    cluster_size, cells:
        The grid of :func:`~.prune.grid_boxes`: points per cell on uniform
        data (64, measured best on 3-D points), or the cell side.
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
    in the leaves' library and device. The reductions run on the host (CPU
    target, or the reference without a compiler); values carry no autograd
    graph. ``K >= N`` (nothing to prune) runs the dense reduction.

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
    M, N = (point_count(leaves, cats, c) for c in (ir.I, ir.J))
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


def point_count(leaves, cats, cat: int) -> int:
    """The number of points of the variables of category ``cat``."""
    for x, c in zip(leaves, cats):
        if c == cat:
            shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
            return int(shape[-2]) if len(shape) >= 2 else 0
    side = "i" if cat == ir.I else "j"
    raise ValueError(f"pruned_kmin: the formula has no {side}-variable")


def _fast(request: ReductionRequest, plan: PrunePlan, K: int):
    """The K + 1 smallest of every row over the kept blocks, on the permuted
    points: ``(values, original indices, redo)`` for the rows in permuted
    order, the first K sorted by (value, original index); ``redo`` marks the
    rows whose K-th and (K+1)-th values tie (their set of K is uncertain)."""
    leaves = host_leaves(request.arguments, request.cats, plan.perm_i, plan.perm_j)
    ranges = plan.ranges()
    req = request._replace(reduction="kmin_argkmin", K=K + 1, arguments=leaves, ranges=ranges)
    v, j = (
        np.asarray(arrays.to_host(a)).reshape(len(plan.perm_i), K + 1)
        for a in dispatch.reduce(req)
    )
    N = len(plan.perm_j)
    tie = (v[:, 1:] == v[:, :-1]) | (np.isnan(v[:, 1:]) & np.isnan(v[:, :-1]))
    redo = tie[:, K - 1] & (j[:, K] >= 0)
    # one gather; index -1 (an empty slot) reads the appended -1
    orig = np.append(plan.perm_j, -1)[j[:, :K]]
    v = v[:, :K]
    # the kernel sorted by value: only runs of equal values need the original order
    rows = np.flatnonzero(tie[:, : K - 1].any(axis=1))
    if len(rows):
        vr, jr = v[rows], orig[rows]
        # empty slots (index -1) rank after every column, +inf values included
        order = np.lexsort((np.where(jr >= 0, jr, N), vr), axis=-1)
        v[rows], orig[rows] = (np.take_along_axis(a, order, 1) for a in (vr, jr))
    return v, orig, redo


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
        segs = plan.ranges_j[plan.cols_of(a)]
        picked = [plan.perm_j[s:e] for s, e in segs]
        cand.append(np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64))
    seg_len = np.array([len(c) for c in cand], dtype=np.int64)
    cand_all = np.concatenate(cand) if cand else np.zeros(0, np.int64)
    ends_j, ends_i = np.cumsum(seg_len), np.cumsum(counts)
    red_j = np.stack([ends_j - seg_len, ends_j], axis=1)
    rng_i = np.stack([ends_i - counts, ends_i], axis=1)
    slices = np.arange(1, len(clusters) + 1, dtype=np.int64)
    ranges = (rng_i, slices, red_j, red_j, slices, rng_i)
    leaves = host_leaves(request.arguments, request.cats, plan.perm_i[rows], cand_all)
    name = "kmin_argkmin" if K else "min_argmin"
    req = request._replace(reduction=name, K=K or None, arguments=leaves, ranges=ranges)
    k = max(K, 1)
    v, j = (np.asarray(arrays.to_host(a)).reshape(len(rows), k) for a in dispatch.reduce(req))
    return v, np.append(cand_all, -1)[j]


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


def formula_bound(formula: ir.Node, leaves, cats) -> Callable:
    """The ``interval`` of :func:`pruned_kmin` for a scalar ``formula`` over j,
    read from the ops' interval rules (:func:`..bounds.formula_interval`), the
    parameters exact: ``interval(boxes_i, boxes_j) -> (lo, hi)`` of shape
    ``(n_ci, n_cj)``, NaN where F may be NaN.

    >>> from .prune import Boxes
    >>> x, y = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)
    >>> f = ir.make("sqdist", x, y)
    >>> bi = Boxes(np.array([[0.0]]), np.array([[1.0]]), {0: slice(0, 1)})
    >>> bj = Boxes(np.array([[3.0], [0.5]]), np.array([[4.0], [2.0]]), {1: slice(0, 1)})
    >>> [np.round(a, 6).tolist() for a in formula_bound(f, (None, None), (ir.I, ir.J))(bi, bj)]
    [[[4.0, 0.0]], [[16.0, 4.0]]]
    """
    from ..bounds import formula_interval  # the ops' interval rules (engine layer)

    params = {
        k: arrays.to_host(x) if arrays.is_array(x) else np.asarray(x, dtype=np.float64)
        for k, (x, c) in enumerate(zip(leaves, cats))
        if c == ir.P
    }

    def interval(bi, bj):
        boxes = []
        for k, c in enumerate(cats):
            side = bi if c == ir.I else bj
            if c == ir.P:
                boxes.append(params[k])
            else:
                boxes.append(side.of(k) if k in side.slices else None)
        lo, hi = formula_interval(formula, boxes, cats)
        return lo[..., 0], hi[..., 0]

    return interval


def reduce_pruned(request: ReductionRequest, interval: Callable | None = None, **kw):
    """``request``'s result by :func:`pruned_kmin` when it is eligible and
    :func:`pruning_pays` says so, else None (the caller runs it dense).

    Eligible: a K-min, min or argmin reduction (over i or j: over i is
    transposed), no ``ranges``, a scalar formula, i- and j-variables shaped
    (n, d) on the host (NumPy or torch CPU without ``requires_grad``), a
    target other than CUDA. ``interval`` is the bound of the reduction over
    j (i-boxes first; None: :func:`formula_bound`, from the ops' interval
    rules); ``kw`` go to :func:`pruned_kmin`.

    >>> x = np.random.default_rng(0).random((50, 2))
    >>> r = ReductionRequest(ir.var(0, ir.I, 1), "argkmin", (x, x), (ir.I, ir.J), K=3)
    >>> reduce_pruned(r, interval=None) is None  # 50 x 50: dense is cheaper
    True
    """
    if request.reduction not in _NAMES or request.ranges is not None:
        return None
    if request.axis not in (0, 1) or (request.options.target or "") == "cuda":
        return None
    req = request.over_j()
    if req.formula.dim != 1 or req.weight is not None:
        return None
    K = req.K if req.K is not None else 1
    if not isinstance(K, (int, np.integer)) or isinstance(K, bool) or K < 1:
        return None  # the dense path words the error
    used = {req.cats[v.attrs[0]] for v in ir.variables(req.formula)}
    if not {ir.I, ir.J} <= used:  # boxes on both sides, or nothing to prune
        return None
    dims = {ir.I: 0, ir.J: 0}
    for x, c in zip(req.arguments, req.cats):
        if c == ir.P:
            continue
        if not arrays.is_array(x) or len(x.shape) != 2 or arrays.device(x) != "cpu":
            return None
        if getattr(x, "requires_grad", False):
            return None
        dims[c] += int(x.shape[1])
    M, N = point_count(req.arguments, req.cats, ir.I), point_count(req.arguments, req.cats, ir.J)
    if M == 0 or K >= N or not pruning_pays(M, N, max(dims.values())):
        return None  # (K >= N: every column is needed; dispatch.reduce runs it dense)
    if interval is None:
        interval = formula_bound(req.formula, req.arguments, req.cats)
    return pruned_kmin(
        req.formula, req.arguments, req.cats, req.K or 1, reduction=req.reduction,
        interval=interval, options=req.options, **kw,
    )  # fmt: skip


def pruning_pays(M: int, N: int, dim: int) -> bool:
    """Whether :func:`pruned_kmin` is expected to beat the dense reduction
    for ``M`` rows, ``N`` columns and ``dim`` box coordinates per side (the
    i-variables' dimensions added up).

    Measured (argKmin, K = 10, uniform float32 points, M = N, 2-core Xeon,
    AVX-512; pruned time includes the plan, with the provisional box bound of
    squared distances; dense / pruned): 1-D 0.9x at 3e3, 8.7x at 3e4; 2-D
    0.6x at 3e3, 1.3x at 1e4, 5.6x at 3e4; 3-D 0.7x at 3e3, 1.6x at 1e4,
    4.0x at 3e4, 22x at 2e5, 56x at 1e6; 4-D 3.0x at 3e4, 6.5x at 1e5; 5-D
    2.6x at 1e5; 6-D 0.74x at 1e5. Hence: ``M * N >= 1e8`` up to 3
    coordinates, ``>= 1e9`` for 4 and 5, never above 5.

    >>> pruning_pays(10**6, 10**6, 3), pruning_pays(1000, 1000, 3), pruning_pays(10**6, 10**6, 8)
    (True, False, False)
    """
    if not 1 <= dim <= 5:
        return False
    return M * N >= (1e8 if dim <= 3 else 1e9)
