"""Ordinary and universal kriging in 3-D with PyKrige's API (``OrdinaryKriging3D``,
``UniversalKriging3D``): the machinery of :mod:`.kriging_base`, with PyKrige's
3-D anisotropy (rotations about x, y, z, then scalings of y and z) and its 3-D
drift terms (regional_linear, specified, functional)."""

from __future__ import annotations

import numpy as np

from ..tolerance import KRIGING_RTOL, keywords
from .kriging_base import KrigingBase
from .kriging_inputs import vector
from .kriging_options import SolverOptions

__all__ = ["OrdinaryKriging3D", "UniversalKriging3D"]


class _Kriging3D(KrigingBase):
    def _read(self, x, y, z, val):
        self.X_ORIG, self.Y_ORIG = vector(x, "x"), vector(y, "y")
        self.Z_ORIG, self.VALUES = vector(z, "z"), vector(val, "val")
        sizes = {self.X_ORIG.size, self.Y_ORIG.size, self.Z_ORIG.size}
        if len(sizes) != 1:
            raise ValueError(
                f"x, y and z must have the same length, got {self.X_ORIG.size}, "
                f"{self.Y_ORIG.size} and {self.Z_ORIG.size}"
            )
        return np.column_stack([self.X_ORIG, self.Y_ORIG, self.Z_ORIG]), self.VALUES

    def _publish_coordinates(self) -> None:
        self.X_ADJUSTED, self.Y_ADJUSTED, self.Z_ADJUSTED = (
            self._pts[:, k].copy() for k in range(3)
        )
        self.XCENTER, self.YCENTER, self.ZCENTER = (float(c) for c in self._center)
        self.anisotropy_scaling_y, self.anisotropy_scaling_z = (float(s) for s in self._scaling)
        self.anisotropy_angle_x, self.anisotropy_angle_y, self.anisotropy_angle_z = (
            float(a) for a in self._angle
        )

    def update_variogram_model(
        self,
        variogram_model,
        variogram_parameters=None,
        variogram_function=None,
        nlags: int = 6,
        weight: bool = False,
        anisotropy_scaling_y: float = 1.0,
        anisotropy_scaling_z: float = 1.0,
        anisotropy_angle_x: float = 0.0,
        anisotropy_angle_y: float = 0.0,
        anisotropy_angle_z: float = 0.0,
    ) -> None:
        """A new variogram (given or fitted) and anisotropy, as PyKrige's method."""
        self._update(
            (variogram_model, variogram_parameters, variogram_function, nlags, weight),
            (
                (anisotropy_scaling_y, anisotropy_scaling_z),
                (anisotropy_angle_x, anisotropy_angle_y, anisotropy_angle_z),
            ),
        )


class OrdinaryKriging3D(_Kriging3D):
    """Ordinary kriging in 3-D (PyKrige's ``OrdinaryKriging3D``).

    ``x, y, z`` are the coordinates and ``val`` the values; the other
    parameters are those of :class:`~.kriging.OrdinaryKriging` (documented
    there, kernelsolve's keyword-only options included), with the 3-D anisotropy
    ``anisotropy_scaling_y``, ``anisotropy_scaling_z`` and
    ``anisotropy_angle_x``, ``_y``, ``_z`` (degrees) in PyKrige's order. The
    statistics (Q1, ...) are computed when first read.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x, y, z = rng.random((3, 100))
    >>> ok = OrdinaryKriging3D(x, y, z, x + y * z, "exponential", [1.0, 1.0, 0.0])
    >>> k, ss = ok.execute("grid", [0.5], [0.2, 0.4], [0.1, 0.5, 0.9])
    >>> k.shape
    (3, 2, 1)
    """

    @keywords(refused={"eps": "rtol"})
    def __init__(
        self,
        x,
        y,
        z,
        val,
        variogram_model: str = "linear",
        variogram_parameters: dict | list | None = None,
        variogram_function=None,
        nlags: int = 6,
        weight: bool = False,
        anisotropy_scaling_y: float = 1.0,
        anisotropy_scaling_z: float = 1.0,
        anisotropy_angle_x: float = 0.0,
        anisotropy_angle_y: float = 0.0,
        anisotropy_angle_z: float = 0.0,
        verbose: bool = False,
        enable_plotting: bool = False,
        exact_values: bool = True,
        pseudo_inv: bool = False,
        pseudo_inv_type: str = "pinv",
        *,
        solver: str = "auto",
        variance: str | bool = "auto",
        exact_variance_max: int | None = None,
        variance_neighbors: int = 64,
        variance_check: int = 10,
        max_pairs: int = 1 << 22,
        rank: int | None = None,
        tol: float | None = None,
        rtol: float = KRIGING_RTOL,
        maxiter: int = 1000,
        neighbors: int = 50,
        coarse: int | str = "auto",
        seed: int = 0,
    ):
        self._setup(
            *self._read(x, y, z, val),
            (variogram_model, variogram_parameters, variogram_function, nlags, weight),
            (
                (anisotropy_scaling_y, anisotropy_scaling_z),
                (anisotropy_angle_x, anisotropy_angle_y, anisotropy_angle_z),
            ),
            dict(
                verbose=verbose,
                enable_plotting=enable_plotting,
                exact_values=exact_values,
                pseudo_inv=pseudo_inv,
                pseudo_inv_type=pseudo_inv_type,
            ),
            (None, {}),
            SolverOptions.pick(locals()),
        )

    def execute(
        self,
        style: str,
        xpoints,
        ypoints,
        zpoints,
        mask=None,
        backend: str = "vectorized",
        n_closest_points: int | None = None,
        *,
        variance: str | bool | None = None,
        dtype: str = "float64",
    ):
        """Kriged values and variances; a grid's results have shape (nz, ny, nx).
        The arguments of :meth:`~.kriging.OrdinaryKriging.execute` with ``zpoints``."""
        return self._execute(
            style,
            (xpoints, ypoints, zpoints),
            mask,
            backend,
            n_closest_points,
            None,
            variance,
            dtype,
        )


class UniversalKriging3D(_Kriging3D):
    """Universal kriging in 3-D (PyKrige's ``UniversalKriging3D``).

    The parameters of :class:`OrdinaryKriging3D`, plus ``drift_terms`` (any of
    "regional_linear", "specified", "functional"), ``specified_drift`` (a list
    of arrays of values at the data) and ``functional_drift`` (a list of
    callables ``f(x, y, z)`` of the adjusted coordinates), as in
    :class:`~.kriging.UniversalKriging`.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x, y, z = rng.random((3, 100))
    >>> uk = UniversalKriging3D(x, y, z, 2 * x + z, "linear", [0.01, 0.0],
    ...                         drift_terms=["regional_linear"])
    >>> k, ss = uk.execute("points", [0.5], [0.5], [0.5])
    >>> bool(abs(k[0] - 1.5) < 1e-6)
    True
    """

    _ordinary = False

    @keywords(refused={"eps": "rtol"})
    def __init__(
        self,
        x,
        y,
        z,
        val,
        variogram_model: str = "linear",
        variogram_parameters: dict | list | None = None,
        variogram_function=None,
        nlags: int = 6,
        weight: bool = False,
        anisotropy_scaling_y: float = 1.0,
        anisotropy_scaling_z: float = 1.0,
        anisotropy_angle_x: float = 0.0,
        anisotropy_angle_y: float = 0.0,
        anisotropy_angle_z: float = 0.0,
        drift_terms=None,
        specified_drift=None,
        functional_drift=None,
        verbose: bool = False,
        enable_plotting: bool = False,
        exact_values: bool = True,
        pseudo_inv: bool = False,
        pseudo_inv_type: str = "pinv",
        *,
        solver: str = "auto",
        variance: str | bool = "auto",
        exact_variance_max: int | None = None,
        variance_neighbors: int = 64,
        variance_check: int = 10,
        max_pairs: int = 1 << 22,
        rank: int | None = None,
        tol: float | None = None,
        rtol: float = KRIGING_RTOL,
        maxiter: int = 1000,
        neighbors: int = 50,
        coarse: int | str = "auto",
        seed: int = 0,
    ):
        self._setup(
            *self._read(x, y, z, val),
            (variogram_model, variogram_parameters, variogram_function, nlags, weight),
            (
                (anisotropy_scaling_y, anisotropy_scaling_z),
                (anisotropy_angle_x, anisotropy_angle_y, anisotropy_angle_z),
            ),
            dict(
                verbose=verbose,
                enable_plotting=enable_plotting,
                exact_values=exact_values,
                pseudo_inv=pseudo_inv,
                pseudo_inv_type=pseudo_inv_type,
            ),
            (
                drift_terms,
                dict(specified_drift=specified_drift, functional_drift=functional_drift),
            ),
            SolverOptions.pick(locals()),
        )
        self.drift_terms = self._drift.terms

    def execute(
        self,
        style: str,
        xpoints,
        ypoints,
        zpoints,
        mask=None,
        backend: str = "vectorized",
        specified_drift_arrays=None,
        *,
        variance: str | bool | None = None,
        dtype: str = "float64",
    ):
        """Kriged values and variances; the arguments of
        :meth:`OrdinaryKriging3D.execute` but ``n_closest_points``, plus
        ``specified_drift_arrays`` (arrays of the grid's shape (nz, ny, nx), or
        (npt,) for "points")."""
        return self._execute(
            style,
            (xpoints, ypoints, zpoints),
            mask,
            backend,
            None,
            specified_drift_arrays,
            variance,
            dtype,
        )
