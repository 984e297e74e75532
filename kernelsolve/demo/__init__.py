"""The main job of ``kernelsolve demo``: rebuild a terrain from a fifth of its points.

Data: matplotlib's Jacksboro fault DEM (``cbook.get_sample_data``, shipped with
matplotlib, so nothing is downloaded), 344 x 403 = 138,632 elevations in
metres. Coordinates are the grid indices divided by the longer side minus one
(the true aspect ratio, x in [0, 1], y in [0, 0.853]). A random 20 % of the
points (27,726, fixed seed) is the training set; every other point (110,906)
is held out, and each method is scored by its RMSE there.

Methods (``--methods``), each fitted on the first ``n_train`` points of the
(shuffled) training set:

* ``spline``: thin-plate spline, :class:`~kernelsolve.linalg.interpolate.KernelInterpolator`
  (degree 1, smoothing 0 unless ``smoothing`` is given: measured on this data,
  smoothing *raises* the iteration count of its preconditioned GMRES).
* ``kriging``: :class:`~kernelsolve.linalg.kriging.OrdinaryKriging` with an
  exponential variogram fitted (:func:`~kernelsolve.linalg.variogram.fit_variogram`)
  to the semivariogram of the pairs closer than ``VARIOGRAM_LAG_SPACINGS``
  mean data spacings among ``VARIOGRAM_POINTS`` training points
  (:func:`~kernelsolve.linalg.variogram.short_lag_variogram`).
  PyKrige's default binning spans every pair distance up to the domain's
  diameter; its first bin then holds distances up to ~0.2 and the fitted
  nugget swallows the short-scale relief (nugget ~5,000 m^2, RMSE 38 m at
  5,000 points, measured), so the short lags are binned here instead.
  (Matern-3/2 kriging predicts 0.2 m better; with the two-level saddle
  preconditioner, which OrdinaryKriging now uses for bounded variograms too,
  it converges in 8 products at 27,726 points, the exponential model in 7.)
* ``gp``: exact Gaussian process, Matern-3/2 kernel plus noise
  (:class:`kernelsolve.sklearn.GaussianProcessRegressor`, NumPy and
  scikit-learn: no torch). The three hyperparameters maximise the exact
  marginal likelihood of ``GP_FIT_POINTS`` random training points (its dense
  path, scikit-learn's L-BFGS-B, the gradient from the engine's symbolic
  derivatives); the posterior mean given all ``n_train`` points comes from its
  iterative path: ``(K + noise I) a = y`` by RPCholesky-preconditioned CG
  (rank ``GP_RANK``) and one reduction for ``K_*x a``. ``--device cuda`` runs
  that solve on torch CUDA tensors (:func:`kernelsolve.linalg.gp.gp_posterior_mean`),
  ``--gp-backend gpytorch`` in GPyTorch on kernelsolve's ``MaternKernel``.

Next to them, scipy's dense ``RBFInterpolator`` (thin-plate spline) at the
size it handles in a few seconds (``scipy_n``): the same kind of model, on
fewer points, is what the O(N) solves improve on.

The package calls only public kernelsolve API: ``data`` (the DEM and the
split), ``settings`` (sizes and tolerances), ``methods`` (the four fits),
``figure`` and ``run`` (the driver, the table); ``deps`` names the pip extra
of a missing optional package.

Example
-------
>>> from kernelsolve.demo import DemoOptions, run  # doctest: +SKIP
>>> results = run(DemoOptions(quick=True, out="demo.png"))  # doctest: +SKIP
>>> [r.method for r in results]  # doctest: +SKIP
['thin-plate spline', 'ordinary kriging', 'exact GP', 'dense RBFInterpolator']
"""

from __future__ import annotations

from ..linalg import kernels
from ..linalg.gp import fit_gp_hyperparameters, gp_posterior_mean
from ..linalg.variogram import short_lag_variogram
from .data import Terrain, load_dem, split
from .deps import MissingDependency, check_dependencies
from .figure import write_figure
from .run import DemoOptions, MethodResult, format_table, run
from .settings import (
    DEFAULT_N_TRAIN,
    DEFAULT_SCIPY_N,
    GP_FIT_POINTS,
    GP_MAXITER,
    GP_RANK,
    GP_RTOL,
    KRIGING_MODEL,
    METHODS,
    QUICK,
    SOLVER_MAXITER,
    SOLVER_RTOL,
    VARIOGRAM_LAG_SPACINGS,
    VARIOGRAM_LAGS,
    VARIOGRAM_POINTS,
)

__all__ = [
    "DemoOptions",
    "METHODS",
    "MethodResult",
    "MissingDependency",
    "Terrain",
    "check_dependencies",
    "fit_gp_hyperparameters",
    "format_table",
    "gp_posterior_mean",
    "load_dem",
    "matern32",
    "run",
    "short_lag_variogram",
    "split",
    "write_figure",
    # settings
    "DEFAULT_N_TRAIN",
    "DEFAULT_SCIPY_N",
    "GP_FIT_POINTS",
    "GP_MAXITER",
    "GP_RANK",
    "GP_RTOL",
    "KRIGING_MODEL",
    "QUICK",
    "SOLVER_MAXITER",
    "SOLVER_RTOL",
    "VARIOGRAM_LAG_SPACINGS",
    "VARIOGRAM_LAGS",
    "VARIOGRAM_POINTS",
]


def matern32(A, B, lengthscale: float, outputscale: float):
    """The Matern-3/2 LazyTensor ``s (1 + r) exp(-r)``, ``r = sqrt(3) |a_i - b_j| / l``
    (:func:`kernelsolve.linalg.kernels.matern32` in the LazyTensor namespace).

    Example
    -------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).random((300, 2))
    >>> r = np.sqrt(3) * np.linalg.norm(X[:, None] - X[None], axis=-1) / 0.5
    >>> dense = 2.0 * (1 + r) * np.exp(-r)
    >>> K = matern32(X, X, 0.5, 2.0)
    >>> bool(np.allclose(K @ np.ones((300, 1)), dense.sum(1, keepdims=True)))
    True
    """
    from .. import Vi, Vj

    return outputscale * kernels.matern32(kernels.LAZY, Vi(A).sqdist(Vj(B)) / lengthscale**2)
