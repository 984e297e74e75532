"""The exact CUDA source of the matrix, run on the host by the emulation
harness (OS threads as CUDA threads, std::barrier as __syncthreads), against
the NumPy reference engine: every case, ragged tiles, tiny M / N, batch dims,
the split-j scheme with its merge kernel, NaN / inf / ties; and the launch
plan (shared-memory budget, split decision).
"""

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernelsolve.engine import ir
from kernelsolve.engine import reductions as R
from kernelsolve.engine.backends import cuda, emulation
from kernelsolve.engine.backends.cpu import find_compiler
from kernelsolve.engine.codegen.cuda import cuda_shared_bytes
from kernelsolve.engine.codegen.spec import KernelSpec

from .cuda_matrix import (
    MATRIX,
    NAN_COLS,
    NINF_COLS,
    Case,
    Shapes,
    assert_same,
    case,
    special_dense,
)

needs_compiler = pytest.mark.skipif(
    find_compiler() is None, reason="no C++ compiler: the emulation builds the CUDA source"
)


def shapes(c: Case, rows: int, cols: int, **batch) -> Shapes:
    """Data sizes such that the kernel sees ``rows`` output rows and folds
    ``cols`` columns (the data axes are swapped for a reduction over i)."""
    M, N = (rows, cols) if c.axis == 1 else (cols, rows)
    if c.axis == 0 and batch:
        batch = {"bx": batch.get("by", ()), "by": batch.get("bx", ()), "bp": batch.get("bp", ())}
    return Shapes(M, N, **batch)


@pytest.fixture(scope="module", autouse=True)
def _prebuild(request):
    """Build the emulation libraries of the collected tests in parallel (one
    g++ per core; each is cached on disk for later runs)."""
    if find_compiler() is None:
        return
    specs = {}
    for item in request.session.items:
        if item.module is request.module and hasattr(item, "callspec"):
            c = item.callspec.params.get("c")
            if isinstance(c, Case):
                specs[c.id] = c.problem(Shapes(5, 7)).spec
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(emulation.library, specs.values()))


def _by_ids(*ids):
    return [pytest.param(case(i), id=i) for i in ids]


# ----------------------------------------------------------------------------
# Every case of the matrix, ragged tiles
# ----------------------------------------------------------------------------


@needs_compiler
@pytest.mark.parametrize("c", [pytest.param(c, id=c.id) for c in MATRIX])
def test_matrix_matches_reference(c):
    """Every case: 37 rows, 45 columns, blocks of 16 (ragged last row block
    and last j-tile), no split: same indices, same values as the reference."""
    p = c.problem(shapes(c, 37, 45))
    assert_same(p.emulate(block=16, nsplit=1), p.reference(), p.spec, c.id)


# ----------------------------------------------------------------------------
# Small and ragged shapes
# ----------------------------------------------------------------------------

EDGE_CASES = _by_ids(
    "diff3-sum-64-j",
    "kb3-sum-32-j",
    "diff3-min_argmin-64-j",
    "gauss-max_argmax-32-i",
    "diff3-kmin_argkmin1-64-j",
    "diff3-kmin_argkmin3-64-j",
    "diff3-logsumexp-64-j",
    "nsq-sumsoftmaxweight-w_b1-64-j",
    "nsq-logsumexp_weight-w_mixed-32-i",
)
EDGE_SHAPES = [
    # rows, cols, block
    (37, 45, 16),  # ragged rows and columns
    (64, 70, 32),  # rows a multiple of the block, ragged columns
    (32, 48, 16),  # both multiples of the block
    (20, 10, 16),  # N smaller than a block
    (5, 40, 16),  # M smaller than a block
    (1, 33, 16),  # M = 1
    (33, 1, 16),  # N = 1
    (1, 1, 32),  # M = N = 1
    (37, 45, None),  # the default plan (one block of 256 threads)
]


EDGE_PARAMS = [
    pytest.param(c.values[0], rows, cols, block, id=f"{c.id}-{rows}x{cols}-b{block}")
    for c in EDGE_CASES
    for rows, cols, block in EDGE_SHAPES
    if c.values[0].K <= cols  # K-min needs K <= N (dispatch refuses more); K = 1 covers N = 1
]


@needs_compiler
@pytest.mark.parametrize("nsplit", [1, 3])
@pytest.mark.parametrize("c,rows,cols,block", EDGE_PARAMS)
def test_edge_shapes(c, rows, cols, block, nsplit):
    """Ragged last tiles, N or M below a block, M = 1, N = 1: same answer as
    the reference, with and without a split of j."""
    p = c.problem(shapes(c, rows, cols), seed=rows * 100 + cols)
    assert (p.M, p.N) == (rows, cols)
    got = p.emulate(block=block, nsplit=nsplit)
    for g, o in zip(got, p.spec.outputs()):
        assert g.shape == (rows, o.size)
    assert_same(got, p.reference(), p.spec, f"{c.id} {rows}x{cols} block={block}")


@needs_compiler
def test_no_j_variable():
    """A formula without j-variable (nothing staged in shared memory)."""
    c = case("ionly-sum-64-j")
    p = c.problem(Shapes(37, 1))
    assert p.N == 1 and ir.J not in p.cats
    assert_same(p.emulate(block=16), p.reference(), p.spec, c.id)
    x = p.leaves[p.cats.index(ir.I)]
    p3 = p.leaves[p.cats.index(ir.P)]
    np.testing.assert_allclose(p.emulate(block=16)[0], np.sin(x) * p3, rtol=1e-14)


# ----------------------------------------------------------------------------
# Batch dimensions
# ----------------------------------------------------------------------------

BATCH_CASES = _by_ids(
    "gauss-sum-32-i",
    "diff3-min_argmin-64-j",
    "diff3-kmin_argkmin3-64-j",
    "mix-sum-64-j",
    "mix-kmin_argkmin3-64-i",
    "diff3-logsumexp-64-j",
    "nsq-sumsoftmaxweight-w_mixed-64-i",
    "nsq-logsumexp_weight-w_b1-32-j",
)
BATCHES = [
    dict(bx=(2, 1), by=(1, 3), bp=(2, 3)),  # every kind of variable batched
    dict(bx=(2, 1), by=(1, 3), bp=(1, 3)),  # parameters broadcast over dim 0
    dict(bx=(2, 1), by=(1, 3)),  # parameters without batch dims
    dict(bx=(3,), bp=(3,)),  # j-variables without batch dims
]


@needs_compiler
@pytest.mark.parametrize("nsplit", [1, 2])
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: "-".join(f"{k}{v}" for k, v in b.items()))
@pytest.mark.parametrize("c", BATCH_CASES)
def test_batch(c, batch, nsplit):
    """Broadcast batch dims (blocks never span two batch entries): same as
    the reference on the same padded leaves."""
    p = c.problem(shapes(c, 19, 23, **batch), seed=7)
    full = np.broadcast_shapes(*batch.values())
    assert p.batch == tuple(full)
    got = p.emulate(block=16, nsplit=nsplit)
    for g, o in zip(got, p.spec.outputs()):
        assert g.shape == p.batch + (19, o.size)
    assert_same(got, p.reference(), p.spec, f"{c.id} {batch}")


@needs_compiler
@pytest.mark.parametrize("c", _by_ids("mix-sum-64-j", "diff3-kmin_argkmin3-64-j"))
def test_batch_entry_equals_unbatched_run(c):
    """Each batch entry of a batched launch equals an unbatched launch on
    that entry's slices (independent of the reference's batch handling)."""
    p = c.problem(Shapes(19, 23, bx=(2, 1), by=(1, 3), bp=(2, 3)), seed=3)
    got = p.emulate(block=16, nsplit=2)
    for b in itertools.product(*(range(n) for n in p.batch)):
        sl = []
        for a in p.leaves:
            own = tuple(k if a.shape[d] > 1 else 0 for d, k in enumerate(b))
            sl.append(a[own])
        one = emulation.run(p.spec, sl, (), p.M, p.N, block=16, nsplit=1)
        for g, o in zip(got, one):
            np.testing.assert_allclose(g[b], o, rtol=1e-13, err_msg=f"{c.id} batch {b}")


# ----------------------------------------------------------------------------
# Split of the j range (gridDim.y) and the merge kernel
# ----------------------------------------------------------------------------

SPLIT_CASES = _by_ids(
    "diff3-sum-64-j",
    "kb3-sum-32-acc64-j",
    "diff3-min_argmin-64-j",
    "gauss-min_argmin-32-i",
    "diff3-kmin_argkmin3-64-j",
    "mix-kmin_argkmin3-64-i",
    "diff3-logsumexp-64-j",
    "gauss-logsumexp-32-i",
    "nsq-sumsoftmaxweight-w_b1-64-j",
    "nsq-sumsoftmaxweight-w_mixed-32-i",
)


@needs_compiler
@pytest.mark.parametrize(
    "cols,nsplit",
    [
        (53, 2),  # chunk 27: not a multiple of the block (16)
        (53, 3),  # chunk 18
        (53, 5),  # chunk 11: smaller than a block
        (64, 2),  # chunk 32: a multiple of the block
        (10, 5),  # chunk 2: smaller than K = 3 (partial K-min lists merge)
    ],
)
@pytest.mark.parametrize("c", SPLIT_CASES)
def test_split_matches_single_pass(c, cols, nsplit):
    """nsplit splits of j + ks_merge: same answer as one pass and as the
    reference (indices identical, values within the dtype's tolerance)."""
    p = c.problem(shapes(c, 29, cols), seed=cols)
    plan = cuda.plan_launch(p.spec, 1, p.M, p.N, block=16, nsplit=nsplit)
    assert plan.nsplit == nsplit and plan.chunk == math.ceil(cols / nsplit)
    split = p.emulate(block=16, nsplit=nsplit)
    single = p.emulate(block=16, nsplit=1)
    assert_same(split, single, p.spec, f"{c.id} split {nsplit} vs 1")
    assert_same(split, p.reference(), p.spec, f"{c.id} split {nsplit} vs reference")


@needs_compiler
@pytest.mark.parametrize("c", _by_ids("diff3-sum-64-j", "diff3-kmin_argkmin3-64-j"))
def test_automatic_split(c):
    """With few rows the default plan splits j on its own; the result is
    still the reference's."""
    p = c.problem(shapes(c, 5, 150), seed=11)
    plan = cuda.plan_launch(p.spec, 1, p.M, p.N, block=16)
    assert plan.nsplit > 1
    assert_same(p.emulate(block=16, nsplit=None), p.reference(), p.spec, c.id)


# ----------------------------------------------------------------------------
# NaN, +-inf, ties
# ----------------------------------------------------------------------------

SPECIAL = [c for c in MATRIX if c.name in ("add1", "add3")]


@needs_compiler
@pytest.mark.parametrize("nsplit", [1, 3])
@pytest.mark.parametrize("c", [pytest.param(c, id=c.id) for c in SPECIAL])
def test_special_values(c, nsplit):
    """NaN / +inf / -inf rows and columns and ties (integer data): same NaN
    and inf pattern and the same indices as the reference, with and without
    a split (the two NaN columns 5 and 30 then lie in different splits)."""
    p = c.problem(shapes(c, 23, 41))
    ref = p.reference()
    got = p.emulate(block=16, nsplit=nsplit)
    assert_same(got, ref, p.spec, f"{c.id} nsplit={nsplit}")
    v = ref[0]  # the data does its job
    if c.reduction in ("min", "min_argmin", "logsumexp"):
        assert np.isnan(v).any() and np.isinf(v).any() and np.isfinite(v).any()
    if c.reduction == "sum":
        assert np.isnan(v).any() and np.isposinf(v).any() and np.isneginf(v).any()


@needs_compiler
@pytest.mark.parametrize("nsplit", [1, 3])
@pytest.mark.parametrize(
    "c",
    _by_ids(
        "add1-min-64-j",
        "add1-argmin-64-j",
        "add1-argmin-32-i",
        "add1-max_argmax-64-j",
        "add3-min_argmin-32-j",
        "add1-argkmin3-64-j",
        "add1-kmin_argkmin3-64-j",
        "add3-kmin_argkmin3-32-j",
    ),
)
def test_special_values_dense(c, nsplit):
    """NumPy semantics on the dense (M, N, D) tensor: min / argmin / max /
    argmax as np.min / np.argmin (first NaN wins), K-min as a stable
    np.sort / np.argsort (NaN last, ties to the smaller index)."""
    p = c.problem(shapes(c, 23, 41))
    F = special_dense(p.data.special, p.spec.D)
    if c.axis == 0:
        F = np.swapaxes(F, 0, 1)
    got = p.emulate(block=16, nsplit=nsplit)
    kind = "max" if "max" in c.reduction else "min"
    if c.K:
        order = np.argsort(F, axis=1, kind="stable")[:, : c.K, :]
        want_v = np.take_along_axis(F, order, axis=1).reshape(p.M, -1)
        want_i = order.reshape(p.M, -1)
    else:
        want_i = (np.argmin if kind == "min" else np.argmax)(F, axis=1)
        want_v = np.take_along_axis(F, want_i[:, None, :], axis=1)[:, 0, :]
    outs = p.spec.outputs()
    k = 0
    if outs[0].kind == R.VALUE:
        np.testing.assert_array_equal(got[0], want_v.astype(got[0].dtype))  # NaN == NaN here
        k = 1
    if len(outs) > k:
        np.testing.assert_array_equal(got[k], want_i)
    if c.axis == 1 and not c.K and kind == "min":
        # rows reading ya: the first NaN column wins over the later one and
        # every number; rows reading yc: the first -inf; all-NaN, all-+inf and
        # all--inf rows: index 0
        rows = np.arange(8, p.M)
        assert (want_i[rows[rows % 3 == 0], 0] == NAN_COLS[0]).all()
        assert (want_i[rows[rows % 3 == 2], 0] == NINF_COLS[0]).all()
        assert (want_i[[1, 4, 5], 0] == 0).all()
        assert np.isnan(F[1]).all() and np.isposinf(F[4]).all() and np.isneginf(F[5]).all()


# ----------------------------------------------------------------------------
# Launch plan
# ----------------------------------------------------------------------------


def _spec(dtype: str, jdims: tuple, red: str = "sum") -> KernelSpec:
    """A spec with an i-variable of dim 3 and j-variables of dims ``jdims``."""
    yvars = [ir.var(1 + k, ir.J, d) for k, d in enumerate(jdims)]
    f = ir.make("sqnorm2", ir.var(0, ir.I, 3))
    for y in yvars:
        f = ir.make("add", f, ir.make("sqnorm2", y))
    return KernelSpec(
        f,
        None,
        R.get(red),
        0,
        dtype,
        dtype,
        (ir.I,) + (ir.J,) * len(jdims),
        (3,) + tuple(jdims),
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "jdims",
    [(1,), (3,), (3, 1), (64,), (100,), (192,), (200,), (100, 100), (384,), (500,)],
    ids=lambda j: "dj" + "+".join(map(str, j)),
)
def test_block_respects_shared_memory_budget(dtype, jdims):
    """The block stages block * dj j-values in shared memory: that fits the
    48 KB default budget; the block is a multiple of 32 (at least 32, at most
    MAX_BLOCK) whenever 32 columns fit, and at least 1 otherwise."""
    spec = _spec(dtype, jdims)
    itemsize = np.dtype(dtype).itemsize
    dj = sum(jdims)
    plan = cuda.plan_launch(spec, 1, 1000, 1000)
    assert plan.shared_bytes == cuda_shared_bytes(spec, plan.block) == plan.block * dj * itemsize
    assert plan.shared_bytes <= cuda.SHARED_BUDGET, (
        f"dj={dj} {dtype}: block {plan.block} needs {plan.shared_bytes} bytes of shared memory"
    )
    assert 1 <= plan.block <= cuda.MAX_BLOCK
    if cuda.SHARED_BUDGET // (dj * itemsize) >= 32:
        assert plan.block % 32 == 0


def test_split_when_rows_are_few():
    """Few rows, many columns: j is split (gridDim.y > 1), every split gets
    columns, the splits cover N."""
    spec = _spec("float32", (3,))
    for nbatch, M, N in [(1, 100, 10**6), (2, 300, 10**5), (1, 1, 5000)]:
        plan = cuda.plan_launch(spec, nbatch, M, N, sm_count=132)
        assert plan.nsplit > 1, (nbatch, M, N)
        assert plan.chunk * plan.nsplit >= N
        assert (plan.nsplit - 1) * plan.chunk < N
        assert plan.grid == (nbatch * plan.blocks_per_batch, plan.nsplit)
        assert plan.blocks_per_batch * plan.block >= M


def test_no_split_when_rows_are_many():
    """Enough rows to fill the GPU (or too few columns): one pass over j."""
    spec = _spec("float64", (3,))
    for nbatch, M, N in [(1, 10**6, 10**6), (64, 10**4, 10**5), (1, 100, 50)]:
        plan = cuda.plan_launch(spec, nbatch, M, N, sm_count=132)
        assert plan.nsplit == 1 and plan.chunk == N, (nbatch, M, N)


@given(
    nbatch=st.integers(1, 8),
    M=st.integers(1, 5000),
    N=st.integers(1, 10**6),
    block=st.one_of(st.none(), st.sampled_from([16, 32, 64, 256])),
    nsplit=st.one_of(st.none(), st.integers(1, 200)),
    sm=st.sampled_from([1, 46, 132]),
)
def test_plan_invariants(nbatch, M, N, block, nsplit, sm):
    """Any plan: the row blocks cover M, the splits cover N, no split is empty."""
    spec = _spec("float32", (3,))
    plan = cuda.plan_launch(spec, nbatch, M, N, sm_count=sm, block=block, nsplit=nsplit)
    assert plan.nsplit >= 1 and plan.chunk >= 1
    assert plan.chunk * plan.nsplit >= N
    assert (plan.nsplit - 1) * plan.chunk < N
    if nsplit is not None:
        assert plan.nsplit <= nsplit
    assert plan.blocks_per_batch * plan.block >= M > (plan.blocks_per_batch - 1) * plan.block
    assert plan.grid_x == nbatch * plan.blocks_per_batch
