"""The demo's four ways of rebuilding the terrain, each on public kernelsolve API.

Every method takes the :class:`Problem` and the :class:`~kernelsolve.progress.Progress`
of the run and returns ``(predictions at Problem.Xt, one line of details)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..linalg.gp import NOISE_FLOOR, gp_posterior_mean
from ..linalg.interpolate import KernelInterpolator
from ..linalg.kriging import OrdinaryKriging
from ..linalg.variogram import fit_variogram, short_lag_variogram
from ..progress import Progress
from . import settings
from .deps import require

__all__ = ["Problem", "spline", "kriging", "gp", "gp_gpytorch", "scipy_rbf"]


@dataclass
class Problem:
    """What every method sees: training data, targets, the scaling of ``y``."""

    X: np.ndarray  # (n, 2) training points
    y: np.ndarray  # (n,) elevations (m)
    Xt: np.ndarray  # (q, 2) held-out points, then the training points n_train leaves out
    yt: np.ndarray  # (t,) elevations at the held-out points (t <= q): the RMSE's
    mean: float
    std: float
    seed: int
    device: str
    sizes: dict


def spline(p: Problem, bar: Progress, smoothing: float) -> tuple[np.ndarray, str]:
    """Thin-plate spline by :class:`~kernelsolve.linalg.interpolate.KernelInterpolator`."""
    bar.update(0, f"fit on {len(p.X):,} points")
    f = KernelInterpolator(
        p.X,
        (p.y - p.mean) / p.std,
        smoothing=smoothing,
        rtol=settings.SOLVER_RTOL,
        maxiter=settings.SOLVER_MAXITER,
    )
    bar.update(0, f"evaluating at {len(p.Xt):,} points")
    pred = f(p.Xt) * p.std + p.mean
    info = f.info
    smooth = f", smoothing {smoothing:g}" if smoothing else ""
    conv = "" if info.converged else ", NOT CONVERGED"
    how = (
        f"dense {info.factorization}"
        if f.solver == "direct"
        else f"{info.products} kernel products"
    )
    return pred, f"{how}{smooth}{conv}"


def kriging(p: Problem, bar: Progress) -> tuple[np.ndarray, str]:
    """Ordinary kriging with a variogram fitted to the short lags of a subset."""
    m = min(p.sizes["variogram_points"], len(p.X))
    bar.update(0, f"variogram of {m:,} points")
    # the lags that matter are those between a target and its nearest data points
    span = p.X.max(0) - p.X.min(0)
    max_lag = settings.VARIOGRAM_LAG_SPACINGS * math.sqrt(float(np.prod(span)) / len(p.X))
    lags, sv = short_lag_variogram(p.X[:m], p.y[:m], max_lag, settings.VARIOGRAM_LAGS)
    model = settings.KRIGING_MODEL
    psill, length, nugget = fit_variogram(lags, sv, model)
    params = {"psill": psill, "range": length, "nugget": nugget}
    bar.update(0, f"solving on {len(p.X):,} points")
    ok = OrdinaryKriging(
        p.X[:, 0],
        p.X[:, 1],
        p.y,
        model,
        params,
        variance=False,
        rtol=settings.SOLVER_RTOL,
        maxiter=settings.SOLVER_MAXITER,
        seed=p.seed,
    )
    bar.update(0, f"evaluating at {len(p.Xt):,} points")
    # float32 kernel sums: 2.4x faster, 0.006 m from float64's here (RMSE 11.6 m)
    pred, _ = ok.execute("points", p.Xt[:, 0], p.Xt[:, 1], variance=False, dtype="float32")
    detail = (
        f"{model} variogram, range {length:.3g}, sill {psill + nugget:.3g} m^2, "
        f"nugget {nugget:.3g} m^2; {ok.solver} solver, {ok.info.products} products"
        + ("" if ok.info.converged else ", NOT CONVERGED")
    )
    return np.asarray(pred), detail


def _gp_kernel():
    """The demo's GP prior as scikit-learn kernel objects: Matern 3/2 times a
    constant, plus white noise; the starting values suit standardised ``y``
    and coordinates in the unit square."""
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    return ConstantKernel(1.0, (1e-3, 1e3)) * Matern(0.1, (1e-3, 10.0), nu=1.5) + WhiteKernel(
        1e-2, (NOISE_FLOOR, 1.0)
    )


def _gp_hyperparameters(p: Problem, bar: Progress):
    """The kernel fitted by the exact (dense) marginal likelihood of a random
    subset, with :class:`kernelsolve.sklearn.GaussianProcessRegressor` (NumPy,
    its gradient from the engine's symbolic derivatives), its hyperparameters
    as a dict and a line describing them."""
    from ..sklearn import GaussianProcessRegressor

    yn = (p.y - p.mean) / p.std
    m = min(p.sizes["gp_fit_points"], len(p.X))
    sub = np.random.default_rng(p.seed + 1).choice(len(p.X), size=m, replace=False)
    bar.update(0, f"marginal likelihood of {m:,} points (dense, scikit-learn's optimizer)")
    fit = GaussianProcessRegressor(_gp_kernel(), solver="direct", random_state=p.seed)
    kernel = fit.fit(p.X[sub], yn[sub]).kernel_
    h = {
        "outputscale": float(kernel.k1.k1.constant_value),
        "lengthscale": float(kernel.k1.k2.length_scale),
        "noise": float(kernel.k2.noise_level),
        "mean": 0.0,  # y is standardised
    }
    desc = (
        f"lengthscale {h['lengthscale']:.3g}, outputscale {h['outputscale'] * p.std**2:.3g} "
        f"m^2, noise {h['noise'] * p.std**2:.3g} m^2"
    )
    return kernel, h, desc


def _torch_inputs(p: Problem):
    """The data as float32 tensors on ``p.device`` (whose kernel products are ~3x
    faster than float64's; the CG tolerance is far above float32 rounding)."""
    torch = require("torch", "the GP on --device cuda or --gp-backend gpytorch")
    dev = torch.device(p.device)
    yn = (p.y - p.mean) / p.std
    return (torch.as_tensor(a, dtype=torch.float32, device=dev) for a in (p.X, p.Xt, yn))


def gp(p: Problem, bar: Progress) -> tuple[np.ndarray, str]:
    """Exact Matern-3/2 GP: :class:`kernelsolve.sklearn.GaussianProcessRegressor`
    on NumPy (the CPU), :func:`~kernelsolve.linalg.gp.gp_posterior_mean` on torch
    CUDA tensors (``--device cuda``)."""
    kernel, h, desc = _gp_hyperparameters(p, bar)
    if p.device != "cpu":
        return _gp_torch(p, bar, h, desc)
    from ..sklearn import GaussianProcessRegressor

    rank = min(p.sizes["gp_rank"], len(p.X))
    bar.update(0, f"RPCholesky rank {rank:,} + CG on {len(p.X):,} points")
    model = GaussianProcessRegressor(
        kernel,
        optimizer=None,
        solver="iterative",
        rtol=settings.GP_RTOL,
        maxiter=settings.GP_MAXITER,
        max_rank=rank,
        n_probes=settings.GP_PROBES,
        random_state=p.seed,
        product_dtype="float32",  # 2.7x faster kernel products; far below GP_RTOL
    )
    model.fit(p.X, (p.y - p.mean) / p.std)
    bar.update(0, f"posterior mean at {len(p.Xt):,} points")
    pred = model.predict(p.Xt) * p.std + p.mean
    est = model.lml_estimate_
    detail = (
        f"{desc}; CG {est.iterations} iterations (rtol {settings.GP_RTOL:g}), "
        f"RPCholesky rank {est.rank}" + ("" if est.converged else ", NOT CONVERGED")
    )
    return pred, detail


def _gp_torch(p: Problem, bar: Progress, h: dict, desc: str) -> tuple[np.ndarray, str]:
    X, Xt, y = _torch_inputs(p)
    rank = min(p.sizes["gp_rank"], len(p.X))
    bar.update(0, f"RPCholesky rank {rank:,} + CG on {len(p.X):,} points")
    count = [0]

    def callback(_):
        count[0] += 1
        bar.update(0, f"CG iteration {count[0]} on {len(p.X):,} points")

    pred, info = gp_posterior_mean(
        X,
        y,
        Xt,
        h,
        rank=rank,
        rtol=settings.GP_RTOL,
        maxiter=settings.GP_MAXITER,
        callback=callback,
    )
    detail = (
        f"{desc}; CG {info.iterations} iterations (rtol {settings.GP_RTOL:g}), "
        f"RPCholesky rank {info.preconditioner.rank}"
        + ("" if info.converged else ", NOT CONVERGED")
    )
    return pred.double().cpu().numpy() * p.std + p.mean, detail


def gp_gpytorch(p: Problem, bar: Progress) -> tuple[np.ndarray, str]:
    """The same GP's posterior mean by GPyTorch (its CG and preconditioner) on
    kernelsolve's MaternKernel."""
    torch = require("torch", "--gp-backend gpytorch", "gpytorch")
    gpytorch = require("gpytorch", "--gp-backend gpytorch", "gpytorch")
    from ..integrations.gpytorch import MaternKernel

    _, h, desc = _gp_hyperparameters(p, bar)
    X, Xt, y = _torch_inputs(p)

    class ExactGP(gpytorch.models.ExactGP):
        def __init__(self, x, t, likelihood):
            super().__init__(x, t, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(MaternKernel(nu=1.5))

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(x), self.covar_module(x)
            )

    likelihood = gpytorch.likelihoods.GaussianLikelihood().to(X.device)
    model = ExactGP(X, y, likelihood).to(X.device)
    model.covar_module.base_kernel.lengthscale = h["lengthscale"]
    model.covar_module.outputscale = h["outputscale"]
    likelihood.noise = h["noise"]
    model.mean_module.constant.data.fill_(h["mean"])
    model.eval()
    likelihood.eval()
    bar.update(0, f"GPyTorch posterior mean on {len(X):,} points")
    out = []
    # no covariances (GPyTorch would build the test-test block); a few test blocks;
    # the CG tolerance of the kernelsolve path (GPyTorch's default is 1e-2)
    with (
        torch.no_grad(),
        gpytorch.settings.skip_posterior_variances(),
        gpytorch.settings.eval_cg_tolerance(settings.GP_RTOL),
    ):
        for s in range(0, len(Xt), 20_000):
            out.append(model(Xt[s : s + 20_000]).mean)
            bar.update(0, f"GPyTorch posterior mean at {s + len(out[-1]):,} of {len(Xt):,}")
    pred = torch.cat(out).double().cpu().numpy() * p.std + p.mean
    return pred, f"{desc}; GPyTorch ExactGP with kernelsolve's MaternKernel"


def scipy_rbf(p: Problem, bar: Progress, n: int) -> tuple[np.ndarray, str]:
    """scipy's dense RBFInterpolator (thin-plate spline) on the first ``n`` points."""
    from scipy.interpolate import RBFInterpolator

    bar.update(0, f"dense solve on {n:,} points")
    f = RBFInterpolator(p.X[:n], (p.y[:n] - p.mean) / p.std, kernel="thin_plate_spline")
    bar.update(0, f"evaluating at {len(p.Xt):,} points")
    return f(p.Xt) * p.std + p.mean, "thin-plate spline, dense LU"
