"""One block-sparse pattern for all products with a kernel matrix: the
``tol=`` of the solvers, where a CG run makes hundreds of products ``K @ v``
with the same points and needs the same (symmetric) operator each time.

:class:`ApproxKernel` picks the block pairs once, from the kernel ``K_ij =
F(x_i, y_j)`` alone: per row cluster, the skipped pairs hold at most ``tol``
of ``sum_j |K_ij|`` (the bounds of :class:`.approx_bounds.PairBounds`, the
lower bound raised by one block-sparse sum of ``|K|`` over the pairs that
are kept whatever it is). Every product is then one block-sparse reduction,
with the guarantee, for any ``v``::

    |(K~ v)_i - (K v)_i| <= tol * max_j |v_j| * sum_j |K_ij|

When both sides are the same points (``K(x, x)``), the pattern is made
symmetric (a pair kept with its mirror), so that ``K~`` is symmetric too, as
CG needs.
"""

from __future__ import annotations

import numpy as np

from .. import arrays, dispatch, ir
from ..request import DEFAULT_OPTIONS, ReductionOptions, ReductionRequest
from .approx import (
    clusters,
    default_interval,
    deflated_min,
    pair_info,
    sparse_reduce,
    unpermuted,
)
from .approx_bounds import PairBounds
from .prune import host_leaves, sparse_ranges

__all__ = ["ApproxKernel"]


class ApproxKernel:
    """``K @ V`` over a fixed block-sparse pattern within ``tol`` (module docstring).

    Parameters
    ----------
    formula : ir.Node
        The scalar kernel F of i- and j-variables (and parameters).
    leaves, cats :
        The arrays bound to its variables (host arrays shaped (n, d)) and
        their categories.
    tol : float
        The share of ``sum_j |K_ij|`` the skipped pairs may hold, > 0.
    options : ReductionOptions, optional
        Target and accumulation of the products.

    Attributes
    ----------
    info : dict
        ``skipped_pairs``, ``skipped_blocks`` (fractions) and ``blocks``.

    Example
    -------
    >>> x = np.random.default_rng(0).random((3000, 2))
    >>> F = ir.make("exp", ir.make("neg", ir.make("mul", ir.const(1e4),
    ...             ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2)))))
    >>> K = ApproxKernel(F, (x, x), (ir.I, ir.J), 1e-8)
    >>> K.matmat(np.ones((3000, 1))).shape, K.info["skipped_pairs"] > 0.5
    ((3000, 1), True)
    """

    def __init__(
        self, formula: ir.Node, leaves, cats, tol: float,
        options: ReductionOptions = DEFAULT_OPTIONS,
    ):  # fmt: skip
        if formula.dim != 1:
            raise ValueError(f"ApproxKernel: the kernel must be scalar, not dim {formula.dim}")
        if not tol > 0:
            raise ValueError(f"ApproxKernel: tol must be > 0, got {tol!r}")
        leaves, cats = tuple(leaves), tuple(cats)
        self.formula, self.cats, self.options = formula, cats, options._replace(tol=None)
        gi, bi, gj, bj = clusters(formula, leaves, cats, 64, "K.solve(tol=)")
        bounds = PairBounds(bi, bj, gi, gj, default_interval(formula, leaves, cats), 1, tol)
        self.host = host_leaves(leaves, cats, gi.perm, gj.perm)
        core_r, core_c, L0 = bounds.core()
        request = ReductionRequest(ir.make("abs", formula), "sum", self.host, cats, 1,
                                   options=self.options)  # fmt: skip
        partial = sparse_reduce(request, self.host, gi, gj, core_r, core_c)
        L = np.maximum(L0, deflated_min(partial, gi.ranges, len(gj.perm)))
        rows, cols, _ = bounds.kept_with_core(L)
        if gi is gj:  # K(x, x): the mirror of every kept pair too
            pairs = np.unique(np.r_[rows * len(gj.ranges) + cols, cols * len(gj.ranges) + rows])
            rows, cols = pairs // len(gj.ranges), pairs % len(gj.ranges)
        self.gi, self.gj = gi, gj
        self.ranges = sparse_ranges(gi.ranges, gj.ranges, rows, cols)
        self.info = pair_info(gi.ranges, gj.ranges, rows, cols)
        self.leaves = leaves  # the caller's arrays: the library of the results

    def matmat(self, V):
        """``K~ @ V`` for ``V`` shaped (n, k) or (n,), in V's library."""
        vector = V.ndim == 1
        Vh = np.asarray(arrays.to_host(V))
        Vh = Vh[:, None] if vector else Vh
        f = ir.make("mul", self.formula, ir.var(len(self.cats), ir.J, Vh.shape[1]))
        leaves = self.host + (np.ascontiguousarray(Vh[self.gj.perm]),)
        request = ReductionRequest(f, "sum", leaves, self.cats + (ir.J,), 1,
                                   options=self.options, ranges=self.ranges)  # fmt: skip
        total = np.asarray(arrays.to_host(dispatch.reduce(request)))
        out = unpermuted(total, self.gi.perm, self.leaves, self.cats)
        return out[:, 0] if vector else out
