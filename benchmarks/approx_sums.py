"""The sums part of ``bench_approx.py`` (issue 19): Gaussian ``K @ b`` with
``tol=`` against our dense reduction and pykeops with hand-made ranges.

Setup per case: M = N = ``n`` float64 points in the unit square or cube,
uniform or clustered (20 Gaussian blobs of standard deviation 0.03), x and y
drawn independently, ``b_j = +-1``; ``K_ij = exp(-|x_i - y_j|^2 / h^2)`` with
``h`` = 1% of the domain (0.01); ``tol`` = 1e-6.

* ours: ``K.__matmul__(b, tol=tol)`` (clustering, bounds, block-sparse
  sums, everything included: first call, clustering not cached) and the
  same product again (the grids cached with the points);
* dense: our dense ``K @ b`` on ``rows`` random rows, scaled to M;
* pykeops with ranges, as its tutorial builds them: ``grid_cluster`` with
  cells of side ``h``, ``cluster_ranges_centroids``, ``sort_clusters``,
  ``from_matrix`` keeping the cluster pairs whose centroids are closer than
  ``h sqrt(log(1 / tol)) + sqrt(D) h`` (the cutoff where the Gaussian falls
  below ``tol``, plus a cell's diagonal), then ``K @ b`` with those ranges;
  timed with its clustering, after a warm-up that compiles.

Errors: on the ``rows`` rows, the largest ``|approx - exact| / (tol sum_j
|K_ij b_j|)`` against the float64 sum in NumPy (<= 1 is the guarantee; the
hand-made ranges have none).
"""

from __future__ import annotations

import time

import numpy as np

import kernelsolve
from kernelsolve import Vi, Vj


def points(rng, n: int, D: int, layout: str) -> np.ndarray:
    if layout == "uniform":
        return rng.random((n, D))
    centres = np.random.default_rng(123).random((20, D))
    return np.clip(centres[rng.integers(0, 20, n)] + 0.03 * rng.standard_normal((n, D)), 0, 1)


def exact_rows(x, y, b, rows, h):
    """(K b)[rows] and (K |b|)[rows] in float64 NumPy, 50 rows at a time."""
    out, absum = np.empty((len(rows), 1)), np.empty((len(rows), 1))
    for s in range(0, len(rows), 50):
        r = rows[s : s + 50]
        K = np.exp(-((x[r][:, None] - y[None]) ** 2).sum(-1) / h**2)
        out[s : s + 50], absum[s : s + 50] = K @ b, K @ np.abs(b)
    return out, absum


def pykeops_ranges(x, y, b, h, tol, max_cells: int = 20_000):
    """pykeops' ``K @ b`` with ranges from its own cluster tools (its
    tutorial's recipe); the result in x's order. Cells of side ``h``, or
    larger so that each side has at most ``max_cells`` cells (pykeops'
    ``from_matrix`` takes a dense cells x cells mask)."""
    from pykeops.numpy import LazyTensor as KLazy
    from pykeops.numpy.cluster import cluster_ranges_centroids, from_matrix, grid_cluster

    D = x.shape[1]
    side = max(h, max_cells ** (-1 / D))
    xl, yl = grid_cluster(x, side), grid_cluster(y, side)
    px, py = np.argsort(xl, kind="stable"), np.argsort(yl, kind="stable")
    xs, ys, bs = x[px], y[py], np.ascontiguousarray(b[py])
    rx, cx, _ = cluster_ranges_centroids(xs, xl[px])
    ry, cy, _ = cluster_ranges_centroids(ys, yl[py])
    cutoff = h * np.sqrt(np.log(1 / tol)) + np.sqrt(D) * side
    keep = np.zeros((len(cx), len(cy)), dtype=bool)
    for s in range(0, len(cx), 512):
        keep[s : s + 512] = ((cx[s : s + 512, None, :] - cy[None]) ** 2).sum(-1) < cutoff**2
    ranges = from_matrix(rx, ry, keep)
    K = (-((KLazy(xs[:, None, :]) - KLazy(ys[None, :, :])) ** 2).sum(-1) / h**2).exp()
    K.ranges = ranges
    out = np.empty((len(x), b.shape[1]))
    out[px] = K @ bs
    return out, float(keep.mean())


def run(n: int, tol: float, rows: int, h: float = 0.01, pykeops_n: int = 100_000):
    """Print the sums tables: ours against our dense reduction at ``n``
    points, and against pykeops with ranges at ``pykeops_n`` (its CPU
    reduction with ranges is slower than its dense one at 1e5 points here:
    hours at 1e6). Returns the worst guarantee ratio of ours."""
    worst = _table(n, tol, rows, h, with_pykeops=pykeops_n == n)
    if pykeops_n and pykeops_n != n:
        print()
        worst = max(worst, _table(pykeops_n, tol, rows, h, with_pykeops=True))
    return worst


def _table(n: int, tol: float, rows: int, h: float, with_pykeops: bool) -> float:
    print(f"Gaussian K @ b, M = N = {n:,} float64 points, h = {h}, b = +-1, tol = {tol:g}")
    print()
    print(
        "| case | ours, first call (s) | ours, again (s) | dense (s, scaled) | "
        "dense / ours | skipped pairs | max err / bound | pykeops ranges (s) | "
        "pykeops / ours | pykeops max err / bound |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    for D in (2, 3):
        for layout in ("uniform", "clustered"):
            worst = max(worst, _case(n, D, layout, tol, rows, h, with_pykeops))
    return worst


def _case(n, D, layout, tol, rows, h, with_pykeops) -> float:
    rng = np.random.default_rng(D)
    x, y = points(rng, n, D, layout), points(rng, n, D, layout)
    b = rng.choice([-1.0, 1.0], (n, 1))
    K = (-Vi(x).sqdist(Vj(y)) / h**2).exp()
    (-Vi(x[:1500]).sqdist(Vj(y[:1500])) / h**2).exp().__matmul__(b[:1500], tol=tol)  # compiles
    t = time.perf_counter()
    with kernelsolve.approximation_report() as report:
        ours = K.__matmul__(b, tol=tol)
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    K.__matmul__(b, tol=tol)
    t_again = time.perf_counter() - t
    sample = rng.choice(n, rows, replace=False)
    xr = np.ascontiguousarray(x[sample])
    Kr = (-Vi(xr).sqdist(Vj(y)) / h**2).exp()
    (-Vi(xr[:10]).sqdist(Vj(y)) / h**2).exp() @ b  # compiles the dense kernel
    t = time.perf_counter()
    Kr @ b
    t_dense = (time.perf_counter() - t) * n / rows
    exact, absum = exact_rows(x, y, b, sample, h)
    ratio = float((np.abs(ours[sample] - exact) / (tol * absum)).max())
    cells = f"| {D}-D {layout} | {t_first:.2f} | {t_again:.2f} | {t_dense:.1f} | "
    cells += f"{t_dense / t_first:.1f}x | {report.skipped_fraction:.4f} | {ratio:.2g} |"
    if with_pykeops:
        pykeops_ranges(x[:2000], y[:2000], b[:2000], h, tol)  # compiles
        t = time.perf_counter()
        theirs, _ = pykeops_ranges(x, y, b, h, tol)
        t_keops = time.perf_counter() - t
        k_ratio = float((np.abs(theirs[sample] - exact) / (tol * absum)).max())
        cells += f" {t_keops:.2f} | {t_keops / t_first:.2f}x | {k_ratio:.2g} |"
    else:
        cells += " - | - | - |"
    print(cells, flush=True)
    return ratio
