"""The dense path of ``K.solve``: one Cholesky factor of ``alpha I + K``.

Below a few thousand points the matrix fits in memory many times over and a
factorisation is cheaper than preconditioned CG (each CG iteration costs an
engine product, the preconditioner a few dozen more). ``K`` is filled by the
engine (:meth:`.operator.KernelOperator.dense`), shifted and factored in
float64 whatever the dtype of ``K`` (a float32 ``K`` with a small ``alpha`` is
often not positive definite at float32 rounding): SciPy's LAPACK ``potrf`` on
NumPy arrays, ``torch.linalg.cholesky_ex`` on torch tensors (on their device).

:func:`use_direct` is the choice of ``solver="auto"``: at most
:data:`DIRECT_MAX_N` points (measured where RPCholesky-preconditioned CG
starts to win, see ``benchmarks/bench_solve.py``) and the float64 factor
within :func:`.dense.memory_budget`.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .cg import NotPositiveDefiniteError
from .dense import memory_budget

__all__ = ["DIRECT_MAX_N", "CholeskyFactor", "use_direct"]

#: "auto" solves by Cholesky up to this many points (and within the memory budget).
#: Measured (``benchmarks/bench_solve.py --methods``, NumPy float64, 2-D points,
#: lengthscale 0.2, alpha 1e-3, one BLAS thread, 2 loaded cores): at 2,000 points
#: Cholesky 0.3-0.6 s against RPCholesky-CG 0.3-1.0 s (Gaussian, Matern 3/2); at
#: 5,000 Cholesky 3-10 s against CG 0.7 s (Gaussian) and 5.1 s (Matern 3/2).
DIRECT_MAX_N = 3000


def use_direct(n: int, itemsize: int, device: str = "cpu") -> bool:
    """True when ``solver="auto"`` factors a system of ``n`` points: ``n`` at most
    :data:`DIRECT_MAX_N` and the engine's block plus the float64 factor within
    :func:`.dense.memory_budget`.

    Example
    -------
    >>> use_direct(1000, 8), use_direct(10**5, 8)
    (True, False)
    """
    block = n * n * itemsize + (n * n * 8 if itemsize != 8 else 0)
    return n <= DIRECT_MAX_N and block <= memory_budget(device)


class CholeskyFactor:
    """The Cholesky factor of ``alpha I + K`` (float64, library and device of ``K``).

    Parameters
    ----------
    op : KernelOperator
        The symmetric kernel matrix; built densely by the engine.
    alpha : float
        The shift.

    Attributes
    ----------
    top_eigenvalue : float
        A lower bound of the largest eigenvalue of ``K``: the larger of its
        largest diagonal entry and its Rayleigh quotient at the vector of ones.

    Raises
    ------
    NotPositiveDefiniteError
        If ``alpha I + K`` is not positive definite (at float64 rounding).

    Example
    -------
    >>> import numpy as np
    >>> from kernelsolve import Vi, Vj
    >>> from kernelsolve.linalg.operator import KernelOperator
    >>> x = np.random.default_rng(0).random((200, 2))
    >>> op = KernelOperator.from_lazy((-Vi(x).sqdist(Vj(x)) * 10.0).exp())
    >>> a = CholeskyFactor(op, 1e-3).solve(np.ones(200))
    >>> bool(np.allclose(op.matmat(a) + 1e-3 * a, 1.0))
    True
    """

    def __init__(self, op, alpha: float):
        self.n, self.alpha = op.n, alpha
        K = op.dense()
        if op.lib == "numpy":
            self._numpy_factor(K, alpha)
        elif op.lib == "torch":
            self._torch_factor(K, alpha)
        else:
            raise TypeError(f"solver='direct' takes NumPy or torch arrays, not {op.lib}")

    def _numpy_factor(self, K, alpha: float) -> None:
        A = K.astype(np.float64, copy=False)
        self.top_eigenvalue = max(float(A.diagonal().max()), float(A.sum()) / self.n)
        A[np.diag_indices_from(A)] += alpha
        try:
            self.factor = scipy.linalg.cho_factor(
                A, lower=True, overwrite_a=True, check_finite=False
            )
        except np.linalg.LinAlgError as e:
            raise _not_spd(alpha, str(e)) from None
        self.torch = False

    def _torch_factor(self, K, alpha: float) -> None:
        import torch

        A = K.detach().to(torch.float64)
        self.top_eigenvalue = max(float(A.diagonal().max()), float(A.sum()) / self.n)
        A.diagonal().add_(alpha)
        L, status = torch.linalg.cholesky_ex(A)
        if int(status) != 0:
            raise _not_spd(alpha, f"the leading minor of order {int(status)} is not positive")
        self.factor, self.torch = L, True

    def solve(self, B):
        """``(alpha I + K)^-1 B`` for ``B`` of shape ``(n,)``, ``(n, k)`` or
        ``(..., n, k)``, in the library, dtype and device of ``B``."""
        vector = B.ndim == 1
        Bm = B[:, None] if vector else B
        if self.torch:
            import torch

            X = torch.cholesky_solve(Bm.to(torch.float64), self.factor).to(B.dtype)
        else:
            # the batch of right-hand sides as columns of one (n, m) block
            B2 = np.moveaxis(np.asarray(Bm, dtype=np.float64), -2, 0)
            X2 = scipy.linalg.cho_solve(
                self.factor, B2.reshape(self.n, -1), check_finite=False
            ).reshape(B2.shape)
            X = np.moveaxis(X2, 0, -2).astype(B.dtype, copy=False)
        return X[..., 0] if vector else X


def _not_spd(alpha: float, detail: str) -> NotPositiveDefiniteError:
    return NotPositiveDefiniteError(
        f"solve: the Cholesky factorisation of alpha I + K failed ({detail}): the matrix "
        f"is not symmetric positive definite at float64 rounding (alpha = {alpha:g}); for a "
        "kernel system, check that the kernel is positive definite and raise alpha (a "
        "numerically semi-definite kernel such as a Gaussian needs alpha well above "
        "1e-16 * the largest eigenvalue)"
    )
