"""Interval arithmetic: the ``interval`` rules of the ops (see :mod:`.base`).

An interval is a pair ``(lo, hi)`` of float64 arrays shaped ``(..., dim)``
(a leading batch: one interval per pair of boxes); a rule maps its
arguments' intervals (dimension-1 arguments broadcast, as the formula) to
the output's. Conventions, read by :mod:`kernelsolve.engine.bounds`:

* ``lo <= f <= hi`` for every value ``f`` the op takes on arguments inside
  their intervals, infinite values included (``hi = inf`` where the op may
  give ``inf``); an argument's value may be infinite only where its own
  interval's endpoint is;
* ``lo = hi = NaN`` says "may be NaN" (anything at all): the rule returns
  it wherever the op can give NaN on arguments inside their intervals
  (``sqrt`` of a negative lower end, ``0 * inf``, ``inf - inf``, ...);
  NaN arguments are handled by the evaluator (the output is NaN too);
* rules compute in exact-arithmetic terms; the evaluator widens each result
  by a few ulps, and :func:`total` adds the rounding error of a sum.

This module holds the building blocks (``add``, ``mul``, ``inv``, ...),
written as the rules of the elementwise ops they are, and the other
elementwise rules; the vector, tensor and complex ops compose them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

INF = np.inf
EPS = float(np.finfo(np.float64).eps)
TWO_PI = 2 * np.pi


def nan_where(mask, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` with ``NaN`` (may be NaN) where ``mask``."""
    if not np.any(mask):  # the common case: no copy
        return lo, hi
    return np.where(mask, np.nan, lo), np.where(mask, np.nan, hi)


def last_sum(a: np.ndarray) -> np.ndarray:
    """The sum over the last axis (keepdims), coordinate after coordinate:
    NumPy's reduction over a short last axis is several times slower."""
    if a.shape[-1] > 16:
        return a.sum(axis=-1, keepdims=True)
    return functools.reduce(np.add, [a[..., k : k + 1] for k in range(a.shape[-1])])


def hull(*pairs) -> tuple[np.ndarray, np.ndarray]:
    """The smallest interval holding all of ``pairs`` (NaN propagates)."""
    return lowest([p[0] for p in pairs]), highest([p[1] for p in pairs])


def lowest(arrays) -> np.ndarray:
    """The elementwise minimum of ``arrays`` (broadcast; NaN propagates)."""
    return functools.reduce(np.minimum, arrays)


def highest(arrays) -> np.ndarray:
    return functools.reduce(np.maximum, arrays)


def constant(x, value: float) -> tuple[np.ndarray, np.ndarray]:
    """The point interval ``[value, value]`` shaped like ``x``'s."""
    v = np.full(np.shape(x[0]), value, dtype=np.float64)
    return v, v


def holds_zero(x) -> np.ndarray:
    return (x[0] <= 0) & (x[1] >= 0)


def unbounded(x) -> np.ndarray:
    """Where the argument may be infinite."""
    return np.isinf(x[0]) | np.isinf(x[1])


def increasing(f: Callable) -> Callable:
    """The rule of a non-decreasing ``f``: its values at the ends."""
    return lambda x: (f(x[0]), f(x[1]))


def decreasing(f: Callable) -> Callable:
    return lambda x: (f(x[1]), f(x[0]))


def domain(rule: Callable, low: float = -INF, high: float = INF) -> Callable:
    """``rule``, and NaN where the argument may leave ``[low, high]``."""

    def guarded(x):
        return nan_where((x[0] < low) | (x[1] > high), *rule(x))

    return guarded


# ----------------------------------------------------------------------------
# Arithmetic
# ----------------------------------------------------------------------------


def neg(x):
    return -x[1], -x[0]


def absolute(x):
    lo, hi = x
    out_lo = np.where(lo >= 0, lo, np.where(hi <= 0, -hi, 0.0))
    return out_lo, np.maximum(np.abs(lo), np.abs(hi))


def even(f: Callable) -> Callable:
    """The rule of an even ``f``, non-decreasing on ``[0, inf]``."""
    return lambda x: increasing(f)(absolute(x))


def add(a, b):
    may_nan = ((a[1] == INF) & (b[0] == -INF)) | ((a[0] == -INF) & (b[1] == INF))
    return nan_where(may_nan, a[0] + b[0], a[1] + b[1])


def sub(a, b):
    return add(a, neg(b))


def mul(a, b):
    corners = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
    lo, hi = lowest(corners), highest(corners)
    # 0 * inf with the 0 inside an interval (no corner shows it)
    may_nan = (holds_zero(a) & unbounded(b)) | (holds_zero(b) & unbounded(a))
    return nan_where(may_nan, lo, hi)


def inv(x):
    signed = (x[0] > 0) | (x[1] < 0)  # 1/(+-0) is +-inf: either sign of zero
    return np.where(signed, 1 / x[1], -INF), np.where(signed, 1 / x[0], INF)


def div(a, b):
    corners = [a[0] / b[0], a[0] / b[1], a[1] / b[0], a[1] / b[1]]
    signed = (b[0] > 0) | (b[1] < 0)
    lo = np.where(signed, lowest(corners), -INF)
    hi = np.where(signed, highest(corners), INF)
    may_nan = (holds_zero(a) & holds_zero(b)) | (unbounded(a) & unbounded(b))
    return nan_where(may_nan, lo, hi)


def square(x):
    return even(np.square)(x)


def total(lo: np.ndarray, hi: np.ndarray, nonneg: bool = False):
    """The interval of the sum of the last axis's terms (keepdims): the sums
    of the ends, each widened by the rounding error of a sum in another
    order (``n eps sum |end|``: rounding is monotone, so a sum of larger
    terms in one order is larger); NaN where one term may be ``+inf`` and
    another ``-inf``. ``nonneg``: the terms are >= 0 (the sum too, rounded)."""
    n = lo.shape[-1]
    finite = bool(np.isfinite(lo).all() and np.isfinite(hi).all())

    def sum_of(ends, sign):
        mags = np.abs(ends) if finite else np.where(np.isfinite(ends), np.abs(ends), 0.0)
        return last_sum(ends) + sign * (n * EPS) * last_sum(mags)

    s_lo, s_hi = sum_of(lo, -1), sum_of(hi, 1)
    if nonneg:
        s_lo = np.maximum(s_lo, 0.0)
    if finite:
        return s_lo, s_hi
    pos, neg_ = hi == INF, lo == -INF
    npos, nneg = pos.sum(axis=-1, keepdims=True), neg_.sum(axis=-1, keepdims=True)
    alone = (npos == 1) & (nneg == 1) & (pos & neg_).any(axis=-1, keepdims=True)
    return nan_where((npos > 0) & (nneg > 0) & ~alone, s_lo, s_hi)


# ----------------------------------------------------------------------------
# Powers
# ----------------------------------------------------------------------------


def power(x, n: int):
    """``x ** n`` for an integer ``n`` (``1 / x ** -n`` below 0)."""
    if n == 0:
        return constant(x, 1.0)
    m = abs(n)
    p = (even if m % 2 == 0 else increasing)(lambda v: v**m)(x)
    return p if n > 0 else inv(p)


def powf(a, b):
    """``a ** b``: for ``a >= 0`` the extremes are at the corners (``a ** b``
    is monotone in each argument once the other is fixed); a negative base
    needs an exact integer exponent (else NaN); a zero base and a negative
    exponent give ``+-inf`` (``(-0) ** -1``)."""
    corners = [a[i] ** b[k] for i in (0, 1) for k in (0, 1)]
    lo, hi = lowest(corners), highest(corners)
    lo = np.where(holds_zero(a) & (b[0] < 0), -INF, lo)
    # an exact integer exponent (not too large for an int power) takes a negative base
    exact = (b[0] == b[1]) & (b[0] == np.round(b[0])) & (np.abs(b[0]) <= 2**20)
    if np.any(exact & (a[0] < 0)):
        for n in np.unique(b[0][np.broadcast_to(exact, b[0].shape)]):
            p_lo, p_hi = power(a, int(n))
            at = exact & (b[0] == n)
            lo, hi = np.where(at, p_lo, lo), np.where(at, p_hi, hi)
    return nan_where((a[0] < 0) & ~exact, lo, hi)


def sqrt(x):
    return domain(increasing(np.sqrt), 0.0)(x)


def rsqrt(x):
    """``1 / sqrt(x)``, 0 at 0: ``[0, inf]`` when 0 is inside."""
    lo, hi = x
    at_zero = lo == 0
    with np.errstate(divide="ignore"):
        out_lo = np.where(at_zero | (hi == 0), 0.0, 1 / np.sqrt(hi))
        out_hi = np.where(at_zero, np.where(hi == 0, 0.0, INF), 1 / np.sqrt(lo))
    return nan_where(lo < 0, out_lo, out_hi)


def xlogx(x):
    """``x log x`` (0 at 0): decreasing to ``-1/e`` at ``1/e``, then increasing."""
    lo, hi = x

    def f(v):
        return np.where(v == 0, 0.0, v * np.log(np.where(v == 0, 1.0, v)))

    f_lo, f_hi = f(lo), f(hi)
    valley = (lo <= np.exp(-1)) & (hi >= np.exp(-1))
    out_lo = np.where(valley, -np.exp(-1), np.minimum(f_lo, f_hi))
    return nan_where(lo < 0, out_lo, np.maximum(f_lo, f_hi))


# ----------------------------------------------------------------------------
# Periodic and other non-monotone functions
# ----------------------------------------------------------------------------


def _reaches(lo, hi, phase: float, period: float = TWO_PI) -> np.ndarray:
    """Whether ``[lo, hi]`` (a hair wider) holds ``phase + k period`` for an integer k."""
    slack = 1e-9 * (1 + np.maximum(np.abs(lo), np.abs(hi)))
    return np.floor((hi + slack - phase) / period) >= np.ceil((lo - slack - phase) / period)


def periodic(f: Callable, peak: float, trough: float) -> Callable:
    """The rule of ``sin`` or ``cos`` (``f``, of period 2 pi, maximum 1 at
    ``peak``, minimum -1 at ``trough``): the values at the ends, and 1 or -1
    where the interval reaches a peak or a trough. ``f(inf)`` is NaN."""

    def rule(x):
        lo, hi = x
        f_lo, f_hi = f(lo), f(hi)
        out_lo = np.where(_reaches(lo, hi, trough), -1.0, np.minimum(f_lo, f_hi))
        out_hi = np.where(_reaches(lo, hi, peak), 1.0, np.maximum(f_lo, f_hi))
        return nan_where(unbounded(x), out_lo, out_hi)

    return rule


sin = periodic(np.sin, np.pi / 2, -np.pi / 2)
cos = periodic(np.cos, 0.0, np.pi)


def tan(x):
    """Increasing between poles; ``[-inf, inf]`` across one."""
    lo, hi = x
    pole = _reaches(lo, hi, np.pi / 2, np.pi) | (hi - lo >= np.pi)
    out_lo, out_hi = np.where(pole, -INF, np.tan(lo)), np.where(pole, INF, np.tan(hi))
    return nan_where(unbounded(x), out_lo, out_hi)


def sinxdivx(x):
    """``sin(x) / x`` (1 at 0), even: decreasing on ``[0, pi]``; beyond ``pi``
    within ``+-1/|x|`` and above its global minimum (-0.2172336... at 4.4934)."""
    m, big = absolute(x)

    def f(v):
        return np.where(v == 0, 1.0, np.sin(v) / np.where(v == 0, 1.0, v))

    f_m, f_big = f(m), f(big)
    beyond = 1 / np.maximum(m, np.pi)
    out_lo = np.where(big <= np.pi, f_big, np.maximum(-0.21723363, -beyond))
    out_hi = np.where(big <= np.pi, f_m, np.maximum(np.where(m < np.pi, f_m, -INF), beyond))
    return nan_where(unbounded(x), out_lo, out_hi)


def atan2(y, x):
    """The angles of the corners where the box avoids the origin and the
    negative real axis (the angle is continuous there), else ``[-pi, pi]``."""
    corners = [np.arctan2(y[i], x[k]) for i in (0, 1) for k in (0, 1)]
    clear = (x[0] > 0) | (y[0] > 0) | (y[1] < 0)
    lo = np.where(clear, lowest(corners), -np.pi)
    return lo, np.where(clear, highest(corners), np.pi)


# ----------------------------------------------------------------------------
# Piecewise, comparisons, selections
# ----------------------------------------------------------------------------


def _indicator(certain, impossible):
    """A 0/1 op: 1 where ``certain``, 0 where ``impossible``, else ``[0, 1]``."""
    lo = np.where(certain, 1.0, 0.0)
    return lo, np.where(impossible, 0.0, 1.0)


def compare(op: str) -> Callable:
    """The rule of the comparison ``op`` (``lt``, ``le``, ``eq``, ...)."""

    def rule(a, b):
        if op in ("gt", "ge"):
            a, b = b, a
        if op in ("lt", "gt"):
            return _indicator(a[1] < b[0], a[0] >= b[1])
        if op in ("le", "ge"):
            return _indicator(a[1] <= b[0], a[0] > b[1])
        point = (a[0] == a[1]) & (b[0] == b[1]) & (a[0] == b[0])
        apart = (a[1] < b[0]) | (b[1] < a[0])
        return _indicator(point, apart) if op == "eq" else _indicator(apart, point)

    return rule


def clamp(x, a, b):
    """``a`` where ``x < a``, else ``b`` where ``x > b``, else ``x``: within
    ``[min(max(x, a), b), max(min(x, b), a)]`` taken at the ends (tight when
    ``a <= b``)."""
    lo = np.minimum(np.maximum(x[0], a[0]), b[0])
    return lo, np.maximum(np.minimum(x[1], b[1]), a[1])


def clampint(x, a: int, b: int):
    return clamp(x, constant(x, a), constant(x, b))


def ifelse(c, a, b):
    """``a`` where the condition is surely ``>= 0``, ``b`` where surely
    ``< 0``, else the hull of both."""
    both = hull(a, b)
    lo = np.where(c[0] >= 0, a[0], np.where(c[1] < 0, b[0], both[0]))
    return lo, np.where(c[0] >= 0, a[1], np.where(c[1] < 0, b[1], both[1]))


def mod(x, n, d):
    """Loose: the op's range ``[d, d + n]`` (``n > 0``) or ``[d + n, d]``
    (``n < 0``), widened by the floor's rounding (a quotient rounded up to an
    integer moves the result by one period's rounding); NaN where ``n`` may
    be 0 or ``x`` infinite."""
    scale = [np.maximum(np.abs(v[0]), np.abs(v[1])) for v in (x, n, d)]
    slack = 8 * EPS * highest(scale)
    pos = n[0] > 0
    lo = np.where(pos, d[0], d[0] + n[0]) - slack
    hi = np.where(pos, d[1] + n[1], d[1]) + slack
    return nan_where(holds_zero(n) | unbounded(x) | unbounded(n) | unbounded(d), lo, hi)


def rounded(x, decimals: int):
    """``round`` is non-decreasing (half to even included)."""
    return increasing(lambda v: np.round(v, decimals) if decimals else np.round(v))(x)


def step(x):
    return increasing(lambda v: np.where(v >= 0, 1.0, 0.0))(x)


def sign(x):
    return increasing(np.sign)(x)


def relu(x):
    return increasing(lambda v: np.maximum(v, 0.0))(x)
