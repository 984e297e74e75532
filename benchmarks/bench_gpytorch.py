"""Exact GP training steps: kernelsolve vs gpytorch.kernels.keops vs dense GPyTorch, one run.

One training step = ``loss = -mll(model(x), y); loss.backward(); optimizer.step()``
for an ExactGP with a constant mean and ``ScaleKernel(kernel)`` (kernel: RBF or
Matern-5/2 with ARD lengthscales), Gaussian likelihood, GPyTorch's default
training settings (CG + stochastic Lanczos quadrature, pivoted-Cholesky
preconditioner of rank 15, 10 probe vectors: every product is with ~11 columns).
Data: x uniform in [0, 1]^3, y = sin(2 pi x_1) cos(2 pi x_2) + x_3 + 0.1 noise,
float32; hyperparameters start at lengthscale 0.2, outputscale 1, noise 0.01
(a trained model's regime, where CG needs dozens of iterations).

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
    python benchmarks/bench_gpytorch.py                         # step at N = 2e4, all libraries
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


def make_data(n: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g)
    y = (
        torch.sin(2 * torch.pi * x[:, 0]) * torch.cos(2 * torch.pi * x[:, 1])
        + x[:, 2]
        + 0.1 * torch.randn(n, generator=g)
    )
    return x, y


def make_kernel(lib: str, name: str):
    import gpytorch

    if lib == "kernelsolve":
        from kernelsolve.integrations import gpytorch as module
    elif lib == "keops":
        from gpytorch.kernels import keops as module
    else:
        module = gpytorch.kernels
    if name == "rbf":
        return module.RBFKernel(ard_num_dims=3)
    return module.MaternKernel(nu=2.5, ard_num_dims=3)


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
    model.likelihood.noise = 0.01
    return model


def train_steps(lib: str, name: str, n: int, steps: int) -> list[float]:
    import gpytorch
    import torch

    x, y = make_data(n)
    model = make_model(lib, name, x, y)
    model.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    times, losses = [], []
    # GPyTorch's default settings: N > max_cholesky_size (800) trains with CG + Lanczos
    if True:
        for _ in range(steps):
            torch.manual_seed(1)  # the same probe vectors for every library
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = -mll(model(x), y)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
            losses.append(float(loss))
    return times, losses


def worker(lib: str, name: str, n: int, steps: int) -> None:
    """One (library, N) measurement; prints a JSON line."""
    import torch

    torch.manual_seed(0)
    warm, _ = train_steps(lib, name, 2000, 1)
    times, losses = train_steps(lib, name, n, steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(
        json.dumps(
            {
                "lib": lib,
                "n": n,
                "times": times,
                "losses": losses,
                "warmup": warm[0],
                "peak_gib": peak,
            }
        )
    )


def run(lib: str, name: str, n: int, steps: int, timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, name, str(n), str(steps)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"lib": lib, "n": n, "error": f"stopped after {timeout:.0f} s"}
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"lib": lib, "n": n, "error": tail[0][:200]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--worker", nargs=4, metavar=("LIB", "KERNEL", "N", "STEPS"), help=argparse.SUPPRESS
    )
    p.add_argument("--sizes", default="2e4", help="comma-separated N (default 2e4)")
    p.add_argument("--libs", default=",".join(LIBS), help="subset of " + ",".join(LIBS))
    p.add_argument("--kernel", choices=("rbf", "matern"), default="rbf")
    p.add_argument("--steps", type=int, default=2, help="timed steps per run (default 2)")
    p.add_argument("--dense-max", type=float, default=3e4, help="largest N for dense GPyTorch")
    p.add_argument(
        "--timeout", type=float, default=3600, help="seconds per run before it is stopped"
    )
    p.add_argument("--quick", action="store_true", help="N = 3000, one step: a smoke run")
    args = p.parse_args(argv)
    if args.worker:
        lib, name, n, steps = args.worker
        worker(lib, name, int(n), int(steps))
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
    for n in sizes:
        for lib in libs:
            if lib == "dense" and n > args.dense_max:
                continue
            print(f"running {lib} at N = {n:,} ...", flush=True)
            r = run(lib, args.kernel, n, steps, args.timeout)
            print("  " + json.dumps(r), flush=True)
            results.append(r)
    rows = []
    for n in sizes:
        by = {r["lib"]: r for r in results if r["n"] == n}
        ks = by.get("kernelsolve")
        ks_t = min(ks["times"]) if ks and "times" in ks else None
        for lib in libs:
            r = by.get(lib)
            if r is None:
                continue
            if "error" in r:
                rows.append(f"| {n:,} | {lib} | - | - | - | {r['error']} |")
                continue
            t = min(r["times"])
            ratio = f"{t / ks_t:.2f}x" if ks_t and lib != "kernelsolve" else "-"
            rows.append(
                f"| {n:,} | {lib} | {t:.3g} | {r['peak_gib']:.2f} | {ratio} | "
                f"loss {r['losses'][0]:.5g} |"
            )
    cols = ["N", "library", "s / step", "peak GiB", "time / kernelsolve", "note"]
    print_report(
        f"Exact GP training step ({args.kernel}, D=3, float32, {steps} timed step(s))",
        cols,
        rows,
        info,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
