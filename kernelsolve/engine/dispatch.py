"""From a reduction request to a target call, and back to the caller's arrays.

:func:`reduce` is the single entry point below LazyTensor. It

1. resolves the library (NumPy / torch), dtype and device of the arguments
   and turns Python numbers bound to parameters into arrays of that kind,
2. broadcasts the batch dimensions of the arguments,
3. turns a reduction over i into a reduction over j of the transposed formula
   (every target only folds over j),
4. picks the target from the ``backend`` argument and where the data lives,
5. hands back arrays of the caller's library, shaped as pykeops does.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..config import config
from . import arrays, ir
from . import reductions as red_mod
from .backends import cpu, reference
from .cache import register_memo
from .codegen import KernelSpec

# backend= values accepted on every reduction, and the target each selects.
_BACKENDS = {
    None: "auto",
    "auto": "auto",
    "cpu": "host",
    "reference": "reference",
    "gpu": "cuda",
    "cuda": "cuda",
    "gpu_1d": "cuda",
    "gpu_2d": "cuda",
}


def normalize_backend(backend) -> str:
    key = backend.lower() if isinstance(backend, str) else backend
    if key not in _BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of 'auto', 'CPU', 'GPU', 'reference'")
    return _BACKENDS[key]


class ArrayKind(NamedTuple):
    """Library, dtype and device shared by all arrays of one formula (a named
    tuple: built for every LazyTensor, where a dataclass costs a microsecond)."""

    lib: str
    dtype: str
    device: str


def resolve_kind(leaves: Sequence) -> ArrayKind:
    """The common library/dtype/device of the array leaves (numbers adapt)."""
    libs, dtypes, devices = set(), set(), set()
    for x in leaves:
        if arrays.is_array(x):
            libs.add(arrays.library(x))
            dtypes.add(arrays.dtype_name(x))
            devices.add(arrays.device(x))
    if not libs:
        raise ValueError(
            "cannot infer the array type: the formula holds only Python numbers; "
            "bind at least one NumPy array or torch tensor"
        )
    for what, found in (("array libraries", libs), ("dtypes", dtypes), ("devices", devices)):
        if len(found) > 1:
            raise TypeError(f"mixed {what} in one formula: {sorted(found)}")
    return ArrayKind(libs.pop(), dtypes.pop(), devices.pop())


def _check_leaves(formula, weight, leaves, cats) -> None:
    """Every bound value fits its variable: kind, rank and inner dimension.

    LazyTensor guarantees this at construction; a ReductionCall rebound to new
    arrays does not, and a kernel must never read past an array's end.
    """
    if len(leaves) != len(cats):
        raise ValueError(f"expected {len(cats)} arrays, got {len(leaves)}")
    expected = {}
    for root in (formula, weight):
        if root is not None:
            for v in ir.variables(root):
                index, _, dim = v.attrs
                expected[index] = dim
    for k, (x, c) in enumerate(zip(leaves, cats)):
        dim = expected.get(k)
        if arrays.is_array(x):
            need = 1 if c == ir.P else 2
            if x.ndim < need:
                raise ValueError(
                    f"argument {k}: a {'parameter' if c == ir.P else 'variable'} needs at "
                    f"least {need} dimension(s), got shape {tuple(x.shape)}"
                )
            d = x.shape[-1]
        elif c == ir.P and isinstance(x, tuple) and all(isinstance(v, float) for v in x):
            d = len(x)
        else:
            raise TypeError(
                f"argument {k}: expected an array (or numbers for a parameter), "
                f"got {type(x).__name__}"
            )
        if dim is not None and d != dim:
            raise ValueError(f"argument {k}: inner dimension {d}, expected {dim}")


def _count(shapes, cats, cat: int, name: str) -> int:
    """The common number of points of the variables of category ``cat``."""
    counts = {s[-2] for s, c in zip(shapes, cats) if c == cat}
    if len(counts) > 1:
        raise ValueError(f"{name}-variables with different numbers of points: {sorted(counts)}")
    return counts.pop() if counts else 1


def reduce(
    formula: ir.Node,
    reduction: str,
    leaves: Sequence,
    cats: Sequence[int],
    *,
    axis: int = 1,
    weight: ir.Node | None = None,
    K: int | None = None,
    backend=None,
    acc_dtype: str | None = None,
):
    """Evaluate ``reduction`` of ``formula`` over axis 0 (i) or 1 (j).

    ``leaves[k]`` is the array bound to variable k (category ``cats[k]``),
    shaped ``batch + (n, d)`` for i/j-variables and ``batch + (d,)`` for
    parameters, or a Python float / tuple of floats for a parameter.
    Returns the caller's array type, shaped like pykeops' results.

    Arrays are float32 or float64, or float16 / bfloat16 (torch; NumPy:
    float16 only). Those two are computed and accumulated in float32 (or
    float64 with ``acc_dtype="float64"``) and the value outputs come back in
    the input's dtype, rounded to nearest even; indices are int64. The CUDA
    kernel converts them as it loads them; the host targets (CPU and
    reference) run on float32 copies.

    Example
    -------
    >>> import numpy as np
    >>> from kernelsolve.engine import ir
    >>> x, y = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)
    >>> F = ir.make("mul", x, y)
    >>> a = np.ones((3, 1), np.float16)
    >>> out = reduce(F, "sum", [a, np.full((4, 1), 0.5, np.float16)], [ir.I, ir.J])
    >>> out.dtype, out[:, 0].tolist()
    (dtype('float16'), [2.0, 2.0, 2.0])
    """
    found = plan(formula, reduction, leaves, cats, axis, weight, K, backend, acc_dtype)
    return _execute(found, leaves)


def plan(
    formula: ir.Node,
    reduction: str,
    leaves: Sequence,
    cats: Sequence[int],
    axis: int = 1,
    weight: ir.Node | None = None,
    K: int | None = None,
    backend=None,
    acc_dtype: str | None = None,
) -> _Plan:
    """The plan of :func:`reduce` for these arguments (built and checked on the
    first call of a signature); :func:`execute` runs it on arrays of the same
    signature. A caller that repeats one call may keep the plan while
    :func:`context` is unchanged."""
    chosen = config.backend if backend is None else backend
    key = (formula, weight, reduction, K, axis, chosen, acc_dtype, tuple(cats), _compiler())
    key += tuple([_signature(x) for x in leaves])
    found = _plans.get(key)
    if found is None:
        found = _make_plan(formula, reduction, leaves, cats, axis, weight, K, chosen, acc_dtype)
        if len(_plans) > 4096:
            _plans.clear()
        _plans[key] = found
    return found


def context() -> tuple:
    """What every plan also depends on besides its arguments: the default
    backend and the host compiler (both can change at run time)."""
    return (config.backend, _compiler())


def _compiler():
    # cpu.find_compiler is an lru_cache; tests monkeypatch it, so look it up each call
    return cpu.find_compiler()


def _signature(x):
    """What the plan of a call depends on: type, shape, dtype, device (torch's
    ``Size`` and ``device`` are hashable: no conversion on the hot path)."""
    t = type(x)
    if t is np.ndarray:
        return (x.shape, x.dtype)
    if t is tuple:
        return ("numbers", len(x))
    if t in _TENSOR_TYPES or arrays.is_array(x):
        _TENSOR_TYPES.add(t)
        return (t, x.shape, x.dtype, x.device)
    return (t,)


# Array types other than np.ndarray seen by _signature (torch.Tensor, its
# subclasses such as Parameter, cupy.ndarray): one set lookup on the hot path.
_TENSOR_TYPES: set = set()


@dataclass(frozen=True)
class _Plan:
    """Everything about a call that its arrays' values do not change."""

    red: red_mod.Reduction
    target: str  # "reference" | "host" | "cuda"
    kind: ArrayKind
    formula: ir.Node  # over j (transposed for a reduction over i)
    weight: ir.Node | None
    cats: tuple[int, ...]
    batch: tuple[int, ...]
    M: int
    N: int
    K: int
    acc_dtype: str | None
    pads: tuple[int, ...]  # leading size-1 dims to add to each leaf
    spec: KernelSpec | None
    host: cpu.HostCall | None = None  # the host target's precomputed call
    shapes: tuple = ()  # each leaf's shape with the full batch rank
    cast: str | None = None  # float16 / bfloat16 computed in float32 on the host


_plans: dict = register_memo({}, "dispatch.plans")


def _make_plan(formula, reduction, leaves, cats, axis, weight, K, backend, acc_dtype) -> _Plan:
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 (reduce over i) or 1 (reduce over j), got {axis}")
    red = red_mod.get(reduction, K)
    target = normalize_backend(backend)
    kind = resolve_kind(leaves)
    if kind.dtype not in arrays.FLOAT_DTYPES:
        raise TypeError(
            f"unsupported dtype {kind.dtype}: expected float16, bfloat16, float32 or float64"
        )
    half = kind.dtype in arrays.HALF_DTYPES
    # float16 / bfloat16 are computed and accumulated in float32 (at least)
    compute = "float32" if half else kind.dtype
    if acc_dtype not in (None, "auto", compute, "float64"):
        allowed = sorted({"auto", compute, "float64"})
        raise ValueError(f"dtype_acc={acc_dtype!r}: expected one of {allowed}")
    acc_dtype = "float64" if acc_dtype == "float64" else None

    cats = list(cats)
    if axis == 0:
        formula = ir.swap_ij(formula)
        weight = ir.swap_ij(weight) if weight is not None else None
        cats = [{ir.I: ir.J, ir.J: ir.I, ir.P: ir.P}[c] for c in cats]
    _check_leaves(formula, weight, leaves, cats)
    shapes = [tuple(x.shape) if arrays.is_array(x) else (len(x),) for x in leaves]
    batch_shapes = [s[: len(s) - (1 if c == ir.P else 2)] for s, c in zip(shapes, cats)]
    try:
        batch = tuple(np.broadcast_shapes(*batch_shapes)) if any(batch_shapes) else ()
    except ValueError:
        raise ValueError(
            f"batch dimensions {batch_shapes} of the arguments do not broadcast"
        ) from None
    M = _count(shapes, cats, ir.I, "i")
    N = _count(shapes, cats, ir.J, "j")

    D = formula.dim
    E = weight.dim if weight is not None else 0
    red.check(D, K or 0, E)
    if red.uses_weight and weight is None:
        raise ValueError(f"{red.name}: a weight formula is required")
    if red.uses_k and K > N:
        raise ValueError(
            f"K={K} exceeds the number of points along the reduced axis "
            f"({'i' if axis == 0 else 'j'}: {N})"
        )

    on_device = kind.device != "cpu"
    if on_device and target in ("host", "reference"):
        raise ValueError(
            f"backend={backend!r} runs on the host but the arrays live on {kind.device}; "
            "kernelsolve never moves data behind your back: call .cpu() first"
        )
    if target == "cuda" and not on_device:
        raise ValueError(
            f"backend={backend!r} with host arrays: kernelsolve never moves host data to "
            "the GPU behind your back; pass CuPy arrays or torch CUDA tensors"
        )
    if on_device:
        target = "cuda"
    elif target != "reference" and not _host_compiler_available():
        target = "reference"
    elif target != "reference":
        target = "host"
    # the CUDA kernel reads float16 / bfloat16 itself; the host targets get
    # float32 copies, and their results are cast back to the input's dtype
    cast = kind.dtype if half and target != "cuda" else None
    if cast and kind.lib == arrays.NUMPY and cast != "float16":
        raise TypeError(f"NumPy arrays of dtype {cast} are not supported: use float16 or float32")

    nb = len(batch)
    pads = tuple(nb - len(b) for b in batch_shapes)
    spec = None
    if target != "reference":
        dims = tuple(s[-1] for s in shapes)
        spec = KernelSpec(
            formula=formula,
            weight=weight,
            reduction=red,
            K=K or 0,
            dtype=compute if target == "host" else kind.dtype,
            acc_dtype=acc_dtype or compute,
            var_cats=tuple(cats),
            var_dims=dims,
        )
    full = tuple((1,) * p + s for p, s in zip(pads, shapes))
    host = None
    if target == "host":
        host = cpu.HostCall(spec, full, [c == ir.J for c in cats], batch, M, N)
    return _Plan(
        red,
        target,
        kind,
        formula,
        weight,
        tuple(cats),
        batch,
        M,
        N,
        K or 0,
        acc_dtype,
        pads,
        spec,
        host,
        full,
        cast,
    )


def _host_array(x, kind: ArrayKind, shape: tuple, cast: str | None = None) -> np.ndarray:
    """A leaf as a NumPy array (no copy) of the plan's full-rank shape; with
    ``cast`` (float16 / bfloat16 inputs) a float32 copy."""
    if type(x) is np.ndarray:
        a = x if cast is None else x.astype(np.float32)
    elif type(x) is tuple:  # numbers bound to a parameter
        a = np.array(x, dtype=np.float32 if cast else kind.dtype)
    elif kind.lib == arrays.TORCH:  # a CPU tensor (the plan's signature says so)
        if cast is not None:
            x = x.detach().float()
        a = x.detach().numpy() if x.requires_grad else x.numpy()
    else:
        a = arrays.to_numpy(x)
    return a if a.shape == shape else a.reshape(shape)


def _cast_outputs(outs: list, kind: ArrayKind, cast: str | None) -> list:
    """Host results as the caller's arrays; float16 / bfloat16 inputs get their
    value outputs back in their dtype (rounded to nearest even), indices int64."""
    if cast is None:
        if kind.lib == arrays.NUMPY:
            return outs
        if kind.lib == arrays.TORCH and kind.device == "cpu":  # fresh C-contiguous arrays
            from_numpy = sys.modules["torch"].from_numpy
            return [from_numpy(o) for o in outs]
        return [arrays.from_numpy(o, kind.lib, kind.device) for o in outs]
    return [
        arrays.from_numpy(o, kind.lib, kind.device, dtype=None if o.dtype == np.int64 else cast)
        for o in outs
    ]


def execute(plan: _Plan, leaves: Sequence):
    """Run a :func:`plan` on ``leaves`` (arrays of the planned signature)."""
    return _execute(plan, leaves)


def _execute(plan: _Plan, leaves: Sequence):
    kind = plan.kind
    hc = plan.host
    if hc is not None and plan.cast is None:  # the hot path: all but the data is planned
        host = []
        for x, s in zip(leaves, plan.shapes):
            if type(x) is not np.ndarray:
                host.append(_host_array(x, kind, s))
            else:
                host.append(x if x.shape == s else x.reshape(s))
        outs = hc(host, cpu.num_threads(config.num_threads, hc.pairs))
        if kind.lib != arrays.NUMPY:
            outs = _cast_outputs(outs, kind, None)
        return plan.red.present(outs, plan.formula.dim, plan.K)
    if hc is not None:
        host = [_host_array(x, kind, s, plan.cast) for x, s in zip(leaves, plan.shapes)]
        outs = hc(host, cpu.num_threads(config.num_threads, hc.pairs))
        outs = _cast_outputs(outs, kind, plan.cast)
        return plan.red.present(outs, plan.formula.dim, plan.K)
    host = []
    for x, s in zip(leaves, plan.shapes):
        if plan.target != "cuda":
            host.append(_host_array(x, kind, s, plan.cast))
            continue
        if not arrays.is_array(x):
            x = arrays.scalar_array(x, kind.lib, kind.dtype, kind.device)
        host.append(x if tuple(x.shape) == s else x.reshape(s))

    if plan.target == "cuda":
        from .backends import cuda

        if not cuda.available():
            raise RuntimeError(
                f"arrays live on {kind.device} but the CUDA target is unavailable: "
                "install CuPy (pip install 'kernelsolve[cuda]') and check the driver"
            )
        dev = [arrays.to_cupy(x) for x in host]
        outs = cuda.run(plan.spec, dev, plan.batch, plan.M, plan.N, kind.lib)
        outs = [arrays.from_cupy(o, kind.lib, kind.dtype) for o in outs]
    elif plan.target == "reference":
        outs = reference.reduce(
            plan.formula,
            plan.red,
            host,
            plan.cats,
            plan.batch,
            plan.M,
            plan.N,
            weight=plan.weight,
            K=plan.K,
            dtype=np.dtype(np.float32 if plan.cast else kind.dtype),
            acc_dtype=plan.acc_dtype,
            memory_limit=config.reference_memory_limit,
        )
        outs = _cast_outputs(outs, kind, plan.cast)
    return plan.red.present(outs, plan.formula.dim, plan.K)


_warned_no_compiler = False


def _host_compiler_available() -> bool:
    """True if a C++ compiler is found; warns once (per process) if not."""
    global _warned_no_compiler
    if cpu.find_compiler():
        return True
    if not _warned_no_compiler:
        warnings.warn(
            "kernelsolve: no C++ compiler found (set CXX or install g++/clang++); "
            "using the NumPy reference engine, which is much slower",
            RuntimeWarning,
            stacklevel=3,
        )
        _warned_no_compiler = True
    return False
