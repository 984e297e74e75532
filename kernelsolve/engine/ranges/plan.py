"""pykeops' ``ranges`` (block-sparse reductions), checked once per call and
laid out for the kernels.

The layout is pykeops': six integer arrays
``(ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i)``. A
reduction over j reads the first three: output rows ``ranges_i[k, 0] <= i <
ranges_i[k, 1]`` fold the columns of the j-ranges
``redranges_j[slices_i[k - 1] : slices_i[k]]`` (``slices_i[-1]`` read as 0).
A reduction over i reads the last three, with the roles of i and j swapped:
:meth:`~kernelsolve.engine.request.ReductionRequest.over_j` swaps the halves
(:func:`swap_axes`) when it transposes the formula, so that every target
only reads the first half.

Rows that no range covers, and ranges without j-ranges, get the reduction's
empty value (sum 0, min +inf, max -inf, logsumexp -inf, indices -1), as
pykeops gives 0 / +inf / -inf there.

A :class:`BlockPlan` cuts the output rows into *groups*: consecutive rows of
one i-range (at most ``rows`` of them) with the same j-ranges, plus groups
for the uncovered rows, which have none. The compiled kernels run one group
per OpenMP task (CPU) or per thread block (CUDA) and loop over the group's
j-ranges only: a block that is not kept costs nothing.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import arrays

#: The names of the six arrays, in pykeops' order.
NAMES = ("ranges_i", "slices_i", "redranges_j", "ranges_j", "slices_j", "redranges_i")


def swap_axes(ranges):
    """The ``ranges`` of the transposed reduction: the i and j halves
    swapped (None stays None), as ``pykeops...cluster.swap_axes``.

    >>> swap_axes((1, 2, 3, 4, 5, 6))
    (4, 5, 6, 1, 2, 3)
    """
    if ranges is None:
        return None
    return (*ranges[3:6], *ranges[0:3])


def join_ranges(found: list):
    """The one ``ranges`` of several operands (equal arrays, or the same
    object); different ones are a ValueError, as in pykeops."""
    first = found[0]
    for other in found[1:]:
        if other is first:
            continue
        same = len(other) == len(first) and all(
            a is b or np.array_equal(arrays.to_host(a), arrays.to_host(b))
            for a, b in zip(first, other)
        )
        if not same:
            raise ValueError(
                "the operands carry different ranges= (block-sparse patterns): "
                "set K.ranges on the result instead"
            )
    return first


class BlockPlan(NamedTuple):
    """One half of a ``ranges`` argument, checked, as int64 NumPy arrays."""

    ranges: np.ndarray  # (R, 2): output row ranges [start, end)
    slices: np.ndarray  # (R,): end of range k's reduction ranges in ``red``
    red: np.ndarray  # (S, 2): reduction ranges [start, end)
    M: int  # output rows
    N: int  # reduced columns

    def starts(self) -> np.ndarray:
        """Index in ``red`` of the first reduction range of each output range."""
        return np.concatenate(([0], self.slices[:-1])) if len(self.slices) else self.slices

    def owners(self) -> np.ndarray:
        """The output range that owns each reduction range (by position in ``red``)."""
        counts = self.slices - self.starts()
        return np.repeat(np.arange(len(counts)), counts)

    def pairs(self) -> int:
        """Number of (i, j) pairs the block-sparse reduction evaluates."""
        if not len(self.ranges):
            return 0
        widths = np.concatenate(([0], np.cumsum(self.red[:, 1] - self.red[:, 0])))
        per_range = widths[self.slices] - widths[self.starts()]
        return int(((self.ranges[:, 1] - self.ranges[:, 0]) * per_range).sum())

    def groups(self, rows: int) -> np.ndarray:
        """``(G, 4)`` int64 ``(r0, r1, s0, s1)``: rows ``[r0, r1)`` (at most
        ``rows`` of them) fold the columns of ``red[s0:s1]``. The groups
        cover every output row once; uncovered rows have ``s0 == s1``."""
        order = np.argsort(self.ranges[:, 0], kind="stable")
        a, b = self.ranges[order, 0], self.ranges[order, 1]
        s0, s1 = self.starts()[order], self.slices[order]
        # the gaps between ranges (and before the first, after the last)
        ends = np.concatenate(([0], b))
        begins = np.concatenate((a, [self.M]))
        seg = np.concatenate(
            [
                np.stack([a, b, s0, s1], axis=1),
                np.stack([ends, begins, np.zeros_like(ends), np.zeros_like(ends)], axis=1),
            ]
        )
        seg = seg[seg[:, 1] > seg[:, 0]]
        count = -(-(seg[:, 1] - seg[:, 0]) // rows)
        out = np.repeat(seg, count, axis=0)
        first = np.repeat(np.cumsum(count) - count, count)
        k = np.arange(len(out)) - first  # chunk number within its segment
        out[:, 0] = out[:, 0] + k * rows
        out[:, 1] = np.minimum(out[:, 0] + rows, out[:, 1])
        return np.ascontiguousarray(out, dtype=np.int64)


def _as_host_ints(x, name: str) -> np.ndarray:
    if not arrays.is_array(x):
        raise TypeError(
            f"ranges: {name} must be an integer array (NumPy or torch, int32 or int64), "
            f"got {type(x).__name__}"
        )
    dtype = arrays.dtype_name(x)
    if dtype not in ("int32", "int64"):
        raise TypeError(f"ranges: {name} must be int32 or int64, got {dtype}")
    return np.asarray(arrays.to_host(x), dtype=np.int64)


def _check_ranges(r: np.ndarray, name: str, bound: int, axis: str) -> None:
    if r.ndim != 2 or r.shape[1] != 2:
        raise ValueError(f"ranges: {name} must have shape (n, 2), got {r.shape}")
    bad = np.nonzero((r[:, 0] < 0) | (r[:, 0] > r[:, 1]) | (r[:, 1] > bound))[0]
    if len(bad):
        k = int(bad[0])
        raise ValueError(
            f"ranges: {name}[{k}] = [{r[k, 0]}, {r[k, 1]}) is not a range "
            f"0 <= start <= end <= {bound} (the number of {axis}-points)"
        )


def block_plan(ranges, M: int, N: int, names: tuple[str, ...] = NAMES[:3]) -> BlockPlan:
    """Check the first half of ``ranges`` for ``M`` output rows and ``N``
    reduced columns and return it as a :class:`BlockPlan`. ``names`` words
    the three arrays in errors (pykeops' names of the half in use).

    Errors name the array and what was expected: wrong type or dtype,
    wrong shape, a range out of bounds, decreasing slices, overlapping
    output ranges, or overlapping reduction ranges of one output range (a
    pair would be counted twice).

    >>> rng = (np.array([[0, 2], [2, 3]]), np.array([1, 2]), np.array([[0, 4], [1, 2]]))
    >>> bp = block_plan(rng + rng, 3, 4)
    >>> bp.pairs(), bp.groups(rows=32).tolist()
    (9, [[0, 2, 0, 1], [2, 3, 1, 2]])
    """
    if not isinstance(ranges, (tuple, list)) or len(ranges) != 6:
        raise TypeError(
            "ranges must be a tuple of six integer arrays (ranges_i, slices_i, redranges_j, "
            f"ranges_j, slices_j, redranges_i), got {type(ranges).__name__}"
            + (f" of length {len(ranges)}" if isinstance(ranges, (tuple, list)) else "")
        )
    out_axis, red_axis = names[0][-1], names[2][-1]
    r, s, red = (_as_host_ints(x, n) for x, n in zip(ranges[:3], names))
    _check_ranges(r, names[0], M, out_axis)
    _check_ranges(red, names[2], N, red_axis)
    if s.shape != (len(r),):
        raise ValueError(
            f"ranges: {names[1]} must have shape ({len(r)},) (one entry per row of "
            f"{names[0]}), got {s.shape}"
        )
    prev = np.concatenate(([0], s[:-1]))
    bad = np.nonzero((s < prev) | (s > len(red)))[0]
    if len(bad):
        k = int(bad[0])
        raise ValueError(
            f"ranges: {names[1]} must be non-decreasing and at most {len(red)} (the rows "
            f"of {names[2]}); {names[1]}[{k}] = {s[k]} after {prev[k]}"
        )
    plan = BlockPlan(r, s, red, M, N)
    _check_disjoint(plan, names)
    return _merge_adjacent(plan)


def _merge_adjacent(plan: BlockPlan) -> BlockPlan:
    """Consecutive reduction ranges of one output range that touch (``[a, b)``
    then ``[b, c)``: neighbouring clusters) become one: longer SIMD runs, fewer
    partial blocks; the columns and their order are unchanged."""
    red = plan.red[: plan.slices[-1]] if len(plan.slices) else plan.red[:0]
    owner = plan.owners()
    joins = np.zeros(len(red), dtype=bool)
    joins[1:] = (owner[1:] == owner[:-1]) & (red[1:, 0] == red[:-1, 1])
    if not joins.any():
        return plan
    first = ~joins
    last = np.append(first[1:], True)
    merged = np.stack([red[first, 0], red[last, 1]], axis=1)
    per_range = np.bincount(owner[first], minlength=len(plan.slices))
    return plan._replace(red=merged, slices=np.cumsum(per_range).astype(np.int64))


def _check_disjoint(plan: BlockPlan, names) -> None:
    """Output ranges never overlap, nor do the reduction ranges of one output range."""
    r = plan.ranges[plan.ranges[:, 1] > plan.ranges[:, 0]]
    r = r[np.argsort(r[:, 0], kind="stable")]
    clash = np.nonzero(r[1:, 0] < r[:-1, 1])[0]
    if len(clash):
        k = int(clash[0])
        raise ValueError(
            f"ranges: the {names[0]} [{r[k, 0]}, {r[k, 1]}) and [{r[k + 1, 0]}, "
            f"{r[k + 1, 1]}) overlap; every output row must belong to one range at most"
        )
    owner = plan.owners()
    red = plan.red[: len(owner)]
    keep = red[:, 1] > red[:, 0]
    owner, red = owner[keep], red[keep]
    order = np.lexsort((red[:, 0], owner))
    owner, red = owner[order], red[order]
    clash = np.nonzero((owner[1:] == owner[:-1]) & (red[1:, 0] < red[:-1, 1]))[0]
    if len(clash):
        k = int(clash[0])
        raise ValueError(
            f"ranges: {names[2]} [{red[k, 0]}, {red[k, 1]}) and [{red[k + 1, 0]}, "
            f"{red[k + 1, 1]}) of {names[0]}[{owner[k]}] overlap: a pair would be "
            "counted twice"
        )


def clip_rows(ranges, lo: int, hi: int):
    """``ranges`` for the output rows ``[lo, hi)`` alone, counted from ``lo``:
    the first half (the output ranges and their reduction ranges) clipped, a
    range that straddles ``lo`` or ``hi`` cut and kept with all its
    reduction ranges, the order of the kept ranges unchanged (each row folds
    the same columns in the same order). The second half is kept as is: a
    plan reads one half.

    >>> r = (np.array([[0, 3], [3, 5]]), np.array([1, 2]), np.array([[0, 4], [4, 6]]))
    >>> [a.tolist() for a in clip_rows(r + r, 2, 4)[:3]]
    [[[0, 1], [1, 2]], [1, 2], [[0, 4], [4, 6]]]
    """
    r, s, red = (np.asarray(a, dtype=np.int64).reshape(-1, *np.shape(a)[1:]) for a in ranges[:3])
    starts = np.concatenate(([0], s[:-1]))
    a, b = np.maximum(r[:, 0], lo) - lo, np.minimum(r[:, 1], hi) - lo
    keep = np.nonzero(b > a)[0]
    kept_red = [red[starts[k] : s[k]] for k in keep]
    counts = np.array([len(x) for x in kept_red], dtype=np.int64)
    new_red = np.concatenate(kept_red) if kept_red else np.zeros((0, 2), np.int64)
    new_r = np.stack([a[keep], b[keep]], axis=1) if len(keep) else np.zeros((0, 2), np.int64)
    return (new_r, np.cumsum(counts), new_red, *ranges[3:6])
