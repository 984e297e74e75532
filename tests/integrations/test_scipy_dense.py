"""The scipy adapter's dense block: counted products, the memory budget, pickling."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
from scipy.sparse.linalg import cg

from kernelsolve import Vi, Vj, config
from kernelsolve.integrations.scipy import aslinearoperator
from kernelsolve.linalg import dense


def gauss(x, y):
    return (-Vi(x).sqdist(Vj(y)) * 10.0).exp()


def reference(x, y):
    return np.exp(-10.0 * ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))


def points(n, seed=0):
    return np.random.default_rng(seed).random((n, 2))


def test_block_after_fill_products_then_blas():
    x, y = points(120), points(90, seed=1)
    A = aslinearoperator(gauss(x, y))
    v = np.random.default_rng(2).random(90)
    for k in range(1, dense.FILL_PRODUCTS):
        A @ v
        assert A.block is None and A.products == k
    out = A @ v  # the FILL_PRODUCTS-th product fills the block and uses it
    assert A.block is not None and A.block.shape == (120, 90)
    np.testing.assert_allclose(A.block, reference(x, y), rtol=1e-12)
    np.testing.assert_allclose(out, reference(x, y) @ v, rtol=1e-12)
    w = np.random.default_rng(3).random(120)
    np.testing.assert_allclose(A.rmatvec(w), reference(x, y).T @ w, rtol=1e-12)
    np.testing.assert_allclose(A.H @ w, reference(x, y).T @ w, rtol=1e-12)


def test_small_budget_and_none_stay_matrix_free(monkeypatch):
    x = points(100)
    monkeypatch.setattr(config, "dense_memory_limit", 8 * 100 * 99)  # one row short
    A = aslinearoperator(gauss(x, x), alpha=0.1)
    for _ in range(dense.FILL_PRODUCTS + 2):
        A @ np.ones(100)
    assert A.block is None and not A.materialize()
    monkeypatch.setattr(config, "dense_memory_limit", None)
    B = aslinearoperator(gauss(x, x), alpha=0.1, materialize=None)
    for _ in range(dense.FILL_PRODUCTS + 2):
        B @ np.ones(100)
    assert B.block is None and not B.materialize()


def test_materialize_up_front_and_true():
    x = points(80)
    A = aslinearoperator(gauss(x, x), materialize=False)
    assert not A.materialize(products=1)  # too few products to repay it
    assert A.materialize(products=100) and A.products == 0
    B = aslinearoperator(gauss(x, x), materialize=True)
    B @ np.ones(80)
    assert B.block is not None
    with pytest.raises(ValueError, match="materialize"):
        aslinearoperator(gauss(x, x), materialize="sometimes")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cg_dense_and_matrix_free_agree(dtype):
    x = points(300).astype(dtype)
    b = np.random.default_rng(4).random(300).astype(dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    A = aslinearoperator(gauss(x, x), alpha=0.1)
    a, info = cg(A, b, rtol=rtol)
    F = aslinearoperator(gauss(x, x), alpha=0.1, materialize=None)
    f, _ = cg(F, b, rtol=rtol)
    assert info == 0 and A.block is not None and A.block.dtype == dtype
    tol = 1e-3 if dtype == np.float32 else 1e-8
    np.testing.assert_allclose(a, f, rtol=tol, atol=tol)


@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_pickle_round_trip(dump, tmp_path):
    x = points(60)
    A = aslinearoperator(gauss(x, x), alpha=0.2)
    v = np.random.default_rng(5).random((60, 3))
    before = A @ v
    for _ in range(dense.FILL_PRODUCTS):
        A @ v  # the block is held and travels with the state
    assert A.block is not None
    if dump == "pickle":
        B = pickle.loads(pickle.dumps(A))
    else:
        joblib.dump(A, tmp_path / "A.joblib")
        B = joblib.load(tmp_path / "A.joblib")
    np.testing.assert_array_equal(B @ v, A @ v)
    C = pickle.loads(pickle.dumps(aslinearoperator(gauss(x, x), alpha=0.2)))
    np.testing.assert_array_equal(C @ v, before)
