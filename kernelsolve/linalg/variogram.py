"""Variograms: PyKrige's models and parameter conventions, the experimental
semivariogram and its least-squares fit.

A model is ``gamma(h) = amplitude * g((h / length)^2) + nugget`` for ``h > 0``
with the shape ``g`` of :data:`kernelsolve.linalg.kernels.VARIOGRAM_SHAPES`
(``g(0) = 0``): PyKrige 1.7.3's ``linear``, ``power``, ``gaussian``,
``exponential`` and ``spherical`` models, plus ``matern`` (nu 0.5, 1.5, 2.5).
The formulas, the parameter conventions and the accuracy of the fit are in
``docs/kriging.md``.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.random((300, 2))
>>> z = np.sin(6 * X[:, 0]) + 0.05 * rng.standard_normal(300)
>>> lags, sv = experimental_variogram(X, z, nlags=8)
>>> v = Variogram("exponential", fit_variogram(lags, sv, "exponential"))
>>> v.model.name, bool(v.gamma(np.array([0.0]))[0] == v.nugget)
('exponential', True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.distance import pdist

from . import kernels
from .radial import RadialKernel

__all__ = [
    "VariogramModel",
    "Variogram",
    "VARIOGRAM_MODELS",
    "MATERN_NU",
    "BOUNDED_MODELS",
    "as_model",
    "variogram_parameter_list",
    "experimental_variogram",
    "short_lag_variogram",
    "fit_variogram",
]


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

    def __reduce__(self):
        # the split functions are lambdas: pickle the model by name
        return (as_model, (self.name,))

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

#: The models with a sill (their covariance ``psill (1 - g)`` is bounded).
BOUNDED_MODELS = ("gaussian", "exponential", "spherical", "matern")
MATERN_NU = (0.5, 1.5, 2.5)


def as_model(name: str | VariogramModel) -> VariogramModel:
    """The :class:`VariogramModel` of a name (case-insensitive), or ``name`` itself.

    Example
    -------
    >>> as_model("Spherical").names
    ('psill', 'range', 'nugget')
    """
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
    if model.name in BOUNDED_MODELS:
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


def variogram_parameter_list(
    variogram_model: str | VariogramModel, variogram_parameters: dict | list | None
) -> np.ndarray | None:
    """PyKrige's parameter conventions -> the internal list (partial sill first), or None.

    Parameters
    ----------
    variogram_model : str
        One of :data:`VARIOGRAM_MODELS`.
    variogram_parameters : dict, list or None
        A dict (``{"slope", "nugget"}``, ``{"scale", "exponent", "nugget"}``,
        ``{"psill" or "sill", "range", "nugget"}``, plus ``"nu"`` for matern,
        default 1.5), or a list in which the *full* sill comes first
        (``[sill, range, nugget]``, matern ``[sill, range, nugget, nu]``).

    Returns
    -------
    ndarray or None
        The parameters in the order of ``VARIOGRAM_MODELS[name].names``; None
        when they are to be fitted (``None``, or for matern a dict holding
        ``"nu"`` alone).

    Raises
    ------
    ValueError
        For missing or invalid parameters, naming the parameter.

    Example
    -------
    >>> variogram_parameter_list("spherical", [1.5, 0.3, 0.5]).tolist()  # sill first
    [1.0, 0.3, 0.5]
    >>> variogram_parameter_list("matern", {"nu": 2.5}) is None
    True
    """
    model = as_model(variogram_model)
    name = model.name
    arg = "variogram_parameters"
    if variogram_parameters is None:
        return None
    if isinstance(variogram_parameters, dict):
        given = {str(k).lower(): v for k, v in variogram_parameters.items()}
        if name == "matern" and set(given) <= {"nu"}:
            return None
        if name in BOUNDED_MODELS:
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
            order = "[sill, range, nugget(, nu)]" if name in BOUNDED_MODELS else list(model.names)
            raise ValueError(
                f"{arg}: {name} model takes a list of {' or '.join(map(str, sizes))} values "
                f"{order}, got {len(p)}"
            )
        if name in BOUNDED_MODELS:  # the list holds the full sill, as in PyKrige
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

    Parameters
    ----------
    model : str or VariogramModel
        The model name (see :data:`VARIOGRAM_MODELS`).
    params : array_like
        Its parameters in the order of ``model.names`` (partial sill first); see
        :func:`variogram_parameter_list` for PyKrige's conventions.

    Attributes
    ----------
    amplitude, length : float
        ``gamma(h) = amplitude * g(h / length) + nugget`` for ``h > 0``.
    key : float or None
        The shape's extra parameter (power exponent, matern ``nu``).
    nugget : float

    Example
    -------
    >>> v = Variogram("spherical", [1.0, 0.5, 0.1])   # psill, range, nugget
    >>> float(v.gamma(np.array([0.0, 0.25, 1.0]))[2])
    1.1
    """

    def __init__(self, model: str | VariogramModel, params):
        self.model = as_model(model)
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


def _binned_means(d: np.ndarray, g: np.ndarray, nlags: int):
    """PyKrige's bins and means, in its order of operations (its variogram fit is
    flat enough that a last-bit difference in a lag moves the range by 1e-3)."""
    dmax, dmin = np.amax(d), np.amin(d)
    dd = (dmax - dmin) / nlags
    bins = [dmin + k * dd for k in range(nlags)] + [dmax + 0.001]
    lags, sv = [], []
    for k in range(nlags):
        sel = (d >= bins[k]) & (d < bins[k + 1])
        if sel.any():
            lags.append(np.mean(d[sel]))
            sv.append(np.mean(g[sel]))
    return np.asarray(lags), np.asarray(sv)


_EXACT_PAIRS = 1 << 23  # up to this many pairs, all of them at once, as PyKrige does


def experimental_variogram(
    X,
    z,
    nlags: int = 6,
    *,
    max_pairs: int = 1 << 22,
    seed: int = 0,
    distance_map=None,
    pair_distances=None,
) -> tuple[np.ndarray, np.ndarray]:
    """PyKrige's binned semivariogram: ``(lags, semivariance)`` of the non-empty bins.

    Parameters
    ----------
    X : (n, d) array_like
        Points.
    z : (n,) array_like
        Values.
    nlags : int
        Equal-width distance bins between the smallest and the largest pair distance.
    max_pairs : int
        All pairs are used when there are at most ``max_pairs`` of them, otherwise a
        uniform random sample of ``max_pairs`` pairs.
    seed : int
        Seed of the sample.
    distance_map : callable, optional
        Applied to the Euclidean pair distances before binning (geographic
        kriging: points on the unit sphere, chord to great-circle degrees).
    pair_distances : callable, optional
        ``pair_distances(X)``: the distances of all pairs in ``pdist``'s order,
        used instead of the Euclidean ones when all pairs are taken.

    Returns
    -------
    lags, semivariance : ndarray
        Mean distance and mean ``0.5 (z_i - z_j)^2`` of each non-empty bin.

    Example
    -------
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    >>> lags, sv = experimental_variogram(X, np.array([0.0, 1.0, 3.0]), nlags=2)
    >>> lags.tolist(), sv.tolist()
    ([1.0, 2.5], [0.5, 3.25])
    """
    X = np.asarray(X, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    n = X.shape[0]
    if n < 2:
        raise ValueError("z: at least 2 data points are needed to estimate a variogram")
    nlags = int(nlags)
    if nlags < 1:
        raise ValueError(f"nlags must be >= 1, got {nlags}")
    npairs = n * (n - 1) // 2
    if npairs <= min(max_pairs, _EXACT_PAIRS):
        d = pdist(X) if pair_distances is None else pair_distances(X)
        return _binned_means(d, 0.5 * pdist(z[:, None], "sqeuclidean"), nlags)
    if npairs <= max_pairs:
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

    if distance_map is not None:
        raw_pairs = pairs

        def pairs():
            return ((distance_map(d), g) for d, g in raw_pairs())

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


def short_lag_variogram(X, z, max_lag: float, nlags: int) -> tuple[np.ndarray, np.ndarray]:
    """Binned semivariogram of the pairs closer than ``max_lag`` (equal-width bins
    from 0 to ``max_lag``).

    PyKrige's binning (:func:`experimental_variogram`) spans every pair distance
    up to the data's diameter, so its first bin can hold all the lags that
    matter for kriging (those between a target and its nearest data); a fit to
    it then lets the nugget swallow the short-scale structure. This one looks
    only at the short lags, with a k-d tree (``O(n)`` memory in the pairs found).

    Parameters
    ----------
    X : (n, d) array_like
        Points.
    z : (n,) array_like
        Values.
    max_lag : float
        Largest pair distance used.
    nlags : int
        Bins.

    Returns
    -------
    lags, semivariance : ndarray
        Mean distance and mean ``0.5 (z_i - z_j)^2`` of each non-empty bin.

    Raises
    ------
    ValueError
        With fewer than ``2 nlags`` pairs closer than ``max_lag``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((500, 2))
    >>> lags, sv = short_lag_variogram(X, X[:, 0], 0.2, 5)
    >>> bool(np.all(np.diff(sv) > 0)), bool(lags.max() < 0.2)
    (True, True)
    """
    from scipy.spatial import cKDTree

    X = np.asarray(X, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    pairs = cKDTree(X).query_pairs(max_lag, output_type="ndarray")
    if len(pairs) < 2 * nlags:
        raise ValueError(
            f"too few point pairs closer than max_lag={max_lag} ({len(pairs)}) to fit a variogram"
        )
    d = np.linalg.norm(X[pairs[:, 0]] - X[pairs[:, 1]], axis=1)
    g = 0.5 * (z[pairs[:, 0]] - z[pairs[:, 1]]) ** 2
    k = np.minimum((d / max_lag * nlags).astype(np.int64), nlags - 1)
    count = np.bincount(k, minlength=nlags)
    keep = count > 0
    lags = np.bincount(k, d, nlags)[keep] / count[keep]
    return lags, np.bincount(k, g, nlags)[keep] / count[keep]


def _residuals(params, lags, semivariance, gamma, weight):
    if weight:
        drange = np.amax(lags) - np.amin(lags)
        k = 2.1972 / (0.1 * drange)
        x0 = 0.7 * drange + np.amin(lags)
        weights = 1.0 / (1.0 + np.exp(-k * (x0 - lags)))
        weights /= np.sum(weights)
        return (gamma(params, lags) - semivariance) * weights
    return gamma(params, lags) - semivariance


def fit_variogram(
    lags, semivariance, variogram_model: str, weight: bool = False, nu: float = 1.5, *, gamma=None
) -> np.ndarray:
    """PyKrige's least-squares fit of a model to a semivariogram.

    ``scipy.optimize.least_squares`` with the soft-L1 loss, PyKrige's starting
    point and bounds (the range at most the largest lag, the nugget at most
    the largest semivariance).

    Parameters
    ----------
    lags, semivariance : (k,) array_like
        The binned semivariogram (at least 2 distinct lags).
    variogram_model : str
        One of :data:`VARIOGRAM_MODELS`.
    weight : bool
        PyKrige's logistic weights: small lags count more.
    nu : float
        The matern smoothness (not fitted): 0.5, 1.5 or 2.5.
    gamma : callable, optional
        ``gamma(params, h)`` to fit instead of the model's own (the kriging
        classes pass PyKrige's formulas, whose rounding its fit follows).

    Returns
    -------
    ndarray
        The parameters in the order of ``VARIOGRAM_MODELS[variogram_model].names``.

    Example
    -------
    >>> h = np.linspace(0.05, 1.0, 12)
    >>> sv = Variogram("exponential", [2.0, 0.6, 0.1]).gamma(h)
    >>> np.round(fit_variogram(h, sv, "exponential"), 6).tolist()
    [2.0, 0.6, 0.1]
    """
    model = as_model(variogram_model)
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
    gamma = model.gamma if gamma is None else gamma
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
