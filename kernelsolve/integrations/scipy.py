"""scipy.sparse.linalg adapter: a LazyTensor as a ``LinearOperator``.

``aslinearoperator(K, alpha)`` wraps ``alpha I + K`` (``K`` a scalar
LazyTensor, any shape ``M x N``) so that scipy's iterative solvers and
eigensolvers (``cg``, ``minres``, ``gmres``, ``eigsh``, ``lobpcg``, ``svds``)
run on it: every product is one engine reduction. NumPy in, NumPy out; a
LazyTensor of torch CPU tensors works too (vectors are converted at the
boundary, without copies where possible).

Materialising: scipy's solvers make tens to thousands of products, and for a
few thousand points the matrix fits in memory and runs at BLAS speed, but
the adapter cannot know how many products follow. With the default
``materialize="auto"`` it counts them: once the count reaches
:data:`kernelsolve.linalg.dense.FILL_PRODUCTS` (building the block costs
about that many products) and the ``M x N`` block fits
:func:`kernelsolve.linalg.dense.memory_budget`, the engine fills the block
once and every later product (and adjoint product) is a BLAS product.
Results before and after the switch agree to rounding (the sums run in a
different order). ``materialize=True`` builds the block on the first
product, ``None`` never; :meth:`KernelLinearOperator.materialize` builds it
up front for a caller that knows the product count.

Under ``kernelsolve.distributed.sharded()`` the held block is this process's
rows of ``K`` only (:class:`kernelsolve.linalg.rowblocks.RowBlocks`, the
budget checked for them; the processes agree before any builds); products
are gathered from every process's rows, adjoint products summed block by block
in one order over the processes: the one-process values, bit for bit (one
process computes by the same blocks). The block is dropped when the split
changes.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ..engine import arrays, ir, split
from ..linalg import dense
from ..linalg.rowblocks import RowBlocks

__all__ = ["aslinearoperator", "KernelLinearOperator"]


class KernelLinearOperator(LinearOperator):
    """``alpha I + K`` as a :class:`scipy.sparse.linalg.LinearOperator`.

    ``products`` counts the products made; ``block`` is the dense ``K`` once
    it is held (see the module docstring), else None.
    """

    def __init__(self, K, alpha: float = 0.0, backend=None, materialize="auto"):
        if materialize not in ("auto", True, False, None):
            raise ValueError(
                f'materialize must be "auto", True, False or None, got {materialize!r}'
            )
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
        self.materialize_mode, self.products, self.block = materialize, 0, None
        self.block_rows: RowBlocks | None = None  # the rows of K the block holds
        super().__init__(dtype=np.dtype(kind.dtype), shape=(K.ni, K.nj))

    def materialize(self, products: float = float("inf")) -> bool:
        """Build and hold the dense ``K`` now if ``products`` expected products
        repay it and it fits the memory budget (``dense.dense_pays``); True
        when the operator is dense-backed afterwards (never for
        ``materialize=None``)."""
        self._drop_stale_block()
        if self.block is None and self.materialize_mode is not None:
            m, n = self.shape
            rows = RowBlocks(m)
            if self.materialize_mode is True or self._all_fit(rows, products):
                self.block, self.block_rows = self._build(rows), rows
        return self.block is not None

    def _build(self, rows: RowBlocks) -> np.ndarray:
        """The rows ``rows.lo:rows.hi`` of ``K``, dense, on the host."""
        K, leaves = self.K, self.K.variables
        if not rows.sharded:
            return arrays.to_host(dense.block(K.formula, leaves, K.cats, backend=self.backend))
        # this process's rows alone: the i-variables restricted
        leaves = [x[rows.lo : rows.hi] if c == ir.I else x for x, c in zip(leaves, K.cats)]
        with split.suspended():
            return arrays.to_host(dense.block(K.formula, leaves, K.cats, backend=self.backend))

    def _all_fit(self, rows: RowBlocks, products: float) -> bool:
        """``dense.dense_pays`` for this process's rows, agreed by every process."""
        fits = dense.dense_pays(rows.hi - rows.lo, self.shape[1], self.dtype.itemsize, products)
        if not rows.sharded or products < dense.FILL_PRODUCTS:
            return fits
        rows.executor()  # the processes this layout was made for
        return split.everywhere(fits)

    def _drop_stale_block(self) -> None:
        """Forget a block held for other processes than the active split's."""
        if self.block is not None and self.block_rows is not None:
            active = split.active()
            if ((0, 1) if active is None else (active.rank, active.size)) != self.block_rows.key:
                self.block, self.block_rows = None, None

    def _apply(self, K, X, transpose: bool = False):
        X = np.asarray(X)
        squeeze = X.ndim == 1
        X2 = np.ascontiguousarray(X.reshape(X.shape[0], -1), dtype=self.dtype)
        self.products += 1
        if self.materialize_mode in ("auto", True):
            # "auto": the products made so far are the estimate of those to come
            self.materialize(self.products)
        self._drop_stale_block()
        rows = self.block_rows or RowBlocks(self.shape[0], shared=False)
        if self.block is not None and not transpose:
            out = rows.gather(rows.product(self.block, X2))  # by blocks: as in one process
        elif self.block is not None:  # K^T X: the blocks' parts summed in block order
            Xl = X2[rows.lo : rows.hi]
            parts = (self.block[a:b].T @ Xl[a:b] for a, b in rows.blocks())
            out = rows.ordered_sum(parts, (self.shape[1], X2.shape[1])).astype(self.dtype)
        else:
            out = self._engine(K, X2)
        if self.alpha:
            out = out + self.alpha * X2
        return out[:, 0] if squeeze else out

    def _engine(self, K, X2):
        V = X2 if self._lib == arrays.NUMPY else arrays.from_numpy(X2, self._lib)
        return arrays.to_host(_matmul(K, V, self.backend))

    def _matvec(self, x):
        return self._apply(self.K, x)

    def _matmat(self, X):
        return self._apply(self.K, X)

    def _rmatvec(self, x):
        return self._apply(self.K.T, x, transpose=True)

    def _rmatmat(self, X):
        return self._apply(self.K.T, X, transpose=True)

    def _adjoint(self):
        adjoint = KernelLinearOperator(self.K.T, self.alpha, self.backend, self.materialize_mode)
        adjoint.products = self.products
        if self.block is not None and not self.block_rows.sharded:
            adjoint.block, adjoint.block_rows = self.block.T, RowBlocks(self.shape[1], False)
        return adjoint


def _matmul(K, V, backend):
    """``K @ V`` for ``V`` of shape (N, k), on the chosen backend."""
    from ..lazytensor import LazyTensor

    return (K * LazyTensor(V, axis=1)).sum(1, backend=backend)


def aslinearoperator(
    K, alpha: float = 0.0, backend=None, materialize="auto"
) -> KernelLinearOperator:
    """``alpha I + K`` as a scipy ``LinearOperator``.

    ``materialize``: when to hold the dense ``K`` (module docstring): "auto"
    once the products made pass ``dense.FILL_PRODUCTS`` and the block fits
    the memory budget, True at the first product, False only on
    ``materialize(products)``, None never.

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
    return KernelLinearOperator(K, alpha, backend, materialize)
