"""Exact Gaussian process regression with a Matern kernel: hyperparameters by
dense marginal likelihood on a subset, posterior mean on all the data by CG.

The model is ``y = m + f + noise`` with ``f ~ GP(0, outputscale k(|x - x'| / lengthscale))``,
``k`` a Matern kernel of :mod:`.kernels` (nu 0.5, 1.5 or 2.5) and Gaussian noise of
variance ``noise``:

* :func:`fit_gp_hyperparameters` maximises the exact marginal likelihood of a
  (sub)set of the data with dense torch linear algebra and L-BFGS;
* :func:`gp_posterior_mean` solves ``(K + noise I) a = y - m`` on all the data
  by randomly pivoted Cholesky-preconditioned CG (:func:`.solve.solve`, never
  forming ``K``) and returns ``m + K(Xq, X) a`` (one engine reduction);
* :func:`matern_operator` is the kernel matrix as a :class:`.operator.KernelOperator`;
  the LazyTensor of the same kernel is
  ``kernels.matern32(kernels.LAZY, Vi(x / l).sqdist(Vj(x / l)))``.

Hyperparameters are a dict with the keys ``lengthscale``, ``outputscale``,
``noise`` (variances in the units of ``y`` squared) and ``mean``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import dask_predict
from ..engine import ir
from ..tolerance import GP_RTOL, keywords
from . import kernels
from .operator import KernelOperator, kernel_sum
from .solve import SolveInfo, solve

__all__ = [
    "fit_gp_hyperparameters",
    "gp_posterior_mean",
    "matern_operator",
    "PosteriorMean",
    "NOISE_FLOOR",
]

#: Smallest noise variance of the fit (relative to a standardised ``y``).
NOISE_FLOOR = 1e-6


def _matern(nu: float) -> Callable:
    if nu not in kernels.MATERN:
        raise ValueError(f"nu={nu!r}: expected one of {sorted(kernels.MATERN)}")
    return kernels.MATERN[nu]


def matern_operator(X, lengthscale: float, nu: float = 1.5) -> KernelOperator:
    """The Matern kernel matrix ``K_ij = k(|x_i - x_j| / lengthscale)`` of the points ``X``.

    Parameters
    ----------
    X : (n, d) array (NumPy or torch)
        Points; the operator works in their library, dtype and device.
    lengthscale : float
    nu : {0.5, 1.5, 2.5}
        Smoothness of the Matern kernel (:data:`.kernels.MATERN`).

    Returns
    -------
    KernelOperator
        ``K @ V`` as one engine reduction; accepted by :func:`.solve.solve`.

    Example
    -------
    >>> X = np.random.default_rng(0).random((300, 2))
    >>> K = matern_operator(X, 0.5)
    >>> r = np.sqrt(3) * np.linalg.norm(X[:, None] - X[None], axis=-1) / 0.5
    >>> dense = (1 + r) * np.exp(-r)
    >>> bool(np.allclose(K @ np.ones((300, 1)), dense.sum(1, keepdims=True)))
    True
    """
    Xs = _scaled(X, lengthscale)
    return KernelOperator(_kernel_formula(nu, Xs.shape[1]), (Xs, Xs), (ir.I, ir.J))


def _scaled(X, lengthscale: float):
    if not (math.isfinite(lengthscale) and lengthscale > 0):
        raise ValueError(f"lengthscale must be positive and finite, got {lengthscale}")
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {tuple(X.shape)}")
    return X / lengthscale


def _kernel_formula(nu: float, dim: int) -> ir.Node:
    s = ir.make("sqdist", ir.var(0, ir.I, dim), ir.var(1, ir.J, dim))
    return kernels.engine_formula(_matern(nu), s)


@keywords(renamed={"h": "hyperparameters"}, refused={"eps": "rtol"})
def gp_posterior_mean(
    X,
    y,
    Xq,
    hyperparameters: dict,
    *,
    nu: float = 1.5,
    rank: int = 2000,
    rtol: float = GP_RTOL,
    maxiter: int = 500,
    callback: Callable | None = None,
    tol: float | None = None,
) -> tuple[object, SolveInfo]:
    """Posterior mean ``m + K(Xq, X) (K + noise I)^-1 (y - m)`` of a Matern GP.

    ``K`` is ``outputscale`` times the Matern kernel matrix; the system is solved by
    RPCholesky-preconditioned CG (:func:`.solve.solve`) without forming ``K``, and
    the mean at ``Xq`` is one engine reduction.

    Parameters
    ----------
    X : (n, d) array (NumPy or torch)
        Training points; their library, dtype and device are used throughout
        (float32 halves the time of the kernel products; the preconditioner
        works in float64 and ``rtol`` is far above float32 rounding).
    y : (n,) array
        Training values, same library and dtype.
    Xq : (q, d) array
        Where to predict.
    hyperparameters : dict
        ``lengthscale``, ``outputscale``, ``noise``, ``mean`` (as returned by
        :func:`fit_gp_hyperparameters`).
    nu : {0.5, 1.5, 2.5}
        Smoothness of the Matern kernel.
    rank : int
        Rank of the RPCholesky preconditioner (at most ``n``).
    rtol : float
        Relative residual: CG stops when ``||r|| <= rtol ||b||`` (see
        :mod:`.tolerance`). The default 1e-3 is looser than the CG solvers' 1e-6
        because the posterior mean is then already far more accurate than the
        model's own error.
    maxiter : int
        Most CG iterations (a ConvergenceWarning beyond).
    callback : callable, optional
        ``callback(a)`` after every CG iteration.
    tol : float, optional
        CG's products skip the block pairs holding at most ``tol`` of each
        row's ``sum_j |K_ij|`` (:func:`.solve.solve`; ``info.skipped_pairs``
        says how much). None (default): exact. The prediction is exact.

    Returns
    -------
    mean : (q,) array like ``y``
    info : SolveInfo
        CG iterations, residuals and the preconditioner.

    Example
    -------
    >>> import torch
    >>> X = torch.rand(500, 2, dtype=torch.float64); y = torch.sin(6 * X[:, 0])
    >>> h = dict(lengthscale=0.3, outputscale=1.0, noise=1e-2, mean=0.0)
    >>> mu, info = gp_posterior_mean(X, y, X[:3], h, rank=100, rtol=1e-8)
    >>> bool(torch.allclose(mu, y[:3], atol=0.05)), info.converged
    (True, True)
    """
    h = _check_hyperparameters(hyperparameters)
    Xs = _scaled(X, h["lengthscale"])
    f = _kernel_formula(nu, Xs.shape[1])
    K = KernelOperator(f, (Xs, Xs), (ir.I, ir.J), tol=tol)
    # (s k + noise I) a = y - m  <=>  (k + noise / s I)(s a) = y - m: the kernel
    # without its outputscale, and s a is what the prediction sums
    a, info = solve(
        K,
        (y - h["mean"])[:, None],
        alpha=h["noise"] / h["outputscale"],
        rtol=rtol,
        rank=min(rank, K.n),
        maxiter=maxiter,
        callback=callback,
        return_info=True,
    )
    return PosteriorMean(Xs, a, h["lengthscale"], h["mean"], nu)(Xq), info


class PosteriorMean:
    """``m + K(Xq, X) a`` at any ``Xq``: the prediction of :func:`gp_posterior_mean`
    once its system is solved (``Xs = X / lengthscale``, ``a`` the solution). It pickles
    (a dask worker receives it once) and accepts dask arrays and xarray objects.

    Example
    -------
    >>> Xs = np.zeros((1, 2)); p = PosteriorMean(Xs, np.ones((1, 1)), 1.0, 0.5, 0.5)
    >>> p(np.zeros((1, 2))).tolist()
    [1.5]
    """

    def __init__(self, Xs, a, lengthscale: float, mean: float, nu: float = 1.5):
        self.Xs, self.a, self.lengthscale, self.mean, self.nu = Xs, a, lengthscale, mean, nu

    def __call__(self, Xq):
        """The posterior mean at ``Xq`` (q, d): (q,) in ``Xq``'s library."""
        if dask_predict.is_lazy(Xq):
            d, dtype = self.Xs.shape[1], self.a.dtype
            return dask_predict.predict_points(
                self, "__call__", Xq, n_features=d, dtype=dtype, names=("mean",), name="Xq"
            )
        f = _kernel_formula(self.nu, self.Xs.shape[1])
        return kernel_sum(f, _scaled(Xq, self.lengthscale), self.Xs, self.a)[:, 0] + self.mean


def _check_hyperparameters(h: dict) -> dict:
    missing = [k for k in ("lengthscale", "outputscale", "noise", "mean") if k not in h]
    if missing:
        raise ValueError(f"hyperparameters: missing {missing}")
    out = {k: float(h[k]) for k in ("lengthscale", "outputscale", "noise", "mean")}
    for k in ("lengthscale", "outputscale", "noise"):
        if not (math.isfinite(out[k]) and out[k] > 0):
            raise ValueError(f"hyperparameters: {k} must be positive and finite, got {out[k]}")
    return out


def fit_gp_hyperparameters(
    X,
    y,
    device: str = "cpu",
    max_iter: int = 25,
    *,
    nu: float = 1.5,
    num_threads: int | None = None,
) -> dict:
    """Matern + noise + constant mean by exact marginal likelihood (dense torch, L-BFGS).

    The negative log marginal likelihood of the ``n`` points and its gradient come
    from one Cholesky factorisation and one inverse per evaluation (``O(n^3)``,
    float64); L-BFGS with a strong Wolfe line search starts from a lengthscale of
    a tenth of the data's diameter, outputscale 1, noise 0.01 and mean 0, so ``y``
    should be standardised.

    Parameters
    ----------
    X : (n, d) array_like
        Points (a subset of a large training set: ``n`` of a few thousand at most).
    y : (n,) array_like
        Standardised values.
    nu : {0.5, 1.5, 2.5}
        Smoothness of the Matern kernel.
    device : str
        torch device of the dense computation.
    max_iter : int
        Most L-BFGS iterations.
    num_threads : int, optional
        torch threads of the fit on the CPU, restored after it (None: torch's
        setting). One thread is faster when other processes hold the cores:
        torch's threads spin-wait for each other (measured 2x at n = 1500, 7x
        at n = 300).

    Returns
    -------
    dict
        ``lengthscale``, ``outputscale``, ``noise`` (a variance, at least
        :data:`NOISE_FLOOR`) and ``mean``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((200, 2))
    >>> h = fit_gp_hyperparameters(X, np.sin(6 * X[:, 0]) + 0.1 * rng.standard_normal(200))
    >>> 0.003 < h["noise"] < 0.03
    True
    """
    import torch

    kernel = _matern(nu)
    Xs = torch.as_tensor(np.asarray(X), dtype=torch.float64, device=device)
    ys = torch.as_tensor(np.asarray(y), dtype=torch.float64, device=device)
    n = len(ys)
    if Xs.ndim != 2 or Xs.shape[0] != n or n < 2:
        raise ValueError(
            f"X must have shape (n, d) and y (n,) with n >= 2, got {tuple(Xs.shape)} and "
            f"{tuple(ys.shape)}"
        )
    D2 = torch.cdist(Xs, Xs).square()
    eye = torch.eye(n, dtype=torch.float64, device=device)
    span = float((Xs.max(0).values - Xs.min(0).values).norm())
    # log lengthscale, log outputscale, log(noise - floor), mean
    start = [math.log(0.1 * span), 0.0, math.log(1e-2), 0.0]
    raw = torch.tensor(start, dtype=torch.float64, device=device).requires_grad_()
    opt = torch.optim.LBFGS(
        [raw], lr=1.0, max_iter=max_iter, tolerance_change=1e-7, line_search_fn="strong_wolfe"
    )

    def closure():
        # The loss from one Cholesky factorisation, its gradient in K from one
        # inverse (_nll_and_gradient), pulled back through the elementwise kernel by
        # autograd of k(s) alone: O(n^2), where autograd through the factorisation
        # costs several times its O(n^3).
        theta = raw.detach()
        os_, noise = float(theta[1].exp()), float(theta[2].exp()) + NOISE_FLOOR
        s = (D2 * torch.exp(-2 * theta[0])).requires_grad_()  # (d / lengthscale)^2
        k = kernel(kernels.TORCH, s)
        loss, dK, dmean = _nll_and_gradient(os_ * k.detach() + noise * eye, ys - theta[3], n)
        (dk_ds,) = torch.autograd.grad(k, s, grad_outputs=dK)  # dK * k'(s)
        raw.grad = torch.stack(
            [
                -2 * os_ * (dk_ds * s.detach()).sum(),  # ds / dlog(lengthscale) = -2 s
                os_ * (dK * k.detach()).sum(),
                (noise - NOISE_FLOOR) * dK.diagonal().sum(),
                dmean,
            ]
        )
        return loss

    _step_with_threads(opt, closure, num_threads)
    ls, os_, noise, m = (float(v) for v in raw.detach().cpu())
    return {
        "lengthscale": math.exp(ls),
        "outputscale": math.exp(os_),
        "noise": math.exp(noise) + NOISE_FLOOR,
        "mean": m,
    }


def _step_with_threads(opt, closure, num_threads: int | None) -> None:
    """``opt.step(closure)`` with ``num_threads`` torch threads, restored after."""
    import torch

    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        opt.step(closure)
    finally:
        torch.set_num_threads(threads)


def _nll_and_gradient(K, r, n: int):
    """``(r^T K^-1 r / 2 + log det(K) / 2) / n``, its gradient with respect to the
    entries of ``K`` (``(K^-1 - a a^T) / (2 n)``, ``a = K^-1 r``) and with respect to
    the mean (``-sum(a) / n``)."""
    import torch

    with torch.no_grad():
        L = torch.linalg.cholesky(K)
        a = torch.cholesky_solve(r[:, None], L)
        loss = (0.5 * (r[:, None] * a).sum() + L.diagonal().log().sum()) / n
        dK = torch.cholesky_inverse(L)
        dK.sub_(a @ a.T).mul_(0.5 / n)
    return loss, dK, -a.sum() / n
