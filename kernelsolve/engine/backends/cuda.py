"""CUDA target: the generated CUDA source through CuPy's RawModule (NVRTC).

One thread per output row, j-tiles staged in shared memory, and a split of
the j range over ``gridDim.y`` (merged by a second kernel) when there are too
few rows to fill the GPU (see :func:`~kernelsolve.engine.codegen.cuda.render_cuda`).
Kernels launch on the caller's current stream (torch's or CuPy's) with no
host synchronisation; torch CUDA tensors and CuPy arrays are read in place
(zero copy) when they are contiguous.

Without a GPU the same source is checked in CI by :func:`nvrtc_compile`
(compilation to PTX) and by :mod:`.emulation` (execution on the host).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache import memoized, register_memo
from ..codegen.cuda import cuda_shared_bytes, render_cuda, split_sizes
from ..codegen.spec import KernelSpec
from .common import all_batch_offsets, alloc_outputs

SHARED_BUDGET = 48 * 1024  # bytes of dynamic shared memory per block, no opt-in
MAX_BLOCK = 256


@dataclass(frozen=True)
class LaunchPlan:
    block: int  # threads per block = j columns per shared tile
    blocks_per_batch: int  # blocks along gridDim.x for one batch entry
    grid_x: int  # nbatch * blocks_per_batch
    nsplit: int  # splits of the j range (gridDim.y)
    chunk: int  # j columns per split
    shared_bytes: int

    @property
    def grid(self) -> tuple[int, int]:
        return (self.grid_x, self.nsplit)


def plan_launch(
    spec: KernelSpec,
    nbatch: int,
    M: int,
    N: int,
    *,
    sm_count: int = 132,
    block: int | None = None,
    nsplit: int | None = None,
) -> LaunchPlan:
    """Block size from the shared-memory budget; split j when the rows alone
    give fewer than ~4 blocks per multiprocessor."""
    itemsize = spec.itemsize
    dj = max(1, spec.j_dims)
    fit = SHARED_BUDGET // (dj * itemsize)  # columns whose j-variables fit in shared memory
    if fit < 1:
        raise ValueError(
            f"j-variables of total dimension {dj} ({spec.dtype}) do not fit in "
            f"{SHARED_BUDGET} bytes of shared memory for even one column"
        )
    if block is None:
        # Whole warps when at least one fits; fewer threads than a warp otherwise.
        block = min(MAX_BLOCK, fit) // 32 * 32 if fit >= 32 else fit
    elif block > fit:
        raise ValueError(
            f"block={block}: {block} columns of j-variables (dim {dj}) exceed the "
            f"{SHARED_BUDGET}-byte shared-memory budget; at most {fit}"
        )
    blocks_per_batch = max(1, math.ceil(M / block))
    if nsplit is None:
        row_blocks = nbatch * blocks_per_batch
        want = 4 * sm_count
        nsplit = 1
        if row_blocks < want:
            nsplit = min(math.ceil(want / row_blocks), max(1, N // (4 * block)))
        nsplit = max(1, nsplit)
    chunk = math.ceil(N / nsplit)
    nsplit = math.ceil(N / chunk)  # no empty split
    return LaunchPlan(
        block,
        blocks_per_batch,
        nbatch * blocks_per_batch,
        nsplit,
        chunk,
        cuda_shared_bytes(spec, block),
    )


def ranges_launch(blocks, block: int) -> tuple:
    """Host arrays of a block-sparse launch: the groups of rows (one per
    thread block, at most ``block`` rows each) and the j-ranges (int64)."""
    if blocks is None:
        raise ValueError("a block-sparse kernel needs its BlockPlan (blocks=)")
    red = np.ascontiguousarray(blocks.red, dtype=np.int64).reshape(-1)
    return blocks.groups(block), red if len(red) else np.zeros(2, np.int64)


# ----------------------------------------------------------------------------
# Compilation check without a GPU
# ----------------------------------------------------------------------------


@memoized("cuda.nvrtc_available", maxsize=1)
def nvrtc_available() -> str | None:
    """'nvrtc' (cuda-python bindings), 'nvcc', or None."""
    try:
        from cuda.bindings import nvrtc

        # Importing is not enough: the bindings must find an NVRTC library.
        err, *_ = nvrtc.nvrtcVersion()
        if err == nvrtc.nvrtcResult.NVRTC_SUCCESS:
            return "nvrtc"
    except Exception:  # ImportError, or RuntimeError when no library is found
        pass
    return "nvcc" if shutil.which("nvcc") else None


@memoized("cuda.include_dir", maxsize=1)
def cuda_include_dir() -> str | None:
    """A directory holding ``cuda_fp16.h`` and ``cuda_bf16.h`` (float16 /
    bfloat16 kernels include them): ``$CUDA_HOME`` / ``$CUDA_PATH``, the
    toolkits under /usr/local, or the pip wheels of the CUDA runtime. CuPy
    finds its own at run time; this is for :func:`nvrtc_compile`, which an
    NVRTC without built-in headers needs."""
    import glob
    import os
    import sys

    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    roots += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    dirs = [os.path.join(r, "include") for r in roots if r]
    for site in sys.path:
        dirs += sorted(glob.glob(os.path.join(site, "nvidia", "cuda_runtime", "include")))
        dirs += sorted(glob.glob(os.path.join(site, "nvidia", "cu*", "include")))
    for d in dirs:
        if os.path.isfile(os.path.join(d, "cuda_fp16.h")) and os.path.isfile(
            os.path.join(d, "cuda_bf16.h")
        ):
            return d
    return None


def nvrtc_compile(source: str, arch: str = "compute_90") -> str:
    """Compile CUDA ``source`` to PTX text (NVRTC, or nvcc as a fallback).

    Raises RuntimeError with the compiler log on failure.
    """
    how = nvrtc_available()
    if how is None:
        raise RuntimeError("neither cuda-python's NVRTC nor nvcc is available")
    inc = cuda_include_dir()
    if how == "nvrtc":
        from cuda.bindings import nvrtc

        err, prog = nvrtc.nvrtcCreateProgram(source.encode(), b"ks.cu", 0, [], [])
        _nvrtc_ok(nvrtc, err)
        opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++17"]
        if inc:
            opts.append(f"--include-path={inc}".encode())
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            _, size = nvrtc.nvrtcGetProgramLogSize(prog)
            log = b" " * size
            nvrtc.nvrtcGetProgramLog(prog, log)
            raise RuntimeError(f"NVRTC failed:\n{log.decode(errors='replace')}")
        _, size = nvrtc.nvrtcGetPTXSize(prog)
        ptx = b" " * size
        nvrtc.nvrtcGetPTX(prog, ptx)
        return ptx.decode(errors="replace").rstrip("\0")
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "ks.cu"
        src.write_text(source)
        out = Path(d) / "ks.ptx"
        proc = subprocess.run(
            ["nvcc", "-ptx", f"-arch={arch}", "-std=c++17", str(src), "-o", str(out)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"nvcc failed:\n{proc.stderr}")
        return out.read_text()


def _nvrtc_ok(nvrtc, err) -> None:
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"NVRTC error {err}")


# ----------------------------------------------------------------------------
# Execution with CuPy
# ----------------------------------------------------------------------------


def available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, CUDARuntimeError without a driver, ...
        return False


_modules: dict = register_memo({}, "cuda.modules")


def _module(spec: KernelSpec):
    mod = _modules.get(spec)
    if mod is None:
        import cupy

        mod = cupy.RawModule(code=render_cuda(spec), options=("--std=c++17",))
        _modules[spec] = mod
    return mod


def _stream(lib: str):
    """The caller's current stream: torch's for torch tensors, else CuPy's."""
    import cupy

    if lib == "torch":
        import torch

        return cupy.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream)
    return cupy.cuda.get_current_stream()


def run(
    spec: KernelSpec, leaves: list, batch: tuple, M: int, N: int, lib: str, blocks=None
) -> list:
    """Launch on device arrays (CuPy arrays, torch CUDA tensors viewed as
    CuPy through DLPack). ``leaves`` are ``batch + (n, d)`` / ``batch + (d,)``
    with the full number of batch dims. Returns CuPy arrays ``batch + (M, size)``.
    ``blocks``: the BlockPlan of a block-sparse spec (:func:`ranges_launch`).
    """
    import cupy

    nbatch = math.prod(batch) if batch else 1
    with _stream(lib):
        dev = [cupy.ascontiguousarray(cupy.asarray(a)) for a in leaves]
        boff = all_batch_offsets(cupy, dev, batch)
        plan = plan_launch(
            spec,
            nbatch,
            M,
            N,
            sm_count=cupy.cuda.Device().attributes["MultiProcessorCount"],
            nsplit=1 if spec.ranges else None,
        )
        outs = alloc_outputs(cupy, spec, batch, M)
        nv, ni = split_sizes(spec)
        rows = nbatch * M
        acc_dt = cupy.dtype(spec.acc_dtype)
        part_v = cupy.empty(max(1, rows * plan.nsplit * nv) if plan.nsplit > 1 else 1, acc_dt)
        part_i = cupy.empty(max(1, rows * plan.nsplit * ni) if plan.nsplit > 1 else 1, cupy.int64)
        mod = _module(spec)
        main = mod.get_function("ks_main")
        args = (
            cupy.int64(nbatch),
            cupy.int64(M),
            cupy.int64(N),
            *dev,
            boff,
            *outs,
            part_v,
            part_i,
            cupy.int64(plan.chunk),
            cupy.int64(plan.blocks_per_batch),
        )
        grid = plan.grid
        if spec.ranges:
            groups, red = ranges_launch(blocks, plan.block)
            args += (cupy.asarray(groups), cupy.asarray(red))
            grid = (len(groups), 1)
        if grid[0]:
            main(grid, (plan.block,), args, shared_mem=plan.shared_bytes)
        if plan.nsplit > 1:
            merge = mod.get_function("ks_merge")
            mb = 128
            merge(
                (math.ceil(rows / mb),),
                (mb,),
                (cupy.int64(rows), *outs, part_v, part_i, cupy.int64(plan.nsplit)),
            )
    return outs
