"""The table of what differs between the C-like targets.

The formula statements are the same text on every target; the templates
around them read these attributes instead of spelling a target's words.
A host target (:data:`CPU`) needs only the entry point's prefix and the names
of ``exp`` and ``log``; a GPU target (:data:`CUDA`) also names its thread and block
indices, its barrier and its preambles, so that another GPU dialect (HIP,
say) is one more row of this table, not another template.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class Dialect:
    """A C-like target: what the formula emitter and every template read."""

    kernel_prefix: str  # before a kernel entry point
    exp: str  # exp of the formulas (CPU: vectorizable, keeps 0 / inf / NaN exact)
    log: str | None  # log of the formulas (CPU: vectorizable); None: libm's (logf, log)


@dataclass(frozen=True)
class GPUDialect(Dialect):
    """A GPU target: one thread per output row, tiles staged in shared memory."""

    thread_x: str  # index of the thread in its block
    block_x: str  # index of the block along the rows
    block_y: str  # index of the split of the j range
    block_dim_x: str  # threads per block
    grid_dim_y: str  # splits of the j range
    barrier: str  # block-wide barrier statement
    preamble: str  # integer types, INFINITY / NAN, the dynamic shared-memory macro
    half_preamble: str  # the float16 / bfloat16 types and conversions
    # (dtype, C storage type, conversion to float) of the dtypes stored narrower
    # than they are computed (only GPU targets store them: the host targets get
    # float32 copies)
    half_types: tuple[tuple[str, str, str], ...]


CPU = Dialect(kernel_prefix='extern "C"', exp="ks_exp", log="ks_log")

CUDA = GPUDialect(
    kernel_prefix='extern "C" __global__',
    exp="exp",
    log=None,
    thread_x="threadIdx.x",
    block_x="blockIdx.x",
    block_y="blockIdx.y",
    block_dim_x="blockDim.x",
    grid_dim_y="gridDim.y",
    barrier="__syncthreads();",
    preamble=(_HERE / "cuda_preamble.h").read_text(),
    half_preamble=(_HERE / "cuda_half.h").read_text(),
    half_types=(
        ("float16", "__half", "__half2float"),
        ("bfloat16", "__nv_bfloat16", "__bfloat162float"),
    ),
)
