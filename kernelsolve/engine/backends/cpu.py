"""Host target: the generated C++ compiled into a shared library, via ctypes.

OpenMP threads share the output rows, the loop over j is vectorized (see
:func:`~kernelsolve.engine.codegen.render_cpu`). Kernels are compiled once
per (formula, reduction, dtype, layout), memoised in the process and cached
on disk (:mod:`..cache`).
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..._version import __version__ as _version
from ..cache import get_or_build, key_of, register_memo
from ..codegen import KernelSpec, render_cpu
from .common import all_batch_offsets, alloc_outputs

FLAGS = (
    "-O3",
    "-march=native",
    "-fopenmp",
    "-fno-math-errno",  # lets sqrt vectorize; never changes inf/NaN results
    "-fPIC",
    "-shared",
    "-std=c++17",
    "-w",
)


class CompileError(RuntimeError):
    """The host compiler rejected a generated kernel."""


@functools.lru_cache(maxsize=1)
def find_compiler() -> str | None:
    """``$CXX``, else ``$CC``, else the first of c++, g++, clang++ on PATH."""
    for cand in (os.environ.get("CXX"), os.environ.get("CC"), "c++", "g++", "clang++"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


@functools.lru_cache(maxsize=1)
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


def compile_shared(src: Path, out: Path, flags: tuple[str, ...] = FLAGS) -> None:
    """Host-compile the C++ file ``src`` into the shared library ``out``."""
    cmd = [find_compiler(), *flags, "-x", "c++", str(src), "-o", str(out)]
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


def _load(path: Path):
    lib = ctypes.CDLL(str(path))
    fn = lib.ks_kernel
    fn.restype = ctypes.c_int
    fn.argtypes = [
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    fn._keepalive = lib
    return fn


_memo: dict = register_memo({})


def kernel(spec: KernelSpec):
    """The compiled function for ``spec`` (memoised, cached on disk)."""
    return memoized_build(_memo, spec, render_cpu, FLAGS, ".so", _load)


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


@functools.lru_cache(maxsize=1)
def _default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return os.cpu_count() or 1


def layout(a: np.ndarray, cat_is_j: bool) -> np.ndarray:
    """The kernel's layout: j-variables (batch, D, N), others unchanged;
    always C-contiguous (copies only what is not)."""
    if cat_is_j:
        return np.ascontiguousarray(np.swapaxes(a, -1, -2))
    return np.ascontiguousarray(a)


@functools.lru_cache(maxsize=64)
def _zeros(n: int) -> np.ndarray:
    z = np.zeros(n, dtype=np.int64)
    z.flags.writeable = False
    return z


def run(
    spec: KernelSpec,
    leaves: list[np.ndarray],
    batch: tuple,
    M: int,
    N: int,
    nthreads: int,
) -> list[np.ndarray]:
    """Run the kernel. ``leaves`` are in the kernel's layout (see
    :func:`layout`) with the full number of batch dims (size 1 broadcasts).
    Returns one array per output, shaped ``batch + (M, size)``."""
    fn = kernel(spec)
    nbatch = math.prod(batch)
    boff = all_batch_offsets(np, leaves, batch) if batch else _zeros(len(leaves))
    args = (ctypes.c_void_p * len(leaves))(*[a.__array_interface__["data"][0] for a in leaves])
    outs = alloc_outputs(np, spec, batch, M)
    optr = (ctypes.c_void_p * len(outs))(*[o.ctypes.data for o in outs])
    fn(nbatch, M, N, args, boff.ctypes.data, optr, nthreads)
    return outs
