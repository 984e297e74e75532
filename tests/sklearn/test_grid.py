"""``products="grid"`` on GaussianProcessRegressor's iterative path: the answers
stay with the exact products', the error is reported, and what it cannot serve
is refused by name."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.gaussian_process.kernels import (
    RBF,
    ConstantKernel,
    DotProduct,
    ExpSineSquared,
    Matern,
    WhiteKernel,
)
from sklearn.utils._param_validation import InvalidParameterError

from kernelsolve.linalg.cg import NotPositiveDefiniteError
from kernelsolve.sklearn import GaussianProcessRegressor, GridAccuracyWarning
from kernelsolve.sklearn.kernels import EngineKernel, translate

N = 4000


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    X = rng.random((N, 2))
    y = np.sin(9 * X[:, 0]) * np.cos(7 * X[:, 1]) + 0.05 * rng.standard_normal(N)
    return X, y, rng.random((300, 2))


def _gpr(products, kernel=None, solver="iterative", **kw):
    kernel = kernel or ConstantKernel(1.0) * Matern(0.1, nu=1.5) + WhiteKernel(1e-2)
    return GaussianProcessRegressor(
        kernel, optimizer=None, solver=solver, rtol=1e-10, n_probes=4, random_state=0,
        products=products, **kw,
    )  # fmt: skip


def test_grid_products_keep_the_exact_answer(data):
    X, y, Xq = data
    exact, grid = _gpr("exact").fit(X, y), _gpr("grid").fit(X, y)
    assert exact.grid_error_ is None and 0 < grid.grid_error_ < 1e-6
    ref = exact.predict(Xq)
    assert np.abs(grid.predict(Xq) - ref).max() < 1e-4 * np.abs(ref).max()
    assert abs(grid.lml_estimate_.value - exact.lml_estimate_.value) < 1e-5 * abs(
        exact.lml_estimate_.value
    )
    _, std_exact = exact.predict(Xq[:20], return_std=True)
    _, std_grid = grid.predict(Xq[:20], return_std=True)
    np.testing.assert_allclose(std_grid, std_exact, rtol=1e-5)


def test_grid_with_ard_and_the_optimizer(data):
    """Anisotropic length scales (the grid's offsets carry them) and a fit with the
    optimizer on (gradients exact, values from grid products)."""
    X, y, _ = data
    kernel = ConstantKernel(1.0) * RBF([0.1, 0.2]) + WhiteKernel(1e-2)
    kw = dict(kernel=kernel, random_state=0, n_probes=4, rtol=1e-8, maxiter=500)
    exact = GaussianProcessRegressor(**kw).fit(X[:3500], y[:3500])
    grid = GaussianProcessRegressor(products="grid", **kw).fit(X[:3500], y[:3500])
    assert grid.solver_ == "iterative" and grid.grid_error_ <= 1e-6
    # the same optimum within the estimates' statistical error (4 probes), as the
    # iterative path against scikit-learn's exact one (test_gpr.py)
    np.testing.assert_allclose(grid.kernel_.theta, exact.kernel_.theta, atol=0.15)
    std = exact.lml_estimate_.value_std + grid.lml_estimate_.value_std
    assert (
        abs(grid.log_marginal_likelihood_value_ - exact.log_marginal_likelihood_value_) < 3 * std
    )


def test_too_few_points_for_the_target_warn(data):
    X, y, _ = data
    # a period of 0.01 against boxes of 0.14: no polynomial follows it
    kernel = ExpSineSquared(1.0, 0.01) + WhiteKernel(1e-2)
    ev = EngineKernel(translate(kernel, 2), kernel, products="grid")
    with pytest.warns(GridAccuracyWarning, match="products=.exact"):
        ev.operator(X)
    assert ev.grid.error > 1e-6 and ev.grid.order == 14
    # the fit warns too, and its CG then refuses the indefinite operator by name
    with pytest.warns(GridAccuracyWarning), pytest.raises(NotPositiveDefiniteError):
        _gpr("grid", kernel=kernel).fit(X, y)


def test_direct_path_ignores_grid(data):
    X, y, Xq = data
    a, b = _gpr("exact", solver="direct").fit(X[:500], y[:500]), None
    b = _gpr("grid", solver="direct").fit(X[:500], y[:500])
    assert b.grid_error_ is None
    np.testing.assert_array_equal(a.predict(Xq), b.predict(Xq))


def test_clone_keeps_products():
    gp = _gpr("grid")
    assert clone(gp).get_params()["products"] == "grid"


def test_what_grid_cannot_serve_is_named(data):
    X, y, _ = data
    with pytest.raises(ValueError, match="exclude each other"):
        _gpr("grid", tol=1e-8).fit(X, y)
    with pytest.raises(ValueError, match="stationary"):
        _gpr("grid", kernel=DotProduct() + WhiteKernel()).fit(X, y)
    X4 = np.random.default_rng(0).random((N, 4))
    with pytest.raises(ValueError, match="1 to 3 features"):
        _gpr("grid").fit(X4, y)
    with pytest.raises(InvalidParameterError, match="products"):
        _gpr("fft").fit(X, y)


def test_std_chunks_share_one_grid(data, monkeypatch):
    """predict(return_std=True) solves by chunks of test points, all with the
    training kernel's products: one grid setup serves them."""
    from kernelsolve.sklearn import kernels

    X, y, Xq = data
    gp = _gpr("grid").fit(X[:3200], y[:3200])
    built = []
    real = kernels.GridKernelProduct

    def counting(*args, **kwargs):
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(kernels, "GridKernelProduct", counting)
    _, std = gp.predict(Xq[:150], return_std=True)  # 3 chunks of at most 64
    assert len(built) == 1 and std.shape == (150,)
