"""Radial basis function interpolation with an iterative, O(n)-memory solve.

:class:`KernelInterpolator` takes the parameters of
``scipy.interpolate.RBFInterpolator`` (kernel, epsilon, smoothing, degree)
and computes the same interpolant; the dense ``(n + m)^2`` system that
limits scipy to a few ten thousand points is replaced by the iterative
saddle-point solver of :mod:`.saddle`, whose products with the kernel matrix
are engine reductions.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..tolerance import INTERPOLATOR_RTOL, check_tolerances, keywords
from .radial import KERNELS, MIN_DEGREE, SCALE_INVARIANT
from .saddle import SaddleInfo, SaddleSolver, monomial_powers

__all__ = ["KernelInterpolator"]


class KernelInterpolator:
    """Radial basis function interpolator in any dimension (drop-in for RBFInterpolator).

    Parameters
    ----------
    y : (n, ndim) array_like
        Data point coordinates (distinct points).
    d : (n, ...) array_like
        Data values at ``y``.
    smoothing : float or (n,) array_like
        Smoothing parameter: 0 interpolates exactly.
    kernel : str
        "thin_plate_spline" (default), "linear", "cubic", "quintic",
        "multiquadric", "inverse_multiquadric", "inverse_quadratic", "gaussian".
    epsilon : float, optional
        Shape parameter (required unless the kernel is scale invariant).
    degree : int, optional
        Degree of the polynomial tail (default: the kernel's minimum, at least 0;
        -1 for none).
    rtol : float
        Relative residual: GMRES stops a data column when ``||r|| <= rtol ||b||``
        (see :mod:`.tolerance` and the Notes). The default 1e-8 is tighter than
        the CG solvers' 1e-6 because scipy's RBFInterpolator, whose drop-in this
        is, solves directly: at 1e-8 the two interpolants agree to about 1e-6.
        ``tol=`` and ``eps=`` are TypeErrors naming ``rtol``.
    maxiter : int
        Most GMRES iterations per data column (default 1000).
    neighbors : int, optional
        Points per approximate cardinal function of the preconditioner (default 50;
        30 with the coarse level and FMM products, where the setup dominates).
    coarse : int or "auto"
        Points of the coarse level of the preconditioner (0: none); "auto": ``n / 20``
        (at least 200, at most ``n / 5`` and 6000) from 1000 points on, unless the
        kernel has decayed within the neighbourhood of a cardinal function (e.g. a
        Gaussian with ``epsilon`` times the spacing near 1; see :mod:`.saddle`).
    products : {"auto", "engine", "fmm"}
        Products with the kernel matrix: engine reductions (``n^2`` kernel
        evaluations each) or, for ``thin_plate_spline`` in 2-D, a fast multipole
        method (``O(n)``, relative error ~1e-14); "auto" takes the FMM from 5000
        quasi-uniform points on.
    verbose : bool
        Progress to stderr.

    Notes
    -----
    ``rtol`` bounds the relative residual of the system (recomputed with a true
    product when GMRES stops; a fit that ends above it, at ``maxiter`` or because
    GMRES stagnated, raises a ConvergenceWarning, and ``info.residual`` gives the
    values), not the error of the coefficients: with a condition number
    ``kappa`` the error can reach ``kappa * rtol`` (flat Gaussian-type kernels,
    ``epsilon * spacing << 1``).
    GMRES stalls on the worst of these systems (and on ``quintic`` beyond a
    few hundred points) and raises a ConvergenceWarning. Duplicate points are
    rejected even with smoothing (scipy accepts them then).

    Thin-plate splines in 2-D scale: 1e5 points fit in well under a minute on two
    cores (FMM products, two-level preconditioner, about 15 iterations), where the
    dense solve of RBFInterpolator would need 75 GiB.

    Attributes
    ----------
    info : SaddleInfo
        Products with the kernel matrix, GMRES iterations, residuals, setup and
        solve times.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.random((500, 2))
    >>> f = KernelInterpolator(y, np.sin(4 * y[:, 0]) * y[:, 1])
    >>> x = rng.random((3, 2))
    >>> bool(np.allclose(f(x), np.sin(4 * x[:, 0]) * x[:, 1], atol=1e-2))
    True
    """

    @keywords(refused={"tol": "rtol", "eps": "rtol"})
    def __init__(
        self,
        y,
        d,
        smoothing=0.0,
        kernel: str = "thin_plate_spline",
        epsilon: float | None = None,
        degree: int | None = None,
        *,
        rtol: float = INTERPOLATOR_RTOL,
        maxiter: int = 1000,
        neighbors: int | None = None,
        coarse: int | str = "auto",
        products: str = "auto",
        verbose: bool = False,
    ):
        check_tolerances(rtol, 0.0, maxiter)
        y = np.ascontiguousarray(y, dtype=np.float64)
        if y.ndim != 2:
            raise ValueError(f"y must be a 2-D array (n, ndim), got shape {y.shape}")
        n, ndim = y.shape
        d = np.asarray(d)
        if np.iscomplexobj(d):
            raise TypeError(
                "d: complex data is not supported; interpolate real and imaginary parts"
            )
        d = np.ascontiguousarray(d, dtype=np.float64)
        if d.ndim == 0 or d.shape[0] != n:
            raise ValueError(f"d must have {n} rows (one per point of y), got shape {d.shape}")
        for name, a in (("y", y), ("d", d)):
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} holds NaN or inf; expected finite values")
        self.d_shape = d.shape[1:]
        d2 = d.reshape(n, -1)
        smoothing = np.asarray(smoothing, dtype=np.float64)
        if smoothing.ndim == 0:
            smoothing = np.full(n, float(smoothing))
        elif smoothing.shape != (n,):
            raise ValueError(
                f"smoothing must be a scalar or have shape ({n},), got {smoothing.shape}"
            )
        if not np.all(np.isfinite(smoothing)) or np.any(smoothing < 0):
            raise ValueError("smoothing must be finite and >= 0")
        kernel = kernel.lower()
        if kernel not in KERNELS:
            raise ValueError(f"kernel={kernel!r}: expected one of {sorted(KERNELS)}")
        if epsilon is None:
            if kernel not in SCALE_INVARIANT:
                raise ValueError(
                    f"epsilon must be given for kernel={kernel!r} (it is not scale invariant)"
                )
            epsilon = 1.0
        epsilon = float(epsilon)
        if not np.isfinite(epsilon) or epsilon <= 0:
            raise ValueError(f"epsilon must be positive and finite, got {epsilon}")
        min_degree = MIN_DEGREE.get(kernel, -1)
        if degree is None:
            degree = max(min_degree, 0)
        degree = int(degree)
        if degree < -1:
            raise ValueError(f"degree must be >= -1, got {degree}")
        if -1 < degree < min_degree or (degree == -1 and min_degree >= 0):
            warnings.warn(
                f"degree={degree} is below {min_degree}, the minimum for kernel={kernel!r}: "
                "the system may be singular or indefinite",
                UserWarning,
                stacklevel=3,  # the caller (past tolerance.keywords' wrapper)
            )
        powers = monomial_powers(ndim, degree)
        if powers.shape[0] > n:
            raise ValueError(
                f"degree={degree} in {ndim} dimensions needs at least {powers.shape[0]} data "
                f"points, got {n}"
            )
        self.y, self.kernel, self.epsilon, self.degree = y, kernel, epsilon, degree
        self.smoothing, self.powers = smoothing, powers
        self._solver = SaddleSolver(
            y,
            KERNELS[kernel],
            epsilon,
            smoothing,
            powers,
            neighbors=neighbors,
            coarse=coarse,
            products=products,
            verbose=verbose,
        )
        self._c, self._w, self.info = self._solver.solve(d2, rtol=rtol, maxiter=maxiter)
        self.info: SaddleInfo

    def __call__(self, x) -> np.ndarray:
        """Values of the interpolant at ``x`` of shape ``(q, ndim)``: ``(q, ...)``."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.y.shape[1]:
            raise ValueError(f"x must have shape (q, {self.y.shape[1]}), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("x holds NaN or inf; expected finite values")
        out = self._solver.evaluate(x, self._c, self._w)
        return out.reshape((x.shape[0],) + self.d_shape)
