"""What kind of array is this? Library, dtype and device of user arrays.

The engine accepts NumPy arrays and torch tensors (CuPy with the CUDA
target). This module is the one place that knows how to ask each library for
its dtype and device and how to move data between a library and NumPy
without copying. Dask arrays are recognised too (library ``"dask"``, the
device of their chunks): the engine never runs on them, LazyTensor hands
their reductions to :mod:`kernelsolve.integrations.dask_reduce`, which runs
the engine on their NumPy or CuPy chunks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from .cache import register_memo

NUMPY, TORCH, CUPY, DASK = "numpy", "torch", "cupy", "dask"
# float16 / bfloat16 are computed in float32 (see dispatch.reduce)
FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")
HALF_DTYPES = ("float16", "bfloat16")


def _torch():
    return sys.modules.get("torch")


# These run several times per reduction (LazyTensor construction, dispatch):
# a warm call at N = M = 100 costs tens of microseconds, so the checks below
# avoid module lookups and string formatting where a type test will do.
_tensor_type = None  # torch.Tensor, once torch is imported


def _torch_tensor_type():
    global _tensor_type
    if _tensor_type is None:
        torch = sys.modules.get("torch")
        if torch is not None:
            _tensor_type = torch.Tensor
    return _tensor_type


def torch_tensor_type():
    """``torch.Tensor`` once torch is imported, else None (never imports it)."""
    return _tensor_type or _torch_tensor_type()


def is_torch(x) -> bool:
    T = _tensor_type or _torch_tensor_type()
    return T is not None and isinstance(x, T)


def is_cupy(x) -> bool:
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def is_dask(x) -> bool:
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(x, da.Array)


def is_array(x) -> bool:
    return (
        type(x) is np.ndarray
        or isinstance(x, np.ndarray)
        or is_torch(x)
        or is_cupy(x)
        or is_dask(x)
    )


def library(x) -> str:
    if isinstance(x, np.ndarray):
        return NUMPY
    if is_torch(x):
        return TORCH
    if is_cupy(x):
        return CUPY
    if is_dask(x):
        return DASK
    raise TypeError(
        f"expected a NumPy array, a torch tensor, a CuPy array or a dask array, "
        f"got {type(x).__name__}"
    )


_NP_DTYPE_NAMES = {
    np.dtype(n): n for n in ("float16", "float32", "float64", "int32", "int64", "bool")
}
# torch.dtype -> 'float32' and torch.device -> 'cpu', 'cuda:0', filled on first sight
_TORCH_DTYPE_NAMES: dict = register_memo({}, "arrays.torch_dtype_names")
_DEVICE_NAMES: dict = register_memo({}, "arrays.device_names")


def dtype_name(x) -> str:
    """'float32', 'float64', 'int64', ... for NumPy/CuPy arrays and torch tensors."""
    if isinstance(x, np.ndarray) or is_cupy(x) or is_dask(x):
        # dict lookup: numpy's dtype.name is a slow Python property (hot path)
        return _NP_DTYPE_NAMES.get(x.dtype) or x.dtype.name
    dt = x.dtype
    name = _TORCH_DTYPE_NAMES.get(dt)
    if name is None:
        name = _TORCH_DTYPE_NAMES[dt] = str(dt).removeprefix("torch.")
    return name


def device(x) -> str:
    if isinstance(x, np.ndarray):
        return "cpu"
    if is_cupy(x):
        return f"cuda:{x.device.id}"
    if is_dask(x):
        return _dask_device(x)
    dev = x.device
    name = _DEVICE_NAMES.get(dev)
    if name is None:
        name = _DEVICE_NAMES[dev] = str(dev)
    return name


def _dask_device(x) -> str:
    """The device of a dask array's chunks (its ``_meta``): NumPy or CuPy."""
    meta = x._meta
    if isinstance(meta, np.ndarray):
        return "cpu"
    if is_cupy(meta):
        return f"cuda:{meta.device.id}"
    raise TypeError(f"a dask array of {type(meta).__name__} chunks: expected NumPy or CuPy chunks")


def to_numpy(x) -> np.ndarray:
    """NumPy view of a host array (no copy)."""
    if isinstance(x, np.ndarray):
        return x
    if is_cupy(x) or x.device.type != "cpu":
        raise ValueError(
            f"tensor on {x.device} cannot be read by the host engine; the CUDA "
            "target is needed for device tensors"
        )
    # detach() costs a tensor allocation: only a tensor that requires grad needs it
    return x.detach().numpy() if x.requires_grad else x.numpy()


def take_rows(x, index: np.ndarray):
    """``x[index]`` along the first axis, ``index`` a NumPy int64 array."""
    if isinstance(x, np.ndarray):
        return x[index]
    if is_cupy(x):
        import cupy

        return x[cupy.asarray(index)]
    return x[_torch().as_tensor(index, device=x.device)]


def to_host(x) -> np.ndarray:
    """A NumPy copy of any array, wherever it lives (for small results; a dask
    array is computed)."""
    if isinstance(x, np.ndarray):
        return x
    if is_cupy(x):
        return x.get()
    if is_dask(x):
        return to_host(x.compute())
    return x.detach().cpu().numpy()


def from_numpy(a: np.ndarray, lib: str, dev: str = "cpu", dtype: str | None = None):
    """``a`` as an array of library ``lib`` (no copy on the host unless
    ``dtype`` asks for a conversion, e.g. 'float16' or 'bfloat16' (torch))."""
    if lib == NUMPY:
        return a if dtype is None else a.astype(dtype)
    if lib == CUPY:
        return sys.modules["cupy"].asarray(a if dtype is None else a.astype(dtype))
    torch = _torch()
    t = torch.from_numpy(np.ascontiguousarray(a))
    if dtype is not None:
        t = t.to(getattr(torch, dtype))
    return t if dev == "cpu" else t.to(dev)


def to_cupy(x):
    """CuPy view of a device array (zero copy through the CUDA array interface).
    CuPy has no bfloat16: a bfloat16 tensor is viewed as int16 (the kernel
    reads the bits as ``__nv_bfloat16``)."""
    cupy = sys.modules.get("cupy") or __import__("cupy")
    if is_torch(x):
        x = x.detach()
        if x.dtype == _torch().bfloat16:
            x = x.view(_torch().int16)
    return cupy.asarray(x)


def from_cupy(a, lib: str, dtype: str | None = None):
    """A CuPy result as an array of library ``lib`` (zero copy); int16 storage
    of a bfloat16 result (``dtype='bfloat16'``) becomes a bfloat16 tensor."""
    if lib == CUPY:
        return a
    torch = _torch()
    t = torch.as_tensor(a, device=f"cuda:{a.device.id}")
    if dtype == "bfloat16" and t.dtype == torch.int16:
        t = t.view(torch.bfloat16)
    return t


def scalar_array(values, lib: str, dtype: str, dev: str = "cpu"):
    """A 1-D array holding ``values`` (floats), of the given library/dtype."""
    if dtype == "bfloat16":  # no NumPy bfloat16: through float32
        a = np.asarray(values, dtype=np.float32).reshape(-1)
        return from_numpy(a, lib, dev, dtype=dtype)
    a = np.asarray(values, dtype=dtype).reshape(-1)
    return from_numpy(a, lib, dev)


# ----------------------------------------------------------------------------
# The kind of the arrays of one formula
# ----------------------------------------------------------------------------


class ArrayKind(NamedTuple):
    """Library, dtype and device shared by all arrays of one formula (a named
    tuple: built for every LazyTensor, where a dataclass costs a microsecond)."""

    lib: str
    dtype: str
    device: str


# (array type, dtype, device) -> ArrayKind: one dict lookup per LazyTensor
# construction instead of three library queries (a warm call builds several).
_KINDS: dict = register_memo({}, "arrays.kinds")


def kind_of(x) -> ArrayKind:
    """Library, dtype name and device of the array ``x``.

    >>> kind_of(np.zeros(3, np.float32))
    ArrayKind(lib='numpy', dtype='float32', device='cpu')
    """
    t = type(x)
    if t is np.ndarray:
        dev = "cpu"
    else:  # a dask array has no device: its chunks' type stands for it
        dev = type(x._meta) if is_dask(x) else x.device
    key = (t, x.dtype, dev)
    kind = _KINDS.get(key)
    if kind is None:
        kind = ArrayKind(library(x), dtype_name(x), device(x))
        if len(_KINDS) < 256:
            _KINDS[key] = kind
    return kind


_FIXES = {
    "lib": "convert one of them",
    "dtype": "cast one of them",
    "device": "move one of them (kernelsolve never moves arrays itself)",
}


def check_same_kind(first: ArrayKind, other: ArrayKind, first_name: str, other_name: str):
    """Raise ``TypeError`` if ``other`` (``other_name``'s arrays) differs from
    ``first`` in library, dtype or device, naming both and the fix: one
    library, one dtype and one device per formula.

    >>> a, b = ArrayKind("numpy", "float64", "cpu"), ArrayKind("numpy", "float32", "cpu")
    >>> check_same_kind(a, b, "x", "v")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: cannot mix float64 and float32 arrays in one formula: v is float32, ...
    """
    for field, mine, theirs in zip(ArrayKind._fields, first, other):
        if mine != theirs:
            where = "on " if field == "device" else ""
            raise TypeError(
                f"cannot mix {mine} and {theirs} arrays in one formula: {other_name} is "
                f"{where}{theirs}, {first_name} {where}{mine}; {_FIXES[field]}"
            )


def with_dask(a: ArrayKind, b: ArrayKind) -> ArrayKind | None:
    """The kind of a formula joining ``a`` and ``b`` when one is a dask kind and
    the other an array of its chunks' library on its device (NumPy with NumPy
    chunks, CuPy with CuPy chunks, same dtype): dask, which then wraps those
    arrays. None for any other pair.

    >>> with_dask(ArrayKind("dask", "float64", "cpu"), ArrayKind("numpy", "float64", "cpu"))
    ArrayKind(lib='dask', dtype='float64', device='cpu')
    """
    lazy, other = (a, b) if a.lib == DASK else (b, a)
    if lazy.lib != DASK or other.lib == DASK or lazy.dtype != other.dtype:
        return None
    return lazy if other.lib == _chunk_lib(lazy) and other.device == lazy.device else None


def as_chunks(a: ArrayKind, b: ArrayKind) -> tuple[ArrayKind, ArrayKind]:
    """``a`` and ``b`` with a dask kind read as its chunks' kind when the other
    is of that library: what :func:`check_same_kind` compares, so that its
    message names the dtype or device that differs."""
    if a.lib == DASK and b.lib == _chunk_lib(a):
        return a._replace(lib=b.lib), b
    if b.lib == DASK and a.lib == _chunk_lib(b):
        return a, b._replace(lib=a.lib)
    return a, b


def _chunk_lib(kind: ArrayKind) -> str:
    return NUMPY if kind.device == "cpu" else CUPY


def resolve_kind(leaves: Sequence, describe: Callable[[int], str] | None = None) -> ArrayKind:
    """The common library/dtype/device of the array leaves (numbers adapt).

    Raises ``TypeError`` naming the first two arguments that disagree (in
    library, dtype or device), as ``describe(k)`` words them (default:
    ``"argument k"``), see :func:`check_same_kind`.
    """
    describe = describe or (lambda k: f"argument {k}")
    first, first_at = None, -1
    for k, x in enumerate(leaves):
        if not is_array(x):
            continue
        kind = kind_of(x)
        if first is None:
            first, first_at = kind, k
        elif kind != first:
            check_same_kind(first, kind, describe(first_at), describe(k))
    if first is None:
        raise ValueError(
            "cannot infer the array type: the formula holds only Python numbers; "
            "bind at least one NumPy array or torch tensor"
        )
    return first
