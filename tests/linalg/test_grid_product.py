"""GridKernelProduct (near pairs exact, far pairs by FFT on a grid) against dense
NumPy products: accuracy by dimension, kernel and order, symmetry, odd point
layouts, and clear errors for what it cannot serve."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelsolve.engine import ir
from kernelsolve.linalg.grid_product import GridKernelProduct


def _formula(kind: str, d: int, scale: float) -> ir.Node:
    sq = ir.make("sqdist", ir.var(0, ir.I, d), ir.var(1, ir.J, d))
    if kind == "gauss":
        return ir.make("exp", ir.make("neg", ir.make("mul", ir.const(0.5 / scale**2), sq)))
    s = ir.make(
        "mul", ir.const((3**0.5 if kind == "matern32" else 1.0) / scale), ir.make("sqrt", sq)
    )
    decay = ir.make("exp", ir.make("neg", s))
    return ir.make("mul", ir.make("add", ir.const(1.0), s), decay) if kind == "matern32" else decay


def _dense(kind: str, x: np.ndarray, scale: float) -> np.ndarray:
    r = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    if kind == "gauss":
        return np.exp(-0.5 * (r / scale) ** 2)
    s = (3**0.5 if kind == "matern32" else 1.0) * r / scale
    return (1 + s) * np.exp(-s) if kind == "matern32" else np.exp(-s)


def _relative_error(K: GridKernelProduct, Kd: np.ndarray, V: np.ndarray) -> float:
    """Largest error relative to ``sum_j |K_ij V_j|`` (the measure of ``tol=``)."""
    scale = np.abs(Kd) @ np.abs(V)
    return float(np.max(np.abs(K.matmat(V) - Kd @ V) / scale))


@pytest.mark.parametrize(
    "d, n, kind, scale, bound",
    [
        # few points: boxes of 0.5-2 length scales; the error falls as they shrink
        # (2e-9 at 1e6 points in 2-D, docs/BENCHMARKS.md)
        (1, 3000, "matern12", 0.02, 1e-8),
        (2, 5000, "matern32", 0.1, 5e-5),
        (2, 5000, "gauss", 0.05, 1e-3),
        (2, 5000, "matern12", 0.1, 5e-5),
        (3, 4000, "gauss", 0.2, 3e-3),
        (3, 4000, "matern32", 0.2, 2e-3),
    ],
)
def test_products_match_dense(d, n, kind, scale, bound):
    rng = np.random.default_rng(d)
    x = rng.random((n, d))
    K = GridKernelProduct(_formula(kind, d, scale), (x, x), (ir.I, ir.J))
    V = rng.standard_normal((n, 3))
    Kd = _dense(kind, x, scale)
    err = _relative_error(K, Kd, V)
    assert err < bound
    # the far field carries weight: the near field alone misses by far more
    scale = np.abs(Kd) @ np.abs(V)
    assert np.max(np.abs(K.near(V) - Kd @ V) / scale) > 50 * err
    # the sampled error is a measurement of the same quantity on a random v
    assert K.sampled_error(rows=150) < 10 * bound


def test_error_falls_with_the_order():
    rng = np.random.default_rng(0)
    x = rng.random((6000, 2))
    F, Kd = _formula("matern32", 2, 0.1), _dense("matern32", x, 0.1)
    V = rng.standard_normal((6000, 1))
    errors = [_relative_error(GridKernelProduct(F, (x, x), (ir.I, ir.J), order=q), Kd, V)
              for q in (3, 5, 8)]  # fmt: skip
    assert errors[0] > 10 * errors[1] > 100 * errors[2]


def test_target_error_raises_the_order():
    rng = np.random.default_rng(4)
    x = rng.random((3000, 2))
    F = _formula("matern32", 2, 0.05)
    plain = GridKernelProduct(F, (x, x), (ir.I, ir.J))
    assert plain.error is None and plain.order == 6
    tight = GridKernelProduct(F, (x, x), (ir.I, ir.J), target_error=1e-8)
    assert tight.order > 6 and tight.error <= 1e-8
    V = rng.standard_normal((3000, 1))
    Kd = _dense("matern32", x, 0.05)
    assert _relative_error(tight, Kd, V) < 0.1 * _relative_error(plain, Kd, V)
    # out of reach: the order stops at its cap and says what it reached
    capped = GridKernelProduct(F, (x, x), (ir.I, ir.J), target_error=1e-30)
    assert capped.order == 14 and capped.error > 1e-30


def test_symmetric_as_cg_needs():
    rng = np.random.default_rng(1)
    x = rng.random((4000, 2))
    K = GridKernelProduct(_formula("matern32", 2, 0.05), (x, x), (ir.I, ir.J))
    u, v = rng.standard_normal((2, 4000))
    assert abs(u @ K.matmat(v) - v @ K.matmat(u)) < 1e-12 * np.abs(u).sum() * np.abs(v).sum()


@pytest.mark.parametrize(
    "layout",
    ["long and thin", "constant coordinate", "clustered", "fewer points than a box", "one point"],
)
def test_odd_layouts(layout):
    rng = np.random.default_rng(2)
    n = 3000
    if layout == "long and thin":
        x = rng.random((n, 2)) * [20.0, 0.05]
    elif layout == "constant coordinate":
        x = np.c_[rng.random(n), np.full(n, 0.3)]
    elif layout == "clustered":
        x = 0.5 + 0.01 * rng.standard_normal((n, 2))
        x[: n // 3] += 0.4
    elif layout == "fewer points than a box":
        n, x = 40, rng.random((40, 2))
    else:
        n, x = 1, np.array([[0.2, 0.7]])
    K = GridKernelProduct(_formula("gauss", 2, 0.1), (x, x), (ir.I, ir.J), target_error=1e-8)
    V = rng.standard_normal((n, 2))
    # long and thin: 3,000 points make boxes 4 length scales long (2e-6 at order 14)
    assert _relative_error(K, _dense("gauss", x, 0.1), V) < 1e-5


def test_vector_and_float32_points():
    rng = np.random.default_rng(3)
    x = rng.random((2000, 2))
    F, Kd = _formula("gauss", 2, 0.1), _dense("gauss", x, 0.1)
    v = rng.standard_normal(2000)
    out = GridKernelProduct(F, (x, x), (ir.I, ir.J)).matmat(v)
    assert out.shape == (2000,)
    scale = (np.abs(Kd) @ np.abs(v)).max()
    np.testing.assert_allclose(out, Kd @ v, atol=1e-4 * scale)  # boxes of 1.8 length scales
    x32 = x.astype(np.float32)
    out32 = GridKernelProduct(F, (x32, x32), (ir.I, ir.J)).matmat(v)
    assert out32.dtype == np.float64
    np.testing.assert_allclose(out32, out, atol=1e-6 * scale)  # float32 near field


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 400),
    d=st.integers(1, 3),
    box_points=st.integers(1, 60),
    order=st.integers(6, 8),
    scale=st.floats(0.5, 2.0),
    seed=st.integers(0, 2**16),
)
def test_random_problems(n, d, box_points, order, scale, seed):
    """Smooth kernels (length scale >= half the cloud) on any point count, box
    size and order: within 1e-4 of the dense product."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, d))
    K = GridKernelProduct(_formula("gauss", d, scale), (x, x), (ir.I, ir.J),
                          box_points=box_points, order=order)  # fmt: skip
    V = rng.standard_normal((n, 2))
    assert _relative_error(K, _dense("gauss", x, scale), V) < 1e-4


def test_bad_input_is_named():
    x = np.random.default_rng(0).random((50, 2))
    F = _formula("gauss", 2, 0.3)
    with pytest.raises(ValueError, match="1 to 3 dimensions"):
        x4 = np.random.default_rng(0).random((50, 4))
        GridKernelProduct(_formula("gauss", 4, 0.3), (x4, x4), (ir.I, ir.J))
    with pytest.raises(ValueError, match="no points"):
        GridKernelProduct(F, (x[:0], x[:0]), (ir.I, ir.J))
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        GridKernelProduct(F, (bad, bad), (ir.I, ir.J))
    with pytest.raises(ValueError, match="same"):
        GridKernelProduct(F, (x, x + 1), (ir.I, ir.J))
    with pytest.raises(ValueError, match="box_points"):
        GridKernelProduct(F, (x, x), (ir.I, ir.J), box_points=0)
    with pytest.raises(ValueError, match="order"):
        GridKernelProduct(F, (x, x), (ir.I, ir.J), order=1)
    with pytest.raises(ValueError, match="target_error"):
        GridKernelProduct(F, (x, x), (ir.I, ir.J), target_error=0.0)
    with pytest.raises(ValueError, match="scalar"):
        GridKernelProduct(ir.make("concat", F, F), (x, x), (ir.I, ir.J))
    K = GridKernelProduct(F, (x, x), (ir.I, ir.J))
    with pytest.raises(ValueError, match="50 rows"):
        K.matmat(np.ones((49, 1)))
