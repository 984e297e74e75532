"""From a reduction request to a target call, and back to the caller's arrays.

:func:`reduce` is the single entry point below LazyTensor. For a
:class:`~.request.ReductionRequest` it

1. resolves the library (NumPy / torch), dtype and device of the arguments
   and turns Python numbers bound to parameters into arrays of that kind,
2. broadcasts the batch dimensions of the arguments,
3. turns a reduction over i into a reduction over j of the transposed formula
   (every target only folds over j),
4. picks the target from the request's options and where the data lives,
5. hands back arrays of the caller's library, shaped as pykeops does.

Steps 1-4 depend only on the arguments' types and shapes: they make a
:class:`Plan`, kept per signature, so a warm call only runs step 5's data
movement and the kernel.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import config
from . import arrays, ir, split
from . import reductions as red_mod
from .arrays import ArrayKind
from .backends import cpu, reference
from .cache import register_memo
from .codegen.spec import KernelSpec
from .ranges import plan as ranges_mod
from .ranges import reference as ranges_reference
from .reductions import VALUE
from .request import TARGETS, USER_NAMES, ReductionRequest, target_of

__all__ = ["Plan", "context", "execute", "outputs", "plan", "reduce", "target_outputs"]


def reduce(request: ReductionRequest):
    """Evaluate ``request``: its reduction of its formula over i or j.

    Nearest-neighbour reductions (``argKmin``, ``Kmin``, ``min``, ``argmin``
    and their pairs) on many points in few dimensions skip the block pairs
    that the formula's interval bounds rule out, with the dense result
    (:func:`.ranges.knn.reduce_pruned`; ties and NaN included). Sum-type
    reductions whose options carry ``tol`` skip the block pairs that fit in
    that error budget (:func:`.ranges.approx_reduce.reduce_approx`).

    Returns the caller's array type, shaped like pykeops' results. Arrays are
    float32 or float64, or float16 / bfloat16 (torch; NumPy: float16 only).
    Those two are computed and accumulated in float32 (or float64 with
    ``acc_dtype="float64"``) and the value outputs come back in the input's
    dtype, rounded to nearest even; indices are int64. The CUDA kernel
    converts them as it loads them; the host targets (CPU and reference) run
    on float32 copies.

    Example
    -------
    >>> from kernelsolve.engine.request import ReductionRequest
    >>> x, y = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)
    >>> a, b = np.ones((3, 1), np.float16), np.full((4, 1), 0.5, np.float16)
    >>> out = reduce(ReductionRequest(ir.make("mul", x, y), "sum", (a, b), (ir.I, ir.J)))
    >>> out.dtype, out[:, 0].tolist()
    (dtype('float16'), [2.0, 2.0, 2.0])
    """
    if request.ranges is None:  # dense: execute(plan, leaves), as tools that wrap it call it
        if request.options.tol is not None and request.reduction in _APPROXIMABLE:
            from .ranges import approx_reduce  # imports this module: looked up at the call

            return approx_reduce.reduce_approx(request)
        if request.reduction in _PRUNABLE:
            from .ranges import knn  # imports this module: looked up at the call

            out = knn.reduce_pruned(request)  # None unless pruning pays (knn.pruning_pays)
            if out is not None:
                return out
        return execute(plan(request), request.arguments)
    if request.options.tol is not None and request.reduction in _APPROXIMABLE:
        raise ValueError(
            "tol= and ranges= together: tol= chooses the block pairs itself; give one of them"
        )
    return execute(plan(request), request.arguments, request.ranges)


#: reductions that skip the block pairs their bounds rule out, identically to
#: the dense result, when it pays (:func:`.ranges.knn.reduce_pruned`)
_PRUNABLE = frozenset(("argkmin", "kmin", "kmin_argkmin", "argmin", "min", "min_argmin"))

#: reductions that take ``options.tol`` (:mod:`.ranges.approx_reduce`)
_APPROXIMABLE = frozenset(("sum", "logsumexp", "logsumexp_weight", "sumsoftmaxweight"))


def plan(request: ReductionRequest) -> Plan:
    """The plan of :func:`reduce` for this request (built and checked on the
    first call of a signature); :func:`execute` runs it on arrays of the same
    signature. A caller that repeats one call may keep the plan while
    :func:`context` is unchanged."""
    if type(request.cats) is not tuple or type(request.arguments) is not tuple:
        request = request._replace(cats=tuple(request.cats), arguments=tuple(request.arguments))
    opts = request.options
    target = opts.target or _configured_target()
    key = (request.formula, request.weight, request.reduction, request.K, request.axis)
    key += (
        target,
        opts.acc_dtype,
        opts.sum_scheme,
        request.cats,
        _compiler(),
        request.ranges is not None,
    )
    key += tuple([_signature(x) for x in request.arguments])
    found = _plans.get(key)
    if found is None:
        found = _make_plan(request, target)
        if len(_plans) > 4096:
            _plans.clear()
        _plans[key] = found
    return found


def _configured_target() -> str:
    """The target of ``config.backend`` (the default of every reduction)."""
    return target_of(config.backend, "kernelsolve.config.backend (KERNELSOLVE_BACKEND)")


def context() -> tuple:
    """What every plan also depends on besides its request: the default
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
_TENSOR_TYPES: set = register_memo(set(), "dispatch.tensor_types")


@dataclass(frozen=True)
class Plan:
    """Everything about a call that its arrays' values do not change."""

    red: red_mod.Reduction
    target: str  # "cpu" | "cuda" | "reference"
    kind: ArrayKind
    formula: ir.Node  # over j (transposed for a reduction over i)
    weight: ir.Node | None
    cats: tuple[int, ...]
    batch: tuple[int, ...]
    M: int
    N: int
    K: int
    acc_dtype: str | None
    spec: KernelSpec | None
    host: cpu.HostCall | None = None  # the CPU target's precomputed call
    shapes: tuple = ()  # each leaf's shape with the full batch rank
    cast: str | None = None  # float16 / bfloat16 computed in float32 on the host
    # block-sparse: the names of the half of pykeops' ranges in use (empty: dense)
    range_names: tuple = ()


_plans: dict = register_memo({}, "dispatch.plans")


def _describe(request: ReductionRequest):
    """``describe(k)`` for error messages: which argument, of what kind."""
    names = {ir.I: "an i-variable", ir.J: "a j-variable", ir.P: "a parameter"}

    def describe(k: int) -> str:
        x = request.arguments[k]
        shape = f" of shape {tuple(x.shape)}" if arrays.is_array(x) else ""
        return f"argument {k} ({names[request.cats[k]]}{shape})"

    return describe


def _check_arguments(request: ReductionRequest) -> None:
    """Every bound value fits its variable: kind, rank and inner dimension.

    LazyTensor guarantees this at construction; a ReductionCall rebound to new
    arrays does not, and a kernel must never read past an array's end.
    """
    leaves, cats = request.arguments, request.cats
    if len(leaves) != len(cats):
        raise ValueError(f"expected {len(cats)} arrays, got {len(leaves)}")
    expected = {}
    for root in (request.formula, request.weight):
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


def _dtypes(kind: ArrayKind, acc_dtype: str | None) -> tuple[str, str | None]:
    """(compute dtype, accumulator dtype or None for the compute dtype)."""
    if kind.dtype not in arrays.FLOAT_DTYPES:
        raise TypeError(
            f"unsupported dtype {kind.dtype}: expected float16, bfloat16, float32 or float64"
        )
    # float16 / bfloat16 are computed and accumulated in float32 (at least)
    compute = "float32" if kind.dtype in arrays.HALF_DTYPES else kind.dtype
    if acc_dtype not in (None, "auto", compute, "float64"):
        allowed = sorted({"auto", compute, "float64"})
        raise ValueError(f"dtype_acc={acc_dtype!r}: expected one of {allowed}")
    return compute, ("float64" if acc_dtype == "float64" else None)


def _choose_target(target: str, kind: ArrayKind) -> str:
    """The target that runs: device arrays -> CUDA; host arrays -> the compiled
    CPU target, or the reference engine when asked or without a compiler.
    Host data never moves to a GPU and device data never to the host."""
    if target not in TARGETS and target != "auto":
        raise ValueError(
            f"ReductionOptions(target={target!r}): expected one of {TARGETS} or 'auto' "
            "(request.target_of maps the backend= names users pass)"
        )
    on_device = kind.device != "cpu"
    asked = USER_NAMES[target]  # as the user (or config.backend) named it
    if on_device and target in ("cpu", "reference"):
        raise ValueError(
            f"backend={asked!r} runs on the host but the arrays live on {kind.device}; "
            "kernelsolve never moves data behind your back: call .cpu() first"
        )
    if target == "cuda" and not on_device:
        raise ValueError(
            f"backend={asked!r} with host arrays: kernelsolve never moves host data to "
            "the GPU behind your back; pass CuPy arrays or torch CUDA tensors"
        )
    if on_device:
        return "cuda"
    if target == "reference" or not _host_compiler_available():
        return "reference"
    return "cpu"


def _layout(request: ReductionRequest) -> tuple[tuple, int, int, tuple]:
    """(broadcast batch shape, M, N, each argument's shape with the full batch rank)."""
    cats = request.cats
    shapes = [tuple(x.shape) if arrays.is_array(x) else (len(x),) for x in request.arguments]
    batch_shapes = [s[: len(s) - (1 if c == ir.P else 2)] for s, c in zip(shapes, cats)]
    try:
        batch = tuple(np.broadcast_shapes(*batch_shapes)) if any(batch_shapes) else ()
    except ValueError:
        raise ValueError(
            f"batch dimensions {batch_shapes} of the arguments do not broadcast"
        ) from None
    M = _count(shapes, cats, ir.I, "i")
    N = _count(shapes, cats, ir.J, "j")
    full = tuple((1,) * (len(batch) - len(b)) + s for b, s in zip(batch_shapes, shapes))
    return batch, M, N, full


def _make_plan(request: ReductionRequest, target: str) -> Plan:
    over_j = request.over_j()  # validates the axis first
    red = red_mod.get(request.reduction, request.K)
    kind = arrays.resolve_kind(request.arguments, _describe(request))
    compute, acc_dtype = _dtypes(kind, request.options.acc_dtype)
    axis, request = request.axis, over_j
    _check_arguments(request)
    batch, M, N, full = _layout(request)
    formula, weight, K = request.formula, request.weight, request.K or 0
    red.check(formula.dim, K, weight.dim if weight is not None else 0)
    if red.uses_weight and weight is None:
        raise ValueError(f"{red.name}: a weight formula is required")
    if red.uses_k and K > N:
        raise ValueError(
            f"K={K} exceeds the number of points along the reduced axis "
            f"({'i' if axis == 0 else 'j'}: {N})"
        )
    target = _choose_target(target, kind)
    range_names = ()
    if request.ranges is not None:
        range_names = ranges_mod.NAMES[:3] if axis == 1 else ranges_mod.NAMES[3:]
        if batch:
            raise ValueError(
                f"ranges= with batch dimensions {batch}: block-sparse reductions take "
                "2-D problems only (pykeops does not support them with batch dimensions "
                "either); loop over the batch, or use a block-diagonal ranges argument "
                "on the stacked points"
            )
    # the CUDA kernel reads float16 / bfloat16 itself; the host targets get
    # float32 copies, and their results are cast back to the input's dtype
    half = kind.dtype in arrays.HALF_DTYPES
    cast = kind.dtype if half and target != "cuda" else None
    if cast and kind.lib == arrays.NUMPY and cast != "float16":
        raise TypeError(f"NumPy arrays of dtype {cast} are not supported: use float16 or float32")
    spec = host = None
    if target != "reference":
        spec = KernelSpec(
            formula=formula,
            weight=weight,
            reduction=red,
            K=K,
            dtype=compute if target == "cpu" else kind.dtype,
            acc_dtype=acc_dtype or compute,
            var_cats=request.cats,
            var_dims=tuple(s[-1] for s in full),
            ranges=bool(range_names),
            sum_scheme=request.options.sum_scheme,
        )
    if target == "cpu":
        host = cpu.HostCall(spec, full, [c == ir.J for c in request.cats], batch, M, N)
    return Plan(
        red=red,
        target=target,
        kind=kind,
        formula=formula,
        weight=weight,
        cats=request.cats,
        batch=batch,
        M=M,
        N=N,
        K=K,
        acc_dtype=acc_dtype,
        spec=spec,
        host=host,
        shapes=full,
        cast=cast,
        range_names=range_names,
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


def execute(plan: Plan, leaves: Sequence, ranges=None):
    """Run a :func:`plan` on ``leaves`` (arrays of the planned signature);
    ``ranges``: pykeops' block-sparse ranges, as in the request of the plan
    (the plan of a reduction over i reads their second half). Under an
    installed :mod:`.split` (``kernelsolve.distributed.sharded()``), the
    split runs it across processes."""
    if split._active is not None:
        return split._active(plan, leaves, ranges)
    return plan.red.present(outputs(plan, leaves, ranges), plan.formula.dim, plan.K)


def outputs(plan: Plan, leaves: Sequence, ranges=None) -> list:
    """:func:`execute` in this process, before ``present``: one array per
    output of the reduction, each ``batch + (M, size)`` (the row axis is -2)."""
    kind = plan.kind
    hc = plan.host
    if plan.range_names or ranges is not None:
        return _execute_blocks(plan, leaves, ranges)
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
        return outs
    outs = target_outputs(plan, leaves)
    if plan.target != "cuda":
        outs = _cast_outputs(outs, kind, plan.cast)
    return outs


def target_outputs(plan: Plan, leaves: Sequence) -> list:
    """The flat outputs of a dense plan's target, each ``batch + (M, size)``,
    before :func:`execute` makes them the caller's arrays: NumPy arrays from
    the host targets (float32 for float16 / bfloat16 inputs), the caller's
    device arrays from CUDA. :mod:`.partial` runs its plans through it."""
    if plan.target == "cuda":
        return _run_cuda(plan, leaves) if plan.M and plan.N else _no_pairs_on_device(plan)
    host = [_host_array(x, plan.kind, s, plan.cast) for x, s in zip(leaves, plan.shapes)]
    if plan.host is not None:
        return plan.host(host, cpu.num_threads(config.num_threads, plan.host.pairs))
    return _reference(plan, host)


def _no_pairs_on_device(plan: Plan) -> list:
    """The outputs of a CUDA plan with no row or no column (a restricted plan,
    :mod:`.partial`), made on the host without a kernel (the launch plan
    divides by both) and moved to the device as the kernel would write them."""
    kind = plan.kind
    half = kind.dtype in arrays.HALF_DTYPES
    outs = _reference(plan, [])
    specs = plan.red.outputs(plan.formula.dim, plan.K, plan.weight.dim if plan.weight else 0)
    return [
        arrays.from_numpy(
            o, kind.lib, kind.device, kind.dtype if half and s.kind == VALUE else None
        )
        for o, s in zip(outs, specs)
    ]


def _reference(plan: Plan, host: list) -> list:
    """:func:`.backends.reference.reduce` of a dense plan on host arrays."""
    return reference.reduce(
        plan.formula,
        plan.red,
        host,
        plan.cats,
        plan.batch,
        plan.M,
        plan.N,
        weight=plan.weight,
        K=plan.K,
        # float16 / bfloat16: computed in float32 (on copies, see _host_array)
        dtype=np.dtype(np.float32 if plan.kind.dtype in arrays.HALF_DTYPES else plan.kind.dtype),
        acc_dtype=plan.acc_dtype,
        memory_limit=config.reference_memory_limit,
    )


def _execute_blocks(plan: Plan, leaves: Sequence, ranges):
    """:func:`execute` of a block-sparse plan: ``ranges`` checked, then the
    target runs only the kept blocks (:mod:`.ranges`)."""
    if not plan.range_names or ranges is None:
        raise ValueError(
            "ranges= given to a dense plan, or missing from a block-sparse one: "
            "plan and execute the same request"
        )
    if plan.range_names != ranges_mod.NAMES[:3]:  # over i: the plan is transposed
        ranges = ranges_mod.swap_axes(ranges)
    blocks = ranges_mod.block_plan(ranges, plan.M, plan.N, plan.range_names)
    kind = plan.kind
    if plan.target == "cuda":
        outs = _run_cuda(plan, leaves, blocks)
    else:
        host = [_host_array(x, kind, s, plan.cast) for x, s in zip(leaves, plan.shapes)]
        if plan.host is not None:
            threads = cpu.num_threads(config.num_threads, blocks.pairs())
            outs = plan.host(host, threads, blocks)
        else:
            outs = ranges_reference.reduce(
                plan.formula,
                plan.red,
                host,
                plan.cats,
                blocks,
                weight=plan.weight,
                K=plan.K,
                dtype=np.dtype(np.float32 if plan.cast else kind.dtype),
                acc_dtype=plan.acc_dtype,
            )
        outs = _cast_outputs(outs, kind, plan.cast)
    return outs


def _run_cuda(plan: Plan, leaves: Sequence, blocks=None) -> list:
    from .backends import cuda

    kind = plan.kind
    if not cuda.available():
        raise RuntimeError(
            f"arrays live on {kind.device} but the CUDA target is unavailable: "
            "install CuPy for your driver's CUDA major version (pip install "
            "'kernelsolve[cuda12]' or 'kernelsolve[cuda13]') and check the driver"
        )
    dev = []
    for x, s in zip(leaves, plan.shapes):
        if not arrays.is_array(x):
            x = arrays.scalar_array(x, kind.lib, kind.dtype, kind.device)
        dev.append(arrays.to_cupy(x if tuple(x.shape) == s else x.reshape(s)))
    outs = cuda.run(plan.spec, dev, plan.batch, plan.M, plan.N, kind.lib, blocks=blocks)
    return [arrays.from_cupy(o, kind.lib, kind.dtype) for o in outs]


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
            stacklevel=4,
        )
        _warned_no_compiler = True
    return False
