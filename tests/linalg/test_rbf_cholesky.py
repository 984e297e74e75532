"""The direct solve's two factorizations (:mod:`kernelsolve.linalg.rbf_direct`):
Cholesky of the kernel block on the null space of ``P^T`` where the kernel is
(conditionally) positive definite there, LU of the saddle system (scipy's method)
where it is not or where rounding makes ``potrf`` fail. Checked: which one is taken,
agreement with scipy and with the LU path, the symmetric fill, the fallbacks, and
accuracy on an ill-conditioned system against a 60-digit solve of scipy's system.
"""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest
from scipy.interpolate import RBFInterpolator
from scipy.interpolate._rbfinterp_pythran import _build_system

from kernelsolve.linalg import rbf_direct
from kernelsolve.linalg.interpolate import KernelInterpolator
from kernelsolve.linalg.monomials import monomial_powers
from kernelsolve.linalg.radial import KERNELS, SCALE_INVARIANT

from .test_rbf_scipy import AGREE, EPS, rel, topobathy


def fit(y, d, **kw):
    """Ours and scipy's, with scipy's warnings (a degree below the minimum) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return KernelInterpolator(y, d, solver="direct", **kw), RBFInterpolator(y, d, **kw)


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_cholesky_taken_and_agrees(kernel):
    """Every kernel at its default degree and one above, with and without smoothing:
    Cholesky, scipy's interpolant to 1e-8 (well-conditioned systems), and the LU
    path's coefficients."""
    y, d, x = topobathy(250)
    eps = 1.0 if kernel in SCALE_INVARIANT else EPS
    min_degree = rbf_direct.MIN_DEGREE.get(kernel, -1)
    for degree, smoothing in ((None, 0.0), (max(min_degree, 0) + 1, 1e-3)):
        ours, ref = fit(y, d, kernel=kernel, epsilon=eps, degree=degree, smoothing=smoothing)
        assert ours.info.product == "direct" and ours.info.factorization == "cholesky"
        cond = 1 / ours.info.rcond
        assert cond < 1e10
        assert rel(ours(x), ref(x)) <= max(AGREE, 100 * cond * 2.2e-16)
        lu, _ = rbf_direct.solve_lu(
            y,
            d[:, None],
            np.full(len(y), smoothing),
            KERNELS[kernel],
            eps,
            ours.powers,
            ours._shift,
            ours._scale,
        )
        assert rel(ours._coeffs, lu) <= max(AGREE, 100 * cond * 2.2e-16)


def test_positive_definite_kernel_without_tail():
    """degree=-1 with a positive definite kernel: Cholesky of the kernel matrix itself."""
    y, d, x = topobathy(200)
    ours, ref = fit(y, d, kernel="inverse_quadratic", epsilon=EPS, degree=-1)
    assert ours.info.factorization == "cholesky" and ours._coeffs.shape == (200, 1)
    assert rel(ours(x), ref(x)) <= AGREE


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel="thin_plate_spline", smoothing=-1e-4),  # negative smoothing
        dict(kernel="thin_plate_spline", degree=0),  # below the minimum degree, 1
        dict(kernel="quintic", degree=1),  # below the minimum degree, 2
        dict(kernel="linear", degree=-1),  # no tail, conditionally PD kernel
    ],
    ids=["negative-smoothing", "tps-degree-0", "quintic-degree-1", "linear-no-tail"],
)
def test_lu_where_the_hypotheses_fail(kw):
    """Outside the theorem's hypotheses: LU, scipy's interpolant."""
    y, d, x = topobathy(200)
    ours, ref = fit(y, d, **kw)
    assert ours.info.factorization == "lu"
    assert rel(ours(x), ref(x)) <= max(AGREE, 100 * 2.2e-16 / ours.info.rcond)


def test_lu_where_cholesky_breaks_down():
    """A Gaussian with a small epsilon (condition ~1e19): rounding makes the projected
    block indefinite, potrf stops and LU, scipy's method, is used. Neither solution is
    accurate; both are backward stable: a normwise backward error ~1e-16 in scipy's
    own system."""
    y, d, _ = topobathy(200)
    ours, ref = fit(y, d, kernel="gaussian", epsilon=0.5)
    assert ours.info.factorization == "lu" and 1 / ours.info.rcond > 1e16
    lhs, rhs, _, _ = _build_system(
        y, d[:, None], ref.smoothing, ref.kernel, ref.epsilon, ref.powers
    )
    for c in (ours._coeffs, ref._coeffs):
        backward = np.abs(lhs @ c - rhs).max() / (np.abs(lhs).sum(1).max() * np.abs(c).max())
        assert backward <= 1e-13


def test_lu_keeps_singular_errors():
    """Singular systems still raise scipy's LinAlgError, before any factorization."""
    y, d, _ = topobathy(50)
    line = np.c_[np.linspace(0, 1, 50), np.linspace(0, 2, 50)]
    with pytest.raises(np.linalg.LinAlgError, match="full column rank"):
        KernelInterpolator(line, d, kernel="thin_plate_spline", solver="direct")
    with pytest.raises(np.linalg.LinAlgError, match="points 0 and 50"):
        KernelInterpolator(np.r_[y, y[:1]], np.r_[d, d[:1]], solver="direct")


def test_lower_triangle_fill_is_the_kernel_matrix():
    """The half fill holds the full matrix's upper triangle (C order), smoothing added;
    the norm of the matrix it stores."""
    y, _, _ = topobathy(600)
    s = np.linspace(0, 1, 600)
    U = rbf_direct.lower_kernel(y, s, KERNELS["cubic"], 2.0)
    full = rbf_direct.saddle_matrix(
        y, s, KERNELS["cubic"], 2.0, monomial_powers(2, -1), np.zeros(2), np.ones(2)
    )
    iu = np.triu_indices(600)
    np.testing.assert_array_equal(U[iu], full[iu])
    assert np.isclose(rbf_direct.symmetric_norm1(U), np.abs(full).sum(0).max(), rtol=1e-14)


def test_ill_conditioned_accuracy_against_extended_precision():
    """Where the system is ill-conditioned (condition ~1e13), both solves are
    inaccurate; ours is within a small factor of scipy's error or better, measured
    against a 60-digit solve of scipy's own (float64) system."""
    y, d, x = topobathy(40)
    kw = dict(kernel="gaussian", epsilon=0.25)
    ours, ref = fit(y, d, **kw)
    assert ours.info.factorization == "cholesky" and 1 / ours.info.rcond > 1e12
    lhs, rhs, _, _ = _build_system(
        y, d[:, None], ref.smoothing, ref.kernel, ref.epsilon, ref.powers
    )
    with mpmath.workdps(60):
        c = mpmath.lu_solve(mpmath.matrix(lhs.tolist()), mpmath.matrix(rhs[:, 0].tolist()))
    exact = RBFInterpolator(y, d, **kw)
    exact._coeffs = np.array([float(v) for v in c])[:, None]
    truth = exact(x)
    assert rel(ours(x), truth) <= 3 * rel(ref(x), truth) + 1e-12


def test_singular_cluster_goes_to_pivoted_cholesky(monkeypatch):
    """A Gaussian with epsilon 0.5 on 1,500 points: the 200 points around the closest
    pair are already singular to float64, so no potrf is attempted and pstrf solves
    the system; no answer meets such data, ours misses them by less than scipy's
    (LU) does, with smaller coefficients. Thin-plate splines on the same points take
    the plain Cholesky path."""
    y, d, _ = topobathy(1500)

    def no_cholesky(*args):
        raise AssertionError("Cholesky attempted on a system the cluster test called singular")

    with monkeypatch.context() as m:
        m.setattr(rbf_direct, "solve_cholesky", no_cholesky)
        ours, ref = fit(y, d, kernel="gaussian", epsilon=0.5)
    assert ours.info.factorization == "pivoted cholesky"
    assert 0 <= ours.info.rcond <= rbf_direct.CLUSTER_RCOND

    def misfit(f):
        return np.abs(f(y) - d).max() / np.abs(d).max()

    assert misfit(ours) < misfit(ref) and misfit(ours) < 2
    assert np.abs(ours._coeffs).max() < np.abs(ref._coeffs).max()
    ours, _ = fit(y, d, kernel="thin_plate_spline")
    assert ours.info.factorization == "cholesky"


def test_pivoted_solve_of_a_well_posed_system_is_the_cholesky_one():
    """pstrf on a well-conditioned block keeps every point (rank n): the same
    coefficients as the plain Cholesky path, to rounding."""
    y, d, _ = topobathy(300)
    phi, powers = KERNELS["gaussian"], monomial_powers(2, 1)
    shift, scale = rbf_direct.poly_frame(y)
    P = rbf_direct.polynomial_matrix((y - shift) / scale, powers)
    args = (y, d[:, None], np.zeros(300), phi, 8.0)
    plain, _ = rbf_direct.solve_cholesky(*args, P)
    pivoted, rank = rbf_direct.solve_pivoted(*args, P)
    assert rank == 300
    assert np.abs(pivoted - plain).max() <= 1e-9 * np.abs(plain).max()


@pytest.mark.parametrize("kernel, eps", [("gaussian", 3.0), ("multiquadric", 2.0), ("cubic", 1.0)])
def test_cluster_condition_bounds_the_whole_systems(kernel, eps):
    """The premise of ``cluster_singular``: the projected block of a subset has a
    condition number at most the whole projected block's (Courant-Fischer)."""
    y, _, _ = topobathy(400)
    y = y * 3.0  # well-separated enough that both eigenvalue problems are accurate
    phi, powers = KERNELS[kernel], monomial_powers(2, 1)
    shift, scale = rbf_direct.poly_frame(y)

    def cond(points):
        ye = points * eps
        A = phi.numpy(((ye[:, None] - ye[None]) ** 2).sum(-1))
        P = rbf_direct.polynomial_matrix((points - shift) / scale, powers)
        Q, _ = np.linalg.qr(P, mode="complete")
        lam = np.linalg.eigvalsh(Q[:, 3:].T @ A @ Q[:, 3:])
        assert lam[0] > 0
        return lam[-1] / lam[0]

    whole = cond(y)
    for start in (0, 100, 250):
        assert cond(y[start : start + 150]) <= whole * (1 + 1e-6)
