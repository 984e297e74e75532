"""Preconditioners for ``(alpha I + K) x = b``: randomly pivoted Cholesky and Jacobi.

:func:`rpcholesky` builds a low-rank Nystrom approximation ``K ~ F F^T``
(``F`` of shape ``n x r``) by *randomly pivoted Cholesky* (Chen, Epperly,
Tropp and Webber, 2023): pivots are drawn with probability proportional to
the diagonal of the residual ``K - F F^T``, so that well-covered regions stop
being sampled. It reads ``K`` only through its diagonal and a few columns
(engine reductions, never the full matrix), ``O(n r)`` memory and
``O(n r^2)`` work. Pivots are drawn in blocks: one engine call fills the
columns of a whole block.

The preconditioner applies ``(alpha I + F F^T)^-1`` by the Woodbury identity,
``(v - F (alpha I + F^T F)^-1 F^T v) / alpha`` with one Cholesky factor of the
small ``r x r`` matrix: two thin products with ``F`` and two triangular solves
per application, done in float64 (the subtraction cancels when ``alpha`` is
small). ``F^T F`` is one syrk; no other ``n x r`` matrix is formed.

:func:`jacobi` divides by ``alpha + diag(K)``; it helps only when the
diagonal varies (it is constant for stationary kernels).

:func:`make` picks: ``"auto"`` means RPCholesky when ``n`` is above
:data:`AUTO_RPCHOLESKY_MIN_N`, else Jacobi.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.linalg.blas

from ..engine import arrays
from ..progress import Progress
from ..tolerance import keywords
from .blas import one_blas_thread

__all__ = ["Preconditioner", "rpcholesky", "jacobi", "make", "AUTO_RPCHOLESKY_MIN_N"]

AUTO_RPCHOLESKY_MIN_N = 2000
DEFAULT_MAX_RANK = 500


@dataclass
class Preconditioner:
    """An SPD approximation of ``(alpha I + K)^-1``; call it on ``(n, k)`` arrays.

    Attributes
    ----------
    name : str
        "rpcholesky", "jacobi" or "none".
    rank : int
        Rank of the low-rank part (0 for Jacobi).
    setup_seconds : float
        Time spent building it.
    residual_trace : float
        ``trace(K - F F^T)`` after the last pivot (RPCholesky), relative to
        ``trace(K)``.
    """

    name: str
    apply: object = field(repr=False)
    rank: int = 0
    setup_seconds: float = 0.0
    residual_trace: float = float("nan")

    def __call__(self, R):
        return self.apply(R)


def _to64(R):
    """R in float64, same library and device; and a function casting back."""
    if isinstance(R, np.ndarray) or arrays.is_cupy(R):
        return R.astype(np.float64, copy=False), lambda X: X.astype(R.dtype, copy=False)
    import torch

    return R.to(torch.float64), lambda X: X.to(R.dtype)


def _like(a: np.ndarray, ref):
    """Host float64 ``a`` moved to the library/device of ``ref`` (kept float64)."""
    if isinstance(ref, np.ndarray):
        return a
    if arrays.is_cupy(ref):
        import cupy

        return cupy.asarray(a)
    import torch

    return torch.as_tensor(a, device=ref.device)


def jacobi(diagonal, alpha: float) -> Preconditioner:
    """``R -> R / (alpha + diag(K))``.

    Example
    -------
    >>> import numpy as np
    >>> M = jacobi(np.array([1.0, 3.0]), alpha=1.0)
    >>> M(np.ones((2, 1)))[:, 0]
    array([0.5 , 0.25])
    """
    t0 = time.perf_counter()
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / (arrays.to_host(diagonal).astype(np.float64) + alpha)
    if not np.all(np.isfinite(inv)) or np.any(inv <= 0):
        raise ValueError("jacobi: alpha + diag(K) must be positive and finite")
    cache = {}

    def apply(R):
        R64, back = _to64(R)
        key = (arrays.library(R), arrays.device(R))
        if key not in cache:
            cache[key] = _like(inv, R)[:, None]
        return back(R64 * cache[key])

    return Preconditioner("jacobi", apply, 0, time.perf_counter() - t0)


@keywords(renamed={"tol": "trace_tol"})
def rpcholesky(
    K,
    alpha: float,
    rank: int | None = None,
    *,
    max_rank: int = DEFAULT_MAX_RANK,
    block: int = 64,
    trace_tol: float | None = None,
    seed: int | None = 0,
    verbose: bool = False,
) -> Preconditioner:
    """Randomly pivoted Cholesky preconditioner for ``alpha I + K``.

    Parameters
    ----------
    K : KernelOperator
        Needs ``K.n``, ``K.diagonal()`` and ``K.columns(index)``.
    alpha : float
        The shift of the system, > 0.
    rank : int, optional
        Exact rank to build. By default the rank grows (up to ``max_rank``)
        until ``trace(K - F F^T) <= trace_tol * n``.
    max_rank : int
        Cap of the automatic rank (memory ``8 n max_rank`` bytes).
    block : int
        Pivots drawn per engine call.
    trace_tol : float, optional
        Where the automatic rank stops (default ``alpha``: the residual is then,
        on average over the diagonal, below the shift). Not a residual tolerance
        (see :mod:`.tolerance`); its old name ``tol=`` works with a DeprecationWarning.
    seed : int or None
        Seed of the pivot sampling (results are reproducible by default).
    verbose : bool
        Report the rank and residual trace on stderr as the factor grows
        (:class:`kernelsolve.progress.Progress`).

    Returns
    -------
    Preconditioner

    Example
    -------
    >>> import numpy as np
    >>> from kernelsolve import Vi, Vj
    >>> from kernelsolve.linalg.operator import KernelOperator
    >>> x = np.random.default_rng(0).random((500, 2))
    >>> K = KernelOperator.from_lazy((-Vi(x).sqdist(Vj(x)) * 10.0).exp())
    >>> M = rpcholesky(K, alpha=1e-3, rank=50)
    >>> M.rank
    50
    """
    if not alpha > 0 or not math.isfinite(alpha):
        raise ValueError(f"rpcholesky: alpha must be positive and finite, got {alpha}")
    t0 = time.perf_counter()
    n = K.n
    target_rank = min(rank if rank is not None else max_rank, n)
    if target_rank < 0:
        raise ValueError(f"rpcholesky: rank must be >= 0, got {rank}")
    trace_tol = alpha if trace_tol is None else trace_tol
    diag = arrays.to_host(K.diagonal()).astype(np.float64)
    if not np.all(np.isfinite(diag)) or np.any(diag < 0):
        raise ValueError("rpcholesky: the diagonal of K must be finite and >= 0")
    trace0 = float(diag.sum())
    stop = 0.0 if rank is not None else trace_tol * n
    report = Progress("rpcholesky", target_rank, enabled=verbose, unit="pivots")
    # the small and memory-bound dense work between the engine's column reductions on
    # one BLAS thread (see .blas): the demo's GP loop 4.9 s -> 3.8 s here (9.3 s ->
    # 6.0 s with the whole setup pinned on a loaded machine); the one large syrk of
    # the Woodbury factor keeps every thread (0.9 s against 1.5 s on one)
    with report, one_blas_thread():
        F, d = _pivoted_factor(K, diag, target_rank, stop, block, seed, report)
    apply = _woodbury(F, alpha)
    rel = float(d.sum()) / trace0 if trace0 > 0 else 0.0
    return Preconditioner("rpcholesky", apply, F.shape[1], time.perf_counter() - t0, rel)


def _pivoted_factor(K, diag: np.ndarray, target_rank: int, stop: float, block, seed, report):
    """``F`` (n, r, float64) with ``K ~ F F^T`` by randomly pivoted block Cholesky, and
    the diagonal of ``K - F F^T``; stops at ``target_rank`` or when its trace is <= ``stop``.

    A float32 ``K`` keeps ``F`` in float32 while it grows: its columns are only
    float32-accurate anyway, and the update ``F F[S]^T`` of every block, which reads
    all of ``F`` (memory-bound), then moves half the bytes (2x faster on the demo's
    GP). The preconditioner is exactly ``(alpha I + F F^T)^-1`` for that ``F``."""
    n = K.n
    rng = np.random.default_rng(seed)
    trace0 = float(diag.sum())
    d = diag.copy()
    F = np.zeros((n, target_rank), dtype=np.float32 if K.dtype == "float32" else np.float64)
    r = 0
    while r < target_rank:
        total = float(d.sum())
        if total <= 0 or total <= stop:
            break
        b = min(block, target_rank - r)
        S = np.unique(rng.choice(n, size=b, replace=True, p=d / total))
        C = arrays.to_host(K.columns(S)).astype(np.float64) - F[:, :r] @ F[S, :r].T
        G = C[S]
        # scipy's eigh: numpy's took 45 ms on this 64 x 64 block (its OpenBLAS threads),
        # 1.4 s of the demo's GP preconditioner, against 0.6 ms here
        w, U = scipy.linalg.eigh((G + G.T) / 2, check_finite=False)
        w, U = w[::-1], U[:, ::-1]  # largest first: a truncated block keeps the best
        # drop directions already explained (rounding level of the columns)
        eps = 1e-6 if K.dtype == "float32" else 1e-12
        keep = w > eps * max(float(w.max()), 0.0) if w.size else w > 0
        keep &= w > 0
        if not keep.any():
            break
        new = C @ (U[:, keep] / np.sqrt(w[keep]))
        take = min(new.shape[1], target_rank - r)
        F[:, r : r + take] = new[:, :take]
        r += take
        d = np.maximum(d - (new[:, :take] ** 2).sum(1), 0.0)
        if take == new.shape[1]:
            d[S] = 0.0  # the pivots are now interpolated exactly
        report.update(take, f"rank {r}, residual trace {d.sum() / trace0:.2e} of trace(K)")
    return np.ascontiguousarray(F[:, :r], dtype=np.float64), d


def _woodbury(F: np.ndarray, alpha: float):
    """``R -> (alpha I + F F^T)^-1 R = (R - F (alpha I + F^T F)^-1 F^T R) / alpha``.

    One Cholesky factor of the small ``r x r`` matrix; each application is two thin
    products with ``F`` and two triangular solves, in float64 (the subtraction
    cancels when ``alpha`` is small) and in the library and on the device of ``R``
    (the ``r x k`` solves on the host)."""
    if F.shape[1] == 0:
        return lambda R: R / alpha
    # F^T F by syrk (half of a general product; F.T is F-contiguous: no copy)
    G = scipy.linalg.blas.dsyrk(1.0, F.T, lower=False)
    G[np.diag_indices_from(G)] += alpha
    factor = (scipy.linalg.cholesky(G, lower=False, overwrite_a=True, check_finite=False), False)
    cache = {}

    def apply(R):
        R64, back = _to64(R)
        key = (arrays.library(R), arrays.device(R))
        if key not in cache:
            cache[key] = _like(F, R)
        Fd = cache[key]
        y = scipy.linalg.cho_solve(factor, arrays.to_host(Fd.T @ R64), check_finite=False)
        return back((R64 - Fd @ _like(y, R)) / alpha)

    return apply


def make(
    K,
    alpha: float,
    precond="auto",
    rank: int | None = None,
    *,
    max_rank: int = DEFAULT_MAX_RANK,
    block: int = 64,
    trace_tol: float | None = None,
    seed: int | None = 0,
    verbose: bool = False,
) -> Preconditioner | None:
    """The preconditioner named by ``precond`` for ``alpha I + K``.

    ``precond``: "auto" (RPCholesky above :data:`AUTO_RPCHOLESKY_MIN_N` points
    or when ``rank`` is given, Jacobi below), "rpcholesky", "jacobi", None or
    "none" (no preconditioner), or a callable used as is. ``rank``,
    ``max_rank``, ``block``, ``trace_tol``, ``seed`` and ``verbose`` go to
    :func:`rpcholesky`.

    Example
    -------
    >>> import numpy as np
    >>> from kernelsolve import Vi, Vj
    >>> from kernelsolve.linalg.operator import KernelOperator
    >>> x = np.random.default_rng(0).random((300, 2))
    >>> op = KernelOperator.from_lazy((-Vi(x).sqdist(Vj(x)) * 10.0).exp())
    >>> make(op, 1e-2, "rpcholesky", rank=50).rank
    50
    """
    if precond is None or precond == "none":
        return None
    if callable(precond):
        return precond
    if precond == "auto":
        precond = "rpcholesky" if K.n > AUTO_RPCHOLESKY_MIN_N or rank else "jacobi"
    if precond == "rpcholesky":
        return rpcholesky(
            K,
            alpha,
            rank,
            max_rank=max_rank,
            block=block,
            trace_tol=trace_tol,
            seed=seed,
            verbose=verbose,
        )
    if precond == "jacobi":
        return jacobi(K.diagonal(), alpha)
    raise ValueError(
        f"precond={precond!r}: expected 'auto', 'rpcholesky', 'jacobi', None or a callable"
    )
