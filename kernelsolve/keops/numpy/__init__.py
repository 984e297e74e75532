"""kernelsolve's stand-in for ``pykeops.numpy``: the same names, one engine.

>>> from kernelsolve.keops.numpy import Genred, KernelSolve, LazyTensor, Vi, Vj, Pm
"""

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
