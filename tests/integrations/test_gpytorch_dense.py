"""GPyTorch kernels: dense blocks within the memory budget, dtype promotion,
last_dim_is_batch and pickling, each against ``gpytorch.kernels``."""

from __future__ import annotations

import io
import pickle
import warnings

# gpytorch and torch are in the test extra: a missing one fails, never skips
import gpytorch
import pytest
import torch

from kernelsolve import config
from kernelsolve.integrations import gpytorch as kg
from kernelsolve.integrations.gpytorch_operator import TORCH_FILL_PRODUCTS
from kernelsolve.linalg import dense

from .test_gpytorch import _GP as GP
from .test_gpytorch import pair as engine_pair  # noqa: E402
from .test_gpytorch import points  # noqa: E402

KERNELS = [
    ("RBFKernel", {}),
    ("MaternKernel", {"nu": 0.5}),
    ("MaternKernel", {"nu": 2.5}),
    ("RQKernel", {}),
    ("PeriodicKernel", {}),
]
IDS = [name + "".join(f"-{v}" for v in kw.values()) for name, kw in KERNELS]


def pair(name, dtype=torch.float64, **kw):
    """Our kernel and GPyTorch's with the same perturbed parameters, in ``dtype``."""
    ours, theirs = engine_pair(name, **kw)
    return ours.to(dtype), theirs.to(dtype)


@pytest.fixture
def engine_only(monkeypatch):
    """A memory budget too small for any block: every block goes to the engine."""
    monkeypatch.setattr(kg, "DENSE_MAX_ENTRIES", None)
    monkeypatch.setattr(config, "dense_memory_limit", 1)


@pytest.fixture
def budget(monkeypatch):
    monkeypatch.setattr(kg, "DENSE_MAX_ENTRIES", None)
    monkeypatch.setattr(config, "dense_memory_limit", None)


def test_dense_when_the_block_fits_the_budget(monkeypatch, budget):
    k = kg.RBFKernel(ard_num_dims=2).double()
    x = points(300, 2)
    assert not isinstance(k(x).evaluate_kernel(), kg.EngineKernelOperator)
    need = 300 * 300 * 8 * kg.DENSE_TEMPORARIES
    monkeypatch.setattr(config, "dense_memory_limit", need)
    assert not isinstance(k(x).evaluate_kernel(), kg.EngineKernelOperator)
    monkeypatch.setattr(config, "dense_memory_limit", need - 1)
    assert isinstance(k(x).evaluate_kernel(), kg.EngineKernelOperator)
    monkeypatch.setattr(kg, "DENSE_MAX_ENTRIES", 300 * 300)  # the documented override
    assert not isinstance(k(x).evaluate_kernel(), kg.EngineKernelOperator)
    monkeypatch.setattr(kg, "DENSE_MAX_ENTRIES", 0)
    assert isinstance(k(x).evaluate_kernel(), kg.EngineKernelOperator)


@pytest.mark.parametrize(("name", "kw"), KERNELS, ids=IDS)
def test_dense_and_engine_paths_agree_with_gradients(monkeypatch, budget, name, kw):
    ours, _ = pair(name, ard_num_dims=2, **kw)
    x, V = points(200, 2), points(200, 3, seed=1)
    results = []
    for limit in (None, 1):  # the budget's dense block, then the engine
        monkeypatch.setattr(config, "dense_memory_limit", limit)
        ours.zero_grad()
        K = ours(x).evaluate_kernel()
        assert isinstance(K, kg.EngineKernelOperator) == (limit == 1)
        out = (V * (K @ V)).sum()
        out.backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in ours.named_parameters()}))
    (a, ga), (b, gb) = results
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-8, atol=1e-10)


def test_operator_holds_its_block_within_the_budget(monkeypatch, budget):
    ours, theirs = pair("MaternKernel", nu=1.5, ard_num_dims=2)
    x = points(150, 2)
    V = points(150, 11, seed=2)

    def operator():
        return kg.EngineKernelOperator(
            x, x, covar_func=kg.CovarFunction(ours._engine_factors()), **ours._engine_params()
        )

    monkeypatch.setattr(config, "dense_memory_limit", 150 * 149 * 8)  # one row short
    free = operator()
    with torch.no_grad():  # as inside linear_operator's solves
        first = free._matmul(V)
    assert free.block is None
    monkeypatch.setattr(config, "dense_memory_limit", 150 * 150 * 8)
    K = operator()
    with torch.no_grad():
        for _ in range(TORCH_FILL_PRODUCTS - 1):  # matrix-free until the solve repays a fill
            K._matmul(V)
        assert K.block is None
        last = K._matmul(V)
    assert K.block is not None and K.products == TORCH_FILL_PRODUCTS
    torch.testing.assert_close(last, first, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(K.block, theirs(x).to_dense().detach(), rtol=1e-10, atol=1e-12)
    # a product that must carry the graph to the parameters does not use the block
    assert K._matmul(V).requires_grad
    wide = operator()
    with torch.no_grad():
        wide._matmul(points(150, 64, seed=3))
    assert wide.products == 2  # counted per 32 columns


def test_operator_stays_matrix_free_when_the_budget_is_small(engine_only):
    ours, _ = pair("RBFKernel")
    K = ours(points(100, 2)).evaluate_kernel()
    with torch.no_grad():
        for _ in range(dense.FILL_PRODUCTS + 1):
            K._matmul(points(100, 2))
    assert K.block is None


@pytest.mark.parametrize("dense_path", [True, False], ids=["dense", "engine"])
@pytest.mark.parametrize(("name", "kw"), KERNELS, ids=IDS)
def test_float32_module_promotes_float64_data(monkeypatch, budget, dense_path, name, kw):
    if not dense_path:
        monkeypatch.setattr(config, "dense_memory_limit", 1)
    ours, theirs = pair(name, dtype=torch.float32, ard_num_dims=2, **kw)
    x = points(120, 2)
    K = ours(x).evaluate_kernel()
    assert isinstance(K, kg.EngineKernelOperator) != dense_path
    R = theirs(x).to_dense()
    assert R.dtype == torch.float64
    V = points(120, 2, seed=4)
    out = K @ V
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, R @ V, rtol=1e-5, atol=1e-5)


def call_batch(kernel, x, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated in GPyTorch 1.14
        out = kernel(x, y, last_dim_is_batch=True, **kw)
        return out if kw.get("diag") else out.evaluate_kernel()


@pytest.mark.parametrize("dense_path", [True, False], ids=["dense", "engine"])
@pytest.mark.parametrize("ard", [None, 3], ids=["shared", "ard"])
@pytest.mark.parametrize(("name", "kw"), KERNELS, ids=IDS)
def test_last_dim_is_batch(monkeypatch, budget, dense_path, ard, name, kw):
    if not dense_path:
        monkeypatch.setattr(config, "dense_memory_limit", 1)
    ours, theirs = pair(name, **({} if ard is None else {"ard_num_dims": ard}), **kw)
    x, y = points(2, 40, 3), points(2, 30, 3, seed=5)
    K, R = call_batch(ours, x, y), call_batch(theirs, x, y).to_dense()
    assert R.shape == (2, 3, 40, 30)
    assert isinstance(K, kg.EngineKernelOperator) != dense_path
    torch.testing.assert_close(K.to_dense(), R, rtol=1e-10, atol=1e-12)
    V = points(2, 3, 30, 4, seed=6)
    torch.testing.assert_close(K @ V, R @ V, rtol=1e-10, atol=1e-12)
    d = call_batch(ours, x, x, diag=True)
    torch.testing.assert_close(d, call_batch(theirs, x, x, diag=True), rtol=1e-10, atol=1e-12)


def predict(model, xt):
    model.eval()
    with torch.no_grad(), gpytorch.settings.max_cholesky_size(0):
        p = model.likelihood(model(xt))
        return p.mean, p.variance


@pytest.mark.parametrize("dump", ["pickle", "torch", "joblib"])
def test_models_and_kernels_pickle(engine_only, dump, tmp_path):
    import joblib

    x = points(120, 2)
    y = torch.sin(6 * x).sum(-1)
    kernel = kg.MaternKernel(nu=2.5, ard_num_dims=2) * kg.RBFKernel(active_dims=[0])
    model = GP(x, y, kernel.double()).double()
    xt = points(30, 2, seed=7)
    mean, var = predict(model, xt)  # caches in the prediction strategy travel too
    if dump == "pickle":
        back = pickle.loads(pickle.dumps(model))
    elif dump == "torch":
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        back = torch.load(buf, weights_only=False)
    else:
        joblib.dump(model, tmp_path / "m.joblib")
        back = joblib.load(tmp_path / "m.joblib")
    m2, v2 = predict(back, xt)
    torch.testing.assert_close(m2, mean, rtol=0, atol=0)
    torch.testing.assert_close(v2, var, rtol=0, atol=0)
    K = model.covar_module(x).evaluate_kernel()
    K2 = pickle.loads(pickle.dumps(K))
    V = points(120, 3, seed=8)
    torch.testing.assert_close(K2 @ V, K @ V, rtol=0, atol=0)
