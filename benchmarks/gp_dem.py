"""Exact GP regression on real elevations: kernelsolve kernels vs GPyTorch SVGP, same time budget.

Data: matplotlib's Jacksboro fault DEM (``cbook.get_sample_data(
'jacksboro_fault_dem.npz')``), 344 x 403 = 138,632 elevations on a grid. Inputs
are the grid coordinates scaled to [0, 1] along the longer side (aspect kept),
the target is the elevation standardised with the training mean and standard
deviation. A random 80 / 20 split (seed 0) gives 110,906 training and 27,726
held-out points; RMSEs are reported in metres on all held-out points.

* ``exact GP (kernelsolve)``: ``ScaleKernel(MaternKernel(nu=1.5, ard))`` from
  ``kernelsolve.integrations.gpytorch``, constant mean, Gaussian likelihood.
  Warm start: ``--warm-steps`` Adam steps on a random subset of ``--warm-n``
  training points (dense GPyTorch, Cholesky). Then ``--steps`` (30) Adam steps
  on ``--n-train`` training points (default 10,000: what fits in ~10 minutes on
  the 2-core CPU; all 110,906 on a GPU), GPyTorch's default training settings,
  then the posterior mean at every held-out point.
* ``SVGP (GPyTorch)``: 1,024 inducing points (initialised at random training
  points, learned), the same kernel, minibatches of 1,024 from all 110,906
  training points, Adam (lr 0.01), trained for the exact GP's wall time.

Usage::

    python benchmarks/gp_dem.py                    # n-train 10,000 on CPU
    python benchmarks/gp_dem.py --n-train 5000 --steps 10 --quick-svgp
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def load_dem():
    from matplotlib import cbook

    z = cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"].astype(np.float64)
    rows, cols = z.shape
    scale = max(rows, cols) - 1
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    x = np.stack([c.ravel() / scale, r.ravel() / scale], axis=1)
    return x, z.ravel(), z.shape


def split(n: int, seed: int = 0):
    perm = np.random.default_rng(seed).permutation(n)
    n_test = n // 5
    return perm[n_test:], perm[:n_test]


def make_exact_model(x, y, kernel_cls):
    import gpytorch

    class ExactGP(gpytorch.models.ExactGP):
        def __init__(self):
            super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood())
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(kernel_cls(nu=1.5, ard_num_dims=2))

        def forward(self, z):
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(z), self.covar_module(z)
            )

    return ExactGP()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_exact(model, x, y, steps: int, lr: float, label: str):
    import gpytorch
    import torch

    model.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for k in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = -mll(model(x), y)
        loss.backward()
        opt.step()
        if k == 0 or (k + 1) % 5 == 0 or k == steps - 1:
            dt = time.perf_counter() - t0
            log(f"{label} step {k + 1}/{steps}: loss {loss.item():.4f} ({dt:.1f} s)")


def run_exact(x_tr, y_tr, x_te, args):
    import gpytorch
    import torch

    from kernelsolve.integrations import gpytorch as kg

    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    warm = rng.choice(len(x_tr), size=min(args.warm_n, len(x_tr)), replace=False)
    xw, yw = torch.as_tensor(x_tr[warm]), torch.as_tensor(y_tr[warm])
    dense = make_exact_model(xw, yw, gpytorch.kernels.MaternKernel).double()
    dense.covar_module.base_kernel.lengthscale = 0.05
    dense.likelihood.noise = 0.01
    with gpytorch.settings.max_cholesky_size(10**5):
        train_exact(dense, xw, yw, args.warm_steps, 0.1, f"warm start (N={len(warm):,}, dense)")

    sub = rng.choice(len(x_tr), size=min(args.n_train, len(x_tr)), replace=False)
    xs = torch.as_tensor(x_tr[sub], dtype=torch.float32, device=args.device)
    ys = torch.as_tensor(y_tr[sub], dtype=torch.float32, device=args.device)
    model = make_exact_model(xs, ys, kg.MaternKernel).to(args.device)
    model.load_state_dict({k: v.float() for k, v in dense.state_dict().items()}, strict=False)
    train_exact(model, xs, ys, args.steps, 0.05, f"exact GP (N={len(sub):,}, kernelsolve)")
    model.eval()
    xt = torch.as_tensor(x_te, dtype=torch.float32, device=args.device)
    with torch.no_grad(), gpytorch.settings.skip_posterior_variances():
        mean = model(xt).mean.double().cpu().numpy()
    return mean, time.perf_counter() - t0, len(sub)


def run_svgp(x_tr, y_tr, x_te, budget: float, args):
    import gpytorch
    import torch

    class SVGP(gpytorch.models.ApproximateGP):
        def __init__(self, inducing):
            dist = gpytorch.variational.CholeskyVariationalDistribution(inducing.shape[0])
            strategy = gpytorch.variational.VariationalStrategy(
                self, inducing, dist, learn_inducing_locations=True
            )
            super().__init__(strategy)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.MaternKernel(nu=1.5, ard_num_dims=2)
            )

        def forward(self, z):
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(z), self.covar_module(z)
            )

    torch.manual_seed(0)
    x = torch.as_tensor(x_tr, dtype=torch.float32, device=args.device)
    y = torch.as_tensor(y_tr, dtype=torch.float32, device=args.device)
    inducing = x[torch.randperm(len(x), device=args.device)[: args.inducing]].clone()
    model = SVGP(inducing).to(args.device)
    model.covar_module.base_kernel.lengthscale = 0.05
    likelihood = gpytorch.likelihoods.GaussianLikelihood().to(args.device)
    mll = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=len(y))
    opt = torch.optim.Adam(list(model.parameters()) + list(likelihood.parameters()), lr=0.01)
    model.train()
    likelihood.train()
    t0 = time.perf_counter()
    epochs = steps = 0
    while time.perf_counter() - t0 < budget:
        for idx in torch.randperm(len(y), device=args.device).split(1024):
            opt.zero_grad()
            loss = -mll(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            steps += 1
            if time.perf_counter() - t0 >= budget:
                break
        epochs += 1
        log(
            f"SVGP epoch {epochs}: loss {loss.item():.4f}, {steps} steps, "
            f"{time.perf_counter() - t0:.0f} / {budget:.0f} s"
        )
    model.eval()
    xt = torch.as_tensor(x_te, dtype=torch.float32, device=args.device)
    with torch.no_grad():
        mean = torch.cat([model(c).mean for c in xt.split(8192)]).double().cpu().numpy()
    return mean, time.perf_counter() - t0, steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warm-n", type=int, default=1500)
    p.add_argument("--warm-steps", type=int, default=40)
    p.add_argument("--inducing", type=int, default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--svgp-budget",
        type=float,
        default=None,
        help="seconds for SVGP (default: the exact GP's wall time)",
    )
    args = p.parse_args(argv)
    from bench_reductions import machine_info, machine_lines

    info = machine_info(None)
    x, z, shape = load_dem()
    tr, te = split(len(z))
    mu, sd = z[tr].mean(), z[tr].std()
    y = (z - mu) / sd
    log(
        f"DEM {shape[0]} x {shape[1]} = {len(z):,} points; train {len(tr):,}, held out {len(te):,}"
    )

    rows = []
    mean, seconds, n_used = run_exact(x[tr], y[tr], x[te], args)
    rmse = float(np.sqrt(np.mean((mean - y[te]) ** 2)) * sd)
    rows.append(("exact GP (kernelsolve, Matern-3/2)", n_used, seconds, rmse))
    log(f"exact GP: RMSE {rmse:.2f} m in {seconds:.0f} s")

    budget = args.svgp_budget if args.svgp_budget is not None else seconds
    mean, seconds, steps = run_svgp(x[tr], y[tr], x[te], budget, args)
    rmse = float(np.sqrt(np.mean((mean - y[te]) ** 2)) * sd)
    rows.append(
        (f"SVGP (GPyTorch, {args.inducing} inducing, {steps} steps)", len(tr), seconds, rmse)
    )
    log(f"SVGP: RMSE {rmse:.2f} m in {seconds:.0f} s")

    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(f"\n## Exact GP vs SVGP on the Jacksboro DEM ({len(te):,} held-out points)\n")
    print("| method | training points | wall time (s) | held-out RMSE (m) |")
    print("|---|---|---|---|")
    for name, n, s, r in rows:
        print(f"| {name} | {n:,} | {s:.0f} | {r:.2f} |")
    print(f"\n(elevation std {sd:.1f} m: predicting the mean gives RMSE {sd:.1f} m)\n")
    print("\n".join(machine_lines(info)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
