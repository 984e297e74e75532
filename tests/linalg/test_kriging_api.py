"""PyKrige's API in kernelsolve's kriging classes, with PyKrige 1.7.3 as the oracle on
real data: matplotlib's Jacksboro fault DEM (longitude, latitude, elevation),
subsampled to a few hundred points so that every test takes at most about 2 s.

Covers each constructor parameter in PyKrige's positional order, the 3-D classes,
every drift term, custom and hole-effect variograms, geographic coordinates,
moving windows, pseudo-inverses, the statistics, masked arrays, pickling and
the errors for bad input (naming the argument).
"""

from __future__ import annotations

import io
import pickle
import warnings

import numpy as np
import pytest
from matplotlib import cbook  # the test extra has PyKrige, matplotlib and joblib
from pykrige.ok import OrdinaryKriging as PKOK
from pykrige.ok3d import OrdinaryKriging3D as PKOK3
from pykrige.uk import UniversalKriging as PKUK
from pykrige.uk3d import UniversalKriging3D as PKUK3

from kernelsolve.linalg.kriging import (
    OrdinaryKriging,
    OrdinaryKriging3D,
    UniversalKriging,
    UniversalKriging3D,
)

RTOL = 1e-7


def _dem():
    with cbook.get_sample_data("jacksboro_fault_dem.npz") as f:
        elev = np.asarray(f["elevation"], dtype=np.float64)
        x0, y0, d = float(f["xmin"]), float(f["ymin"]), float(f["dx"])
    rows, cols = np.indices(elev.shape)
    return x0 + d * cols.ravel(), y0 - d * rows.ravel(), elev.ravel()


LON, LAT, ELEV = _dem()


def sample(n, seed=0):
    """``n`` DEM points: (x, y) in km from the corner (euclidean), elevations in m."""
    rng = np.random.default_rng(seed)
    i = rng.choice(LON.size, n, replace=False)
    x = (LON[i] - LON.min()) * 89.0  # km per degree of longitude at 36.6 N
    y = (LAT[i] - LAT.min()) * 111.0
    return x, y, ELEV[i], i


X, Y, Z, IDX = sample(150)
GX, GY = np.linspace(1, 29, 7), np.linspace(1, 31, 5)
XT, YT = np.concatenate([GX, X[:3]]), np.concatenate([GY, GY[:2], Y[:3]])[:10]
SPH = {"sill": 9000.0, "range": 12.0, "nugget": 50.0}


def relerr(a, ref):
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-300))


def same(ours, ref, rtol=RTOL):
    for a, b in zip(ours, ref):
        assert np.shape(a) == np.shape(b)
        assert relerr(a, b) < rtol, relerr(a, b)


def quiet(cls, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(*args, **kw)


# ----------------------------------------------------------------------
# 2-D ordinary kriging
# ----------------------------------------------------------------------
def test_ok_positional_order_and_grid_masked_arrays():
    """PyKrige's positional order (..., variogram_function, nlags, weight, scaling, angle)."""
    args = (X, Y, Z, "spherical", SPH, None, 6, False, 1.5, 30.0)
    ok, ref = OrdinaryKriging(*args), PKOK(*args)
    z, ss = ok.execute("grid", GX, GY)
    assert isinstance(z, np.ma.MaskedArray) and not np.ma.is_masked(z)
    same((z, ss), ref.execute("grid", GX, GY))
    zl, sl = ok.execute("grid", GX, GY, backend="loop")
    assert not isinstance(zl, np.ma.MaskedArray)
    same((zl, sl), ref.execute("grid", GX, GY, backend="loop"))
    mask = np.zeros((GY.size, GX.size), bool)
    mask[1, 2] = mask[4, 0] = True
    zm, sm = ok.execute("masked", GX, GY, mask=mask, backend="C")
    assert zm[1, 2] is np.ma.masked and sm[4, 0] is np.ma.masked
    same((zm, sm), ref.execute("masked", GX, GY, mask=mask, backend="loop"))
    assert ok.solver == "direct"
    assert (ok.anisotropy_scaling, ok.anisotropy_angle) == (1.5, 30.0)
    np.testing.assert_allclose(ok.X_ADJUSTED, ref.X_ADJUSTED, rtol=1e-12)


@pytest.mark.parametrize("weight", [False, True])
def test_fitted_variogram_lags_and_points_match(weight):
    ok = OrdinaryKriging(X, Y, Z, "exponential", nlags=10, weight=weight)
    ref = PKOK(X, Y, Z, "exponential", nlags=10, weight=weight)
    np.testing.assert_allclose(ok.lags, ref.lags, rtol=1e-12)
    np.testing.assert_allclose(ok.semivariance, ref.semivariance, rtol=1e-12)
    np.testing.assert_allclose(
        ok.variogram_model_parameters, ref.variogram_model_parameters, rtol=1e-6
    )
    same(ok.get_variogram_points(), ref.get_variogram_points(), 1e-6)
    same(ok.execute("points", XT, YT), ref.execute("points", XT, YT), 1e-6)


def test_custom_and_hole_effect_variograms_match():
    def f(p, h):
        return p[0] * (1 - np.exp(-((h / p[1]) ** 1.5))) + p[2]

    for model, params, func in (("custom", [8000.0, 10.0, 20.0], f), ("hole-effect", SPH, None)):
        ok = OrdinaryKriging(X, Y, Z, model, params, func)
        ref = PKOK(X, Y, Z, model, params, func)
        assert ok.variogram_model == model and ok.solver == "direct"
        same(ok.execute("points", XT, YT), ref.execute("points", XT, YT))
    ok.update_variogram_model("custom", [8000.0, 10.0, 20.0], f)
    assert ok.variogram_function is f


def test_exact_values_false_and_pseudo_inverse_match():
    args = (X, Y, Z, "exponential", SPH)
    ok = OrdinaryKriging(*args, exact_values=False)
    same(
        ok.execute("points", X[:5], Y[:5]),
        PKOK(*args, exact_values=False).execute("points", X[:5], Y[:5]),
    )
    xd, yd, zd = np.append(X, X[0]), np.append(Y, Y[0]), np.append(Z, Z[0] + 10.0)
    for kind in ("pinv", "pinvh"):
        ours = OrdinaryKriging(
            xd, yd, zd, "exponential", SPH, pseudo_inv=True, pseudo_inv_type=kind
        )
        ref = PKOK(xd, yd, zd, "exponential", SPH, pseudo_inv=True, pseudo_inv_type=kind)
        same(ours.execute("points", XT, YT), ref.execute("points", XT, YT), 1e-6)
    with pytest.raises(ValueError, match="duplicate points"):
        OrdinaryKriging(xd, yd, zd, "exponential", SPH)


def test_statistics_match_pykrige():
    ok = OrdinaryKriging(X, Y, Z, "spherical", SPH, enable_statistics=True)
    ref = PKOK(X, Y, Z, "spherical", SPH, enable_statistics=True)
    for name in ("delta", "sigma", "epsilon", "Q1", "Q2", "cR"):
        np.testing.assert_allclose(getattr(ok, name), getattr(ref, name), rtol=1e-6)
    assert ok.get_statistics() == pytest.approx(ref.get_statistics(), rel=1e-6)
    np.testing.assert_allclose(ok.get_epsilon_residuals(), ref.get_epsilon_residuals(), rtol=1e-6)
    assert OrdinaryKriging(X, Y, Z, "spherical", SPH).Q1 is None  # as PyKrige's default
    uk = UniversalKriging(X[:60], Y[:60], Z[:60], "linear", [200.0, 10.0])
    ukr = PKUK(X[:60], Y[:60], Z[:60], "linear", [200.0, 10.0])
    assert uk.get_statistics() == pytest.approx(ukr.get_statistics(), rel=1e-6)


def test_print_statistics_switches_and_plots(capsys, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda: None)
    ok = OrdinaryKriging(X, Y, Z, "spherical", SPH, enable_statistics=True)
    ok.print_statistics()
    out = capsys.readouterr().out
    assert out.startswith("Q1 =") and "cR =" in out
    ok.switch_verbose()
    ok.switch_plotting()
    assert ok.verbose and ok.enable_plotting
    ok.display_variogram_model()
    ok.plot_epsilon_residuals()
    plt.close("all")


def test_geographic_coordinates_match():
    i = IDX
    lon, lat = LON[i], LAT[i]
    ok = OrdinaryKriging(
        lon,
        lat,
        Z,
        "spherical",
        {"sill": 9000, "range": 0.1, "nugget": 50},
        coordinates_type="geographic",
    )
    ref = PKOK(
        lon,
        lat,
        Z,
        "spherical",
        {"sill": 9000, "range": 0.1, "nugget": 50},
        coordinates_type="geographic",
    )
    tx, ty = lon[:8] + 0.01, lat[:8] - 0.01
    same(ok.execute("points", tx, ty), ref.execute("points", tx, ty))
    same(
        ok.execute("points", tx, ty, n_closest_points=20),
        ref.execute("points", tx, ty, backend="loop", n_closest_points=20),
    )
    fit = OrdinaryKriging(lon, lat, Z, "exponential", coordinates_type="geographic")
    reff = PKOK(lon, lat, Z, "exponential", coordinates_type="geographic")
    np.testing.assert_allclose(fit.lags, reff.lags, rtol=1e-9)
    np.testing.assert_allclose(
        fit.variogram_model_parameters, reff.variogram_model_parameters, rtol=1e-5
    )


def test_moving_window_matches_loop_backend():
    ok = OrdinaryKriging(X, Y, Z, "exponential", SPH)
    ref = PKOK(X, Y, Z, "exponential", SPH)
    for k in (2, 12):
        same(
            ok.execute("grid", GX, GY, n_closest_points=k),
            ref.execute("grid", GX, GY, backend="loop", n_closest_points=k),
        )
    with pytest.raises(ValueError, match="n_closest_points"):
        ok.execute("points", XT, YT, n_closest_points=1)


# ----------------------------------------------------------------------
# 2-D universal kriging: every drift term
# ----------------------------------------------------------------------
def test_all_drift_terms_match(monkeypatch):
    _no_pykrige_uk_statistics(monkeypatch)
    well = np.array([[10.0, 12.0, 30.0]])
    gx, gy = np.linspace(-1, 40, 30), np.linspace(0, 40, 25)
    ext = 500 + 3 * gx[None, :] + gy[:, None] ** 1.2
    kw = dict(
        drift_terms=["regional_linear", "point_log", "external_Z", "specified", "functional"],
        point_drift=well,
        external_drift=ext,
        external_drift_x=gx,
        external_drift_y=gy,
        specified_drift=[np.sin(X / 5)],
        functional_drift=[lambda x, y: x * y / 100],
    )
    uk = UniversalKriging(X, Y, Z, "spherical", SPH, **kw)
    ref = quiet(PKUK, X, Y, Z, "spherical", SPH, **kw)
    xx, yy = np.meshgrid(GX, GY)
    spec = [np.sin(xx / 5)]
    same(
        uk.execute("grid", GX, GY, specified_drift_arrays=spec),
        ref.execute("grid", GX, GY, specified_drift_arrays=spec),
        1e-6,
    )
    assert uk.solver == "direct" and uk.point_log_drift and uk.external_Z_drift
    np.testing.assert_allclose(uk.z_scalars, ref.z_scalars, rtol=1e-12)
    with pytest.raises(ValueError, match="specified_drift_arrays"):
        uk.execute("grid", GX, GY)
    with pytest.raises(TypeError, match="specified_drift_arrays"):
        uk.execute("grid", GX, GY, specified_drift_arrays=spec[0])


def _no_pykrige_uk_statistics(monkeypatch):
    """PyKrige's UniversalKriging always computes its statistics (n dense solves: 25 s
    at 400 points here); they are compared in test_statistics_match_pykrige."""
    import pykrige.uk
    import pykrige.uk3d

    for module in (pykrige.uk, pykrige.uk3d):
        monkeypatch.setattr(module, "_find_statistics", lambda *a, **k: (np.ones(3),) * 3)


def test_regional_linear_iterative_and_direct_agree(monkeypatch):
    _no_pykrige_uk_statistics(monkeypatch)
    x, y, z, _ = sample(400, seed=2)
    kw = dict(drift_terms=["regional_linear"])
    ref = PKUK(x, y, z, "exponential", SPH, **kw)
    r = ref.execute("points", XT, YT)
    for solver in ("direct", "saddle"):
        uk = UniversalKriging(x, y, z, "exponential", SPH, **kw, solver=solver)
        same(uk.execute("points", XT, YT), r, 1e-6)


# ----------------------------------------------------------------------
# 3-D
# ----------------------------------------------------------------------
Z3 = (ELEV[IDX] - 600.0) / 100.0  # a third coordinate from the elevation
V3 = np.sin(X / 4) + np.cos(Y / 6) + 0.1 * Z3
ANISO3 = (1.2, 0.7, 10.0, 20.0, 30.0)


def test_ok3d_matches_grid_points_masked_and_moving_window():
    args = (X, Y, Z3, V3, "exponential", [1.0, 8.0, 0.01], None, 6, False, *ANISO3)
    ok, ref = OrdinaryKriging3D(*args), PKOK3(*args)
    gz = np.linspace(-2, 3, 3)
    same(ok.execute("grid", GX, GY, gz), ref.execute("grid", GX, GY, gz))
    assert ok.execute("grid", GX, GY, gz)[0].shape == (3, GY.size, GX.size)
    mask = np.zeros((3, GY.size, GX.size), bool)
    mask[0, 0, 0] = True
    zm, _ = ok.execute("masked", GX, GY, gz, mask=mask)
    assert zm[0, 0, 0] is np.ma.masked
    same(
        ok.execute("points", X[:5] + 0.3, Y[:5], Z3[:5]),
        ref.execute("points", X[:5] + 0.3, Y[:5], Z3[:5]),
    )
    same(
        ok.execute("points", X[:5] + 0.3, Y[:5], Z3[:5], n_closest_points=10),
        ref.execute("points", X[:5] + 0.3, Y[:5], Z3[:5], backend="loop", n_closest_points=10),
    )
    assert (ok.anisotropy_angle_x, ok.anisotropy_scaling_z) == (10.0, 0.7)


def test_uk3d_drifts_match(monkeypatch):
    _no_pykrige_uk_statistics(monkeypatch)
    kw = dict(
        drift_terms=["regional_linear", "specified", "functional"],
        specified_drift=[np.cos(X / 3)],
        functional_drift=[lambda x, y, z: x * z / 10],
    )
    args = (X, Y, Z3, V3, "linear", [0.05, 0.001], None, 6, False, *ANISO3)
    uk, ref = UniversalKriging3D(*args, **kw), quiet(PKUK3, *args, **kw)
    px, py, pz = X[:6] + 0.2, Y[:6], Z3[:6]
    spec = [np.cos(px / 3)]
    same(
        uk.execute("points", px, py, pz, specified_drift_arrays=spec),
        ref.execute("points", px, py, pz, specified_drift_arrays=spec),
        1e-6,
    )
    fit = UniversalKriging3D(X, Y, Z3, V3, "spherical", drift_terms=["regional_linear"])
    rfit = PKUK3(X, Y, Z3, V3, "spherical", drift_terms=["regional_linear"])
    np.testing.assert_allclose(
        fit.variogram_model_parameters, rfit.variogram_model_parameters, rtol=1e-5
    )


def test_update_variogram_model_equals_fresh_object():
    ok = OrdinaryKriging3D(X, Y, Z3, V3, "linear")
    ok.update_variogram_model("exponential", [1.0, 8.0, 0.01], None, 6, False, *ANISO3)
    fresh = OrdinaryKriging3D(
        X, Y, Z3, V3, "exponential", [1.0, 8.0, 0.01], None, 6, False, *ANISO3
    )
    same(ok.execute("points", XT, YT, YT / 10), fresh.execute("points", XT, YT, YT / 10), 1e-12)


# ----------------------------------------------------------------------
# Pickling, progress, errors
# ----------------------------------------------------------------------
def _objects():
    yield OrdinaryKriging(X, Y, Z, "spherical", SPH), (XT, YT)
    yield OrdinaryKriging(X, Y, Z, "spherical", SPH, solver="saddle"), (XT, YT)
    yield (
        UniversalKriging(
            X,
            Y,
            Z,
            "linear",
            [200.0, 10.0],
            drift_terms=["regional_linear", "point_log"],
            point_drift=[[5.0, 5.0, 1.0]],
        ),
        (XT, YT),
    )
    yield OrdinaryKriging3D(X, Y, Z3, V3, "exponential", [1.0, 8.0, 0.01]), (XT, YT, YT / 10)
    yield (
        UniversalKriging3D(
            X, Y, Z3, V3, "linear", [0.05, 0.001], drift_terms=["regional_linear"], solver="saddle"
        ),
        (XT, YT, YT / 10),
    )


def test_pickle_and_joblib_round_trips_predict_identically():
    import joblib

    for obj, pts in _objects():
        a = obj.execute("points", *pts)
        b = pickle.loads(pickle.dumps(obj)).execute("points", *pts)
        buf = io.BytesIO()
        joblib.dump(obj, buf)
        buf.seek(0)
        c = joblib.load(buf).execute("points", *pts)
        for r in (b, c):
            np.testing.assert_array_equal(r[0], a[0])
            np.testing.assert_array_equal(r[1], a[1])


def test_verbose_shows_progress_of_the_direct_solve(capsys):
    ok = OrdinaryKriging(X, Y, Z, "spherical", SPH, verbose=True)
    ok.execute("grid", GX, GY)
    assert "kriging" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(pseudo_inv_type="svd"), ValueError, "pseudo_inv_type='svd'"),
        (dict(coordinates_type="polar"), ValueError, "coordinates_type='polar'"),
        (dict(variogram_model="cubic"), ValueError, "variogram_model='cubic'"),
        (dict(variogram_model="custom"), ValueError, "variogram_function"),
        (
            dict(variogram_model="custom", variogram_parameters=None, variogram_function=abs),
            ValueError,
            "variogram_parameters",
        ),
        (dict(exact_values="yes"), ValueError, "exact_values"),
        (dict(anisotropy_scaling=-1.0), ValueError, "anisotropy_scaling must be positive"),
        (dict(nlags=0), ValueError, "nlags"),
        (dict(solver="fast"), ValueError, "solver='fast'"),
        (dict(speed=3), TypeError, "speed"),
    ],
)
def test_constructor_errors_name_the_argument(kw, exc, match):
    kw = {"variogram_model": "spherical", "variogram_parameters": SPH, **kw}
    with pytest.raises(exc, match=match):
        OrdinaryKriging(X, Y, Z, **kw)


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(drift_terms=["wells"]), ValueError, "drift_terms"),
        (dict(drift_terms=["point_log"]), ValueError, "point_drift"),
        (dict(drift_terms=["point_log"], point_drift=[1.0, 2.0]), ValueError, "point_drift"),
        (
            dict(drift_terms=["external_Z"], external_drift=np.ones((3, 3))),
            ValueError,
            "external_drift_x",
        ),
        (
            dict(
                drift_terms=["external_Z"],
                external_drift=np.ones((3, 4)),
                external_drift_x=np.arange(5.0),
                external_drift_y=np.arange(3.0),
            ),
            ValueError,
            "external_drift has shape",
        ),
        (dict(drift_terms=["specified"], specified_drift=X), TypeError, "specified_drift"),
        (
            dict(drift_terms=["specified"], specified_drift=[X[:3]]),
            ValueError,
            r"specified_drift\[0\]",
        ),
        (dict(drift_terms=["functional"]), ValueError, "functional_drift"),
        (
            dict(drift_terms=["functional"], functional_drift=[1.0]),
            TypeError,
            r"functional_drift\[0\]",
        ),
    ],
)
def test_drift_errors_name_the_argument(kw, exc, match):
    with pytest.raises(exc, match=match):
        UniversalKriging(X, Y, Z, "linear", [200.0, 10.0], **kw)


def test_3d_and_execute_errors():
    with pytest.raises(ValueError, match="not supported in 3-D"):
        UniversalKriging3D(X, Y, Z3, V3, "linear", drift_terms=["point_log"])
    with pytest.raises(ValueError, match="anisotropy_scaling_z"):
        OrdinaryKriging3D(X, Y, Z3, V3, "linear", anisotropy_scaling_z=0.0)
    with pytest.raises(ValueError, match="x, y and z"):
        OrdinaryKriging3D(X, Y, Z3[:-1], V3)
    ok = OrdinaryKriging(X, Y, Z, "spherical", SPH)
    with pytest.raises(ValueError, match="backend='GPU'"):
        ok.execute("points", XT, YT, backend="GPU")
    with pytest.raises(OSError, match="mask must be given"):  # PyKrige: IOError
        ok.execute("masked", GX, GY)


@pytest.mark.parametrize("cls", [OrdinaryKriging3D, UniversalKriging3D])
def test_3d_iterative_and_direct_agree(cls):
    """The iterative solvers take 3-D points (and the 3-D regional linear drift)."""
    kw = {"drift_terms": ["regional_linear"]} if cls is UniversalKriging3D else {}
    args = (X, Y, Z3, V3, "exponential", [1.0, 8.0, 0.01], None, 6, False, *ANISO3)
    pts = (XT, YT, YT / 10)
    direct = cls(*args, **kw).execute("points", *pts)
    saddle = cls(*args, **kw, solver="saddle").execute("points", *pts)
    same(saddle, direct, 1e-7)


def test_verbose_iterative_variances_show_progress_and_hint(capsys):
    ok = OrdinaryKriging(X, Y, Z, "spherical", SPH, verbose=True, solver="saddle")
    ok.execute("points", XT, YT, variance="exact")
    err = capsys.readouterr().err
    assert "kriging variances (exact)" in err and "solver='direct'" in err


class _GSToolsLike:
    """The attributes PyKrige reads from a GSTools covariance model (gstools is not a
    test dependency): an exponential variogram and a 2-D anisotropy."""

    pykrige_kwargs = {}
    field_dim = 2
    latlon = False
    pykrige_anis = 1.5
    pykrige_angle = 30.0

    @staticmethod
    def pykrige_vario(params, h):
        return 9000.0 * (1 - np.exp(-h / 4.0)) + 50.0


def test_gstools_style_model_is_a_custom_variogram_with_its_anisotropy():
    model = _GSToolsLike()
    ok = OrdinaryKriging(X, Y, Z, model)
    assert ok.model is model and ok.variogram_model == "custom"
    assert (ok.anisotropy_scaling, ok.anisotropy_angle) == (1.5, 30.0)
    ref = PKOK(X, Y, Z, "custom", [], model.pykrige_vario, 6, False, 1.5, 30.0)
    same(ok.execute("points", XT, YT), ref.execute("points", XT, YT))
    with pytest.raises(ValueError, match="dim"):
        OrdinaryKriging3D(X, Y, Z3, V3, model)
