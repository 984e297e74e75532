"""Reductions as data: C snippets, layout, merge law and NumPy semantics."""

import re

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kernelsolve.engine import dispatch, ir
from kernelsolve.engine import reductions as R
from kernelsolve.engine.request import ReductionOptions, ReductionRequest, target_of

try:
    import torch
except ImportError:  # pragma: no cover - torch is a test dependency
    torch = None

NAMES = sorted(R.REDUCTIONS)
WEIGHTED = sorted(n for n, r in R.REDUCTIONS.items() if r.uses_weight)
KMIN = sorted(n for n, r in R.REDUCTIONS.items() if r.uses_k)
EXACT = {"min", "max", "argmin", "argmax", "min_argmin", "max_argmax", *KMIN}
# The reference engine and the compiled host target read the same reduction data.
BACKENDS = ["reference", "CPU"]
LIBS = [
    "numpy",
    pytest.param("torch", marks=pytest.mark.skipif(torch is None, reason="torch not installed")),
]


def bound(name, K=2):
    """The registry entry, bound to K for the K-min family."""
    return R.get(name, K) if R.REDUCTIONS[name].uses_k else R.get(name)


# ----------------------------------------------------------------------------
# Registry, C snippets and layout
# ----------------------------------------------------------------------------


def test_registry_keys_are_names():
    """REDUCTIONS maps each reduction's own name to it; the expected set is there."""
    for name, red in R.REDUCTIONS.items():
        assert red.name == name
    expected = {
        "sum",
        "min",
        "max",
        "argmin",
        "argmax",
        "min_argmin",
        "max_argmax",
        "kmin",
        "argkmin",
        "kmin_argkmin",
        "logsumexp",
        "logsumexp_weight",
        "sumsoftmaxweight",
    }
    assert expected <= set(R.REDUCTIONS)


def test_get_errors():
    """get(): unknown names and bad K are ValueErrors."""
    with pytest.raises(ValueError, match="unknown reduction"):
        R.get("median")
    for bad in (0, -1, 1.5, None, True):
        with pytest.raises(ValueError, match="K"):
            R.get("kmin", bad)


def _render_names(red, D, K, E):
    names = {
        "D": str(D),
        "K": str(K),
        "E": str(E),
        "acc_t": "double",
        "out_t": "float",
        "val": "VAL",
        "w": "WGT",
        "j": "JJ",
        "out0": "OUT0",
        "out1": "OUT1",
    }
    for f in red.fields(D, K, E):
        names[f.name] = f"A_{f.name}"
        names[f.name + "_b"] = f"B_{f.name}"
    for n in red.sums:  # the compensation terms (KernelSpec.compensations)
        names[n + "_c"] = f"A_{n}_c"
        names[n + "_c_b"] = f"B_{n}_c"
    return names


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("D", "K", "E"), [(1, 1, 1), (1, 3, 2), (3, 2, 4)])
def test_snippets_render_completely(name, D, K, E):
    """Every C snippet is non-empty and render() leaves no '$' placeholder."""
    red = bound(name, K)
    if red.uses_weight and D != 1:
        D = 1
    names = _render_names(red, D, K, E)
    for attr in ("c_init", "c_fold", "c_merge", "c_finalize"):
        snippet = getattr(red, attr)
        assert isinstance(snippet, str) and snippet.strip(), attr
        text = red.render(snippet, **names)
        assert "$" not in text, (attr, text)
        # Fields of this accumulator appear in init/fold/finalize...
        for f in red.fields(D, K, E):
            if attr in ("c_init", "c_merge"):
                assert f"A_{f.name}" in text, (attr, f.name)
        if attr == "c_merge":
            assert any(f"B_{f.name}" in text for f in red.fields(D, K, E))
        if attr == "c_fold":
            assert "VAL" in text
            assert ("WGT" in text) == red.uses_weight
        if attr == "c_finalize":
            n_out = len(red.outputs(D, K, E))
            assert "OUT0" in text
            assert ("OUT1" in text) == (n_out == 2)
    assert "$" not in red.c_preamble
    if red.c_block:  # optional SIMD block snippet: reduces $buf[0..$n) into the _b fields
        text = red.render(red.c_block, **names, n="NN", buf="BUF", exp="EXPF")
        assert "$" not in text
        assert "BUF" in text and "NN" in text
        assert all(f"B_{f.name}" in text for f in red.fields(D, K, E))


@pytest.mark.parametrize("name", NAMES)
def test_render_rejects_missing_names(name):
    """A missing placeholder name is an error, not silently left in the text."""
    red = bound(name)
    names = _render_names(red, 1, 2, 1)
    assert re.search(r"\$val\b", red.c_fold)
    del names["val"]
    with pytest.raises(KeyError):
        red.render(red.c_fold, **names)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("D", "K", "E"), [(1, 1, 1), (2, 3, 3), (4, 2, 1)])
def test_fields_and_outputs_consistent(name, D, K, E):
    """Sizes > 0, known kinds, index outputs for arg-reductions, unique field names."""
    red = bound(name, K)
    if red.uses_weight:
        D = 1
    fields = red.fields(D, K, E)
    outs = red.outputs(D, K, E)
    assert fields and outs
    assert len({f.name for f in fields}) == len(fields)
    for f in fields:
        assert f.size > 0
        assert f.kind in (R.VALUE, R.INDEX)
        if f.kind == R.INDEX:
            assert f.init == -1
    for o in outs:
        assert o.size > 0
        assert o.kind in (R.VALUE, R.INDEX)
    kinds = [o.kind for o in outs]
    if name.startswith("arg"):
        assert kinds == [R.INDEX]
    elif name in ("min_argmin", "max_argmax", "kmin_argkmin"):
        assert kinds == [R.VALUE, R.INDEX]
    else:
        assert kinds == [R.VALUE]
    if any(k == R.INDEX for k in kinds):
        assert any(f.kind == R.INDEX for f in fields)
    expected_size = {
        **dict.fromkeys(WEIGHTED, E),
        **dict.fromkeys(KMIN, K * D),
    }.get(name, D)
    assert all(o.size == expected_size for o in outs)


@pytest.mark.parametrize("name", WEIGHTED)
def test_weighted_need_scalar_formula(name):
    """Weighted reductions reject a formula of inner dimension > 1."""
    red = R.get(name)
    red.check(1, 0, 3)
    with pytest.raises(ValueError, match="scalar"):
        red.check(2, 0, 3)


# ----------------------------------------------------------------------------
# Merge law (hypothesis)
# ----------------------------------------------------------------------------

SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.0, 1e4, -1e4]
values_st = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats(-10, 10, allow_nan=False, allow_infinity=False),
    st.integers(-2, 2).map(float),  # ties
)
# No subnormal weights: one of 5e-324 carries a single bit, so the rescaling of a
# partial sum at a merge rounds it by up to a factor 2 (log 2 in the weighted
# logsumexp: a falsifying example of 2026-12-06), as any split sum would.
weights_st = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0, 3, allow_subnormal=False))


def run_tiles(red, vals, w, splits, acc_dtype=np.float64):
    """Reduce the columns of ``vals`` tile by tile, cut at ``splits``."""
    cuts = [0, *splits, vals.shape[-2]]
    acc = None
    # As in the reference engine: inf - inf and the like are expected here.
    with np.errstate(all="ignore"):
        for a, b in zip(cuts[:-1], cuts[1:]):
            wt = None if w is None else w[..., a:b, :]
            part = red.np_tile(vals[..., a:b, :], wt, a, acc_dtype)
            acc = part if acc is None else red.np_merge(acc, part)
        return red.np_finalize(acc)


def assert_same(got, want, exact, rtol=1e-12):
    """Same shapes and dtypes; bit-equal (exact) or close, NaN/inf in the same places."""
    assert len(got) == len(want)
    for g, e in zip(got, want):
        g, e = np.asarray(g), np.asarray(e)
        assert g.shape == e.shape
        assert g.dtype == e.dtype
        np.testing.assert_array_equal(np.isnan(g), np.isnan(e))
        if exact:
            np.testing.assert_array_equal(g, e)
        else:
            np.testing.assert_array_equal(np.isinf(g) & (g > 0), np.isinf(e) & (e > 0))
            np.testing.assert_array_equal(np.isinf(g) & (g < 0), np.isinf(e) & (e < 0))
            np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-12)


@st.composite
def tiles(draw, name):
    red0 = R.REDUCTIONS[name]
    batch = draw(st.sampled_from([(), (2,)]))
    rows = draw(st.integers(1, 3))
    n = draw(st.integers(2, 12))
    d = 1 if red0.uses_weight else draw(st.integers(1, 3))
    vals = draw(hnp.arrays(np.float64, batch + (rows, n, d), elements=values_st))
    w = None
    if red0.uses_weight:
        e = draw(st.integers(1, 3))
        w = draw(hnp.arrays(np.float64, batch + (rows, n, e), elements=weights_st))
    k = draw(st.integers(1, min(n, 4)))
    splits = sorted(draw(st.sets(st.integers(1, n - 1), min_size=1, max_size=min(3, n - 1))))
    return vals, w, k, splits


def _merge_law(name, data):
    vals, w, k, splits = data
    red = bound(name, k)
    whole = run_tiles(red, vals, w, [])
    split = run_tiles(red, vals, w, splits)
    assert_same(split, whole, exact=name in EXACT)


# One hypothesis test per reduction, so a failure names the reduction.
def _make_merge_test(name):
    @given(data=tiles(name))
    def test(data):
        _merge_law(name, data)

    test.__doc__ = f"{name}: whole tile == split columns + np_merge (NaN, inf, ties)."
    test.__name__ = f"test_merge_law_{name}"
    return test


for _name in NAMES:
    globals()[f"test_merge_law_{_name}"] = _make_merge_test(_name)


WITH_INDEX = [n for n in NAMES if any(o.kind == R.INDEX for o in bound(n).outputs(1, 2, 1))]


@pytest.mark.parametrize("name", WITH_INDEX)
def test_merge_accumulates_first_tile_indices(name):
    """Ties across tiles keep the smaller index (earlier tile) for arg outputs."""
    red = bound(name, 2)
    vals = np.zeros((1, 6, 1))
    w = np.ones((1, 6, 1)) if red.uses_weight else None
    for splits in ([3], [1, 2, 5], [5]):
        out = run_tiles(red, vals, w, splits)
        specs = red.outputs(1, 2, 1)
        for o, spec in zip(out, specs):
            if spec.kind == R.INDEX:
                assert o.dtype == np.int64
                if red.uses_k:
                    np.testing.assert_array_equal(o, [[0, 1]])
                else:
                    np.testing.assert_array_equal(o, [[0]])


# ----------------------------------------------------------------------------
# Semantics against NumPy / SciPy on a dense (M, N, D) tensor
# ----------------------------------------------------------------------------


def _data(rng, M, N, D, special=True, ties=False):
    if ties:
        x = rng.integers(-2, 3, size=(M, D)).astype(np.float64)
        y = rng.integers(-2, 3, size=(N, D)).astype(np.float64)
    else:
        x = rng.standard_normal((M, D))
        y = rng.standard_normal((N, D))
    if special:
        x[1, 0] = np.nan
        x[2, -1] = np.inf
        x[3, 0] = -np.inf
        y[4, 0] = np.inf  # with x = inf: inf - inf = NaN at one pair only
        y[5, -1] = np.nan
        y[6, 0] = -np.inf
    return x, y


def _run(lib, name, x, y, *, axis=1, K=None, w=None, backend="reference"):
    """F_ij = x_i - y_j reduced with dispatch.reduce; results as NumPy."""
    D = x.shape[1]
    f = ir.make("sub", ir.var(0, ir.I, D), ir.var(1, ir.J, D))
    leaves, cats = [x, y], [ir.I, ir.J]
    weight = None
    if w is not None:
        weight = ir.var(2, ir.J if axis == 1 else ir.I, w.shape[1])
        leaves.append(w)
        cats.append(ir.J if axis == 1 else ir.I)
    if lib == "torch":
        leaves = [torch.from_numpy(a) for a in leaves]
    options = ReductionOptions(target_of(backend))
    request = ReductionRequest(f, name, tuple(leaves), tuple(cats), axis, weight, K, options)
    out = dispatch.reduce(request)
    outs = out if isinstance(out, tuple) else (out,)
    for o in outs:
        assert isinstance(o, torch.Tensor if lib == "torch" else np.ndarray)
    outs = tuple(o.numpy() if lib == "torch" else o for o in outs)
    return outs if isinstance(out, tuple) else outs[0]


def _dense(x, y):
    with np.errstate(invalid="ignore"):
        return x[:, None, :] - y[None, :, :]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("axis", [0, 1])
def test_sum(backend, lib, axis, rng):
    """sum over j (or i) == dense np.sum, NaN/inf propagate."""
    x, y = _data(rng, 9, 13, 3)
    got = _run(lib, "sum", x, y, axis=axis, backend=backend)
    with np.errstate(invalid="ignore"):
        want = _dense(x, y).sum(axis=axis)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.isnan(got).any() and np.isfinite(got).any()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("kind", ["min", "max"])
@pytest.mark.parametrize("ties", [False, True])
def test_min_max_arg(backend, lib, axis, kind, ties, rng):
    """min/max/argmin/argmax/min_argmin == np.min/np.argmin (first NaN wins)."""
    x, y = _data(rng, 10, 12, 2, ties=ties)
    dense = _dense(x, y)
    want_v = getattr(np, kind)(dense, axis=axis)
    want_i = getattr(np, "arg" + kind)(dense, axis=axis)
    got_v = _run(lib, kind, x, y, axis=axis, backend=backend)
    got_i = _run(lib, "arg" + kind, x, y, axis=axis, backend=backend)
    both_v, both_i = _run(lib, f"{kind}_arg{kind}", x, y, axis=axis, backend=backend)
    np.testing.assert_array_equal(got_v, want_v)
    np.testing.assert_array_equal(both_v, want_v)
    assert got_i.dtype == np.int64 and both_i.dtype == np.int64
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(both_i, want_i)
    assert np.isnan(want_v).any()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("D", [1, 2])
@pytest.mark.parametrize("K", [1, 3, 7])
@pytest.mark.parametrize("ties", [False, True])
def test_kmin_argkmin(backend, lib, axis, D, K, ties, rng):
    """Kmin/argKmin == np.sort / np.argsort(stable) first K, NaN last; shapes."""
    x, y = _data(rng, 8, 11, D, ties=ties)
    dense = _dense(x, y)
    order = np.argsort(dense, axis=axis, kind="stable")
    vals = np.sort(dense, axis=axis, kind="stable")
    idx = np.moveaxis(order, axis, 1)[:, :K]  # (n, K, D)
    want_v = np.moveaxis(vals, axis, 1)[:, :K]
    if D == 1:
        idx, want_v = idx[..., 0], want_v[..., 0]
    got_v = _run(lib, "kmin", x, y, axis=axis, K=K, backend=backend)
    got_i = _run(lib, "argkmin", x, y, axis=axis, K=K, backend=backend)
    both_v, both_i = _run(lib, "kmin_argkmin", x, y, axis=axis, K=K, backend=backend)
    n = dense.shape[1 - axis]
    shape = (n, K) if D == 1 else (n, K, D)
    for a in (got_v, got_i, both_v, both_i):
        assert a.shape == shape
    assert got_i.dtype == np.int64 and both_i.dtype == np.int64
    np.testing.assert_array_equal(got_v, want_v)
    np.testing.assert_array_equal(both_v, want_v)
    np.testing.assert_array_equal(got_i, idx)
    np.testing.assert_array_equal(both_i, idx)


def test_kmin_nan_last_explicit():
    """A row [nan, 3, nan, 1, 3]: Kmin(4) = [1, 3, 3, nan], argKmin = [3, 1, 4, 0]."""
    red = R.get("kmin_argkmin", 4)
    vals = np.array([np.nan, 3, np.nan, 1, 3.0])[None, :, None]
    for splits in ([], [1], [2, 4], [1, 2, 3, 4]):
        v, i = run_tiles(red, vals, None, splits)
        np.testing.assert_array_equal(v, [[1, 3, 3, np.nan]])
        np.testing.assert_array_equal(i, [[3, 1, 4, 0]])


def test_argmin_first_nan_explicit():
    """argmin/argmax of [2, nan, 0, nan] is 1 (the first NaN), as np.argmin."""
    vals = np.array([2, np.nan, 0, np.nan])[None, :, None]
    for name in ("argmin", "argmax"):
        for splits in ([], [1], [2], [1, 2, 3]):
            (i,) = run_tiles(R.get(name), vals, None, splits)
            assert i.tolist() == [[1]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("axis", [0, 1])
def test_logsumexp_finite(backend, lib, axis, rng):
    """logsumexp == scipy.special.logsumexp on finite data (D = 2)."""
    x, y = _data(rng, 9, 14, 2, special=False)
    x *= 30
    got = _run(lib, "logsumexp", x, y, axis=axis, backend=backend)
    want = scipy.special.logsumexp(_dense(x, y), axis=axis)
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lib", LIBS)
def test_logsumexp_edge_rows(backend, lib, rng):
    """All -inf -> -inf, all +inf -> +inf, NaN -> NaN, +-1e4 offsets stay finite."""
    y = rng.standard_normal((7, 1))
    x = np.array([[-np.inf], [np.inf], [np.nan], [1e4], [-1e4], [0.0], [1e300]])
    got = _run(lib, "logsumexp", x, y, backend=backend)
    base = scipy.special.logsumexp(-y[:, 0])
    assert got.shape == (7, 1)
    assert got[0, 0] == -np.inf
    assert got[1, 0] == np.inf
    assert np.isnan(got[2, 0])
    np.testing.assert_allclose(got[3:6, 0], [1e4 + base, -1e4 + base, base], rtol=1e-13)
    np.testing.assert_allclose(got[6, 0], 1e300, rtol=1e-13)


def test_logsumexp_mixed_rows_tiles():
    """Rows mixing finite values with +inf / -inf / NaN, under any column split."""
    red = R.get("logsumexp")
    rows = np.array(
        [
            [0.0, -np.inf, 1.0, -np.inf],  # -inf terms ignored
            [0.0, np.inf, 1.0, -np.inf],  # +inf wins
            [np.inf, np.inf, -np.inf, 5.0],
            [0.0, np.nan, np.inf, 1.0],  # NaN wins over +inf
            [-np.inf, -np.inf, -np.inf, np.nan],
            [1e4, 1e4, -1e4, 1e4],
            [-1e4, -1e4 - 1, -np.inf, -1e4],
        ]
    )
    want = [
        np.log(np.e**0 + np.e**1),
        np.inf,
        np.inf,
        np.nan,
        np.nan,
        1e4 + np.log(3),
        -1e4 + np.log(2 + np.exp(-1)),
    ]
    vals = rows[:, :, None]
    for splits in ([], [1], [2], [3], [1, 2, 3]):
        (got,) = run_tiles(red, vals, None, splits)
        np.testing.assert_allclose(got[:, 0], want, rtol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_logsumexp_weight(backend, lib, axis, scale, rng):
    """log sum exp(F) w (E = 3, w >= 0) == scipy logsumexp(F, b=w)."""
    x, y = _data(rng, 8, 10, 1, special=False)
    x *= scale
    n_red = y.shape[0] if axis == 1 else x.shape[0]
    w = rng.uniform(0, 2, size=(n_red, 3))
    w[0] = 0.0
    got = _run(lib, "logsumexp_weight", x, y, axis=axis, w=w, backend=backend)
    F = _dense(x, y)[..., 0]  # (M, N)
    if axis == 1:
        want = scipy.special.logsumexp(F[:, :, None], b=w[None, :, :], axis=1)
    else:
        want = scipy.special.logsumexp(F[:, :, None], b=w[:, None, :], axis=0)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_logsumexp_weight_edges():
    """Weighted LSE: zero weights -> -inf, all -inf F -> -inf, NaN F -> NaN."""
    red = R.get("logsumexp_weight")
    vals = np.array([[0.0, 1.0], [-np.inf, -np.inf], [0.0, np.nan]])[:, :, None]
    w = np.array([[[0.0, 1.0], [0.0, 2.0]]] * 3)  # (3, 2, E=2)
    want = np.array(
        [
            [-np.inf, np.log(1 + 2 * np.e)],
            [-np.inf, -np.inf],
            [np.nan, np.nan],
        ]
    )
    for splits in ([], [1]):
        (got,) = run_tiles(red, vals, w, splits)
        np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("scale", [1.0, 500.0])
def test_sumsoftmaxweight(backend, lib, axis, scale, rng):
    """sum_j softmax_j(F) w_j (E = 2) == dense softmax computed by NumPy."""
    x, y = _data(rng, 8, 10, 1, special=False)
    x *= scale
    n_red = y.shape[0] if axis == 1 else x.shape[0]
    w = rng.standard_normal((n_red, 2))
    got = _run(lib, "sumsoftmaxweight", x, y, axis=axis, w=w, backend=backend)
    F = _dense(x, y)[..., 0]
    p = scipy.special.softmax(F, axis=axis)
    want = p @ w if axis == 1 else p.T @ w
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)
