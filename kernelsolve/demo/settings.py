"""The demo's sizes, tolerances and names (what ``--quick`` changes)."""

from __future__ import annotations

__all__ = [
    "METHODS",
    "LABELS",
    "DEFAULT_N_TRAIN",
    "DEFAULT_SCIPY_N",
    "VARIOGRAM_POINTS",
    "VARIOGRAM_LAG_SPACINGS",
    "VARIOGRAM_LAGS",
    "KRIGING_MODEL",
    "GP_FIT_POINTS",
    "GP_RANK",
    "GP_RTOL",
    "GP_MAXITER",
    "GP_PROBES",
    "SOLVER_RTOL",
    "SOLVER_MAXITER",
    "QUICK",
]

METHODS = ("spline", "kriging", "gp")
LABELS = {
    "spline": "thin-plate spline",
    "kriging": "ordinary kriging",
    "gp": "exact GP",
    "scipy": "dense RBFInterpolator",
}
#: Training points used by default: the whole 20 % of the DEM.
DEFAULT_N_TRAIN = 27_726
#: Points of scipy's dense RBFInterpolator (its (N + 3)^2 system).
DEFAULT_SCIPY_N = 4000
#: Points of the empirical variogram behind kriging, and its largest lag in
#: mean data spacings (sqrt(area / n_train); 10 spacings = 0.056 at 27,726 points).
VARIOGRAM_POINTS = 3000
VARIOGRAM_LAG_SPACINGS = 10.0
VARIOGRAM_LAGS = 20
KRIGING_MODEL = "exponential"
#: Points of the dense marginal-likelihood fit of the GP hyperparameters.
GP_FIT_POINTS = 1500
#: Rank of the RPCholesky preconditioner of the GP solve, the CG tolerance (relative
#: residual) and iteration cap.
GP_RANK = 2000
GP_RTOL = 1e-3
GP_MAXITER = 500
#: Probes of the estimated log marginal likelihood that the GP's fit reports
#: (kernelsolve.sklearn.GaussianProcessRegressor: its CG runs 1 + GP_PROBES columns).
GP_PROBES = 2
#: Relative residual and iteration cap of the spline and kriging solves (GMRES).
SOLVER_RTOL = 1e-6
SOLVER_MAXITER = 200

QUICK = dict(n_train=1000, scipy_n=300, variogram_points=600, gp_fit_points=250, gp_rank=250)
