"""What kind of array is this? Library, dtype and device of user arrays.

The engine accepts NumPy arrays and torch tensors (CuPy with the CUDA
target). This module is the one place that knows how to ask each library for
its dtype and device and how to move data between a library and NumPy
without copying.
"""

from __future__ import annotations

import sys

import numpy as np

NUMPY, TORCH = "numpy", "torch"
FLOAT_DTYPES = ("float32", "float64")


def _torch():
    return sys.modules.get("torch")


def is_torch(x) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def is_array(x) -> bool:
    return isinstance(x, np.ndarray) or is_torch(x)


def library(x) -> str:
    if isinstance(x, np.ndarray):
        return NUMPY
    if is_torch(x):
        return TORCH
    raise TypeError(f"expected a NumPy array or a torch tensor, got {type(x).__name__}")


def dtype_name(x) -> str:
    """'float32', 'float64', 'int64', ... for NumPy arrays and torch tensors."""
    if isinstance(x, np.ndarray):
        return x.dtype.name
    return str(x.dtype).removeprefix("torch.")


def device(x) -> str:
    if isinstance(x, np.ndarray):
        return "cpu"
    return str(x.device)


def to_numpy(x) -> np.ndarray:
    """NumPy view of a host array (no copy)."""
    if isinstance(x, np.ndarray):
        return x
    if x.device.type != "cpu":
        raise ValueError(
            f"tensor on {x.device} cannot be read by the host engine; the CUDA "
            "target is needed for device tensors"
        )
    return x.detach().numpy()


def from_numpy(a: np.ndarray, lib: str, dev: str = "cpu"):
    """``a`` as an array of library ``lib`` (no copy on the host)."""
    if lib == NUMPY:
        return a
    torch = _torch()
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if dev == "cpu" else t.to(dev)


def scalar_array(values, lib: str, dtype: str, dev: str = "cpu"):
    """A 1-D array holding ``values`` (floats), of the given library/dtype."""
    a = np.asarray(values, dtype=dtype).reshape(-1)
    return from_numpy(a, lib, dev)
