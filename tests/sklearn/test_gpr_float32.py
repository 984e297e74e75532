"""``product_dtype="float32"``: the iterative path's kernel products in float32,
everything the solver keeps in float64; the answers within float32's rounding
of the float64 ones, and the direct path untouched."""

import numpy as np
import pytest
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.utils._param_validation import InvalidParameterError

from kernelsolve.sklearn import GaussianProcessRegressor


def _model(solver, dtype):
    kernel = ConstantKernel(1.0) * Matern(0.1, nu=1.5) + WhiteKernel(1e-2)
    return GaussianProcessRegressor(
        kernel,
        optimizer=None,
        solver=solver,
        rtol=1e-5,
        n_probes=4,
        random_state=0,
        product_dtype=dtype,
    )


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    X = rng.random((800, 2))
    return X, np.sin(6 * X[:, 0]) + 0.1 * rng.standard_normal(800), rng.random((100, 2))


def test_float32_products_agree_with_float64(data):
    X, y, Xq = data
    a, b = _model("iterative", "float64").fit(X, y), _model("iterative", "float32").fit(X, y)
    mean64, std64 = a.predict(Xq, return_std=True)
    mean32, std32 = b.predict(Xq, return_std=True)
    assert mean32.dtype == np.float64 and b.alpha_.dtype == np.float64
    # CG to rtol 1e-5 either way; float32 products add ~1e-6 relative
    np.testing.assert_allclose(mean32, mean64, atol=1e-4 * np.abs(mean64).max())
    np.testing.assert_allclose(std32, std64, atol=1e-4)
    # stochastic estimates (the preconditioner's pivots may differ): within
    # three of their combined standard errors
    ea, eb = a.lml_estimate_, b.lml_estimate_
    assert abs(ea.value - eb.value) < 3 * np.hypot(ea.value_std, eb.value_std)
    ga, gb = a._estimate(a.kernel_, True)[0], b._estimate(a.kernel_, True)[0]
    bound = 3 * np.hypot(ga.gradient_std, gb.gradient_std)
    assert (np.abs(ga.gradient - gb.gradient) < bound).all(), (ga, gb)


def test_direct_path_stays_float64(data):
    X, y, Xq = data
    a, b = _model("direct", "float64").fit(X, y), _model("direct", "float32").fit(X, y)
    np.testing.assert_array_equal(a.predict(Xq), b.predict(Xq))


def test_bad_product_dtype_is_a_parameter_error(data):
    X, y, _ = data
    with pytest.raises(InvalidParameterError, match="product_dtype"):
        _model("iterative", "float16").fit(X[:50], y[:50])
