"""Host target: the generated C++ compiled into a shared library, via ctypes.

OpenMP threads share the output rows, the loop over j is vectorized (see
:func:`~kernelsolve.engine.codegen.cpu.render_cpu`). Kernels are compiled once
per (formula, reduction, dtype, layout), memoised in the process and cached
on disk (:mod:`..cache`).
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..._version import __version__ as _version
from ..cache import get_or_build, key_of, memoized, register_memo
from ..codegen.cpu import CPU_VECTOR_J, cpu_j_stride, cpu_tiling, render_cpu
from ..codegen.spec import KernelSpec
from ..reductions import ACCUMULATOR, INDEX
from .common import all_batch_offsets

FLAGS = (
    "-O3",
    "-march=native",
    "-fopenmp",
    "-fno-math-errno",  # lets sqrt vectorize; never changes inf/NaN results
    # Lets GCC turn the selects of ks_exp, relu, clamp, ... into blends: without
    # it, AVX2 (no mask registers) keeps such loops scalar, 7x slower for the
    # Gaussian. It only drops floating-point exception flags, which nothing
    # reads; inf/NaN results are unchanged (unlike -ffast-math).
    "-fno-trapping-math",
    # GCC would split the whole-vector loops at ``j < j1`` (codegen.CPU_VECTOR_J)
    # back into an exact loop with a scalar epilogue
    "-fno-split-loops",
    "-fPIC",
    "-shared",
    "-std=c++17",
    "-w",
)


class CompileError(RuntimeError):
    """The host compiler rejected a generated kernel."""


class CompilerNotFoundError(CompileError):
    """``$CXX`` (or ``$CC``) names a compiler that cannot be run."""


# The variables that choose the host compiler, in order of precedence.
COMPILER_VARS = ("CXX", "CC")


def chosen_compiler() -> tuple[str, str] | None:
    """(variable, value) of the first non-empty ``$CXX`` / ``$CC``, or None."""
    for var in COMPILER_VARS:
        value = os.environ.get(var)
        if value:
            return var, value
    return None


@memoized("cpu.compiler", maxsize=1)
def find_compiler() -> str | None:
    """The host C++ compiler: ``$CXX``, else ``$CC``, else the first of c++,
    g++, clang++ on PATH; None when none is set or found.

    A compiler chosen by ``$CXX`` / ``$CC`` is never replaced by another one:
    when the variable names no executable, its value is returned as it is, so
    that the first compile raises :class:`CompilerNotFoundError` naming the
    variable (see :func:`compiler_problem`).
    """
    chosen = chosen_compiler()
    if chosen:
        return shutil.which(chosen[1]) or chosen[1]
    for cand in ("c++", "g++", "clang++"):
        if shutil.which(cand):
            return shutil.which(cand)
    return None


def compiler_problem() -> str | None:
    """Why the compiler that ``$CXX`` / ``$CC`` chose cannot be run, or None
    (also None when neither is set)."""
    chosen = chosen_compiler()
    if chosen is None or shutil.which(chosen[1]):
        return None
    var, value = chosen
    return (
        f"{var}={value!r} names no executable compiler (neither a path to one nor a "
        f"command on PATH): install it, set {var} to the path of one executable (no "
        f"arguments), or unset {var} to use c++ / g++ / clang++ from PATH"
    )


@memoized("cpu.toolchain_id", maxsize=1)
def _toolchain_id() -> str:
    """Compiler identity and host CPU: part of every cache key (-march=native)."""
    cc = find_compiler()
    try:
        version = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, timeout=30
        ).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        version = "unknown"
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "model name", "Features")):
                    cpu += line
    except OSError:
        pass
    return f"{cc}|{version}|{key_of(cpu)}"


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name and its widest x86 vector extension, from ``/proc/cpuinfo``.

    The name alone can hide what matters for speed: "AMD EPYC" covers both
    Zen 3 (AVX2) and Zen 4 (AVX-512) virtual machines, so x86 names get the
    CPU family / model numbers and the vector extension appended, e.g.
    ``"AMD EPYC (family 25, model 17; AVX-512)"``. ``cpuinfo`` is the file to
    read (a parameter for the tests).
    """
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    if not flags:
        return name
    simd = next(
        (
            label
            for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))
            if flag in flags
        ),
        "SSE",
    )
    family, model = fields.get("cpu family"), fields.get("model")
    where = f"family {family}, model {model}; " if family and model else ""
    return f"{name} ({where}{simd})"


def compile_shared(src: Path, out: Path, flags: tuple[str, ...] = FLAGS) -> None:
    """Host-compile the C++ file ``src`` into the shared library ``out``."""
    cc = find_compiler()
    if cc is None or shutil.which(cc) is None:
        default = f"the C++ compiler {cc} is gone" if cc else "no C++ compiler found"
        raise CompilerNotFoundError(compiler_problem() or f"{default}: install g++ or set CXX")
    cmd = [cc, *flags, "-x", "c++", str(src), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(
            f"compiling the generated kernel {src} failed:\n$ {' '.join(cmd)}\n"
            f"{proc.stdout}{proc.stderr}"
        )


def memoized_build(memo: dict, spec, render, flags, suffix: str, load, *key_extra: str):
    """The loaded library for ``spec``: from ``memo``, else from the disk
    cache, else compiled from ``render(spec)`` with ``flags``."""
    lib = memo.get(spec)
    if lib is None:
        source = render(spec)
        key = key_of(source, " ".join(flags), _toolchain_id(), _version, *key_extra)
        lib = get_or_build(key, suffix, source, lambda s, o: compile_shared(s, o, flags), load)
        memo[spec] = lib
    return lib


_ARGTYPES = [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 3 + [ctypes.c_int]
# a block-sparse kernel also takes its groups, their count and the j-ranges
_RANGES_ARGTYPES = _ARGTYPES + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]


def _loader(argtypes: list):
    def load(path: Path):
        lib = ctypes.CDLL(str(path))
        fn = lib.ks_kernel
        fn.restype = ctypes.c_int
        fn.argtypes = argtypes
        fn._keepalive = lib
        return fn

    return load


_load, _load_ranges = _loader(_ARGTYPES), _loader(_RANGES_ARGTYPES)


_memo: dict = register_memo({}, "cpu.kernels")


def kernel(spec: KernelSpec):
    """The compiled function for ``spec`` (memoised, cached on disk)."""
    return memoized_build(
        _memo, spec, render_cpu, FLAGS, ".so", _load_ranges if spec.ranges else _load
    )


# Below this many pairs one thread is faster than waking a team of threads.
SERIAL_PAIRS = 1 << 16


def num_threads(setting: int | None, pairs: int) -> int:
    """Threads for a call with ``pairs`` (i, j) pairs: ``setting``, else
    ``OMP_NUM_THREADS``, else all cores; one thread for tiny problems."""
    if pairs < SERIAL_PAIRS:
        return 1
    if setting:
        return int(setting)
    return _default_threads()


@memoized("cpu.default_threads", maxsize=1)
def _default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return os.cpu_count() or 1


_addressof, _char_at = ctypes.addressof, ctypes.c_char.from_buffer
_empty, _zeros = np.empty, np.zeros


def _ptr(a: np.ndarray) -> int:
    """Address of the data of a C-contiguous array. ``a.ctypes.data`` builds the
    whole ``__array_interface__`` dict (~1 us); a ctypes view of a writable
    buffer is 2.5x cheaper, and a warm call passes four or five pointers."""
    if a.flags.writeable and a.nbytes:
        return _addressof(_char_at(a))
    return a.ctypes.data


# Copies smaller than this are not aligned: their loads are few, and aligning
# costs a microsecond of Python per array on the warm path of tiny problems.
ALIGN_MIN_BYTES = 16384


def _aligned_empty(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on 64 bytes (when
    it holds at least ALIGN_MIN_BYTES)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < ALIGN_MIN_BYTES:
        return np.empty(shape, dtype)
    raw = np.empty(nbytes + 64, dtype=np.uint8)
    start = -_ptr(raw) % 64
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def layout(a: np.ndarray, cat_is_j: bool, pad: int = 0) -> np.ndarray:
    """The kernel's layout: j-variables (batch, D, NS) with the row stride
    ``NS = cpu_j_stride(N) + pad`` and zeros in the padding columns (64-byte
    aligned when copied), others unchanged; always C-contiguous (copies only
    what is not)."""
    if not cat_is_j:
        return a if a.flags.c_contiguous else np.ascontiguousarray(a)
    n = a.shape[-2]
    ns = cpu_j_stride(n) + pad
    t = a.swapaxes(-1, -2)
    if ns == n and t.flags.c_contiguous:
        return t
    shape = t.shape[:-1] + (ns,)
    if math.prod(shape) * a.itemsize < ALIGN_MIN_BYTES:  # one call less than below
        out = np.zeros(shape, a.dtype)
        out[..., :n] = t
        return out
    out = _aligned_empty(shape, a.dtype)
    out[..., :n] = t
    if ns > n:
        out[..., n:] = 0  # read by the whole-vector loops, masked out of every result
    return out


class _Shape:
    """Stands for an array where only its shape is needed."""

    __slots__ = ("shape",)

    def __init__(self, shape: tuple):
        self.shape = shape


class HostCall:
    """One kernel call with fixed shapes: the layouts, batch offsets, output
    shapes and ctypes types are worked out once (per dispatch plan), so that a
    call only lays out the data, allocates the outputs and calls the kernel.

    ``shapes`` are the leaves' shapes with the full number of batch dims
    (size 1 broadcasts), before :func:`layout`; ``is_j`` tells j-variables.
    """

    __slots__ = ("spec", "nbatch", "M", "N", "is_j", "out_specs", "boff", "boff_ptr")
    __slots__ += ("args_t", "outs_t", "pairs", "_fn", "_memo_of_fn", "_small_j", "_pad")

    def __init__(self, spec: KernelSpec, shapes, is_j, batch: tuple, M: int, N: int):
        self.spec, self.M, self.N = spec, M, N
        self.nbatch = math.prod(batch)
        self.pairs = self.nbatch * M * N
        self.is_j = tuple(is_j)
        # block-sparse kernels read whole vectors past a j-range that ends at N
        self._pad = CPU_VECTOR_J if spec.ranges else 0
        laid = [
            _Shape(s[:-2] + (s[-1], cpu_j_stride(s[-2]) + self._pad) if j else s)
            for s, j in zip(shapes, self.is_j)
        ]
        self.boff = all_batch_offsets(np, laid, batch) if batch else np.zeros(len(laid), np.int64)
        self.boff.flags.writeable = False
        self.boff_ptr = self.boff.ctypes.data
        dtypes = {INDEX: np.dtype(np.int64), ACCUMULATOR: np.dtype(spec.acc_dtype)}
        self.out_specs = [
            (batch + (M, o.size), dtypes.get(o.kind, np.dtype(spec.dtype))) for o in spec.outputs()
        ]
        self.args_t = ctypes.c_void_p * len(laid)
        self.outs_t = ctypes.c_void_p * len(self.out_specs)
        self._fn = self._memo_of_fn = None
        # j-variables small enough for an unaligned zero-padded copy: its shape
        # (batch, D, NS), worked out here rather than by layout() on every call
        itemsize = np.dtype(spec.dtype).itemsize  # host specs: float32 / float64
        self._small_j = tuple(
            lay.shape if j and math.prod(lay.shape) * itemsize < ALIGN_MIN_BYTES else None
            for lay, j in zip(laid, self.is_j)
        )

    def __call__(self, leaves: list[np.ndarray], nthreads: int, blocks=None) -> list[np.ndarray]:
        """Run on ``leaves`` (NumPy arrays of the planned shapes, any strides);
        one output array per output, shaped ``batch + (M, size)``. ``blocks``:
        the :class:`~kernelsolve.engine.ranges.plan.BlockPlan` of a
        block-sparse spec."""
        fn = self._fn
        if fn is None or self._memo_of_fn is not _memo or self.spec not in _memo:
            # compiled on first use (a plan is made without compiling); looked up
            # again when the kernel memo was cleared or replaced
            fn = self._fn = kernel(self.spec)
            self._memo_of_fn = _memo
        ptrs = []
        keep = []  # the laid-out copies live until the kernel returns
        for a, j, small in zip(leaves, self.is_j, self._small_j):
            if small is not None:
                out = _zeros(small, a.dtype)
                out[..., : a.shape[-2]] = a.swapaxes(-1, -2)
                a = out
                keep.append(a)
            elif j or not a.flags.c_contiguous:
                a = layout(a, j, self._pad)
                keep.append(a)
            ptrs.append(_ptr(a))
        outs = [_empty(shape, dtype) for shape, dtype in self.out_specs]
        extra = ()
        if self.spec.ranges:
            groups = blocks.groups(cpu_tiling(self.spec)[0])
            red = np.ascontiguousarray(blocks.red, dtype=np.int64)
            keep += [groups, red]
            extra = (groups.ctypes.data, len(groups), red.ctypes.data)
        fn(
            self.nbatch,
            self.M,
            self.N,
            self.args_t(*ptrs),
            self.boff_ptr,
            self.outs_t(*[_ptr(o) for o in outs]),
            nthreads,
            *extra,
        )
        return outs
