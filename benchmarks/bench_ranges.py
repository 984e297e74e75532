"""Block-sparse reductions (issue 17): a Gaussian ``K @ b`` on clustered 2-D
points, dense vs block-sparse (``ranges=``), kernelsolve vs pykeops, one run.

Setup (all in float32 torch CPU tensors):

* N = M points (``--n``, 1e6 by default) uniform in the unit square, the same
  cloud for x and y;
* ``grid_cluster`` into square cells of side ``1 / --cells`` (32: 1024 cells),
  ``cluster_ranges_centroids``, ``sort_clusters``;
* keep[k, l] = centroid distance below the ``--keep`` quantile (5% of the
  blocks), ``from_matrix`` -> ranges;
* K_ij = exp(-|x_i - y_j|^2 / (2 sigma^2)), sigma = (cut-off distance) / 5,
  and b of one column.

Timed (best of ``--repeat``, after a warm-up on 500 points that compiles):

* kernelsolve dense ``K @ b``: on the first ``--dense-rows`` rows (all N
  columns), scaled to M rows (the cost is linear in the rows);
* kernelsolve block-sparse ``K @ b`` with ``K.ranges`` on all rows;
* pykeops block-sparse, the same ranges: on the first i-clusters that hold
  ``--pykeops-rows`` rows, scaled by the kept pairs (pykeops' CPU loop is
  scalar: all rows take minutes);
* pykeops dense on ``--pykeops-dense-rows`` rows, scaled to M rows.

Error: the block-sparse result against the dense one on the dense rows
(relative max-norm and relative L1, the measure of pykeops' own test).

Usage::

    python benchmarks/bench_ranges.py                 # N = 1e6 (about 3 minutes)
    python benchmarks/bench_ranges.py --quick         # N = 1e5 smoke test
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time

import numpy as np
import torch

import kernelsolve
from kernelsolve import LazyTensor
from kernelsolve.engine.backends.cpu import cpu_model
from kernelsolve.keops.torch.cluster import (
    cluster_ranges_centroids,
    from_matrix,
    grid_cluster,
    sort_clusters,
)


def best_time(fn, repeat: int) -> tuple[float, object]:
    out, best = None, float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def setup(n: int, cells: int, keep_fraction: float, seed: int = 0):
    """Sorted points, ranges, sigma, the kept-pair fraction and the i-cluster ranges."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g)
    labels = grid_cluster(x, 1.0 / cells)
    ranges, centroids, _ = cluster_ranges_centroids(x, labels)
    x, labels = sort_clusters(x, labels)
    dist = torch.cdist(centroids.double(), centroids.double())
    cut = float(torch.quantile(dist.flatten(), keep_fraction))
    keep = dist < cut
    rg = from_matrix(ranges, ranges, keep)
    sizes = (ranges[:, 1] - ranges[:, 0]).double()
    pair_fraction = float((sizes[:, None] * sizes[None, :] * keep).sum()) / n**2
    return x, rg, cut / 5, keep, pair_fraction, ranges


def kernel(lazy, x, y, sigma):
    xi, yj = lazy(x[:, None, :] / sigma), lazy(y[None, :, :] / sigma)
    return (-((xi - yj) ** 2).sum(-1) / 2).exp()


def warm_up(lazy, x, sigma, b) -> None:
    """Compile the dense and the block-sparse kernels on 500 points (the
    kernels do not depend on the sizes): the timed calls then only run."""
    n = 500
    whole = torch.tensor([[0, n]])
    K = kernel(lazy, x[:n], x[:n], sigma)
    K @ b[:n]
    K.ranges = (whole, torch.tensor([1]), whole) * 2
    K @ b[:n]


def restrict_rows(rg, clusters: int):
    """The ranges of the first ``clusters`` i-clusters only (reduction over j)."""
    ri, si, rj = rg[:3]
    end = int(si[clusters - 1])
    return (ri[:clusters], si[:clusters], rj[:end], *rg[3:])


def kept_pairs(rg, clusters: int | None = None) -> float:
    ri, si, rj = (np.asarray(a, dtype=np.int64) for a in rg[:3])
    c = len(ri) if clusters is None else clusters
    widths = np.concatenate(([0], np.cumsum(rj[:, 1] - rj[:, 0])))
    starts = np.concatenate(([0], si[:-1]))
    per = widths[si[:c]] - widths[starts[:c]]
    return float(((ri[:c, 1] - ri[:c, 0]) * per).sum())


def run_pykeops(args, x, b, sigma, rg, dense_rows):
    """(dense seconds scaled from dense_rows to all rows, block-sparse seconds on
    the first clusters, the number of clusters timed, their result), or None."""
    try:
        from pykeops.torch import LazyTensor as PkLazy
    except Exception as exc:  # noqa: BLE001 - optional peer
        print(f"# pykeops unavailable: {type(exc).__name__}: {exc}")
        return None
    ri = np.asarray(rg[0])
    clusters = int(np.searchsorted(ri[:, 1], args.pykeops_rows) + 1)
    sub = tuple(torch.as_tensor(np.ascontiguousarray(a), dtype=torch.int64) for a in rg)
    sub = restrict_rows(sub, clusters)
    warm_up(PkLazy, x, sigma, b)
    K = kernel(PkLazy, x, x, sigma)
    K.ranges = sub
    t_sparse, out = best_time(lambda: K @ b, args.repeat)
    Kd = kernel(PkLazy, x[:dense_rows], x, sigma)
    t_dense, _ = best_time(lambda: Kd @ b, args.repeat)
    return t_dense * len(x) / dense_rows, t_sparse, clusters, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=float, default=1e6)
    p.add_argument("--cells", type=int, default=32)
    p.add_argument("--keep", type=float, default=0.05)
    p.add_argument("--dense-rows", type=int, default=10000)
    p.add_argument("--pykeops-rows", type=int, default=10000)
    p.add_argument("--pykeops-dense-rows", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--no-pykeops", action="store_true")
    p.add_argument("--quick", action="store_true", help="N = 1e5, smoke test")
    args = p.parse_args(argv)
    n = int(1e5 if args.quick else args.n)
    dense_rows = min(n, args.dense_rows)
    load0 = os.getloadavg()

    t0 = time.perf_counter()
    x, rg, sigma, keep, pair_fraction, _ = setup(n, args.cells, args.keep)
    t_setup = time.perf_counter() - t0
    b = torch.randn(n, 1, generator=torch.Generator().manual_seed(1))

    warm_up(LazyTensor, x, sigma, b)
    Kd = kernel(LazyTensor, x[:dense_rows], x, sigma)
    t_dense, a_dense = best_time(lambda: Kd @ b, args.repeat)
    K = kernel(LazyTensor, x, x, sigma)
    K.ranges = rg
    t_sparse, a_sparse = best_time(lambda: K @ b, args.repeat)
    scale = n / dense_rows
    diff = (a_sparse[:dense_rows] - a_dense).double()
    err_max = float(diff.abs().max() / a_dense.double().abs().max())
    err_l1 = float(diff.abs().sum() / a_dense.double().abs().sum())

    pk_rows = min(n, args.pykeops_dense_rows)
    pk = None if args.no_pykeops else run_pykeops(args, x, b, sigma, rg, pk_rows)
    load1 = os.getloadavg()

    print(f"# Block-sparse Gaussian K @ b, N = M = {n:.0e}, float32, 2-D uniform points")
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, CPU: {cpu_model()}, "
        f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    )
    print(
        f"# kernelsolve {kernelsolve.__version__}, torch {torch.__version__}, "
        f"Python {platform.python_version()}"
    )
    print(
        f"# load average at start {load0[0]:.2f}, at end {load1[0]:.2f} "
        "(other processes share the cores: timings are upper bounds)"
    )
    print(
        f"# {keep.shape[0]} clusters of side 1/{args.cells}; {float(keep.float().mean()):.1%} "
        f"of the blocks and {pair_fraction:.1%} of the pairs kept; sigma = {sigma:.4f}; "
        f"set-up (cluster, sort, ranges) {t_setup:.2f} s"
    )
    print(
        f"# dense timed on {dense_rows} rows and scaled x{scale:.0f}; "
        f"command: python {shlex.join(sys.argv)}"
    )
    print()
    print("| method | seconds for N = M | vs kernelsolve dense | how timed |")
    print("|---|---:|---:|---|")
    dense_full = t_dense * scale
    rows = [("kernelsolve dense", dense_full, f"{dense_rows} rows, scaled")]
    rows.append(("kernelsolve block-sparse", t_sparse, "all rows"))
    if pk is not None:
        pk_dense, pk_sparse, clusters, pk_out = pk
        pairs_scale = kept_pairs(rg) / kept_pairs(rg, clusters)
        rows.append(
            (
                "pykeops block-sparse (same ranges)",
                pk_sparse * pairs_scale,
                f"{clusters} i-clusters, scaled by kept pairs x{pairs_scale:.0f}",
            )
        )
        rows.append(("pykeops dense", pk_dense, f"{pk_rows} rows, scaled"))
        rows_pk = int(np.asarray(rg[0])[clusters - 1, 1])
        agree = float(
            (pk_out[:rows_pk] - a_sparse[:rows_pk]).abs().max() / a_sparse[:rows_pk].abs().max()
        )
    for name, secs, how in rows:
        print(f"| {name} | {secs:.2f} | {dense_full / secs:.1f}x | {how} |")
    print()
    print(
        f"block-sparse vs dense (first {dense_rows} rows): relative max error {err_max:.2e}, "
        f"relative L1 error {err_l1:.2e}"
    )
    if pk is not None:
        print(
            f"pykeops block-sparse vs kernelsolve block-sparse (rows it computed): "
            f"relative max difference {agree:.2e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
