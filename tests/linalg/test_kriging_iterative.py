"""The iterative kriging solvers on larger problems: the saddle solver's coarse
level, its verbose report and float32 kernel sums (tests/linalg/test_kriging.py
compares every solver with PyKrige on small problems)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from kernelsolve.linalg.cg import ConvergenceWarning
from kernelsolve.linalg.kriging import OrdinaryKriging
from tests.linalg.test_kriging import DATA, PARAMS, PKOrdinary, _bad, assert_matches, relerr

# ----------------------------------------------------------------------------
# The saddle solver's coarse level on a larger problem (no PyKrige: a dense solve)


def dense_ordinary_kriging(xy, z, v, targets):
    """Ordinary kriging predictions from the dense dual system
    ``[[-G, 1], [1^T, 0]] [c; w] = [z; 0]`` (``G_ii = 0``): ``z*(x0) = -g0^T c + w``."""
    n = len(xy)
    G = v.gamma(np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)))
    G[np.arange(n), np.arange(n)] = 0.0
    M = np.zeros((n + 1, n + 1))
    M[:n, :n], M[:n, n], M[n, :n] = -G, 1.0, 1.0
    sol = np.linalg.solve(M, np.append(z, 0.0))
    g0 = v.gamma(np.sqrt(((targets[:, None, :] - xy[None, :, :]) ** 2).sum(-1)))
    return -g0 @ sol[:n] + sol[n]


# Bounded variograms whose range spans many data spacings (1500 points in the unit
# square, spacing 0.026). Measured GMRES iterations, two levels / one level: gaussian
# 21 / 100+ (residual 0.1 after 100), matern nu=2.5 12 / 59, spherical 10 / 16.
COARSE_CASES = {
    "gaussian": ({"psill": 1.0, "range": 0.2, "nugget": 1e-2}, True),
    "matern": ({"psill": 1.0, "range": 0.1, "nugget": 1e-3, "nu": 2.5}, True),
    "spherical": ({"psill": 1.0, "range": 0.5, "nugget": 0.0}, False),
}


@pytest.mark.parametrize("model", sorted(COARSE_CASES))
def test_bounded_variogram_two_level_converges(model):
    """From 1000 points on the saddle solver has a coarse level for bounded variograms
    too: GMRES converges in a bounded number of iterations and the predictions match
    a dense solve; without it the same budget is far from enough."""
    n = 1500
    rng = np.random.default_rng(5)
    x, y = rng.random(n), rng.random(n)
    z = np.sin(6 * x) + np.cos(4 * y) + 0.1 * rng.standard_normal(n)
    xt, yt = rng.random(50), rng.random(50)
    params, one_level_stalls = COARSE_CASES[model]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ok = OrdinaryKriging(x, y, z, model, params, solver="saddle", variance=False)
        info = ok.info  # the solve for the data runs at first use
    assert info.converged and info.coarse_products > 0
    assert info.iterations <= 30, info
    ref = dense_ordinary_kriging(ok._pts, z, ok.variogram, np.column_stack([xt, yt]))
    zk, _ = ok.execute("points", xt, yt, variance=False)
    assert relerr(zk, ref) < 1e-6, relerr(zk, ref)
    if one_level_stalls:
        with pytest.warns(ConvergenceWarning):
            one = OrdinaryKriging(
                x, y, z, model, params, solver="saddle", variance=False, coarse=0, maxiter=30
            )
            assert one.info is not None  # the solve for the data runs at first use
        assert one.info.coarse_products == 0 and not one.info.converged


def test_coarse_option_is_passed_and_checked():
    x, y, z, xt, yt = DATA
    params = PARAMS["exponential"]
    for coarse, used in ((0, False), (40, True), ("auto", False)):  # 150 points: auto is off
        ok = OrdinaryKriging(x, y, z, "exponential", params, solver="saddle", coarse=coarse)
        assert (ok.info.coarse_products > 0) is used, coarse
        ref = PKOrdinary(x, y, z, "exponential", params)
        assert_matches(ok.execute("points", xt, yt), ref.execute("points", xt, yt))
    for bad in (-1, "yes", 2.5, True):
        _bad("coarse", coarse=bad)


def test_verbose_reports_the_fit_and_the_solver(capsys):
    """verbose=True: the fitted variogram, the saddle solver's setup and its GMRES
    iterations on stderr, as plain lines off a terminal (kernelsolve.progress)."""
    rng = np.random.default_rng(7)
    x, y = rng.random(1200), rng.random(1200)
    ok = OrdinaryKriging(x, y, np.sin(4 * x) + y, "exponential", verbose=True, solver="saddle")
    assert ok.info.converged  # the solve for the data runs at first use
    err = capsys.readouterr().err
    assert "kriging: fitted Variogram('exponential'" in err
    assert "saddle: preconditioner ready" in err and "saddle GMRES: column 0" in err
    assert "\r" not in err


@pytest.mark.parametrize("model", ["exponential", "spherical", "gaussian"])
def test_float32_predictions_agree_with_float64(model):
    """execute(dtype="float32"): the kernel sums in float32 (the variances stay float64);
    the predictions agree with float64's to float32 rounding of the sum."""
    rng = np.random.default_rng(11)
    x, y = rng.random(1500), rng.random(1500)
    z = np.sin(5 * x) * np.cos(3 * y) + 0.01 * rng.standard_normal(1500)
    params = {"sill": 1.0, "range": 0.3, "nugget": 1e-3}
    ok = OrdinaryKriging(x, y, z, model, params, solver="cg" if model == "gaussian" else "saddle")
    xt, yt = rng.random(500), rng.random(500)
    z64, s64 = ok.execute("points", xt, yt)
    z32, s32 = ok.execute("points", xt, yt, dtype="float32")
    assert z32.dtype == np.float64 and np.array_equal(s32, s64)
    scale = np.abs(z64).max()
    assert 0 < np.abs(z32 - z64).max() < 1e-4 * scale
    with pytest.raises(ValueError, match="dtype='float16'"):
        ok.execute("points", xt, yt, dtype="float16")
