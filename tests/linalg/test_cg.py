"""Batched preconditioned conjugate gradients (kernelsolve/linalg/cg.py).

Every solution is compared with ``np.linalg.solve`` (or ``torch.linalg.solve``)
on small dense symmetric positive definite matrices; the stopping rule
(``||b - A x|| <= max(rtol ||b||, atol)`` per column), per-column freezing,
``maxiter``, callbacks and the errors on bad input are checked directly.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernelsolve.linalg.cg import CGInfo, ConvergenceWarning, NotPositiveDefiniteError, cg

try:
    import torch
except ImportError:  # pragma: no cover - torch is in the test extras
    torch = None

needs_torch = pytest.mark.skipif(
    torch is None, reason="torch not installed (the test extra installs it): torch-only path"
)


def spd(n, cond=100.0, seed=0, batch=()):
    """Dense SPD matrix Q diag(eigs) Q^T with eigenvalues in [1, cond]."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal(batch + (n, n)))
    eigs = np.geomspace(1.0, cond, n)
    return (q * eigs[..., None, :]) @ np.swapaxes(q, -1, -2)


def matmul_op(A):
    """A callable computing A @ P that counts its calls."""

    def op(P):
        op.calls += 1
        return A @ P

    op.calls = 0
    return op


def _relerr(x, ref):
    return float(np.abs(np.asarray(x) - ref).max() / np.abs(ref).max())


# ----------------------------------------------------------------------
# Solutions against a dense solve
# ----------------------------------------------------------------------
@pytest.mark.parametrize("k", [None, 1, 4])
def test_matches_dense_solve_float64(k):
    """(n,), (n, 1) and (n, k) right-hand sides agree with np.linalg.solve."""
    n = 60
    A = spd(n, cond=50.0)
    rng = np.random.default_rng(1)
    B = rng.standard_normal((n,) if k is None else (n, k))
    X, info = cg(matmul_op(A), B, rtol=1e-12)
    assert isinstance(X, np.ndarray) and X.shape == B.shape and X.dtype == np.float64
    assert isinstance(info, CGInfo) and info.converged
    assert _relerr(X, np.linalg.solve(A, B)) < 1e-9


def test_matches_dense_solve_float32():
    """float32 B gives a float32 solution accurate to float32 precision."""
    n = 40
    A = spd(n, cond=20.0).astype(np.float32)
    B = np.random.default_rng(2).standard_normal((n, 3)).astype(np.float32)
    X, info = cg(lambda P: A @ P, B, rtol=1e-5)
    assert X.dtype == np.float32 and info.converged
    ref = np.linalg.solve(A.astype(np.float64), B.astype(np.float64))
    assert _relerr(X, ref) < 1e-3


@needs_torch
@pytest.mark.parametrize("k", [None, 3])
def test_torch_float64_matches_dense(k):
    """torch tensors in, torch tensors out; same solution as torch.linalg.solve."""
    n = 50
    A = torch.tensor(spd(n, cond=30.0, seed=3))
    g = torch.Generator().manual_seed(0)
    B = torch.randn((n,) if k is None else (n, k), generator=g, dtype=torch.float64)
    X, info = cg(lambda P: A @ P, B, rtol=1e-12)
    assert isinstance(X, torch.Tensor) and X.dtype == torch.float64 and X.shape == B.shape
    assert info.converged
    ref = torch.linalg.solve(A, B)
    assert float((X - ref).abs().max() / ref.abs().max()) < 1e-9


def test_operator_object_with_matmul():
    """A may be any object with ``@`` instead of a callable."""
    n = 20
    A = spd(n, seed=4)
    B = np.random.default_rng(3).standard_normal((n, 2))
    X, info = cg(A, B, rtol=1e-12)
    assert info.converged
    assert _relerr(X, np.linalg.solve(A, B)) < 1e-9


def test_batched_systems():
    """B of shape (2, 3, n, k): leading dimensions are independent systems."""
    n, k = 15, 2
    A = spd(n, cond=40.0, seed=5, batch=(2, 3))
    B = np.random.default_rng(4).standard_normal((2, 3, n, k))
    X, info = cg(lambda P: A @ P, B, rtol=1e-12)
    assert X.shape == B.shape
    assert info.converged and info.residual.shape == (2, 3, k)
    assert info.converged_columns.shape == (2, 3, k) and info.converged_columns.all()
    assert _relerr(X, np.linalg.solve(A, B)) < 1e-9


@pytest.mark.parametrize("vector", [True, False])
def test_x0_start(vector):
    """A non-zero x0 reaches the same solution; one extra product for its residual."""
    n = 30
    A = spd(n, seed=6)
    rng = np.random.default_rng(5)
    B = rng.standard_normal((n,) if vector else (n, 2))
    x0 = rng.standard_normal(B.shape)
    x0_copy = x0.copy()
    op = matmul_op(A)
    X, info = cg(op, B, x0, rtol=1e-12)
    assert info.converged
    assert _relerr(X, np.linalg.solve(A, B)) < 1e-9
    assert op.calls == info.iterations + 1
    np.testing.assert_array_equal(x0, x0_copy)  # x0 is not modified in place


def test_x0_exact_solution_takes_no_iteration():
    """Starting at the solution: converged with zero iterations."""
    n = 25
    A = spd(n, seed=7)
    B = np.random.default_rng(6).standard_normal((n, 2))
    exact = np.linalg.solve(A, B)
    op = matmul_op(A)
    X, info = cg(op, B, exact, rtol=1e-8)
    assert info.converged and info.iterations == 0 and op.calls == 1
    np.testing.assert_allclose(X, exact, rtol=0, atol=1e-14)


# ----------------------------------------------------------------------
# Stopping rule
# ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "rtol, atol",
    [(1e-3, 0.0), (1e-8, 0.0), (0.0, 1e-4), (1e-6, 1e-2), (1e-2, 1e-7)],
)
def test_each_column_meets_max_of_rtol_and_atol(rtol, atol):
    """Every column's true residual is below max(rtol ||b||, atol)."""
    n = 80
    A = spd(n, cond=1e3, seed=8)
    rng = np.random.default_rng(7)
    B = rng.standard_normal((n, 4)) * np.array([1e-3, 1.0, 10.0, 100.0])
    X, info = cg(lambda P: A @ P, B, rtol=rtol, atol=atol)
    assert info.converged and info.converged_columns.all()
    res = np.linalg.norm(B - A @ X, axis=0)
    target = np.maximum(rtol * np.linalg.norm(B, axis=0), atol)
    # slack for the gap between the recurrence residual and the true residual
    assert np.all(res <= target * (1 + 1e-6) + 1e-11 * np.linalg.norm(B, axis=0)), (res, target)
    # the reported relative residual is ||r|| / ||b||
    np.testing.assert_allclose(info.residual, res / np.linalg.norm(B, axis=0), rtol=1e-4)


def test_loose_rtol_stops_earlier_than_tight():
    """A looser tolerance takes fewer iterations and gives a larger residual."""
    n = 80
    A = spd(n, cond=1e3, seed=9)
    b = np.random.default_rng(8).standard_normal(n)
    _, loose = cg(lambda P: A @ P, b, rtol=1e-2)
    _, tight = cg(lambda P: A @ P, b, rtol=1e-10)
    assert loose.iterations < tight.iterations
    assert tight.residual[0] < loose.residual[0] <= 1e-2
    assert tight.residual[0] <= 1e-10


def test_zero_column_is_solved_exactly():
    """A zero right-hand side column gives an exactly zero solution column."""
    n = 30
    A = spd(n, seed=10)
    B = np.random.default_rng(9).standard_normal((n, 3))
    B[:, 1] = 0.0
    X, info = cg(lambda P: A @ P, B, rtol=1e-10)
    assert info.converged and info.converged_columns.all()
    assert np.all(X[:, 1] == 0.0)
    assert np.all(np.isfinite(X))
    keep = [0, 2]
    assert _relerr(X[:, keep], np.linalg.solve(A, B[:, keep])) < 1e-7


def test_all_zero_rhs():
    """B = 0: the zero solution, no product with A."""
    A = spd(10, seed=11)
    op = matmul_op(A)
    X, info = cg(op, np.zeros((10, 2)))
    assert info.converged and info.iterations == 0 and op.calls == 0
    assert np.all(X == 0)


def test_per_column_convergence_freezes_converged_columns():
    """An eigenvector column converges in one step and is then left alone,
    while the other column keeps iterating."""
    n = 40
    rng = np.random.default_rng(10)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eigs = np.geomspace(1.0, 1e3, n)
    A = (q * eigs) @ q.T
    B = np.stack([q[:, 5], rng.standard_normal(n)], axis=1)
    snapshots = []
    X, info = cg(lambda P: A @ P, B, rtol=1e-10, callback=lambda X: snapshots.append(X.copy()))
    assert info.converged and info.iterations > 3
    exact0 = q[:, 5] / eigs[5]
    for snap in snapshots:  # column 0 is solved after one iteration and never moves
        np.testing.assert_array_equal(snap[:, 0], snapshots[0][:, 0])
    np.testing.assert_allclose(snapshots[0][:, 0], exact0, rtol=0, atol=1e-12)
    assert _relerr(X[:, 1], np.linalg.solve(A, B[:, 1])) < 1e-6


def test_converged_columns_reports_each_column():
    """With too few iterations, only the easy column is marked converged."""
    n = 40
    rng = np.random.default_rng(11)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eigs = np.geomspace(1.0, 1e3, n)
    A = (q * eigs) @ q.T
    B = np.stack([q[:, 3], rng.standard_normal(n), q[:, 7]], axis=1)
    with pytest.warns(ConvergenceWarning, match="1 of 3"):
        _, info = cg(lambda P: A @ P, B, rtol=1e-10, maxiter=3)
    assert not info.converged
    np.testing.assert_array_equal(info.converged_columns, [True, False, True])
    assert info.residual[1] > 1e-10 and info.residual[0] <= 1e-10


# ----------------------------------------------------------------------
# maxiter, callback, history, verbose
# ----------------------------------------------------------------------
@pytest.mark.parametrize("maxiter", [0, 1, 7])
def test_maxiter_warns_and_never_loops_past(maxiter):
    """An ill-conditioned system stops exactly at maxiter, with a warning."""
    n = 100
    A = spd(n, cond=1e8, seed=12)
    b = np.random.default_rng(12).standard_normal(n)
    op = matmul_op(A)
    calls = []
    with pytest.warns(ConvergenceWarning, match="maxiter|did not reach"):
        X, info = cg(op, b, rtol=1e-12, maxiter=maxiter, callback=calls.append)
    assert info.iterations == maxiter and op.calls == maxiter and len(calls) == maxiter
    assert not info.converged and not info.converged_columns.any()
    assert len(info.history) == maxiter + 1
    assert X.shape == b.shape and np.all(np.isfinite(X))
    if maxiter == 0:
        assert np.all(X == 0)


def test_default_maxiter_bounds_the_loop():
    """Without maxiter, an unreachable tolerance still stops (default cap) and warns."""
    n = 200
    A = spd(n, cond=1e12, seed=13)
    b = np.random.default_rng(13).standard_normal(n)
    op = matmul_op(A)
    with pytest.warns(ConvergenceWarning):
        _, info = cg(op, b, rtol=0.0, atol=0.0)
    assert op.calls == info.iterations <= 1000


def test_no_warning_when_converged():
    """A converged solve does not warn."""
    A = spd(20, seed=14)
    b = np.ones(20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = cg(lambda P: A @ P, b, rtol=1e-10)
    assert info.converged


def test_callback_every_iteration():
    """callback(X) once per iteration, X shaped like B, the last one the result."""
    n = 50
    A = spd(n, cond=100.0, seed=15)
    b = np.random.default_rng(14).standard_normal(n)
    seen = []
    X, info = cg(lambda P: A @ P, b, rtol=1e-10, callback=lambda x: seen.append(x.copy()))
    assert len(seen) == info.iterations > 1
    assert all(s.shape == b.shape for s in seen)
    np.testing.assert_array_equal(seen[-1], X)
    # the A-norm of the error decreases monotonically along CG iterates
    exact = np.linalg.solve(A, b)
    errs = [float((s - exact) @ A @ (s - exact)) for s in seen]
    assert all(e2 <= e1 * (1 + 1e-12) for e1, e2 in zip(errs, errs[1:]))


def test_history_records_worst_relative_residual():
    """history[0] is 1 (x0 = 0) and the last entry is the final worst residual."""
    A = spd(30, cond=100.0, seed=16)
    B = np.random.default_rng(15).standard_normal((30, 2))
    _, info = cg(lambda P: A @ P, B, rtol=1e-9)
    assert len(info.history) == info.iterations + 1
    assert info.history[0] == pytest.approx(1.0)
    assert info.history[-1] == pytest.approx(float(info.residual.max()))
    assert info.history[-1] <= 1e-9


def test_verbose_prints_to_stderr(capsys):
    """verbose=True reports the iteration and the residual on stderr."""
    A = spd(20, seed=17)
    cg(lambda P: A @ P, np.ones(20), rtol=1e-8, verbose=True)
    err = capsys.readouterr().err
    assert "cg: iteration" in err and "residual" in err


# ----------------------------------------------------------------------
# Preconditioning
# ----------------------------------------------------------------------
def test_exact_preconditioner_converges_in_one_iteration():
    """M = A^-1 solves the system in a single iteration."""
    n = 40
    A = spd(n, cond=1e4, seed=18)
    Ainv = np.linalg.inv(A)
    B = np.random.default_rng(16).standard_normal((n, 3))
    X, info = cg(lambda P: A @ P, B, rtol=1e-8, M=lambda R: Ainv @ R)
    assert info.converged and info.iterations == 1
    assert _relerr(X, np.linalg.solve(A, B)) < 1e-8


def test_jacobi_preconditioner_helps_badly_scaled_matrix():
    """Diagonal scaling D A D: a Jacobi M cuts the iterations, same solution."""
    n = 60
    D = np.diag(np.geomspace(1e-2, 1e2, n))
    A = D @ spd(n, cond=5.0, seed=19) @ D
    b = np.random.default_rng(17).standard_normal(n)
    dinv = 1.0 / np.diag(A)
    with pytest.warns(ConvergenceWarning):
        _, plain = cg(lambda P: A @ P, b, rtol=1e-10, maxiter=40)
    X, pre = cg(lambda P: A @ P, b, rtol=1e-10, M=lambda R: dinv[:, None] * R)
    assert pre.converged and pre.iterations < 40 and not plain.converged
    assert _relerr(X, np.linalg.solve(A, b)) < 1e-6


# ----------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------
def test_negative_definite_matrix_raises():
    """-A: the first direction has negative curvature."""
    A = -spd(20, seed=20)
    with pytest.raises(NotPositiveDefiniteError, match="positive definite"):
        cg(lambda P: A @ P, np.ones(20))


def test_indefinite_matrix_zero_curvature_raises():
    """diag(1, -1) with b = (1, 1): p.A p = 0 on the first step."""
    A = np.diag([1.0, -1.0])
    with pytest.raises(NotPositiveDefiniteError):
        cg(lambda P: A @ P, np.array([1.0, 1.0]))


def test_not_positive_definite_is_a_value_error():
    """NotPositiveDefiniteError can be caught as ValueError."""
    assert issubclass(NotPositiveDefiniteError, ValueError)
    assert issubclass(ConvergenceWarning, Warning)


@pytest.mark.parametrize("sign", ["negative", "indefinite"])
def test_non_spd_preconditioner_raises(sign):
    """A preconditioner that is not positive definite is detected."""
    n = 30
    A = spd(n, seed=21)
    d = -np.ones(n) if sign == "negative" else np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    b = np.random.default_rng(18).standard_normal(n)
    with pytest.raises(NotPositiveDefiniteError, match="preconditioner|positive definite"):
        cg(lambda P: A @ P, b, rtol=1e-12, M=lambda R: d[:, None] * R)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_b_raises(bad):
    """NaN or inf in B: ValueError naming B, before any product."""
    A = spd(10, seed=22)
    op = matmul_op(A)
    B = np.ones((10, 2))
    B[3, 1] = bad
    with pytest.raises(ValueError, match="B"):
        cg(op, B)
    assert op.calls == 0


def test_nonfinite_x0_raises():
    """NaN in x0: ValueError naming x0."""
    A = spd(10, seed=23)
    x0 = np.zeros(10)
    x0[0] = np.nan
    with pytest.raises(ValueError, match="x0"):
        cg(lambda P: A @ P, np.ones(10), x0)


def test_x0_wrong_shape_raises():
    A = spd(10, seed=24)
    with pytest.raises(ValueError, match="x0"):
        cg(lambda P: A @ P, np.ones((10, 2)), np.zeros((10, 3)))


@pytest.mark.parametrize(
    "bad_op",
    [lambda P: P[:-1], lambda P: P[..., :1], lambda P: P.sum(-1), lambda P: P[None]],
    ids=["rows", "cols", "reduced", "extra-dim"],
)
def test_operator_wrong_output_shape_raises(bad_op):
    """An operator returning the wrong shape: ValueError with both shapes."""
    with pytest.raises(ValueError, match="shape"):
        cg(bad_op, np.ones((10, 2)))


def test_preconditioner_wrong_output_shape_raises():
    A = spd(10, seed=25)
    with pytest.raises(ValueError, match="shape"):
        cg(lambda P: A @ P, np.ones((10, 2)), M=lambda R: R[:-1])


def test_nonfinite_operator_output_raises():
    """An operator that overflows: FloatingPointError, not a silent NaN result."""
    b = np.random.default_rng(19).uniform(1.0, 2.0, 10)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match="non-finite|NaN"):
        cg(lambda P: P * 1e308 * 10.0, b)


@pytest.mark.parametrize(
    "kwargs",
    [dict(rtol=-1e-3), dict(atol=-1.0), dict(maxiter=-1)],
    ids=["rtol", "atol", "maxiter"],
)
def test_negative_options_raise(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        cg(lambda P: P, np.ones(5), **kwargs)


@pytest.mark.parametrize("name", ["rtol", "atol"])
def test_nan_tolerance_raises(name):
    """A NaN tolerance must be rejected: otherwise every comparison with it is
    False, no iteration runs and X = 0 is reported as converged."""
    A = np.diag([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=name):
        cg(lambda P: A @ P, np.ones(3), **{name: float("nan")})


def test_scalar_b_raises():
    with pytest.raises(ValueError, match="B"):
        cg(lambda P: P, np.array(1.0))


# ----------------------------------------------------------------------
# Property: random SPD systems
# ----------------------------------------------------------------------
@given(
    n=st.integers(1, 25),
    k=st.integers(1, 3),
    log_cond=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_random_spd_matches_dense_solve(n, k, log_cond, seed):
    """Q diag(eigs) Q^T with random eigenvalues in [1, 10^log_cond], random B:
    CG at rtol 1e-11 agrees with np.linalg.solve within cond * 1e-10."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    cond = 10.0**log_cond
    eigs = np.concatenate([[1.0, cond][: min(n, 2)], rng.uniform(1.0, cond, max(n - 2, 0))])
    A = (q * eigs) @ q.T
    A = (A + A.T) / 2
    B = rng.standard_normal((n, k))
    X, info = cg(lambda P: A @ P, B, rtol=1e-11, maxiter=10 * n + 50)
    assert info.converged
    ref = np.linalg.solve(A, B)
    err = np.abs(X - ref).max() / max(np.abs(ref).max(), 1e-300)
    assert err <= cond * 1e-10 + 1e-12
    assert info.iterations <= 10 * n + 50


# ----------------------------------------------------------------------
# Old spellings of the tolerance (kernelsolve.tolerance)
# ----------------------------------------------------------------------
def test_tol_is_rtol_with_a_deprecation_warning_and_eps_is_refused():
    A = spd(10, seed=3)
    b = np.ones(10)
    with pytest.warns(DeprecationWarning, match="rtol="):
        x_old, info_old = cg(lambda P: A @ P, b, tol=1e-9)
    x_new, info_new = cg(lambda P: A @ P, b, rtol=1e-9)
    assert info_old.iterations == info_new.iterations and np.array_equal(x_old, x_new)
    with pytest.raises(TypeError, match="eps= is not accepted.*rtol="):
        cg(lambda P: A @ P, b, eps=1e-9)
    with pytest.raises(TypeError, match="both tol= and rtol="):
        cg(lambda P: A @ P, b, tol=1e-9, rtol=1e-9)
