"""Complex reductions: kernelsolve vs pykeops, one run (torch CPU, complex64).

Cases, summed over j (M = N = ``--n``), best of ``--repeat`` warm calls:

* ``nudft``: pykeops' own complex test, a non-uniform discrete Fourier
  transform ``sum_j x_j exp(-2 pi i p_j f_i)`` (D = 1, x complex, p, f real);
* ``cexp3``: ``sum_j exp(z_i conj(w_j)).sum(-1)`` with z, w complex of D = 3.

Both libraries get the same tensors; the table gives the times, the ratio
pykeops / kernelsolve (> 1: kernelsolve faster) and the largest difference
of the results relative to their largest magnitude.

Usage::

    python benchmarks/bench_complex.py
    python benchmarks/bench_complex.py --n 20000 --repeat 3
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


def nudft(LT, d):
    return (LT(d["x"]) * (-2 * math.pi * 1j * LT(d["p"]) * LT(d["f"])).exp()).sum(dim=1)


def cexp3(LT, d):
    return (LT(d["z"]) * LT(d["w"]).conj()).exp().sum(-1).sum(dim=1)


CASES = {"nudft": nudft, "cexp3": cexp3}


def data(n: int) -> dict:
    g = torch.Generator().manual_seed(0)

    def c(*shape):
        return torch.complex(torch.rand(*shape, generator=g), torch.rand(*shape, generator=g))

    return {
        "x": c(1, n, 1),
        "p": torch.rand(1, n, 1, generator=g),
        "f": torch.rand(n, 1, 1, generator=g),
        "z": c(n, 1, 3) * 0.5,
        "w": c(1, n, 3) * 0.5,
    }


def best_ms(fn, repeat: int) -> float:
    fn()  # compile and load
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000, help="M = N")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    pk_lazy, pk_version, why = import_pykeops()
    d = data(args.n)
    rows = []
    for name, case in CASES.items():
        ks = best_ms(lambda case=case: case(KSLazyTensor, d), args.repeat)
        if pk_lazy is None:
            rows.append(f"| {name} | {args.n} | {ks:.1f} | n/a ({why}) | | |")
            continue
        pk = best_ms(lambda case=case: case(pk_lazy, d), args.repeat)
        a, b = case(KSLazyTensor, d), case(pk_lazy, d)
        diff = ((a - b).abs().max() / b.abs().max()).item()
        rows.append(f"| {name} | {args.n} | {ks:.1f} | {pk:.1f} | {pk / ks:.2f} | {diff:.1e} |")
    columns = [
        "case",
        "M = N",
        "kernelsolve ms",
        "pykeops ms",
        "pykeops / kernelsolve",
        "rel diff",
    ]
    print_report("Complex sums (torch CPU, complex64)", columns, rows, machine_info(pk_version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
