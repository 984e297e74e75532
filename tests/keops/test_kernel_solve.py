"""KernelSolve against a dense solve, in NumPy and torch (values and gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kernelsolve.keops.numpy import KernelSolve
from kernelsolve.keops.torch.operations import KernelSolve as TorchKernelSolve

rng = np.random.default_rng(5)
n, D, E = 40, 2, 3
x, b = rng.random((n, D)), rng.standard_normal((n, E))
g, alpha = np.array([4.0]), 0.1
ALIASES = ["x = Vi(2)", "y = Vj(2)", "b = Vj(3)", "g = Pm(1)"]


def _gram(x, g):
    return np.exp(-g[0] * ((x[:, None] - x[None]) ** 2).sum(-1))


@pytest.mark.parametrize(
    "formula,scale",
    [
        ("Exp(-g * SqDist(x, y)) * b", 1.0),
        ("b * Exp(-g * SqDist(x, y))", 1.0),
        ("-(2 * Exp(-g * SqDist(x, y)) * b / g) * IntCst(-1)", 0.5),
        (
            "Exp(-g * SqDist(x, y)) * b + b * Exp(-g * SqDist(x, y))"
            " - b * 0.5 * Exp(-g*SqDist(x,y))",
            1.5,
        ),
    ],
)
def test_numpy_matches_dense_solve(formula, scale):
    a = KernelSolve(formula, ALIASES, "b", axis=1)(x, x, b, g, alpha=alpha)
    want = np.linalg.solve(alpha * np.eye(n) + scale * _gram(x, g), b)
    np.testing.assert_allclose(a, want, rtol=1e-8, atol=1e-8)


def test_axis_0_with_the_unknown_indexed_by_i():
    aliases = ["x = Vi(2)", "y = Vj(2)", "b = Vi(3)", "g = Pm(1)"]
    a = KernelSolve("Exp(-g * SqDist(x, y)) * b", aliases, "b", axis=0)(x, x, b, g, alpha=alpha)
    np.testing.assert_allclose(a, np.linalg.solve(alpha * np.eye(n) + _gram(x, g), b), rtol=1e-8)


def test_torch_values_and_gradients():
    xt = torch.tensor(x, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    at = torch.tensor([alpha], requires_grad=True)
    gt = torch.tensor(g)
    Kinv = TorchKernelSolve("Exp(-g * SqDist(x, y)) * b", ALIASES, "b", axis=1)
    a = Kinv(xt, xt, bt, gt, alpha=at)
    dense = at * torch.eye(n, dtype=xt.dtype) + torch.exp(
        -gt * ((xt[:, None] - xt[None]) ** 2).sum(-1)
    )
    want = torch.linalg.solve(dense, bt)
    torch.testing.assert_close(a, want, rtol=1e-8, atol=1e-8)
    e = torch.randn_like(want)
    got = torch.autograd.grad(a, (xt, bt, at), e)
    ref = torch.autograd.grad(want, (xt, bt, at), e)
    for u, r in zip(got, ref):
        torch.testing.assert_close(u, r, rtol=1e-6, atol=1e-8)


def test_var_syntax_for_the_unknown():
    Kinv = KernelSolve("Exp(-g * SqDist(x, y)) * b", ALIASES, "Var(2,3,1)", axis=1)
    assert Kinv.varinvpos == 2


@pytest.mark.parametrize(
    "formula,varinv,axis,error,words",
    [
        ("Exp(-g * SqDist(x, y)) * b + 1", "b", 1, ValueError, "K\\(x, y\\)"),
        ("Exp(-g * SqDist(x, y)) * b * b", "b", 1, ValueError, "K\\(x, y\\)"),
        ("Exp(-g * SqDist(x, y)) / b", "b", 1, ValueError, "K\\(x, y\\)"),
        ("Exp(-SqDist(x, y) * b)", "b", 1, ValueError, "K\\(x, y\\)"),
        ("Exp(-g * SqDist(x, y)) * b", "c", 1, ValueError, "not an alias"),
        ("Exp(-g * SqDist(x, y)) * b", "b", 0, ValueError, "must be a Vi"),
        ("Exp(-g * SqDist(x, y)) * b", "b", 2, ValueError, "axis must be"),
    ],
)
def test_bad_arguments(formula, varinv, axis, error, words):
    with pytest.raises(error, match=words):
        KernelSolve(formula, ALIASES, varinv, axis=axis)


def test_ranges_and_argument_count():
    Kinv = KernelSolve("Exp(-g * SqDist(x, y)) * b", ALIASES, "b", axis=1)
    with pytest.raises(ValueError, match="expected 4 arrays"):
        Kinv(x, x, b)
    with pytest.raises(NotImplementedError, match="ranges"):
        Kinv(x, x, b, g, ranges=(1, 2, 3, 4, 5, 6))
