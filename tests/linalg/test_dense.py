"""The dense-block cost model and the engine's dense fill."""

import numpy as np
import pytest

from kernelsolve import LazyTensor, config
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
