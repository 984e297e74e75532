"""Predictions on dask arrays and xarray objects (issue 21, item 2), on a
``distributed.LocalCluster`` of two worker processes: each equals the NumPy
prediction, is lazy and of the input's type, and holds the model once."""

from __future__ import annotations

import pickle
import subprocess
import sys

# dask and xarray are in the test extra: a missing one fails, never skips
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from kernelsolve import dask_predict
from kernelsolve.linalg.gp import PosteriorMean, gp_posterior_mean
from kernelsolve.linalg.interpolate import KernelInterpolator
from kernelsolve.linalg.kriging import OrdinaryKriging, UniversalKriging
from kernelsolve.linalg.kriging3d import OrdinaryKriging3D, UniversalKriging3D
from kernelsolve.sklearn.gaussian_process import GaussianProcessRegressor
from kernelsolve.sklearn.kernel_ridge import KernelRidge

RNG = np.random.default_rng(0)
Y = RNG.random((300, 2))
D = np.sin(4 * Y[:, 0]) * Y[:, 1]
XQ = RNG.random((500, 2))


def lazy_equal(result, expected, model, *, rtol=0.0, atol=0.0):
    """``result`` is an uncomputed dask collection holding ``model`` in one task, and
    computes (on the cluster) to ``expected``."""
    assert isinstance(result, da.Array)
    assert dask_predict.model_tasks(result, model) == 1
    got = result.compute()
    assert got.shape == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)
    return got


# ----------------------------------------------------------------------
# interpolators
# ----------------------------------------------------------------------
def test_interpolator_dask_points_equal_numpy(client):
    f = KernelInterpolator(Y, D)
    out = f(da.from_array(XQ, chunks=(128, 2)))
    assert out.chunks == ((128, 128, 128, 116),)
    lazy_equal(out, f(XQ), f)


def test_two_models_on_the_same_points_keep_their_own_keys(client):
    import dask

    f, g = KernelInterpolator(Y, D), KernelInterpolator(Y, 2 * D + 1)
    a, b = f(da.from_array(XQ, chunks=(250, 2))), g(da.from_array(XQ, chunks=(250, 2)))
    assert a.name != b.name
    ra, rb = dask.compute(a, b)
    np.testing.assert_array_equal(ra, f(XQ))
    np.testing.assert_array_equal(rb, g(XQ))


def test_interpolator_grid_and_vector_values(client):
    f = KernelInterpolator(Y, np.stack([D, 2 * D + 1], axis=1), kernel="cubic")
    gx, gy = da.linspace(0, 1, 30, chunks=11), da.linspace(0, 1, 20, chunks=8)
    pts = da.stack(da.meshgrid(gx, gy), axis=-1).rechunk({-1: -1})  # (20, 30, 2)
    out = f(pts)
    assert out.shape == (20, 30, 2) and out.chunks[:2] == pts.chunks[:2]
    lazy_equal(out, f(pts.compute().reshape(-1, 2)).reshape(20, 30, 2), f)


def test_interpolator_dataarray_keeps_coordinates(client):
    f = KernelInterpolator(Y, D, kernel="thin_plate_spline")
    ids = np.arange(500) * 10
    xa = xr.DataArray(da.from_array(XQ, chunks=(100, 2)), dims=("point", "xy"))
    xa = xa.assign_coords(point=ids, label=("point", ids.astype(str)))
    out = f(xa)
    assert isinstance(out, xr.DataArray) and out.dims == ("point",)
    assert isinstance(out.data, da.Array)
    np.testing.assert_array_equal(out["point"].values, ids)
    np.testing.assert_array_equal(out["label"].values, ids.astype(str))
    np.testing.assert_array_equal(out.values, f(XQ))
    eager = f(xa.compute())  # a NumPy-backed DataArray is computed at once
    assert isinstance(eager, xr.DataArray) and isinstance(eager.data, np.ndarray)
    np.testing.assert_array_equal(eager.values, f(XQ))


def test_interpolator_dataset_of_coordinates(client):
    f = KernelInterpolator(Y, D)
    gx, gy = np.linspace(0, 1, 25), np.linspace(0, 1, 15)
    ds = xr.Dataset(
        {"east": ("x", gx), "north": ("y", gy)}, coords={"x": gx * 100, "y": gy * 100}
    ).chunk({"x": 10, "y": 4})
    out = f(ds)
    assert isinstance(out, xr.Dataset) and list(out.data_vars) == ["values"]
    v = out["values"]
    assert v.dims == ("x", "y") and isinstance(v.data, da.Array)
    np.testing.assert_array_equal(v["x"].values, gx * 100)
    ex, ny = np.meshgrid(gx, gy, indexing="ij")
    expected = f(np.stack([ex.ravel(), ny.ravel()], axis=1)).reshape(25, 15)
    np.testing.assert_allclose(v.values, expected, rtol=0, atol=1e-14)


def test_interpolator_local_neighbors(client):
    f = KernelInterpolator(Y, D, neighbors=20)
    lazy_equal(f(da.from_array(XQ, chunks=(200, 2))), f(XQ), f)


# ----------------------------------------------------------------------
# kriging
# ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def ok():
    x, y = Y[:, 0], Y[:, 1]
    return OrdinaryKriging(x, y, np.sin(4 * x) + y, variogram_model="spherical")


@pytest.mark.parametrize("style", ["grid", "masked", "points"])
def test_kriging_values_and_variances(client, ok, style):
    gx, gy = np.linspace(0, 1, 37), np.linspace(0, 1, 23)
    mask = RNG.random((23, 37)) < 0.3 if style == "masked" else None
    if style == "points":
        gx, gy = RNG.random(101), RNG.random(101)
    z0, s0 = ok.execute(style, gx, gy, mask=mask)
    z, s = ok.execute(style, da.from_array(gx, chunks=10), da.from_array(gy, chunks=7), mask=mask)
    assert z.shape == z0.shape and s.shape == s0.shape
    zc, sc = dask_predict_compute(z, s)
    np.testing.assert_allclose(zc, z0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sc, s0, rtol=1e-12, atol=1e-12)
    assert isinstance(zc, np.ma.MaskedArray)  # PyKrige's vectorized backend
    np.testing.assert_array_equal(np.ma.getmaskarray(zc), np.ma.getmaskarray(z0))
    assert dask_predict.model_tasks(z, ok) == 1


def dask_predict_compute(*arrays):
    import dask

    return dask.compute(*arrays)


def test_kriging_xarray_grid_keeps_coordinates(client, ok):
    gx, gy = np.linspace(0, 1, 37), np.linspace(0, 1, 23)
    xa = xr.DataArray(gx, dims="lon", coords={"lon": gx}).chunk(10)
    ya = xr.DataArray(gy, dims="lat", coords={"lat": gy}).chunk(6)
    z, s = ok.execute("grid", xa, ya, backend="loop")
    assert isinstance(z, xr.DataArray) and z.dims == ("lat", "lon")
    assert isinstance(z.data, da.Array) and z.data.chunks == ((6, 6, 6, 5), (10, 10, 10, 7))
    np.testing.assert_array_equal(z["lon"].values, gx)
    z0, s0 = ok.execute("grid", gx, gy, backend="loop")
    np.testing.assert_allclose(z.values, z0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.values, s0, rtol=1e-12, atol=1e-12)


def test_kriging_without_variances(client, ok):
    px, py = RNG.random(50), RNG.random(50)
    z, s = ok.execute("points", da.from_array(px, chunks=20), py, variance=False)
    assert s is None
    np.testing.assert_allclose(z.compute(), ok.execute("points", px, py)[0], rtol=1e-12)


def test_universal_kriging_with_specified_drift(client):
    x, y = Y[:, 0], Y[:, 1]
    uk = UniversalKriging(
        x, y, np.sin(4 * x) + 3 * y, drift_terms=["regional_linear", "specified"],
        specified_drift=[x * y],
    )  # fmt: skip
    gx, gy = np.linspace(0, 1, 17), np.linspace(0, 1, 13)
    drift = np.outer(gy, gx)  # x * y on the (ny, nx) grid
    z0, s0 = uk.execute("grid", gx, gy, specified_drift_arrays=[drift])
    lazy_drift = da.from_array(drift, chunks=(5, 5))
    z, s = uk.execute(
        "grid", da.from_array(gx, chunks=6), da.from_array(gy, chunks=5),
        specified_drift_arrays=[lazy_drift],
    )  # fmt: skip
    zc, sc = dask_predict_compute(z, s)
    np.testing.assert_allclose(zc, z0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sc, s0, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [OrdinaryKriging3D, UniversalKriging3D])
def test_kriging_3d_grid(client, cls):
    X = RNG.random((150, 3))
    kw = {"drift_terms": ["regional_linear"]} if cls is UniversalKriging3D else {}
    k3 = cls(*X.T, X[:, 0] + X[:, 1] * X[:, 2], variogram_model="linear", **kw)
    g = np.linspace(0, 1, 9)
    z0, s0 = k3.execute("grid", g, g[:7], g[:5])
    lazy = [da.from_array(v, chunks=c) for v, c in ((g, 4), (g[:7], 3), (g[:5], 2))]
    z, s = k3.execute("grid", *lazy)
    assert z.shape == (5, 7, 9) and z.chunks == ((2, 2, 1), (3, 3, 1), (4, 4, 1))
    zc, sc = dask_predict_compute(z, s)
    np.testing.assert_allclose(zc, z0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sc, s0, rtol=1e-12, atol=1e-12)


def test_kriging_iterative_solver_exact_variances(client):
    x, y = Y[:, 0], Y[:, 1]
    ok = OrdinaryKriging(x, y, np.sin(4 * x) + y, "exponential", solver="saddle")
    px, py = RNG.random(40), RNG.random(40)
    z0, s0 = ok.execute("points", px, py, variance="exact")
    z, s = ok.execute("points", da.from_array(px, chunks=15), py, variance="exact")
    zc, sc = dask_predict_compute(z, s)  # each worker rebuilds the solver: to rtol
    np.testing.assert_allclose(zc, z0, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(sc, s0, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------
# Gaussian processes and estimators
# ----------------------------------------------------------------------
def test_gp_posterior_mean(client):
    h = dict(lengthscale=0.3, outputscale=1.0, noise=1e-2, mean=0.1)
    m0, _ = gp_posterior_mean(Y, D, XQ, h, rank=100)
    m, info = gp_posterior_mean(Y, D, da.from_array(XQ, chunks=(200, 2)), h, rank=100)
    assert info.converged
    np.testing.assert_array_equal(m.compute(), m0)
    p = pickle.loads(pickle.dumps(PosteriorMean(Y / 0.3, np.ones((300, 1)), 0.3, 0.0)))
    lazy_equal(p(da.from_array(XQ, chunks=(250, 2))), p(XQ), p)


def test_kernel_ridge(client):
    kr = KernelRidge(kernel="rbf", alpha=0.1, gamma=2.0).fit(Y, np.stack([D, D**2], 1))
    out = kr.predict(da.from_array(XQ, chunks=(128, 2)))
    assert out.shape == (500, 2)
    lazy_equal(out, kr.predict(XQ), kr)


def test_gaussian_process_regressor_mean_and_std(client):
    from sklearn.gaussian_process.kernels import RBF

    gp = GaussianProcessRegressor(RBF(0.3), alpha=1e-2, optimizer=None).fit(Y, D)
    mean, std = gp.predict(da.from_array(XQ, chunks=(128, 2)), return_std=True)
    m0, s0 = gp.predict(XQ, return_std=True)
    assert dask_predict.model_tasks(mean, gp) == 1
    mc, sc = dask_predict_compute(mean, std)
    np.testing.assert_array_equal(mc, m0)
    np.testing.assert_array_equal(sc, s0)
    lazy_equal(gp.predict(da.from_array(XQ, chunks=(300, 2))), m0, gp)
    out = gp.predict(xr.DataArray(da.from_array(XQ, chunks=(100, 2)), dims=("p", "d")), True)
    assert [o.name for o in out] == ["mean", "std"] and out[0].dims == ("p",)
    np.testing.assert_array_equal(out[1].values, s0)


def test_model_counter_sees_a_model_per_task():
    model = KernelInterpolator(Y, D)  # pickles to ~10 kB
    x = da.zeros((100, 2), chunks=(10, 2))
    embedded = da.map_blocks(lambda b, m: b[:, 0], x, model, drop_axis=1, meta=np.empty(0))
    assert dask_predict.model_tasks(embedded, model) == 10
    assert dask_predict.model_tasks(model(x), model) == 1


# ----------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------
def test_chunked_feature_axis_is_refused():
    f = KernelInterpolator(Y, D)
    with pytest.raises(ValueError, match=r"feature axis .* split into chunks .*rechunk"):
        f(da.from_array(XQ, chunks=(100, 1)))


def test_wrong_number_of_features_is_refused():
    f = KernelInterpolator(Y, D)
    with pytest.raises(ValueError, match="fitted on 2 features, the last axis .* has 3"):
        f(da.zeros((10, 3), chunks=5))
    with pytest.raises(ValueError, match=r"expected a dask array of points of shape \(\..., 2\)"):
        f(da.zeros(10, chunks=5))
    with pytest.raises(ValueError, match="the Dataset has 3 data variables"):
        f(xr.Dataset({k: ("p", np.zeros(4)) for k in "abc"}))
    kr = KernelRidge(kernel="rbf").fit(Y, D)
    with pytest.raises(ValueError, match="X: the model was fitted on 2 features"):
        kr.predict(xr.DataArray(np.zeros((4, 3)), dims=("p", "d")))


def test_kriging_bad_input(ok):
    with pytest.raises(ValueError, match="must have the same length"):
        ok.execute("points", da.zeros(5, chunks=2), np.zeros(4))
    with pytest.raises(ValueError, match=r"mask must have shape \(4, 5\)"):
        ok.execute("masked", da.zeros(5, chunks=2), np.zeros(4), mask=np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="1-D dask array"):
        ok.execute("grid", da.zeros((5, 2), chunks=2), np.zeros(4))


def test_gp_return_cov_is_refused():
    gp = GaussianProcessRegressor(alpha=1e-2, optimizer=None).fit(Y, D)
    with pytest.raises(ValueError, match="return_cov=True .* use return_std=True"):
        gp.predict(da.from_array(XQ, chunks=(100, 2)), return_cov=True)


def test_kernelsolve_imports_without_dask():
    code = (
        "import sys; sys.modules['dask'] = sys.modules['xarray'] = None\n"
        "import numpy as np, kernelsolve\n"
        "from kernelsolve.linalg.interpolate import KernelInterpolator\n"
        "from kernelsolve.linalg.kriging import OrdinaryKriging\n"
        "y = np.random.default_rng(0).random((50, 2))\n"
        "f = KernelInterpolator(y, y[:, 0])\n"
        "assert abs(f(y[:3]) - y[:3, 0]).max() < 1e-8\n"
        "assert sys.modules['dask'] is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
