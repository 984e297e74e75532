"""Ordinary and universal kriging with PyKrige's API, solved directly for small
problems and in O(n) memory for large ones.

:class:`OrdinaryKriging` and :class:`UniversalKriging` take the arguments of
their PyKrige 1.7.3 namesakes, in PyKrige's order, and return the same
predictions and kriging variances (:mod:`.kriging3d` holds the 3-D classes,
re-exported here). Wherever PyKrige's dense system fits the memory budget
(:func:`.kriging_direct.direct_fits`, ``kernelsolve.config.dense_memory_limit``),
and for what only a dense system handles (custom and hole-effect variograms,
point-log, external, specified and functional drifts, geographic coordinates,
pseudo-inverses), the system is PyKrige's, LU-factorized once
(:mod:`.kriging_direct`): exact, as PyKrige is. Beyond, it is never formed: the radial-basis
saddle-point system of :mod:`.saddle` with the kernel ``-gamma_c`` is solved by
preconditioned GMRES, or for smooth covariances with a nugget by batched CG
(:mod:`.kriging_solvers`). ``n_closest_points`` krige each target on its
nearest data (a k-d tree and batched small solves), at any ``n``.
``docs/kriging.md`` derives the systems, the variances and the solver choice.

The variogram names (``Variogram``, ``fit_variogram``, ...) are re-exported
from :mod:`.variogram`.
"""

from __future__ import annotations

import numpy as np

from ..tolerance import KRIGING_RTOL, keywords
from .kriging3d import OrdinaryKriging3D, UniversalKriging3D
from .kriging_base import KrigingBase
from .kriging_inputs import vector
from .kriging_options import SolverOptions
from .variogram import (
    VARIOGRAM_MODELS,
    Variogram,
    VariogramModel,
    experimental_variogram,
    fit_variogram,
    short_lag_variogram,
    variogram_parameter_list,
)

__all__ = [
    "OrdinaryKriging",
    "UniversalKriging",
    "OrdinaryKriging3D",
    "UniversalKriging3D",
    # re-exported from .variogram
    "VariogramModel",
    "Variogram",
    "VARIOGRAM_MODELS",
    "variogram_parameter_list",
    "experimental_variogram",
    "short_lag_variogram",
    "fit_variogram",
]


class _Kriging2D(KrigingBase):
    """The 2-D coordinates and methods common to ordinary and universal kriging."""

    def _read(self, x, y, z):
        self.X_ORIG, self.Y_ORIG, self.Z = vector(x, "x"), vector(y, "y"), vector(z, "z")
        if self.X_ORIG.size != self.Y_ORIG.size:
            raise ValueError(
                f"x and y must have the same length, got {self.X_ORIG.size} and {self.Y_ORIG.size}"
            )
        return np.column_stack([self.X_ORIG, self.Y_ORIG]), self.Z

    def _publish_coordinates(self) -> None:
        self.X_ADJUSTED, self.Y_ADJUSTED = self._pts[:, 0].copy(), self._pts[:, 1].copy()
        self.XCENTER, self.YCENTER = (float(c) for c in self._center)
        self.anisotropy_scaling = float(self._scaling[0])
        self.anisotropy_angle = float(self._angle[0])

    def update_variogram_model(
        self,
        variogram_model,
        variogram_parameters=None,
        variogram_function=None,
        nlags: int = 6,
        weight: bool = False,
        anisotropy_scaling: float = 1.0,
        anisotropy_angle: float = 0.0,
    ) -> None:
        """A new variogram (given or fitted) and anisotropy, as PyKrige's method."""
        self._update(
            (variogram_model, variogram_parameters, variogram_function, nlags, weight),
            (anisotropy_scaling, anisotropy_angle),
        )


class OrdinaryKriging(_Kriging2D):
    """Ordinary kriging in 2-D (PyKrige's ``OrdinaryKriging``).

    Parameters
    ----------
    x, y, z : array_like
        Coordinates and values of the ``n`` data points.
    variogram_model : str
        "linear" (default), "power", "gaussian", "spherical", "exponential",
        "hole-effect", "matern" (nu 0.5, 1.5, 2.5; not PyKrige's) or "custom"
        (formulas in :mod:`.variogram` and ``docs/kriging.md``).
    variogram_parameters : dict or list, optional
        PyKrige's conventions (a list holds the full sill first); fitted to the
        experimental semivariogram when None.
    variogram_function : callable, optional
        ``f(params, h)`` for ``variogram_model="custom"``.
    nlags : int
        Bins of the experimental semivariogram.
    weight : bool
        Weight small lags more in the fit (PyKrige's logistic weights).
    anisotropy_scaling, anisotropy_angle : float
        PyKrige's anisotropy (stretch of y after a rotation by -angle degrees).
    verbose : bool
        Messages and progress (fit, solves, long variance loops) on stderr.
    enable_plotting : bool
        Plot the variogram fit (matplotlib).
    enable_statistics : bool
        Q1, Q2, cR, delta, sigma, epsilon (computed when first read); None otherwise.
    coordinates_type : {"euclidean", "geographic"}
        "geographic": x longitude and y latitude in degrees, great-circle
        distances in degrees (anisotropy ignored).
    exact_values : bool
        True: data are reproduced at their locations (variance 0 there).
    pseudo_inv, pseudo_inv_type : bool, {"pinv", "pinvh"}
        Solve with a pseudo-inverse of the kriging matrix (duplicate points
        are then averaged); direct solver only.
    solver : {"auto", "direct", "saddle", "cg"}
        Keyword only, as all that follow (kernelsolve's, not PyKrige's).
        "auto": direct wherever the dense system (8 (n + m)^2 bytes, factorized
        in place) fits 0.8 of ``kernelsolve.linalg.dense.memory_budget()``
        (``kernelsolve.config.dense_memory_limit``, or a fraction of the memory
        available), and for what only the direct solver takes, except with
        ``variance=False`` above ``VALUES_ONLY_DIRECT_MAX`` = 4000 unknowns
        (values alone are exact to ``rtol`` iteratively, and faster); beyond, "cg"
        for gaussian and matern nu >= 1.5 with a nugget over few length
        scales, else "saddle".
    variance : {"auto", "exact", "local", False}
        Variances of the iterative solvers (the direct solver's are always
        exact): "exact" (one solve per target), "local" (kriging on the
        ``variance_neighbors`` nearest data, an upper bound, too large by up to
        0.27 of the largest variance in data gaps at n = 10,000), "auto" (exact
        up to ``exact_variance_max`` targets, else local with a
        ``LocalVarianceWarning`` once per object), False (none).
    exact_variance_max, variance_neighbors, variance_check : int
        The "auto" limit (default ``min(2000, 2e8 / n^2)``), the data of a local
        system, and the targets solved exactly to measure the local error.
    max_pairs : int
        Most point pairs of the experimental semivariogram (a random sample beyond).
    rank : int, optional
        Rank of the CG solver's RPCholesky preconditioner (automatic).
    tol : float, optional
        The CG solver (bounded variograms with a nugget): each product skips
        the block pairs holding at most ``tol`` of each row's ``sum_j |K_ij|``
        (covariances that decay: gaussian, exponential, spherical...;
        ``info.skipped_pairs`` says how much). None (default): exact; the
        other solvers are exact.
    rtol, maxiter : float, int
        Relative residual: GMRES (or CG) stops when ``||r|| <= rtol ||b||`` (see
        :mod:`.tolerance`), or after ``maxiter`` iterations. The default 1e-10 is
        tighter than the CG solvers' 1e-6 because the kriging variance is a
        difference of nearly equal terms: at 1e-10 the iterative solvers agree
        with PyKrige's direct solve to about 1e-6. ``eps=`` is a TypeError
        naming ``rtol``.
    neighbors, coarse : int, int or "auto"
        The saddle solver's preconditioner: points per approximate cardinal
        function, points of its coarse level.
    seed : int
        Seed of the pair sample, the preconditioners and ``variance_check``.

    Attributes
    ----------
    solver : str
        "direct", "saddle", "cg" or "nugget" (closed form for a pure nugget).
    variogram_model, variogram_function, variogram_model_parameters
        As PyKrige's (parameters in its internal order, partial sill first).
    lags, semivariance : ndarray
        The experimental semivariogram (computed when first read).
    X_ORIG, Y_ORIG, Z, X_ADJUSTED, Y_ADJUSTED, XCENTER, YCENTER
        The data as PyKrige names them.
    Q1, Q2, cR, delta, sigma, epsilon
        PyKrige's fit statistics (``enable_statistics``).
    info : SaddleInfo
        The iterative solve for the data.
    variance_info : dict
        How the last variances were computed.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.random(200), rng.random(200)
    >>> ok = OrdinaryKriging(x, y, np.sin(3 * x) + y, "exponential",
    ...                      {"psill": 1.0, "range": 0.5, "nugget": 0.0})
    >>> z, ss = ok.execute("points", x[:3], y[:3])
    >>> bool(np.allclose(z, np.sin(3 * x[:3]) + y[:3])), bool(np.allclose(ss, 0))
    (True, True)
    >>> z, ss = ok.execute("grid", np.linspace(0, 1, 5), np.linspace(0, 1, 4))
    >>> z.shape, bool((ss >= 0).all())
    ((4, 5), True)
    """

    @keywords(refused={"eps": "rtol"})
    def __init__(
        self,
        x,
        y,
        z,
        variogram_model: str = "linear",
        variogram_parameters: dict | list | None = None,
        variogram_function=None,
        nlags: int = 6,
        weight: bool = False,
        anisotropy_scaling: float = 1.0,
        anisotropy_angle: float = 0.0,
        verbose: bool = False,
        enable_plotting: bool = False,
        enable_statistics: bool = False,
        coordinates_type: str = "euclidean",
        exact_values: bool = True,
        pseudo_inv: bool = False,
        pseudo_inv_type: str = "pinv",
        *,
        solver: str = "auto",
        variance: str | bool = "auto",
        exact_variance_max: int | None = None,
        variance_neighbors: int = 64,
        variance_check: int = 10,
        max_pairs: int = 1 << 22,
        rank: int | None = None,
        tol: float | None = None,
        rtol: float = KRIGING_RTOL,
        maxiter: int = 1000,
        neighbors: int = 50,
        coarse: int | str = "auto",
        seed: int = 0,
    ):
        flags = dict(
            verbose=verbose,
            enable_plotting=enable_plotting,
            enable_statistics=enable_statistics,
            coordinates_type=coordinates_type,
            exact_values=exact_values,
            pseudo_inv=pseudo_inv,
            pseudo_inv_type=pseudo_inv_type,
        )
        self._setup(
            *self._read(x, y, z),
            (variogram_model, variogram_parameters, variogram_function, nlags, weight),
            (anisotropy_scaling, anisotropy_angle),
            flags,
            (None, {}),
            SolverOptions.pick(locals()),
        )

    def execute(
        self,
        style: str,
        xpoints,
        ypoints,
        mask=None,
        backend: str = "vectorized",
        n_closest_points: int | None = None,
        *,
        variance: str | bool | None = None,
        dtype: str = "float64",
    ):
        """Kriged values and kriging variances (PyKrige's ``execute``).

        Parameters
        ----------
        style : {"grid", "points", "masked"}
            "grid": ``xpoints`` (nx,) and ``ypoints`` (ny,) span a grid, results
            (ny, nx); "points": coordinate pairs; "masked": a grid with ``mask``
            (ny, nx) True where no value is wanted.
        xpoints, ypoints : array_like
        mask : bool array_like, optional
        backend : {"vectorized", "loop", "C"}
            Accepted for PyKrige's sake (one implementation serves all);
            "vectorized" returns masked arrays, as PyKrige's does.
        n_closest_points : int, optional
            Moving-window kriging on this many nearest data (any ``n``).
        variance : {"exact", "local", "auto", False}, optional
            Overrides the constructor's ``variance`` (iterative solvers); False
            skips the variances (``sigmasq`` is None).
        dtype : {"float64", "float32"}
            Precision of the iterative solvers' kernel sums of the predictions.

        Returns
        -------
        zvalues, sigmasq : ndarray or MaskedArray
        """
        return self._execute(
            style, (xpoints, ypoints), mask, backend, n_closest_points, None, variance, dtype
        )


class UniversalKriging(_Kriging2D):
    """Universal kriging in 2-D (PyKrige's ``UniversalKriging``).

    The parameters of :class:`OrdinaryKriging` (documented there, e.g.
    ``tol``, the error the CG solver's products may make relative to each
    row's ``sum_j |K_ij|``; no ``enable_statistics`` or ``coordinates_type``:
    the statistics are computed when first read), plus PyKrige's drift arguments.

    Parameters
    ----------
    drift_terms : list of str, optional
        Any of "regional_linear" (the adjusted x and y), "point_log" (``-Q log r``
        to each ``point_drift`` row ``(x, y, Q)``), "external_Z" (the grid
        ``external_drift`` (ny, nx) at ``external_drift_x``, ``external_drift_y``,
        bilinear), "specified" (``specified_drift``: a list of arrays of values at
        the data; ``execute`` then needs ``specified_drift_arrays``) and
        "functional" (``functional_drift``: a list of callables ``f(x, y)`` of the
        adjusted coordinates). None: no drift (ordinary kriging). Only
        "regional_linear" is solved iteratively; the others use the direct solver.
    rtol : float
        Relative residual: the iterative solvers stop when ``||r|| <= rtol ||b||``
        (default 1e-10, for the reason :class:`OrdinaryKriging` gives).

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.random(200), rng.random(200)
    >>> uk = UniversalKriging(x, y, 2 * x - y + 0.1 * np.sin(5 * x), "spherical",
    ...                       {"psill": 0.01, "range": 0.5, "nugget": 0.0},
    ...                       drift_terms=["regional_linear"])
    >>> z, ss = uk.execute("points", [0.5], [0.5])
    >>> bool(abs(z[0] - (0.5 + 0.1 * np.sin(2.5))) < 1e-2)
    True
    """

    _ordinary = False

    @keywords(refused={"eps": "rtol"})
    def __init__(
        self,
        x,
        y,
        z,
        variogram_model: str = "linear",
        variogram_parameters: dict | list | None = None,
        variogram_function=None,
        nlags: int = 6,
        weight: bool = False,
        anisotropy_scaling: float = 1.0,
        anisotropy_angle: float = 0.0,
        drift_terms=None,
        point_drift=None,
        external_drift=None,
        external_drift_x=None,
        external_drift_y=None,
        specified_drift=None,
        functional_drift=None,
        verbose: bool = False,
        enable_plotting: bool = False,
        exact_values: bool = True,
        pseudo_inv: bool = False,
        pseudo_inv_type: str = "pinv",
        *,
        solver: str = "auto",
        variance: str | bool = "auto",
        exact_variance_max: int | None = None,
        variance_neighbors: int = 64,
        variance_check: int = 10,
        max_pairs: int = 1 << 22,
        rank: int | None = None,
        tol: float | None = None,
        rtol: float = KRIGING_RTOL,
        maxiter: int = 1000,
        neighbors: int = 50,
        coarse: int | str = "auto",
        seed: int = 0,
    ):
        companions = dict(
            point_drift=point_drift,
            external_drift=external_drift,
            external_drift_x=external_drift_x,
            external_drift_y=external_drift_y,
            specified_drift=specified_drift,
            functional_drift=functional_drift,
        )
        flags = dict(
            verbose=verbose,
            enable_plotting=enable_plotting,
            exact_values=exact_values,
            pseudo_inv=pseudo_inv,
            pseudo_inv_type=pseudo_inv_type,
        )
        self._setup(
            *self._read(x, y, z),
            (variogram_model, variogram_parameters, variogram_function, nlags, weight),
            (anisotropy_scaling, anisotropy_angle),
            flags,
            (drift_terms, companions),
            SolverOptions.pick(locals()),
        )
        self.drift_terms = self._drift.terms

    def execute(
        self,
        style: str,
        xpoints,
        ypoints,
        mask=None,
        backend: str = "vectorized",
        specified_drift_arrays=None,
        *,
        variance: str | bool | None = None,
        dtype: str = "float64",
    ):
        """Kriged values and kriging variances (PyKrige's ``execute``): the
        arguments of :meth:`OrdinaryKriging.execute` but ``n_closest_points``,
        plus ``specified_drift_arrays`` (a list of arrays of the drift values at
        the targets: the grid's shape (ny, nx), or (npt,) for "points")."""
        return self._execute(
            style, (xpoints, ypoints), mask, backend, None, specified_drift_arrays, variance, dtype
        )
