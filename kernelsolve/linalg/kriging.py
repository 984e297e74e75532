"""Ordinary and universal kriging with PyKrige's API, solved in O(n) memory.

:class:`OrdinaryKriging` and :class:`UniversalKriging` take the arguments of
their PyKrige 1.7.3 namesakes (2-D coordinates ``x, y``, values ``z``, a
variogram model of :mod:`.variogram` with its parameters or a fit to the
experimental semivariogram) and return the same predictions and kriging
variances, but never form the dense ``(n + 1)^2`` kriging matrix. The system
is the radial-basis saddle-point system of :mod:`.saddle` with the kernel
``-gamma_c`` (the variogram without its nugget; the nugget becomes the
smoothing), solved by preconditioned GMRES, or for smooth covariances with a
nugget by batched CG (:mod:`.kriging_solvers`); the products with the kernel
matrix are engine reductions. ``docs/kriging.md`` derives the system, the
kriging variances (exact and local) and the solver choice, with the
measurements behind the defaults.

The variogram names (``Variogram``, ``fit_variogram``, ...) are re-exported
from :mod:`.variogram`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..progress import Progress
from ..tolerance import KRIGING_RTOL, check_tolerances, keywords
from .kriging_inputs import adjust_for_anisotropy, drift_term_list, variance_mode, vector
from .kriging_solvers import (
    CovarianceCGSolver,
    NuggetSolver,
    SaddleKrigingSolver,
    choose_solver,
    local_variance,
)
from .saddle import monomial_powers, polynomial_matrix
from .variogram import (
    MATERN_NU,
    VARIOGRAM_MODELS,
    Variogram,
    VariogramModel,
    as_model,
    experimental_variogram,
    fit_variogram,
    short_lag_variogram,
    variogram_parameter_list,
)

__all__ = [
    "OrdinaryKriging",
    "UniversalKriging",
    # re-exported from .variogram
    "VariogramModel",
    "Variogram",
    "VARIOGRAM_MODELS",
    "variogram_parameter_list",
    "experimental_variogram",
    "short_lag_variogram",
    "fit_variogram",
]

EPS = 1.0e-10  # PyKrige's cutoff: a target this close to a datum coincides with it


# ----------------------------------------------------------------------
# Kriging
# ----------------------------------------------------------------------
class _Kriging:
    """PyKrige's kriging classes; :class:`OrdinaryKriging` documents the parameters."""

    _degree = 0  # of the drift polynomial: 0 ordinary, 1 universal (regional linear)

    @keywords(refused={"tol": "rtol", "eps": "rtol"})
    def __init__(
        self,
        x,
        y,
        z,
        variogram_model: str = "linear",
        variogram_parameters: dict | list | None = None,
        nlags: int = 6,
        weight: bool = False,
        anisotropy_scaling: float = 1.0,
        anisotropy_angle: float = 0.0,
        exact_values: bool = True,
        *,
        variance: str | bool = "auto",
        exact_variance_max: int | None = None,
        variance_neighbors: int = 64,
        variance_check: int = 10,
        max_pairs: int = 1 << 22,
        solver: str = "auto",
        rank: int | None = None,
        rtol: float = KRIGING_RTOL,
        maxiter: int = 1000,
        neighbors: int = 50,
        coarse: int | str = "auto",
        seed: int = 0,
        verbose: bool = False,
    ):
        self.verbose = bool(verbose)
        self._read_data(x, y, z)
        self._read_options(
            exact_values, variance, solver, coarse, variance_neighbors, variance_check, seed
        )
        check_tolerances(rtol, 0.0, maxiter)
        if rtol == 0 or maxiter == 0:  # GMRES would only ever stop at maxiter
            name, value = ("rtol", rtol) if rtol == 0 else ("maxiter", maxiter)
            raise ValueError(f"{name} must be > 0, got {value}")
        self.rtol, self.maxiter = float(rtol), int(maxiter)
        self._adjust_coordinates(anisotropy_scaling, anisotropy_angle)
        self._check_distinct()
        self._set_variogram(variogram_model, variogram_parameters, nlags, weight, max_pairs)
        self._check_drift()
        self.solver = choose_solver(self.variogram, self._xy, solver)
        self.exact_variance_max = self._exact_variance_max(exact_variance_max)
        self._backend = self._make_solver(rank, neighbors, coarse)
        self.info = self._backend.info

    # ------------------------------------------------------------------
    # The steps of __init__
    # ------------------------------------------------------------------
    def _read_data(self, x, y, z) -> None:
        self.X_ORIG = vector(x, "x")
        self.Y_ORIG = vector(y, "y")
        self.Z = vector(z, "z")
        n = self.X_ORIG.size
        if self.Y_ORIG.size != n or self.Z.size != n:
            raise ValueError(
                f"x, y and z must have the same length, got {n}, {self.Y_ORIG.size} and "
                f"{self.Z.size}"
            )
        self._powers = monomial_powers(2, self._degree)
        m = self._powers.shape[0]
        if n < max(2, m + 1):
            raise ValueError(f"x, y: at least {max(2, m + 1)} data points are needed, got {n}")

    def _read_options(
        self, exact_values, variance, solver, coarse, variance_neighbors, variance_check, seed
    ) -> None:
        if not isinstance(exact_values, bool):
            raise ValueError("exact_values must be True or False")
        self.exact_values = exact_values
        self.variance = variance_mode(variance)
        if solver not in ("auto", "saddle", "cg"):
            raise ValueError(f"solver={solver!r}: expected 'auto', 'saddle' or 'cg'")
        if isinstance(coarse, str) and coarse != "auto":
            raise ValueError(f"coarse={coarse!r}: expected 'auto' or a number of points")
        if not isinstance(coarse, str) and not (
            isinstance(coarse, (int, np.integer)) and not isinstance(coarse, bool) and coarse >= 0
        ):
            raise ValueError(f"coarse must be 'auto' or an integer >= 0, got {coarse!r}")
        m = self._powers.shape[0]
        self.variance_neighbors = int(variance_neighbors)
        if self.variance_neighbors < m + 1:
            raise ValueError(f"variance_neighbors must be >= {m + 1}, got {variance_neighbors}")
        self.variance_check = max(0, int(variance_check))
        self.seed = int(seed)
        self.variance_info: dict = {}

    def _adjust_coordinates(self, anisotropy_scaling, anisotropy_angle) -> None:
        """PyKrige's anisotropy: the points the variogram and the solver see."""
        scaling, angle = float(anisotropy_scaling), float(anisotropy_angle)
        if not np.isfinite(scaling) or scaling <= 0:
            raise ValueError(f"anisotropy_scaling must be positive and finite, got {scaling}")
        if not np.isfinite(angle):
            raise ValueError(f"anisotropy_angle must be finite, got {angle}")
        self.anisotropy_scaling, self.anisotropy_angle = scaling, angle
        self.XCENTER = (np.amax(self.X_ORIG) + np.amin(self.X_ORIG)) / 2.0
        self.YCENTER = (np.amax(self.Y_ORIG) + np.amin(self.Y_ORIG)) / 2.0
        xy = adjust_for_anisotropy(
            np.column_stack([self.X_ORIG, self.Y_ORIG]),
            [self.XCENTER, self.YCENTER],
            scaling,
            angle,
        )
        self.X_ADJUSTED, self.Y_ADJUSTED = xy[:, 0].copy(), xy[:, 1].copy()
        self._xy = np.ascontiguousarray(xy)

    def _set_variogram(self, variogram_model, variogram_parameters, nlags, weight, max_pairs):
        """The variogram: the given parameters, or PyKrige's fit to the experimental
        semivariogram (``lags``, ``semivariance``: computed here for a fit, else
        when first read)."""
        self.variogram_model = as_model(variogram_model).name
        model = VARIOGRAM_MODELS[self.variogram_model]
        p = variogram_parameter_list(self.variogram_model, variogram_parameters)
        nlags = int(nlags)
        if nlags < 1:
            raise ValueError(f"nlags must be >= 1, got {nlags}")
        self._experimental_args = (nlags, int(max_pairs))
        self._experimental = None
        if p is None:
            p = self._fit(model, variogram_parameters, bool(weight))
        self.variogram = Variogram(model, p)
        self.variogram_model_parameters = p
        self.variogram_function = model.gamma

    @property
    def lags(self) -> np.ndarray:
        """Mean distance of each non-empty bin of the experimental semivariogram."""
        return self._experimental_variogram()[0]

    @property
    def semivariance(self) -> np.ndarray:
        """Mean semivariance of each non-empty bin of the experimental semivariogram."""
        return self._experimental_variogram()[1]

    def _experimental_variogram(self) -> tuple[np.ndarray, np.ndarray]:
        # PyKrige always computes it; with given parameters nothing here needs it,
        # so it waits until read (0.7 s of 20 in the demo's kriging)
        if self._experimental is None:
            nlags, max_pairs = self._experimental_args
            self._experimental = experimental_variogram(
                self._xy, self.Z, nlags, max_pairs=max_pairs, seed=self.seed
            )
        return self._experimental

    def _fit(self, model, variogram_parameters, weight: bool) -> np.ndarray:
        nu = 1.5
        if isinstance(variogram_parameters, dict):
            nu = float({str(k).lower(): v for k, v in variogram_parameters.items()}["nu"])
            if nu not in MATERN_NU:
                raise ValueError(f"variogram_parameters: nu must be one of {MATERN_NU}")
        p = fit_variogram(self.lags, self.semivariance, model, weight, nu=nu)
        try:
            fitted = Variogram(model, p)
        except ValueError as exc:
            raise ValueError(
                f"the fitted variogram is degenerate ({exc}); give variogram_parameters"
            ) from None
        Progress("kriging", enabled=self.verbose).write(f"fitted {fitted}")
        return p

    def _exact_variance_max(self, exact_variance_max: int | None) -> int:
        if exact_variance_max is None:
            # about 2e8 (saddle: per-target GMRES) or 2e9 (CG: batched) pair evaluations
            budget = 2e9 if self.solver == "cg" else 2e8
            return int(min(2000, budget // self.Z.size**2))
        return int(exact_variance_max)

    def _make_solver(self, rank, neighbors, coarse):
        args = (self._xy, self.variogram, self._powers, self.Z)
        options = dict(rtol=self.rtol, maxiter=self.maxiter, verbose=self.verbose)
        if self.solver == "nugget":
            return NuggetSolver(*args)
        if self.solver == "cg":
            return CovarianceCGSolver(*args, rank=rank, **options)
        return SaddleKrigingSolver(
            *args, neighbors=neighbors, coarse=coarse, seed=self.seed, **options
        )

    # ------------------------------------------------------------------
    def _check_distinct(self) -> None:
        # a k-d tree: O(n log n), where the engine's argKmin compares all n^2 pairs
        self._tree = cKDTree(self._xy)
        d, idx = self._tree.query(self._xy, 2)
        dup = np.flatnonzero(d[:, 1] == 0)
        if dup.size:
            i = int(dup[0])
            j = int(idx[i, 1]) if idx[i, 1] != i else int(idx[i, 0])
            raise ValueError(
                f"x, y hold duplicate points (e.g. points {min(i, j)} and {max(i, j)}); "
                "kriging needs distinct locations (average or drop duplicates)"
            )

    def _check_drift(self) -> None:
        if self._degree == 0:
            return
        lo, hi = self._xy.min(0), self._xy.max(0)
        scale = np.where(hi > lo, (hi - lo) / 2, 1.0)
        P = polynomial_matrix((self._xy - (lo + hi) / 2) / scale, self._powers)
        if np.linalg.matrix_rank(P) < P.shape[1]:
            raise ValueError(
                "x, y: the points are collinear, so a linear drift is not identifiable; "
                "use OrdinaryKriging"
            )

    def _variance(self, xy: np.ndarray, mode) -> np.ndarray:
        k = len(xy)
        if mode == "auto":
            mode = (
                "exact" if (k <= self.exact_variance_max or self.solver == "nugget") else "local"
            )
        if mode == "exact" or self.solver == "nugget":
            self.variance_info = {"method": "exact", "targets": k}
            return self._backend.variance(xy)
        out = local_variance(
            self._xy, self.variogram, self._powers, xy, min(self.variance_neighbors, self.Z.size)
        )
        q = min(self.variance_neighbors, self._xy.shape[0])
        info = {"method": "local", "targets": k, "neighbors": q}
        check = min(self.variance_check, k, self.exact_variance_max)
        if check:
            rng = np.random.default_rng(self.seed)
            sel = np.sort(rng.choice(k, size=check, replace=False))
            exact = self._backend.variance(xy[sel])
            err = np.abs(out[sel] - exact)
            info.update(
                checked=check,
                max_abs_error=float(err.max()),
                max_rel_error=float((err / np.maximum(np.abs(exact), 1e-300)).max()),
            )
            out[sel] = exact
        self.variance_info = info
        return out

    # ------------------------------------------------------------------
    def execute(
        self,
        style: str,
        xpoints,
        ypoints,
        mask=None,
        *,
        variance: str | bool | None = None,
        dtype: str = "float64",
    ):
        """Kriged values and kriging variances.

        Parameters
        ----------
        style : {"grid", "points", "masked"}
            "grid": ``xpoints`` (nx,) and ``ypoints`` (ny,) span a grid and the
            results have shape (ny, nx); "points": coordinate pairs, results of
            shape (npt,); "masked": a grid with ``mask`` (ny, nx) True where no
            value is wanted, results are masked arrays.
        xpoints, ypoints : array_like
        mask : bool array_like, optional
        variance : {"exact", "local", "auto", False}, optional
            Overrides the ``variance`` given to the constructor; False skips
            the variances (``sigmasq`` is None).
        dtype : {"float64", "float32"}
            Precision of the kernel sums of the predictions (not PyKrige's: it
            has none). "float32" is about twice as fast, with an error up to
            about 1e-7 of ``sum_i |c_i phi(|x - x_i|)|`` (0.006 m on the demo's
            DEM, whose RMSE is 11.6 m); the variances are always float64.

        Returns
        -------
        zvalues, sigmasq : ndarray
            Predictions and kriging variances (PyKrige's ``sigmasq``, not
            clipped at 0: tiny negative values are rounding).
        """
        if style not in ("grid", "points", "masked"):
            raise ValueError(f"style={style!r}: expected 'grid', 'points' or 'masked'")
        if dtype not in ("float64", "float32"):
            raise ValueError(f"dtype={dtype!r}: expected 'float64' or 'float32'")
        mode = self.variance if variance is None else variance_mode(variance)
        xpts = vector(xpoints, "xpoints")
        ypts = vector(ypoints, "ypoints")
        nx, ny = xpts.size, ypts.size
        if style == "points":
            if nx != ny:
                raise ValueError(
                    f"xpoints and ypoints must have the same length for style='points', "
                    f"got {nx} and {ny}"
                )
            keep = np.ones(nx, dtype=bool)
        else:
            gx, gy = np.meshgrid(xpts, ypts)
            xpts, ypts = gx.ravel(), gy.ravel()
            keep = np.ones(nx * ny, dtype=bool)
            if style == "masked":
                if mask is None:
                    raise ValueError("mask must be given for style='masked'")
                mask = np.asarray(mask, dtype=bool)
                if mask.shape == (nx, ny) and nx != ny:
                    mask = mask.T
                if mask.shape != (ny, nx):
                    raise ValueError(f"mask must have shape ({ny}, {nx}), got {mask.shape}")
                keep = ~mask.ravel()
        xy = adjust_for_anisotropy(
            np.column_stack([xpts, ypts]),
            [self.XCENTER, self.YCENTER],
            self.anisotropy_scaling,
            self.anisotropy_angle,
        )
        xy = np.ascontiguousarray(xy[keep])
        zk = np.zeros(len(xy))
        sk = None if mode is False else np.zeros(len(xy))
        if len(xy):
            zk = self._backend.predict(xy, None if dtype == "float64" else np.float32)
            if sk is not None:
                sk = self._variance(xy, mode)
            if self.exact_values:
                dist, idx = self._tree.query(xy, 1, distance_upper_bound=2 * EPS)
                hit = dist <= EPS
                zk[hit] = self.Z[idx[hit]]
                if sk is not None:
                    sk[hit] = 0.0
        z = np.zeros(keep.size)
        z[keep] = zk
        s = None
        if sk is not None:
            s = np.zeros(keep.size)
            s[keep] = sk
        if style == "masked":
            z = np.ma.array(z, mask=~keep)
            s = None if s is None else np.ma.array(s, mask=~keep)
        if style != "points":
            z = z.reshape(ny, nx)
            s = None if s is None else s.reshape(ny, nx)
        return z, s


class OrdinaryKriging(_Kriging):
    """Ordinary kriging in 2-D (PyKrige's ``OrdinaryKriging``), O(n) memory.

    Parameters
    ----------
    x, y, z : array_like
        Coordinates and values of the ``n`` data points (distinct locations).
    variogram_model : str
        "linear" (default), "power", "gaussian", "spherical", "exponential",
        "matern" (formulas in :mod:`.variogram` and ``docs/kriging.md``).
    variogram_parameters : dict or list, optional
        PyKrige's conventions; fitted to the experimental semivariogram when None.
    nlags : int
        Bins of the experimental semivariogram.
    weight : bool
        Weight small lags more in the fit (PyKrige's logistic weights).
    anisotropy_scaling, anisotropy_angle : float
        PyKrige's anisotropy (stretch of y after a rotation by -angle degrees).
    exact_values : bool
        True: data are reproduced at their locations (variance 0 there).
    variance : {"auto", "exact", "local", False}
        How :meth:`execute` computes the kriging variance: "exact" (one
        iterative solve per target), "local" (kriging on the
        ``variance_neighbors`` nearest data, an upper bound), "auto" (exact
        up to ``exact_variance_max`` targets), False (none).
    exact_variance_max : int, optional
        Default ``min(2000, 2e8 / n^2)`` (``2e9`` with the CG solver).
    variance_neighbors : int
        Data points per local variance system.
    variance_check : int
        Targets solved exactly in the local mode to measure its error
        (``variance_info``).
    max_pairs : int
        Most point pairs in the experimental semivariogram (random sample beyond).
    solver : {"auto", "saddle", "cg"}
        "saddle": GMRES on the saddle-point system (any model); "cg": CG on the
        covariance (bounded models with a nugget); "auto": CG for gaussian and
        matern nu >= 1.5 with a nugget of at least 1e-6 of the partial sill over
        at most 150 squared length scales, the saddle solver otherwise
        (``docs/kriging.md``). The choice is in the attribute ``solver``
        ("nugget" for a pure-nugget model, solved in closed form).
    rank : int, optional
        Rank of the RPCholesky preconditioner of the CG solver (automatic).
    rtol : float
        Relative residual: GMRES (or CG) stops when ``||r|| <= rtol ||b||`` (see
        :mod:`.tolerance`). The default 1e-10 is tighter than the CG solvers' 1e-6
        because PyKrige, whose drop-in this is, solves directly and the kriging
        variance is a difference of nearly equal terms: at 1e-10 predictions and
        variances agree with PyKrige's to about 1e-6 (a prediction alone needs far
        less: the demo uses 1e-6). ``tol=`` and ``eps=`` are TypeErrors naming ``rtol``.
    maxiter : int
        Most iterations of GMRES or CG (default 1000).
    neighbors : int
        Points per approximate cardinal function of the saddle-point solver.
    coarse : int or "auto"
        Points of the coarse level of the saddle-point solver's preconditioner
        (0: none; a dense LU of that size). "auto" (default): ``n / 20`` (at least
        200, at most ``n / 5`` and 6000) from 1000 data points on, unless the
        variogram reaches its sill within the ``neighbors`` nearest data points
        (then the coarse level would only add iterations). Not used by the CG solver.
    seed : int
        Seed of the pair sample, the preconditioners and ``variance_check``.
    verbose : bool
        Progress of the fit and the solver on stderr.

    Attributes
    ----------
    variogram : Variogram
    variogram_model_parameters : ndarray
        PyKrige's internal list (partial sill first).
    lags, semivariance : ndarray
        The experimental semivariogram (computed when first read if
        ``variogram_parameters`` were given).
    info : SaddleInfo
        The solve for the data (CG: iterations in ``products``).
    variance_info : dict
        Method of the last variance computation (and measured error when local).

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

    _degree = 0


class UniversalKriging(_Kriging):
    """Universal kriging with a regional linear drift (PyKrige's ``UniversalKriging``).

    The parameters of :class:`OrdinaryKriging` (documented there), plus ``drift_terms``.

    Parameters
    ----------
    drift_terms : sequence of str or None
        ``("regional_linear",)`` (the default here; PyKrige's default is no drift)
        or ``[]``/None for none, which is ordinary kriging. Other PyKrige drifts
        (point_log, external_Z, specified, functional) are not supported.
    rtol : float
        Relative residual: the solver stops when ``||r|| <= rtol ||b||`` (default
        1e-10, for the reason :class:`OrdinaryKriging` gives).

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

    @keywords(refused={"tol": "rtol", "eps": "rtol"})
    @keywords(refused={"tol": "rtol", "eps": "rtol"})
    def __init__(
        self,
        x,
        y,
        z,
        variogram_model: str = "linear",
        variogram_parameters: dict | list | None = None,
        nlags: int = 6,
        weight: bool = False,
        anisotropy_scaling: float = 1.0,
        anisotropy_angle: float = 0.0,
        exact_values: bool = True,
        *,
        drift_terms=("regional_linear",),
        variance: str | bool = "auto",
        exact_variance_max: int | None = None,
        variance_neighbors: int = 64,
        variance_check: int = 10,
        max_pairs: int = 1 << 22,
        solver: str = "auto",
        rank: int | None = None,
        rtol: float = KRIGING_RTOL,
        maxiter: int = 1000,
        neighbors: int = 50,
        coarse: int | str = "auto",
        seed: int = 0,
        verbose: bool = False,
    ):
        self.drift_terms = drift_term_list(drift_terms)
        self._degree = 1 if self.drift_terms else 0
        super().__init__(
            x,
            y,
            z,
            variogram_model,
            variogram_parameters,
            nlags,
            weight,
            anisotropy_scaling,
            anisotropy_angle,
            exact_values,
            variance=variance,
            exact_variance_max=exact_variance_max,
            variance_neighbors=variance_neighbors,
            variance_check=variance_check,
            max_pairs=max_pairs,
            solver=solver,
            rank=rank,
            rtol=rtol,
            maxiter=maxiter,
            neighbors=neighbors,
            coarse=coarse,
            seed=seed,
            verbose=verbose,
        )
