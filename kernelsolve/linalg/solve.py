"""``K.solve(b, alpha)``: ``(alpha I + K) a = b`` without forming ``K``.

Preconditioned CG (:mod:`.cg`) on the :class:`.operator.KernelOperator` of
``K``, with the preconditioner of :mod:`.precond`. In torch the solution is
differentiable with respect to ``b``, ``alpha``, the points and the
parameters of ``K``: the backward is one more solve with the same matrix and
preconditioner (the adjoint system; ``alpha I + K`` is symmetric) and one
reduction, the gradient of ``g^T K a`` with ``g`` the adjoint solution, never
a differentiation through the CG iterations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..engine import arrays, ir
from ..engine.cache import memoized
from ..tolerance import CG_RTOL, check_tolerances, keywords
from . import precond as precond_mod
from .cg import CGInfo, cg
from .operator import KernelOperator

__all__ = ["solve", "SolveInfo"]


@dataclass
class SolveInfo:
    """What :func:`solve` did: the CG record and the preconditioner."""

    cg: CGInfo | None = None
    preconditioner: precond_mod.Preconditioner | None = None
    backward_cg: CGInfo | None = None
    extra: dict = field(default_factory=dict)

    @property
    def iterations(self) -> int:
        return self.cg.iterations

    @property
    def converged(self) -> bool:
        return self.cg.converged


@keywords(renamed={"tol": "rtol"}, refused={"eps": "rtol"})
def solve(
    K,
    b,
    alpha: float = 1e-10,
    *,
    x0=None,
    rtol: float = CG_RTOL,
    atol: float = 0.0,
    maxiter: int | None = None,
    precond="auto",
    rank: int | None = None,
    callback=None,
    verbose: bool = False,
    backend=None,
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
    x0 : array like ``b``, optional
        Starting point of CG (default zero).
    rtol, atol : float
        Relative residual and absolute floor: a column ``b`` has converged when
        ``||b - (alpha I + K) a|| <= max(rtol ||b||, atol)`` (defaults 1e-6,
        pykeops' tolerance, and 0; see :mod:`.tolerance`). ``tol=``, scipy's old
        name of ``rtol``, works with a DeprecationWarning; pykeops' ``eps=`` is a
        TypeError naming ``rtol``.
    maxiter : int, optional
        Most CG iterations (default 1000; a ConvergenceWarning beyond).
    callback, verbose
        As in :func:`kernelsolve.linalg.cg.cg`.
    precond : "auto", "rpcholesky", "jacobi", None or callable
        Preconditioner (see :mod:`kernelsolve.linalg.precond`); "auto" uses
        RPCholesky above 2000 points and Jacobi below.
    rank : int, optional
        Rank of the RPCholesky factor (automatic by default).
    backend : str, optional
        Engine backend of every reduction ("CPU", "GPU", "reference").
    return_info : bool
        Also return a :class:`SolveInfo`.

    Returns
    -------
    a : array like ``b`` (and ``info`` if ``return_info``)

    Example
    -------
    >>> import numpy as np
    >>> from kernelsolve import Vi, Vj
    >>> x = np.random.default_rng(0).random((1000, 3))
    >>> b = np.random.default_rng(1).random((1000, 2))
    >>> K = (-Vi(x).sqdist(Vj(x)) / 0.1).exp()
    >>> a = K.solve(b, alpha=1e-2, rtol=1e-8)
    >>> bool(np.abs(K @ a + 1e-2 * a - b).max() < 1e-6)
    True
    """
    check_tolerances(rtol, atol, maxiter)  # before the preconditioner's setup
    op = K if isinstance(K, KernelOperator) else KernelOperator.from_lazy(K, backend=backend)
    b = _rhs(b)
    _check_inputs(op, b, alpha)
    op.check_symmetric()
    alpha_value = _scalar(alpha)
    options = dict(
        x0=x0,
        rtol=rtol,
        atol=atol,
        maxiter=maxiter,
        precond=precond,
        rank=rank,
        callback=callback,
        verbose=verbose,
    )
    info = SolveInfo()
    wants_grad = False
    if arrays.library(b) == arrays.TORCH:
        import torch

        tensors = [b, alpha] + list(op.leaves)
        wants_grad = torch.is_grad_enabled() and any(
            isinstance(t, torch.Tensor) and t.requires_grad for t in tensors
        )
    if wants_grad:
        a = _solve_function().apply(_Config(op, options, info), b, alpha, *op.leaves)
    else:
        a = _forward(op, b, alpha_value, options, info)
    return (a, info) if return_info else a


@dataclass
class _Config:
    op: KernelOperator
    options: dict
    info: SolveInfo


def _forward(op: KernelOperator, b, alpha: float, options: dict, info: SolveInfo, M=None):
    """CG on ``(alpha I + K) a = b``; records the CG run (and the preconditioner
    it builds when ``M`` is None) in ``info``."""
    if M is None:
        kind = options["precond"]
        if alpha == 0 and kind == "auto":
            kind = "jacobi"  # the low-rank Woodbury form needs alpha > 0
        M = precond_mod.make(op, alpha, kind, options["rank"], verbose=options["verbose"])
        info.preconditioner = M

    def A(P):
        return op.matmat(P) + alpha * P

    a, info.cg = cg(
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
    return a


@memoized("solve.function", maxsize=1)
def _solve_function():
    """The torch autograd.Function of a solve, built on first use (torch is optional)."""
    import torch

    class Solve(torch.autograd.Function):
        @staticmethod
        def forward(ctx, config, b, alpha, *leaves):
            op = config.op
            a = _forward(op, b.detach(), _scalar(alpha), config.options, config.info)
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
            options = dict(config.options, x0=None, callback=None)
            scratch = SolveInfo()
            g = _forward(op, grad_a, ctx.alpha, options, scratch, M=config.info.preconditioner)
            config.info.backward_cg = scratch.cg
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
