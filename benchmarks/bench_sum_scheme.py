"""Accuracy and cost of each ``sum_scheme``: kernelsolve vs pykeops (and
kernelsolve before the schemes), float32 sums over N j, in one run.

Two cases, N in ``--sizes`` (1e5, 1e6, 1e7), M = ``--rows`` output rows
(512; pykeops, 20-30x slower, ``--pykeops-rows``: the first 64 of them):

* ``gauss``: sum_j exp(-4 |x_i - y_j|^2), x, y uniform in [0, 1]^3;
* ``positive``: sum_j x_i y_j, x, y uniform in [0, 1] (positive terms).

Methods: kernelsolve with ``sum_scheme`` = ``block_sum`` (its default),
``direct_sum`` and ``kahan_scheme``; kernelsolve as it was before the
schemes (``--baseline PATH``: a checkout of the library, run in a
subprocess with PYTHONPATH=PATH on the same data, default call); pykeops
(``pykeops.numpy.LazyTensor``, on this CPU) with its three schemes, when
importable.

Error: max over the first 64 rows of |s - s64| / |s64|, where s64 is the float64
evaluation of the same float32 inputs (kernelsolve's compiled float64 kernel,
itself checked against NumPy float64 on 4 rows: the script fails if they
differ by more than 1e-12). Time: the process's CPU time over all its
threads (robust to other processes on the machine; wall time beside it) per
pair (i, j), the
best of ``--repeat`` calls (9; pykeops:
``--pykeops-repeat``, 1, its calls being 20-30x longer), every method warmed
up first (compilation excluded), the kernelsolve schemes interleaved round by
round so that a load change hits them alike; the ratio is to kernelsolve's
default. Run it on an otherwise idle machine.

Usage::

    python benchmarks/bench_sum_scheme.py --baseline /path/to/old/checkout
    python benchmarks/bench_sum_scheme.py --sizes 1e5,1e6 --no-pykeops --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SCHEMES = ("block_sum", "direct_sum", "kahan_scheme")
ERROR_ROWS = 64


def data(case: str, M: int, N: int):
    rng = np.random.default_rng(0)
    d = 3 if case == "gauss" else 1
    return rng.random((M, d)).astype(np.float32), rng.random((N, d)).astype(np.float32)


def kernelsolve_call(case: str, x, y, **options):
    from kernelsolve import Vi, Vj

    if case == "gauss":
        f = (-Vi(x).sqdist(Vj(y)) * 4.0).exp()
    else:
        f = Vi(x) * Vj(y)
    return lambda: f.sum(1, **options)[:, 0].astype(np.float64)


def pykeops_call(case: str, x, y, scheme: str):
    from pykeops.numpy import LazyTensor as PL

    X, Y = PL(x[:, None, :]), PL(y[None, :, :])
    f = (-((X - Y) ** 2).sum(-1) * 4.0).exp() if case == "gauss" else X * Y
    return lambda: f.sum(1, sum_scheme=scheme)[:, 0].astype(np.float64)


def numpy64(case: str, x, y) -> np.ndarray:
    x, y = x.astype(np.float64), y.astype(np.float64)
    if case == "gauss":
        return np.array([np.exp(-4.0 * ((xi - y) ** 2).sum(1)).sum() for xi in x])
    return np.array([(xi * y).sum() for xi in x])


def best_times(calls: dict, repeat: int) -> dict:
    """Warm every call, then time them round-robin: (output, best CPU time of
    the process over its threads, best wall time) of ``repeat`` calls."""
    outs = {name: call() for name, call in calls.items()}
    cpu = {name: float("inf") for name in calls}
    wall = dict(cpu)
    for _ in range(repeat):
        for name, call in calls.items():
            t0, c0 = time.perf_counter(), time.process_time()
            call()
            cpu[name] = min(cpu[name], time.process_time() - c0)
            wall[name] = min(wall[name], time.perf_counter() - t0)
    return {name: (outs[name], cpu[name], wall[name]) for name in calls}


def worker(args) -> None:
    """Baseline mode: the default call of the kernelsolve on PYTHONPATH."""
    import kernelsolve

    res = {}
    for case in args.cases.split(","):
        for n in args.sizes.split(","):
            x, y = data(case, args.rows, int(float(n)))
            out, t, w = best_times({"b": kernelsolve_call(case, x, y)}, args.repeat)["b"]
            res[f"{case},{n}"] = (out.tolist(), t, w)
    print(json.dumps({"version": kernelsolve.__version__, "results": res}))


def baseline(args) -> tuple[dict, str]:
    env = dict(os.environ, PYTHONPATH=args.baseline)
    cmd = [sys.executable, __file__, "--worker", "--rows", str(args.rows)]
    cmd += ["--sizes", args.sizes, "--cases", args.cases, "--repeat", str(args.repeat)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    head = subprocess.run(
        ["git", "-C", args.baseline, "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return json.loads(proc.stdout.splitlines()[-1])["results"], head or args.baseline


def cpu_name() -> str:
    from kernelsolve.engine.backends.cpu import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=512)
    p.add_argument("--pykeops-rows", type=int, default=64)
    p.add_argument("--sizes", default="1e5,1e6,1e7")
    p.add_argument("--cases", default="gauss,positive")
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--pykeops-repeat", type=int, default=1)
    p.add_argument("--baseline", help="a checkout of kernelsolve before the sum schemes")
    p.add_argument("--no-pykeops", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    import kernelsolve

    base, base_name = baseline(args) if args.baseline else ({}, "")
    print(f"# sum_scheme: accuracy and cost, float32, M = {args.rows} rows\n")
    print(f"(pykeops: M = {args.pykeops_rows}; errors over the first {ERROR_ROWS} rows)\n")
    print(f"CPU: {cpu_name()}; kernelsolve {kernelsolve.__version__} ({kernelsolve.__file__})")
    if not args.no_pykeops:
        import pykeops

        print(f"pykeops {pykeops.__version__}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; command: {' '.join(sys.argv)}\n")
    print(
        "| case | N | method | max rel. error | CPU ns / pair | wall ns / pair | CPU / default |"
    )
    print("|---|---|---|---|---|---|---|")
    status = 0
    for case in args.cases.split(","):
        for n in args.sizes.split(","):
            N = int(float(n))
            x, y = data(case, args.rows, N)
            x64, y64 = x[:ERROR_ROWS].astype(np.float64), y.astype(np.float64)
            exact = kernelsolve_call(case, x64, y64)()
            check = numpy64(case, x[:4], y)
            if np.max(np.abs(exact[:4] - check) / np.abs(check)) > 1e-12:
                print(f"float64 engine and NumPy disagree on {case}, N = {n}")
                status = 1
            calls = {
                f"kernelsolve {s}": kernelsolve_call(case, x, y, sum_scheme=s) for s in SCHEMES
            }
            if not args.no_pykeops:
                calls.update({f"pykeops {s}": pykeops_call(case, x, y, s) for s in SCHEMES})
            results = best_times(calls, args.repeat)
            if base:
                out, t, w = base[f"{case},{n}"]
                results[f"kernelsolve before ({base_name})"] = (np.array(out), t, w)
            ref_t = results["kernelsolve block_sum"][1] / (args.rows * N)
            for name, (out, t, w) in results.items():
                pairs = len(out) * N
                t, w = t / pairs, w / pairs
                err = np.max(np.abs(out[:ERROR_ROWS] - exact) / np.abs(exact))
                label = name + (" (default)" if name == "kernelsolve block_sum" else "")
                row = f"{err:.2e} | {t * 1e9:.3f} | {w * 1e9:.3f} | {t / ref_t:.2f}"
                print(f"| {case} | {n} | {label} | {row} |")
    return status


if __name__ == "__main__":
    sys.exit(main())
