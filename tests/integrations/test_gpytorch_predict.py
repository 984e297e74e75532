"""GPyTorch predictions by one Cholesky factor where it pays
(``EnginePredictionStrategy``), and the kernel blocks' flushed subnormals."""

from __future__ import annotations

# gpytorch and torch are in the test extra: a missing one fails, never skips
import gpytorch
import pytest
import torch

from kernelsolve import config
from kernelsolve.integrations import gpytorch as kg
from kernelsolve.integrations.gpytorch_operator import flush_subnormals
from kernelsolve.integrations.gpytorch_predict import direct_pays

from .test_gpytorch import _GP as GP
from .test_gpytorch import points


def model_on(n: int, base=None, dtype=torch.float64, seed=0):
    x = points(n, 2, seed=seed).to(dtype)
    noise = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=dtype)
    y = torch.sin(6 * x).sum(-1) + 0.05 * noise
    model = GP(x, y, base if base is not None else kg.RBFKernel(ard_num_dims=2)).to(dtype)
    model.covar_module.base_kernel.lengthscale = torch.tensor([0.15, 0.3])
    model.covar_module.outputscale = 1.3
    model.likelihood.noise = 0.01
    return model.eval(), x, y


def exact_posterior(model, x, y, xt):
    """Mean and variance (with the noise) by dense float64 linear algebra."""
    with torch.no_grad():
        k = model.covar_module
        noise = model.likelihood.noise.double()
        K = k(x.double()).to_dense() + noise * torch.eye(len(x), dtype=torch.float64)
        Ks = k(xt.double(), x.double()).to_dense()
        L = torch.linalg.cholesky(K)
        r = (y.double() - model.mean_module.constant.double()).unsqueeze(-1)
        mean = model.mean_module.constant.double() + (Ks @ torch.cholesky_solve(r, L))[:, 0]
        prior = k(xt.double(), diag=True)
        var = prior - (Ks * torch.cholesky_solve(Ks.T, L).T).sum(-1) + noise
    return mean, var


def predict(model, xt):
    with torch.no_grad():
        pred = model.likelihood(model(xt))
        return pred.mean, pred.variance


def test_direct_pays_by_flops_and_memory(monkeypatch):
    monkeypatch.setattr(config, "dense_memory_limit", None)
    assert direct_pays(5000, 500)
    assert not direct_pays(5000, 1)  # one column: CG's products are cheaper
    assert not direct_pays(3000, 50)  # 3000 >= 6 * 10 * 50
    monkeypatch.setattr(config, "dense_memory_limit", 5000 * 5000 * 8 - 1)
    assert not direct_pays(5000, 500)  # the factor does not fit the budget


def test_many_test_points_use_one_factor_and_are_exact():
    model, x, y = model_on(1200)
    xt = points(300, 2, seed=3)
    mean, var = predict(model, xt)
    strategy = model.prediction_strategy
    assert type(strategy).__name__ == "EnginePredictionStrategy"
    assert strategy._factor is not None and strategy._factor.dtype == torch.float64
    ref_mean, ref_var = exact_posterior(model, x, y, xt)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(var, ref_var, rtol=1e-8, atol=1e-10)
    # a later prediction reuses the factor, also for a single point
    factor = strategy._factor
    mean1, var1 = predict(model, xt[:1])
    assert model.prediction_strategy._factor is factor
    torch.testing.assert_close(mean1, ref_mean[:1], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(var1, ref_var[:1], rtol=1e-8, atol=1e-10)


def test_float32_model_variances_from_the_float64_factor():
    model, x, y = model_on(1000, dtype=torch.float32)
    xt = points(300, 2, seed=4).float()
    mean, var = predict(model, xt)
    assert mean.dtype == var.dtype == torch.float32
    assert model.prediction_strategy._factor.dtype == torch.float64
    ref_mean, ref_var = exact_posterior(model, x, y, xt)
    # the float32 kernel values bound the agreement, not the solve
    assert ((mean.double() - ref_mean).abs().max() / ref_mean.abs().max()).item() < 1e-4
    assert ((var.double() - ref_var).abs() / ref_var).max().item() < 1e-3


@pytest.mark.parametrize(
    "setting",
    [gpytorch.settings.fast_pred_var, gpytorch.settings.skip_posterior_variances],
    ids=["fast_pred_var", "skip_posterior_variances"],
)
def test_gpytorch_settings_keep_gpytorch_code(setting):
    """LOVE and skipped variances are GPyTorch's own paths: no factor, the same
    results as ``gpytorch.kernels.RBFKernel`` under the same setting."""
    model, x, y = model_on(1000)
    ref_model, _, _ = model_on(1000, base=gpytorch.kernels.RBFKernel(ard_num_dims=2))
    xt = points(300, 2, seed=5)
    with setting(), gpytorch.settings.max_cholesky_size(0):
        ours = predict(model, xt)
        theirs = predict(ref_model, xt)
    assert model.prediction_strategy._factor is None
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-6, atol=1e-6)


def test_few_test_points_keep_gpytorch_cg():
    """Where CG is cheaper (10 test points at n = 1,200) GPyTorch's CG runs:
    no factor, and the results are GPyTorch's to its CG tolerance."""
    model, x, y = model_on(1200)
    xt = points(10, 2, seed=6)
    with gpytorch.settings.max_cholesky_size(0), gpytorch.settings.eval_cg_tolerance(1e-4):
        mean, var = predict(model, xt)
    assert model.prediction_strategy._factor is None
    ref_mean, ref_var = exact_posterior(model, x, y, xt)
    # CG's relative residual 1e-4 bounds the errors only up to the condition
    # number (variances off by up to 1.1e-4 on AMD Zen 5, less on a Xeon)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(var, ref_var, rtol=1e-3, atol=1e-3)


def test_training_mode_after_prediction_drops_the_factor():
    model, x, y = model_on(1000)
    predict(model, points(300, 2, seed=7))
    assert model.prediction_strategy._factor is not None
    model.train()
    assert model.prediction_strategy is None  # GPyTorch clears its caches
    model.covar_module.outputscale = 2.0
    model.eval()
    xt = points(300, 2, seed=8)
    mean, var = predict(model, xt)
    ref_mean, ref_var = exact_posterior(model, x, y, xt)
    torch.testing.assert_close(var, ref_var, rtol=1e-8, atol=1e-10)


def test_flush_subnormals_values_and_gradient():
    tiny = torch.finfo(torch.float32).tiny
    t = torch.tensor([1.0, tiny / 4, -tiny / 8, tiny, 0.0, float("nan")], requires_grad=True)
    out = flush_subnormals(t * 1.0)
    assert out[:5].tolist() == [1.0, 0.0, 0.0, tiny, 0.0] and out[5].isnan()
    out[:5].sum().backward()
    assert t.grad[:5].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    with torch.no_grad():  # in place where there is no graph
        u = torch.tensor([tiny / 2, 2.0])
        assert flush_subnormals(u) is u and u.tolist() == [0.0, 2.0]


def test_dense_blocks_hold_no_subnormals_and_match_gpytorch(monkeypatch):
    """A short lengthscale in float32: GPyTorch's block has subnormal values
    (x86 BLAS products slow down ~5x on them), ours holds 0 there and equals
    GPyTorch's everywhere else, gradients included."""
    monkeypatch.setattr(kg, "DENSE_MAX_ENTRIES", None)
    monkeypatch.setattr(config, "dense_memory_limit", None)
    ours, theirs = kg.RBFKernel(), gpytorch.kernels.RBFKernel()
    for k in (ours, theirs):
        k.lengthscale = 0.06
    x = points(400, 2).float()
    a, b = ours(x).to_dense(), theirs(x).to_dense()
    tiny = torch.finfo(torch.float32).tiny
    assert ((b > 0) & (b < tiny)).any()
    assert not ((a > 0) & (a < tiny)).any()
    keep = b >= tiny
    assert torch.equal(a[keep], b[keep]) and (a[~keep] == 0).all()
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(ours.raw_lengthscale.grad, theirs.raw_lengthscale.grad)


@pytest.mark.parametrize("engine", [False, True], ids=["dense-block", "engine-operator"])
def test_factor_from_row_chunks(monkeypatch, engine):
    """The factor's matrix is evaluated in row chunks (here 40 rows), from a dense
    block or from an EngineKernelOperator: the same exact predictions."""
    from kernelsolve.integrations import gpytorch_predict

    monkeypatch.setattr(gpytorch_predict, "CHUNK_ENTRIES", 600 * 40)
    if engine:
        monkeypatch.setattr(kg, "DENSE_MAX_ENTRIES", 0)
    model, x, y = model_on(600)
    xt = points(300, 2, seed=9)
    mean, var = predict(model, xt)
    assert model.prediction_strategy._factor is not None
    ref_mean, ref_var = exact_posterior(model, x, y, xt)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(var, ref_var, rtol=1e-8, atol=1e-10)


def test_many_test_points_keep_the_covariance_lazy():
    """4,000 test points: the variances come from the factor without forming the
    4,000 x 4,000 test covariance (GPyTorch's lazy sum), and are exact."""
    model, x, y = model_on(800)
    xt = points(4000, 2, seed=10)
    with torch.no_grad():
        pred = model(xt)
        covar = pred.lazy_covariance_matrix
        var = pred.variance
    assert model.prediction_strategy._factor is not None
    assert not torch.is_tensor(covar) and type(covar).__name__ != "DenseLinearOperator"
    _, ref_var = exact_posterior(model, x, y, xt)
    torch.testing.assert_close(var + model.likelihood.noise, ref_var, rtol=1e-8, atol=1e-10)
