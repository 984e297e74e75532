"""The 2-D thin-plate-spline FMM (kernelsolve/linalg/fmm2d.py) against dense products.

``TPSFMM2D.matmat(V)`` must equal ``Phi @ V`` with ``Phi_ij = phi(eps |y_i - y_j|)``,
``phi(r) = r^2 log r``, computed densely with NumPy, to 1e-12 relative to
``|Phi| @ |V|`` (the scale of the sum before cancellation), on uniform, clustered and
elongated point sets, several shape parameters, one or several columns; the error must
shrink with the expansion order. Also: ``fmm_worthwhile`` and bad input.
"""

from __future__ import annotations

import numpy as np
import pytest

from kernelsolve.linalg.fmm2d import TPSFMM2D, fmm_worthwhile


def dense_tps(y, eps):
    r2 = eps**2 * ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r2 > 0, 0.5 * r2 * np.log(np.where(r2 > 0, r2, 1.0)), 0.0)


def points(kind, n, rng):
    if kind == "uniform":
        return rng.random((n, 2))
    if kind == "elongated":  # a 10 x 0.5 strip, far from the origin
        return rng.random((n, 2)) * [10.0, 0.5] + [100.0, -40.0]
    # two tight clusters and a sprinkle: boxes of very different counts, empty boxes
    a = 0.01 * rng.standard_normal((n // 2, 2)) + [0.2, 0.3]
    b = 0.05 * rng.standard_normal((n // 2 - 50, 2)) + [0.8, 0.7]
    return np.concatenate([a, b, rng.random((50, 2))])


def scaled_error(fmm_out, y, V, eps):
    Phi = dense_tps(y, eps)
    ref = Phi @ V
    scale = np.abs(Phi) @ np.abs(V)
    return float(np.max(np.abs(fmm_out - ref) / scale)), ref


@pytest.mark.parametrize(
    "kind,eps",
    [("uniform", 1.0), ("uniform", 37.0), ("elongated", 0.3), ("clustered", 2.0)],
)
def test_matches_dense(kind, eps):
    """Three columns (two column blocks) and smooth + rough charges: relative error
    <= 1e-12 of |Phi| |V|, and the output is the one of the dense product."""
    rng = np.random.default_rng(0)
    y = points(kind, 3000, rng)
    V = np.stack([rng.standard_normal(len(y)), np.ones(len(y)), np.sin(5 * y[:, 0])], 1)
    fmm = TPSFMM2D(y, eps)
    assert fmm.level >= 3  # a real far field: M2L at 2+ levels
    out = fmm.matmat(V)
    err, ref = scaled_error(out, y, V, eps)
    assert err <= 1e-12, err
    assert out.shape == ref.shape


def test_vector_input_and_zero_moments():
    """A 1-D vector gives a 1-D result; charges with zero linear moments (as the
    interpolation coefficients have), where the sum cancels most, stay accurate."""
    rng = np.random.default_rng(1)
    y = rng.random((2500, 2))
    v = rng.standard_normal(2500)
    P = np.column_stack([np.ones(2500), y])
    v -= P @ np.linalg.lstsq(P, v, rcond=None)[0]  # P^T v = 0
    fmm = TPSFMM2D(y, 1.0)
    out = fmm.matmat(v)
    assert out.shape == (2500,)
    err, _ = scaled_error(out[:, None], y, v[:, None], 1.0)
    assert err <= 1e-12, err


def test_error_shrinks_with_order():
    """The expansion order controls the error: order 6 is far less accurate than 30."""
    rng = np.random.default_rng(2)
    y = rng.random((2000, 2))
    v = rng.standard_normal((2000, 1))
    low, _ = scaled_error(TPSFMM2D(y, 1.0, order=6).matmat(v), y, v, 1.0)
    high, _ = scaled_error(TPSFMM2D(y, 1.0, order=30).matmat(v), y, v, 1.0)
    assert high <= 1e-12 and low > 1e3 * high, (low, high)


def test_fmm_worthwhile():
    """Quasi-uniform points with enough levels: yes; a tight cluster (most points in
    a few leaf boxes), 3-D points or too few points: no."""
    rng = np.random.default_rng(3)
    assert fmm_worthwhile(rng.random((20000, 2)))
    cluster = np.concatenate([1e-4 * rng.random((19000, 2)), rng.random((1000, 2))])
    assert not fmm_worthwhile(cluster)
    assert not fmm_worthwhile(rng.random((20000, 3)))
    assert not fmm_worthwhile(rng.random((100, 2)))


@pytest.mark.parametrize(
    "y,kw,match",
    [
        (np.zeros((10, 3)), {}, "shape"),
        (np.zeros(10), {}, "shape"),
        (np.random.default_rng(0).random((50, 2)), {"order": 0}, "order"),
        (np.full((50, 2), np.nan), {}, "NaN"),
        (np.random.default_rng(0).random((50, 2)), {"epsilon": 0.0}, "epsilon"),
        (np.random.default_rng(0).random((50, 2)), {"epsilon": np.inf}, "epsilon"),
    ],
    ids=["3-D", "1-D", "order 0", "NaN", "epsilon 0", "epsilon inf"],
)
def test_bad_input(y, kw, match):
    """Wrong shapes, non-finite points, a non-positive epsilon or order: ValueError."""
    kw = {"epsilon": 1.0, **kw}
    with pytest.raises(ValueError, match=match):
        TPSFMM2D(y, **kw)
