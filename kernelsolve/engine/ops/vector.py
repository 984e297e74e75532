"""Vector ops: reductions of the inner dimension (sum, max, norms, ...),
products of vectors and matrices (row-major, flattened), and slicing. One
declaration per op: dim rule, C, NumPy, VJP, JVP, interval rule (built from
:mod:`.interval`; tight unless the op's doc says otherwise) and LazyTensor
method (see :mod:`.base`).

Non-differentiable points: ``max``/``min`` split the cotangent evenly
between the coordinates equal to the extremum (as torch's ``amax``; exact
for a tie that persists, e.g. ``max(concat(x, x))``), and their tangent is
the mean of the tangent over those coordinates; a NaN extremum gets 0;
``norm2``/``normalize`` use ``rsqrt(sqnorm2(x))`` with ``rsqrt(0) = 0``, so
their gradient at ``x = 0`` is 0 (no NaN); ``argmax``, ``argmin`` and
``onehot`` have derivative 0. The JVPs are the transposes of the VJPs,
conventions included.
"""

from __future__ import annotations

import numpy as np

from ..ir import const, make
from . import dims
from . import interval as iv
from .base import OPS, Op, declare, no_gradient, no_tangent
from .derivatives import added, bilinear, place, self_adjoint


def _vector(name, arity, dim, *, c, numpy, vjp, jvp, interval, doc, method="", nattrs=0) -> Op:
    """Declare a non-elementwise op (``c(e, node, *args)``, see :class:`.base.Op`)."""
    op = Op(name, arity, dim, c, numpy, vjp, method or name, False, nattrs, doc, jvp, interval)
    return declare(op)


def _unary_jvp(rule):
    """A one-argument JVP ``rule(node, t, x)``, None for a zero tangent."""
    return lambda node, tangents, x: None if tangents[0] is None else rule(node, tangents[0], x)


def _keepdims(f):
    return lambda a: f(a, axis=-1, keepdims=True)


def _squares(a):
    return [f"{x} * {x}" for x in a]


# ----------------------------------------------------------------------------
# Reductions of the inner dimension
# ----------------------------------------------------------------------------


def _c_extremum(cmp: str):
    def c(e, n, a):
        best = a[0]
        for x in a[1:]:  # NaN-propagating, as np.max, in two selects
            (t,) = e.define([f"(({x} {cmp} {best} || {x} != {x}) ? {x} : {best})"])
            (best,) = e.define([f"({best} != {best} ? {best} : {t})"])
        return e.define([best])

    return c


def _c_arg_extremum(cmp: str):
    def c(e, n, a):
        best, idx = a[0], e.lit(0)
        for k, x in enumerate(a[1:], start=1):
            take = f"(({x} {cmp} {best}) || ({x} != {x} && {best} == {best}))"
            best, idx = e.define([f"({take} ? {x} : {best})", f"({take} ? {e.lit(k)} : {idx})"])
        return e.define([idx])

    return c


def _extremum_share(node, x):
    """The weights of the coordinates of ``x`` equal to the extremum ``node``:
    ``1 / count`` each, 0 elsewhere (everywhere when the extremum is NaN)."""
    mask = make("eq", x, node)
    count = make("sum", mask)
    return make("div", mask, make("add", count, make("eq", count, const(0))))


def _np_arg(pick):
    return lambda a: pick(a, axis=-1)[..., None].astype(a.dtype)


def _c_normalize(e, n, a):
    # x * rsqrt(|x|^2), with rsqrt's own rule (0 at 0: normalize(0) = 0)
    (s,) = e.define([e.sum(_squares(a))])
    (r,) = e.define([OPS["rsqrt"].c(e, s)])
    return e.define([f"{x} * {r}" for x in a])


def _np_normalize(a):
    return a * OPS["rsqrt"].numpy((a * a).sum(axis=-1, keepdims=True))


def _vjp_normalize(node, g, x):
    # n = x r, r = |x|^-1: dx = r (g - n <n, g>)
    r = make("rsqrt", make("sqnorm2", x))
    return (make("mul", r, make("sub", g, make("mul", node, make("scalprod", node, g)))),)


def _iv_sum(x):
    return iv.total(*x)


def _iv_extremum(pick):
    """``max`` and ``min`` are non-decreasing in every coordinate."""
    return lambda x: (pick(x[0], axis=-1, keepdims=True), pick(x[1], axis=-1, keepdims=True))


def _iv_argument(x):
    """Loose: any index ``[0, dim - 1]``."""
    lo = np.zeros(x[0].shape[:-1] + (1,))
    return lo, lo + (x[0].shape[-1] - 1)


def _iv_sqnorm2(x):
    return iv.total(*iv.square(x), nonneg=True)


def _iv_norm2(x):
    return iv.sqrt(_iv_sqnorm2(x))


def _iv_normalize(x):
    """``x_k / |x|``: within ``[-1, 1]`` on the side of ``x_k``'s signs, and
    ``x_k rsqrt(|x|^2)`` where ``|x|`` stays away from 0 (NaN if ``x`` may be
    infinite: ``inf * 0``)."""
    lo = np.where(x[0] < 0, -1.0, 0.0)
    hi = np.where(x[1] > 0, 1.0, 0.0)
    sq = _iv_sqnorm2(x)
    q_lo, q_hi = iv.mul(x, iv.rsqrt(sq))
    apart = sq[0] > 0
    lo = np.where(apart, np.maximum(lo, q_lo), lo)
    hi = np.where(apart, np.minimum(hi, q_hi), hi)
    return iv.nan_where(iv.unbounded(x).any(axis=-1, keepdims=True), lo, hi)


_vector(
    "sum",
    1,
    dims.scalar,
    c=lambda e, n, a: e.define([e.sum(a)]),
    numpy=_keepdims(np.sum),
    vjp=lambda node, g, x: (make("mul", g, const(1, x.dim)),),
    jvp=_unary_jvp(lambda node, t, x: make("sum", t)),
    interval=_iv_sum,
    doc="Sum of the coordinates.",
)
for _name, _cmp, _pick in (("max", ">", np.max), ("min", "<", np.min)):
    _vector(
        _name,
        1,
        dims.scalar,
        c=_c_extremum(_cmp),
        numpy=_keepdims(_pick),
        vjp=lambda node, g, x: (make("mul", g, _extremum_share(node, x)),),
        jvp=_unary_jvp(lambda node, t, x: make("scalprod", t, _extremum_share(node, x))),
        interval=_iv_extremum(_pick),
        doc=f"The {_name}imum coordinate (NaN propagates).",
    )
for _name, _cmp, _pick in (("argmax", ">", np.argmax), ("argmin", "<", np.argmin)):
    _vector(
        _name,
        1,
        dims.scalar,
        c=_c_arg_extremum(_cmp),
        numpy=_np_arg(_pick),
        vjp=no_gradient,
        jvp=no_tangent,
        interval=_iv_argument,
        doc=(
            f"Index of the {_name[3:]}imum coordinate (first NaN if any), as a float. "
            "Interval rule: loose (any index)."
        ),
    )
_vector(
    "sqnorm2",
    1,
    dims.scalar,
    c=lambda e, n, a: e.define([e.sum(_squares(a))]),
    numpy=lambda a: (a * a).sum(axis=-1, keepdims=True),
    vjp=lambda node, g, x: (make("mul", make("mul", const(2), g), x),),
    jvp=_unary_jvp(lambda node, t, x: make("mul", const(2), make("scalprod", x, t))),
    interval=_iv_sqnorm2,
    doc="Squared Euclidean norm ``|x|^2``.",
)
_vector(
    "norm2",
    1,
    dims.scalar,
    c=lambda e, n, a: e.define([f"{e.fn('sqrt')}({e.sum(_squares(a))})"]),
    numpy=lambda a: np.sqrt((a * a).sum(axis=-1, keepdims=True)),
    vjp=lambda node, g, x: (make("mul", make("mul", g, make("rsqrt", make("sqnorm2", x))), x),),
    jvp=_unary_jvp(
        lambda node, t, x: make("mul", make("scalprod", x, t), make("rsqrt", make("sqnorm2", x)))
    ),
    interval=_iv_norm2,
    doc="Euclidean norm ``|x|``.",
)
_vector(
    "normalize",
    1,
    dims.keep,
    c=_c_normalize,
    numpy=_np_normalize,
    vjp=_vjp_normalize,
    jvp=self_adjoint(_vjp_normalize),
    interval=_iv_normalize,
    doc="``x / |x|``, and 0 for the zero vector. Interval rule: loose (within ``[-1, 1]``).",
)

# ----------------------------------------------------------------------------
# Products and distances
# ----------------------------------------------------------------------------


def _c_sqdist(e, n, a, b):
    diffs = e.define([f"{x} - {y}" for x, y in zip(a, b)])
    return e.define([e.sum(_squares(diffs))])


def _c_weightedsqnorm(e, n, s, x):
    if len(s) == 1:
        return e.define([f"{s[0]} * ({e.sum(_squares(x))})"])
    if len(s) == len(x):
        return e.define([e.sum([f"{w} * {v} * {v}" for w, v in zip(s, x)])])
    D = len(x)
    return e.define(
        [e.sum([f"{s[k * D + m]} * {x[k]} * {x[m]}" for k in range(D) for m in range(D)])]
    )


def _np_weightedsqnorm(s, x):
    D = x.shape[-1]
    if s.shape[-1] == D * D:
        S = s.reshape(s.shape[:-1] + (D, D))
        return np.einsum("...k,...kl,...l->...", x, S, x)[..., None]
    return (s * x * x).sum(axis=-1, keepdims=True)


def _vjp_weightedsqnorm(node, g, s, x):
    D = x.dim
    if s.dim == D * D and D != 1:
        gs = make("mul", g, make("tensorprod", x, x))
        sx = make("add", make("matvecmult", s, x), make("vecmatmult", x, s))
        return (gs, make("mul", g, sx))
    # isotropic (s.dim == 1) or diagonal (s.dim == D): sum_k s_k x_k^2
    gs = make("mul", g, make("sqnorm2", x) if s.dim == 1 else make("square", x))
    return (gs, make("mul", make("mul", make("mul", const(2), g), s), x))


def _jvp_weightedsqnorm(node, t, s, x):
    ts, tx = t
    D = x.dim
    full = s.dim == D * D and D != 1
    dx = None
    if tx is not None:  # <tx, (S + S^T) x>, or 2 sum_k s_k x_k tx_k
        if full:
            sx = make("add", make("matvecmult", s, x), make("vecmatmult", x, s))
            dx = make("scalprod", tx, sx)
        else:
            dx = make("mul", const(2), make("sum", make("mul", make("mul", s, x), tx)))
    ds = None
    if ts is not None:  # x^T tS x
        if full:
            ds = make("scalprod", ts, make("tensorprod", x, x))
        elif s.dim == 1:
            ds = make("mul", ts, make("sqnorm2", x))
        else:
            ds = make("scalprod", ts, make("square", x))
    return added(ds, dx)


def _jvp_sqdist(node, t, a, b):
    ta, tb = t
    d = added(ta, None if tb is None else make("neg", tb))
    return None if d is None else make("mul", const(2), make("scalprod", make("sub", a, b), d))


def _jvp_concat(node, t, a, b):
    ta, tb = t
    if ta is None and tb is None:
        return None
    ta = const(0, a.dim) if ta is None else ta
    tb = const(0, b.dim) if tb is None else tb
    return make("concat", ta, tb)


def _vjp_sqdist(node, g, a, b):
    ga = make("mul", make("mul", const(2), g), make("sub", a, b))
    return (ga, make("neg", ga))


def _c_matvec(e, n, a, v):
    P = len(v)
    return e.define([e.sum([f"{a[r * P + p]} * {v[p]}" for p in range(P)]) for r in range(n.dim)])


def _c_vecmat(e, n, v, a):
    D = n.dim
    return e.define([e.sum([f"{v[r]} * {a[r * D + p]}" for r in range(len(v))]) for p in range(D)])


def _np_matvec(A, v):
    p = v.shape[-1]
    A = A.reshape(A.shape[:-1] + (A.shape[-1] // p, p))
    return np.einsum("...np,...p->...n", A, v)


def _np_vecmat(v, A):
    n = v.shape[-1]
    A = A.reshape(A.shape[:-1] + (n, A.shape[-1] // n))
    return np.einsum("...n,...np->...p", v, A)


def _np_tensorprod(a, b):
    out = a[..., :, None] * b[..., None, :]
    return out.reshape(out.shape[:-2] + (-1,))


def _iv_scalprod(a, b):
    return iv.total(*iv.mul(a, b))


def _iv_sqdist(a, b):
    """Per coordinate, the exact range of ``|x - y|`` over the two intervals
    (0 where they overlap, the gap between them otherwise; the far ends'
    distance), squared and summed: tight for boxes. Coordinate after
    coordinate: no ``(..., dim)`` temporaries of the broadcast shape."""
    n = a[0].shape[-1]
    s_lo = s_hi = 0.0
    for k in range(n):
        (al, ah), (bl, bh) = (v[..., k : k + 1] for v in a), (v[..., k : k + 1] for v in b)
        near = np.maximum(np.maximum(al - bh, bl - ah), 0.0)
        s_lo = s_lo + near * near
        far = np.maximum(ah - bl, bh - al)
        s_hi = s_hi + far * far
    # terms >= 0: the rounding of a sum in any order is within n eps of it
    s_lo, s_hi = s_lo * (1 - n * iv.EPS), s_hi * (1 + n * iv.EPS)
    if np.isinf(a[0]).any() or np.isinf(a[1]).any():  # inf - inf where both may be inf
        same_inf = ((a[1] == iv.INF) & (b[1] == iv.INF)) | ((a[0] == -iv.INF) & (b[0] == -iv.INF))
        return iv.nan_where(same_inf.any(axis=-1, keepdims=True), s_lo, s_hi)
    return s_lo, s_hi


def _iv_weightedsqnorm(s, x):
    D = x[0].shape[-1]
    if s[0].shape[-1] in (1, D):  # s_k x_k x_k, as NumPy (0 * inf per coordinate)
        return iv.total(*iv.mul(s, iv.square(x)))
    # full: sum_kl S_kl x_k x_l, the diagonal terms as squares (tighter)
    outer = _iv_tensorprod(x, x)
    sq = iv.square(x)
    diag = np.arange(D) * (D + 1)
    outer = tuple(o.copy() for o in np.broadcast_arrays(*outer))
    for o, q in zip(outer, sq):
        o[..., diag] = q
    return iv.total(*iv.mul(s, outer))


def _rows(a, n: int):
    """``(lo, hi)`` of a flattened row-major matrix, as ``(..., n, p)``."""
    return tuple(v.reshape(v.shape[:-1] + (n, v.shape[-1] // n)) for v in a)


def _iv_matvec(A, v):
    n = A[0].shape[-1] // v[0].shape[-1]
    lo, hi = iv.total(*iv.mul(_rows(A, n), (v[0][..., None, :], v[1][..., None, :])))
    return lo[..., 0], hi[..., 0]


def _iv_vecmat(v, A):
    n = v[0].shape[-1]
    prods = iv.mul(_rows(A, n), (v[0][..., :, None], v[1][..., :, None]))
    lo, hi = iv.total(*(np.swapaxes(p, -1, -2) for p in prods))
    return lo[..., 0], hi[..., 0]


def _iv_tensorprod(a, b):
    out = iv.mul(
        (a[0][..., :, None], a[1][..., :, None]), (b[0][..., None, :], b[1][..., None, :])
    )
    return tuple(o.reshape(o.shape[:-2] + (-1,)) for o in out)


_vector(
    "scalprod",
    2,
    dims.same,
    c=lambda e, n, a, b: e.define([e.sum([f"{x} * {y}" for x, y in zip(a, b)])]),
    numpy=lambda a, b: (a * b).sum(axis=-1, keepdims=True),
    vjp=lambda node, g, a, b: (make("mul", g, b), make("mul", g, a)),
    jvp=lambda node, t, a, b: bilinear("scalprod", t, a, b),
    interval=_iv_scalprod,
    doc="Scalar product ``<x, y>``.",
    method="__or__",
)
_vector(
    "sqdist",
    2,
    dims.same,
    c=_c_sqdist,
    numpy=lambda a, b: ((a - b) ** 2).sum(axis=-1, keepdims=True),
    vjp=_vjp_sqdist,
    jvp=_jvp_sqdist,
    interval=_iv_sqdist,
    doc="Squared distance ``|x - y|^2``.",
)
_vector(
    "weightedsqnorm",
    2,
    dims.weightedsqnorm,
    c=_c_weightedsqnorm,
    numpy=_np_weightedsqnorm,
    vjp=_vjp_weightedsqnorm,
    jvp=_jvp_weightedsqnorm,
    interval=_iv_weightedsqnorm,
    doc=(
        "``x^T S x`` with weights ``S`` of dim 1, D (diagonal) or D*D (full, row-major). "
        "Interval rule: tight but for full ``S`` (loose: ``x_k x_l`` bounded apart)."
    ),
)
_vector(
    "matvecmult",
    2,
    dims.matvec,
    c=_c_matvec,
    numpy=_np_matvec,
    vjp=lambda node, g, A, v: (make("tensorprod", g, v), make("vecmatmult", g, A)),
    jvp=lambda node, t, A, v: bilinear("matvecmult", t, A, v),
    interval=_iv_matvec,
    doc="Matrix (row-major, dim n*p) times vector (dim p): dim n.",
)
_vector(
    "vecmatmult",
    2,
    dims.vecmat,
    c=_c_vecmat,
    numpy=_np_vecmat,
    vjp=lambda node, g, v, A: (make("matvecmult", A, g), make("tensorprod", v, g)),
    jvp=lambda node, t, v, A: bilinear("vecmatmult", t, v, A),
    interval=_iv_vecmat,
    doc="Vector (dim n) times matrix (row-major, dim n*p): dim p.",
)
_vector(
    "tensorprod",
    2,
    dims.tensorprod,
    c=lambda e, n, a, b: e.define([f"{x} * {y}" for x in a for y in b]),
    numpy=_np_tensorprod,
    vjp=lambda node, g, a, b: (make("matvecmult", g, b), make("vecmatmult", a, g)),
    jvp=lambda node, t, a, b: bilinear("tensorprod", t, a, b),
    interval=_iv_tensorprod,
    doc="Outer product (dims n and p): dim n*p, row-major.",
)

# ----------------------------------------------------------------------------
# Slicing, concatenation, one-hot
# ----------------------------------------------------------------------------


def _np_concat(a, b):
    shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    return np.concatenate(
        [np.broadcast_to(a, shape + a.shape[-1:]), np.broadcast_to(b, shape + b.shape[-1:])],
        axis=-1,
    )


def _c_onehot(e, n, a):
    r = f"{e.fn('nearbyint')}({a[0]})"
    return e.define([f"({r} == ({e.T}){k} ? ({e.T})1 : ({e.T})0)" for k in range(n.dim)])


def _np_onehot(x, D):
    return (np.round(x) == np.arange(D, dtype=x.dtype)).astype(x.dtype)


def _iv_onehot(x, D):
    """Coordinate k is 1 where ``round(x)`` is surely k, 0 where it cannot be."""
    r_lo, r_hi = np.round(x[0]), np.round(x[1])
    k = np.arange(D, dtype=np.float64)
    return np.where((r_lo == r_hi) & (r_lo == k), 1.0, 0.0), np.where(
        (r_lo <= k) & (k <= r_hi), 1.0, 0.0
    )


_vector(
    "elem",
    1,
    dims.elem,
    c=lambda e, n, a: [a[n.attrs[0]]],
    numpy=lambda a, m: a[..., m : m + 1],
    vjp=lambda node, g, x: (place(g, node.attrs[0], x.dim),),
    jvp=_unary_jvp(lambda node, t, x: make("elem", t, attrs=node.attrs)),
    interval=lambda x, m: (x[0][..., m : m + 1], x[1][..., m : m + 1]),
    doc="The coordinate ``x[m]``.",
    nattrs=1,
)
_vector(
    "extract",
    1,
    dims.extract,
    c=lambda e, n, a: a[n.attrs[0] : n.attrs[0] + n.attrs[1]],
    numpy=lambda a, start, d: a[..., start : start + d],
    vjp=lambda node, g, x: (place(g, node.attrs[0], x.dim),),
    jvp=_unary_jvp(lambda node, t, x: make("extract", t, attrs=node.attrs)),
    interval=lambda x, start, d: (x[0][..., start : start + d], x[1][..., start : start + d]),
    doc="The coordinates ``x[start:start + d]``.",
    nattrs=2,
)
_vector(
    "concat",
    2,
    dims.concat,
    c=lambda e, n, a, b: a + b,
    numpy=_np_concat,
    vjp=lambda node, g, a, b: (
        make("extract", g, attrs=(0, a.dim)),
        make("extract", g, attrs=(a.dim, b.dim)),
    ),
    jvp=_jvp_concat,
    interval=lambda a, b: (_np_concat(a[0], b[0]), _np_concat(a[1], b[1])),
    doc="Concatenation along the inner dimension.",
)
_vector(
    "onehot",
    1,
    dims.onehot,
    c=_c_onehot,
    numpy=_np_onehot,
    vjp=no_gradient,
    jvp=no_tangent,
    interval=_iv_onehot,
    doc="One-hot vector of dimension D at index ``round(x)``.",
    method="one_hot",
    nattrs=1,
)
