"""The GP part of ``bench_approx.py`` (issue 19): a Matern 3/2 GP posterior
mean on the Jacksboro DEM by CG, exact products against ``tol=`` products.

Data: all 138,632 elevations of matplotlib's Jacksboro fault DEM, the grid
coordinates scaled to [0, 1] along the longer side, a random 80 / 20 split
(seed 0: 110,906 training and 27,726 held-out points), the elevation
standardised with the training mean and deviation; RMSE in metres on all
held-out points. Hyperparameters (lengthscale, outputscale, noise, mean) by
exact marginal likelihood on 2,000 random training points
(:func:`kernelsolve.linalg.gp.fit_gp_hyperparameters`).

Solve: :func:`kernelsolve.linalg.gp.gp_posterior_mean` (RPCholesky-
preconditioned CG, rank ``--rank``, ``rtol`` ``--rtol``), with exact products
and with ``tol=`` (1e-8); the prediction at the held-out points is exact in
both. With ``--exact-n`` below the training size, the exact solve runs on
that many training points (both methods are then compared there), and on all
training points the exact time is estimated as iterations x one measured
exact product (the same preconditioner: the iterations of the two agree
where both run).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from kernelsolve.linalg import gp


def load_dem():
    from matplotlib import cbook

    z = cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"].astype(np.float64)
    rows, cols = z.shape
    scale = max(rows, cols) - 1
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return np.stack([c.ravel() / scale, r.ravel() / scale], axis=1), z.ravel()


def _solve(x, y, xq, h, tol, args):
    t = time.perf_counter()
    count = [0]

    def progress(_):  # long solves: a line every 10 iterations, to stderr
        count[0] += 1
        if count[0] % 10 == 0:
            print(f"  n={len(x):,} tol={tol}: {count[0]} iterations, "
                  f"{time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)  # fmt: skip

    mu, info = gp.gp_posterior_mean(
        x, y, xq, h, rank=args.rank, rtol=args.rtol, tol=tol, callback=progress
    )
    return mu, info, time.perf_counter() - t


def run(args) -> None:
    x, z = load_dem()
    perm = np.random.default_rng(0).permutation(len(x))
    test, train = perm[: len(x) // 5], perm[len(x) // 5 :]
    m, s = z[train].mean(), z[train].std()
    xtr, ytr, xte, zte = x[train], (z[train] - m) / s, x[test], z[test]
    sub = np.random.default_rng(1).choice(len(train), 2000, replace=False)
    h = gp.fit_gp_hyperparameters(xtr[sub], ytr[sub], nu=1.5)
    print(
        f"Jacksboro DEM, Matern 3/2: {len(train):,} training, {len(test):,} held-out points; "
        f"lengthscale {h['lengthscale']:.4g}, outputscale {h['outputscale']:.3g}, "
        f"noise {h['noise']:.3g}; CG rtol {args.rtol:g}, RPCholesky rank {args.rank}"
    )
    print()
    print("| training points | products | CG iterations | skipped pairs | time (s) | "
          "held-out RMSE (m) | max |mean - exact mean| (m) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|")
    n_ex = min(args.exact_n, len(train))
    runs = (
        ((n_ex, "exact"),) if args.exact_only else ((n_ex, "exact"), (n_ex, f"tol={args.tol:g}"))
    )
    for n, label in runs:
        tol = None if label == "exact" else args.tol
        mu, info, t = _solve(xtr[:n], ytr[:n], xte, h, tol, args)
        if label == "exact":
            ref = mu
        rmse = float(np.sqrt(np.mean((mu * s + m - zte) ** 2)))
        diff = float(np.abs(mu - ref).max() * s)
        print(f"| {n:,} | {label} | {info.iterations} | {info.skipped_pairs:.4f} | {t:.1f} | "
              f"{rmse:.3f} | {diff:.2g} |", flush=True)  # fmt: skip
    if n_ex < len(train) and not args.exact_only:
        mu, info, t = _solve(xtr, ytr, xte, h, args.tol, args)
        rmse = float(np.sqrt(np.mean((mu * s + m - zte) ** 2)))
        t_prod = _one_exact_product(xtr, h)
        est = t_prod * (info.iterations + 2)  # + the true-residual products
        print(f"| {len(train):,} | tol={args.tol:g} | {info.iterations} | "
              f"{info.skipped_pairs:.4f} | {t:.1f} | {rmse:.3f} | - |")  # fmt: skip
        print(f"| {len(train):,} | exact (estimated: {info.iterations + 2} products of "
              f"{t_prod:.1f} s measured) | - | 0 | ~{est:.0f} | - | - |")  # fmt: skip


def _one_exact_product(xtr, h) -> float:
    """Seconds of one exact product with the training kernel matrix."""
    op = gp.matern_operator(np.ascontiguousarray(xtr), h["lengthscale"], nu=1.5)
    v = np.ones((len(xtr), 1))  # the kernel is compiled by the solves
    t = time.perf_counter()
    op.matmat(v)
    return time.perf_counter() - t
