"""pykeops' tensor products of inner dimensions on LazyTensor (a mixin):
``keops_tensordot`` and ``keops_kron``, both built on the one ``tensordot``
IR op of :mod:`kernelsolve.engine.ops.tensor`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.ops import tensor

if TYPE_CHECKING:
    from .core import LazyTensor


class TensorProducts:
    """The tensor-product methods of :class:`~kernelsolve.LazyTensor`; they
    join operands with ``LazyTensor._combine``."""

    __slots__ = ()

    def keops_tensordot(self, other, dimfa, dimfb, contfa, contfb, perm=None) -> LazyTensor:
        """pykeops' tensor dot product of the inner dimensions, read as
        row-major tensors of shapes ``dimfa`` and ``dimfb``: the axes
        ``contfa[k]`` and ``contfb[k]`` are summed together
        (``np.tensordot(A, B, axes=(contfa, contfb))``); an optional last
        argument ``perm`` (pykeops' sixth positional argument), a
        permutation, moves kept axis k to position ``perm[k]``.

        Example
        -------
        >>> import numpy as np
        >>> from kernelsolve import Vi, Vj
        >>> A, v = np.random.rand(5, 28), np.random.rand(3, 7)
        >>> Av = Vi(A).keops_tensordot(Vj(v), (4, 7), (7,), (1,), (0,))
        >>> Av.sum(1).shape  # sum_j A_i v_j, A_i a 4 x 7 matrix
        (5, 4)
        """
        return self._combine(
            lambda a, b: tensor.tensordot(a, b, dimfa, dimfb, contfa, contfb, perm), other
        )

    def keops_kron(self, other, dimfself, dimfother) -> LazyTensor:
        """pykeops' Kronecker product of the inner dimensions, read as
        row-major tensors of shapes ``dimfself`` and ``dimfother`` (as many
        axes): shape ``(dimfself[0] * dimfother[0], ...)``, flattened.

        Example
        -------
        >>> import numpy as np
        >>> from kernelsolve import Vi, Vj
        >>> x, y = np.random.rand(5, 6), np.random.rand(3, 4)
        >>> Vi(x).keops_kron(Vj(y), (3, 2), (2, 2)).sum(1).shape
        (5, 24)
        """
        return self._combine(lambda a, b: tensor.kron(a, b, dimfself, dimfother), other)
