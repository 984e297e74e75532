"""The pykeops-shaped namespace: code written for pykeops runs on kernelsolve
after changing its imports.

* ``kernelsolve.keops.torch`` stands for ``pykeops.torch``,
* ``kernelsolve.keops.numpy`` for ``pykeops.numpy``,
* ``kernelsolve.keops.config`` for ``pykeops.config``.

Everything here is a thin layer over the engine: one LazyTensor class serves
both libraries, and formula strings are parsed into the same IR.

>>> from kernelsolve.keops.numpy import LazyTensor
>>> import kernelsolve
>>> LazyTensor is kernelsolve.LazyTensor
True
"""

from . import config

__all__ = ["config"]
