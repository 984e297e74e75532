"""Argument checks of :class:`.interpolate.KernelInterpolator`, in the order and with
the wording of scipy's ``RBFInterpolator`` (so that code matching scipy's messages
keeps working), plus a few of our own where scipy would go on with garbage
(NaN or infinite input, a non-positive ``epsilon``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .monomials import monomial_powers
from .radial import KERNELS, MIN_DEGREE, SCALE_INVARIANT

__all__ = ["Checked", "check_fit", "check_points", "repeated_unsmoothed"]


@dataclass
class Checked:
    """The fit's arguments, converted: ``d2`` is ``d`` as ``(n, k)`` float64 columns
    (complex data: real and imaginary parts side by side)."""

    y: np.ndarray
    d2: np.ndarray
    d_shape: tuple
    d_dtype: np.dtype
    neighbors: int | None
    smoothing: np.ndarray
    kernel: str
    epsilon: float
    degree: int
    powers: np.ndarray


def _finite(name: str, a: np.ndarray) -> None:
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` holds NaN or inf; expected finite values.")


def _data(d, n: int):
    d = np.asarray(d)
    d_dtype = np.dtype(np.complex128 if np.iscomplexobj(d) else np.float64)
    d = np.ascontiguousarray(d, dtype=d_dtype)
    if d.ndim == 0 or d.shape[0] != n:
        raise ValueError(
            f"Expected the first axis of `d` to have length {n} (got shape {d.shape})."
        )
    _finite("d", d)
    d2 = np.ascontiguousarray(d.reshape(n, -1).view(np.float64))
    return d2, d.shape[1:], d_dtype


def _smoothing(smoothing, n: int) -> np.ndarray:
    s = np.asarray(smoothing, dtype=np.float64)
    if s.ndim == 0:
        s = np.full(n, float(s))
    elif s.shape != (n,):
        raise ValueError(
            f"Expected `smoothing` to be a scalar or have shape ({n},) (got shape {s.shape})."
        )
    if not np.all(np.isfinite(s)):
        raise ValueError("Expected `smoothing` to be finite (it holds NaN or inf).")
    return np.ascontiguousarray(s)


def _epsilon(kernel: str, epsilon) -> float:
    if epsilon is None:
        if kernel in SCALE_INVARIANT:
            return 1.0
        raise ValueError(
            f"`epsilon` must be specified if `kernel` is not one of {set(SCALE_INVARIANT)}."
        )
    epsilon = float(epsilon)
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"`epsilon` must be positive and finite, got {epsilon}.")
    return epsilon


def _degree(kernel: str, degree) -> int:
    min_degree = MIN_DEGREE.get(kernel, -1)
    if degree is None:
        return max(min_degree, 0)
    degree = int(degree)
    if degree < -1:
        raise ValueError(f"`degree` must be at least -1 (got {degree}).")
    if -1 < degree < min_degree:
        warnings.warn(
            f"`degree` should not be below {min_degree} except -1 when `kernel` is "
            f"'{kernel}'. The interpolant may not be uniquely solvable, and the smoothing "
            "parameter may have an unintuitive effect.",
            UserWarning,
            stacklevel=5,  # the caller of KernelInterpolator (past check_fit, keywords)
        )
    return degree


def _neighbors(neighbors, n: int) -> int | None:
    if neighbors is None:
        return None
    if not neighbors >= 1:
        raise ValueError(f"`neighbors` must be at least 1 (or None), got {neighbors}.")
    return int(min(neighbors, n))


def check_fit(y, d, neighbors, smoothing, kernel, epsilon, degree) -> Checked:
    """All fit arguments checked and converted (see the module's docstring)."""
    y = np.ascontiguousarray(y, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"`y` must be a 2-dimensional array (got shape {y.shape}).")
    n, ndim = y.shape
    _finite("y", y)
    d2, d_shape, d_dtype = _data(d, n)
    smoothing = _smoothing(smoothing, n)
    if not isinstance(kernel, str) or kernel.lower() not in KERNELS:
        raise ValueError(f"`kernel` must be one of {set(KERNELS)} (got {kernel!r}).")
    kernel = kernel.lower()
    epsilon = _epsilon(kernel, epsilon)
    degree = _degree(kernel, degree)
    neighbors = _neighbors(neighbors, n)
    powers = monomial_powers(ndim, degree)
    nobs = n if neighbors is None else neighbors
    if powers.shape[0] > nobs:
        raise ValueError(
            f"At least {powers.shape[0]} data points are required when `degree` is "
            f"{degree} and the number of dimensions is {ndim}."
        )
    return Checked(y, d2, d_shape, d_dtype, neighbors, smoothing, kernel, epsilon, degree, powers)


def check_points(x, ndim: int) -> np.ndarray:
    """Evaluation points as a C-contiguous float64 ``(q, ndim)`` array."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"`x` must be a 2-dimensional array (got shape {x.shape}).")
    if x.shape[1] != ndim:
        raise ValueError(
            f"Expected the second axis of `x` to have length {ndim} (got shape {x.shape})."
        )
    _finite("x", x)
    return x


def repeated_unsmoothed(y: np.ndarray, smoothing: np.ndarray, tree: cKDTree | None = None):
    """``(i, j)``, a pair of equal points of which one has zero smoothing (the system is
    then singular), or None. Repeated points that are all smoothed are allowed."""
    if len(y) < 2:
        return None
    tree = cKDTree(y) if tree is None else tree
    dist, idx = tree.query(y, 2)
    idx = np.asarray(idx)
    # the other point of the pair (a repeated point may come first in its own query)
    twin = np.where(idx[:, 1] == np.arange(len(y)), idx[:, 0], idx[:, 1])
    bad = (dist[:, 1] == 0) & ((smoothing == 0) | (smoothing[twin] == 0))
    if not np.any(bad):
        return None
    i = int(np.argmax(bad))
    return i, int(twin[i])
