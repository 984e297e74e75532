"""kernelsolve.keops.numpy.utils: the dense helpers pykeops' tests compare with."""

from __future__ import annotations

import numpy as np
import pytest

from kernelsolve.keops.numpy import utils

rng = np.random.default_rng(7)
x, y = rng.random((6, 3)), rng.random((4, 3))
R2 = ((x[:, None] - y[None]) ** 2).sum(-1)  # brute force


def test_distances_and_differences():
    np.testing.assert_allclose(utils.squared_distances(x, y), R2, atol=1e-14)
    d = utils.differences(x, y)
    assert d.shape == (3, 6, 4)
    np.testing.assert_allclose(d[1, 2, 3], x[2, 1] - y[3, 1])


@pytest.mark.parametrize(
    "kernel,k",
    [
        ("gaussian", lambda r2, s: np.exp(-r2 / s**2)),
        ("laplacian", lambda r2, s: np.exp(-np.sqrt(r2) / s)),
        ("cauchy", lambda r2, s: 1 / (1 + r2 / s**2)),
        ("inverse_multiquadric", lambda r2, s: 1 / np.sqrt(1 + r2 / s**2)),
    ],
)
def test_kernels_their_logs_and_derivatives(kernel, k):
    s = 0.7
    np.testing.assert_allclose(utils.np_kernel(x, y, s, kernel), k(R2, s), rtol=1e-12)
    np.testing.assert_allclose(utils.log_np_kernel(x, y, s, kernel), np.log(k(R2, s)), rtol=1e-12)
    h = 1e-6  # the derivative with respect to r^2, by central differences
    fd = (k(R2 + h, s) - k(R2 - h, s)) / (2 * h)
    np.testing.assert_allclose(utils.grad_np_kernel(x, y, s, kernel), fd, rtol=1e-5)


def test_sphere_kernels():
    a, c = x / np.linalg.norm(x, axis=1)[:, None], y / np.linalg.norm(y, axis=1)[:, None]
    p = a @ c.T
    np.testing.assert_allclose(utils.np_kernel_sphere(a, c, 0.5, "binet"), p**2)
    np.testing.assert_allclose(utils.np_kernel_sphere(a, c, 0.5, "linear"), p)
    np.testing.assert_allclose(
        utils.np_kernel_sphere(a, c, 0.5, "gaussian_oriented"), np.exp((2 * p - 2) / 0.25)
    )
    np.testing.assert_allclose(
        utils.np_kernel_sphere(a, c, 0.5, "gaussian_unoriented"), np.exp((2 * p * p - 2) / 0.25)
    )


def test_log_sum_exp_is_stable():
    m = np.array([[1000.0, 1000.0, -np.inf], [0.0, np.log(3.0), -5.0]])
    out = utils.log_sum_exp(m, axis=1)
    np.testing.assert_allclose(out, [1000 + np.log(2), np.log(4 + np.exp(-5.0))])
    np.testing.assert_allclose(utils.log_sum_exp(m.T, axis=0), out)


def test_unknown_kernel_is_an_error():
    with pytest.raises(ValueError, match="kernel='gauss'"):
        utils.np_kernel(x, y, 1.0, "gauss")


def test_chain_rules_is_the_gradient_of_the_gaussian_form():
    s = 0.8
    q, p = rng.random((6, 2)), rng.random((4, 2))
    Aa = utils.grad_np_kernel(x, y, s, "gaussian")
    got = utils.chain_rules(q, x, y, Aa, p)
    assert got.dtype == np.float32

    def energy(xx):
        return np.sum(q * (utils.np_kernel(xx, y, s, "gaussian") @ p))

    h, fd = 1e-6, np.zeros_like(x)
    for i in range(x.shape[0]):
        for d in range(x.shape[1]):
            e = np.zeros_like(x)
            e[i, d] = h
            fd[i, d] = (energy(x + e) - energy(x - e)) / (2 * h)
    np.testing.assert_allclose(got, fd, rtol=1e-4, atol=1e-6)
    utils.WarmUpGpu()  # no GPU here: returns at once
