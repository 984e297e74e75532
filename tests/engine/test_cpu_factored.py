"""The factored sum of the CPU target (``K @ b``: a scalar times a j-vector) and the
padded, aligned (D, NS) layout of j-variables, against the NumPy reference engine.

``sum_j s_ij * v_j`` is rendered as two SIMD loops per block (``s`` into a buffer,
then the products with the E columns of ``v``, in chunks of
``codegen_cpu.CPU_FACTORED_CHUNK`` columns); these tests check it gives the reference's
values, NaN and inf included, around the block length, for one and two rows per
pass (odd and even M), over i and j, with batch dimensions and for column counts
above one chunk.
"""

from __future__ import annotations

import numpy as np
import pytest

from kernelsolve import LazyTensor, Vi, Vj
from kernelsolve.engine import dispatch, ir
from kernelsolve.engine.backends import cpu
from kernelsolve.engine.codegen import cpu as codegen_cpu

from .test_cpu_target import assert_same, outputs

DTYPES = ("float32", "float64")
BJ = codegen_cpu.CPU_FACTORED_BLOCK_J


def gauss(x_i, y_j):
    return (-((x_i - y_j) ** 2).sum(-1)).exp()


def data(dtype, M, N, E, seed=0, D=3):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (M, D)).astype(dtype)
    y = rng.uniform(0, 1, (N, D)).astype(dtype)
    b = rng.uniform(-1, 1, (N, E)).astype(dtype)
    return x, y, b


def reference_kb(K, b, axis=1):
    """The same product, reduced by the reference engine, and its magnitude."""
    var = Vj if axis == 1 else Vi
    want = (K * var(b)).sum(dim=axis, backend="reference")
    scale = (K * var(np.abs(b))).sum(dim=axis, backend="reference")
    return want, scale


def last_spec():
    return list(dispatch._plans.values())[-1].spec


# ----------------------------------------------------------------------------
# Which formulas are factored
# ----------------------------------------------------------------------------


def test_factor_scalar_recognizes_k_times_b_in_both_orders():
    x, y, b = ir.var(0, ir.I, 3), ir.var(1, ir.J, 3), ir.var(2, ir.J, 11)
    k = ir.make("exp", ir.make("neg", ir.make("sqdist", x, y)))
    for f in (ir.make("mul", k, b), ir.make("mul", b, k)):
        s, v = codegen_cpu.factor_scalar(f)
        assert s is k and v is b
    # a j-only expression as the vector is fine too
    v2 = ir.make("add", b, ir.make("sum", y))
    assert codegen_cpu.factor_scalar(ir.make("mul", k, v2)) == (k, v2)


def test_factor_scalar_rejects_other_shapes():
    x, y, b = ir.var(0, ir.I, 3), ir.var(1, ir.J, 3), ir.var(2, ir.J, 11)
    k = ir.make("exp", ir.make("neg", ir.make("sqdist", x, y)))
    xi11 = ir.var(3, ir.I, 11)
    assert codegen_cpu.factor_scalar(ir.make("mul", k, xi11)) is None  # vector depends on i
    assert codegen_cpu.factor_scalar(ir.make("mul", k, ir.var(4, ir.J, 1))) is None  # dim 1
    assert codegen_cpu.factor_scalar(ir.make("add", k, b)) is None  # not a product
    assert codegen_cpu.factor_scalar(ir.make("mul", x, y)) is None  # vector * vector


@pytest.mark.parametrize("E,loops", [(11, 1), (24, 2), (25, 3)])
def test_factored_source_has_one_product_loop_per_chunk(E, loops):
    """K @ b renders s into kbuf (two loops: a whole block, and the last block with its
    padding columns masked to 0), then ceil(E / CPU_FACTORED_CHUNK) product loops per
    row path (one row, two rows), unmasked: b's padding is 0."""
    assert codegen_cpu.CPU_FACTORED_CHUNK == 12
    x, y, b = data("float32", 4, 5, E)
    gauss(Vi(x), Vj(y)) @ b
    src = codegen_cpu.render_cpu(last_spec())
    assert "kbuf[j - j0] = " in src and "kbuf2[j - j0] = " in src
    assert src.count("const float k1 = kbuf[j - j0];") == 2 * loops
    assert src.count("#pragma omp simd") == 2 * (2 + loops)
    assert src.count("kbuf[j - j0] = ks_keep(") == 2


def test_non_factored_sum_keeps_the_fused_loop():
    x, y, b = data("float32", 4, 5, 1)
    gauss(Vi(x), Vj(y)) @ b
    assert "kbuf" not in codegen_cpu.render_cpu(last_spec())


# ----------------------------------------------------------------------------
# Values against the reference
# ----------------------------------------------------------------------------

SIZES = [(1, 1), (3, 15), (2, 16), (37, 17), (3, BJ - 1), (2, BJ), (5, BJ + 1), (4, 2 * BJ + 52)]


@pytest.mark.parametrize("E", [2, 11, 25])
@pytest.mark.parametrize("dtype", DTYPES)
def test_k_at_b_matches_reference_around_the_block(dtype, E):
    """Sizes around CPU_FACTORED_BLOCK_J and the j-stride (16), odd and even M (one
    and two rows per pass), over j and over i (K.T @ b)."""
    for M, N in SIZES:
        x, y, b = data(dtype, M, N, E, seed=M + N)
        K = gauss(Vi(x), Vj(y))
        want, scale = reference_kb(K, b)
        assert_same(K @ b, want, dtype, scale, f"K @ b, M={M}, N={N}, E={E}")
        bt = np.random.default_rng(M).uniform(-1, 1, (M, E)).astype(dtype)
        want, scale = reference_kb(K, bt, axis=0)
        assert_same(K.T @ bt, want, dtype, scale, f"K.T @ b, M={M}, N={N}, E={E}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_k_at_b_special_values(dtype):
    """inf and NaN in b, and x at infinity (K = 0, so 0 * inf = NaN): the factored
    loops give the reference's NaN / inf pattern and values."""
    M, N, E = 6, BJ + 40, 11
    x, y, b = data(dtype, M, N, E, seed=5)
    b[3, 0] = np.inf
    b[BJ + 7, 1] = -np.inf
    b[10, 2] = np.nan
    b[11, 3], b[12, 3] = np.inf, -np.inf  # inf - inf within one column
    x[4] = np.inf  # row 4: K = exp(-inf) = 0 everywhere
    x[5, 0] = np.nan
    K = gauss(Vi(x), Vj(y))
    want, scale = reference_kb(K, b)
    got = K @ b
    assert np.isnan(outputs(got)[0][:, 2]).all() and np.isnan(outputs(got)[0][5]).all()
    assert_same(got, want, dtype, np.where(np.isfinite(scale), scale, 0), "special values")


@pytest.mark.parametrize("dtype", DTYPES)
def test_k_at_b_with_batch_dims_and_broadcast(dtype):
    """Batch dims: x (2, 1, M, 3), y (1, 3, N, 3), b (2, 3, N, E) and b broadcast (1, N, E)."""
    rng = np.random.default_rng(9)
    M, N, E = 7, 300, 11
    x = rng.uniform(0, 1, (2, 1, M, 3)).astype(dtype)
    y = rng.uniform(0, 1, (1, 3, N, 3)).astype(dtype)
    K = gauss(LazyTensor(x[..., :, None, :]), LazyTensor(y[..., None, :, :]))
    for bshape in ((2, 3, N, E), (1, N, E)):
        b = rng.uniform(-1, 1, bshape).astype(dtype)
        bj = LazyTensor(b[..., None, :, :])
        got = (K * bj).sum(dim=len(x.shape) - 1)
        want = (K * bj).sum(dim=len(x.shape) - 1, backend="reference")
        scale = (K * LazyTensor(np.abs(b)[..., None, :, :])).sum(
            dim=len(x.shape) - 1, backend="reference"
        )
        assert got.shape == want.shape == (2, 3, M, E)
        assert_same(
            got.reshape(-1, E), want.reshape(-1, E), dtype, scale.reshape(-1, E), str(bshape)
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_k_times_parameter_vector_with_inf(dtype):
    """K * p with p a parameter vector holding inf (the vector is not a j-variable, so
    the padding columns, where K is 0, must not add 0 * inf = NaN): N = 37, 1030."""
    for N in (37, 1030):
        x, y, _ = data(dtype, 5, N, 1, seed=N)
        K = gauss(Vi(x), Vj(y))
        p = LazyTensor(np.array([np.inf, 1.0, -2.0], dtype=dtype))
        got = (K * p).sum(dim=1)
        want = (K * p).sum(dim=1, backend="reference")
        assert np.isinf(got[:, 0]).all() and np.isfinite(got[:, 1:]).all()
        assert_same(got, want, dtype, np.where(np.isfinite(want), np.abs(want), 0) + 1, "K * p")


def test_k_at_j_expression_and_double_accumulation():
    """The vector may be a j-only expression; float32 with dtype_acc float64."""
    x, y, b = data("float32", 9, 700, 11, seed=3)
    K = gauss(Vi(x), Vj(y))
    V = Vj(b) * 2.0 + Vj(y).sum()
    for kw in ({}, {"dtype_acc": "float64"}):
        got = (K * V).sum(dim=1, **kw)
        want = (K * V).sum(dim=1, backend="reference", **kw)
        scale = (K * V.abs()).sum(dim=1, backend="reference")
        assert_same(got, want, "float32", scale, f"K * V {kw}")


# ----------------------------------------------------------------------------
# Layout of j-variables
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 15, 16, 17, 1000, 4001])
@pytest.mark.parametrize("dtype", DTYPES)
def test_j_layout_is_padded_and_aligned(dtype, n):
    """(N, D) -> (D, NS) with NS = N rounded up to 16 and zeros in the padding; a copy
    of at least ALIGN_MIN_BYTES starts on 64 bytes; data already laid out with
    N % 16 == 0 is not copied."""
    a = np.random.default_rng(0).random((2, n, 3)).astype(dtype)
    ns = codegen_cpu.cpu_j_stride(n)
    assert ns % codegen_cpu.CPU_J_ALIGN == 0 and n <= ns < n + codegen_cpu.CPU_J_ALIGN
    out = cpu.layout(a, True)
    assert out.shape == (2, 3, ns) and out.flags.c_contiguous and out.dtype == a.dtype
    np.testing.assert_array_equal(out[..., :n], np.swapaxes(a, -1, -2))
    np.testing.assert_array_equal(out[..., n:], 0)
    if out.nbytes >= cpu.ALIGN_MIN_BYTES:
        assert out.ctypes.data % 64 == 0
    col = np.random.default_rng(1).random((1, 32, 1)).astype(dtype)  # (1, 32) view
    assert np.shares_memory(cpu.layout(col, True), col)
    np.testing.assert_array_equal(cpu.layout(a, False), a)


@pytest.mark.parametrize("dtype", DTYPES)
def test_padding_columns_never_reach_a_result(dtype):
    """Whole-vector loops read the padding columns of the last block (N = 37: 11 of
    them); values there that would poison a result (1 / y = inf at y = 0, NaN from
    0 * inf) must be masked out of every reduction: compare with the reference."""
    rng = np.random.default_rng(4)
    x = rng.uniform(0.5, 1.5, (5, 1)).astype(dtype)
    y = rng.uniform(0.5, 1.5, (37, 1)).astype(dtype)
    b = rng.uniform(-1, 1, (37, 3)).astype(dtype)
    F = (Vi(x) / Vj(y)).exp()  # the padding (y = 0) gives exp(inf) = inf
    W = F * (1.0 / Vj(b))  # not a plain j-variable: the product loop is masked
    for name, call in [
        ("sum", lambda G, **kw: G.sum(dim=1, **kw)),
        ("K / b", lambda G, **kw: W.sum(dim=1, **kw)),
        ("logsumexp", lambda G, **kw: G.logsumexp(dim=1, **kw)),
        ("min_argmin", lambda G, **kw: G.min_argmin(dim=1, **kw)),
        ("argKmin", lambda G, **kw: (-G).argKmin(3, dim=1, **kw)),
    ]:
        got, want = call(F), call(F, backend="reference")
        assert all(np.isfinite(o).all() for o in outputs(got) if o.dtype != np.int64), name
        assert_same(got, want, dtype, np.abs(outputs(want)[0]) + 1, name)
