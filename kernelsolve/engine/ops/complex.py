"""Complex ops: complex numbers carried as interleaved real pairs, as pykeops
carries them.

A complex vector of dimension D is a real formula of dimension 2D,
``(re_0, im_0, re_1, im_1, ...)``; nothing else in the engine knows about
complex numbers. Each op here acts on such pairs and is one declaration
(dim rule, C, NumPy, VJP, JVP and LazyTensor method, see :mod:`.base`); its
interval rule is the function of the same name in :mod:`.complex_interval`.

The pairwise binary ops (``complexmult``, ``complexadd``, ``complexsub``,
``complexdiv``) broadcast a complex scalar (real dim 2) against a complex
vector (real dim 2D); ``complexrealscal(u, z)`` multiplies the complex ``z``
by the real ``u`` (dims D or 1 each side).

Derivatives are those of the real map R^2D -> R^2D (the VJP is the transpose
of the real Jacobian), which is what torch's ``view_as_real`` expects: the
gradient of a real loss w.r.t. ``z`` is ``dL/dre + i dL/dim``. At ``z = 0``,
``complexabs`` and ``complexangle`` have derivative 0 (``rsqrt(0) = 0``, as
``norm2``).

The builder functions of :data:`PYKEOPS` map pykeops' formula names
(``"ComplexMult"``, ``"Real2Complex"``, ...) onto these ops for the formula
parser.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..ir import Node, const, make
from . import complex_interval as civ
from .base import Op, declare
from .complex_interval import interleave as _join

# ----------------------------------------------------------------------------
# Dimension rules (real dims of the interleaved formulas)
# ----------------------------------------------------------------------------


def _even(op: str, d: int) -> None:
    if d % 2:
        raise ValueError(
            f"{op}: inner dimension {d} is odd; expected a complex formula "
            "(interleaved real and imaginary parts, an even dimension)"
        )


def _to_complex(op, dims, attrs) -> int:
    return 2 * dims[0]


def _to_real(op, dims, attrs) -> int:
    _even(op, dims[0])
    return dims[0] // 2


def _keep(op, dims, attrs) -> int:
    _even(op, dims[0])
    return dims[0]


def _sum(op, dims, attrs) -> int:
    _even(op, dims[0])
    return 2


def _pairwise(op, dims, attrs) -> int:
    for d in dims:
        _even(op, d)
    out = max(dims)
    if any(d not in (2, out) for d in dims):
        raise ValueError(
            f"{op}: complex dimensions {tuple(d // 2 for d in dims)} do not broadcast; "
            "expected equal dimensions or dimension 1"
        )
    return out


def _realscal(op, dims, attrs) -> int:
    u, z = dims
    _even(op, z)
    if u != z // 2 and 1 not in (u, z // 2):
        raise ValueError(
            f"{op}: a real factor of dimension {u} does not fit a complex formula of "
            f"dimension {z // 2}; expected equal dimensions or dimension 1"
        )
    return 2 * max(u, z // 2)


# ----------------------------------------------------------------------------
# Helpers: pairs of coordinates (C) and of arrays (NumPy)
# ----------------------------------------------------------------------------


def _pairs(coords: list[str], n: int) -> list[tuple[str, str]]:
    """``n`` (re, im) pairs of C coordinates; a single pair broadcasts."""
    if len(coords) == 2:
        return [(coords[0], coords[1])] * n
    return [(coords[2 * k], coords[2 * k + 1]) for k in range(n)]


def _flat(pairs) -> list[str]:
    return [c for pair in pairs for c in pair]


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return a[..., 0::2], a[..., 1::2]


def _np(f: Callable) -> Callable:
    """The NumPy rule of an op written on (re, im) arrays: ``f(*pairs)``
    returns (re, im) for complex results, one array for real ones."""

    def rule(*arrays):
        out = f(*[_split(a) for a in arrays])
        return _join(*out) if isinstance(out, tuple) else out

    return rule


#: The names of the ops declared here (filled by :func:`_declare`).
COMPLEX_OPS: set[str] = set()


def _declare(name, arity, dim, *, c, numpy, vjp, jvp, method, doc, nattrs=0) -> Op:
    """Declare a complex op; its interval rule is ``complex_interval.<name>``."""
    COMPLEX_OPS.add(name)
    rule = getattr(civ, "realscal" if name == "complexrealscal" else name)
    return declare(Op(name, arity, dim, c, numpy, vjp, method, False, nattrs, doc, jvp, rule))


# ----------------------------------------------------------------------------
# IR builders (also what the formula parser maps pykeops' names onto)
# ----------------------------------------------------------------------------


def real2complex(f: Node) -> Node:
    return make("real2complex", f)


def imag2complex(f: Node) -> Node:
    return make("imag2complex", f)


def conj(f: Node) -> Node:
    return make("conj", f)


def mult(f: Node, g: Node) -> Node:
    return make("complexmult", f, g)


def realscal(u: Node, z: Node) -> Node:
    """``u * z`` for a real scalar ``u``; as pykeops' ``ComplexRealScal``, the
    arguments are swapped when the first one is not of dimension 1."""
    return make("complexrealscal", u, z) if u.dim == 1 else make("complexrealscal", z, u)


def sumt(g: Node, dim: int) -> Node:
    """The complex scalar ``g`` repeated to real dimension ``dim``
    (pykeops' ``ComplexSumT``, the transpose of ``complexsum``)."""
    _even("ComplexSumT", dim)
    if g.dim != 2:
        raise ValueError(f"ComplexSumT: expected a complex scalar (dim 2), got dim {g.dim}")
    return g if dim == 2 else make("complexrealscal", const(1, dim // 2), g)


def squareabs(f: Node) -> Node:
    """``|z|^2`` per coordinate (pykeops' ``ComplexSquareAbs``)."""
    return make("complexreal", mult(f, conj(f)))


def _fold(c: Node, dim: int) -> Node:
    """A cotangent of a broadcast complex scalar summed back to dim 2."""
    return c if c.dim == dim else make("complexsum", c)


def _spread(t: Node, dim: int) -> Node:
    """A tangent of a broadcast complex scalar repeated to dim ``dim``."""
    return t if t.dim == dim else sumt(t, dim)


def _inv_abs(node_abs: Node) -> Node:
    """``1 / |z|`` from ``|z|``, 0 at 0 (rsqrt's convention)."""
    return make("rsqrt", make("square", node_abs))


# ----------------------------------------------------------------------------
# Conversions between real and complex
# ----------------------------------------------------------------------------

_declare(
    "real2complex",
    1,
    _to_complex,
    c=lambda e, n, a: _flat((x, e.lit(0)) for x in a),
    numpy=lambda a: _join(a, np.zeros_like(a)),
    vjp=lambda node, g, x: (make("complexreal", g),),
    jvp=lambda node, t, x: real2complex(t[0]) if t[0] is not None else None,
    method="real2complex",
    doc="``x`` as complex numbers with zero imaginary part.",
)
_declare(
    "imag2complex",
    1,
    _to_complex,
    c=lambda e, n, a: _flat((e.lit(0), x) for x in a),
    numpy=lambda a: _join(np.zeros_like(a), a),
    vjp=lambda node, g, x: (make("compleximag", g),),
    jvp=lambda node, t, x: imag2complex(t[0]) if t[0] is not None else None,
    method="imag2complex",
    doc="``1j * x``: complex numbers with real part 0 and imaginary part ``x``.",
)


def _c_exp1j(e, n, a):
    return _flat(
        zip(
            e.define([f"{e.fn('cos')}({x})" for x in a]),
            e.define([f"{e.fn('sin')}({x})" for x in a]),
        )
    )


_declare(
    "exp1j",
    1,
    _to_complex,
    c=_c_exp1j,
    numpy=lambda a: _join(np.cos(a), np.sin(a)),
    # d(cos x, sin x) = (-sin x, cos x) dx = i e^{ix} dx
    vjp=lambda node, g, x: (make("compleximag", mult(conj(node), g)),),
    jvp=lambda node, t, x: mult(imag2complex(t[0]), node) if t[0] is not None else None,
    method="exp1j",
    doc="``exp(1j * x)`` = ``cos(x) + 1j sin(x)`` for a real ``x``.",
)
_declare(
    "complexreal",
    1,
    _to_real,
    c=lambda e, n, a: a[0::2],
    numpy=lambda a: a[..., 0::2],
    vjp=lambda node, g, z: (real2complex(g),),
    jvp=lambda node, t, z: make("complexreal", t[0]) if t[0] is not None else None,
    method="real",
    doc="Real part of a complex formula.",
)
_declare(
    "compleximag",
    1,
    _to_real,
    c=lambda e, n, a: a[1::2],
    numpy=lambda a: a[..., 1::2],
    vjp=lambda node, g, z: (imag2complex(g),),
    jvp=lambda node, t, z: make("compleximag", t[0]) if t[0] is not None else None,
    method="imag",
    doc="Imaginary part of a complex formula.",
)


def _abs_tangent(node, t, z):
    # d|z| = Re(conj(z) dz) / |z|
    if t[0] is None:
        return None
    return make("mul", make("complexreal", mult(conj(z), t[0])), _inv_abs(node))


def _angle_tangent(node, t, z):
    # d atan2(im, re) = Im(conj(z) dz) / |z|^2
    if t[0] is None:
        return None
    inv2 = make("square", _inv_abs(make("complexabs", z)))
    return make("mul", make("compleximag", mult(conj(z), t[0])), inv2)


def _angle_cotangent(node, g, z):
    # g (-im, re) / |z|^2 = (1j g / |z|^2) z
    inv2 = make("square", _inv_abs(make("complexabs", z)))
    return (mult(imag2complex(make("mul", g, inv2)), z),)


_declare(
    "complexabs",
    1,
    _to_real,
    c=lambda e, n, a: e.define(
        [f"{e.fn('sqrt')}({r} * {r} + {i} * {i})" for r, i in _pairs(a, n.dim)]
    ),
    numpy=_np(lambda z: np.sqrt(z[0] * z[0] + z[1] * z[1])),
    vjp=lambda node, g, z: (make("complexrealscal", make("mul", g, _inv_abs(node)), z),),
    jvp=_abs_tangent,
    method="abs",
    doc="Modulus ``|z|`` of a complex formula (real).",
)
_declare(
    "complexangle",
    1,
    _to_real,
    c=lambda e, n, a: e.define([f"{e.fn('atan2')}({i}, {r})" for r, i in _pairs(a, n.dim)]),
    numpy=_np(lambda z: np.arctan2(z[1], z[0])),
    vjp=_angle_cotangent,
    jvp=_angle_tangent,
    method="angle",
    doc="Argument ``atan2(im, re)`` of a complex formula (real).",
)

# ----------------------------------------------------------------------------
# Complex to complex, one argument
# ----------------------------------------------------------------------------


def _c_complexexp(e, n, a):
    pairs = _pairs(a, n.dim // 2)
    r = e.define([f"{e.exp}({re})" for re, _ in pairs])
    out = [
        (f"{m} * {e.fn('cos')}({im})", f"{m} * {e.fn('sin')}({im})")
        for m, (_, im) in zip(r, pairs)
    ]
    return e.define(_flat(out))


def _np_complexexp(z):
    r = np.exp(z[0])
    return r * np.cos(z[1]), r * np.sin(z[1])


_declare(
    "conj",
    1,
    _keep,
    c=lambda e, n, a: e.define(_flat((r, f"(-{i})") for r, i in _pairs(a, n.dim // 2))),
    numpy=_np(lambda z: (z[0], -z[1])),
    vjp=lambda node, g, z: (conj(g),),
    jvp=lambda node, t, z: conj(t[0]) if t[0] is not None else None,
    method="conj",
    doc="Complex conjugate.",
)
_declare(
    "complexexp",
    1,
    _keep,
    c=_c_complexexp,
    numpy=_np(_np_complexexp),
    # holomorphic: the real Jacobian is the product by e^z, its transpose by conj(e^z)
    vjp=lambda node, g, z: (mult(conj(node), g),),
    jvp=lambda node, t, z: mult(node, t[0]) if t[0] is not None else None,
    method="exp",
    doc="Complex exponential ``exp(re) (cos(im) + 1j sin(im))``. Interval rule: loose.",
)
_declare(
    "complexsum",
    1,
    _sum,
    c=lambda e, n, a: e.define([e.sum(a[0::2]), e.sum(a[1::2])]),
    numpy=_np(lambda z: (z[0].sum(axis=-1, keepdims=True), z[1].sum(axis=-1, keepdims=True))),
    vjp=lambda node, g, z: (_spread(g, z.dim),),
    jvp=lambda node, t, z: make("complexsum", t[0]) if t[0] is not None else None,
    method="sum",
    doc="Sum of the complex coordinates (a complex scalar).",
)

# ----------------------------------------------------------------------------
# Two arguments
# ----------------------------------------------------------------------------


def _c_pairwise(rule: Callable) -> Callable:
    def c(e, n, a, b):
        k = n.dim // 2
        return e.define(_flat(rule(e, p, q) for p, q in zip(_pairs(a, k), _pairs(b, k))))

    return c


def _c_mult(e, p, q):
    (a, b), (c, d) = p, q
    return (f"{a} * {c} - {b} * {d}", f"{a} * {d} + {b} * {c}")


def _c_div(e, p, q):
    (a, b), (c, d) = p, q
    (den,) = e.define([f"{c} * {c} + {d} * {d}"])
    return (f"({a} * {c} + {b} * {d}) / {den}", f"({b} * {c} - {a} * {d}) / {den}")


def _np_mult(p, q):
    (a, b), (c, d) = p, q
    return a * c - b * d, a * d + b * c


def _np_div(p, q):
    (a, b), (c, d) = p, q
    den = c * c + d * d
    return (a * c + b * d) / den, (b * c - a * d) / den


def _vjp_mult(node, g, f, h):
    return (_fold(mult(conj(h), g), f.dim), _fold(mult(conj(f), g), h.dim))


def _jvp_mult(node, t, f, h):
    terms = [
        mult(t[0], h) if t[0] is not None else None,
        mult(f, t[1]) if t[1] is not None else None,
    ]
    return _add_tangents(node, *terms)


def _vjp_div(node, g, f, h):
    # q = f / h: dq = df / h - q dh / h
    gf = make("complexdiv", g, conj(h))
    return (_fold(gf, f.dim), _fold(make("neg", mult(conj(node), gf)), h.dim))


def _jvp_div(node, t, f, h):
    num = _add_tangents(node, t[0], make("neg", mult(node, t[1])) if t[1] is not None else None)
    return None if num is None else make("complexdiv", num, h)


def _add_tangents(node, *terms):
    """The sum of the non-None ``terms`` at the node's dim (None if all are)."""
    terms = [_spread(t, node.dim) for t in terms if t is not None]
    out = None
    for t in terms:
        out = t if out is None else make("add", out, t)
    return out


_declare(
    "complexmult",
    2,
    _pairwise,
    c=_c_pairwise(_c_mult),
    numpy=_np(_np_mult),
    vjp=_vjp_mult,
    jvp=_jvp_mult,
    method="__mul__",
    doc="Complex product. Interval rule: loose (parts bounded apart).",
)
_declare(
    "complexdiv",
    2,
    _pairwise,
    c=_c_pairwise(_c_div),
    numpy=_np(_np_div),
    vjp=_vjp_div,
    jvp=_jvp_div,
    method="__truediv__",
    doc="Complex division. Interval rule: loose (parts bounded apart).",
)
for _name, _sign, _method in (("complexadd", "+", "__add__"), ("complexsub", "-", "__sub__")):
    _declare(
        _name,
        2,
        _pairwise,
        c=_c_pairwise(lambda e, p, q, s=_sign: (f"{p[0]} {s} {q[0]}", f"{p[1]} {s} {q[1]}")),
        numpy=_np(
            (lambda p, q: (p[0] + q[0], p[1] + q[1]))
            if _sign == "+"
            else (lambda p, q: (p[0] - q[0], p[1] - q[1]))
        ),
        vjp=(
            (lambda node, g, f, h: (_fold(g, f.dim), _fold(g, h.dim)))
            if _sign == "+"
            else (lambda node, g, f, h: (_fold(g, f.dim), _fold(make("neg", g), h.dim)))
        ),
        jvp=(
            (lambda node, t, f, h: _add_tangents(node, *t))
            if _sign == "+"
            else lambda node, t, f, h: _add_tangents(
                node, t[0], make("neg", t[1]) if t[1] is not None else None
            )
        ),
        method=_method,
        doc=f"Complex {'sum' if _sign == '+' else 'difference'} (pairwise).",
    )


def _c_realscal(e, n, u, z):
    k = n.dim // 2
    us = u * k if len(u) == 1 else u
    return e.define(_flat((f"{s} * {r}", f"{s} * {i}") for s, (r, i) in zip(us, _pairs(z, k))))


def _np_realscal(u, z):
    re, im = _split(z)
    return _join(u * re, u * im)


def _vjp_realscal(node, g, u, z):
    gu = make("complexreal", mult(conj(z), g))
    if u.dim == 1 and gu.dim > 1:
        gu = make("sum", gu)
    return (gu, _fold(make("complexrealscal", u, g), z.dim))


def _jvp_realscal(node, t, u, z):
    terms = [
        make("complexrealscal", t[0], z) if t[0] is not None else None,
        make("complexrealscal", u, t[1]) if t[1] is not None else None,
    ]
    return _add_tangents(node, *terms)


_declare(
    "complexrealscal",
    2,
    _realscal,
    c=_c_realscal,
    numpy=_np_realscal,
    vjp=_vjp_realscal,
    jvp=_jvp_realscal,
    method="__mul__",
    doc="Real ``u`` times complex ``z`` (dims D or 1 each).",
)


# ----------------------------------------------------------------------------
# pykeops' formula names -> IR builders (for the formula parser)
# ----------------------------------------------------------------------------


def _unary(name: str) -> Callable[[Node], Node]:
    return lambda f: make(name, f)


def _binary(name: str) -> Callable[[Node, Node], Node]:
    return lambda f, g: make(name, f, g)


#: pykeops' complex formula names and the builder of each (``ComplexSumT``
#: takes the real output dimension as a second, integer argument).
PYKEOPS: dict[str, Callable] = {
    "Real2Complex": real2complex,
    "Imag2Complex": imag2complex,
    "ComplexExp1j": _unary("exp1j"),
    "Conj": conj,
    "ComplexReal": _unary("complexreal"),
    "ComplexImag": _unary("compleximag"),
    "ComplexAbs": _unary("complexabs"),
    "ComplexSquareAbs": squareabs,
    "ComplexAngle": _unary("complexangle"),
    "ComplexExp": _unary("complexexp"),
    "ComplexSum": _unary("complexsum"),
    "ComplexSumT": sumt,
    "ComplexMult": mult,
    "ComplexAdd": _binary("complexadd"),
    "ComplexSubtract": _binary("complexsub"),
    "ComplexDivide": _binary("complexdiv"),
    "ComplexRealScal": realscal,
}
