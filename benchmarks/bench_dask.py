"""Dask predictions onto a huge grid (issue 21), in parts (``--part``):

* ``grid``: a thin-plate spline (``KernelInterpolator``, FMM products at this size,
  so evaluated by the FMM at new points: ``linalg/fmm2d_eval.py``) fitted on
  ``--n`` (1e5) points of the Jacksboro DEM (matplotlib's
  ``jacksboro_fault_dem.npz``), predicted onto a ``--grid`` x ``--grid`` grid over
  the DEM's box by a ``distributed.LocalCluster`` of ``--workers`` processes of one
  thread each. The grid's points are a lazy dask array (``da.meshgrid``), never
  held whole; the result is stored block by block into a memory-mapped ``.npy`` on
  ``/tmp`` (no zarr), so a worker's memory is one chunk plus the model. Reported:
  total time, the rate, each worker's peak resident memory (``VmHWM``, via
  ``client.run``) and its RSS before the prediction, and the time extrapolated to
  ``--target`` cells (4e8) when the grid is smaller (an estimate, linear in the
  cells: chunks are independent);
* ``dense``: the same on ``--dense-grid`` cells with the dense evaluation (one
  engine reduction over all centres per cell, the evaluation without the FMM), and
  its extrapolation;
* ``scaling``: the prediction on ``--scaling-grid`` cells with 1 then 2 workers of
  one thread (strong scaling), and the NumPy call in this process (all cores) on
  the same points;
* ``matmul``: ``K @ b`` on dask arrays against NumPy, from ``dask_matmul.py``
  (the LazyTensor-over-dask work) when present.

Each worker's engine runs one OpenMP thread (``KERNELSOLVE_NUM_THREADS=1``), so
``n`` workers use ``n`` cores.

Usage::

    python benchmarks/bench_dask.py --part grid --grid 20000 --chunk 1000  # 4e8 cells
    python benchmarks/bench_dask.py --part dense --dense-grid 300 --chunk 100
    python benchmarks/bench_dask.py --part scaling --scaling-grid 1500 --chunk 750
    python benchmarks/bench_dask.py --part matmul
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import shlex
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["KERNELSOLVE_NUM_THREADS"] = "1"  # read by the workers (inherited)
os.environ["OMP_NUM_THREADS"] = "1"

import kernelsolve  # noqa: E402
from kernelsolve.demo.data import load_dem  # noqa: E402
from kernelsolve.engine.backends.cpu import cpu_model  # noqa: E402
from kernelsolve.linalg.interpolate import KernelInterpolator  # noqa: E402


def fit(n: int):
    terrain = load_dem()
    x, z = terrain.points, terrain.values
    keep = np.random.default_rng(0).permutation(len(z))[:n]
    t0 = time.perf_counter()
    f = KernelInterpolator(x[keep], z[keep], kernel="thin_plate_spline")
    return f, time.perf_counter() - t0, x.max(axis=0)


def grid_points(hi, g: int, chunk: int):
    import dask.array as da

    gx = da.linspace(0.0, hi[0], g, chunks=chunk)
    gy = da.linspace(0.0, hi[1], g, chunks=chunk)
    return da.stack(da.meshgrid(gx, gy, indexing="xy"), axis=-1).rechunk({-1: -1})


class NpySink:
    """``target[region] = block`` into a ``.npy`` file opened per write: pickles as a
    path (a ``np.memmap`` would pickle as its whole contents)."""

    def __init__(self, path: str, shape, dtype=np.float64):
        self.path = path
        np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()

    def __setitem__(self, region, block):
        m = np.load(self.path, mmap_mode="r+")
        m[region] = block
        m.flush()


def _peak_rss() -> int:
    """This process's peak RSS since it started (``VmHWM``). Not ``getrusage``'s
    ``ru_maxrss``: Linux carries a forked process's RSS across ``exec`` into it, so a
    worker spawned by this process would report this process's size."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def predict_on_cluster(f, hi, g: int, chunk: int, workers: int):
    """Total seconds and peak RSS per worker (bytes) of the grid prediction."""
    import dask.array as da
    from distributed import Client, LocalCluster

    kw = dict(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1")
    with LocalCluster(dashboard_address=None, **kw) as cluster, Client(cluster) as client:
        client.run(lambda: kernelsolve.config.__setattr__("num_threads", 1))
        warm = f(grid_points(hi, 16, 16))  # compiles the kernel on each worker (cached)
        client.gather(client.compute([warm] * 1))
        before = sorted(client.run(_rss_now).values())
        sink = NpySink(f"/tmp/bench_dask_{os.getpid()}.npy", (g, g))
        t0 = time.perf_counter()
        da.store(f(grid_points(hi, g, chunk)), sink, lock=False, compute=True)
        seconds = time.perf_counter() - t0
        rss = sorted(client.run(_peak_rss).values())
    out = np.load(sink.path, mmap_mode="r")
    check = float(out[g // 2, g // 2])
    os.unlink(sink.path)
    return seconds, (before, rss), check


def _mib(rss) -> str:
    """Peak RSS per worker, and (in brackets) its RSS before the prediction: the
    imports, the model and the compiled kernel."""
    before, peak = rss
    return ", ".join(f"{p / 2**20:,.0f} ({b / 2**20:,.0f})" for b, p in zip(before, peak))


def machine() -> None:
    print(f"# bench_dask, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, kernelsolve {kernelsolve.__version__}"
    )
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))


def dense_model(f):
    """The same interpolant evaluated by dense engine reductions (n kernel values per
    cell), as without the FMM evaluator: for comparison."""
    g = copy.copy(f)
    g._fmm_eval = g._solver = None
    return g


def part_grid(args, f, hi, how: str) -> None:
    g = int(args.grid if how == "fmm" else args.dense_grid)
    n = f.y.shape[0]
    seconds, rss, _ = predict_on_cluster(f, hi, g, args.chunk, args.workers)
    cells = g * g
    rate = cells * n / seconds
    target = float(args.target)
    print(
        f"\n## grid ({how} evaluation): thin-plate spline on {n:,} DEM points onto "
        f"{g:,} x {g:,} cells\n"
    )
    head = "| cells | chunk | workers x threads | time (s) | cells x centres / s |"
    print(head + " peak (before) RSS per worker, MiB |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {cells:.3g} | {args.chunk} x {args.chunk} | {args.workers} x 1 | {seconds:,.1f} "
        f"| {rate:.3g} | {_mib(rss)} |"
    )
    print(f"\ncells per second: {cells / seconds:,.0f}")
    if cells < target:
        est = target * n / rate
        print(
            f"\nESTIMATE (not measured): {target:.3g} cells at this rate: {est:,.0f} s "
            f"({est / 3600:.1f} h) with {args.workers} workers; memory per worker stays "
            "that of one chunk plus the model (the grid is streamed to disk)"
        )


def part_scaling(args, f, hi) -> None:
    g, n = int(args.scaling_grid), f.y.shape[0]
    pts = grid_points(hi, g, args.chunk).compute().reshape(-1, 2)
    kernelsolve.config.num_threads = None
    f(pts[:16])
    t0 = time.perf_counter()
    ref = f(pts)
    t_np = time.perf_counter() - t0
    print(f"\n## scaling: {g:,} x {g:,} cells, {n:,} centres, chunks of {args.chunk}^2\n")
    print("| run | time (s) | speed-up vs 1 worker | peak (before) RSS per worker, MiB |")
    print("|---|---|---|---|")
    one = None
    for w in (1, 2):
        seconds, rss, check = predict_on_cluster(f, hi, g, args.chunk, w)
        one = one or seconds
        mid = ref.reshape(g, g)[g // 2, g // 2]
        assert abs(check - mid) <= 1e-9 * max(1.0, abs(mid)), (check, mid)
        row = f"dask, {w} worker(s) x 1 thread | {seconds:,.1f} | {one / seconds:.2f}"
        print(f"| {row} | {_mib(rss)} |")
    print(
        f"| NumPy call, 1 process, {os.cpu_count()} threads | {t_np:,.1f} | {one / t_np:.2f} | - |"
    )


def part_matmul(args) -> None:
    print("\n## matmul: K @ b on dask arrays against NumPy\n")
    try:
        import dask_matmul
    except ImportError:
        print("not available (benchmarks/dask_matmul.py is not in this tree)")
        return
    dask_matmul.run(args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parts = ("all", "grid", "dense", "scaling", "matmul")
    ap.add_argument("--part", choices=parts, default="all")
    ap.add_argument("--n", type=float, default=1e5, help="DEM points of the spline")
    ap.add_argument("--grid", type=float, default=400, help="grid side of 'grid'")
    ap.add_argument("--dense-grid", type=float, default=200, help="grid side of 'dense'")
    ap.add_argument("--scaling-grid", type=float, default=200, help="grid side of 'scaling'")
    ap.add_argument("--chunk", type=int, default=100, help="grid chunk side")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--target", type=float, default=4e8, help="cells to extrapolate to")
    args = ap.parse_args()
    machine()
    print(f"load average at the start: {os.getloadavg()[0]:.1f} (1 min)")
    if args.part in ("all", "grid", "dense", "scaling"):
        f, t_fit, hi = fit(int(args.n))
        how = "fmm" if f._fmm_evaluator() is not None else "dense"
        print(
            f"\nfit: {f.y.shape[0]:,} points, solver {f.solver}, products "
            f"{f.info.product}, evaluation {how}, {t_fit:.1f} s"
        )
        if args.part in ("all", "dense"):
            part_grid(args, dense_model(f), hi, "dense")
        if args.part in ("all", "grid"):
            part_grid(args, f, hi, how)
        if args.part in ("all", "scaling"):
            part_scaling(args, f, hi)
    if args.part in ("all", "matmul"):
        part_matmul(args)


if __name__ == "__main__":
    main()
