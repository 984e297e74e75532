"""Forward-mode autodiff of the reductions in torch: ``torch.func.jvp``,
``jacfwd``, ``hessian`` (forward over reverse) and ``torch.autograd.forward_ad``
against the same function written with dense torch, in float64, on every
reduction that has a gradient; higher orders; batched LazyTensors.

The reference engine runs most cases (each new formula would compile a kernel
on the CPU target); ``test_compiled_target_*`` runs the compiled one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.autograd.forward_ad as fwAD

from kernelsolve import LazyTensor, Pm, Vi, Vj, config

from .autograd_cases import OP_CASES, REDUCTIONS_BY_NAME, axis_for, differentiable_function
from .autograd_cases import REDUCTIONS as AD_REDUCTIONS

F64 = torch.float64

# reduction name -> (lazy, dense) of (F, b) with F the (M, N) formula -> (M, E)
REDUCTIONS = {
    "sum": (lambda F, b: (F.exp() * b).sum(dim=1), lambda F, b: (F.exp()[..., None] * b).sum(-2)),
    "matmul": (lambda F, b: F.exp() @ b.variables[0], lambda F, b: F.exp() @ b[0]),
    "sum_over_i": (lambda F, b: F.exp().sum(dim=0), lambda F, b: F.exp().sum(-2)[..., None]),
    "logsumexp": (lambda F, b: F.logsumexp(dim=1), lambda F, b: torch.logsumexp(F, -1)[..., None]),
    "logsumexp_weight": (
        lambda F, b: F.logsumexp(dim=1, weight=b),
        lambda F, b: torch.log((F.exp()[..., None] * b).sum(-2)),
    ),
    "sumsoftmaxweight": (
        lambda F, b: F.sumsoftmaxweight(b, dim=1),
        lambda F, b: torch.softmax(F, -1) @ b[0],
    ),
    "min": (lambda F, b: F.min(dim=1), lambda F, b: F.min(-1).values[..., None]),
    "max_over_i": (lambda F, b: F.max(dim=0), lambda F, b: F.max(-2).values[..., None]),
    "Kmin": (lambda F, b: F.Kmin(3, dim=1), lambda F, b: torch.topk(F, 3, -1, largest=False)[0]),
    "min_argmin": (
        lambda F, b: F.min_argmin(dim=1)[0],
        lambda F, b: F.min(-1).values[..., None],
    ),
}
NAMES = list(REDUCTIONS)


@pytest.fixture(autouse=True)
def _reference_engine(monkeypatch, request):
    if "compiled" not in request.node.name:
        monkeypatch.setattr(config, "backend", "reference")


def _rand(shape, seed, lo=-1.0, hi=1.0):
    return torch.tensor(np.random.default_rng(seed).uniform(lo, hi, shape), dtype=F64)


def _data(M=4, N=5, D=2, E=2):
    """x (M, D), y (N, D), b (N, E) > 0, p (1,): values, then tangents."""
    values = (
        _rand((M, D), 1),
        _rand((N, D), 2),
        _rand((N, E), 3, 0.5, 1.5),
        _rand((1,), 4, 0.5, 1),
    )
    tangents = tuple(_rand(v.shape, 10 + k) for k, v in enumerate(values))
    return values, tangents


def _function(name: str, lazy: bool):
    """(x, y, b, p) -> the reduction of F = -p |x_i - y_j|^2 (b: weight/values)."""
    red = REDUCTIONS[name][0 if lazy else 1]

    def f(x, y, b, p):
        if lazy:
            F = -Pm(p) * Vi(x).sqdist(Vj(y))
            return red(F, Vj(b))
        F = -p * ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        return red(F, b[None] if name in ("matmul", "sumsoftmaxweight") else b)

    return f


def _close(got, want, rtol=1e-10, what=""):
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = want.abs().max().item() + 1e-300
    err = (got - want).abs().max().item()
    assert err <= rtol * scale, f"{what}: max error {err:.3e} vs scale {scale:.3e}"


# ----------------------------------------------------------------------------
# First order: jvp, forward_ad, jacfwd
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_func_jvp_matches_dense(name):
    values, tangents = _data()
    out, tan = torch.func.jvp(_function(name, True), values, tangents)
    want_out, want_tan = torch.func.jvp(_function(name, False), values, tangents)
    _close(out, want_out, what="value")
    _close(tan, want_tan, what="tangent")


@pytest.mark.parametrize("name", ["sum", "logsumexp", "logsumexp_weight", "min", "Kmin"])
def test_forward_ad_dual_tensors_match_dense(name):
    values, tangents = _data()
    outs = []
    for lazy in (True, False):
        with fwAD.dual_level():
            duals = [fwAD.make_dual(v, t) for v, t in zip(values, tangents)]
            outs.append(fwAD.unpack_dual(_function(name, lazy)(*duals)))
    (out, tan), (want_out, want_tan) = outs
    assert tan is not None
    _close(out, want_out, what="value")
    _close(tan, want_tan, what="tangent")


def test_forward_ad_with_one_dual_among_plain_tensors():
    (x, y, b, p), (tx, *_) = _data()
    f, g = _function("logsumexp_weight", True), _function("logsumexp_weight", False)
    tans = []
    for fn in (f, g):
        with fwAD.dual_level():
            tans.append(fwAD.unpack_dual(fn(fwAD.make_dual(x, tx), y, b, p)).tangent)
    _close(*tans, what="tangent w.r.t. x only")


@pytest.mark.parametrize("name", NAMES)
def test_jacfwd_matches_jacrev_and_dense(name):
    values, _ = _data(M=3, N=4)
    argnums = (0, 1, 2, 3)
    got = torch.func.jacfwd(_function(name, True), argnums=argnums)(*values)
    rev = torch.func.jacrev(_function(name, True), argnums=argnums)(*values)
    want = torch.func.jacfwd(_function(name, False), argnums=argnums)(*values)
    for k in argnums:
        _close(got[k], want[k], what=f"jacfwd argnum {k}")
        _close(got[k], rev[k], what=f"jacfwd vs jacrev argnum {k}")


def test_number_parameter_has_no_tangent():
    """A Python number bound to a parameter is a constant of the formula."""
    (x, y, _, _), (tx, ty, _, _) = _data()

    def f(x, y, lazy):
        if lazy:
            return (-Vi(x).sqdist(Vj(y)) * Pm(0.5)).exp().sum(dim=1)
        return torch.exp(-0.5 * ((x[:, None] - y[None]) ** 2).sum(-1)).sum(1, keepdim=True)

    got = torch.func.jvp(lambda x, y: f(x, y, True), (x, y), (tx, ty))[1]
    want = torch.func.jvp(lambda x, y: f(x, y, False), (x, y), (tx, ty))[1]
    _close(got, want, what="tangent")


def test_index_outputs_have_no_tangent():
    (x, y, _, _), (tx, ty, _, _) = _data()
    want = (-Vi(x).sqdist(Vj(y))).argmin(dim=1)
    with fwAD.dual_level():
        F = -Vi(fwAD.make_dual(x, tx)).sqdist(Vj(y))
        idx = F.argmin(dim=1)
        vals, idx2 = F.min_argmin(dim=1)
        assert fwAD.unpack_dual(idx).tangent is None
        assert fwAD.unpack_dual(idx2).tangent is None
        assert fwAD.unpack_dual(vals).tangent is not None
    assert not idx.is_floating_point()
    assert torch.equal(idx, want) and torch.equal(idx2, want)


# ----------------------------------------------------------------------------
# Higher orders
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_hessian_matches_dense(name):
    """hessian = jacfwd(jacrev(f)): forward mode over the backward's reductions."""
    (x, y, b, p), _ = _data(M=3, N=4)

    def scalar(lazy):
        f = _function(name, lazy)
        return lambda x, y: (f(x, y, b, p) ** 2).sum()

    got = torch.func.hessian(scalar(True), argnums=(0, 1))(x, y)
    want = torch.func.hessian(scalar(False), argnums=(0, 1))(x, y)
    for r in range(2):
        for c in range(2):
            _close(got[r][c], want[r][c], what=f"hessian block {r}{c}")


@pytest.mark.parametrize("name", ["sum", "logsumexp_weight", "sumsoftmaxweight", "Kmin"])
def test_jvp_of_jvp_and_third_order(name):
    """d^k/dh^k f(v + h t) for k = 2, 3 by nested torch.func.jvp."""
    values, tangents = _data()

    def directional(fn, order):
        if order == 0:
            return fn
        inner = directional(fn, order - 1)
        return lambda *v: torch.func.jvp(inner, v, tangents)[1]

    for order in (2, 3):
        got = directional(_function(name, True), order)(*values)
        want = directional(_function(name, False), order)(*values)
        _close(got, want, 1e-9, f"order {order}")


@pytest.mark.parametrize("name", ["sum", "logsumexp", "min"])
def test_jvp_of_a_gradient(name):
    """Forward over reverse: the Hessian-vector product jvp(grad(f), v, t)."""
    values, tangents = _data()

    def grad_of(lazy):
        f = _function(name, lazy)
        return torch.func.grad(lambda *v: (f(*v) ** 2).sum(), argnums=(0, 1, 2, 3))

    got = torch.func.jvp(grad_of(True), values, tangents)[1]
    want = torch.func.jvp(grad_of(False), values, tangents)[1]
    for k in range(4):
        _close(got[k], want[k], what=f"hvp argument {k}")


def test_forward_ad_over_backward():
    """A dual tensor through torch.autograd.grad(create_graph=True)."""
    values, tangents = _data()
    tans = []
    for lazy in (True, False):
        f = _function("logsumexp", lazy)
        with fwAD.dual_level():
            x = fwAD.make_dual(values[0], tangents[0]).requires_grad_()
            (g,) = torch.autograd.grad(f(x, *values[1:]).square().sum(), x, create_graph=True)
            tans.append(fwAD.unpack_dual(g).tangent)
    _close(*tans, what="tangent of the gradient")


# ----------------------------------------------------------------------------
# Batches, vmap, compiled target
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sum", "logsumexp_weight", "min"])
def test_batched_lazytensors(name):
    """Broadcast batch dimensions: x (2, 1, M, 1, D), y (1, 3, 1, N, D)."""
    x, y, b = (
        _rand((2, 1, 4, 1, 2), 1),
        _rand((1, 3, 1, 5, 2), 2),
        _rand((2, 3, 1, 5, 1), 3, 0.5, 1),
    )
    t = tuple(_rand(v.shape, 10 + k) for k, v in enumerate((x, y, b)))

    def f(x, y, b, lazy):
        if lazy:
            F = -LazyTensor(x).sqdist(LazyTensor(y))
            b = LazyTensor(b)
            outs = {"sum": lambda: (F.exp() * b).sum(3), "min": lambda: (F * b).min(3)}
            outs["logsumexp_weight"] = lambda: F.logsumexp(3, weight=b)
            return outs[name]()
        F = -((x - y) ** 2).sum(-1, keepdim=True)
        outs = {"sum": lambda: (F.exp() * b).sum(3), "min": lambda: (F * b).min(3).values}
        outs["logsumexp_weight"] = lambda: torch.log((F.exp() * b).sum(3))
        return outs[name]()

    got = torch.func.jvp(lambda *v: f(*v, True), (x, y, b), t)
    want = torch.func.jvp(lambda *v: f(*v, False), (x, y, b), t)
    for g, w in zip(got, want):
        _close(g, w, what="batched jvp")
    jac = torch.func.jacfwd(lambda y: f(x, y, b, True))(y)
    _close(jac, torch.func.jacfwd(lambda y: f(x, y, b, False))(y), what="batched jacfwd")


def test_vmap_of_jvp_equals_a_loop():
    (x, y, b, p), _ = _data()
    tx = _rand((3,) + tuple(x.shape), 20)
    f = _function("logsumexp_weight", True)

    def tangent(t):
        return torch.func.jvp(lambda x: f(x, y, b, p), (x,), (t,))[1]

    got = torch.func.vmap(tangent)(tx)
    loop = torch.stack([tangent(t) for t in tx])
    _close(got, loop, 1e-13, "vmap(jvp) vs loop")


def test_compiled_target_jvp_and_hessian():
    """The tangent and Hessian formulas compile and run on the CPU target."""
    values, tangents = _data()
    for name in ("sum", "logsumexp_weight"):
        got = torch.func.jvp(_function(name, True), values, tangents)[1]
        want = torch.func.jvp(_function(name, False), values, tangents)[1]
        _close(got, want, 1e-9, f"{name} jvp")
    f, g = _function("sum", True), _function("sum", False)
    x, y, b, p = values
    got = torch.func.hessian(lambda x: f(x, y, b, p).sum())(x)
    _close(got, torch.func.hessian(lambda x: g(x, y, b, p).sum())(x), 1e-9, "hessian")


# ----------------------------------------------------------------------------
# Every differentiable op under every reduction (tests/autograd_cases.py)
# ----------------------------------------------------------------------------

# each op case under two reductions, in rotation: every op and every reduction
# is covered (each reduction by ~10 ops), for a fifth of the full cross-product
FORWARD_COMBINATIONS = [
    (c.name, AD_REDUCTIONS[(k + shift) % len(AD_REDUCTIONS)].name)
    for k, c in enumerate(OP_CASES)
    for shift in (0, len(AD_REDUCTIONS) // 2)
]


def test_forward_combinations_cover_every_op_and_reduction():
    assert {c for c, _ in FORWARD_COMBINATIONS} == {c.name for c in OP_CASES}
    assert {r for _, r in FORWARD_COMBINATIONS} == {r.name for r in AD_REDUCTIONS}


@pytest.mark.parametrize(
    "case_name,red_name", FORWARD_COMBINATIONS, ids=[f"{c}-{r}" for c, r in FORWARD_COMBINATIONS]
)
def test_forward_gradcheck(case_name, red_name):
    """Forward-mode Jacobians (torch.autograd.forward_ad, one dual per input
    entry) agree with finite differences, for the i-, j-variable, the
    parameter and the extra tensor (v, weights) at once."""
    index = next(k for k, c in enumerate(OP_CASES) if c.name == case_name)
    case, red = OP_CASES[index], REDUCTIONS_BY_NAME[red_name]
    axis = axis_for(index, red)
    inputs = case.inputs() + red.extra(axis)
    assert torch.autograd.gradcheck(
        differentiable_function(case, red, axis),
        inputs,
        check_forward_ad=True,
        check_backward_ad=False,
        check_undefined_grad=False,
    )
