"""Symbolic vector-Jacobian products on the formula IR.

:func:`vjp` turns a formula ``F`` (a :class:`~.ir.Node`), a variable leaf
``x`` of ``F`` and a cotangent formula ``g`` (of dimension ``F.dim``) into the
formula of ``sum_k g_k dF_k/dx``, of dimension ``x.dim``. The result is an
ordinary IR node, so the engine compiles it like any other formula, and
:func:`vjp` can be applied to it again (derivatives of any order).

Approach: reverse-mode accumulation over ``ir.topological_order(F)``,
visited parents first. Every node that depends on ``x`` gets an *adjoint*
(a node of the same dimension), the sum (``add``) of the contributions of its
parents; the root's adjoint is ``g``. Each op has a rule in :data:`VJP_RULES`,
``rule(node, adjoint, *args) -> contributions`` (one per argument, ``None``
for none), written with IR ops only. Nodes are built through :func:`ir.make`,
so ``0 * f``/``f + 0`` simplify away and equal subformulas are shared
(hash-consing): e.g. the gradient of ``exp(-sqdist(x, y))`` w.r.t. ``x``
contains ``x - y`` once.

Broadcasting: an elementwise op broadcasts a dim-1 argument against a dim-D
node; the contribution to that argument is then summed (``sum``) over the
inner dimension. Conversely a dim-1 contribution to a dim-D argument is
broadcast (multiplied by ``const(1, D)``).

Conventions at non-differentiable points (measure zero):

* ``step``, ``sign``, ``floor``, ``round``, comparisons, ``argmax``/``argmin``,
  ``onehot`` have derivative 0 (no contribution).
* ``abs``: ``sign(x)`` (0 at 0); ``relu``: ``x > 0``.
* ``max``/``min`` (inner): the adjoint goes to *every* coordinate equal to
  the extremum (mask ``x == max``), not split evenly (torch ``amax`` splits,
  ``torch.max(dim)`` picks one index); identical when there is no tie.
* ``clamp(x, a, b)``: ``x`` gets the adjoint where ``a <= x <= b``, ``a``
  where ``x < a``, ``b`` where ``x > b`` (and ``x >= a``), matching the
  reference semantics ``where(x < a, a, where(x > b, b, x))``.
* ``clampint``: like ``clamp`` with constant bounds.
* ``mod(x, n, d) = x - n floor((x - d) / n)``: ``dx = 1``,
  ``dn = -floor((x - d) / n)``, ``dd = 0``.
* ``ifelse(c, a, b)``: ``a`` where ``c >= 0``, ``b`` where ``c < 0``,
  nothing to ``c``.
* ``norm2``/``normalize`` use ``rsqrt(sqnorm2(x))`` with ``rsqrt(0) = 0``, so
  their gradient at ``x = 0`` is 0 (no NaN).
* ``sqrt``, ``log``, ``inv``, ``div``, ``powf``, ``xlogx`` and ``sinxdivx``
  have the usual formulas and are singular (inf/NaN) where the derivative
  is (``sinxdivx`` at exactly 0 gives NaN: ``(cos x - sinc x) / x``).
"""

from __future__ import annotations

from collections.abc import Callable

from . import ir

__all__ = ["vjp", "VJP_RULES"]


# ----------------------------------------------------------------------------
# Small IR helpers
# ----------------------------------------------------------------------------


def _m(op: str, *args: ir.Node, attrs: tuple = ()) -> ir.Node:
    return ir.make(op, *args, attrs=attrs)


def _c(value, dim: int = 1) -> ir.Node:
    return ir.const(value, dim)


def _fit(c: ir.Node, dim: int) -> ir.Node:
    """Contribution ``c`` brought to dimension ``dim``: summed when it was
    broadcast (``dim == 1``), broadcast when it is a scalar."""
    if c.dim == dim:
        return c
    if dim == 1:
        return _m("sum", c)
    if c.dim == 1:
        return _m("mul", c, _c(1, dim))
    raise ValueError(f"grad: contribution of dimension {c.dim} for an argument of dimension {dim}")


def _place(g: ir.Node, start: int, total: int) -> ir.Node:
    """The ``total``-vector equal to ``g`` at ``[start, start + g.dim)``, 0 elsewhere."""
    out = g
    if start > 0:
        out = _m("concat", _c(0, start), out)
    rest = total - start - g.dim
    if rest > 0:
        out = _m("concat", out, _c(0, rest))
    return out


def _mask_mul(g: ir.Node, *masks: ir.Node) -> ir.Node:
    out = g
    for m in masks:
        out = _m("mul", out, m)
    return out


# ----------------------------------------------------------------------------
# VJP rules: rule(node, adjoint, *args) -> tuple of contributions (or None)
# ----------------------------------------------------------------------------


def _unary(deriv: Callable[[ir.Node, ir.Node], ir.Node]):
    """Elementwise unary op with derivative ``deriv(node, x)``."""

    def rule(node, g, x):
        return (_m("mul", g, deriv(node, x)),)

    return rule


def _none(node, g, *args):
    return (None,) * len(args)


def _neg(node, g, x):
    return (_m("neg", g),)


def _abs(node, g, x):
    return (_m("mul", g, _m("sign", x)),)


def _relu(node, g, x):
    return (_m("mul", g, _m("gt", x, _c(0))),)


def _square(node, g, x):
    return (_m("mul", _m("mul", _c(2), g), x),)


def _sqrt(node, g, x):
    return (_m("div", g, _m("mul", _c(2), node)),)


def _rsqrt(node, g, x):
    # d x^(-1/2) = -1/2 x^(-3/2) = -1/2 rsqrt(x)^3 (0 where rsqrt(x) = 0)
    return (_m("mul", _m("mul", _c(-0.5), g), _m("pow", node, attrs=(3,))),)


def _log(node, g, x):
    return (_m("div", g, x),)


def _inv(node, g, x):
    return (_m("neg", _m("mul", g, _m("square", node))),)


def _pow(node, g, x):
    (n,) = node.attrs
    return (_m("mul", _m("mul", _c(n), g), _m("pow", x, attrs=(n - 1,))),)


def _clampint(node, g, x):
    a, b = node.attrs
    return (_mask_mul(g, _m("ge", x, _c(a)), _m("le", x, _c(b))),)


def _add(node, g, a, b):
    return (g, g)


def _sub(node, g, a, b):
    return (g, _m("neg", g))


def _mul(node, g, a, b):
    return (_m("mul", g, b), _m("mul", g, a))


def _div(node, g, a, b):
    ga = _m("div", g, b)
    return (ga, _m("neg", _m("mul", ga, node)))


def _powf(node, g, a, b):
    # d a^b / da = b a^(b-1), d a^b / db = log(a) a^b
    ga = _m("mul", _m("mul", g, b), _m("powf", a, _m("sub", b, _c(1))))
    gb = _m("mul", _m("mul", g, node), _m("log", a))
    return (ga, gb)


def _atan2(node, g, y, x):
    # d atan2(y, x) = (x dy - y dx) / (x^2 + y^2)
    r = _m("div", g, _m("add", _m("square", x), _m("square", y)))
    return (_m("mul", r, x), _m("neg", _m("mul", r, y)))


def _clamp(node, g, x, a, b):
    below = _m("lt", x, a)
    not_below = _m("ge", x, a)
    above = _m("gt", x, b)
    gx = _mask_mul(g, not_below, _m("le", x, b))
    ga = _mask_mul(g, below)
    gb = _mask_mul(g, not_below, above)
    return (gx, ga, gb)


def _ifelse(node, g, c, a, b):
    return (None, _mask_mul(g, _m("ge", c, _c(0))), _mask_mul(g, _m("lt", c, _c(0))))


def _mod(node, g, x, n, d):
    q = _m("floor", _m("div", _m("sub", x, d), n))
    return (g, _m("neg", _m("mul", g, q)), None)


def _sum(node, g, x):
    return (_m("mul", g, _c(1, x.dim)),)


def _extremum(node, g, x):
    return (_m("mul", g, _m("eq", x, node)),)


def _sqnorm2(node, g, x):
    return (_m("mul", _m("mul", _c(2), g), x),)


def _norm2(node, g, x):
    return (_m("mul", _m("mul", g, _m("rsqrt", _m("sqnorm2", x))), x),)


def _normalize(node, g, x):
    # n = x r, r = |x|^-1: dx = r (g - n <n, g>)
    r = _m("rsqrt", _m("sqnorm2", x))
    inner = _m("sub", g, _m("mul", node, _m("scalprod", node, g)))
    return (_m("mul", r, inner),)


def _scalprod(node, g, a, b):
    return (_m("mul", g, b), _m("mul", g, a))


def _sqdist(node, g, a, b):
    ga = _m("mul", _m("mul", _c(2), g), _m("sub", a, b))
    return (ga, _m("neg", ga))


def _weightedsqnorm(node, g, s, x):
    D = x.dim
    if s.dim == D * D and not (D == 1):
        gs = _m("mul", g, _m("tensorprod", x, x))
        sx = _m("add", _m("matvecmult", s, x), _m("vecmatmult", x, s))
        return (gs, _m("mul", g, sx))
    # isotropic (s.dim == 1) or diagonal (s.dim == D): sum_k s_k x_k^2
    gs = _m("mul", g, _m("sqnorm2", x) if s.dim == 1 else _m("square", x))
    gx = _m("mul", _m("mul", _m("mul", _c(2), g), s), x)
    return (gs, gx)


def _elem(node, g, x):
    (m,) = node.attrs
    return (_place(g, m, x.dim),)


def _extract(node, g, x):
    start, _ = node.attrs
    return (_place(g, start, x.dim),)


def _concat(node, g, a, b):
    return (
        _m("extract", g, attrs=(0, a.dim)),
        _m("extract", g, attrs=(a.dim, b.dim)),
    )


def _matvecmult(node, g, A, v):
    # out_i = sum_j A_ij v_j
    return (_m("tensorprod", g, v), _m("vecmatmult", g, A))


def _vecmatmult(node, g, v, A):
    # out_j = sum_i v_i A_ij
    return (_m("matvecmult", A, g), _m("tensorprod", v, g))


def _tensorprod(node, g, a, b):
    # out_ij = a_i b_j
    return (_m("matvecmult", g, b), _m("vecmatmult", a, g))


VJP_RULES: dict[str, Callable] = {
    "neg": _neg,
    "abs": _abs,
    "exp": _unary(lambda n, x: n),
    "log": _log,
    "xlogx": _unary(lambda n, x: _m("add", _m("log", x), _c(1))),
    "inv": _inv,
    "sin": _unary(lambda n, x: _m("cos", x)),
    "cos": _unary(lambda n, x: _m("neg", _m("sin", x))),
    "tan": _unary(lambda n, x: _m("add", _c(1), _m("square", n))),
    "asin": _unary(lambda n, x: _m("rsqrt", _m("sub", _c(1), _m("square", x)))),
    "acos": _unary(lambda n, x: _m("neg", _m("rsqrt", _m("sub", _c(1), _m("square", x))))),
    "atan": _unary(lambda n, x: _m("inv", _m("add", _c(1), _m("square", x)))),
    "tanh": _unary(lambda n, x: _m("sub", _c(1), _m("square", n))),
    "sinh": _unary(lambda n, x: _m("cosh", x)),
    "cosh": _unary(lambda n, x: _m("sinh", x)),
    "sqrt": _sqrt,
    "rsqrt": _rsqrt,
    "square": _square,
    "relu": _relu,
    "step": _none,
    "sign": _none,
    "sinxdivx": _unary(lambda n, x: _m("div", _m("sub", _m("cos", x), n), x)),
    "floor": _none,
    "pow": _pow,
    "round": _none,
    "clampint": _clampint,
    "add": _add,
    "sub": _sub,
    "mul": _mul,
    "div": _div,
    "powf": _powf,
    "atan2": _atan2,
    "eq": _none,
    "ne": _none,
    "lt": _none,
    "le": _none,
    "gt": _none,
    "ge": _none,
    "clamp": _clamp,
    "ifelse": _ifelse,
    "mod": _mod,
    "sum": _sum,
    "max": _extremum,
    "min": _extremum,
    "argmax": _none,
    "argmin": _none,
    "sqnorm2": _sqnorm2,
    "norm2": _norm2,
    "normalize": _normalize,
    "scalprod": _scalprod,
    "sqdist": _sqdist,
    "weightedsqnorm": _weightedsqnorm,
    "elem": _elem,
    "extract": _extract,
    "concat": _concat,
    "matvecmult": _matvecmult,
    "vecmatmult": _vecmatmult,
    "tensorprod": _tensorprod,
    "onehot": _none,
}


# ----------------------------------------------------------------------------
# Reverse-mode accumulation
# ----------------------------------------------------------------------------


def vjp(root: ir.Node, wrt: ir.Node, cotangent: ir.Node) -> ir.Node:
    """Formula of ``sum_k cotangent_k * d root_k / d wrt`` (dimension ``wrt.dim``).

    ``wrt`` must be a ``var`` leaf; if it does not occur in ``root`` the result
    is ``const(0, wrt.dim)``. ``cotangent`` is any node of dimension ``root.dim``.
    """
    if wrt.op != "var":
        raise ValueError(f"vjp: wrt must be a var leaf, got {wrt.op!r}")
    if cotangent.dim != root.dim:
        raise ValueError(
            f"vjp: cotangent has dimension {cotangent.dim}, the formula has {root.dim}"
        )
    order = ir.topological_order(root)
    # Nodes whose value depends on wrt: only they carry adjoints.
    live: set[int] = set()
    for node in order:
        if node is wrt or any(id(a) in live for a in node.args):
            live.add(id(node))
    if id(root) not in live:
        return ir.const(0, wrt.dim)

    adjoint: dict[int, ir.Node] = {id(root): cotangent}
    for node in reversed(order):
        if node.op in ("var", "const") or id(node) not in live:
            continue
        g = adjoint.pop(id(node), None)
        if g is None or ir.is_const(g, 0):
            continue
        rule = VJP_RULES.get(node.op)
        if rule is None:
            raise NotImplementedError(f"vjp: no rule for operation {node.op!r}")
        contribs = rule(node, g, *node.args)
        for arg, c in zip(node.args, contribs):
            if c is None or id(arg) not in live:
                continue
            c = _fit(c, arg.dim)
            if ir.is_const(c, 0):
                continue
            prev = adjoint.get(id(arg))
            adjoint[id(arg)] = c if prev is None else ir.make("add", prev, c)
    return adjoint.get(id(wrt), ir.const(0, wrt.dim))
