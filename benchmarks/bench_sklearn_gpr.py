"""kernelsolve.sklearn.GaussianProcessRegressor against scikit-learn's, on real elevations.

Data: matplotlib's Jacksboro fault DEM (``kernelsolve.demo.data.load_dem``:
138,632 elevations on a grid, coordinates scaled to the unit square), a random
80 / 20 split (seed 0). Both estimators get the same kernel
``ConstantKernel * Matern(nu=1.5) + WhiteKernel`` and ``normalize_y=True``.

1. Hyperparameters: scikit-learn's fit (L-BFGS-B) on ``--n-hyper`` random
   training points; reported once.
2. For each ``--sizes`` n: fit (``optimizer=None``: the fixed hyperparameters of
   step 1; both compute ``log_marginal_likelihood_value_`` at fit, exact for
   scikit-learn, estimated above 3,000 points for ours) + predict the mean at
   ``--n-test`` held-out points; times, ratio, held-out RMSE in metres, and the
   largest difference of the two means relative to the data's spread.
3. One line with the optimizer on (``--n-opt`` points, both from the same
   starting kernel): fit + predict times, fitted hyperparameters.

Ours runs with ``--tol`` (None: exact products), ``--probes`` (16) and
``rtol=1e-3`` (``--rtol``: the demo's GP tolerance; the posterior mean is then far
more accurate than the model, see the printed mean difference) and a preconditioner
rank up to 1,500 (``--max-rank``).

4. Ours alone at ``--big`` points: fit + predict and held-out RMSE.
5. Ours alone at ``--dense`` points (1e6): the 110,906 training elevations and
   more points linearly interpolated between them (Delaunay triangles of the
   training split, so that no held-out value leaks in), scored on the same
   real held-out elevations. ``--products grid`` (ours: near pairs exact, far
   pairs by FFT on a grid) is what makes 1e6 points fit on a CPU.

Usage::

    python benchmarks/bench_sklearn_gpr.py                       # 5e3, 2e4; opt 5e3; 1e5
    python benchmarks/bench_sklearn_gpr.py --sizes 2000 --n-opt 1000 --big 0   # quick
    python benchmarks/bench_sklearn_gpr.py --sizes --n-opt 0 --tol 1e-8 --probes 4 \
        --product-dtype float32   # 1e5 alone
    python benchmarks/bench_sklearn_gpr.py --product-costs 20000   # one product, by dtype
    python benchmarks/bench_sklearn_gpr.py --grid-costs 20000 100000 1000000  # exact vs grid
    python benchmarks/bench_sklearn_gpr.py --sizes --n-opt 0 --big 100000 --dense 1000000 \
        --probes 4 --products grid   # 1e5 and 1e6 with grid products
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
import warnings

import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor as SkGPR
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from kernelsolve.demo.data import load_dem
from kernelsolve.engine.backends.cpu import cpu_model
from kernelsolve.sklearn import GaussianProcessRegressor


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def fit_predict(model, X, y, Xq):
    _, t_fit = timed(lambda: model.fit(X, y))
    mean, t_pred = timed(lambda: model.predict(Xq))
    return mean, t_fit, t_pred


def in_child(fn):
    """``fn()`` in a forked process: scikit-learn's fit at 2e4 points segfaults in
    scipy's OpenBLAS on this machine (scipy 1.17.1; a crash then loses one row,
    not the run). Returns None when the child dies."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def run():
        child.send(fn())

    proc = ctx.Process(target=run)
    proc.start()
    child.close()  # the child's end: EOF here when it dies without sending
    try:
        out = parent.recv()
    except EOFError:
        out = None
    proc.join()
    if proc.exitcode != 0:
        print(f"        (scikit-learn's run died: exit code {proc.exitcode})")
        return None
    return out


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def densified(X: np.ndarray, y: np.ndarray, n: int, seed: int = 0):
    """``X, y`` and ``n - len(X)`` more points, uniform in their bounding box and
    valued by linear interpolation on the Delaunay triangles of ``X`` (points
    outside the hull are redrawn), in random order."""
    from scipy.interpolate import LinearNDInterpolator

    rng = np.random.default_rng(seed)
    interp = LinearNDInterpolator(X, y)
    lo, hi = X.min(axis=0), X.max(axis=0)
    parts, need = [(X, y)], n - len(X)
    while need > 0:
        P = lo + (hi - lo) * rng.random((need + need // 10 + 100, X.shape[1]))
        v = interp(P)
        ok = np.isfinite(v)
        parts.append((P[ok][:need], v[ok][:need]))
        need -= len(parts[-1][1])
    Xd, yd = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    order = rng.permutation(len(yd))
    return Xd[order], yd[order]


def grid_costs(sizes: list[int], columns: int = 5, rows: int = 10_000) -> None:
    """Seconds of one training-kernel product (Matern 3/2, lengthscale 0.038, ``n``
    uniform points of the unit square, ``columns`` columns: y and 4 probes),
    exact against ``products="grid"``; above 2e5 points the exact product is
    timed on ``rows`` rows and scaled by ``n / rows`` (its cost is linear in rows)."""
    from kernelsolve.sklearn.kernels import EngineKernel, translate

    rng = np.random.default_rng(0)
    kernel = Matern(0.038, nu=1.5)
    print(f"CPU: {cpu_model()}; load average {os.getloadavg()[0]:.1f}; {columns} columns")
    print("| n | exact product (s) | grid setup (s) | grid product (s) | exact / grid "
          "| grid order | sampled error |\n|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for n in sizes:
        X, V = rng.random((n, 2)), rng.standard_normal((n, columns))
        m = n if n <= 200_000 else rows
        exact = EngineKernel(translate(kernel, 2), kernel)
        exact.cross_matmat(X[:100], X[:1000], V[:1000])  # compiles
        t0 = time.perf_counter()
        exact.cross_matmat(X[:m], X, V)
        t_exact = (time.perf_counter() - t0) * n / m
        grid = EngineKernel(translate(kernel, 2), kernel, products="grid")
        t0 = time.perf_counter()
        op = grid.operator(X)
        t_setup = time.perf_counter() - t0
        op.matmat(V)
        t0 = time.perf_counter()
        op.matmat(V)
        t_grid = time.perf_counter() - t0
        note = "" if m == n else f" (from {m:,} rows)"
        print(f"| {n:,} | {t_exact:.2f}{note} | {t_setup:.2f} | {t_grid:.3f} | "
              f"{t_exact / t_grid:.0f}x | {grid.grid.order} | {grid.grid.error:.1e} |",
              flush=True)  # fmt: skip


def product_costs(n: int) -> None:
    """CPU seconds of one training-kernel product (Matern 3/2, lengthscale 0.038,
    ``n`` uniform points of the unit square) by dtype and number of columns:
    what ``product_dtype`` and the probes cost."""
    from kernelsolve.sklearn.kernels import EngineKernel, translate

    rng = np.random.default_rng(0)
    kernel = Matern(0.038, nu=1.5)
    print(f"CPU: {cpu_model()}; load average {os.getloadavg()[0]:.1f}; n = {n:,}")
    print("| dtype | 1 column | 3 columns | 5 columns |\n|---|---:|---:|---:|")
    for dtype in ("float64", "float32"):
        op = EngineKernel(translate(kernel, 2), kernel, dtype=dtype).operator(rng.random((n, 2)))
        row = []
        for cols in (1, 3, 5):
            V = rng.standard_normal((n, cols))
            op.matmat(V)  # compiles
            t = time.process_time()
            op.matmat(V), op.matmat(V)
            row.append(f"{(time.process_time() - t) / 2:.3f}")
        print(f"| {dtype} | " + " | ".join(row) + " |")


def dem_split(n_test: int):
    """The DEM's random 80 / 20 split (seed 0): training points and values, and
    the first ``n_test`` held-out ones; prints the machine and the sizes."""
    terrain = load_dem()
    order = np.random.default_rng(0).permutation(len(terrain.values))
    n_train = int(0.8 * len(order))
    train, test = order[:n_train], order[n_train:][:n_test]
    print(f"CPU: {cpu_model()}; cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
    print(f"Jacksboro DEM: {len(order)} points, {n_train} train, {len(test)} held out")
    pick = terrain.points, terrain.values
    return pick[0][train], pick[1][train], pick[0][test], pick[1][test]


def _arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[5000, 15000, 20000])
    ap.add_argument("--n-opt", type=int, default=2000)
    ap.add_argument("--rtol", type=float, default=1e-3, help="ours: CG relative residual")
    ap.add_argument("--max-rank", type=int, default=1500, help="ours: preconditioner rank cap")
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--n-test", type=int, default=10_000)
    ap.add_argument("--n-hyper", type=int, default=1000)
    ap.add_argument("--tol", type=float, default=None, help="ours: tol= of the products")
    ap.add_argument("--probes", type=int, default=16, help="ours: n_probes of the lml estimate")
    ap.add_argument(
        "--product-dtype", default="float64", choices=("float64", "float32"), help="ours"
    )
    ap.add_argument(
        "--product-costs",
        type=int,
        default=0,
        help="only: CPU s of one product at this n, by dtype",
    )
    ap.add_argument(
        "--grid-costs",
        type=int,
        nargs="*",
        default=None,
        help="only: one product at these n, exact against products='grid'",
    )
    ap.add_argument("--products", default="exact", choices=("exact", "grid"), help="ours")
    ap.add_argument(
        "--dense", type=int, default=0, help="ours alone on this many densified points"
    )
    return ap.parse_args()


def main() -> None:
    args = _arguments()
    if args.product_costs:
        return product_costs(args.product_costs)
    if args.grid_costs:
        return grid_costs(args.grid_costs)

    X, y, Xq, yq = dem_split(args.n_test)
    opts = dict(
        random_state=0,
        rtol=args.rtol,
        max_rank=args.max_rank,
        tol=args.tol,
        n_probes=args.probes,
        product_dtype=args.product_dtype,
        products=args.products,
    )
    print(f"ours: rtol={args.rtol:g}, max_rank={args.max_rank}, tol={args.tol}, "
          f"n_probes={args.probes}, product_dtype={args.product_dtype}, "
          f"products={args.products} "
          "(iterative above 3,000 points)")  # fmt: skip
    start = ConstantKernel(1.0) * Matern(length_scale=0.05, nu=1.5) + WhiteKernel(1e-3)
    hyper, t_h = timed(
        lambda: SkGPR(start, normalize_y=True).fit(X[: args.n_hyper], y[: args.n_hyper])
    )
    kernel = hyper.kernel_
    print(f"hyperparameters (scikit-learn, {args.n_hyper} points, {t_h:.1f} s): {kernel}")
    print()
    head = f"{'n':>7} {'what':<22} {'sklearn s':>10} {'ours s':>9} {'ratio':>6} "
    print(head + f"{'RMSE sk m':>10} {'RMSE ours m':>11} {'max |dmean|/std(y)':>19}")

    def sk_run(ref, n):
        m, f, p = fit_predict(ref, X[:n], y[:n], Xq)
        return m, f, p, ref.kernel_, ref.log_marginal_likelihood_value_

    def compare(what, ref, ours, n):
        """Fit + predict both on ``n`` points (scikit-learn in a child process) and
        print the rows."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # L-BFGS's and the bounds' ConvergenceWarnings
            got = in_child(lambda: sk_run(ref, n))
            m_us, f_us, p_us = fit_predict(ours, X[:n], y[:n], Xq)
        t_us = f_us + p_us
        label = f"{what + ' (' + ours.solver_ + ')':<22}"
        if got is None:
            print(f"{n:>7} {label} {'crashed':>10} {t_us:>9.1f} {'-':>6} {'-':>10} "
                  f"{rmse(m_us, yq):>11.2f} {'-':>19}")  # fmt: skip
            return None
        m_sk, f_sk, p_sk, sk_kernel, sk_lml = got
        t_sk = f_sk + p_sk
        diff = float(np.abs(m_sk - m_us).max() / np.std(y[:n]))
        print(
            f"{n:>7} {label} {t_sk:>10.1f} {t_us:>9.1f} {t_sk / t_us:>6.2f} "
            f"{rmse(m_sk, yq):>10.2f} {rmse(m_us, yq):>11.2f} {diff:>19.2e}"
        )
        est = ours.lml_estimate_
        extra = f" +- {est.value_std:.1f} (CG {est.iterations} it, rank {est.rank})" if est else ""
        print(f"{'':>7}   fit {f_sk:.1f} / {f_us:.1f} s, predict {p_sk:.1f} / {p_us:.1f} s; "
              f"lml {sk_lml:.1f} / {ours.log_marginal_likelihood_value_:.1f}{extra}")  # fmt: skip
        if what == "optimizer on":
            print(f"{'':>7}   sklearn: {sk_kernel}\n{'':>7}   ours:    {ours.kernel_}")
        return got

    for n in args.sizes:
        ref = SkGPR(kernel, optimizer=None, normalize_y=True)
        ours = GaussianProcessRegressor(kernel, optimizer=None, normalize_y=True, **opts)
        compare("fit+predict", ref, ours, n)

    if args.n_opt:
        ref = SkGPR(start, normalize_y=True)
        ours = GaussianProcessRegressor(start, normalize_y=True, **opts)
        compare("optimizer on", ref, ours, args.n_opt)

    def ours_alone(Xn, yn):
        ours = GaussianProcessRegressor(kernel, optimizer=None, normalize_y=True, **opts)
        m_us, f_us, p_us = fit_predict(ours, Xn, yn, Xq)
        est = ours.lml_estimate_
        print(
            f"{len(Xn):>7} {'fit+predict (' + ours.solver_ + ')':<22} {'-':>10} "
            f"{f_us + p_us:>9.1f} {'-':>6} {'-':>10} {rmse(m_us, yq):>11.2f} {'-':>19}"
        )
        if est is not None:
            grid = "" if ours.grid_error_ is None else f", grid error {ours.grid_error_:.1e}"
            print(f"{'':>7}   fit {f_us:.1f} s (CG {est.iterations} it, rank {est.rank}, "
                  f"skipped pairs {ours.skipped_pairs_:.3f}{grid}), predict {p_us:.1f} s; "
                  f"lml {est.value:.1f} +- {est.value_std:.1f}", flush=True)  # fmt: skip

    if args.big:
        ours_alone(X[: args.big], y[: args.big])
    if args.dense:
        (Xd, yd), t_d = timed(lambda: densified(X, y, args.dense))
        print(f"densified: {len(X)} training elevations + {len(Xd) - len(X)} interpolated "
              f"({t_d:.1f} s)", flush=True)  # fmt: skip
        ours_alone(Xd, yd)


if __name__ == "__main__":
    main()
