"""One name and one meaning for the solvers' tolerance (kernelsolve.tolerance):
every solver takes rtol (a relative residual) and maxiter, old spellings either still
work with a DeprecationWarning or raise a TypeError naming rtol, and bad values raise
a ValueError naming the argument."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

from kernelsolve import Vi, Vj
from kernelsolve.linalg import gp, precond
from kernelsolve.linalg.cg import ConvergenceWarning, cg
from kernelsolve.linalg.interpolate import KernelInterpolator
from kernelsolve.linalg.kriging import OrdinaryKriging, UniversalKriging
from kernelsolve.linalg.operator import KernelOperator
from kernelsolve.linalg.radial import KERNELS
from kernelsolve.linalg.saddle import SaddleSolver, monomial_powers
from kernelsolve.linalg.solve import solve
from kernelsolve.tolerance import check_tolerances

RNG = np.random.default_rng(0)
X = RNG.random((120, 2))
Z = np.sin(3 * X[:, 0]) + X[:, 1]
H = dict(lengthscale=0.3, outputscale=1.0, noise=1e-2, mean=0.0)


def gauss():
    return (-Vi(X).sqdist(Vj(X)) * 10.0).exp()


SOLVERS = {
    "solve": lambda **kw: solve(gauss(), Z, alpha=0.1, **kw),
    "KernelInterpolator": lambda **kw: KernelInterpolator(X, Z, **kw),
    "OrdinaryKriging": lambda **kw: OrdinaryKriging(
        X[:, 0], X[:, 1], Z, "exponential", [1.0, 0.5, 0.0], **kw
    ),
    "UniversalKriging": lambda **kw: UniversalKriging(
        X[:, 0], X[:, 1], Z, "exponential", [1.0, 0.5, 0.0], **kw
    ),
    "gp_posterior_mean": lambda **kw: gp.gp_posterior_mean(X, Z, X[:3], H, **kw),
    "SaddleSolver.solve": lambda **kw: SaddleSolver(
        X, KERNELS["thin_plate_spline"], 1.0, np.zeros(120), monomial_powers(2, 1)
    ).solve(Z[:, None], **kw),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_lists_rtol_and_maxiter(name):
    fn = {
        "solve": solve,
        "KernelInterpolator": KernelInterpolator,
        "OrdinaryKriging": OrdinaryKriging,
        "UniversalKriging": UniversalKriging,
        "gp_posterior_mean": gp.gp_posterior_mean,
        "SaddleSolver.solve": SaddleSolver.solve,
    }[name]
    params = inspect.signature(fn).parameters
    assert "rtol" in params and "maxiter" in params
    # tol= is never a name of rtol: where a solver takes it, it is the error
    # its products may make (issue 19), documented as such
    doc = inspect.getdoc(fn) + (inspect.getdoc(getattr(fn, "__init__", fn)) or "")
    assert "tol" not in params or "sum_j |K_ij|" in doc
    assert not any(p.kind == p.VAR_KEYWORD for p in params.values())
    assert "rtol ||b||" in inspect.getdoc(fn) or "rtol ||b||" in inspect.getdoc(
        getattr(fn, "__init__", fn)
    )


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_eps_is_a_type_error_naming_rtol(name):
    with pytest.raises(TypeError, match="eps= is not accepted.*rtol="):
        SOLVERS[name](eps=1e-6)


# tol= is the error the products may make (issue 19) where a solver takes it
_TAKE_TOL = {
    "solve",
    "KernelInterpolator",
    "OrdinaryKriging",
    "UniversalKriging",
    "gp_posterior_mean",
}


@pytest.mark.parametrize("name", sorted(set(SOLVERS) - _TAKE_TOL))
def test_tol_is_a_type_error_naming_rtol_where_it_never_existed(name):
    with pytest.raises(TypeError, match="tol= is not accepted.*rtol="):
        SOLVERS[name](tol=1e-6)


@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize("bad", [dict(rtol=-1.0), dict(rtol=float("nan")), dict(maxiter=-2)])
def test_bad_values_name_the_argument(name, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SOLVERS[name](**bad)


def test_solve_tol_is_the_approximation_not_rtol():
    # tol= was scipy's old name of rtol (deprecated); it is now the error the
    # products may make (issue 19): no warning, and a value checked as such
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = solve(gauss(), Z, alpha=0.1, rtol=1e-10, tol=1e-12)
        via_lazy = gauss().solve(Z, alpha=0.1, rtol=1e-10, tol=1e-12)
    assert np.array_equal(a, via_lazy)
    with pytest.raises(ValueError, match="tol=2"):
        solve(gauss(), Z, alpha=0.1, tol=2)


def test_rpcholesky_tol_is_now_trace_tol():
    op = KernelOperator.from_lazy(gauss())
    with pytest.warns(DeprecationWarning, match="trace_tol="):
        old = precond.rpcholesky(op, alpha=1e-3, tol=1e-2)
    new = precond.rpcholesky(op, alpha=1e-3, trace_tol=1e-2)
    assert old.rank == new.rank and new.residual_trace <= 1e-2
    assert "tol" not in inspect.signature(precond.rpcholesky).parameters


def test_check_tolerances():
    check_tolerances(0.0, 0.0, 0)
    check_tolerances(1e-6, np.float32(1e-3), np.int64(5))
    for kwargs, name in (
        (dict(rtol=-1e-3), "rtol"),
        (dict(rtol=1e-3, atol=float("nan")), "atol"),
        (dict(rtol=1e-3, maxiter=1.5), "maxiter"),
    ):
        with pytest.raises(ValueError, match=name):
            check_tolerances(**kwargs)


def test_kriging_needs_positive_rtol_and_maxiter():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kwargs, name in ((dict(rtol=0.0), "rtol"), (dict(maxiter=0), "maxiter")):
            with pytest.raises(ValueError, match=f"{name} must be > 0"):
                SOLVERS["OrdinaryKriging"](**kwargs)
    # the other solvers accept 0 (cg then runs to maxiter, or does nothing)
    with pytest.warns(ConvergenceWarning):
        _, info = cg(lambda P: P, np.ones(3), maxiter=0)
    assert info.iterations == 0


def test_warnings_point_at_the_callers_line():
    """The keywords wrapper adds a frame: the solvers' warnings still name the caller."""
    with pytest.warns(ConvergenceWarning) as caught:
        cg(lambda P: P * np.arange(1.0, 4.0)[:, None], np.ones(3), maxiter=1)
    assert caught[0].filename == __file__
    with pytest.warns(ConvergenceWarning) as caught:
        KernelInterpolator(X, Z, rtol=1e-14, maxiter=1, solver="iterative")
    assert caught[0].filename == __file__
    with pytest.warns(UserWarning, match="below") as caught:
        KernelInterpolator(X, Z, degree=0, rtol=1e-3)
    assert caught[0].filename == __file__


def test_gp_keeps_its_old_calls():
    """gp_posterior_mean(h=...) (the demo's old name) still works, deprecated; the
    fit still takes the device positionally."""
    torch = pytest.importorskip("torch", reason="the GP's dense fit runs in torch")
    X = np.random.default_rng(0).random((120, 2))
    y = np.sin(6 * X[:, 0])
    h = gp.fit_gp_hyperparameters(X, y, "cpu", 10)
    assert h["lengthscale"] > 0
    Xt = torch.as_tensor(X)
    with pytest.warns(DeprecationWarning, match="h= is deprecated; use hyperparameters="):
        old, _ = gp.gp_posterior_mean(Xt, torch.as_tensor(y), Xt[:3], h=h, rank=50)
    new, _ = gp.gp_posterior_mean(Xt, torch.as_tensor(y), Xt[:3], h, rank=50)
    assert torch.equal(old, new)


def test_precond_make_forwards_the_rpcholesky_options():
    op = KernelOperator.from_lazy(gauss())
    M = precond.make(op, 1e-3, "rpcholesky", max_rank=40, block=8, seed=3)
    assert M.rank <= 40
