"""``tol=`` on the estimators' iterative paths (issue 19's approximate products):
the answers stay within what the tolerance allows of the exact ones, the
estimators report what they skipped, and the direct paths ignore it."""

import numpy as np
import pytest
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.utils._param_validation import InvalidParameterError

from kernelsolve.sklearn import GaussianProcessRegressor, KernelRidge

# short-range kernels on 1,500 points: most block pairs are negligible
N = 1500


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = rng.random((N, 2))
    y = np.sin(9 * X[:, 0]) * np.cos(7 * X[:, 1]) + 0.05 * rng.standard_normal(N)
    return X, y, rng.random((200, 2))


def _gpr(tol, solver="iterative"):
    kernel = ConstantKernel(1.0) * Matern(0.02, nu=1.5) + WhiteKernel(1e-2)
    return GaussianProcessRegressor(
        kernel, optimizer=None, solver=solver, rtol=1e-10, n_probes=4, random_state=0, tol=tol
    )


def test_gpr_tol_skips_pairs_and_keeps_the_exact_answer(data):
    X, y, Xq = data
    exact, approx = _gpr(None).fit(X, y), _gpr(1e-8).fit(X, y)
    # Matern 3/2 decays slowly: 15% of the block pairs at this size (half at 1e5 DEM points)
    assert exact.skipped_pairs_ == 0.0 and 0.1 < approx.skipped_pairs_ < 1.0
    # products within 1e-8 relative of the exact ones: the means agree far below
    # the noise, and the likelihood estimates (same probes) nearly exactly
    ref = exact.predict(Xq)
    assert np.abs(approx.predict(Xq) - ref).max() < 1e-6 * np.abs(ref).max()
    assert abs(approx.lml_estimate_.value - exact.lml_estimate_.value) < 1e-4 * abs(
        exact.lml_estimate_.value
    )
    _, grad_exact = exact.log_marginal_likelihood(exact.kernel_.theta, eval_gradient=True)
    _, grad_approx = approx.log_marginal_likelihood(exact.kernel_.theta, eval_gradient=True)
    np.testing.assert_allclose(grad_approx, grad_exact, rtol=1e-4, atol=1e-6)


def test_gpr_direct_path_ignores_tol(data):
    X, y, Xq = data
    a, b = _gpr(None, "direct").fit(X, y), _gpr(1e-2, "direct").fit(X, y)
    assert b.skipped_pairs_ == 0.0
    np.testing.assert_array_equal(a.predict(Xq), b.predict(Xq))


def test_krr_tol_on_the_cg_path(data):
    X, y, Xq = data
    opts = dict(alpha=1e-2, kernel="rbf", gamma=2000.0, solver="cg", cg_rtol=1e-10)
    exact, approx = KernelRidge(**opts).fit(X, y), KernelRidge(tol=1e-8, **opts).fit(X, y)
    assert exact.skipped_pairs_ == 0.0 and 0.5 < approx.skipped_pairs_ < 1.0
    ref = exact.predict(Xq)
    assert np.abs(approx.predict(Xq) - ref).max() < 1e-6 * np.abs(ref).max()
    direct = KernelRidge(**{**opts, "solver": "direct"}, tol=1e-3).fit(X, y)
    assert direct.skipped_pairs_ == 0.0


@pytest.mark.parametrize("cls", [GaussianProcessRegressor, KernelRidge])
@pytest.mark.parametrize("tol", [-1e-3, 1.0, "small"])
def test_bad_tol_is_a_parameter_error(data, cls, tol):
    X, y, _ = data
    with pytest.raises(InvalidParameterError, match="tol"):
        cls(tol=tol).fit(X[:50], y[:50])
