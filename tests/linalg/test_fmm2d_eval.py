"""The FMM evaluation of a fitted thin-plate spline at new points
(kernelsolve/linalg/fmm2d_eval.py), against dense sums, and its use by
KernelInterpolator."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from kernelsolve.linalg.fmm2d import TPSFMM2D
from kernelsolve.linalg.fmm2d_eval import TPSEvaluator
from kernelsolve.linalg.interpolate import KernelInterpolator
from kernelsolve.linalg.radial import KERNELS
from kernelsolve.linalg.rbf_direct import evaluate


def dense_tps(x, y, c, eps):
    r2 = ((x[:, None] - y[None]) ** 2).sum(-1) * eps**2
    phi = 0.5 * r2 * np.log(np.where(r2 > 0, r2, 1.0))
    return phi @ c


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("eps", [1.0, 3.7])
def test_matches_dense_sums(k, eps):
    rng = np.random.default_rng(k)
    y = rng.random((6000, 2)) * [2.0, 0.5] + [10.0, -3.0]
    c = rng.standard_normal((6000, k))
    ev = TPSEvaluator(TPSFMM2D(y, eps), c)
    lo, hi = y.min(0), y.max(0)
    x = np.concatenate(
        [
            lo + rng.random((3000, 2)) * (hi - lo),
            y[:50],  # on sources: r = 0
            np.array([lo, hi, [lo[0], hi[1]], [hi[0], lo[1]]]),  # the box's corners
        ]
    )
    assert ev.inside(x).all()
    ref = dense_tps(x, y, c, eps)
    scale = np.abs(dense_tps(x, y, np.abs(c), eps)).max()  # |Phi| |c|
    assert np.abs(ev(x) - ref).max() <= 1e-13 * scale


def test_outside_points_are_refused():
    rng = np.random.default_rng(0)
    y = rng.random((6000, 2))
    ev = TPSEvaluator(TPSFMM2D(y, 1.0), rng.standard_normal(6000))
    x = np.array([[0.5, 0.5], [1.2, 0.5], [0.5, -0.1]])
    assert ev.inside(x).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="outside the sources' bounding box"):
        ev(x)


def test_interpolator_evaluates_by_fmm():
    """A thin-plate spline fitted with FMM products evaluates by the FMM at points in
    the data's box, densely outside: the dense evaluation's values to rounding, the
    same whatever the chunking, and after pickling."""
    rng = np.random.default_rng(3)
    y = rng.random((6000, 2))
    d = np.sin(6 * y[:, 0]) * np.cos(4 * y[:, 1])
    f = KernelInterpolator(y, d, products="fmm")
    assert f.info.product == "fmm" and f._fmm_evaluator() is not None
    x = np.concatenate([rng.random((2000, 2)) * 1.4 - 0.2, y[:20]])  # some outside
    assert 0 < f._fmm_eval.inside(x).sum() < len(x)
    phi = KERNELS[f.kernel]
    dense = evaluate(x, f.y, phi, f.epsilon, f.powers, f._shift, f._scale, f._coeffs)[:, 0]
    out = f(x)
    assert np.abs(out - dense).max() <= 1e-10 * np.abs(dense).max()
    np.testing.assert_array_equal(np.concatenate([f(x[:777]), f(x[777:])]), out)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(f))(x), out)


def test_engine_products_keep_dense_evaluation():
    rng = np.random.default_rng(4)
    y = rng.random((3500, 2))
    f = KernelInterpolator(y, y[:, 0], products="engine", solver="iterative")
    assert f._fmm_evaluator() is None
