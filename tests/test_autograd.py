"""torch autograd through LazyTensor reductions (kernelsolve/autograd.py).

* Cross-product: every differentiable IR op (one small formula each, see
  tests/autograd_cases.py) under every reduction, checked by
  ``torch.autograd.gradcheck`` (order 1) and ``gradgradcheck`` (order 2, for
  every op with ``sum`` over j and every reduction with three ops), float64.
* float32 gradients, third order and Hessian-vector products against a dense
  torch evaluation of the same quantities (the full (M, N) matrix built by
  broadcasting ``x[:, None, :]`` against ``y[None, :, :]``).
* Batch dimensions, index outputs, ``torch.func`` transforms, bad inputs,
  ``LazyTensor.grad``, numbers bound to parameters and ``torch.no_grad``.

The compiled CPU target runs every op under sum over j and every reduction
with three ops, at orders 1 and 2 (the pairs of ``ON_CPU_TARGET``); the rest
of the order-1 cross-product runs on the NumPy reference engine, which checks
the same gradient *formulas* without compiling ~1,500 more kernels (~10
minutes on a cold cache). Every other test here uses the CPU target, and
tests/engine/test_cuda_grad.py checks the gradient kernels of real backward
passes on the CPU target and as CUDA source.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch not installed: autograd needs it")

import numpy as np  # noqa: E402

from kernelsolve import LazyTensor, Pm, Vi, Vj, config  # noqa: E402
from kernelsolve.engine import ir  # noqa: E402
from kernelsolve.engine.ops.complex import COMPLEX_OPS  # noqa: E402

from .autograd_cases import (  # noqa: E402
    CASES_BY_NAME,
    OP_CASES,
    REDUCTIONS,
    REDUCTIONS_BY_NAME,
    axis_for,
    differentiable_function,
)

F64 = torch.float64
F32 = torch.float32


def _t(a, dtype=F64, grad=True):
    return torch.tensor(np.asarray(a), dtype=dtype, requires_grad=grad)


def _rand(shape, seed, lo=-1.0, hi=1.0, dtype=F64, grad=True):
    return _t(np.random.default_rng(seed).uniform(lo, hi, shape), dtype, grad)


def _close(actual, expected, rtol, what="", atol=0.0):
    """|actual - expected| <= rtol * (|expected| + max|expected|) + atol: relative
    error, with cancellation near zero measured against the largest entry."""
    actual = actual.detach().double()
    expected = expected.detach().double()
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = expected.abs().max().item()
    err = (actual - expected).abs()
    bound = rtol * (expected.abs() + scale) + atol + 1e-300
    worst = (err / bound).max().item()
    assert worst <= 1.0, f"{what}: max error {err.max().item():.3g} (scale {scale:.3g})"


# ============================================================================
# 1. gradcheck / gradgradcheck: every differentiable op x every reduction
# ============================================================================

# Ops whose VJP rule contributes nothing (step, sign, floor, comparisons, ...)
# are declared with ops.base.no_gradient: not differentiable.
# The complex ops share one case ("complex", every one of them in a formula).
DIFFERENTIABLE_OPS = sorted(
    name for name, op in ir.OPS.items() if op.differentiable and name not in COMPLEX_OPS
)

ORDER2_OPS = ("exp", "normalize", "clamp")  # second order under every reduction

ORDER1 = [(c.name, r.name, 1) for c in OP_CASES for r in REDUCTIONS]
ORDER2 = [(c.name, "sum_j", 2) for c in OP_CASES] + [
    (name, r.name, 2) for r in REDUCTIONS if r.name != "sum_j" for name in ORDER2_OPS
]
COMBINATIONS = ORDER1 + ORDER2
# (op case, reduction) pairs checked on the compiled CPU target, at orders 1 and 2:
# every op under sum over j, every reduction with three ops. The rest of the
# cross-product runs on the reference engine (see the module docstring).
ON_CPU_TARGET = {(c, r) for c, r, _ in ORDER2}


def combination_counts() -> dict[str, int]:
    """How many (op case, reduction, order) combinations the cross-product checks."""
    on_cpu = [k for k in COMBINATIONS if k[:2] in ON_CPU_TARGET]
    return {
        "on the CPU target": len(on_cpu),
        "on the reference engine": len(COMBINATIONS) - len(on_cpu),
        "op cases": len(OP_CASES),
        "differentiable IR ops": len(DIFFERENTIABLE_OPS),
        "reductions": len(REDUCTIONS),
        "order 1": len(ORDER1),
        "order 2": len(ORDER2),
        "total": len(COMBINATIONS),
    }


def test_cross_product_covers_every_op_and_reduction():
    """The combinations checked below cover every differentiable IR op under every
    reduction at order 1, every op at order 2 (sum over j) and every reduction at
    order 2 with three ops; each case's formula really contains its op."""
    for case in OP_CASES:
        assert case.op in case.ops_in_formula(), case.name
    assert COMPLEX_OPS <= CASES_BY_NAME["complex"].ops_in_formula()
    ops_of = {c.name: c.op for c in OP_CASES}
    reds = {r.name for r in REDUCTIONS}
    assert reds == {
        "sum_j",
        "sum_i",
        "K@v",
        "logsumexp",
        "logsumexp_weight",
        "sumsoftmaxweight",
        "min",
        "max",
        "Kmin",
        "min_argmin",
    }
    for red in reds:
        covered = {ops_of[c] for c, r, o in COMBINATIONS if r == red and o == 1}
        assert set(DIFFERENTIABLE_OPS) <= covered, (red, set(DIFFERENTIABLE_OPS) - covered)
        second = {ops_of[c] for c, r, o in COMBINATIONS if r == red and o == 2}
        assert len(second) >= 3, (red, second)
    second_sum = {ops_of[c] for c, r, o in COMBINATIONS if r == "sum_j" and o == 2}
    assert set(DIFFERENTIABLE_OPS) <= second_sum
    # both axes are exercised by every reduction
    for red in REDUCTIONS:
        axes = {axis_for(k, red) for k in range(len(OP_CASES))}
        assert axes == ({red.fixed_axis} if red.fixed_axis is not None else {0, 1})
    counts = combination_counts()
    assert counts["order 1"] == len(OP_CASES) * len(REDUCTIONS)
    assert counts["total"] == counts["order 1"] + counts["order 2"]


@pytest.mark.parametrize(
    "case_name,red_name,order", COMBINATIONS, ids=[f"{c}-{r}-o{o}" for c, r, o in COMBINATIONS]
)
def test_gradcheck(case_name, red_name, order, monkeypatch):
    """Analytical gradients (order 1) and gradients of gradients (order 2) of the
    reduction agree with finite differences, for the i-, j-variable, the
    parameter and the extra tensor (v, weights) all requiring grad."""
    if (case_name, red_name) not in ON_CPU_TARGET:
        monkeypatch.setattr(config, "backend", "reference")
    index = next(k for k, c in enumerate(OP_CASES) if c.name == case_name)
    case, red = OP_CASES[index], REDUCTIONS_BY_NAME[red_name]
    axis = axis_for(index, red)
    inputs = case.inputs() + red.extra(axis)
    f = differentiable_function(case, red, axis)
    out = f(*inputs)
    assert out.dtype == F64 and out.requires_grad
    assert torch.isfinite(out).all()
    if order == 1:
        assert torch.autograd.gradcheck(f, inputs)
    else:
        assert torch.autograd.gradgradcheck(f, inputs)


# ============================================================================
# 2. float32 gradients against dense torch autograd
# ============================================================================

M32, N32, D32, E32 = 23, 31, 3, 2


def _dense_sqdist(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def _f32_inputs():
    x = _rand((M32, D32), 1, dtype=F32)
    y = _rand((N32, D32), 2, dtype=F32)
    s = _t([0.7], dtype=F32)
    w_j = _rand((N32, E32), 3, dtype=F32)
    w_i = _rand((M32, E32), 4, dtype=F32)
    return x, y, s, w_j, w_i


def _f32_lazy(name, x, y, s, w):
    """(result of kernelsolve, dense float64 result) for one reduction name."""
    X, Y, S = Vi(x), Vj(y), LazyTensor(s)
    sq = X.sqdist(Y)
    kind, axis = name.rsplit("_", 1)
    a = 1 if axis == "j" else 0
    W = None if w is None else (Vj(w) if a == 1 else Vi(w))
    if kind == "Kv":
        K = (-sq / S).exp()
        return (K @ w) if a == 1 else (K.T @ w)
    if kind == "lse":
        return (-sq / S).logsumexp(dim=a)
    if kind == "lsew":
        return (-sq / S).logsumexp(dim=a, weight=W)
    if kind == "ssmw":
        return (-sq / S).sumsoftmaxweight(W, dim=a)
    if kind == "min":
        return (sq * S).min(dim=a)
    if kind == "Kmin":
        return (sq * S).Kmin(3, dim=a)
    raise ValueError(name)


def _f32_dense(name, x, y, s, w):
    x, y, s = x.double(), y.double(), s.double()
    w = None if w is None else w.double()
    sq = _dense_sqdist(x, y)  # (M, N)
    kind, axis = name.rsplit("_", 1)
    a = 1 if axis == "j" else 0
    if kind == "Kv":
        K = torch.exp(-sq / s)
        return K @ w if a == 1 else K.T @ w
    F = -sq / s
    if kind == "lse":
        return torch.logsumexp(F, dim=a).unsqueeze(-1)
    if kind in ("lsew", "ssmw"):
        wF = w[None, :, :] if a == 1 else w[:, None, :]  # (M, N, E)
        if kind == "lsew":
            return torch.logsumexp(F[..., None] + torch.log(wF), dim=a)
        return (torch.softmax(F, dim=a)[..., None] * wF).sum(a)
    G = sq * s
    if kind == "min":
        return G.min(dim=a).values.unsqueeze(-1)
    if kind == "Kmin":
        return torch.topk(G, 3, dim=a, largest=False).values.movedim(a, -1)
    raise ValueError(name)


F32_REDUCTIONS = [f"{k}_{a}" for k in ("Kv", "lse", "lsew", "ssmw", "min", "Kmin") for a in "ij"]


@pytest.mark.parametrize("name", F32_REDUCTIONS)
def test_float32_gradients_match_dense(name):
    """float32 values and gradients w.r.t. x, y, the scale parameter s and the
    extra tensor (v or weights) match dense float64 torch autograd within 1e-4
    (Gaussian K @ v, logsumexp +/- weight, sumsoftmaxweight, min, Kmin; over i and j)."""
    x, y, s, w_j, w_i = _f32_inputs()
    kind, axis = name.rsplit("_", 1)
    w = None
    if kind in ("Kv", "lsew", "ssmw"):
        w = w_j if axis == "j" else w_i
        if kind == "lsew":
            with torch.no_grad():
                w.abs_().add_(0.1)  # positive weights under the log
    args = [x, y, s] + ([w] if w is not None else [])
    out = _f32_lazy(name, x, y, s, w)
    ref = _f32_dense(name, x, y, s, w)
    assert out.dtype == F32
    _close(out, ref, 1e-5, f"{name} values")
    cot = _rand(tuple(ref.shape), 9, dtype=F64, grad=False)
    got = torch.autograd.grad((out * cot.float()).sum(), args)
    exp = torch.autograd.grad((ref * cot).sum(), args)
    for g, e, n in zip(got, exp, "xysw"):
        assert g.dtype == F32 and g.shape == e.shape
        _close(g, e, 1e-4, f"{name}: gradient w.r.t. {n}")


# ============================================================================
# 3-4. Third order and Hessian-vector products against dense torch
# ============================================================================


def _gauss_total(x, y, s, lazy, red):
    """Scalar: sum over i of the reduction over j of exp(-|x_i - y_j|^2 / s)."""
    if lazy:
        F = -Vi(x).sqdist(Vj(y)) / LazyTensor(s)
        out = F.exp().sum(dim=1) if red == "sum" else F.logsumexp(dim=0)
        return out.sum()
    F = -_dense_sqdist(x, y) / s
    return F.exp().sum() if red == "sum" else torch.logsumexp(F, dim=0).sum()


@pytest.mark.parametrize("red", ["sum", "logsumexp_i"])
def test_third_derivative_matches_dense(red):
    """Contractions of the 1st, 2nd and 3rd derivatives of a Gaussian kernel sum
    (and of a logsumexp over i) w.r.t. x match dense torch (three nested
    torch.autograd.grad calls with create_graph)."""
    y, s = _rand((6, 2), 2), _t([0.9])
    u, w = _rand((5, 2), 3, grad=False), _rand((5, 2), 4, grad=False)
    results = []
    for lazy in (True, False):
        x = _rand((5, 2), 1)
        f = _gauss_total(x, y, s, lazy, red)
        (g1,) = torch.autograd.grad(f, x, create_graph=True)
        (g2,) = torch.autograd.grad((g1 * u).sum(), x, create_graph=True)
        g3 = torch.autograd.grad((g2 * w).sum(), [x, y, s])
        results.append((f, g1, g2) + g3)
    for k, (a, b) in enumerate(zip(*results)):
        _close(a, b, 1e-10, f"derivative term {k}")
    assert results[0][3].abs().max() > 1e-3  # the third derivative is not trivially 0


def test_hessian_vector_product_matches_dense():
    """H v for sum_i sum_j exp(-|x_i - y_j|^2) w.r.t. x, by double backward and by
    torch.autograd.functional.hvp, equals the dense torch Hessian-vector product."""
    y = _rand((7, 3), 2, grad=False)
    v = _rand((6, 3), 3, grad=False)
    one = _t([1.0], grad=False)

    def f_lazy(x):
        return _gauss_total(x, y, one, True, "sum")

    def f_dense(x):
        return _gauss_total(x, y, one, False, "sum")

    x = _rand((6, 3), 1)
    (g,) = torch.autograd.grad(f_lazy(x), x, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    _, hv_dense = torch.autograd.functional.hvp(f_dense, x.detach(), v)
    _close(hv, hv_dense, 1e-10, "double backward")
    _, hv_fn = torch.autograd.functional.hvp(f_lazy, x.detach(), v)
    _close(hv_fn, hv_dense, 1e-10, "functional.hvp")
    full = torch.autograd.functional.hessian(f_dense, x.detach())
    _close(hv, (full * v).sum((-1, -2)), 1e-10, "dense Hessian")


# ============================================================================
# 5. Batch dimensions
# ============================================================================

BM, BN, BD, BE = 3, 4, 2, 2


def _batch_inputs(dtype=F64):
    x = _rand((2, 1, BM, BD), 1, dtype=dtype)
    y = _rand((1, 3, BN, BD), 2, dtype=dtype)
    p = _rand((1, 3, 1), 3, 0.5, 1.5, dtype=dtype)
    v = _rand((2, 3, BN, BE), 4, dtype=dtype)
    return x, y, p, v


def _batch_lazy(red, x, y, p, v):
    X = LazyTensor(x[..., :, None, :])  # (2, 1, M, 1, D)
    Y = LazyTensor(y[..., None, :, :])  # (1, 3, 1, N, D)
    P = LazyTensor(p[..., None, None, :])  # (1, 3, 1, 1, 1)
    F = -X.sqdist(Y) * P
    if red == "sum_j":
        return F.exp().sum(dim=3)
    if red == "sum_i":
        return F.exp().sum(dim=2)
    if red == "Kv":
        return F.exp() @ v
    if red == "lse_i":
        return F.logsumexp(dim=2)
    if red == "min_j":
        return (-F).min(dim=3)
    if red == "Kmin_i":
        return (-F).Kmin(2, dim=2)
    raise ValueError(red)


def _batch_dense(red, x, y, p, v):
    sq = ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1)  # (2, 3, M, N)
    F = -sq * p[..., None]
    if red == "sum_j":
        return F.exp().sum(-1, keepdim=True)
    if red == "sum_i":
        return F.exp().sum(-2)[..., None]
    if red == "Kv":
        return F.exp() @ v
    if red == "lse_i":
        return torch.logsumexp(F, dim=-2)[..., None]
    if red == "min_j":
        return (-F).min(-1).values[..., None]
    if red == "Kmin_i":
        return torch.topk(-F, 2, dim=-2, largest=False).values.transpose(-1, -2)
    raise ValueError(red)


BATCH_REDUCTIONS = ["sum_j", "sum_i", "Kv", "lse_i", "min_j", "Kmin_i"]


@pytest.mark.parametrize("red", BATCH_REDUCTIONS)
def test_batch_gradients_match_dense(red):
    """x (2, 1, M, D), y (1, 3, N, D), p (1, 3, 1): gradients (summed back over the
    broadcast batch dims) match dense torch and have the shapes of the inputs."""
    x, y, p, v = _batch_inputs()
    args = [x, y, p] + ([v] if red == "Kv" else [])
    out = _batch_lazy(red, x, y, p, v)
    ref = _batch_dense(red, x, y, p, v)
    _close(out, ref, 1e-10, f"{red} values")
    cot = _rand(tuple(ref.shape), 5, grad=False)
    got = torch.autograd.grad((out * cot).sum(), args)
    exp = torch.autograd.grad((ref * cot).sum(), args)
    for g, e, a, n in zip(got, exp, args, "xypv"):
        assert g.shape == a.shape, (n, g.shape, a.shape)
        _close(g, e, 1e-10, f"{red}: gradient w.r.t. {n}")


@pytest.mark.parametrize("red", ["sum_j", "Kv", "min_j"])
def test_batch_gradcheck(red):
    """gradcheck and gradgradcheck with broadcast batch dimensions."""
    x, y, p, v = _batch_inputs()
    args = (x, y, p) + ((v,) if red == "Kv" else ())

    def f(*a):
        return _batch_lazy(red, *a, *((v,) if red != "Kv" else ()))

    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


# ============================================================================
# 6. Index outputs
# ============================================================================


def _knn_inputs(m=4, n=12, seed=0):
    x = _rand((m, 2), seed + 1)
    y = _rand((n, 2), seed + 2)
    return x, y


INDEX_REDUCTIONS = {
    "argmin": lambda F, a: F.argmin(dim=a),
    "argmax": lambda F, a: F.argmax(dim=a),
    "argKmin": lambda F, a: F.argKmin(3, dim=a),
    "argmin_reduction": lambda F, a: F.argmin_reduction(dim=a),
    "argmax_reduction": lambda F, a: F.argmax_reduction(dim=a),
}


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("name", sorted(INDEX_REDUCTIONS))
def test_index_outputs_have_no_gradient(name, axis):
    """argmin / argmax / argKmin of grad-requiring inputs: int64, requires_grad
    False, equal to the dense indices, and torch.autograd.grad on them raises."""
    x, y = _knn_inputs()
    idx = INDEX_REDUCTIONS[name](Vi(x).sqdist(Vj(y)), axis)
    assert idx.dtype == torch.int64
    assert not idx.requires_grad and idx.grad_fn is None
    sq = _dense_sqdist(x, y).detach()
    if name.startswith("argKmin"):
        expected = torch.topk(sq, 3, dim=axis, largest=False).indices.movedim(axis, -1)
    elif name.startswith("argmin"):
        expected = sq.argmin(dim=axis)[:, None]
    else:
        expected = sq.argmax(dim=axis)[:, None]
    assert torch.equal(idx, expected)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(idx.sum(), [x, y])
    with pytest.raises(RuntimeError):
        idx.double().sum().backward()


@pytest.mark.parametrize("name", ["min_argmin", "max_argmax", "Kmin_argKmin"])
def test_value_index_pairs(name):
    """(values, indices): the values carry gradients equal to dense torch's, the
    int64 indices carry none."""
    x, y = _knn_inputs()
    F = Vi(x).sqdist(Vj(y))
    vals, idx = getattr(F, name)(3, dim=1) if name == "Kmin_argKmin" else getattr(F, name)(dim=1)
    assert idx.dtype == torch.int64 and not idx.requires_grad
    assert vals.requires_grad and vals.dtype == F64
    sq = _dense_sqdist(x, y)
    if name == "Kmin_argKmin":
        ref = torch.topk(sq, 3, dim=1, largest=False)
        ref_vals, ref_idx = ref.values, ref.indices
    else:
        ref = sq.min(dim=1) if name == "min_argmin" else sq.max(dim=1)
        ref_vals, ref_idx = ref.values[:, None], ref.indices[:, None]
    assert torch.equal(idx, ref_idx)
    _close(vals, ref_vals, 1e-12, "values")
    cot = _rand(tuple(ref_vals.shape), 3, grad=False)
    got = torch.autograd.grad((vals * cot).sum(), [x, y])
    exp = torch.autograd.grad((ref_vals * cot).sum(), [x, y])
    for g, e in zip(got, exp):
        _close(g, e, 1e-12, name)


def test_kmin_gradient_reaches_only_selected_points():
    """The gradient of Kmin over j reaches exactly the selected y_j: the rows of
    y.grad of the points no argKmin picked are exactly zero, the others are not."""
    x, y = _knn_inputs(m=2, n=12)
    F = Vi(x).sqdist(Vj(y))
    F.Kmin(2, dim=1).sum().backward()
    chosen = set(F.argKmin(2, dim=1).flatten().tolist())
    assert 1 <= len(chosen) <= 4
    for j in range(12):
        row = y.grad[j]
        if j in chosen:
            assert (row != 0).any(), j
        else:
            assert (row == 0).all(), (j, row)
    # and the values are those of the dense 2 nearest neighbours
    ref = torch.topk(_dense_sqdist(x, y), 2, dim=1, largest=False).values.sum()
    (gy,) = torch.autograd.grad(ref, y)
    _close(y.grad, gy, 1e-12, "y.grad")


# ============================================================================
# 7. torch.func
# ============================================================================


def _fn_kernel(x, y):
    """(M, 1): sum_j exp(-|x_i - y_j|^2)."""
    return (-Vi(x).sqdist(Vj(y))).exp().sum(dim=1)


def _fn_dense(x, y):
    return torch.exp(-_dense_sqdist(x, y)).sum(1, keepdim=True)


def test_func_grad_equals_backward():
    """torch.func.grad of a scalar reduction equals .backward() and dense torch."""
    x, y = _rand((5, 2), 1), _rand((6, 2), 2, grad=False)
    g_func = torch.func.grad(lambda x: _fn_kernel(x, y).sum())(x)
    _fn_kernel(x, y).sum().backward()
    _close(g_func, x.grad, 1e-14, "func.grad vs backward")
    g_dense = torch.func.grad(lambda x: _fn_dense(x, y).sum())(x.detach())
    _close(g_func, g_dense, 1e-10, "func.grad vs dense")


def test_func_grad_with_several_argnums():
    """torch.func.grad with argnums=(0, 1) over a logsumexp and K @ v."""
    x, y, v = _rand((5, 2), 1), _rand((6, 2), 2), _rand((6, 1), 3)

    def f(x, y, lazy):
        if lazy:
            F = -Vi(x).sqdist(Vj(y))
            return F.logsumexp(dim=1).sum() + (F.exp() @ v).square().sum()
        F = -_dense_sqdist(x, y)
        return torch.logsumexp(F, 1).sum() + (F.exp() @ v).square().sum()

    got = torch.func.grad(f, argnums=(0, 1))(x, y, True)
    exp = torch.func.grad(f, argnums=(0, 1))(x, y, False)
    for g, e in zip(got, exp):
        _close(g, e, 1e-10, "argnums")


def test_func_jacrev_matches_dense():
    """torch.func.jacrev of the (M, 1) reduction w.r.t. x and y matches dense."""
    x, y = _rand((4, 2), 1, grad=False), _rand((5, 2), 2, grad=False)
    for argnum in (0, 1):
        got = torch.func.jacrev(_fn_kernel, argnums=argnum)(x, y)
        exp = torch.func.jacrev(_fn_dense, argnums=argnum)(x, y)
        _close(got, exp, 1e-10, f"jacrev argnum {argnum}")


@pytest.mark.parametrize(
    "in_dims,x_shape,y_shape",
    [
        ((0, None), (3, 5, 2), (6, 2)),
        ((None, 0), (5, 2), (3, 6, 2)),
        ((0, 1), (3, 5, 2), (6, 3, 2)),
        ((1, 0), (5, 3, 2), (3, 6, 2)),
    ],
    ids=["x0", "y0", "x0-y1", "x1-y0"],
)
def test_vmap_equals_loop(in_dims, x_shape, y_shape):
    """torch.func.vmap over a leading (or second) dim of x, of y or of both equals
    a Python loop; so does the gradient through the vmapped function."""
    x, y = _rand(x_shape, 1), _rand(y_shape, 2)

    def take(t, d, b):
        return t if d is None else t.select(d, b)

    def looped(fn):
        return torch.stack([fn(take(x, in_dims[0], b), take(y, in_dims[1], b)) for b in range(3)])

    out = torch.func.vmap(_fn_kernel, in_dims=in_dims)(x, y)
    loop, dense = looped(_fn_kernel), looped(_fn_dense)
    assert out.shape == loop.shape == (3, 5, 1)
    _close(out, loop, 1e-14, "vmap vs loop")
    _close(out, dense, 1e-10, "vmap vs dense")
    cot = _rand((3, 5, 1), 3, grad=False)
    got = torch.autograd.grad((out * cot).sum(), [x, y])
    exp = torch.autograd.grad((dense * cot).sum(), [x, y])
    for g, e in zip(got, exp):
        _close(g, e, 1e-10, "grad through vmap")


@pytest.mark.parametrize("red", ["sum", "logsumexp", "min"])
def test_vmap_of_grad(red):
    """torch.func.vmap(torch.func.grad(f)) over a batch of x equals a loop of
    gradients and dense torch (sum, logsumexp and min over j)."""
    xb, y = _rand((3, 5, 2), 1, grad=False), _rand((6, 2), 2, grad=False)

    def f(x, lazy):
        if lazy:
            F = -Vi(x).sqdist(Vj(y))
            outs = {"sum": F.exp().sum, "logsumexp": F.logsumexp, "min": (-F).min}
            out = outs[red](1)
        else:
            F = -_dense_sqdist(x, y)
            outs = {"sum": F.exp().sum, "logsumexp": lambda a: torch.logsumexp(F, a)}
            out = outs[red](1) if red in outs else (-F).min(1).values
        return (out**2).sum()

    got = torch.func.vmap(torch.func.grad(lambda x: f(x, True)))(xb)
    loop = torch.stack([torch.func.grad(lambda x: f(x, True))(xb[b]) for b in range(3)])
    exp = torch.stack([torch.func.grad(lambda x: f(x, False))(xb[b]) for b in range(3)])
    _close(got, loop, 1e-14, "vmap(grad) vs loop")
    _close(got, exp, 1e-10, "vmap(grad) vs dense")


def test_func_hessian_by_nested_jacrev_matches_dense():
    """torch.func.jacrev(jacrev(f)) (reverse over reverse) of a Gaussian kernel
    sum with a number parameter equals the dense Hessian."""
    y = _rand((6, 2), 2, grad=False)
    x = _rand((4, 2), 1, grad=False)

    def f_lazy(x):
        return (-Vi(x).sqdist(Vj(y)) * Pm(0.5)).exp().sum(dim=1).sum()

    def f_dense(x):
        return torch.exp(-_dense_sqdist(x, y) * 0.5).sum()

    got = torch.func.jacrev(torch.func.jacrev(f_lazy))(x)
    exp = torch.func.jacrev(torch.func.jacrev(f_dense))(x)
    assert got.shape == (4, 2, 4, 2)
    _close(got, exp, 1e-10, "Hessian")


@pytest.mark.parametrize("red", ["sum", "logsumexp", "min", "Kmin", "sumsoftmaxweight"])
def test_autograd_functional_jacobian(red):
    """torch.autograd.functional.jacobian (one backward per output) matches dense
    torch; the vectorized variant (legacy vmap of the backward) raises an error
    that points to torch.func."""
    x, y = _rand((4, 2), 1, grad=False), _rand((5, 2), 2, grad=False)

    def f(x, lazy=True):
        F = -Vi(x).sqdist(Vj(y)) if lazy else -_dense_sqdist(x, y)
        if red == "sum":
            return F.exp().sum(dim=1) if lazy else F.exp().sum(1, keepdim=True)
        if red == "logsumexp":
            return F.logsumexp(dim=1) if lazy else torch.logsumexp(F, 1)[:, None]
        if red == "min":
            return F.min(dim=1) if lazy else F.min(1).values[:, None]
        if red == "Kmin":
            return F.Kmin(2, dim=1) if lazy else torch.topk(F, 2, 1, largest=False).values
        return F.sumsoftmaxweight(Vj(y), dim=1) if lazy else torch.softmax(F, 1) @ y

    exp = torch.autograd.functional.jacobian(lambda x: f(x, False), x)
    got = torch.autograd.functional.jacobian(f, x)
    _close(got, exp, 1e-10, "jacobian")
    with pytest.raises(NotImplementedError, match="torch.func.jacrev"):
        torch.autograd.functional.jacobian(f, x, vectorize=True)


def test_logsumexp_gradients_are_stable_for_large_exponents():
    """The backward of logsumexp and sumsoftmaxweight uses exp(F - logsumexp):
    finite and equal to dense torch when exp(F) underflows (F ~ -1000). (The
    absolute tolerance 1e-10 is rounding against dF/dx ~ 1000: a one-hot softmax
    has a gradient w.r.t. x of ~1e-60, computed as a difference of O(1) terms.)"""
    x, y = _rand((5, 2), 1), _rand((6, 2), 2)
    F = -1000.0 * Vi(x).sqdist(Vj(y))
    Fd = -1000.0 * _dense_sqdist(x, y)
    pairs = [
        (F.logsumexp(dim=1), torch.logsumexp(Fd, 1)[:, None]),
        (F.logsumexp(dim=0), torch.logsumexp(Fd, 0)[:, None]),
        (F.sumsoftmaxweight(Vj(y), dim=1), torch.softmax(Fd, 1) @ y),
    ]
    for k, (out, ref) in enumerate(pairs):
        got = torch.autograd.grad(out.sum(), [x, y])
        exp = torch.autograd.grad(ref.sum(), [x, y], retain_graph=True)
        for g, e in zip(got, exp):
            assert torch.isfinite(g).all()
            _close(g, e, 1e-9, f"pair {k}", atol=1e-10)


# ============================================================================
# 8. Bad input
# ============================================================================


def test_integer_tensor_cannot_require_grad():
    """torch itself refuses requires_grad on an integer tensor, and a LazyTensor
    of an integer tensor is a TypeError naming the dtype."""
    with pytest.raises(RuntimeError, match="floating point"):
        torch.zeros((4, 2), dtype=torch.int64, requires_grad=True)
    with pytest.raises(TypeError, match="int64"):
        Vi(torch.zeros((4, 2), dtype=torch.int64))
    with pytest.raises(TypeError, match="int32"):
        LazyTensor(torch.zeros((4, 1, 2), dtype=torch.int32))


def _inplace_output(red, x, y, w):
    F = -Vi(x).sqdist(Vj(y))
    return {
        "sum": lambda: F.exp().sum(1),
        "logsumexp": lambda: F.logsumexp(1),
        "sumsoftmaxweight": lambda: F.sumsoftmaxweight(Vj(w), 1),
        "min": lambda: F.min(1),
        "Kmin": lambda: F.Kmin(2, 1),
    }[red]()


@pytest.mark.parametrize("red", ["sum", "logsumexp", "sumsoftmaxweight"])
@pytest.mark.parametrize("which", ["x", "y"])
def test_inplace_change_before_backward_raises(red, which):
    """Changing an argument in place between the forward and the backward of a
    sum / logsumexp / sumsoftmaxweight makes the backward raise torch's
    version-counter error (the arguments are saved for the backward)."""
    x, y = _rand((4, 2), 1), _rand((5, 2), 2, grad=(which == "x"))
    w = _rand((5, 1), 3, grad=False)
    out = _inplace_output(red, x, y, w)
    with torch.no_grad():
        (x if which == "x" else y).mul_(2.0)
    with pytest.raises(RuntimeError, match="inplace"):
        out.sum().backward()


@pytest.mark.parametrize("red", ["min", "Kmin"])
@pytest.mark.parametrize("which", ["x", "y"])
def test_inplace_change_before_backward_of_min(red, which):
    """min / Kmin: after an in-place change of an argument the backward either
    raises torch's version-counter error or returns the gradient at the point
    of the forward (the selected pairs were gathered into copies, as
    ``sqdist(x, y[idx])`` would in torch): never a gradient at the new values."""
    x, y = _rand((4, 2), 1), _rand((5, 2), 2)
    w = None
    before = torch.autograd.grad(_inplace_output(red, x, y, w).sum(), [x])
    out = _inplace_output(red, x, y, w)
    with torch.no_grad():
        (x if which == "x" else y).mul_(2.0)
    try:
        (after,) = torch.autograd.grad(out.sum(), [x])
    except RuntimeError as err:
        assert "inplace" in str(err)
    else:
        _close(after, before[0], 1e-14, "gradient after an in-place change")


def test_backward_through_argmin_raises():
    """A backward from argmin / argKmin outputs raises: they are not differentiable."""
    x, y = _knn_inputs()
    F = Vi(x).sqdist(Vj(y))
    for idx in (F.argmin(dim=1), F.argKmin(2, dim=0), F.min_argmin(dim=1)[1]):
        with pytest.raises(RuntimeError):
            idx.double().sum().backward()
        with pytest.raises(RuntimeError):
            torch.autograd.grad(idx.double().sum(), x)


# ============================================================================
# 9. LazyTensor.grad
# ============================================================================


def _grad_setup():
    x, y = _rand((5, 3), 1), _rand((6, 3), 2)
    p = _t([0.8])
    e_i = _rand((5, 1), 3, grad=False)
    return x, y, p, e_i


def _grad_formula(X, Y, P):
    return (-X.sqdist(Y) * P).exp() * (X | Y)


def _grad_dense(x, y, p):
    return torch.exp(-_dense_sqdist(x, y) * p) * (x[:, None, :] * y[None, :, :]).sum(-1)


def test_lazytensor_grad_matches_torch_autograd():
    """F.grad(Vi(x), e), F.grad(Vj(y), e), F.grad(Pm(p), e) reduced over the
    other axes equal the torch gradients of sum_ij e_i F_ij (dense and through
    kernelsolve's own backward)."""
    x, y, p, e = _grad_setup()
    X, Y, P = Vi(x), Vj(y), Pm(p)
    F = _grad_formula(X, Y, P)
    E = Vi(e)
    gx = F.grad(X, E).sum(dim=1)
    gy = F.grad(Y, E).sum(dim=0)
    gp = F.grad(P, E).sum(dim=1).sum(0)
    dense = torch.autograd.grad((_grad_dense(x, y, p) * e).sum(), [x, y, p])
    lazy = torch.autograd.grad((F.sum(dim=1) * e).sum(), [x, y, p])
    for got, d, k, n in zip((gx, gy, gp), dense, lazy, "xyp"):
        assert got.shape == d.shape, n
        _close(got, d, 1e-10, f"grad w.r.t. {n} vs dense")
        _close(got, k, 1e-10, f"grad w.r.t. {n} vs backward")


def test_lazytensor_grad_vector_formula_and_second_order():
    """grad of a vector formula with a vector gradin, and grad of a grad (the
    Hessian contracted with two vectors), against dense torch."""
    x, y = _rand((5, 3), 1), _rand((6, 3), 2)
    a = _rand((5, 3), 3, grad=False)
    b = _rand((5, 3), 4, grad=False)
    X, Y = Vi(x), Vj(y)
    G = (X - Y).normalize()
    g = G.grad(X, Vi(a))  # sum_k a_k dG_k/dx, dim 3
    h = g.grad(X, Vi(b)).sum(dim=1)  # b^T d/dx of that
    xd = x.detach().requires_grad_(True)
    Gd = torch.nn.functional.normalize(xd[:, None, :] - y.detach()[None, :, :], dim=-1)
    (gd,) = torch.autograd.grad((Gd * a[:, None, :]).sum(), xd, create_graph=True)
    (hd,) = torch.autograd.grad((gd * b).sum(), xd)
    _close(g.sum(dim=1), gd, 1e-10, "first order")
    _close(h, hd, 1e-10, "second order")


def test_lazytensor_grad_errors():
    """grad w.r.t. something that is not a variable of the formula, or not a
    variable at all, or with a gradin of the wrong dimension, is a ValueError."""
    x, y, p, e = _grad_setup()
    X, Y = Vi(x), Vj(y)
    F = _grad_formula(X, Y, Pm(p))
    z = _rand((5, 3), 7)
    with pytest.raises(ValueError, match="not a variable of this formula"):
        F.grad(Vi(z), Vi(e))
    with pytest.raises(ValueError, match="must be a variable"):
        F.grad(X * 2.0, Vi(e))
    with pytest.raises(ValueError, match="must be a variable"):
        F.grad(X + Y, Vi(e))
    F2 = Vi(x).sqdist(Vj(z))  # 5 points on both axes
    with pytest.raises(ValueError, match="not a variable of this formula"):
        F2.grad(Vj(x), Vi(e))  # x is bound as an i-variable, not a j-variable
    with pytest.raises(ValueError, match="gradin has inner dimension 3"):
        F.grad(X, Vi(x))


# ============================================================================
# 10. Numbers bound to parameters
# ============================================================================

NUMBER_REDUCTIONS = ["sum", "logsumexp", "min", "Kmin", "sumsoftmaxweight", "Kv"]


def _number_lazy(red, x, y, w):
    X, Y = Vi(x), Vj(y)
    F = -X.sqdist(Y) * Pm(0.5) + 0.25 * (X | Y)  # two numbers as parameters
    return {
        "sum": lambda: F.exp().sum(1),
        "logsumexp": lambda: F.logsumexp(0),
        "min": lambda: F.min(1),
        "Kmin": lambda: F.Kmin(2, 0),
        "sumsoftmaxweight": lambda: F.sumsoftmaxweight(Vj(w), 1),
        "Kv": lambda: F.exp() @ w,
    }[red]()


def _number_dense(red, x, y, w):
    F = -_dense_sqdist(x, y) * 0.5 + 0.25 * (x @ y.T)
    return {
        "sum": lambda: F.exp().sum(1, keepdim=True),
        "logsumexp": lambda: torch.logsumexp(F, 0)[:, None],
        "min": lambda: F.min(1).values[:, None],
        "Kmin": lambda: torch.topk(F, 2, 0, largest=False).values.T,
        "sumsoftmaxweight": lambda: torch.softmax(F, 1) @ w,
        "Kv": lambda: F.exp() @ w,
    }[red]()


@pytest.mark.parametrize("red", NUMBER_REDUCTIONS)
def test_numbers_as_parameters(red):
    """Pm(0.5) and a float literal in a formula with grad-requiring tensors: values
    and gradients match dense torch, and second order works (gradgradcheck)."""
    x, y, w = _rand((4, 2), 1), _rand((5, 2), 2), _rand((5, 2), 3)
    out = _number_lazy(red, x, y, w)
    ref = _number_dense(red, x, y, w)
    _close(out, ref, 1e-12, "values")
    cot = _rand(tuple(ref.shape), 4, grad=False)
    got = torch.autograd.grad((out * cot).sum(), [x, y, w], allow_unused=True)
    exp = torch.autograd.grad((ref * cot).sum(), [x, y, w], allow_unused=True)
    for g, e, n in zip(got, exp, "xyw"):
        if e is None:
            assert g is None, n
        else:
            _close(g, e, 1e-10, n)
    assert torch.autograd.gradgradcheck(lambda x, y, w: _number_lazy(red, x, y, w), (x, y, w))


# ============================================================================
# 11. no_grad
# ============================================================================


@pytest.mark.parametrize("red", NUMBER_REDUCTIONS + ["min_argmin", "argmin", "max"])
def test_no_grad_outputs_do_not_require_grad(red):
    """Inside torch.no_grad() the outputs of every reduction of grad-requiring
    inputs do not require grad, and equal the outputs computed with grad."""
    x, y, w = _rand((4, 2), 1), _rand((5, 2), 2), _rand((5, 2), 3)

    def run():
        F = -Vi(x).sqdist(Vj(y)) * Pm(0.5)
        if red == "min_argmin":
            return F.min_argmin(dim=1)
        if red == "argmin":
            return F.argmin(dim=0)
        if red == "max":
            return F.max(dim=0)
        return _number_lazy(red, x, y, w)

    with torch.no_grad():
        quiet = run()
    loud = run()
    quiet = quiet if isinstance(quiet, tuple) else (quiet,)
    loud = loud if isinstance(loud, tuple) else (loud,)
    for q, lo in zip(quiet, loud):
        assert not q.requires_grad and q.grad_fn is None
        assert q.dtype == lo.dtype
        _close(q, lo, 1e-12, red)
    if red != "argmin":
        assert loud[0].requires_grad
