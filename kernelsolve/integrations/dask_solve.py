"""``K.solve(b, alpha)`` over dask arrays: CG whose vectors stay on the workers.

:func:`solve` runs the solver core of :mod:`kernelsolve.linalg`
(:func:`kernelsolve.linalg.cg.cg`, the same loop as a NumPy solve) on dask
arrays chunked along the points as ``K``'s i-variables are. Each product
``(alpha I + K) P`` is a reduction over dask arrays
(:mod:`.dask_reduce`: one engine call per pair of chunks, merged in j
order), and CG persists the iterate, the residual and the direction once
per iteration (its ``lazy.hold``): on a ``distributed`` cluster the
vectors stay chunked on the workers and every iteration submits a graph of
one iteration; only the per-column numbers that decide the loop (``p.Ap``,
``|r|``, ``r.z``: three ``k``-vectors, three round trips per iteration)
come back to the client (``lazy.fetch``).

The preconditioner is Jacobi (``"auto"`` or ``"jacobi"``: ``1 / (alpha +
K_ii)``, computed chunk by chunk), none, or a callable applied to the dask
arrays. The NumPy path's default, the randomly pivoted Cholesky factor, is not
built over dask arrays (its pivots are drawn one block after another from the
whole residual diagonal): ``precond="rpcholesky"`` raises. A solve with the
same preconditioner makes the same iterations as in one process, up to the
rounding of the chunked sums.

Example
-------
>>> import dask.array as da
>>> from kernelsolve import Vi, Vj
>>> x = da.random.default_rng(0).random((2000, 2), chunks=500)
>>> b = da.ones(2000, chunks=500)
>>> K = (-Vi(x).sqdist(Vj(x)) * 20.0).exp()
>>> a = K.solve(b, alpha=0.1)          # a dask array, persisted
>>> a.chunks
((500, 500, 500, 500),)
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..engine import arrays, ir
from ..linalg import precond as precond_mod
from ..linalg.cg import cg
from ..linalg.operator import KernelOperator
from ..linalg.solve import SolveInfo, _rhs
from ..tolerance import CG_RTOL, check_tolerances
from .dask_chunks import dask_array
from .dask_reduce import reduce

__all__ = ["solve"]


#: the keywords of :func:`solve` and their defaults (those of ``LazyTensor.solve``)
OPTIONS = dict(
    solver="auto", x0=None, rtol=CG_RTOL, atol=0.0, maxiter=None, precond="auto", rank=None,
    callback=None, verbose=False, backend=None, tol=None, return_info=False,
)  # fmt: skip


def solve(K, b, alpha: float = 1e-10, **options):
    """Solve ``(alpha I + K) a = b`` by CG over dask arrays (see the module docstring).

    The parameters are those of :func:`kernelsolve.linalg.solve.solve`;
    over dask arrays ``solver`` is "auto" or "cg" (always CG), ``precond``
    "auto" (Jacobi), "jacobi", None or a callable on dask arrays, and
    ``rank`` and ``tol`` are not taken. ``b`` (``(n,)`` or ``(n, k)``),
    ``x0`` and ``K``'s points may be dask or NumPy arrays (NumPy ones are
    chunked as the dask ones).

    Returns
    -------
    a : dask array like ``b``, persisted (its chunks computed, on the
        workers of a distributed cluster), chunked as ``K``'s i-variables
    info : SolveInfo, with ``return_info`` (``info.cg``: CG's record,
        ``info.residual``: the true relative residual per column)
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"solve: unexpected keyword(s) {', '.join(unknown)}")
    o = dict(OPTIONS, **options)
    _refuse(o["solver"], o["rank"], o["tol"], o["precond"])
    check_tolerances(o["rtol"], o["atol"], o["maxiter"])
    alpha = _alpha(alpha)
    K, op, cuts = _dask_kernel(K, b, o["backend"])
    B = _chunked(_rhs(b), cuts, op, "b")
    X0 = None if o["x0"] is None else _chunked(o["x0"], cuts, op, "x0")
    _check_finite(op)
    _sampled_symmetry(op)
    B, X0 = _hold(B, X0)
    M = _preconditioner(op, alpha, o["precond"], cuts)

    def A(P):
        return _hold(K @ P + alpha * P)[0]

    rtol, atol = o["rtol"], o["atol"]
    a, record = cg(
        A, B, X0, rtol=rtol, atol=atol, maxiter=o["maxiter"], M=M, callback=o["callback"],
        verbose=o["verbose"], lazy=_Lazy,
    )  # fmt: skip
    rel, target = _true_residual(K, B, a, alpha, rtol, atol)
    info = SolveInfo(cg=record, preconditioner=M, method="cg")
    info.residual, info.converged_columns = rel, rel <= target
    info.top_eigenvalue = getattr(M, "top_eigenvalue", math.nan)
    return (a, info) if o["return_info"] else a


def _refuse(solver, rank, tol, precond) -> None:
    if solver not in ("auto", "cg"):
        raise ValueError(
            f"solver={solver!r} with dask arrays: the dense Cholesky solve is not built over "
            "dask arrays; use solver='cg' (the default over dask), or NumPy arrays"
        )
    if rank is not None:
        raise ValueError("rank= with dask arrays: the RPCholesky factor is not built over dask")
    if tol is not None:
        raise ValueError("tol= with dask arrays: approximate products are not supported over dask")
    if not (precond in (None, "none", "auto", "jacobi") or callable(precond)):
        raise ValueError(
            f"precond={precond!r} with dask arrays: expected 'auto' (Jacobi), 'jacobi', None "
            "or a callable on dask arrays (the RPCholesky factor is not built over dask)"
        )


def _alpha(alpha) -> float:
    a = float(arrays.to_host(alpha).reshape(())) if arrays.is_array(alpha) else float(alpha)
    if not math.isfinite(a) or a < 0:
        raise ValueError(f"alpha must be finite and >= 0, got {a}")
    return a


def _hold(*xs) -> tuple:
    """``xs`` persisted (None kept): on a distributed cluster their chunks stay
    on the workers and the graphs that follow start from them."""
    import dask

    lazy = [x for x in xs if x is not None]
    kept = iter(dask.persist(*lazy)) if lazy else iter(())
    return tuple(None if x is None else next(kept) for x in xs)


class _Lazy:
    """``cg``'s ``lazy`` for dask arrays: vectors persisted, per-column numbers
    computed (all of one call in one round trip), in the chunks' library."""

    hold = staticmethod(_hold)

    @staticmethod
    def fetch(*xs) -> tuple:
        import dask

        return dask.compute(*xs)


def _dask_kernel(K, b, backend):
    """``K`` with every array of points a dask array cut as its first dask
    i-variable (else as ``b``), its operator (structure checks: a scalar,
    symmetric formula of one point set, no batch) and that cut."""
    if not hasattr(K, "formula"):
        raise TypeError(f"K must be a LazyTensor, got {type(K).__name__}")
    lazy = [x for x, c in zip(K.variables, K.cats) if c != ir.P and arrays.is_dask(x)]
    if not lazy and not arrays.is_dask(b):
        raise TypeError("solve over dask: expected K's points or b to be dask arrays")
    cuts = tuple(lazy[0].chunks[-2]) if lazy else tuple(b.chunks[0])
    leaves = tuple(
        x if c == ir.P or not arrays.is_array(x) else _cut(x, cuts)
        for x, c in zip(K.variables, K.cats)
    )
    kind = arrays.kind_of(next(x for x in leaves if arrays.is_dask(x)))
    K = type(K)._new(K.formula, leaves, K.cats, K.ni, K.nj, K.batchdims, kind)
    op = KernelOperator(K.formula, leaves, K.cats, backend=backend)
    return K, op, cuts


def _chunked(v, cuts: tuple, op: KernelOperator, name: str):
    """``v`` (``(n,)`` or ``(n, k)``) as a dask array cut as ``K``'s points."""
    if not arrays.is_array(v) or v.ndim not in (1, 2) or v.shape[0] != op.n:
        shape = tuple(v.shape) if arrays.is_array(v) else type(v).__name__
        raise ValueError(f"{name} has shape {shape}; expected ({op.n},) or ({op.n}, k)")
    if arrays.dtype_name(v) != op.dtype:
        raise TypeError(
            f"{name} is {arrays.dtype_name(v)}; K holds {op.dtype} arrays: cast {name}"
        )
    return _cut(v, cuts)


def _cut(v, cuts: tuple):
    """``v`` as a dask array cut along its first axis at ``cuts``, one chunk across."""
    chunks = (cuts,) + ((-1,) if v.ndim == 2 else ())
    return v.rechunk(chunks) if arrays.is_dask(v) else dask_array().from_array(v, chunks=chunks)


def _check_finite(op: KernelOperator) -> None:
    import dask

    da = dask_array()
    checks = [da.isfinite(x).all() for x in op.leaves if arrays.is_array(x)]
    if not all(bool(ok) for ok in dask.compute(*checks)):
        raise ValueError("K's points or parameters hold NaN or inf; expected finite values")


def _sampled_symmetry(op: KernelOperator, samples: int = 16) -> None:
    """``K[S, S]`` symmetric for random points ``S``, checked on the host (the
    structure, one point set on both sides, is checked by the operator)."""
    import dask

    S = np.sort(np.random.default_rng(0).choice(op.n, size=min(samples, op.n), replace=False))
    picked = [x[S] if arrays.is_array(x) and c != ir.P else x for x, c in zip(op.leaves, op.cats)]
    host = dask.compute(*picked)
    host = [arrays.to_host(x) if arrays.is_array(x) else x for x in host]
    KernelOperator(op.formula, host, op.cats).check_symmetric(samples=len(S))


def _preconditioner(op: KernelOperator, alpha: float, precond, cuts):
    """Jacobi as a chunk-wise product, None, or the user's callable."""
    if precond is None or precond == "none" or callable(precond):
        return precond if callable(precond) else None
    t0 = time.perf_counter()
    diag = reduce(op.diagonal_request()).rechunk((cuts, -1)).astype(np.float64)
    inv = 1.0 / (diag + alpha)
    inv, ok, top = _hold(inv, ((inv > 0) & (abs(inv) < math.inf)).all(), diag.max())
    if not bool(ok):
        raise ValueError("jacobi: alpha + diag(K) must be positive and finite")
    action = _Jacobi(inv, op.n)
    return precond_mod.Preconditioner(
        "jacobi", action, 0, time.perf_counter() - t0, top_eigenvalue=float(top)
    )


class _Jacobi:
    """``R -> R / (alpha + diag(K))`` on dask arrays, in float64 as the NumPy
    path's Jacobi (``inv``: the reciprocals, ``(n, 1)``, persisted)."""

    def __init__(self, inv, n: int):
        self.inv, self.n = inv, n

    def __call__(self, R):
        return (R.astype(np.float64) * self.inv).astype(R.dtype)


def _true_residual(K, B, a, alpha: float, rtol: float, atol: float):
    """Per column, on the host: ``||b - (alpha I + K) a|| / ||b||`` (norms
    computed on the workers) and the relative target."""
    import dask

    A = a[:, None] if a.ndim == 1 else a
    Bm = B[:, None] if B.ndim == 1 else B
    R = Bm.astype(np.float64) - (K @ A).astype(np.float64) - alpha * A.astype(np.float64)
    rnorm, bnorm = dask.compute((R * R).sum(0) ** 0.5, (Bm.astype(np.float64) ** 2).sum(0) ** 0.5)
    rnorm, bnorm = arrays.to_host(rnorm), arrays.to_host(bnorm)
    scale = np.where(bnorm == 0, 1.0, bnorm)
    return rnorm / scale, np.maximum(rtol * bnorm, atol) / scale
