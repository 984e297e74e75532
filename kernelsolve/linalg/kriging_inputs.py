"""PyKrige's input conventions, shared by the kriging classes and their ``execute``:
1-D coordinate vectors, the anisotropy transform, the variance and drift options."""

from __future__ import annotations

import numpy as np

__all__ = ["vector", "adjust_for_anisotropy", "variance_mode", "drift_term_list"]


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


def adjust_for_anisotropy(X, center, scaling, angle):
    """PyKrige's 2-D anisotropy transform (rotate by -angle about center, stretch y)."""
    X = X - np.asarray(center)[None, :]
    a = angle * np.pi / 180
    stretch = np.array([[1, 0], [0, scaling]])
    rot = np.array([[np.cos(-a), -np.sin(-a)], [np.sin(-a), np.cos(-a)]])
    out = np.dot(stretch, np.dot(rot, X.T)).T
    return out + np.asarray(center)[None, :]


def variance_mode(variance) -> str | bool:
    """``variance=``: "exact", "local", "auto", or False (also for None)."""
    if variance is False or variance is None:
        return False
    if variance not in ("exact", "local", "auto"):
        raise ValueError(f"variance={variance!r}: expected 'exact', 'local', 'auto' or False")
    return variance


def drift_term_list(drift_terms) -> list[str]:
    """PyKrige's ``drift_terms``: only "regional_linear" is supported."""
    if drift_terms is None:
        return []
    if isinstance(drift_terms, str):
        drift_terms = [drift_terms]
    bad = [t for t in drift_terms if t != "regional_linear"]
    if bad:
        raise ValueError(f"drift_terms={list(drift_terms)!r}: only 'regional_linear' is supported")
    return list(drift_terms)
