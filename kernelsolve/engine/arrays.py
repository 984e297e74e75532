"""What kind of array is this? Library, dtype and device of user arrays.

The engine accepts NumPy arrays and torch tensors (CuPy with the CUDA
target). This module is the one place that knows how to ask each library for
its dtype and device and how to move data between a library and NumPy
without copying.
"""

from __future__ import annotations

import sys

import numpy as np

NUMPY, TORCH, CUPY = "numpy", "torch", "cupy"
FLOAT_DTYPES = ("float32", "float64")


def _torch():
    return sys.modules.get("torch")


def is_torch(x) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def is_cupy(x) -> bool:
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def is_array(x) -> bool:
    return isinstance(x, np.ndarray) or is_torch(x) or is_cupy(x)


def library(x) -> str:
    if isinstance(x, np.ndarray):
        return NUMPY
    if is_torch(x):
        return TORCH
    if is_cupy(x):
        return CUPY
    raise TypeError(
        f"expected a NumPy array, a torch tensor or a CuPy array, got {type(x).__name__}"
    )


_NP_DTYPE_NAMES = {np.dtype(n): n for n in ("float16", "float32", "float64", "int32", "int64")}


def dtype_name(x) -> str:
    """'float32', 'float64', 'int64', ... for NumPy/CuPy arrays and torch tensors."""
    if isinstance(x, np.ndarray) or is_cupy(x):
        # dict lookup: numpy's dtype.name is a slow Python property (hot path)
        return _NP_DTYPE_NAMES.get(x.dtype) or x.dtype.name
    return str(x.dtype).removeprefix("torch.")


def device(x) -> str:
    if isinstance(x, np.ndarray):
        return "cpu"
    if is_cupy(x):
        return f"cuda:{x.device.id}"
    return str(x.device)


def to_numpy(x) -> np.ndarray:
    """NumPy view of a host array (no copy)."""
    if isinstance(x, np.ndarray):
        return x
    if is_cupy(x) or x.device.type != "cpu":
        raise ValueError(
            f"tensor on {x.device} cannot be read by the host engine; the CUDA "
            "target is needed for device tensors"
        )
    return x.detach().numpy()


def take_rows(x, index: np.ndarray):
    """``x[index]`` along the first axis, ``index`` a NumPy int64 array."""
    if isinstance(x, np.ndarray):
        return x[index]
    if is_cupy(x):
        import cupy

        return x[cupy.asarray(index)]
    return x[_torch().as_tensor(index, device=x.device)]


def to_host(x) -> np.ndarray:
    """A NumPy copy of any array, wherever it lives (for small results)."""
    if isinstance(x, np.ndarray):
        return x
    if is_cupy(x):
        return x.get()
    return x.detach().cpu().numpy()


def from_numpy(a: np.ndarray, lib: str, dev: str = "cpu"):
    """``a`` as an array of library ``lib`` (no copy on the host)."""
    if lib == NUMPY:
        return a
    if lib == CUPY:
        return sys.modules["cupy"].asarray(a)
    torch = _torch()
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if dev == "cpu" else t.to(dev)


def to_cupy(x):
    """CuPy view of a device array (zero copy through the CUDA array interface)."""
    cupy = sys.modules.get("cupy") or __import__("cupy")
    if is_torch(x):
        x = x.detach()
    return cupy.asarray(x)


def from_cupy(a, lib: str):
    """A CuPy result as an array of library ``lib`` (zero copy)."""
    if lib == CUPY:
        return a
    return _torch().as_tensor(a, device=f"cuda:{a.device.id}")


def scalar_array(values, lib: str, dtype: str, dev: str = "cpu"):
    """A 1-D array holding ``values`` (floats), of the given library/dtype."""
    a = np.asarray(values, dtype=dtype).reshape(-1)
    return from_numpy(a, lib, dev)
