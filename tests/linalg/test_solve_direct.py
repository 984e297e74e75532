"""``K.solve``'s choice of method and its checks (kernelsolve/linalg/solve.py, direct.py).

* ``solver="auto"`` factors small systems by Cholesky and runs CG on large ones
  (the size threshold and the memory budget), CG-only options select CG,
  ``solver="direct"`` refuses them; a matrix that is not positive definite is a
  :class:`NotPositiveDefiniteError` on both paths;
* the true residual decides ``info.converged`` (float32 CG whose recurrence
  converged but whose true residual did not warns and says so);
* a near-singular system (tiny ``alpha``) warns with what to change;
* CG's automatic preconditioner is RPCholesky for a Gaussian kernel on both sides
  of 2,000 points (it was Jacobi, hundreds of iterations, below);
* :class:`SolveInfo` and its preconditioner pickle.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch  # in the test extra: a missing torch fails, never skips

from kernelsolve import Vi, Vj, config
from kernelsolve.linalg import direct
from kernelsolve.linalg.cg import ConvergenceWarning, NotPositiveDefiniteError
from kernelsolve.linalg.solve import NearSingularWarning, SolveInfo


def points(n, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).random((n, 2)).astype(dtype)


def gauss(x, scale=12.5):
    return (-Vi(x).sqdist(Vj(x)) * scale).exp()


def dense_gauss(x, scale=12.5):
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-scale * ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def true_residual(x, b, a, alpha):
    A = dense_gauss(x) + alpha * np.eye(len(x))
    b64, a64 = np.asarray(b, dtype=np.float64), np.asarray(a, dtype=np.float64)
    return np.linalg.norm(b64 - A @ a64) / np.linalg.norm(b64)


# ----------------------------------------------------------------------
# The choice of method
# ----------------------------------------------------------------------
def test_auto_direct_up_to_the_threshold_then_cg(monkeypatch):
    monkeypatch.setattr(direct, "DIRECT_MAX_N", 50)
    b = np.ones(50)
    _, info = gauss(points(50)).solve(b, 0.1, return_info=True)
    assert info.method == "direct" and info.cg is None and info.iterations == 0
    assert info.preconditioner is None and info.converged
    _, info = gauss(points(51)).solve(np.ones(51), 0.1, return_info=True)
    assert info.method == "cg" and info.iterations > 0 and info.converged


def test_auto_cg_when_the_block_exceeds_the_memory_budget(monkeypatch):
    monkeypatch.setattr(config, "dense_memory_limit", 8 * 80 * 80)
    _, info = gauss(points(80)).solve(np.ones(80), 0.1, return_info=True)
    assert info.method == "direct"
    _, info = gauss(points(81)).solve(np.ones(81), 0.1, return_info=True)
    assert info.method == "cg"


def test_auto_counts_the_float64_factor_of_a_float32_block(monkeypatch):
    """float32: the engine's block (4 bytes an entry) and its float64 factor (8)."""
    monkeypatch.setattr(config, "dense_memory_limit", 12 * 80 * 80)
    x = points(80, dtype=np.float32)
    _, info = gauss(x).solve(np.ones(80, np.float32), 0.5, return_info=True, rtol=1e-4)
    assert info.method == "direct"
    x = points(81, dtype=np.float32)
    _, info = gauss(x).solve(np.ones(81, np.float32), 0.5, return_info=True, rtol=1e-4)
    assert info.method == "cg"


@pytest.mark.parametrize(
    "kw",
    [
        dict(x0=np.zeros(40)),
        dict(callback=lambda a: None),
        dict(precond="jacobi"),
        dict(precond=None),
        dict(rank=10),
    ],
    ids=["x0", "callback", "precond", "precond-None", "rank"],
)
def test_cg_options_select_cg_and_direct_refuses_them(kw):
    K, b = gauss(points(40)), np.ones(40)
    _, info = K.solve(b, 0.1, return_info=True, **kw)
    assert info.method == "cg"
    with pytest.raises(ValueError, match=f"solver='direct' takes no {next(iter(kw))}"):
        K.solve(b, 0.1, solver="direct", **kw)


@pytest.mark.parametrize("solver", ["cholesky", "", None, "CG"])
def test_unknown_solver(solver):
    with pytest.raises(ValueError, match="solver="):
        gauss(points(20)).solve(np.ones(20), 0.1, solver=solver)


def test_direct_matches_dense_and_reports_the_true_residual():
    n, alpha = 300, 1e-3
    x = points(n, seed=1)
    b = np.random.default_rng(1).standard_normal((n, 2))
    a, info = gauss(x).solve(b, alpha, solver="direct", return_info=True)
    ref = np.linalg.solve(dense_gauss(x) + alpha * np.eye(n), b)
    assert np.abs(a - ref).max() < 1e-8 * np.abs(ref).max()
    assert info.residual.shape == (2,) and info.converged_columns.all()
    A = dense_gauss(x) + alpha * np.eye(n)
    res = np.linalg.norm(b - A @ a, axis=0) / np.linalg.norm(b, axis=0)
    np.testing.assert_allclose(info.residual, res, rtol=0.5, atol=1e-14)
    assert info.top_eigenvalue >= 1.0  # the diagonal of a Gaussian is 1


def test_not_positive_definite_is_the_same_error_on_both_paths():
    K = -gauss(points(30, seed=2))
    with pytest.raises(NotPositiveDefiniteError, match="Cholesky.*not symmetric positive"):
        K.solve(np.ones(30), 0.1)  # auto: direct
    with pytest.raises(NotPositiveDefiniteError, match="not symmetric positive definite"):
        K.solve(np.ones(30), 0.1, solver="cg", precond=None)


def test_not_positive_definite_torch():
    K = -gauss(torch.tensor(points(30, seed=2)))
    with pytest.raises(NotPositiveDefiniteError, match="Cholesky"):
        K.solve(torch.ones(30, dtype=torch.float64), 0.1, solver="direct")


# ----------------------------------------------------------------------
# The true residual and the warnings
# ----------------------------------------------------------------------
def test_float32_cg_reports_its_true_residual():
    """float32 CG: the recurrence meets rtol = 1e-6, the true residual cannot; the
    info says not converged, with the true residual, and the warning says why."""
    n, alpha = 1000, 1e-4
    x = points(n, seed=3, dtype=np.float32)
    b = np.random.default_rng(3).standard_normal(n).astype(np.float32)
    with pytest.warns(ConvergenceWarning, match="float32 cannot reach it.*float64"):
        a, info = gauss(x).solve(b, alpha, rtol=1e-6, solver="cg", return_info=True)
    assert info.cg.converged and info.cg.residual.max() <= 1e-6
    assert not info.converged and not info.converged_columns.any()
    ref = true_residual(x, b, a, alpha)
    assert ref > 1e-5
    assert 0.3 * ref < info.residual[0] < 3 * ref


def test_float32_with_a_reachable_rtol_converges_quietly():
    n, alpha = 400, 1e-1
    x = points(n, seed=4, dtype=np.float32)
    b = np.random.default_rng(4).standard_normal(n).astype(np.float32)
    for solver in ("cg", "direct"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            a, info = gauss(x).solve(b, alpha, rtol=1e-3, solver=solver, return_info=True)
        assert info.converged and true_residual(x, b, a, alpha) <= 1e-3


@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_near_singular_warns_and_says_what_to_change(solver):
    """alpha = 1e-10 (the default) on 500 Gaussian points: the rounding floor of the
    residual is above rtol / 10; alpha = 1e-2 is quiet."""
    x = points(500, seed=5)
    b = np.random.default_rng(5).standard_normal(500)
    with pytest.warns(ConvergenceWarning, match="alpha = 1e-10 is tiny.*raise alpha") as got:
        gauss(x).solve(b, solver=solver, rtol=1e-6)
    assert all("raise alpha" in str(w.message) for w in got)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gauss(x).solve(b, 1e-2, solver=solver, rtol=1e-6)


def test_near_singular_but_converged_is_a_near_singular_warning():
    """The true residual meets rtol but its rounding floor is within 10x of it."""
    x = points(200, seed=6)
    b = np.random.default_rng(6).standard_normal(200)
    with pytest.warns(NearSingularWarning, match="near-singular for rtol = 1e-10"):
        _, info = gauss(x).solve(b, 1e-4, solver="direct", rtol=1e-10, return_info=True)
    assert info.converged


# ----------------------------------------------------------------------
# CG's automatic preconditioner on both sides of 2,000 points
# ----------------------------------------------------------------------
def test_auto_precond_iterations_at_1999_and_2001_points():
    """Gaussian kernel (constant diagonal): RPCholesky on both sides of
    AUTO_RPCHOLESKY_MIN_N, a handful of iterations each; Jacobi (the old choice
    below 2,000) has not converged in 5x as many."""
    b = {n: np.random.default_rng(7).standard_normal(n) for n in (1999, 2001)}
    infos = {}
    for n in (1999, 2001):
        K = gauss(points(n, seed=7), scale=25.0)
        _, infos[n] = K.solve(b[n], 1e-3, solver="cg", return_info=True)
        assert infos[n].preconditioner.name == "rpcholesky" and infos[n].converged
    assert infos[1999].iterations <= 40 and infos[2001].iterations <= 40
    assert abs(infos[1999].iterations - infos[2001].iterations) <= 10
    cap = 5 * infos[1999].iterations
    K = gauss(points(1999, seed=7), scale=25.0)
    with pytest.warns(ConvergenceWarning):
        _, jac = K.solve(
            b[1999], 1e-3, solver="cg", precond="jacobi", maxiter=cap, return_info=True
        )
    assert not jac.converged and jac.iterations == cap


# ----------------------------------------------------------------------
# Pickling
# ----------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_solve_info_pickles(solver):
    x = points(120, seed=8)
    b = np.random.default_rng(8).standard_normal((120, 2))
    _, info = gauss(x).solve(b, 1e-2, solver=solver, return_info=True)
    back = pickle.loads(pickle.dumps(info))
    assert isinstance(back, SolveInfo) and back.method == info.method
    assert back.converged == info.converged and back.iterations == info.iterations
    np.testing.assert_array_equal(back.residual, info.residual)
    if solver == "cg":
        R = np.random.default_rng(9).standard_normal((120, 2))
        np.testing.assert_array_equal(back.preconditioner(R), info.preconditioner(R))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cg_restarts_once_when_the_true_residual_drifted(monkeypatch, dtype):
    """The first true residual is made to miss rtol: float64 CG runs once more from
    its solution (and converges), float32 does not and warns."""
    from kernelsolve.linalg import solve as solve_mod

    real_residual, real_cg = solve_mod._true_residual, solve_mod.cg
    residuals, starts = [], []

    def drifted(*args):
        rel, target = real_residual(*args)
        residuals.append(rel)
        return (rel + 1.0 if len(residuals) == 1 else rel), target

    def counting_cg(A, B, x0=None, **kw):
        starts.append(x0)
        return real_cg(A, B, x0, **kw)

    monkeypatch.setattr(solve_mod, "_true_residual", drifted)
    monkeypatch.setattr(solve_mod, "cg", counting_cg)
    x = points(100, seed=10, dtype=dtype)
    b = np.random.default_rng(10).standard_normal(100).astype(dtype)
    rtol = 1e-8 if dtype == np.float64 else 1e-3
    if dtype == np.float64:
        _, info = gauss(x).solve(b, 1e-1, solver="cg", rtol=rtol, return_info=True)
        assert len(starts) == 2 and starts[0] is None and starts[1] is not None
        assert len(residuals) == 2 and info.converged
    else:
        with pytest.warns(ConvergenceWarning, match="float32 cannot reach"):
            _, info = gauss(x).solve(b, 1e-1, solver="cg", rtol=rtol, return_info=True)
        assert len(starts) == 1 and not info.converged and info.cg.converged
