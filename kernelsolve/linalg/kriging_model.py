"""The variogram of a kriging object, as PyKrige sets it up: a named model of
:mod:`.variogram`, PyKrige's ``hole-effect``, or a ``custom`` callable, with
given parameters or a least-squares fit to the experimental semivariogram.

:func:`resolve_model` checks the arguments and returns a :class:`ModelChoice`
(PyKrige's ``variogram_function(params, h)`` and the parameters, or None to
fit); :func:`fit_parameters` fits. ``choice.variogram`` is the
:class:`~.variogram.Variogram` the iterative solvers need (None for
hole-effect and custom models, which only the direct solver handles).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from .variogram import (
    MATERN_NU,
    VARIOGRAM_MODELS,
    Variogram,
    fit_variogram,
    variogram_parameter_list,
)
from .variogram import _residuals as residuals

__all__ = ["hole_effect", "ModelChoice", "resolve_model", "fit_parameters", "MODEL_NAMES"]

MODEL_NAMES = tuple(VARIOGRAM_MODELS) + ("hole-effect", "custom")


def _linear(params, h):
    return float(params[0]) * h + float(params[1])


def _power(params, h):
    return float(params[0]) * h ** float(params[1]) + float(params[2])


def _gaussian(params, h):
    psill, r, nugget = (float(v) for v in params[:3])
    return psill * (1.0 - np.exp(-(h**2.0) / (r * 4.0 / 7.0) ** 2.0)) + nugget


def _exponential(params, h):
    psill, r, nugget = (float(v) for v in params[:3])
    return psill * (1.0 - np.exp(-h / (r / 3.0))) + nugget


def _spherical(params, h):
    psill, r, nugget = (float(v) for v in params[:3])
    h = np.asarray(h, dtype=np.float64)
    inside = psill * ((3.0 * h) / (2.0 * r) - (h**3.0) / (2.0 * r**3.0)) + nugget
    return np.where(h <= r, inside, psill + nugget)


#: ``variogram_function`` of PyKrige's named models, in its arithmetic (its fit
#: follows the rounding: a flat least-squares objective amplifies 1e-16 to 1e-3)
PYKRIGE_FUNCTIONS = {
    "linear": _linear,
    "power": _power,
    "gaussian": _gaussian,
    "exponential": _exponential,
    "spherical": _spherical,
}


def hole_effect(params, h) -> np.ndarray:
    """PyKrige's hole-effect model ``[psill, range, nugget]`` (numpy only: it is not a
    valid variogram in 2-D, so the iterative solvers do not take it)."""
    psill, rng, nugget = (float(v) for v in params[:3])
    t = np.asarray(h, dtype=np.float64) / (rng / 3.0)
    return psill * (1.0 - (1.0 - t) * np.exp(-t)) + nugget


@dataclass
class ModelChoice:
    """A resolved ``variogram_model``: its name, PyKrige's function, the parameters
    (None: to be fitted) and the matern smoothness of a fit."""

    name: str
    function: object
    params: np.ndarray | list | None
    nu: float = 1.5

    @property
    def variogram(self) -> Variogram | None:
        """The :class:`Variogram` of a named model (None: direct solver only)."""
        if self.name not in VARIOGRAM_MODELS or self.params is None:
            return None
        try:
            return Variogram(self.name, self.params)
        except ValueError:
            return None  # e.g. a fit at a bound: the direct solver takes any parameters


def _hole_effect_parameters(variogram_parameters) -> np.ndarray | None:
    """PyKrige's conventions of the bounded models (full sill first in a list)."""
    if variogram_parameters is None:
        return None
    p = variogram_parameter_list("spherical", variogram_parameters)
    return p


def resolve_model(variogram_model, variogram_parameters, variogram_function) -> ModelChoice:
    """Check PyKrige's variogram arguments; ValueError/TypeError naming the argument.

    Example
    -------
    >>> c = resolve_model("spherical", [1.5, 2.0, 0.5], None)
    >>> c.name, c.params.tolist()
    ('spherical', [1.0, 2.0, 0.5])
    """
    if not isinstance(variogram_model, str):
        raise ValueError(
            f"variogram_model={variogram_model!r}: expected one of {list(MODEL_NAMES)}"
        )
    name = variogram_model if variogram_model == "hole-effect" else variogram_model.lower()
    if name == "custom":
        if variogram_function is None or not callable(variogram_function):
            raise ValueError("variogram_function: a callable f(params, h) is needed for 'custom'")
        if isinstance(variogram_parameters, dict):
            raise TypeError(
                "variogram_parameters: a list is needed for a custom model, not a dict"
            )
        if variogram_parameters is None:
            raise ValueError("variogram_parameters: a custom model cannot be fitted; give them")
        return ModelChoice("custom", variogram_function, list(variogram_parameters))
    if name == "hole-effect":
        return ModelChoice(name, hole_effect, _hole_effect_parameters(variogram_parameters))
    if name not in VARIOGRAM_MODELS:
        raise ValueError(
            f"variogram_model={variogram_model!r}: expected one of {list(MODEL_NAMES)}"
        )
    nu = 1.5
    if isinstance(variogram_parameters, dict) and name == "matern":
        nu = float({str(k).lower(): v for k, v in variogram_parameters.items()}.get("nu", 1.5))
        if nu not in MATERN_NU:
            raise ValueError(f"variogram_parameters: nu must be one of {MATERN_NU}, got {nu}")
    p = variogram_parameter_list(name, variogram_parameters)
    function = PYKRIGE_FUNCTIONS.get(name, VARIOGRAM_MODELS[name].gamma)
    return ModelChoice(name, function, p, nu)


def fit_parameters(choice: ModelChoice, lags, semivariance, weight: bool) -> np.ndarray:
    """PyKrige's fit of ``choice``'s model to the binned semivariogram."""
    if choice.name != "hole-effect":
        gamma = PYKRIGE_FUNCTIONS.get(choice.name)
        return fit_variogram(lags, semivariance, choice.name, weight, nu=choice.nu, gamma=gamma)
    lags, sv = np.asarray(lags, dtype=np.float64), np.asarray(semivariance, dtype=np.float64)
    if lags.size < 2:
        raise ValueError("cannot fit the hole-effect variogram: fewer than 2 non-empty lag bins")
    x0 = [np.amax(sv) - np.amin(sv), 0.25 * np.amax(lags), np.amin(sv)]
    bounds = ([0.0, 0.0, 0.0], [10.0 * np.amax(sv), np.amax(lags), np.amax(sv)])
    res = least_squares(
        residuals, x0, bounds=bounds, loss="soft_l1", args=(lags, sv, hole_effect, weight)
    )
    return np.asarray(res.x, dtype=np.float64)
