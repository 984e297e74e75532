"""The log marginal likelihood of a Gaussian process and its gradient: exact and estimated.

With ``A = K + D`` (the kernel matrix of the training points plus its
diagonal: the white noise of the kernel and the estimator's ``alpha``) and
``t`` targets ``y_l`` (columns of ``y``),

    lml = sum_l [-y_l^T A^-1 y_l / 2] - t log det(A) / 2 - t n log(2 pi) / 2,
    d lml / d theta_k = sum_l a_l^T (dA/dtheta_k) a_l / 2 - t tr(A^-1 dA/dtheta_k) / 2,

``a_l = A^-1 y_l``.

* :func:`exact`: scikit-learn's computation (dense Cholesky, ``A^-1`` for the
  trace), to rounding; the n x n x len(theta) gradient array is contracted one
  hyperparameter at a time.
* :func:`estimate`: what exact-GP libraries do at scale (GPyTorch's modified
  batched CG): one preconditioned block CG (:func:`mbcg`) on ``[y | z_1 ... z_p]``
  with ``p`` probes ``z_i ~ N(0, P)``, ``P = F F^T + s I`` the randomly pivoted
  Cholesky preconditioner (:func:`kernelsolve.linalg.precond.rpcholesky`), gives
  ``A^-1 y``, ``A^-1 z_i`` and, from the CG coefficients, a Lanczos tridiagonal
  ``T_i`` per probe. Then

  - ``log det A = log det P + log det(P^-1 A)``, the first exact (Woodbury:
    ``(n - r) log s + log det(s I + F^T F)``), the second by stochastic Lanczos
    quadrature: the mean over probes of ``(z_i^T P^-1 z_i) e_1^T log(T_i) e_1``;
  - ``tr(A^-1 dA_k)`` by Hutchinson: the mean over probes of
    ``(P^-1 z_i)^T dA_k (A^-1 z_i)`` (unbiased: ``E[z z^T] = P``), the products
    ``dA_k V`` one engine reduction of the symbolic derivatives
    (:meth:`.kernels.EngineKernel.gradient_matmat`).

  Variance: both are means of ``p`` independent terms, so their standard error
  falls as ``1 / sqrt(p)``. For Gaussian probes the variance of one term is
  ``2 ||log(P^-1/2 A P^-1/2)||_F^2`` (log-determinant) and
  ``2 ||sym(P^-1/2 dA_k A^-1 P^1/2)||_F^2`` (trace): small when ``P`` is close
  to ``A`` (a good preconditioner makes ``log(P^-1/2 A P^-1/2)`` near 0). The
  estimate reports the empirical standard error of each mean
  (:attr:`Estimate.value_std`, :attr:`Estimate.gradient_std`). The quadratic
  terms are exact up to the CG tolerance; the quadrature adds a bias that
  vanishes as CG converges (the Lanczos steps match ``2k - 1`` moments).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import cho_solve, cholesky

from ..linalg import precond as precond_mod
from ..linalg.cg import ConvergenceWarning, NotPositiveDefiniteError

__all__ = ["exact", "estimate", "mbcg", "Estimate", "MBCGResult"]


def exact(K: np.ndarray, y: np.ndarray, K_gradient=None):
    """scikit-learn's log marginal likelihood of ``y`` (``(n,)`` or ``(n, t)``) under
    ``N(0, K)``, ``K`` including its diagonal; with the gradient when ``K_gradient``
    (``(n, n, T)``) is given.

    Returns ``(lml, gradient or None, L, alpha)``; raises
    ``numpy.linalg.LinAlgError`` when ``K`` is not positive definite.

    Example
    -------
    >>> K = np.array([[2.0, 0.5], [0.5, 1.0]])
    >>> lml, _, _, _ = exact(K, np.array([1.0, -1.0]))
    >>> from scipy.stats import multivariate_normal
    >>> bool(np.isclose(lml, multivariate_normal(cov=K).logpdf([1.0, -1.0])))
    True
    """
    Y = y[:, None] if y.ndim == 1 else y
    L = cholesky(K, lower=True, check_finite=False)
    alpha = cho_solve((L, True), Y, check_finite=False)
    dims = -0.5 * np.einsum("ik,ik->k", Y, alpha)
    dims -= np.log(np.diag(L)).sum()
    dims -= K.shape[0] / 2 * np.log(2 * np.pi)
    gradient = None
    if K_gradient is not None:
        K_inv = cho_solve((L, True), np.eye(K.shape[0]), check_finite=False)
        T, t = K_gradient.shape[2], Y.shape[1]
        gradient = np.empty(T)
        for k in range(T):
            dK = K_gradient[:, :, k]
            quad = np.einsum("il,ij,jl->", alpha, dK, alpha)
            gradient[k] = 0.5 * (quad - t * np.einsum("ij,ji->", K_inv, dK))
    return (
        np.float64(dims.sum()),
        gradient,
        L,
        alpha,
    )  # np.float64 as scikit-learn (NEP 50 promotion)


@dataclass
class MBCGResult:
    """What :func:`mbcg` returns.

    Attributes
    ----------
    x : (n, m) solutions; ``z0`` : (n, m) ``M(B)``, the preconditioned right-hand sides;
    alphas, betas : list of (m,) arrays, the CG step sizes and direction updates;
    steps : (m,) iterations of each column (the size of its Lanczos matrix);
    converged : (m,) bool; iterations : products with ``A``.
    """

    x: np.ndarray
    z0: np.ndarray
    alphas: list = field(repr=False)
    betas: list = field(repr=False)
    steps: np.ndarray
    converged: np.ndarray
    iterations: int

    def tridiagonal(self, c: int) -> np.ndarray:
        """Column ``c``'s Lanczos matrix ``T`` (from the CG coefficients)."""
        k = int(self.steps[c])
        a = np.array([s[c] for s in self.alphas[:k]])
        b = np.array([s[c] for s in self.betas[:k]])
        T = np.zeros((k, k))
        T[0, 0] = 1 / a[0]
        for i in range(1, k):
            T[i, i] = 1 / a[i] + b[i - 1] / a[i - 1]
            T[i, i - 1] = T[i - 1, i] = math.sqrt(max(b[i - 1], 0.0)) / a[i - 1]
        return T


def mbcg(A, M, B: np.ndarray, rtol: float, maxiter: int) -> MBCGResult:
    """Preconditioned CG on every column of ``B`` at once, keeping the coefficients.

    ``A(V)`` and ``M(V)`` act on ``(n, m)`` blocks. Each column stops at
    ``||r|| <= rtol ||b||`` (its coefficients then stay zero). The products keep
    all ``m`` columns: the engine compiles one kernel per column count, and the
    extra columns cost far less than a compilation.

    Example
    -------
    >>> S = np.array([[3.0, 1.0], [1.0, 2.0]])
    >>> res = mbcg(lambda V: S @ V, lambda V: V, np.eye(2), 1e-12, 10)
    >>> bool(np.allclose(res.x, np.linalg.inv(S)))
    True
    """
    n, m = B.shape
    X, R = np.zeros_like(B), B.copy()
    Z = M(R)
    z0, P = Z.copy(), Z.copy()
    rz = np.einsum("ij,ij->j", R, Z)
    bnorm = np.linalg.norm(B, axis=0)
    active = bnorm > 0
    steps, alphas, betas, it = np.zeros(m, dtype=np.int64), [], [], 0
    while active.any() and it < maxiter:
        idx = np.flatnonzero(active)
        P[:, ~active] = 0.0
        AP = A(P)
        it += 1
        pAp = np.einsum("ij,ij->j", P, AP)
        if np.any(pAp[idx] <= 0) or not np.all(np.isfinite(pAp[idx])):
            raise NotPositiveDefiniteError(
                "CG met a direction of non-positive curvature: the kernel matrix plus its "
                "diagonal is not positive definite; increase alpha or add a WhiteKernel"
            )
        a = np.where(active, rz / np.where(active, pAp, 1.0), 0.0)
        X += a * P
        R -= a * AP
        Z = M(R)
        rz_new = np.einsum("ij,ij->j", R, Z)
        b = np.where(active, rz_new / np.where(rz == 0, 1.0, rz), 0.0)
        alphas.append(a)
        betas.append(b)
        steps += active
        active &= np.linalg.norm(R, axis=0) > rtol * bnorm
        P = Z + b * P
        rz = rz_new
    return MBCGResult(X, z0, alphas, betas, steps, ~active, it)


@dataclass
class Estimate:
    """An estimated log marginal likelihood (see the module docstring).

    Attributes
    ----------
    value, value_std : the estimate and its standard error (from the log-determinant's probes).
    gradient, gradient_std : with respect to ``theta`` (None without ``eval_gradient``).
    logdet, logdet_std : ``log det A`` and its standard error.
    iterations : CG products; ``converged`` : every column reached ``rtol``.
    rank : the preconditioner's rank; ``probes`` : their number.
    """

    value: float
    value_std: float
    logdet: float
    logdet_std: float
    iterations: int
    converged: bool
    rank: int
    probes: int
    gradient: np.ndarray | None = None
    gradient_std: np.ndarray | None = None


def _preconditioner(op, s: float, seed: int, max_rank: int):
    """RPCholesky of ``K`` for ``K + s I``: the callable, ``F`` and ``log det P``."""
    n = op.n
    M = precond_mod.rpcholesky(op, s, max_rank=max_rank, seed=seed)
    apply = M.apply
    F = getattr(apply, "F", np.zeros((n, 0)))
    r = F.shape[1]
    logdet = n * math.log(s)
    if r and apply.factor is not None:
        chol = apply.factor[0]
        logdet = (n - r) * math.log(s) + 2 * float(np.log(np.diag(chol)).sum())
    return M, F, logdet


def _slq_samples(res, Z: np.ndarray, t: int, n_probes: int) -> np.ndarray:
    """Stochastic Lanczos quadrature: per probe, ``z^T log(P^-1 A) z`` from the
    Lanczos tridiagonal of its CG column (``z`` normalised by ``P^-1``)."""
    samples = np.empty(n_probes)
    for i in range(n_probes):
        c = t + i
        lam, U = np.linalg.eigh(res.tridiagonal(c))
        norm2 = float(Z[:, i] @ res.z0[:, c])
        samples[i] = norm2 * float(U[0] ** 2 @ np.log(np.maximum(lam, 1e-300)))
    return samples


def estimate(
    kernel,
    X: np.ndarray,
    y: np.ndarray,
    alpha,
    *,
    eval_gradient: bool = False,
    n_probes: int = 16,
    seed: int = 0,
    rtol: float = 1e-6,
    maxiter: int = 1000,
    max_rank: int = precond_mod.DEFAULT_MAX_RANK,
):
    """Estimate the log marginal likelihood (and its gradient) without forming ``A``.

    Parameters
    ----------
    kernel : kernels.EngineKernel
        The translated kernel at the hyperparameters of interest.
    X : (n, d) float64; y : (n,) or (n, t)
    alpha : float or (n,) array
        The estimator's diagonal (added to the kernel's white noise).
    eval_gradient : bool
    n_probes : int
        Probes of the log-determinant and traces (standard error ~ 1/sqrt(n_probes)).
    seed : int
        Seeds the probes and the preconditioner's pivots: one seed gives a
        deterministic function of the hyperparameters (what L-BFGS needs).
    rtol, maxiter : CG's relative residual and iteration cap.
    max_rank : int
        Largest rank of the preconditioner.

    Returns
    -------
    est : Estimate
    a : (n, t) array, ``A^-1 y``
    M : the preconditioner

    Example
    -------
    >>> from sklearn.gaussian_process.kernels import RBF
    >>> from kernelsolve.sklearn.kernels import EngineKernel, translate
    >>> X = np.random.default_rng(0).random((400, 1)); y = np.sin(6 * X[:, 0])
    >>> k = RBF(0.2); ek = EngineKernel(translate(k, 1), k)
    >>> est, a, M = estimate(ek, X, y, 1e-2)
    >>> ref = exact(ek.matrix(X) + 1e-2 * np.eye(400), y)[0]
    >>> bool(abs(est.value - ref) < 4 * est.value_std + 1e-6 * abs(ref))
    True
    """
    Y = y[:, None] if y.ndim == 1 else y
    n, t = Y.shape
    op = kernel.operator(X)
    diag = kernel.shift + np.asarray(alpha, dtype=float)
    s = float(np.min(diag))
    if not s > 0:
        raise ValueError(
            f"the iterative solver needs a positive diagonal (alpha > 0 or a WhiteKernel), got {s}"
        )
    M, F, logdet_P = _preconditioner(op, s, seed, max_rank)
    rng = np.random.default_rng(seed)
    g1 = rng.standard_normal((max_rank, n_probes))[: F.shape[1]]
    Z = F @ g1 + math.sqrt(s) * rng.standard_normal((n, n_probes))
    D = diag if np.ndim(diag) == 0 else diag[:, None]

    def A(V):
        return op.matmat(V) + D * V

    res = mbcg(A, M, np.hstack([Y, Z]), rtol, maxiter)
    if not res.converged.all():
        warnings.warn(
            f"GaussianProcessRegressor: CG did not reach rtol={rtol:g} in {maxiter} iterations "
            f"for {int((~res.converged).sum())} of {res.converged.size} columns; raise maxiter "
            "or the noise (alpha, WhiteKernel)",
            ConvergenceWarning,
            stacklevel=3,
        )
    a = res.x[:, :t]
    samples = _slq_samples(res, Z, t, n_probes)
    logdet = logdet_P + float(samples.mean())
    logdet_std = float(samples.std(ddof=1) / math.sqrt(n_probes)) if n_probes > 1 else math.inf
    value = np.float64(-0.5 * float(np.einsum("ik,ik->", Y, a)) - 0.5 * t * logdet)
    value -= t * n / 2 * math.log(2 * math.pi)
    est = Estimate(
        value, 0.5 * t * logdet_std, logdet, logdet_std, res.iterations,
        bool(res.converged.all()), F.shape[1], n_probes,
    )  # fmt: skip
    if eval_gradient:
        W = kernel.gradient_matmat(X, res.x)  # (n, T, t + p)
        quad = np.einsum("il,ikl->k", a, W[:, :, :t])
        traces = np.einsum("ip,ikp->kp", res.z0[:, t:], W[:, :, t:])  # (T, p)
        est.gradient = 0.5 * (quad - t * traces.mean(axis=1))
        if n_probes > 1:
            est.gradient_std = 0.5 * t * traces.std(axis=1, ddof=1) / math.sqrt(n_probes)
        else:
            est.gradient_std = np.full(len(quad), math.inf)
    return est, a, M
