"""Rows of a tall matrix in fixed blocks, held by the processes that own them.

The solvers' own state (the RPCholesky factor ``F``, a materialised dense
block) is ``n`` rows tall. :class:`RowBlocks` cuts the rows into blocks of
:data:`ROW_BLOCK` on one grid that does not depend on the number of
processes, and under ``kernelsolve.distributed.sharded()`` (an active split,
:mod:`kernelsolve.engine.split`) gives every process a contiguous run of whole
blocks (``split.bounds`` of the blocks): its rows ``[lo, hi)``. Without a
split one process holds every block.

Every computation goes block by block, in the same way in one process and in
several, so that the results are the same bit for bit:

* :meth:`RowBlocks.by_blocks`, :meth:`RowBlocks.product`: a per-row result
  (``F @ W``, ``C @ U``),
  one BLAS call per block (a BLAS product's rows can depend on the height of
  the matrix, a block's cannot);
* :meth:`RowBlocks.ordered_sum`: a sum over the rows (``F^T F``, ``F^T R``),
  as one product per block added in block order; across processes the
  running sum passes from process to process (one ``all_sum`` each, the
  others adding zeros, which is exact);
* :meth:`RowBlocks.take`: rows at global indices, on every process (each row
  comes from the process holding it, zeros from the others: exact);
* :meth:`RowBlocks.gather`: the whole ``(n, ...)`` array on every process.

With ``n <= ROW_BLOCK`` there is one block and each method makes exactly the
one call that a whole-matrix formulation makes.

Example
-------
>>> import numpy as np
>>> rows = RowBlocks(3000)
>>> rows.blocks()
[(0, 1024), (1024, 2048), (2048, 3000)]
>>> F = np.random.default_rng(0).random((3000, 4))
>>> bool(np.allclose(rows.ordered_sum([F[a:b].T @ F[a:b] for a, b in rows.blocks()]), F.T @ F))
True
"""

from __future__ import annotations

import numpy as np

from ..engine import arrays, split

__all__ = ["RowBlocks", "ROW_BLOCK"]

#: Rows per block. Also the unit of the split across processes (a process
#: holds at most one block more than another).
ROW_BLOCK = 1024


class RowBlocks:
    """The block grid of ``n`` rows and this process's share of it (all of it
    unless ``shared`` and a split is active). Pickles without the split; a
    sharded layout must be used inside a ``sharded()`` block of the same
    processes (:meth:`executor` checks)."""

    def __init__(self, n: int, shared: bool = True):
        self.n = int(n)
        self.nblocks = -(-self.n // ROW_BLOCK)
        active = split.active() if shared else None
        if active is None:
            self.rank, self.size, first, last = 0, 1, 0, self.nblocks
        else:
            self.rank, self.size = active.rank, active.size
            first, last = active.bounds(self.nblocks)
        self.first, self.last = first, last
        self.lo, self.hi = min(first * ROW_BLOCK, self.n), min(last * ROW_BLOCK, self.n)

    @property
    def sharded(self) -> bool:
        """True when the rows are split across processes."""
        return self.size > 1

    @property
    def key(self) -> tuple[int, int]:
        """(rank, size): layouts with the same key hold the same rows."""
        return self.rank, self.size

    def executor(self):
        """The active split, checked to be the processes this layout was made for."""
        active = split.active()
        if active is None or (active.rank, active.size) != self.key:
            now = "no sharded() block" if active is None else f"{active.size} processes"
            raise ValueError(
                f"this state holds rows {self.lo}:{self.hi} of {self.n} on process {self.rank} "
                f"of {self.size} (built under sharded()); use it inside sharded() on the same "
                f"processes, not under {now}"
            )
        return active

    def blocks(self) -> list[tuple[int, int]]:
        """The blocks held here, as local row ranges ``(a, b)`` (rows ``lo + a : lo + b``)."""
        return [
            (c * ROW_BLOCK - self.lo, min((c + 1) * ROW_BLOCK, self.n) - self.lo)
            for c in range(self.first, self.last)
        ]

    def by_blocks(self, fn):
        """``fn(a, b)`` for every local block ``(a, b)``, stacked by rows (an array
        of ``fn``'s library; ``fn(0, 0)`` when none is held here)."""
        parts = [fn(a, b) for a, b in self.blocks()] or [fn(0, 0)]
        if len(parts) == 1:
            return parts[0]
        if isinstance(parts[0], np.ndarray):
            return np.concatenate(parts)
        if arrays.is_cupy(parts[0]):
            import cupy

            return cupy.concatenate(parts)
        import torch

        return torch.cat(parts)

    def product(self, A, B):
        """``A @ B`` for the local rows ``A`` (``by_blocks``: one product per block)."""
        return self.by_blocks(lambda a, b: A[a:b] @ B)

    def ordered_sum(self, parts, shape: tuple | None = None) -> np.ndarray:
        """The sum, in block order over every process, of the per-block ``parts``
        held here (an iterable, e.g. a generator; host float64, the same on every
        process). ``shape``: that of a part, needed where a process holds no block.

        One process consumes ``parts`` one by one (memory: one part). Under a split
        every process first computes all of its parts (in parallel with the
        others; for ``F^T F`` ``r / ROW_BLOCK`` of the memory of its rows of ``F``),
        then the running sum passes from process to process."""
        if not self.sharded:
            return _sequential(None, _on_host(parts))
        parts = list(parts)
        active = self.executor()
        total = None
        for source in range(self.size):  # the running sum visits the processes in order
            if source == self.rank:
                mine = _sequential(total, _on_host(parts))
                mine = np.zeros(shape, dtype=np.float64) if mine is None else mine
            else:
                mine = np.zeros(np.shape(total) if total is not None else shape, np.float64)
            total = active.all_sum(mine)
        return total

    def take(self, A: np.ndarray, index: np.ndarray) -> np.ndarray:
        """``full[index]`` on every process from the local rows ``A = full[lo:hi]``
        (host arrays; ``index`` global row numbers)."""
        if not self.sharded:
            return A[index]
        mine = (index >= self.lo) & (index < self.hi)
        out = np.zeros((len(index),) + A.shape[1:], dtype=np.float64)
        out[mine] = A[index[mine] - self.lo]
        return self.executor().all_sum(out).astype(A.dtype, copy=False)

    def gather(self, a):
        """The whole ``(n, ...)`` array on every process from the local rows
        ``a = full[lo:hi]`` (returned as is in one process; else host NumPy)."""
        if not self.sharded:
            return a
        a = arrays.to_host(a)
        if self.nblocks < self.size:
            # a process holds no block (the executor's gather_rows takes no empty
            # share): each row from the process holding it, zeros from the others
            full = np.zeros((self.n,) + a.shape[1:], dtype=np.float64)
            full[self.lo : self.hi] = a
            return self.executor().all_sum(full).astype(a.dtype, copy=False)
        held = self.last - self.first
        padded = np.zeros((held * ROW_BLOCK,) + a.shape[1:], dtype=a.dtype)
        padded[: len(a)] = a
        full = self.executor().gather_rows(padded.reshape(held, -1), self.nblocks)
        return full.reshape((self.nblocks * ROW_BLOCK,) + a.shape[1:])[: self.n]


def _on_host(parts, group: int = 16):
    """The parts as host float64 arrays, in order (device parts moved in groups)."""
    pending = []
    for p in parts:
        if isinstance(p, np.ndarray):
            yield p.astype(np.float64, copy=False)
            continue
        pending.append(p)
        if len(pending) == group:
            yield from arrays.to_host(_stack(pending)).astype(np.float64, copy=False)
            pending = []
    if pending:
        yield from arrays.to_host(_stack(pending)).astype(np.float64, copy=False)


def _stack(parts: list):
    if arrays.is_cupy(parts[0]):
        import cupy

        return cupy.stack(parts)
    import torch

    return torch.stack(parts)


def _sequential(total, parts):
    """``((total + parts[0]) + parts[1]) + ...`` (``parts[0] + ...`` without a total;
    None for no part and no total). Elementwise sums: exact to the same bits on
    any device."""
    for p in parts:
        total = p.copy() if total is None else total + p
    return total
