"""The complex ops (kernelsolve/engine/ops/complex.py) against NumPy and
torch complex arithmetic.

Complex data are interleaved real pairs; each case below is one op (or one
builder of :data:`PYKEOPS`) on z, w (complex, dim 3), c (a complex scalar),
u (real, dim 3) and s (real, dim 1), with the same function written on
complex NumPy / torch arrays. Checked: the NumPy reference engine (values),
the compiled CPU target (sums over i and j, float32 and float64), the VJP
rules (against torch autograd through ``view_as_real``, whose convention is
the real transpose Jacobian), the JVP rules (against ``torch.func.jvp``), and
the CUDA source (NVRTC, and the emulator against the reference).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from kernelsolve.engine import dispatch, ir
from kernelsolve.engine.backends import cuda, reference
from kernelsolve.engine.backends.cpu import find_compiler
from kernelsolve.engine.grad import vjp
from kernelsolve.engine.ops import complex as cops
from kernelsolve.engine.request import ReductionOptions, ReductionRequest

D = 3
# name -> (dim, category) of each variable: z, w complex (real dim 2D), c a
# complex scalar, u and s real
VARS = {"z": (2 * D, ir.I), "w": (2 * D, ir.J), "c": (2, ir.J), "u": (D, ir.J), "s": (1, ir.I)}
V = {k: ir.var(n, cat, d) for n, (k, (d, cat)) in enumerate(VARS.items())}


def _mk(op):
    return lambda *args: ir.make(op, *args)


NP = SimpleNamespace(exp=np.exp, angle=np.angle, sum=lambda a: a.sum(-1, keepdims=True))
TORCH = SimpleNamespace(exp=torch.exp, angle=torch.angle, sum=lambda a: a.sum(-1, keepdim=True))

# id -> (IR formula, the same on complex arrays: f(xp, z, w, c, u, s))
CASES = {
    "real2complex": (cops.real2complex(V["u"]), lambda xp, z, w, c, u, s: u + 0j),
    "imag2complex": (cops.imag2complex(V["u"]), lambda xp, z, w, c, u, s: 1j * u),
    "exp1j": (_mk("exp1j")(V["u"]), lambda xp, z, w, c, u, s: xp.exp(1j * u)),
    "conj": (cops.conj(V["z"]), lambda xp, z, w, c, u, s: z.conj()),
    "complexreal": (_mk("complexreal")(V["z"]), lambda xp, z, w, c, u, s: z.real),
    "compleximag": (_mk("compleximag")(V["z"]), lambda xp, z, w, c, u, s: z.imag),
    "complexabs": (_mk("complexabs")(V["z"]), lambda xp, z, w, c, u, s: abs(z)),
    "complexangle": (_mk("complexangle")(V["z"]), lambda xp, z, w, c, u, s: xp.angle(z)),
    "complexexp": (_mk("complexexp")(V["z"]), lambda xp, z, w, c, u, s: xp.exp(z)),
    "complexsum": (_mk("complexsum")(V["z"]), lambda xp, z, w, c, u, s: xp.sum(z)),
    "complexmult": (cops.mult(V["z"], V["w"]), lambda xp, z, w, c, u, s: z * w),
    "complexmult-c": (cops.mult(V["c"], V["w"]), lambda xp, z, w, c, u, s: c * w),
    "complexmult-zc": (cops.mult(V["z"], V["c"]), lambda xp, z, w, c, u, s: z * c),
    "complexadd": (_mk("complexadd")(V["z"], V["w"]), lambda xp, z, w, c, u, s: z + w),
    "complexadd-c": (_mk("complexadd")(V["c"], V["z"]), lambda xp, z, w, c, u, s: c + z),
    "complexsub": (_mk("complexsub")(V["z"], V["w"]), lambda xp, z, w, c, u, s: z - w),
    "complexsub-c": (_mk("complexsub")(V["z"], V["c"]), lambda xp, z, w, c, u, s: z - c),
    "complexdiv": (_mk("complexdiv")(V["z"], V["w"]), lambda xp, z, w, c, u, s: z / w),
    "complexdiv-c": (_mk("complexdiv")(V["c"], V["z"]), lambda xp, z, w, c, u, s: c / z),
    "complexdiv-zc": (_mk("complexdiv")(V["z"], V["c"]), lambda xp, z, w, c, u, s: z / c),
    "complexrealscal": (
        _mk("complexrealscal")(V["u"], V["z"]),
        lambda xp, z, w, c, u, s: u * z,
    ),
    "complexrealscal-s": (cops.realscal(V["s"], V["w"]), lambda xp, z, w, c, u, s: s * w),
    "complexrealscal-swapped": (cops.realscal(V["w"], V["s"]), lambda xp, z, w, c, u, s: s * w),
    "complexrealscal-uc": (
        _mk("complexrealscal")(V["u"], V["c"]),
        lambda xp, z, w, c, u, s: u * c,
    ),
    "squareabs": (cops.squareabs(V["z"]), lambda xp, z, w, c, u, s: abs(z) ** 2),
    "sumt": (cops.sumt(V["c"], 2 * D), lambda xp, z, w, c, u, s: c + 0 * z),
    "nested": (
        _mk("complexexp")(cops.mult(cops.conj(V["z"]), _mk("exp1j")(V["u"]))),
        lambda xp, z, w, c, u, s: xp.exp(z.conj() * xp.exp(1j * u)),
    ),
}
IDS = list(CASES)


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------


def _real_data(rng, rows: dict[str, int]) -> dict[str, np.ndarray]:
    """float64 arrays (rows[k], dim) per variable; complex ones interleaved,
    kept away from 0 (division, angle and abs are singular there)."""
    out = {}
    for k, (d, _) in VARS.items():
        a = rng.standard_normal((rows[k], d))
        out[k] = a + np.sign(a) * 0.2
    return out


def _as_complex(a):
    """Interleaved real pairs -> complex (NumPy or torch)."""
    if isinstance(a, torch.Tensor):
        return torch.view_as_complex(a.reshape(a.shape[:-1] + (a.shape[-1] // 2, 2)))
    return a[..., 0::2] + 1j * a[..., 1::2]


def _as_real(a):
    """Complex -> interleaved real pairs; real arrays unchanged."""
    if isinstance(a, torch.Tensor):
        if not a.is_complex():
            return a
        return torch.view_as_real(a.resolve_conj()).reshape(a.shape[:-1] + (2 * a.shape[-1],))
    if not np.iscomplexobj(a):
        return a
    return np.stack([a.real, a.imag], -1).reshape(a.shape[:-1] + (2 * a.shape[-1],))


def _dense(fn, xp, data: dict):
    """The case's function on the (broadcast) arrays of ``data``."""
    args = {k: (_as_complex(a) if k in "zwc" else a) for k, a in data.items()}
    return _as_real(fn(xp, *(args[k] for k in "zwcus")))


def _leaves(data: dict) -> list:
    return [data[k] for k in VARS]


# ----------------------------------------------------------------------------
# Dimension rules and builders
# ----------------------------------------------------------------------------


def test_dims_of_the_ops():
    z, c, u, s = V["z"], V["c"], V["u"], V["s"]
    assert cops.real2complex(u).dim == 2 * D and ir.make("complexreal", z).dim == D
    assert ir.make("complexsum", z).dim == 2 and cops.mult(c, z).dim == 2 * D
    assert ir.make("complexrealscal", s, z).dim == 2 * D
    assert ir.make("complexrealscal", u, c).dim == 2 * D


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: ir.make("conj", V["u"]), "odd"),
        (lambda: ir.make("complexabs", V["s"]), "odd"),
        (lambda: cops.mult(V["z"], ir.var(9, ir.J, 4)), "do not broadcast"),
        (lambda: ir.make("complexadd", V["z"], V["u"]), "odd"),
        (lambda: ir.make("complexrealscal", ir.var(9, ir.J, 2), V["z"]), "does not fit"),
        (lambda: cops.sumt(V["z"], 6), "complex scalar"),
    ],
)
def test_dimension_errors_name_the_op(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_pykeops_names_map_to_builders():
    names = {
        "Real2Complex", "Imag2Complex", "ComplexExp1j", "Conj", "ComplexReal",
        "ComplexImag", "ComplexAbs", "ComplexSquareAbs", "ComplexAngle", "ComplexExp",
        "ComplexSum", "ComplexSumT", "ComplexMult", "ComplexAdd", "ComplexSubtract",
        "ComplexDivide", "ComplexRealScal",
    }  # fmt: skip
    assert set(cops.PYKEOPS) == names
    z, s = V["z"], V["s"]
    assert cops.PYKEOPS["ComplexMult"](z, z).op == "complexmult"
    assert cops.PYKEOPS["ComplexRealScal"](z, s) is cops.PYKEOPS["ComplexRealScal"](s, z)
    assert cops.PYKEOPS["ComplexSumT"](cops.PYKEOPS["ComplexSum"](z), 2 * D).dim == 2 * D


# ----------------------------------------------------------------------------
# Values: reference engine, compiled CPU target
# ----------------------------------------------------------------------------


def test_every_complex_op_is_covered():
    seen = {n.op for formula, _ in CASES.values() for n in ir.topological_order(formula)}
    assert cops.COMPLEX_OPS <= seen, sorted(cops.COMPLEX_OPS - seen)


@pytest.mark.parametrize("case", IDS)
def test_reference_matches_numpy_complex(case):
    formula, fn = CASES[case]
    data = _real_data(np.random.default_rng(1), dict.fromkeys(VARS, 50))
    got = reference.evaluate(formula, _leaves(data), np.float64)
    want = _dense(fn, NP, data)
    assert got.shape == (50, formula.dim)
    np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), rtol=1e-12, atol=1e-12)


def _all_cases() -> ir.Node:
    """Every case concatenated: one kernel per dtype and axis."""
    out = None
    for formula, _ in CASES.values():
        out = formula if out is None else ir.make("concat", out, formula)
    return out


@pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler for the CPU target")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("axis", [0, 1])
def test_cpu_target_sums_match_numpy_complex(dtype, axis):
    """sum over j (axis=1) or i (axis=0) of every case, compiled, against
    the dense NumPy complex sum in float64."""
    M, N = 13, 29
    rows = {k: (M if cat == ir.I else N) for k, (_, cat) in VARS.items()}
    data = _real_data(np.random.default_rng(2), rows)
    leaves = tuple(data[k].astype(dtype) for k in VARS)
    cats = tuple(cat for _, cat in VARS.values())
    request = ReductionRequest(
        _all_cases(), "sum", leaves, cats, axis, options=ReductionOptions("cpu")
    )
    got = dispatch.reduce(request)
    # dense: i-variables (M, 1, d), j-variables (1, N, d)
    dense = {k: data[k][:, None] if cat == ir.I else data[k][None] for k, (_, cat) in VARS.items()}
    rtol, atol = (1e-4, 1e-4) if dtype == "float32" else (1e-11, 1e-11)
    start = 0
    for case, (formula, fn) in CASES.items():
        want = np.broadcast_to(_dense(fn, NP, dense), (M, N, formula.dim)).sum(axis=axis)
        part = got[:, start : start + formula.dim]
        scale = np.abs(want).max()
        np.testing.assert_allclose(part, want, rtol=rtol, atol=atol * scale, err_msg=case)
        start += formula.dim
    assert start == got.shape[-1]


# ----------------------------------------------------------------------------
# Derivatives: VJP against torch autograd, JVP against torch.func.jvp
# ----------------------------------------------------------------------------


def _torch_fn(fn):
    def f(*leaves):
        return _dense(fn, TORCH, dict(zip(VARS, leaves)))

    return f


def _forward(root: ir.Node, tangents: dict) -> ir.Node | None:
    """The tangent of ``root`` by the ops' JVP rules (forward accumulation);
    ``tangents`` maps variable nodes to their tangent nodes."""
    tan: dict[int, ir.Node | None] = {}
    for node in ir.topological_order(root):
        if node.op == "var":
            tan[id(node)] = tangents.get(node)
        elif node.op == "const":
            tan[id(node)] = None
        else:
            ts = tuple(tan[id(a)] for a in node.args)
            rule = ir.OPS[node.op].jvp
            tan[id(node)] = None if all(t is None for t in ts) else rule(node, ts, *node.args)
    return tan[id(root)]


@pytest.mark.parametrize("case", IDS)
def test_vjp_rules_match_torch_autograd(case):
    formula, fn = CASES[case]
    P = 20
    data = _real_data(np.random.default_rng(3), dict.fromkeys(VARS, P))
    g = np.random.default_rng(4).standard_normal((P, formula.dim))
    cot = ir.var(len(VARS), ir.I, formula.dim)
    tensors = [torch.tensor(data[k], requires_grad=True) for k in VARS]
    out = _torch_fn(fn)(*tensors).expand(P, formula.dim)
    grads = torch.autograd.grad(out, tensors, torch.tensor(g), allow_unused=True)
    for k, (var, want) in enumerate(zip(V.values(), grads)):
        got = reference.evaluate(vjp(formula, var, cot), _leaves(data) + [g], np.float64)
        want = np.zeros((P, var.dim)) if want is None else want.numpy()
        np.testing.assert_allclose(
            np.broadcast_to(got, want.shape), want, rtol=1e-10, atol=1e-10, err_msg=f"{case} d{k}"
        )


@pytest.mark.parametrize("case", IDS)
def test_jvp_rules_match_torch_func_jvp(case):
    formula, fn = CASES[case]
    P = 20
    rng = np.random.default_rng(5)
    data = _real_data(rng, dict.fromkeys(VARS, P))
    tan_data = {k: rng.standard_normal(a.shape) for k, a in data.items()}
    tan_vars = {V[k]: ir.var(len(VARS) + n, ir.I, V[k].dim) for n, k in enumerate(VARS)}
    tangent = _forward(formula, tan_vars)
    primals = tuple(torch.tensor(data[k]) for k in VARS)
    tangents = tuple(torch.tensor(tan_data[k]) for k in VARS)
    _, want = torch.func.jvp(_torch_fn(fn), primals, tangents)
    leaves = _leaves(data) + [tan_data[k] for k in VARS]
    got = reference.evaluate(tangent, leaves, np.float64)
    np.testing.assert_allclose(
        np.broadcast_to(got, (P, formula.dim)),
        np.broadcast_to(want.numpy(), (P, formula.dim)),
        rtol=1e-10,
        atol=1e-10,
    )


def test_abs_and_angle_derivatives_are_zero_at_zero():
    z = V["z"]
    zero = [np.zeros((1, d)) for d, _ in VARS.values()] + [np.ones((1, D))]
    g = ir.var(len(VARS), ir.I, D)
    for op in ("complexabs", "complexangle"):
        got = reference.evaluate(vjp(ir.make(op, z), z, g), zero, np.float64)
        np.testing.assert_array_equal(got, 0)


# ----------------------------------------------------------------------------
# CUDA source: NVRTC, and the emulator against the reference
# ----------------------------------------------------------------------------


def _cuda_case(dtype: str):
    from .cuda_matrix import Case

    def complex_mix(v):
        z = v.x.exp1j() * v.p3 + v.y.imag2complex()
        w = v.b3.real2complex() - 1j * v.y
        q = (z * w.conj() * 0.25).exp() / w
        r = q.abs() + q.angle() + z.real - w.imag
        return q.sum(-1).concat(r.real2complex())

    return Case("complex", complex_mix, "sum", dtype=dtype)


def _ops_of(formula: ir.Node) -> set[str]:
    return {n.op for n in ir.topological_order(formula)}


@pytest.mark.skipif(cuda.nvrtc_available() is None, reason="no NVRTC/nvcc to compile CUDA")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_source_compiles(dtype):
    from kernelsolve.engine.codegen.cuda import render_cuda

    p = _cuda_case(dtype).problem()
    assert len(cops.COMPLEX_OPS) == 15 and cops.COMPLEX_OPS <= _ops_of(p.formula)
    ptx = cuda.nvrtc_compile(render_cuda(p.spec))
    assert ".entry ks_main" in ptx


@pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler: the emulator builds CUDA")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_emulation_matches_reference(dtype):
    from .cuda_matrix import Shapes, assert_same

    p = _cuda_case(dtype).problem(Shapes(37, 45))
    assert_same(p.emulate(block=16, nsplit=1), p.reference(), p.spec, "complex")
