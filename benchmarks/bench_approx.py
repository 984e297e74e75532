"""Sub-quadratic reductions (issue 19), one run, side by side, in three
parts (``--part``): ``sums`` (Gaussian ``K @ b`` with ``tol=`` against our
dense reduction and pykeops with hand-made ranges: ``approx_sums.py``),
``knn`` (below) and ``gp`` (a Matern GP solve on the Jacksboro DEM with
``tol=`` against the exact one: ``approx_gp.py``).

The nearest-neighbour part: exact argKmin by block pruning
(``kernelsolve.engine.ranges.knn``) against our dense reduction and
``scipy.spatial.cKDTree``.

Setup: M = N = ``--n`` points (1e6 by default) uniform in the unit cube,
float32 NumPy arrays, x (queries) and y (data) drawn independently; the
formula F = |x_i - y_j|^2 (the ``sqdist`` op of ``Vi(x).sqdist(Vj(y))``),
``K = --k`` (10).

Timed (best of ``--repeat``, after a warm-up on 500 points that compiles):

* pruned: ``dispatch.reduce`` of the argKmin request on all rows, which
  prunes by itself (:func:`~kernelsolve.engine.ranges.knn.reduce_pruned`:
  grid clusters, the formula's bound from the ops' interval rules on the
  block pairs, the threshold pass, the block-sparse reduction, the tie
  fix-up; everything included);
* dense: our dense argKmin (``dispatch.execute`` of the plan, which does not
  prune) on the first ``--dense-rows`` rows (all N columns), scaled to M rows
  (the cost is linear in the rows);
* cKDTree: ``cKDTree(y)`` (build) plus ``.query(x, k=K, workers=2)``.

Check: the pruned indices equal the dense ones on the dense rows (ties
included); the agreement with cKDTree's indices is printed for information
(cKDTree computes distances in float64: float32 near-ties may differ).

Usage::

    python benchmarks/bench_approx.py              # all parts, N = 1e6
    python benchmarks/bench_approx.py --part knn --n 2e5
    python benchmarks/bench_approx.py --part sums --pykeops-n 1e5
    python benchmarks/bench_approx.py --part gp --exact-n 20000
    python benchmarks/bench_approx.py --part gp --exact-n 110906 --exact-only
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
from scipy.spatial import cKDTree

import kernelsolve
from kernelsolve.engine import dispatch, ir
from kernelsolve.engine.backends.cpu import cpu_model
from kernelsolve.engine.ranges import knn, prune
from kernelsolve.engine.request import ReductionRequest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import approx_gp  # noqa: E402 (the parts beside this script)
import approx_sums  # noqa: E402


def best_time(fn, repeat: int):
    out, best = None, float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("all", "sums", "knn", "gp"), default="all")
    ap.add_argument("--n", type=float, default=1e6, help="points M = N (default 1e6)")
    ap.add_argument("--k", type=int, default=10, help="neighbours K (default 10)")
    ap.add_argument("--dense-rows", type=int, default=2000, help="rows timed dense")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--cluster-size", type=int, default=64, help="points per cell")
    ap.add_argument("--tol", type=float, default=None, help="sums 1e-6, gp 1e-8")
    ap.add_argument("--pykeops-n", type=float, default=1e5, help="sums: pykeops' size")
    ap.add_argument("--exact-n", type=int, default=20_000, help="gp: exact solve's size")
    ap.add_argument("--exact-only", action="store_true", help="gp: only the exact solve")
    ap.add_argument("--rank", type=int, default=2000, help="gp: preconditioner rank")
    ap.add_argument("--rtol", type=float, default=1e-3, help="gp: CG rtol (GP_RTOL)")
    args = ap.parse_args()
    print(f"# bench_approx, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, kernelsolve {kernelsolve.__version__}"
    )
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    failed = False
    if args.part in ("all", "sums"):
        print("\n## sums")
        tol = args.tol or 1e-6
        worst = approx_sums.run(int(args.n), tol, 300, pykeops_n=int(args.pykeops_n))
        failed |= not worst <= 1
    if args.part in ("all", "knn"):
        print("\n## nearest neighbours")
        failed |= not run_knn(args)
    if args.part in ("all", "gp"):
        print("\n## GP solve")
        approx_gp.run(argparse.Namespace(**dict(vars(args), tol=args.tol or 1e-8)))
    if failed:
        sys.exit(1)


def run_knn(args) -> bool:
    """The nearest-neighbour table; True when pruned equals dense."""
    n, K = int(args.n), args.k
    rng = np.random.default_rng(0)
    x = rng.random((n, 3)).astype(np.float32)
    y = rng.random((n, 3)).astype(np.float32)
    F = ir.make("sqdist", ir.var(0, ir.I, 3), ir.var(1, ir.J, 3))  # Vi(x).sqdist(Vj(y))
    cats = (ir.I, ir.J)

    def pruned(a, b):  # prunes by itself when it pays
        return dispatch.reduce(ReductionRequest(F, "argkmin", (a, b), cats, 1, None, K))

    def dense(a, b):
        request = ReductionRequest(F, "argkmin", (a, b), cats, 1, None, K)
        return dispatch.execute(dispatch.plan(request), request.arguments)

    pruned(x[:500], y[:500])  # compiles
    dense(x[:500], y[:500])
    rows = min(args.dense_rows, n)
    t_pruned, got = best_time(lambda: pruned(x, y), args.repeat)
    t_rows, want = best_time(lambda: dense(x[:rows], y), args.repeat)
    t_dense = t_rows * n / rows
    t_build, tree = best_time(lambda: cKDTree(y), args.repeat)
    t_query, (_, kd_idx) = best_time(lambda: tree.query(x, k=K, workers=2), args.repeat)
    t_plan, plan = best_time(
        lambda: prune.prune_plan(
            (x, y),
            cats,
            K,
            knn.formula_bound(F, (x, y), cats),
            formula=F,
            cluster_size=args.cluster_size,
        ),
        args.repeat,
    )
    same = np.array_equal(got[:rows], want)
    agree = float(np.mean(np.sort(got, axis=1) == np.sort(kd_idx, axis=1)))

    print(f"argKmin K={K}, M = N = {n:,} uniform 3-D float32 points")
    print(
        f"pruning: {len(plan.ranges_i)} x {len(plan.ranges_j)} clusters, "
        f"{plan.kept_fraction():.4f} of the block pairs kept, "
        f"{plan.kept_pairs() / n:,.0f} pairs per row (dense: {n:,})"
    )
    print()
    print("| method | time (s) | pruned is faster by |")
    print("|---|---:|---:|")
    print(f"| kernelsolve pruned (exact) | {t_pruned:.2f} | 1.00x |")
    print(f"| (of which the pruning plan) | {t_plan:.2f} | |")
    print(
        f"| kernelsolve dense ({rows} rows, scaled) | {t_dense:.1f} | {t_dense / t_pruned:.1f}x |"
    )
    t_kd = t_build + t_query
    print(f"| cKDTree build + query (workers=2) | {t_kd:.2f} | {t_kd / t_pruned:.2f}x |")
    print(f"| cKDTree query only | {t_query:.2f} | {t_query / t_pruned:.2f}x |")
    print()
    print(f"pruned == dense on the first {rows} rows (indices, ties included): {same}")
    print(f"index agreement with cKDTree (sorted per row): {agree:.6f}")
    return same


if __name__ == "__main__":
    main()
