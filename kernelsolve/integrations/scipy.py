"""scipy.sparse.linalg adapter: a LazyTensor as a ``LinearOperator``.

``aslinearoperator(K, alpha)`` wraps ``alpha I + K`` (``K`` a scalar
LazyTensor, any shape ``M x N``) so that scipy's iterative solvers and
eigensolvers (``cg``, ``minres``, ``gmres``, ``eigsh``, ``lobpcg``, ``svds``)
run on it: every product is one engine reduction. NumPy in, NumPy out; a
LazyTensor of torch CPU tensors works too (vectors are converted at the
boundary, without copies where possible).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ..engine import arrays

__all__ = ["aslinearoperator", "KernelLinearOperator"]


class KernelLinearOperator(LinearOperator):
    """``alpha I + K`` as a :class:`scipy.sparse.linalg.LinearOperator`."""

    def __init__(self, K, alpha: float = 0.0, backend=None):
        if K.formula.dim != 1:
            raise ValueError(
                f"aslinearoperator: K must be a scalar formula (inner dimension 1), got "
                f"inner dimension {K.formula.dim}"
            )
        if K.batchdims:
            raise ValueError(f"aslinearoperator: K has batch dimensions {K.batchdims}")
        if K.ni is None or K.nj is None:
            raise ValueError("aslinearoperator: K needs both an i- and a j-variable")
        alpha = float(alpha)
        if not np.isfinite(alpha):
            raise ValueError(f"alpha must be finite, got {alpha}")
        if alpha != 0 and K.ni != K.nj:
            raise ValueError(f"alpha I + K needs a square K, got {K.ni} x {K.nj}")
        kind = K._kind
        if kind.device != "cpu":
            raise ValueError(
                f"aslinearoperator: K lives on {kind.device}; scipy works on host arrays"
            )
        self.K, self.alpha, self.backend, self._lib = K, alpha, backend, kind.lib
        super().__init__(dtype=np.dtype(kind.dtype), shape=(K.ni, K.nj))

    def _apply(self, K, X):
        X = np.asarray(X)
        squeeze = X.ndim == 1
        X2 = np.ascontiguousarray(X.reshape(X.shape[0], -1), dtype=self.dtype)
        V = X2 if self._lib == arrays.NUMPY else arrays.from_numpy(X2, self._lib)
        out = arrays.to_host(_matmul(K, V, self.backend))
        if self.alpha:
            out = out + self.alpha * X2
        return out[:, 0] if squeeze else out

    def _matvec(self, x):
        return self._apply(self.K, x)

    def _matmat(self, X):
        return self._apply(self.K, X)

    def _rmatvec(self, x):
        return self._apply(self.K.T, x)

    def _rmatmat(self, X):
        return self._apply(self.K.T, X)

    def _adjoint(self):
        return KernelLinearOperator(self.K.T, self.alpha, self.backend)


def _matmul(K, V, backend):
    """``K @ V`` for ``V`` of shape (N, k), on the chosen backend."""
    from ..lazytensor import LazyTensor

    return (K * LazyTensor(V, axis=1)).sum(1, backend=backend)


def aslinearoperator(K, alpha: float = 0.0, backend=None) -> KernelLinearOperator:
    """``alpha I + K`` as a scipy ``LinearOperator``.

    Example
    -------
    >>> import numpy as np
    >>> from scipy.sparse.linalg import cg
    >>> from kernelsolve import Vi, Vj
    >>> x = np.random.default_rng(0).random((300, 2))
    >>> A = aslinearoperator((-Vi(x).sqdist(Vj(x)) * 10.0).exp(), alpha=0.1)
    >>> a, status = cg(A, np.ones(300), rtol=1e-8)
    >>> status
    0
    """
    return KernelLinearOperator(K, alpha, backend)
