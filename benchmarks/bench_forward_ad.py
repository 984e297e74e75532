"""Cost of forward-mode autodiff relative to the forward: kernelsolve vs pykeops, one run.

Case: Gaussian ``K @ b`` with K_ij = exp(-|x_i - y_j|^2), D = 3, float32 (torch
CPU tensors in [0, 1]^3), N = M in ``--sizes``. For each library it times

* forward: ``K @ b``,
* jvp: ``torch.func.jvp`` of ``K @ b`` with tangents on x, y and b (the value
  and the tangent; kernelsolve: the forward and one tangent reduction),

(best of ``--repeat``) and prints the ratios jvp / forward. The tangents of the
two libraries are compared on the first rows; a mismatch is flagged.

Usage::

    python benchmarks/bench_forward_ad.py --quick       # smoke test
    python benchmarks/bench_forward_ad.py               # N = M in {1e4, 3e4}
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_reductions import import_pykeops, machine_info, print_report  # noqa: E402

from kernelsolve import LazyTensor as KSLazyTensor  # noqa: E402


def gauss(LT):
    def f(x, y, b):
        d2 = ((LT(x[:, None, :]) - LT(y[None, :, :])) ** 2).sum(-1)
        return (-d2).exp() @ b

    return f


def timings(LT, N: int, repeat: int) -> dict:
    g = torch.Generator().manual_seed(0)
    primals = (torch.rand(N, 3, generator=g), torch.rand(N, 3, generator=g))
    primals += (torch.rand(N, 1, generator=g),)
    tangents = tuple(torch.randn(t.shape, generator=g) for t in primals)
    f = gauss(LT)
    small = tuple(t[:300] for t in primals), tuple(t[:300] for t in tangents)
    torch.func.jvp(f, *small)  # compile everything

    def best(fn):
        t = math.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            t = min(t, time.perf_counter() - t0)
        return t

    out = {
        "forward": best(lambda: f(*primals)),
        "jvp": best(lambda: torch.func.jvp(f, primals, tangents)),
    }
    out["tangent"] = torch.func.jvp(f, primals, tangents)[1][:200].clone()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e4,3e4")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="N = M = 2000, one repeat")
    args = p.parse_args(argv)
    sizes = [2000] if args.quick else [int(float(s)) for s in args.sizes.split(",")]
    repeat = 1 if args.quick else args.repeat
    pk_lazy, pk_version, pk_error = import_pykeops()
    info = machine_info(pk_version)
    libs = {"kernelsolve": KSLazyTensor}
    if pk_lazy is not None:
        libs["pykeops"] = pk_lazy
    else:
        print(f"pykeops not available: {pk_error}")
    status, rows = 0, []
    for N in sizes:
        res = {name: timings(LT, N, repeat) for name, LT in libs.items()}
        match = "-"
        if "pykeops" in res:
            a, b = res["kernelsolve"]["tangent"], res["pykeops"]["tangent"]
            ok = torch.allclose(a, b, rtol=1e-3, atol=1e-3 * float(b.abs().max()))
            match = "yes" if ok else "NO"
            status |= not ok
        for name, r in res.items():
            f, j = r["forward"], r["jvp"]
            rows.append(f"| {N:.0e} | {name} | {f:.3f} | {j:.3f} | {j / f:.2f} | {match} |")
        if "pykeops" in res:
            k, pk = res["kernelsolve"], res["pykeops"]
            rows.append(
                f"| {N:.0e} | pykeops / kernelsolve | {pk['forward'] / k['forward']:.2f}x | "
                f"{pk['jvp'] / k['jvp']:.2f}x | | |"
            )
    print_report(
        "Forward-mode cost: torch.func.jvp of a Gaussian K @ b, D = 3, float32 "
        "(seconds, best of runs)",
        ["N = M", "library", "forward", "jvp (x, y, b)", "ratio", "tangents match"],
        rows,
        info,
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
