"""``tol=`` on a reduction: :func:`reduce_approx` runs a sum-type request
whose options carry a tolerance by :func:`.approx.approx_sum` or
:func:`.approx_lse.approx_softmax`, and :func:`approximation_report`
collects what they skipped.

Guarantees (exact arithmetic; the float rounding of the sums comes on top):

* ``sum`` (and ``K @ v``): ``|approx_i - exact_i| <= tol * sum_j |F_ij|``
  per coordinate, F the summed formula (``K_ij v_j`` for ``K @ v``);
* ``logsumexp``: within ``-log(1 - tol)`` of the exact log (about ``tol``);
* ``logsumexp`` with weight, ``sumsoftmaxweight``: see :mod:`.approx_lse`.

Below :data:`MIN_PAIRS` point pairs the dense reduction runs (cheaper than
clustering, and exact); the report then counts the call with nothing skipped.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from numbers import Real

from .. import arrays, dispatch, ir
from ..request import ReductionRequest
from .approx import approx_sum
from .approx_lse import SOFTMAX_FAMILY, approx_softmax
from .knn import point_count

__all__ = [
    "APPROXIMABLE",
    "ApproxReport",
    "MIN_PAIRS",
    "approximation_report",
    "check_tol",
    "reduce_approx",
]

#: The reductions that take ``tol=``.
APPROXIMABLE = frozenset(("sum",) + SOFTMAX_FAMILY)

#: Fewer point pairs than this: the dense reduction (clustering would cost more).
MIN_PAIRS = 1 << 20


def check_tol(tol, name: str = "tol"):
    """``tol`` as a float in [0, 1), or None; a ValueError naming ``name`` otherwise.

    >>> check_tol(1e-6), check_tol(None)
    (1e-06, None)
    """
    if tol is None:
        return None
    if isinstance(tol, bool) or not isinstance(tol, Real) or not 0 <= float(tol) < 1:
        raise ValueError(
            f"{name}={tol!r}: expected None (exact) or a number in [0, 1): the error "
            "allowed relative to sum_j |F_ij|"
        )
    return float(tol)


@dataclass
class ApproxReport:
    """What the approximate reductions run inside :func:`approximation_report`
    skipped: ``calls``, and point pairs ``pairs`` in all, ``skipped`` of them."""

    calls: int = 0
    pairs: float = 0.0
    skipped: float = 0.0
    records: list = field(default_factory=list, repr=False)

    @property
    def skipped_fraction(self) -> float:
        """The fraction of the point pairs not evaluated (0.0 with no calls)."""
        return self.skipped / self.pairs if self.pairs else 0.0

    def add(self, info: dict, pairs: float) -> None:
        self.calls += 1
        self.pairs += pairs
        self.skipped += info.get("skipped_pairs", 0.0) * pairs
        if len(self.records) < 1000:
            self.records.append(dict(info, pairs=pairs))


_REPORTS: contextvars.ContextVar = contextvars.ContextVar("kernelsolve_approx", default=())


@contextlib.contextmanager
def approximation_report():
    """Collect what the reductions with ``tol=`` skip inside the block.

    Example
    -------
    >>> import numpy as np
    >>> from kernelsolve import Vi, Vj
    >>> x = np.random.default_rng(0).random((2000, 2))
    >>> K = (-Vi(x).sqdist(Vj(x)) * 1e4).exp()
    >>> with approximation_report() as report:
    ...     s = K.sum(1, tol=1e-6)
    >>> report.calls, report.skipped_fraction > 0.5
    (1, True)
    """
    report = ApproxReport()
    token = _REPORTS.set(_REPORTS.get() + (report,))
    try:
        yield report
    finally:
        _REPORTS.reset(token)


def _record(info: dict, pairs: float) -> None:
    for report in _REPORTS.get():
        report.add(info, pairs)


def reduce_approx(request: ReductionRequest):
    """``request`` (dense, a reduction of :data:`APPROXIMABLE`, ``options.tol``
    set) within its tolerance (module docstring); over i it is transposed."""
    tol = check_tol(request.options.tol)
    exact = request._replace(options=request.options._replace(tol=None))
    req = exact.over_j()
    used = {req.cats[v.attrs[0]] for v in ir.variables(req.formula)}
    if req.weight is not None:
        used |= {req.cats[v.attrs[0]] for v in ir.variables(req.weight)}
    both = {ir.I, ir.J} <= used
    M, N = (point_count(req.arguments, req.cats, c) if both else 0 for c in (ir.I, ir.J))
    if not tol or not both or M * N < MIN_PAIRS:
        _record({"skipped_pairs": 0.0, "skipped_blocks": 0.0}, float(M) * N)
        return dispatch.reduce(exact)
    _check_host(req)
    if req.reduction == "sum":
        out, info = approx_sum(req.formula, req.arguments, req.cats, tol, options=req.options)
    else:
        out, info = approx_softmax(req, tol)
    _record(info, float(M) * N)
    return out


def _check_host(req: ReductionRequest) -> None:
    """tol= clusters the points on the host: host arrays shaped (n, d)."""
    if (req.options.target or "") == "cuda":
        raise ValueError("tol= runs on the CPU target: use backend='CPU' or tol=None")
    for k, (x, c) in enumerate(zip(req.arguments, req.cats)):
        if c == ir.P or not arrays.is_array(x):
            continue
        if arrays.device(x) != "cpu":
            raise ValueError(
                f"tol= clusters the points on the host: arguments[{k}] is on {arrays.device(x)}; "
                "move the arrays to the CPU or use tol=None (exact)"
            )
        if len(x.shape) != 2:
            raise ValueError(
                f"tol= needs i- and j-variables shaped (n, d), without batch dimensions: "
                f"arguments[{k}] has shape {tuple(x.shape)}"
            )
