"""Compiled CPU target (``backend="CPU"``) against the NumPy reference engine.

Every test evaluates the same LazyTensor twice, once with ``backend="CPU"`` (the
generated C++, compiled with the host compiler) and once with
``backend="reference"``, and compares: indices must be identical, values equal
within a tight tolerance (float64: rtol 1e-12, float32: rtol 1e-5), both scaled by
the natural magnitude of each output row (sum of |F| for sums, max |F| for the
others), so that a wrong op, index or axis is orders of magnitude above it.

Compiling is the slow part (~0.3 s per kernel, then cached on disk), and a kernel
depends on the formula, reduction, K, dtype and variable dims but not on the sizes,
batch shape or strides. So most tests share one formula,
``F = (x_i - y_j) * p + x_i * y_j`` (inner dimension d = 1 or 3), and the size,
batch, stride, special-value and thread tests reuse the kernels of the reduction
matrix.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernelsolve
from kernelsolve import LazyTensor, Pm, Vi, Vj
from kernelsolve.engine import dispatch
from kernelsolve.engine.backends import cpu
from kernelsolve.engine.codegen import cpu as codegen_cpu

try:
    import torch
except ImportError:  # pragma: no cover - torch is in the test extra
    torch = None

try:  # the random-formula strategy of the property tests
    from tests.test_properties import TOL as PROP_TOL
    from tests.test_properties import along, cases, values_at
except ImportError:  # pragma: no cover
    cases = None

LIBS = ("numpy", "torch") if torch is not None else ("numpy",)
DTYPES = ("float32", "float64")
RTOL = {"float32": 1e-5, "float64": 1e-12}
TINY = {"float32": 1e-30, "float64": 1e-280}
K = 3  # K of the K-min family (one kernel per K)
M0, N0 = 37, 1500  # default sizes: N0 spans three CPU blocks (CPU_BLOCK_J = 512), ragged


# ----------------------------------------------------------------------------
# Data and formula
# ----------------------------------------------------------------------------


def rand(rng, shape, dtype, lo=-1.0, hi=1.0):
    """Uniform data, rounded to float32 so that both precisions see the same inputs."""
    return rng.uniform(lo, hi, size=shape).astype(np.float32).astype(dtype)


def formula(x, y, p):
    """The shared test formula (inner dimension that of x, y and p)."""
    return (x - y) * p + x * y


def magnitude(x, y, p):
    """Size of the terms of ``formula`` (p > 0): the scale of its rounding errors,
    which cancellation can make much larger than |F| itself."""
    return (x - y).abs() * p + (x * y).abs()


def lazy(x, y, p, lib="numpy", fn=formula):
    """F on arrays x (..., M, d), y (..., N, d) and p (d,) or (..., d)."""
    if lib == "torch":
        x, y, p = (torch.from_numpy(np.asarray(a)) for a in (x, y, p))
    P = LazyTensor(p) if p.ndim == 1 else LazyTensor(p[..., None, None, :])
    if x.ndim == 2 and y.ndim == 2:
        return fn(Vi(x), Vj(y), Pm(p))
    return fn(LazyTensor(x[..., :, None, :]), LazyTensor(y[..., None, :, :]), P)


def pair(x, y, p, lib="numpy"):
    """(F, magnitude of its terms) as LazyTensors."""
    return lazy(x, y, p, lib), lazy(x, y, p, lib, fn=magnitude)


def setup(dtype, d, M=M0, N=N0, seed=0):
    rng = np.random.default_rng(seed)
    x = rand(rng, (M, d), dtype)
    y = rand(rng, (N, d), dtype)
    p = rand(rng, (d,), dtype, 0.5, 2.0)
    return x, y, p


def as_numpy(a):
    return a.numpy() if torch is not None and isinstance(a, torch.Tensor) else np.asarray(a)


def outputs(result) -> list[np.ndarray]:
    return [as_numpy(r) for r in (result if isinstance(result, tuple) else (result,))]


def row_scale(values: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``values`` (n, ...) reshaped to broadcast against ``out`` (n, ...): one per row."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1).max(axis=1)
    return values.reshape((-1,) + (1,) * (out.ndim - 1))


def assert_same(got, want, dtype, scale=1.0, what=""):
    """Compiled ``got`` vs reference ``want`` (tuples or arrays): same shapes and dtypes,
    identical indices, values within rtol * scale (same NaN / inf pattern)."""
    got, want = outputs(got), outputs(want)
    assert len(got) == len(want), what
    for g, w in zip(got, want):
        assert g.shape == w.shape, f"{what}: shape {g.shape} != {w.shape}"
        assert g.dtype == w.dtype, f"{what}: dtype {g.dtype} != {w.dtype}"
        if g.dtype == np.int64:
            np.testing.assert_array_equal(g, w, err_msg=f"{what}: indices differ")
            continue
        sc = scale if np.isscalar(scale) else row_scale(scale, g)
        atol = RTOL[dtype] * np.where(np.isfinite(sc), sc, 0) + TINY[dtype]
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        np.testing.assert_array_equal(np.isnan(g64), np.isnan(w64), err_msg=f"{what}: NaN")
        np.testing.assert_array_equal(
            np.where(np.isinf(g64), g64, 0),
            np.where(np.isinf(w64), w64, 0),
            err_msg=f"{what}: inf",
        )
        fin = np.isfinite(w64)
        err = np.abs(g64[fin] - w64[fin])
        tol = np.broadcast_to(atol + RTOL[dtype] * np.abs(w64), w64.shape)[fin]
        if (err > tol).any():
            k = int(np.argmax(err - tol))
            raise AssertionError(
                f"{what}: {int((err > tol).sum())}/{err.size} values differ; worst: "
                f"got {g64[fin][k]!r}, reference {w64[fin][k]!r}, tolerance {tol[k]:.3g}"
            )


# Every reduction: name -> (call, kind of scale: "sum" or "max").
REDUCTIONS = {
    "sum": (lambda F, a, **kw: F.sum(dim=a, **kw), "sum"),
    "min": (lambda F, a, **kw: F.min(dim=a, **kw), "max"),
    "max": (lambda F, a, **kw: F.max(dim=a, **kw), "max"),
    "argmin": (lambda F, a, **kw: F.argmin(dim=a, **kw), "max"),
    "argmax": (lambda F, a, **kw: F.argmax(dim=a, **kw), "max"),
    "min_argmin": (lambda F, a, **kw: F.min_argmin(dim=a, **kw), "max"),
    "max_argmax": (lambda F, a, **kw: F.max_argmax(dim=a, **kw), "max"),
    "Kmin": (lambda F, a, k=K, **kw: F.Kmin(k, dim=a, **kw), "max"),
    "argKmin": (lambda F, a, k=K, **kw: F.argKmin(k, dim=a, **kw), "max"),
    "Kmin_argKmin": (lambda F, a, k=K, **kw: F.Kmin_argKmin(k, dim=a, **kw), "max"),
    "logsumexp": (lambda F, a, **kw: F.logsumexp(dim=a, **kw), "max"),
}


def scale_of(A, axis, kind, nb=0):
    """Row magnitudes for the tolerance, from the term magnitudes ``A`` of F (reduced
    by the reference engine): their sum for sums, their max (+1) otherwise."""
    dim = nb + axis
    if kind == "sum":
        return as_numpy(A.sum(dim=dim, backend="reference"))
    return as_numpy(A.max(dim=dim, backend="reference")) + 1.0


def check_reduction(FA, name, axis, dtype, nb=0, **kw):
    """Compiled vs reference for ``FA = (F, magnitude)``; returns the compiled output."""
    F, A = FA
    call, kind = REDUCTIONS[name]
    got = call(F, nb + axis, backend="CPU", **kw)
    want = call(F, nb + axis, backend="reference", **kw)
    sc = scale_of(A, axis, kind, nb)
    if nb:  # batch dims: flatten (batch..., n, d) -> rows
        got = tuple(o.reshape((-1,) + o.shape[nb + 1 :]) for o in outputs(got))
        want = tuple(o.reshape((-1,) + o.shape[nb + 1 :]) for o in outputs(want))
        sc = sc.reshape((-1,) + sc.shape[nb + 1 :])
    assert_same(got, want, dtype, sc, f"{name}(dim={nb + axis})")
    return got


# ----------------------------------------------------------------------------
# 1. Every reduction, over i and j, both dtypes, inner dims 1 and 3
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(REDUCTIONS))
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_reduction_matches_reference(dtype, d, axis, name):
    """Each reduction over i (dim=0) and j (dim=1): compiled == reference."""
    x, y, p = setup(dtype, d)
    check_reduction(pair(x, y, p), name, axis, dtype)


def weighted_setup(dtype, e, axis, seed=1):
    """Scalar F (d = 1) and a positive weight variable of dim e on the reduced axis."""
    x, y, p = setup(dtype, 1, seed=seed)
    rng = np.random.default_rng(seed + 100)
    n = len(y) if axis == 1 else len(x)
    w = rand(rng, (n, e), dtype, 0.5, 2.0)
    W = Vj(w) if axis == 1 else Vi(w)
    return pair(x, y, p), W, w


@pytest.mark.parametrize("red", ["logsumexp_weight", "sumsoftmaxweight"])
@pytest.mark.parametrize("e", [1, 3])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_reduction_matches_reference(dtype, axis, e, red):
    """logsumexp(weight=w) and sumsoftmaxweight(w), w of dim 1 or 3, over i and j."""
    (F, A), W, w = weighted_setup(dtype, e, axis)
    sc = scale_of(A, axis, "max")  # max term + 1, per row
    if red == "logsumexp_weight":
        got = F.logsumexp(dim=axis, weight=W, backend="CPU")
        want = F.logsumexp(dim=axis, weight=W, backend="reference")
        sc = sc + np.log(2 * len(w))
    else:  # weights <= 2: error <= 2 * (error of exp(F)) ~ 2 * rtol * max term
        got = F.sumsoftmaxweight(W, dim=axis, backend="CPU")
        want = F.sumsoftmaxweight(W, dim=axis, backend="reference")
        sc = 4 * sc
    assert as_numpy(got).shape == as_numpy(want).shape == (len(as_numpy(got)), e)
    assert_same(got, want, dtype, sc, red)


@pytest.mark.parametrize("cols", [1, 11])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matvec_matches_reference(dtype, axis, cols):
    """K @ v (over j) and K.T @ v (over i) with v of 1 and 11 columns."""
    x, y, p = setup(dtype, 1, seed=2)
    F, A = pair(x, y, p)
    Kop = F if axis == 1 else F.T
    n = len(y) if axis == 1 else len(x)
    v = rand(np.random.default_rng(3), (n, cols), dtype)
    var = Vj if axis == 1 else Vi
    got = Kop @ v  # compiled (the default backend)
    # the reference of K @ v: the same product reduced by the reference engine
    want = (F * var(v)).sum(dim=axis, backend="reference")
    sc = (A * var(v).abs()).sum(dim=axis, backend="reference")
    assert as_numpy(got).shape == (len(as_numpy(want)), cols)
    assert_same(got, want, dtype, sc, f"K @ v ({cols} columns, axis {axis})")
    vec = np.ascontiguousarray(v[:, 0])
    got1 = Kop @ vec  # 1-d v -> 1-d result
    want1 = (F * var(vec[:, None])).sum(dim=axis, backend="reference")[:, 0]
    assert as_numpy(got1).shape == want1.shape
    assert_same(got1, want1, dtype, sc[:, 0], "K @ v (1-d v)")


# ----------------------------------------------------------------------------
# 2. Sizes around the block length
# ----------------------------------------------------------------------------

SIZES = [
    (1, 1),
    (37, 1),
    (1, 37),
    (37, 300),
    (1, 512),
    (37, 512),
    (37, 513),
    (1, 1500),
    (37, 1500),
    (513, 37),
    (1500, 1),
]


def test_block_length_is_512():
    """The sizes below are chosen around the CPU block length."""
    assert codegen_cpu.CPU_BLOCK_J == 512


@pytest.mark.parametrize("M,N", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sizes_around_block_length(dtype, M, N):
    """N, M in {1, < 512, 512, 513, 1500}: sum, min_argmin, Kmin_argKmin (K = min(3, n)),
    logsumexp, sumsoftmaxweight and K @ v over i and j equal the reference."""
    x, y, p = setup(dtype, 3, M, N, seed=M + N)
    F = pair(x, y, p)
    for axis in (0, 1):
        n = N if axis == 1 else M
        for name in ("sum", "min_argmin", "logsumexp"):
            check_reduction(F, name, axis, dtype)
        got = check_reduction(F, "Kmin_argKmin", axis, dtype, k=min(K, n))
        assert outputs(got)[1].shape == ((M if axis == 1 else N), min(K, n), 3)

    x1, y1, p1 = setup(dtype, 1, M, N, seed=M * N)
    F1, A1 = pair(x1, y1, p1)
    rng = np.random.default_rng(7)
    wj, wi = rand(rng, (N, 3), dtype, 0.5, 2), rand(rng, (M, 3), dtype, 0.5, 2)
    for axis, W in ((1, Vj(wj)), (0, Vi(wi))):
        got = F1.sumsoftmaxweight(W, dim=axis, backend="CPU")
        want = F1.sumsoftmaxweight(W, dim=axis, backend="reference")
        sc = 4 * scale_of(A1, axis, "max")
        assert_same(got, want, dtype, sc, f"sumsoftmaxweight axis {axis}")
    v = rand(rng, (N, 11), dtype)
    want = (F1 * Vj(v)).sum(dim=1, backend="reference")
    sc = (A1 * Vj(v).abs()).sum(dim=1, backend="reference")
    assert_same(F1 @ v, want, dtype, sc, "K @ v")


# ----------------------------------------------------------------------------
# 3. Batch dimensions
# ----------------------------------------------------------------------------

BATCHES = [  # batch shapes of x, y, p
    ((2, 1), (1, 3), ()),
    ((2, 1), (1, 3), (2, 3)),
    ((2, 1), (2, 3), (1, 3)),
    ((3,), (1,), (3,)),
    ((1,), (4,), (1,)),
]


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("bx,by,bp", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_dims_match_reference(dtype, bx, by, bp, lib):
    """Broadcast batch dims of x, y and of the parameter: sum, min_argmin, Kmin_argKmin
    and logsumexp over i and j equal the reference; result batch shape is the broadcast."""
    rng = np.random.default_rng(11)
    x = rand(rng, bx + (21, 3), dtype)
    y = rand(rng, by + (530, 3), dtype)
    p = rand(rng, bp + (3,), dtype, 0.5, 2)  # bp == (): a plain (3,) parameter
    F = pair(x, y, p, lib)
    batch = np.broadcast_shapes(bx, by, bp)
    nb = len(batch)
    assert F[0].nbatchdims == nb
    for axis in (0, 1):
        for name in ("sum", "min_argmin", "Kmin_argKmin", "logsumexp"):
            got = check_reduction(F, name, axis, dtype, nb=nb)
            assert outputs(got)[0].shape[0] == int(np.prod(batch)) * (21 if axis == 1 else 530)


# ----------------------------------------------------------------------------
# 4. Non-contiguous inputs
# ----------------------------------------------------------------------------


def noncontiguous(dtype, lib, seed=5):
    """(contiguous (x, y, p), strided views of the same values) for M = 30, N = 520."""
    rng = np.random.default_rng(seed)
    xt = rand(rng, (3, 30), dtype)  # x = xt.T: a transposed view
    yy = rand(rng, (1040, 3), dtype)  # y = yy[::2]: every other row
    col = rand(rng, (30, 1), dtype)
    p = np.asarray([1.5], dtype=dtype)
    if lib == "torch":
        xt, yy, col, p = (torch.from_numpy(a) for a in (xt, yy, col, p))
        views = {
            "transposed": (xt.t(), yy[::2], p.expand(3)),
            "stride0": (col.expand(30, 3), yy[::2], p.expand(3)),
        }
    else:
        views = {
            "transposed": (xt.T, yy[::2], np.broadcast_to(p, (3,))),
            "stride0": (np.broadcast_to(col, (30, 3)), yy[::2], np.broadcast_to(p, (3,))),
        }
    return views


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("layout", ["transposed", "stride0"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_noncontiguous_inputs(dtype, layout, lib):
    """Transposed views, stride-0 broadcasts (np.broadcast_to / torch expand) and
    every-other-row slices give exactly the results of contiguous copies."""
    x, y, p = noncontiguous(dtype, lib)[layout]
    xa, ya, pa = (as_numpy(a) for a in (x, y, p))
    assert not (xa.flags.c_contiguous and ya.flags.c_contiguous and pa.flags.c_contiguous)
    assert 0 in xa.strides or not xa.flags.c_contiguous
    Fv = formula(Vi(x), Vj(y), Pm(p))
    xc, yc, pc = (np.ascontiguousarray(a) for a in (xa, ya, pa))
    if lib == "torch":
        xc, yc, pc = (torch.from_numpy(a) for a in (xc, yc, pc))
    Fc = formula(Vi(xc), Vj(yc), Pm(pc))
    for axis in (0, 1):
        for name in ("sum", "min_argmin", "Kmin_argKmin", "logsumexp"):
            call, _ = REDUCTIONS[name]
            a = outputs(call(Fv, axis, backend="CPU"))
            b = outputs(call(Fc, axis, backend="CPU"))
            for u, v in zip(a, b):
                np.testing.assert_array_equal(u, v, err_msg=f"{layout} {name}({axis})")
        Av = magnitude(Vi(x), Vj(y), Pm(p))
        check_reduction((Fv, Av), "min_argmin", axis, dtype)
        check_reduction((Fv, Av), "sum", axis, dtype)


def test_noncontiguous_batched_param():
    """A batched parameter given as a stride-0 broadcast of one row and a batched
    j-variable sliced along N: same results as contiguous copies."""
    rng = np.random.default_rng(6)
    x = rand(rng, (2, 1, 17, 3), "float64")
    y = rand(rng, (1, 3, 1100, 3), "float64")[:, :, ::2]
    p = np.broadcast_to(rand(rng, (3,), "float64", 0.5, 2), (2, 3, 3))
    Fv = lazy(x, y, p)
    Fc = lazy(*(np.ascontiguousarray(a) for a in (x, y, p)))
    for axis in (0, 1):
        for name in ("sum", "Kmin_argKmin"):
            call, _ = REDUCTIONS[name]
            a = outputs(call(Fv, 2 + axis, backend="CPU"))
            b = outputs(call(Fc, 2 + axis, backend="CPU"))
            for u, v in zip(a, b):
                np.testing.assert_array_equal(u, v)


# ----------------------------------------------------------------------------
# 5. Special values and ties
# ----------------------------------------------------------------------------


def special_data(dtype):
    """x (600, 3), y (1030, 3) on the grid k/4 (so F is computed exactly) with
    +inf / -inf / NaN rows and columns, and many ties; p = 1.

    With p = 1, F = x - y + x y: y > 0 except at special columns, so a row with
    x = +inf (-inf) is +inf (-inf) wherever y is finite."""
    rng = np.random.default_rng(8)
    x = rng.integers(-4, 5, size=(600, 3)) / 4
    y = rng.integers(1, 9, size=(1030, 3)) / 4
    y[700, 0] = np.nan  # NaN in one column (second block)
    y[5, 1], y[600, 1], y[900, 1] = np.inf, np.inf, -np.inf
    x[0] = 0.0  # F = -y: the special columns of y appear as they are
    x[1] = np.inf
    x[2] = -np.inf
    x[3, 2] = np.nan  # NaN in one coordinate of one row
    x[513, 0] = np.inf  # past the first block along i
    x[514, 1] = -np.inf
    x[520] = np.nan
    p = np.ones(3)
    return x.astype(dtype), y.astype(dtype), p.astype(dtype)


def dense(x, y, p):
    with np.errstate(all="ignore"):
        return (x[:, None, :] - y[None, :, :]) * p + x[:, None, :] * y[None, :, :]


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values_match_reference_and_numpy(dtype, axis):
    """NaN / +inf / -inf in the data: min, max, argmin, argmax, min_argmin, Kmin, argKmin,
    Kmin_argKmin, sum and logsumexp give the NaN / inf pattern and the indices of the
    reference engine, and those of NumPy (np.min / np.argmin propagate the first NaN,
    np.sort / np.argsort stable put NaN last and resolve ties to the smaller index)."""
    x, y, p = special_data(dtype)
    F = lazy(x, y, p)
    G = dense(x, y, p)
    G = G if axis == 1 else np.swapaxes(G, 0, 1)  # (n_out, n_reduced, 3)
    assert np.isnan(G).any() and np.isposinf(G).any() and np.isneginf(G).any()
    if axis == 1:  # rows of +inf / -inf everywhere
        assert np.isposinf(G).all(axis=1).any() and np.isneginf(G).all(axis=1).any()

    res = {}
    for name in REDUCTIONS:
        call, _ = REDUCTIONS[name]
        got = call(F, axis, backend="CPU")
        want = call(F, axis, backend="reference")
        assert_same(got, want, dtype, 0.0 if name != "logsumexp" else 20.0, name)
        res[name] = outputs(got)

    with np.errstate(invalid="ignore"):
        exact = {
            "min": G.min(axis=1),
            "max": G.max(axis=1),
            "argmin": G.argmin(axis=1),
            "argmax": G.argmax(axis=1),
            "Kmin": np.sort(G, axis=1, kind="stable")[:, :K],
            "argKmin": np.argsort(G, axis=1, kind="stable")[:, :K],
            "sum": G.sum(axis=1),  # exact: grid values, no rounding
        }
    for name, want in exact.items():
        np.testing.assert_array_equal(res[name][0], want, err_msg=f"{name} vs NumPy")
    np.testing.assert_array_equal(res["min_argmin"][0], exact["min"])
    np.testing.assert_array_equal(res["min_argmin"][1], exact["argmin"])
    np.testing.assert_array_equal(res["max_argmax"][1], exact["argmax"])
    np.testing.assert_array_equal(res["Kmin_argKmin"][0], exact["Kmin"])
    np.testing.assert_array_equal(res["Kmin_argKmin"][1], exact["argKmin"])

    lse = res["logsumexp"][0]
    has_nan = np.isnan(G).any(axis=1)
    has_pinf = np.isposinf(G).any(axis=1)
    all_ninf = np.isneginf(G).all(axis=1)
    np.testing.assert_array_equal(np.isnan(lse), has_nan, err_msg="logsumexp NaN pattern")
    np.testing.assert_array_equal(np.isposinf(lse), has_pinf & ~has_nan, err_msg="+inf")
    np.testing.assert_array_equal(np.isneginf(lse), all_ninf, err_msg="-inf")


@pytest.mark.parametrize("dtype", DTYPES)
def test_ties_resolve_to_smallest_index(dtype):
    """Grid data with many exact ties (one row constant): argmin / argmax / argKmin pick
    the smallest indices first, as the reference and np.argsort(kind="stable") do."""
    rng = np.random.default_rng(9)
    x = (rng.integers(-2, 3, size=(40, 3)) / 2).astype(dtype)
    x[0] = 0.0
    y = (rng.integers(-2, 3, size=(1100, 3)) / 2).astype(dtype)
    y[:, 2] = 0.5  # column constant: every value of coordinate 2 of a row ties
    p = np.ones(3, dtype=dtype)
    F = lazy(x, y, p)
    G = dense(x, y, p)
    for axis in (0, 1):
        Ga = G if axis == 1 else np.swapaxes(G, 0, 1)
        for name in ("argmin", "argmax", "argKmin", "min_argmin", "Kmin_argKmin"):
            call, _ = REDUCTIONS[name]
            assert_same(call(F, axis, backend="CPU"), call(F, axis, backend="reference"),
                        dtype, 0.0, name)  # fmt: skip
        np.testing.assert_array_equal(
            as_numpy(F.argmin(dim=axis, backend="CPU")), Ga.argmin(axis=1)
        )
        np.testing.assert_array_equal(
            as_numpy(F.argKmin(K, dim=axis, backend="CPU")),
            np.argsort(Ga, axis=1, kind="stable")[:, :K],
        )
    assert (as_numpy(F.argKmin(K, dim=1, backend="CPU"))[:, :, 2] == [0, 1, 2]).all()


# ----------------------------------------------------------------------------
# 6. Random formulas (hypothesis)
# ----------------------------------------------------------------------------

PROP_REDUCTIONS = ("sum", "min_argmin", "max_argmax", "Kmin_argKmin", "logsumexp")


@pytest.mark.skipif(cases is None, reason="tests/test_properties.py not importable")
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_random_formulas_compiled_vs_reference(data):
    """Random formulas (the strategy of tests/test_properties.py), float32 and float64:
    one drawn reduction over a drawn axis (one new kernel per example), compiled vs
    reference, both within the dense error model; the dense values at the compiled
    indices are the extrema."""
    case = data.draw(cases(), label="case")
    dtype = case.dtype  # drawn from float32 / float64 by the strategy
    name = data.draw(st.sampled_from(PROP_REDUCTIONS), label="reduction")
    axis = data.draw(st.integers(0, 1), label="axis")
    F = case.lazy()
    values, err = case.reference()
    G, E = along(values, axis), along(err, axis)  # (n_out, n, D), float64
    n = G.shape[-2]
    rtol, atol = PROP_TOL[dtype]
    k = data.draw(st.integers(1, n), label="K")
    call, _ = REDUCTIONS[name]
    kw = {"k": k} if name.startswith("Kmin") else {}
    got = outputs(call(F, axis, backend="CPU", **kw))
    want = outputs(call(F, axis, backend="reference", **kw))
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
    D = G.shape[-1]
    if name == "sum":
        tol = 2 * (rtol * np.abs(G).sum(axis=-2) + E.sum(axis=-2)) + atol
    elif name == "logsumexp":
        tol = 2 * (rtol * (np.abs(G).max(axis=-2) + 1) + E.max(axis=-2)) + atol
    else:
        tol = 2 * (rtol * np.abs(G).max(axis=-2) + E.max(axis=-2)) + atol
    g0, w0 = got[0].astype(np.float64), want[0].astype(np.float64)
    if name == "Kmin_argKmin":
        shape = g0.shape if D > 1 else g0.shape + (1,)
        g0, w0 = g0.reshape(shape), w0.reshape(shape)
        idx = got[1].reshape(shape)
        tol = tol[..., None, :]
        assert ((0 <= idx) & (idx < n)).all()
        at = values_at(G, idx)
        assert (np.abs(at - np.sort(G, axis=-2)[..., :k, :]) <= 2 * tol).all(), "argKmin"
    elif name in ("min_argmin", "max_argmax"):
        idx = got[1]
        assert ((0 <= idx) & (idx < n)).all()
        at = values_at(G, idx[..., None, :])[..., 0, :]
        ext = G.min(axis=-2) if name == "min_argmin" else G.max(axis=-2)
        assert (np.abs(at - ext) <= 2 * tol).all(), f"{name}: value at index not extremal"
    bad = ~(np.abs(g0 - w0) <= tol)
    assert not bad.any(), f"{name}(dim={axis}): compiled {g0[bad][:3]} vs reference {w0[bad][:3]}"


# ----------------------------------------------------------------------------
# 7. The inline exp of the CPU target
# ----------------------------------------------------------------------------


def compiled_unary(x: np.ndarray, op: str) -> np.ndarray:
    """``x_i.<op>()`` by the compiled kernel: a sum over N = 1."""
    out = getattr(Vi(x[:, None]), op)().sum(dim=1, backend="CPU")
    assert out.shape == (len(x), 1) and out.dtype == x.dtype
    return out[:, 0]


def compiled_exp(x: np.ndarray) -> np.ndarray:
    return compiled_unary(x, "exp")


def exp_grid(dtype):
    rng = np.random.default_rng(10)
    parts = [
        np.linspace(-110, 90, 400_001),
        rng.uniform(-110, 90, 100_000),
        np.linspace(-1, 1, 20_001),
        np.arange(-110, 91, dtype=np.float64),  # integers: r = 0 exactly
    ]
    if dtype == "float32":
        parts += [np.linspace(-106, -100, 20_001), np.linspace(88.70, 88.75, 20_001)]
    else:
        parts += [np.linspace(-760, 715, 200_001), np.linspace(709.7, 709.8, 20_001)]
    return np.concatenate(parts).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inline_exp_accuracy(dtype):
    """ks_exp vs np.exp: at most 2 ulp relative error where np.exp is a normal number,
    exactly 0 where it is subnormal (kernels flush subnormal results: ks_flush_guard in
    cpu_math.h) or underflows, +inf exactly where it overflows."""
    x = exp_grid(dtype)
    got = compiled_exp(x)
    with np.errstate(all="ignore"):
        ref = np.exp(x)
        true = np.exp(x.astype(np.float64))  # exact reference for float32 inputs
    fi = np.finfo(dtype)
    normal = np.isfinite(ref) & (ref >= fi.tiny)
    # float32: against the exact value (np.exp in float64 of the float32 input), since
    # NumPy's own float32 exp is up to ~2.3 ulp off (measured); float64: against np.exp.
    oracle = true if dtype == "float32" else ref
    rel = np.abs(got[normal].astype(np.float64) - oracle[normal]) / oracle[normal]
    bound = 2 * fi.eps  # 4.4e-16 (float64), 2.4e-7 (float32)
    worst = int(np.argmax(rel))
    assert rel.max() <= bound, (
        f"exp({x[normal][worst]!r}) = {got[normal][worst]!r}, exact: {oracle[normal][worst]!r}, "
        f"relative error {rel.max():.3g} > {bound:.3g}"
    )

    sub = np.isfinite(ref) & (ref < fi.tiny)
    assert sub.sum() > 100
    assert (got[sub] == 0).all(), "subnormal results must be flushed to 0 in a kernel"

    lo = -104.0 if dtype == "float32" else -746.0
    assert (got[x < lo] == 0).all(), "exp must underflow to exactly 0"
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref), err_msg="overflow to +inf")
    assert np.isposinf(got[x > (88.73 if dtype == "float32" else 709.79)]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_inline_exp_special_values(dtype):
    """exp(+inf) = inf, exp(-inf) = 0, exp(NaN) = NaN, exp(+-0) = 1 exactly, at the
    overflow threshold as np.exp."""
    big = np.finfo(dtype).max
    x = np.array([np.inf, -np.inf, np.nan, -0.0, 0.0, 1.0, -big, big], dtype=dtype)
    got = compiled_exp(x)
    assert got[0] == np.inf and got[1] == 0 and np.isnan(got[2])
    assert got[3] == 1 and got[4] == 1 and got[6] == 0 and got[7] == np.inf
    assert abs(float(got[5]) - np.e) <= 2 * np.finfo(dtype).eps * np.e
    # largest argument with a finite result, and the next float: as np.exp
    top = np.log(np.float64(big))
    edge = np.array([top], dtype=dtype)
    edge = np.concatenate([np.nextafter(edge, -np.inf), edge, np.nextafter(edge, np.inf)])
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(np.isinf(compiled_exp(edge)), np.isinf(np.exp(edge)))


def compiled_log(x: np.ndarray) -> np.ndarray:
    return compiled_unary(x, "log")


def log_grid(dtype):
    rng = np.random.default_rng(11)
    fi = np.finfo(dtype)
    parts = [
        np.linspace(0.5, 2.0, 200_001),  # around 1, where log is small
        np.geomspace(float(fi.tiny), float(fi.max), 200_001),
        rng.uniform(0, 1000, 100_000),
        np.geomspace(float(np.nextafter(np.zeros(1, dtype), 1)[0]), float(fi.tiny), 20_001),
        2.0 ** np.arange(np.log2(fi.tiny), np.log2(fi.max)),  # powers of 2: f = 0
        np.sqrt(2.0) * np.array([1 - 1e-7, 1.0, 1 + 1e-7]),  # the reduction's threshold
    ]
    return np.concatenate(parts).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inline_log_accuracy(dtype):
    """ks_log vs the exact log (float64 NumPy of float32 inputs; float64: np.log):
    within 1.5 units in the last place of the result, subnormal inputs included."""
    x = log_grid(dtype)
    got = compiled_log(x).astype(np.float64)
    exact = np.log(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    err = np.abs(got - exact) / ulp
    worst = int(np.argmax(err))
    assert err.max() <= 1.5, f"log({x[worst]!r}) = {got[worst]!r}, exact {exact[worst]!r}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_inline_log_special_values(dtype):
    """log(+-0) = -inf, log(x < 0) = NaN (-inf included), log(+inf) = +inf,
    log(NaN) = NaN, log(1) = 0 exactly."""
    x = np.array([0.0, -0.0, -1.0, -np.inf, np.inf, np.nan, 1.0], dtype=dtype)
    got = compiled_log(x)
    assert got[0] == -np.inf and got[1] == -np.inf
    assert np.isnan(got[2]) and np.isnan(got[3]) and np.isnan(got[5])
    assert got[4] == np.inf and got[6] == 0


# ----------------------------------------------------------------------------
# 8. Threads
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_does_not_change_results(dtype, monkeypatch):
    """config.num_threads = 1 and 2 give bit-identical results (each output row is
    folded by one thread, in order)."""
    x, y, p = setup(dtype, 3, M=200, N=1100, seed=12)
    F = lazy(x, y, p)
    runs = []
    for n in (1, 2):
        monkeypatch.setattr(kernelsolve.config, "num_threads", n)
        # enough pairs for the setting to be used (tiny problems run on one thread)
        assert cpu.num_threads(kernelsolve.config.num_threads, 200 * 1100) == n
        out = []
        for axis in (0, 1):
            for name in ("sum", "min_argmin", "Kmin_argKmin", "logsumexp"):
                out += outputs(REDUCTIONS[name][0](F, axis, backend="CPU"))
        runs.append(out)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("option", [{"dtype_acc": "float64"}, {"use_double_acc": True}])
@pytest.mark.parametrize("axis", [0, 1])
def test_float32_sum_with_double_accumulation(axis, option):
    """float32 data, dtype_acc="float64" / use_double_acc=True: the sum is accumulated in
    float64, so with F = -y (x = 0, p = 1; values +-1e4 + u, u in [0, 1)) it is the float64
    sum of the float32 terms (exact here) rounded once to float32 -- as the reference
    engine gives. Accumulating in float32 loses the fractional parts (~1e-3 relative)."""
    rng = np.random.default_rng(13)
    n = 4096
    big = np.where(np.arange(n) % 2 == 0, 1e4, -1e4) + rng.uniform(0, 1, n)
    big = big.astype(np.float32)[:, None]
    total = big[:, 0].astype(np.float64).sum()  # exact: 35 significant bits at most
    if axis == 1:
        x, y, exact = np.zeros((3, 1), np.float32), big, -total  # F = -y
    else:
        x, y, exact = big, np.zeros((3, 1), np.float32), total  # F = x
    p = np.ones(1, np.float32)
    F = lazy(x, y, p)
    want = np.full((3, 1), exact, dtype=np.float64).astype(np.float32)
    ref = F.sum(dim=axis, backend="reference", **option)
    np.testing.assert_array_equal(ref, want)  # the reference accumulates in float64
    got = F.sum(dim=axis, backend="CPU", **option)
    assert got.dtype == np.float32
    ulp = np.spacing(np.abs(want))
    assert (np.abs(got - want) <= ulp).all(), (
        f"compiled sum with float64 accumulation: {got[:, 0]}, exact {want[:, 0]} "
        f"(relative error {float(np.abs(got - want).max() / abs(exact)):.2g})"
    )


# ----------------------------------------------------------------------------
# 9. Compiler failures and absence
# ----------------------------------------------------------------------------


@pytest.fixture
def fresh_kernels(tmp_path, monkeypatch):
    """An empty on-disk cache and in-process memo for this test only."""
    cpu._toolchain_id()  # computed with the real compiler before any monkeypatching
    monkeypatch.setenv("KERNELSOLVE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cpu, "_memo", {})
    return tmp_path / "cache"


def _cpp_path_in(message: str, root: Path) -> Path:
    for word in message.replace("\n", " ").split():
        if word.endswith(".cpp") and str(root) in word:
            return Path(word)
    raise AssertionError(f"no generated .cpp path under {root} in: {message}")


def test_compile_error_names_source_and_compiler_output(fresh_kernels, tmp_path, monkeypatch):
    """A failing compiler -> CompileError naming the generated .cpp (which exists and
    holds the kernel) and the compiler's output; no temporary file is left; with the
    real compiler back, the same call compiles and is right."""
    fake = tmp_path / "fakecxx"
    fake.write_text("#!/bin/sh\necho 'fakecxx: error: kernelsolve-test-marker' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(cpu, "find_compiler", lambda: str(fake))
    x, y, p = setup("float64", 3, M=5, N=7)
    F = lazy(x, y, p)
    with pytest.raises(cpu.CompileError) as info:
        F.sum(dim=1, backend="CPU")
    msg = str(info.value)
    assert "kernelsolve-test-marker" in msg
    src = _cpp_path_in(msg, fresh_kernels)
    assert src.is_file() and "ks_kernel" in src.read_text()
    assert not [f for f in fresh_kernels.rglob(".*")], "temporary files left behind"
    assert not list(fresh_kernels.rglob("*.so"))

    monkeypatch.undo()  # real compiler, real memo, default cache
    got = F.sum(dim=1, backend="CPU")
    np.testing.assert_allclose(got, dense(x, y, p).sum(axis=1), rtol=1e-12)


def test_compile_error_with_bin_false(fresh_kernels, monkeypatch):
    """CXX = /bin/false (fails silently): CompileError naming the source file."""
    monkeypatch.setattr(cpu, "find_compiler", lambda: "/bin/false")
    x, y, p = setup("float32", 1, M=4, N=4)
    with pytest.raises(cpu.CompileError) as info:
        lazy(x, y, p).min_argmin(dim=0, backend="CPU")
    src = _cpp_path_in(str(info.value), fresh_kernels)
    assert src.is_file()
    assert "/bin/false" in str(info.value)


def test_compile_error_from_real_compiler(fresh_kernels, monkeypatch):
    """The real compiler rejecting the source: its diagnostic is in the CompileError."""
    monkeypatch.setattr(cpu, "render_cpu", lambda spec: "#error kernelsolve-bad-source\n")
    x, y, p = setup("float64", 1, M=4, N=4)
    with pytest.raises(cpu.CompileError) as info:
        lazy(x, y, p).sum(dim=1, backend="CPU")
    assert "kernelsolve-bad-source" in str(info.value)
    assert _cpp_path_in(str(info.value), fresh_kernels).read_text().startswith("#error")


def test_no_compiler_warns_once_and_uses_reference(monkeypatch):
    """No C++ compiler: one RuntimeWarning ("no C++ compiler"), the reference results,
    the compiled target never called; a second call does not warn again."""
    monkeypatch.setattr(cpu, "find_compiler", lambda: None)
    monkeypatch.setattr(dispatch, "_warned_no_compiler", False)

    def boom(*a, **k):
        raise AssertionError("the compiled target ran without a compiler")

    monkeypatch.setattr(cpu, "kernel", boom)
    x, y, p = setup("float64", 3, M=9, N=20)
    F = lazy(x, y, p)
    want = F.min_argmin(dim=1, backend="reference")
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        got = F.min_argmin(dim=1, backend="auto")
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = F.sum(dim=0, backend="CPU")
    assert not [w for w in caught if "compiler" in str(w.message)], "warned twice"
    np.testing.assert_array_equal(got, F.sum(dim=0, backend="reference"))


# ----------------------------------------------------------------------------
# 10. Stack use of the kernel
# ----------------------------------------------------------------------------

_SMALL_STACK = textwrap.dedent(
    """
    import sys, threading
    import numpy as np
    import kernelsolve
    from kernelsolve import Vi, Vj

    kernelsolve.config.num_threads = 1  # the kernel runs on the calling thread
    D = int(sys.argv[1])
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, D)), rng.standard_normal((20, D))
    F = Vi(x) - Vj(y)
    F.min(dim=1, backend="CPU")  # compile (main thread)
    threading.stack_size(512 * 1024)  # the default of secondary threads on macOS
    out = {}
    t = threading.Thread(target=lambda: out.update(v=F.min(dim=1, backend="CPU")))
    t.start()
    t.join()
    print(float(np.abs(out["v"] - (x[:, None] - y[None]).min(axis=1)).max()))
    """
)


@pytest.mark.parametrize("D", [8, 200])
def test_kernel_runs_on_a_small_thread_stack(D):
    """A reduction called from a thread with a 512 KB stack (macOS' default for
    secondary threads and OpenMP workers) must not crash for a formula of inner
    dimension 200 (run in a subprocess: a crash is a segfault). D = 8 is the control.

    The CPU kernel keeps a block buffer of CPU_BLOCK_J * D values (and * E for weights)
    on the stack of every thread: 800 KB here; with Linux' default 8 MB stacks the same
    crash happens from D (or E) ~ 2000 in float64."""
    proc = subprocess.run(
        [sys.executable, "-c", _SMALL_STACK, str(D)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (
        f"D={D}: the kernel crashed on a 512 KB thread stack (exit {proc.returncode}); "
        f"stderr: {proc.stderr[-2000:]}"
    )
    assert float(proc.stdout.split()[-1]) == 0.0


def test_nested_clamp_regression():
    """clamp(clamp(x, y, y + 1), x, x + 1) summed over j: GCC 12 with AVX-512
    miscompiled the nested selects inside the SIMD loop (4.5 instead of 6);
    the renderer now splits nested selects into two statements."""
    x = np.array([[[0.75]]])
    y = np.array([0.25, 0.0, -0.5, -0.5, -1.0, -1.0, -1.0, -0.75])[None, :, None]
    x_i, y_j = LazyTensor(x), LazyTensor(y)
    F = x_i.clamp(y_j, y_j + 1).sum(-1).clamp(x_i, x_i + 1)
    np.testing.assert_array_equal(F.sum(dim=1, backend="CPU"), [[6.0]])
    np.testing.assert_array_equal(F.sum(dim=1, backend="reference"), [[6.0]])
