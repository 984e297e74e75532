"""Batched preconditioned conjugate gradients for symmetric positive definite systems.

:func:`cg` solves ``A X = B`` for every column of ``B`` at once: one product
``A @ P`` per iteration serves all columns (the expensive part when ``A`` is a
kernel matrix), while each column keeps its own step sizes and stops when it
has converged. It uses only arithmetic, ``.sum`` and comparisons on the
arrays, so NumPy arrays, torch tensors (CPU or CUDA) and CuPy arrays all
work, and the result has the type of ``B``.

The signature follows ``scipy.sparse.linalg.cg``: ``A``, ``B``, ``x0``,
``rtol``, ``atol``, ``maxiter``, ``M``, ``callback``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..engine import arrays
from ..progress import Progress
from ..tolerance import CG_RTOL, check_tolerances, keywords

__all__ = ["cg", "CGInfo", "ConvergenceWarning", "NotPositiveDefiniteError"]

DEFAULT_MAXITER = 1000


class ConvergenceWarning(RuntimeWarning):
    """CG stopped at ``maxiter`` before every column reached the tolerance."""


class NotPositiveDefiniteError(ValueError):
    """CG met a direction of non-positive curvature: ``A`` (or ``M``) is not
    symmetric positive definite."""


@dataclass
class CGInfo:
    """What happened in :func:`cg`.

    Attributes
    ----------
    iterations : int
        Products with ``A`` made in the loop (the initial residual of a
        non-zero ``x0`` costs one more).
    residual : numpy.ndarray
        Final relative residual ``||b - A x|| / ||b||`` of every column, from
        the CG recurrence (shape ``B.shape[:-2] + (k,)``).
    converged : bool
        True if every column met ``||r|| <= max(rtol ||b||, atol)``.
    converged_columns : numpy.ndarray
        The same per column.
    history : list[float]
        The largest relative residual over the columns, per iteration.
    """

    iterations: int
    residual: np.ndarray
    converged: bool
    converged_columns: np.ndarray
    history: list


def _start(matmat, Bm, x0, vector: bool, shape):
    """The first iterate and residual: zero and ``B`` (no product), or ``x0``."""
    if x0 is None:
        return Bm * 0, Bm * 1
    X = x0[:, None] if vector else x0
    if tuple(X.shape) != tuple(Bm.shape):
        raise ValueError(f"x0 has shape {tuple(x0.shape)}; expected {tuple(shape)}")
    _check_finite(X, "x0")
    X = X * 1
    return X, Bm - _product(matmat, X, Bm)


@keywords(renamed={"tol": "rtol"}, refused={"eps": "rtol"})
def cg(
    A: Callable,
    B,
    x0=None,
    *,
    rtol: float = CG_RTOL,
    atol: float = 0.0,
    maxiter: int | None = None,
    M: Callable | None = None,
    callback: Callable | None = None,
    verbose: bool = False,
    lazy=None,
):
    """Solve ``A X = B`` for symmetric positive definite ``A``, all columns at once.

    Parameters
    ----------
    A : callable or object with ``@``
        ``A(P)`` (or ``A @ P``) returns the product with an array shaped
        like ``B``.
    B : array, shape ``(n,)``, ``(n, k)`` or ``(..., n, k)``
        Right-hand sides; leading dimensions are independent systems.
    x0 : array like ``B``, optional
        Starting point (default zero, which saves one product with ``A``).
    rtol, atol : float
        Relative residual and absolute floor: column ``b`` has converged when
        ``||b - A x|| <= max(rtol ||b||, atol)`` (defaults 1e-6, pykeops' tolerance,
        and 0; see :mod:`.tolerance`). ``tol=``, scipy's old name of ``rtol``,
        works with a DeprecationWarning.
    maxiter : int, optional
        Most iterations (default 1000). CG warns (:class:`ConvergenceWarning`)
        if a column has not converged by then.
    M : callable, optional
        Preconditioner: ``M(R)`` applies an SPD approximation of ``A^-1``.
    callback : callable, optional
        ``callback(X)`` after every iteration.
    verbose : bool
        Report the iteration and the worst relative residual on stderr
        (:class:`kernelsolve.progress.Progress`: a bar on a terminal, else a line
        at most once per second and one at the end).
    lazy : object, optional
        For arrays whose operations build a graph (dask): ``lazy.hold(*arrays)``
        returns the vectors the loop carries (iterate, residual, direction)
        evaluated and kept where they live, ``lazy.fetch(*arrays)`` the
        per-column numbers that decide the loop computed (the chunks' arrays),
        in one round trip (:mod:`kernelsolve.integrations.dask_solve`).
        Default: arrays as they are (NumPy, torch, CuPy).

    Returns
    -------
    X : array like ``B``
    info : CGInfo

    Raises
    ------
    NotPositiveDefiniteError
        On a search direction ``p`` with ``p.A p <= 0`` (or ``r.M r <= 0``).
    ValueError
        If ``B`` (or ``x0``) holds NaN or inf, the shapes disagree, or ``rtol``,
        ``atol`` or ``maxiter`` is negative (the message names it).

    Example
    -------
    >>> import numpy as np
    >>> A = np.array([[4.0, 1.0], [1.0, 3.0]])
    >>> x, info = cg(lambda p: A @ p, np.array([1.0, 2.0]), rtol=1e-10)
    >>> np.allclose(A @ x, [1.0, 2.0]), info.converged
    (True, True)
    """
    matmat = A if callable(A) else A.__matmul__
    vector = B.ndim == 1
    if B.ndim == 0:
        raise ValueError("B must have at least one dimension (n,), got a scalar")
    Bm = B[:, None] if vector else B
    _check_finite(Bm, "B")
    check_tolerances(rtol, atol, maxiter)
    if maxiter is None:
        maxiter = DEFAULT_MAXITER

    lazy = lazy or _Eager
    X, R = _start(matmat, Bm, x0, vector, B.shape)
    (bnorm,) = lazy.fetch(_colnorm(Bm))
    target = _maximum(bnorm * rtol, atol)
    scale = bnorm + (bnorm == 0)  # relative residuals of zero columns are absolute
    with Progress("cg", enabled=verbose) as report:
        X, R, active, it, history = _iterate(
            matmat, M, Bm, X, R, target, scale, maxiter, callback, report, vector, lazy
        )
    rel = arrays.to_host(_colnorm(R) / scale)
    done = ~arrays.to_host(active)
    info = CGInfo(it, rel, bool(done.all()), done, history)
    if not info.converged:
        warnings.warn(
            f"cg: {int((~done).sum())} of {done.size} column(s) did not reach rtol={rtol:g} "
            f"in {maxiter} iterations (worst relative residual {float(rel.max()):.3e}); "
            "raise maxiter or use a preconditioner",
            ConvergenceWarning,
            stacklevel=3,  # the caller of cg (past tolerance.keywords' wrapper)
        )
    return (X[:, 0] if vector else X), info


def _iterate(matmat, M, Bm, X, R, target, scale, maxiter, callback, report, vector, lazy):
    """The CG loop from ``(X, R)``: returns ``X, R``, the still-active columns, the
    iterations and the history of the worst relative residual."""
    Z = R if M is None else _product(M, R, Bm)
    rnorm, rz = lazy.fetch(_colnorm(R), _coldot(R, Z))
    active = rnorm > target
    X, R, P = lazy.hold(X, R, Z * 1)
    history = [_worst(rnorm / scale)]
    it = 0
    while it < maxiter and bool(active.any()):
        Q = _product(matmat, P, Bm)
        (pq,) = lazy.fetch(_coldot(P, Q))
        bad = active & ~(pq > 0)
        if bool(bad.any()):
            raise NotPositiveDefiniteError(
                f"cg: non-positive curvature p.Ap = {_first(pq, bad):.3g} at iteration "
                f"{it + 1}: the matrix is not symmetric positive definite (for a kernel "
                "system, check that the kernel is positive definite and alpha > 0)"
            )
        step = (rz / (pq + (pq == 0))) * active
        X, R = lazy.hold(X + P * step[..., None, :], R - Q * step[..., None, :])
        (rnorm,) = lazy.fetch(_colnorm(R))
        if not bool(_isfinite(rnorm).all()):
            raise FloatingPointError(
                f"cg: the residual became NaN or inf at iteration {it + 1}; "
                "A or M produced non-finite values"
            )
        active = active & (rnorm > target)
        it += 1
        history.append(_worst(rnorm / scale))
        if callback is not None:
            callback(X[:, 0] if vector else X)
        # at most one line a second off a terminal, and the last one
        report.update(1, f"iteration {it}, max relative residual {history[-1]:.3e}")
        if not bool(active.any()):
            break
        Z = R if M is None else _product(M, R, Bm)
        (rz_new,) = lazy.fetch(_coldot(R, Z))
        if bool((active & ~(rz_new > 0)).any()):
            raise NotPositiveDefiniteError(
                "cg: r.M r <= 0: the preconditioner M is not positive definite"
            )
        beta = (rz_new / (rz + (rz == 0))) * active
        (P,) = lazy.hold(Z + P * beta[..., None, :])
        rz = rz_new
    return X, R, active, it, history


class _Eager:
    """``cg``'s ``lazy`` for arrays that hold their values: nothing to do."""

    @staticmethod
    def hold(*arrays) -> tuple:
        return arrays

    fetch = hold


def _product(f, X, like):
    out = f(X)
    if tuple(out.shape) != tuple(like.shape):
        raise ValueError(
            f"cg: the operator returned shape {tuple(out.shape)} for an input of shape "
            f"{tuple(like.shape)}"
        )
    return out


def _coldot(a, b):
    return (a * b).sum(-2)


def _colnorm(a):
    return _coldot(a, a) ** 0.5


def _maximum(a, value: float):
    return a * (a >= value) + value * (a < value)


def _isfinite(a):
    return (a == a) & (abs(a) < math.inf)


def _worst(a) -> float:
    return float(a.max())


def _first(values, mask) -> float:
    v, m = arrays.to_host(values), arrays.to_host(mask)
    return float(v[m].flat[0])


def _check_finite(a, name: str) -> None:
    if not bool(_isfinite(a).all()):
        raise ValueError(f"{name} holds NaN or inf; expected finite values")
