"""Elementwise ops: each output coordinate from the same coordinate of each
argument (dimension-1 arguments broadcast). One declaration per op: dim rule,
C, NumPy, VJP, JVP, interval rule (:mod:`.interval`; tight unless the op's
doc says otherwise) and LazyTensor method (see :mod:`.base`). A unary op's
Jacobian is diagonal, so its JVP is its VJP rule applied to the tangent
(:func:`.derivatives.self_adjoint`); the n-ary ops declare theirs from their
partial derivatives (:func:`.derivatives.linear`), with the same conventions
at non-differentiable points as their VJP.

Conventions at non-differentiable points (measure zero): ``step``, ``sign``,
``floor``, ``round`` and the comparisons have derivative 0; ``abs`` has
``sign(x)`` (0 at 0); ``relu`` has ``x > 0``; ``clamp(x, a, b)`` gives ``x``
the cotangent where ``a <= x <= b``, ``a`` where ``x < a``, ``b`` where
``x > b`` (and ``x >= a``); ``mod(x, n, d) = x - n floor((x - d) / n)`` has
``dx = 1``, ``dn = -floor((x - d) / n)``, ``dd = 0``; ``ifelse(c, a, b)``
gives ``a`` the cotangent where ``c >= 0``, ``b`` where ``c < 0``, nothing to
``c``. ``sqrt``, ``log``, ``inv``, ``div``, ``powf`` and ``xlogx`` are
singular (inf/NaN) where their derivative is. ``sinxdivx``'s derivative
``(cos x - sinc x) / x`` is selected away at exactly 0, where it is 0 (its
own derivatives, second order on, stay NaN there).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..ir import const, make
from . import dims
from . import interval as iv
from .base import Op, declare, no_gradient, no_tangent
from .derivatives import added, chain, linear, masked, self_adjoint


def _unary(
    name: str, *, c, numpy, vjp, interval, doc: str, method: str = "", nattrs: int = 0
) -> Op:
    """Declare a unary elementwise op (its LazyTensor method: ``method``, else
    ``name``); its JVP is its VJP on the tangent (diagonal Jacobian)."""
    jvp = no_tangent if vjp is no_gradient else self_adjoint(vjp)
    op = Op(name, 1, dims.keep, c, numpy, vjp, method or name, True, nattrs, doc, jvp, interval)
    return declare(op)


def _nary(name: str, arity: int, *, c, numpy, vjp, jvp, interval, doc: str, method="") -> Op:
    """Declare a binary or ternary elementwise op."""
    op = Op(
        name, arity, dims.elementwise, c, numpy, vjp, method or name, True, 0, doc, jvp, interval
    )
    return declare(op)


def _libm(name: str) -> Callable:
    """``c`` of a unary op that is one libm call (``sinf`` for float)."""
    return lambda e, a: f"{e.fn(name)}({a})"


# ----------------------------------------------------------------------------
# NumPy semantics that differ from the plain ufunc (same as the C)
# ----------------------------------------------------------------------------


def _np_rsqrt(a):
    # pykeops' convention: rsqrt(0) = 0, which makes normalize(0) = 0
    safe = np.where(a == 0, 1, a)
    return np.where(a == 0, 0, 1 / np.sqrt(safe))


def _np_sinxdivx(a):
    safe = np.where(a == 0, 1, a)
    return np.where(a == 0, 1, np.sin(safe) / safe)


def _np_xlogx(a):
    safe = np.where(a == 0, 1, a)
    return np.where(a == 0, 0, a * np.log(safe))


def _np_sign(a):
    # NaN stays NaN, +-0 stays +-0
    return np.where(a > 0, 1, np.where(a < 0, -1, a)).astype(a.dtype)


def _np_step(a):
    return np.where(a < 0, 0, np.where(a >= 0, 1, a)).astype(a.dtype)


def _np_relu(a):
    return np.where(a < 0, 0, a).astype(a.dtype)


def _np_pow(a, n):
    return a**n if n >= 0 else 1 / a ** (-n)


def _np_round(a, d):
    return np.round(a, d) if d else np.round(a)


def _np_clampint(x, a, b):
    return np.where(x < a, a, np.where(x > b, b, x)).astype(x.dtype)


def _np_compare(f):
    return lambda a, b: f(a, b).astype(np.result_type(a, b))


# ----------------------------------------------------------------------------
# Unary
# ----------------------------------------------------------------------------


def _c_pow(e, a, n):
    T = e.T
    if n == 0:
        return f"(({T})1)"
    m = abs(n)
    expr = f"({' * '.join([a] * m)})" if m <= 8 else f"{e.fn('pow')}({a}, ({T}){m})"
    return expr if n > 0 else f"(({T})1 / {expr})"


def _c_round(e, a, d):
    if d == 0:
        return f"{e.fn('nearbyint')}({a})"
    s = e.lit(10.0**d)
    return f"({e.fn('nearbyint')}({a} * {s}) / {s})"


def _c_clampint(e, x, lo, hi):
    lo, hi = e.lit(lo), e.lit(hi)
    return f"({x} > {hi} ? {hi} : {x})", lambda t: f"({x} < {lo} ? {lo} : {t})"


def _vjp_pow(node, g, x):
    (n,) = node.attrs
    return (make("mul", make("mul", const(n), g), make("pow", x, attrs=(n - 1,))),)


def _vjp_clampint(node, g, x):
    a, b = node.attrs
    return (masked(g, make("ge", x, const(a)), make("le", x, const(b))),)


def _vjp_rsqrt(node, g, x):
    # d x^(-1/2) = -1/2 x^(-3/2) = -1/2 rsqrt(x)^3 (0 where rsqrt(x) = 0)
    return (make("mul", make("mul", const(-0.5), g), make("pow", node, attrs=(3,))),)


def _sinxdivx_derivative(node, x):
    # 0 where -|x| >= 0 (x == 0), where the quotient is 0 / 0
    quotient = make("div", make("sub", make("cos", x), node), x)
    return make("ifelse", make("neg", make("abs", x)), const(0), quotient)


def _rsqrt_of_one_minus_square(x):
    return make("rsqrt", make("sub", const(1), make("square", x)))


_unary(
    "neg",
    c=lambda e, a: f"(-{a})",
    numpy=np.negative,
    vjp=lambda n, g, x: (make("neg", g),),
    interval=iv.neg,
    doc="Negation ``-x``.",
    method="__neg__",
)
_unary(
    "abs",
    c=_libm("fabs"),
    numpy=np.abs,
    vjp=lambda n, g, x: (make("mul", g, make("sign", x)),),
    interval=iv.absolute,
    doc="Absolute value ``|x|``.",
)
_unary(
    "exp",
    c=lambda e, a: f"{e.exp}({a})",
    numpy=np.exp,
    vjp=chain(lambda n, x: n),
    interval=iv.increasing(np.exp),
    doc="Elementwise ``exp(x)``.",
)
_unary(
    "log",
    c=lambda e, a: f"{e.log}({a})",
    numpy=np.log,
    vjp=lambda n, g, x: (make("div", g, x),),
    interval=iv.domain(iv.increasing(np.log), 0.0),
    doc="Natural logarithm ``log(x)``.",
)
_unary(
    "xlogx",
    c=lambda e, a: f"({a} == 0 ? ({e.T})0 : {a} * {e.log}({a}))",
    numpy=_np_xlogx,
    vjp=chain(lambda n, x: make("add", make("log", x), const(1))),
    interval=iv.xlogx,
    doc="``x * log(x)``, 0 at 0.",
)
_unary(
    "inv",
    c=lambda e, a: f"(({e.T})1 / {a})",
    numpy=lambda a: 1 / a,
    vjp=lambda n, g, x: (make("neg", make("mul", g, make("square", n))),),
    interval=iv.inv,
    doc="Inverse ``1 / x``.",
)
_unary(
    "sin",
    c=_libm("sin"),
    numpy=np.sin,
    vjp=chain(lambda n, x: make("cos", x)),
    interval=iv.sin,
    doc="Sine.",
)
_unary(
    "cos",
    c=_libm("cos"),
    numpy=np.cos,
    vjp=chain(lambda n, x: make("neg", make("sin", x))),
    interval=iv.cos,
    doc="Cosine.",
)
_unary(
    "tan",
    c=_libm("tan"),
    numpy=np.tan,
    vjp=chain(lambda n, x: make("add", const(1), make("square", n))),
    interval=iv.tan,
    doc="Tangent.",
)
_unary(
    "asin",
    c=_libm("asin"),
    numpy=np.arcsin,
    vjp=chain(lambda n, x: _rsqrt_of_one_minus_square(x)),
    interval=iv.domain(iv.increasing(np.arcsin), -1.0, 1.0),
    doc="Arcsine.",
)
_unary(
    "acos",
    c=_libm("acos"),
    numpy=np.arccos,
    vjp=chain(lambda n, x: make("neg", _rsqrt_of_one_minus_square(x))),
    interval=iv.domain(iv.decreasing(np.arccos), -1.0, 1.0),
    doc="Arccosine.",
)
_unary(
    "atan",
    c=_libm("atan"),
    numpy=np.arctan,
    vjp=chain(lambda n, x: make("inv", make("add", const(1), make("square", x)))),
    interval=iv.increasing(np.arctan),
    doc="Arctangent.",
)
_unary(
    "tanh",
    c=_libm("tanh"),
    numpy=np.tanh,
    vjp=chain(lambda n, x: make("sub", const(1), make("square", n))),
    interval=iv.increasing(np.tanh),
    doc="Hyperbolic tangent.",
)
_unary(
    "sinh",
    c=_libm("sinh"),
    numpy=np.sinh,
    vjp=chain(lambda n, x: make("cosh", x)),
    interval=iv.increasing(np.sinh),
    doc="Hyperbolic sine.",
)
_unary(
    "cosh",
    c=_libm("cosh"),
    numpy=np.cosh,
    vjp=chain(lambda n, x: make("sinh", x)),
    interval=iv.even(np.cosh),
    doc="Hyperbolic cosine.",
)
_unary(
    "sqrt",
    c=_libm("sqrt"),
    numpy=np.sqrt,
    vjp=lambda n, g, x: (make("div", g, make("mul", const(2), n)),),
    interval=iv.sqrt,
    doc="Square root.",
)
_unary(
    "rsqrt",
    c=lambda e, a: f"({a} == 0 ? ({e.T})0 : ({e.T})1 / {e.fn('sqrt')}({a}))",
    numpy=_np_rsqrt,
    vjp=_vjp_rsqrt,
    interval=iv.rsqrt,
    doc="``1 / sqrt(x)``, and 0 at 0 (pykeops' convention).",
)
_unary(
    "square",
    c=lambda e, a: f"({a} * {a})",
    numpy=np.square,
    vjp=lambda n, g, x: (make("mul", make("mul", const(2), g), x),),
    interval=iv.square,
    doc="``x * x``.",
)
_unary(
    "relu",
    c=lambda e, a: f"({a} < 0 ? ({e.T})0 : {a})",
    numpy=_np_relu,
    vjp=lambda n, g, x: (make("mul", g, make("gt", x, const(0))),),
    interval=iv.relu,
    doc="``max(x, 0)``.",
)
_unary(
    "step",
    c=lambda e, a: (f"({a} >= 0 ? ({e.T})1 : {a})", lambda t: f"({a} < 0 ? ({e.T})0 : {t})"),
    numpy=_np_step,
    vjp=no_gradient,
    interval=iv.step,
    doc="1 where ``x >= 0``, 0 where ``x < 0``.",
)
_unary(
    "sign",
    c=lambda e, a: (f"({a} < 0 ? ({e.T})-1 : {a})", lambda t: f"({a} > 0 ? ({e.T})1 : {t})"),
    numpy=_np_sign,
    vjp=no_gradient,
    interval=iv.sign,
    doc="-1, 0 or 1 by the sign of ``x`` (NaN stays NaN).",
)
_unary(
    "sinxdivx",
    c=lambda e, a: f"({a} == 0 ? ({e.T})1 : {e.fn('sin')}({a}) / {a})",
    numpy=_np_sinxdivx,
    vjp=chain(_sinxdivx_derivative),
    interval=iv.sinxdivx,
    doc=(
        "``sin(x) / x``, 1 at 0. Interval rule: tight within ``[-pi, pi]``, "
        "loose beyond (``1 / |x|``)."
    ),
)
_unary(
    "floor",
    c=_libm("floor"),
    numpy=np.floor,
    vjp=no_gradient,
    interval=iv.increasing(np.floor),
    doc="Round down.",
)
_unary(
    "pow",
    c=_c_pow,
    numpy=_np_pow,
    vjp=_vjp_pow,
    interval=iv.power,
    doc="``x ** n`` for an integer ``n``.",
    method="__pow__",
    nattrs=1,
)
_unary(
    "round",
    c=_c_round,
    numpy=_np_round,
    vjp=no_gradient,
    interval=iv.rounded,
    doc="Round to ``d`` decimals.",
    nattrs=1,
)
_unary(
    "clampint",
    c=_c_clampint,
    numpy=_np_clampint,
    vjp=_vjp_clampint,
    interval=iv.clampint,
    doc="Clamp to integer bounds ``[a, b]``.",
    nattrs=2,
)

# ----------------------------------------------------------------------------
# Binary and ternary
# ----------------------------------------------------------------------------


def _vjp_div(node, g, a, b):
    ga = make("div", g, b)
    return (ga, make("neg", make("mul", ga, node)))


def _vjp_powf(node, g, a, b):
    # d a^b / da = b a^(b-1), d a^b / db = log(a) a^b
    ga = make("mul", make("mul", g, b), make("powf", a, make("sub", b, const(1))))
    return (ga, make("mul", make("mul", g, node), make("log", a)))


def _vjp_atan2(node, g, y, x):
    # d atan2(y, x) = (x dy - y dx) / (x^2 + y^2)
    r = make("div", g, make("add", make("square", x), make("square", y)))
    return (make("mul", r, x), make("neg", make("mul", r, y)))


def _vjp_clamp(node, g, x, a, b):
    not_below = make("ge", x, a)
    gx = masked(g, not_below, make("le", x, b))
    return (gx, masked(g, make("lt", x, a)), masked(g, not_below, make("gt", x, b)))


def _vjp_ifelse(node, g, c, a, b):
    return (None, masked(g, make("ge", c, const(0))), masked(g, make("lt", c, const(0))))


def _vjp_mod(node, g, x, n, d):
    q = make("floor", make("div", make("sub", x, d), n))
    return (g, make("neg", make("mul", g, q)), None)


def _jvp_div(node, t, a, b):
    # (ta - node tb) / b
    return linear(t, lambda: make("inv", b), lambda: make("neg", make("div", node, b)))


def _jvp_powf(node, t, a, b):
    return linear(
        t,
        lambda: make("mul", b, make("powf", a, make("sub", b, const(1)))),
        lambda: make("mul", node, make("log", a)),
    )


def _jvp_atan2(node, t, y, x):
    r = make("inv", make("add", make("square", x), make("square", y)))
    return linear(t, lambda: make("mul", x, r), lambda: make("neg", make("mul", y, r)))


def _jvp_clamp(node, t, x, a, b):
    not_below = make("ge", x, a)
    return linear(
        t,
        lambda: make("mul", not_below, make("le", x, b)),
        lambda: make("lt", x, a),
        lambda: make("mul", not_below, make("gt", x, b)),
    )


def _jvp_ifelse(node, t, c, a, b):
    return linear(t, None, lambda: make("ge", c, const(0)), lambda: make("lt", c, const(0)))


def _jvp_mod(node, t, x, n, d):
    def dn():
        return make("neg", make("floor", make("div", make("sub", x, d), n)))

    return linear(t, lambda: const(1), dn, None)


def _compare(name: str, c_op: str, np_fn, method: str) -> None:
    _nary(
        name,
        2,
        c=lambda e, a, b: f"({a} {c_op} {b} ? ({e.T})1 : ({e.T})0)",
        numpy=_np_compare(np_fn),
        vjp=no_gradient,
        jvp=no_tangent,
        interval=iv.compare(name),
        doc=f"1 where ``x {c_op} y``, else 0.",
        method=method,
    )


_nary(
    "add",
    2,
    c=lambda e, a, b: f"({a} + {b})",
    numpy=np.add,
    vjp=lambda n, g, a, b: (g, g),
    jvp=lambda n, t, a, b: added(*t),
    interval=iv.add,
    doc="``x + y``.",
    method="__add__",
)
_nary(
    "sub",
    2,
    c=lambda e, a, b: f"({a} - {b})",
    numpy=np.subtract,
    vjp=lambda n, g, a, b: (g, make("neg", g)),
    jvp=lambda n, t, a, b: added(t[0], None if t[1] is None else make("neg", t[1])),
    interval=iv.sub,
    doc="``x - y``.",
    method="__sub__",
)
_nary(
    "mul",
    2,
    c=lambda e, a, b: f"({a} * {b})",
    numpy=np.multiply,
    vjp=lambda n, g, a, b: (make("mul", g, b), make("mul", g, a)),
    jvp=lambda n, t, a, b: linear(t, lambda: b, lambda: a),
    interval=iv.mul,
    doc="``x * y``.",
    method="__mul__",
)
_nary(
    "div",
    2,
    c=lambda e, a, b: f"({a} / {b})",
    numpy=np.divide,
    vjp=_vjp_div,
    jvp=_jvp_div,
    interval=iv.div,
    doc="``x / y``.",
    method="__truediv__",
)
_nary(
    "powf",
    2,
    c=lambda e, a, b: f"{e.fn('pow')}({a}, {b})",
    numpy=np.power,
    vjp=_vjp_powf,
    jvp=_jvp_powf,
    interval=iv.powf,
    doc="``x ** y`` for a real exponent.",
    method="__pow__",
)
_nary(
    "atan2",
    2,
    c=lambda e, a, b: f"{e.fn('atan2')}({a}, {b})",
    numpy=np.arctan2,
    vjp=_vjp_atan2,
    jvp=_jvp_atan2,
    interval=iv.atan2,
    doc=(
        "``atan2(y, x)``. Interval rule: ``[-pi, pi]`` for boxes reaching the "
        "origin or the negative x-axis."
    ),
)
_compare("eq", "==", np.equal, "__eq__")
_compare("ne", "!=", np.not_equal, "__ne__")
_compare("lt", "<", np.less, "__lt__")
_compare("le", "<=", np.less_equal, "__le__")
_compare("gt", ">", np.greater, "__gt__")
_compare("ge", ">=", np.greater_equal, "__ge__")
_nary(
    "clamp",
    3,
    c=lambda e, x, a, b: (f"({x} > {b} ? {b} : {x})", lambda t: f"({x} < {a} ? {a} : {t})"),
    numpy=lambda x, a, b: np.where(x < a, a, np.where(x > b, b, x)),
    vjp=_vjp_clamp,
    jvp=_jvp_clamp,
    interval=iv.clamp,
    doc="Clamp ``x`` to ``[a, b]``.",
)
_nary(
    "ifelse",
    3,
    c=lambda e, x, a, b: f"({x} >= 0 ? {a} : {b})",
    numpy=lambda x, a, b: np.where(x >= 0, a, b),
    vjp=_vjp_ifelse,
    jvp=_jvp_ifelse,
    interval=iv.ifelse,
    doc="``a`` where ``x >= 0``, ``b`` elsewhere.",
)
_nary(
    "mod",
    3,
    c=lambda e, x, n, d: f"({x} - {n} * {e.fn('floor')}(({x} - {d}) / {n}))",
    numpy=lambda x, n, d: x - n * np.floor((x - d) / n),
    vjp=_vjp_mod,
    jvp=_jvp_mod,
    interval=iv.mod,
    doc="``x - n * floor((x - d) / n)``. Interval rule: loose (the op's range ``[d, d + n]``).",
)
