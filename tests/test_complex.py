"""Complex LazyTensors (kernelsolve/lazytensor/complex.py) against dense
NumPy and torch complex arithmetic, and pykeops where it is installed.

Each case is one expression written once and evaluated twice: on
LazyTensors bound to z (complex i-variable), w (complex j-variable), u (real
j-variable) and s (real i-variable, dim 1), and on the dense broadcast
arrays; the sums over i and over j must agree, in complex64 / complex128,
for NumPy and torch inputs, on the compiled CPU target and the reference
engine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kernelsolve import ComplexLazyTensor, LazyTensor, Pm, Vi, Vj

M, N, D = 7, 9, 3
CDTYPES = {
    "float32": (np.complex64, torch.complex64),
    "float64": (np.complex128, torch.complex128),
}
TOL = {"float32": dict(rtol=2e-5, atol=2e-5), "float64": dict(rtol=1e-12, atol=1e-12)}

CASES = {
    "mult": lambda z, w, u, s: z * w,
    "add-sub": lambda z, w, u, s: z + w - z * 0.5,
    "div": lambda z, w, u, s: z / w,
    "real-operand": lambda z, w, u, s: z * u + u - z / u + u / z - u * s,
    "real-first": lambda z, w, u, s: u * z + u - z + (u - w) * s,
    "python-complex": lambda z, w, u, s: (1 + 2j) * z + 1j * u - u * (0.5 - 1j) + z / (2 - 1j),
    "rtruediv": lambda z, w, u, s: (1 - 1j) / w + 2 / w - 1 / z,
    "scalar-broadcast": lambda z, w, u, s: z * (z * w).sum(-1) + (u * s).exp1j(),
    "exp": lambda z, w, u, s: (z * w.conj() * 0.5).exp(),
    "nudft": lambda z, w, u, s: w * (-2 * math.pi * 1j * u * s).exp(),
    "parts": lambda z, w, u, s: (z * w).real + (z * w).imag * u + (z - w).abs() + (z / w).angle(),
    "conj-neg": lambda z, w, u, s: -(z.conj() * w),
    "pow": lambda z, w, u, s: z**2 + w**3 - z**-1,
    "real2complex": lambda z, w, u, s: u.real2complex() * z + u.imag2complex() - (u * s).exp1j(),
    "inner-sum": lambda z, w, u, s: (z * w).sum(-1) + z.sum(-1),
    "norms": lambda z, w, u, s: (z * w).normalize() * (z - w).sqnorm2() + u * (z + w).norm2(),
    "index-concat": lambda z, w, u, s: z[1].concat(u).concat(w[0:2]) * u.concat(z)[2],
}


def _data(lib: str, dtype: str, seed: int = 0, requires_grad: bool = False):
    """Dense arrays (i: (M, 1, d), j: (1, N, d)) of lib and dtype; complex
    values away from 0 (division, angle)."""
    rng = np.random.default_rng(seed)

    def c(*shape):
        return rng.uniform(0.5, 1.5, shape) * np.exp(1j * rng.uniform(-3, 3, shape))

    arrays = {
        "z": c(M, 1, D),
        "w": c(1, N, D),
        "u": rng.uniform(0.5, 1.5, (1, N, D)),
        "s": rng.uniform(-1, 1, (M, 1, 1)),
    }
    npc, tc = CDTYPES[dtype]
    out = {}
    for k, a in arrays.items():
        a = a.astype(npc if np.iscomplexobj(a) else dtype)
        if lib == "torch":
            a = torch.from_numpy(a).requires_grad_(requires_grad)
        out[k] = a
    return out


def _lazy(arrays: dict) -> dict:
    return {k: LazyTensor(a) for k, a in arrays.items()}


class _Dense:
    """Dense arrays with the LazyTensor methods the cases use (numpy / torch)."""

    def __init__(self, a):
        self.a = a

    def __getattr__(self, name):
        a = self.a
        lib = torch if isinstance(a, torch.Tensor) else np
        if name in ("real", "imag"):
            return _Dense(getattr(a, name))
        keep = {"keepdims" if lib is np else "keepdim": True}
        methods = {
            "conj": lambda: a.conj(),
            "exp": lambda: lib.exp(a),
            "abs": lambda: abs(a),
            "angle": lambda: lib.angle(a),
            "exp1j": lambda: lib.exp(1j * a),
            "real2complex": lambda: a + 0j,
            "imag2complex": lambda: 1j * a,
            "normalize": lambda: a / lib.sqrt((abs(a) ** 2).sum(-1, **keep)),
            "sqnorm2": lambda: (abs(a) ** 2).sum(-1, **keep),
            "norm2": lambda: lib.sqrt((abs(a) ** 2).sum(-1, **keep)),
            "sum": lambda dim: a.sum(-1, keepdims=True) if lib is np else a.sum(-1, keepdim=True),
        }
        return lambda *args: _Dense(methods[name](*args))

    def __getitem__(self, key):
        key = slice(key, key + 1) if isinstance(key, int) else key
        return _Dense(self.a[..., key])

    def concat(self, other):
        a, b = self.a, other.a
        if isinstance(a, torch.Tensor):
            shape = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
            return _Dense(torch.cat([a.expand(*shape, -1), b.expand(*shape, -1)], -1))
        shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
        a, b = np.broadcast_to(a, shape + a.shape[-1:]), np.broadcast_to(b, shape + b.shape[-1:])
        return _Dense(np.concatenate([a, b], -1))


def _binop(name):
    def op(self, other):
        other = other.a if isinstance(other, _Dense) else other
        return _Dense(getattr(self.a, name)(other))

    return op


for (
    _name
) in "__add__ __radd__ __sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __pow__".split():
    setattr(_Dense, _name, _binop(_name))
_Dense.__neg__ = lambda self: _Dense(-self.a)


def _close(got, want, dtype, what=""):
    if isinstance(got, torch.Tensor):
        got, want = got.detach().numpy(), want.detach().numpy()
    assert got.dtype == want.dtype, what
    scale = max(1.0, float(np.abs(want).max()))
    tol = TOL[dtype]
    np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=what)


# ----------------------------------------------------------------------------
# Values against dense NumPy / torch
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_expression_matches_dense(case, lib, dtype):
    arrays = _data(lib, dtype)
    fn = CASES[case]
    K = fn(*_lazy(arrays).values())
    dense = fn(*(_Dense(a) for a in arrays.values())).a
    d = dense.shape[-1]
    dense = dense.expand(M, N, d) if lib == "torch" else np.broadcast_to(dense, (M, N, d))
    assert K.shape == ((M, N, d) if d > 1 else (M, N))
    for axis in (0, 1):
        got = K.sum(axis, backend="CPU")
        _close(got, dense.sum(axis), dtype, f"{case} sum over {'ij'[axis]}")
    _close(K.sum(1, backend="reference"), dense.sum(1), dtype, f"{case} reference")


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_types_and_shapes(lib):
    a = _data(lib, "float32")
    z, w, u = LazyTensor(a["z"]), LazyTensor(a["w"]), LazyTensor(a["u"])
    assert type(z) is ComplexLazyTensor and isinstance(z, LazyTensor) and z.is_complex
    assert not u.is_complex and type(u) is LazyTensor
    assert z.dtype == "complex64" and z.ndim == D and (z * w).shape == (M, N, D)
    assert (z * w).sum(-1).shape == (M, N) and (z * w).sum(-1).ndim == 1
    assert type((z * w).real) is LazyTensor and type(z * u) is ComplexLazyTensor
    assert type(u * z) is ComplexLazyTensor and type(1j * u) is ComplexLazyTensor
    assert type(u.real) is LazyTensor and type(LazyTensor(z)) is ComplexLazyTensor
    out = (z * w).sum(1)
    assert out.dtype == (np.complex64 if lib == "numpy" else torch.complex64)
    assert tuple(out.shape) == (M, D)
    assert type((z * w).t()) is ComplexLazyTensor and (z * w).t().shape == (N, M, D)


def test_construction_forms():
    rng = np.random.default_rng(0)
    x = rng.random((M, D)) + 1j * rng.random((M, D))
    y = rng.random((N, D)) + 1j * rng.random((N, D))
    K = Vi(x) * Vj(y)
    np.testing.assert_allclose(K.sum(1), (x[:, None] * y[None]).sum(1))
    v = rng.random(N) + 1j * rng.random(N)  # a vector of N complex scalars indexed by j
    np.testing.assert_allclose(
        (Vi(x) * LazyTensor(v, axis=1)).sum(1), (x[:, None] * v[:, None]).sum(1)
    )
    for p in (Pm(1 + 2j), LazyTensor([1 + 2j, 3]), Pm(np.array([1 + 2j, 3 + 0j]))):
        assert type(p) is ComplexLazyTensor
    np.testing.assert_allclose((Vi(x) * Pm(1 + 2j)).sum(1), x * (1 + 2j))
    # a real array given to ComplexLazyTensor: zero imaginary part
    r = ComplexLazyTensor(x.real, axis=0)
    np.testing.assert_allclose((r * Vj(y)).sum(1), (x.real[:, None] * y[None]).sum(1))
    # a complex array whose last axis is not contiguous is bound by a copy
    xf = np.asfortranarray(x)
    np.testing.assert_allclose((Vi(xf) * Vj(y)).sum(1), (x[:, None] * y[None]).sum(1))


def test_exp1j_and_numpy_scalar_types():
    rng = np.random.default_rng(1)
    t = rng.random((M, 1))
    np.testing.assert_allclose(Vi(t).exp1j().sum(1), np.exp(1j * t))
    np.testing.assert_allclose((Vi(t) * np.complex128(2 - 1j)).sum(1), t * (2 - 1j))
    np.testing.assert_allclose(((2 - 1j) * Vi(t)).sum(1), t * (2 - 1j))


def test_matmul_with_complex_kernel_or_vector():
    rng = np.random.default_rng(2)
    x, y = rng.random((M, 2)), rng.random((N, 2))
    v = rng.random((N, 3)) + 1j * rng.random((N, 3))
    Kd = np.exp(-((x[:, None] - y[None]) ** 2).sum(-1))
    K = (-Vi(x).sqdist(Vj(y))).exp()
    np.testing.assert_allclose(K @ v, Kd @ v)
    np.testing.assert_allclose(K @ v[:, 0], Kd @ v[:, 0])
    Kc = (1j * Vi(x).sqdist(Vj(y))).exp()  # a complex kernel exp(i |x - y|^2)
    Kcd = np.exp(1j * ((x[:, None] - y[None]) ** 2).sum(-1))
    np.testing.assert_allclose(Kc @ v, Kcd @ v)
    np.testing.assert_allclose(Kc @ v.real, Kcd @ v.real)


def test_matmul_keywords_reach_a_complex_product():
    rng = np.random.default_rng(3)
    x, y = rng.random((M, 2)), rng.random((N, 2))
    v = rng.random((N, 3)) + 1j * rng.random((N, 3))
    Kc = (1j * Vi(x).sqdist(Vj(y))).exp()
    want = np.exp(1j * ((x[:, None] - y[None]) ** 2).sum(-1)) @ v
    out = np.zeros((M, 3), dtype=np.complex128)
    assert Kc.__matmul__(v, out=out, sum_scheme="kahan_scheme") is out
    np.testing.assert_allclose(out, want)
    with pytest.raises(ValueError, match="backend"):
        Kc.__matmul__(v, backend="bogus")


def test_call_false_and_out():
    a = _data("numpy", "float64")
    z, w = LazyTensor(a["z"]), LazyTensor(a["w"])
    want = (a["z"] * a["w"]).sum(1)
    rc = (z * w).sum(1, call=False)
    np.testing.assert_allclose(rc(), want)
    out = np.zeros((M, D), dtype=np.complex128)
    assert (z * w).sum(1, out=out) is out
    np.testing.assert_allclose(out, want)


def test_batch_dims_and_rebinding():
    rng = np.random.default_rng(3)
    x = rng.random((2, M, 1, D)) + 1j * rng.random((2, M, 1, D))
    y = rng.random((1, 1, N, D)) + 1j * rng.random((1, 1, N, D))
    K = LazyTensor(x) * LazyTensor(y).conj()
    assert K.shape == (2, M, N, D)
    np.testing.assert_allclose(K.sum(2), (x * y.conj()).sum(2))
    np.testing.assert_allclose(K.sum(1), (x * y.conj()).sum(1))
    rc = K.sum(2, call=False)  # rebinding: complex arrays in the variables' layout
    np.testing.assert_allclose(rc(2 * x[:, :, 0], y[:, 0]), (2 * x * y.conj()).sum(2))


def test_complex_methods_of_real_lazytensors():
    """As NumPy: a real x has x.real = x, x.imag = 0, x.conj() = x and
    x.angle() = 0 or pi."""
    t = np.array([[1.5], [-2.0], [0.0]])
    x = Vi(t)
    assert x.real is x and x.conj() is x
    np.testing.assert_array_equal(x.imag.sum(1), np.imag(t))
    np.testing.assert_allclose(x.angle().sum(1), np.angle(t))
    np.testing.assert_allclose(x.real2complex().sum(1), t + 0j)
    np.testing.assert_allclose(x.imag2complex().sum(1), 1j * t)


# ----------------------------------------------------------------------------
# torch autograd
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_gradients_match_dense(dtype):
    """pykeops' NUDFT (test_complex.py) with requires_grad: forward and the
    gradients of |X|^2 w.r.t. the complex x and the real p."""
    a = _data("torch", dtype, requires_grad=True)
    x, p, f = a["w"], a["u"], a["s"]

    def fun(x, p, f):
        return (x * (-2 * math.pi * 1j * p * f).exp()).sum(dim=0)

    got = fun(LazyTensor(x), LazyTensor(p), LazyTensor(f))
    want = fun(x, p, f)
    _close(got, want, dtype, "forward")
    grads = [torch.autograd.grad((o.real**2 + o.imag**2).sum(), [x, p]) for o in (got, want)]
    for g, h, name in zip(*grads, ("x", "p")):
        assert g.dtype == h.dtype
        rel = (g - h).abs().max() / h.abs().max()
        assert rel < (1e-4 if dtype == "float32" else 1e-11), name


def test_torch_gradient_through_abs_real_and_angle():
    a = _data("torch", "float64", requires_grad=True)
    z, w, u = a["z"], a["w"], a["u"]

    def fun(z, w, u):
        q = z * w.conj() + u
        return q.abs() + q.real * 2 + q.angle()

    got = fun(*(LazyTensor(t) for t in (z, w, u))).sum(1)
    want = fun(z, w, u).sum(1)
    _close(got, want, "float64")
    for g, h in zip(
        torch.autograd.grad(got.sum(), [z, w, u]), torch.autograd.grad(want.sum(), [z, w, u])
    ):
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-10)


def test_torch_func_grad_of_complex_input():
    a = _data("torch", "float64")
    z, u = a["z"], a["u"]

    def fun(z, lazy):
        Z, U = (LazyTensor(z), LazyTensor(u)) if lazy else (z, u)
        return (Z * (1j * U).exp()).sum(1).abs().sum()

    got = torch.func.grad(lambda z: fun(z, True))(z)
    torch.testing.assert_close(got, torch.func.grad(lambda z: fun(z, False))(z))


# ----------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------

_BAD = {
    "<": (lambda z, u: z < u, TypeError, "< has no meaning for complex"),
    "> (real first)": (lambda z, u: u > z, TypeError, "has no meaning for complex"),
    "sqrt": (lambda z, u: z.sqrt(), TypeError, "sqrt"),
    "scalprod": (lambda z, u: z | z, TypeError, "scalar product"),
    "min reduction": (lambda z, u: z.min(1), TypeError, "min reduction"),
    "logsumexp": (lambda z, u: z.logsumexp(1), TypeError, "logsumexp"),
    "argKmin": (lambda z, u: z.argKmin(2, dim=1), TypeError, "argkmin"),
    "float power": (lambda z, u: z**0.5, TypeError, "non-integer"),
    "complex exponent": (lambda z, u: 2.0**z, TypeError, "complex exponent"),
    "real2complex twice": (lambda z, u: z.real2complex(), TypeError, "already complex"),
    "exp1j of complex": (lambda z, u: z.exp1j(), TypeError, "real LazyTensor"),
    "solve": (lambda z, u: z.solve(np.ones(N)), TypeError, "complex kernels"),
    "grad": (lambda z, u: z.grad(z, 1.0), TypeError, "complex"),
    "dims": (lambda z, u: z * LazyTensor(np.ones((1, N, 2))), ValueError, "does not fit"),
    "dtypes": (lambda z, u: z * LazyTensor(np.ones((1, N, D), np.float32)), TypeError, "float32"),
}


@pytest.mark.parametrize("name", list(_BAD))
def test_operations_without_complex_meaning_raise(name):
    a = _data("numpy", "float64")
    fn, err, match = _BAD[name]
    with pytest.raises(err, match=match):
        fn(LazyTensor(a["z"]), LazyTensor(a["u"]))


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_unsupported_complex_dtype():
    with pytest.raises(TypeError, match="complex64 or complex128"):
        LazyTensor(torch.zeros(3, 1, 2, dtype=torch.complex32))


# ----------------------------------------------------------------------------
# pykeops as an oracle
# ----------------------------------------------------------------------------


def test_same_as_pykeops():
    pk = pytest.importorskip("pykeops.numpy", reason="pykeops is an optional oracle")
    a = _data("numpy", "float64")
    for case in ("mult", "div", "real-operand", "nudft", "parts", "scalar-broadcast"):
        fn = CASES[case]
        got = fn(*(LazyTensor(v) for v in a.values())).sum(1)
        want = fn(*(pk.LazyTensor(v) for v in a.values())).sum(1)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10, err_msg=case)
