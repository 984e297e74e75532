"""What the 2-D and 3-D kriging classes share: the data, the variogram (given or
fitted), PyKrige's statistics and plotting methods, the choice of solver and
``execute``'s core (direct, iterative or moving window).

The classes of :mod:`.kriging` and :mod:`.kriging3d` read their arguments in
PyKrige's order and call :meth:`KrigingBase._setup`; everything else is here.
Solvers are built at the first ``execute`` (or ``info``) and dropped by pickling
(they are rebuilt, deterministically, after unpickling).
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
from scipy.spatial import cKDTree

from .. import dask_predict
from ..progress import Progress
from .kriging_direct import (
    DirectSystem,
    Metric,
    direct_fits,
    moving_window,
    sequential_statistics,
)
from .kriging_drift import Drift, bilinear
from .kriging_inputs import (
    EPS,
    PSEUDO_INVERSES,
    adjust_for_anisotropy,
    backend_name,
    flag,
    reshape_result,
    targets,
    variance_mode,
)
from .kriging_model import PYKRIGE_FUNCTIONS, fit_parameters, hole_effect, resolve_model
from .kriging_options import VALUES_ONLY_DIRECT_MAX, SolverOptions, warn_local_variances
from .kriging_solvers import (
    CovarianceCGSolver,
    NuggetSolver,
    SaddleKrigingSolver,
    choose_solver,
    local_variance,
)
from .saddle import SaddleInfo, monomial_powers, polynomial_matrix
from .variogram import experimental_variogram

__all__ = ["KrigingBase"]

_STATISTICS = ("delta", "sigma", "epsilon", "Q1", "Q2", "cR")


class KrigingBase:
    """Shared machinery; see :class:`.kriging.OrdinaryKriging` for the parameters."""

    _ordinary = True  # moving windows (n_closest_points) are PyKrige's OK-only feature
    eps = EPS  # PyKrige's class attributes
    UNBIAS = True
    variogram_dict = dict(PYKRIGE_FUNCTIONS, **{"hole-effect": hole_effect})
    _local_warned = False  # the warning of local variances is given once per object

    # ------------------------------------------------------------------
    # Set-up
    # ------------------------------------------------------------------
    def _setup(self, orig, values, variogram, anisotropy, flags, drift, options) -> None:
        """``orig`` (n, d) points, ``variogram`` = (model, parameters, function, nlags,
        weight), ``anisotropy`` = (scaling, angle), ``flags`` = dict of PyKrige's
        switches, ``drift`` = (terms, companion dict), ``options`` = kernelsolve's."""
        self.verbose = bool(flags["verbose"])
        self.enable_plotting = bool(flags["enable_plotting"])
        self.exact_values = flag(flags["exact_values"], "exact_values")
        self.pseudo_inv = bool(flags["pseudo_inv"])
        self.pseudo_inv_type = str(flags["pseudo_inv_type"])
        if self.pseudo_inv_type not in PSEUDO_INVERSES:
            raise ValueError(
                f"pseudo_inv_type={flags['pseudo_inv_type']!r}: expected one of "
                f"{list(PSEUDO_INVERSES)}"
            )
        self._metric = Metric(flags.get("coordinates_type", "euclidean"))
        self.coordinates_type = self._metric.kind
        n = orig.shape[0]
        if values.size != n:
            raise ValueError(
                f"the coordinates and values must have the same length, got {n} and {values.size}"
            )
        if n < 2:
            raise ValueError(f"at least 2 data points are needed, got {n}")
        self._orig, self._values = orig, values
        variogram, anisotropy = self._gstools(variogram, anisotropy)
        self._set_anisotropy(*anisotropy)
        self._drift_args = drift
        self._drift = Drift(drift[0], self._pts, orig, self._anisotropy(), drift[1])
        self._publish_drift()
        self._powers = monomial_powers(orig.shape[1], 1 if self._drift.regional_linear else 0)
        self._options = SolverOptions.parse(options, self._powers.shape[0])
        self._stats_enabled = bool(flags.get("enable_statistics", True))
        self._set_variogram(*variogram)

    def _gstools(self, variogram, anisotropy):
        """A GSTools covariance model as ``variogram_model`` (PyKrige's support): its
        variogram becomes a custom model, its anisotropy replaces the arguments."""
        model = variogram[0]
        self.model = None
        if not hasattr(model, "pykrige_kwargs"):
            return variogram, anisotropy
        d = self._orig.shape[1]
        if (d == 3) != (model.field_dim == 3):
            raise ValueError(f"variogram_model: the GSTools model's dim must fit {d}-D data")
        if model.latlon and (d == 3 or self._metric.kind != "geographic"):
            raise ValueError("variogram_model: GSTools latlon models need geographic coordinates")
        self.model = model
        if d == 2:
            anisotropy = (model.pykrige_anis, model.pykrige_angle)
        else:
            anisotropy = (
                (model.pykrige_anis_y, model.pykrige_anis_z),
                (model.pykrige_angle_x, model.pykrige_angle_y, model.pykrige_angle_z),
            )
        return ("custom", [], model.pykrige_vario, *variogram[3:]), anisotropy

    def _update(self, variogram, anisotropy) -> None:
        """``update_variogram_model``: new anisotropy (the drift moves with it) and variogram."""
        variogram, anisotropy = self._gstools(variogram, anisotropy)
        self._set_anisotropy(*anisotropy)
        terms, companions = self._drift_args
        self._drift = Drift(terms, self._pts, self._orig, self._anisotropy(), companions)
        self._publish_drift()
        self._set_variogram(*variogram)

    def _publish_drift(self) -> None:
        """PyKrige's attributes of universal kriging's drift terms."""
        if self._ordinary:
            return
        d = self._drift
        self.regional_linear_drift = d.regional_linear
        self.specified_drift = bool(d.specified)
        self.specified_drift_data_arrays = d.specified
        self.functional_drift = bool(d.functions)
        self.functional_drift_terms = d.functions
        if d.dim == 2:
            self.point_log_drift = "point_log" in d.terms
            self.point_log_array = d.wells
            self.external_Z_drift = d.external is not None
            if d.external is not None:
                self.external_Z_array_x, self.external_Z_array_y, self.external_Z_array = (
                    d.external
                )
                self.z_scalars = bilinear(*d.external, self._orig[:, 0], self._orig[:, 1])

    def _calculate_data_point_zscalars(self, x, y, type_="array"):
        """PyKrige's bilinear interpolation of the external drift at ``(x, y)``."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        out = bilinear(*self._drift.external, x.ravel(), y.ravel())
        return float(out[0]) if type_ == "scalar" else out.reshape(x.shape)

    def _anisotropy(self):
        return self._center, self._scaling, self._angle

    def _set_anisotropy(self, scaling, angle) -> None:
        scaling = np.atleast_1d(np.asarray(scaling, dtype=np.float64))
        angle = np.atleast_1d(np.asarray(angle, dtype=np.float64))
        d = self._orig.shape[1]
        names = (
            ("anisotropy_scaling",) if d == 2 else ("anisotropy_scaling_y", "anisotropy_scaling_z")
        )
        for name, v in zip(names, scaling):
            if not np.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be positive and finite, got {v}")
        names = ("anisotropy_angle",) if d == 2 else tuple(f"anisotropy_angle_{a}" for a in "xyz")
        for name, v in zip(names, angle):
            if not np.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v}")
        if self._metric.kind == "geographic":
            if np.any(scaling != 1.0) or np.any(angle != 0.0):
                warnings.warn(
                    "anisotropy is not compatible with geographic coordinates: ignored",
                    UserWarning,
                    stacklevel=4,
                )
            self._center, self._scaling, self._angle = np.zeros(d), np.ones(d - 1), angle * 0
            self._pts = self._orig.copy()
        else:
            self._center = (self._orig.max(0) + self._orig.min(0)) / 2.0
            self._scaling, self._angle = scaling, angle
            self._pts = adjust_for_anisotropy(self._orig, self._center, scaling, angle)
        self._publish_coordinates()
        self._reset_solvers()

    def _publish_coordinates(self) -> None:
        """PyKrige's attribute names of the coordinates (set by each class)."""
        raise NotImplementedError

    def _set_variogram(self, model, parameters, function, nlags, weight) -> None:
        self._choice = resolve_model(model, parameters, function)
        nlags = int(nlags)
        if nlags < 1:
            raise ValueError(f"nlags must be >= 1, got {nlags}")
        self.variogram_model = self._choice.name
        self.variogram_function = self._choice.function
        self._experimental_args = (nlags, self._options.max_pairs)
        self._experimental = None
        if self._choice.params is None:
            self._choice.params = fit_parameters(
                self._choice, self.lags, self.semivariance, weight
            )
            fitted = self._choice.variogram or f"{self.variogram_model} {self._choice.params}"
            Progress("kriging", enabled=self.verbose).write(f"fitted {fitted}")
        self.variogram_model_parameters = self._choice.params
        self.variogram = self._choice.variogram
        self._reset_solvers()
        self._choose_solver()
        if self.enable_plotting:
            self.display_variogram_model()

    def _reset_solvers(self) -> None:
        self._solver_cache = None
        self._tree = None
        self._statistics = None
        self.variance_info: dict = {}

    # ------------------------------------------------------------------
    # Experimental variogram, statistics (computed when first read)
    # ------------------------------------------------------------------
    @property
    def lags(self) -> np.ndarray:
        """Mean distance of each non-empty bin of the experimental semivariogram."""
        return self._experimental_variogram()[0]

    @property
    def semivariance(self) -> np.ndarray:
        """Mean semivariance of each non-empty bin of the experimental semivariogram."""
        return self._experimental_variogram()[1]

    def _experimental_variogram(self):
        if self._experimental is None:
            nlags, max_pairs = self._experimental_args
            pts, dmap, pairs = self._pts, None, None
            if self._metric.kind == "geographic":
                pts = self._metric.tree_points(self._pts)
                lonlat = self._pts

                def dmap(d):  # chord on the unit sphere -> great-circle degrees
                    return np.degrees(2 * np.arcsin(np.minimum(d / 2, 1.0)))

                def pairs(_):
                    i, j = np.triu_indices(lonlat.shape[0], 1)  # pdist's order
                    return self._metric.pairwise(lonlat[i], lonlat[j])

            self._experimental = experimental_variogram(
                pts,
                self._values,
                nlags,
                max_pairs=max_pairs,
                seed=self._options.seed,
                distance_map=dmap,
                pair_distances=pairs,
            )
        return self._experimental

    def _gamma(self):
        return functools.partial(self.variogram_function, self.variogram_model_parameters)

    def _statistic(self, name: str):
        if not self._stats_enabled:
            return None
        if self._statistics is None:
            d, s, e = sequential_statistics(
                self._pts,
                self._values,
                self._gamma(),
                self._metric,
                self.pseudo_inv,
                self.verbose,
            )
            q1 = abs(np.sum(e) / (e.shape[0] - 1))
            q2 = np.sum(e**2) / (e.shape[0] - 1)
            cr = q2 * np.exp(np.sum(np.log(s**2)) / s.shape[0])
            self._statistics = dict(zip(_STATISTICS, (d, s, e, q1, q2, cr)))
        return self._statistics[name]

    delta = property(lambda self: self._statistic("delta"), doc="Leave-future-out residuals.")
    sigma = property(lambda self: self._statistic("sigma"), doc="Their kriging std. deviations.")
    epsilon = property(lambda self: self._statistic("epsilon"), doc="delta / sigma.")
    Q1 = property(lambda self: self._statistic("Q1"), doc="PyKrige's Q1 statistic.")
    Q2 = property(lambda self: self._statistic("Q2"), doc="PyKrige's Q2 statistic.")
    cR = property(lambda self: self._statistic("cR"), doc="PyKrige's cR statistic.")

    # ------------------------------------------------------------------
    # PyKrige's small methods
    # ------------------------------------------------------------------
    def get_variogram_points(self):
        """``(lags, variogram_function(variogram_model_parameters, lags))``."""
        return self.lags, self.variogram_function(self.variogram_model_parameters, self.lags)

    def display_variogram_model(self) -> None:
        """Plot the experimental semivariogram and the model (matplotlib)."""
        import matplotlib.pyplot as plt

        lags, model = self.get_variogram_points()
        fig, ax = plt.subplots()
        ax.plot(self.lags, self.semivariance, "r*")
        ax.plot(lags, model, "k-")
        plt.show()

    def switch_verbose(self) -> None:
        """Toggle ``verbose``."""
        self.verbose = not self.verbose

    def switch_plotting(self) -> None:
        """Toggle ``enable_plotting``."""
        self.enable_plotting = not self.enable_plotting

    def get_epsilon_residuals(self):
        """The epsilon residuals of the variogram fit."""
        return self.epsilon

    def plot_epsilon_residuals(self) -> None:
        """Scatter plot of the epsilon residuals (matplotlib)."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.scatter(range(self.epsilon.size), self.epsilon, c="k", marker="*")
        ax.axhline(y=0.0)
        plt.show()

    def get_statistics(self):
        """``(Q1, Q2, cR)``."""
        return self.Q1, self.Q2, self.cR

    def print_statistics(self) -> None:
        """Print Q1 (ideally near 0), Q2 (near 1) and cR (small)."""
        print("Q1 =", self.Q1)
        print("Q2 =", self.Q2)
        print("cR =", self.cR)

    # ------------------------------------------------------------------
    # Solver choice and construction
    # ------------------------------------------------------------------
    def _direct_reason(self) -> str | None:
        """Why only the direct solver applies here (None: any solver does)."""
        if self.variogram is None:
            return f"the {self.variogram_model} variogram"
        if not self._drift.polynomial:
            return f"drift_terms={self._drift.terms}"
        if self._metric.kind == "geographic":
            return "geographic coordinates"
        if self.pseudo_inv:
            return "pseudo_inv=True"
        return None

    def _choose_solver(self) -> None:
        """``solver``: "direct" (PyKrige's dense system) where it is needed or fits
        the memory budget, else an iterative one (``docs/kriging.md``)."""
        o = self._options
        reason = self._direct_reason()
        if o.solver in ("saddle", "cg") and reason:
            raise ValueError(f"solver={o.solver!r} does not support {reason}; use 'direct'")
        unknowns = self._unknowns()
        # without variances the iterative solvers' values are exact to rtol, and an LU
        # of 2e4 unknowns takes minutes where they take seconds
        values_only = o.variance is False and unknowns > VALUES_ONLY_DIRECT_MAX
        fits = direct_fits(unknowns) and not values_only
        if reason is None and o.solver == "auto" and self.variogram.amplitude == 0:
            self.solver = "nugget"  # closed form
        elif o.solver == "direct" or reason or (o.solver == "auto" and fits):
            self.solver = "direct"
        else:
            self.solver = choose_solver(self.variogram, self._pts, o.solver)
        if not self.pseudo_inv:  # singular systems: say why now, not at execute
            self._check_distinct()
            self._check_drift()
        if o.exact_variance_max is None:
            # about 2e8 (saddle: per-target GMRES) or 2e9 (CG: batched) pair evaluations
            budget = 2e9 if self.solver == "cg" else 2e8
            self.exact_variance_max = int(min(2000, budget // self._values.size**2))
        else:
            self.exact_variance_max = int(o.exact_variance_max)

    def _unknowns(self) -> int:
        """Size of PyKrige's system: data, drift terms and the constant."""
        return self._values.size + self._drift.size + 1

    def _check_distinct(self) -> None:
        # a k-d tree: O(n log n), where the engine's argKmin compares all n^2 pairs
        d, idx = cKDTree(self._pts).query(self._pts, 2)
        dup = np.flatnonzero(d[:, 1] == 0)
        if dup.size:
            i = int(dup[0])
            j = int(idx[i, 1]) if idx[i, 1] != i else int(idx[i, 0])
            raise ValueError(
                f"the data hold duplicate points (e.g. points {min(i, j)} and {max(i, j)}), "
                "so the kriging system is singular: average or drop duplicates, or give "
                "pseudo_inv=True"
            )

    def _check_drift(self) -> None:
        if self._powers.shape[0] == 1 or self._metric.kind == "geographic":
            return
        lo, hi = self._pts.min(0), self._pts.max(0)
        scale = np.where(hi > lo, (hi - lo) / 2, 1.0)
        P = polynomial_matrix((self._pts - (lo + hi) / 2) / scale, self._powers)
        if np.linalg.matrix_rank(P) < P.shape[1]:
            raise ValueError(
                "the data points are collinear (or coplanar in 3-D), so a linear drift is "
                "not identifiable; use ordinary kriging"
            )

    def _solver(self):
        """The solver (built at first use: the direct factorization or the iterative
        solve for the data)."""
        if self._solver_cache is None:
            o = self._options
            if self.solver == "direct":
                pinv = self.pseudo_inv_type if self.pseudo_inv else None
                self._solver_cache = DirectSystem(
                    self._pts, self._values, self._gamma(), self._metric, self._drift.at_data, pinv
                )
            else:
                args = (self._pts, self.variogram, self._powers, self._values)
                kw = dict(rtol=o.rtol, maxiter=o.maxiter, verbose=self.verbose)
                if self.solver == "nugget":
                    self._solver_cache = NuggetSolver(*args)
                elif self.solver == "cg":
                    self._solver_cache = CovarianceCGSolver(*args, rank=o.rank, tol=o.tol, **kw)
                else:
                    self._solver_cache = SaddleKrigingSolver(
                        *args, neighbors=o.neighbors, coarse=o.coarse, seed=o.seed, **kw
                    )
        return self._solver_cache

    @property
    def info(self) -> SaddleInfo:
        """The record of the solve for the data (the direct solver: converged, no products)."""
        s = self._solver()
        return SaddleInfo() if self.solver == "direct" else s.info

    # ------------------------------------------------------------------
    # execute
    # ------------------------------------------------------------------
    def _execute(self, style, coords, mask, backend, closest, specified, variance, dtype):
        """PyKrige's ``execute`` for ``d`` coordinate vectors ``coords``."""
        backend_name(backend)
        if dtype not in ("float64", "float32"):
            raise ValueError(f"dtype={dtype!r}: expected 'float64' or 'float32'")
        if closest is not None and (not np.isscalar(closest) or int(closest) < 2):
            raise ValueError(f"n_closest_points must be an integer >= 2, got {closest!r}")
        mode = self._options.variance if variance is None else variance_mode(variance)
        if dask_predict.is_lazy(
            *coords, mask, *(specified if isinstance(specified, list) else ())
        ):
            mode = self._lazy_mode(mode, style, coords, closest)
            args = (backend, closest, specified, mode, dtype)
            return dask_predict.execute_kriging(self, style, coords, mask, *args)
        pts, masked, shape = targets(style, coords, mask)
        specified = self._drift.specified_at(specified, style, shape)
        keep = ~masked
        z = np.zeros(pts.shape[0])
        s = None if mode is False else np.zeros(pts.shape[0])
        if keep.any():
            orig = pts[keep]
            adj = adjust_for_anisotropy(orig, *self._anisotropy())
            if self._metric.kind == "geographic":
                adj = orig
            spec = [a[keep] for a in specified]
            zk, sk = self._predict(adj, orig, spec, mode, closest, dtype)
            z[keep] = zk
            if s is not None:
                s[keep] = sk
        as_masked = style == "masked" or backend == "vectorized"
        z = reshape_result(z, masked, shape, as_masked)
        return z, None if s is None else reshape_result(s, masked, shape, as_masked)

    def _predict(self, adj, orig, spec, mode, closest, dtype):
        z, s = self._solve_targets(adj, orig, spec, mode, closest, dtype)
        # PyKrige's weights at a datum are a unit vector, up to rounding (with
        # duplicates, which only pseudo_inv allows, they average instead)
        if self.exact_values and not self.pseudo_inv:
            if self._tree is None:
                self._tree = cKDTree(self._metric.tree_points(self._pts))
            dist, idx = self._tree.query(self._metric.tree_points(adj), 1)
            hit = self._metric.pairwise(adj, self._pts[idx]) <= EPS
            z[hit] = self._values[idx[hit]]
            if s is not None:
                s[hit] = 0.0
        return z, s

    def _solve_targets(self, adj, orig, spec, mode, closest, dtype):
        k = adj.shape[0]
        if closest is not None:
            z, s = moving_window(
                self._pts,
                self._values,
                self._gamma(),
                self._metric,
                adj,
                int(closest),
                self.exact_values,
                self.verbose,
            )
            self.variance_info = {"method": "moving window", "targets": k}
            return z, (None if mode is False else s)
        if self.solver == "direct":
            tdrift = self._drift.columns(adj, orig, spec)
            system = self._solver()
            with Progress("kriging", total=k, enabled=self.verbose) as bar:
                z, s = system.execute(adj, tdrift, self.exact_values, mode is not False, bar)
            self.variance_info = {"method": "exact", "targets": k, "solver": "direct"}
            return z, s
        return self._iterative_predict(adj, mode, dtype)

    def _iterative_predict(self, xy, mode, dtype):
        backend = self._solver()
        z = backend.predict(np.ascontiguousarray(xy), None if dtype == "float64" else np.float32)
        s = None if mode is False else self._variance(np.ascontiguousarray(xy), mode)
        return z, s

    def _exact_variance(self, xy):
        """One solve per target, in blocks, with progress (``verbose``)."""
        backend, k = self._solver(), len(xy)
        out = np.empty(k)
        block = 64
        with Progress("kriging variances (exact)", total=k, enabled=self.verbose) as bar:
            if direct_fits(self._unknowns()):
                bar.write(
                    f"{k} targets by one iterative solve each; solver='direct' (the default "
                    "where the dense system fits the memory budget, as here) gives them at "
                    "one pair of triangular solves each"
                )
            for a in range(0, k, block):
                out[a : a + block] = backend.variance(xy[a : a + block])
                bar.update(min(block, k - a))
        return out

    def _lazy_mode(self, mode, style, coords, closest):
        """The variance mode of a chunked ``execute``: "auto" decided by the number of
        all targets (as one call would), here, so that every chunk does the same."""
        if mode != "auto" or closest is not None or self.solver == "direct":
            return mode
        sizes = [c.shape[0] for c in coords]
        return self._auto_mode(sizes[0] if style == "points" else math.prod(sizes))

    def _auto_mode(self, k: int) -> str:
        exact = k <= self.exact_variance_max or self.solver == "nugget"
        if not exact:
            self._warn_local(k)
        return "exact" if exact else "local"

    def _variance(self, xy, mode):
        k = len(xy)
        if mode == "auto":
            mode = self._auto_mode(k)
        if mode == "exact" or self.solver == "nugget":
            self.variance_info = {"method": "exact", "targets": k}
            return self._exact_variance(xy)
        o = self._options
        q = min(o.variance_neighbors, self._values.size)
        out = local_variance(self._pts, self.variogram, self._powers, xy, q)
        info = {"method": "local", "targets": k, "neighbors": q}
        check = min(o.variance_check, k, self.exact_variance_max)
        if check:
            rng = np.random.default_rng(o.seed)
            sel = np.sort(rng.choice(k, size=check, replace=False))
            exact = self._solver().variance(xy[sel])
            err = np.abs(out[sel] - exact)
            info.update(
                checked=check,
                max_abs_error=float(err.max()),
                max_rel_error=float((err / np.maximum(np.abs(exact), 1e-300)).max()),
            )
            out[sel] = exact
        self.variance_info = info
        return out

    def _warn_local(self, k: int) -> None:
        """Once per object: the default variances are local, and what exact ones cost."""
        if not self._local_warned:
            self._local_warned = True
            q = min(self._options.variance_neighbors, self._values.size)
            warn_local_variances(k, q, self._unknowns(), self._options.solver, self.solver)

    # ------------------------------------------------------------------
    # Pickling: solvers are rebuilt on demand
    # ------------------------------------------------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_solver_cache"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
