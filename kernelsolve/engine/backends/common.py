"""Helpers shared by the targets: batch offsets and output allocation."""

from __future__ import annotations

import math

import numpy as np

from ..codegen.spec import KernelSpec
from ..reductions import ACCUMULATOR, INDEX


def batch_offsets(xp, shape_own: tuple, batch: tuple, per_item: int):
    """Element offset of each (flattened) broadcast batch index in an array
    whose batch shape is ``shape_own`` (size-1 dims broadcast: offset 0).
    ``xp`` is numpy or cupy (the offsets live where the kernel runs)."""
    if not batch:
        return xp.zeros(1, dtype=xp.int64)
    idx = xp.arange(math.prod(shape_own), dtype=xp.int64).reshape(shape_own) * per_item
    return xp.ascontiguousarray(xp.broadcast_to(idx, batch)).reshape(-1)


def all_batch_offsets(xp, leaves: list, batch: tuple):
    """Offsets of every leaf, concatenated: ``boff[k * nbatch + b]``."""
    nb = len(batch)
    return xp.concatenate(
        [batch_offsets(xp, a.shape[:nb], batch, math.prod(a.shape[nb:])) for a in leaves]
    )


def storage_dtype(dtype: str):
    """The NumPy/CuPy dtype that holds values of ``dtype`` in memory: neither
    library has bfloat16, whose bits are kept in int16 (as torch's
    ``view(torch.int16)``)."""
    return np.int16 if dtype == "bfloat16" else np.dtype(dtype)


def alloc_outputs(xp, spec: KernelSpec, batch: tuple, M: int) -> list:
    """Uninitialised outputs ``batch + (M, size)``: int64 for indices, the
    storage dtype of ``spec.dtype`` for values, the accumulator's for
    partial results (ACCUMULATOR outputs)."""
    dtypes = {INDEX: np.int64, ACCUMULATOR: np.dtype(spec.acc_dtype)}
    values = storage_dtype(spec.dtype)
    return [
        xp.empty(batch + (M, o.size), dtype=dtypes.get(o.kind, values)) for o in spec.outputs()
    ]
