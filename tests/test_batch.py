"""Batch dimensions: broadcasting, every reduction over i and j, ``K @ v``,
axis conventions and non-contiguous inputs, against dense NumPy / torch.

LazyTensors are built from ``batch + (M, 1, D)`` (i), ``batch + (1, N, D)`` (j)
and ``batch + (1, 1, D)`` (parameter) arrays; the dense reference broadcasts the
same arrays to ``batch + (M, N, D)`` and reduces along the i or j axis.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.special
import torch

from kernelsolve import LazyTensor

M, N, D = 5, 4, 3
KNN = 3
LIBS = ["numpy", "torch"]
DTYPES = ["float32", "float64"]
TOL = {"float32": dict(rtol=1e-4, atol=1e-5), "float64": dict(rtol=1e-10, atol=1e-12)}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _convert(a: np.ndarray, lib: str, dtype: str):
    if lib == "numpy":
        return a.astype(dtype)
    return torch.tensor(a, dtype=TORCH_DTYPES[dtype])


def _check_type(out, lib: str, dtype: str | None):
    """Library and dtype of a result (dtype None: int64 indices)."""
    if lib == "numpy":
        assert isinstance(out, np.ndarray), type(out)
        assert out.dtype == np.dtype(dtype or "int64")
    else:
        assert isinstance(out, torch.Tensor), type(out)
        assert out.dtype == (TORCH_DTYPES[dtype] if dtype else torch.int64)


def _close(got, want, dtype, equal_nan=False):
    got = _np(got).astype(np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, equal_nan=equal_nan, **TOL[dtype])


# ----------------------------------------------------------------------------
# The seed example, verbatim
# ----------------------------------------------------------------------------


def _seed_example(x, l, y, s):  # noqa: E741 (the example's names)
    x_i = LazyTensor(x)
    l_i = LazyTensor(l)
    y_j = LazyTensor(y)
    s = LazyTensor(s)
    F_ij = (x_i**1.5 + y_j / l_i).cos() - (x_i | y_j) + (x_i[:, :, :, :, 2] * s.relu() * y_j)
    return F_ij.sum(dim=2)  # shape [A, B, N, D]


def _seed_dense(x, l, y, s):  # noqa: E741
    F = (x**1.5 + y / l).cos() - (x * y).sum(-1, keepdim=True) + x[..., 2:3] * torch.relu(s) * y
    A, B = x.shape[0], y.shape[1]
    return F.expand(A, B, M, N, D).sum(dim=2)


@pytest.mark.parametrize("positive", [False, True], ids=["verbatim", "positive_x"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_seed_example(dtype, positive):
    """The documented batch example: shape [A, B, N, D], values of dense torch
    (NaN where x ** 1.5 of a negative x is NaN; with x > 0 every value is finite)."""
    A, B = 2, 3
    torch.manual_seed(0)
    tdt = TORCH_DTYPES[dtype]
    x = torch.randn(A, B, M, 1, D, dtype=tdt)
    if positive:
        x = x.abs() + 0.1
    l = torch.randn(1, 1, M, 1, D, dtype=tdt)  # noqa: E741 (the example's name)
    y = torch.randn(1, B, 1, N, D, dtype=tdt)
    s = torch.rand(A, 1, 1, 1, 1, dtype=tdt)
    a_j = _seed_example(x, l, y, s)
    _check_type(a_j, "torch", dtype)
    assert a_j.shape == (A, B, N, D)
    want = _seed_dense(x, l, y, s)
    assert torch.equal(torch.isnan(a_j), torch.isnan(want))
    if positive:
        assert torch.isfinite(want).all()
    else:
        assert torch.isnan(want).any()
    torch.testing.assert_close(a_j, want, equal_nan=True, **TOL[dtype])


# ----------------------------------------------------------------------------
# Broadcasting patterns x every reduction
# ----------------------------------------------------------------------------

# (batch of x_i, batch of y_j, batch of the parameter p)
PATTERNS = {
    "none": ((), (), ()),
    "i_only": ((2,), (), ()),
    "j_only": ((), (3,), ()),
    "p_only": ((), (), (2,)),
    "A1_vs_1B": ((2, 1), (1, 3), ()),
    "p_A1_vs_j_1B": ((), (1, 3), (2, 1)),
    "left_pad_i": ((3,), (2, 3), ()),
    "left_pad_p": ((2,), (2,), (3, 1)),
    "ones": ((1,), (1,), (1,)),
    "ones_2": ((1, 1), (1, 1), ()),
    "ones_vs_full": ((1, 1), (2, 3), (1, 3)),
    "all_same": ((2, 3), (2, 3), (2, 3)),
}


def _batch_inputs(pattern, lib, dtype, seed=0):
    bx, by, bp = PATTERNS[pattern]
    rng = np.random.default_rng(seed)
    raw = {
        "x": rng.standard_normal(bx + (M, 1, D)),
        "y": rng.standard_normal(by + (1, N, D)),
        "p": rng.uniform(0.5, 1.5, bp + (1, 1, D)),
    }
    arr = {k: _convert(v, lib, dtype) for k, v in raw.items()}
    lz = SimpleNamespace(**{k: LazyTensor(v) for k, v in arr.items()})
    batch = np.broadcast_shapes(bx, by, bp)
    return lz, arr, batch


def _dense(arr, lib):
    """Scalar formula F and vector weight W, dense, broadcast to batch + (M, N, .)."""
    x, y, p = arr["x"], arr["y"], arr["p"]
    if lib == "numpy":
        F = (np.sin(x * p - y) + (x - y) ** 2 * p).sum(-1, keepdims=True)
        W = np.abs(x - y) * p + np.cos(y) + 1.5
    else:
        F = (torch.sin(x * p - y) + (x - y) ** 2 * p).sum(-1, keepdim=True)
        W = torch.abs(x - y) * p + torch.cos(y) + 1.5
    return _np(F), _np(W)


def _lazy(lz):
    F = ((lz.x * lz.p - lz.y).sin() + (lz.x - lz.y) ** 2 * lz.p).sum(-1)
    W = (lz.x - lz.y).abs() * lz.p + lz.y.cos() + 1.5  # > 0: a valid logsumexp weight
    return F, W


def _full(a, batch):
    return np.broadcast_to(a, tuple(batch) + (M, N, a.shape[-1]))


def _kmin_dense(F, ax, K):
    """(values, indices) of the K smallest along ax, stable, K axis right after
    the remaining point axis: batch + (n, K, D)."""
    idx = np.argsort(F, axis=ax, kind="stable")
    idx = np.take(idx, np.arange(K), axis=ax)
    vals = np.take_along_axis(F, idx, axis=ax)
    # batch + (K, n, D) or batch + (n, K, D) -> batch + (n, K, D)
    if ax == F.ndim - 3:
        vals, idx = np.swapaxes(vals, ax, ax + 1), np.swapaxes(idx, ax, ax + 1)
    return vals, idx


def _squeeze_d(a):
    return a[..., 0] if a.shape[-1] == 1 else a


# name -> (call on the LazyTensors, dense numpy reference, outputs' kinds)
# kinds: "v" values (dtype of the inputs), "i" int64 indices.
REDUCTIONS = {
    "sum": (lambda F, W, ax: F.sum(dim=ax), lambda F, W, ax: F.sum(ax), "v"),
    "sum_vector": (lambda F, W, ax: W.sum(dim=ax), lambda F, W, ax: W.sum(ax), "v"),
    "logsumexp": (
        lambda F, W, ax: F.logsumexp(dim=ax),
        lambda F, W, ax: scipy.special.logsumexp(F, axis=ax),
        "v",
    ),
    "logsumexp_vector": (
        lambda F, W, ax: W.logsumexp(dim=ax),
        lambda F, W, ax: scipy.special.logsumexp(W, axis=ax),
        "v",
    ),
    "logsumexp_weight": (
        lambda F, W, ax: F.logsumexp(dim=ax, weight=W),
        lambda F, W, ax: np.log((np.exp(F) * W).sum(ax)),
        "v",
    ),
    "sumsoftmaxweight": (
        lambda F, W, ax: F.sumsoftmaxweight(W, dim=ax),
        lambda F, W, ax: (np.exp(F) * W).sum(ax) / np.exp(F).sum(ax),
        "v",
    ),
    "min": (lambda F, W, ax: F.min(dim=ax), lambda F, W, ax: F.min(ax), "v"),
    "max_vector": (lambda F, W, ax: W.max(dim=ax), lambda F, W, ax: W.max(ax), "v"),
    "argmin": (lambda F, W, ax: F.argmin(dim=ax), lambda F, W, ax: F.argmin(ax), "i"),
    "argmax_vector": (lambda F, W, ax: W.argmax(dim=ax), lambda F, W, ax: W.argmax(ax), "i"),
    "min_argmin": (
        lambda F, W, ax: F.min_argmin(dim=ax),
        lambda F, W, ax: (F.min(ax), F.argmin(ax)),
        "vi",
    ),
    "max_argmax_vector": (
        lambda F, W, ax: W.max_argmax(dim=ax),
        lambda F, W, ax: (W.max(ax), W.argmax(ax)),
        "vi",
    ),
    "Kmin": (
        lambda F, W, ax: F.Kmin(KNN, dim=ax),
        lambda F, W, ax: _squeeze_d(_kmin_dense(F, ax, KNN)[0]),
        "v",
    ),
    "Kmin_vector": (
        lambda F, W, ax: W.Kmin(K=KNN, dim=ax),
        lambda F, W, ax: _kmin_dense(W, ax, KNN)[0],
        "v",
    ),
    "argKmin": (
        lambda F, W, ax: F.argKmin(KNN, dim=ax),
        lambda F, W, ax: _squeeze_d(_kmin_dense(F, ax, KNN)[1]),
        "i",
    ),
    "Kmin_argKmin": (
        lambda F, W, ax: F.Kmin_argKmin(KNN, dim=ax),
        lambda F, W, ax: tuple(_squeeze_d(a) for a in _kmin_dense(F, ax, KNN)),
        "vi",
    ),
    "Kmin_argKmin_vector": (
        lambda F, W, ax: W.Kmin_argKmin(KNN, dim=ax),
        lambda F, W, ax: _kmin_dense(W, ax, KNN),
        "vi",
    ),
}


def _compare(got, want, kinds, lib, dtype):
    if len(kinds) == 1:
        got, want = (got,), (want,)
    assert isinstance(got, tuple) and len(got) == len(kinds)
    for g, w, k in zip(got, want, kinds):
        if k == "v":
            _check_type(g, lib, dtype)
            _close(g, w, dtype)
        else:
            _check_type(g, lib, None)
            g = _np(g)
            assert g.shape == w.shape, (g.shape, w.shape)
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("over", ["i", "j"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("red", list(REDUCTIONS))
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_reduction_with_batch(pattern, red, lib, dtype, over):
    """Each reduction over i and over j, for each batch broadcasting pattern,
    equals the dense reduction (shape batch + (n, ...), library, dtype)."""
    lz, arr, batch = _batch_inputs(pattern, lib, dtype)
    F, W = _lazy(lz)
    assert F.nbatchdims == len(batch)
    assert F._shape == tuple(batch) + (M, N, 1)
    assert W._shape == tuple(batch) + (M, N, D)
    Fd, Wd = _dense(arr, lib)
    Fd, Wd = _full(Fd, batch), _full(Wd, batch)
    nb = len(batch)
    ax = nb if over == "i" else nb + 1
    lazy_call, dense_call, kinds = REDUCTIONS[red]
    got = lazy_call(F, W, ax)
    with np.errstate(all="ignore"):
        want = dense_call(Fd.astype(np.float64), Wd.astype(np.float64), ax)
    _compare(got, want, kinds, lib, dtype)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("pattern", ["none", "i_only", "A1_vs_1B", "left_pad_i"])
def test_negative_and_keyword_axes(pattern, lib):
    """dim=-3 / -2 reduce over i / j like dim=nbatchdims / nbatchdims+1; axis= is dim=;
    dim=nbatchdims+2 is the inner dimension."""
    lz, arr, batch = _batch_inputs(pattern, lib, "float64")
    F, W = _lazy(lz)
    nb = len(batch)
    for neg, pos in ((-3, nb), (-2, nb + 1)):
        a = _np(W.sum(dim=neg))
        np.testing.assert_array_equal(a, _np(W.sum(dim=pos)))
        np.testing.assert_array_equal(a, _np(W.sum(axis=pos)))
        np.testing.assert_array_equal(_np(F.argKmin(2, dim=neg)), _np(F.argKmin(2, axis=pos)))
        np.testing.assert_array_equal(_np(W.logsumexp(neg)), _np(W.logsumexp(dim=pos)))
        vals, idx = W.min_argmin(axis=neg)
        np.testing.assert_array_equal(_np(idx), _np(W.argmin(dim=pos)))
    inner = W.sum(dim=nb + 2)
    assert isinstance(inner, LazyTensor) and inner.ndim == 1
    Fd, Wd = _dense(arr, lib)
    _close(inner.sum(dim=nb + 1), _full(Wd, batch).sum(-1, keepdims=True).sum(nb + 1), "float64")


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("pattern", ["i_only", "A1_vs_1B", "left_pad_p"])
def test_transpose_batched(pattern, lib):
    """K.T keeps the batch dims and swaps i and j: K.T over j == K over i (dense too)."""
    lz, arr, batch = _batch_inputs(pattern, lib, "float64")
    F, W = _lazy(lz)
    nb = len(batch)
    WT = W.T
    assert WT._shape == tuple(batch) + (N, M, D)
    _, Wd = _dense(arr, lib)
    Wd = _full(Wd, batch)
    _close(WT.sum(dim=nb + 1), Wd.sum(nb), "float64")
    _close(WT.sum(dim=nb), Wd.sum(nb + 1), "float64")
    idx = _np(F.t().argKmin(2, dim=nb + 1))
    np.testing.assert_array_equal(
        idx, _squeeze_d(_kmin_dense(_full(_dense(arr, lib)[0], batch), nb, 2)[1])
    )


@pytest.mark.parametrize("lib", LIBS)
def test_batched_reduction_rejects_bad_axis(lib):
    """An axis that is neither i nor j of a batched LazyTensor is an error, not a wrong axis."""
    lz, _, batch = _batch_inputs("A1_vs_1B", lib, "float64")
    F, _ = _lazy(lz)
    for bad in (0, 1, 5, -4):
        with pytest.raises(ValueError):
            F.sum(dim=bad)


def test_batch_dims_that_do_not_broadcast_raise():
    """Incompatible batch dimensions are refused when combining LazyTensors."""
    x = LazyTensor(np.zeros((2, M, 1, D)))
    y = LazyTensor(np.zeros((3, 1, N, D)))
    with pytest.raises(ValueError):
        x - y


# ----------------------------------------------------------------------------
# K @ v with batches
# ----------------------------------------------------------------------------

MATMUL_CASES = {
    # name: (batch of x, batch of y, shape of v), expected leading batch of K @ v
    "K_plain_v_batched": ((), (), (3, N, 2)),
    "K_batched_v_batched": ((3,), (), (3, N, 2)),
    "K_batched_j_v_batched": ((), (3,), (3, N, 2)),
    "K_A1_v_B": ((2, 1), (), (3, N, 2)),
    "K_one_v_batched": ((1,), (1,), (3, N, 2)),
    "K_batched_v_2d": ((3,), (), (N, 2)),
    "K_batched_v_one": ((3,), (), (1, N, 2)),
    "K_plain_v_2d": ((), (), (N, 2)),
    "K_plain_v_1d": ((), (), (N,)),
    "K_2batch_v_2batch": ((2, 1), (1, 3), (2, 3, N, 1)),
    "K_1batch_v_2batch": ((3,), (), (2, 3, N, 2)),
    "K_plain_v_one": ((), (), (1, N, 2)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("case", list(MATMUL_CASES))
def test_matmul_batched(case, lib, dtype):
    """K @ v == sum_j K_ij v_j with batched K and/or v (shape batch + (M, E), or (M,))."""
    bx, by, vshape = MATMUL_CASES[case]
    rng = np.random.default_rng(5)
    x = rng.standard_normal(bx + (M, 1, D))
    y = rng.standard_normal(by + (1, N, D))
    v = rng.standard_normal(vshape)
    K = -((LazyTensor(_convert(x, lib, dtype)) - LazyTensor(_convert(y, lib, dtype))) ** 2)
    K = K.sum(-1).exp()
    out = K @ _convert(v, lib, dtype)
    _check_type(out, lib, dtype)
    Kd = np.exp(-((x - y) ** 2).sum(-1))  # batch + (M, N)
    if v.ndim == 1:
        want = Kd @ v
    else:
        want = np.matmul(Kd, v)
    _close(out, want, dtype)
    # matvec is @, rmatvec is K.T @
    _close(K.matvec(_convert(v, lib, dtype)), want, dtype)
    if v.ndim >= 2 and v.shape[-2] == N:
        u = rng.standard_normal(vshape[:-2] + (M, vshape[-1]))
        _close(K.rmatvec(_convert(u, lib, dtype)), np.matmul(np.swapaxes(Kd, -1, -2), u), dtype)


# ----------------------------------------------------------------------------
# Non-contiguous inputs
# ----------------------------------------------------------------------------


def _views(lib, dtype):
    """(name, non-contiguous arrays (x, y, p)) with batch B=3: transposed,
    strided, broadcast (stride 0) and reversed views (built in ``dtype``, so
    that no cast makes them contiguous)."""
    rng = np.random.default_rng(7)
    B = 3
    base_x = rng.standard_normal((M, B, D)).astype(dtype)  # transposed to (B, M, D)
    base_y = rng.standard_normal((D, 2 * N, B)).astype(dtype)  # permuted + strided
    base_p = rng.standard_normal((D, B)).astype(dtype)  # transposed to (B, D)
    one_x = rng.standard_normal((1, M, 1, D)).astype(dtype)
    if lib == "numpy":
        x = np.transpose(base_x, (1, 0, 2))[:, :, None, :]
        y = np.transpose(base_y, (2, 1, 0))[:, ::2][:, None, :, :]
        p = base_p.T[:, None, None, :]
        x_bcast = np.broadcast_to(one_x, (B, M, 1, D))
        y_rev = np.ascontiguousarray(np.transpose(base_y, (2, 1, 0))[:, :N])[:, ::-1][:, None]
        fortran = np.asfortranarray(rng.standard_normal((B, M, 1, D)).astype(dtype))
    else:
        tx, ty, tp = torch.tensor(base_x), torch.tensor(base_y), torch.tensor(base_p)
        x = tx.permute(1, 0, 2)[:, :, None, :]
        y = ty.permute(2, 1, 0)[:, ::2][:, None, :, :]
        p = tp.t()[:, None, None, :]
        x_bcast = torch.tensor(one_x).expand(B, M, 1, D)
        y_rev = ty.permute(2, 1, 0)[:, :N].flip(1)[:, None]  # flip copies; still a view check
        fortran = torch.tensor(rng.standard_normal((B, D, M)).astype(dtype))
        fortran = fortran.transpose(1, 2)[:, :, None, :]
    return [
        ("transposed_x_strided_y_transposed_p", (x, y, p)),
        ("expanded_x", (x_bcast, y, p)),
        ("reversed_y", (x, y_rev, p)),
        ("column_major_x", (fortran, y, p)),
    ]


def _contiguous(a):
    if isinstance(a, np.ndarray):
        return np.ascontiguousarray(a).copy()
    return a.contiguous().clone()


def _is_contiguous(a):
    if isinstance(a, np.ndarray):
        return a.flags.c_contiguous
    return a.is_contiguous()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("view", range(4), ids=lambda k: f"view{k}")
def test_non_contiguous_inputs(view, lib, dtype):
    """Strided / transposed / broadcast views give the results of contiguous copies
    (and of the dense evaluation), for sum, logsumexp, argKmin and K @ v."""
    name, arrays = _views(lib, dtype)[view]
    if name != "reversed_y" or lib == "numpy":  # torch has no negative strides: flip copies
        assert not all(_is_contiguous(a) for a in arrays), name
    copies = tuple(_contiguous(a) for a in arrays)

    def run(x, y, p):
        x_i, y_j, p_ = LazyTensor(x), LazyTensor(y), LazyTensor(p)
        F = ((x_i - y_j) ** 2 * p_).sum(-1)
        V = (x_i * p_ - y_j).cos()
        v = y[:, 0, :, :2]  # (B, N, 2), a view of y
        return (
            V.sum(dim=1),
            V.sum(dim=2),
            F.logsumexp(dim=2),
            F.argKmin(2, dim=2),
            F.argKmin(2, dim=1),
            (-F).exp() @ v,
        )

    got = run(*arrays)
    ref = run(*copies)
    for g, r in zip(got, ref):
        _check_type(g, lib, None if _np(r).dtype == np.int64 else dtype)
        np.testing.assert_array_equal(_np(g), _np(r))

    # and the dense values
    x, y, p = (_np(a).astype(np.float64) for a in copies)
    Vd = np.cos(x * p - y)
    _close(got[0], Vd.sum(1), dtype)
    _close(got[1], Vd.sum(2), dtype)
    Fd = ((x - y) ** 2 * p).sum(-1)  # (B, M, N)
    _close(got[2], scipy.special.logsumexp(Fd, axis=2)[..., None], dtype)
    _close(got[5], np.matmul(np.exp(-Fd), y[:, 0, :, :2]), dtype)
