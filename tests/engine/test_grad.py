"""Symbolic VJPs (engine/grad.py) against torch.autograd, via the NumPy reference.

Every formula is evaluated densely on an (M, N) grid: x is an i-variable
(M, 1, dx), y a j-variable (1, N, dy), p a parameter (dp,). Torch computes
F with the same semantics (a small interpreter of the IR, checked against
the reference evaluation), L = sum(G * F) over the whole grid, and
torch.autograd.grad(L, [x, y, p]) is compared with the reference evaluation
of vjp(F, var, g) summed over the axes the variable is not indexed by.
"""

from __future__ import annotations

import numpy as np
import pytest

from kernelsolve.engine import ir
from kernelsolve.engine.backends import reference
from kernelsolve.engine.grad import vjp
from kernelsolve.engine.ops import tensor

torch = pytest.importorskip("torch", reason="torch not installed: torch.autograd is the oracle")

M, N = 4, 5
RTOL, ATOL = 1e-8, 1e-10


# ----------------------------------------------------------------------------
# Torch interpreter of the IR (same semantics as the ops' numpy rules)
# ----------------------------------------------------------------------------


def _t_concat(a, b):
    shape = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    return torch.cat([a.expand(shape + a.shape[-1:]), b.expand(shape + b.shape[-1:])], -1)


def _t_matvec(A, v):
    p = v.shape[-1]
    A = A.reshape(A.shape[:-1] + (A.shape[-1] // p, p))
    return (A * v[..., None, :]).sum(-1)


def _t_vecmat(v, A):
    n = v.shape[-1]
    A = A.reshape(A.shape[:-1] + (n, A.shape[-1] // n))
    return (v[..., :, None] * A).sum(-2)


def _t_tensorprod(a, b):
    out = a[..., :, None] * b[..., None, :]
    return out.reshape(out.shape[:-2] + (-1,))


def _t_tensordot(at, a, b):
    """pykeops' TensorDot with torch.einsum (batch axes broadcast)."""
    dimfa, dimfb, contfa, contfb, perm = at
    la, lb = list("abcdefgh"[: len(dimfa)]), list("ijklmnop"[: len(dimfb)])
    for ka, kb in zip(contfa, contfb):
        lb[kb] = la[ka]
    kept = [la[k] for k in range(len(dimfa)) if k not in contfa]
    kept += [lb[k] for k in range(len(dimfb)) if k not in contfb]
    out = [kept[k] for k in np.argsort(perm)]
    A = a.reshape(a.shape[:-1] + dimfa)
    B = b.reshape(b.shape[:-1] + dimfb)
    T = torch.einsum(f"...{''.join(la)},...{''.join(lb)}->...{''.join(out)}", A, B)
    return T.reshape(T.shape[: T.ndim - len(out)] + (-1,))


def _t_wsqn(s, x):
    D = x.shape[-1]
    if s.shape[-1] == D * D and D > 1:
        S = s.reshape(s.shape[:-1] + (D, D))
        return (x[..., :, None] * S * x[..., None, :]).sum((-1, -2))[..., None]
    return (s * x * x).sum(-1, keepdim=True)


def _f(t, like):
    return t.to(like.dtype)


T_OPS = {
    "neg": torch.neg,
    "abs": torch.abs,
    "exp": torch.exp,
    "log": torch.log,
    "xlogx": lambda a: a * torch.log(a),
    "inv": lambda a: 1 / a,
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "asin": torch.asin,
    "acos": torch.acos,
    "atan": torch.atan,
    "tanh": torch.tanh,
    "sinh": torch.sinh,
    "cosh": torch.cosh,
    "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt,
    "square": torch.square,
    "relu": torch.relu,
    "step": lambda a: _f(a >= 0, a),
    "sign": torch.sign,
    "sinxdivx": lambda a: torch.sin(a) / a,
    "floor": torch.floor,
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "powf": torch.pow,
    "atan2": torch.atan2,
    "eq": lambda a, b: _f(a == b, a),
    "ne": lambda a, b: _f(a != b, a),
    "lt": lambda a, b: _f(a < b, a),
    "le": lambda a, b: _f(a <= b, a),
    "gt": lambda a, b: _f(a > b, a),
    "ge": lambda a, b: _f(a >= b, a),
    "clamp": lambda x, a, b: torch.where(x < a, a, torch.where(x > b, b, x)),
    "ifelse": lambda x, a, b: torch.where(x >= 0, a, b),
    "mod": lambda x, n, d: x - n * torch.floor((x - d) / n),
    "sum": lambda a: a.sum(-1, keepdim=True),
    "max": lambda a: a.amax(-1, keepdim=True),
    "min": lambda a: a.amin(-1, keepdim=True),
    "sqnorm2": lambda a: (a * a).sum(-1, keepdim=True),
    "norm2": lambda a: torch.sqrt((a * a).sum(-1, keepdim=True)),
    "normalize": lambda a: a * torch.rsqrt((a * a).sum(-1, keepdim=True)),
    "scalprod": lambda a, b: (a * b).sum(-1, keepdim=True),
    "sqdist": lambda a, b: ((a - b) ** 2).sum(-1, keepdim=True),
    "weightedsqnorm": _t_wsqn,
    "concat": _t_concat,
    "matvecmult": _t_matvec,
    "vecmatmult": _t_vecmat,
    "tensorprod": _t_tensorprod,
}
T_OPS_ATTR = {
    "pow": lambda at, a: a ** at[0],
    "round": lambda at, a: torch.round(a, decimals=at[0]),
    "clampint": lambda at, a: torch.where(a < at[0], at[0], torch.where(a > at[1], at[1], a)),
    "elem": lambda at, a: a[..., at[0] : at[0] + 1],
    "extract": lambda at, a: a[..., at[0] : at[0] + at[1]],
    "onehot": lambda at, a: _f(torch.round(a) == torch.arange(at[0], dtype=a.dtype), a),
    "argmax": lambda at, a: _f(torch.argmax(a, -1, keepdim=True), a),
    "argmin": lambda at, a: _f(torch.argmin(a, -1, keepdim=True), a),
    "tensordot": _t_tensordot,
}


def t_eval(root, leaves):
    vals = {}
    for node in ir.topological_order(root):
        if node.op == "var":
            out = leaves[node.attrs[0]]
        elif node.op == "const":
            value, dim = node.attrs
            out = torch.full((dim,), float(value), dtype=torch.float64)
        else:
            args = [vals[id(a)] for a in node.args]
            if node.op in T_OPS_ATTR:
                out = T_OPS_ATTR[node.op](node.attrs, *args)
            else:
                out = T_OPS[node.op](*args)
        vals[id(node)] = out
    return vals[id(root)]


# ----------------------------------------------------------------------------
# Test formulas
# ----------------------------------------------------------------------------

POS = (0.5, 1.5)
SYM = (-1.5, 1.5)


def X(d=3):
    return ir.var(0, ir.I, d)


def Y(d=3):
    return ir.var(1, ir.J, d)


def Pm(d=3):
    return ir.var(2, ir.P, d)


def mk(op, *args, attrs=()):
    return ir.make(op, *args, attrs=attrs)


def c(v, d=1):
    return ir.const(v, d)


CASES = {}


def case(name, formula, rx=POS, ry=POS, rp=POS):
    assert name not in CASES
    CASES[name] = (formula, rx, ry, rp)


x, y, p = X(), Y(), Pm()
xy = mk("mul", x, y)

for _op in "exp log xlogx inv sin cos atan tanh sinh cosh sqrt rsqrt square sinxdivx".split():
    case(_op, mk(_op, xy))
for _op in "tan asin acos".split():
    case(_op, mk(_op, mk("add", xy, p)), rx=(0.1, 0.5), ry=(0.1, 0.5), rp=(-0.3, 0.3))
case("neg", mk("neg", mk("add", xy, p)))
for _op in "abs relu".split():
    case(_op, mk(_op, mk("sub", xy, p)), ry=SYM)
for _op in "step sign floor".split():
    case(_op, mk("mul", mk(_op, mk("mul", mk("sub", x, p), c(3))), mk("sin", y)), rx=(-2, 2))
case("round", mk("mul", mk("round", mk("mul", x, c(3)), attrs=(0,)), y), rx=(-2, 2))
case("round1", mk("mul", mk("round", x, attrs=(1,)), mk("exp", y)), rx=(-2, 2))
case("clampint", mk("clampint", mk("mul", xy, c(3)), attrs=(1, 3)))
for _n in (3, -2, 5):
    case(f"pow{_n}", mk("pow", mk("add", xy, p), attrs=(_n,)))
for _op in "add sub mul div".split():
    case(_op, mk("sin", mk(_op, x, y)), ry=SYM if _op != "div" else POS)
    case(f"{_op}_bcast_y", mk(_op, x, Y(1)))
    case(f"{_op}_bcast_x", mk("cos", mk(_op, X(1), mk("mul", y, p))))
case("powf", mk("powf", x, y))
case("powf_bcast", mk("powf", mk("add", x, y), Pm(1)))
case("atan2", mk("atan2", mk("mul", x, p), y), rx=SYM, ry=SYM)
case("atan2_bcast", mk("atan2", X(1), y), rx=SYM, ry=SYM)
for _op in "eq ne lt le gt ge".split():
    case(_op, mk("mul", mk(_op, x, y), mk("mul", xy, p)))
case("eq_true", mk("mul", mk("eq", x, x), mk("mul", xy, p)))
case("clamp", mk("clamp", mk("mul", x, p), y, mk("add", y, c(1))), rx=(-2, 2), ry=(-1, 0))
case("clamp_bcast", mk("clamp", x, Y(1), Pm(1)), rx=(-2, 2), ry=(-1, 0), rp=(0, 1))
case("ifelse", mk("ifelse", mk("sub", x, c(1)), xy, mk("mul", p, y)), rx=(0, 2))
case("ifelse_bcast", mk("ifelse", mk("sub", x, Pm(1)), Y(1), mk("sin", x)), rx=(0, 2))
case("mod", mk("mod", x, y, p), rx=(-3, 3), rp=(-0.5, 0.5))
case("mod_bcast", mk("mod", mk("mul", x, y), Pm(1), c(0.25)), rx=(-3, 3))
for _op in "sum max min sqnorm2 norm2".split():
    case(_op, mk(_op, mk("mul", mk("add", x, p), y)), rx=SYM, ry=SYM)
case("normalize", mk("normalize", mk("sub", x, y)), rx=SYM, ry=SYM)
case("normalize_in", mk("mul", mk("normalize", mk("mul", x, p)), y), rx=SYM, ry=SYM)
for _op in "argmax argmin".split():
    case(_op, mk("mul", mk(_op, mk("mul", x, p)), y), rx=SYM)
case("scalprod", mk("scalprod", mk("sin", x), mk("mul", y, p)), rx=SYM, ry=SYM)
case("sqdist", mk("sqdist", x, mk("mul", y, p)), rx=SYM, ry=SYM)
case("gaussian", mk("exp", mk("neg", mk("sqdist", x, y))), rx=SYM, ry=SYM)
case("wsqn_iso", mk("weightedsqnorm", Pm(1), mk("sub", x, y)), rx=SYM, ry=SYM)
case("wsqn_diag", mk("weightedsqnorm", p, mk("sub", x, y)), rx=SYM, ry=SYM)
case("wsqn_full", mk("weightedsqnorm", Pm(9), mk("sub", x, y)), rx=SYM, ry=SYM, rp=SYM)
case("wsqn_j", mk("weightedsqnorm", Y(9), mk("mul", x, p)), rx=SYM, ry=SYM)
case("wsqn_1", mk("weightedsqnorm", Y(1), mk("elem", x, attrs=(1,))), rx=SYM)
case("elem", mk("mul", mk("elem", xy, attrs=(1,)), mk("sin", p)))
case("elem0", mk("elem", mk("exp", x), attrs=(0,)))
case("elem2", mk("elem", mk("exp", x), attrs=(2,)))
case("extract", mk("extract", mk("sin", xy), attrs=(1, 2)))
case("extract0", mk("extract", mk("sin", xy), attrs=(0, 2)))
case("extract_all", mk("extract", mk("sin", xy), attrs=(0, 3)))
case("concat", mk("sin", mk("concat", x, Y(2))))
case("concat2", mk("mul", mk("concat", mk("elem", x, attrs=(2,)), y), Pm(4)))
case("matvecmult", mk("matvecmult", Y(6), mk("sin", x)), ry=SYM)
case("matvecmult_p", mk("matvecmult", mk("mul", Pm(6), Y(6)), X(2)), ry=SYM)
case("vecmatmult", mk("vecmatmult", X(2), Y(6)), rx=SYM, ry=SYM)
case("vecmatmult_p", mk("vecmatmult", mk("sin", Y(3)), mk("mul", X(6), Pm(1))), rx=SYM)
case("tensorprod", mk("tensorprod", mk("sin", x), Y(2)), rx=SYM, ry=SYM)
case("tensorprod_p", mk("tensorprod", Pm(2), mk("mul", x, y)), rp=SYM)
case(
    "tensordot",
    mk("tensordot", X(6), mk("sin", Y(6)), attrs=((2, 3), (3, 2), (1,), (0,), (1, 0))),
    rx=SYM,
    ry=SYM,
)
case("tensordot_kron", tensor.kron(mk("mul", x, Pm(3)), Y(2), (3, 1), (1, 2)), rp=SYM)
case(
    "onehot",
    mk("mul", mk("onehot", mk("mul", X(1), c(3)), attrs=(4,)), mk("mul", Y(4), Pm(1))),
    rx=(0, 1),
)
case("shared", mk("mul", mk("exp", xy), mk("sin", mk("add", xy, p))))
case("no_y", mk("exp", mk("mul", x, p)))
case("const_only_y", mk("add", mk("sin", y), c(2, 3)))


def _dims(formula):
    d = {0: 1, 1: 1, 2: 1}
    for v in ir.variables(formula):
        d[v.attrs[0]] = v.attrs[2]
    return d


def _data(formula, rx, ry, rp, seed):
    rng = np.random.default_rng(seed)
    d = _dims(formula)
    xs = rng.uniform(*rx, size=(M, d[0]))
    ys = rng.uniform(*ry, size=(N, d[1]))
    ps = rng.uniform(*rp, size=(d[2],))
    gs = rng.standard_normal(size=(N, formula.dim))
    return xs, ys, ps, gs


def _check_vjp(formula, rx, ry, rp, seed=0):
    xs, ys, ps, gs = _data(formula, rx, ry, rp, seed)
    d = _dims(formula)
    D = formula.dim
    g = ir.var(3, ir.J, D)
    np_leaves = [xs[:, None, :], ys[None, :, :], ps, gs[None, :, :]]

    tx, ty, tp = (torch.tensor(a, requires_grad=True) for a in (xs, ys, ps))
    tg = torch.tensor(gs)[None]
    F = t_eval(formula, [tx[:, None, :], ty[None, :, :], tp])
    F = F.expand(M, N, D)
    # the torch interpreter has the reference semantics
    ref = np.broadcast_to(reference.evaluate(formula, np_leaves, np.float64), (M, N, D))
    np.testing.assert_allclose(F.detach().numpy(), ref, rtol=1e-12, atol=1e-12)

    L = (tg * F).sum()
    grads = torch.autograd.grad(L, [tx, ty, tp], allow_unused=True)
    variables = [X(d[0]), Y(d[1]), Pm(d[2])]
    axes = [(1,), (0,), (0, 1)]
    shapes = [(M, d[0]), (N, d[1]), (d[2],)]
    for k in range(3):
        expected = np.zeros(shapes[k]) if grads[k] is None else grads[k].numpy()
        formula_k = vjp(formula, variables[k], g)
        assert formula_k.dim == d[k]
        val = reference.evaluate(formula_k, np_leaves, np.float64)
        got = np.broadcast_to(val, (M, N, d[k])).sum(axis=axes[k])
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=f"wrt var {k}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_vjp_matches_torch(name):
    formula, rx, ry, rp = CASES[name]
    _check_vjp(formula, rx, ry, rp)


def test_every_op_is_covered():
    from kernelsolve.engine.ops.complex import COMPLEX_OPS  # tests/engine/test_complex_ops.py

    ops = set(ir.OPS) - COMPLEX_OPS
    seen = {n.op for f, *_ in CASES.values() for n in ir.topological_order(f)}
    assert ops <= seen, sorted(ops - seen)


# ----------------------------------------------------------------------------
# Second order
# ----------------------------------------------------------------------------

SECOND = {
    "gaussian": (mk("exp", mk("neg", mk("sqdist", x, y))), SYM, SYM),
    "sin_x_y": (mk("mul", mk("sin", x), y), SYM, SYM),
    "normalize": (mk("normalize", mk("sub", x, y)), SYM, SYM),
    "wsqn_full": (mk("weightedsqnorm", Pm(9), mk("sub", x, y)), SYM, SYM),
}


def _check_double_vjp(formula, rx, ry, rp, seed=1):
    """vjp(vjp(F, x, g), v, h) for v in (x, y, p) against torch double backward."""
    xs, ys, ps, gs = _data(formula, rx, ry, rp, seed)
    d = _dims(formula)
    D = formula.dim
    hs = np.random.default_rng(seed + 1).standard_normal(size=(M, d[0]))
    g = ir.var(3, ir.J, D)
    h = ir.var(4, ir.I, d[0])
    variables = [X(d[0]), Y(d[1]), Pm(d[2])]
    leaves = [xs[:, None, :], ys[None, :, :], ps, gs[None, :, :], hs[:, None, :]]

    tx, ty, tp = (torch.tensor(a, requires_grad=True) for a in (xs, ys, ps))
    F = t_eval(formula, [tx[:, None, :], ty[None, :, :], tp]).expand(M, N, D)
    L = (torch.tensor(gs)[None] * F).sum()
    (gx,) = torch.autograd.grad(L, [tx], create_graph=True, allow_unused=True)
    if gx is None or not gx.requires_grad:  # first derivative constant in x, y, p
        grads = (None, None, None)
    else:
        L2 = (torch.tensor(hs) * gx).sum()
        grads = torch.autograd.grad(L2, [tx, ty, tp], allow_unused=True)
    first = vjp(formula, variables[0], g)
    axes = [(1,), (0,), (0, 1)]
    shapes = [(M, d[0]), (N, d[1]), (d[2],)]
    for k in range(3):
        second = vjp(first, variables[k], h)
        got = reference.evaluate(second, leaves, np.float64)
        got = np.broadcast_to(got, (M, N, d[k])).sum(axis=axes[k])
        expected = np.zeros(shapes[k]) if grads[k] is None else grads[k].numpy()
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=f"wrt var {k}")


@pytest.mark.parametrize("name", sorted(SECOND))
def test_double_vjp_matches_torch(name):
    formula, rx, ry = SECOND[name]
    _check_double_vjp(formula, rx, ry, POS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_double_vjp_every_case(name):
    formula, rx, ry, rp = CASES[name]
    _check_double_vjp(formula, rx, ry, rp)


# ----------------------------------------------------------------------------
# Structure of the result
# ----------------------------------------------------------------------------


def test_gaussian_gradient_computes_difference_once():
    xv, yv = X(), Y()
    F = mk("exp", mk("neg", mk("sqdist", xv, yv)))
    gx = vjp(F, xv, ir.var(3, ir.J, 1))
    subs = [n for n in ir.topological_order(gx) if n.op == "sub" and n.args == (xv, yv)]
    assert len(subs) == 1
    gy = vjp(F, yv, ir.var(3, ir.J, 1))
    subs = [n for n in ir.topological_order(gy) if n.op == "sub" and n.args == (xv, yv)]
    assert len(subs) == 1


def test_absent_variable_gives_zero():
    F = mk("exp", X())
    z = vjp(F, Y(2), ir.var(3, ir.J, 3))
    assert z is ir.const(0, 2)


def test_vjp_of_leaf_is_cotangent():
    g = ir.var(3, ir.J, 3)
    assert vjp(X(), X(), g) is g


def test_bad_arguments():
    with pytest.raises(ValueError):
        vjp(mk("exp", X()), mk("exp", X()), ir.var(3, ir.J, 3))
    with pytest.raises(ValueError):
        vjp(mk("exp", X()), X(), ir.var(3, ir.J, 2))
