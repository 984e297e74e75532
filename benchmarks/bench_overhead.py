"""Warm-call overhead of a small reduction: kernelsolve vs pykeops, one run.

Gaussian ``K @ b`` with N = M = 100 (``--n``), D = 3, float32, after warm-up
(kernels compiled and loaded). For each library and input type (torch CPU
tensors; NumPy arrays for kernelsolve) the script times, best of ``--repeat``
rounds of ``--calls`` calls each:

* ``whole``: LazyTensor construction from the arrays, the formula, and ``K @ b``
  (what a user's loop pays per call);
* ``reduction``: ``K @ b`` on a LazyTensor built once (the reduction call);
* ``kernel`` (kernelsolve only): the compiled kernel alone, called through
  ctypes with the arguments already laid out - what no Python layer can save.

``overhead = reduction - kernel`` is the time the Python layers add to a call
(the compiled-engine issue's target: <= 30 us). The kernel runs on one thread
at this size (below ``cpu.SERIAL_PAIRS``), so wall time is per-core time.

Usage::

    python benchmarks/bench_overhead.py
    python benchmarks/bench_overhead.py --n 1000 --calls 500
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_reductions import import_pykeops, machine_info, print_report  # noqa: E402

from kernelsolve import LazyTensor as KSLazyTensor  # noqa: E402
from kernelsolve.engine import dispatch  # noqa: E402
from kernelsolve.engine.backends import cpu  # noqa: E402


def gauss(LT, x, y):
    return (-((LT(x[:, None, :]) - LT(y[None, :, :])) ** 2).sum(-1)).exp()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def best_us(fn, calls: int, repeat: int) -> float:
    """Best mean microseconds per call over ``repeat`` rounds."""
    for _ in range(20):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = clock()
        for _ in range(calls):
            fn()
        best = min(best, (clock() - t0) / calls * 1e6)
    return best


def kernel_alone(x, y, b):
    """A callable running kernelsolve's compiled kernel of ``K @ b`` alone."""
    K = gauss(KSLazyTensor, x, y)
    seen = {}
    execute = dispatch.execute

    def spy(plan, leaves):
        seen["plan"], seen["leaves"] = plan, leaves
        return execute(plan, leaves)

    dispatch.execute = spy
    try:
        K @ b
    finally:
        dispatch.execute = execute
    plan, leaves = seen["plan"], seen["leaves"]
    hc = plan.host
    if hc is None:
        raise RuntimeError("the compiled CPU target is not in use (no compiler?)")
    host = [dispatch._host_array(v, plan.kind, s) for v, s in zip(leaves, plan.shapes)]
    laid = [cpu.layout(a, j) for a, j in zip(host, hc.is_j)]
    outs = [np.empty(s, dt) for s, dt in hc.out_specs]
    args = hc.args_t(*[cpu._ptr(a) for a in laid])
    optr = hc.outs_t(*[cpu._ptr(o) for o in outs])
    fn = cpu.kernel(hc.spec)
    nthreads = cpu.num_threads(None, hc.pairs)

    def run():
        fn(hc.nbatch, hc.M, hc.N, args, hc.boff_ptr, optr, nthreads)

    return run, laid, outs  # keep the buffers alive with the callable


def measure(LT, x, y, b, calls, repeat, with_kernel):
    K = gauss(LT, x, y)
    row = {
        "whole": best_us(lambda: gauss(LT, x, y) @ b, calls, repeat),
        "reduction": best_us(lambda: K @ b, calls, repeat),
    }
    if with_kernel:
        run, *_keep = kernel_alone(x, y, b)
        row["kernel"] = best_us(run, calls, repeat)
        row["overhead"] = row["reduction"] - row["kernel"]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="N = M (default 100)")
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--no-pykeops", action="store_true")
    p.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: perf_counter; cpu: this process's CPU time, which other jobs on a "
        "shared machine do not inflate as much (every kernel here runs on one thread)",
    )
    args = p.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(1)  # the kernels run on one thread at this size too
    pk_lazy, pk_version, pk_error = (None, None, "disabled by --no-pykeops")
    if not args.no_pykeops:
        pk_lazy, pk_version, pk_error = import_pykeops()
    info = machine_info(pk_version)
    g = torch.Generator().manual_seed(0)
    n = args.n
    x, y, b = (torch.rand(n, d, generator=g) for d in (3, 3, 1))
    runs = [
        ("kernelsolve", "torch", measure(KSLazyTensor, x, y, b, args.calls, args.repeat, True)),
        (
            "kernelsolve",
            "numpy",
            measure(KSLazyTensor, x.numpy(), y.numpy(), b.numpy(), args.calls, args.repeat, True),
        ),
    ]
    if pk_lazy is not None:
        runs.append(
            ("pykeops", "torch", measure(pk_lazy, x, y, b, args.calls, args.repeat, False))
        )
    else:
        print(f"pykeops not run: {pk_error}")
    ks_torch = runs[0][2]
    rows = []
    for lib, inputs, r in runs:
        ratio = "" if lib == "kernelsolve" else f"{r['reduction'] / ks_torch['reduction']:.2f}x"
        kernel = f"{r['kernel']:.1f} | {r['overhead']:.1f}" if "kernel" in r else "- | -"
        rows.append(
            f"| {lib} | {inputs} | {r['whole']:.1f} | {r['reduction']:.1f} | {kernel} | {ratio} |"
        )
    print_report(
        f"Warm call, Gaussian K @ b, N = M = {n}, D = 3, float32, one thread ({args.clock} "
        f"clock, microseconds, best of {args.repeat} x {args.calls} calls)",
        ["library", "inputs", "whole call", "reduction call", "kernel alone"]
        + ["overhead (reduction - kernel)", "reduction / kernelsolve torch"],
        rows,
        info,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
