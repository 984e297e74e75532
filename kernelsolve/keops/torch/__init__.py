"""kernelsolve's stand-in for ``pykeops.torch``: the same names, one engine.

Importing this module imports torch (as ``pykeops.torch`` does); ``import
kernelsolve`` alone does not.

>>> from kernelsolve.keops.torch import Genred, KernelSolve, LazyTensor, Vi, Vj, Pm
"""

import torch  # noqa: F401  (a missing torch fails here, with its own message)

from ...lazytensor import ComplexLazyTensor, LazyTensor, Pm, Vi, Vj
from ..genred import Genred, generic_argkmin, generic_argmin, generic_logsumexp, generic_sum
from ..kernel_solve import KernelSolve

__all__ = [
    "ComplexLazyTensor",
    "Genred",
    "KernelSolve",
    "LazyTensor",
    "Pm",
    "Vi",
    "Vj",
    "generic_argkmin",
    "generic_argmin",
    "generic_logsumexp",
    "generic_sum",
]
