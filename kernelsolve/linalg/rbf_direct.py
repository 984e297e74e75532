"""The radial basis function system solved densely, as scipy's RBFInterpolator does.

For ``n`` data points and ``m`` tail monomials the ``(n + m) x (n + m)`` system

    [ Phi + diag(s)  P ] [c]   [d]
    [ P^T            0 ] [w] = [0]

is solved by one of three factorizations (:func:`solve_direct`), with the polynomial
evaluated on coordinates shifted and scaled to ``[-1, 1]`` (the bounding box of
the points), which keeps ``P`` well conditioned on any domain (1e50-wide boxes
included):

* Cholesky (:func:`solve_cholesky`, ``n^3 / 3`` flops) of the kernel block projected
  onto the null space of ``P^T``, where that block is positive definite: every
  kernel of scipy's list is conditionally positive definite of order ``MIN_DEGREE + 1``
  with scipy's signs, so with ``degree >= MIN_DEGREE`` and smoothing >= 0 it is. Only
  the lower triangle is filled (half the kernel evaluations); ``pocon`` estimates the
  condition number of the projected block;
* Cholesky with diagonal pivoting (:func:`solve_pivoted`, ``pstrf``, ``n r^2`` flops for a
  numerical rank ``r``) of the same block where it is singular to working precision
  (:func:`cluster_rcond`, tested on 200 points first): the equations of the ``r`` pivot
  points solved; the answer may miss such data by about their size, where LU's
  (scipy's) misses them by up to hundreds of times their size;
* LU with partial pivoting (:func:`solve_lu`, LAPACK ``gesv``, ``2 n^3 / 3`` flops, then
  ``gecon``) of the whole system :func:`saddle_matrix`, as scipy: where the hypotheses
  fail (negative smoothing, a lower degree) or ``potrf`` meets a non-positive pivot
  (rounding on a nearly singular system).

A singular system raises :class:`numpy.linalg.LinAlgError`, naming
a rank-deficient ``P`` when that is the cause (e.g. collinear points with a
degree-1 tail); so do repeated points without smoothing and a rank-deficient
``P``, checked up front, where LU's rounding would return garbage (scipy does).

Evaluation, :func:`evaluate`, is one engine reduction over the centres plus the
polynomial: it never forms the ``(q, n)`` evaluation matrix. Its formula has
``epsilon = 1`` and takes ``epsilon * x``, ``epsilon * y`` (as scipy scales them):
one compiled kernel per (kernel, dimension), whatever ``epsilon``.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
import scipy.linalg
import scipy.spatial.distance
from numpy.linalg import LinAlgError
from scipy.linalg import blas, lapack
from scipy.spatial import cKDTree

from ..config import config
from .blas import one_blas_thread
from .monomials import polynomial_matrix
from .operator import kernel_sum
from .radial import MIN_DEGREE, RadialKernel, kernel_formula
from .rbf_checks import repeated_unsmoothed

__all__ = [
    "poly_frame",
    "direct_bytes",
    "saddle_matrix",
    "solve_direct",
    "evaluate",
    "singular_message",
]

#: Points of the cluster that :func:`cluster_rcond` tests (an eigenvalue problem of
#: this size: a few milliseconds).
CLUSTER_POINTS = 200

#: A cluster's smallest eigenvalue at most this fraction of its largest: singular to
#: float64 working precision (see :func:`cluster_rcond`).
CLUSTER_RCOND = 1e-14

ONE_THREAD_MAX = (
    2000  # LU or Cholesky of at most this many points: one BLAS thread (see solve_direct)
)


def poly_frame(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``shift``, ``scale`` mapping the bounding box of ``y`` onto ``[-1, 1]^ndim``
    (a zero extent scales by 1)."""
    lo, hi = y.min(0), y.max(0)
    scale = (hi - lo) / 2
    return (hi + lo) / 2, np.where(scale == 0.0, 1.0, scale)


def small_page_zeros(rows: int, cols: int) -> np.ndarray:
    """A C-ordered float64 zero matrix in its own anonymous ``mmap``, freed with it.

    NumPy madvises its large allocations for transparent huge pages; on this shared
    machine their first touch stalls (memory compaction): measured at n = 5000, the
    first fill of a process took 1.7-3.4 s into ``np.empty``/``np.zeros`` memory and
    0.25-0.28 s into an mmap (ordinary pages), every time.
    """
    buf = mmap.mmap(-1, max(8 * rows * cols, 1))
    return np.frombuffer(buf, dtype=np.float64, count=rows * cols).reshape(rows, cols)


def in_row_blocks(fill: Callable[[int, int], None], n: int, rows: int = 256) -> None:
    """``fill(r0, r1)`` for the row blocks of ``n`` rows, on ``config.num_threads``
    threads (all cores by default): ``cdist`` and NumPy's ufuncs release the GIL, so
    the blocks of a kernel matrix fill in parallel (measured at n = 6000 on two cores:
    0.21-0.28 s against 0.45-0.55 s on one). Row blocks hold no ``(n, n)`` temporary."""
    starts = range(0, n, rows)
    threads = min(len(starts), config.num_threads or os.cpu_count() or 1)
    if threads <= 1:
        for r0 in starts:
            fill(r0, min(n, r0 + rows))
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda r0: fill(r0, min(n, r0 + rows)), starts))


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
    S = small_page_zeros(n + m, n + m)

    def fill(r0: int, r1: int) -> None:
        S[r0:r1, :n] = phi.numpy(scipy.spatial.distance.cdist(ye[r0:r1], ye, "sqeuclidean"))

    in_row_blocks(fill, n)
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, str]:
    """``shift``, ``scale``, the ``(n + m, k)`` coefficients for data ``d`` (n, k),
    LAPACK's estimate of the reciprocal condition number (1-norm) of the system solved
    (the coefficients' relative error is up to about ``2.2e-16 / rcond``) and the
    factorization used, ``"cholesky"`` or ``"lu"``.

    Cholesky (:func:`solve_cholesky`) where the kernel is conditionally positive
    definite on the null space of ``P^T`` (``degree`` at least the kernel's minimum,
    smoothing >= 0) and its factorization succeeds; otherwise LU on the saddle system,
    as scipy.

    Example
    -------
    >>> from kernelsolve.linalg.radial import KERNELS
    >>> from kernelsolve.linalg.saddle import monomial_powers
    >>> y = np.random.default_rng(0).random((50, 2))
    >>> d = np.sin(3 * y[:, :1])
    >>> shift, scale, coeffs, rcond, how = solve_direct(
    ...     y, d, np.zeros(50), KERNELS["thin_plate_spline"], 1.0, monomial_powers(2, 1))
    >>> f = evaluate(y, y, KERNELS["thin_plate_spline"], 1.0, monomial_powers(2, 1),
    ...              shift, scale, coeffs)
    >>> bool(np.allclose(f, d)), how
    (True, 'cholesky')
    """
    m = powers.shape[0]
    shift, scale = poly_frame(y)
    # singular systems that LU may miss (rounding leaves a tiny pivot): raise, not garbage
    tree = cKDTree(y) if len(y) > 1 else None  # shared by the two neighbour checks
    pair = repeated_unsmoothed(y, smoothing, tree)
    if pair is not None:
        raise LinAlgError(
            f"Singular matrix: points {pair[0]} and {pair[1]} of `y` are equal and not "
            "both smoothed (average or drop repeated points, or give them smoothing > 0)."
        )
    P = polynomial_matrix((y - shift) / scale, powers) if m else np.zeros((y.shape[0], 0))
    if m and np.linalg.matrix_rank(P) < m:
        raise LinAlgError(singular_message(y, powers, shift, scale))
    if cholesky_applies(phi, powers, smoothing, y.shape[0]):
        rcond = cluster_rcond(y, smoothing, phi, epsilon, powers, shift, scale, tree=tree)
        if rcond <= CLUSTER_RCOND:  # singular to working precision: pstrf, not LU
            done = solve_pivoted(y, d, smoothing, phi, epsilon, P)
            if done is not None:
                return shift, scale, done[0], max(rcond, 0.0), "pivoted cholesky"
        else:
            done = solve_cholesky(y, d, smoothing, phi, epsilon, P)
            if done is not None:
                return shift, scale, done[0], done[1], "cholesky"
    coeffs, rcond = solve_lu(y, d, smoothing, phi, epsilon, powers, shift, scale)
    return shift, scale, coeffs, rcond, "lu"


def cholesky_applies(phi: RadialKernel, powers: np.ndarray, smoothing: np.ndarray, n: int) -> bool:
    """Whether ``Z^T (Phi + diag(s)) Z`` is positive definite in exact arithmetic, ``Z``
    an orthonormal basis of the null space of ``P^T``: the kernel is (conditionally, of
    order ``MIN_DEGREE + 1``) positive definite with scipy's signs, the tail holds all
    monomials up to that degree, the points are distinct (checked before) and the
    smoothing is not negative."""
    m = powers.shape[0]
    degree = int(powers.sum(1).max()) if m else -1
    return degree >= MIN_DEGREE.get(phi.name, -1) and n > m and not np.any(smoothing < 0)


def cluster_rcond(
    y: np.ndarray,
    smoothing: np.ndarray,
    phi: RadialKernel,
    epsilon: float,
    powers: np.ndarray,
    shift: np.ndarray,
    scale: np.ndarray,
    size: int | None = None,
    tree: cKDTree | None = None,
) -> float:
    """The ratio of the smallest to the largest eigenvalue of the projected kernel
    block on the ``size`` (default :data:`CLUSTER_POINTS`) points nearest to the
    closest pair of ``y`` (1.0 when ``n <= size``; ``tree``: a ``cKDTree`` of ``y``
    to reuse). At most ``CLUSTER_RCOND``, the
    whole system is singular to float64 working precision, ``potrf`` on all points
    would meet a non-positive pivot, and :func:`solve_direct` takes
    :func:`solve_pivoted` instead of paying for a failed Cholesky.

    The block of a subset ``S`` projected on the null space of ``P_S^T`` has a condition
    number at most that of the whole projected block (Courant-Fischer: its quadratic
    form is the whole one restricted to vectors supported on ``S``), so a cluster's
    smallest eigenvalue below ``CLUSTER_RCOND`` times its largest (float64 rounding
    level: ``eigvalsh`` is accurate to ``2.2e-16`` of the largest) means the whole
    system is singular to working precision. Measured on standardised topobathy.npz,
    every kernel of scipy's list and epsilon 0.5-10 at n = 1,500 and 6,000: the test
    named exactly the 22 systems of 48 whose Cholesky failed (at n = 1,500 the failed
    ones had a non-positive cluster eigenvalue, the others a cluster condition number
    of at most 5.4e12); it took 3-140 ms on two loaded cores, the failed Cholesky it
    saves 0.4-3.0 s at n = 6,000.
    """
    n, m = y.shape[0], powers.shape[0]
    size = CLUSTER_POINTS if size is None else size
    if n <= size or m >= size:  # too few points, or no room beside the tail
        return 1.0
    tree = cKDTree(y) if tree is None else tree
    dist, _ = tree.query(y, 2)
    _, S = tree.query(y[int(np.argmin(dist[:, 1]))], size)
    system = saddle_matrix(y[S], smoothing[S], phi, epsilon, powers, shift, scale)
    A = system[:size, :size]
    if m:
        Q, _ = np.linalg.qr(system[:size, size:], mode="complete")
        A = Q[:, m:].T @ A @ Q[:, m:]
    lam = np.linalg.eigvalsh(A)
    return float(lam[0] / lam[-1]) if lam[-1] > 0 else 0.0


def lower_kernel(
    y: np.ndarray, smoothing: np.ndarray, phi: RadialKernel, epsilon: float
) -> np.ndarray:
    """``A = Phi + diag(s)``: a C-ordered array whose upper triangle holds it (its
    transpose, the Fortran-ordered matrix LAPACK sees, holds the lower triangle),
    filled in row blocks from the diagonal on: about half the kernel evaluations of
    the full matrix. The rest is never read."""
    n = y.shape[0]
    ye = y * epsilon
    U = small_page_zeros(n, n)

    def fill(r0: int, r1: int) -> None:
        U[r0:r1, r0:] = phi.numpy(scipy.spatial.distance.cdist(ye[r0:r1], ye[r0:], "sqeuclidean"))

    in_row_blocks(fill, n)
    U[np.arange(n), np.arange(n)] += smoothing
    return U


def symmetric_norm1(U: np.ndarray) -> float:
    """1-norm of the symmetric matrix stored in the upper triangle of ``U`` (C order)."""
    n = U.shape[0]
    sums = np.zeros(n)
    for r0 in range(0, n, 256):
        r1 = min(n, r0 + 256)
        blk = np.abs(U[r0:r1, r0:])
        blk[:, : r1 - r0] = np.triu(blk[:, : r1 - r0])  # below the diagonal: not set
        sums[r0:r1] += blk.sum(1)
        sums[r0:] += blk.sum(0)
    return float((sums - np.abs(np.diagonal(U))).max())


def solve_cholesky(
    y: np.ndarray,
    d: np.ndarray,
    smoothing: np.ndarray,
    phi: RadialKernel,
    epsilon: float,
    P: np.ndarray,
) -> tuple[np.ndarray, float] | None:
    """The saddle system by Cholesky (``n^3 / 3`` flops, against LU's ``2 n^3 / 3``):
    coefficients and ``pocon``'s reciprocal condition estimate, or None where ``potrf``
    meets a non-positive pivot (an ill-conditioned system that rounding made indefinite).

    With ``P = Q R`` (thin QR) and ``Pi = I - Q Q^T``, ``c = Z B^-1 Z^T d`` where
    ``B = Z^T A Z`` (``A = Phi + diag(s)``, ``Z`` an orthonormal basis of the range of
    ``Pi``). Rather than forming ``Z``, ``M = Pi A Pi + delta Q Q^T`` is factorized: its
    eigenvalues are those of ``B`` plus ``delta`` (``m`` times), so with ``delta`` the mean
    eigenvalue of ``B`` it is positive definite with ``B``'s condition number, and
    ``M^-1 Pi d = Z B^-1 Z^T d``. ``M = A - (Y Q^T + Q Y^T)`` is one ``syr2k`` update of
    the lower triangle, ``Y = A Q - Q (Q^T A Q + delta I) / 2``. Then
    ``R w = Q^T (d - A c) = Q^T d - (A Q)^T c``.
    """
    system = projected_block(y, smoothing, phi, epsilon, P)
    if system is None:
        return None
    U, L, Q, R, X = system
    with one_blas_thread():
        anorm = symmetric_norm1(U)
        chol, info = lapack.dpotrf(L, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            return None
        b = np.asfortranarray(d - Q @ (Q.T @ d))
        c, info = lapack.dpotrs(chol, b, lower=1, overwrite_b=1)
    coeffs = _with_tail(c, d, Q, R, X)
    if info != 0 or not np.all(np.isfinite(coeffs)):
        return None
    rcond, _ = lapack.dpocon(chol, anorm, uplo="L")
    return coeffs, float(rcond)


def solve_pivoted(
    y: np.ndarray,
    d: np.ndarray,
    smoothing: np.ndarray,
    phi: RadialKernel,
    epsilon: float,
    P: np.ndarray,
) -> tuple[np.ndarray, int] | None:
    """A system singular to working precision (:func:`cluster_rcond`) by Cholesky
    with diagonal pivoting (``pstrf``, stopping at LAPACK's default tolerance
    ``n eps max(diag)``): the coefficients and the numerical rank ``r``, or None where
    the projected block cannot be formed.

    ``M`` is :func:`solve_cholesky`'s projected block; ``pstrf`` orders the points so
    that the leading ``r x r`` block of ``M`` is factored to working precision and
    the rest of ``M`` is its span to rounding. The equations of those ``r`` points
    are solved, with the other points' coefficients 0. The answer need not meet the
    data (they may not lie in the span of the kernel's columns to working precision:
    a larger epsilon or smoothing is the cure), but it misses them far less than
    LU's: measured on the singular topobathy systems (Gaussian, multiquadric, inverse
    multiquadric and inverse quadratic, n = 1,500 and 6,000), its interpolant misses
    the data by 0.4-1.3 times their largest value, scipy's LU by 2.7-380 times, with
    coefficients up to 1e14-1e16 against 1e17-1e19. It costs ``n r^2`` flops: fit and
    prediction took 0.45-2.6 s against scipy's 3.0-3.5 s at n = 6,000.
    """
    system = projected_block(y, smoothing, phi, epsilon, P)
    if system is None:
        return None
    U, L, Q, R, X = system
    # all BLAS threads, unlike potrf (measured at n = 6,000, rank 5,300: pstrf and
    # potrs 2.2 s on two threads, 2.6 s on one)
    chol, piv, rank, info = lapack.dpstrf(L, tol=-1.0, lower=1, overwrite_a=1)
    if info < 0 or rank < 1:
        return None
    lead = piv[:rank] - 1
    b = d - Q @ (Q.T @ d)
    c = np.zeros_like(b)
    L11 = small_page_zeros(rank, rank).T  # the leading block, Fortran order, no huge pages
    L11[:] = chol[:rank, :rank]
    c[lead], info = lapack.dpotrs(L11, b[lead], lower=1, overwrite_b=1)
    coeffs = _with_tail(c, d, Q, R, X)
    if info != 0 or not np.all(np.isfinite(coeffs)):
        return None
    return coeffs, int(rank)


def projected_block(y, smoothing, phi, epsilon, P):
    """``(U, L, Q, R, X)`` of :func:`solve_cholesky`: ``L`` (a Fortran view of ``U``)
    holds ``M = Pi A Pi + delta Q Q^T`` in its lower triangle, ``P = Q R``, ``X = A Q``;
    None where ``delta`` (the mean eigenvalue of the projected block) is not positive."""
    n, m = P.shape
    U = lower_kernel(y, smoothing, phi, epsilon)
    L = U.T  # Fortran order: the lower triangle holds the matrix
    Q, R = np.linalg.qr(P)
    Q = np.asfortranarray(Q)
    # One BLAS thread throughout: measured on the two shared cores, potrf at n = 3000
    # (load 7-8) took 0.23-0.24 s on one thread and 0.44-1.97 s on two, at n = 6000
    # (load 1.7) 0.89-1.70 s against 2.0-4.3 s; symm 0.02 s against 0.09-0.10 (gesv:
    # 0.40-0.48 s at 3000 on either); the threads wait for each other.
    with one_blas_thread():
        X = blas.dsymm(1.0, L, Q, side=0, lower=1) if m else np.zeros((n, 0))
        G = Q.T @ X
        delta = (float(np.trace(U)) - float(np.trace(G))) / (n - m)  # trace(B) / (n - m)
        if not delta > 0:
            return None
        if m:
            Y = np.asfortranarray(X - Q @ (G + delta * np.eye(m)) / 2)
            blas.dsyr2k(-1.0, Y, Q, beta=1.0, c=L, trans=0, lower=1, overwrite_c=1)
    return U, L, Q, R, X


def _with_tail(c: np.ndarray, d: np.ndarray, Q, R, X) -> np.ndarray:
    """``[c; w]``: ``c`` projected so that ``P^T c = 0`` (up to rounding), and the
    tail's ``w`` from ``R w = Q^T d - (A Q)^T c``."""
    c -= Q @ (Q.T @ c)
    w = scipy.linalg.solve_triangular(R, Q.T @ d - X.T @ c) if Q.shape[1] else None
    return c if w is None else np.concatenate([c, w])


def solve_lu(y, d, smoothing, phi, epsilon, powers, shift, scale) -> tuple[np.ndarray, float]:
    """The saddle system by LU, as scipy: coefficients and ``gecon``'s reciprocal
    condition estimate."""
    n, m = y.shape[0], powers.shape[0]
    lhs = saddle_matrix(y, smoothing, phi, epsilon, powers, shift, scale)
    rhs = np.zeros((n + m, d.shape[1]), order="F")
    rhs[:n] = d
    anorm = float(lapack.dlange("1", lhs))  # one pass, no temporaries: 0.05 s at n = 6000
    # Small systems: one BLAS thread (measured at n = 1500 on two busy cores: 0.1 s,
    # against 0.15-0.55 s with two threads, which wait for each other). gesv, not
    # getrf + getrs: scipy's getrf wrapper measured 2x slower at n = 3000 (1.1 s vs 0.56).
    with one_blas_thread() if n <= ONE_THREAD_MAX else nullcontext():
        lu, _, coeffs, info = lapack.dgesv(lhs, rhs, overwrite_a=True, overwrite_b=True)
    if info != 0 or not np.all(np.isfinite(coeffs)):
        raise LinAlgError(singular_message(y, powers, shift, scale))
    rcond, _ = lapack.dgecon(lu, anorm, norm="1")
    return np.ascontiguousarray(coeffs), float(rcond)


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
