"""A quick measure of ``approx_sum`` (issue 19 item 2, engine core; not the
full ``bench_approx`` run): Gaussian ``K @ b``, b_j = +-1, M = N points
uniform in the unit square, bandwidth 1% of the domain (exp(-|x-y|^2 /
0.01^2)), tol = 1e-6.

Prints the approximate sum's time (clustering, bounds and the block-sparse
sums included; after a warm-up that compiles), our dense reduction's time on
1000 random rows scaled to M, the skipped fractions and the largest measured
error against the float64 sum over those rows, divided by the guarantee
``tol * sum_j |F_ij|``.

    PYTHONPATH=. python benchmarks/measure_approx_sum.py 1e6 [float64|float32]
"""

import sys
import time

import numpy as np

from kernelsolve.engine import dispatch, ir
from kernelsolve.engine.ranges.approx import approx_sum
from kernelsolve.engine.request import ReductionRequest


def main(n: int, dtype: str, tol: float = 1e-6, h: float = 0.01**2) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((n, 2)).astype(dtype)
    b = rng.choice([-1.0, 1.0], (n, 1)).astype(dtype)
    r2 = ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2))
    k = ir.make("exp", ir.make("neg", ir.make("mul", ir.const(1 / h), r2)))
    F, cats = ir.make("mul", k, ir.var(2, ir.J, 1)), (ir.I, ir.J, ir.J)
    approx_sum(F, (x[:2000], x[:2000], b[:2000]), cats, tol)  # compiles
    t = time.perf_counter()
    out, info = approx_sum(F, (x, x, b), cats, tol)
    t_approx = time.perf_counter() - t
    rows = rng.choice(n, 1000, replace=False)
    xs = np.ascontiguousarray(x[rows])
    dispatch.reduce(ReductionRequest(F, "sum", (xs[:10], x, b), cats))
    t = time.perf_counter()
    dispatch.reduce(ReductionRequest(F, "sum", (xs, x, b), cats))
    t_dense = (time.perf_counter() - t) * n / len(rows)
    x64, b64, ratio = x.astype(np.float64), b.astype(np.float64), 0.0
    for s in range(0, len(rows), 50):
        r = rows[s : s + 50]
        K = np.exp(-((x64[r][:, None] - x64[None]) ** 2).sum(-1) / h)
        err = np.abs(out[r] - K @ b64)
        ratio = max(ratio, float((err / (tol * (K @ np.abs(b64)))).max()))
    print(
        f"n={n} {dtype}: approx {t_approx:.2f} s, dense ({len(rows)} rows scaled) "
        f"{t_dense:.1f} s, {t_dense / t_approx:.1f}x; skipped blocks "
        f"{info['skipped_blocks']:.4f}, point pairs {info['skipped_pairs']:.4f}, "
        f"clusters {info['blocks']}; max error / bound {ratio:.3g}"
    )


if __name__ == "__main__":
    main(int(float(sys.argv[1])) if len(sys.argv) > 1 else 200_000, *sys.argv[2:3] or ["float64"])
