"""``pykeops.torch.operations``: where pykeops defines KernelSolve.

>>> from kernelsolve.keops.torch.operations import KernelSolve
"""

from ..kernel_solve import KernelSolve

__all__ = ["KernelSolve"]
