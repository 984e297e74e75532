"""``tol=`` on the log-sum-exp family, the fixed pattern of the solvers and
the user-facing keyword: every measured error within its stated bound
(``approx_sum``'s own properties are in ``test_approx_sum.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelsolve import LazyTensor, Vi, Vj
from kernelsolve.engine import ir
from kernelsolve.engine.ranges import approx
from kernelsolve.engine.ranges.approx_kernel import ApproxKernel
from kernelsolve.engine.ranges.approx_lse import approx_softmax
from kernelsolve.engine.ranges.approx_reduce import MIN_PAIRS, approximation_report
from kernelsolve.engine.request import ReductionRequest

EPS = float(np.finfo(np.float64).eps)


def _log_kernel(kernel: str, D: int) -> ir.Node:
    """log k(x_i, y_j) + c: Gaussian, exponential or Cauchy (the log of
    1 / (1 + r^2 / h)); ``1 / h`` and ``c`` are parameters 2 and 3 (one
    compiled kernel for all their values)."""
    r2 = ir.make("sqdist", ir.var(0, ir.I, D), ir.var(1, ir.J, D))
    g = ir.var(2, ir.P, 1)
    if kernel == "gauss":
        f = ir.make("neg", ir.make("mul", g, r2))
    elif kernel == "exp":
        f = ir.make("neg", ir.make("mul", g, ir.make("sqrt", r2)))
    else:
        f = ir.make("neg", ir.make("log", ir.make("add", ir.const(1.0), ir.make("mul", g, r2))))
    return ir.make("add", f, ir.var(3, ir.P, 1))


def _params(h: float, c: float = 0.0) -> tuple:
    return ((1 / h,), (c,))


def _log_matrix(kernel: str, x, y, h: float, c: float = 0.0) -> np.ndarray:
    r2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    if kernel == "gauss":
        return -r2 / h + c
    if kernel == "exp":
        return -np.sqrt(r2) / h + c
    return -np.log1p(r2 / h) + c


def _points(rng, n: int, D: int, clustered: bool) -> np.ndarray:
    if not clustered:
        return rng.random((n, D))
    centres = rng.random((4, D))
    return centres[rng.integers(0, 4, n)] + 0.02 * rng.standard_normal((n, D))


@settings(max_examples=30, deadline=None)
@given(
    kernel=st.sampled_from(["gauss", "exp", "cauchy"]),
    reduction=st.sampled_from(["logsumexp", "logsumexp_weight", "sumsoftmaxweight"]),
    D=st.integers(1, 3),
    clustered=st.booleans(),
    tol=st.sampled_from([1e-2, 1e-4, 1e-8]),
    h=st.sampled_from([1e-3, 1e-2, 1e-1]),
    shift=st.sampled_from([0.0, -800.0, 700.0]),
    M=st.integers(1, 250),
    N=st.integers(1, 250),
    seed=st.integers(0, 2**31 - 1),
)
def test_softmax_family_within_its_bound(
    kernel, reduction, D, clustered, tol, h, shift, M, N, seed
):
    # shift: exp(F) under- or overflows in float64; the log domain must not care
    rng = np.random.default_rng(seed)
    x, y = _points(rng, M, D, clustered), _points(rng, N, D, clustered)
    F, P = _log_kernel(kernel, D), _params(h, shift)
    L = _log_matrix(kernel, x, y, h, shift)
    top = L.max(axis=1, keepdims=True)
    E = np.exp(L - top)  # exp(F) / exp(top)
    if reduction == "logsumexp":
        req = ReductionRequest(F, reduction, (x, y) + P, (ir.I, ir.J, ir.P, ir.P))
        out, _ = approx_softmax(req, tol, cluster_size=8)
        exact = np.log(E.sum(1)) + top[:, 0]
        err = np.abs(out[:, 0] - exact)
        assert (err <= -np.log1p(-tol) + 1e-12 * np.maximum(1, np.abs(exact))).all()
        return
    w = rng.standard_normal((N, 2))
    if reduction == "logsumexp_weight":
        w = np.abs(w) + 0.5  # positive sums: a finite log
    weight = ir.var(4, ir.J, 2)
    cats = (ir.I, ir.J, ir.P, ir.P, ir.J)
    req = ReductionRequest(F, reduction, (x, y) + P + (w,), cats, weight=weight)
    out, _ = approx_softmax(req, tol, cluster_size=8)
    S, Sw = E.sum(1, keepdims=True), E @ w
    wmax = np.abs(w).max()
    if reduction == "logsumexp_weight":
        # inner sums (scaled by exp(-top)) within tol * max|w| * S
        approx_inner = np.exp(out - top)
        assert (np.abs(approx_inner - Sw) <= (tol * wmax + 1e-12) * S).all()
    else:
        err = np.abs(out - Sw / S)
        assert (err <= 2 * tol / (1 - tol) * wmax + 1e-12 * wmax).all()


@settings(max_examples=20, deadline=None)
@given(
    kernel=st.sampled_from(["gauss", "exp", "cauchy"]),
    D=st.integers(1, 3),
    clustered=st.booleans(),
    tol=st.sampled_from([1e-2, 1e-5, 1e-9]),
    h=st.sampled_from([1e-3, 1e-2]),
    n=st.integers(2, 300),
    seed=st.integers(0, 2**31 - 1),
)
def test_fixed_pattern_within_its_bound_and_symmetric(kernel, D, clustered, tol, h, n, seed):
    rng = np.random.default_rng(seed)
    x = _points(rng, n, D, clustered)
    F = ir.make("exp", _log_kernel(kernel, D))
    K = np.exp(_log_matrix(kernel, x, x, h))
    op = ApproxKernel(F, (x, x) + _params(h), (ir.I, ir.J, ir.P, ir.P), tol)
    eye = np.eye(n + 4 - n % 4)[:n]  # 4 columns a product: one compiled kernel for all n
    Kt = np.hstack([op.matmat(eye[:, c : c + 4]) for c in range(0, n, 4)])[:, :n]
    assert np.abs(Kt - Kt.T).max() <= 1e-15 * K.max()
    v = rng.standard_normal((n, 4))
    err = np.abs(op.matmat(v) - K @ v)
    bound = (tol + (2 * n + 32) * EPS) * np.abs(v).max() * K.sum(1, keepdims=True)
    assert (err <= bound).all()


def _gauss(x, y, h=1e-4):
    return (-Vi(x).sqdist(Vj(y)) / h).exp()


def test_keyword_on_every_sum_type_reduction():
    rng = np.random.default_rng(0)
    x, y = rng.random((1100, 2)), rng.random((1000, 2))
    assert len(x) * len(y) >= MIN_PAIRS
    b = rng.standard_normal((1000, 1))
    K, Kd = _gauss(x, y), np.exp(-((x[:, None] - y[None]) ** 2).sum(-1) / 1e-4)
    tol = 1e-6
    with approximation_report() as report:
        s1 = K.sum(1, tol=tol)
        s0 = K.sum(0, tol=tol)
        kb = K.__matmul__(b, tol=tol)
        F = -Vi(x).sqdist(Vj(y)) / 1e-4
        lse = F.logsumexp(1, tol=tol)
        smw = F.sumsoftmaxweight(Vj(b), axis=1, tol=tol)
    assert report.calls == 5 and report.skipped_fraction > 0.5
    assert (np.abs(s1[:, 0] - Kd.sum(1)) <= 1.01 * tol * Kd.sum(1)).all()
    assert (np.abs(s0[:, 0] - Kd.sum(0)) <= 1.01 * tol * Kd.sum(0)).all()
    assert (np.abs(kb - Kd @ b) <= 1.01 * tol * (Kd @ np.abs(b))).all()
    Ld = -((x[:, None] - y[None]) ** 2).sum(-1) / 1e-4
    top = Ld.max(1)
    exact = top + np.log(np.exp(Ld - top[:, None]).sum(1))
    assert np.abs(lse[:, 0] - exact).max() <= 1.01 * tol
    E = np.exp(Ld - top[:, None])
    assert np.abs(smw - (E @ b) / E.sum(1, keepdims=True)).max() <= 2.01 * tol * np.abs(b).max()


def test_torch_gradients_within_the_bound_of_their_own_sums():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.random((1100, 2)), requires_grad=True)
    K = _gauss(x, x)
    K.sum(1, tol=1e-8).sum().backward()
    g_approx, x.grad = x.grad.clone(), None
    K.sum(1).sum().backward()
    # the gradient is two sums of |dK| ~ |K| / h terms: within 1e-8 of their scale
    scale = x.grad.abs().max().item() + 2e4 * 1e-4 * 1100
    assert (g_approx - x.grad).abs().max().item() <= 1e-8 * scale * 10


def test_small_problems_run_dense_and_say_so():
    x = np.random.default_rng(2).random((100, 2))
    with approximation_report() as report:
        out = _gauss(x, x).sum(1, tol=1e-3)
    assert np.array_equal(out, _gauss(x, x).sum(1))
    assert report.calls == 1 and report.skipped_fraction == 0.0


def test_the_grid_is_cached_with_the_points(monkeypatch):
    x = np.random.default_rng(3).random((1100, 2))
    K = _gauss(x, x)
    K.sum(1, tol=1e-6)
    calls = []
    real = approx.grid_boxes
    monkeypatch.setattr(approx, "grid_boxes", lambda *a, **k: calls.append(1) or real(*a, **k))
    K.sum(1, tol=1e-6)
    assert calls == []  # both sides, second product: no clustering
    x[0, 0] += 0.5  # changed in place: a new grid
    K.sum(1, tol=1e-6)
    assert len(calls) == 1


def test_bad_tol_is_named():
    rng = np.random.default_rng(4)
    x = rng.random((1100, 2))
    K = _gauss(x, x)
    for bad in (-1e-3, 1.0, float("nan"), "1e-6", True):
        with pytest.raises(ValueError, match="tol="):
            K.sum(1, tol=bad)
    with pytest.raises(ValueError, match="only valid for sum-type"):
        K.argKmin(3, 1, tol=1e-3)
    ranges = (np.array([[0, 1100]]), np.array([1]), np.array([[0, 1100]])) * 2
    with pytest.raises(ValueError, match="tol= and ranges="):
        K.sum(1, tol=1e-3, ranges=ranges)
    xb = rng.random((2, 800, 1, 2))
    yb = LazyTensor(rng.random((2, 1, 1400, 2)))
    Kb = (-(LazyTensor(xb) - yb).sqnorm2() / 1e-4).exp()
    with pytest.raises(ValueError, match="batch dimensions"):
        Kb.sum(2, tol=1e-3)


def test_solve_with_tol_close_to_exact_and_reports_skipped():
    rng = np.random.default_rng(5)
    x = rng.random((3000, 2))
    b = rng.standard_normal(3000)
    K = _gauss(x, x, h=1e-3)
    exact = K.solve(b, alpha=0.1, rtol=1e-10, solver="cg")
    a, info = K.solve(b, alpha=0.1, rtol=1e-10, solver="cg", tol=1e-8, return_info=True)
    assert info.skipped_pairs > 0.5
    # ||K~ - K||_inf <= tol max_i sum_j K_ij; the solution moves by about that / alpha
    assert np.abs(a - exact).max() <= 1e-8 * 40 / 0.1 * np.abs(exact).max()
    direct, info = K.solve(b, alpha=0.1, tol=1e-8, return_info=True)
    assert info.method == "direct" and info.skipped_pairs == 0.0
