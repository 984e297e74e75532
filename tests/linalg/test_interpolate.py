"""``KernelInterpolator``'s iterative solver (``solver="iterative"``, kernelsolve/linalg/
saddle.py) against scipy's RBFInterpolator; the direct solve, the automatic choice and
scipy's API are tested in test_rbf_scipy.py.

Every kernel is fitted to smooth data in 1-D, 2-D and 3-D with a shape parameter
such that ``epsilon`` times the typical spacing of the points is O(1) (a
well-conditioned system). Predictions at new points must agree with the dense
solve of ``scipy.interpolate.RBFInterpolator`` to 1e-6 relative (max abs
difference / max abs value). Where the iterative solver cannot reach that (the
quintic kernel, whose saddle system has a condition number of 1e11-1e16 here),
it must say so with a ConvergenceWarning, never return a wrong answer silently.

Also checked: exact interpolation at the data points, smoothing (scalar and per
point), polynomial degrees, multi-column data, the ``info`` record, polynomial
reproduction, the memory footprint of a fit, and bad input.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.interpolate import RBFInterpolator

from kernelsolve.linalg.cg import ConvergenceWarning
from kernelsolve.linalg.interpolate import KernelInterpolator
from kernelsolve.linalg.saddle import SaddleInfo

KERNELS = (
    "thin_plate_spline",
    "linear",
    "cubic",
    "quintic",
    "gaussian",
    "multiquadric",
    "inverse_multiquadric",
    "inverse_quadratic",
)
SCALE_INVARIANT = ("thin_plate_spline", "linear", "cubic", "quintic")
TOL = 1e-6  # agreement with scipy: max |difference| / max |scipy|
N_REF = 500  # the spacing of the points is N_REF ** (-1 / ndim)


def problem(n, ndim, seed=0, q=40):
    """Points ``y`` (n, ndim), smooth data ``d`` (n,) and ``q`` evaluation points ``x``.

    The points fill a cube of side ``(n / N_REF) ** (1 / ndim)``, so that their spacing
    is ``N_REF ** (-1 / ndim)`` whatever ``n``: one epsilon per dimension (one compiled
    kernel) serves every ``n``. ``x`` reaches a little outside the cube. 1-D points are
    a jittered grid: uniform random points on a line cluster (the closest pair is about
    1 / n^2 apart), which makes every kernel matrix ill-conditioned.
    """
    rng = np.random.default_rng([n, ndim, seed])
    if ndim == 1:
        y = ((np.arange(n) + 0.5 + rng.uniform(-0.3, 0.3, n)) / n)[:, None]
    else:
        y = rng.random((n, ndim))
    x = rng.uniform(-0.1, 1.1, (q, ndim))
    side = (n / N_REF) ** (1.0 / ndim)
    return side * y, smooth(y), side * x


def smooth(p):
    return np.sin(3 * p.sum(1)) + np.cos(2 * p[:, 0])


def epsilon_for(kernel, ndim, eps_h=1.0):
    """``eps_h / spacing`` for kernels with a shape parameter, None for the others."""
    return None if kernel in SCALE_INVARIANT else eps_h * N_REF ** (1.0 / ndim)


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def fit(y, d, solver="iterative", **kw):
    """A KernelInterpolator (by default the iterative solver, which this file tests);
    a ConvergenceWarning or UserWarning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        warnings.simplefilter("error", UserWarning)
        return KernelInterpolator(y, d, solver=solver, **kw)


def fit_recording(y, d, solver="iterative", **kw):
    """A KernelInterpolator (iterative by default) and the warnings its fit raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = KernelInterpolator(y, d, solver=solver, **kw)
    return f, caught


def convergence_warnings(caught):
    return [w for w in caught if issubclass(w.category, ConvergenceWarning)]


# ----------------------------------------------------------------------------
# Agreement with scipy, every kernel, 1-D to 3-D

# (kernel, ndim, n) with the default rtol=1e-8 out of reach: the quintic saddle system
# has a condition number of ~5e15 (1-D) and ~6e11 (2-D) at n=500, and GMRES stalls at a
# relative residual of ~1e-3 and ~3e-7 (prediction errors ~1e-4 and ~3e-7), with
# maxiter=300 as with the default 1000.
STALLS = {("quintic", 1, 500), ("quintic", 2, 500)}
# cubic in 1-D at n=500 (condition number ~6e10) sits on the rounding floor: depending on
# the points GMRES reaches rtol or stops at ~5e-8 with a warning; either way the answer
# is well within TOL.
ROUNDING_FLOOR = {("cubic", 1, 500)}
GRID_MAXITER = 300  # enough for every converging case (at most ~190 products)


@pytest.mark.parametrize("n", [50, 500])
@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_scipy(kernel, ndim, n):
    """Predictions match RBFInterpolator to 1e-6 and the data are interpolated to 1e-6;
    known stalls raise a ConvergenceWarning instead."""
    y, d, x = problem(n, ndim)
    kw = dict(kernel=kernel, epsilon=epsilon_for(kernel, ndim))
    ref = RBFInterpolator(y, d, **kw)(x)
    f, caught = fit_recording(y, d, maxiter=GRID_MAXITER, **kw)
    warned = convergence_warnings(caught)
    assert len(warned) == len(caught), [str(w.message) for w in caught]
    assert bool(warned) == (not f.info.converged)
    config = (kernel, ndim, n)
    if config in STALLS:
        assert warned, f"{config} is expected to stall; it converged: update STALLS"
        assert max(f.info.residual) > 10 * 1e-8
        assert np.all(np.isfinite(f(x)))
        return
    if config not in ROUNDING_FLOOR:
        assert not warned, str(warned[0].message)
    assert rel_err(f(x), ref) <= TOL
    assert rel_err(f(y), d) <= TOL  # exact interpolation at the data points


LARGE = [
    ("thin_plate_spline", 2, 0.0),
    ("gaussian", 3, 0.0),
    ("inverse_quadratic", 1, "per-point"),
]


@pytest.mark.parametrize("kernel,ndim,smoothing", LARGE)
def test_matches_scipy_large(kernel, ndim, smoothing):
    """A few fits with n = 2000 points match RBFInterpolator to 1e-6."""
    n = 2000
    y, d, x = problem(n, ndim)
    if smoothing == "per-point":
        smoothing = np.random.default_rng(7).uniform(0, 1e-3, n)
    kw = dict(kernel=kernel, epsilon=epsilon_for(kernel, ndim), smoothing=smoothing)
    ref = RBFInterpolator(y, d, **kw)
    f = fit(y, d, **kw)
    assert f.info.converged
    assert rel_err(f(x), ref(x)) <= TOL
    assert rel_err(f(y), ref(y)) <= TOL


# ----------------------------------------------------------------------------
# Smoothing


@pytest.mark.parametrize("kind", ["scalar", "per-point"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_smoothing_matches_scipy(kernel, kind):
    """Smoothing > 0 (a scalar or one value per point, some zero) matches RBFInterpolator;
    points with zero smoothing are still interpolated, the others are not."""
    n, ndim = 200, 1 + KERNELS.index(kernel) % 3
    y, d, x = problem(n, ndim, seed=1)
    if kind == "scalar":
        smoothing = 1e-3
    else:
        smoothing = np.random.default_rng(2).uniform(1e-4, 1e-2, n)
        smoothing[::4] = 0.0
    kw = dict(kernel=kernel, epsilon=epsilon_for(kernel, ndim), smoothing=smoothing)
    ref = RBFInterpolator(y, d, **kw)
    f = fit(y, d, **kw)
    assert rel_err(f(x), ref(x)) <= TOL
    fy = f(y)
    assert rel_err(fy, ref(y)) <= TOL
    misfit = np.abs(fy - d) / np.max(np.abs(d))
    s = np.broadcast_to(smoothing, (n,))
    assert np.max(misfit[s > 0]) > 10 * TOL  # the smoothing acts...
    if kind == "per-point":
        assert np.max(misfit[s == 0]) <= TOL  # ...only where it is > 0


# ----------------------------------------------------------------------------
# Polynomial degree

DEGREES = [
    ("gaussian", 1, -1),
    ("inverse_multiquadric", 2, -1),
    ("inverse_quadratic", 3, -1),
    ("gaussian", 3, 2),
    ("multiquadric", 2, 2),
    ("inverse_multiquadric", 1, 3),
    ("inverse_quadratic", 2, 1),
    ("thin_plate_spline", 3, 2),
    ("linear", 1, 3),
    ("cubic", 2, 2),
    ("quintic", 2, 4),
]


@pytest.mark.parametrize("kernel,ndim,degree", DEGREES)
def test_degree_matches_scipy(kernel, ndim, degree):
    """degree=-1 (no tail) for positive definite kernels and degrees above the kernel's
    minimum match RBFInterpolator, with no warning."""
    n = 200
    y, d, x = problem(n, ndim, seed=2)
    kw = dict(kernel=kernel, epsilon=epsilon_for(kernel, ndim), degree=degree)
    ref = RBFInterpolator(y, d, **kw)(x)
    f = fit(y, d, **kw)
    assert f.degree == degree
    assert len(f.powers) == (math.comb(ndim + degree, ndim) if degree >= 0 else 0)
    assert rel_err(f(x), ref) <= TOL
    assert rel_err(f(y), d) <= TOL


@pytest.mark.parametrize(
    "kernel,degree",
    [
        ("thin_plate_spline", 0),
        ("thin_plate_spline", -1),
        ("cubic", 0),
        ("quintic", 1),
        ("linear", -1),
        ("multiquadric", -1),
    ],
)
def test_degree_below_minimum_warns_as_scipy(kernel, degree):
    """A degree from 0 up to below the kernel's minimum raises scipy's UserWarning (the
    system may be singular); -1 (no tail) raises none, as in scipy. Here the system is
    still solvable and matches RBFInterpolator."""
    n, ndim = 40, 2
    y, d, x = problem(n, ndim, seed=3)
    kw = dict(kernel=kernel, epsilon=epsilon_for(kernel, ndim), degree=degree)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        f = KernelInterpolator(y, d, **kw)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        ref = RBFInterpolator(y, d, **kw)(x)
    assert len(ours) == len(theirs) == (1 if degree >= 0 else 0)
    assert all("`degree` should not be below" in str(w.message) for w in ours)
    assert rel_err(f(x), ref) <= TOL


@pytest.mark.parametrize(
    "kernel,degree,poly",
    [
        ("thin_plate_spline", None, lambda p: 1 + 2 * p[:, 0] - 3 * p[:, 1]),
        ("linear", None, lambda p: np.full(len(p), 2.5)),
        ("cubic", 2, lambda p: 1 - p[:, 0] + p[:, 0] * p[:, 1] - 2 * p[:, 1] ** 2),
        ("gaussian", 1, lambda p: 0.5 + p[:, 1]),
    ],
)
def test_polynomial_data_reproduced(kernel, degree, poly):
    """Data from a polynomial in the tail's span are reproduced everywhere (all kernel
    coefficients vanish: the projected right-hand side is rounding noise), without a
    ConvergenceWarning."""
    n, ndim = 60, 2
    y, _, x = problem(n, ndim, seed=4)
    kw = dict(kernel=kernel, epsilon=epsilon_for(kernel, ndim), degree=degree)
    f, caught = fit_recording(y, poly(y), maxiter=100, **kw)
    assert rel_err(f(x), poly(x)) <= TOL
    assert not convergence_warnings(caught), str(caught[0].message)


@pytest.mark.parametrize("data", ["smooth", "affine"])
@pytest.mark.parametrize("kernel,ndim", [("thin_plate_spline", 2), ("quintic", 1), ("cubic", 3)])
def test_as_many_points_as_monomials(kernel, ndim, data):
    """With exactly as many points as tail monomials the interpolant is that polynomial
    (matches RBFInterpolator), and there is nothing for GMRES to do: no warning."""
    degree = 2 if kernel == "quintic" else 1
    n = math.comb(ndim + degree, ndim)
    rng = np.random.default_rng(5)
    y, x = rng.random((n, ndim)), rng.random((20, ndim))
    d = smooth(y) if data == "smooth" else 1 + y @ np.arange(1.0, ndim + 1)
    ref = RBFInterpolator(y, d, kernel=kernel)(x)
    f, caught = fit_recording(y, d, kernel=kernel, maxiter=100)
    assert rel_err(f(x), ref) <= TOL
    assert not convergence_warnings(caught), str(caught[0].message)


# ----------------------------------------------------------------------------
# Multi-column data, info, input conversion


@pytest.mark.parametrize("shape", [(3,), (2, 2)])
@pytest.mark.parametrize("kernel,ndim", [("thin_plate_spline", 2), ("gaussian", 3)])
def test_multi_column_data(kernel, ndim, shape):
    """d of shape (n, 3) or (n, 2, 2): the output has shape (q,) + d.shape[1:], matches
    RBFInterpolator, and info holds one residual per column."""
    n = 300
    y, _, x = problem(n, ndim, seed=6)
    cols = [smooth(y), np.cos(2 * y[:, 0]) * y[:, -1], y[:, 0] ** 2 - y[:, -1], np.exp(-y.sum(1))]
    d = np.stack(cols[: math.prod(shape)], axis=1).reshape((n, *shape))
    kw = dict(kernel=kernel, epsilon=epsilon_for(kernel, ndim))
    ref = RBFInterpolator(y, d, **kw)(x)
    f = fit(y, d, **kw)
    out = f(x)
    assert out.shape == ref.shape == (len(x), *shape)
    assert rel_err(out, ref) <= TOL
    assert rel_err(f(y), d) <= TOL
    assert len(f.info.residual) == math.prod(shape)


def test_info_fields():
    """info: products > 0, one residual per column (<= rtol; 0 for a zero column whose
    interpolant is exactly 0), converged, positive timings; a looser rtol costs fewer
    products and meets its own tolerance."""
    n, ndim = 300, 2
    y, d, x = problem(n, ndim, seed=7)
    f = fit(y, np.stack([d, np.zeros(n)], axis=1), rtol=1e-10)
    info = f.info
    assert isinstance(info, SaddleInfo)
    assert isinstance(info.products, int) and info.products > 0
    assert len(info.residual) == 2
    assert 0 < info.residual[0] <= 1e-10
    assert info.residual[1] == 0.0
    assert info.converged is True
    assert 0 < info.iterations < info.products  # + one product per column for c
    assert info.coarse_products == 0 and info.product == "engine"  # small n: one level
    assert info.setup_seconds > 0 and info.solve_seconds > 0
    out = f(x)
    assert np.all(out[:, 1] == 0)
    assert rel_err(out[:, 0], RBFInterpolator(y, d)(x)) <= 1e-8
    loose = fit(y, d, rtol=1e-4)
    assert 0 < loose.info.residual[0] <= 1e-4
    assert 0 < loose.info.products < info.products


def test_input_conversion():
    """Lists, integer coordinates, boolean data, any-case kernel names and an explicit
    epsilon for a scale-invariant kernel behave like RBFInterpolator; an empty x gives an
    empty result of shape (0,) + d.shape[1:]."""
    y, d, x = problem(30, 2, seed=8)
    ref = RBFInterpolator(y, d)(x)
    assert rel_err(fit(y.tolist(), d.tolist())(x.tolist()), ref) <= TOL
    grid = np.stack(np.meshgrid(np.arange(5), np.arange(5)), -1).reshape(-1, 2)
    b = grid.sum(1) % 3 == 0
    ref_int = RBFInterpolator(grid, b.astype(float))(x * 16)
    assert rel_err(fit(grid, b)(x * 16), ref_int) <= TOL
    gauss_eps = epsilon_for("gaussian", 2)
    for kernel, eps in [("Thin_Plate_Spline", 3.0), ("CUBIC", 0.5), ("Gaussian", gauss_eps)]:
        ref = RBFInterpolator(y, d, kernel=kernel, epsilon=eps)(x)
        assert rel_err(fit(y, d, kernel=kernel, epsilon=eps)(x), ref) <= TOL
    f = fit(y, np.stack([d, d], 1))
    assert f(np.empty((0, 2))).shape == (0, 2)


# ----------------------------------------------------------------------------
# Large-n machinery: FMM products and the two-level preconditioner


def test_fmm_products_match_scipy():
    """products="fmm" (thin-plate spline, 2-D) gives RBFInterpolator's interpolant."""
    y, d, x = problem(1500, 2, seed=11)
    ref = RBFInterpolator(y, d)
    f = fit(y, d, products="fmm")
    assert f.info.product == "fmm"
    assert rel_err(f(x), ref(x)) <= TOL
    assert rel_err(f(y), d) <= TOL


def test_two_level_matches_scipy_in_fewer_iterations():
    """From 4000 points on the preconditioner has a coarse level (n / 20 points): the
    interpolant matches RBFInterpolator, the data are interpolated (the residual seen
    through exact engine products, not the FMM's), and GMRES needs fewer iterations
    than with the one-level preconditioner (measured 13 against 22 at 6000 points)."""
    n = 4000
    y, d, x = problem(n, 2, seed=12)
    ref = RBFInterpolator(y, d)(x)
    two = fit(y, d, products="fmm")
    one = fit(y, d, products="fmm", coarse=0, precond_neighbors=50)
    assert two.info.coarse_products > 0 and one.info.coarse_products == 0
    assert rel_err(two(x), ref) <= TOL
    assert rel_err(two(y), d) <= TOL  # f(y) by the FMM evaluator: to rounding
    assert rel_err(one(x), ref) <= TOL
    assert two.info.iterations < 0.8 * one.info.iterations, (two.info, one.info)


def test_two_level_other_kernels():
    """The coarse level serves every kernel that grows with r (here cubic in 3-D, where
    one level stalls: 300 iterations at 6000 points, residual 0.3); decaying kernels
    keep one level."""
    y, d, x = problem(4000, 3, seed=13)
    f = fit(y, d, kernel="cubic")
    assert f.info.coarse_products > 0
    assert rel_err(f(x), RBFInterpolator(y, d, kernel="cubic")(x)) <= TOL
    y, d, _ = problem(4000, 2, seed=13)
    eps = epsilon_for("inverse_quadratic", 2)
    assert fit(y, d, kernel="inverse_quadratic", epsilon=eps).info.coarse_products == 0


@pytest.mark.parametrize("kernel", ["thin_plate_spline", "cubic"])
def test_warns_exactly_when_the_residual_is_above_rtol(kernel):
    """Each maxiter from 1 to 10 stops this fit before or after it reaches rtol; it
    warns (and says converged=False) exactly when the true residual is above rtol.
    With 6 (thin-plate) or 7 (cubic) iterations it stops between rtol and 10 rtol,
    which once passed silently."""
    y, d, _ = problem(300, 2, seed=3)
    rtol = 1e-8
    outcomes = set()
    for maxiter in range(1, 11):
        f, caught = fit_recording(y, d, kernel=kernel, rtol=rtol, maxiter=maxiter)
        above = max(f.info.residual) > rtol
        assert bool(convergence_warnings(caught)) == above, maxiter
        assert f.info.converged == (not above), maxiter
        outcomes.add((above, max(f.info.residual) <= 10 * rtol))
    assert (True, True) in outcomes  # a stop within 10 rtol but above rtol was seen
    assert (False, True) in outcomes  # and converged ones


def test_gmres_restarts():
    """A restart length far below the iteration count still converges, to the same
    coefficients as an unrestarted run."""
    from kernelsolve.linalg.radial import KERNELS
    from kernelsolve.linalg.saddle import SaddleSolver, monomial_powers

    y, d, _ = problem(400, 2, seed=14)
    s = SaddleSolver(y, KERNELS["thin_plate_spline"], 1.0, np.zeros(400), monomial_powers(2, 1))
    c1, w1, info1 = s.solve(d[:, None], rtol=1e-10, restart=3)
    c2, w2, info2 = s.solve(d[:, None], rtol=1e-10)
    assert info1.converged and info2.converged
    assert info1.iterations > 3
    assert rel_err(c1, c2) <= 1e-6 and rel_err(w1, w2) <= 1e-6


# ----------------------------------------------------------------------------
# Bad input


def _nan_at(a, value=np.nan):
    a = a.copy()
    a.flat[3] = value
    return a


def _collinear(y, d):
    t = np.linspace(0, 1, len(y))
    return dict(y=np.stack([t, 2 * t + 1], 1), d=d)


BAD_FIT = [
    ("y 1-D", lambda y, d: dict(y=y[:, 0], d=d), ValueError, "`y` must be a 2-dim"),
    ("y 3-D", lambda y, d: dict(y=y[None], d=d), ValueError, "`y` must be a 2-dim"),
    ("d too short", lambda y, d: dict(y=y, d=d[:-1]), ValueError, "first axis of `d`"),
    ("d too long", lambda y, d: dict(y=y, d=np.r_[d, 0.0]), ValueError, "first axis of `d`"),
    ("d scalar", lambda y, d: dict(y=y, d=1.0), ValueError, "first axis of `d`"),
    ("NaN in y", lambda y, d: dict(y=_nan_at(y), d=d), ValueError, "NaN"),
    ("inf in y", lambda y, d: dict(y=_nan_at(y, np.inf), d=d), ValueError, "inf"),
    ("NaN in d", lambda y, d: dict(y=y, d=_nan_at(d)), ValueError, "NaN"),
    ("-inf in d", lambda y, d: dict(y=y, d=_nan_at(d, -np.inf)), ValueError, "inf"),
    ("unknown kernel", lambda y, d: dict(y=y, d=d, kernel="gauss"), ValueError, "kernel"),
    ("gaussian, no epsilon", lambda y, d: dict(y=y, d=d, kernel="gaussian"), ValueError, "eps"),
    (
        "multiquadric, no epsilon",
        lambda y, d: dict(y=y, d=d, kernel="multiquadric"),
        ValueError,
        "epsilon",
    ),
    *[
        (
            f"epsilon={eps}",
            lambda y, d, eps=eps: dict(y=y, d=d, kernel="gaussian", epsilon=eps),
            ValueError,
            "epsilon",
        )
        for eps in (0.0, -2.0, np.nan, np.inf)
    ],
    (
        "smoothing < 0, iterative",
        lambda y, d: dict(y=y, d=d, smoothing=-1e-3, solver="iterative"),
        ValueError,
        "smoothing",
    ),
    (
        "one smoothing < 0, iterative",
        lambda y, d: dict(y=y, d=d, smoothing=_nan_at(np.ones(len(y)), -1.0), solver="iterative"),
        ValueError,
        "smoothing",
    ),
    ("smoothing NaN", lambda y, d: dict(y=y, d=d, smoothing=np.nan), ValueError, "smoothing"),
    (
        "smoothing too short",
        lambda y, d: dict(y=y, d=d, smoothing=np.ones(len(y) - 1)),
        ValueError,
        "smoothing",
    ),
    (
        "smoothing (n, 1)",
        lambda y, d: dict(y=y, d=d, smoothing=np.ones((len(y), 1))),
        ValueError,
        "smoothing",
    ),
    (
        "duplicate points, iterative",
        lambda y, d: dict(y=np.r_[y, y[4:5]], d=np.r_[d, d[4]], solver="iterative"),
        ValueError,
        "duplicate",
    ),
    (
        "duplicate points, direct",
        lambda y, d: dict(y=np.r_[y, y[4:5]], d=np.r_[d, d[4]]),
        np.linalg.LinAlgError,
        "Singular matrix",
    ),
    ("degree -2", lambda y, d: dict(y=y, d=d, degree=-2), ValueError, "degree"),
    ("degree too high", lambda y, d: dict(y=y[:5], d=d[:5], degree=2), ValueError, "6 data"),
    ("degree 7 in 2-D", lambda y, d: dict(y=y, d=d, degree=7), ValueError, "36 data"),
    ("collinear, degree 1", _collinear, np.linalg.LinAlgError, "full column rank"),
    (
        "collinear, degree 1, iterative",
        lambda y, d: dict(**_collinear(y, d), solver="iterative"),
        np.linalg.LinAlgError,
        "full column rank",
    ),
    ("products unknown", lambda y, d: dict(y=y, d=d, products="fast"), ValueError, "products"),
    (
        "products fmm, gaussian",
        lambda y, d: dict(
            y=y, d=d, kernel="gaussian", epsilon=1.0, products="fmm", solver="iterative"
        ),
        ValueError,
        "thin_plate_spline",
    ),
    (
        "products fmm, 3-D",
        lambda y, d: dict(y=np.c_[y, y[:, :1] ** 2], d=d, products="fmm", solver="iterative"),
        ValueError,
        "2-D",
    ),
    ("solver unknown", lambda y, d: dict(y=y, d=d, solver="lu"), ValueError, "solver"),
    ("neighbors 0", lambda y, d: dict(y=y, d=d, neighbors=0), ValueError, "neighbors"),
    ("coarse < 0", lambda y, d: dict(y=y, d=d, coarse=-1), ValueError, "coarse"),
    ("coarse unknown", lambda y, d: dict(y=y, d=d, coarse="yes"), ValueError, "coarse"),
]


@pytest.mark.parametrize(
    "build,exc,match", [case[1:] for case in BAD_FIT], ids=[case[0] for case in BAD_FIT]
)
def test_bad_fit_input(build, exc, match):
    """Invalid y, d, kernel, epsilon, smoothing or degree raise with a helpful message."""
    y, d, _ = problem(30, 2, seed=10)
    with pytest.raises(exc, match=match):
        KernelInterpolator(**build(y, d))


@pytest.mark.parametrize(
    "x,match",
    [
        (np.full((4, 2), np.nan), "NaN"),
        (_nan_at(np.zeros((4, 2)), np.inf), "inf"),
        (np.zeros((4, 3)), "second axis of `x`"),
        (np.zeros(2), "`x` must be a 2-dim"),
        (np.zeros((1, 4, 2)), "`x` must be a 2-dim"),
    ],
    ids=["NaN", "inf", "3 coordinates", "1-D", "3-D"],
)
def test_bad_evaluation_points(x, match):
    """x with NaN/inf or the wrong shape raises ValueError."""
    y, d, _ = problem(30, 2, seed=10)
    f = KernelInterpolator(y, d)
    with pytest.raises(ValueError, match=match):
        f(x)
