"""Models under kernelsolve.distributed.sharded(): what each process runs.

Exact GP training with GPyTorch (our kernels), the interpolators, kriging and
the scipy adapter, each computed inside ``sharded()`` and again in one
process (outside the block, in the same process: every process holds all the
data), returning what the tests assert on. Importable by spawned processes.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

import kernelsolve.distributed as ksd

from .scenarios import _difference, _gauss, _host, _same

# --- exact GP training ----------------------------------------------------------


class _Counted:
    """Counts the calls of the operator methods that must do the work."""

    names = ("_matmul", "_bilinear_derivative", "_fill")

    def __init__(self):
        from kernelsolve.integrations.gpytorch_operator import EngineKernelOperator

        self.cls, self.saved = EngineKernelOperator, {}
        self.calls = dict.fromkeys(self.names, 0)
        self.filled = []  # (lo, hi) of every dense block filled

    def __enter__(self):
        for name in self.names:
            original = self.saved[name] = getattr(self.cls, name)
            setattr(self.cls, name, self._counting(name, original))
        return self

    def _counting(self, name, original):
        def method(op, *args):
            self.calls[name] += 1
            if name == "_fill":
                self.filled.append((args[0], args[1], op.x1.shape[-2]))
            return original(op, *args)

        return method

    def __exit__(self, *exc):
        for name, original in self.saved.items():
            setattr(self.cls, name, original)
        return False


def _gp_model(x, y, kernel: str):
    import gpytorch

    from kernelsolve.integrations import gpytorch as kg

    class GP(gpytorch.models.ExactGP):
        def __init__(self):
            super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood())
            self.mean_module = gpytorch.means.ConstantMean()
            base = kg.RBFKernel() if kernel == "rbf" else kg.MaternKernel(nu=1.5)
            self.covar_module = gpytorch.kernels.ScaleKernel(base)

        def forward(self, z):
            mean, covar = self.mean_module(z), self.covar_module(z)
            return gpytorch.distributions.MultivariateNormal(mean, covar)

    model = GP().double()
    model.covar_module.base_kernel.lengthscale = 0.3
    model.likelihood.noise = 0.05
    return model


def _train(x, y, kernel: str, steps: int, probe_seed: int, cg_tolerance: float = 1e-2):
    """Losses and gradients of ``steps`` Adam steps on the iterative path."""
    import gpytorch
    import torch

    model = _gp_model(x, y, kernel)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses, grads = [], []
    tolerance = gpytorch.settings.cg_tolerance(cg_tolerance)
    with gpytorch.settings.max_cholesky_size(0), tolerance:
        for step in range(steps):
            torch.manual_seed(probe_seed + step)  # the Lanczos/CG probe vectors
            optimizer.zero_grad()
            loss = -mll(model(x), y)
            loss.backward()
            losses.append(loss.item())
            grads.append({n: p.grad.clone().numpy() for n, p in model.named_parameters()})
            optimizer.step()
    return np.array(losses), grads


def gp_training(rank, size, n=2000, kernel="rbf", steps=5, fill=False, debug=True):
    """Exact GP training on the engine operator (never GPyTorch's dense
    forward; ``fill=False`` also keeps the operator from holding a dense
    block), in one process and under ``sharded(debug=debug)``."""
    import torch

    from kernelsolve.integrations import gpytorch as kg
    from kernelsolve.integrations import gpytorch_operator as kgo

    kg.DENSE_MAX_ENTRIES = 0
    # fill=True: the block at the first product (the default waits for the 32nd,
    # which a training solve never makes), so that the held rows are exercised
    kgo.TORCH_FILL_PRODUCTS = 1 if fill else 1 << 62
    g = torch.Generator().manual_seed(40)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64)
    y = torch.sin(6 * x).sum(-1) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    with _Counted() as one_calls:
        one = _train(x, y, kernel, steps, probe_seed=7)
    with _Counted() as calls, ksd.sharded(debug=debug) as ex:
        many = _train(x, y, kernel, steps, probe_seed=7)
    return dict(
        one=one,
        many=many,
        calls=dict(calls.calls),
        filled=sorted(set(calls.filled)),
        one_calls=dict(one_calls.calls),
        counts=dict(ex.counts),
    )


def gp_default_settings(rank, size, n=2000, cg_tolerance=1e-2):
    """Default settings: one process takes GPyTorch's dense forward (the block
    fits memory), ``sharded()`` the engine operator with its rows of the block
    (above the split's ``min_pairs``). Also the predictive mean and variance.
    A measurement (the two paths agree to the CG tolerance), not run by the
    tests: ``gp_forward_choice`` checks the choice itself."""
    import gpytorch
    import torch

    g = torch.Generator().manual_seed(42)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64)
    y = torch.sin(6 * x).sum(-1) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    xt = torch.rand(300, 2, generator=g, dtype=torch.float64)

    def train_and_predict():
        losses, grads = _train(x, y, "matern", 5, 8, cg_tolerance)
        model = _gp_model(x, y, "matern")
        model.eval()
        tolerance = gpytorch.settings.eval_cg_tolerance(cg_tolerance)
        with torch.no_grad(), gpytorch.settings.max_cholesky_size(0), tolerance:
            pred = model.likelihood(model(xt))
            return losses, grads, pred.mean.numpy(), pred.variance.numpy()

    with _Counted() as one_calls:
        one = train_and_predict()
    with _Counted() as calls, ksd.sharded() as ex:
        many = train_and_predict()
    return dict(
        one=one,
        many=many,
        calls=dict(calls.calls),
        one_calls=dict(one_calls.calls),
        counts=dict(ex.counts),
    )


def gp_forward_choice(rank, size):
    """What ``forward`` returns for blocks above and below the split's
    ``min_pairs`` (1000^2 here), inside and outside ``sharded()``, with the
    default ``DENSE_MAX_ENTRIES`` (None: the memory budget)."""
    import torch

    from kernelsolve.integrations import gpytorch as kg

    kernel = kg.RBFKernel().double()
    g = torch.Generator().manual_seed(43)
    small, large = (torch.rand(n, 2, generator=g, dtype=torch.float64) for n in (900, 1100))
    kinds = {}
    for where in ("one", "sharded"):
        with ksd.sharded(min_pairs=1000**2) if where == "sharded" else nullcontext():
            for name, x in (("small", small), ("large", large)):
                kinds[where, name] = type(kernel.forward(x, x)).__name__
    return kinds


def gp_held_block_products(rank, size):
    """Products with a held block's rows (vector, matrix, batch of
    right-hand sides, a batch kernel) against one process: the largest
    difference relative to the largest value (BLAS need not add a row block's
    products in the order of the whole matrix's: gemv on AMD Zen 5 does not)."""
    import torch

    from kernelsolve.integrations import gpytorch as kg
    from kernelsolve.integrations import gpytorch_operator as kgo

    kg.DENSE_MAX_ENTRIES = 0
    kgo.TORCH_FILL_PRODUCTS = 1  # the held rows at the first product
    g = torch.Generator().manual_seed(44)
    x = torch.rand(301, 2, generator=g, dtype=torch.float64)
    rhs = {
        "vector": torch.randn(301, generator=g, dtype=torch.float64),
        "matrix": torch.randn(301, 3, generator=g, dtype=torch.float64),
        "batch of rhs": torch.randn(2, 301, 3, generator=g, dtype=torch.float64),
    }
    kernels = {"rbf": kg.RBFKernel(), "batch": kg.MaternKernel(nu=2.5, batch_shape=(2,))}
    out = {}
    for kname, kernel in kernels.items():
        kernel = kernel.double()
        for name, v in rhs.items():
            with torch.no_grad():
                one = kernel.forward(x, x)._matmul(v)
                op = kernel.forward(x, x)
                with ksd.sharded(min_pairs=0):
                    op._matmul(v)  # the first product fills the block
                    many = op._matmul(v)
            diff = float((one - many).abs().max() / one.abs().max())
            out[kname, name] = (diff, op.block_share, tuple(op.block.shape))
    return out


def gp_unseeded_probes(rank, size, n=600, fill=False):
    """A training step whose probe vectors differ across processes: with
    debug=True the first reduction that reads them raises everywhere."""
    import torch

    from kernelsolve.integrations import gpytorch as kg
    from kernelsolve.integrations import gpytorch_operator as kgo

    kg.DENSE_MAX_ENTRIES = 0
    if not fill:
        kgo.TORCH_FILL_PRODUCTS = 1 << 62
    g = torch.Generator().manual_seed(41)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64)
    y = torch.sin(6 * x).sum(-1)
    with ksd.sharded(min_pairs=0, debug=True, timeout=60):
        _train(x, y, "rbf", 1, probe_seed=100 + rank)
    return "finished"


# --- interpolators, kriging, scipy ---------------------------------------------


def _interpolator(kernel, n, solver, epsilon=None):
    from kernelsolve.linalg.interpolate import KernelInterpolator

    rng = np.random.default_rng(50)
    y = rng.random((n, 2))
    d = np.sin(5 * y[:, 0]) * y[:, 1] + 0.01 * rng.standard_normal(n)
    x = np.random.default_rng(51).random((1501, 2))

    def case():
        f = KernelInterpolator(y, d, kernel=kernel, epsilon=epsilon, solver=solver)
        return f.solver, (f(x),)

    return case


def _kriging(kind, model, params, n, solver, targets):
    from kernelsolve.linalg.kriging import OrdinaryKriging, UniversalKriging

    rng = np.random.default_rng(52)
    x, y = rng.random(n), rng.random(n)
    z = np.sin(4 * x) + np.cos(3 * y) + 0.05 * rng.standard_normal(n)
    t = np.random.default_rng(53).random((2, targets))

    def case():
        if kind == "ordinary":
            k = OrdinaryKriging(x, y, z, model, params, solver=solver, seed=3)
        else:
            k = UniversalKriging(
                x, y, z, model, params, drift_terms=["regional_linear"], solver=solver
            )
        values, variances = k.execute("points", t[0], t[1])
        return k.solver, (np.asarray(values), np.asarray(variances))

    return case


def _scipy_cg(materialize):
    from scipy.sparse.linalg import cg

    from kernelsolve.integrations.scipy import aslinearoperator

    rng = np.random.default_rng(54)
    x, b = rng.random((1200, 2)), rng.standard_normal(1200)

    def case():
        A = aslinearoperator(_gauss(x, x, 20.0), alpha=1e-2, materialize=materialize)
        a, status = cg(A, b, rtol=1e-10, maxiter=500)
        return f"status {status}, {A.products} products", (a, A.matvec(b), A.rmatvec(b))

    return case


def model_cases():
    """(name, function of nothing -> (how it ran, arrays)) for the models."""
    gauss = {"sill": 1.0, "range": 0.4, "nugget": 0.05}
    return [
        ("interpolator tps gmres", _interpolator("thin_plate_spline", 2000, "iterative")),
        ("interpolator gaussian direct", _interpolator("gaussian", 400, "direct", 3.0)),
        ("ordinary kriging direct", _kriging("ordinary", "exponential", None, 400, "direct", 700)),
        ("ordinary kriging cg", _kriging("ordinary", "gaussian", gauss, 1000, "cg", 24)),
        ("universal kriging direct", _kriging("universal", "spherical", None, 300, "direct", 700)),
        ("aslinearoperator engine", _scipy_cg(None)),
        ("aslinearoperator auto", _scipy_cg("auto")),
    ]


def models(rank, size, names=None, split_axis="auto"):
    """Every model case inside ``sharded(min_pairs=0)`` against one process:
    (name, how it ran in one process and sharded, bit for bit, largest
    relative difference, split counts)."""
    report = []
    for name, f in model_cases():
        if names is not None and name not in names:
            continue
        how, one = f()
        with ksd.sharded(min_pairs=0, split_axis=split_axis) as ex:
            how_many, many = f()
        one, many = _host(one), _host(many)
        same, diff = _same(one, many), _difference(one, many)
        report.append((name, (how, how_many), same, diff, dict(ex.counts)))
    return report
