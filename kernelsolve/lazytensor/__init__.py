"""LazyTensor: a symbolic matrix K_ij = F(x_i, y_j, p), never stored.

A LazyTensor holds a formula (an :mod:`~kernelsolve.engine.ir` node) and the
arrays bound to its variables. Operators build new formulas; reductions
(``sum``, ``logsumexp``, ``argKmin``, ``@``, ...) hand one
:class:`~kernelsolve.engine.request.ReductionRequest` to the engine and
return arrays of the caller's library.

* :mod:`.binding`: arrays and numbers bound to variables, joins of operands;
* :mod:`.core`: the class, its operators and elementwise functions;
* :mod:`.reductions`: the reductions, ``K @ v`` and its kept plan,
  ``K.solve``, :class:`~.reductions.ReductionCall`;
* :mod:`.complex`: :class:`~.complex.ComplexLazyTensor` (complex input).

The semantics are pykeops': code written for ``pykeops.torch.LazyTensor`` or
``pykeops.numpy.LazyTensor`` runs after changing the import.

>>> import numpy as np
>>> from kernelsolve import LazyTensor
>>> x, y = np.random.rand(100, 3), np.random.rand(200, 3)
>>> x_i, y_j = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
>>> K_ij = (-((x_i - y_j) ** 2).sum(-1)).exp()     # (100, 200) symbolic
>>> (K_ij @ np.ones(200)).shape
(100,)
"""

from .complex import ComplexLazyTensor
from .core import LazyTensor, Pm, Vi, Vj
from .reductions import ReductionCall

__all__ = ["ComplexLazyTensor", "LazyTensor", "Pm", "ReductionCall", "Vi", "Vj"]
