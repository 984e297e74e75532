"""Ordinary kriging on the Jacksboro DEM: kernelsolve (one and two levels) vs PyKrige, one run.

The demo's data and variogram: matplotlib's Jacksboro DEM, a random 20% of
its points for training (``kernelsolve.demo.data.split``, seed 0), the variogram
fitted to short lags of the first 3,000 training points. For every variogram
model in ``--models`` and training size in ``--sizes``, the script fits
``kernelsolve.linalg.kriging.OrdinaryKriging`` (saddle-point GMRES,
``rtol = 1e-6``) with the default two-level preconditioner
(``coarse="auto"``) and with one level only (``coarse=0``, the behaviour
before the kernel's reach picked the levels), and PyKrige's
``OrdinaryKriging`` (dense) up to ``--pykrige-max`` points. Predictions at
20,000 random held-out points give the RMSE; PyKrige's predictions, where it
ran, give the largest relative difference.

``--task grid``: fit + execute on a grid (values and variances) at ``--sizes``
training points against PyKrige (dense, where it fits: ``--pykrige-max``), with
kernelsolve's default solver choice (direct wherever the dense system fits the
memory budget, so exact as PyKrige) and, up to ``--direct-max``, ``solver="direct"``
asked for (``--direct-max 0`` skips it where "auto" is direct anyway); agreement
and time ratio. ``--task window``: moving-window kriging
(``n_closest_points``) on a grid of ``--targets`` points, kernelsolve at every
size, PyKrige (C backend, which forms the dense (n + 1)^2 matrix) on its first
``--pykrige-targets`` targets where it fits.

Usage::

    python benchmarks/bench_kriging.py
    python benchmarks/bench_kriging.py --models matern,spherical --sizes 27726
    python benchmarks/bench_kriging.py --task grid --sizes 10000,100000
    python benchmarks/bench_kriging.py --task grid --models spherical \
        --sizes 2000,10000,20000 --pykrige-max 10000 --grid 50 --direct-max 0
    python benchmarks/bench_kriging.py --task window --sizes 10000,100000
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from functools import partial

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_reductions import machine_info, print_report  # noqa: E402

from kernelsolve.demo import settings  # noqa: E402
from kernelsolve.demo.data import load_dem, split  # noqa: E402
from kernelsolve.linalg.cg import ConvergenceWarning  # noqa: E402
from kernelsolve.linalg.kriging import OrdinaryKriging  # noqa: E402
from kernelsolve.linalg.variogram import fit_variogram, short_lag_variogram  # noqa: E402

NU = 1.5  # smoothness of the matern model
HELD_OUT = 20_000


def variogram(X, y, model: str) -> dict:
    """The demo's fit: short lags of the first VARIOGRAM_POINTS training points."""
    n = len(y)
    m = min(settings.VARIOGRAM_POINTS, n)
    span = X.max(0) - X.min(0)
    max_lag = settings.VARIOGRAM_LAG_SPACINGS * math.sqrt(float(np.prod(span)) / n)
    lags, sv = short_lag_variogram(X[:m], y[:m], max_lag, settings.VARIOGRAM_LAGS)
    p = fit_variogram(lags, sv, model, nu=NU)
    params = {"psill": float(p[0]), "range": float(p[1]), "nugget": float(p[2])}
    if model == "matern":
        params["nu"] = NU
    return params


def run_kernelsolve(X, y, Xt, model, params, coarse):
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        ok = OrdinaryKriging(
            X[:, 0],
            X[:, 1],
            y,
            model,
            params,
            variance=False,
            rtol=settings.SOLVER_RTOL,
            maxiter=settings.SOLVER_MAXITER,
            seed=0,
            coarse=coarse,
        )
        pred, _ = ok.execute("points", Xt[:, 0], Xt[:, 1], variance=False)
    info = ok.info
    return {
        "seconds": time.perf_counter() - t0,
        "products": info.products,
        "residual": float(max(info.residual)),
        "converged": bool(info.converged)
        and not any(issubclass(w.category, ConvergenceWarning) for w in caught),
        "pred": pred,
    }


def run_pykrige(X, y, Xt, model, params):
    from pykrige.ok import OrdinaryKriging as PyKrigeOK

    t0 = time.perf_counter()
    pk = PyKrigeOK(X[:, 0], X[:, 1], y, variogram_model=model, variogram_parameters=params)
    pred, _ = pk.execute("points", Xt[:, 0], Xt[:, 1], backend="vectorized")
    return {"seconds": time.perf_counter() - t0, "pred": np.asarray(pred)}


def _timed(f):
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def _rel(a, ref) -> str:
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return f"{np.abs(a - ref).max() / np.abs(ref).max():.1e}"


def _grid_run(cls, X, y, model, params, gx, gy, solver):
    kw = {} if solver is None else {"solver": solver}
    ok = cls(X[:, 0], X[:, 1], y, model, params, **kw)
    z, ss = ok.execute("grid", gx, gy)
    if solver is None:
        return "dense", "exact", z, ss
    return ok.solver, ok.variance_info.get("method"), z, ss


def _window_pykrige(X, y, model, params, px, py, k):
    from pykrige.ok import OrdinaryKriging as PyKrigeOK

    ref = PyKrigeOK(X[:, 0], X[:, 1], y, model, params)
    return ref.execute("points", px, py, backend="C", n_closest_points=k)


def grid_task(args, terrain, train) -> list[str]:
    """Fit + execute on a grid, values and variances, against PyKrige."""
    from pykrige.ok import OrdinaryKriging as PyKrigeOK

    gx = np.linspace(0.02, 0.98, args.grid)
    gy = np.linspace(0.02, 0.98, args.grid)
    rows = []
    for n in [int(float(s)) for s in args.sizes.split(",")]:
        X, y = terrain.points[train[:n]], terrain.values[train[:n]]
        for model in args.models.split(","):
            params = variogram(X, y, model)
            runs = {}
            solvers = ["auto"] + (["direct"] if n <= args.direct_max else [])
            for solver in solvers:
                run = partial(_grid_run, OrdinaryKriging, X, y, model, params, gx, gy, solver)
                runs[f"kernelsolve solver={solver}"] = _timed(run)
            if n <= args.pykrige_max:
                run = partial(_grid_run, PyKrigeOK, X, y, model, params, gx, gy, None)
                runs["PyKrige"] = _timed(run)
            ref = runs.get("PyKrige")
            for label, (sec, (solver, var, z, ss)) in runs.items():
                agree = ratio = "-"
                if ref is not None and label != "PyKrige":
                    agree = f"{_rel(z, ref[1][2])} / {_rel(ss, ref[1][3])}"
                    ratio = f"{ref[0] / sec:.2f}"
                rows.append(
                    f"| {n} | {model} | {args.grid}x{args.grid} | {label} ({solver}, "
                    f"{var} variances) | {sec:.1f} | {agree} | {ratio} |"
                )
                print(rows[-1], flush=True)
    return rows


def window_task(args, terrain, train) -> list[str]:
    """Moving-window kriging (n_closest_points) on a grid of --targets points."""
    side = int(round(math.sqrt(args.targets)))
    g = np.linspace(0.0005, 0.9995, side)
    k = args.closest
    rows = []
    for n in [int(float(s)) for s in args.sizes.split(",")]:
        X, y = terrain.points[train[:n]], terrain.values[train[:n]]
        for model in args.models.split(","):
            params = variogram(X, y, model)
            ok = OrdinaryKriging(X[:, 0], X[:, 1], y, model, params)
            sec, (z, ss) = _timed(lambda ok=ok: ok.execute("grid", g, g, n_closest_points=k))
            rate = side * side / sec
            cell = "-"
            if n <= args.pykrige_max:
                m = args.pykrige_targets
                px, py = np.meshgrid(g, g)
                px, py = px.ravel()[:m], py.ravel()[:m]
                run = partial(_window_pykrige, X, y, model, params, px, py, k)
                psec, (pz, pss) = _timed(run)
                cell = (
                    f"{psec:.1f} s for {m} targets ({m / psec:.0f}/s); values "
                    f"{_rel(z.ravel()[:m], pz)}, variances {_rel(ss.ravel()[:m], pss)}"
                )
            rows.append(
                f"| {n} | {model} | {side * side} | {k} | {sec:.1f} ({rate:.0f}/s) | {cell} |"
            )
            print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="levels", choices=("levels", "grid", "window"))
    p.add_argument("--models", default="exponential,matern,spherical,gaussian")
    p.add_argument("--sizes", default="5000,27726", help="training points")
    p.add_argument("--pykrige-max", type=int, default=5000, help="largest n for PyKrige")
    p.add_argument("--direct-max", type=int, default=10000, help="largest n for solver=direct")
    p.add_argument("--grid", type=int, default=50, help="grid side (--task grid)")
    p.add_argument("--targets", type=int, default=10**6, help="targets (--task window)")
    p.add_argument("--closest", type=int, default=16, help="n_closest_points (--task window)")
    p.add_argument("--pykrige-targets", type=int, default=20000, help="(--task window)")
    args = p.parse_args(argv)
    if args.task != "levels":
        terrain = load_dem()
        train, _ = split(len(terrain.values), 0)
        info = machine_info(None)
        info["pykeops"] = "not used"
        if args.task == "grid":
            header = ["n", "model", "grid", "method", "seconds (fit + execute)"]
            header += ["max rel. diff. to PyKrige (values / variances)", "PyKrige time / ours"]
            rows = grid_task(args, terrain, train)
            title = "Ordinary kriging on a grid, values and variances, Jacksboro DEM"
        else:
            header = ["n", "model", "targets", "n_closest_points", "kernelsolve s (rate)"]
            header += ["PyKrige (C backend), agreement"]
            rows = window_task(args, terrain, train)
            title = "Moving-window ordinary kriging, Jacksboro DEM"
        print_report(title, header, rows, info)
        return 0
    try:
        import pykrige

        pk_version = pykrige.__version__
    except ImportError:
        pk_version = None
    info = machine_info(None)
    info["pykeops"] = f"not used (pykrige {pk_version or 'not installed'})"
    terrain = load_dem()
    train, test = split(len(terrain.values), 0)
    sub = np.sort(np.random.default_rng(1).choice(len(test), HELD_OUT, replace=False))
    Xt, yt = terrain.points[test[sub]], terrain.values[test[sub]]
    rows = []
    for n in [int(float(s)) for s in args.sizes.split(",")]:
        X, y = terrain.points[train[:n]], terrain.values[train[:n]]
        for model in args.models.split(","):
            params = variogram(X, y, model)
            for coarse in ("auto", 0):  # compile this model's kernels before timing
                run_kernelsolve(X[:1200], y[:1200], Xt[:10], model, params, coarse)
            ref = None
            if pk_version and n <= args.pykrige_max:
                ref = run_pykrige(X, y, Xt, model, params)
            for label, coarse in (("two levels (auto)", "auto"), ("one level", 0)):
                r = run_kernelsolve(X, y, Xt, model, params, coarse)
                rmse = float(np.sqrt(np.mean((r["pred"] - yt) ** 2)))
                diff = "-"
                if ref is not None:
                    d = np.abs(r["pred"] - ref["pred"]).max() / np.abs(ref["pred"]).max()
                    diff = f"{d:.1e}"
                conv = "yes" if r["converged"] else f"no ({r['residual']:.1e})"
                rows.append(
                    f"| {n} | {model} | kernelsolve, {label} | {r['seconds']:.1f} | "
                    f"{r['products']} | {conv} | {rmse:.2f} | {diff} |"
                )
                print(rows[-1], flush=True)
            if ref is not None:
                rmse = float(np.sqrt(np.mean((ref["pred"] - yt) ** 2)))
                rows.append(
                    f"| {n} | {model} | PyKrige (dense) | {ref['seconds']:.1f} | - | - | "
                    f"{rmse:.2f} | - |"
                )
                print(rows[-1], flush=True)
    print_report(
        "Ordinary kriging, Jacksboro DEM (fit + 20,000 predictions)",
        ["n", "model", "method", "seconds", "kernel products", "converged (residual)"]
        + ["held-out RMSE (m)", "max rel. diff. to PyKrige"],
        rows,
        info,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
