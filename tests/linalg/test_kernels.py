"""The kernels of kernelsolve.linalg.kernels: each definition gives the same values in
every math namespace (engine, NumPy, torch, LazyTensor), and those values are the
closed forms written out independently here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kernelsolve import Vi, Vj, autograd
from kernelsolve.engine import ir
from kernelsolve.engine.request import ReductionRequest
from kernelsolve.linalg import kernels

R = np.linspace(0.0, 3.0, 31)
SQ3, SQ5 = math.sqrt(3.0), math.sqrt(5.0)

# kernel name -> (function of s, closed form of r = sqrt(s))
CLOSED_FORMS = {
    "gaussian": (kernels.gaussian, lambda r: np.exp(-(r**2))),
    "exponential": (kernels.exponential, lambda r: np.exp(-r)),
    "matern32": (kernels.matern32, lambda r: (1 + SQ3 * r) * np.exp(-SQ3 * r)),
    "matern52": (
        kernels.matern52,
        lambda r: (1 + SQ5 * r + 5 * r**2 / 3) * np.exp(-SQ5 * r),
    ),
    "linear": (kernels.linear, lambda r: -r),
    "thin_plate_spline": (
        kernels.thin_plate_spline,
        lambda r: np.where(r > 0, r**2 * np.log(np.where(r > 0, r, 1.0)), 0.0),
    ),
    "cubic": (kernels.cubic, lambda r: r**3),
    "quintic": (kernels.quintic, lambda r: -(r**5)),
    "multiquadric": (kernels.multiquadric, lambda r: -np.sqrt(1 + r**2)),
    "inverse_multiquadric": (kernels.inverse_multiquadric, lambda r: 1 / np.sqrt(1 + r**2)),
    "inverse_quadratic": (kernels.inverse_quadratic, lambda r: 1 / (1 + r**2)),
    "spherical": (kernels.spherical, lambda r: np.where(r < 1, 1.5 * r - 0.5 * r**3, 1.0)),
    "rational_quadratic": (
        lambda m, s: kernels.rational_quadratic(m, s, 2.5),
        lambda r: (1 + r**2 / 5.0) ** -2.5,
    ),
}


def engine_values(kernel, r: np.ndarray, differentiable: bool = False) -> np.ndarray:
    """``kernel(s)`` by the engine at ``s = r^2`` (1-D points r against the origin)."""
    s = ir.make("sqdist", ir.var(0, ir.I, 1), ir.var(1, ir.J, 1))
    f = kernels.engine_formula(kernel, s, differentiable=differentiable)
    out = autograd.reduce(
        ReductionRequest(
            ir.make("mul", f, ir.var(2, ir.J, 1)),
            "sum",
            (r[:, None], np.zeros((1, 1)), np.ones((1, 1))),
            (ir.I, ir.J, ir.J),
        )
    )
    return out[:, 0]


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_numpy_and_engine_match_the_closed_form(name):
    kernel, closed = CLOSED_FORMS[name]
    ref = closed(R)
    np.testing.assert_allclose(kernel(kernels.NUMPY, R**2), ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(engine_values(kernel, R), ref, rtol=1e-12, atol=1e-14)


def test_the_registries_name_the_definitions():
    assert set(kernels.RADIAL_BASIS_FUNCTIONS) == {
        "linear",
        "thin_plate_spline",
        "cubic",
        "quintic",
        "multiquadric",
        "inverse_multiquadric",
        "inverse_quadratic",
        "gaussian",
    }
    assert kernels.MATERN == {
        0.5: kernels.exponential,
        1.5: kernels.matern32,
        2.5: kernels.matern52,
    }
    # variogram shapes vanish at the origin and are 1 - covariance for bounded models
    zero = np.zeros(1)
    for name, g in kernels.VARIOGRAM_SHAPES.items():
        assert g(kernels.NUMPY, zero, 1.5 if name in ("matern", "power") else None)[0] == 0
    np.testing.assert_allclose(
        kernels.VARIOGRAM_SHAPES["matern"](kernels.NUMPY, R**2, 2.5),
        1 - kernels.matern52(kernels.NUMPY, R**2),
        rtol=1e-15,
    )


def test_periodic_matches_its_closed_form():
    d = np.linspace(-2, 2, 41)[:, None] * np.array([1.0, 0.5])
    u, v = np.array([math.pi / 1.3, math.pi / 0.7]), np.array([1 / 0.4, 1 / 0.9])
    ref = np.exp(-2 * (v * np.sin(u * d) ** 2).sum(-1))
    np.testing.assert_allclose(kernels.periodic(kernels.NUMPY, d, u, v), ref, rtol=1e-14)


def test_torch_matches_numpy_and_has_zero_slope_at_the_origin():
    torch = pytest.importorskip("torch", reason="the torch namespace needs torch")
    s = torch.tensor(R**2, requires_grad=True)
    for name, (kernel, _) in CLOSED_FORMS.items():
        got = kernel(kernels.TORCH, s)
        np.testing.assert_allclose(
            got.detach().numpy(), kernel(kernels.NUMPY, R**2), rtol=1e-12, atol=1e-14, err_msg=name
        )
    # the Matern kernels of r: finite derivative in s at s = 0 (r clamped), no NaN
    for kernel in kernels.MATERN.values():
        (g,) = torch.autograd.grad(kernel(kernels.TORCH, s).sum(), s)
        assert torch.isfinite(g).all()


def test_differentiable_engine_formula_has_finite_gradients_on_the_diagonal():
    """x_i = x_j: sqrt(s) has an infinite derivative at 0, s * rsqrt(s) does not."""
    torch = pytest.importorskip("torch", reason="gradients through the engine need torch")
    x = torch.rand(20, 2, dtype=torch.float64, requires_grad=True)
    s = ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2))
    f = kernels.engine_formula(kernels.matern32, s, differentiable=True)
    out = autograd.reduce(
        ReductionRequest(
            ir.make("mul", f, ir.var(2, ir.J, 1)),
            "sum",
            (x, x, torch.ones(20, 1, dtype=torch.float64)),
            (ir.I, ir.J, ir.J),
        )
    )
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(g).all()
    # the same values as the plain formula
    np.testing.assert_allclose(
        engine_values(kernels.matern32, R, differentiable=True),
        engine_values(kernels.matern32, R),
        rtol=1e-14,
    )


def test_lazytensor_namespace_gives_the_kernel_matrix():
    rng = np.random.default_rng(0)
    x, y = rng.random((300, 2)), rng.random((200, 2))
    K = kernels.matern52(kernels.LAZY, Vi(x).sqdist(Vj(y)) / 0.3**2)
    r = np.linalg.norm(x[:, None] - y[None], axis=-1) / 0.3
    dense = CLOSED_FORMS["matern52"][1](r)
    b = rng.random((200, 1))
    np.testing.assert_allclose(K @ b, dense @ b, rtol=1e-12)
