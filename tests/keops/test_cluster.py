"""The cluster helpers of ``kernelsolve.keops.{torch,numpy}.cluster``:
pykeops' names, signatures and results (pykeops as an optional oracle), and
their own semantics checked directly; a block-sparse reduction built with them
against pykeops' (optional) and against dense masked torch."""

import numpy as np
import pytest
import torch

from kernelsolve.keops.numpy import cluster as npc
from kernelsolve.keops.torch import LazyTensor
from kernelsolve.keops.torch import cluster as tc


def _points(n=300, d=2, seed=0):
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
@pytest.mark.parametrize("lib", ["torch", "numpy"])
def test_grid_cluster_cells(d, lib):
    """Same label iff same cell (torch: cells measured from x.min(0), NumPy:
    from 0); labels 0..C-1 in the order of the cells' integer coordinates."""
    x = _points(200, d) * 3 - 1
    size = 0.4
    if lib == "torch":
        labels = tc.grid_cluster(x, size)
        assert labels.dtype == torch.int32
        cells = torch.floor((x - x.min(0).values) / size).long().numpy()
        labels = labels.numpy()
    else:
        labels = npc.grid_cluster(x.numpy(), size)
        assert labels.dtype == np.int64
        cells = np.floor(x.numpy() / size).astype(np.int64)
    uniq = np.unique(cells, axis=0)
    assert labels.max() == len(uniq) - 1
    np.testing.assert_array_equal(uniq[labels], cells)


def test_sort_ranges_centroids():
    x = _points(500)
    labels = tc.grid_cluster(x, 0.25)
    ranges, centroids, counts = tc.cluster_ranges_centroids(x, labels)
    xs, ls = tc.sort_clusters(x, labels)
    assert torch.equal(ls, labels.sort().values)
    for k, (a, b) in enumerate(ranges.tolist()):
        assert (ls[a:b] == k).all()
        assert counts[k] == b - a
        assert torch.allclose(centroids[k], xs[a:b].mean(0))
    (xt, yt), _ = tc.sort_clusters((x, 2 * x), labels)
    assert torch.equal(yt, 2 * xt)
    w = torch.rand(500, dtype=torch.float64)
    _, cw, wc = tc.cluster_ranges_centroids(x, labels, weights=w)
    k = labels == 3
    assert torch.allclose(cw[3], (x[k] * w[k, None]).sum(0) / w[k].sum())
    assert torch.allclose(wc[3], w[k].sum())


def test_from_matrix_and_swap_axes():
    """pykeops' documented example, and swap_axes as the transposed pattern."""
    r_i, r_j = torch.tensor([[2, 5], [7, 12]]), torch.tensor([[1, 4], [4, 9], [20, 30]])
    keep = torch.tensor([[1, 1, 0], [0, 1, 0]], dtype=torch.bool)
    ri, si, rj, rj2, sj, ri2 = tc.from_matrix(r_i, r_j, keep)
    assert si.tolist() == [2, 3] and rj.tolist() == [[1, 4], [4, 9], [4, 9]]
    assert sj.tolist() == [1, 3, 3] and ri2.tolist() == [[2, 5], [2, 5], [7, 12]]
    assert torch.equal(rj2, r_j) and torch.equal(ri, r_i)
    swapped = tc.swap_axes((ri, si, rj, rj2, sj, ri2))
    assert swapped[1] is sj and tc.swap_axes(None) is None
    n = npc.from_matrix(r_i.numpy(), r_j.numpy(), keep.numpy())
    assert all(isinstance(a, np.ndarray) and a.dtype == np.int64 for a in n)
    with pytest.raises(ValueError, match="keep has shape"):
        tc.from_matrix(r_i, r_j, keep.T)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_against_pykeops(d):
    pk = pytest.importorskip("pykeops.torch.cluster", reason="pykeops: optional oracle")
    pkn = pytest.importorskip("pykeops.numpy.cluster", reason="pykeops: optional oracle")
    x = _points(400, d, seed=d).float()
    lab = tc.grid_cluster(x, 0.2)
    assert torch.equal(lab, pk.grid_cluster(x, 0.2))
    assert np.array_equal(npc.grid_cluster(x.numpy(), 0.2), pkn.grid_cluster(x.numpy(), 0.2))
    ours, theirs = tc.cluster_ranges_centroids(x, lab), pk.cluster_ranges_centroids(x, lab)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a.to(b.dtype), b)
    (xs, ls), (pxs, pls) = tc.sort_clusters(x, lab), pk.sort_clusters(x, lab)
    assert torch.equal(ls, pls)
    for a, c in ours[0].tolist():  # same points per cluster (pykeops' sort is not stable)
        assert torch.equal(xs[a:c].sort(0).values, pxs[a:c].sort(0).values)
    r = ours[0]
    keep = torch.cdist(ours[1], ours[1]) < 0.5
    for a, b in zip(tc.from_matrix(r, r, keep), pk.from_matrix(r, r, keep)):
        assert torch.equal(a, b.to(a.dtype))


def _block_sparse_setup():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(700, 2, generator=g), torch.rand(600, 2, generator=g) * 0.8
    xl, yl = tc.grid_cluster(x, 0.1), tc.grid_cluster(y, 0.1)
    xr, xc, _ = tc.cluster_ranges_centroids(x, xl)
    yr, yc, _ = tc.cluster_ranges_centroids(y, yl)
    (x, _), (y, _) = tc.sort_clusters(x, xl), tc.sort_clusters(y, yl)
    keep = ((xc[:, None] - yc[None]) ** 2).sum(-1) < 0.2**2
    b = torch.randn(600, 2, generator=g)
    return x, y, b, xr, yr, keep, tc.from_matrix(xr, yr, keep)


def test_block_sparse_vs_dense_masked():
    x, y, b, xr, yr, keep, ranges = _block_sparse_setup()
    mask = torch.zeros(700, 600, dtype=torch.bool)
    for k, (a, c) in enumerate(xr.tolist()):
        for m, (e, f) in enumerate(yr.tolist()):
            mask[a:c, e:f] = keep[k, m]
    K = (-((LazyTensor(x[:, None]) - LazyTensor(y[None])) ** 2).sum(-1) / 0.01).exp()
    K.ranges = ranges
    Kd = torch.exp(-((x[:, None] - y[None]) ** 2).sum(-1) / 0.01) * mask
    assert torch.allclose(K @ b, Kd @ b, rtol=1e-5, atol=1e-6)
    assert torch.allclose(
        K.t() @ b[:, :1].repeat(2, 1)[:700],
        Kd.T @ b[:, :1].repeat(2, 1)[:700],
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("red", ["sum", "argmin", "logsumexp"])
def test_block_sparse_vs_pykeops(red):
    pk = pytest.importorskip("pykeops.torch", reason="pykeops: optional oracle")
    x, y, b, *_, ranges = _block_sparse_setup()

    def run(Lazy):
        D = ((Lazy(x[:, None]) - Lazy(y[None])) ** 2).sum(-1)
        return getattr(D, red)(1, ranges=ranges)

    ours, theirs = run(LazyTensor), run(pk.LazyTensor)
    if red == "argmin":
        empty = ours == -1  # pykeops gives 0 where no block is kept
        assert torch.equal(ours[~empty], theirs[~empty]) and (theirs[empty] == 0).all()
    elif red == "logsumexp":  # rows with nothing kept: ours -inf, pykeops NaN or -inf
        empty = torch.isneginf(ours)
        assert torch.allclose(ours[~empty], theirs[~empty], rtol=1e-5, atol=1e-6)
        assert (theirs[empty].isnan() | theirs[empty].isneginf()).all()
    else:
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)
