"""The options of a reduction as users write them (pykeops' keywords:
``backend=``, ``dtype_acc=``, ``sum_scheme=``, ``ranges=``, ``tol=``,
``call=``, ``out=``, ...), read once at the API edge into a
:class:`~kernelsolve.engine.request.ReductionOptions`; nothing below sees
pykeops' names. Shared by the LazyTensor reductions and ``Genred``.
"""

from __future__ import annotations

import inspect

import numpy as np

from ..engine import arrays
from ..engine import reductions as red_mod
from ..engine.codegen import summation
from ..engine.ranges.approx_reduce import APPROXIMABLE, check_tol
from ..engine.request import DEFAULT_OPTIONS, ReductionOptions, target_of
from .binding import is_int

# pykeops' keywords that tune speed, never results: accepted and ignored.
# (enable_chunks: pykeops' "chunked" mode for large inner dimensions; the CPU
# and GPU templates here pick their own blocking.)
_SPEED_KEYWORDS = ("enable_chunks", "optional_flags", "use_fast_math")


def check_ranges_argument(value):
    """``ranges=`` as a reduction takes it: None, or pykeops' six integer
    arrays (checked against the problem's sizes when the reduction runs)."""
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 6:
        raise TypeError(
            "ranges= must be None or a tuple of six integer arrays (ranges_i, slices_i, "
            "redranges_j, ranges_j, slices_j, redranges_i), as "
            "kernelsolve.keops.torch.cluster.from_matrix returns"
        )
    return tuple(value)


def reduction_options(kwargs: dict, base: ReductionOptions = DEFAULT_OPTIONS):
    """pykeops' reduction keywords -> (options, call, out, ranges).

    ``backend``, ``dtype_acc`` / ``use_double_acc`` and ``sum_scheme`` set
    the options (validated now); ``call`` and ``out`` are returned apart;
    ``tol`` (sum-type reductions: the error allowed relative to
    ``sum_j |F_ij|``, :mod:`~kernelsolve.engine.ranges.approx_reduce`) is
    checked; ``device_id`` is checked for its form here and against the data by
    :func:`check_device_id`; the speed-only keywords of pykeops are accepted
    and ignored; anything else is a ``TypeError``.
    """
    target, acc_dtype, sum_scheme, tol = base
    call, out, ranges = True, None, None
    for key, value in kwargs.items():
        if key == "call":
            call = bool(value)
        elif key == "out":
            out = value
        elif key == "backend":
            target = target_of(value)
        elif key == "dtype_acc":
            acc_dtype = None if value in (None, "auto") else str(value)
        elif key == "use_double_acc":
            if value:
                if kwargs.get("dtype_acc") not in (None, "auto", "float64"):
                    raise ValueError("use_double_acc=True and dtype_acc: set only one of the two")
                acc_dtype = "float64"
        elif key == "sum_scheme":
            sum_scheme = None if value in (None, "auto") else summation.scheme(value).name
        elif key == "device_id":
            _device_index(value)
        elif key == "ranges":
            ranges = check_ranges_argument(value)
        elif key == "tol":
            tol = check_tol(value)
        elif key not in _SPEED_KEYWORDS:
            raise TypeError(f"unexpected keyword argument {key!r} for a reduction")
    return ReductionOptions(target, acc_dtype, sum_scheme, tol), call, out, ranges


def _device_index(device_id):
    """pykeops' ``device_id`` -> None (wherever the data is: None or -1),
    ``"cpu"`` or a GPU index."""
    if device_id is None or (is_int(device_id) and device_id == -1):
        return None
    if is_int(device_id) and device_id >= 0:
        return int(device_id)
    text = str(device_id).lower()  # "cpu", "cuda", "cuda:1", a torch.device
    if text == "cpu":
        return "cpu"
    if text in ("cuda", "gpu"):
        return 0
    head, _, index = text.partition(":")
    if head in ("cuda", "gpu") and index.isdigit():
        return int(index)
    raise ValueError(
        f"device_id={device_id!r}: expected -1 or None (where the data is), 'cpu', "
        "or a GPU index (0, 1, ... or 'cuda:N')"
    )


def check_device_id(device_id, device: str) -> None:
    """Raise unless ``device_id`` names ``device``, where the data lives
    (``"cpu"`` or ``"cuda:N"``): kernelsolve runs a reduction where its
    arrays are and never moves them (DESIGN: arrays in, same arrays out).

    >>> check_device_id(-1, "cpu"); check_device_id(0, "cuda:0")
    >>> check_device_id(0, "cpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: device_id=0 asks for GPU 0, but the data is on the host (cpu): ...
    """
    want = _device_index(device_id)
    if want is None or want == device or (want == 0 and device == "cuda"):
        return
    if want == "cpu":
        raise ValueError(
            f"device_id={device_id!r} asks for the host, but the data is on {device}: "
            "kernelsolve computes where the arrays are; move them first (x.cpu())"
        )
    if device == "cpu":
        raise ValueError(
            f"device_id={device_id!r} asks for GPU {want}, but the data is on the host (cpu): "
            "kernelsolve computes where the arrays are; move them to the GPU first (x.cuda()) "
            "or pass device_id=-1"
        )
    if f"cuda:{want}" != device:
        raise ValueError(
            f"device_id={device_id!r} asks for GPU {want}, but the data is on {device}: "
            f"move it there first (x.to('cuda:{want}')) or pass device_id=-1"
        )


def check_sum_scheme(options: ReductionOptions, reduction: str) -> None:
    """pykeops' rule: ``block_sum`` and ``kahan_scheme`` only apply to the
    reductions that sum (sum, logsumexp and its weighted forms); so does
    ``tol`` (the nearest-neighbour reductions are exact, pruned when it pays)."""
    if options.tol is not None and reduction not in APPROXIMABLE:
        raise ValueError(
            f"tol={options.tol!r} is only valid for sum-type reductions (sum, K @ v, "
            f"logsumexp, sumsoftmaxweight), not {reduction!r}: the others are exact"
        )
    if options.sum_scheme not in (None, "direct_sum") and not red_mod.REDUCTIONS[reduction].sums:
        raise ValueError(
            f"sum_scheme={options.sum_scheme!r} is only valid for sum-type reductions "
            f"(sum, logsumexp, sumsoftmaxweight), not {reduction!r}"
        )


# The options every reduction method takes, as its signature shows them
# (help(K.sum)); the speed-only keywords of pykeops go through **speed_options.
_OPTION_PARAMETERS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
    for name, default in (
        ("backend", None),
        ("dtype_acc", "auto"),
        ("use_double_acc", False),
        ("sum_scheme", "auto"),
        ("call", True),
        ("out", None),
        ("ranges", None),
        ("tol", None),
        ("device_id", None),
        ("enable_chunks", True),
    )
] + [inspect.Parameter("speed_options", inspect.Parameter.VAR_KEYWORD)]

_OPTIONS_DOC = """
        Options (keywords, pykeops' names): ``backend`` ("auto", "CPU", "GPU",
        "reference"; None: ``config.backend``), ``dtype_acc`` ("auto" or
        "float64": the accumulator), ``use_double_acc`` (True: float64
        accumulator), ``sum_scheme`` ("auto" = "block_sum": block sums merged
        with compensated additions, about the rounding of the result;
        "direct_sum": plain additions; "kahan_scheme": every value added with
        compensation; sum-type reductions only), ``call`` (False: return a
        :class:`ReductionCall`), ``out`` (an array to write the result into),
        ``ranges`` (pykeops' six integer arrays of a block-sparse reduction,
        see :mod:`kernelsolve.engine.ranges`; default: ``K.ranges``),
        ``tol`` (sum-type reductions: None, exact, or the error allowed, the
        block pairs whose bounded contribution fits in it being skipped:
        ``|approx_i - exact_i| <= tol * sum_j |F_ij|`` for sums,
        ``-log(1 - tol)`` for logsumexp; see
        :mod:`kernelsolve.engine.ranges.approx_reduce`),
        ``device_id`` (-1 / None: where the data is; "cpu" or a GPU index
        must name the device of the data, which is never moved),
        ``enable_chunks`` (a speed hint of pykeops: accepted, no effect on
        results); pykeops' ``optional_flags`` and ``use_fast_math`` are
        accepted and ignored."""


def reduction_method(fn):
    """Give a reduction method the signature and docstring of its options
    (it takes them as ``**kwargs`` and hands them to ``_reduce``)."""
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    fn.__signature__ = sig.replace(parameters=params + _OPTION_PARAMETERS)
    fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n" + _OPTIONS_DOC
    return fn


def write_out(result, out):
    """``result`` copied into ``out`` (pykeops' ``out=``), or ``result``."""
    if out is None:
        return result
    if isinstance(result, tuple):
        raise ValueError("out= is not supported for reductions with several outputs")
    if arrays.is_dask(result):
        raise TypeError(
            "out= with dask arrays: the result is a lazy dask array; store it with "
            "dask.array.store or compute it instead"
        )
    if not arrays.is_array(out) or arrays.library(out) != arrays.library(result):
        raise TypeError(
            f"out= must be a {arrays.library(result)} array like the result, "
            f"got {type(out).__name__}"
        )
    if tuple(out.shape) != tuple(result.shape):
        raise ValueError(f"out has shape {tuple(out.shape)}; expected {tuple(result.shape)}")
    if isinstance(out, np.ndarray):
        out[...] = result
    else:
        out.copy_(result)
    return out
