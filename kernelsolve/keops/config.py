"""pykeops' ``config`` module: what this machine can run.

``gpu_available`` is True when a CUDA device can run our kernels (CuPy or a
CUDA build of torch sees one); pykeops' test files read it to choose the
backends they try. It is computed on first access, so that importing
``kernelsolve.keops`` (or its NumPy namespace) does not import torch.

>>> from kernelsolve.keops import config
>>> isinstance(config.gpu_available, bool)
True
"""

from __future__ import annotations

import functools
import importlib.util

__all__ = ["gpu_available"]

#: True when a CUDA device is usable (checked once, on first access).
gpu_available: bool


@functools.lru_cache(maxsize=1)
def _gpu_available() -> bool:
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return True
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, or CuPy without a driver
        return False


def __getattr__(name: str):
    if name == "gpu_available":
        return _gpu_available()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
