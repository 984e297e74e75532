"""Sharded reductions and solves (``kernelsolve.distributed.sharded()``): scaling, memory.

Every configuration runs in fresh processes started like the distributed
tests (``multiprocessing`` spawn, the gloo backend, a file rendezvous in a
temporary folder, no network), each with ``OMP_NUM_THREADS`` and
``kernelsolve.config.num_threads`` set before kernelsolve is imported:

* **strong scaling of K @ v**: Gaussian ``exp(-4 |x_i - x_j|^2)``, N = M
  points uniform in the unit cube, 3-D float32, one column. 1 process of 1
  thread, 2 processes of 1 thread under ``sharded()``, 1 process of 2 threads.
  Time: the best of ``--repeat`` calls after a warm-up call (which compiles);
  for 2 ranks each call starts after a barrier and counts until the slowest
  rank has the whole result. The results of every configuration are compared
  with the one-process result (rows split: bit for bit).
* **strong scaling of K.solve**: ``K.solve(b, alpha, solver="cg")``
  (RPCholesky-preconditioned CG, float64, Gaussian ``exp(-2 |x_i - x_j|^2)``,
  sigma = 0.5 as in ``bench_solve.py``, alpha = 1e-2), the same three
  configurations; iterations and time (after a warm-up solve on 2,000 points,
  which compiles) and the largest difference from the one-process solution.
* **memory per rank, 1,000 rows against N = 1e7 points** (3-D float32,
  replicated: every process holds all points): ``argKmin(10)`` of the squared
  distance and ``logsumexp`` of the Gaussian exponent; peak resident set of
  each process (``resource.getrusage``, high-water mark: after the data are
  built, after each reduction) and time, for 1 process and for 2 ranks with
  the automatic split (which splits the 1,000 output rows) and with
  ``split_axis="cols"`` (j split, accumulator states merged).
* **state of a sharded solve**: peak RSS per rank of ``K.solve`` under
  ``sharded()`` at two sizes this machine runs (fixed RPCholesky rank, a few
  CG iterations: the state is allocated before the first iteration), a
  straight line through the two points, and the state at N = 1e7 from the
  formula (labelled "computed").
* **8 GPUs**: printed as pending until a GPU has run the engine, with the
  formula the projection will use.

Usage::

    python benchmarks/bench_distributed.py --quick     # small sizes, < 1 minute
    python benchmarks/bench_distributed.py             # the sizes of issue 18 (2.5 minutes here)
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import pickle
import resource
import shlex
import sys
import tempfile
import time
from datetime import timedelta

import numpy as np

# processes: (number of processes, threads per process)
ONE, RANKS, THREADS = (1, 1), (2, 1), (1, 2)
CONFIGS = {
    ONE: "1 process x 1 thread",
    RANKS: "2 processes x 1 thread",
    THREADS: "1 process x 2 threads",
}


# --- running a function on fresh processes ---------------------------------------


def _entry(task, rank, size, folder, threads, args):
    import torch

    import kernelsolve

    torch.set_num_threads(threads)
    kernelsolve.config.num_threads = threads
    if size > 1:
        import torch.distributed as dist

        dist.init_process_group(
            "gloo",
            init_method=f"file://{folder}/rendezvous",
            rank=rank,
            world_size=size,
            timeout=timedelta(seconds=600),
        )
    result = TASKS[task](rank, size, *args)
    with open(f"{folder}/{rank}.pkl", "wb") as f:
        pickle.dump(result, f)
    if size > 1:
        torch.distributed.destroy_process_group()


def launch(task: str, config: tuple, *args, timeout: float = 1200) -> list:
    """``[TASKS[task](rank, size, *args) for rank in range(size)]``, each in a
    fresh process of ``threads`` threads (``config = (size, threads)``)."""
    size, threads = config
    ctx = multiprocessing.get_context("spawn")
    saved = {
        k: os.environ.get(k)
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    # inherited by the spawned interpreters before they import numpy or torch
    os.environ.update({k: str(threads) for k in saved})
    try:
        with tempfile.TemporaryDirectory() as folder:
            procs = [
                ctx.Process(target=_entry, args=(task, r, size, folder, threads, args))
                for r in range(size)
            ]
            for p in procs:
                p.start()
            for p in procs:
                p.join(timeout)
            for r, p in enumerate(procs):
                if p.is_alive():
                    p.kill()
                    p.join()
                    raise RuntimeError(
                        f"{task}: process {r} of {size} did not finish in {timeout} s"
                    )
            results = []
            for r, p in enumerate(procs):
                path = f"{folder}/{r}.pkl"
                if not os.path.exists(path):
                    raise RuntimeError(
                        f"{task}: process {r} of {size} died (exit code {p.exitcode})"
                    )
                with open(path, "rb") as f:
                    results.append(pickle.load(f))
            return results
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- what each process runs --------------------------------------------------------


def _peak_mib() -> float:
    """High-water mark of this process's resident set (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _context(size: int, **options):
    from contextlib import nullcontext

    import kernelsolve.distributed as ksd

    return ksd.sharded(**options) if size > 1 else nullcontext()


def _timed(size: int, fn):
    """``fn()`` and its seconds, counted from a barrier when ``size > 1``."""
    if size > 1:
        import torch.distributed as dist

        dist.barrier()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _gauss(x, y, scale):
    from kernelsolve import Vi, Vj

    return (-Vi(x).sqdist(Vj(y)) * scale).exp()


def task_matvec(rank, size, n, repeat):
    rng = np.random.default_rng(0)
    x = rng.random((n, 3), dtype=np.float32)
    v = rng.standard_normal((n, 1), dtype=np.float32)
    times = []
    with _context(size, min_pairs=0) as executor:
        K = _gauss(x, x, 4.0)
        out = K @ v  # warm-up: compiles
        for _ in range(repeat):
            out, seconds = _timed(size, lambda: K @ v)
            times.append(seconds)
        counts = dict(executor.counts) if executor is not None else None
    return dict(times=times, out=out if rank == 0 else None, counts=counts)


def task_solve(rank, size, n, alpha):
    rng = np.random.default_rng(1)
    x = rng.random((n, 3))
    b = rng.standard_normal((n, 1))
    with _context(size, min_pairs=0):
        w = x[:2000]  # compiles what the timed solve runs
        _gauss(w, w, 2.0).solve(b[:2000], alpha, solver="cg")
        K = _gauss(x, x, 2.0)
        (a, info), seconds = _timed(size, lambda: K.solve(b, alpha, solver="cg", return_info=True))
    return dict(
        time=seconds,
        iterations=info.iterations,
        rank=info.preconditioner.rank,
        a=a if rank == 0 else None,
        peak_mib=_peak_mib(),
    )


def task_memory(rank, size, n, rows, split_axis):
    from kernelsolve import Vi, Vj

    rng = np.random.default_rng(2)
    x = rng.random((n, 3), dtype=np.float32)
    q = x[:rows].copy()
    out = dict(data_mib=_peak_mib())
    options = (
        dict(min_pairs=0) if split_axis == "auto" else dict(min_pairs=0, split_axis=split_axis)
    )
    with _context(size, **options) as executor:
        d2 = Vi(q).sqdist(Vj(x))
        # a small warm-up compiles both formulas; peaks below are of the big calls
        Vi(q).sqdist(Vj(x[:1000])).argKmin(10, dim=1)
        (-Vi(q).sqdist(Vj(x[:1000])) * 4.0).logsumexp(1)
        idx, out["argkmin_s"] = _timed(size, lambda: d2.argKmin(10, dim=1))
        out["argkmin_mib"] = _peak_mib()
        lse, out["lse_s"] = _timed(size, lambda: (-d2 * 4.0).logsumexp(1))
        out["lse_mib"] = _peak_mib()
        out["counts"] = dict(executor.counts) if executor is not None else None
    if rank == 0:
        out["idx"], out["lse"] = idx, lse
    return out


def task_solve_state(rank, size, n, factor_rank, iterations):
    import warnings

    from kernelsolve.linalg.cg import ConvergenceWarning

    rng = np.random.default_rng(3)
    x = rng.random((n, 3))
    b = rng.standard_normal((n, 1))
    before = _peak_mib()
    with _context(size, min_pairs=0), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        K = _gauss(x, x, 2.0)
        _, seconds = _timed(
            size,
            lambda: K.solve(b, 1e-2, solver="cg", rank=factor_rank, maxiter=iterations),
        )
    return dict(before_mib=before, peak_mib=_peak_mib(), seconds=seconds)


TASKS = {
    "matvec": task_matvec,
    "solve": task_solve,
    "memory": task_memory,
    "solve_state": task_solve_state,
}


# --- the run and its table ------------------------------------------------------------


def _slowest(results: list) -> list:
    """Per call, the time of the slowest rank (the whole result exists then)."""
    return [max(ts) for ts in zip(*(r["times"] for r in results))]


def _same(a, b) -> str:
    if isinstance(a, tuple):
        return min((_same(u, v) for u, v in zip(a, b)), key=len)
    a, b = np.asarray(a), np.asarray(b)
    if np.array_equal(a, b):
        return "bit for bit"
    scale = max(float(np.abs(b).max()), 1e-300)
    return f"max rel. diff {float(np.abs(a - b).max()) / scale:.1e}"


def scaling_matvec(n: int, repeat: int) -> list[str]:
    runs = {c: launch("matvec", c, n, repeat) for c in CONFIGS}
    best = {c: min(_slowest(r)) for c, r in runs.items()}
    ref = runs[ONE][0]["out"]
    lines = [
        f"K @ v: Gaussian, N = M = {n:,}, 3-D float32, 1 column; best of {repeat} after a warm-up",
        f"  {'configuration':<24} {'seconds':>8} {'pairs/s':>9} {'speed-up':>9}"
        "  result vs 1 process",
    ]
    for c, label in CONFIGS.items():
        rate = n * n / best[c]
        check = _same(runs[c][0]["out"], ref)
        lines.append(
            f"  {label:<24} {best[c]:8.3f} {rate:9.2e} {best[ONE] / best[c]:8.2f}x  {check}"
        )
    lines.append(
        f"  2 ranks vs 1 rank: {best[ONE] / best[RANKS]:.2f}x (parallel efficiency "
        f"{best[ONE] / best[RANKS] / 2:.0%}); 2 ranks vs 1 process of 2 threads: "
        f"{best[THREADS] / best[RANKS]:.2f}x; split: {runs[RANKS][0]['counts']}"
    )
    return lines


def scaling_solve(n: int, alpha: float) -> list[str]:
    runs = {c: launch("solve", c, n, alpha) for c in CONFIGS}
    ref = runs[ONE][0]["a"]
    lines = [
        f'K.solve(b, {alpha:g}, solver="cg"): Gaussian exp(-2 |x - y|^2), N = {n:,}, 3-D float64,'
        " RPCholesky (automatic rank), after a warm-up",
        f"  {'configuration':<24} {'seconds':>8} {'iters':>6} {'rank':>5} {'speed-up':>9}"
        "  solution vs 1 process",
    ]
    t = {c: max(r["time"] for r in runs[c]) for c in CONFIGS}
    for c, label in CONFIGS.items():
        r0 = runs[c][0]
        lines.append(
            f"  {label:<24} {t[c]:8.3f} {r0['iterations']:>6} {r0['rank']:>5} "
            f"{t[ONE] / t[c]:8.2f}x  {_same(r0['a'], ref)}"
        )
    lines.append(
        f"  2 ranks vs 1 rank: {t[ONE] / t[RANKS]:.2f}x; 2 ranks vs 1 process of 2 threads: "
        f"{t[THREADS] / t[RANKS]:.2f}x"
    )
    return lines


def memory_reductions(n: int, rows: int) -> list[str]:
    cases = [("1 process", ONE, "auto"), ("2 ranks, auto split", RANKS, "auto")]
    cases.append(("2 ranks, split_axis='cols'", RANKS, "cols"))
    runs = {name: launch("memory", c, n, rows, axis) for name, c, axis in cases}
    ref = runs["1 process"][0]
    lines = [
        f"{rows:,} rows against N = {n:,} points (3-D float32, replicated: "
        f"{n * 12 / 2**20:,.0f} MiB of points in every process); measured peak RSS per process"
        " (MiB)",
        f"  {'configuration':<27} {'split':<11} {'after data':>10} {'argKmin':>8} {'seconds':>8}"
        f" {'logsumexp':>9} {'seconds':>8}  result vs 1 process",
    ]
    for name, _, _ in cases:
        res = runs[name]
        counts = res[0]["counts"]
        split = "-" if counts is None else "+".join(k for k, v in counts.items() if v)
        check = "-"
        if res is not runs["1 process"]:
            check = f"argKmin {_same(res[0]['idx'], ref['idx'])}, "
            check += f"lse {_same(res[0]['lse'], ref['lse'])}"
        lines.append(
            f"  {name:<27} {split:<11} {max(r['data_mib'] for r in res):10.0f} "
            f"{max(r['argkmin_mib'] for r in res):8.0f} {max(r['argkmin_s'] for r in res):8.2f} "
            f"{max(r['lse_mib'] for r in res):9.0f} {max(r['lse_s'] for r in res):8.2f}  {check}"
        )
    lines.append("  (the largest value over the ranks; peaks are high-water marks, so each column")
    lines.append("   includes the ones to its left)")
    return lines


def solve_state(sizes: list[int], factor_rank: int, iterations: int, target: int) -> list[str]:
    runs = [launch("solve_state", RANKS, n, factor_rank, iterations) for n in sizes]
    peaks = [max(r["peak_mib"] for r in res) for res in runs]
    lines = [
        f"State of a sharded K.solve (2 ranks, float64, RPCholesky rank {factor_rank}, "
        f"{iterations} CG iterations)",
        f"  {'N':>10} {'peak RSS / rank (MiB)':>22} {'RSS before (MiB)':>17}   measured",
    ]
    for n, res, peak in zip(sizes, runs, peaks):
        lines.append(f"  {n:>10,} {peak:22.0f} {max(r['before_mib'] for r in res):17.0f}")
    slope = (peaks[-1] - peaks[0]) * 2**20 / (sizes[-1] - sizes[0])
    per_point = 8 * factor_rank + 24
    factor = 8 * target * 500 / 2**30
    lines += [
        f"  measured slope: {slope:.0f} bytes per point per rank: factor 8 r = {8 * factor_rank},"
        f" points 24, the rest {slope - per_point:.0f} (~{(slope - per_point) / 8:.0f} float64"
        " values per point: the factor's work buffers, where the peak is, and CG vectors)",
        f"  computed, N = {target:.0e}, r = {factor_rank} (straight line through the measured"
        f" points): {(peaks[0] + slope * (target - sizes[0]) / 2**20) / 1024:.1f} GiB per rank",
        "  computed, formula per rank: N (24 + 8 c) + 8 N r / P (c float64 values per point,"
        " P ranks, factor rank r);",
        f"    N = {target:.0e}, r = 500 (the default cap): the factor takes {factor:.1f} GiB on"
        f" every rank if each holds it whole, {factor / 8:.1f} GiB per rank at P = 8 if its rows"
        " are split",
    ]
    return lines


def projection() -> list[str]:
    return [
        "8 GPUs: PENDING. No GPU has run kernelsolve's engine yet (none lent to this project),",
        "  so no projection is printed. Once one GPU is measured it will be:",
        "  pairs/s on 8 GPUs = (measured pairs/s of K @ v on 1 GPU) x 8 x E, where E is the",
        "  parallel efficiency measured with NCCL on the GPUs (until then, the CPU/gloo E above",
        "  is only a CPU figure, not a GPU one).",
    ]


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def machine() -> str:
    from kernelsolve.engine.backends.cpu import cpu_model

    load = _load()
    now = datetime.datetime.now(datetime.UTC)
    cores = os.cpu_count()
    return f"# {now:%Y-%m-%d %H:%M} UTC, CPU: {cpu_model()}, {cores} cores, load average {load}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (< 1 minute)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls of K @ v")
    parser.add_argument("--sections", default="matvec,solve,memory,state", help="which to run")
    args = parser.parse_args(argv)
    if args.quick:
        sizes = dict(
            matvec=10_000, solve=4_000, memory=1_000_000, rows=200, state=[10_000, 20_000]
        )
    else:
        sizes = dict(
            matvec=50_000, solve=20_000, memory=10_000_000, rows=1000, state=[50_000, 100_000]
        )
    print(machine())
    print(f"# command: python {shlex.join(sys.argv)}", flush=True)
    wanted = args.sections.split(",")
    t0 = time.perf_counter()
    sections = [
        ("matvec", lambda: scaling_matvec(sizes["matvec"], args.repeat)),
        ("solve", lambda: scaling_solve(sizes["solve"], 1e-2)),
        ("memory", lambda: memory_reductions(sizes["memory"], sizes["rows"])),
        ("state", lambda: solve_state(sizes["state"], 50, 3, 10_000_000)),
    ]
    for name, section in sections:
        if name in wanted:
            load = _load()
            lines = section() + [f"  (load average before: {load}; after: {_load()})", ""]
            print("\n".join(lines), flush=True)  # each table as soon as it is measured
    print("\n".join(projection()))
    print(machine().replace("# ", "# end: ", 1) + f"; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
