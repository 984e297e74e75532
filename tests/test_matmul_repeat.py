"""``K @ v`` called again on the same LazyTensor reuses the product's plan.

The fast path of ``LazyTensor.__matmul__`` keeps the plan of the first call on
K and rebuilds the leaves itself. These tests check that every repeated call
gives the dense answer and that the kept plan is never used where it no longer
fits: another shape, dtype or library, gradients, another default backend, a
cleared kernel cache, a v that is one of K's own arrays.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import kernelsolve
from kernelsolve import Vi, Vj
from kernelsolve.engine import cache, dispatch

try:
    import torch
except ImportError:  # pragma: no cover - torch is in the test extra
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed (the test extra)")


def dense(x, y):
    return np.exp(-((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))


@pytest.fixture
def points():
    rng = np.random.default_rng(0)
    return rng.random((30, 3)), rng.random((40, 3))


def count_plans(monkeypatch):
    """Count dispatch.plan calls (the slow path looks the plan up)."""
    calls = {"n": 0}
    original = dispatch.plan

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(dispatch, "plan", counting)
    return calls


def test_repeated_products_match_dense_and_skip_the_lookup(points, monkeypatch):
    x, y = points
    K = (-Vi(x).sqdist(Vj(y))).exp()
    D = dense(x, y)
    calls = count_plans(monkeypatch)
    rng = np.random.default_rng(1)
    for shape in [(40,), (40,), (40, 2), (40, 2), (40, 2), (40,)]:
        v = rng.random(shape)
        np.testing.assert_allclose(K @ v, D @ v, rtol=1e-12)
    # one lookup per change of shape: (40,), (40, 2), (40,) again
    assert calls["n"] == 3


def test_other_dtype_and_strides(points):
    x, y = points
    K = (-Vi(x).sqdist(Vj(y))).exp()
    D = dense(x, y)
    v = np.random.default_rng(2).random((2, 40))
    np.testing.assert_allclose(K @ v.T, D @ v.T, rtol=1e-12)  # non-contiguous
    np.testing.assert_allclose(K @ np.ascontiguousarray(v.T), D @ v.T, rtol=1e-12)
    with pytest.raises(TypeError, match="mix float64 and float32"):
        K @ v.T.astype(np.float32)


def test_backend_change_and_cleared_cache(points, monkeypatch, tmp_path):
    x, y = points
    K = (-Vi(x).sqdist(Vj(y))).exp()
    D = dense(x, y)
    v = np.random.default_rng(3).random((40, 1))
    K @ v
    monkeypatch.setattr(kernelsolve.config, "backend", "reference")
    seen = []
    reference = dispatch.reference.reduce

    def spy(*args, **kwargs):
        seen.append(1)
        return reference(*args, **kwargs)

    monkeypatch.setattr(dispatch.reference, "reduce", spy)
    np.testing.assert_allclose(K @ v, D @ v, rtol=1e-12)
    assert seen, "the kept plan ignored config.backend = 'reference'"
    monkeypatch.undo()
    # never clear the real kernel cache from a test: a private directory
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "kernel-cache"))
    assert cache.cache_dir() == tmp_path / "kernel-cache"
    kernelsolve.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(K @ v, D @ v, rtol=1e-12)


def test_v_bound_in_k(points):
    x, y = points
    K = (-Vi(x).sqdist(Vj(y))).exp()
    D = dense(x, y)
    for _ in range(2):  # y is K's own j-array: the join merges it, nothing is kept
        np.testing.assert_allclose(K @ y, D @ y, rtol=1e-12)


@needs_torch
def test_torch_gradients_after_kept_plan(points):
    x, y = (torch.tensor(a) for a in points)
    K = (-Vi(x).sqdist(Vj(y))).exp()
    D = torch.tensor(dense(*points))
    v = torch.rand(40, 2, dtype=torch.float64)
    torch.testing.assert_close(K @ v, D @ v)
    torch.testing.assert_close(K @ v, D @ v)  # the kept plan
    w = v.clone().requires_grad_(True)
    (K @ w).sum().backward()  # needs a graph: not the kept plan
    torch.testing.assert_close(w.grad, D.sum(0)[:, None].expand(40, 2))
    with torch.no_grad():
        torch.testing.assert_close(K @ w, D @ v)
    with pytest.raises(TypeError, match="cannot mix torch and numpy"):
        K @ v.numpy()  # the kept plan is for torch tensors
