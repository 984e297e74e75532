"""pykeops' ``config`` module: what this machine can run.

``gpu_available`` is True when a CUDA device can run our kernels (CuPy or a
CUDA build of torch sees one); pykeops' test files read it to choose the
backends they try.
"""

from __future__ import annotations


def _gpu_available() -> bool:
    try:
        import torch

        if torch.cuda.is_available():
            return True
    except ImportError:
        pass
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, or CuPy without a driver
        return False


#: True when a CUDA device is usable (checked once, at import).
gpu_available: bool = _gpu_available()
