"""Random block-sparse patterns for the ranges tests: cluster partitions of
the i and j points (empty and one-point clusters included) and a random
cluster-to-cluster keep mask (rows and columns with nothing kept included),
turned into pykeops' six arrays by ``from_matrix``; the dense (M, N) mask they
stand for, to check against dense NumPy / torch."""

from __future__ import annotations

import numpy as np

from kernelsolve.engine.ranges.cluster import from_matrix


def partition(rng: np.random.Generator, n: int, clusters: int) -> np.ndarray:
    """(C, 2) ranges of ``clusters`` consecutive clusters covering ``[0, n)``,
    some of them empty."""
    cuts = np.sort(rng.integers(0, n + 1, size=clusters - 1))
    edges = np.concatenate(([0], cuts, [n]))
    return np.stack([edges[:-1], edges[1:]], axis=1)


def random_ranges(
    rng: np.random.Generator, M: int, N: int, ci: int = 5, cj: int = 6, density: float = 0.4
):
    """(six arrays, dense (M, N) boolean mask of the kept pairs)."""
    ri, rj = partition(rng, M, ci), partition(rng, N, cj)
    keep = rng.random((ci, cj)) < density
    return from_matrix(ri, rj, keep), dense_mask(ri, rj, keep, M, N)


def dense_mask(ri, rj, keep, M: int, N: int) -> np.ndarray:
    mask = np.zeros((M, N), dtype=bool)
    for a, (i0, i1) in enumerate(ri):
        for b, (j0, j1) in enumerate(rj):
            if keep[a, b]:
                mask[i0:i1, j0:j1] = True
    return mask


def mask_of(ranges, M: int, N: int) -> np.ndarray:
    """The dense mask of any six arrays (the first half: a reduction over j)."""
    r, s, red = (np.asarray(a) for a in ranges[:3])
    mask = np.zeros((M, N), dtype=bool)
    start = 0
    for (i0, i1), end in zip(r, s):
        for j0, j1 in red[start:end]:
            mask[i0:i1, j0:j1] = True
        start = end
    return mask
