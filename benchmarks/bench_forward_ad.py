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

import functools
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_autograd import best_of, gauss, peer_setup  # noqa: E402
from bench_reductions import print_report  # noqa: E402


def timings(LT, N: int, repeat: int) -> dict:
    g = torch.Generator().manual_seed(0)
    primals = (torch.rand(N, 3, generator=g), torch.rand(N, 3, generator=g))
    primals += (torch.rand(N, 1, generator=g),)
    tangents = tuple(torch.randn(t.shape, generator=g) for t in primals)
    f = functools.partial(gauss, LT)
    small = tuple(t[:300] for t in primals), tuple(t[:300] for t in tangents)
    torch.func.jvp(f, *small)  # compile everything

    out = {
        "forward": best_of(lambda: f(*primals), repeat),
        "jvp": best_of(lambda: torch.func.jvp(f, primals, tangents), repeat),
    }
    out["tangent"] = torch.func.jvp(f, primals, tangents)[1][:200].clone()
    return out


def main(argv=None) -> int:
    sizes, repeat, info, libs = peer_setup(__doc__.splitlines()[0], "1e4,3e4", argv)
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
