"""PyKrige's drift terms of universal kriging, as columns of the drift matrix.

``regional_linear`` (the adjusted coordinates), ``point_log`` (``-Q log r`` to
each point source, in 2-D), ``external_Z`` (a gridded surface, bilinearly
interpolated at the original coordinates, in 2-D), ``specified`` (values given
at the data and at the targets) and ``functional`` (callables of the adjusted
coordinates). The constant term of the unbiasedness condition is not a column
here: the solvers always add it.
"""

from __future__ import annotations

import numpy as np

from .kriging_inputs import adjust_for_anisotropy

__all__ = ["DRIFT_TERMS", "Drift", "bilinear"]

DRIFT_TERMS = ("regional_linear", "point_log", "external_Z", "specified", "functional")
_LOG_OF_ZERO = -100.0  # PyKrige's log distance of a target on a point source


def _term_list(drift_terms, dim: int) -> list[str]:
    if drift_terms is None:
        return []
    if isinstance(drift_terms, str):
        drift_terms = [drift_terms]
    allowed = DRIFT_TERMS if dim == 2 else ("regional_linear", "specified", "functional")
    bad = [t for t in drift_terms if t not in allowed]
    if bad:
        raise ValueError(
            f"drift_terms: {bad} not supported in {dim}-D; expected some of {allowed}"
        )
    return list(drift_terms)


def _listed(values, name: str, what: str) -> list:
    if values is None:
        values = []
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{name}: the {what} must be given in a list, got {type(values).__name__}")
    if len(values) == 0:
        raise ValueError(f"{name}: at least one {what[:-1]} is needed for this drift term")
    return list(values)


def bilinear(gx: np.ndarray, gy: np.ndarray, grid: np.ndarray, x, y) -> np.ndarray:
    """Bilinear interpolation of ``grid[j, i]`` at ``(gx[i], gy[j])`` (ascending
    axes); a ValueError for points outside the grid."""
    x, y = np.atleast_1d(x), np.atleast_1d(y)
    outside = (x < gx[0]) | (x > gx[-1]) | (y < gy[0]) | (y > gy[-1])
    if outside.any():
        raise ValueError(
            "external_drift does not cover the kriging domain (point "
            f"({x[outside][0]}, {y[outside][0]}) is outside)"
        )
    i = np.clip(np.searchsorted(gx, x, side="right") - 1, 0, max(gx.size - 2, 0))
    j = np.clip(np.searchsorted(gy, y, side="right") - 1, 0, max(gy.size - 2, 0))
    i1, j1 = np.minimum(i + 1, gx.size - 1), np.minimum(j + 1, gy.size - 1)
    tx = np.where(i1 > i, (x - gx[i]) / np.where(i1 > i, gx[i1] - gx[i], 1.0), 0.0)
    ty = np.where(j1 > j, (y - gy[j]) / np.where(j1 > j, gy[j1] - gy[j], 1.0), 0.0)
    return (
        grid[j, i] * (1 - tx) * (1 - ty)
        + grid[j, i1] * tx * (1 - ty)
        + grid[j1, i] * (1 - tx) * ty
        + grid[j1, i1] * tx * ty
    )


class Drift:
    """The drift columns of PyKrige's ``drift_terms`` at the data and at targets.

    Parameters
    ----------
    drift_terms : list of str or None
    adjusted, original : (n, d) ndarray
        The data points after and before the anisotropy transform.
    anisotropy : tuple
        ``(center, scaling, angle)`` of the transform (point sources move with it).
    options : dict
        PyKrige's companion arguments: ``point_drift``, ``external_drift``,
        ``external_drift_x``, ``external_drift_y``, ``specified_drift``,
        ``functional_drift``.

    Attributes
    ----------
    terms : list of str
    at_data : (n, m) ndarray
        The drift columns at the data, in PyKrige's order.
    polynomial : bool
        Only ``regional_linear`` (or nothing): the iterative solvers handle it.
    """

    def __init__(self, drift_terms, adjusted, original, anisotropy, options: dict):
        self.dim = adjusted.shape[1]
        self.terms = _term_list(drift_terms, self.dim)
        self.polynomial = set(self.terms) <= {"regional_linear"}
        self.regional_linear = "regional_linear" in self.terms
        n = adjusted.shape[0]
        self.wells = np.zeros((0, 3))
        if "point_log" in self.terms:
            self._read_wells(options.get("point_drift"), anisotropy)
        self.external = None
        if "external_Z" in self.terms:
            self._read_external(options)
        self.specified = []
        if "specified" in self.terms:
            arrays = _listed(options.get("specified_drift"), "specified_drift", "arrays")
            for k, a in enumerate(arrays):
                a = np.asarray(a, dtype=np.float64).ravel()
                if a.size != n:
                    raise ValueError(
                        f"specified_drift[{k}] must hold one value per data point ({n}), "
                        f"got {a.size}"
                    )
                self.specified.append(a)
        self.functions = []
        if "functional" in self.terms:
            self.functions = _listed(
                options.get("functional_drift"), "functional_drift", "callables"
            )
            bad = [k for k, f in enumerate(self.functions) if not callable(f)]
            if bad:
                raise TypeError(f"functional_drift[{bad[0]}] is not callable")
        self.at_data = self.columns(adjusted, original, self.specified)

    @property
    def size(self) -> int:
        """Number of drift columns (without the constant)."""
        return self.at_data.shape[1]

    def _read_wells(self, point_drift, anisotropy) -> None:
        if point_drift is None:
            raise ValueError("point_drift: locations and strengths are needed for 'point_log'")
        wells = np.atleast_2d(np.squeeze(np.asarray(point_drift, dtype=np.float64)))
        if wells.shape[1] != 3:
            raise ValueError(f"point_drift must have rows (x, y, strength), got {wells.shape}")
        center, scaling, angle = anisotropy
        self.wells = wells.copy()
        self.wells[:, :2] = adjust_for_anisotropy(wells[:, :2], center, scaling, angle)

    def _read_external(self, options: dict) -> None:
        grid = options.get("external_drift")
        gx, gy = options.get("external_drift_x"), options.get("external_drift_y")
        if grid is None:
            raise ValueError("external_drift: a grid of values is needed for 'external_Z'")
        if gx is None or gy is None:
            raise ValueError(
                "external_drift_x, external_drift_y: the grid's coordinates are needed"
            )
        grid = np.asarray(grid, dtype=np.float64)
        gx, gy = np.asarray(gx, dtype=np.float64).ravel(), np.asarray(gy, dtype=np.float64).ravel()
        if grid.shape != (gy.size, gx.size):
            if grid.shape != (gx.size, gy.size):
                raise ValueError(
                    f"external_drift has shape {grid.shape}; expected (len(external_drift_y), "
                    f"len(external_drift_x)) = ({gy.size}, {gx.size})"
                )
            grid = grid.T
        self.external = (gx, gy, grid)

    def columns(self, adjusted, original, specified) -> np.ndarray:
        """Drift columns at points (adjusted and original coordinates), with the
        ``specified`` values given for them."""
        cols = []
        if self.regional_linear:
            cols += [adjusted[:, k] for k in range(self.dim)]
        for wx, wy, q in self.wells:
            r = np.hypot(adjusted[:, 0] - wx, adjusted[:, 1] - wy)
            with np.errstate(divide="ignore"):
                logr = np.where(r > 0, np.log(np.where(r > 0, r, 1.0)), _LOG_OF_ZERO)
            cols.append(-q * logr)
        if self.external is not None:
            cols.append(bilinear(*self.external, original[:, 0], original[:, 1]))
        cols += [np.asarray(a, dtype=np.float64).ravel() for a in specified]
        for f in self.functions:
            v = f(*(adjusted[:, k] for k in range(self.dim)))
            cols.append(np.broadcast_to(np.asarray(v, dtype=np.float64), adjusted.shape[:1]))
        if not cols:
            return np.zeros((adjusted.shape[0], 0))
        out = np.column_stack(cols)
        bad = ~np.all(np.isfinite(out), axis=0)
        if bad.any():
            raise ValueError(
                f"drift_terms: column {int(np.argmax(bad))} of the drift ({self.terms}) holds "
                "NaN or inf at some points"
            )
        return out

    def specified_at(self, arrays, style: str, shape: tuple[int, ...]) -> list[np.ndarray]:
        """``specified_drift_arrays`` of ``execute``, flattened in target order."""
        if not self.specified:
            if arrays:
                import warnings

                warnings.warn(
                    "specified_drift_arrays given, but 'specified' is not a drift term: ignored",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return []
        if arrays is None or (isinstance(arrays, (list, tuple)) and len(arrays) == 0):
            raise ValueError("specified_drift_arrays: drift values at the targets are needed")
        arrays = _listed(arrays, "specified_drift_arrays", "arrays")
        if len(arrays) != len(self.specified):
            raise ValueError(
                f"specified_drift_arrays: {len(self.specified)} arrays expected, got {len(arrays)}"
            )
        out = []
        for k, a in enumerate(arrays):
            a = np.asarray(a, dtype=np.float64)
            if style != "points" and a.shape != shape and a.shape == shape[::-1]:
                a = a.T
            if a.shape != shape:
                raise ValueError(
                    f"specified_drift_arrays[{k}] must have shape {shape}, got {a.shape}"
                )
            out.append(a.ravel())
        return out
