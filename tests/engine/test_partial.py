"""Partial results (engine/partial.py): the states of column ranges, merged in
j order and finalized, are the one-process answer; restricted rows are the
rows of the whole result; the CUDA source of a partial kernel compiles and
runs in the emulator as the reference.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelsolve.engine import dispatch, ir, partial
from kernelsolve.engine import reductions as R
from kernelsolve.engine.backends import cuda, emulation
from kernelsolve.engine.backends.cpu import find_compiler
from kernelsolve.engine.codegen.cuda import render_cuda
from kernelsolve.engine.codegen.spec import KernelSpec
from kernelsolve.engine.reductions.partial import PartialReduction
from kernelsolve.engine.request import ReductionOptions, ReductionRequest

NAMES = sorted(R.REDUCTIONS)
# exact: the selections (min, argKmin, ...); the sums and log-sum-exps to rounding
SELECTIONS = {n for n, r in R.REDUCTIONS.items() if not r.sums}
TARGETS = ["cpu", "reference"]
K = 3


def _bound(name):
    return R.get(name, K) if R.REDUCTIONS[name].uses_k else R.get(name)


def _data(rng, name, M, N, batch, dtype, special=True):
    """Integer values (ties everywhere); a NaN output row, an inf and a NaN
    column; positive weights for the weighted reductions."""
    red = R.REDUCTIONS[name]
    D = 1 if red.uses_weight else 2
    x = rng.integers(-2, 3, size=batch + (M, D)).astype(dtype)
    y = rng.integers(-2, 3, size=(N, D)).astype(dtype)
    if special:
        x[..., 1 % M, :] = np.nan
        y[3 % N, 0] = np.inf
        y[5 % N, -1] = np.nan
    w = rng.integers(0, 3, size=(N, 2)).astype(dtype) if red.uses_weight else None
    return x, y, w


def _request(name, x, y, w, axis, target, acc_dtype=None):
    """F = x_i - y_j reduced over the columns y (and w) index, as a request
    over j (axis=1) or over i (axis=0: the arrays' categories swapped, so
    that the plan, over j after dispatch's transposition, is the same)."""
    D = x.shape[-1]
    rows, cols = (ir.I, ir.J) if axis == 1 else (ir.J, ir.I)
    f = ir.make("sub", ir.var(0, rows, D), ir.var(1, cols, D))
    leaves, cats, weight = [x, y], [rows, cols], None
    if w is not None:
        weight = ir.var(2, cols, w.shape[-1])
        leaves.append(w)
        cats.append(cols)
    k = K if R.REDUCTIONS[name].uses_k else None
    options = ReductionOptions(target, acc_dtype)
    return ReductionRequest(f, name, tuple(leaves), tuple(cats), axis, weight, k, options)


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _to_numpy(a):
    return a.numpy() if torch is not None and isinstance(a, torch.Tensor) else np.asarray(a)


def assert_same(got, want, exact, rtol):
    """Same type, shape, dtype; bit-equal (exact), else NaN / inf at the same
    places and close."""
    got, want = _as_tuple(got), _as_tuple(want)
    assert len(got) == len(want)
    for g, e in zip(got, want):
        assert type(g) is type(e)
        g, e = _to_numpy(g), _to_numpy(e)
        assert g.shape == e.shape and g.dtype == e.dtype
        if exact:
            np.testing.assert_array_equal(g, e)
        else:
            np.testing.assert_array_equal(np.isnan(g), np.isnan(e))
            np.testing.assert_array_equal(np.isposinf(g), np.isposinf(e))
            np.testing.assert_array_equal(np.isneginf(g), np.isneginf(e))
            np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol)


def _cuts(rng, N, pieces):
    """``pieces`` consecutive ranges covering [0, N), some possibly empty."""
    inner = np.sort(rng.integers(0, N + 1, size=pieces - 1))
    bounds = [0, *inner.tolist(), N]
    return list(zip(bounds[:-1], bounds[1:]))


def _split_run(request, chunks):
    plan = dispatch.plan(request)
    leaves = request.arguments
    states = [partial.execute_partial(plan, leaves, c) for c in chunks]
    return partial.finalize(plan, partial.merge(plan, states)), states


def _check_state(plan, state, acc):
    """Fields of the state: shape, dtype (values in the accumulator dtype)."""
    red = plan.red
    fields = red.fields(plan.formula.dim, plan.K, plan.weight.dim if plan.weight else 0)
    assert set(state) == {f.name for f in fields}
    for f in fields:
        a = state[f.name]
        assert isinstance(a, np.ndarray)
        assert a.shape == plan.batch + (plan.M, f.size)
        assert a.dtype == (np.int64 if f.kind == R.INDEX else acc)


# ----------------------------------------------------------------------------
# Split columns: merge of the states, in order, == the whole reduction
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("batch", [(), (2,)], ids=["nobatch", "batch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", NAMES)
def test_split_columns_merge_to_whole(name, target, dtype, batch, axis):
    """1..4 consecutive column ranges (some empty), executed apart, merged in
    order and finalized == dispatch.reduce of the whole request: bit-equal for
    selections (ties, NaN rows, NaN/inf columns), to rounding for sums."""
    seed = [NAMES.index(name), TARGETS.index(target), len(dtype), len(batch), axis]
    rng = np.random.default_rng(seed)
    M, N = 6, 11
    x, y, w = _data(rng, name, M, N, batch, dtype)
    request = _request(name, x, y, w, axis, target)
    want = dispatch.reduce(request)
    plan = dispatch.plan(request)
    acc = np.dtype(dtype)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    splits = [[(0, N)], [(0, 0), (0, N)], _cuts(rng, N, 2), _cuts(rng, N, 3), _cuts(rng, N, 4)]
    splits.append([(0, 4), (4, 4), (4, 5), (5, N)])  # an empty and a one-column range
    for chunks in splits:
        got, states = _split_run(request, chunks)
        for s in states:
            _check_state(plan, s, acc)
        assert_same(got, want, name in SELECTIONS, rtol)


@pytest.mark.parametrize("name", NAMES)
def test_one_range_is_the_kernel_bit_for_bit(name):
    """The whole columns in one partial kernel, finalized == the one-process
    compiled result bit for bit (same fold, finalize in NumPy)."""
    rng = np.random.default_rng(7)
    x, y, w = _data(rng, name, 9, 13, (), "float64", special=False)
    x = x + rng.random(x.shape)  # no ties: every value distinct
    request = _request(name, x, y, w, 1, "cpu")
    got, _ = _split_run(request, [(0, 13)])
    rtol = 0 if name in SELECTIONS or name == "sum" else 1e-15
    assert_same(got, dispatch.reduce(request), name in SELECTIONS or name == "sum", rtol)


def test_indices_offset_and_empty_slots():
    """States hold global column indices; a K-min list of a range narrower
    than K ends in empty slots (-1, +inf), which rank after +inf and NaN
    when merged, as in one pass (a plain np_merge would keep them)."""
    x = np.zeros((2, 1))
    y = np.array([[5.0], [1.0], [2.0], [np.nan], [-np.inf], [0.5]])  # x - y: +inf at 4
    plan = dispatch.plan(_request("kmin_argkmin", x, y, None, 1, "cpu"))
    a = partial.execute_partial(plan, (x, y), (1, 2))
    np.testing.assert_array_equal(a["idx"], [[1, -1, -1]] * 2)
    np.testing.assert_array_equal(a["vals"], [[-1.0, np.inf, np.inf]] * 2)
    b = partial.execute_partial(plan, (x, y), (3, 5))
    np.testing.assert_array_equal(b["idx"], [[4, 3, -1]] * 2)
    merged = partial.merge(plan, [a, b])
    np.testing.assert_array_equal(merged["idx"], [[1, 4, 3]] * 2)
    np.testing.assert_array_equal(merged["vals"], [[-1.0, np.inf, np.nan]] * 2)
    assert a["idx"][0, 1] == -1  # merge leaves its states unchanged
    # min: an empty range before a +inf column loses to it
    for target in TARGETS:
        plan = dispatch.plan(_request("min_argmin", x, y, None, 1, target))
        states = [partial.execute_partial(plan, (x, y), c) for c in [(0, 0), (4, 5)]]
        np.testing.assert_array_equal(partial.merge(plan, states)["idx"], [[4], [4]])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["sum", "min_argmin", "kmin_argkmin", "sumsoftmaxweight"])
def test_neutral_state_and_acc_dtype(name, target):
    """An empty range: each field's init; acc_dtype='float64' on float32
    inputs: value fields in float64, and the merge still the whole answer."""
    rng = np.random.default_rng(3)
    x, y, w = _data(rng, name, 5, 8, (2,), "float32")
    request = _request(name, x, y, w, 1, target, acc_dtype="float64")
    plan = dispatch.plan(request)
    empty = partial.execute_partial(plan, request.arguments, (4, 4))
    _check_state(plan, empty, np.float64)
    for f in plan.red.fields(plan.formula.dim, plan.K, plan.weight.dim if plan.weight else 0):
        assert (empty[f.name] == f.init).all()
    got, states = _split_run(request, [(0, 3), (3, 3), (3, 8)])
    for s in states:
        _check_state(plan, s, np.float64)
    assert_same(got, dispatch.reduce(request), name in SELECTIONS, 1e-6)


@settings(max_examples=40)
@given(
    name=st.sampled_from(NAMES),
    target=st.sampled_from(TARGETS),
    seed=st.integers(0, 2**16),
    M=st.integers(1, 5),
    N=st.integers(K, 20),
    pieces=st.integers(1, 4),
)
def test_split_columns_random(name, target, seed, M, N, pieces):
    """Random sizes, data and cuts (hypothesis): split == whole."""
    rng = np.random.default_rng(seed)
    x, y, w = _data(rng, name, M, N, (), "float64")
    request = _request(name, x, y, w, 1, target)
    got, _ = _split_run(request, _cuts(rng, N, pieces))
    assert_same(got, dispatch.reduce(request), name in SELECTIONS, 1e-12)


# ----------------------------------------------------------------------------
# Row ranges: pieces == rows of the whole result, bit for bit
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("batch", [(), (2,)], ids=["nobatch", "batch"])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", NAMES)
def test_row_pieces_concatenate_to_whole(name, target, batch, axis):
    """restrict(rows=...) pieces (one empty) executed and concatenated ==
    the whole result, bit for bit; restricting rows and columns together
    and merging the column states gives the same rows."""
    rng = np.random.default_rng(11)
    M, N = 7, 10
    x, y, w = _data(rng, name, M, N, batch, "float32")
    request = _request(name, x, y, w, axis, target)
    plan = dispatch.plan(request)
    want = _as_tuple(dispatch.reduce(request))
    pieces = [(0, 3), (3, 3), (3, 4), (4, M)]
    outs = [
        _as_tuple(dispatch.execute(*partial.restrict(plan, request.arguments, rows=r)))
        for r in pieces
    ]
    for k, e in enumerate(want):
        parts = [o[k] for o in outs]
        assert parts[1].shape[len(batch)] == 0
        np.testing.assert_array_equal(np.concatenate(parts, axis=len(batch)), e)
    # rows (2, 5) x columns split in two, merged
    p, leaves = partial.restrict(plan, request.arguments, rows=(2, 5))
    states = [partial.execute_partial(p, leaves, c) for c in [(0, 4), (4, N)]]
    got = _as_tuple(partial.finalize(p, partial.merge(p, states)))
    for g, e in zip(got, want):
        index = (slice(None),) * len(batch) + (slice(2, 5),)
        if name in SELECTIONS:
            np.testing.assert_array_equal(g, e[index])
        else:
            np.testing.assert_allclose(g, e[index], rtol=1e-5)


@pytest.mark.parametrize("target", TARGETS)
def test_empty_column_plan_executes(target):
    """restrict(cols=(a, a)) then dispatch.execute: the empty reduction
    (argmin -1 and +inf, sum 0), correctly shaped, no kernel failure."""
    rng = np.random.default_rng(0)
    x, y, _ = _data(rng, "min_argmin", 4, 6, (), "float64")
    for name, want in [("min_argmin", (np.inf, -1)), ("sum", (0.0,))]:
        request = _request(name, x, y, None, 1, target)
        out = _as_tuple(
            dispatch.execute(*partial.restrict(dispatch.plan(request), (x, y), cols=(2, 2)))
        )
        for o, value in zip(out, want):
            assert o.shape == (4, 2)
            assert (o == value).all()


def test_cuda_plan_without_pairs_runs_no_kernel():
    """A CUDA plan with no row or no column launches nothing (the launch plan
    divides by M and N): its outputs are made on the host, in the kernel's
    dtypes (float16 values, int64 indices). A host plan relabelled as CUDA
    checks it without a GPU: a launch would fail here."""
    rng = np.random.default_rng(0)
    x, y, _ = _data(rng, "min_argmin", 4, 6, (), "float16")
    plan = dispatch.plan(_request("min_argmin", x, y, None, 1, "cpu"))
    for rows, cols, M in [((1, 1), None, 0), (None, (2, 2), 4)]:
        p, leaves = partial.restrict(plan, (x, y), rows, cols)
        vals, idx = dispatch.target_outputs(replace(p, target="cuda", host=None), leaves)
        assert vals.shape == idx.shape == (M, 2)
        assert vals.dtype == np.float16 and idx.dtype == np.int64
        assert (vals == np.inf).all() and (idx == -1).all()


def test_restrict_returns_views():
    """NumPy leaves are sliced, not copied; parameters pass through."""
    x, y = np.zeros((5, 2)), np.zeros((8, 2))
    p = np.ones(2)
    f = ir.make("add", ir.make("sub", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2)), ir.var(2, ir.P, 2))
    plan = dispatch.plan(ReductionRequest(f, "sum", (x, y, p), (ir.I, ir.J, ir.P)))
    rp, (rx, ry, rpar) = partial.restrict(plan, (x, y, p), rows=(1, 4), cols=(2, 7))
    assert np.shares_memory(rx, x) and np.shares_memory(ry, y) and rpar is p
    assert (rp.M, rp.N) == (3, 5)
    assert rx.shape == (3, 2) and ry.shape == (5, 2)


# ----------------------------------------------------------------------------
# Libraries and dtypes
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["argkmin", "logsumexp_weight", "max_argmax"])
def test_torch_inputs(name, target):
    """torch CPU tensors (one requiring grad): sliced as tensors, states as
    NumPy, finalize returns torch tensors equal to the whole reduction."""
    rng = np.random.default_rng(5)
    x, y, w = _data(rng, name, 6, 9, (), "float32")
    tx = torch.from_numpy(x).requires_grad_(True)
    leaves = [tx, torch.from_numpy(y)] + ([torch.from_numpy(w)] if w is not None else [])
    request = _request(name, x, y, w, 1, target)._replace(arguments=tuple(leaves))
    plan = dispatch.plan(request)
    p, sliced = partial.restrict(plan, request.arguments, cols=(2, 5))
    assert all(isinstance(a, torch.Tensor) for a in sliced)
    got, states = _split_run(request, [(0, 2), (2, 5), (5, 9)])
    assert all(isinstance(a, np.ndarray) for s in states for a in s.values())
    want = dispatch.reduce(request)
    assert_same(got, want, name in SELECTIONS, 1e-5)


def test_half_inputs():
    """float16 inputs: states in float32 (the compute dtype), the result in
    float16, equal to the whole reduction."""
    rng = np.random.default_rng(2)
    x, y, _ = _data(rng, "min_argmin", 5, 7, (), "float16")
    for name in ("min_argmin", "sum"):
        request = _request(name, x, y, None, 1, "cpu")
        got, states = _split_run(request, [(0, 3), (3, 7)])
        assert all(s[f].dtype in (np.float32, np.int64) for s in states for f in s)
        assert_same(got, dispatch.reduce(request), True, 0)


# ----------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------


def test_errors():
    x, y = np.zeros((4, 1)), np.zeros((6, 1))
    request = _request("argmin", x, y, None, 1, "reference")
    plan = dispatch.plan(request)
    with pytest.raises(ValueError, match=r"rows=\(2, 5\).*<= 4"):
        partial.restrict(plan, (x, y), rows=(2, 5))
    with pytest.raises(ValueError, match=r"cols=\(3, 2\)"):
        partial.execute_partial(plan, (x, y), cols=(3, 2))
    with pytest.raises(TypeError, match="pair of integers"):
        partial.restrict(plan, (x, y), cols=(0.5, 2))
    with pytest.raises(ValueError, match="expected 2 leaves"):
        partial.restrict(plan, (x,), rows=(0, 1))
    with pytest.raises(ValueError, match="at least one state"):
        partial.merge(plan, [])
    with pytest.raises(ValueError, match=r"state 1: expected a dict with the fields"):
        partial.merge(plan, [partial.execute_partial(plan, (x, y)), {"vals": x}])
    bad = partial.execute_partial(plan, (x, y))
    bad["idx"] = bad["idx"][:2]
    with pytest.raises(ValueError, match="field 'idx' of shape"):
        partial.finalize(plan, bad)
    # one block of rows, one of columns, all kept (pykeops' layout)
    r_i, r_j, one = np.array([[0, 4]]), np.array([[0, 6]]), np.array([1])
    blocks = dispatch.plan(request._replace(ranges=(r_i, one, r_j, r_j, one, r_i)))
    with pytest.raises(ValueError, match="block-sparse"):
        partial.execute_partial(blocks, (x, y))
    with pytest.raises(ValueError, match="block-sparse"):  # rows only (restrict_ranges)
        partial.restrict(blocks, (x, y), cols=(0, 1))


# ----------------------------------------------------------------------------
# The wrapper reduction and the CUDA target
# ----------------------------------------------------------------------------


def test_wrapper_equality_and_outputs():
    """Equal wrappers of equal reductions (kernel memos hit); outputs are the
    fields, values of kind ACCUMULATOR."""
    a, b = PartialReduction(R.get("kmin", 2)), PartialReduction(R.get("kmin", 2))
    assert a == b and hash(a) == hash(b) and a != PartialReduction(R.get("kmin", 3))
    kinds = [o.kind for o in PartialReduction(R.get("logsumexp")).outputs(3)]
    assert kinds == [R.ACCUMULATOR, R.ACCUMULATOR]
    with pytest.raises(TypeError, match="already partial"):
        PartialReduction(a)


def _partial_spec(name, dtype):
    """A request on 37 x 45 points and the spec of its partial CUDA kernel."""
    rng = np.random.default_rng(1)
    x, y, w = _data(rng, name, 37, 45, (), "float64")
    request = _request(name, x, y, w, 1, "reference")
    plan = dispatch.plan(request)
    spec = KernelSpec(
        formula=plan.formula,
        weight=plan.weight,
        reduction=PartialReduction(plan.red),
        K=plan.K,
        dtype=dtype,
        acc_dtype="float64" if dtype == "float64" else "float32",
        var_cats=plan.cats,
        var_dims=tuple(s[-1] for s in plan.shapes),
    )
    return request, plan, spec


needs_nvrtc = pytest.mark.skipif(cuda.nvrtc_available() is None, reason="no NVRTC / nvcc")


@needs_nvrtc
@pytest.mark.parametrize("name", NAMES)
def test_cuda_source_compiles(name):
    """The partial kernel's CUDA source compiles with NVRTC (float32, and
    float16 storage with float accumulators)."""
    for dtype in ("float32", "float16"):
        assert cuda.nvrtc_compile(render_cuda(_partial_spec(name, dtype)[2]))


@pytest.mark.skipif(find_compiler() is None, reason="the emulation builds the CUDA source")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_emulation_matches_reference(name):
    """The partial CUDA kernel in the emulator (ragged blocks, j split in 3
    and merged by ks_merge) == the reference state (float64)."""
    request, plan, spec = _partial_spec(name, "float64")
    leaves = [np.asarray(a).reshape(s) for a, s in zip(request.arguments, plan.shapes)]
    outs = emulation.run(spec, leaves, plan.batch, plan.M, plan.N, block=16, nsplit=3)
    want = partial.execute_partial(plan, request.arguments)
    for o, f in zip(outs, spec.fields()):
        if name in SELECTIONS:
            np.testing.assert_array_equal(o, want[f.name])
        else:
            np.testing.assert_allclose(o, want[f.name], rtol=1e-12)
