"""Tiled NumPy reference engine: tiling invariance, memory bound, accumulation dtype."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kernelsolve
from kernelsolve import LazyTensor
from kernelsolve.engine import ir
from kernelsolve.engine import reductions as R
from kernelsolve.engine.backends import reference

try:
    import torch
except ImportError:  # pragma: no cover - torch is a test dependency
    torch = None

NAMES = sorted(R.REDUCTIONS)
EXACT = {n for n in NAMES if n not in ("sum", "logsumexp", "logsumexp_weight", "sumsoftmaxweight")}
LIBS = [
    "numpy",
    pytest.param("torch", marks=pytest.mark.skipif(torch is None, reason="torch not installed")),
]
HUGE = 1 << 40
K = 3


# ----------------------------------------------------------------------------
# reference.reduce called directly
# ----------------------------------------------------------------------------


def _problem(rng, name, batch, M=17, N=23, D=2, E=2):
    """(formula, weight, leaves, cats) for ``name`` with batch dims ``batch``.

    Vector formula (for unweighted reductions): (x_i - y_j) * exp(-p |x_i - y_j|^2);
    scalar formula for weighted ones: -p |x_i - y_j|^2, weight w_j (dim E).
    Data holds a few NaN / inf and ties.
    """
    bx = batch[:-1] + (1,) if batch else ()  # x broadcasts over the last batch dim
    x = rng.standard_normal(batch + (M, D))
    y = np.round(rng.standard_normal(bx + (N, D)), 1)  # ties
    p = rng.uniform(0.5, 1.5, size=batch + (1,))
    w = rng.uniform(0, 2, size=batch + (N, E))
    x[..., 3, 0] = np.nan
    x[..., 5, -1] = np.inf
    y[..., 7, 0] = -np.inf
    xv, yv, pv, wv = ir.var(0, ir.I, D), ir.var(1, ir.J, D), ir.var(2, ir.P, 1), ir.var(3, ir.J, E)
    d2 = ir.make("mul", pv, ir.make("sqdist", xv, yv))
    red = R.REDUCTIONS[name]
    if red.uses_weight:
        formula, weight = ir.make("neg", d2), wv
    else:
        formula = ir.make("mul", ir.make("sub", xv, yv), ir.make("exp", ir.make("neg", d2)))
        weight = None
    return formula, weight, [x, y, p, w], [ir.I, ir.J, ir.P, ir.J]


def _reduce(name, problem, batch, M=17, N=23, **kw):
    formula, weight, leaves, cats = problem
    red = R.get(name, K) if R.REDUCTIONS[name].uses_k else R.get(name)
    return reference.reduce(
        formula, red, leaves, cats, batch, M, N, weight=weight, K=K if red.uses_k else 0, **kw
    )


def assert_same(got, want, exact, rtol=1e-12):
    assert len(got) == len(want)
    for g, e in zip(got, want):
        g, e = np.asarray(g), np.asarray(e)
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_array_equal(np.isnan(g), np.isnan(e))
        if exact:
            np.testing.assert_array_equal(g, e)
        else:
            np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-12)


class TileRecorder:
    """Wraps reference.evaluate; records the (batch, rows, cols) of every tile."""

    def __init__(self, monkeypatch):
        self.tiles = []
        self.sizes = []
        self._orig = reference.evaluate
        monkeypatch.setattr(reference, "evaluate", self)

    def __call__(self, root, leaves, dtype):
        shape = np.broadcast_shapes(*(np.shape(a)[:-1] for a in leaves))
        self.tiles.append(shape)
        out = self._orig(root, leaves, dtype)
        self.sizes.append(out.size)
        return out

    def tile_grid(self):
        """Distinct (rows, cols) of the tiles."""
        return {t[-2:] for t in self.tiles}


BATCHES = [(), (3,), (2, 3)]
LIMITS = [1, 2_000, 20_000]  # bytes: 1 pair per tile; a few pairs; ragged multi-row tiles


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("limit", LIMITS)
def test_small_memory_limit_same_result(name, batch, limit, rng, monkeypatch):
    """Tiny memory caps (many small / ragged tiles) give the result of one big tile."""
    problem = _problem(rng, name, batch)
    big_rec = TileRecorder(monkeypatch)
    want = _reduce(name, problem, batch, memory_limit=HUGE)
    assert big_rec.tile_grid() == {(17, 23)}  # one tile
    rec = TileRecorder(monkeypatch)
    got = _reduce(name, problem, batch, memory_limit=limit)
    assert len(rec.tiles) > 1
    assert_same(got, want, exact=name in EXACT)
    # The output layout: batch + (M, size), index outputs int64.
    red = R.get(name, K) if R.REDUCTIONS[name].uses_k else R.get(name)
    D = problem[0].dim
    E = problem[1].dim if problem[1] is not None else 0
    for out, spec in zip(got, red.outputs(D, K, E)):
        assert out.shape == batch + (17, spec.size)
        assert out.dtype == (np.int64 if spec.kind == R.INDEX else np.float64)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tile", [(1, 1), (1, 23), (17, 1), (4, 5), (5, 7), (16, 22), (3, 3)])
def test_forced_ragged_tiles_same_result(name, tile, rng, monkeypatch):
    """Forcing the tile plan (ragged last row/column tiles) keeps the result."""
    batch = (2,)
    problem = _problem(rng, name, batch)
    want = _reduce(name, problem, batch, memory_limit=HUGE)
    rows, cols = tile
    if R.REDUCTIONS[name].uses_k:
        cols = max(cols, K)  # the plan never cuts columns below K
    monkeypatch.setattr(reference, "_tile_sizes", lambda *a, **k: (rows, cols))
    rec = TileRecorder(monkeypatch)
    got = _reduce(name, problem, batch, memory_limit=HUGE)
    n_tiles = -(-17 // rows) * -(-23 // cols)
    weighted = R.REDUCTIONS[name].uses_weight
    assert len(rec.tiles) == n_tiles * (2 if weighted else 1)
    assert_same(got, want, exact=name in EXACT)


@pytest.mark.parametrize("name", ["sum", "argmin", "kmin_argkmin", "logsumexp"])
def test_reduction_over_i_tiles(name, rng, monkeypatch):
    """Tiling invariance also holds for a transposed formula (reduce over i)."""
    batch = (2,)
    formula, weight, leaves, cats = _problem(rng, name, batch)
    swapped = (ir.swap_ij(formula), None, leaves, [{0: 1, 1: 0, 2: 2}[c] for c in cats])
    # After the swap, x (17 points) is indexed by j and y (23 points) by i.
    want = _reduce(name, swapped, batch, M=23, N=17, memory_limit=HUGE)
    got = _reduce(name, swapped, batch, M=23, N=17, memory_limit=1)
    assert_same(got, want, exact=name in EXACT)


# ----------------------------------------------------------------------------
# The same through LazyTensor (config.reference_memory_limit)
# ----------------------------------------------------------------------------


def _lazy_reductions(F, S, w_j, nb):
    """name -> thunk calling LazyTensor reductions over j (axis nb + 1)."""
    a = nb + 1
    kw = {"backend": "reference"}
    return {
        "sum": lambda: F.sum(a, **kw),
        "min": lambda: F.min(a, **kw),
        "max": lambda: F.max(a, **kw),
        "argmin": lambda: F.argmin(a, **kw),
        "argmax": lambda: F.argmax(a, **kw),
        "min_argmin": lambda: F.min_argmin(a, **kw),
        "max_argmax": lambda: F.max_argmax(a, **kw),
        "kmin": lambda: F.Kmin(K, a, **kw),
        "argkmin": lambda: F.argKmin(K, a, **kw),
        "kmin_argkmin": lambda: F.Kmin_argKmin(K, a, **kw),
        "logsumexp": lambda: F.logsumexp(a, **kw),
        "logsumexp_weight": lambda: S.logsumexp(a, weight=w_j, **kw),
        "sumsoftmaxweight": lambda: S.sumsoftmaxweight(w_j, axis=a, **kw),
    }


def _lazy_problem(lib, batch, rng):
    M, N, D = 19, 29, 2
    bx = batch[:-1] + (1,) if batch else ()
    x = rng.standard_normal(batch + (M, 1, D))
    y = np.round(rng.standard_normal(bx + (1, N, D)), 1)
    w = rng.uniform(0, 2, size=batch + (1, N, 3))
    x[..., 4, 0, 1] = np.nan
    y[..., 0, 6, 0] = np.inf
    if lib == "torch":
        x, y, w = (torch.from_numpy(a) for a in (x, y, w))
    x_i, y_j, w_j = LazyTensor(x), LazyTensor(y), LazyTensor(w)
    S = -((x_i - y_j) ** 2).sum(-1)
    F = (x_i - y_j) * S.exp()
    return F, S, w_j


def _as_numpy(out):
    outs = out if isinstance(out, tuple) else (out,)
    return [o.numpy() if torch is not None and isinstance(o, torch.Tensor) else o for o in outs]


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("batch", [(), (2,), (2, 3)])
@pytest.mark.parametrize("name", NAMES)
def test_lazytensor_memory_limit_invariance(lib, batch, name, rng, monkeypatch):
    """LazyTensor reductions with config.reference_memory_limit tiny vs huge agree."""
    F, S, w_j = _lazy_problem(lib, batch, rng)
    thunk = _lazy_reductions(F, S, w_j, len(batch))[name]
    monkeypatch.setattr(kernelsolve.config, "reference_memory_limit", HUGE)
    big = TileRecorder(monkeypatch)
    want = _as_numpy(thunk())
    assert len(big.tiles) >= 1 and big.tile_grid() == {(19, 29)}
    monkeypatch.setattr(kernelsolve.config, "reference_memory_limit", 1)
    rec = TileRecorder(monkeypatch)
    got = _as_numpy(thunk())
    assert len(rec.tiles) > 1  # the patched limit reached the engine
    assert_same(got, want, exact=name in EXACT)


# ----------------------------------------------------------------------------
# The tile plan respects the memory limit
# ----------------------------------------------------------------------------


def _node_floats(*roots):
    nodes = {id(n): n for r in roots if r is not None for n in ir.topological_order(r)}
    return sum(n.dim for n in nodes.values())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tile_plan_respects_1mb_cap(dtype, rng, monkeypatch):
    """N = M = 3000 under a 1 MB cap: each tile's temporaries fit in 1 MB."""
    M = N = 3000
    D = 3
    x = rng.standard_normal((M, D)).astype(dtype)
    y = rng.standard_normal((N, D)).astype(dtype)
    xv, yv = ir.var(0, ir.I, D), ir.var(1, ir.J, D)
    formula = ir.make("exp", ir.make("neg", ir.make("sqdist", xv, yv)))
    limit = 2**20
    rec = TileRecorder(monkeypatch)
    (out,) = reference.reduce(
        formula, R.get("sum"), [x, y], [ir.I, ir.J], (), M, N, dtype=dtype, memory_limit=limit
    )
    itemsize = np.dtype(dtype).itemsize
    # Every node of the formula is held on the tile at once (x, y, sqdist, neg, exp).
    bytes_per_pair = _node_floats(formula) * itemsize
    allowed_pairs = limit // bytes_per_pair
    assert len(rec.tiles) > 1
    for shape in rec.tiles:
        rows, cols = shape[-2:]
        assert rows * cols <= allowed_pairs, (rows, cols, allowed_pairs)
    # Tiles cover the whole plane: sum over tiles of rows*cols == M*N.
    assert sum(int(np.prod(t[-2:])) for t in rec.tiles) == M * N
    want = np.exp(-(((x[:200, None, :] - y[None, :, :]) ** 2).sum(-1))).sum(1)
    np.testing.assert_allclose(out[:200, 0], want, rtol=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("batch", [(), (4,), (2, 5)])
@pytest.mark.parametrize("name", ["sum", "kmin_argkmin", "logsumexp_weight"])
def test_tile_plan_counts_batch_and_weight(batch, name, rng, monkeypatch):
    """With batch dims, K and a weight, the evaluated arrays of a tile fit the cap."""
    problem = _problem(rng, name, batch, M=300, N=400)
    limit = 256 * 2**10
    rec = TileRecorder(monkeypatch)
    _reduce(name, problem, batch, M=300, N=400, memory_limit=limit)
    formula, weight = problem[:2]
    floats = _node_floats(formula, weight)
    nbatch = int(np.prod(batch)) if batch else 1
    for shape in rec.tiles:
        rows, cols = shape[-2:]
        assert nbatch * rows * cols * floats * 8 <= limit, (shape, floats)
    assert max(rec.sizes) * 8 <= limit


@given(
    M=st.integers(1, 10**6),
    N=st.integers(1, 10**6),
    bytes_per_pair=st.integers(1, 10**4),
    min_cols=st.integers(1, 64),
    limit=st.integers(1, 2**30),
)
def test_tile_sizes_properties(M, N, bytes_per_pair, min_cols, limit):
    """_tile_sizes: 1 <= rows <= M, 1 <= cols <= N, and the cap holds when it can."""
    rows, cols = reference._tile_sizes(M, N, bytes_per_pair, min_cols, limit)
    assert 1 <= rows <= M
    assert 1 <= cols <= N
    assert cols >= min(N, min_cols)
    if limit >= bytes_per_pair * min_cols:
        assert rows * cols * bytes_per_pair <= limit


# ----------------------------------------------------------------------------
# Accumulation dtype
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("option", [{"dtype_acc": "float64"}, {"use_double_acc": True}])
def test_float64_accumulation_of_float32(lib, option, rng, monkeypatch):
    """Sum of 200k float32 values over j: float64 accumulation is near exact."""
    N = 200_000
    y = (1 + rng.uniform(0, 1, size=(N, 1))).astype(np.float32)
    x = np.ones((2, 1), dtype=np.float32)  # F_ij = x_i * y_j = y_j exactly
    exact = y.astype(np.float64).sum()
    # Tiles of a few hundred columns: many float32 merges.
    monkeypatch.setattr(kernelsolve.config, "reference_memory_limit", 16 * 2**10)
    if lib == "torch":
        x, y = torch.from_numpy(x), torch.from_numpy(y)
    K_ij = LazyTensor(x[:, None, :]) * LazyTensor(y[None, :, :])
    s32 = K_ij.sum(1, backend="reference")
    s64 = K_ij.sum(1, backend="reference", **option)
    if lib == "torch":
        assert s32.dtype == s64.dtype == torch.float32
        s32, s64 = s32.numpy(), s64.numpy()
    else:
        assert s32.dtype == s64.dtype == np.float32
    assert s64.shape == (2, 1)
    err32 = np.abs(s32.astype(np.float64) - exact).max() / exact
    err64 = np.abs(s64.astype(np.float64) - exact).max() / exact
    assert err64 < 1e-6
    assert err64 <= 0.5 * np.finfo(np.float32).eps  # one final rounding to float32
    assert err64 < err32


@pytest.mark.parametrize("name", ["sum", "logsumexp", "min_argmin", "kmin_argkmin"])
def test_acc_dtype_outputs_keep_data_dtype(name, rng):
    """reference.reduce(float32, acc float64): value outputs float32, indices int64."""
    batch = ()
    formula, weight, leaves, cats = _problem(rng, name, batch)
    leaves32 = [a.astype(np.float32) for a in leaves]
    outs = _reduce(
        name,
        (formula, weight, leaves32, cats),
        batch,
        dtype=np.float32,
        acc_dtype=np.float64,
        memory_limit=1000,
    )
    red = R.get(name, K) if R.REDUCTIONS[name].uses_k else R.get(name)
    for out, spec in zip(outs, red.outputs(formula.dim, K, 0)):
        assert out.dtype == (np.int64 if spec.kind == R.INDEX else np.float32)


# ----------------------------------------------------------------------------
# Arg-reductions return int64
# ----------------------------------------------------------------------------


def _arg_calls(F, nb):
    kw = {"backend": "reference"}
    calls = {}
    for a in (nb, nb + 1):
        calls[f"argmin{a}"] = lambda a=a: F.argmin(a, **kw)
        calls[f"argmax{a}"] = lambda a=a: F.argmax(dim=a, **kw)
        calls[f"argKmin{a}"] = lambda a=a: F.argKmin(K, dim=a, **kw)
        calls[f"min_argmin{a}"] = lambda a=a: F.min_argmin(a, **kw)[1]
        calls[f"max_argmax{a}"] = lambda a=a: F.max_argmax(a, **kw)[1]
        calls[f"Kmin_argKmin{a}"] = lambda a=a: F.Kmin_argKmin(K, a, **kw)[1]
    return calls


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("batch", [(), (2,)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_arg_reductions_int64(lib, batch, dtype, rng):
    """argmin/argmax/argKmin (and the index of *_arg*) are int64, in range, exact."""
    M, N = 7, 11
    x = rng.standard_normal(batch + (M, 1, 2)).astype(dtype)
    y = rng.standard_normal(batch + (1, N, 2)).astype(dtype)
    dense = ((x - y) ** 2).sum(-1)  # batch + (M, N)
    if lib == "torch":
        x, y = torch.from_numpy(x), torch.from_numpy(y)
    D2 = ((LazyTensor(x) - LazyTensor(y)) ** 2).sum(-1)
    nb = len(batch)
    for key, call in _arg_calls(D2, nb).items():
        out = call()
        if lib == "torch":
            assert isinstance(out, torch.Tensor) and out.dtype == torch.int64, key
            out = out.numpy()
        else:
            assert isinstance(out, np.ndarray) and out.dtype == np.int64, key
        axis = nb if key.endswith(str(nb)) else nb + 1
        n_red = dense.shape[axis]
        assert out.min() >= 0 and out.max() < n_red, key
        if key.startswith(("argmin", "min_argmin")):
            want = np.argmin(dense, axis=axis)[..., None]
        elif key.startswith(("argmax", "max_argmax")):
            want = np.argmax(dense, axis=axis)[..., None]
        else:
            want = np.argsort(dense, axis=axis, kind="stable")
            want = np.moveaxis(want, axis, -1)[..., :K]
        np.testing.assert_array_equal(out, want, err_msg=key)
