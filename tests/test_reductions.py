"""Every reduction of the LazyTensor API against a dense NumPy / torch computation.

The dense reference builds the full (M, N, D) tensor by broadcasting ``x[:, None, :]``
against ``y[None, :, :]`` and reduces it with NumPy (or torch); it never goes through
kernelsolve's engine.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import kernelsolve
from kernelsolve import LazyTensor, Pm, ReductionCall, Vi, Vj

try:
    import torch
except ImportError:  # pragma: no cover - torch is in the test extra
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")
LIBS = ["numpy", pytest.param("torch", marks=needs_torch)]
DTYPES = ["float32", "float64"]
AXES = [0, 1]
M, N = 13, 17  # different, so that a reduction over the wrong axis shows


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-12}


def to_lib(a: np.ndarray, lib: str):
    return torch.from_numpy(np.ascontiguousarray(a)) if lib == "torch" else a


def to_np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if torch is not None and isinstance(a, torch.Tensor) else a


def check_kind(res, lib, dtype, index=False):
    """``res`` is an array of the caller's library, on CPU, float dtype or int64."""
    want = "int64" if index else dtype
    if lib == "torch":
        assert isinstance(res, torch.Tensor), type(res)
        assert res.device.type == "cpu"
        assert res.dtype == getattr(torch, want), res.dtype
    else:
        assert isinstance(res, np.ndarray), type(res)
        assert res.dtype == np.dtype(want), res.dtype


def points(lib, dtype, m=M, n=N, d=3, seed=0):
    """Random (m, d) and (n, d) points as NumPy copies and as library arrays."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, d)).astype(dtype)
    y = rng.standard_normal((n, d)).astype(dtype)
    return x, y, to_lib(x, lib), to_lib(y, lib)


# Formulas: (LazyTensor builder, dense NumPy builder on (M, 1, D) and (1, N, D)).
FORMULAS = {
    "D1": (
        lambda xi, yj: -((xi - yj) ** 2).sum(-1),
        lambda X, Y: -((X - Y) ** 2).sum(-1, keepdims=True),
    ),
    "D3": (
        lambda xi, yj: (xi - yj) ** 2 - xi * yj,
        lambda X, Y: (X - Y) ** 2 - X * Y,
    ),
}


# Each (formula, reduction, dtype) is one compiled kernel (about 0.4 s to build on a
# cold cache): float32 is covered on the D = 3 formula, float64 on both.
FORMULA_DTYPES = [("D1", "float64"), ("D3", "float64"), ("D3", "float32")]


def setup(lib, dtype, formula, m=M, n=N, seed=0):
    """LazyTensor F_ij and its dense (m, n, D) NumPy counterpart (input dtype)."""
    x, y, xl, yl = points(lib, dtype, m, n, seed=seed)
    lazy, dense = FORMULAS[formula]
    F = lazy(LazyTensor(xl[:, None, :]), LazyTensor(yl[None, :, :]))
    Fd = dense(x[:, None, :], y[None, :, :])
    return F, Fd


def other_size(axis):
    """Number of output rows when reducing over ``axis``."""
    return N if axis == 0 else M


def kmin_dense(Fd, axis, K):
    """np.sort / np.argsort(kind='stable') of the dense tensor, first K along
    ``axis``, arranged as (n, K, D) and squeezed to (n, K) when D == 1."""
    order = np.argsort(Fd, axis=axis, kind="stable")
    vals = np.take_along_axis(Fd, order, axis=axis)
    if axis == 0:
        order, vals = order.transpose(1, 0, 2), vals.transpose(1, 0, 2)
    order, vals = order[:, :K], vals[:, :K]
    if Fd.shape[-1] == 1:
        order, vals = order[..., 0], vals[..., 0]
    return vals, order.astype(np.int64)


@pytest.fixture(params=["auto", "reference-tiny"])
def backend(request, monkeypatch):
    """The default target, and the NumPy reference engine with a tiny memory cap that
    forces one-pair tiles (so that merging partial results is exercised too)."""
    if request.param == "reference-tiny":
        monkeypatch.setattr(kernelsolve.config, "reference_memory_limit", 64)
        return "reference"
    return request.param


# ----------------------------------------------------------------------------
# Simple reductions: sum, min, max, argmin, argmax and their aliases
# ----------------------------------------------------------------------------

SIMPLE = {
    # name: (call on the LazyTensor, dense NumPy reference, is an index output)
    "sum": (lambda F, a: F.sum(dim=a), lambda Fd, a: Fd.sum(axis=a), False),
    "sum_reduction": (lambda F, a: F.sum_reduction(dim=a), lambda Fd, a: Fd.sum(axis=a), False),
    "min": (lambda F, a: F.min(dim=a), lambda Fd, a: Fd.min(axis=a), False),
    "max": (lambda F, a: F.max(dim=a), lambda Fd, a: Fd.max(axis=a), False),
    "argmin": (lambda F, a: F.argmin(dim=a), lambda Fd, a: Fd.argmin(axis=a), True),
    "argmax": (lambda F, a: F.argmax(dim=a), lambda Fd, a: Fd.argmax(axis=a), True),
    "min_reduction": (lambda F, a: F.min_reduction(dim=a), lambda Fd, a: Fd.min(axis=a), False),
    "max_reduction": (lambda F, a: F.max_reduction(dim=a), lambda Fd, a: Fd.max(axis=a), False),
    "argmin_reduction": (
        lambda F, a: F.argmin_reduction(dim=a),
        lambda Fd, a: Fd.argmin(axis=a),
        True,
    ),
    "argmax_reduction": (
        lambda F, a: F.argmax_reduction(dim=a),
        lambda Fd, a: Fd.argmax(axis=a),
        True,
    ),
}


@pytest.mark.parametrize("name", sorted(SIMPLE))
@pytest.mark.parametrize("formula,dtype", FORMULA_DTYPES)
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("lib", LIBS)
def test_simple_reduction_matches_dense(name, formula, axis, dtype, lib):
    """sum/min/max/argmin/argmax (and *_reduction) over i or j equal the dense reduction."""
    F, Fd = setup(lib, dtype, formula)
    call, ref, is_index = SIMPLE[name]
    res = call(F, axis)
    check_kind(res, lib, dtype, index=is_index)
    expected = ref(Fd, axis)
    assert tuple(res.shape) == (other_size(axis), Fd.shape[-1])
    if is_index:
        np.testing.assert_array_equal(to_np(res), expected)
    else:
        np.testing.assert_allclose(to_np(res), expected, **tol(dtype))


MINMAX_ARG = {
    "min_argmin": (lambda F, a: F.min_argmin(dim=a), np.min, np.argmin),
    "max_argmax": (lambda F, a: F.max_argmax(dim=a), np.max, np.argmax),
    "min_argmin_reduction": (lambda F, a: F.min_argmin_reduction(dim=a), np.min, np.argmin),
    "max_argmax_reduction": (lambda F, a: F.max_argmax_reduction(dim=a), np.max, np.argmax),
}


@pytest.mark.parametrize("name", sorted(MINMAX_ARG))
@pytest.mark.parametrize("formula,dtype", FORMULA_DTYPES)
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("lib", LIBS)
def test_min_argmin_returns_values_and_int64_indices(name, formula, axis, dtype, lib):
    """min_argmin / max_argmax return a (values, int64 indices) tuple equal to the dense one."""
    F, Fd = setup(lib, dtype, formula)
    call, vref, iref = MINMAX_ARG[name]
    res = call(F, axis)
    assert isinstance(res, tuple) and len(res) == 2
    vals, idx = res
    check_kind(vals, lib, dtype)
    check_kind(idx, lib, dtype, index=True)
    shape = (other_size(axis), Fd.shape[-1])
    assert tuple(vals.shape) == shape and tuple(idx.shape) == shape
    np.testing.assert_allclose(to_np(vals), vref(Fd, axis=axis), **tol(dtype))
    np.testing.assert_array_equal(to_np(idx), iref(Fd, axis=axis))


# ----------------------------------------------------------------------------
# K-min family
# ----------------------------------------------------------------------------

KMIN = {
    "Kmin": lambda F, K, a: F.Kmin(K, dim=a),
    "argKmin": lambda F, K, a: F.argKmin(K, dim=a),
    "Kmin_argKmin": lambda F, K, a: F.Kmin_argKmin(K, dim=a),
    "Kmin_reduction": lambda F, K, a: F.Kmin_reduction(K, dim=a),
    "argKmin_reduction": lambda F, K, a: F.argKmin_reduction(K, dim=a),
    "Kmin_argKmin_reduction": lambda F, K, a: F.Kmin_argKmin_reduction(K, dim=a),
}


def _check_kmin(name, res, Fd, axis, K, lib, dtype):
    vals_ref, idx_ref = kmin_dense(Fd, axis, K)
    D = Fd.shape[-1]
    shape = (other_size(axis), K) if D == 1 else (other_size(axis), K, D)
    if name.startswith("Kmin_argKmin"):
        assert isinstance(res, tuple) and len(res) == 2
        vals, idx = res
    elif name.startswith("Kmin"):
        vals, idx = res, None
    else:
        vals, idx = None, res
    if vals is not None:
        check_kind(vals, lib, dtype)
        assert tuple(vals.shape) == shape
        v = to_np(vals)
        assert np.all(np.diff(v, axis=1) >= 0), "Kmin values are not sorted ascending"
        np.testing.assert_allclose(v, vals_ref, **tol(dtype))
    if idx is not None:
        check_kind(idx, lib, dtype, index=True)
        assert tuple(idx.shape) == shape
        np.testing.assert_array_equal(to_np(idx), idx_ref)


@pytest.mark.parametrize("name", sorted(KMIN))
@pytest.mark.parametrize("formula,dtype", FORMULA_DTYPES)
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("lib", LIBS)
def test_kmin_family_matches_sort(name, formula, axis, dtype, lib):
    """Kmin / argKmin / Kmin_argKmin (K=4): sorted, (n, K) or (n, K, D), int64 indices,
    equal to np.sort / np.argsort(kind='stable')[..., :K]."""
    F, Fd = setup(lib, dtype, formula)
    res = KMIN[name](F, 4, axis)
    _check_kmin(name, res, Fd, axis, 4, lib, dtype)


@pytest.mark.parametrize("name", ["Kmin", "argKmin", "Kmin_argKmin"])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("lib", LIBS)
def test_kmin_with_K_equal_to_number_of_points(name, axis, lib):
    """K == number of points along the reduced axis gives the full sort."""
    F, Fd = setup(lib, "float64", "D3")
    K = Fd.shape[axis]
    res = KMIN[name](F, K, axis)
    assert K == other_size(1 - axis)
    _check_kmin(name, res, Fd, axis, K, lib, "float64")


# ----------------------------------------------------------------------------
# Log-sum-exp family
# ----------------------------------------------------------------------------


def _lse_ref(Fd, axis, lib):
    if lib == "torch":
        return torch.logsumexp(torch.from_numpy(Fd.astype(np.float64)), dim=axis).numpy()
    return scipy.special.logsumexp(Fd.astype(np.float64), axis=axis)


@pytest.mark.parametrize("alias", ["logsumexp", "logsumexp_reduction"])
@pytest.mark.parametrize("formula,dtype", FORMULA_DTYPES)
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("lib", LIBS)
def test_logsumexp_matches_scipy_and_torch(alias, formula, axis, dtype, lib):
    """logsumexp over i or j, per coordinate, equals scipy / torch logsumexp."""
    F, Fd = setup(lib, dtype, formula)
    res = getattr(F, alias)(dim=axis)
    check_kind(res, lib, dtype)
    assert tuple(res.shape) == (other_size(axis), Fd.shape[-1])
    np.testing.assert_allclose(to_np(res), _lse_ref(Fd, axis, lib), **tol(dtype))


def test_logsumexp_is_stable_for_large_values():
    """The max-shift makes log sum exp(F) exact where exp(F) overflows."""
    x, y, _, _ = points("numpy", "float64")
    F = 800.0 + LazyTensor(x[:, None, :]).sqdist(LazyTensor(y[None, :, :]))
    Fd = 800.0 + ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1, keepdims=True)
    res = F.logsumexp(dim=1)
    assert np.all(np.isfinite(res))
    np.testing.assert_allclose(res, scipy.special.logsumexp(Fd, axis=1), rtol=1e-12)


@pytest.mark.parametrize("axis", AXES)
def test_logsumexp_infinities_match_scipy(axis, backend):
    """+inf entries give +inf, -inf entries are skipped, rows of -inf give -inf, and
    inf - inf gives NaN, as scipy.special.logsumexp (also across tiles)."""
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((M, 1)), rng.standard_normal((N, 1))
    x[2], x[5], y[4], y[7] = np.inf, -np.inf, -np.inf, np.inf
    F = LazyTensor(x[:, None, :]) + LazyTensor(y[None, :, :])
    with np.errstate(invalid="ignore"):
        Fd = x[:, None, :] + y[None, :, :]
        want = scipy.special.logsumexp(Fd, axis=axis)
    got = F.logsumexp(dim=axis, backend=backend)
    assert np.isnan(want).any() and np.isposinf(want).any()
    np.testing.assert_array_equal(got, want)


def _weights(lib, dtype, axis, E=2, seed=1):
    """Positive weights indexed by the reduced axis: (N, E) for j, (M, E) for i."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 2.0, size=(N if axis == 1 else M, E)).astype(dtype)
    wl = to_lib(w, lib)
    lazy = Vj(wl) if axis == 1 else Vi(wl)
    dense = w[None, :, :] if axis == 1 else w[:, None, :]
    return lazy, dense


@pytest.mark.parametrize("E,dtype", [(1, "float64"), (2, "float64"), (2, "float32")])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("lib", LIBS)
def test_logsumexp_with_weight(E, axis, dtype, lib):
    """logsumexp(weight=w) equals log(sum(exp(F) * w)) with a result of dim(w)."""
    F, Fd = setup(lib, dtype, "D1")
    w, wd = _weights(lib, dtype, axis, E)
    res = F.logsumexp(dim=axis, weight=w)
    check_kind(res, lib, dtype)
    assert tuple(res.shape) == (other_size(axis), E)
    Fd64, wd64 = Fd.astype(np.float64), wd.astype(np.float64)
    expected = np.log((np.exp(Fd64) * wd64).sum(axis=axis))
    np.testing.assert_allclose(to_np(res), expected, **tol(dtype))


@pytest.mark.parametrize("alias", ["sumsoftmaxweight", "sumsoftmaxweight_reduction"])
@pytest.mark.parametrize("E,dtype", [(1, "float64"), (3, "float64"), (3, "float32")])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("lib", LIBS)
def test_sumsoftmaxweight(alias, E, axis, dtype, lib):
    """sumsoftmaxweight(w) equals the softmax-weighted sum of w."""
    F, Fd = setup(lib, dtype, "D1")
    w, wd = _weights(lib, dtype, axis, E)
    res = getattr(F, alias)(w, dim=axis)
    check_kind(res, lib, dtype)
    assert tuple(res.shape) == (other_size(axis), E)
    Fd64, wd64 = Fd.astype(np.float64), wd.astype(np.float64)
    soft = scipy.special.softmax(Fd64, axis=axis)
    np.testing.assert_allclose(to_np(res), (soft * wd64).sum(axis=axis), **tol(dtype))


@pytest.mark.parametrize("axis", AXES)
def test_weighted_lse_and_softmax_are_stable_for_underflow(axis):
    """logsumexp(weight=) and sumsoftmaxweight stay exact where every exp(F) underflows
    (F = -|x - y|^2 around -2700: a naive computation gives -inf and 0 / 0)."""
    x, y, _, _ = points("numpy", "float64", seed=11)
    x += 30.0
    lazy, dense = FORMULAS["D1"]
    F = lazy(LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :]))
    Fd = dense(x[:, None, :], y[None, :, :])
    assert np.all(np.exp(Fd) == 0)
    w, wd = _weights("numpy", "float64", axis, E=2)
    got = F.logsumexp(dim=axis, weight=w)
    np.testing.assert_allclose(got, scipy.special.logsumexp(Fd, axis=axis, b=wd), rtol=1e-12)
    w, wd = _weights("numpy", "float64", axis, E=3)
    got = F.sumsoftmaxweight(w, dim=axis)
    want = (scipy.special.softmax(Fd, axis=axis) * wd).sum(axis=axis)
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ----------------------------------------------------------------------------
# K @ v, K.T @ w, matvec / rmatvec
# ----------------------------------------------------------------------------


def _gauss(lib, dtype, m=M, n=N, seed=0):
    x, y, xl, yl = points(lib, dtype, m, n, seed=seed)
    K = (-LazyTensor(xl[:, None, :]).sqdist(LazyTensor(yl[None, :, :])) / 2).exp()
    Kd = np.exp(-((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / 2)
    return K, Kd


@pytest.mark.parametrize("vshape", [(N,), (N, 1), (N, 11)], ids=["1d", "2d-1", "2d-11"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", LIBS)
def test_matmul(vshape, dtype, lib):
    """K @ v and K.matvec(v) equal the dense product; 1-D v gives a 1-D result."""
    K, Kd = _gauss(lib, dtype)
    v = np.random.default_rng(2).standard_normal(vshape).astype(dtype)
    expected = Kd.astype(np.float64) @ v.astype(np.float64)
    for res in (K @ to_lib(v, lib), K.matvec(to_lib(v, lib))):
        check_kind(res, lib, dtype)
        assert tuple(res.shape) == (M,) + vshape[1:]
        np.testing.assert_allclose(to_np(res), expected, **tol(dtype))


@pytest.mark.parametrize("wshape", [(M,), (M, 1), (M, 11)], ids=["1d", "2d-1", "2d-11"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", LIBS)
def test_transpose_matmul(wshape, dtype, lib):
    """K.T @ w, K.t() @ w and K.rmatvec(w) equal Kd.T @ w."""
    K, Kd = _gauss(lib, dtype)
    w = np.random.default_rng(3).standard_normal(wshape).astype(dtype)
    expected = Kd.astype(np.float64).T @ w.astype(np.float64)
    wl = to_lib(w, lib)
    for res in (K.T @ wl, K.t() @ wl, K.rmatvec(wl)):
        check_kind(res, lib, dtype)
        assert tuple(res.shape) == (N,) + wshape[1:]
        np.testing.assert_allclose(to_np(res), expected, **tol(dtype))


def test_gaussian_matvec_large():
    """M = N = 2000, D = 3, float64: K @ b of the Gaussian kernel equals the dense product
    (several tiles of the engine are needed)."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((2000, 3)), rng.standard_normal((2000, 3))
    b = rng.standard_normal((2000, 3))
    x_i, y_j = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
    K = (-((x_i - y_j) ** 2).sum(-1) / 0.5).exp()
    Kd = np.exp(-((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / 0.5)
    res = K @ b
    assert isinstance(res, np.ndarray) and res.shape == (2000, 3)
    np.testing.assert_allclose(res, Kd @ b, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------
# Ties and NaN
# ----------------------------------------------------------------------------


def _on_points(formula, x, y, lib):
    """The LazyTensor ``formula`` on given NumPy points, and its dense counterpart."""
    lazy, dense = FORMULAS[formula]
    F = lazy(LazyTensor(to_lib(x, lib)[:, None, :]), LazyTensor(to_lib(y, lib)[None, :, :]))
    return F, dense(x[:, None, :], y[None, :, :])


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("lib", LIBS)
def test_ties_go_to_the_smallest_index(axis, lib, backend):
    """argmin / argmax / min_argmin / argKmin resolve ties to the smallest index."""
    rng = np.random.default_rng(5)  # integer-valued points: many equal values of F
    x = rng.integers(0, 2, size=(M, 3)).astype(np.float64)
    y = rng.integers(0, 2, size=(N, 3)).astype(np.float64)
    F, Fd = _on_points("D3", x, y, lib)
    assert len(np.unique(Fd)) < Fd.size // 10  # there are many ties
    kw = {"dim": axis, "backend": backend}
    np.testing.assert_array_equal(to_np(F.argmin(**kw)), Fd.argmin(axis=axis))
    np.testing.assert_array_equal(to_np(F.argmax(**kw)), Fd.argmax(axis=axis))
    np.testing.assert_array_equal(to_np(F.min_argmin(**kw)[1]), Fd.argmin(axis=axis))
    np.testing.assert_array_equal(to_np(F.max_argmax(**kw)[1]), Fd.argmax(axis=axis))
    for k in (4, Fd.shape[axis]):
        vals, idx = kmin_dense(Fd, axis, k)
        np.testing.assert_array_equal(to_np(F.argKmin(k, **kw)), idx)
        got_v, got_i = F.Kmin_argKmin(k, **kw)
        np.testing.assert_array_equal(to_np(got_i), idx)
        np.testing.assert_array_equal(to_np(got_v), vals)


def _with_nans(lib, dtype):
    """The D3 formula on points with NaN coordinates: whole rows/columns of F are NaN."""
    x, y, _, _ = points("numpy", dtype, seed=6)
    x[2, 1] = x[9, 1] = np.nan
    y[5, 0] = y[11, 0] = y[12, 2] = np.nan
    return _on_points("D3", x, y, lib)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", LIBS)
def test_nan_semantics_min_max(axis, dtype, lib, backend):
    """min/max propagate NaN and argmin/argmax return the first NaN, like np.min/np.argmin."""
    F, Fd = _with_nans(lib, dtype)
    kw = {"dim": axis, "backend": backend}
    for got, want in (
        (F.min(**kw), Fd.min(axis=axis)),
        (F.max(**kw), Fd.max(axis=axis)),
        (F.min_argmin(**kw)[0], Fd.min(axis=axis)),
        (F.max_argmax(**kw)[0], Fd.max(axis=axis)),
    ):
        assert np.isnan(want).any() and not np.isnan(want).all()
        # assert_allclose also requires the NaN positions to agree
        np.testing.assert_allclose(to_np(got), want, **tol(dtype))
    for got, want in (
        (F.argmin(**kw), Fd.argmin(axis=axis)),
        (F.argmax(**kw), Fd.argmax(axis=axis)),
        (F.min_argmin(**kw)[1], Fd.argmin(axis=axis)),
        (F.max_argmax(**kw)[1], Fd.argmax(axis=axis)),
    ):
        np.testing.assert_array_equal(to_np(got), want)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", LIBS)
def test_nan_semantics_kmin(axis, dtype, lib, backend):
    """Kmin / argKmin order NaN last, like np.sort / np.argsort(kind='stable')."""
    F, Fd = _with_nans(lib, dtype)
    for k in (4, Fd.shape[axis]):
        vals, idx = kmin_dense(Fd, axis, k)
        got = to_np(F.Kmin(k, dim=axis, backend=backend))
        np.testing.assert_allclose(got, vals, **tol(dtype))  # NaN positions must agree
        np.testing.assert_array_equal(to_np(F.argKmin(k, dim=axis, backend=backend)), idx)
        got_v, got_i = F.Kmin_argKmin(k, dim=axis, backend=backend)
        np.testing.assert_allclose(to_np(got_v), vals, **tol(dtype))
        np.testing.assert_array_equal(to_np(got_i), idx)
    assert np.isnan(vals).any()


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("lib", LIBS)
def test_nan_propagates_in_sum_and_logsumexp(axis, lib, backend):
    """sum and logsumexp are NaN exactly where the dense reduction is."""
    F, Fd = _with_nans(lib, "float64")
    want = Fd.sum(axis=axis)
    got = to_np(F.sum(dim=axis, backend=backend))
    assert np.isnan(want).any() and not np.isnan(want).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    want = scipy.special.logsumexp(Fd, axis=axis)
    got = to_np(F.logsumexp(dim=axis, backend=backend))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-10)


# ----------------------------------------------------------------------------
# Keyword arguments with pykeops' meaning
# ----------------------------------------------------------------------------

KW_REDUCTIONS = {
    "sum": (lambda F, **kw: F.sum(**kw), lambda Fd, a: Fd.sum(axis=a)),
    "min": (lambda F, **kw: F.min(**kw), lambda Fd, a: Fd.min(axis=a)),
    "argmin": (lambda F, **kw: F.argmin(**kw), lambda Fd, a: Fd.argmin(axis=a)),
    "logsumexp": (
        lambda F, **kw: F.logsumexp(**kw),
        lambda Fd, a: scipy.special.logsumexp(Fd.astype(np.float64), axis=a),
    ),
    "Kmin": (lambda F, **kw: F.Kmin(4, **kw), lambda Fd, a: kmin_dense(Fd, a, 4)[0]),
}


@pytest.mark.parametrize("name", sorted(KW_REDUCTIONS))
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("lib", LIBS)
def test_axis_and_dim_are_synonyms(name, axis, lib):
    """``axis=`` and ``dim=`` select the same reduction axis (and the negative form too)."""
    F, Fd = setup(lib, "float64", "D3")
    call, ref = KW_REDUCTIONS[name]
    by_dim, by_axis = to_np(call(F, dim=axis)), to_np(call(F, axis=axis))
    by_neg = to_np(call(F, axis=axis - 3))
    np.testing.assert_array_equal(by_dim, by_axis)
    np.testing.assert_array_equal(by_dim, by_neg)
    np.testing.assert_allclose(by_dim, ref(Fd, axis), rtol=1e-10, atol=1e-12)


def _kw_id(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items())


KWARGS = [
    {"backend": "CPU"},
    {"backend": "auto"},
    {"backend": "cpu"},
    {"backend": "reference"},
    {"backend": None},
    {"dtype_acc": "float64"},
    {"dtype_acc": "auto"},
    {"use_double_acc": True},
    {"use_double_acc": False},
    {"sum_scheme": "kahan_scheme"},
    {"sum_scheme": "block_sum"},
    {"sum_scheme": "direct_sum"},
    {"enable_chunks": False},
    {"ranges": None},
    {"backend": "CPU", "dtype_acc": "float64", "enable_chunks": False, "ranges": None},
]


SUM_TYPE = ("sum", "logsumexp")


@pytest.mark.parametrize("kwargs", KWARGS, ids=_kw_id)
@pytest.mark.parametrize("name", sorted(KW_REDUCTIONS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", LIBS)
def test_pykeops_kwargs_accepted(kwargs, name, dtype, lib):
    """backend / dtype_acc / use_double_acc / sum_scheme / enable_chunks / ranges=None
    are accepted and keep the output dtype and the result (as in pykeops,
    block_sum and kahan_scheme only on the reductions that sum)."""
    F, Fd = setup(lib, dtype, "D3")
    call, ref = KW_REDUCTIONS[name]
    if kwargs.get("sum_scheme", "direct_sum") != "direct_sum" and name not in SUM_TYPE:
        with pytest.raises(ValueError, match="only valid for sum-type reductions"):
            call(F, dim=1, **kwargs)
        return
    res = call(F, dim=1, **kwargs)
    check_kind(res, lib, dtype, index=name == "argmin")
    if name == "argmin":
        np.testing.assert_array_equal(to_np(res), ref(Fd, 1))
    else:
        np.testing.assert_allclose(to_np(res), ref(Fd, 1), **tol(dtype))


@pytest.mark.parametrize("lib", LIBS)
def test_double_accumulation_is_more_accurate_in_float32(lib):
    """dtype_acc='float64' / use_double_acc sum float32 values in double: the float32
    result is the double sum of the float32 products, rounded once."""
    rng = np.random.default_rng(7)
    x = rng.uniform(0.5, 1.5, size=(3, 1)).astype(np.float32)
    y = rng.uniform(0.5, 1.5, size=(20000, 1)).astype(np.float32)
    F = LazyTensor(to_lib(x, lib)[:, None, :]) * LazyTensor(to_lib(y, lib)[None, :, :])
    prods = (x[:, None, :] * y[None, :, :]).astype(np.float64)  # float32 products, exact in f64
    exact = prods.sum(axis=1)
    for kw in ({"dtype_acc": "float64"}, {"use_double_acc": True}):
        res = F.sum(dim=1, **kw)
        check_kind(res, lib, "float32")
        np.testing.assert_allclose(to_np(res).astype(np.float64), exact, rtol=1e-7)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("lib", LIBS)
def test_call_false_returns_reduction_call(axis, lib):
    """call=False returns a ReductionCall: called without arguments it gives the same
    result; called with new arrays (same categories, in variable order) it recomputes."""
    x, y, xl, yl = points(lib, "float64")
    p = to_lib(np.array([0.7]), lib)
    F = (-LazyTensor(xl[:, None, :]).sqdist(LazyTensor(yl[None, :, :])) * Pm(p)).exp()
    rc = F.sum(dim=axis, call=False)
    assert isinstance(rc, ReductionCall)

    def dense(x, y, p):
        return np.exp(-((x[:, None, :] - y[None, :, :]) ** 2).sum(-1, keepdims=True) * p)

    res = rc()
    check_kind(res, lib, "float64")
    np.testing.assert_allclose(to_np(res), dense(x, y, 0.7).sum(axis), rtol=1e-10)
    np.testing.assert_array_equal(to_np(res), to_np(F.sum(dim=axis)))

    x2, y2, xl2, yl2 = points(lib, "float64", m=5, n=8, seed=9)
    res2 = rc(xl2, yl2, to_lib(np.array([0.3]), lib))
    check_kind(res2, lib, "float64")
    assert tuple(res2.shape) == ((8, 1) if axis == 0 else (5, 1))
    np.testing.assert_allclose(to_np(res2), dense(x2, y2, 0.3).sum(axis), rtol=1e-10)


@pytest.mark.parametrize("lib", LIBS)
def test_call_false_argkmin(lib):
    """call=False also works for the K-min family (K is kept)."""
    F, Fd = setup(lib, "float64", "D1")
    rc = F.argKmin(4, dim=1, call=False)
    assert isinstance(rc, ReductionCall)
    np.testing.assert_array_equal(to_np(rc()), kmin_dense(Fd, 1, 4)[1])


@pytest.mark.parametrize("name", ["sum", "min", "argmin", "logsumexp"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", LIBS)
def test_out_is_filled_and_returned(name, dtype, lib):
    """out= receives the result in place and is returned."""
    F, Fd = setup(lib, dtype, "D3")
    want = to_np(getattr(F, name)(dim=1))
    np_dtype = np.int64 if name == "argmin" else dtype
    out = to_lib(np.full((M, 3), -123, dtype=np_dtype), lib)
    res = getattr(F, name)(dim=1, out=out)
    assert res is out
    np.testing.assert_array_equal(to_np(out), want)


@pytest.mark.parametrize("lib", LIBS)
def test_batched_reductions(lib):
    """A batch dimension is carried through: dim = nbatchdims (i) or nbatchdims + 1 (j)."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, M, 1, 3))
    y = rng.standard_normal((2, 1, N, 3))
    lazy, dense = FORMULAS["D3"]
    F = lazy(LazyTensor(to_lib(x, lib)), LazyTensor(to_lib(y, lib)))
    Fd = dense(x, y)
    for axis in (0, 1):
        np.testing.assert_allclose(to_np(F.sum(dim=axis + 1)), Fd.sum(axis=axis + 1), rtol=1e-10)
        np.testing.assert_array_equal(to_np(F.argmin(dim=axis + 1)), Fd.argmin(axis=axis + 1))
        vals = to_np(F.Kmin(4, dim=axis + 1))
        if axis == 0:  # (2, M, N, 3) sorted over i -> (2, N, K, 3)
            ref = np.sort(Fd, axis=1)[:, :4].transpose(0, 2, 1, 3)
        else:  # sorted over j -> (2, M, K, 3)
            ref = np.sort(Fd, axis=2)[:, :, :4]
        np.testing.assert_allclose(vals, ref, rtol=1e-10)


@pytest.mark.parametrize("lib", LIBS)
def test_non_contiguous_inputs(lib):
    """Strided views and Fortran-ordered / transposed arrays give the dense results."""
    rng = np.random.default_rng(12)
    big = rng.standard_normal((2 * M, 6))
    x = big[::2, ::2]  # (M, 3), not contiguous
    y = np.asfortranarray(rng.standard_normal((N, 3)))
    if lib == "torch":
        xl = torch.from_numpy(big)[::2, ::2]
        yl = torch.from_numpy(np.ascontiguousarray(y.T)).T
        assert not xl.is_contiguous() and not yl.is_contiguous()
    else:
        xl, yl = x, y
    lazy, dense = FORMULAS["D3"]
    F = lazy(LazyTensor(xl[:, None, :]), LazyTensor(yl[None, :, :]))
    Fd = dense(x[:, None, :], y[None, :, :])
    for axis in AXES:
        np.testing.assert_allclose(to_np(F.sum(dim=axis)), Fd.sum(axis=axis), rtol=1e-10)
        np.testing.assert_array_equal(to_np(F.argKmin(4, dim=axis)), kmin_dense(Fd, axis, 4)[1])
    K, Kd = _gauss(lib, "float64")
    vt = rng.standard_normal((11, N))
    v = vt.T  # (N, 11), Fortran order
    vl = torch.from_numpy(vt).T if lib == "torch" else v
    np.testing.assert_allclose(to_np(K @ vl), Kd @ v, rtol=1e-10)
