"""Cost of a gradient relative to its forward: kernelsolve vs pykeops, one run.

Case: Gaussian ``K @ b`` with K_ij = exp(-|x_i - y_j|^2), D = 3, float32 (torch
CPU tensors in [0, 1]^3), N = M in ``--sizes``. For each library it times

* forward: ``K @ b`` under ``torch.no_grad()``,
* forward + backward: ``(K @ b).sum().backward()`` with x, y and b requiring grad
  (the gradients w.r.t. x and y need two reductions: one over j, one over i),
* backward w.r.t. x alone (one reduction),

(best of ``--repeat``) and prints the ratios gradient / forward. Gradients of the
two libraries are compared on the first rows; a mismatch is flagged.

Usage::

    python benchmarks/bench_autograd.py --quick       # smoke test
    python benchmarks/bench_autograd.py               # N = M in {1e4, 1e5}
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


def gauss(LT, x, y, b):
    d2 = ((LT(x[:, None, :]) - LT(y[None, :, :])) ** 2).sum(-1)
    return (-d2).exp() @ b


def best_of(fn, repeat: int) -> float:
    """The shortest of ``repeat`` wall-clock timings of ``fn()``, in seconds."""
    t = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


def peer_setup(description: str, default_sizes: str, argv=None):
    """The command line shared by the torch-vs-pykeops benchmarks: (sizes,
    repeat, machine info, {library name: its LazyTensor class})."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--sizes", default=default_sizes)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="N = M = 2000, one repeat")
    args = p.parse_args(argv)
    sizes = [2000] if args.quick else [int(float(s)) for s in args.sizes.split(",")]
    repeat = 1 if args.quick else args.repeat
    pk_lazy, pk_version, pk_error = import_pykeops()
    libs = {"kernelsolve": KSLazyTensor}
    if pk_lazy is not None:
        libs["pykeops"] = pk_lazy
    else:
        print(f"pykeops not available: {pk_error}")
    return sizes, repeat, machine_info(pk_version), libs


def timings(LT, N: int, repeat: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(N, 3, generator=g), torch.rand(N, 3, generator=g)
    b = torch.rand(N, 1, generator=g)
    small = [t[:300].clone() for t in (x, y, b)]
    gauss(LT, *[t.requires_grad_() for t in small]).sum().backward()  # compile everything

    def best(fn):
        return best_of(fn, repeat)

    def forward():
        with torch.no_grad():
            gauss(LT, x, y, b)

    xs, ys, bs = (t.clone().requires_grad_() for t in (x, y, b))

    def full():
        for t in (xs, ys, bs):
            t.grad = None
        gauss(LT, xs, ys, bs).sum().backward()

    xo = x.clone().requires_grad_()

    def only_x():
        xo.grad = None
        gauss(LT, xo, y, b).sum().backward()

    out = {"forward": best(forward), "fwd+bwd (x, y, b)": best(full), "fwd+bwd (x)": best(only_x)}
    out["grads"] = (xs.grad[:200].clone(), ys.grad[:200].clone(), bs.grad[:200].clone())
    return out


def main(argv=None) -> int:
    sizes, repeat, info, libs = peer_setup(__doc__.splitlines()[0], "1e4,1e5", argv)
    status = 0
    rows = []
    for N in sizes:
        res = {name: timings(LT, N, repeat) for name, LT in libs.items()}
        match = "-"
        if "pykeops" in res:
            ok = all(
                torch.allclose(a, b, rtol=1e-3, atol=1e-3 * float(b.abs().max()))
                for a, b in zip(res["kernelsolve"]["grads"], res["pykeops"]["grads"])
            )
            match = "yes" if ok else "NO"
            status |= not ok
        for name, r in res.items():
            f = r["forward"]
            rows.append(
                f"| {N:.0e} | {name} | {f:.3f} | {r['fwd+bwd (x)']:.3f} | "
                f"{r['fwd+bwd (x)'] / f:.2f} | {r['fwd+bwd (x, y, b)']:.3f} | "
                f"{r['fwd+bwd (x, y, b)'] / f:.2f} | {match} |"
            )
        if "pykeops" in res:
            k, pk = res["kernelsolve"], res["pykeops"]
            rows.append(
                f"| {N:.0e} | pykeops / kernelsolve | {pk['forward'] / k['forward']:.2f}x | "
                f"{pk['fwd+bwd (x)'] / k['fwd+bwd (x)']:.2f}x | | "
                f"{pk['fwd+bwd (x, y, b)'] / k['fwd+bwd (x, y, b)']:.2f}x | | |"
            )
    print_report(
        "Gradient cost: Gaussian K @ b, D = 3, float32 (seconds, best of runs)",
        ["N = M", "library", "forward", "fwd+bwd x", "ratio", "fwd+bwd x, y, b", "ratio"]
        + ["grads match"],
        rows,
        info,
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
