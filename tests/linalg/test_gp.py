"""kernelsolve.linalg.gp: the Matern GP of the demo, checked against dense NumPy.

(The posterior-mean and likelihood tests moved here from tests/test_cli.py with
the code they test, kernelsolve.demo -> kernelsolve.linalg.gp.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kernelsolve.linalg import gp

torch = pytest.importorskip("torch", reason="the GP's fit needs torch (test extra)")

CLOSED = {
    0.5: lambda r: np.exp(-r),
    1.5: lambda r: (1 + math.sqrt(3) * r) * np.exp(-math.sqrt(3) * r),
    2.5: lambda r: (1 + math.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-math.sqrt(5) * r),
}


def test_gp_posterior_mean_matches_dense_numpy():
    rng = np.random.default_rng(0)
    X = rng.random((400, 2))
    y = np.sin(5 * X[:, 0]) * np.cos(3 * X[:, 1]) + 0.05 * rng.standard_normal(400)
    Xq = rng.random((50, 2))
    h = dict(lengthscale=0.2, outputscale=0.8, noise=1e-2, mean=0.1)
    mu, info = gp.gp_posterior_mean(
        torch.tensor(X), torch.tensor(y), torch.tensor(Xq), h, rank=100, rtol=1e-10
    )

    def k(A, B):
        r = math.sqrt(3) * np.linalg.norm(A[:, None] - B[None], axis=-1) / h["lengthscale"]
        return h["outputscale"] * (1 + r) * np.exp(-r)

    a = np.linalg.solve(k(X, X) + h["noise"] * np.eye(400), y - h["mean"])
    dense = k(Xq, X) @ a + h["mean"]
    assert info.converged
    np.testing.assert_allclose(mu.numpy(), dense, rtol=0, atol=1e-7)


@pytest.mark.parametrize("nu", [0.5, 2.5])
def test_posterior_mean_other_smoothness_and_numpy_input(nu):
    rng = np.random.default_rng(3)
    X, Xq = rng.random((300, 2)), rng.random((20, 2))
    y = np.cos(4 * X[:, 1]) + 0.05 * rng.standard_normal(300)
    h = dict(lengthscale=0.3, outputscale=1.5, noise=2e-2, mean=-0.2)
    mu, info = gp.gp_posterior_mean(X, y, Xq, h, nu=nu, rank=50, rtol=1e-10)
    assert isinstance(mu, np.ndarray) and info.converged
    r = np.linalg.norm(X[:, None] - X[None], axis=-1) / 0.3
    rq = np.linalg.norm(Xq[:, None] - X[None], axis=-1) / 0.3
    a = np.linalg.solve(1.5 * CLOSED[nu](r) + 2e-2 * np.eye(300), y + 0.2)
    np.testing.assert_allclose(mu, 1.5 * CLOSED[nu](rq) @ a - 0.2, rtol=0, atol=1e-7)


def _nll(X, y, h):
    r = math.sqrt(3) * np.linalg.norm(X[:, None] - X[None], axis=-1) / h["lengthscale"]
    K = h["outputscale"] * (1 + r) * np.exp(-r) + h["noise"] * np.eye(len(y))
    L = np.linalg.cholesky(K)
    a = np.linalg.solve(K, y - h["mean"])
    return 0.5 * (y - h["mean"]) @ a + np.log(np.diag(L)).sum()


def test_gp_hyperparameters_maximise_the_likelihood():
    rng = np.random.default_rng(1)
    X = rng.random((300, 2))
    y = np.sin(6 * X[:, 0]) + X[:, 1] + 0.1 * rng.standard_normal(300)
    y = (y - y.mean()) / y.std()
    h = gp.fit_gp_hyperparameters(X, y)
    best = _nll(X, y, h)
    # an independent NumPy likelihood: every 5 % move of one parameter is worse
    for key in ("lengthscale", "outputscale", "noise"):
        for f in (0.95, 1.05):
            assert _nll(X, y, {**h, key: h[key] * f}) > best - 1e-6, key
    for dm in (-0.05, 0.05):
        assert _nll(X, y, {**h, "mean": h["mean"] + dm}) > best - 1e-6


def test_likelihood_gradient_equals_autograd_through_cholesky():
    """The fit's gradient (K^-1 - a a^T) / (2n) equals torch's autograd of the loss."""
    rng = np.random.default_rng(2)
    X = torch.tensor(rng.random((120, 2)))
    r = torch.tensor(rng.standard_normal(120))
    w = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    D = torch.cdist(X, X)
    K = (1 + D / w) * torch.exp(-D / w) + 0.05 * torch.eye(120, dtype=torch.float64)
    loss, dK, dmean = gp._nll_and_gradient(K, r, 120)
    (ours,) = torch.autograd.grad(K, w, grad_outputs=dK, retain_graph=True)
    L = torch.linalg.cholesky(K)
    a = torch.cholesky_solve(r[:, None], L)
    ref = (0.5 * (r[:, None] * a).sum() + L.diagonal().log().sum()) / 120
    (expected,) = torch.autograd.grad(ref, w)
    assert float(loss) == pytest.approx(float(ref.detach()), rel=1e-12)
    assert float(ours) == pytest.approx(float(expected), rel=1e-9)
    m = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    a_m = torch.cholesky_solve((r - m)[:, None], L)
    (expected_m,) = torch.autograd.grad(0.5 * ((r - m)[:, None] * a_m).sum() / 120, m)
    assert float(dmean) == pytest.approx(float(expected_m), rel=1e-9)


@pytest.mark.parametrize("nu", [0.5, 1.5, 2.5])
def test_matern_operator_is_the_kernel_matrix(nu):
    X = np.random.default_rng(4).random((200, 3))
    K = gp.matern_operator(X, 0.4, nu)
    r = np.linalg.norm(X[:, None] - X[None], axis=-1) / 0.4
    v = np.random.default_rng(5).random((200, 2))
    np.testing.assert_allclose(K @ v, CLOSED[nu](r) @ v, rtol=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda X: gp.matern_operator(X, 0.0), "lengthscale"),
        (lambda X: gp.matern_operator(X, 0.5, nu=1.0), "nu="),
        (lambda X: gp.gp_posterior_mean(X, X[:, 0], X, {"lengthscale": 1.0}), "missing"),
        (
            lambda X: gp.gp_posterior_mean(
                X, X[:, 0], X, dict(lengthscale=1, outputscale=1, noise=-1, mean=0)
            ),
            "noise",
        ),
        (lambda X: gp.fit_gp_hyperparameters(X, X[:5, 0]), "X must have shape"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.random.default_rng(0).random((20, 2)))
