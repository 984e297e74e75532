"""Kernel operators and preconditioners (kernelsolve/linalg/operator.py, precond.py).

* :class:`KernelOperator`: ``matmat``, ``diagonal`` and ``columns`` against the
  dense kernel matrix built by broadcasting ``x[:, None, :]`` against
  ``x[None, :, :]``, for several kernels; the structural symmetry checks.
* :func:`jacobi`, :func:`rpcholesky` and :func:`make`: exactness where they
  must be exact (a diagonal matrix, full rank), the Nystrom properties
  ``0 <= F F^T <= K`` read back from the applied preconditioner
  (``inv(M(I)) - alpha I = F F^T``), symmetry and positive definiteness,
  the automatic rank, reproducibility, and the iteration count of
  preconditioned CG against plain CG.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kernelsolve import LazyTensor, Pm, Vi, Vj
from kernelsolve.linalg import precond
from kernelsolve.linalg.cg import ConvergenceWarning, cg
from kernelsolve.linalg.operator import KernelOperator

try:
    import torch
except ImportError:  # pragma: no cover - torch is in the test extras
    torch = None

needs_torch = pytest.mark.skipif(
    torch is None, reason="torch not installed (the test extra installs it): torch-only path"
)
LIBS = ["numpy", pytest.param("torch", marks=needs_torch)]


def _lib(a, lib):
    return torch.from_numpy(np.ascontiguousarray(a)) if lib == "torch" else a


def _np(a):
    return a.detach().cpu().numpy() if torch is not None and isinstance(a, torch.Tensor) else a


def points(n, d=2, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).random((n, d)).astype(dtype)


def sqdist(x):
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


# Each kernel: (LazyTensor builder from arrays, dense NumPy builder). ``w`` is a
# positive (n, 1) weight, ``u`` a second (n, 3) feature array.
def _gauss_pm(x, w, u, lib):
    s = _lib(np.array([3.5], dtype=_np(x).dtype), lib)
    return (-Vi(x).sqdist(Vj(x)) * Pm(s)).exp()


def _laplace(x, w, u, lib):
    return (-Vi(x).sqdist(Vj(x)).sqrt()).exp()


def _matern32(x, w, u, lib):
    r = Vi(x).sqdist(Vj(x)).sqrt() * (math.sqrt(3.0) / 0.4)
    return (1 + r) * (-r).exp()


def _weighted(x, w, u, lib):
    return Vi(w) * (-Vi(x).sqdist(Vj(x)) * 2.0).exp() * Vj(w)


def _two_features(x, w, u, lib):
    return (Vi(x) | Vj(x)) * (Vi(u) | Vj(u))


def _d_gauss_pm(x, w, u):
    return np.exp(-3.5 * sqdist(x))


def _d_laplace(x, w, u):
    return np.exp(-np.sqrt(sqdist(x)))


def _d_matern32(x, w, u):
    r = np.sqrt(sqdist(x)) * (math.sqrt(3.0) / 0.4)
    return (1 + r) * np.exp(-r)


def _d_weighted(x, w, u):
    return w * np.exp(-2.0 * sqdist(x)) * w.T


def _d_two_features(x, w, u):
    return (x @ x.T) * (u @ u.T)


KERNELS = {
    "gauss-pm": (_gauss_pm, _d_gauss_pm),
    "laplace": (_laplace, _d_laplace),
    "matern32": (_matern32, _d_matern32),
    "weighted": (_weighted, _d_weighted),
    "two-features": (_two_features, _d_two_features),
}


def build(name, n=50, lib="numpy", dtype=np.float64, seed=0):
    """(LazyTensor K, dense K as float64 NumPy) for kernel ``name``."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2)).astype(dtype)
    w = rng.uniform(0.5, 2.0, (n, 1)).astype(dtype)
    u = rng.standard_normal((n, 3)).astype(dtype)
    lazy, dense = KERNELS[name]
    K = lazy(_lib(x, lib), _lib(w, lib), _lib(u, lib), lib)
    f64 = [a.astype(np.float64) for a in (x, w, u)]
    return K, dense(*f64)


def gauss(x, scale=10.0):
    return (-Vi(x).sqdist(Vj(x)) * scale).exp()


# ----------------------------------------------------------------------
# KernelOperator
# ----------------------------------------------------------------------
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("name", list(KERNELS))
def test_operator_matches_dense(name, lib):
    """matmat, diagonal and columns equal the dense kernel matrix."""
    n = 45
    K, Kd = build(name, n, lib)
    op = KernelOperator.from_lazy(K)
    assert op.n == n and op.shape == (n, n)
    V = np.random.default_rng(1).standard_normal((n, 3))
    out = op.matmat(_lib(V, lib))
    assert type(out) is type(_lib(V, lib)) and tuple(out.shape) == (n, 3)
    np.testing.assert_allclose(_np(out), Kd @ V, rtol=1e-10, atol=1e-10 * np.abs(Kd).max())
    vec = op @ _lib(V[:, 0].copy(), lib)
    assert tuple(vec.shape) == (n,)
    np.testing.assert_allclose(_np(vec), Kd @ V[:, 0], rtol=1e-10, atol=1e-10 * np.abs(Kd).max())
    diag = op.diagonal()
    assert tuple(diag.shape) == (n,)
    np.testing.assert_allclose(_np(diag), np.diag(Kd), rtol=1e-12, atol=1e-14)
    S = [3, 0, 3, n - 1, 17]  # unsorted, with a repeat
    cols = op.columns(S)
    assert tuple(cols.shape) == (n, len(S))
    np.testing.assert_allclose(_np(cols), Kd[:, S], rtol=1e-12, atol=1e-14)


def test_operator_float32():
    """A float32 kernel gives float32 products close to the float64 dense matrix."""
    K, Kd = build("matern32", 40, dtype=np.float32)
    op = KernelOperator.from_lazy(K)
    assert op.dtype == "float32"
    V = np.random.default_rng(2).standard_normal((40, 2)).astype(np.float32)
    out = op.matmat(V)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, Kd @ V, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(op.columns([5, 9]), Kd[:, [5, 9]], rtol=1e-5, atol=1e-6)


def test_operator_pairs_each_j_variable_with_its_own_points():
    """Two feature arrays of the same dimension: the diagonal pairs x_j with x_i
    and u_j with u_i (|x_i|^2 |u_i|^2, not (x_i . u_i)^2)."""
    rng = np.random.default_rng(3)
    x, u = rng.standard_normal((20, 3)), rng.standard_normal((20, 3))
    for K in [(Vi(x) | Vj(x)) * (Vi(u) | Vj(u)), (Vi(u) | Vj(u)) * (Vj(x) | Vi(x))]:
        diag = KernelOperator.from_lazy(K).diagonal()
        np.testing.assert_allclose(diag, (x * x).sum(1) * (u * u).sum(1), rtol=1e-12)


def test_operator_accepts_equal_copies():
    """Vj holding an equal copy of the Vi points is still symmetric."""
    x = points(30)
    K = (-Vi(x).sqdist(Vj(x.copy())) * 4.0).exp()
    op = KernelOperator.from_lazy(K)
    np.testing.assert_allclose(op.diagonal(), np.ones(30), rtol=0, atol=1e-15)


def test_operator_from_parts():
    """The constructor on (formula, leaves, cats) equals from_lazy."""
    x = points(25)
    K = gauss(x, 3.0)
    op = KernelOperator(K.formula, K.variables, K.cats)
    v = np.random.default_rng(4).standard_normal((25, 1))
    np.testing.assert_allclose(op.matmat(v), np.exp(-3.0 * sqdist(x)) @ v, rtol=1e-12)


def test_operator_rejects_different_points_same_shape():
    x, y = points(30, seed=1), points(30, seed=2)
    with pytest.raises(ValueError, match="not symmetric"):
        KernelOperator.from_lazy((-Vi(x).sqdist(Vj(y))).exp())


def test_operator_rejects_different_lengths():
    x, y = points(30, seed=1), points(20, seed=2)
    with pytest.raises(ValueError, match="symmetric|square"):
        KernelOperator.from_lazy((-Vi(x).sqdist(Vj(y))).exp())


def test_operator_rejects_i_variable_without_partner():
    """Vi(w) * k(x_i, x_j): w_i has no j-partner, K is not symmetric."""
    x = points(30)
    w = np.random.default_rng(5).random((30, 1))
    with pytest.raises(ValueError, match="i-variable"):
        KernelOperator.from_lazy(Vi(w) * gauss(x))


def test_operator_rejects_j_variable_without_partner():
    """k(x_i, x_j) * Vj(w): w_j has no i-partner."""
    x = points(30)
    w = np.random.default_rng(6).random((30, 1))
    with pytest.raises(ValueError, match="not symmetric"):
        KernelOperator.from_lazy(gauss(x) * Vj(w))


def test_operator_rejects_batch_dims():
    xb = np.random.default_rng(7).random((2, 30, 3))
    K = (-LazyTensor(xb[:, :, None, :]).sqdist(LazyTensor(xb[:, None, :, :]))).exp()
    with pytest.raises(ValueError, match="batch"):
        KernelOperator.from_lazy(K)


def test_operator_rejects_vector_formula():
    x = points(20)
    with pytest.raises(ValueError, match="scalar"):
        KernelOperator.from_lazy(Vi(x) - Vj(x))


def test_operator_rejects_missing_j_variable():
    x = points(20)
    with pytest.raises(ValueError, match="j-variable|i- and j"):
        KernelOperator.from_lazy(Vi(x).sqnorm2())


# ----------------------------------------------------------------------
# Jacobi
# ----------------------------------------------------------------------
def test_jacobi_values_and_batching():
    """M(R) = R / (alpha + diag), for (n, k) and (..., n, k) R."""
    d = np.array([1.0, 2.0, 4.0, 8.0])
    M = precond.jacobi(d, alpha=0.5)
    assert M.name == "jacobi" and M.rank == 0
    R = np.random.default_rng(8).standard_normal((3, 4, 2))
    np.testing.assert_allclose(M(R[0]), R[0] / (0.5 + d)[:, None], rtol=1e-15)
    np.testing.assert_allclose(M(R), R / (0.5 + d)[:, None], rtol=1e-15)


def test_jacobi_exact_on_diagonal_matrix():
    """For a diagonal matrix Jacobi is the exact inverse: CG takes one iteration."""
    d = np.geomspace(1e-3, 1e3, 50)
    alpha = 1e-2
    M = precond.jacobi(d, alpha)
    A = np.diag(d + alpha)
    v = np.random.default_rng(9).standard_normal((50, 2))
    np.testing.assert_allclose(M(A @ v), v, rtol=1e-14)
    x, info = cg(lambda P: A @ P, v, rtol=1e-12, M=M)
    assert info.iterations == 1 and info.converged
    np.testing.assert_allclose(x, v / (d + alpha)[:, None], rtol=1e-12)


def test_jacobi_on_weighted_kernel_diagonal():
    """make(op, 'jacobi') divides by alpha + w_i^2 (the diagonal of w_i k w_j)."""
    K, Kd = build("weighted", 40)
    op = KernelOperator.from_lazy(K)
    M = precond.make(op, 0.1, "jacobi")
    R = np.random.default_rng(10).standard_normal((40, 3))
    np.testing.assert_allclose(M(R), R / (0.1 + np.diag(Kd))[:, None], rtol=1e-13)


@needs_torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jacobi_torch_keeps_dtype(dtype):
    M = precond.jacobi(np.array([1.0, 3.0]), alpha=1.0)
    R = torch.ones((2, 1), dtype=getattr(torch, dtype))
    out = M(R)
    assert isinstance(out, torch.Tensor) and out.dtype == R.dtype
    np.testing.assert_allclose(out.numpy()[:, 0], [0.5, 0.25], rtol=1e-7)


@pytest.mark.parametrize("d, alpha", [([1.0, -2.0], 1.0), ([0.0, 1.0], 0.0), ([1.0, np.nan], 1.0)])
def test_jacobi_rejects_nonpositive(d, alpha):
    with pytest.raises(ValueError, match="jacobi"):
        precond.jacobi(np.array(d), alpha)


# ----------------------------------------------------------------------
# RPCholesky
# ----------------------------------------------------------------------
def _low_rank_part(M, n, alpha):
    """F F^T read back from the preconditioner: inv(M(I)) - alpha I."""
    Mmat = M(np.eye(n))
    return np.linalg.inv((Mmat + Mmat.T) / 2) - alpha * np.eye(n)


@pytest.mark.parametrize("name", ["laplace", "matern32", "weighted"])
def test_rpcholesky_full_rank_reproduces_K(name):
    """rank = n: F F^T = K, and M inverts alpha I + K. (The rank may stop short
    of n only when K is numerically singular: directions at rounding level are
    dropped.)"""
    n = 70
    K, Kd = build(name, n)
    op = KernelOperator.from_lazy(K)
    M = precond.rpcholesky(op, alpha=1.0, rank=n)
    eigs = np.linalg.eigvalsh(Kd)
    assert M.name == "rpcholesky" and M.rank <= n
    if eigs.min() > 1e-8 * eigs.max():
        assert M.rank == n
    FFt = _low_rank_part(M, n, 1.0)
    assert np.abs(FFt - Kd).max() <= 1e-8 * np.abs(Kd).max()
    assert M.residual_trace <= 1e-10
    alpha = 1e-3
    M = precond.rpcholesky(op, alpha=alpha, rank=n)
    v = np.random.default_rng(11).standard_normal((n, 2))
    out = M((alpha * np.eye(n) + Kd) @ v)
    assert np.abs(out - v).max() <= 1e-6 * np.abs(v).max()


@pytest.mark.parametrize("block", [1, 7, 64])
def test_rpcholesky_is_a_nystrom_approximation(block):
    """0 <= F F^T <= K in the Loewner order, residual_trace = tr(K - F F^T) / tr(K),
    and the requested rank is met for every block size."""
    n, r = 120, 25
    x = points(n, seed=12)
    Kd = np.exp(-10.0 * sqdist(x))
    M = precond.rpcholesky(KernelOperator.from_lazy(gauss(x)), alpha=1.0, rank=r, block=block)
    assert M.rank == r
    FFt = _low_rank_part(M, n, 1.0)
    assert np.linalg.matrix_rank(FFt, tol=1e-8) == r
    assert np.linalg.eigvalsh(FFt).min() >= -1e-9
    assert np.linalg.eigvalsh(Kd - FFt).min() >= -1e-9
    expected = np.trace(Kd - FFt) / np.trace(Kd)
    assert M.residual_trace == pytest.approx(expected, rel=1e-6, abs=1e-10)


def test_rpcholesky_residual_trace_decreases_with_rank():
    x = points(300, seed=13)
    op = KernelOperator.from_lazy(gauss(x))
    traces = []
    for r in [4, 16, 64]:
        M = precond.rpcholesky(op, alpha=1e-4, rank=r)
        assert M.rank == r
        traces.append(M.residual_trace)
    assert 1.0 > traces[0] > traces[1] > traces[2] >= 0.0


def test_rpcholesky_symmetric_positive_definite():
    """M(I) is symmetric with eigenvalues in (0, 1/alpha]."""
    n, alpha = 150, 1e-2
    x = points(n, seed=14)
    M = precond.rpcholesky(KernelOperator.from_lazy(gauss(x)), alpha=alpha, rank=30)
    Mmat = M(np.eye(n))
    assert np.abs(Mmat - Mmat.T).max() <= 1e-10 * np.abs(Mmat).max()
    eigs = np.linalg.eigvalsh((Mmat + Mmat.T) / 2)
    assert eigs.min() > 0 and eigs.max() <= (1 + 1e-8) / alpha
    v = np.random.default_rng(15).standard_normal((n, 5))
    assert np.all(np.einsum("ik,ik->k", v, M(v)) > 0)


def test_rpcholesky_batched_apply():
    """(..., n, k) residuals: each batch element preconditioned independently."""
    x = points(60, seed=16)
    M = precond.rpcholesky(KernelOperator.from_lazy(gauss(x)), alpha=1e-2, rank=10)
    R = np.random.default_rng(16).standard_normal((2, 3, 60, 2))
    out = M(R)
    assert out.shape == R.shape
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(out[i, j], M(R[i, j]), rtol=1e-13, atol=1e-13)


def test_rpcholesky_rank_zero_is_scaled_identity():
    x = points(20)
    M = precond.rpcholesky(KernelOperator.from_lazy(gauss(x)), alpha=0.5, rank=0)
    R = np.random.default_rng(17).standard_normal((20, 2))
    assert M.rank == 0
    np.testing.assert_allclose(M(R), R / 0.5, rtol=1e-15)


def test_rpcholesky_seed_reproducible():
    """Same seed: identical preconditioner; another seed: other pivots."""
    x = points(200, seed=18)
    op = KernelOperator.from_lazy(gauss(x, 30.0))
    R = np.random.default_rng(18).standard_normal((200, 2))
    a = precond.rpcholesky(op, alpha=1e-3, rank=20, seed=5)(R)
    b = precond.rpcholesky(op, alpha=1e-3, rank=20, seed=5)(R)
    c = precond.rpcholesky(op, alpha=1e-3, rank=20, seed=6)(R)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-6 * np.abs(a).max()


@pytest.mark.parametrize("alpha", [0.0, -1.0, np.nan, np.inf])
def test_rpcholesky_rejects_bad_alpha(alpha):
    op = KernelOperator.from_lazy(gauss(points(20)))
    with pytest.raises(ValueError, match="alpha"):
        precond.rpcholesky(op, alpha=alpha)


def test_rpcholesky_rejects_negative_rank():
    op = KernelOperator.from_lazy(gauss(points(20)))
    with pytest.raises(ValueError, match="rank"):
        precond.rpcholesky(op, alpha=1.0, rank=-1)


def test_rpcholesky_rejects_negative_diagonal():
    """A kernel with a negative diagonal is not positive semi-definite."""
    x = points(20)
    with pytest.raises(ValueError, match="diagonal"):
        precond.rpcholesky(KernelOperator.from_lazy(-gauss(x)), alpha=1.0)


def test_rpcholesky_verbose(capsys):
    op = KernelOperator.from_lazy(gauss(points(50)))
    precond.rpcholesky(op, alpha=1e-2, rank=10, verbose=True)
    assert "rpcholesky: rank 10" in capsys.readouterr().err


@needs_torch
def test_rpcholesky_torch_points_and_residuals():
    """A torch kernel: torch residuals in, torch out (dtype kept), same inverse."""
    n, alpha = 60, 1e-2
    x = points(n, seed=19)
    Kd = np.exp(-np.sqrt(sqdist(x)))
    tx = torch.from_numpy(x)
    op = KernelOperator.from_lazy((-Vi(tx).sqdist(Vj(tx)).sqrt()).exp())
    M = precond.rpcholesky(op, alpha=alpha, rank=n)
    assert M.rank == n
    v = np.random.default_rng(19).standard_normal((n, 2))
    out = M(torch.from_numpy((alpha * np.eye(n) + Kd) @ v))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), v, rtol=0, atol=1e-7 * np.abs(v).max())
    out32 = M(torch.from_numpy(v).float())
    assert out32.dtype == torch.float32


def test_rpcholesky_float32_kernel():
    """A float32 kernel: float32 residuals stay float32, M still inverts alpha I + K."""
    n, alpha = 60, 0.1
    x = points(n, seed=20, dtype=np.float32)
    Kd = np.exp(-np.sqrt(sqdist(x.astype(np.float64))))
    op = KernelOperator.from_lazy((-Vi(x).sqdist(Vj(x)).sqrt()).exp())
    M = precond.rpcholesky(op, alpha=alpha, rank=n)
    v = np.random.default_rng(20).standard_normal((n, 2))
    out = M(((alpha * np.eye(n) + Kd) @ v).astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, v, rtol=0, atol=1e-3 * np.abs(v).max())


# ----------------------------------------------------------------------
# Automatic rank and the effect on CG (larger n)
# ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_op():
    """Smooth Gaussian kernel on 3000 points of the unit square."""
    return KernelOperator.from_lazy(gauss(points(3000, seed=21), 10.0))


def test_rpcholesky_auto_rank_stops_early(big_op):
    """A smooth kernel: the automatic rank stops far below n and max_rank, once
    trace(K - F F^T) <= alpha n; a smaller alpha needs a larger rank."""
    coarse = precond.rpcholesky(big_op, alpha=1e-2)
    fine = precond.rpcholesky(big_op, alpha=1e-5)
    assert 0 < coarse.rank < fine.rank < precond.DEFAULT_MAX_RANK
    # diag(K) = 1: tr(K) = n, so the stopping rule reads residual_trace <= alpha
    assert coarse.residual_trace <= 1e-2 and fine.residual_trace <= 1e-5
    loose_tol = precond.rpcholesky(big_op, alpha=1e-5, tol=1e-2)
    assert loose_tol.rank < fine.rank and loose_tol.residual_trace <= 1e-2


def test_rpcholesky_auto_rank_capped_by_max_rank(big_op):
    M = precond.rpcholesky(big_op, alpha=1e-12, max_rank=40)
    assert M.rank == 40 and M.residual_trace > 1e-12


def test_make_choices(big_op):
    """make: 'auto' picks Jacobi only at most AUTO_RPCHOLESKY_MIN_N points with a
    varying diagonal (and no rank), RPCholesky otherwise (a stationary kernel's
    diagonal is constant); None/'none' give None; callables pass through."""
    assert big_op.n > precond.AUTO_RPCHOLESKY_MIN_N
    assert precond.make(big_op, 1e-2, "auto").name == "rpcholesky"
    small = KernelOperator.from_lazy(gauss(points(100)))
    assert precond.make(small, 1e-2, "auto").name == "rpcholesky"
    w = 0.5 + np.random.default_rng(3).random((100, 1))  # diagonal w_i^2 in [0.25, 2.25]
    varying = KernelOperator.from_lazy(_weighted(points(100), w, None, "numpy"))
    assert precond.make(varying, 1e-2, "auto").name == "jacobi"
    nearly = KernelOperator.from_lazy(_weighted(points(100), 1 + 0.01 * w, None, "numpy"))
    assert precond.make(nearly, 1e-2, "auto").name == "rpcholesky"
    with_rank = precond.make(small, 1e-2, "auto", rank=10)
    assert with_rank.name == "rpcholesky" and with_rank.rank == 10
    assert precond.make(small, 1e-2, None) is None
    assert precond.make(small, 1e-2, "none") is None

    def mine(R):
        return R

    assert precond.make(small, 1e-2, mine) is mine
    with pytest.raises(ValueError, match="precond"):
        precond.make(small, 1e-2, "cholesky")


def test_preconditioned_cg_needs_far_fewer_iterations():
    """Gaussian kernel, n = 2000, alpha = 1e-4: RPCholesky-preconditioned CG
    converges, and plain CG has not converged after 3x as many iterations."""
    n, alpha = 2000, 1e-4
    op = KernelOperator.from_lazy(gauss(points(n, seed=22), 10.0))
    b = np.random.default_rng(22).standard_normal((n, 1))

    def A(P):
        return op.matmat(P) + alpha * P

    M = precond.rpcholesky(op, alpha)
    x, pre = cg(A, b, rtol=1e-6, M=M)
    assert pre.converged
    assert np.linalg.norm(A(x) - b) <= 1.01e-6 * np.linalg.norm(b)
    cap = 3 * pre.iterations
    with pytest.warns(ConvergenceWarning):
        _, plain = cg(A, b, rtol=1e-6, maxiter=cap)
    assert not plain.converged and plain.iterations == cap
    assert plain.residual[0] > 10 * pre.residual[0]
