"""Exact GP training steps and predictions: kernelsolve vs gpytorch.kernels.keops vs
dense GPyTorch, one run.

One training step = ``loss = -mll(model(x), y); loss.backward(); optimizer.step()``
for an ExactGP with a constant mean and ``ScaleKernel(kernel)`` (kernel: RBF or
Matern-5/2 with ARD lengthscales), Gaussian likelihood, GPyTorch's default
settings (above 800 points: CG + stochastic Lanczos quadrature, pivoted-Cholesky
preconditioner of rank 15, 10 probe vectors: every product is with ~11 columns).
One prediction = the exact predictive means and variances at 500 test points
(``likelihood(model(x_test))``, ``.mean``, ``.variance``, default settings: the
variances solve with 500 right-hand sides), caches built by that call.
Data: matplotlib's ``jacksboro_fault_dem.npz`` elevation grid (138,632 points),
N training and 500 test points drawn without replacement, (longitude, latitude)
and elevation standardised, float32; hyperparameters start at lengthscale 0.2,
outputscale 1, noise 0.01 (a trained model's regime, where CG needs dozens of
iterations).

Libraries:

* ``kernelsolve``: ``kernelsolve.integrations.gpytorch`` kernels (engine reductions);
* ``keops``: ``gpytorch.kernels.keops`` kernels (pykeops 2.3 on the CPU);
* ``dense``: ``gpytorch.kernels`` with the dense N x N matrix (CG as well:
  ``max_cholesky_size(0)``), run only where the matrix fits (``--dense-max``).

Each (library, N) runs in a fresh subprocess, so that its peak resident memory
(``ru_maxrss``) is its own. A warm-up step at N = 2000 in the same process
compiles the kernels first (kernelsolve and pykeops both cache them on disk), so
the timed steps measure steady-state training.

Usage::

    python benchmarks/bench_gpytorch.py --quick                 # N = 3000, seconds
    python benchmarks/bench_gpytorch.py --sizes 1500,5000,2e4 --libs kernelsolve,dense
    python benchmarks/bench_gpytorch.py --libs kernelsolve --sizes 1e4,3e4,1e5 --steps 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

LIBS = ("kernelsolve", "keops", "dense")


TEST_POINTS = 500
NOISE = 0.1


def make_data(n: int, seed: int = 0):
    """``n`` training and TEST_POINTS test points of the Jacksboro fault DEM."""
    import numpy as np
    import torch
    from matplotlib import cbook

    dem = cbook.get_sample_data("jacksboro_fault_dem.npz")
    z = dem["elevation"].astype(np.float64)
    lat, lon = np.meshgrid(
        np.linspace(dem["ymin"], dem["ymax"], z.shape[0]),
        np.linspace(dem["xmin"], dem["xmax"], z.shape[1]),
        indexing="ij",
    )
    xy = np.stack([lon.ravel(), lat.ravel()], 1)
    z = z.ravel()
    pick = np.random.default_rng(seed).choice(len(z), n + TEST_POINTS, replace=False)
    xy, z = xy[pick], z[pick]
    xy = (xy - xy.mean(0)) / xy.std(0)
    z = (z - z.mean()) / z.std()
    x, y = torch.tensor(xy, dtype=torch.float32), torch.tensor(z, dtype=torch.float32)
    return x[:n], y[:n], x[n:]


def make_kernel(lib: str, name: str):
    import gpytorch

    if lib == "kernelsolve":
        from kernelsolve.integrations import gpytorch as module
    elif lib == "keops":
        from gpytorch.kernels import keops as module
    else:
        module = gpytorch.kernels
    if name == "rbf":
        return module.RBFKernel(ard_num_dims=2)
    return module.MaternKernel(nu=2.5, ard_num_dims=2)


def make_model(lib: str, name: str, x, y):
    import gpytorch

    class ExactGP(gpytorch.models.ExactGP):
        def __init__(self):
            likelihood = gpytorch.likelihoods.GaussianLikelihood()
            super().__init__(x, y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(make_kernel(lib, name))

        def forward(self, z):
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(z), self.covar_module(z)
            )

    model = ExactGP()
    model.covar_module.base_kernel.lengthscale = 0.2
    model.covar_module.outputscale = 1.0
    model.likelihood.noise = NOISE
    return model


def train_steps(lib: str, name: str, n: int, steps: int, predict: bool = True):
    """Timed training steps, then (``predict``) one timed prediction at the test points."""
    import gpytorch
    import torch

    x, y, xt = make_data(n)
    model = make_model(lib, name, x, y)
    model.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    times, losses = [], []
    for _ in range(steps):
        torch.manual_seed(1)  # the same probe vectors for every library
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = -mll(model(x), y)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss))
    if not predict:
        return times, losses, None, [float("nan")] * 2
    model.eval()
    torch.manual_seed(2)
    t0 = time.perf_counter()
    with torch.no_grad():
        pred = model.likelihood(model(xt))
        mean, var = pred.mean, pred.variance
    seconds = time.perf_counter() - t0
    return times, losses, seconds, [float(mean.sum()), float(var.sum())]


def worker(lib: str, name: str, n: int, steps: int, predict: bool) -> None:
    """One (library, N) measurement; prints a JSON line."""
    import torch

    torch.manual_seed(0)
    train_steps(lib, name, 2000, 1, predict=False)  # compiles the kernels
    times, losses, predict, sums = train_steps(lib, name, n, steps, predict)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    out = {"lib": lib, "n": n, "times": times, "losses": losses, "predict": predict}
    out.update({"mean_var_sums": sums, "peak_gib": peak})
    print(json.dumps(out))


def run(lib: str, name: str, n: int, steps: int, predict: bool, timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, name, str(n), str(steps)]
    cmd.append(str(int(predict)))
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"lib": lib, "n": n, "error": f"stopped after {timeout:.0f} s"}
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"lib": lib, "n": n, "error": tail[0][:200]}


def best_of_rounds(results: list[dict]) -> list[dict]:
    """One result per (library, N): all timed steps, the fastest prediction."""
    merged: dict = {}
    for r in results:
        key = (r["lib"], r["n"])
        m = merged.get(key)
        if m is None or "error" in m:
            merged[key] = dict(r)
        elif "error" not in r:
            m["times"] = m["times"] + r["times"]
            if r["predict"] is not None and r["predict"] < m["predict"]:
                m["predict"], m["mean_var_sums"] = r["predict"], r["mean_var_sums"]
            m["peak_gib"] = max(m["peak_gib"], r["peak_gib"])
    return list(merged.values())


def report_row(n: int, lib: str, results: list[dict]) -> str | None:
    """One table row; the ratios are this library's time over kernelsolve's."""
    by = {r["lib"]: r for r in results if r["n"] == n}
    r, ks = by.get(lib), by.get("kernelsolve")
    if r is None:
        return None
    if "error" in r:
        return f"| {n:,} | {lib} | - | - | - | - | - | {r['error']} |"
    t, tp = min(r["times"]), r["predict"]
    ratios = ["-", "-"]
    if ks and "times" in ks and lib != "kernelsolve":
        ratios[0] = f"{t / min(ks['times']):.2f}x"
        if tp is not None and ks["predict"] is not None:
            ratios[1] = f"{tp / ks['predict']:.2f}x"
    note = f"loss {r['losses'][0]:.5g}"
    if tp is not None:
        note += f", sum mean {r['mean_var_sums'][0]:.5g}, sum var {r['mean_var_sums'][1]:.5g}"
    tp_text = "-" if tp is None else f"{tp:.3g}"
    return (
        f"| {n:,} | {lib} | {t:.3g} | {tp_text} | {r['peak_gib']:.2f} | "
        f"{ratios[0]} | {ratios[1]} | {note} |"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--worker",
        nargs=5,
        metavar=("LIB", "KERNEL", "N", "STEPS", "PREDICT"),
        help=argparse.SUPPRESS,
    )
    p.add_argument("--sizes", default="2e4", help="comma-separated N (default 2e4)")
    p.add_argument("--libs", default=",".join(LIBS), help="subset of " + ",".join(LIBS))
    p.add_argument("--kernel", choices=("rbf", "matern"), default="rbf")
    p.add_argument("--steps", type=int, default=2, help="timed steps per run (default 2)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat every (library, N) run this many times, alternating; report the best",
    )
    p.add_argument("--dense-max", type=float, default=3e4, help="largest N for dense GPyTorch")
    p.add_argument(
        "--predict-max",
        type=float,
        default=5000,
        help="largest N with a timed prediction (default 5000: the variances' CG with 500 "
        "columns takes ~3 min at N = 5,000 on 2 cores for dense GPyTorch, ~16x that at 2e4)",
    )
    p.add_argument(
        "--timeout", type=float, default=3600, help="seconds per run before it is stopped"
    )
    p.add_argument("--quick", action="store_true", help="N = 3000, one step: a smoke run")
    args = p.parse_args(argv)
    if args.worker:
        lib, name, n, steps, predict = args.worker
        worker(lib, name, int(n), int(steps), bool(int(predict)))
        return 0
    from bench_reductions import import_pykeops, machine_info, print_report

    sizes = [3000] if args.quick else [int(float(s)) for s in args.sizes.split(",")]
    steps = 1 if args.quick else args.steps
    libs = [s for s in args.libs.split(",") if s]
    unknown = set(libs) - set(LIBS)
    if unknown:
        p.error(f"--libs: unknown {sorted(unknown)}; choose from {LIBS}")
    _, pk_version, pk_error = import_pykeops()
    if "keops" in libs and pk_error:
        print(f"pykeops not available ({pk_error}): skipping the keops column")
        libs.remove("keops")
    info = machine_info(pk_version)
    results = []
    for _ in range(args.rounds):  # alternating rounds: load changes hit every library
        for n in sizes:
            for lib in libs:
                if lib == "dense" and n > args.dense_max:
                    continue
                print(f"running {lib} at N = {n:,} ...", flush=True)
                r = run(lib, args.kernel, n, steps, n <= args.predict_max, args.timeout)
                print("  " + json.dumps(r), flush=True)
                results.append(r)
    results = best_of_rounds(results)
    rows = [report_row(n, lib, results) for n in sizes for lib in libs]
    cols = ["N", "library", "s / step", "s / predict", "peak GiB"]
    cols += ["step: time / kernelsolve", "predict: time / kernelsolve", "note"]
    print_report(
        f"Exact GP ({args.kernel}, ARD, D=2, Jacksboro DEM, float32): training step "
        f"(best of {steps} x {args.rounds}) and prediction (mean + variance, "
        f"{TEST_POINTS} test points, best of {args.rounds})",
        cols,
        [r for r in rows if r],
        info,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
