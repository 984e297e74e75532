"""The dense-block cost model and the engine's dense fill."""

import numpy as np
import pytest
import torch  # test extra

from kernelsolve import LazyTensor, Pm, Vi, Vj, config
from kernelsolve.engine import ir
from kernelsolve.linalg import dense
from kernelsolve.linalg.operator import KernelOperator


def gaussian():
    s = ir.make("sqdist", ir.var(0, ir.I, 3), ir.var(1, ir.J, 3))
    return ir.make("exp", ir.make("neg", s))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_matrix_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    x, y = rng.random((37, 3)).astype(dtype), rng.random((23, 3)).astype(dtype)
    K = dense.kernel_matrix(gaussian(), x, y)
    ref = np.exp(-((x[:, None].astype(np.float64) - y[None]) ** 2).sum(-1))
    assert K.shape == (37, 23) and K.dtype == dtype
    np.testing.assert_allclose(K, ref, rtol=1e-6 if dtype == np.float32 else 1e-13)


def test_operator_dense_equals_products():
    x = np.random.default_rng(1).random((50, 2))
    xi, xj = LazyTensor(x[:, None, :]), LazyTensor(x[None, :, :])
    op = KernelOperator.from_lazy((-xi.sqdist(xj)).exp())
    D = op.dense()
    v = np.random.default_rng(2).random((50, 3))
    np.testing.assert_allclose(D @ v, op.matmat(v), rtol=1e-12)
    np.testing.assert_allclose(np.diag(D), op.diagonal(), rtol=1e-14)


def test_budget_follows_config(monkeypatch):
    monkeypatch.setattr(config, "dense_memory_limit", 8 * 100 * 100)
    assert dense.memory_budget() == 80000
    assert dense.dense_pays(100, 100, 8, products=1000)
    assert not dense.dense_pays(101, 100, 8, products=1000)
    assert not dense.dense_pays(10, 10, 8, products=1)  # too few products to repay it
    monkeypatch.setattr(config, "dense_memory_limit", None)
    monkeypatch.setattr(config, "dense_memory_fraction", 0.5)
    assert 0 < dense.memory_budget() <= dense.available_memory()


def test_kernel_matrix_refuses_vector_formula():
    f = ir.make("sub", ir.var(0, ir.I, 3), ir.var(1, ir.J, 3))
    with pytest.raises(ValueError, match="scalar"):
        dense.kernel_matrix(f, np.zeros((2, 3)), np.zeros((2, 3)))


def gaussian_operator(n=60, seed=1, lib="numpy", materialize=False, requires_grad=False):
    x = np.random.default_rng(seed).random((n, 3))
    if lib == "torch":
        import torch

        x = torch.tensor(x, requires_grad=requires_grad)
    return KernelOperator(gaussian(), (x, x), (ir.I, ir.J), materialize=materialize), x


def test_materialize_when_it_pays_and_not_when_the_budget_is_small(monkeypatch):
    op, _ = gaussian_operator()
    v = np.random.default_rng(3).random((60, 2))
    free = op.matmat(v)
    assert not op.materialize(products=dense.FILL_PRODUCTS - 1)  # does not repay it
    monkeypatch.setattr(config, "dense_memory_limit", 8 * 60 * 59)  # one row short
    assert not op.materialize(products=1000) and op.block is None
    monkeypatch.setattr(config, "dense_memory_limit", 8 * 60 * 60)
    assert op.materialize(products=1000) and op.block is not None
    np.testing.assert_allclose(op.matmat(v), free, rtol=1e-12)
    np.testing.assert_allclose(op.diagonal(), np.ones(60), rtol=1e-14)
    np.testing.assert_allclose(op.columns([4, 7]), op.block[:, [4, 7]])
    never, _ = gaussian_operator(materialize=None)
    assert not never.materialize(products=1000)


def test_auto_switches_after_fill_products():
    op, _ = gaussian_operator(materialize="auto")
    v = np.random.default_rng(4).random(60)
    free = op.matmat(v)
    for _ in range(dense.FILL_PRODUCTS - 2):
        op.matmat(v)
    assert op.block is None
    np.testing.assert_allclose(op.matmat(v), free, rtol=1e-12)  # the FILL_PRODUCTS-th
    assert op.block is not None and op.products == dense.FILL_PRODUCTS
    with pytest.raises(ValueError, match="materialize"):
        gaussian_operator(materialize="yes")


def test_block_keeps_gradients_and_is_not_used_without_its_graph():
    v = torch.rand(60, 2, dtype=torch.float64)
    op, x = gaussian_operator(lib="torch", requires_grad=True)
    (g_free,) = torch.autograd.grad((op.matmat(v) ** 2).sum(), x)
    assert op.materialize(products=1000)
    (g_dense,) = torch.autograd.grad((op.matmat(v) ** 2).sum(), x)
    torch.testing.assert_close(g_dense, g_free, rtol=1e-10, atol=1e-12)
    # a block built without the graph (as inside a solve's forward) is bypassed
    op2, x2 = gaussian_operator(lib="torch", requires_grad=True)
    with torch.no_grad():
        assert op2.materialize(products=1000)
    (g_bypass,) = torch.autograd.grad((op2.matmat(v) ** 2).sum(), x2)
    torch.testing.assert_close(g_bypass, g_free, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("held", [False, True])
def test_operator_pickles(held, tmp_path):
    import pickle

    import joblib

    op, _ = gaussian_operator(materialize="auto")
    if held:
        op.materialize()
    v = np.random.default_rng(5).random((60, 2))
    back = pickle.loads(pickle.dumps(op))
    np.testing.assert_array_equal(back.matmat(v), op.matmat(v))
    joblib.dump(op, tmp_path / "op.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "op.joblib").matmat(v), op.matmat(v))


def test_block_of_lazytensor_leaves():
    rng = np.random.default_rng(6)
    x, y, s = rng.random((7, 2)), rng.random((5, 2)), np.array([3.0])
    K = (-Vi(x).sqdist(Vj(y)) * Pm(s)).exp()
    B = dense.block(K.formula, K.variables, K.cats)
    ref = np.exp(-3.0 * ((x[:, None] - y[None]) ** 2).sum(-1))
    np.testing.assert_allclose(B, ref, rtol=1e-13)


def test_block_keeps_infinities_where_they_are():
    """The fill multiplies by the identity's rows; an infinite entry (log of a zero
    distance) must not spread NaN to the other columns of its block."""
    x = np.random.default_rng(3).random((40, 2))
    f = ir.make("log", ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2)))
    K = dense.kernel_matrix(f, x, x)
    with np.errstate(divide="ignore"):
        ref = np.log(((x[:, None] - x[None]) ** 2).sum(-1))
    assert np.all(np.isneginf(np.diag(K)))
    off = ~np.eye(40, dtype=bool)
    np.testing.assert_allclose(K[off], ref[off], rtol=1e-12)


@pytest.mark.parametrize("m", [1, 31, 32, 33, 70])
def test_block_any_number_of_columns(m):
    """Column counts around the fill's block size (padding of the last block)."""
    rng = np.random.default_rng(m)
    x, y = rng.random((9, 3)), rng.random((m, 3))
    K = dense.kernel_matrix(gaussian(), x, y)
    np.testing.assert_allclose(K, np.exp(-((x[:, None] - y[None]) ** 2).sum(-1)), rtol=1e-13)


def test_block_gradient_matches_torch():
    x = torch.tensor(np.random.default_rng(4).random((45, 3)), requires_grad=True)
    dense.kernel_matrix(gaussian(), x, x).pow(2).sum().backward()
    g = x.grad.clone()
    x.grad = None
    torch.exp(-((x[:, None] - x[None]) ** 2).sum(-1)).pow(2).sum().backward()
    torch.testing.assert_close(g, x.grad, rtol=1e-10, atol=1e-12)


def test_cuda_budget_reads_the_device(monkeypatch):
    """A CUDA block is measured against the GPU's free memory, not the host's."""
    monkeypatch.setattr(config, "dense_memory_limit", None)
    monkeypatch.setattr(config, "dense_memory_fraction", 0.5)
    monkeypatch.setattr(dense, "device_memory", lambda device: 1000)
    assert dense.memory_budget("cuda:0") == 500
    assert dense.memory_budget("cpu") == int(0.5 * dense.available_memory())
    monkeypatch.setattr(dense, "device_memory", lambda device: None)  # unknown: host memory
    assert dense.memory_budget("cuda:1") == int(0.5 * dense.available_memory())
