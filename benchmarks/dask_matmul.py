"""``K @ b`` through dask on a LocalCluster against the NumPy path in one
process, at the same size: the overhead of the graph (issue 21).

Setup: M = N = ``--n`` points (1e5 by default) uniform in the unit cube
(3-D, float64), ``b`` of shape (N, 1), the Gaussian kernel
``K_ij = exp(-|x_i - y_j|^2 / 0.1)``.

* NumPy: ``K @ b`` on NumPy arrays in this process (the compiled CPU target,
  OpenMP over every core), best of ``--repeat`` after a warm-up that compiles;
* dask: the same ``K @ b`` on dask arrays of ``--chunk`` points per chunk,
  persisted on a ``distributed.LocalCluster`` of ``--workers`` worker
  processes of one thread each (dask sets ``OMP_NUM_THREADS=1`` in them),
  timed from building the graph to the result gathered in this process,
  best of ``--repeat`` after a warm-up that compiles on the workers; the time
  to build the graph alone is shown beside it.

Check: the largest relative difference between the two results (the chunked
sums merge in another order: rounding only).

``run(args)`` is also a part of ``benchmarks/bench_dask.py``; it reads
``args.matmul_n``, ``args.matmul_chunk``, ``args.workers`` and ``args.repeat``
where present (else the defaults below) and returns the numbers.

Usage::

    python benchmarks/dask_matmul.py                  # N = 1e5, chunks of 25,000
    python benchmarks/dask_matmul.py --n 2e4 --chunk 5000
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

import kernelsolve
from kernelsolve import Vi, Vj
from kernelsolve.engine.backends.cpu import cpu_model

DEFAULTS = {"matmul_n": 1e5, "matmul_chunk": 25_000, "workers": 2, "repeat": 1}


def best_time(fn, repeat: int):
    out, best = None, float("inf")
    for _ in range(max(repeat, 1)):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def machine() -> str:
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, kernelsolve {kernelsolve.__version__}"
    )


def kernel(x, y):
    return (-Vi(x).sqdist(Vj(y)) * 10.0).exp()


def run(args) -> dict:
    """Time ``K @ b`` both ways and print a markdown table; returns the numbers."""
    import dask.array as da
    import distributed

    opt = {k: getattr(args, k, None) or v for k, v in DEFAULTS.items()}
    n, chunk, workers, repeat = (
        int(opt["matmul_n"]), int(opt["matmul_chunk"]), int(opt["workers"]), int(opt["repeat"])
    )  # fmt: skip
    rng = np.random.default_rng(0)
    x, y, b = rng.random((n, 3)), rng.random((n, 3)), rng.standard_normal((n, 1))
    kernel(x[:500], y[:500]) @ b[:500]  # compiles
    t_np, want = best_time(lambda: kernel(x, y) @ b, repeat)

    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=":0",
    )  # fmt: skip
    with distributed.Client(cluster) as client:
        dx, dy, db = client.persist(
            [da.from_array(a, chunks=(chunk, a.shape[1])) for a in (x, y, b)]
        )
        distributed.wait([dx, dy, db])
        small = [a[:500].rechunk((500, a.shape[1])) for a in (dx, dy, db)]
        (kernel(small[0], small[1]) @ small[2]).compute()  # compiles on the workers
        t_build, _ = best_time(lambda: kernel(dx, dy) @ db, repeat)
        t_dask, got = best_time(lambda: (kernel(dx, dy) @ db).compute(), repeat)
        tasks = len((kernel(dx, dy) @ db).__dask_graph__())
    cluster.close()
    err = float(np.abs(got - want).max() / np.abs(want).max())
    chunks = -(-n // chunk)
    print(f"\nK @ b, Gaussian, M = N = {n:,}, 3-D, float64; dask chunks of {chunk:,} points")
    print(f"({chunks} x {chunks} chunk pairs, {tasks} tasks in the graph)\n")
    print("| path | time (s) | vs NumPy |")
    print("|---|---:|---:|")
    print(f"| NumPy, one process ({os.cpu_count()} OpenMP threads) | {t_np:.3f} | 1.00 |")
    print(
        f"| dask, LocalCluster {workers} workers x 1 thread | {t_dask:.3f} | {t_dask / t_np:.2f} |"
    )
    print(f"| dask, building the graph alone | {t_build:.4f} | {t_build / t_np:.4f} |")
    print(f"\nlargest difference relative to max |K b|: {err:.1e}")
    return {"numpy_s": t_np, "dask_s": t_dask, "build_s": t_build, "ratio": t_dask / t_np,
            "tasks": tasks, "max_rel_diff": err}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", dest="matmul_n", type=float, default=DEFAULTS["matmul_n"])
    ap.add_argument("--chunk", dest="matmul_chunk", type=int, default=DEFAULTS["matmul_chunk"])
    ap.add_argument("--workers", type=int, default=DEFAULTS["workers"])
    ap.add_argument("--repeat", type=int, default=DEFAULTS["repeat"])
    args = ap.parse_args()
    print(f"# dask_matmul, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(machine())
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    run(args)


if __name__ == "__main__":
    main()
