"""KernelInterpolator against scipy's RBFInterpolator: every kernel, several epsilons, one run.

Data (matplotlib's sample data, ``cbook.get_sample_data``):

* ``topobathy.npz``: 91 x 120 grid of elevations (m) on longitude x latitude; ``n``
  grid points drawn at random (seed 0), coordinates standardised (zero mean, unit
  std per axis), data the elevation;
* ``jacksboro_fault_dem.npz``: 344 x 403 elevations; coordinates the grid indices
  times the grid spacing, standardised; data the elevation.

For each kernel of scipy's list and each epsilon of ``--eps`` (the scale-invariant
kernels once, at epsilon 1: with smoothing 0 their interpolant does not depend on
it), both libraries fit the same ``n`` points (smoothing 0, default degree) and
predict at ``--q`` held-out points. Columns:

* ``agree``: ``max |ours - scipy| / max |scipy|`` at the held-out points;
* ``scipy res``: the relative residual ``||A c - b|| / ||b||`` of scipy's solution in
  its own system (a backward error: small even when the solution is inaccurate);
* ``cond``: LAPACK's 1-norm condition estimate of that system (``getrf`` + ``gecon``
  on scipy's matrix, outside the timings). Where ``cond * 2.2e-16`` is above ~1e-6
  scipy's coefficients are not accurate: agreement is not expected and the row is
  marked ``ill``;
* ``misfit s``, ``misfit o``: ``max |f(y) - d| / max |d|`` at the data points, scipy's
  and ours (outside the timings): where the system is singular to working precision no
  answer meets the data, and this says by how much each misses it;
* ``scipy s``, ``ours s`` (fit + predict) and their ratio; ``how``: our method
  (``direct`` with its factorization, ``cholesky``, ``pivoted cholesky`` or ``lu``,
  ``iterative`` with GMRES iterations, ``GAVE UP``/``NOT CONVERGED`` when the
  iterative fit warned).

Our first fit of each kernel compiles its engine kernels; a 50-point warm-up fit per
kernel keeps that out of the timings (compilation is cached on disk anyway).

Usage::

    python benchmarks/bench_rbf_scipy.py --quick          # topobathy n = 1500, epsilon 1 and 5
    python benchmarks/bench_rbf_scipy.py --n 1500 6000    # topobathy, all epsilons
    python benchmarks/bench_rbf_scipy.py --dem --n 20000 --kernels thin_plate_spline gaussian
    python benchmarks/bench_rbf_scipy.py --n 6000 --solver iterative   # our GMRES path

Measured (2 shared cores, load 1.2-2.1, ``--n 1500 6000 --eps 5 --q 500 --solver
direct``): at n = 6000 ours/scipy 0.66-0.73 with the Cholesky path (seven kernels;
main's LU path 1.39-2.58 in the same session, 1.17-1.47 in an earlier one), 1.60 for
the Gaussian (condition ~1e22: potrf fails, then LU); at n = 1500 0.84-1.95 (solves
of 0.06 s).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from kernelsolve.linalg.radial import KERNELS as RADIAL
from kernelsolve.linalg.radial import SCALE_INVARIANT

KERNELS = tuple(RADIAL)  # scipy's list, in scipy's documentation order
EPS = (0.5, 1.0, 2.0, 5.0, 10.0)
ILL = 1e-6  # cond * 2.2e-16 above this: the dense solve itself is not accurate


def standardise(p: np.ndarray) -> np.ndarray:
    return (p - p.mean(0)) / p.std(0)


def topobathy():
    from matplotlib import cbook

    data = cbook.get_sample_data("topobathy.npz")
    lon, lat = np.meshgrid(data["longitude"], data["latitude"])
    pts = np.stack([lon.ravel(), lat.ravel()], 1).astype(np.float64)
    return standardise(pts), np.asarray(data["topo"], dtype=np.float64).ravel()


def dem():
    from matplotlib import cbook

    data = cbook.get_sample_data("jacksboro_fault_dem.npz")
    z = np.asarray(data["elevation"], dtype=np.float64)
    rows, cols = np.indices(z.shape)
    dx, dy = float(data["dx"]), float(data["dy"])
    pts = np.stack([cols.ravel() * dx, rows.ravel() * dy], 1)
    return standardise(pts), z.ravel()


def split(pts, z, n: int, q: int):
    order = np.random.default_rng(0).permutation(len(z))
    if n + q > len(z):
        raise SystemExit(f"n + q = {n + q} exceeds the {len(z)} points of the data set")
    return pts[order[:n]], z[order[:n]], pts[order[n : n + q]]


def scipy_residual(f, y, d) -> tuple[float, float]:
    """``||A c - b|| / ||b||`` of scipy's fitted coefficients in scipy's own system, and
    that system's 1-norm condition estimate."""
    from scipy.interpolate._rbfinterp_pythran import _build_system
    from scipy.linalg import lapack

    lhs, rhs, _, _ = _build_system(y, d[:, None], f.smoothing, f.kernel, f.epsilon, f.powers)
    res = float(np.linalg.norm(lhs @ f._coeffs - rhs) / np.linalg.norm(rhs))
    anorm = float(np.abs(lhs).sum(0).max())
    lu, _, _ = lapack.dgetrf(np.asfortranarray(lhs), overwrite_a=True)
    rcond, _ = lapack.dgecon(lu, anorm, norm="1")
    return res, 1.0 / rcond if rcond > 0 else float("inf")


def run_one(y, d, x, kernel, eps, solver, repeat=1):
    """One row: both fits + predictions, each timed ``repeat`` times (the best kept)."""
    from scipy.interpolate import RBFInterpolator

    from kernelsolve.linalg.interpolate import KernelInterpolator

    t_scipy = t_ours = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        f = RBFInterpolator(y, d, kernel=kernel, epsilon=eps)
        ref = f(x)
        t_scipy = min(t_scipy, time.perf_counter() - t)
    res, cond = scipy_residual(f, y, d)
    for _ in range(repeat):
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            g = KernelInterpolator(y, d, kernel=kernel, epsilon=eps, solver=solver)
            ours = g(x)
        t_ours = min(t_ours, time.perf_counter() - t)
    info = g.info
    if g.solver == "direct":
        how = f"direct {info.factorization}"
    else:
        how = f"iterative {info.iterations} it"
        if caught:
            how += ", GAVE UP" if info.gave_up else ", NOT CONVERGED"
    agree = float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))
    scale = float(np.max(np.abs(d)))
    misfit = [float(np.max(np.abs(h(y) - d)) / scale) for h in (f, g)]
    return dict(
        agree=agree, res=res, cond=cond, t_scipy=t_scipy, t_ours=t_ours, how=how, misfit=misfit
    )


def warm_up(kernels, ndim: int) -> None:
    from kernelsolve.linalg.interpolate import KernelInterpolator

    p = np.random.default_rng(1).random((50, ndim))
    for kernel in kernels:
        for solver in ("direct", "iterative"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                KernelInterpolator(p, p[:, 0], kernel=kernel, epsilon=1.0, solver=solver)(p)


def table(name, pts, z, n, q, kernels, eps_list, solver, repeat=1) -> list[dict]:
    y, d, x = split(pts, z, n, q)
    print(f"\n{name}: n = {n:,} points, {q:,} held out; solver={solver!r}")
    head = f"{'kernel':22s} {'eps':>5s} {'agree':>9s} {'scipy res':>9s} {'cond':>8s}"
    head += f" {'misfit s':>8s} {'misfit o':>8s}"
    print(head + f" {'scipy s':>8s} {'ours s':>8s} {'ratio':>6s}  how")
    rows = []
    for kernel in kernels:
        for eps in (1.0,) if kernel in SCALE_INVARIANT else eps_list:
            r = run_one(y, d, x, kernel, eps, solver, repeat)
            ill = r["cond"] * 2.2e-16 > ILL
            cond = f"{r['cond']:.1e}"
            flag = "  ill" if ill else ""
            print(
                f"{kernel:22s} {eps:5g} {r['agree']:9.1e} {r['res']:9.1e} {cond:>8s} "
                f"{r['misfit'][0]:8.1e} {r['misfit'][1]:8.1e} "
                f"{r['t_scipy']:8.2f} {r['t_ours']:8.2f} {r['t_ours'] / r['t_scipy']:6.2f}  "
                f"{r['how']}{flag}",
                flush=True,
            )
            rows.append(dict(r, kernel=kernel, eps=eps, ill=ill))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1500, 6000], help="sizes")
    ap.add_argument("--q", type=int, default=2000, help="held-out evaluation points")
    ap.add_argument("--dem", action="store_true", help="Jacksboro DEM instead of topobathy")
    ap.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=KERNELS)
    ap.add_argument("--eps", type=float, nargs="+", default=list(EPS))
    ap.add_argument("--solver", default="auto", choices=("auto", "direct", "iterative"))
    ap.add_argument("--quick", action="store_true", help="n = 1500, epsilon 1 and 5")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="time each fit this many times, keep the best (default 3; fits of ~0.1 s "
        "vary by tens of ms on a shared machine)",
    )
    ap.add_argument(
        "--repeat-max", type=int, default=2000, help="largest n that is repeated (default 2000)"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.eps = [1500], [1.0, 5.0]
    name, (pts, z) = ("Jacksboro DEM", dem()) if args.dem else ("topobathy", topobathy())
    warm_up(args.kernels, 2)
    for n in args.n:
        repeat = args.repeat if n <= args.repeat_max else 1
        table(name, pts, z, n, args.q, args.kernels, args.eps, args.solver, repeat)


if __name__ == "__main__":
    main()
