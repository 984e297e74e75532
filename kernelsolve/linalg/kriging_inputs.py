"""PyKrige's input conventions, shared by the 2-D and 3-D kriging classes: 1-D
coordinate vectors, the anisotropy transform, great-circle distances, the
targets of ``execute`` (grid, points, masked) and the option checks."""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = [
    "EPS",
    "PSEUDO_INVERSES",
    "vector",
    "flag",
    "adjust_for_anisotropy",
    "great_circle_distance",
    "unit_sphere",
    "variance_mode",
    "backend_name",
    "targets",
    "reshape_result",
    "MissingMaskError",
]

EPS = 1.0e-10  # PyKrige's cutoff: a target this close to a datum coincides with it

#: PyKrige's ``pseudo_inv_type`` choices.
PSEUDO_INVERSES = {"pinv": scipy.linalg.pinv, "pinvh": scipy.linalg.pinvh}


def vector(a, name: str) -> np.ndarray:
    """``a`` as a finite 1-D float64 array (squeezed), or a ValueError naming ``name``."""
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


def flag(value, name: str) -> bool:
    """A strict boolean option (PyKrige raises ValueError for ``exact_values="x"``)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _rotation(angles: np.ndarray) -> np.ndarray:
    """PyKrige's rotation by ``-angle`` (2-D) or about x, then y, then z (3-D)."""
    c, s = np.cos(-angles), np.sin(-angles)
    if angles.size == 1:
        return np.array([[c[0], -s[0]], [s[0], c[0]]])
    rx = np.array([[1.0, 0, 0], [0, c[0], -s[0]], [0, s[0], c[0]]])
    ry = np.array([[c[1], 0, s[1]], [0, 1.0, 0], [-s[1], 0, c[1]]])
    rz = np.array([[c[2], -s[2], 0], [s[2], c[2], 0], [0, 0, 1.0]])
    return rz @ ry @ rx


def adjust_for_anisotropy(X, center, scaling, angle) -> np.ndarray:
    """PyKrige's anisotropy transform of ``(n, d)`` points, ``d`` 2 or 3: rotate about
    ``center`` by the angles (degrees; 2-D one, 3-D x, y, z), then stretch every axis
    but the first by ``scaling`` (one value in 2-D, two in 3-D)."""
    X = np.asarray(X, dtype=np.float64) - np.asarray(center, dtype=np.float64)[None, :]
    angles = np.atleast_1d(np.asarray(angle, dtype=np.float64)) * np.pi / 180
    stretch = np.diag(np.concatenate([[1.0], np.atleast_1d(scaling).astype(np.float64)]))
    out = X @ (stretch @ _rotation(angles)).T
    return out + np.asarray(center, dtype=np.float64)[None, :]


def great_circle_distance(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Great-circle distance in degrees between points given by longitude and
    latitude in degrees (broadcasting); the arctangent form, accurate at all
    distances."""
    la1, la2 = np.radians(lat1), np.radians(lat2)
    dlon = np.radians(np.asarray(lon1) - np.asarray(lon2))
    c1, s1, c2, s2, cd = np.cos(la1), np.sin(la1), np.cos(la2), np.sin(la2), np.cos(dlon)
    num = np.hypot(c2 * np.sin(dlon), c1 * s2 - s1 * c2 * cd)
    return np.degrees(np.arctan2(num, s1 * s2 + c1 * c2 * cd))


def unit_sphere(lon, lat) -> np.ndarray:
    """Points on the unit sphere: the chord distance orders pairs as the
    great-circle distance does (a k-d tree finds geographic neighbours)."""
    lo, la = np.radians(lon), np.radians(lat)
    return np.column_stack([np.cos(lo) * np.cos(la), np.sin(lo) * np.cos(la), np.sin(la)])


def variance_mode(variance) -> str | bool:
    """``variance=``: "exact", "local", "auto", or False (also for None)."""
    if variance is False or variance is None:
        return False
    if variance not in ("exact", "local", "auto"):
        raise ValueError(f"variance={variance!r}: expected 'exact', 'local', 'auto' or False")
    return variance


def backend_name(backend: str) -> str:
    """PyKrige's ``backend``: "vectorized", "loop" or "C" (all run the same code here)."""
    if backend not in ("vectorized", "loop", "C"):
        raise ValueError(f"backend={backend!r}: expected 'vectorized', 'loop' or 'C'")
    return backend


class MissingMaskError(OSError, ValueError):
    """No ``mask`` for ``style="masked"`` (PyKrige raises IOError; a ValueError too)."""


def _grid_mask(mask, shape: tuple[int, ...]) -> np.ndarray:
    """PyKrige's mask of a grid of ``shape`` (axes reversed: (ny, nx) or (nz, ny, nx));
    the transposed shape is accepted, as PyKrige does."""
    if mask is None:
        raise MissingMaskError("mask must be given for style='masked'")
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != len(shape):
        raise ValueError(f"mask must be {len(shape)}-D with shape {shape}, got {mask.shape}")
    if mask.shape != shape and mask.shape == shape[::-1]:
        mask = mask.T
    if mask.shape != shape:
        raise ValueError(f"mask must have shape {shape}, got {mask.shape}")
    return mask.ravel()


def targets(style: str, coords, mask=None) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """The points of ``execute``: ``(points (k, d), masked (k,), shape)``.

    ``coords`` are the ``d`` coordinate vectors (``xpoints, ypoints[, zpoints]``);
    "grid" and "masked" span a grid whose result has the shape of the vectors'
    sizes reversed (``(ny, nx)``, ``(nz, ny, nx)``).
    """
    if style not in ("grid", "points", "masked"):
        raise ValueError(f"style={style!r}: expected 'grid', 'points' or 'masked'")
    names = ("xpoints", "ypoints", "zpoints")[: len(coords)]
    vecs = [vector(c, name) for c, name in zip(coords, names)]
    sizes = [v.size for v in vecs]
    if style == "points":
        if len(set(sizes)) != 1:
            raise ValueError(
                f"{', '.join(names)} must have the same length for style='points', got {sizes}"
            )
        return np.column_stack(vecs), np.zeros(sizes[0], dtype=bool), (sizes[0],)
    shape = tuple(sizes[::-1])
    grids = np.meshgrid(*vecs[::-1], indexing="ij")[::-1]
    pts = np.column_stack([g.ravel() for g in grids])
    masked = _grid_mask(mask, shape) if style == "masked" else np.zeros(pts.shape[0], bool)
    return pts, masked, shape


def reshape_result(values: np.ndarray, masked: np.ndarray, shape, as_masked: bool):
    """PyKrige's result layout: the grid's shape, a masked array for the masked
    style (and for its vectorized backend, which returns them for every style)."""
    if as_masked:
        values = np.ma.array(values, mask=masked.copy())
    return values.reshape(shape)
