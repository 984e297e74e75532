"""Run the generated CUDA source on the host, for CI without a GPU.

The exact text that the CUDA target hands to NVRTC is compiled by the host
C++ compiler against ``cuda_emulation.h`` (threads as OS threads, barriers as
``std::barrier``, blocks in sequence, shared memory as a static buffer), with
a small generated launcher per kernel. The launch plan (block size, split of
j, shared memory) comes from :func:`.cuda.plan_launch`, as on a GPU, and can be
forced to small blocks and many splits to exercise ragged tiles and the
merge pass.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import numpy as np

from ..cache import register_memo
from ..codegen.cuda import cuda_merge_param_list, cuda_param_list, render_cuda, split_sizes
from ..codegen.spec import KernelSpec
from .common import all_batch_offsets, alloc_outputs
from .cpu import memoized_build
from .cuda import plan_launch, ranges_launch

HEADER = Path(__file__).with_name("cuda_emulation.h")
FLAGS = ("-std=c++20", "-O1", "-pthread", "-fPIC", "-shared", "-w")


def _launcher(name: str, params: list[tuple[str, str]]) -> str:
    args = ", ".join(f"*({t}*)p[{k}]" for k, (t, _) in enumerate(params))
    return (
        f'extern "C" void ks_emu_{name}(unsigned gx, unsigned gy, unsigned bx, '
        f"size_t smem, void** p) {{\n"
        f"  ks_emu_launch(gx, gy, bx, smem, [=] {{ ks_{name}({args}); }});\n}}\n"
    )


def emulation_source(spec: KernelSpec) -> str:
    """The CUDA source of the target, preceded by the emulation header and
    followed by the launchers."""
    return "\n".join(
        [
            f'#include "{HEADER}"',
            render_cuda(spec),
            _launcher("main", cuda_param_list(spec)),
            _launcher("merge", cuda_merge_param_list(spec)),
        ]
    )


def _load(path: Path):
    lib = ctypes.CDLL(str(path))
    for name in ("ks_emu_main", "ks_emu_merge"):
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = [
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_size_t,
            ctypes.c_void_p,
        ]
    return lib


_memo: dict = register_memo({}, "emulation.kernels")


def library(spec: KernelSpec):
    """The emulated kernels of ``spec``, compiled with the host compiler."""
    return memoized_build(
        _memo, spec, emulation_source, FLAGS, ".emu.so", _load, HEADER.read_text()
    )


def _pack(values: list) -> tuple:
    """kernelParams-style array: a pointer to each argument value."""
    holders = []
    for v in values:
        if isinstance(v, np.ndarray):
            holders.append(ctypes.c_void_p(v.ctypes.data))
        else:
            holders.append(ctypes.c_int64(int(v)))
    ptrs = (ctypes.c_void_p * len(holders))(*[ctypes.addressof(h) for h in holders])
    return ptrs, holders


def run(
    spec: KernelSpec,
    leaves: list[np.ndarray],
    batch: tuple,
    M: int,
    N: int,
    *,
    block: int | None = None,
    nsplit: int | None = None,
    sm_count: int = 132,
    blocks=None,
) -> list[np.ndarray]:
    """Execute ``ks_main`` (and ``ks_merge`` when j is split) on the host.

    ``leaves`` use the GPU layout: ``batch + (n, d)`` for i- and j-variables,
    ``batch + (d,)`` for parameters, full number of batch dims. ``blocks``:
    the :class:`~kernelsolve.engine.ranges.plan.BlockPlan` of a block-sparse
    spec (one block per group of rows, j never split).
    """
    lib = library(spec)
    nbatch = math.prod(batch) if batch else 1
    dev = [np.ascontiguousarray(a) for a in leaves]
    boff = all_batch_offsets(np, dev, batch)
    if spec.ranges:
        nsplit = 1
    plan = plan_launch(spec, nbatch, M, N, sm_count=sm_count, block=block, nsplit=nsplit)
    outs = alloc_outputs(np, spec, batch, M)
    nv, ni = split_sizes(spec)
    rows = nbatch * M
    part_v = np.empty(max(1, rows * plan.nsplit * nv), dtype=np.dtype(spec.acc_dtype))
    part_i = np.empty(max(1, rows * plan.nsplit * ni), dtype=np.int64)
    values = [nbatch, M, N, *dev, boff, *outs, part_v, part_i, plan.chunk, plan.blocks_per_batch]
    grid_x = plan.grid_x
    if spec.ranges:
        groups, red = ranges_launch(blocks, plan.block)
        values += [groups, red]
        grid_x = len(groups)
    ptrs, keep = _pack(values)
    if grid_x:
        lib.ks_emu_main(grid_x, plan.nsplit, plan.block, plan.shared_bytes, ptrs)
    if plan.nsplit > 1:
        mb = 64
        ptrs, keep = _pack([rows, *outs, part_v, part_i, plan.nsplit])
        lib.ks_emu_merge(math.ceil(rows / mb), 1, mb, 0, ptrs)
    del keep
    return outs
