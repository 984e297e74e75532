"""scipy.sparse.linalg adapter (kernelsolve/integrations/scipy.py).

``aslinearoperator(K, alpha)`` is ``alpha I + K`` as a ``LinearOperator``:
scipy's solvers (cg, minres, gmres) and eigensolvers (eigsh, lobpcg, svds) on
it are compared with dense NumPy results on the matrix built by broadcasting
``x[:, None, :]`` against ``y[None, :, :]``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator, cg, eigsh, gmres, lobpcg, minres, svds

from kernelsolve import LazyTensor, Vi, Vj
from kernelsolve.integrations.scipy import KernelLinearOperator, aslinearoperator

try:
    import torch
except ImportError:  # pragma: no cover - torch is in the test extras
    torch = None

needs_torch = pytest.mark.skipif(
    torch is None, reason="torch not installed (the test extra installs it): torch-only path"
)

SCALE = 10.0


def points(n, d=2, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).random((n, d)).astype(dtype)


def dense(x, y, scale=SCALE):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return np.exp(-scale * ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))


def gauss(x, y, scale=SCALE):
    return (-Vi(x).sqdist(Vj(y)) * scale).exp()


@pytest.fixture(scope="module")
def square():
    """(LazyTensor K, dense K) for a Gaussian kernel on 150 points."""
    x = points(150, seed=1)
    return gauss(x, x), dense(x, x)


# ----------------------------------------------------------------------
# Solvers
# ----------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["cg", "minres", "gmres"])
def test_solvers_match_dense(square, solver):
    """scipy's Krylov solvers on alpha I + K give the dense solution."""
    K, Kd = square
    alpha = 0.1
    A = aslinearoperator(K, alpha)
    assert isinstance(A, LinearOperator) and A.shape == (150, 150) and A.dtype == np.float64
    b = np.random.default_rng(2).standard_normal(150)
    ref = np.linalg.solve(Kd + alpha * np.eye(150), b)
    if solver == "cg":
        a, status = cg(A, b, rtol=1e-11, maxiter=2000)
    elif solver == "minres":
        a, status = minres(A, b, rtol=1e-11, maxiter=2000)
    else:
        a, status = gmres(A, b, rtol=1e-11, restart=150, maxiter=20)
    assert status == 0
    assert np.abs(a - ref).max() <= 1e-7 * np.abs(ref).max()


def test_eigsh_matches_dense(square):
    K, Kd = square
    alpha = 0.1
    A = aslinearoperator(K, alpha)
    vals, vecs = eigsh(A, k=5, which="LA", tol=1e-12)
    ref = np.linalg.eigvalsh(Kd + alpha * np.eye(150))[-5:]
    np.testing.assert_allclose(np.sort(vals), ref, rtol=1e-9)
    # the eigenvectors satisfy the dense eigen-equation
    resid = (Kd + alpha * np.eye(150)) @ vecs - vecs * vals
    assert np.abs(resid).max() <= 1e-7 * ref.max()


def test_lobpcg_matches_dense(square):
    K, Kd = square
    alpha = 0.1
    A = aslinearoperator(K, alpha)
    X0 = np.random.default_rng(3).standard_normal((150, 3))
    vals, _ = lobpcg(A, X0, largest=True, tol=1e-9, maxiter=500)
    ref = np.linalg.eigvalsh(Kd + alpha * np.eye(150))[-3:]
    np.testing.assert_allclose(np.sort(vals), ref, rtol=1e-6)


def test_svds_rectangular_matches_dense():
    """svds on an M x N kernel with M != N: the top singular values."""
    x, y = points(90, seed=4), points(60, seed=5)
    A = aslinearoperator(gauss(x, y))
    assert A.shape == (90, 60)
    s = svds(A, k=4, tol=1e-12, return_singular_vectors=False)
    ref = np.linalg.svd(dense(x, y), compute_uv=False)[:4]
    np.testing.assert_allclose(np.sort(s)[::-1], ref, rtol=1e-9)


# ----------------------------------------------------------------------
# Products
# ----------------------------------------------------------------------
def _rect():
    """A non-symmetric rectangular kernel w_i exp(-|x_i - y_j|^2), M = 40, N = 25."""
    rng = np.random.default_rng(6)
    x, y = rng.random((40, 2)), rng.random((25, 2))
    w = rng.uniform(0.5, 2.0, (40, 1))
    K = Vi(w) * (-Vi(x).sqdist(Vj(y)) * 3.0).exp()
    return K, w * dense(x, y, 3.0)


def test_rectangular_products_against_dense():
    """matvec, rmatvec, matmat, rmatmat, adjoint, transpose, @, in both shapes."""
    K, Kd = _rect()
    A = aslinearoperator(K)
    assert A.shape == (40, 25)
    rng = np.random.default_rng(7)
    v, u = rng.standard_normal(25), rng.standard_normal(40)
    V, U = rng.standard_normal((25, 3)), rng.standard_normal((40, 2))
    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(A.matvec(v), Kd @ v, **tol)
    np.testing.assert_allclose(A @ v, Kd @ v, **tol)
    np.testing.assert_allclose(A.matvec(v[:, None]), Kd @ v[:, None], **tol)
    np.testing.assert_allclose(A.rmatvec(u), Kd.T @ u, **tol)
    np.testing.assert_allclose(A.matmat(V), Kd @ V, **tol)
    np.testing.assert_allclose(A @ V, Kd @ V, **tol)
    np.testing.assert_allclose(A.rmatmat(U), Kd.T @ U, **tol)
    H = A.adjoint()
    assert H.shape == (25, 40)
    np.testing.assert_allclose(H @ u, Kd.T @ u, **tol)
    np.testing.assert_allclose(H.matmat(U), Kd.T @ U, **tol)
    np.testing.assert_allclose(H.rmatvec(v), Kd @ v, **tol)
    np.testing.assert_allclose(A.H @ u, Kd.T @ u, **tol)
    np.testing.assert_allclose(A.T @ u, Kd.T @ u, **tol)
    assert A.matvec(v).shape == (40,) and A.rmatvec(u).shape == (25,)


def test_square_products_with_alpha():
    """alpha I + K products, including rmatvec and the adjoint of a non-symmetric K."""
    rng = np.random.default_rng(8)
    x = rng.random((30, 2))
    w = rng.uniform(0.5, 2.0, (30, 1))
    K = Vi(w) * (-Vi(x).sqdist(Vj(x)) * 3.0).exp()  # square, not symmetric
    Kd = w * dense(x, x, 3.0) + 0.3 * np.eye(30)
    A = aslinearoperator(K, 0.3)
    v, V = rng.standard_normal(30), rng.standard_normal((30, 4))
    np.testing.assert_allclose(A.matvec(v), Kd @ v, rtol=1e-12)
    np.testing.assert_allclose(A.rmatvec(v), Kd.T @ v, rtol=1e-12)
    np.testing.assert_allclose(A.matmat(V), Kd @ V, rtol=1e-12)
    np.testing.assert_allclose(A.rmatmat(V), Kd.T @ V, rtol=1e-12)
    np.testing.assert_allclose(A.adjoint() @ v, Kd.T @ v, rtol=1e-12)


def test_default_alpha_is_zero(square):
    K, Kd = square
    v = np.random.default_rng(9).standard_normal(150)
    np.testing.assert_allclose(aslinearoperator(K) @ v, Kd @ v, rtol=1e-12)


def test_float32_dtype_reported():
    """float32 points: the operator reports float32 and returns float32 products."""
    x = points(60, seed=10, dtype=np.float32)
    A = aslinearoperator(gauss(x, x), 0.1)
    assert A.dtype == np.float32
    v = np.random.default_rng(10).standard_normal(60)
    out = A.matvec(v)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (dense(x, x) + 0.1 * np.eye(60)) @ v, rtol=1e-4, atol=1e-4)
    a, status = cg(A, v.astype(np.float32), rtol=1e-5)
    assert status == 0
    ref = np.linalg.solve(dense(x, x) + 0.1 * np.eye(60), v)
    assert np.abs(a - ref).max() <= 1e-3 * np.abs(ref).max()


@needs_torch
def test_torch_cpu_kernel():
    """A LazyTensor of torch CPU tensors: NumPy vectors in, NumPy out, dense values."""
    x = points(80, seed=11)
    tx = torch.from_numpy(x)
    A = aslinearoperator(gauss(tx, tx), 0.1)
    assert A.dtype == np.float64 and A.shape == (80, 80)
    Kd = dense(x, x) + 0.1 * np.eye(80)
    rng = np.random.default_rng(11)
    v, V = rng.standard_normal(80), rng.standard_normal((80, 2))
    out = A.matvec(v)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, Kd @ v, rtol=1e-12)
    np.testing.assert_allclose(A.matmat(V), Kd @ V, rtol=1e-12)
    np.testing.assert_allclose(A.rmatvec(v), Kd @ v, rtol=1e-12)
    a, status = cg(A, v, rtol=1e-11)
    assert status == 0
    np.testing.assert_allclose(a, np.linalg.solve(Kd, v), rtol=1e-7, atol=1e-9)


def test_class_is_exported():
    x = points(10)
    assert isinstance(aslinearoperator(gauss(x, x)), KernelLinearOperator)


# ----------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------
def test_non_scalar_kernel():
    x = points(20)
    with pytest.raises(ValueError, match="scalar"):
        aslinearoperator(Vi(x) - Vj(x))


def test_alpha_with_rectangular_kernel():
    x, y = points(20, seed=1), points(15, seed=2)
    with pytest.raises(ValueError, match="square"):
        aslinearoperator(gauss(x, y), alpha=0.5)
    assert aslinearoperator(gauss(x, y)).shape == (20, 15)  # alpha = 0 is fine


@pytest.mark.parametrize("alpha", [np.nan, np.inf])
def test_non_finite_alpha(alpha):
    x = points(20)
    with pytest.raises(ValueError, match="alpha"):
        aslinearoperator(gauss(x, x), alpha)


def test_batch_dims():
    xb = np.random.default_rng(12).random((2, 20, 2))
    K = (-LazyTensor(xb[:, :, None, :]).sqdist(LazyTensor(xb[:, None, :, :]))).exp()
    with pytest.raises(ValueError, match="batch"):
        aslinearoperator(K)


def test_missing_j_variable():
    x = points(20)
    with pytest.raises(ValueError, match="j-variable"):
        aslinearoperator(Vi(x).sqnorm2())
