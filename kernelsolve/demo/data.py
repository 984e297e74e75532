"""The demo's data: matplotlib's Jacksboro fault DEM and its random training split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .deps import require

__all__ = ["DEM_FILE", "TRAIN_FRACTION", "Terrain", "load_dem", "split"]

DEM_FILE = "jacksboro_fault_dem.npz"
TRAIN_FRACTION = 0.2


@dataclass
class Terrain:
    """The DEM as a grid and as scattered points.

    Attributes
    ----------
    z : (ny, nx) float64 array
        Elevations in metres.
    points : (ny * nx, 2) float64 array
        ``(x, y)`` of every cell, row-major like ``z.ravel()``.
    values : (ny * nx,) float64 array
        ``z.ravel()``.
    """

    z: np.ndarray
    points: np.ndarray
    values: np.ndarray


def load_dem() -> Terrain:
    """matplotlib's Jacksboro fault DEM with coordinates scaled to the unit square.

    Coordinates are the grid indices divided by the longer side minus one (the
    true aspect ratio: x in [0, 1], y in [0, 0.853]).

    Example
    -------
    >>> t = load_dem()
    >>> t.z.shape, t.points.shape
    ((344, 403), (138632, 2))
    """
    cbook = require("matplotlib.cbook", "kernelsolve demo (the Jacksboro DEM)")
    with cbook.get_sample_data(DEM_FILE) as dem:
        z = np.asarray(dem["elevation"], dtype=np.float64)
    ny, nx = z.shape
    rows, cols = np.indices(z.shape)
    scale = max(nx, ny) - 1  # one scale for both axes keeps the aspect ratio
    points = np.stack([cols.ravel() / scale, rows.ravel() / scale], axis=1)
    return Terrain(z, points, z.ravel().copy())


def split(
    n_points: int, seed: int, fraction: float = TRAIN_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Random ``(train, test)`` indices: ``int(fraction * n)`` training points
    in random order (their first ``k`` are a random subset too), the rest sorted.

    Example
    -------
    >>> train, test = split(100, seed=0)
    >>> len(train), len(test), len(set(train) | set(test))
    (20, 80, 100)
    """
    order = np.random.default_rng(seed).permutation(n_points)
    k = int(fraction * n_points)
    return order[:k], np.sort(order[k:])
