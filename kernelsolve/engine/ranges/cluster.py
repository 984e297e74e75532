"""Clustering helpers for block-sparse reductions, as pykeops' ``cluster``
modules: the same names, signatures and results, on NumPy arrays and torch
tensors (results in the caller's library and device).

The work is done in NumPy on the host (these are O(n log n) preparations,
not reductions); torch inputs are read on the host and the results come back
as tensors on the input's device. Differences from pykeops: ``grid_cluster``
takes any dimension (pykeops: 1 to 3) and numbers the cells by their integer
coordinates, so that it never overflows (pykeops packs them into one int32).
"""

from __future__ import annotations

import numpy as np

from .. import arrays
from .plan import swap_axes

__all__ = [
    "cluster_centroids",
    "cluster_ranges",
    "cluster_ranges_centroids",
    "from_matrix",
    "grid_cluster",
    "sort_clusters",
    "swap_axes",
]


def _host(x) -> np.ndarray:
    return arrays.to_host(x) if arrays.is_array(x) else np.asarray(x)


def _like(a: np.ndarray, ref, dtype: str | None = None):
    """``a`` in the library and device of ``ref`` (``dtype``: torch dtype name)."""
    if arrays.is_torch(ref):
        return arrays.from_numpy(a, arrays.TORCH, arrays.device(ref), dtype)
    return arrays.from_numpy(a, arrays.NUMPY, dtype=dtype)


def grid_cluster(x, size, *, shift: bool | None = None):
    """Labels of the cubic cells ("voxels") of side ``size`` that hold the
    points ``x`` (shape (M, D)): ``labels[i] == labels[j]`` iff ``x[i]`` and
    ``x[j]`` share a cell; labels are ``0 .. C-1``, ordered as the cells'
    integer coordinates. ``size``: a number or one per dimension.

    As pykeops: torch (int32 labels) measures cells from ``x.min(0)``, NumPy
    (int64 labels) from the origin (``shift`` overrides).

    >>> grid_cluster(np.array([[0.0], [0.1], [0.9], [0.05], [0.5]]), 0.2).tolist()
    [0, 0, 2, 0, 1]
    """
    torch_in = arrays.is_torch(x)
    shift = torch_in if shift is None else shift
    a = _host(x)
    if a.ndim != 2:
        raise ValueError(f"grid_cluster: x must have shape (M, D), got {tuple(a.shape)}")
    s = _host(size).astype(np.float64) if arrays.is_array(size) else np.float64(size)
    a = a.astype(np.float64)
    if shift and len(a):
        a = a - a.min(axis=0, keepdims=True)
    cells = np.floor(a / s).astype(np.int64)
    _, labels = np.unique(cells, axis=0, return_inverse=True)
    labels = labels.reshape(-1)
    return _like(labels.astype(np.int32), x) if torch_in else labels.astype(np.int64)


def sort_clusters(x, lab):
    """``(x sorted by label, sorted labels)``: points of one cluster become
    contiguous. ``x`` may be a tuple or list of arrays, each sorted alike.

    >>> sort_clusters(np.array([[0.0], [2.0], [0.4]]), np.array([0, 1, 0]))[1].tolist()
    [0, 0, 1]
    """
    labels = _host(lab).reshape(-1)
    perm = np.argsort(labels, kind="stable")
    index = _like(perm, lab)

    def take(a):
        return a[index]

    if type(x) is tuple:
        xs = tuple(take(a) for a in x)
    elif type(x) is list:
        xs = [take(a) for a in x]
    else:
        xs = take(x)
    return xs, _like(labels[perm], lab)


def _counts(lab, Nlab=None) -> np.ndarray:
    if Nlab is not None:
        return _host(Nlab).reshape(-1)
    return np.bincount(_host(lab).reshape(-1))


def cluster_ranges(lab, Nlab=None):
    """``(C, 2)`` int64 ``[start, end)`` of each cluster in the points sorted
    by :func:`sort_clusters` (``Nlab``: the points per cluster, if known).

    >>> cluster_ranges(np.array([0, 0, 2])).tolist()
    [[0, 2], [2, 2], [2, 3]]
    """
    n = _counts(lab, Nlab)
    pivots = np.concatenate(([0], np.cumsum(n))).astype(np.int64)
    return _like(np.stack((pivots[:-1], pivots[1:]), axis=1), lab)


def cluster_centroids(x, lab, Nlab=None, weights=None, weights_c=None):
    """``(C, D)`` (weighted) barycenters of the clusters (NaN for an empty one).

    >>> cluster_centroids(np.array([[0.0], [1.0], [4.0]]), np.array([0, 0, 1])).tolist()
    [[0.5], [4.0]]
    """
    a, labels = _host(x), _host(lab).reshape(-1)
    n = _counts(lab, Nlab).astype(np.float64)
    C = len(n)
    if weights is not None:
        w = _host(weights).reshape(-1).astype(np.float64)
        if weights_c is not None:
            total = _host(weights_c).reshape(-1)
        else:
            total = np.bincount(labels, weights=w, minlength=C)
    else:
        w, total = None, n
    c = np.empty((C, a.shape[1]), dtype=a.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        for d in range(a.shape[1]):
            col = a[:, d].astype(np.float64) * (1.0 if w is None else w)
            c[:, d] = np.bincount(labels, weights=col, minlength=C)[:C] / total
    return _like(c, x)


def cluster_ranges_centroids(x, lab, weights=None, min_weight: float = 1e-9):
    """``(ranges, centroids, weights per cluster)`` of labelled points, as
    pykeops: ranges for :func:`sort_clusters`'s order, (weighted)
    barycenters, and the clusters' point counts (or total weights; weights
    below ``min_weight`` are raised to it).

    >>> r, c, w = cluster_ranges_centroids(np.array([[0.0], [4.0], [1.0]]), np.array([0, 1, 0]))
    >>> r.tolist(), c.tolist(), w.tolist()
    ([[0, 2], [2, 3]], [[0.5], [4.0]], [2.0, 1.0])
    """
    labels = _host(lab).reshape(-1)
    n = np.bincount(labels)
    if weights is None:
        counts = _like(n.astype(np.float64), x, "float32" if arrays.is_torch(x) else None)
        return cluster_ranges(lab, n), cluster_centroids(x, lab, n), counts
    w = np.maximum(_host(weights).reshape(-1).astype(np.float64), min_weight)
    w_c = np.bincount(labels, weights=w)
    return cluster_ranges(lab, n), cluster_centroids(x, lab, n, w, w_c), _like(w_c, weights)


def from_matrix(ranges_i, ranges_j, keep):
    """pykeops' six-array ``ranges`` from cluster ranges and a boolean
    cluster-to-cluster matrix ``keep`` (C_i, C_j): block (k, l) is reduced iff
    ``keep[k, l]``. Returns ``(ranges_i, slices_i, redranges_j, ranges_j,
    slices_j, redranges_i)`` (int64), ready for ``ranges=`` or ``K.ranges``.

    >>> r_i, r_j = np.array([[2, 5], [7, 12]]), np.array([[1, 4], [4, 9], [20, 30]])
    >>> out = from_matrix(r_i, r_j, np.array([[1, 1, 0], [0, 1, 0]], bool))
    >>> [a.tolist() for a in out[1:3]]
    [[2, 3], [[1, 4], [4, 9], [4, 9]]]
    """
    ri, rj, k = _host(ranges_i), _host(ranges_j), _host(keep).astype(bool)
    if k.shape != (len(ri), len(rj)):
        raise ValueError(
            f"from_matrix: keep has shape {k.shape}; expected ({len(ri)}, {len(rj)}) "
            "(clusters of i, clusters of j)"
        )
    rows, cols = np.nonzero(k)  # row-major: the j-clusters of each i-cluster in order
    cols_t, rows_t = np.nonzero(k.T)
    out = (
        ri.astype(np.int64),
        np.cumsum(k.sum(axis=1)).astype(np.int64),
        rj[cols].astype(np.int64).reshape(-1, 2),
        rj.astype(np.int64),
        np.cumsum(k.sum(axis=0)).astype(np.int64),
        ri[rows_t].astype(np.int64).reshape(-1, 2),
    )
    return tuple(_like(a, keep) for a in out)
