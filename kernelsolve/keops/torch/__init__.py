"""kernelsolve's stand-in for ``pykeops.torch``: the same names, one engine.

>>> from kernelsolve.keops.torch import LazyTensor, Vi, Vj, Pm
"""

from ...lazytensor import LazyTensor, Pm, Vi, Vj

__all__ = ["LazyTensor", "Pm", "Vi", "Vj"]
