"""GPyTorch kernels on the engine vs GPyTorch's own dense kernels.

Every engine quantity (products with many columns, diagonals, single
entries, the analytic bilinear derivative, exact-GP losses, gradients and
predictions) is compared with the same quantity from ``gpytorch.kernels``
evaluated densely by torch.
"""

from __future__ import annotations

import pytest

gpytorch = pytest.importorskip("gpytorch", reason="gpytorch not installed (pip extra 'gpytorch')")
torch = pytest.importorskip("torch", reason="torch not installed (test extra)")

from kernelsolve.integrations import gpytorch as kg  # noqa: E402


@pytest.fixture(autouse=True)
def engine_above_800_squared(monkeypatch):
    """These tests compare the engine operator with GPyTorch: blocks above 800 x 800
    entries go to the engine whatever the memory budget (test_gpytorch_dense.py
    tests the budget)."""
    monkeypatch.setattr(kg, "DENSE_MAX_ENTRIES", 800 * 800)


# (engine class, gpytorch class, constructor kwargs)
KERNELS = [
    ("RBFKernel", {}),
    ("MaternKernel", {"nu": 0.5}),
    ("MaternKernel", {"nu": 1.5}),
    ("MaternKernel", {"nu": 2.5}),
    ("RQKernel", {}),
    ("PeriodicKernel", {}),
]
IDS = [name + "".join(f"-{v}" for v in kw.values()) for name, kw in KERNELS]


def pair(name: str, seed: int = 0, **kw):
    """An engine kernel and the GPyTorch kernel with the same (perturbed) parameters."""
    engine = getattr(kg, name)(**kw).double()
    dense = getattr(gpytorch.kernels, name)(**kw).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in engine.parameters():
            p.add_(0.4 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    dense.load_state_dict(engine.state_dict())
    return engine, dense


def points(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def grads(module) -> dict:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def assert_grads_close(a: dict, b: dict, rtol: float = 1e-9):
    assert a.keys() == b.keys() and a
    for name in a:
        scale = b[name].abs().max().clamp_min(1e-12)
        assert ((a[name] - b[name]).abs().max() / scale).item() < rtol, name


@pytest.mark.parametrize(("name", "kw"), KERNELS, ids=IDS)
def test_operator_matches_dense_kernel(name, kw):
    """Products (11 columns), diagonal, entries and to_dense vs gpytorch, ARD, N = 900."""
    engine, dense = pair(name, ard_num_dims=3, **kw)
    x = points(900, 3)
    K = engine(x).evaluate_kernel()
    assert isinstance(K, kg.EngineKernelOperator)
    R = dense(x).to_dense()
    V = points(900, 11, seed=1)
    assert torch.allclose(K @ V, R @ V, rtol=1e-9, atol=1e-9)
    assert torch.allclose(K @ V[:, 0], R @ V[:, 0], rtol=1e-9, atol=1e-9)
    assert torch.allclose(K.diagonal(dim1=-1, dim2=-2), R.diagonal(), atol=1e-7)
    rows = torch.tensor([3, 17, 899])
    assert torch.allclose(K[rows].to_dense(), R[rows], atol=1e-7)
    assert torch.allclose(K.to_dense(), R, atol=1e-7)


@pytest.mark.parametrize(("name", "kw"), KERNELS, ids=IDS)
def test_bilinear_derivative_matches_autograd(name, kw):
    """d/dtheta sum_c u_c^T K v_c from engine reductions vs torch autograd of the dense K."""
    engine, dense = pair(name, ard_num_dims=3, **kw)
    x = points(900, 3)
    U, V = points(900, 5, seed=2), points(900, 5, seed=3)
    (U * (engine(x) @ V)).sum().backward()
    (U * (dense(x).to_dense() @ V)).sum().backward()
    assert_grads_close(grads(engine), grads(dense))


def test_rectangular_block_and_input_gradients():
    """Test x train block (M != N), gradients w.r.t. both point sets and the parameters."""
    engine, dense = pair("MaternKernel", nu=2.5, ard_num_dims=2)
    x1 = points(300, 2, seed=4).requires_grad_()
    x2 = points(2500, 2, seed=5).requires_grad_()
    V = points(2500, 3, seed=6)
    out = engine(x1, x2) @ V
    assert out.shape == (300, 3)
    g = torch.autograd.grad((out**2).sum(), [x1, x2, engine.raw_lengthscale])
    ref_out = dense(x1, x2).to_dense() @ V
    ref = torch.autograd.grad((ref_out**2).sum(), [x1, x2, dense.raw_lengthscale])
    assert torch.allclose(out, ref_out, rtol=1e-9, atol=1e-10)
    for a, b in zip(g, ref):
        assert torch.allclose(a, b, rtol=1e-7, atol=1e-9)


def test_symmetric_input_gradient():
    """Gradient w.r.t. the training inputs themselves (x1 is x2), as in deep kernel learning."""
    engine, dense = pair("RBFKernel", ard_num_dims=3)
    x = points(900, 3, seed=7).requires_grad_()
    U, V = points(900, 2, seed=8), points(900, 2, seed=9)
    (gx,) = torch.autograd.grad((U * (engine(x) @ V)).sum(), [x])
    (rx,) = torch.autograd.grad((U * (dense(x).to_dense() @ V)).sum(), [x])
    assert torch.allclose(gx, rx, rtol=1e-8, atol=1e-10)


def test_batch_kernels_and_broadcast_inputs():
    """batch_shape=(2,) kernels on shared (N, D) inputs and on (2, N, D) inputs."""
    engine, dense = pair("RQKernel", batch_shape=torch.Size([2]), ard_num_dims=3)
    for x in (points(1000, 3, seed=10), points(2, 1000, 3, seed=11)):
        K = engine(x)
        R = dense(x).to_dense()
        assert K.shape == R.shape == (2, 1000, 1000)
        V = points(2, 1000, 4, seed=12)
        assert torch.allclose(K @ V, R @ V, rtol=1e-9, atol=1e-9)
        engine.zero_grad()
        dense.zero_grad()
        (V * (K @ V)).sum().backward()
        (V * (R @ V)).sum().backward()
        assert_grads_close(grads(engine), grads(dense))


def test_active_dims_and_fused_product():
    """k1(dims 0, 1) * k2(dim 2) is one engine operator equal to GPyTorch's dense product."""
    e1, d1 = pair("RBFKernel", ard_num_dims=2, active_dims=(0, 1))
    e2, d2 = pair("PeriodicKernel", seed=1, active_dims=(2,))
    prod = e1 * e2
    assert isinstance(prod, kg.ProductKernel)
    x = points(1000, 3, seed=13)
    K = prod(x).evaluate_kernel()
    assert isinstance(K, kg.EngineKernelOperator)
    R = d1(x).to_dense() * d2(x).to_dense()
    V = points(1000, 3, seed=14)
    assert torch.allclose(K @ V, R @ V, rtol=1e-9, atol=1e-9)
    (V * (K @ V)).sum().backward()
    (V * (R @ V)).sum().backward()
    assert_grads_close(grads(e1), grads(d1))
    assert_grads_close(grads(e2), grads(d2))


def test_scale_and_sum_kernels():
    """ScaleKernel and a sum of kernels around engine kernels vs the dense kernels."""
    e1, d1 = pair("MaternKernel", nu=1.5)
    e2, d2 = pair("RBFKernel", seed=3)
    ek = gpytorch.kernels.ScaleKernel(e1) + e2
    dk = gpytorch.kernels.ScaleKernel(d1) + d2
    dk.kernels[0].raw_outputscale.data.copy_(ek.kernels[0].raw_outputscale.data)
    x = points(1000, 3, seed=15)
    V = points(1000, 2, seed=16)
    a, b = ek(x) @ V, dk(x).to_dense() @ V
    assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)
    (a**2).sum().backward()
    (b**2).sum().backward()
    assert_grads_close(grads(ek), grads(dk))


def test_small_blocks_are_dense_and_threshold_is_respected(monkeypatch):
    """Blocks up to DENSE_MAX_ENTRIES entries are torch tensors; 0 routes all to the engine."""
    engine, dense = pair("RBFKernel")
    x = points(50, 3, seed=17)
    small = engine(x).evaluate_kernel()
    assert not isinstance(small, kg.EngineKernelOperator)
    assert torch.allclose(small.to_dense(), dense(x).to_dense(), atol=1e-12)
    monkeypatch.setattr(kg, "DENSE_MAX_ENTRIES", 0)
    K = engine(x).evaluate_kernel()
    assert isinstance(K, kg.EngineKernelOperator)
    assert torch.allclose(K.to_dense(), dense(x).to_dense(), atol=1e-12)


def test_mixed_products_fall_back():
    engine, _ = pair("RBFKernel")
    mixed = engine * gpytorch.kernels.LinearKernel()
    assert not isinstance(mixed, kg.ProductKernel)
    with pytest.raises(TypeError, match="engine kernel"):
        kg.ProductKernel(engine, gpytorch.kernels.LinearKernel())


# ---------------------------------------------------------------------------
# Exact GP regression, N = 2000, D = 3, float64, CG on both sides
# ---------------------------------------------------------------------------


class _GP(gpytorch.models.ExactGP):
    def __init__(self, x, y, base):
        super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood())
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(base)

    def forward(self, z):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(z), self.covar_module(z))


def _tight():
    """CG / Lanczos settings tight enough that both sides are converged."""
    return (
        gpytorch.settings.max_cholesky_size(0),
        gpytorch.settings.cg_tolerance(1e-3),
        gpytorch.settings.eval_cg_tolerance(1e-5),
        gpytorch.settings.max_cg_iterations(1000),
        gpytorch.settings.num_trace_samples(16),
        gpytorch.settings.max_lanczos_quadrature_iterations(100),
    )


def _exact_gp_run(base, x, y, xt):
    model = _GP(x, y, base).double()
    model.covar_module.base_kernel.lengthscale = 0.2
    model.likelihood.noise = 0.1
    model.mean_module.constant.data.fill_(0.1)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    settings = _tight()
    for s in settings:
        s.__enter__()
    try:
        torch.manual_seed(2)  # the same Lanczos probe vectors on both sides
        loss = -mll(model(x), y)
        loss.backward()
        model.eval()
        with torch.no_grad():
            pred = model.likelihood(model(xt))
            mean, var = pred.mean, pred.variance
        model.prediction_strategy = None
        with torch.no_grad(), gpytorch.settings.fast_pred_var():
            fvar = model.likelihood(model(xt)).variance
    finally:
        for s in reversed(settings):
            s.__exit__(None, None, None)
    return float(loss), grads(model), mean, var, fvar


@pytest.fixture(scope="module")
def exact_gp_results():
    x = points(2000, 3, seed=20)
    y = torch.sin(6 * x).sum(-1) + 0.1 * points(2000, seed=21)
    # exact variances solve one system per test point: keep the test set small, and
    # route even its small blocks through the engine
    xt = points(64, 3, seed=22)
    saved, kg.DENSE_MAX_ENTRIES = kg.DENSE_MAX_ENTRIES, 0
    try:
        engine = _exact_gp_run(kg.MaternKernel(nu=2.5, ard_num_dims=3), x, y, xt)
    finally:
        kg.DENSE_MAX_ENTRIES = saved
    dense = _exact_gp_run(gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=3), x, y, xt)
    return engine, dense


def test_exact_gp_loss_and_hyperparameter_gradients(exact_gp_results):
    (loss, g, *_), (ref_loss, ref_g, *_) = exact_gp_results
    assert abs(loss - ref_loss) <= 1e-3 * abs(ref_loss)
    assert (
        set(g)
        == set(ref_g)
        == {
            "likelihood.noise_covar.raw_noise",
            "mean_module.raw_constant",
            "covar_module.raw_outputscale",
            "covar_module.base_kernel.raw_lengthscale",
        }
    )
    for name in g:
        err = (g[name] - ref_g[name]).abs().max() / ref_g[name].abs().max()
        assert err.item() <= 1e-3, name


def test_exact_gp_predictions(exact_gp_results):
    (*_, mean, var, fvar), (*_, ref_mean, ref_var, ref_fvar) = exact_gp_results
    for a, b in ((mean, ref_mean), (var, ref_var), (fvar, ref_fvar)):
        assert ((a - b).abs().max() / b.abs().max()).item() <= 1e-3
    assert (var > 0).all()


def test_float32_training_step_runs_on_the_engine():
    """A float32 training step: finite loss and gradients on the engine path."""
    x = torch.rand(1500, 2, generator=torch.Generator().manual_seed(30))
    y = torch.sin(5 * x).sum(-1)
    model = _GP(x, y, kg.RBFKernel(ard_num_dims=2))
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    with gpytorch.settings.max_cholesky_size(0):
        loss = -mll(model(x), y)
        loss.backward()
    assert torch.isfinite(loss)
    g = grads(model)
    assert all(torch.isfinite(v).all() for v in g.values()) and len(g) == 4


class _BatchGP(gpytorch.models.ExactGP):
    def __init__(self, x, y, base):
        batch = torch.Size([2])
        super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood(batch_shape=batch))
        self.mean_module = gpytorch.means.ConstantMean(batch_shape=batch)
        self.covar_module = gpytorch.kernels.ScaleKernel(base, batch_shape=batch)

    def forward(self, z):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(z), self.covar_module(z))


def test_batch_exact_gp_loss_and_gradients():
    """Two independent GPs (batch_shape=(2,)) at N = 1000: loss and gradients vs dense."""
    x = points(2, 1000, 2, seed=40)
    y = torch.sin(5 * x).sum(-1)
    results = []
    for cls in (kg.RBFKernel, gpytorch.kernels.RBFKernel):
        model = _BatchGP(x, y, cls(batch_shape=torch.Size([2]), ard_num_dims=2)).double()
        model.covar_module.base_kernel.lengthscale = torch.tensor([[[0.2, 0.3]], [[0.4, 0.25]]])
        model.likelihood.noise = torch.tensor([[0.1], [0.2]])
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        settings = _tight()
        for s in settings:
            s.__enter__()
        try:
            torch.manual_seed(3)
            loss = -mll(model(x), y).sum()
            loss.backward()
        finally:
            for s in reversed(settings):
                s.__exit__(None, None, None)
        results.append((float(loss), grads(model)))
    (loss, g), (ref_loss, ref_g) = results
    assert abs(loss - ref_loss) <= 1e-3 * abs(ref_loss)
    assert g.keys() == ref_g.keys() and len(g) == 4
    for name in g:
        err = (g[name] - ref_g[name]).abs().max() / ref_g[name].abs().max()
        assert err.item() <= 1e-3, name
