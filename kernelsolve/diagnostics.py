"""What ``kernelsolve info`` reports.

Versions of the dependencies, the CPU target (compiler, flags, a one-reduction
self-test), the CUDA target, NVRTC, the on-disk kernel cache (path, size, and
whether nobody else can write into it), the size of every registered
process-global cache (:func:`kernelsolve.engine.cache.memo_sizes`), and what is
missing with the command that fixes it.

Probing imports third-party packages that talk on import (pykeops prints
"[KeOps] Warning : ..." on stdout, others issue warnings); that chatter is
silenced around the probes so that the report is only the report. Errors the
user must act on (a ``$CXX`` that names no compiler, an unsafe cache) become
lines of the report, never tracebacks.

This module sits on the top layer, beside :mod:`kernelsolve.cli`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Report:
    """``rows``: (field, value) lines; ``missing``: (what, how to get it);
    ``memos``: entries of each registered process-global cache."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    memos: dict[str, int] = field(default_factory=dict)

    def render(self) -> str:
        width = max(len(k) for k, _ in self.rows) + 2
        lines = [f"{k:<{width}}{v}" for k, v in self.rows]
        lines.append("memos (entries held by this process's caches):")
        named = max((len(name) for name in self.memos), default=0) + 2
        lines += [f"  {name:<{named}}{size}" for name, size in self.memos.items()]
        if self.missing:
            lines.append("missing:")
            lines += [f"  {what}: {fix}" for what, fix in self.missing]
        else:
            lines.append("missing: nothing")
        return "\n".join(lines)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence warnings and prints of third-party code (imports of pykeops,
    cupy, cuda-python, torch, gpytorch) while probing."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
        with contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield


def version_of(module: str) -> str | None:
    """``module.__version__`` ("installed" without one), or None when it does
    not import."""
    try:
        mod = importlib.import_module(module)
    except Exception:  # ImportError, or a broken install raising anything else
        return None
    return str(getattr(mod, "__version__", "installed"))


def compiler_version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0].strip() if out.stdout else "unknown version"
    except (OSError, subprocess.SubprocessError):
        return "unknown version"


def gpu_names() -> list[str]:
    """CUDA devices seen by CuPy, else by torch (empty without a GPU)."""
    try:
        import cupy

        names = []
        for k in range(cupy.cuda.runtime.getDeviceCount()):
            name = cupy.cuda.runtime.getDeviceProperties(k)["name"]
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        return names
    except Exception:  # no CuPy, no driver, no device
        pass
    try:
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
    except Exception:
        pass
    return []


def cpu_self_test() -> tuple[bool, str]:
    """One tiny reduction through the compiled CPU target (compiles it if not cached)."""
    from . import LazyTensor

    x = np.random.default_rng(0).random((64, 3))
    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # the reference fallback warns
            K = (-((LazyTensor(x[:, None, :]) - LazyTensor(x[None, :, :])) ** 2).sum(-1)).exp()
            out = K.sum(dim=1, backend="CPU")
    except Exception as exc:  # CompileError, missing compiler, unsafe cache, ...
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    dense = np.exp(-((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)).sum(1)
    if not np.allclose(np.asarray(out).ravel(), dense, rtol=1e-10):
        return False, "wrong result against NumPy"
    return True, f"ok ({time.perf_counter() - t:.2f} s, compile included when not cached)"


CUDA_FIX = (
    "pip install 'kernelsolve[cuda12]' or 'kernelsolve[cuda13]' "
    "(the CUDA major version of your driver: nvidia-smi)"
)
PACKAGES = (
    # (row, module, what it is for, how to install it); None: required, no hint
    ("numpy", "numpy", None, None),
    ("scipy", "scipy", None, None),
    (
        "torch",
        "torch",
        "torch tensors, autograd, the demo's GP",
        "pip install 'kernelsolve[torch]'",
    ),
    (
        "matplotlib",
        "matplotlib",
        "kernelsolve demo (data and figure)",
        "pip install 'kernelsolve[demo]'",
    ),
    (
        "gpytorch",
        "gpytorch",
        "kernelsolve.integrations.gpytorch",
        "pip install 'kernelsolve[gpytorch]'",
    ),
    (
        "tqdm",
        "tqdm",
        "progress bars on a terminal (plain lines without it)",
        "pip install 'kernelsolve[demo]'",
    ),
    ("pykeops", "pykeops", "kernelsolve bench comparisons (optional)", "pip install pykeops"),
    ("cupy", "cupy", "the CUDA target", CUDA_FIX),
)


def _packages(r: Report) -> None:
    for name, mod, why, fix in PACKAGES:
        v = version_of(mod)
        r.rows.append((name, v or "not installed"))
        if v is None and why:
            r.missing.append((f"{name} ({why})", fix))


def _cpu_target(r: Report) -> None:
    from . import config
    from .engine.backends import cpu

    cc, problem = cpu.find_compiler(), cpu.compiler_problem()
    if problem:
        r.rows.append(("CPU target", f"error: {problem}"))
        var = cpu.chosen_compiler()[0]
        r.missing.append(
            (f"the compiler named by {var}", f"install it, or unset {var} / set it to one")
        )
    elif cc:
        r.rows.append(("CPU target", f"{cc}: {compiler_version(cc)}"))
        r.rows.append(("CPU flags", " ".join(cpu.FLAGS)))
        ok, msg = cpu_self_test()
        r.rows.append(("CPU check", msg))
        if not ok:
            r.missing.append(
                ("a working C++ compiler with OpenMP", "apt-get install g++ (or set CXX)")
            )
    else:
        r.rows.append(("CPU target", "no C++ compiler found: the NumPy reference engine is used"))
        r.missing.append(("a C++ compiler with OpenMP", "apt-get install g++ (or set CXX)"))
    threads = config.num_threads or cpu.num_threads(None, 1 << 40)
    r.rows.append(("OpenMP threads", f"{threads} (KERNELSOLVE_NUM_THREADS / OMP_NUM_THREADS)"))


def _cuda_target(r: Report) -> None:
    from .engine.backends import cuda

    gpus = gpu_names()
    if cuda.available():
        r.rows.append(("CUDA target", f"available (CuPy {version_of('cupy')}): {', '.join(gpus)}"))
    elif gpus:
        r.rows.append(("CUDA target", f"GPU {', '.join(gpus)} found, but CuPy is missing"))
        r.missing.append(("CuPy (to run kernels on the GPU)", CUDA_FIX))
    else:
        r.rows.append(("CUDA target", "no CUDA GPU found (the CPU target is used)"))
    nvrtc = cuda.nvrtc_available()
    r.rows.append(("NVRTC", nvrtc or "not available (checks CUDA sources without a GPU; tests)"))
    if not nvrtc:
        r.missing.append(
            (
                "NVRTC (CUDA source checks in the tests)",
                "pip install cuda-python nvidia-cuda-nvrtc-cu12",
            )
        )


def _disk_cache(r: Report) -> None:
    from .engine import cache

    where = cache.cache_dir()
    files, size = cache.disk_usage(where)
    r.rows.append(("cache", f"{where} ({files} files, {size / 2**20:.1f} MiB; {cache.ENV_VAR})"))
    try:
        problem = cache.safety_problem(where)
    except OSError as exc:  # e.g. a directory we may not even read
        problem = f"{where} cannot be checked ({exc})"
    if problem:
        r.rows.append(("cache safe", f"NO: {problem}"))
        r.missing.append(
            (
                "a kernel cache only you can write",
                f"chmod 700 {where} (if you trust its contents; else remove it), "
                f"or set {cache.ENV_VAR} to a directory of your own",
            )
        )
    elif os.path.isdir(where):
        r.rows.append(("cache safe", "yes (yours, not writable by group or others)"))
    else:
        r.rows.append(("cache safe", "yes (not created yet; it will be, with mode 0700)"))


def collect() -> Report:
    """Probe everything ``kernelsolve info`` shows (quietly)."""
    from . import __version__
    from .engine import cache
    from .engine.backends import cpu

    r = Report()
    with quiet():
        r.rows.append(("kernelsolve", __version__))
        r.rows.append(("python", f"{platform.python_version()} ({sys.executable})"))
        where = f"{platform.platform()}; {cpu.cpu_model()}, {os.cpu_count()} cores"
        r.rows.append(("platform", where))
        _packages(r)
        _cpu_target(r)
        _cuda_target(r)
        _disk_cache(r)
        r.memos = cache.memo_sizes()
    return r
