"""``K.solve(b, alpha)``: ``(alpha I + K) a = b``, by Cholesky when small, CG when large.

``solver="auto"`` factors ``alpha I + K`` densely (:mod:`.direct`) up to
:data:`.direct.DIRECT_MAX_N` points when the block fits the memory budget of
:mod:`.dense`, and otherwise runs preconditioned CG (:mod:`.cg`) on the
:class:`.operator.KernelOperator` of ``K`` with the preconditioner of
:mod:`.precond`, never forming ``K``. Options that only CG reads (``x0``,
``callback``, a ``precond`` other than "auto", ``rank``) select CG.

Both paths end with one more product: the *true* residual
``b - (alpha I + K) a`` (not CG's recurrence, which drifts from it in
float32) decides ``info.converged``; float64 CG whose recurrence converged
but whose true residual did not restarts once from its solution. A
:class:`.cg.ConvergenceWarning` says when the dtype cannot reach ``rtol``, a
:class:`NearSingularWarning` when ``alpha`` is so small against ``K`` that
``rtol`` sits at the rounding floor of the residual (``u * lambda_max(K) *
||a|| / ||b||``, ``u`` the unit roundoff), with what to change.

In torch the solution is differentiable with respect to ``b``, ``alpha``, the
points and the parameters of ``K``: the backward is one more solve with the
same matrix (the Cholesky factor or the preconditioner of the forward; the
adjoint system, ``alpha I + K`` is symmetric) and one reduction, the gradient
of ``g^T K a`` with ``g`` the adjoint solution, never a differentiation
through the CG iterations or the factorisation.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..engine import arrays, ir
from ..engine.cache import memoized
from ..tolerance import CG_RTOL, check_tolerances, keywords
from . import precond as precond_mod
from .cg import CGInfo, ConvergenceWarning, cg
from .direct import CholeskyFactor, use_direct
from .operator import KernelOperator

__all__ = ["solve", "SolveInfo", "NearSingularWarning", "SOLVERS"]

#: The values of ``solver=``.
SOLVERS = ("auto", "direct", "cg")

#: A near-singular warning when the rounding floor of the residual is above this
#: fraction of the requested ``rtol``.
NEAR_SINGULAR_FRACTION = 0.1


class NearSingularWarning(ConvergenceWarning):
    """``alpha I + K`` is so ill-conditioned that ``rtol`` is near the rounding
    floor of its residual: CG is slow and the solution is sensitive to rounding."""


@dataclass
class SolveInfo:
    """What :func:`solve` did.

    Attributes
    ----------
    method : str
        "direct" (Cholesky) or "cg".
    cg : CGInfo or None
        The CG record (None for "direct").
    preconditioner : Preconditioner or None
        The preconditioner CG used.
    backward_cg : CGInfo or None
        The CG record of the adjoint solve of a torch backward.
    residual : numpy.ndarray or None
        True relative residual ``||b - (alpha I + K) a|| / ||b||`` of every
        column, from one product after the solve.
    converged_columns : numpy.ndarray or None
        Whether each column's true residual meets ``max(rtol ||b||, atol)``.
    top_eigenvalue : float
        The lower bound of the largest eigenvalue of ``K`` used by the
        near-singularity check.
    skipped_pairs : float
        The fraction of the point pairs each product skipped (``tol=``; 0.0
        when exact).
    """

    cg: CGInfo | None = None
    preconditioner: precond_mod.Preconditioner | None = None
    backward_cg: CGInfo | None = None
    extra: dict = field(default_factory=dict)
    method: str = "cg"
    residual: np.ndarray | None = None
    converged_columns: np.ndarray | None = None
    top_eigenvalue: float = float("nan")
    skipped_pairs: float = 0.0

    @property
    def iterations(self) -> int:
        """CG iterations (0 for a direct solve)."""
        return self.cg.iterations if self.cg is not None else 0

    @property
    def converged(self) -> bool:
        """True when every column's true residual met the tolerance."""
        if self.converged_columns is not None:
            return bool(np.all(self.converged_columns))
        return self.cg is not None and self.cg.converged


@keywords(refused={"eps": "rtol"})
def solve(
    K,
    b,
    alpha: float = 1e-10,
    *,
    solver: str = "auto",
    x0=None,
    rtol: float = CG_RTOL,
    atol: float = 0.0,
    maxiter: int | None = None,
    precond="auto",
    rank: int | None = None,
    callback=None,
    verbose: bool = False,
    backend=None,
    tol: float | None = None,
    return_info: bool = False,
):
    """Solve ``(alpha I + K) a = b`` for a symmetric positive (semi-)definite kernel ``K``.

    Parameters
    ----------
    K : LazyTensor or KernelOperator
        Scalar kernel ``K_ij = k(x_i, x_j)`` built from the *same* points on
        both sides (``Vi(x)`` and ``Vj(x)``).
    b : array, shape ``(n,)``, ``(n, k)`` or ``(..., n, k)``; or ``Vi(b)``
        Right-hand sides (leading dimensions: independent systems).
    alpha : float or 0-d tensor
        The shift, >= 0 (default 1e-10, pykeops' default). A torch tensor
        that requires grad gets a gradient.
    solver : {"auto", "direct", "cg"}
        "direct": build ``K`` densely and factor ``alpha I + K`` by Cholesky
        (float64; exact up to rounding, ``O(n^2)`` memory, ``O(n^3)`` work).
        "cg": preconditioned conjugate gradients, never forming ``K``.
        "auto" (default): "direct" up to
        :data:`kernelsolve.linalg.direct.DIRECT_MAX_N` points (3,000) when the
        dense block fits :func:`kernelsolve.linalg.dense.memory_budget`, unless
        an option only CG reads is given (``x0``, ``callback``, a ``precond``
        other than "auto", ``rank``); "cg" otherwise.
    x0 : array like ``b``, optional
        Starting point of CG (default zero).
    rtol, atol : float
        Relative residual and absolute floor: a column ``b`` has converged when
        ``||b - (alpha I + K) a|| <= max(rtol ||b||, atol)`` (defaults 1e-6,
        pykeops' tolerance, and 0; see :mod:`.tolerance`), checked on the true
        residual after the solve. pykeops' ``eps=`` is a TypeError naming ``rtol``.
    maxiter : int, optional
        Most CG iterations (default 1000; a ConvergenceWarning beyond).
    callback, verbose
        As in :func:`kernelsolve.linalg.cg.cg`.
    precond, rank
        CG's preconditioner, "auto", "rpcholesky", "jacobi", None or a callable
        (:mod:`kernelsolve.linalg.precond`; "auto": Jacobi at most 2,000 points
        when the diagonal of ``K`` varies, RPCholesky otherwise) and the rank of
        the RPCholesky factor (automatic by default).
    backend : str, optional
        Engine backend of every reduction ("CPU", "GPU", "reference").
    tol : float, optional
        CG's products skip the block pairs holding at most ``tol`` of each row's
        ``sum_j |K_ij|`` (:mod:`~kernelsolve.engine.ranges.approx_kernel`). None: exact.
    return_info : bool
        Also return a :class:`SolveInfo` (``skipped_pairs``: what ``tol`` skipped).

    Returns
    -------
    a : array like ``b`` (and ``info`` if ``return_info``)

    Raises :class:`~.cg.NotPositiveDefiniteError` if Cholesky fails or CG meets
    non-positive curvature; warns (:class:`~.cg.ConvergenceWarning`) when the true residual
    misses the tolerance (``maxiter``, or float32 that cannot reach ``rtol``) and
    (:class:`NearSingularWarning`) when ``rtol`` is near the rounding floor.

    Example
    -------
    >>> import numpy as np
    >>> from kernelsolve import Vi, Vj
    >>> x = np.random.default_rng(0).random((1000, 3))
    >>> b = np.random.default_rng(1).random((1000, 2))
    >>> K = (-Vi(x).sqdist(Vj(x)) / 0.1).exp()
    >>> a, info = K.solve(b, alpha=1e-2, rtol=1e-8, return_info=True)
    >>> info.method, bool(np.abs(K @ a + 1e-2 * a - b).max() < 1e-6)
    ('direct', True)
    >>> a = K.solve(b, alpha=1e-2, rtol=1e-8, solver="cg")
    """
    check_tolerances(rtol, atol, maxiter)  # before the preconditioner's setup
    op = _operator(K, backend, tol)
    b = _rhs(b)
    _check_inputs(op, b, alpha)
    op.check_symmetric()
    options = dict(
        x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, precond=precond, rank=rank,
        callback=callback, verbose=verbose,
    )  # fmt: skip
    config = _configured(op, options, solver)
    if _wants_grad(b, alpha, op):
        a = _solve_function().apply(config, b, alpha, *op.leaves)
    else:
        a = _forward(config, b, _scalar(alpha))
    config.info.skipped_pairs = op.skipped_pairs
    return (a, config.info) if return_info else a


def _configured(op: KernelOperator, options: dict, solver: str) -> _Config:
    config = _Config(op, options, SolveInfo(method=_method(solver, op, options)))
    if config.info.method == "direct":
        op.tol = None  # the dense factor and its residual check are exact
    return config


def _operator(K, backend, tol) -> KernelOperator:
    if not isinstance(K, KernelOperator):
        return KernelOperator.from_lazy(K, backend=backend, tol=tol)
    if tol is not None:
        raise ValueError("tol= with a KernelOperator: build the operator with tol= instead")
    return K


def _wants_grad(b, alpha, op: KernelOperator) -> bool:
    """True when a torch input requires grad (and grad mode is on)."""
    if arrays.library(b) != arrays.TORCH:
        return False
    import torch

    tensors = [b, alpha] + list(op.leaves)
    return torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in tensors
    )


_CG_ONLY = {"x0": None, "callback": None, "precond": "auto", "rank": None}


def _method(solver, op: KernelOperator, options: dict) -> str:
    """ "direct" or "cg" for ``solver=`` (see :func:`solve`)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}: expected one of {', '.join(map(repr, SOLVERS))}")
    cg_options = [k for k, default in _CG_ONLY.items() if options[k] is not default]
    if solver == "direct":
        if cg_options:
            raise ValueError(
                f"solver='direct' takes no {', '.join(cg_options)} (options of CG); "
                "use solver='cg' or drop them"
            )
        if op.lib not in ("numpy", "torch"):
            raise TypeError(f"solver='direct' takes NumPy or torch arrays, not {op.lib}")
        return "direct"
    if solver == "cg" or cg_options or op.lib not in ("numpy", "torch"):
        return "cg"
    return "direct" if use_direct(op.n, np.dtype(op.dtype).itemsize, op.device) else "cg"


@dataclass
class _Config:
    """One solve: the operator, the options, the info it fills and, once built,
    the Cholesky factor (reused by the backward)."""

    op: KernelOperator
    options: dict
    info: SolveInfo
    factor: CholeskyFactor | None = None


def _forward(config: _Config, b, alpha: float, adjoint: bool = False):
    """``(alpha I + K)^-1 b`` by the method of ``config.info``; records the run in
    the info (in ``backward_cg`` when ``adjoint``) and checks the true residual."""
    op, options, info = config.op, config.options, config.info
    if info.method == "direct":
        if config.factor is None:
            config.factor = CholeskyFactor(op, alpha)
        a = config.factor.solve(b)
        top, recurrence_ok = config.factor.top_eigenvalue, True
    else:
        if adjoint:
            options = dict(options, x0=None, callback=None)
        if info.preconditioner is None and options["precond"] is not None:
            kind = options["precond"]
            if alpha == 0 and kind == "auto":
                kind = "jacobi"  # the low-rank Woodbury form needs alpha > 0
            info.preconditioner = precond_mod.make(
                op, alpha, kind, options["rank"], verbose=options["verbose"]
            )
        a, record = _cg(op, b, alpha, options, info.preconditioner)
        top, recurrence_ok = _top_eigenvalue(op, info.preconditioner), record.converged
    rel, target = _true_residual(op, b, a, alpha, options["rtol"], options["atol"])
    if info.method == "cg" and not (rel <= target).all() and recurrence_ok:
        if op.dtype == "float64":
            # the recurrence drifted from the true residual: restart once from a
            a, second = _cg(op, b, alpha, dict(options, x0=a), info.preconditioner)
            record = _joined(record, second)
            rel, target = _true_residual(op, b, a, alpha, options["rtol"], options["atol"])
            recurrence_ok = second.converged
    if info.method == "cg":
        if adjoint:
            info.backward_cg = record
        else:
            info.cg = record
    if not adjoint:
        info.residual, info.converged_columns = rel, rel <= target
        info.top_eigenvalue = top
    _diagnose(op, b, a, alpha, rel, target, top, options["rtol"], recurrence_ok, info.method)
    return a


def _cg(op: KernelOperator, b, alpha: float, options: dict, M):
    def A(P):
        return op.matmat(P) + alpha * P

    return cg(
        A,
        b,
        options["x0"],
        rtol=options["rtol"],
        atol=options["atol"],
        maxiter=options["maxiter"],
        M=M,
        callback=options["callback"],
        verbose=options["verbose"],
    )


def _joined(first: CGInfo, second: CGInfo) -> CGInfo:
    """One record of a CG run and its restart (the restart's residuals)."""
    return CGInfo(
        first.iterations + second.iterations,
        second.residual,
        second.converged,
        second.converged_columns,
        first.history + second.history[1:],
    )


@memoized("solve.function", maxsize=1)
def _solve_function():
    """The torch autograd.Function of a solve, built on first use (torch is optional)."""
    import torch

    class Solve(torch.autograd.Function):
        @staticmethod
        def forward(ctx, config, b, alpha, *leaves):
            a = _forward(config, b.detach(), _scalar(alpha))
            ctx.config = config
            ctx.alpha_is_tensor = isinstance(alpha, torch.Tensor)
            ctx.alpha_shape = alpha.shape if ctx.alpha_is_tensor else ()
            ctx.alpha = _scalar(alpha)
            ctx.numbers = [None if isinstance(x, torch.Tensor) else x for x in leaves]
            ctx.save_for_backward(a, *[x for x in leaves if isinstance(x, torch.Tensor)])
            return a

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad_a):
            a, *tensors = ctx.saved_tensors
            config = ctx.config
            it = iter(tensors)
            leaves = [next(it) if x is None else x for x in ctx.numbers]
            op = config.op
            g = _forward(config, grad_a, ctx.alpha, adjoint=True)
            grad_b = g if ctx.needs_input_grad[1] else None
            grad_alpha = None
            if ctx.needs_input_grad[2] and ctx.alpha_is_tensor:
                grad_alpha = -(g * a).sum().reshape(ctx.alpha_shape)
            want = [
                k for k, x in enumerate(leaves) if ctx.needs_input_grad[3 + k] and x is not None
            ]
            grads = [None] * len(leaves)
            if want:
                # d/dtheta of -g^T K(theta) a: the gradient of one K @ a reduction
                with torch.enable_grad():
                    fresh = [
                        x.detach().requires_grad_(k in want) if isinstance(x, torch.Tensor) else x
                        for k, x in enumerate(leaves)
                    ]
                    Ka = KernelOperator(op.formula, fresh, op.cats, op.backend).matmat(a.detach())
                    got = torch.autograd.grad(Ka, [fresh[k] for k in want], grad_outputs=-g)
                for k, gk in zip(want, got):
                    grads[k] = gk
            return (None, grad_b, grad_alpha, *grads)

    return Solve


def _rhs(b):
    """An array from ``b`` or from ``Vi(b)``."""
    if arrays.is_array(b):
        return b
    formula = getattr(b, "formula", None)
    if formula is not None and formula.op == "var" and formula.attrs[1] == ir.I:
        return b.variables[0]
    raise TypeError(
        f"b must be an array (NumPy or torch) of shape (n,) or (n, k), or Vi(b); got "
        f"{type(b).__name__}"
    )


def _scalar(alpha) -> float:
    if arrays.is_array(alpha):
        if alpha.ndim != 0 and tuple(alpha.shape) != (1,):
            raise ValueError(f"alpha must be a number or a 0-d array, got shape {alpha.shape}")
        return float(arrays.to_host(alpha).reshape(()))
    return float(alpha)


def _check_inputs(op: KernelOperator, b, alpha) -> None:
    a = _scalar(alpha)
    if not math.isfinite(a) or a < 0:
        raise ValueError(f"alpha must be finite and >= 0, got {a}")
    n = None if b.ndim == 0 else b.shape[0] if b.ndim == 1 else b.shape[-2]
    if n != op.n:
        raise ValueError(
            f"b has shape {tuple(b.shape)}; expected ({op.n},), ({op.n}, k) or (..., {op.n}, k)"
        )
    if arrays.library(b) != op.lib or arrays.dtype_name(b) != op.dtype:
        raise TypeError(
            f"b is a {arrays.library(b)} {arrays.dtype_name(b)} array; K holds "
            f"{op.lib} {op.dtype} arrays: convert b"
        )
    if arrays.device(b) != op.device:
        raise ValueError(f"b lives on {arrays.device(b)}, K on {op.device}")
    for x in op.leaves:
        if arrays.is_array(x) and not bool(_finite(x)):
            raise ValueError("K's points or parameters hold NaN or inf; expected finite values")
    if not bool(_finite(b)):
        raise ValueError("b holds NaN or inf; expected finite values")


def _finite(x):
    return ((x == x) & (abs(x) < math.inf)).all()


def _true_residual(op: KernelOperator, b, a, alpha: float, rtol: float, atol: float):
    """Per column: ``||b - (alpha I + K) a|| / ||b||`` (absolute for a zero column),
    from one more engine product, in float64 on the host; and the relative target
    ``max(rtol ||b||, atol) / ||b||``."""
    Ka = arrays.to_host(_detached(op.matmat(a))).astype(np.float64)
    a64 = arrays.to_host(_detached(a)).astype(np.float64)
    b64 = arrays.to_host(_detached(b)).astype(np.float64)
    R = b64 - Ka - alpha * a64
    if b64.ndim == 1:
        R, b64 = R[:, None], b64[:, None]
    bnorm = np.linalg.norm(b64, axis=-2)
    scale = np.where(bnorm == 0, 1.0, bnorm)
    return np.linalg.norm(R, axis=-2) / scale, np.maximum(rtol * bnorm, atol) / scale


def _detached(x):
    return x.detach() if hasattr(x, "detach") else x


def _top_eigenvalue(op: KernelOperator, M) -> float:
    """A lower bound of the largest eigenvalue of ``K`` for the near-singularity
    check: the preconditioner's, else the largest diagonal entry."""
    top = getattr(M, "top_eigenvalue", math.nan)
    if not math.isfinite(top) or top <= 0:
        top = float(arrays.to_host(op.diagonal()).astype(np.float64).max())
    return top


def _diagnose(op, b, a, alpha, rel, target, top, rtol, recurrence_ok, method) -> None:
    """At most one warning: the true residual missed the tolerance although the
    method finished (rounding: a ConvergenceWarning), or it met it with the rounding
    floor near ``rtol`` (a :class:`NearSingularWarning`). CG stopped by ``maxiter``
    has warned already. The floor is float64's (unit roundoff ``u``): where float32
    cannot reach ``rtol``, its true residual says so."""
    u = float(np.finfo(np.float64).eps) / 2
    a64 = np.asarray(arrays.to_host(_detached(a)), dtype=np.float64)
    b64 = np.asarray(arrays.to_host(_detached(b)), dtype=np.float64)
    axis = 0 if b64.ndim == 1 else -2
    bnorm = np.linalg.norm(b64, axis=axis)
    growth = np.linalg.norm(a64, axis=axis) / np.where(bnorm == 0, 1.0, bnorm)
    floor = u * max(top, 0.0) * float(np.max(growth))
    worst = float(np.max(rel))
    near = (
        f"alpha = {alpha:.3g} is tiny next to the largest eigenvalue of K (>= {top:.3g}): "
        f"|a| / |b| = {float(np.max(growth)):.3g} puts the rounding floor of the residual at "
        f"~{floor:.1e} in float64; raise alpha (alpha >= {10 * u * top / rtol:.1e} keeps "
        f"the floor below rtol / 10) or rtol"
        if rtol > 0
        else ""
    )
    if not (rel <= target).all():
        if not recurrence_ok:
            return
        advice = "solve in float64 or " if op.dtype != "float64" else ""
        warnings.warn(
            f"solve ({method}): the true relative residual {worst:.2e} misses rtol = {rtol:g}"
            f"{' (the CG recurrence met it)' if method == 'cg' else ''}: {op.dtype} cannot "
            f"reach it here; {advice}use rtol >= {2 * worst:.0e}"
            + (f". {near}" if floor > NEAR_SINGULAR_FRACTION * rtol and near else ""),
            ConvergenceWarning,
            stacklevel=_stacklevel(),
        )
    elif near and floor > NEAR_SINGULAR_FRACTION * rtol:
        warnings.warn(
            f"solve ({method}): alpha I + K is near-singular for rtol = {rtol:g}: {near}; "
            f"until then {'CG is slow and ' if method == 'cg' else ''}the solution is "
            "sensitive to rounding",
            NearSingularWarning,
            stacklevel=_stacklevel(),
        )


def _stacklevel() -> int:
    """The stack level of the first frame outside kernelsolve and torch's autograd
    (the user's call, or their ``backward()``)."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(_OURS):
        frame, level = frame.f_back, level + 1
    return level


_OURS = ("kernelsolve", "torch")
