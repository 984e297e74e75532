"""Dense kernel blocks: when building one pays, and building it with the engine.

The engine recomputes ``K_ij`` for every product, which is right when ``K``
does not fit in memory and wrong when it does and many products follow (CG,
Lanczos, GMRES, predictive variances): a stored block runs at BLAS speed.
This module holds the one cost model that every solver and operator asks.

* :func:`memory_budget`: the bytes a dense block may take,
  ``config.dense_memory_limit`` or ``config.dense_memory_fraction`` of the
  memory available now.
* :func:`dense_pays`: a block of ``rows x cols`` entries fits the budget and
  the expected number of products repays its construction (building costs
  about :data:`FILL_PRODUCTS` engine products, measured below).
* :func:`kernel_matrix`: ``K[x, y]`` of a formula of variable 0 (over i) and
  variable 1 (over j), filled by one engine reduction (the j-points laid out
  as a batch with one j each, as ``KernelOperator.columns`` does).

Measured (Intel Xeon, 2 cores, float64, Gaussian in 2-D, n = 5,000): one
engine product 0.037 s, the 5,000 x 5,000 block 0.62 s (17 products), a BLAS
product with it 0.011 s.
"""

from __future__ import annotations

import os

import numpy as np

from .. import autograd
from ..config import config
from ..engine import arrays, ir
from ..engine.request import ReductionOptions, ReductionRequest, target_of

__all__ = ["FILL_PRODUCTS", "memory_budget", "dense_pays", "kernel_matrix", "block"]

#: Building a dense block costs about this many engine products of the same size.
FILL_PRODUCTS = 20


def available_memory() -> int:
    """Bytes of physical memory available now (total memory where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**31


def device_memory(device: str) -> int | None:
    """Free bytes on a CUDA device (``"cuda:0"``), from torch or CuPy; None when
    neither can tell."""
    index = int(device.split(":")[1]) if ":" in device else 0
    try:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info(index)[0])
    except (ImportError, RuntimeError):
        pass
    try:
        import cupy

        with cupy.cuda.Device(index):
            return int(cupy.cuda.runtime.memGetInfo()[0])
    except Exception:  # no CuPy, or no driver: fall through to "unknown"
        return None


def memory_budget(device: str = "cpu") -> int:
    """Bytes a dense kernel block may take on ``device`` (``"cpu"`` or
    ``"cuda:k"``): ``config.dense_memory_limit``, or ``config.dense_memory_fraction``
    of the memory available there now (the free memory of the GPU for a CUDA
    device, host memory where that cannot be read)."""
    if config.dense_memory_limit is not None:
        return int(config.dense_memory_limit)
    free = device_memory(device) if device.startswith("cuda") else None
    return int(config.dense_memory_fraction * (available_memory() if free is None else free))


def dense_pays(rows: int, cols: int, itemsize: int, products: float, device: str = "cpu") -> bool:
    """True when a ``rows x cols`` block fits :func:`memory_budget` of ``device``
    and ``products`` expected products with it repay building it.

    Example
    -------
    >>> dense_pays(1500, 1500, 8, products=100)
    True
    >>> dense_pays(10**6, 10**6, 8, products=100)
    False
    """
    fits = rows * cols * itemsize <= memory_budget(device)
    return fits and products >= FILL_PRODUCTS


def kernel_matrix(formula: ir.Node, x, y, *, backend=None):
    """``K[a, b] = F(x_a, y_b)`` as a dense array, computed by the engine.

    ``formula`` is a scalar formula of variable 0 (``x``, category i) and
    variable 1 (``y``, category j) only, as for ``operator.kernel_sum``;
    ``x``, ``y`` are NumPy arrays or torch tensors (alike) of shape
    ``(n, d)`` and ``(m, d)``. Returns an ``(n, m)`` array of their library
    (differentiable in torch).

    Example
    -------
    >>> x = np.random.default_rng(0).random((5, 2))
    >>> s = ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2))
    >>> f = ir.make("exp", ir.make("neg", s))
    >>> K = kernel_matrix(f, x, x)
    >>> bool(np.allclose(K, np.exp(-((x[:, None] - x[None]) ** 2).sum(-1))))
    True
    """
    return block(formula, (x, y), (ir.I, ir.J), backend=backend)


def block(formula: ir.Node, leaves, cats, *, backend=None):
    """The dense ``M x N`` matrix of a scalar formula over arbitrary leaves.

    ``leaves`` and ``cats`` are bound as in a reduction (``ir.I``, ``ir.J``,
    ``ir.P``; what a LazyTensor holds as ``variables`` and ``cats``). One
    reduction fills the block: the j-points are laid out as a batch of blocks
    of :data:`FILL_BLOCK` points, and the formula times a j-variable holding
    the identity's rows, summed over each block, gives the block's
    ``FILL_BLOCK`` columns at once (``K @ I`` per block). One j per batch entry
    instead (``KernelOperator.columns``' layout) gives one output row per
    entry and ran 3.4x slower (n = 5,000). The products with the identity are
    exact; a non-finite value would spread to its block's other columns
    (``inf * 0``), so such a block is refilled one j per entry. Differentiable
    in torch.

    Example
    -------
    >>> x = np.random.default_rng(0).random((4, 2))
    >>> f = ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2))
    >>> ref = ((x[:, None] - x[None, :3]) ** 2).sum(-1)
    >>> bool(np.allclose(block(f, (x, x[:3]), (ir.I, ir.J)), ref))
    True
    """
    if formula.dim != 1:
        raise ValueError(f"formula must be scalar (inner dimension 1), got {formula.dim}")
    options = ReductionOptions(target_of(backend))
    N = next(x.shape[0] for x, c in zip(leaves, cats) if c == ir.J)
    out = _fill_by_blocks(formula, leaves, cats, N, options)
    if not _all_finite(out):
        out = _fill_by_columns(formula, leaves, cats, options)
    if arrays.library(out) == "numpy":
        return np.ascontiguousarray(out)
    return out.contiguous()


#: Columns of a dense block filled per batch entry by :func:`block`.
FILL_BLOCK = 32


def _fill_by_blocks(formula, leaves, cats, N: int, options):
    B = FILL_BLOCK
    nb = -(-N // B)
    index = np.zeros(nb * B, dtype=np.int64)  # padding columns repeat point 0
    index[:N] = np.arange(N)
    batched = []
    for x, c in zip(leaves, cats):
        if c == ir.J:
            x = arrays.take_rows(x, index).reshape(nb, B, x.shape[-1])
        batched.append(x)
    ref = next(x for x, c in zip(leaves, cats) if c == ir.J)
    eye = arrays.from_numpy(
        np.eye(B)[None], arrays.library(ref), arrays.device(ref), arrays.dtype_name(ref)
    )
    f = ir.make("mul", formula, ir.var(len(leaves), ir.J, B))
    request = ReductionRequest(f, "sum", (*batched, eye), (*cats, ir.J), options=options)
    out = autograd.reduce(request)  # (nb, M, B): block b, row a, column b * B + k
    return out.swapaxes(0, 1).reshape(out.shape[1], nb * B)[:, :N]  # NumPy and torch alike


def _fill_by_columns(formula, leaves, cats, options):
    batched = tuple(x[:, None, :] if c == ir.J else x for x, c in zip(leaves, cats))
    out = autograd.reduce(ReductionRequest(formula, "sum", batched, tuple(cats), options=options))
    return out[..., 0].T  # (N, M) -> (M, N)


def _all_finite(out) -> bool:
    if isinstance(out, np.ndarray):
        return bool(np.isfinite(out).all())
    return bool(out.isfinite().all())
