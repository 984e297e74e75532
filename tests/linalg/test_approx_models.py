"""The solvers and models take ``tol=`` (issue 19 item 4): their products
skip block pairs, they say how much, and the answers stay within what the
tolerance allows of the exact ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kernelsolve.integrations.gpytorch as kgp
from kernelsolve import approximation_report
from kernelsolve.linalg import gp
from kernelsolve.linalg.interpolate import KernelInterpolator
from kernelsolve.linalg.kriging import OrdinaryKriging

RNG = np.random.default_rng(0)
X = RNG.random((3000, 2))
Z = np.sin(5 * X[:, 0]) + X[:, 1] ** 2


def test_kriging_cg_with_tol():
    kw = dict(
        variogram_model="gaussian",
        variogram_parameters=dict(sill=1.0, range=0.05, nugget=0.1),
        solver="cg",
    )
    exact = OrdinaryKriging(X[:, 0], X[:, 1], Z, **kw)
    approx = OrdinaryKriging(X[:, 0], X[:, 1], Z, tol=1e-8, **kw)
    g = np.linspace(0, 1, 15)
    z0, _ = exact.execute("grid", g, g)
    z1, _ = approx.execute("grid", g, g)
    assert approx.info.skipped_pairs > 0.5 and exact.info.skipped_pairs == 0.0
    assert np.abs(z1 - z0).max() <= 1e-6 * np.abs(z0).max()
    with pytest.raises(ValueError, match="tol="):
        OrdinaryKriging(X[:, 0], X[:, 1], Z, tol=-1.0, **kw)


def test_interpolator_iterative_with_tol():
    kw = dict(kernel="gaussian", epsilon=8.0, smoothing=1e-2, solver="iterative")
    exact = KernelInterpolator(X, Z, **kw)
    approx = KernelInterpolator(X, Z, tol=1e-10, **kw)
    assert approx.info.skipped_pairs > 0.1 and exact.info.skipped_pairs == 0.0
    q = RNG.random((50, 2))
    assert np.abs(approx(q) - exact(q)).max() <= 1e-6 * np.abs(exact(q)).max()


def test_gp_posterior_mean_with_tol():
    h = dict(lengthscale=0.02, outputscale=1.0, noise=1e-2, mean=0.0)
    mu0, info0 = gp.gp_posterior_mean(X, Z, X[:100], h, rank=200, rtol=1e-8)
    mu1, info1 = gp.gp_posterior_mean(X, Z, X[:100], h, rank=200, rtol=1e-8, tol=1e-10)
    assert info1.skipped_pairs > 0.3 and info0.skipped_pairs == 0.0
    assert np.abs(mu1 - mu0).max() <= 1e-5


def test_gpytorch_engine_operator_with_tol(monkeypatch):
    monkeypatch.setattr(kgp, "_dense_forward", lambda *a: False)  # the engine operator
    x = torch.tensor(X, dtype=torch.float64)
    k = kgp.MaternKernel(nu=1.5).double()
    k.lengthscale = 0.01
    v = torch.randn(3000, 2, dtype=torch.float64)
    exact = k(x).evaluate_kernel()._matmul(v)
    k.tol = 1e-8
    op = k(x).evaluate_kernel()
    with approximation_report() as report:
        approx = op._matmul(v)
    assert report.calls == 1 and report.skipped_fraction > 0.2
    bound = 1e-8 * (op.to_dense().abs() @ v.abs())
    assert ((approx - exact).abs() <= 1.01 * bound + 1e-13).all()
