"""The radial basis function system solved densely, as scipy's RBFInterpolator does.

For ``n`` data points and ``m`` tail monomials the ``(n + m) x (n + m)`` system

    [ Phi + diag(s)  P ] [c]   [d]
    [ P^T            0 ] [w] = [0]

is built (:func:`saddle_matrix`) and solved by LU with partial pivoting (LAPACK
``gesv``, then ``gecon`` on its factors for a condition estimate, ``O(n^2)``), with the polynomial
evaluated on coordinates shifted and scaled to ``[-1, 1]`` (the bounding box of
the points), which keeps ``P`` well conditioned on any domain (1e50-wide boxes
included). A singular system raises :class:`numpy.linalg.LinAlgError`, naming
a rank-deficient ``P`` when that is the cause (e.g. collinear points with a
degree-1 tail); so do repeated points without smoothing and a rank-deficient
``P``, checked up front, where LU's rounding would return garbage (scipy does).

Evaluation, :func:`evaluate`, is one engine reduction over the centres plus the
polynomial: it never forms the ``(q, n)`` evaluation matrix. Its formula has
``epsilon = 1`` and takes ``epsilon * x``, ``epsilon * y`` (as scipy scales them):
one compiled kernel per (kernel, dimension), whatever ``epsilon``.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import scipy.spatial.distance
from numpy.linalg import LinAlgError
from scipy.linalg import lapack

from .blas import one_blas_thread
from .monomials import polynomial_matrix
from .operator import kernel_sum
from .radial import RadialKernel, kernel_formula
from .rbf_checks import repeated_unsmoothed

__all__ = [
    "poly_frame",
    "direct_bytes",
    "saddle_matrix",
    "solve_direct",
    "evaluate",
    "singular_message",
]

ONE_THREAD_MAX = 2000  # LU of at most this many points: one BLAS thread (see solve_direct)


def poly_frame(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``shift``, ``scale`` mapping the bounding box of ``y`` onto ``[-1, 1]^ndim``
    (a zero extent scales by 1)."""
    lo, hi = y.min(0), y.max(0)
    scale = (hi - lo) / 2
    return (hi + lo) / 2, np.where(scale == 0.0, 1.0, scale)


def direct_bytes(n: int, m: int) -> int:
    """Memory of a direct fit: the ``(n + m)^2`` system (factorized in place) and the
    row blocks it is filled from."""
    return 8 * ((n + m) ** 2 + 2 * 256 * n)


def singular_message(y: np.ndarray, powers: np.ndarray, shift, scale) -> str:
    """scipy's wording: a rank-deficient monomial matrix is named as the cause."""
    m = powers.shape[0]
    if m:
        rank = int(np.linalg.matrix_rank(polynomial_matrix((y - shift) / scale, powers)))
        if rank < m:
            return (
                "Singular matrix. The matrix of monomials evaluated at the data point "
                f"coordinates does not have full column rank ({rank}/{m}): lower `degree` "
                "or use points that are not all collinear (coplanar, ...)."
            )
    return "Singular matrix."


def saddle_matrix(
    y: np.ndarray,
    smoothing: np.ndarray,
    phi: RadialKernel,
    epsilon: float,
    powers: np.ndarray,
    shift: np.ndarray,
    scale: np.ndarray,
) -> np.ndarray:
    """The ``(n + m)^2`` saddle matrix, Fortran-ordered (LAPACK factorizes it in place).

    The kernel block is filled in row blocks of distances (``cdist`` on ``epsilon * y``)
    mapped by the kernel's NumPy function, straight into the matrix: measured on two
    cores at n = 5000, 0.10-0.26 s, against 0.56-2.1 s for the engine's
    :func:`.dense.kernel_matrix` (which would also need a second ``n^2`` block).
    """
    n, m = y.shape[0], powers.shape[0]
    ye = y * epsilon
    # Filled by contiguous rows (C order); the matrix is symmetric, so its transpose
    # view is the same matrix in Fortran order, LAPACK's, with no copy.
    S = np.zeros((n + m, n + m))
    for r0 in range(0, n, 256):  # row blocks: no (n, n) temporaries
        r1 = min(n, r0 + 256)
        S[r0:r1, :n] = phi.numpy(scipy.spatial.distance.cdist(ye[r0:r1], ye, "sqeuclidean"))
    S[np.arange(n), np.arange(n)] += smoothing
    if m:
        P = polynomial_matrix((y - shift) / scale, powers)
        S[:n, n:] = P
        S[n:, :n] = P.T
    return S.T


def solve_direct(
    y: np.ndarray,
    d: np.ndarray,
    smoothing: np.ndarray,
    phi: RadialKernel,
    epsilon: float,
    powers: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``shift``, ``scale``, the ``(n + m, k)`` coefficients for data ``d`` (n, k), and
    LAPACK's estimate of the reciprocal condition number (1-norm) of the system: the
    coefficients' relative error is up to about ``2.2e-16 / rcond``.

    Example
    -------
    >>> from kernelsolve.linalg.radial import KERNELS
    >>> from kernelsolve.linalg.saddle import monomial_powers
    >>> y = np.random.default_rng(0).random((50, 2))
    >>> d = np.sin(3 * y[:, :1])
    >>> shift, scale, coeffs, rcond = solve_direct(
    ...     y, d, np.zeros(50), KERNELS["thin_plate_spline"], 1.0, monomial_powers(2, 1))
    >>> f = evaluate(y, y, KERNELS["thin_plate_spline"], 1.0, monomial_powers(2, 1),
    ...              shift, scale, coeffs)
    >>> bool(np.allclose(f, d))
    True
    """
    n, ndim = y.shape
    m = powers.shape[0]
    shift, scale = poly_frame(y)
    # singular systems that LU may miss (rounding leaves a tiny pivot): raise, not garbage
    pair = repeated_unsmoothed(y, smoothing)
    if pair is not None:
        raise LinAlgError(
            f"Singular matrix: points {pair[0]} and {pair[1]} of `y` are equal and not "
            "both smoothed (average or drop repeated points, or give them smoothing > 0)."
        )
    if m and np.linalg.matrix_rank(polynomial_matrix((y - shift) / scale, powers)) < m:
        raise LinAlgError(singular_message(y, powers, shift, scale))
    lhs = saddle_matrix(y, smoothing, phi, epsilon, powers, shift, scale)
    rhs = np.zeros((n + m, d.shape[1]), order="F")
    rhs[:n] = d
    anorm = max(float(np.abs(lhs[:, c : c + 1024]).sum(0).max()) for c in range(0, n + m, 1024))
    # Small systems: one BLAS thread (measured at n = 1500 on two busy cores: 0.1 s,
    # against 0.15-0.55 s with two threads, which wait for each other). gesv, not
    # getrf + getrs: scipy's getrf wrapper measured 2x slower at n = 3000 (1.1 s vs 0.56).
    with one_blas_thread() if n <= ONE_THREAD_MAX else nullcontext():
        lu, _, coeffs, info = lapack.dgesv(lhs, rhs, overwrite_a=True, overwrite_b=True)
    if info != 0 or not np.all(np.isfinite(coeffs)):
        raise LinAlgError(singular_message(y, powers, shift, scale))
    rcond, _ = lapack.dgecon(lu, anorm, norm="1")
    return shift, scale, np.ascontiguousarray(coeffs), float(rcond)


def evaluate(
    x: np.ndarray,
    y: np.ndarray,
    phi: RadialKernel,
    epsilon: float,
    powers: np.ndarray,
    shift: np.ndarray,
    scale: np.ndarray,
    coeffs: np.ndarray,
) -> np.ndarray:
    """``sum_j phi(epsilon |x - y_j|) c_j + P((x - shift) / scale) w`` at ``x`` (q, ndim),
    with ``coeffs = [c; w]`` of shape ``(n + m, k)``: an engine reduction."""
    n, ndim = y.shape
    c = np.ascontiguousarray(coeffs[:n])
    if x.shape[0] == 0:
        return np.zeros((0, coeffs.shape[1]))
    formula = kernel_formula(phi.formula, ndim, 1.0)
    out = kernel_sum(
        formula, np.ascontiguousarray(x * epsilon), np.ascontiguousarray(y * epsilon), c
    )
    if powers.shape[0]:
        out = out + polynomial_matrix((x - shift) / scale, powers) @ coeffs[n:]
    return out
