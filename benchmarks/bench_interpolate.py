"""Thin-plate spline interpolation: KernelInterpolator vs scipy's RBFInterpolator, one run.

Data: N points drawn at random (seed 0) from matplotlib's Jacksboro fault DEM
(``cbook.get_sample_data('jacksboro_fault_dem.npz')``, 344 x 403 elevations),
coordinates scaled to [0, 1]^2, elevations standardised; the interpolant is
evaluated at 5,000 other DEM points. Kernel ``thin_plate_spline``, degree 1,
smoothing 0 (both libraries).

Each (library, N) runs in a fresh subprocess so that its peak resident memory
(``ru_maxrss``) is its own; the table gives fit + predict time (and the fit's
setup / solve / predict split for kernelsolve), peak memory, held-out RMSE (in
elevation units), GMRES iterations, products with the kernel matrix (full
products + products with its coarse-level columns, and how they were computed:
engine reductions or the FMM) and the largest difference between the two
libraries' predictions. RBFInterpolator builds the dense (N + 3)^2 system
(8 (N + 3)^2 bytes); it is skipped above ``--scipy-max`` points.

Usage::

    python benchmarks/bench_interpolate.py --quick              # N = 1000
    python benchmarks/bench_interpolate.py                      # N in {1e3, 5e3, 2e4}, then 1e5
    python benchmarks/bench_interpolate.py --sizes 1e5 --verbose   # N = 1e5 alone, progress
    python benchmarks/bench_interpolate.py --solver iterative   # GMRES at every N

KernelInterpolator's default ``solver="auto"`` solves the thin-plate spline directly
(dense LU, as scipy) below 3,000 points: there "iterations" is 0 and "kernel products"
says ``direct``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

N_TEST = 5000


def dem_points():
    from matplotlib import cbook

    dem = cbook.get_sample_data("jacksboro_fault_dem.npz")  # an NpzFile
    z = np.asarray(dem["elevation"], dtype=np.float64)
    rows, cols = np.indices(z.shape)
    pts = np.stack([cols.ravel() / (z.shape[1] - 1), rows.ravel() / (z.shape[0] - 1)], 1)
    return pts, z.ravel()


def split(N: int):
    pts, z = dem_points()
    order = np.random.default_rng(0).permutation(len(z))
    train, test = order[:N], order[N : N + N_TEST]
    mean, std = z[train].mean(), z[train].std()
    return pts[train], (z[train] - mean) / std, pts[test], z[test], mean, std


def child(lib: str, N: int, out: str, verbose: bool = False, solver: str = "auto") -> None:
    y, d, x, z_test, mean, std = split(N)
    t0 = time.perf_counter()
    res = {}
    if lib == "scipy":
        from scipy.interpolate import RBFInterpolator

        f = RBFInterpolator(y, d, kernel="thin_plate_spline")
    else:
        from kernelsolve.linalg.interpolate import KernelInterpolator

        f = KernelInterpolator(y, d, kernel="thin_plate_spline", solver=solver, verbose=verbose)
        i = f.info
        res = {
            "iterations": i.iterations,
            "products": f"{i.products} + {i.coarse_products} ({i.product})",
            "setup": i.setup_seconds,
            "solve": i.solve_seconds,
        }
    t1 = time.perf_counter()
    pred = f(x) * std + mean
    t2 = time.perf_counter()
    np.save(out, pred)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB on Linux
    rmse = float(np.sqrt(np.mean((pred - z_test) ** 2)))
    res.update(seconds=t2 - t0, predict=t2 - t1, rss_mb=rss, rmse=rmse)
    print(json.dumps(res))


def run(lib: str, N: int, tmp: str, verbose: bool = False, solver: str = "auto") -> dict:
    out = os.path.join(tmp, f"{lib}-{N}.npy")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", lib, str(N), out]
    cmd += ["--solver", solver]
    if verbose:
        cmd.append("--verbose")
    # with --verbose the child's progress (stderr) goes straight to the terminal
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=None if verbose else subprocess.PIPE, text=True
    )
    if proc.returncode != 0:
        err = (proc.stderr or "").strip()
        return {"error": err.splitlines()[-1] if err else "failed (see stderr above)"}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["pred"] = np.load(out)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e3,5e3,2e4,1e5")
    p.add_argument("--scipy-max", type=float, default=2e4)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--verbose", action="store_true", help="kernelsolve's progress to stderr")
    p.add_argument(
        "--solver",
        default="auto",
        choices=("auto", "direct", "iterative"),
        help="KernelInterpolator's solver (auto: direct below 3,000 points)",
    )
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2], args.verbose, args.solver)
        return 0
    from bench_reductions import machine_info, print_report

    sizes = [1000] if args.quick else [int(float(s)) for s in args.sizes.split(",")]
    info = machine_info(None)
    rows = []
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        for N in sizes:
            ks = run("kernelsolve", N, tmp, args.verbose, args.solver)
            sp = run("scipy", N, tmp) if N <= args.scipy_max else None
            diff = "-"
            if sp and "error" not in sp and "error" not in ks:
                rel = np.abs(ks["pred"] - sp["pred"]).max() / np.abs(sp["pred"]).max()
                diff = f"{rel:.1e}"
                status |= not rel < 1e-5
            for lib, r in (("kernelsolve", ks), ("scipy RBFInterpolator", sp)):
                if r is None:
                    gib = 8 * (N + 3) ** 2 / 2**30
                    rows.append(
                        f"| {N:.0e} | {lib} | not run (dense system: {gib:.0f} GiB) ||||||"
                    )
                elif "error" in r:
                    rows.append(f"| {N:.0e} | {lib} | failed: {r['error']} | | | | | | |")
                    status = 1
                else:
                    split_s = (
                        f"{r['setup']:.1f} / {r['solve']:.1f} / {r['predict']:.1f}"
                        if "setup" in r
                        else f"- / - / {r['predict']:.1f}"
                    )
                    rows.append(
                        f"| {N:.0e} | {lib} | {r['seconds']:.1f} | {split_s} | "
                        f"{r['rss_mb']:.0f} | {r['rmse']:.2f} | {r.get('iterations', '-')} | "
                        f"{r.get('products', '-')} | {diff} |"
                    )
            print(rows[-2], rows[-1], sep="\n", flush=True)
    print_report(
        "Thin-plate spline on the Jacksboro DEM (2-D, degree 1, smoothing 0)",
        ["N", "library", "fit + predict (s)", "setup / solve / predict (s)", "peak RSS (MB)"]
        + ["held-out RMSE (m)", "iterations", "kernel products", "max rel. difference"],
        rows,
        info,
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
