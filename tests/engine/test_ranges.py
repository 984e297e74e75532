"""Block-sparse reductions (``ranges=``) on the host: the compiled CPU kernel
against the NumPy block-sparse oracle, and the oracle against dense NumPy
with the pairs outside the kept blocks masked out; every reduction, both
axes, float32 and float64, NumPy and torch, random cluster partitions and
keep masks (empty rows, empty and one-point clusters, rows no range covers)."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kernelsolve import LazyTensor, Vi, Vj
from kernelsolve.engine import reductions as R
from kernelsolve.engine.ranges import swap_axes

from .ranges_cases import random_ranges

TOL = {"float64": dict(rtol=1e-11, atol=1e-12), "float32": dict(rtol=2e-5, atol=2e-6)}
UNWEIGHTED = ["sum", "min", "max", "argmin", "argmax", "min_argmin", "max_argmax"]
UNWEIGHTED += ["kmin", "argkmin", "kmin_argkmin", "logsumexp"]
WEIGHTED = ["logsumexp_weight", "sumsoftmaxweight"]
K = 3


def _call(F, red: str, axis: int, w=None, **kw):
    """The LazyTensor method of reduction ``red`` (its pykeops name)."""
    if red in ("kmin", "argkmin", "kmin_argkmin"):
        name = {"kmin": "Kmin", "argkmin": "argKmin", "kmin_argkmin": "Kmin_argKmin"}[red]
        return getattr(F, name)(K, axis, **kw)
    if red == "logsumexp_weight":
        return F.logsumexp(axis, weight=w, **kw)
    if red == "sumsoftmaxweight":
        return F.sumsoftmaxweight(w, axis, **kw)
    return getattr(F, red)(axis, **kw)


def _dense(Fd: np.ndarray, mask: np.ndarray, red: str, wd=None):
    """The reduction over j of the dense values ``Fd`` (M, N, D) restricted
    to ``mask`` (M, N), with the empty values of the engine (index -1)."""
    m = mask[..., None]
    empty = ~mask.any(1)[:, None]
    if red == "sum":
        return (np.where(m, Fd, 0)).sum(1)
    if red in ("min", "max", "argmin", "argmax", "min_argmin", "max_argmax"):
        lo = red.startswith(("min", "argmin"))
        v = np.where(m, Fd, np.inf if lo else -np.inf)
        idx = np.where(empty, -1, (np.argmin if lo else np.argmax)(v, axis=1))
        val = np.take_along_axis(v, np.maximum(idx, 0)[:, None], 1)[:, 0]
        val = np.where(empty, np.inf if lo else -np.inf, val)
        return {"min": val, "max": val, "argmin": idx, "argmax": idx}.get(red, (val, idx))
    if red in ("kmin", "argkmin", "kmin_argkmin"):
        v = np.where(m, Fd, np.inf)[..., 0]
        idx = np.argsort(v, axis=1, kind="stable")[:, :K]
        val = np.take_along_axis(v, idx, 1)
        idx = np.where(np.isinf(val), -1, idx)
        return {"kmin": val, "argkmin": idx}.get(red, (val, idx))
    v = np.where(m, Fd, -np.inf)
    top = v.max(1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0)
    e = np.exp(v - top)
    with np.errstate(divide="ignore", invalid="ignore"):
        if red == "logsumexp":
            return np.log(e.sum(1)) + top[:, 0]
        if red == "logsumexp_weight":
            return np.log((e * wd).sum(1)) + top[:, 0]
        return (e * wd).sum(1) / e.sum(1)  # sumsoftmaxweight: NaN on empty rows


def _problem(seed: int, M: int, N: int, dtype: str, lib: str):
    rng = np.random.default_rng(seed)
    x, y = rng.random((M, 2)).astype(dtype), rng.random((N, 2)).astype(dtype)
    w = rng.random((N, 2)).astype(dtype)
    ranges, mask = random_ranges(rng, M, N, ci=rng.integers(1, 7), cj=rng.integers(1, 7))
    if lib == "torch":
        x, y, w = (torch.from_numpy(a) for a in (x, y, w))
        ranges = tuple(torch.from_numpy(a).to(torch.int32) for a in ranges)
    return x, y, w, ranges, mask


def _numpy(a):
    return a.numpy() if isinstance(a, torch.Tensor) else a


def _assert_close(got, want, dtype, what=""):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, r in zip(got, want):
        g, r = _numpy(g), np.asarray(r)
        g = g.reshape(r.shape) if g.size == r.size else g
        if g.dtype == np.int64:
            np.testing.assert_array_equal(g, r, err_msg=what)
        else:
            np.testing.assert_allclose(g, r, err_msg=what, **TOL[dtype])


@pytest.mark.parametrize("red", UNWEIGHTED + WEIGHTED)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_every_reduction_cpu_reference_dense(red, dtype, lib):
    """CPU == block-sparse oracle (tight), oracle == dense masked NumPy, both axes."""
    for seed in range(3):
        M, N = 37 + seed, 29 + 5 * seed
        x, y, w, ranges, mask = _problem(seed, M, N, dtype, lib)
        for axis in (1, 0):
            # over i: x are the j-variables, the pattern is the transposed one
            F = -Vi(x).sqdist(Vj(y)) if axis == 1 else -Vj(x).sqdist(Vi(y))
            rg = ranges if axis == 1 else swap_axes(ranges)
            wl = (Vj(w) if axis == 1 else Vi(w))[0] if red in WEIGHTED else None
            got = _call(F, red, axis, wl, ranges=rg, backend="CPU")
            ref = _call(F, red, axis, wl, ranges=rg, backend="reference")
            _assert_close(got, ref, dtype, f"{red} seed {seed} axis {axis} cpu vs reference")
            xn, yn, wn = _numpy(x), _numpy(y), _numpy(w).astype(np.float64)
            Fd = -((xn[:, None].astype(np.float64) - yn[None]) ** 2).sum(-1)[..., None]
            dense = _dense(Fd, mask, red, wn[None, :, :1])
            tol = "float32" if dtype == "float32" else "float64"
            _assert_close(ref, dense, tol, f"{red} seed {seed} axis {axis} reference vs dense")


@given(
    seed=st.integers(0, 10**6),
    M=st.integers(1, 70),
    N=st.integers(1, 70),
    ci=st.integers(1, 9),
    cj=st.integers(1, 9),
    density=st.sampled_from([0.0, 0.2, 0.6, 1.0]),
    red=st.sampled_from(["sum", "min_argmin", "kmin_argkmin", "logsumexp"]),
)
def test_random_patterns(seed, M, N, ci, cj, density, red):
    """Random partitions and keep masks: compiled CPU == oracle == dense masked,
    for a vector formula (D = 3) and K @ b (the factored-sum strategy)."""
    rng = np.random.default_rng(seed)
    x, y, b = rng.random((M, 3)), rng.random((N, 3)), rng.standard_normal((N, 4))
    ranges, mask = random_ranges(rng, M, N, ci=ci, cj=cj, density=density)
    F = (Vi(x) - Vj(y)).abs() if red != "logsumexp" else -Vi(x).sqdist(Vj(y))
    k = K if "kmin" in red else None
    red_name = red if k is None else "kmin_argkmin"
    if k is not None and N < K:
        return
    got = F._reduce(red_name, 1, K=k, ranges=ranges, backend="CPU")
    ref = F._reduce(red_name, 1, K=k, ranges=ranges, backend="reference")
    _assert_close(got, ref, "float64", f"{red}")
    Kb = (-Vi(x).sqdist(Vj(y))).exp()
    Kb.ranges = ranges
    Kd = np.exp(-((x[:, None] - y[None]) ** 2).sum(-1)) * mask
    np.testing.assert_allclose(Kb @ b, Kd @ b, rtol=1e-11, atol=1e-12)
    if red == "sum":
        dense = (np.abs(x[:, None] - y[None]) * mask[..., None]).sum(1)
        np.testing.assert_allclose(got, dense, rtol=1e-11, atol=1e-12)


def test_masked_columns_never_read():
    """inf / NaN in columns outside the kept blocks never reach the result
    (the whole-vector SIMD loops read past a j-range: their lanes are masked)."""
    rng = np.random.default_rng(0)
    M, N = 40, 100
    x, y = rng.random((M, 2)), rng.random((N, 2))
    b = rng.standard_normal((N, 5))
    ranges = (np.array([[0, 40]]), np.array([1]), np.array([[3, 7]])) * 2
    b[:3], b[7:] = np.inf, np.nan
    K = (-Vi(x).sqdist(Vj(y))).exp()
    K.ranges = ranges
    got = K @ b
    want = np.exp(-((x[:, None] - y[None, 3:7]) ** 2).sum(-1)) @ b[3:7]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    s = (K * Vj(b)).sum(1)  # the fused-sum strategy, same ranges
    np.testing.assert_allclose(s, want, rtol=1e-12)


def test_empty_values():
    """Rows with nothing kept (or covered by no range) get the reduction's
    empty value: sum 0, min +inf, max -inf, logsumexp -inf, indices -1,
    sumsoftmaxweight NaN (0 / 0, as pykeops)."""
    rng = np.random.default_rng(0)
    x, y = rng.random((6, 2)), rng.random((5, 2))
    ranges = (np.array([[0, 3], [3, 5]]), np.array([1, 1]), np.array([[0, 3]])) * 2
    F = Vi(x).sqdist(Vj(y))
    assert (F.sum(1, ranges=ranges)[3:] == 0).all()
    assert np.isposinf(F.min(1, ranges=ranges)[3:]).all()
    assert np.isneginf(F.max(1, ranges=ranges)[3:]).all()
    assert (F.argmin(1, ranges=ranges)[3:] == -1).all()
    assert np.isneginf(F.logsumexp(1, ranges=ranges)[3:]).all()
    assert np.isnan(F.sumsoftmaxweight(Vj(y)[0], 1, ranges=ranges)[3:]).all()
    assert np.isposinf(F.Kmin(2, 1, ranges=ranges)[3:]).all()
    # a row with one kept column: Kmin pads with +inf, argKmin with -1
    one = (np.array([[0, 6]]), np.array([1]), np.array([[2, 3]])) * 2
    v, i = F.Kmin_argKmin(2, 1, ranges=one)
    assert (i[:, 0] == 2).all() and (i[:, 1] == -1).all() and np.isposinf(v[:, 1]).all()


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_lazytensor_attribute(lib):
    """``K.ranges = ...`` (pykeops' attribute) drives ``@`` and the reductions,
    is carried by operations, swapped by ``.t()``, and ``ranges=None`` given
    to a reduction overrides it; the kept plan of ``@`` follows a new value."""
    x, y, w, ranges, mask = _problem(3, 50, 40, "float64", lib)
    K = (-Vi(x).sqdist(Vj(y))).exp()
    Kd = np.exp(-((_numpy(x)[:, None] - _numpy(y)[None]) ** 2).sum(-1))
    b = w[:, :1]
    dense = K @ b
    K.ranges = ranges
    for _ in range(2):  # the second call takes the kept plan
        np.testing.assert_allclose(_numpy(K @ b), (Kd * mask) @ _numpy(b), rtol=1e-12)
    np.testing.assert_allclose(_numpy((2 * K).sum(1)), 2 * (Kd * mask).sum(1, keepdims=True))
    np.testing.assert_allclose(_numpy(K.t() @ x[:, :1]), (Kd * mask).T @ _numpy(x)[:, :1])
    np.testing.assert_allclose(_numpy(K.sum(1, ranges=None)), Kd.sum(1, keepdims=True))
    K.ranges = None
    np.testing.assert_allclose(_numpy(K @ b), _numpy(dense))
    assert LazyTensor(x[:, None, :]).ranges is None


def test_double_gradient_and_grad_vs_dense_torch():
    """Gradients with ranges (over j and over i, every variable) equal those of
    dense masked torch, to second order."""
    torch.manual_seed(0)
    x, y, w, ranges, mask = _problem(5, 33, 27, "float64", "torch")
    mask = torch.from_numpy(mask)
    x, y, b = x.requires_grad_(), y.requires_grad_(), w[:, :1].clone().requires_grad_()
    for axis in (1, 0):
        K = (-Vi(x).sqdist(Vj(y))).exp()
        K.ranges = ranges
        out = (K * Vj(b)).sum(axis)
        Kd = torch.exp(-((x[:, None] - y[None]) ** 2).sum(-1)) * mask
        ref = Kd @ b if axis == 1 else (Kd * b.T).sum(0)[:, None]
        assert torch.allclose(out, ref, rtol=1e-12, atol=1e-13)
        g = torch.autograd.grad((out**2).sum(), (x, y, b), create_graph=True)
        gr = torch.autograd.grad((ref**2).sum(), (x, y, b), create_graph=True)
        for a, c in zip(g, gr):
            assert torch.allclose(a, c, rtol=1e-10, atol=1e-12)
        h = torch.autograd.grad(g[0].sum(), y)[0]
        hr = torch.autograd.grad(gr[0].sum(), y)[0]
        assert torch.allclose(h, hr, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("red", ["min", "kmin", "logsumexp", "sumsoftmaxweight"])
def test_gradients_of_other_reductions(red):
    """min / Kmin (rows without a kept pair get no gradient), logsumexp and
    sumsoftmaxweight with ranges: gradients equal dense masked torch."""
    x, y, w, ranges, mask = _problem(7, 31, 26, "float64", "torch")
    mask = torch.from_numpy(mask)
    x = x.requires_grad_()
    F = -Vi(x).sqdist(Vj(y))
    Fd = -((x[:, None] - y[None]) ** 2).sum(-1)
    if red == "min":
        out = F.min(1, ranges=ranges)
        ref = torch.where(mask, Fd, torch.inf).min(1, keepdim=True).values
    elif red == "kmin":
        out = F.Kmin(2, 1, ranges=ranges)
        ref = torch.where(mask, Fd, torch.inf).sort(1).values[:, :2]
    elif red == "logsumexp":
        out = F.logsumexp(1, ranges=ranges)
        ref = torch.logsumexp(torch.where(mask, Fd, -torch.inf), 1, keepdim=True)
    else:
        out = F.sumsoftmaxweight(Vj(w)[0], 1, ranges=ranges)
        p = torch.softmax(torch.where(mask, Fd, -torch.inf), 1)
        ref = p @ w[:, :1]
    keep = torch.isfinite(ref)
    assert torch.equal(keep, torch.isfinite(out))
    assert torch.allclose(out[keep], ref[keep], rtol=1e-12, atol=1e-13)
    g = torch.autograd.grad(torch.where(keep, out, 0).sum(), x)[0]
    gr = torch.autograd.grad(torch.where(keep, ref, 0).sum(), x)[0]
    assert torch.allclose(g, gr, rtol=1e-10, atol=1e-12)


def test_reductions_registry_covered():
    assert set(UNWEIGHTED + WEIGHTED) == set(R.REDUCTIONS)


def test_call_false_out_and_half_precision():
    """ranges= with call=False (the ReductionCall keeps them; a call may
    override them), out=, and float16 torch (computed in float32)."""
    x, y, w, ranges, mask = _problem(11, 30, 20, "float64", "numpy")
    F = -Vi(x).sqdist(Vj(y))
    Fd = -((x[:, None] - y[None]) ** 2).sum(-1)
    want = (Fd * mask).sum(1, keepdims=True)
    rc = F.sum(1, ranges=ranges, call=False)
    np.testing.assert_allclose(rc(), want)
    np.testing.assert_allclose(rc(x, y), want)
    np.testing.assert_allclose(rc(ranges=None), Fd.sum(1, keepdims=True))
    out = np.empty((30, 1))
    assert F.sum(1, ranges=ranges, out=out) is out
    np.testing.assert_allclose(out, want)
    xh, yh = torch.from_numpy(x).half(), torch.from_numpy(y).half()
    got = (-Vi(xh).sqdist(Vj(yh))).sum(1, ranges=ranges)
    assert got.dtype == torch.float16
    np.testing.assert_allclose(got.float().numpy(), want, rtol=1e-2, atol=1e-2)
