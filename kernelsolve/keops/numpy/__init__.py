"""kernelsolve's stand-in for ``pykeops.numpy``: the same names, one engine.

>>> from kernelsolve.keops.numpy import LazyTensor, Vi, Vj, Pm
"""

from ...lazytensor import LazyTensor, Pm, Vi, Vj

__all__ = ["LazyTensor", "Pm", "Vi", "Vj"]
