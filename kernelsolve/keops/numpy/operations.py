"""``pykeops.numpy.operations``: where pykeops defines KernelSolve.

>>> from kernelsolve.keops.numpy.operations import KernelSolve
"""

from ..kernel_solve import KernelSolve

__all__ = ["KernelSolve"]
