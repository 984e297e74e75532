"""The log-sum-exp family with ``tol=``: ``logsumexp``, its weighted form
and ``sumsoftmaxweight`` over the block pairs that the bounds of exp(F)
cannot excuse (:class:`.approx_bounds.PairBounds`, kind ``"exp"``).

The skipped pairs of every row hold at most ``tol`` of ``S_i = sum_j
exp(F_ij)`` (per coordinate for a vector F): the computed sum ``S~`` is in
``[(1 - tol) S, S]``. Hence, per reduction (exact arithmetic; the float
rounding of the sums comes on top):

* ``logsumexp``: ``log S - log S~ <= -log(1 - tol)`` (about ``tol``);
* ``logsumexp`` with weight ``w``: the inner sum ``sum_j exp(F_ij) w_ij`` is
  within ``tol * max_j |w_ij| * S_i`` of the exact one (so, for weights
  ``>= c > 0``, the log is within ``-log(1 - tol max|w| / c)``);
* ``sumsoftmaxweight``: within ``2 tol / (1 - tol) * max_j |w_ij|`` of the
  exact weighted mean.
"""

from __future__ import annotations

from ..request import ReductionRequest
from .approx import clusters, default_interval, pair_info, sparse_reduce, unpermuted
from .approx_bounds import PairBounds
from .prune import host_leaves

__all__ = ["SOFTMAX_FAMILY", "approx_softmax"]

#: The reductions :func:`approx_softmax` runs.
SOFTMAX_FAMILY = ("logsumexp", "logsumexp_weight", "sumsoftmaxweight")


def approx_softmax(request: ReductionRequest, tol: float, *, cluster_size: int = 64):
    """``request`` (a reduction of :data:`SOFTMAX_FAMILY` over j, dense, its
    i- and j-variables host arrays shaped (n, d)) within ``tol`` as the
    module docstring states. Returns ``(out, info)`` as
    :func:`.approx.approx_sum`.

    Example
    -------
    >>> import numpy as np
    >>> from kernelsolve.engine import ir
    >>> x = np.linspace(0, 1, 400)[:, None]
    >>> F = ir.make("neg", ir.make("mul", ir.const(1e3),
    ...             ir.make("sqdist", ir.var(0, ir.I, 1), ir.var(1, ir.J, 1))))
    >>> r = ReductionRequest(F, "logsumexp", (x, x), (ir.I, ir.J))
    >>> out, info = approx_softmax(r, 1e-6, cluster_size=8)
    >>> out.shape, info["skipped_blocks"] > 0.5
    ((400, 1), True)
    """
    if request.reduction not in SOFTMAX_FAMILY or request.axis != 1:
        raise ValueError(
            f"approx_softmax runs {SOFTMAX_FAMILY} over j, got {request.reduction!r} "
            f"(axis={request.axis})"
        )
    formula, leaves, cats = request.formula, tuple(request.arguments), tuple(request.cats)
    gi, bi, gj, bj = clusters(formula, leaves, cats, cluster_size, request.reduction)
    interval = default_interval(formula, leaves, cats)
    bounds = PairBounds(bi, bj, gi, gj, interval, formula.dim, float(tol), kind="exp")
    rows, cols = bounds.kept()
    host = host_leaves(leaves, cats, gi.perm, gj.perm)
    total = sparse_reduce(request, host, gi, gj, rows, cols)
    return unpermuted(total, gi.perm, leaves, cats), pair_info(gi.ranges, gj.ranges, rows, cols)
