"""``KernelInterpolator`` as a drop-in for scipy's ``RBFInterpolator``, scipy as the oracle.

Data: matplotlib's ``topobathy.npz`` sample (elevations on a longitude x latitude
grid), a few hundred grid points drawn at random, coordinates standardised.
Checked: the direct solve against scipy for every kernel (to 1e-8 where the
system is well conditioned, LAPACK's estimate), the automatic choice of the
solver, complex data, ``neighbors=k`` (scipy's local interpolants), rank-deficient
tails and repeated points, pickling (pickle and joblib), chunked evaluation,
scipy's error messages and warnings, and the iterative path's early, loud failure
on an ill-conditioned system.
"""

from __future__ import annotations

import pickle
import warnings

import joblib
import numpy as np
import pytest
from matplotlib import cbook
from numpy.linalg import LinAlgError
from scipy.interpolate import RBFInterpolator

from kernelsolve.config import config
from kernelsolve.linalg import interpolate
from kernelsolve.linalg.cg import ConvergenceWarning
from kernelsolve.linalg.interpolate import KernelInterpolator
from kernelsolve.linalg.radial import KERNELS as RADIAL_KERNELS

KERNELS = tuple(RADIAL_KERNELS)  # scipy's list, in its documentation order
EPS = 8.0  # standardised coordinates, a few hundred points: spacing ~0.1-0.2
AGREE = 1e-8  # max |ours - scipy| / max |scipy| on a well-conditioned system


def topobathy(n: int, q: int = 60, seed: int = 0):
    """``n`` data points, their elevations (km) and ``q`` other grid points."""
    data = cbook.get_sample_data("topobathy.npz")
    lon, lat = np.meshgrid(data["longitude"], data["latitude"])
    pts = np.stack([lon.ravel(), lat.ravel()], 1).astype(np.float64)
    pts = (pts - pts.mean(0)) / pts.std(0)
    z = np.asarray(data["topo"], dtype=np.float64).ravel() / 1000
    order = np.random.default_rng(seed).permutation(len(z))
    return pts[order[:n]], z[order[:n]], pts[order[n : n + q]]


def rel(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("kernel", KERNELS)
def test_direct_matches_scipy(kernel):
    """solver="direct" (the default choice here) gives scipy's interpolant to 1e-8, with
    no warning, and reports a condition estimate that says the system is well posed."""
    y, d, x = topobathy(300)
    eps = None if kernel in ("linear", "thin_plate_spline", "cubic", "quintic") else EPS
    ref = RBFInterpolator(y, d, kernel=kernel, epsilon=eps)
    f = no_warnings(KernelInterpolator, y, d, kernel=kernel, epsilon=eps)
    assert f.solver == "direct" and f.info.product == "direct"
    cond = 1 / f.info.rcond
    assert cond < 1e12
    # two backward-stable LU solves differ by up to ~cond * 2.2e-16 (quintic: cond ~1e10)
    tol = max(AGREE, 100 * cond * 2.2e-16)
    assert rel(no_warnings(f, x), ref(x)) <= tol
    assert rel(f(y), d) <= tol  # interpolates


def test_smooth_kernel_on_topobathy_is_right():
    """The reported failure: a Gaussian with epsilon 5 and smoothing 0.01 on
    standardised topobathy was 32-99% away from scipy (GMRES stalled). Now direct."""
    y, d, x = topobathy(800)
    for smoothing in (0.01, 0.0):
        kw = dict(kernel="gaussian", epsilon=5.0, smoothing=smoothing)
        f = no_warnings(KernelInterpolator, y, d, **kw)
        assert rel(f(x), RBFInterpolator(y, d, **kw)(x)) <= 1e-6


def test_auto_choice(monkeypatch):
    """ "auto": GMRES from ITERATIVE_FROM points for the kernels it suits, direct for
    the others; iterative wherever the dense system does not fit the memory budget
    ("direct" is then refused)."""
    y, d, _ = topobathy(200)
    assert KernelInterpolator(y, d).solver == "direct"
    monkeypatch.setitem(interpolate.ITERATIVE_FROM, "thin_plate_spline", 100)
    f = KernelInterpolator(y, d)
    assert f.solver == "iterative" and f.attempts == ["iterative"] and f.info.converged
    neg = KernelInterpolator(y, d, smoothing=-1e-4)  # scipy accepts it; indefinite: LU
    assert neg.solver == "direct"
    assert rel(neg(y), RBFInterpolator(y, d, smoothing=-1e-4)(y)) <= 1e-8
    assert KernelInterpolator(y, d, kernel="gaussian", epsilon=EPS).solver == "direct"
    monkeypatch.setattr(config, "dense_memory_limit", 100_000)
    assert KernelInterpolator(y, d, kernel="gaussian", epsilon=EPS).solver == "iterative"
    with pytest.raises(ValueError, match="dense_memory_limit"):
        KernelInterpolator(y, d, solver="direct")


def test_auto_falls_back_to_direct(monkeypatch):
    """ "auto" never returns GMRES's stalled answer when the dense solve fits: an
    ill-conditioned Gaussian sent to GMRES gives up and is solved directly, with scipy's
    answer and a warning that says the method (and so the cost) changed."""
    y, d, x = topobathy(400)
    monkeypatch.setitem(interpolate.ITERATIVE_FROM, "gaussian", 100)
    kw = dict(kernel="gaussian", epsilon=3.0)
    with pytest.warns(interpolate.SolverSwitchWarning, match="dense solve instead"):
        f = KernelInterpolator(y, d, **kw)
    assert f.attempts == ["iterative", "direct"] and f.solver == "direct"
    assert rel(f(x), RBFInterpolator(y, d, **kw)(x)) <= 1e-6
    assert "_solver" not in f.__dict__


@pytest.mark.parametrize("solver", ["direct", "iterative"])
def test_complex_data(solver):
    """Complex d: the interpolant of the real and imaginary parts, as scipy's."""
    y, d, x = topobathy(200)
    dc = np.stack([d, d[::-1]], 1) + 1j * np.stack([d**2, -d], 1)
    f = KernelInterpolator(y, dc, solver=solver)
    out = f(x)
    assert out.dtype == np.complex128 and out.shape == (len(x), 2)
    assert rel(out, RBFInterpolator(y, dc)(x)) <= 1e-6
    assert rel(out.imag, KernelInterpolator(y, dc.imag, solver=solver)(x)) <= 1e-12


@pytest.mark.parametrize("kernel,eps", [("thin_plate_spline", None), ("gaussian", EPS)])
def test_neighbors_matches_scipy(kernel, eps):
    """neighbors=k: each evaluation point gets the interpolant of its k nearest data
    points (scipy's meaning), also with vector data and smoothing."""
    y, d, x = topobathy(400, q=150)
    dv = np.stack([d, np.cos(d)], 1)
    kw = dict(neighbors=20, kernel=kernel, epsilon=eps, smoothing=1e-4)
    f = no_warnings(KernelInterpolator, y, dv, **kw)
    assert f.solver == "local" and f.neighbors == 20
    assert rel(f(x), RBFInterpolator(y, dv, **kw)(x)) <= AGREE
    assert f(x[:0]).shape == (0, 2)


def test_neighbors_inf_or_all_is_global():
    """neighbors=np.inf, or at least n, is the global interpolant."""
    y, d, x = topobathy(100)
    ref = KernelInterpolator(y, d)(x)
    for k in (np.inf, 100, 500):
        f = KernelInterpolator(y, d, k)  # neighbors is scipy's third positional argument
        assert f.solver == "direct" and f.neighbors == 100
        assert rel(f(x), ref) <= 1e-12


def test_rank_deficient_tail_raises_linalg_error():
    """Collinear points with a degree-1 tail: LinAlgError with scipy's wording, from the
    direct, iterative and local paths (scipy's own solve returns garbage here)."""
    t = np.linspace(0, 1, 40)
    y, d = np.stack([t, 2 * t + 1], 1), np.sin(t)
    for kw in ({}, {"solver": "iterative"}):
        with pytest.raises(LinAlgError, match="does not have full column rank"):
            KernelInterpolator(y, d, **kw)
    f = KernelInterpolator(y, d, neighbors=10)
    with pytest.raises(LinAlgError, match="does not have full column rank"):
        f(y[:3] + 0.1)


def test_repeated_points():
    """Repeated points are accepted where smoothed (scipy too: same interpolant), and
    a LinAlgError naming them where one is not smoothed."""
    y, d, x = topobathy(150)
    y2, d2 = np.r_[y, y[:5]], np.r_[d, d[:5] + 0.1]
    ref = RBFInterpolator(y2, d2, smoothing=1e-3)(x)
    for solver in ("direct", "iterative"):
        f = no_warnings(KernelInterpolator, y2, d2, smoothing=1e-3, solver=solver)
        assert rel(f(x), ref) <= 1e-6
    with pytest.raises(LinAlgError, match="points 0 and 150"):
        KernelInterpolator(y2, d2)


@pytest.mark.parametrize("kind", ["direct", "iterative", "local"])
def test_pickle_and_joblib_round_trips(kind, tmp_path):
    """pickle and joblib round trips predict exactly what the original does."""
    y, d, x = topobathy(150)
    kw = {"neighbors": 15} if kind == "local" else {"solver": kind}
    f = KernelInterpolator(y, d, **kw)
    ref = f(x)
    g = pickle.loads(pickle.dumps(f))
    assert "_solver" not in g.__dict__
    np.testing.assert_array_equal(g(x), ref)
    joblib.dump(f, tmp_path / "f.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "f.joblib")(x), ref)


def test_chunked_evaluation():
    """_chunk_evaluator(..., memory_budget=...) (scipy's hook) evaluates in chunks of
    memory_budget // (monomials + columns) + 1 points, with the same values."""
    y, d, x = topobathy(150, q=200)
    f = KernelInterpolator(y, np.stack([d, -d], 1))
    ref = f(x)
    calls = []
    real = f._chunk_evaluator

    def spy(*args, **kwargs):
        calls.append(kwargs["memory_budget"])
        return real(*args, **{**kwargs, "memory_budget": 50})  # chunks of 11 points

    f._chunk_evaluator = spy
    np.testing.assert_allclose(f(x), ref, rtol=0, atol=1e-12)
    assert calls == [1_000_000]  # scipy's budget: max(x, y, d sizes, 1e6)


BAD = [
    (dict(y=np.zeros(5), d=np.zeros(5)), "`y` must be a 2-dimensional array."),
    (dict(y=np.zeros((5, 2)), d=np.zeros(4)), "Expected the first axis of `d`"),
    (dict(y=np.eye(5, 2), d=np.zeros(5), smoothing=np.ones(3)), "Expected `smoothing` to be"),
    (dict(y=np.eye(5, 2), d=np.zeros(5), kernel="gauss"), "`kernel` must be one of"),
    (dict(y=np.eye(5, 2), d=np.zeros(5), kernel="gaussian"), "`epsilon` must be specified"),
    (dict(y=np.zeros((1, 2)), d=np.zeros(1)), "At least 3 data points are required"),
    (dict(y=np.eye(5, 2), d=np.zeros(5), degree=-2), "`degree` must be at least -1"),
]


@pytest.mark.parametrize("kw,match", BAD)
def test_errors_as_scipy(kw, match):
    """Bad arguments: ValueError with scipy's wording (both libraries checked)."""
    for cls in (RBFInterpolator, KernelInterpolator):
        with pytest.raises(ValueError, match=match):
            cls(**kw)


def test_evaluation_errors_and_warnings_as_scipy():
    """Bad evaluation points raise scipy's messages; a degree below the kernel's minimum
    warns with scipy's message, -1 does not warn."""
    y, d, _ = topobathy(30)
    for cls in (RBFInterpolator, KernelInterpolator):
        f = cls(y, d)
        with pytest.raises(ValueError, match="`x` must be a 2-dimensional array."):
            f(np.zeros(2))
        with pytest.raises(ValueError, match="Expected the second axis of `x`"):
            f(np.zeros((3, 3)))
        with pytest.warns(UserWarning, match="`degree` should not be below 1"):
            cls(y, d, kernel="cubic", degree=0)
        no_warnings(cls, y, d, kernel="cubic", degree=-1)


def test_iterative_fails_early_and_loudly():
    """A Gaussian with epsilon times the spacing far below 1 (condition ~1e20) stalls
    GMRES: the iterative fit stops after its first restart cycle (not maxiter) with a
    ConvergenceWarning that says the interpolant is not accurate and what to change."""
    y, d, _ = topobathy(500)
    with pytest.warns(ConvergenceWarning, match="NOT accurate") as caught:
        f = KernelInterpolator(y, d, kernel="gaussian", epsilon=1.0, solver="iterative")
    assert f.info.gave_up and not f.info.converged
    assert f.info.iterations <= 200  # of maxiter=1000
    message = str(caught[0].message)
    assert "solver='direct'" in message and "epsilon" in message
    assert caught[0].filename == __file__


def test_long_fits_give_up_within_a_cycle(monkeypatch):
    """Once a column has run ``GIVE_UP_AFTER`` seconds (set to 0 here), a stalled fit
    is checked every ``GIVE_UP_EVERY`` iterations, not only at a restart: large fits
    say they cannot converge before a whole cycle of products has run."""
    from kernelsolve.linalg import saddle

    monkeypatch.setattr(saddle, "GIVE_UP_AFTER", 0.0)
    y, d, _ = topobathy(500)
    with pytest.warns(ConvergenceWarning, match="NOT accurate"):
        f = KernelInterpolator(y, d, kernel="gaussian", epsilon=1.0, solver="iterative")
    assert f.info.gave_up and f.info.iterations == saddle.GIVE_UP_EVERY


def test_signature_is_scipys():
    """scipy's parameters in scipy's order with scipy's defaults; ours are keyword-only."""
    import inspect

    theirs = list(inspect.signature(RBFInterpolator).parameters.values())
    ours = list(inspect.signature(KernelInterpolator).parameters.values())
    assert [(p.name, p.kind, p.default) for p in ours[: len(theirs)]] == [
        (p.name, p.kind, p.default) for p in theirs
    ]
    assert all(p.kind == p.KEYWORD_ONLY for p in ours[len(theirs) :])
    extras = {p.name for p in ours[len(theirs) :]}
    assert {"rtol", "maxiter", "coarse", "products", "verbose", "solver"} <= extras
