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


def memory_budget() -> int:
    """Bytes a dense kernel block may take (see ``kernelsolve.config``)."""
    if config.dense_memory_limit is not None:
        return int(config.dense_memory_limit)
    return int(config.dense_memory_fraction * available_memory())


def dense_pays(rows: int, cols: int, itemsize: int, products: float) -> bool:
    """True when a ``rows x cols`` block fits :func:`memory_budget` and
    ``products`` expected products with it repay building it.

    Example
    -------
    >>> dense_pays(1500, 1500, 8, products=100)
    True
    >>> dense_pays(10**6, 10**6, 8, products=100)
    False
    """
    return rows * cols * itemsize <= memory_budget() and products >= FILL_PRODUCTS


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
    ``ir.P``; what a LazyTensor holds as ``variables`` and ``cats``); every
    j-variable is laid out as a batch of ``N`` entries with one j each, so
    that one reduction fills the block. Differentiable in torch.

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
    # a batch of N entries with one j each
    batched = tuple(x[:, None, :] if c == ir.J else x for x, c in zip(leaves, cats))
    options = ReductionOptions(target_of(backend))
    out = autograd.reduce(ReductionRequest(formula, "sum", batched, tuple(cats), options=options))
    out = out[..., 0].T  # (N, M) -> (M, N)
    if arrays.library(out) == "numpy":
        return np.ascontiguousarray(out)
    return out.contiguous()
