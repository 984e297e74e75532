"""Ordinary and universal kriging (kernelsolve/linalg/kriging.py).

Predictions and kriging variances are compared with PyKrige 1.7.3 (dense
``(n + 1)^2`` solves) for every variogram model, both solvers (saddle-point
GMRES and CG on the covariance), fitted and given parameters, anisotropy,
``exact_values`` and the grid / masked styles; the variogram formulas with
PyKrige's functions and, for matern, with the Bessel-function definition; the
experimental semivariogram with a dense ``pdist`` computation; the local
variance approximation with the exact variance; bad inputs with ValueError.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.special
from scipy.spatial.distance import pdist

from kernelsolve import autograd
from kernelsolve.config import config
from kernelsolve.engine import ir
from kernelsolve.engine.request import ReductionRequest
from kernelsolve.linalg.kriging import (
    VARIOGRAM_MODELS,
    OrdinaryKriging,
    UniversalKriging,
    Variogram,
    experimental_variogram,
    variogram_parameter_list,
)
from kernelsolve.linalg.kriging_options import LocalVarianceWarning
from kernelsolve.linalg.radial import kernel_formula

pykrige = pytest.importorskip("pykrige", reason="pykrige not installed (the oracle)")
from pykrige import variogram_models as pk_models  # noqa: E402
from pykrige.ok import OrdinaryKriging as PKOrdinary  # noqa: E402
from pykrige.uk import UniversalKriging as PKUniversal  # noqa: E402

RTOL = 1e-6


@pytest.fixture(autouse=True)
def _no_pykrige_statistics(monkeypatch):
    """PyKrige's UniversalKriging always cross-validates (n dense solves, seconds when
    OpenBLAS threads compete with the engine's OpenMP threads); the statistics are not
    compared here and do not enter ``execute``."""
    import pykrige.uk

    def stub(X, y, *args, **kwargs):
        ones = np.ones(3)
        return ones, ones, ones

    monkeypatch.setattr(pykrige.uk, "_find_statistics", stub)


# model -> PyKrige dict parameters, chosen so that PyKrige's dense solve is well conditioned
PARAMS = {
    "linear": {"slope": 0.4, "nugget": 0.02},
    "power": {"scale": 0.5, "exponent": 1.4, "nugget": 0.0},
    "gaussian": {"psill": 0.6, "range": 2.0, "nugget": 0.01},
    "spherical": {"psill": 0.6, "range": 2.5, "nugget": 0.0},
    "exponential": {"psill": 0.6, "range": 3.0, "nugget": 0.05},
}
PK_FUNCTIONS = {
    "linear": pk_models.linear_variogram_model,
    "power": pk_models.power_variogram_model,
    "gaussian": pk_models.gaussian_variogram_model,
    "spherical": pk_models.spherical_variogram_model,
    "exponential": pk_models.exponential_variogram_model,
}


def dataset(n=150, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.random(n) * 4, rng.random(n) * 3
    z = np.sin(x) + 0.5 * np.cos(2 * y) + 0.2 * rng.standard_normal(n)
    # targets: random points, two data points, one far outside the hull
    xt = np.concatenate([rng.random(25) * 4, x[:2], [6.0]])
    yt = np.concatenate([rng.random(25) * 3, y[:2], [-2.0]])
    return x, y, z, xt, yt


DATA = dataset()


def relerr(a, ref):
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def assert_matches(ours, ref, rtol=RTOL):
    (z, s), (rz, rs) = ours, ref
    assert z.shape == np.shape(rz) and s.shape == np.shape(rs)
    assert relerr(z, rz) < rtol, relerr(z, rz)
    assert relerr(s, rs) < rtol, relerr(s, rs)


def run_both(model, params, universal=False, style="points", **kw):
    x, y, z, xt, yt = DATA
    ours_cls, ref_cls = (
        (UniversalKriging, PKUniversal) if universal else (OrdinaryKriging, PKOrdinary)
    )
    extra = {"drift_terms": ["regional_linear"]} if universal else {}
    solver = kw.pop("solver", "auto")
    ok = ours_cls(x, y, z, model, params, solver=solver, **extra, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ref_cls(x, y, z, model, params, **extra, **kw)
    return ok, ok.execute(style, xt, yt), ref.execute(style, xt, yt)


# ----------------------------------------------------------------------
# Variogram models
# ----------------------------------------------------------------------
@pytest.mark.parametrize("model", sorted(PK_FUNCTIONS))
def test_variogram_matches_pykrige_function(model):
    """gamma = PyKrige's function; gamma_c = gamma - nugget for h > 0, 0 at 0."""
    p = variogram_parameter_list(model, PARAMS[model])
    v = Variogram(model, p)
    h = np.linspace(0, 6, 61)
    np.testing.assert_allclose(v.gamma(h), PK_FUNCTIONS[model](p, h), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(
        v.gamma_continuous(h[1:]), PK_FUNCTIONS[model](p, h[1:]) - v.nugget, rtol=1e-12
    )
    assert v.gamma_continuous(np.zeros(1))[0] == 0


@pytest.mark.parametrize(
    "model,key",
    [(m, None) for m in sorted(PK_FUNCTIONS)]
    + [("matern", 0.5), ("matern", 1.5), ("matern", 2.5)],
)
def test_kernel_formula_matches_numpy(model, key):
    """The engine formula of the normalized kernel equals -gamma_c / amplitude at h / length."""
    p = dict(PARAMS.get(model, {"psill": 0.6, "range": 2.0, "nugget": 0.01}))
    if key is not None:
        p["nu"] = key
    v = Variogram(model, variogram_parameter_list(model, p))
    h = np.linspace(0, 6, 61)
    pts = np.column_stack([0.6 * h, 0.8 * h]) / v.length  # 2-D, |pts| = h / length
    f = ir.make("mul", kernel_formula(v.kernel().formula, 2, 1.0), ir.var(2, ir.J, 1))
    args = (pts, np.zeros((1, 2)), np.ones((1, 1)))
    out = autograd.reduce(ReductionRequest(f, "sum", args, (ir.I, ir.J, ir.J)))
    np.testing.assert_allclose(
        -v.amplitude * out[:, 0], v.gamma_continuous(h), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("nu", [0.5, 1.5, 2.5])
def test_matern_closed_forms_match_bessel(nu):
    """Matern closed forms = 2^(1-nu)/Gamma(nu) (sqrt(2 nu) t)^nu K_nu(sqrt(2 nu) t)."""
    v = Variogram("matern", [0.7, 1.3, 0.1, nu])
    h = np.linspace(0.01, 5, 50)
    u = np.sqrt(2 * nu) * h / 1.3
    corr = 2 ** (1 - nu) / scipy.special.gamma(nu) * u**nu * scipy.special.kv(nu, u)
    np.testing.assert_allclose(v.gamma(h), 0.7 * (1 - corr) + 0.1, rtol=1e-10)


def test_parameter_conventions_follow_pykrige():
    """Lists hold the full sill, dicts the sill or the partial sill (PyKrige's rules)."""
    full = variogram_parameter_list("spherical", [1.0, 2.0, 0.25])
    np.testing.assert_allclose(full, [0.75, 2.0, 0.25])
    a = variogram_parameter_list("spherical", {"sill": 1.0, "range": 2.0, "nugget": 0.25})
    b = variogram_parameter_list("spherical", {"psill": 0.75, "range": 2.0, "nugget": 0.25})
    np.testing.assert_allclose(a, full)
    np.testing.assert_allclose(b, full)
    np.testing.assert_allclose(variogram_parameter_list("power", [1, 1.5, 0]), [1, 1.5, 0])
    assert variogram_parameter_list("linear", None) is None
    assert variogram_parameter_list("matern", {"nu": 2.5}) is None  # fit with nu = 2.5
    assert set(VARIOGRAM_MODELS) == {
        "linear",
        "power",
        "gaussian",
        "spherical",
        "exponential",
        "matern",
    }


# ----------------------------------------------------------------------
# Given parameters: predictions and variances against PyKrige
# ----------------------------------------------------------------------
@pytest.mark.parametrize("model", sorted(PARAMS))
def test_ordinary_matches_pykrige(model):
    ok, ours, ref = run_both(model, PARAMS[model])
    assert ok.info.converged
    assert_matches(ours, ref)


@pytest.mark.parametrize("model", sorted(PARAMS))
def test_universal_matches_pykrige(model):
    ok, ours, ref = run_both(model, PARAMS[model], universal=True)
    assert ok.info.converged
    assert_matches(ours, ref)


@pytest.mark.parametrize("nu,universal", [(0.5, False), (1.5, True), (2.5, False)])
def test_matern_matches_pykrige_custom(nu, universal):
    """matern is not in PyKrige: its 'custom' model with the same function is the oracle."""
    x, y, z, xt, yt = DATA
    p = [0.6, 1.2, 0.02, nu]
    if universal:
        ok = UniversalKriging(
            x,
            y,
            z,
            "matern",
            {"psill": 0.6, "range": 1.2, "nugget": 0.02, "nu": nu},
            drift_terms=["regional_linear"],
        )
        ref = PKUniversal(
            x,
            y,
            z,
            "custom",
            p,
            variogram_function=Variogram("matern", p).model.gamma,
            drift_terms=["regional_linear"],
        )
    else:
        ok = OrdinaryKriging(
            x, y, z, "matern", {"sill": 0.62, "range": 1.2, "nugget": 0.02, "nu": nu}
        )
        ref = PKOrdinary(
            x, y, z, "custom", p, variogram_function=Variogram("matern", p).model.gamma
        )
    assert_matches(ok.execute("points", xt, yt), ref.execute("points", xt, yt))


@pytest.mark.parametrize("universal", [False, True])
@pytest.mark.parametrize("solver", ["saddle", "cg"])
@pytest.mark.parametrize("model", ["gaussian", "spherical"])
def test_both_solvers_match_pykrige(model, solver, universal):
    """Bounded models with a nugget: GMRES on the saddle system and CG on the covariance."""
    params = dict(PARAMS[model], nugget=0.05)
    ok, ours, ref = run_both(model, params, universal=universal, solver=solver)
    assert ok.solver == solver
    assert_matches(ours, ref)


def test_solver_auto_choice(monkeypatch):
    """auto: direct where the dense system fits the memory budget; beyond, CG for
    smooth covariances with a nugget spanning few length scales, else saddle (the
    solve waits for execute)."""
    x, y, z, _, _ = DATA
    assert OrdinaryKriging(x, y, z, "gaussian", PARAMS["gaussian"]).solver == "direct"
    monkeypatch.setattr(config, "dense_memory_limit", 10**6)  # 5000^2 doubles do not fit
    rng = np.random.default_rng(3)
    xb, yb = rng.random(5000) * 4, rng.random(5000) * 3
    zb = np.sin(xb) + yb

    def choose(model, params):
        return OrdinaryKriging(xb, yb, zb, model, params).solver

    assert choose("gaussian", {"psill": 1, "range": 2.0, "nugget": 0.01}) == "cg"
    assert choose("matern", {"psill": 1, "range": 1.0, "nugget": 0.01, "nu": 2.5}) == "cg"
    assert choose("gaussian", {"psill": 1, "range": 2.0, "nugget": 0.0}) == "saddle"
    assert choose("gaussian", {"psill": 1, "range": 0.2, "nugget": 0.01}) == "saddle"
    assert choose("exponential", {"psill": 1, "range": 2.0, "nugget": 0.01}) == "saddle"
    assert choose("linear", {"slope": 1, "nugget": 0.0}) == "saddle"
    assert choose("spherical", {"psill": 0, "range": 2.0, "nugget": 0.3}) == "nugget"


@pytest.mark.parametrize("universal", [False, True])
@pytest.mark.parametrize("exact_values", [True, False])
def test_pure_nugget_matches_pykrige(universal, exact_values):
    """psill = 0: the predictor is the (drift) mean, the variance nugget (1 + p0' G p0)."""
    ok, ours, ref = run_both(
        "exponential",
        {"psill": 0.0, "range": 1.0, "nugget": 0.3},
        universal=universal,
        exact_values=exact_values,
    )
    assert ok.solver == "nugget"
    assert_matches(ours, ref)


@pytest.mark.parametrize("universal", [False, True])
@pytest.mark.parametrize("model", ["linear", "exponential"])
def test_exact_values_false_matches_pykrige(model, universal):
    """With a nugget and exact_values=False the data are smoothed, as in PyKrige."""
    ok, ours, ref = run_both(model, PARAMS[model], universal=universal, exact_values=False)
    assert_matches(ours, ref)
    z_at_data = ours[0][25:27]
    assert np.all(np.abs(z_at_data - DATA[2][:2]) > 1e-6)  # not interpolated: smoothed


@pytest.mark.parametrize("universal", [False, True])
def test_anisotropy_matches_pykrige(universal):
    ok, ours, ref = run_both(
        "spherical",
        {"psill": 0.6, "range": 2.0, "nugget": 0.02},
        universal=universal,
        anisotropy_scaling=2.5,
        anisotropy_angle=35.0,
    )
    assert_matches(ours, ref)


def test_grid_and_masked_styles_match_pykrige():
    x, y, z, _, _ = DATA
    p = PARAMS["exponential"]
    ok = OrdinaryKriging(x, y, z, "exponential", p)
    ref = PKOrdinary(x, y, z, "exponential", p)
    gx, gy = np.linspace(-0.5, 4.5, 7), np.linspace(0, 3, 5)
    zz, ss = ok.execute("grid", gx, gy)
    assert zz.shape == ss.shape == (5, 7)
    assert_matches((zz, ss), ref.execute("grid", gx, gy))
    mask = np.random.default_rng(1).random((5, 7)) < 0.4
    zm, sm = ok.execute("masked", gx, gy, mask=mask)
    rz, rs = ref.execute("masked", gx, gy, mask=mask)
    assert isinstance(zm, np.ma.MaskedArray) and np.array_equal(zm.mask, mask)
    assert_matches((zm.filled(0.0), sm.filled(0.0)), (rz.filled(0.0), rs.filled(0.0)))
    zt, _ = ok.execute("masked", gx, gy, mask=mask.T)  # PyKrige accepts (nx, ny) too
    assert np.array_equal(zt.mask, mask)


# ----------------------------------------------------------------------
# Fitted parameters
# ----------------------------------------------------------------------
@pytest.mark.parametrize("weight", [False, True])
@pytest.mark.parametrize("model", sorted(PARAMS))
def test_fitted_variogram_matches_pykrige(model, weight):
    """Same bins and least-squares fit as PyKrige: parameters, lags, predictions."""
    x, y, z, xt, yt = DATA
    ok = OrdinaryKriging(x, y, z, model, nlags=8, weight=weight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = PKOrdinary(x, y, z, model, nlags=8, weight=weight)
    np.testing.assert_allclose(ok.lags, ref.lags, rtol=1e-12)
    np.testing.assert_allclose(ok.semivariance, ref.semivariance, rtol=1e-12)
    p, rp = np.asarray(ok.variogram_model_parameters), np.asarray(ref.variogram_model_parameters)
    np.testing.assert_allclose(p, rp, rtol=1e-5, atol=1e-7 * np.abs(rp).max())
    assert_matches(ok.execute("points", xt, yt), ref.execute("points", xt, yt), rtol=1e-5)


def test_fitted_matern_uses_given_nu():
    x, y, z, _, _ = DATA
    ok = OrdinaryKriging(x, y, z, "matern", {"nu": 2.5}, nlags=8)
    assert ok.variogram_model_parameters[3] == 2.5
    assert ok.variogram_model_parameters[1] > 0


def test_experimental_variogram_against_pdist():
    """All pairs: PyKrige's bins computed densely with pdist; sampled pairs: close to it."""
    rng = np.random.default_rng(3)
    X = rng.random((400, 2))
    z = np.sin(5 * X[:, 0]) + X[:, 1]
    d = pdist(X)
    g = 0.5 * pdist(z[:, None], "sqeuclidean")
    edges = np.linspace(d.min(), d.max(), 7)
    edges[-1] = d.max() + 0.001
    k = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, 5)
    ref_lags = np.array([d[k == b].mean() for b in range(6)])
    ref_sv = np.array([g[k == b].mean() for b in range(6)])
    lags, sv = experimental_variogram(X, z, 6)
    np.testing.assert_allclose(lags, ref_lags, rtol=1e-10)
    np.testing.assert_allclose(sv, ref_sv, rtol=1e-10)
    lags_s, sv_s = experimental_variogram(X, z, 6, max_pairs=40000, seed=1)
    assert lags_s.shape == (6,)
    np.testing.assert_allclose(lags_s, ref_lags, rtol=0.03)
    np.testing.assert_allclose(sv_s, ref_sv, rtol=0.1)


# ----------------------------------------------------------------------
# Exactness and variances
# ----------------------------------------------------------------------
@pytest.mark.parametrize("universal", [False, True])
@pytest.mark.parametrize("model", ["linear", "spherical", "exponential", "power"])
def test_data_reproduced_without_nugget(model, universal):
    """nugget = 0: the solved interpolant passes through the data, variance ~ 0 there.

    exact_values=False, so that the values come from the solve and not from the
    coincidence shortcut."""
    x, y, z, _, _ = DATA
    params = dict(PARAMS[model], nugget=0.0)
    cls = UniversalKriging if universal else OrdinaryKriging
    ok = cls(x, y, z, model, params, exact_values=False)
    zz, ss = ok.execute("points", x[:40], y[:40])
    np.testing.assert_allclose(zz, z[:40], atol=1e-7)
    assert np.abs(ss).max() < 1e-7
    _, s_off = ok.execute("points", x[:40] + 0.05, y[:40])
    assert s_off.min() > 1e-4


def test_exact_values_shortcut_gives_datum_and_zero_variance():
    x, y, z, _, _ = DATA
    ok = OrdinaryKriging(x, y, z, "exponential", PARAMS["exponential"])  # nugget 0.05
    zz, ss = ok.execute("points", x[:10], y[:10])
    np.testing.assert_array_equal(zz, z[:10])
    np.testing.assert_array_equal(ss, 0.0)


# model -> (max, median) relative error of the local variance, about twice the measured
# values (600 points, 30 targets, 48 neighbours; measured max / median, OK and UK)
LOCAL_BOUNDS = {
    "exponential": (2e-2, 1e-4),  # 2.1e-3 / 2.5e-5, UK 8.0e-3 / 3.3e-5
    "linear": (5e-3, 1e-4),  # 3.0e-4 / 2.5e-5, UK 2.0e-3 / 4.1e-5
    "spherical": (0.06, 0.02),  # 3.0e-2 / 8.8e-3, UK 3.0e-2 / 9.1e-3
    "gaussian": (0.13, 0.06),  # 6.5e-2 / 3.0e-2, UK 6.6e-2 / 3.2e-2 (a nugget: little screening)
}


@pytest.mark.parametrize("universal", [False, True])
@pytest.mark.parametrize("model", sorted(LOCAL_BOUNDS))
def test_local_variance_is_bounded_approximation(model, universal):
    """Local kriging on the nearest data: an upper bound of the exact variance, close to it."""
    rng = np.random.default_rng(5)
    n = 600
    x, y = rng.random(n), rng.random(n)
    z = np.sin(4 * x) + np.cos(3 * y)
    params = {
        "exponential": {"psill": 1.0, "range": 0.3, "nugget": 0.0},
        "linear": {"slope": 1.0, "nugget": 0.0},
        "spherical": {"psill": 1.0, "range": 0.3, "nugget": 0.0},
        "gaussian": {"psill": 1.0, "range": 0.4, "nugget": 0.01},
    }[model]
    cls = UniversalKriging if universal else OrdinaryKriging
    ok = cls(x, y, z, model, params, variance_neighbors=48, variance_check=0, solver="saddle")
    xt, yt = rng.random(30), rng.random(30)
    z_exact, s_exact = ok.execute("points", xt, yt, variance="exact")
    assert ok.variance_info["method"] == "exact"
    z_local, s_local = ok.execute("points", xt, yt, variance="local")
    assert ok.variance_info == {"method": "local", "targets": 30, "neighbors": 48}
    np.testing.assert_array_equal(z_local, z_exact)  # predictions stay exact
    rel = (s_local - s_exact) / s_exact
    assert rel.min() > -1e-6  # an upper bound, up to rounding
    assert rel.max() < LOCAL_BOUNDS[model][0]
    assert np.median(rel) < LOCAL_BOUNDS[model][1]


def test_auto_variance_switches_to_local_and_checks():
    rng = np.random.default_rng(6)
    x, y = rng.random(300), rng.random(300)
    z = np.sin(4 * x) + np.cos(3 * y)
    p = {"psill": 1.0, "range": 0.3, "nugget": 0.0}
    ok = OrdinaryKriging(
        x, y, z, "exponential", p, exact_variance_max=20, variance_check=5, solver="saddle"
    )
    xt, yt = rng.random(30), rng.random(30)
    with pytest.warns(LocalVarianceWarning, match="solver='saddle' was asked for"):
        _, s_auto = ok.execute("points", xt, yt)
    info = ok.variance_info
    assert info["method"] == "local" and info["checked"] == 5
    _, s_exact = ok.execute("points", xt, yt, variance="exact")
    err = np.abs(s_auto - s_exact)
    assert np.sum(err < 1e-9 * s_exact.max()) >= 5  # the checked targets are exact
    assert info["max_abs_error"] <= err.max() + 1e-12
    assert info["max_rel_error"] < 0.05
    _, s_few = ok.execute("points", xt[:20], yt[:20])
    assert ok.variance_info["method"] == "exact"
    np.testing.assert_allclose(s_few, s_exact[:20], rtol=1e-12)


def test_variance_false_returns_none():
    x, y, z, xt, yt = DATA
    ok = OrdinaryKriging(x, y, z, "linear", PARAMS["linear"], variance=False)
    zz, ss = ok.execute("points", xt, yt)
    assert ss is None and zz.shape == xt.shape
    _, ss = ok.execute("points", xt, yt, variance="exact")
    assert ss.shape == xt.shape


def test_universal_without_drift_is_ordinary():
    x, y, z, xt, yt = DATA
    p = PARAMS["spherical"]
    a = UniversalKriging(x, y, z, "spherical", p, drift_terms=[]).execute("points", xt, yt)
    b = OrdinaryKriging(x, y, z, "spherical", p).execute("points", xt, yt)
    assert_matches(a, b, rtol=1e-9)


# ----------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------
def _bad(match, *args, cls=OrdinaryKriging, **kw):
    x, y, z, _, _ = DATA
    args = args or (x, y, z)
    with pytest.raises(ValueError, match=match):
        cls(*args, **kw)


def test_nan_and_length_errors():
    x, y, z, _, _ = DATA
    for name, i in (("x", 0), ("y", 1), ("z", 2)):
        arrays = [x.copy(), y.copy(), z.copy()]
        arrays[i][7] = np.nan
        _bad(rf"^{name} holds NaN", *arrays)
    _bad("same length", x, y[:-1], z)
    _bad("same length", x, y, z[:-3])
    _bad("at least 2", x[:1], y[:1], z[:1])
    _bad("x must be 1-D", np.ones((3, 4)), np.ones(12), np.ones(12))


def test_duplicate_and_collinear_points():
    x, y, z, _, _ = DATA
    xd, yd = x.copy(), y.copy()
    xd[10], yd[10] = xd[3], yd[3]
    _bad(r"duplicate points \(e.g. points 3 and 10\)", xd, yd, z)
    t = np.linspace(0, 1, 20)
    _bad(
        "collinear",
        t,
        2 * t + 1,
        np.sin(t),
        "linear",
        cls=UniversalKriging,
        drift_terms=["regional_linear"],
    )


def test_model_and_parameter_errors():
    _bad("variogram_model='cubic'", variogram_model="cubic")
    _bad(
        "range must be > 0",
        variogram_model="spherical",
        variogram_parameters={"psill": 1, "range": -1, "nugget": 0},
    )
    _bad(
        r"partial sill \(sill - nugget\) must be >= 0",
        variogram_model="gaussian",
        variogram_parameters=[0.5, 1.0, 0.8],
    )
    _bad(
        "nugget must be >= 0",
        variogram_model="linear",
        variogram_parameters={"slope": 1, "nugget": -0.1},
    )
    _bad("slope must be >= 0", variogram_model="linear", variogram_parameters=[-1, 0])
    _bad(r"exponent must be in \(0, 2\)", variogram_model="power", variogram_parameters=[1, 2, 0])
    _bad("requires", variogram_model="exponential", variogram_parameters={"range": 1, "nugget": 0})
    _bad("takes a list of 3", variogram_model="spherical", variogram_parameters=[1, 2])
    _bad(
        "nu must be one of",
        variogram_model="matern",
        variogram_parameters={"psill": 1, "range": 1, "nugget": 0, "nu": 1.0},
    )
    _bad(
        "identically zero",
        variogram_model="spherical",
        variogram_parameters={"psill": 0, "range": 1, "nugget": 0},
    )
    _bad(
        "range must be finite",
        variogram_model="spherical",
        variogram_parameters={"psill": 1, "range": np.nan, "nugget": 0},
    )
    _bad(
        "variogram_parameters must be a dict",
        variogram_model="linear",
        variogram_parameters="fast",
    )
    _bad("nlags must be >= 1", nlags=0)


def test_option_errors():
    _bad("variance='fast'", variance="fast")
    _bad("solver='fast'", solver="fast")
    _bad("solver='saddle' does not support", solver="saddle", pseudo_inv=True)
    _bad("solver='cg' needs a bounded variogram", variogram_model="linear", solver="cg")
    _bad(
        "solver='cg' needs",
        variogram_model="spherical",
        solver="cg",
        variogram_parameters={"psill": 1, "range": 1, "nugget": 0},
    )
    _bad(r"drift_terms: \['wells'\] not supported", cls=UniversalKriging, drift_terms=["wells"])
    _bad("exact_values must be", exact_values=1)
    _bad("anisotropy_scaling must be positive", anisotropy_scaling=0.0)


def test_execute_errors():
    x, y, z, xt, yt = DATA
    ok = OrdinaryKriging(x, y, z, "linear", PARAMS["linear"])
    with pytest.raises(ValueError, match="style='line'"):
        ok.execute("line", xt, yt)
    with pytest.raises(ValueError, match="same length"):
        ok.execute("points", xt, yt[:-1])
    with pytest.raises(ValueError, match="xpoints holds NaN"):
        ok.execute("points", np.where(np.arange(xt.size) == 3, np.nan, xt), yt)
    with pytest.raises(ValueError, match="mask must be given"):
        ok.execute("masked", xt[:4], yt[:3])
    with pytest.raises(ValueError, match=r"mask must have shape \(3, 4\)"):
        ok.execute("masked", xt[:4], yt[:3], mask=np.zeros((5, 5), bool))
    with pytest.raises(ValueError, match="variance='fast'"):
        ok.execute("points", xt, yt, variance="fast")
