"""Sums within a tolerance (engine/ranges/approx.py): the measured error of
``approx_sum`` against the dense float64 sum never exceeds its guarantee
``tol * sum_j |F_ij|`` (plus float rounding) over kernels, dimensions,
point sets and tolerances; it skips; tol=0 is the dense reduction; NaN is
never skipped.

Rounding allowance. The guarantee is for exact arithmetic. The compiled sum
and the NumPy reference each add n terms, each term F_ij evaluated within a
few ulps: recursive summation errs by at most ``(n - 1) eps sum |F|`` and
the evaluation by ``c eps sum |F|`` (c ulps per term), so the two results
differ from exact arithmetic by at most ``(2 n + 2 c) eps sum_j |F_ij|``;
the test allows ``(2 N + 32) eps sum_j |F_ij|`` on top of the budget.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelsolve.engine import dispatch, ir
from kernelsolve.engine.ranges.approx import approx_sum
from kernelsolve.engine.request import ReductionRequest

EPS = float(np.finfo(np.float64).eps)
TINY = float(np.finfo(np.float64).tiny)
CATS = (ir.I, ir.J, ir.J)


def _formula(kernel: str, D: int, B: int, h: float) -> ir.Node:
    """k(x_i, y_j) * b_j with x, y in D dimensions, b with B coordinates."""
    r2 = ir.make("sqdist", ir.var(0, ir.I, D), ir.var(1, ir.J, D))
    if kernel == "gauss":
        k = ir.make("exp", ir.make("neg", ir.make("mul", ir.const(1 / h), r2)))
    elif kernel == "exp":
        k = ir.make("exp", ir.make("neg", ir.make("mul", ir.const(1 / h), ir.make("sqrt", r2))))
    else:  # Cauchy
        k = ir.make("inv", ir.make("add", ir.const(1.0), ir.make("mul", ir.const(1 / h), r2)))
    return ir.make("mul", k, ir.var(2, ir.J, B))


def _kernel_matrix(kernel: str, x, y, h: float) -> np.ndarray:
    r2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    if kernel == "gauss":
        return np.exp(-r2 / h)
    if kernel == "exp":
        return np.exp(-np.sqrt(r2) / h)
    return 1.0 / (1.0 + r2 / h)


def _points(rng, n: int, D: int, clustered: bool) -> np.ndarray:
    if not clustered:
        return rng.random((n, D))
    centres = rng.random((5, D))
    return centres[rng.integers(0, 5, n)] + 0.02 * rng.standard_normal((n, D))


def _check(kernel, x, y, b, h, tol):
    """approx_sum against the dense float64 sum; returns info."""
    F = _formula(kernel, x.shape[1], b.shape[1], h)
    out, info = approx_sum(F, (x, y, b), CATS, tol, cluster_size=16)
    K = _kernel_matrix(kernel, x, y, h)
    exact, absum = K @ b, K @ np.abs(b)
    err = np.abs(out - exact)
    # + the subnormal flush: compiled kernels set results below the smallest normal
    # number to 0 (cpu_math.h's ks_flush_guard), up to TINY per term and operation
    allowed = (tol + (2 * len(y) + 32) * EPS) * absum + 4 * len(y) * TINY
    assert out.shape == exact.shape
    assert (err <= allowed).all(), float((err / np.maximum(allowed, 1e-300)).max())
    return info


@settings(max_examples=40, deadline=None)
@given(
    kernel=st.sampled_from(["gauss", "exp", "cauchy"]),
    D=st.integers(1, 3),
    B=st.integers(1, 2),
    clustered=st.booleans(),
    tol=st.sampled_from([1e-2, 1e-4, 1e-6, 1e-9]),
    h=st.sampled_from([1e-3, 1e-2, 1e-1]),
    M=st.integers(1, 300),
    N=st.integers(1, 300),
    seed=st.integers(0, 2**31 - 1),
)
def test_error_never_exceeds_the_bound(kernel, D, B, clustered, tol, h, M, N, seed):
    rng = np.random.default_rng(seed)
    x, y = _points(rng, M, D, clustered), _points(rng, N, D, clustered)
    b = rng.choice([-1.0, 1.0], (N, B)) * rng.random((N, B))
    _check(kernel, x, y, b, h, tol)


@pytest.mark.parametrize("kernel", ["gauss", "exp", "cauchy"])
def test_bound_holds_where_it_is_tight(kernel):
    """Many skipped pairs and a budget spent near its limit (tol 1e-2)."""
    rng = np.random.default_rng(1)
    x, y = rng.random((600, 2)), rng.random((900, 2))
    b = rng.choice([-1.0, 1.0], (900, 1))
    info = _check(kernel, x, y, b, 1e-3 if kernel != "exp" else 3e-2, 1e-2)
    assert info["skipped_blocks"] > 0


def test_it_skips_most_pairs():
    """Gaussian, bandwidth 1% of the domain, 2e4 points, tol 1e-6: more than
    half of the block pairs skipped; the error bound checked on 400 rows."""
    rng = np.random.default_rng(2)
    n, h = 20_000, 0.01**2
    x = rng.random((n, 2))
    b = rng.choice([-1.0, 1.0], (n, 1))
    F = _formula("gauss", 2, 1, h)
    out, info = approx_sum(F, (x, x, b), CATS, 1e-6)
    assert info["skipped_blocks"] > 0.5 and info["skipped_pairs"] > 0.5
    rows = rng.choice(n, 400, replace=False)
    K = _kernel_matrix("gauss", x[rows], x, h)
    err = np.abs(out[rows] - K @ b)
    assert (err <= (1e-6 + (2 * n + 32) * EPS) * (K @ np.abs(b))).all()


@pytest.mark.parametrize("tol", [0, 0.0, None])
def test_tol_zero_is_the_dense_reduction(tol):
    rng = np.random.default_rng(3)
    x, y, b = rng.random((200, 2)), rng.random((300, 2)), rng.standard_normal((300, 2))
    F = _formula("gauss", 2, 2, 1e-2)
    out, info = approx_sum(F, (x, y, b), CATS, tol)
    dense = dispatch.reduce(ReductionRequest(F, "sum", (x, y, b), CATS))
    assert np.array_equal(out, dense) and info["skipped_blocks"] == 0.0


def test_nan_is_never_skipped():
    rng = np.random.default_rng(4)
    x, y, b = rng.random((500, 2)), rng.random((700, 2)), rng.standard_normal((700, 1))
    x[[3, 250]] = np.nan
    y[10, 1] = np.nan
    b[400] = np.nan
    F = _formula("gauss", 2, 1, 1e-4)
    out, info = approx_sum(F, (x, y, b), CATS, 1e-2, cluster_size=16)
    dense = dispatch.reduce(ReductionRequest(F, "sum", (x, y, b), CATS))
    assert info["skipped_blocks"] > 0.5  # skips elsewhere
    assert np.isnan(dense).any()
    assert np.array_equal(np.isnan(out), np.isnan(dense))


def test_torch_in_torch_out_and_bad_tol():
    rng = np.random.default_rng(5)
    x, b = torch.rand(300, 1, dtype=torch.float64), torch.randn(300, 1, dtype=torch.float64)
    F = _formula("gauss", 1, 1, 1e-4)
    out, _ = approx_sum(F, (x, x, b), CATS, 1e-6)
    assert isinstance(out, torch.Tensor) and out.shape == (300, 1)
    with pytest.raises(ValueError, match="tol"):
        approx_sum(F, (x, x, b), CATS, -1.0)
    del rng


def test_float32_within_bound_and_float32_rounding():
    """float32 data: the error against the float64 sum of the same (float32)
    values stays within the budget plus float32 rounding."""
    rng = np.random.default_rng(6)
    x, y = rng.random((400, 2)).astype(np.float32), rng.random((500, 2)).astype(np.float32)
    b = rng.choice([-1.0, 1.0], (500, 1)).astype(np.float32)
    F = _formula("gauss", 2, 1, 1e-3)
    out, info = approx_sum(F, (x, y, b), CATS, 1e-4, cluster_size=16)
    assert out.dtype == np.float32 and info["skipped_blocks"] > 0.5
    K = _kernel_matrix("gauss", x.astype(np.float64), y.astype(np.float64), 1e-3)
    absum = K @ np.abs(b.astype(np.float64))
    eps32 = float(np.finfo(np.float32).eps)
    err = np.abs(out - K @ b.astype(np.float64))
    assert (err <= (1e-4 + (2 * len(y) + 32) * eps32) * absum).all()


def test_user_interval_and_its_shape_checked():
    """A hand-written bound is used (a loose one skips less); a bound of the
    wrong shape is refused with the expected shape named."""
    rng = np.random.default_rng(7)
    x, b = rng.random((300, 1)), rng.standard_normal((300, 1))
    F = _formula("gauss", 1, 1, 1e-4)

    def loose(bi, bj):  # |exp(-r2/h) b| <= max|b| over the j-box
        m = np.maximum(np.abs(bj.of(2)[0]), np.abs(bj.of(2)[1])).max(axis=1)
        return np.broadcast_to(-m, (len(bi.lo), len(m))), np.broadcast_to(m, (len(bi.lo), len(m)))

    out, info = approx_sum(F, (x, x, b), CATS, 1e-6, interval=loose, cluster_size=16)
    _, tight = approx_sum(F, (x, x, b), CATS, 1e-6, cluster_size=16)
    assert info["skipped_blocks"] < tight["skipped_blocks"]
    K = _kernel_matrix("gauss", x, x, 1e-4)
    assert (np.abs(out - K @ b) <= (1e-6 + 700 * EPS) * (K @ np.abs(b))).all()
    with pytest.raises(ValueError, match="interval"):
        approx_sum(F, (x, x, b), CATS, 1e-6, interval=lambda bi, bj: (np.zeros(3), np.zeros(3)))


def test_every_bound_zero():
    """F underflows to 0 on every pair (no fine bound evaluated): zeros."""
    x, y, b = np.zeros((1, 3)), np.ones((2, 3)), np.ones((2, 1))
    out, info = approx_sum(_formula("gauss", 3, 1, 1e-3), (x, y, b), CATS, 1e-2)
    assert out.tolist() == [[0.0]] and info["skipped_blocks"] == 1.0


def test_bad_input_named():
    x, b = np.random.default_rng(8).random((2, 50, 1)), np.ones((50, 1))
    F = _formula("gauss", 1, 1, 1e-2)
    with pytest.raises(ValueError, match=r"approx_sum: the i-variable leaves\[0\].*\(n, d\)"):
        approx_sum(F, (x, x[0], b), CATS, 1e-3)
    with pytest.raises(ValueError, match="tol"):
        approx_sum(F, (x[0], x[0], b), CATS, "small")
    out, _ = approx_sum(F, (x[0], x[0], b), CATS, np.float32(1e-3))  # any real number
    assert out.shape == (50, 1)
