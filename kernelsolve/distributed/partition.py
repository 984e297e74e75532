"""Who computes what: contiguous shares of rows or columns, and which axis to split."""

from __future__ import annotations

import math

__all__ = ["bounds", "counts", "offsets", "choose_axis", "MIN_ROWS_PER_PROCESS"]

#: a reduction whose output has fewer rows than this per process splits its
#: reduced axis (j) instead, as long as that axis has more points
MIN_ROWS_PER_PROCESS = 64


def bounds(n: int, size: int, rank: int) -> tuple[int, int]:
    """The rows ``[lo, hi)`` of process ``rank`` among ``size``: contiguous,
    in rank order, sizes differing by at most one (the first ``n % size``
    processes hold one more), empty when ``n < size`` leaves none.

    >>> [bounds(10, 3, r) for r in range(3)]
    [(0, 4), (4, 7), (7, 10)]
    >>> [bounds(2, 3, r) for r in range(3)]
    [(0, 1), (1, 2), (2, 2)]
    """
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"rank {rank} is not one of {size} processes")
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def counts(n: int, size: int) -> list[int]:
    """Rows of every process (see :func:`bounds`)."""
    return [hi - lo for lo, hi in (bounds(n, size, r) for r in range(size))]


def offsets(sizes: list[int]) -> list[int]:
    """The first global row of each process, from the rows each holds."""
    out, total = [], 0
    for s in sizes:
        out.append(total)
        total += s
    return out


def choose_axis(M: int, N: int, size: int, min_rows: int = MIN_ROWS_PER_PROCESS) -> str:
    """``"rows"`` (split the output rows: each row's sum is made exactly as in
    one process) unless the output is too small to give every process
    ``min_rows`` rows and the reduced axis is longer: then ``"cols"`` (split
    j, merge the processes' accumulator states in j order).

    >>> choose_axis(100_000, 100_000, 2), choose_axis(10, 10**7, 4)
    ('rows', 'cols')
    """
    if M >= size * min_rows or N <= M:
        return "rows"
    return "cols" if N >= size else "rows"


def pairs(batch: tuple, M: int, N: int) -> int:
    """Kernel evaluations of one reduction."""
    return math.prod(batch) * M * N
