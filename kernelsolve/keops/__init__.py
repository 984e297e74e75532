"""The pykeops-shaped namespace: code written for pykeops runs on kernelsolve
after changing its imports.

* ``kernelsolve.keops.torch`` stands for ``pykeops.torch``,
* ``kernelsolve.keops.numpy`` for ``pykeops.numpy``,
* ``kernelsolve.keops.config`` for ``pykeops.config``,
* and this module for ``pykeops`` itself (``set_verbose``, ``clean_pykeops``,
  ``get_build_folder``, ``test_numpy_bindings``, ``test_torch_bindings``).

Everything here is a thin layer over the engine: one LazyTensor class serves
both libraries, and formula strings (``Genred``, ``KernelSolve``) are parsed
into the same IR (:mod:`.formula`).

>>> from kernelsolve.keops.numpy import LazyTensor
>>> import kernelsolve
>>> LazyTensor is kernelsolve.LazyTensor
True
"""

from __future__ import annotations

import os

from ..engine.cache import ENV_VAR, cache_dir, clear_cache
from . import config
from .checks import test_numpy_bindings, test_torch_bindings

__all__ = [
    "clean_pykeops",
    "config",
    "get_build_folder",
    "set_build_folder",
    "set_verbose",
    "test_numpy_bindings",
    "test_torch_bindings",
]

#: pykeops' verbosity flag; kernelsolve prints nothing while it works.
verbose: bool = True
#: pykeops' default GPU; kernelsolve runs where the arrays live.
default_device_id: int = 0


def set_verbose(val: bool) -> None:
    """Set :data:`verbose` (pykeops' messages switch; kernelsolve's reductions are silent)."""
    global verbose
    verbose = bool(val)


def clean_pykeops(recompile_jit_binaries: bool = True) -> None:
    """Remove every compiled kernel (:func:`kernelsolve.clear_cache`)."""
    clear_cache()


def get_build_folder() -> str:
    """The folder of the compiled kernels (``$KERNELSOLVE_CACHE_DIR`` or the user cache)."""
    return str(cache_dir())


def set_build_folder(path: str | None = None) -> None:
    """Compile kernels into ``path`` from now on (sets ``$KERNELSOLVE_CACHE_DIR``
    for this process); None goes back to the default folder."""
    if path is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = str(path)
