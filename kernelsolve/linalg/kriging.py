"""Ordinary and universal kriging with PyKrige's API, solved in O(n) memory.

:class:`OrdinaryKriging` and :class:`UniversalKriging` take the arguments of
their PyKrige 1.7.3 namesakes (2-D coordinates ``x, y``, values ``z``, a
variogram model with its parameters or a fit to the experimental
semivariogram) and return the same predictions and kriging variances, but
never form the dense ``(n + 1)^2`` kriging matrix: the system is the
radial-basis saddle-point system of :mod:`.saddle`, solved by preconditioned
GMRES (or, for smooth covariances with a nugget, by batched CG, see Solvers)
whose products with the kernel matrix are engine reductions.

Why the kriging system is an RBF system
---------------------------------------
PyKrige's ordinary kriging matrix is ``[[-G, 1], [1^T, 0]]`` with
``G_ij = gamma(|x_i - x_j|)`` for ``i != j`` and ``G_ii = 0``, where
``gamma(h) = gamma_c(h) + nugget`` for ``h > 0`` (``gamma_c`` is continuous
with ``gamma_c(0) = 0``; the nugget is a jump at the origin). Hence

    -G = Phi + nugget I - nugget 1 1^T,       Phi_ij = -gamma_c(|x_i - x_j|).

The weights satisfy ``1^T lambda = 1``, so ``-nugget 1 1^T lambda`` is the
constant vector ``-nugget 1``: it is absorbed by the Lagrange multiplier
(whose column in the matrix is ``1``) and changes no weight. In the dual
(interpolant) form, ``[[Phi + nugget I, P], [P^T, 0]] [c; w] = [z; 0]``, the
constraint ``P^T c = 0`` annihilates it exactly. What is left is the
saddle-point system of an RBF interpolant with kernel ``phi = -gamma_c``,
smoothing ``nugget`` on the diagonal and a polynomial tail ``P``: degree 0
(the constant, ordinary kriging) or degree 1 (``1, x, y``: universal kriging
with PyKrige's ``"regional_linear"`` drift). ``-gamma_c`` is conditionally
positive definite of order 1 for every valid variogram, so the system is
uniquely solvable for distinct points. The prediction
``z*(x0) = lambda^T z = sum_i c_i phi(|x0 - x_i|) + p(x0)^T w`` is one engine
reduction over the data for any number of targets.

Targets that coincide with a data point (distance <= 1e-10, PyKrige's cutoff)
get the datum and variance 0 when ``exact_values=True`` (PyKrige's default);
with ``exact_values=False`` the nugget smooths the data there as in PyKrige.

Kriging variance
----------------
With ``k0_i = phi(|x0 - x_i|)`` and ``p0 = p(x0)``, the primal system
``[[A, P], [P^T, 0]] [lambda; nu] = [k0; p0]`` (``A = Phi + nugget I``) gives
the kriging weights ``lambda`` and, following the derivation above, PyKrige's
``sigmasq = nugget + phi(0) - k0^T lambda - p0^T nu`` (``phi(0) = 0``). The
right-hand side is the kernel column of the target, not the data, and its
polynomial part is not zero, which the saddle solver does not accept; by
linearity ``[lambda; nu] = S [k0; 0] + S [0; I] p0`` with ``S`` the inverse
of the saddle matrix. ``S [0; I]`` is computed once (``m`` solves from the
particular solution ``L = Q R^-T`` of ``P^T L = I``: ``S [0; I] = [L + c; w]``
with ``[c; w] = S [-A L; 0]``), and each target costs one GMRES solve with
right-hand side ``[k0; 0]`` (10 to 30 kernel products; the saddle solver runs
GMRES column by column, so about 0.2 s per target at n = 2000 on 2 cores).
That is ``variance="exact"``; ``exact_variance_max`` (default
``min(2000, 2e8 / n^2)``, ten times more with the CG solver, whose columns
share each product) bounds the targets for which ``"auto"`` uses it.

For many targets, ``variance="local"`` solves, for every target, the dense
kriging system on its ``variance_neighbors`` nearest data points (found by
the engine's ``argKmin``; the small systems are batched NumPy solves,
milliseconds for hundreds of targets). The kriging variance is the minimum of
a quadratic over the weights; restricting the weights to a subset of the data
can only raise it, so the local variance is an upper bound of the exact one
(up to rounding), close when the neighbours screen the target from the other
data. Measured relative error (max / median over 100 random targets, 2000
uniform random points in the unit square, 64 neighbours): exponential (range
0.2) 4e-3 / 1e-5, linear 9e-4 / 9e-6, matern nu=1.5 (range 0.1, nugget 1e-3)
2e-3 / 6e-5, spherical (range 0.3, nugget 0.01) 2e-2 / 3e-3, universal
kriging exponential 2e-2 / 1e-5 and linear 7e-3 / 1e-5; weakest for smooth
models with a nugget, which screen little: gaussian (range 0.3, nugget 0.01)
5e-2 / 2.5e-2 (15e-2 / 7e-2 with 32 neighbours). ``variance="auto"``
(default) is exact up to ``exact_variance_max`` targets and local beyond; the
local path then also solves ``variance_check`` random targets exactly (at
most ``exact_variance_max``), reports the measured error in
``variance_info`` and keeps the exact values there.

Solvers
-------
``solver="saddle"``: GMRES on the saddle system with the approximate-cardinal-
function preconditioner of :mod:`.saddle`; any variogram, nugget or not. Its
coarse level (``coarse``, default "auto": ``n / 20`` points, at least 200,
from 1000 data points on, unless the variogram reaches its sill within the
50 nearest data points) is what makes it converge when the range spans many
data spacings: the local cardinal functions alone stall there (measured on
27,726 points of the Jacksboro DEM, variograms fitted to its short lags:
spherical residual 0.07 after 100 iterations, gaussian 0.55 after 60; with
the coarse level 10 and 21 iterations; matern nu=1.5 17 -> 7, exponential
8 -> 6).
``coarse=0`` turns it off, an integer sets its size (more points: fewer
iterations, a dense LU of that size).
``solver="cg"``: for bounded variograms with a nugget, the covariance
``C = psill (1 - g) + nugget I`` is positive definite; batched CG with a
randomly pivoted Cholesky preconditioner solves ``C [a, B] = [z, P]`` and the
constraint is the Schur complement ``w = (P^T B)^-1 P^T a``, ``c = a - B w``
(variances alike, all targets of a block sharing each product). It needs a
low-rank-dominated kernel: it is slow when the data span many length scales
(gaussian, range 0.05, 2000 points: not converged in 300 iterations, where
the saddle solver takes 27 products). ``"auto"`` (default) picks CG for
gaussian and matern nu >= 1.5 when the nugget is at least 1e-6 of the partial
sill and the data's bounding box spans at most 150 squared length scales,
the saddle solver otherwise; ``"nugget"`` is reported for a pure-nugget model
(closed form). A gaussian without nugget and a range much larger than the
data spacing is numerically singular (PyKrige's dense solve returns rounding
noise there too, e.g. negative variances): both solvers warn.

Variogram fit
-------------
Without ``variogram_parameters`` the model is fitted as in PyKrige: the
experimental semivariogram ``0.5 (z_i - z_j)^2`` over ``nlags`` equal-width
distance bins between the smallest and the largest pair distance (mean
distance and mean semivariance per non-empty bin), then
``scipy.optimize.least_squares`` with the soft-L1 loss, PyKrige's starting
point, bounds and optional logistic weights. All ``n (n - 1) / 2`` pairs are
used (two passes over row blocks, memory ``O(n)`` per block) while they number
at most ``max_pairs`` (default ``2**22``, about ``n <= 2900``); beyond, a
uniform random sample of ``max_pairs`` distinct pairs estimates the bins
(standard error of a bin mean about ``1 / sqrt(pairs in the bin)``
relative). With all pairs the bins equal PyKrige's to rounding and the fitted
parameters agree to about 1e-8 relative (measured, 150 points, every model).

Variogram models (PyKrige 1.7.3 formulas; ``h`` distance)
----------------------------------------------------------
- ``linear`` ``[slope, nugget]``: ``slope h + nugget``
- ``power`` ``[scale, exponent, nugget]``: ``scale h^exponent + nugget``, ``0 < exponent < 2``
- ``gaussian`` ``[psill, range, nugget]``: ``psill (1 - exp(-h^2 / (4 range / 7)^2)) + nugget``
- ``exponential``: ``psill (1 - exp(-3 h / range)) + nugget``
- ``spherical``: ``psill (3 h / (2 range) - h^3 / (2 range^3)) + nugget`` for ``h <= range``,
  ``psill + nugget`` beyond
- ``matern`` ``[psill, range, nugget, nu]`` (not in PyKrige), ``nu`` in 0.5, 1.5, 2.5, with
  ``t = h / range``: ``psill (1 - M_nu(t)) + nugget``, ``M_0.5 = exp(-t)``,
  ``M_1.5 = (1 + sqrt(3) t) exp(-sqrt(3) t)``,
  ``M_2.5 = (1 + sqrt(5) t + 5 t^2 / 3) exp(-sqrt(5) t)``: the closed forms, ``range`` the
  length scale (as in scikit-learn's ``Matern``).

Parameters are given as in PyKrige: a dict (``{"slope", "nugget"}``,
``{"scale", "exponent", "nugget"}``, ``{"psill" or "sill", "range", "nugget"}``,
plus ``"nu"`` for matern, default 1.5) or a list in which the *full* sill comes
first (``[sill, range, nugget]``, matern ``[sill, range, nugget, nu]``). For a
matern fit with a chosen ``nu``, pass ``{"nu": 2.5}`` alone. PyKrige's
``hole-effect`` model is not offered: it is not a valid variogram in 2-D (its
negative is not conditionally positive definite) and the iterative solver
relies on that.

The kernel passed to the solver is normalized: coordinates are divided by the
model's length scale and the amplitude (``slope``, ``scale`` or ``psill``) is
divided out (the smoothing becomes ``nugget / amplitude``), so one compiled
reduction serves every parameter value of a model (but the power exponent and
matern's ``nu``, which are constants of the formula).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.optimize import least_squares

from .. import autograd
from ..engine import ir
from . import kernels
from . import precond as precond_mod
from .cg import cg
from .operator import KernelOperator
from .radial import RadialKernel, kernel_formula
from .saddle import SaddleInfo, SaddleSolver, monomial_powers, polynomial_matrix

__all__ = [
    "VariogramModel",
    "Variogram",
    "VARIOGRAM_MODELS",
    "variogram_parameter_list",
    "experimental_variogram",
    "fit_variogram",
    "OrdinaryKriging",
    "UniversalKriging",
]

EPS = 1.0e-10  # PyKrige's cutoff: a target this close to a datum coincides with it


# ----------------------------------------------------------------------
# Variogram models as data
# ----------------------------------------------------------------------
@dataclass(frozen=True)
class VariogramModel:
    """A variogram family: ``gamma(h) = amplitude * g((h / length)^2) + nugget`` with
    the shape ``g`` (``g(0) = 0``) of :data:`kernelsolve.linalg.kernels.VARIOGRAM_SHAPES`.

    Attributes
    ----------
    name : str
    names : tuple of str
        Parameters in PyKrige's internal order (partial sill first, nugget last
        but for matern, whose ``nu`` follows the nugget).
    split : callable
        ``split(params) -> (amplitude, length, key)``: ``gamma_c(h) =
        amplitude * g(h / length)``, ``key`` the shape's extra parameter
        (power exponent, matern nu) or None.
    """

    name: str
    names: tuple[str, ...]
    split: Callable[[np.ndarray], tuple[float, float, float | None]]

    def shape(self, m, s, key):
        """``g`` of ``s = t^2`` in a math namespace ``m`` of :mod:`.kernels`."""
        return kernels.VARIOGRAM_SHAPES[self.name](m, s, key)

    def shape_numpy(self, t, key) -> np.ndarray:
        """``g(t)`` of the scaled distance ``t``."""
        t = np.asarray(t, dtype=np.float64)
        return self.shape(kernels.NUMPY, t * t, key)

    def gamma(self, params, h) -> np.ndarray:
        """The variogram with its nugget, PyKrige's ``variogram_function(params, h)``
        (``gamma(params, 0) = nugget``, as in PyKrige)."""
        amplitude, length, key = self.split(params)
        nugget = float(params[self.names.index("nugget")])
        return amplitude * self.shape_numpy(np.asarray(h, dtype=np.float64) / length, key) + nugget


VARIOGRAM_MODELS: dict[str, VariogramModel] = {
    v.name: v
    for v in (
        VariogramModel("linear", ("slope", "nugget"), lambda p: (float(p[0]), 1.0, None)),
        VariogramModel(
            "power", ("scale", "exponent", "nugget"), lambda p: (float(p[0]), 1.0, float(p[1]))
        ),
        VariogramModel(
            "gaussian",
            ("psill", "range", "nugget"),
            lambda p: (float(p[0]), float(p[1]) * 4.0 / 7.0, None),
        ),
        VariogramModel(
            "exponential",
            ("psill", "range", "nugget"),
            lambda p: (float(p[0]), float(p[1]) / 3.0, None),
        ),
        VariogramModel(
            "spherical", ("psill", "range", "nugget"), lambda p: (float(p[0]), float(p[1]), None)
        ),
        VariogramModel(
            "matern",
            ("psill", "range", "nugget", "nu"),
            lambda p: (float(p[0]), float(p[1]), float(p[3])),
        ),
    )
}

_SILL_MODELS = ("gaussian", "exponential", "spherical", "matern")
CG_MAX_CELLS = 150.0  # solver="auto": CG when the data span at most this many length scales^2
CG_MIN_NUGGET = 1e-6  # ... and the nugget is at least this fraction of the partial sill
MATERN_NU = (0.5, 1.5, 2.5)


def _model(name) -> VariogramModel:
    if isinstance(name, VariogramModel):
        return name
    if not isinstance(name, str) or name.lower() not in VARIOGRAM_MODELS:
        extra = (
            " (hole-effect is not a valid variogram in 2-D and is not supported)"
            if isinstance(name, str) and name.lower() == "hole-effect"
            else ""
        )
        raise ValueError(
            f"variogram_model={name!r}: expected one of {sorted(VARIOGRAM_MODELS)}{extra}"
        )
    return VARIOGRAM_MODELS[name.lower()]


def _check_parameters(model: VariogramModel, p: np.ndarray) -> None:
    """ValueError naming the offending parameter of an internal parameter list."""
    where = f"variogram_parameters for variogram_model={model.name!r}"
    for name, v in zip(model.names, p):
        if not np.isfinite(v):
            raise ValueError(f"{where}: {name} must be finite, got {v}")
    named = dict(zip(model.names, (float(v) for v in p)))
    if named["nugget"] < 0:
        raise ValueError(f"{where}: nugget must be >= 0, got {named['nugget']}")
    if model.name == "linear" and named["slope"] < 0:
        raise ValueError(f"{where}: slope must be >= 0, got {named['slope']}")
    if model.name == "power":
        if named["scale"] < 0:
            raise ValueError(f"{where}: scale must be >= 0, got {named['scale']}")
        if not 0 < named["exponent"] < 2:
            raise ValueError(
                f"{where}: exponent must be in (0, 2) for a valid variogram, "
                f"got {named['exponent']}"
            )
    if model.name in _SILL_MODELS:
        if named["psill"] < 0:
            raise ValueError(
                f"{where}: the partial sill (sill - nugget) must be >= 0, got {named['psill']}"
            )
        if named["range"] <= 0:
            raise ValueError(f"{where}: range must be > 0, got {named['range']}")
    if model.name == "matern" and named["nu"] not in MATERN_NU:
        raise ValueError(f"{where}: nu must be one of {MATERN_NU}, got {named['nu']}")
    amplitude = model.split(p)[0]
    if amplitude == 0 and named["nugget"] == 0:
        raise ValueError(f"{where}: the variogram is identically zero")


def variogram_parameter_list(variogram_model, variogram_parameters):
    """PyKrige's parameter conventions -> the internal list (partial sill first), or None.

    Returns None when the parameters are to be fitted (``None``, or for matern a
    dict holding ``"nu"`` alone). Raises ValueError for missing or invalid
    parameters.
    """
    model = _model(variogram_model)
    name = model.name
    arg = "variogram_parameters"
    if variogram_parameters is None:
        return None
    if isinstance(variogram_parameters, dict):
        given = {str(k).lower(): v for k, v in variogram_parameters.items()}
        if name == "matern" and set(given) <= {"nu"}:
            return None
        if name in _SILL_MODELS:
            need = ("range", "nugget")
            missing = [k for k in need if k not in given]
            if "psill" not in given and "sill" not in given:
                missing.insert(0, "psill (or sill)")
            if missing:
                raise ValueError(f"{arg}: {name} model requires {missing} in the dict")
            psill = given["psill"] if "psill" in given else given["sill"] - given["nugget"]
            p = [psill, given["range"], given["nugget"]]
            if name == "matern":
                p.append(given.get("nu", 1.5))
        else:
            missing = [k for k in model.names if k not in given]
            if missing:
                raise ValueError(f"{arg}: {name} model requires {missing} in the dict")
            p = [given[k] for k in model.names]
    elif isinstance(variogram_parameters, (list, tuple, np.ndarray)):
        p = list(np.asarray(variogram_parameters, dtype=np.float64).ravel())
        sizes = (3, 4) if name == "matern" else (len(model.names),)
        if len(p) not in sizes:
            order = "[sill, range, nugget(, nu)]" if name in _SILL_MODELS else list(model.names)
            raise ValueError(
                f"{arg}: {name} model takes a list of {' or '.join(map(str, sizes))} values "
                f"{order}, got {len(p)}"
            )
        if name in _SILL_MODELS:  # the list holds the full sill, as in PyKrige
            p[0] = p[0] - p[2]
            if name == "matern" and len(p) == 3:
                p.append(1.5)
    else:
        raise ValueError(f"{arg} must be a dict, a list or None, got {type(variogram_parameters)}")
    try:
        p = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{arg}: values must be numbers ({exc})") from None
    _check_parameters(model, p)
    return p


class Variogram:
    """A variogram model with its parameters (PyKrige's internal order).

    Example
    -------
    >>> v = Variogram("spherical", [1.0, 0.5, 0.1])   # psill, range, nugget
    >>> float(v.gamma(np.array([0.0, 0.25, 1.0]))[2])
    1.1
    """

    def __init__(self, model, params):
        self.model = _model(model)
        self.params = np.asarray(params, dtype=np.float64)
        if self.params.shape != (len(self.model.names),):
            raise ValueError(
                f"variogram_parameters: {self.model.name} takes {list(self.model.names)}, "
                f"got {self.params.tolist()}"
            )
        _check_parameters(self.model, self.params)
        self.amplitude, self.length, self.key = self.model.split(self.params)
        self.nugget = float(self.params[self.model.names.index("nugget")])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={float(v):.6g}" for k, v in zip(self.model.names, self.params))
        return f"Variogram({self.model.name!r}, {args})"

    def gamma(self, h) -> np.ndarray:
        """PyKrige's ``variogram_function(params, h)``: with the nugget, also at 0."""
        return self.model.gamma(self.params, np.asarray(h, dtype=np.float64))

    def gamma_continuous(self, h) -> np.ndarray:
        """``gamma`` without the nugget (``0`` at ``h = 0``)."""
        t = np.asarray(h, dtype=np.float64) / self.length
        return self.amplitude * self.model.shape_numpy(t, self.key)

    def kernel(self) -> RadialKernel:
        """``phi(s) = -g(sqrt(s))``: the normalized kernel ``-gamma_c / amplitude`` of
        ``s = (h / length)^2``."""
        shape = self.model.shape
        return RadialKernel.of(
            f"-{self.model.name} variogram", lambda m, s, key: -shape(m, s, key), self.key
        )


# ----------------------------------------------------------------------
# Experimental variogram and fit (PyKrige's method)
# ----------------------------------------------------------------------
def _pair_blocks(X: np.ndarray, z: np.ndarray, block_elems: int = 1 << 22):
    """Distances and semivariances of all pairs ``i < j``, one row block at a time."""
    n = X.shape[0]
    rows = max(1, block_elems // max(n, 1))
    for a in range(0, n - 1, rows):
        b = min(n - 1, a + rows)
        i = np.arange(a, b)
        diff = X[a:b, None, :] - X[None, :, :]
        d = np.sqrt((diff**2).sum(-1))
        g = 0.5 * (z[a:b, None] - z[None, :]) ** 2
        keep = np.arange(n)[None, :] > i[:, None]
        yield d[keep], g[keep]


def experimental_variogram(X, z, nlags: int = 6, *, max_pairs: int = 1 << 22, seed: int = 0):
    """PyKrige's binned semivariogram: ``(lags, semivariance)`` of the non-empty bins.

    All pairs are used when there are at most ``max_pairs`` of them, otherwise a
    uniform random sample of ``max_pairs`` distinct pairs (``seed``).
    """
    X = np.asarray(X, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    n = X.shape[0]
    if n < 2:
        raise ValueError("z: at least 2 data points are needed to estimate a variogram")
    nlags = int(nlags)
    if nlags < 1:
        raise ValueError(f"nlags must be >= 1, got {nlags}")
    if n * (n - 1) // 2 <= max_pairs:
        blocks = list(_pair_blocks(X, z)) if n <= 2048 else None

        def pairs():
            return iter(blocks) if blocks is not None else _pair_blocks(X, z)
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, size=max_pairs)
        j = (i + rng.integers(1, n, size=max_pairs)) % n
        d_s = np.sqrt(((X[i] - X[j]) ** 2).sum(-1))
        g_s = 0.5 * (z[i] - z[j]) ** 2

        def pairs():
            return iter([(d_s, g_s)])

    dmin, dmax = np.inf, -np.inf
    for d, _ in pairs():
        if d.size:
            dmin, dmax = min(dmin, float(d.min())), max(dmax, float(d.max()))
    dd = (dmax - dmin) / nlags
    bins = [dmin + k * dd for k in range(nlags)]
    bins.append(dmax + 0.001)
    bins = np.asarray(bins)
    count = np.zeros(nlags)
    dsum = np.zeros(nlags)
    gsum = np.zeros(nlags)
    for d, g in pairs():
        k = np.searchsorted(bins, d, side="right") - 1
        ok = (k >= 0) & (k < nlags)
        count += np.bincount(k[ok], minlength=nlags)
        dsum += np.bincount(k[ok], weights=d[ok], minlength=nlags)
        gsum += np.bincount(k[ok], weights=g[ok], minlength=nlags)
    full = count > 0
    return dsum[full] / count[full], gsum[full] / count[full]


def _residuals(params, lags, semivariance, gamma, weight):
    if weight:
        drange = np.amax(lags) - np.amin(lags)
        k = 2.1972 / (0.1 * drange)
        x0 = 0.7 * drange + np.amin(lags)
        weights = 1.0 / (1.0 + np.exp(-k * (x0 - lags)))
        weights /= np.sum(weights)
        return (gamma(params, lags) - semivariance) * weights
    return gamma(params, lags) - semivariance


def fit_variogram(lags, semivariance, variogram_model, weight: bool = False, nu: float = 1.5):
    """PyKrige's least-squares fit (soft-L1 loss, its start and bounds): internal parameters."""
    model = _model(variogram_model)
    lags = np.asarray(lags, dtype=np.float64)
    sv = np.asarray(semivariance, dtype=np.float64)
    if lags.size < 2 or np.amax(lags) == np.amin(lags):
        raise ValueError(
            f"cannot fit the {model.name} variogram: fewer than 2 non-empty lag bins "
            "(raise nlags, or give variogram_parameters)"
        )
    slope0 = (np.amax(sv) - np.amin(sv)) / (np.amax(lags) - np.amin(lags))
    if model.name == "linear":
        x0 = [slope0, np.amin(sv)]
        bnds = ([0.0, 0.0], [np.inf, np.amax(sv)])
    elif model.name == "power":
        x0 = [slope0, 1.1, np.amin(sv)]
        bnds = ([0.0, 0.001, 0.0], [np.inf, 1.999, np.amax(sv)])
    else:
        x0 = [np.amax(sv) - np.amin(sv), 0.25 * np.amax(lags), np.amin(sv)]
        bnds = ([0.0, 0.0, 0.0], [10.0 * np.amax(sv), np.amax(lags), np.amax(sv)])
    gamma = model.gamma
    if model.name == "matern":
        nu = float(nu)

        def gamma(p, d):
            return model.gamma([p[0], p[1], p[2], nu], d)

    res = least_squares(
        _residuals, x0, bounds=bnds, loss="soft_l1", args=(lags, sv, gamma, weight)
    )
    p = np.asarray(res.x, dtype=np.float64)
    if model.name == "matern":
        p = np.append(p, nu)
    return p


# ----------------------------------------------------------------------
# Kriging
# ----------------------------------------------------------------------
def _knn(x: np.ndarray, pts: np.ndarray, k: int):
    """``k`` nearest of ``pts`` for every row of ``x``: squared distances, indices."""
    ndim = pts.shape[1]
    f = ir.make("sqdist", ir.var(0, ir.I, ndim), ir.var(1, ir.J, ndim))
    d2, idx = autograd.reduce(f, "kmin_argkmin", (x, pts), (ir.I, ir.J), K=k)
    return d2.reshape(len(x), k), idx.reshape(len(x), k)


def _vector(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if np.iscomplexobj(arr):
        raise ValueError(f"{name}: complex values are not supported")
    try:
        arr = np.atleast_1d(np.squeeze(np.array(arr, dtype=np.float64)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold numbers ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (after squeezing), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.argmax(~np.isfinite(arr)))
        raise ValueError(f"{name} holds NaN or inf (first at index {bad}); expected finite")
    return arr


def _adjust_for_anisotropy(X, center, scaling, angle):
    """PyKrige's 2-D anisotropy transform (rotate by -angle about center, stretch y)."""
    X = X - np.asarray(center)[None, :]
    a = angle * np.pi / 180
    stretch = np.array([[1, 0], [0, scaling]])
    rot = np.array([[np.cos(-a), -np.sin(-a)], [np.sin(-a), np.cos(-a)]])
    out = np.dot(stretch, np.dot(rot, X.T)).T
    return out + np.asarray(center)[None, :]


class _Basis:
    """The drift monomials in coordinates centred and scaled to [-1, 1]."""

    def __init__(self, xy: np.ndarray, powers: np.ndarray, shift=None, scale=None):
        lo, hi = xy.min(0), xy.max(0)
        self.shift = (lo + hi) / 2 if shift is None else shift
        self.scale = np.where(hi > lo, (hi - lo) / 2, 1.0) if scale is None else scale
        self.powers = powers
        self.P = self(xy)

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        return polynomial_matrix((xy - self.shift) / self.scale, self.powers)


_SADDLE_BLOCK = 16  # right-hand sides per saddle solve (GMRES runs them one by one)
_CG_BLOCK = 64  # right-hand sides per batched CG solve (one product serves them all)


def _padded_chunks(k: int, size: int):
    """Slices of ``range(k)`` of length ``size`` (the last one padded by the caller with
    zero columns): a fixed number of columns keeps one compiled reduction."""
    for a in range(0, k, size):
        yield slice(a, min(k, a + size))


def _pad(V: np.ndarray, size: int) -> np.ndarray:
    """Zero columns up to ``size``: both solvers skip them at no cost."""
    if V.shape[1] == size:
        return V
    return np.concatenate([V, np.zeros((V.shape[0], size - V.shape[1]))], axis=1)


class _NuggetBackend:
    """Pure nugget (``gamma_c = 0``): ``A = nugget I``, the drift is a least-squares fit,
    ``sigmasq = nugget (1 + p0^T (P^T P)^-1 p0)``."""

    def __init__(self, xy, v: Variogram, powers, z):
        self.v = v
        self.basis = _Basis(xy, powers)
        self.Q, self.R = np.linalg.qr(self.basis.P)
        self.w = scipy.linalg.solve_triangular(self.R, self.Q.T @ z)
        self.info = SaddleInfo()

    def predict(self, xy):
        return self.basis(xy) @ self.w

    def variance(self, xy):
        r = scipy.linalg.solve_triangular(self.R, self.basis(xy).T, trans="T")
        return self.v.nugget * (1.0 + (r**2).sum(0))


class _SaddleBackend:
    """The saddle-point solver with the normalized kernel ``-g`` (any variogram)."""

    def __init__(
        self, xy, v: Variogram, powers, z, *, neighbors, coarse, seed, rtol, maxiter, verbose
    ):
        self.v, self.rtol, self.maxiter = v, rtol, maxiter
        self.yn = np.ascontiguousarray(xy / v.length)
        n = len(xy)
        self.s = SaddleSolver(
            self.yn,
            v.kernel(),
            1.0,
            np.full(n, v.nugget / v.amplitude),
            powers,
            neighbors=neighbors,
            coarse=coarse,
            seed=seed,
            verbose=verbose,
        )
        self.basis = _Basis(self.yn, powers, self.s.shift, self.s.scale)
        self.c, self.w, self.info = self.s.solve(z[:, None].copy(), rtol=rtol, maxiter=maxiter)
        self._drift = None

    def predict(self, xy):
        xn = np.ascontiguousarray(xy / self.v.length)
        return self.s.evaluate(xn, self.c, self.w)[:, 0]

    def drift_basis(self):
        """``S [0; I]``: weights and multipliers of the polynomial part of a right-hand side."""
        if self._drift is None:
            s = self.s
            m = s.Q.shape[1]
            L = s.Q @ scipy.linalg.solve_triangular(s.R, np.eye(m), trans="T")
            L = _pad(L, _SADDLE_BLOCK)  # zero columns: the same compiled product as below
            c, w, _ = s.solve(-s.A(L), rtol=self.rtol, maxiter=self.maxiter)
            self._drift = ((L + c)[:, :m], w[:, :m])
        return self._drift

    def variance(self, xy):
        v, s = self.v, self.s
        xn = xy / v.length
        p0 = self.basis(xn)  # (k, m)
        lam_b, nu_b = self.drift_basis()
        phi0 = float(s.phi.numpy(np.zeros(1))[0])
        out = np.empty(len(xy))
        size = _SADDLE_BLOCK
        for sl in _padded_chunks(len(xy), size):
            k0 = s.phi.numpy(((self.yn[:, None, :] - xn[None, sl, :]) ** 2).sum(-1))
            c, w, _ = s.solve(_pad(k0, size), rtol=self.rtol, maxiter=self.maxiter)
            k = k0.shape[1]
            lam = c[:, :k] + lam_b @ p0[sl].T
            nu = w[:, :k] + nu_b @ p0[sl].T
            quad = (k0 * lam).sum(0) + (nu * p0[sl].T).sum(0)
            out[sl] = v.amplitude * (v.nugget / v.amplitude + phi0 - quad)
        return out


class _CGBackend:
    """Bounded variograms with a nugget: the covariance ``psill (1 - g)`` plus the nugget
    is positive definite, so ``(K + alpha I) [a, B] = [z, P]`` by batched CG with a
    randomly pivoted Cholesky preconditioner, and the constraint by the Schur
    complement: ``w = (P^T B)^-1 P^T a``, ``c = a - B w``."""

    def __init__(self, xy, v: Variogram, powers, z, *, rank, rtol, maxiter, verbose):
        self.v, self.rtol, self.maxiter, self.verbose = v, rtol, maxiter, verbose
        self.alpha = v.nugget / v.amplitude
        self.yn = np.ascontiguousarray(xy / v.length)
        shape = v.model.shape
        cov = RadialKernel.of("covariance", lambda m, s, key: 1 - shape(m, s, key), v.key)
        self.formula = kernel_formula(cov.formula, 2, 1.0)
        self.numpy = cov.numpy
        self.op = KernelOperator(self.formula, (self.yn, self.yn), (ir.I, ir.J))
        t0 = time.perf_counter()
        self.M = precond_mod.make(self.op, self.alpha, "rpcholesky", rank, verbose=verbose)
        self.basis = _Basis(self.yn, powers)
        P = self.basis.P
        m = P.shape[1]
        sol, cg_info = self._solve(_pad(np.column_stack([z, P]), 4))  # OK and UK: one kernel
        a, self.B = sol[:, :1], sol[:, 1 : m + 1]
        self.G = P.T @ self.B  # P^T (K + alpha I)^-1 P, symmetric positive definite
        self.w = np.linalg.solve(self.G, P.T @ a)
        self.c = a - self.B @ self.w
        self.info = SaddleInfo(
            products=cg_info.iterations,
            residual=list(np.atleast_1d(cg_info.residual)),
            converged=bool(cg_info.converged),
            setup_seconds=float(getattr(self.M, "setup_seconds", 0.0)),
            solve_seconds=time.perf_counter() - t0,
        )

    def _solve(self, B):
        def A(V):
            return self.op.matmat(V) + self.alpha * V

        return cg(A, B, rtol=self.rtol, maxiter=self.maxiter, M=self.M, verbose=self.verbose)

    def predict(self, xy):
        xn = np.ascontiguousarray(xy / self.v.length)
        f = ir.make("mul", self.formula, ir.var(2, ir.J, 1))
        out = autograd.reduce(f, "sum", (xn, self.yn, self.c), (ir.I, ir.J, ir.J))
        return out[:, 0] + self.basis(xn) @ self.w[:, 0]

    def variance(self, xy):
        v = self.v
        xn = xy / v.length
        p0 = self.basis(xn)
        P = self.basis.P
        out = np.empty(len(xy))
        size = _CG_BLOCK
        for sl in _padded_chunks(len(xy), size):
            k0 = self.numpy(((self.yn[:, None, :] - xn[None, sl, :]) ** 2).sum(-1))
            k = k0.shape[1]
            a0 = self._solve(_pad(k0, size))[0][:, :k]
            nu = np.linalg.solve(self.G, P.T @ a0 - p0[sl].T)
            lam = a0 - self.B @ nu
            quad = (k0 * lam).sum(0) + (nu * p0[sl].T).sum(0)
            out[sl] = v.amplitude * (self.alpha + 1.0 - quad)
        return out


class _Kriging:
    _degree = 0

    def __init__(
        self,
        x,
        y,
        z,
        variogram_model: str = "linear",
        variogram_parameters=None,
        nlags: int = 6,
        weight: bool = False,
        anisotropy_scaling: float = 1.0,
        anisotropy_angle: float = 0.0,
        exact_values: bool = True,
        *,
        variance="auto",
        exact_variance_max: int | None = None,
        variance_neighbors: int = 64,
        variance_check: int = 10,
        max_pairs: int = 1 << 22,
        solver: str = "auto",
        rank: int | None = None,
        rtol: float = 1e-10,
        maxiter: int = 1000,
        neighbors: int = 50,
        coarse: int | str = "auto",
        seed: int = 0,
        verbose: bool = False,
    ):
        self.verbose = bool(verbose)
        self.X_ORIG = _vector(x, "x")
        self.Y_ORIG = _vector(y, "y")
        self.Z = _vector(z, "z")
        n = self.X_ORIG.size
        if self.Y_ORIG.size != n or self.Z.size != n:
            raise ValueError(
                f"x, y and z must have the same length, got {n}, {self.Y_ORIG.size} and "
                f"{self.Z.size}"
            )
        m = monomial_powers(2, self._degree).shape[0]
        if n < max(2, m + 1):
            raise ValueError(f"x, y: at least {max(2, m + 1)} data points are needed, got {n}")
        if not isinstance(exact_values, bool):
            raise ValueError("exact_values must be True or False")
        self.variance = self._variance_mode(variance)
        if solver not in ("auto", "saddle", "cg"):
            raise ValueError(f"solver={solver!r}: expected 'auto', 'saddle' or 'cg'")
        if isinstance(coarse, str) and coarse != "auto":
            raise ValueError(f"coarse={coarse!r}: expected 'auto' or a number of points")
        if not isinstance(coarse, str) and not (
            isinstance(coarse, (int, np.integer)) and not isinstance(coarse, bool) and coarse >= 0
        ):
            raise ValueError(f"coarse must be 'auto' or an integer >= 0, got {coarse!r}")
        self.variance_neighbors = int(variance_neighbors)
        if self.variance_neighbors < m + 1:
            raise ValueError(f"variance_neighbors must be >= {m + 1}, got {variance_neighbors}")
        self.variance_check = max(0, int(variance_check))
        self.rtol, self.maxiter, self.seed = float(rtol), int(maxiter), int(seed)
        if not (self.rtol > 0 and self.maxiter >= 1):
            raise ValueError(f"rtol must be > 0 and maxiter >= 1, got {rtol} and {maxiter}")
        self.variance_info: dict = {}
        self.exact_values = exact_values
        scaling, angle = float(anisotropy_scaling), float(anisotropy_angle)
        if not np.isfinite(scaling) or scaling <= 0:
            raise ValueError(f"anisotropy_scaling must be positive and finite, got {scaling}")
        if not np.isfinite(angle):
            raise ValueError(f"anisotropy_angle must be finite, got {angle}")
        self.anisotropy_scaling, self.anisotropy_angle = scaling, angle
        self.XCENTER = (np.amax(self.X_ORIG) + np.amin(self.X_ORIG)) / 2.0
        self.YCENTER = (np.amax(self.Y_ORIG) + np.amin(self.Y_ORIG)) / 2.0
        xy = _adjust_for_anisotropy(
            np.column_stack([self.X_ORIG, self.Y_ORIG]),
            [self.XCENTER, self.YCENTER],
            scaling,
            angle,
        )
        self.X_ADJUSTED, self.Y_ADJUSTED = xy[:, 0].copy(), xy[:, 1].copy()
        self._xy = np.ascontiguousarray(xy)
        self._check_distinct()

        self.variogram_model = _model(variogram_model).name
        model = VARIOGRAM_MODELS[self.variogram_model]
        p = variogram_parameter_list(self.variogram_model, variogram_parameters)
        nlags = int(nlags)
        if nlags < 1:
            raise ValueError(f"nlags must be >= 1, got {nlags}")
        self.lags, self.semivariance = experimental_variogram(
            self._xy, self.Z, nlags, max_pairs=int(max_pairs), seed=seed
        )
        if p is None:
            nu = 1.5
            if isinstance(variogram_parameters, dict):
                nu = float({str(k).lower(): v for k, v in variogram_parameters.items()}["nu"])
                if nu not in MATERN_NU:
                    raise ValueError(f"variogram_parameters: nu must be one of {MATERN_NU}")
            p = fit_variogram(self.lags, self.semivariance, model, bool(weight), nu=nu)
            try:
                _check_parameters(model, p)
            except ValueError as exc:
                raise ValueError(
                    f"the fitted variogram is degenerate ({exc}); give variogram_parameters"
                ) from None
            self._log(f"kriging: fitted {Variogram(model, p)}")
        self.variogram = Variogram(model, p)
        self.variogram_model_parameters = p
        self.variogram_function = model.gamma

        self._powers = monomial_powers(2, self._degree)
        self._check_drift()
        v = self.variogram
        self.solver = self._solver_kind(solver)
        if exact_variance_max is None:
            # about 2e8 (saddle: per-target GMRES) or 2e9 (CG: batched) pair evaluations
            budget = 2e9 if self.solver == "cg" else 2e8
            exact_variance_max = int(min(2000, budget // n**2))
        self.exact_variance_max = int(exact_variance_max)
        options = dict(rtol=self.rtol, maxiter=self.maxiter, verbose=self.verbose)
        if self.solver == "nugget":
            self._backend = _NuggetBackend(self._xy, v, self._powers, self.Z)
        elif self.solver == "cg":
            self._backend = _CGBackend(self._xy, v, self._powers, self.Z, rank=rank, **options)
        else:
            self._backend = _SaddleBackend(
                self._xy,
                v,
                self._powers,
                self.Z,
                neighbors=neighbors,
                coarse=coarse,
                seed=seed,
                **options,
            )
        self.info = self._backend.info

    # ------------------------------------------------------------------
    def _log(self, msg: str) -> None:
        if self.verbose:
            print(msg, file=sys.stderr)

    @staticmethod
    def _variance_mode(variance):
        if variance is False or variance is None:
            return False
        if variance not in ("exact", "local", "auto"):
            raise ValueError(f"variance={variance!r}: expected 'exact', 'local', 'auto' or False")
        return variance

    def _check_distinct(self) -> None:
        d2, idx = _knn(self._xy, self._xy, 2)
        dup = np.flatnonzero(d2[:, 1] == 0)
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

    def _solver_kind(self, solver) -> str:
        v = self.variogram
        if v.amplitude == 0:
            return "nugget"  # Phi = 0: closed form
        bounded = v.model.name in _SILL_MODELS
        if solver == "cg" and not (bounded and v.nugget > 0):
            raise ValueError(
                "solver='cg' needs a bounded variogram model (a covariance) with a nugget > 0, "
                f"got {v}"
            )
        if solver == "auto":
            smooth = v.model.name == "gaussian" or (v.model.name == "matern" and v.key > 1)
            extent = (self._xy.max(0) - self._xy.min(0)) / v.length
            cells = float(np.prod(np.maximum(extent, 1.0)))
            low_rank = cells <= CG_MAX_CELLS
            shifted = v.nugget >= CG_MIN_NUGGET * v.amplitude
            return "cg" if bounded and shifted and smooth and low_rank else "saddle"
        return solver

    def _local_variance(self, xy: np.ndarray) -> np.ndarray:
        v, n = self.variogram, self._xy.shape[0]
        q = min(self.variance_neighbors, n)
        d2, idx = _knn(xy, self._xy, q)
        m = self._powers.shape[0]
        out = np.empty(len(xy))
        chunk = max(1, (1 << 24) // (8 * (q + m) ** 2))
        ar = np.arange(q)
        for a in range(0, len(xy), chunk):
            sl = slice(a, min(len(xy), a + chunk))
            pts = self._xy[idx[sl]]  # (b, q, 2)
            rel = pts - xy[sl, None, :]
            b = rel.shape[0]
            D = np.sqrt(((pts[:, :, None, :] - pts[:, None, :, :]) ** 2).sum(-1))
            M = np.zeros((b, q + m, q + m))
            M[:, :q, :q] = -v.gamma_continuous(D)
            M[:, ar, ar] += v.nugget
            h = np.sqrt((rel**2).sum(-1).max(1))[:, None, None]
            Pl = np.prod((rel / np.where(h > 0, h, 1.0))[:, :, None, :] ** self._powers, axis=-1)
            M[:, :q, q:] = Pl
            M[:, q:, :q] = Pl.transpose(0, 2, 1)
            rhs = np.zeros((b, q + m))
            rhs[:, :q] = -v.gamma_continuous(np.sqrt(np.maximum(d2[sl], 0.0)))
            rhs[:, q:] = polynomial_matrix(np.zeros((1, 2)), self._powers)[0]
            try:
                sol = np.linalg.solve(M, rhs[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                sol = np.stack([np.linalg.lstsq(Mk, rk, rcond=None)[0] for Mk, rk in zip(M, rhs)])
            out[sl] = v.nugget - (sol * rhs).sum(1)
        return out

    def _variance(self, xy: np.ndarray, mode) -> np.ndarray:
        k = len(xy)
        if mode == "auto":
            mode = (
                "exact" if (k <= self.exact_variance_max or self.solver == "nugget") else "local"
            )
        if mode == "exact" or self.solver == "nugget":
            self.variance_info = {"method": "exact", "targets": k}
            return self._backend.variance(xy)
        out = self._local_variance(xy)
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
    def execute(self, style: str, xpoints, ypoints, mask=None, *, variance=None):
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

        Returns
        -------
        zvalues, sigmasq : ndarray
            Predictions and kriging variances (PyKrige's ``sigmasq``, not
            clipped at 0: tiny negative values are rounding).
        """
        if style not in ("grid", "points", "masked"):
            raise ValueError(f"style={style!r}: expected 'grid', 'points' or 'masked'")
        mode = self.variance if variance is None else self._variance_mode(variance)
        xpts = _vector(xpoints, "xpoints")
        ypts = _vector(ypoints, "ypoints")
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
        xy = _adjust_for_anisotropy(
            np.column_stack([xpts, ypts]),
            [self.XCENTER, self.YCENTER],
            self.anisotropy_scaling,
            self.anisotropy_angle,
        )
        xy = np.ascontiguousarray(xy[keep])
        zk = np.zeros(len(xy))
        sk = None if mode is False else np.zeros(len(xy))
        if len(xy):
            zk = self._backend.predict(xy)
            if sk is not None:
                sk = self._variance(xy, mode)
            if self.exact_values:
                d2, idx = _knn(xy, self._xy, 1)
                hit = np.sqrt(np.maximum(d2[:, 0], 0.0)) <= EPS
                zk[hit] = self.Z[idx[hit, 0]]
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
        "matern" (see the module docstring for the formulas).
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
        covariance (bounded models with a nugget); "auto": see the module
        docstring. The choice is in the attribute ``solver`` ("nugget" for a
        pure-nugget model, solved in closed form).
    rank : int, optional
        Rank of the RPCholesky preconditioner of the CG solver (automatic).
    rtol, maxiter : float, int
        Relative residual and iteration cap of GMRES or CG.
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

    Attributes
    ----------
    variogram : Variogram
    variogram_model_parameters : ndarray
        PyKrige's internal list (partial sill first).
    lags, semivariance : ndarray
        The experimental semivariogram.
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

    The same parameters as :class:`OrdinaryKriging`, plus ``drift_terms``:
    ``("regional_linear",)`` (the default here; PyKrige's default is no drift)
    or ``[]``/None for none, which is ordinary kriging. Other PyKrige drifts
    (point_log, external_Z, specified, functional) are not supported.

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

    def __init__(self, x, y, z, *args, drift_terms=("regional_linear",), **kwargs):
        if drift_terms is None:
            drift_terms = []
        if isinstance(drift_terms, str):
            drift_terms = [drift_terms]
        bad = [t for t in drift_terms if t != "regional_linear"]
        if bad:
            raise ValueError(
                f"drift_terms={list(drift_terms)!r}: only 'regional_linear' is supported"
            )
        self.drift_terms = list(drift_terms)
        self._degree = 1 if drift_terms else 0
        super().__init__(x, y, z, *args, **kwargs)
