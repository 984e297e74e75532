"""``K.solve(b, alpha)`` (kernelsolve/linalg/solve.py).

Solutions are compared with a dense solve of ``(K + alpha I) a = b`` where the
dense ``K`` is built by broadcasting ``x[:, None, :]`` against
``x[None, :, :]``; torch gradients with respect to ``b``, ``alpha``, the points
and a ``Pm`` parameter are checked by ``torch.autograd.gradcheck`` and against
autograd through ``torch.linalg.solve`` on the dense matrix.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from kernelsolve import Pm, Vi, Vj
from kernelsolve.linalg import precond as precond_mod
from kernelsolve.linalg.cg import ConvergenceWarning, NotPositiveDefiniteError
from kernelsolve.linalg.operator import KernelOperator
from kernelsolve.linalg.solve import SolveInfo, solve

try:
    import torch
except ImportError:  # pragma: no cover - torch is in the test extras
    torch = None

needs_torch = pytest.mark.skipif(
    torch is None, reason="torch not installed (the test extra installs it): torch-only path"
)

SCALE = 10.0  # Gaussian kernel exp(-SCALE |x_i - x_j|^2)


def points(n, d=2, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).random((n, d)).astype(dtype)


def dense_gauss(x, scale=SCALE):
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-scale * ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def gauss(x, scale=SCALE):
    return (-Vi(x).sqdist(Vj(x)) * scale).exp()


def dense_solution(x, b, alpha, scale=SCALE):
    """(K + alpha I)^-1 b in float64 for b of shape (n,), (n, k) or (..., n, k)."""
    A = dense_gauss(x, scale) + alpha * np.eye(len(x))
    b = np.asarray(b, dtype=np.float64)
    return np.linalg.solve(A, b[:, None])[:, 0] if b.ndim == 1 else np.linalg.solve(A, b)


def relerr(a, ref):
    a = a.detach().cpu().numpy() if torch is not None and isinstance(a, torch.Tensor) else a
    return float(np.abs(np.asarray(a, dtype=np.float64) - ref).max() / np.abs(ref).max())


# ----------------------------------------------------------------------
# Solutions against the dense solve
# ----------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(), (3,), (2, None, 2)], ids=["(n,)", "(n,k)", "(2,n,k)"])
@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_matches_dense_numpy_float64(shape, solver):
    n, alpha = 120, 0.1
    x = points(n)
    bshape = (n,) if shape == () else ((n, 3) if shape == (3,) else (2, n, 2))
    b = np.random.default_rng(1).standard_normal(bshape)
    a, info = gauss(x).solve(b, alpha=alpha, rtol=1e-10, solver=solver, return_info=True)
    assert info.method == solver and info.converged
    assert isinstance(a, np.ndarray) and a.shape == b.shape and a.dtype == np.float64
    assert relerr(a, dense_solution(x, b, alpha)) < 1e-7


def test_vi_rhs():
    """K.solve(Vi(b)) is the solve of b (as an (n, k) array)."""
    n, alpha = 80, 0.1
    x = points(n, seed=2)
    b = np.random.default_rng(2).standard_normal((n, 2))
    a = gauss(x).solve(Vi(b), alpha, rtol=1e-10)
    assert a.shape == (n, 2)
    assert relerr(a, dense_solution(x, b, alpha)) < 1e-7
    a1 = gauss(x).solve(Vi(b[:, 0].copy()), alpha, rtol=1e-10)
    assert relerr(np.reshape(a1, n), dense_solution(x, b[:, 0], alpha)) < 1e-7


@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_matches_dense_numpy_float32(solver):
    """float32 points and b: float32 result, float32 accuracy."""
    n, alpha = 100, 0.1
    x = points(n, seed=3, dtype=np.float32)
    b = np.random.default_rng(3).standard_normal((n, 2)).astype(np.float32)
    a = gauss(x).solve(b, alpha, rtol=1e-5, solver=solver)
    assert a.dtype == np.float32 and a.shape == b.shape
    assert relerr(a, dense_solution(x, b, alpha)) < 2e-3


@needs_torch
@pytest.mark.parametrize("solver", ["direct", "cg"])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-7), ("float32", 2e-3)])
def test_matches_dense_torch(dtype, tol, solver):
    n, alpha = 100, 0.1
    x = points(n, seed=4)
    b = np.random.default_rng(4).standard_normal((n, 3))
    tdt = getattr(torch, dtype)
    tx, tb = torch.tensor(x, dtype=tdt), torch.tensor(b, dtype=tdt)
    rtol = 1e-10 if dtype == "float64" else 1e-5
    a = gauss(tx).solve(tb, alpha, rtol=rtol, solver=solver)
    assert isinstance(a, torch.Tensor) and a.dtype == tdt and a.shape == tb.shape
    assert not a.requires_grad
    assert relerr(a, dense_solution(x, b, alpha)) < tol


def _own_precond(alpha):
    """A user callable: a scaled identity (SPD, correct but weak)."""
    return lambda R: R / (1.0 + alpha)


@pytest.mark.parametrize(
    "precond, rank, name",
    [
        ("auto", None, "rpcholesky"),  # a Gaussian's diagonal is constant
        ("auto", 12, "rpcholesky"),
        ("rpcholesky", None, "rpcholesky"),
        ("rpcholesky", 30, "rpcholesky"),
        ("jacobi", None, "jacobi"),
        (None, None, None),
        ("none", None, None),
        ("callable", None, "callable"),
    ],
)
def test_every_precond_option(precond, rank, name):
    """Each preconditioner gives the dense solution; info records which one."""
    n, alpha = 150, 1e-2
    x = points(n, seed=5)
    b = np.random.default_rng(5).standard_normal((n, 2))
    option = _own_precond(alpha) if precond == "callable" else precond
    a, info = gauss(x).solve(
        b, alpha, rtol=1e-10, precond=option, rank=rank, return_info=True, solver="cg"
    )
    assert isinstance(info, SolveInfo) and info.converged
    assert relerr(a, dense_solution(x, b, alpha)) < 1e-6
    if name is None:
        assert info.preconditioner is None
    elif name == "callable":
        assert info.preconditioner is option
    else:
        assert info.preconditioner.name == name
        if rank is not None:
            assert info.preconditioner.rank == rank


def test_unknown_precond_raises():
    x = points(20)
    with pytest.raises(ValueError, match="precond"):
        gauss(x).solve(np.ones(20), 0.1, precond="ichol")


def test_return_info_fields():
    n, alpha = 100, 1e-2
    x = points(n, seed=6)
    b = np.random.default_rng(6).standard_normal((n, 3))
    a, info = gauss(x).solve(b, alpha, rtol=1e-8, return_info=True, precond="rpcholesky")
    assert info.converged and info.iterations == info.cg.iterations > 0
    assert info.cg.residual.shape == (3,) and np.all(info.cg.residual <= 1e-8)
    assert info.cg.converged_columns.shape == (3,) and info.cg.converged_columns.all()
    assert len(info.cg.history) == info.iterations + 1
    assert info.preconditioner.rank > 0 and info.preconditioner.setup_seconds >= 0
    assert 0 <= info.preconditioner.residual_trace <= 1.0
    assert info.backward_cg is None
    # the residual it reports is the true one
    A = dense_gauss(x) + alpha * np.eye(n)
    res = np.linalg.norm(b - A @ a, axis=0) / np.linalg.norm(b, axis=0)
    np.testing.assert_allclose(info.cg.residual, res, rtol=1e-3, atol=1e-12)
    # without return_info: just the array
    assert isinstance(gauss(x).solve(b, alpha), np.ndarray)


def test_solve_function_and_kernel_operator():
    """solve(K, ...) and solve(KernelOperator, ...) agree with K.solve."""
    n, alpha = 60, 0.1
    x = points(n, seed=7)
    b = np.random.default_rng(7).standard_normal(n)
    ref = dense_solution(x, b, alpha)
    K = gauss(x)
    for a in [
        solve(K, b, alpha, rtol=1e-10),
        solve(KernelOperator.from_lazy(K), b, alpha, rtol=1e-10),
    ]:
        assert relerr(a, ref) < 1e-7


def test_default_alpha_is_tiny():
    """alpha defaults to 1e-10: on a well-conditioned kernel the result is K^-1 b."""
    n = 40
    x = points(n, seed=8)
    Kd = np.exp(-np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)))  # Laplacian: well conditioned
    K = (-Vi(x).sqdist(Vj(x)).sqrt()).exp()
    b = np.random.default_rng(8).standard_normal(n)
    a = K.solve(b, rtol=1e-12)
    ref = np.linalg.solve(Kd + 1e-10 * np.eye(n), b)
    assert relerr(a, ref) < 1e-8


def test_alpha_zero():
    """alpha = 0 on a positive definite kernel: Cholesky solves it; CG's 'auto'
    preconditioner falls back to Jacobi; RPCholesky (which needs alpha > 0) refuses."""
    n = 40
    x = points(n, seed=9)
    Kd = np.exp(-np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)))
    K = (-Vi(x).sqdist(Vj(x)).sqrt()).exp()
    b = np.random.default_rng(9).standard_normal(n)
    a, info = K.solve(b, 0.0, rtol=1e-12, return_info=True)
    assert info.method == "direct" and relerr(a, np.linalg.solve(Kd, b)) < 1e-10
    a, info = K.solve(b, 0.0, rtol=1e-12, return_info=True, solver="cg")
    assert info.preconditioner.name == "jacobi"
    assert relerr(a, np.linalg.solve(Kd, b)) < 1e-8
    with pytest.raises(ValueError, match="alpha"):
        K.solve(b, 0.0, precond="rpcholesky")


@pytest.mark.parametrize("kind", ["numpy-0d", "torch-0d", "numpy-1"])
def test_alpha_as_array(kind):
    """alpha may be a 0-d (or one-element) array or tensor."""
    if kind == "torch-0d" and torch is None:
        pytest.skip("torch not installed (the test extra installs it): torch-only path")
    n = 50
    x = points(n, seed=10)
    b = np.random.default_rng(10).standard_normal(n)
    alpha = {
        "numpy-0d": lambda: np.array(0.1),
        "torch-0d": lambda: torch.tensor(0.1, dtype=torch.float64),
        "numpy-1": lambda: np.array([0.1]),
    }[kind]()
    a = gauss(x).solve(b, alpha, rtol=1e-10)
    assert relerr(a, dense_solution(x, b, 0.1)) < 1e-7


def test_x0_callback_maxiter_pass_through():
    """x0 at the solution: no iteration; callback sees each iterate; maxiter warns."""
    n, alpha = 80, 1e-3
    x = points(n, seed=11)
    b = np.random.default_rng(11).standard_normal((n, 1))
    exact = dense_solution(x, b, alpha)
    K = gauss(x)
    a, info = K.solve(b, alpha, x0=exact, rtol=1e-8, return_info=True, precond=None)
    assert info.iterations == 0 and relerr(a, exact) < 1e-12
    seen = []
    _, info = K.solve(b, alpha, rtol=1e-8, callback=seen.append, return_info=True)
    assert len(seen) == info.iterations > 0 and seen[0].shape == (n, 1)
    with pytest.warns(ConvergenceWarning):
        _, info = K.solve(b, alpha, rtol=1e-12, maxiter=2, precond=None, return_info=True)
    assert info.iterations == 2 and not info.converged


def test_atol():
    """A large atol stops CG as soon as ||r|| <= atol."""
    n, alpha = 80, 1e-3
    x = points(n, seed=12)
    b = np.random.default_rng(12).standard_normal(n)
    a, info = gauss(x).solve(b, alpha, rtol=0.0, atol=1e-2, precond=None, return_info=True)
    A = dense_gauss(x) + alpha * np.eye(n)
    assert info.converged
    assert np.linalg.norm(b - A @ a) <= 1e-2 * (1 + 1e-6)


def test_non_positive_definite_kernel_raises():
    """-K is negative definite: CG reports it."""
    x = points(30, seed=13)
    K = -gauss(x)
    with pytest.raises(NotPositiveDefiniteError):
        K.solve(np.ones(30), 0.1, precond=None)


def test_verbose(capsys):
    x = points(50, seed=14)
    gauss(x).solve(np.ones(50), 0.1, verbose=True, solver="cg")
    assert "cg: iteration" in capsys.readouterr().err


# ----------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------
def test_nan_in_b():
    x = points(20)
    b = np.ones(20)
    b[4] = np.nan
    with pytest.raises(ValueError, match=r"\bb\b.*NaN"):
        gauss(x).solve(b, 0.1)


def test_inf_in_points():
    x = points(20)
    x[3, 1] = np.inf
    with pytest.raises(ValueError, match="points"):
        gauss(x).solve(np.ones(20), 0.1)


def test_nan_in_parameter():
    x = points(20)
    K = (-Vi(x).sqdist(Vj(x)) * Pm(np.array([np.nan]))).exp()
    with pytest.raises(ValueError, match="parameters"):
        K.solve(np.ones(20), 0.1)


@pytest.mark.parametrize("alpha", [-1e-3, np.nan, np.inf, -np.inf])
def test_bad_alpha(alpha):
    x = points(20)
    with pytest.raises(ValueError, match="alpha"):
        gauss(x).solve(np.ones(20), alpha)


def test_alpha_with_several_entries():
    x = points(20)
    with pytest.raises(ValueError, match="alpha"):
        gauss(x).solve(np.ones(20), np.array([0.1, 0.2]))


def test_non_symmetric_kernel():
    x, y = points(20, seed=1), points(20, seed=2)
    with pytest.raises(ValueError, match="symmetric"):
        (-Vi(x).sqdist(Vj(y))).exp().solve(np.ones(20), 0.1)


def test_rectangular_kernel():
    x, y = points(20, seed=1), points(15, seed=2)
    with pytest.raises(ValueError, match="symmetric"):
        (-Vi(x).sqdist(Vj(y))).exp().solve(np.ones(20), 0.1)


def test_vector_valued_kernel():
    x = points(20)
    with pytest.raises(ValueError, match="scalar"):
        (Vi(x) - Vj(x)).solve(np.ones(20), 0.1)


@pytest.mark.parametrize("shape", [(19,), (21, 2), (2, 19, 1)])
def test_b_wrong_length(shape):
    x = points(20)
    with pytest.raises(ValueError, match=r"\bb\b"):
        gauss(x).solve(np.ones(shape), 0.1)


def test_b_scalar():
    """A 0-d b is rejected with a ValueError that names b."""
    x = points(20)
    with pytest.raises(ValueError, match=r"\bb\b"):
        gauss(x).solve(np.array(1.0), 0.1)


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_b_dtype_differs_from_K(dtype):
    x = points(20)
    with pytest.raises(TypeError, match=r"\bb\b"):
        gauss(x).solve(np.ones(20, dtype=dtype), 0.1)


@pytest.mark.parametrize("b", [[1.0] * 20, 3.0, "b"], ids=["list", "float", "str"])
def test_b_not_an_array(b):
    x = points(20)
    with pytest.raises(TypeError, match=r"\bb\b"):
        gauss(x).solve(b, 0.1)


def test_b_as_j_variable():
    x = points(20)
    with pytest.raises(TypeError, match=r"\bb\b"):
        gauss(x).solve(Vj(np.ones((20, 1))), 0.1)


@needs_torch
def test_numpy_b_with_torch_K():
    tx = torch.from_numpy(points(20))
    with pytest.raises(TypeError, match=r"\bb\b.*numpy.*torch"):
        gauss(tx).solve(np.ones(20), 0.1)


@needs_torch
def test_torch_b_with_numpy_K():
    with pytest.raises(TypeError, match=r"\bb\b"):
        gauss(points(20)).solve(torch.ones(20, dtype=torch.float64), 0.1)


@needs_torch
def test_torch_b_dtype_differs():
    tx = torch.from_numpy(points(20))
    with pytest.raises(TypeError, match=r"\bb\b"):
        gauss(tx).solve(torch.ones(20, dtype=torch.float32), 0.1)


# ----------------------------------------------------------------------
# torch gradients
# ----------------------------------------------------------------------
def _t(a, grad=True):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def _lazy_solve(b, alpha, x, s, **kw):
    K = (-Vi(x).sqdist(Vj(x)) * Pm(s)).exp()
    return K.solve(b, alpha, **kw)


def _dense_solve(b, alpha, x, s):
    K = torch.exp(-s * ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    A = K + alpha * torch.eye(x.shape[0], dtype=x.dtype)
    return torch.linalg.solve(A, b)


@needs_torch
@pytest.mark.parametrize(
    "kw", [dict(precond=None), dict(precond="jacobi"), dict(solver="direct")], ids=str
)
def test_gradcheck_all_inputs(kw):
    """gradcheck w.r.t. b, alpha (0-d tensor), the points and a Pm parameter.
    (alpha = 0.5 keeps the condition number small, so that CG at rtol 1e-12 is
    accurate far below the finite-difference step.)"""
    n = 30
    rng = np.random.default_rng(20)
    b = _t(rng.standard_normal((n, 2)))
    alpha = _t(0.5)
    x = _t(rng.random((n, 2)))
    s = _t([4.0])

    def f(b, alpha, x, s):
        return _lazy_solve(b, alpha, x, s, rtol=1e-12, **kw)

    assert torch.autograd.gradcheck(f, (b, alpha, x, s), eps=1e-6, atol=1e-6, rtol=1e-4)


@needs_torch
@pytest.mark.parametrize("solver", ["direct", "cg"])
@pytest.mark.parametrize("which", ["b", "alpha", "x", "s"])
def test_gradcheck_one_input(which, solver):
    """Only one input requires grad: the others get no gradient, the check passes."""
    n = 25
    rng = np.random.default_rng(21)
    inputs = dict(
        b=_t(rng.standard_normal(n), which == "b"),
        alpha=_t(0.5, which == "alpha"),
        x=_t(rng.random((n, 2)), which == "x"),
        s=_t([3.0], which == "s"),
    )

    def f(v):
        args = dict(inputs, **{which: v})
        if solver == "direct":
            return _lazy_solve(**args, rtol=1e-12, solver="direct")
        return _lazy_solve(**args, rtol=1e-12, precond=None, maxiter=500)

    assert torch.autograd.gradcheck(f, (inputs[which],), eps=1e-6, atol=1e-6, rtol=1e-4)


@needs_torch
@pytest.mark.parametrize("precond", [None, "jacobi", "rpcholesky", "direct"])
def test_gradients_match_dense_autograd(precond):
    """Gradients of a weighted sum of the solution equal those of torch.linalg.solve
    on the dense matrix; info.backward_cg records the adjoint solve (CG)."""
    n = 60
    rng = np.random.default_rng(22)
    b0, x0 = rng.standard_normal((n, 3)), rng.random((n, 2))
    w = torch.tensor(rng.standard_normal((n, 3)))
    lazy = [_t(b0), _t(0.01), _t(x0), _t([5.0])]
    dense = [_t(b0), _t(0.01), _t(x0), _t([5.0])]
    kw = dict(solver="direct") if precond == "direct" else dict(precond=precond, rank=20)
    a, info = _lazy_solve(*lazy, rtol=1e-12, return_info=True, **kw)
    ad = _dense_solve(*dense)
    assert relerr(a, ad.detach().numpy()) < 1e-8
    (a * w).sum().backward()
    (ad * w).sum().backward()
    for name, p, q in zip(["b", "alpha", "x", "s"], lazy, dense):
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert relerr(p.grad, q.grad.numpy()) < 1e-7, name
    if precond == "direct":
        assert info.method == "direct" and info.backward_cg is None and info.converged
    else:
        assert info.backward_cg is not None and info.backward_cg.converged


@needs_torch
@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_gradients_batched_b_and_vi_b(solver):
    """(2, n, k) right-hand sides and Vi(b): gradients equal the dense ones."""
    n = 40
    rng = np.random.default_rng(23)
    B0, x0 = rng.standard_normal((2, n, 2)), rng.random((n, 2))
    w = torch.tensor(rng.standard_normal((2, n, 2)))
    B, x = _t(B0), _t(x0)
    Bd, xd = _t(B0), _t(x0)
    a = _lazy_solve(B, 0.05, x, 4.0, rtol=1e-12, solver=solver)
    ad = _dense_solve(Bd, 0.05, xd, 4.0)
    (a * w).sum().backward()
    (ad * w).sum().backward()
    assert relerr(B.grad, Bd.grad.numpy()) < 1e-8
    assert relerr(x.grad, xd.grad.numpy()) < 1e-7

    b, bd = _t(B0[0]), _t(B0[0])
    a = _lazy_solve(Vi(b), 0.05, _t(x0, False), 4.0, rtol=1e-12, solver=solver)
    ad = _dense_solve(bd, 0.05, _t(x0, False), 4.0)
    (a * w[0]).sum().backward()
    (ad * w[0]).sum().backward()
    assert relerr(b.grad, bd.grad.numpy()) < 1e-8


@needs_torch
def test_alpha_one_element_tensor_gradient():
    """alpha as a one-element tensor (shape (1,)) gets a gradient of that shape."""
    n = 20
    rng = np.random.default_rng(24)
    x = torch.tensor(rng.random((n, 2)))
    b = torch.tensor(rng.standard_normal(n))
    alpha = torch.tensor([0.1], dtype=torch.float64, requires_grad=True)
    alpha_d = torch.tensor([0.1], dtype=torch.float64, requires_grad=True)
    gauss(x).solve(b, alpha, rtol=1e-12).sum().backward()
    A = torch.tensor(dense_gauss(x.numpy())) + alpha_d * torch.eye(n, dtype=torch.float64)
    torch.linalg.solve(A, b).sum().backward()
    assert alpha.grad is not None and alpha.grad.shape == (1,)
    assert relerr(alpha.grad, alpha_d.grad.numpy()) < 1e-8


@needs_torch
def test_no_graph_without_requires_grad():
    """Nothing requires grad (or no_grad mode): a plain tensor comes back."""
    tx = torch.tensor(points(30))
    b = torch.ones(30, dtype=torch.float64, requires_grad=True)
    assert not gauss(tx).solve(torch.ones(30, dtype=torch.float64), 0.1).requires_grad
    with torch.no_grad():
        assert not gauss(tx).solve(b, 0.1).requires_grad
    assert gauss(tx).solve(b, 0.1).requires_grad


@needs_torch
def test_backward_reuses_forward_preconditioner():
    """The adjoint solve uses the forward preconditioner: the same number of
    iterations for the same right-hand side."""
    n = 80
    rng = np.random.default_rng(25)
    tx = torch.tensor(rng.random((n, 2)))
    b0 = rng.standard_normal(n)
    b = _t(b0)
    a, info = gauss(tx).solve(b, 1e-3, rtol=1e-10, precond="rpcholesky", rank=15, return_info=True)
    M = info.preconditioner
    a.backward(torch.tensor(b0))  # adjoint right-hand side = b: same system
    assert info.backward_cg.iterations == info.cg.iterations
    assert info.preconditioner is M
    torch.testing.assert_close(b.grad, a.detach(), rtol=1e-8, atol=1e-10)


def test_no_warnings_on_clean_solve():
    x = points(60)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gauss(x).solve(np.ones(60), 0.1, rtol=1e-8)


def test_precond_module_default_threshold():
    """CG's 'auto' preconditioner at n <= AUTO_RPCHOLESKY_MIN_N: RPCholesky for a
    Gaussian (constant diagonal), Jacobi for a weighted one (checked through solve)."""
    assert precond_mod.AUTO_RPCHOLESKY_MIN_N >= 100
    x = points(100)
    _, info = gauss(x).solve(np.ones(100), 0.1, return_info=True, solver="cg")
    assert info.preconditioner.name == "rpcholesky"
    w = 0.5 + np.random.default_rng(4).random((100, 1))
    K = Vi(w) * gauss(x) * Vj(w)
    _, info = K.solve(np.ones(100), 0.1, return_info=True, solver="cg")
    assert info.preconditioner.name == "jacobi"
