"""The radial basis function system solved densely, as scipy's RBFInterpolator does.

For ``n`` data points and ``m`` tail monomials the ``(n + m) x (n + m)`` system

    [ Phi + diag(s)  P ] [c]   [d]
    [ P^T            0 ] [w] = [0]

is built (the kernel block ``Phi`` by one engine fill, :func:`.dense.kernel_matrix`)
and solved by LU with partial pivoting (LAPACK ``gesv``), with the polynomial
evaluated on coordinates shifted and scaled to ``[-1, 1]`` (the bounding box of
the points), which keeps ``P`` well conditioned on any domain (1e50-wide boxes
included). The kernel is evaluated on ``epsilon * y`` with a formula of
``epsilon = 1``: one compiled kernel per (kernel, dimension), whatever
``epsilon``. A singular system raises :class:`numpy.linalg.LinAlgError`, naming
a rank-deficient ``P`` when that is the cause (e.g. collinear points with a
degree-1 tail).

Evaluation, :func:`evaluate`, is one engine reduction over the centres plus the
polynomial: it never forms the ``(q, n)`` evaluation matrix.
"""

from __future__ import annotations

import numpy as np
from numpy.linalg import LinAlgError
from scipy.linalg import lapack

from .dense import kernel_matrix
from .monomials import polynomial_matrix
from .operator import kernel_sum
from .radial import RadialKernel, kernel_formula
from .rbf_checks import repeated_unsmoothed

__all__ = ["poly_frame", "direct_bytes", "solve_direct", "evaluate", "singular_message"]


def poly_frame(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``shift``, ``scale`` mapping the bounding box of ``y`` onto ``[-1, 1]^ndim``
    (a zero extent scales by 1)."""
    lo, hi = y.min(0), y.max(0)
    scale = (hi - lo) / 2
    return (hi + lo) / 2, np.where(scale == 0.0, 1.0, scale)


def direct_bytes(n: int, m: int) -> int:
    """Memory of a direct fit: the ``(n + m)^2`` system and the engine's ``n^2``
    kernel block it is copied from."""
    return 8 * ((n + m) ** 2 + n * n)


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


def solve_direct(
    y: np.ndarray,
    d: np.ndarray,
    smoothing: np.ndarray,
    phi: RadialKernel,
    epsilon: float,
    powers: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``shift``, ``scale`` and the ``(n + m, k)`` coefficients for data ``d`` (n, k).

    Example
    -------
    >>> from kernelsolve.linalg.radial import KERNELS
    >>> from kernelsolve.linalg.saddle import monomial_powers
    >>> y = np.random.default_rng(0).random((50, 2))
    >>> d = np.sin(3 * y[:, :1])
    >>> shift, scale, coeffs = solve_direct(
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
    ye = np.ascontiguousarray(y * epsilon)
    lhs = np.zeros((n + m, n + m), order="F")  # LAPACK's layout: factorized in place
    lhs[:n, :n] = kernel_matrix(kernel_formula(phi.formula, ndim, 1.0), ye, ye)
    lhs[np.arange(n), np.arange(n)] += smoothing
    if m:
        P = polynomial_matrix((y - shift) / scale, powers)
        lhs[:n, n:] = P
        lhs[n:, :n] = P.T
    rhs = np.zeros((n + m, d.shape[1]), order="F")
    rhs[:n] = d
    _, _, coeffs, info = lapack.dgesv(lhs, rhs, overwrite_a=True, overwrite_b=True)
    if info > 0 or not np.all(np.isfinite(coeffs)):
        raise LinAlgError(singular_message(y, powers, shift, scale))
    if info < 0:  # pragma: no cover - our own arguments
        raise ValueError(f"gesv: argument {-info} had an illegal value")
    return shift, scale, np.ascontiguousarray(coeffs)


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
