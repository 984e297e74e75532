"""Every LazyTensor operation against a dense NumPy / torch evaluation.

Each case builds a formula on LazyTensors bound to x (M, D), y (N, D), ...
and the same formula on the dense broadcast arrays ``x[:, None, :]``,
``y[None, :, :]`` (NumPy for NumPy inputs, torch for torch inputs); the
reductions over j (``sum(dim=1)``) and over i (``sum(dim=0)``) must agree.
"""

from __future__ import annotations

import math
import operator
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.special
import torch

from kernelsolve import LazyTensor, Pm, Vi, Vj

M, N, D = 7, 9, 3
LIBS = ["numpy", "torch"]
DTYPES = ["float32", "float64"]
# (rtol, atol): the error of a sum is bounded by rtol * sum(|terms|) + atol.
TOL = {"float32": (1e-4, 1e-5), "float64": (1e-10, 1e-12)}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------


def _raw(domain: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Float64 NumPy inputs valid for the ops of ``domain``."""
    rng = np.random.default_rng(seed)
    if domain == "any":

        def gen(*shape):
            return rng.standard_normal(shape)

    elif domain == "pos":

        def gen(*shape):
            return rng.uniform(0.5, 2.0, shape)

    elif domain == "unit":

        def gen(*shape):
            return rng.uniform(-0.9, 0.9, shape)

    elif domain == "zeros":

        def gen(*shape):
            return np.abs(rng.standard_normal(shape))

    elif domain == "overlap":

        def gen(*shape):
            return rng.standard_normal(shape)

    else:
        raise ValueError(domain)
    out = {
        "X": gen(M, D),
        "Y": gen(N, D),
        "U": gen(M, 1),
        "V": gen(N, 1),
        "P": gen(D),
        "S": gen(D * D),
        "W": gen(N, D * D),
        "A": gen(M, D * D),
        "B": gen(M, D * 2),
        # clamp bounds with lo < hi everywhere
        "LO": rng.uniform(-1.0, -0.1, (M, 1)),
        "HI": rng.uniform(0.1, 1.0, (N, 1)),
    }
    if domain == "zeros":  # exact zeros: rsqrt(0), xlogx(0), sinxdivx(0), normalize(0)
        out["X"][[0, 3]] = 0.0
        out["Y"][2] = 0.0
        out["Y"][5, 1] = 0.0
    if domain == "overlap":  # x_i == y_j for some pairs (and some coordinates)
        out["Y"][:3] = out["X"][:3]
        out["Y"][5, 1] = out["X"][4, 1]
        out["V"][:2] = out["U"][:2]
    return out


def _convert(a: np.ndarray, lib: str, dtype: str):
    if lib == "numpy":
        return a.astype(dtype)
    return torch.tensor(a, dtype=TORCH_DTYPES[dtype])


def _inputs(domain: str, lib: str, dtype: str):
    """(lazy namespace, dense namespace) over the same arrays."""
    r = {k: _convert(v, lib, dtype) for k, v in _raw(domain).items()}
    lz = SimpleNamespace(
        x=LazyTensor(r["X"][:, None, :]),
        y=LazyTensor(r["Y"][None, :, :]),
        u=LazyTensor(r["U"][:, None, :]),
        v=LazyTensor(r["V"][None, :, :]),
        lo=LazyTensor(r["LO"][:, None, :]),
        hi=LazyTensor(r["HI"][None, :, :]),
        a=Vi(r["A"]),
        b=Vi(r["B"]),
        w=Vj(r["W"]),
        p=Pm(r["P"]),
        s=Pm(r["S"]),
        **r,
    )
    dn = SimpleNamespace(
        x=r["X"][:, None, :],
        y=r["Y"][None, :, :],
        u=r["U"][:, None, :],
        v=r["V"][None, :, :],
        lo=r["LO"][:, None, :],
        hi=r["HI"][None, :, :],
        a=r["A"][:, None, :],
        b=r["B"][:, None, :],
        w=r["W"][None, :, :],
        p=r["P"],
        s=r["S"],
        **r,
    )
    return lz, dn


# ----------------------------------------------------------------------------
# Dense operations, one namespace per library (written independently of the
# engine: library functions wherever one exists)
# ----------------------------------------------------------------------------


def _np_cat(*arrs):
    lead = np.broadcast_shapes(*(a.shape[:-1] for a in arrs))
    return np.concatenate([np.broadcast_to(a, lead + a.shape[-1:]) for a in arrs], axis=-1)


def _th_cat(*arrs):
    lead = torch.broadcast_shapes(*(a.shape[:-1] for a in arrs))
    return torch.cat([a.expand(*lead, a.shape[-1]) for a in arrs], dim=-1)


def _to_float(cond, like):
    if isinstance(like, np.ndarray):
        return cond.astype(like.dtype)
    return cond.to(like.dtype)


XP = {
    "numpy": SimpleNamespace(
        exp=np.exp,
        log=np.log,
        xlogx=lambda a: scipy.special.xlogy(a, a),
        sin=np.sin,
        cos=np.cos,
        tan=np.tan,
        asin=np.arcsin,
        acos=np.arccos,
        atan=np.arctan,
        atan2=np.arctan2,
        tanh=np.tanh,
        sinh=np.sinh,
        cosh=np.cosh,
        sqrt=np.sqrt,
        abs=np.abs,
        sign=np.sign,
        floor=np.floor,
        sinc=np.sinc,
        round=lambda a, d=0: np.round(a, d),
        where=np.where,
        minimum=np.minimum,
        maximum=np.maximum,
        ones_like=np.ones_like,
        zeros_like=np.zeros_like,
        full=lambda a, val: np.full_like(a, val),
        sum=lambda a: a.sum(-1, keepdims=True),
        amin=lambda a: a.min(-1, keepdims=True),
        amax=lambda a: a.max(-1, keepdims=True),
        argmin=lambda a: np.argmin(a, -1)[..., None].astype(a.dtype),
        argmax=lambda a: np.argmax(a, -1)[..., None].astype(a.dtype),
        norm=lambda a: np.linalg.norm(a, axis=-1, keepdims=True),
        einsum=np.einsum,
        cat=_np_cat,
        arange=lambda n, like: np.arange(n, dtype=like.dtype),
        reshape=lambda a, *s: a.reshape(*s),
    ),
    "torch": SimpleNamespace(
        exp=torch.exp,
        log=torch.log,
        xlogx=lambda a: torch.xlogy(a, a),
        sin=torch.sin,
        cos=torch.cos,
        tan=torch.tan,
        asin=torch.asin,
        acos=torch.acos,
        atan=torch.atan,
        atan2=torch.atan2,
        tanh=torch.tanh,
        sinh=torch.sinh,
        cosh=torch.cosh,
        sqrt=torch.sqrt,
        abs=torch.abs,
        sign=torch.sign,
        floor=torch.floor,
        sinc=torch.sinc,
        round=lambda a, d=0: torch.round(a, decimals=d),
        where=torch.where,
        minimum=torch.minimum,
        maximum=torch.maximum,
        ones_like=torch.ones_like,
        zeros_like=torch.zeros_like,
        full=lambda a, val: torch.full_like(a, val),
        sum=lambda a: a.sum(-1, keepdim=True),
        amin=lambda a: a.amin(-1, keepdim=True),
        amax=lambda a: a.amax(-1, keepdim=True),
        argmin=lambda a: torch.argmin(a, -1, keepdim=True).to(a.dtype),
        argmax=lambda a: torch.argmax(a, -1, keepdim=True).to(a.dtype),
        norm=lambda a: torch.linalg.vector_norm(a, dim=-1, keepdim=True),
        einsum=torch.einsum,
        cat=_th_cat,
        arange=lambda n, like: torch.arange(n, dtype=like.dtype),
        reshape=lambda a, *s: a.reshape(*s),
    ),
}


# ----------------------------------------------------------------------------
# Comparison helpers
# ----------------------------------------------------------------------------


def _np64(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _check_type(out, lib: str, dtype: str):
    if lib == "numpy":
        assert isinstance(out, np.ndarray), type(out)
        assert out.dtype == np.dtype(dtype)
    else:
        assert isinstance(out, torch.Tensor), type(out)
        assert out.dtype == TORCH_DTYPES[dtype]


def _assert_sum_close(got, full: np.ndarray, axis: int, dtype: str):
    """``got`` == ``full.sum(axis)`` up to the rounding of a float sum."""
    rtol, atol = TOL[dtype]
    want = full.sum(axis=axis)
    bound = atol + rtol * np.abs(full).sum(axis=axis)
    got = _np64(got)
    assert got.shape == want.shape
    assert np.all(np.isfinite(want)), "test data out of the op's domain"
    err = np.abs(got - want)
    assert np.all(err <= bound), (
        f"max error {err.max():.3g}, worst ratio {(err / bound).max():.3g}"
    )


def _dense_full(F) -> np.ndarray:
    """The dense formula as a float64 (rows, cols, D) array: a 1-D array is a
    parameter-only formula of shape (1, 1, D)."""
    F = _np64(F)
    assert F.ndim in (1, 3), F.shape
    return F.reshape(1, 1, -1) if F.ndim == 1 else F


def _check_both_axes(K, F, lib, dtype, axes=(0, 1)):
    """K's shape is the dense one; K.sum over j (and over i) match the dense sums."""
    full = _dense_full(F)
    assert K._shape == full.shape
    for axis in axes:
        out = K.sum(dim=axis)
        _check_type(out, lib, dtype)
        _assert_sum_close(out, full, axis, dtype)


# ----------------------------------------------------------------------------
# The cases: (id, domain, lazy formula, dense formula)
# ----------------------------------------------------------------------------


def _cmp(op):
    return lambda d, xp: _to_float(op(d.x, d.y), d.x)


CASES = [
    # + - * / between LazyTensors (same dim and dim-1 broadcasting)
    ("add", "any", lambda t: t.x + t.y, lambda d, xp: d.x + d.y),
    ("sub", "any", lambda t: t.x - t.y, lambda d, xp: d.x - d.y),
    ("mul", "any", lambda t: t.x * t.y, lambda d, xp: d.x * d.y),
    ("div", "pos", lambda t: t.x / t.y, lambda d, xp: d.x / d.y),
    ("add_dim1", "any", lambda t: t.x + t.v, lambda d, xp: d.x + d.v),
    ("sub_dim1", "any", lambda t: t.v - t.x, lambda d, xp: d.v - d.x),
    ("mul_dim1", "any", lambda t: t.u * t.y, lambda d, xp: d.u * d.y),
    ("div_dim1", "pos", lambda t: t.x / t.v, lambda d, xp: d.x / d.v),
    ("div_dim1_num", "pos", lambda t: t.u / t.y, lambda d, xp: d.u / d.y),
    # with Python ints and floats, both sides
    ("add_int", "any", lambda t: t.x + 2, lambda d, xp: d.x + 2),
    ("sub_int", "any", lambda t: t.x - 3, lambda d, xp: d.x - 3),
    ("mul_int", "any", lambda t: (t.x - t.y) * 3, lambda d, xp: (d.x - d.y) * 3),
    ("div_int", "any", lambda t: (t.x - t.y) / 4, lambda d, xp: (d.x - d.y) / 4),
    ("add_float", "any", lambda t: t.y + 2.5, lambda d, xp: d.y + 2.5),
    ("sub_float", "any", lambda t: (t.x * t.y) - 0.7, lambda d, xp: (d.x * d.y) - 0.7),
    ("mul_float", "any", lambda t: (t.x - t.y) * 1.5, lambda d, xp: (d.x - d.y) * 1.5),
    ("div_float", "any", lambda t: (t.x - t.y) / 0.3, lambda d, xp: (d.x - d.y) / 0.3),
    ("radd_int", "any", lambda t: 2 + (t.x * t.y), lambda d, xp: 2 + (d.x * d.y)),
    ("rsub_int", "any", lambda t: 2 - (t.x * t.y), lambda d, xp: 2 - (d.x * d.y)),
    ("rmul_int", "any", lambda t: 3 * (t.x - t.y), lambda d, xp: 3 * (d.x - d.y)),
    ("rdiv_int", "pos", lambda t: 1 / t.y, lambda d, xp: 1 / d.y),
    ("rdiv_int2", "pos", lambda t: 2 / (t.x + t.y), lambda d, xp: 2 / (d.x + d.y)),
    ("radd_float", "any", lambda t: 2.5 + (t.x * t.y), lambda d, xp: 2.5 + (d.x * d.y)),
    ("rsub_float", "any", lambda t: 2.5 - t.x, lambda d, xp: 2.5 - d.x),
    ("rsub_float_ij", "any", lambda t: 2.5 - (t.x - t.y), lambda d, xp: 2.5 - (d.x - d.y)),
    ("rmul_float", "any", lambda t: 1.5 * (t.x - t.y), lambda d, xp: 1.5 * (d.x - d.y)),
    ("rdiv_float", "pos", lambda t: 2.5 / (t.x * t.y), lambda d, xp: 2.5 / (d.x * d.y)),
    ("neg", "any", lambda t: -(t.x - t.y), lambda d, xp: -(d.x - d.y)),
    ("neg_neg", "any", lambda t: operator.neg(-(t.x * t.y)), lambda d, xp: d.x * d.y),
    # simplification corner cases (0, 1, -1 with broadcasting)
    ("zero_mul", "any", lambda t: 0 * (t.x - t.y), lambda d, xp: xp.zeros_like(d.x - d.y)),
    ("mul_zero", "any", lambda t: t.u * 0, lambda d, xp: xp.zeros_like(d.u)),
    ("dim1_plus_zero_vec", "any", lambda t: t.u + 0 * t.y, lambda d, xp: d.u + 0 * d.y),
    ("dim1_times_ones", "any", lambda t: t.v * (t.x**0), lambda d, xp: d.v * xp.ones_like(d.x)),
    ("one_mul", "any", lambda t: 1 * (t.x - t.y), lambda d, xp: d.x - d.y),
    ("sub_zero", "any", lambda t: (t.x * t.y) - 0, lambda d, xp: d.x * d.y),
    ("zero_sub", "any", lambda t: 0 - t.u * t.y, lambda d, xp: -(d.u * d.y)),
    ("zero_sub_dim1", "any", lambda t: (0 * t.y) - t.u, lambda d, xp: 0 * d.y - d.u),
    ("div_one", "any", lambda t: (t.x - t.y) / 1, lambda d, xp: d.x - d.y),
    ("zero_div", "pos", lambda t: 0 / (t.x + t.y), lambda d, xp: xp.zeros_like(d.x + d.y)),
    ("minus_one_mul", "any", lambda t: -1 * (t.x - t.y), lambda d, xp: -(d.x - d.y)),
    ("minus_one_mul_dim1", "any", lambda t: (t.x * 0 - 1) * t.v, lambda d, xp: -d.v + 0 * d.x),
    (
        "const_fold",
        "any",
        lambda t: (2 + 3) * t.x + (t.y * 0 + 1),
        lambda d, xp: 5 * d.x + 1 + 0 * d.y,
    ),
    # powers
    ("pow_int2", "any", lambda t: (t.x - t.y) ** 2, lambda d, xp: (d.x - d.y) ** 2),
    ("pow_int3", "any", lambda t: (t.x - t.y) ** 3, lambda d, xp: (d.x - d.y) ** 3),
    ("pow_int_m2", "pos", lambda t: (t.x + t.y) ** -2, lambda d, xp: 1 / (d.x + d.y) ** 2),
    ("pow_int_m1", "pos", lambda t: (t.x + t.y) ** -1, lambda d, xp: 1 / (d.x + d.y)),
    ("pow_int0", "any", lambda t: (t.x - t.y) ** 0, lambda d, xp: xp.ones_like(d.x - d.y)),
    ("pow_int1", "any", lambda t: (t.x - t.y) ** 1, lambda d, xp: d.x - d.y),
    ("pow_float_int", "any", lambda t: (t.x - t.y) ** 2.0, lambda d, xp: (d.x - d.y) ** 2),
    ("pow_float_int3", "any", lambda t: (t.x - t.y) ** 3.0, lambda d, xp: (d.x - d.y) ** 3),
    ("pow_float15", "pos", lambda t: (t.x * t.y) ** 1.5, lambda d, xp: (d.x * d.y) ** 1.5),
    ("pow_half", "pos", lambda t: (t.x * t.y) ** 0.5, lambda d, xp: xp.sqrt(d.x * d.y)),
    ("pow_mhalf", "pos", lambda t: (t.x * t.y) ** -0.5, lambda d, xp: 1 / xp.sqrt(d.x * d.y)),
    ("pow_neg_float", "pos", lambda t: (t.x + t.y) ** -1.3, lambda d, xp: (d.x + d.y) ** -1.3),
    ("powf_lt_dim1", "pos", lambda t: (t.x * t.y) ** t.v, lambda d, xp: (d.x * d.y) ** d.v),
    ("powf_lt_dimD", "pos", lambda t: t.x**t.y, lambda d, xp: d.x**d.y),
    ("rpow_float", "any", lambda t: 2.0 ** (t.x - t.y), lambda d, xp: 2.0 ** (d.x - d.y)),
    ("rpow_int", "any", lambda t: 3 ** (t.x * t.y), lambda d, xp: 3.0 ** (d.x * d.y)),
    ("power_int", "any", lambda t: (t.x - t.y).power(3), lambda d, xp: (d.x - d.y) ** 3),
    ("power_lt", "pos", lambda t: t.x.power(t.v), lambda d, xp: d.x**d.v),
    # elementwise functions
    ("abs", "any", lambda t: (t.x - t.y).abs(), lambda d, xp: xp.abs(d.x - d.y)),
    ("dunder_abs", "any", lambda t: abs(t.x - t.y), lambda d, xp: xp.abs(d.x - d.y)),
    ("exp", "any", lambda t: (t.x - t.y).exp(), lambda d, xp: xp.exp(d.x - d.y)),
    ("log", "pos", lambda t: (t.x * t.y).log(), lambda d, xp: xp.log(d.x * d.y)),
    ("xlogx", "pos", lambda t: (t.x * t.y).xlogx(), lambda d, xp: xp.xlogx(d.x * d.y)),
    ("xlogx_zero", "zeros", lambda t: (t.x * t.y).xlogx(), lambda d, xp: xp.xlogx(d.x * d.y)),
    ("inv", "pos", lambda t: (t.x + t.y).inv(), lambda d, xp: 1 / (d.x + d.y)),
    ("sin", "any", lambda t: (t.x - t.y).sin(), lambda d, xp: xp.sin(d.x - d.y)),
    ("cos", "any", lambda t: (t.x - t.y).cos(), lambda d, xp: xp.cos(d.x - d.y)),
    ("tan", "unit", lambda t: (t.x * t.y).tan(), lambda d, xp: xp.tan(d.x * d.y)),
    ("asin", "unit", lambda t: (t.x * t.y).asin(), lambda d, xp: xp.asin(d.x * d.y)),
    ("acos", "unit", lambda t: (t.x * t.y).acos(), lambda d, xp: xp.acos(d.x * d.y)),
    ("atan", "any", lambda t: (t.x - t.y).atan(), lambda d, xp: xp.atan(d.x - d.y)),
    ("atan2", "any", lambda t: t.x.atan2(t.y), lambda d, xp: xp.atan2(d.x, d.y)),
    ("atan2_dim1", "any", lambda t: t.v.atan2(t.x), lambda d, xp: xp.atan2(d.v + 0 * d.x, d.x)),
    ("tanh", "any", lambda t: (t.x - t.y).tanh(), lambda d, xp: xp.tanh(d.x - d.y)),
    ("sinh", "any", lambda t: (t.x - t.y).sinh(), lambda d, xp: xp.sinh(d.x - d.y)),
    ("cosh", "any", lambda t: (t.x - t.y).cosh(), lambda d, xp: xp.cosh(d.x - d.y)),
    ("sqrt", "pos", lambda t: (t.x * t.y).sqrt(), lambda d, xp: xp.sqrt(d.x * d.y)),
    ("sqrt_zero", "zeros", lambda t: (t.x * t.y).sqrt(), lambda d, xp: xp.sqrt(d.x * d.y)),
    ("rsqrt", "pos", lambda t: (t.x * t.y).rsqrt(), lambda d, xp: 1 / xp.sqrt(d.x * d.y)),
    (
        "rsqrt_zero",
        "zeros",
        lambda t: (t.x * t.y).rsqrt(),
        lambda d, xp: _rsqrt_dense(d.x * d.y, xp),
    ),
    ("square", "any", lambda t: (t.x - t.y).square(), lambda d, xp: (d.x - d.y) * (d.x - d.y)),
    (
        "relu",
        "any",
        lambda t: (t.x - t.y).relu(),
        lambda d, xp: xp.maximum(d.x - d.y, xp.zeros_like(d.x - d.y)),
    ),
    (
        "step",
        "overlap",
        lambda t: (t.x - t.y).step(),
        lambda d, xp: _to_float(d.x - d.y >= 0, d.x),
    ),
    ("sign", "overlap", lambda t: (t.x - t.y).sign(), lambda d, xp: xp.sign(d.x - d.y)),
    (
        "sinxdivx",
        "overlap",
        lambda t: (3 * (t.x - t.y)).sinxdivx(),
        lambda d, xp: xp.sinc(3 * (d.x - d.y) / math.pi),
    ),
    ("sinc", "overlap", lambda t: (t.x - t.y).sinc(), lambda d, xp: xp.sinc(d.x - d.y)),
    ("floor", "any", lambda t: (2 * (t.x - t.y)).floor(), lambda d, xp: xp.floor(2 * (d.x - d.y))),
    (
        "round0",
        "any",
        lambda t: (2 * (t.x - t.y)).round(0),
        lambda d, xp: xp.round(2 * (d.x - d.y), 0),
    ),
    ("round_default", "any", lambda t: (t.x * t.y).round(), lambda d, xp: xp.round(d.x * d.y)),
    ("round2", "any", lambda t: (t.x - t.y).round(2), lambda d, xp: xp.round(d.x - d.y, 2)),
    # clamp: int bounds (clampint), float bounds, mixed, LazyTensor bounds
    (
        "clamp_int",
        "any",
        lambda t: (t.x - t.y).clamp(-1, 1),
        lambda d, xp: xp.minimum(
            xp.maximum(d.x - d.y, xp.full(d.x - d.y, -1.0)), xp.full(d.x - d.y, 1.0)
        ),
    ),
    (
        "clamp_float",
        "any",
        lambda t: (t.x - t.y).clamp(-0.5, 0.7),
        lambda d, xp: xp.minimum(
            xp.maximum(d.x - d.y, xp.full(d.x - d.y, -0.5)), xp.full(d.x - d.y, 0.7)
        ),
    ),
    (
        "clamp_mixed",
        "any",
        lambda t: (t.x - t.y).clamp(-1, 0.5),
        lambda d, xp: xp.minimum(
            xp.maximum(d.x - d.y, xp.full(d.x - d.y, -1.0)), xp.full(d.x - d.y, 0.5)
        ),
    ),
    (
        "clamp_lazy",
        "any",
        lambda t: (t.x - t.y).clamp(t.lo, t.hi),
        lambda d, xp: xp.minimum(xp.maximum(d.x - d.y, d.lo), d.hi),
    ),
    (
        "clamp_lazy_num",
        "any",
        lambda t: (t.x - t.y).clamp(t.lo, 0.25),
        lambda d, xp: xp.minimum(xp.maximum(d.x - d.y, d.lo), xp.full(d.x - d.y, 0.25)),
    ),
    (
        "clampint",
        "any",
        lambda t: (2 * (t.x - t.y)).clampint(-1, 2),
        lambda d, xp: xp.minimum(
            xp.maximum(2 * (d.x - d.y), xp.full(d.x - d.y, -1.0)), xp.full(d.x - d.y, 2.0)
        ),
    ),
    (
        "ifelse_lazy",
        "any",
        lambda t: (t.x - t.y).ifelse(t.u, t.v),
        lambda d, xp: xp.where(d.x - d.y >= 0, d.u + 0 * d.y, d.v + 0 * d.x),
    ),
    (
        "ifelse_num",
        "overlap",
        lambda t: (t.x - t.y).ifelse(1.5, t.y),
        lambda d, xp: xp.where(d.x - d.y >= 0, xp.full(d.x - d.y, 1.5), d.y + 0 * d.x),
    ),
    (
        "mod_offset",
        "any",
        lambda t: (3 * (t.x - t.y)).mod(1.5, 0.2),
        lambda d, xp: 3 * (d.x - d.y) - 1.5 * xp.floor((3 * (d.x - d.y) - 0.2) / 1.5),
    ),
    (
        "mod_int",
        "any",
        lambda t: (3 * (t.x - t.y)).mod(2),
        lambda d, xp: 3 * (d.x - d.y) - 2 * xp.floor(3 * (d.x - d.y) / 2),
    ),
    (
        "mod_lazy",
        "pos",
        lambda t: (t.x - t.y).mod(t.v, t.u),
        lambda d, xp: (d.x - d.y) - d.v * xp.floor((d.x - d.y - d.u) / d.v),
    ),
    # comparisons, 0/1 valued
    ("eq", "overlap", lambda t: t.x == t.y, _cmp(lambda a, b: a == b)),
    ("ne", "overlap", lambda t: t.x != t.y, _cmp(lambda a, b: a != b)),
    ("lt", "overlap", lambda t: t.x < t.y, _cmp(lambda a, b: a < b)),
    ("le", "overlap", lambda t: t.x <= t.y, _cmp(lambda a, b: a <= b)),
    ("gt", "overlap", lambda t: t.x > t.y, _cmp(lambda a, b: a > b)),
    ("ge", "overlap", lambda t: t.x >= t.y, _cmp(lambda a, b: a >= b)),
    ("gt_num", "any", lambda t: (t.x - t.y) > 0.5, lambda d, xp: _to_float(d.x - d.y > 0.5, d.x)),
    ("le_int", "any", lambda t: (t.x * t.y) <= 0, lambda d, xp: _to_float(d.x * d.y <= 0, d.x)),
    ("lt_dim1", "overlap", lambda t: t.u < t.v, lambda d, xp: _to_float(d.u < d.v, d.u)),
    # vector operations
    ("scalprod", "any", lambda t: t.x | t.y, lambda d, xp: xp.sum(d.x * d.y)),
    (
        "scalprod_param",
        "any",
        lambda t: (t.x - t.y) | t.p,
        lambda d, xp: xp.sum((d.x - d.y) * d.p),
    ),
    (
        "ror_list",
        "any",
        lambda t: [1.0, -2.0, 0.5] | (t.x - t.y),
        lambda d, xp: xp.sum((d.x - d.y) * _ror_weights(d.x)),
    ),
    ("ror_array", "any", lambda t: t.P | (t.x - t.y), lambda d, xp: xp.sum(d.P * (d.x - d.y))),
    ("sqnorm2", "any", lambda t: (t.x - t.y).sqnorm2(), lambda d, xp: xp.sum((d.x - d.y) ** 2)),
    ("norm2", "any", lambda t: (t.x - t.y).norm2(), lambda d, xp: xp.norm(d.x - d.y)),
    ("norm_minus1", "any", lambda t: (t.x - t.y).norm(-1), lambda d, xp: xp.norm(d.x - d.y)),
    ("norm_dim2", "any", lambda t: (t.x - t.y).norm(2), lambda d, xp: xp.norm(d.x - d.y)),
    (
        "normalize",
        "any",
        lambda t: (t.x - t.y).normalize(),
        lambda d, xp: (d.x - d.y) / xp.norm(d.x - d.y),
    ),
    (
        "normalize_zero",
        "overlap",
        lambda t: (t.x - t.y).normalize(),
        lambda d, xp: xp.where(
            xp.norm(d.x - d.y) == 0,
            0.0,
            (d.x - d.y) / xp.where(xp.norm(d.x - d.y) == 0, 1.0, xp.norm(d.x - d.y)),
        ),
    ),
    ("sqdist", "overlap", lambda t: t.x.sqdist(t.y), lambda d, xp: xp.sum((d.x - d.y) ** 2)),
    (
        "rsqrt_sqdist_zero",
        "overlap",
        lambda t: t.x.sqdist(t.y).rsqrt(),
        lambda d, xp: xp.where(
            xp.sum((d.x - d.y) ** 2) == 0,
            0.0,
            1 / xp.sqrt(xp.where(xp.sum((d.x - d.y) ** 2) == 0, 1.0, xp.sum((d.x - d.y) ** 2))),
        ),
    ),
    (
        "wsqnorm_dim1_lazy",
        "pos",
        lambda t: (t.x - t.y).weightedsqnorm(t.v),
        lambda d, xp: d.v * xp.sum((d.x - d.y) ** 2),
    ),
    (
        "wsqnorm_dim1_float",
        "any",
        lambda t: (t.x - t.y).weightedsqnorm(Pm(2.5)),
        lambda d, xp: 2.5 * xp.sum((d.x - d.y) ** 2),
    ),
    (
        "wsqnorm_diag",
        "pos",
        lambda t: (t.x - t.y).weightedsqnorm(t.p),
        lambda d, xp: xp.sum(d.p * (d.x - d.y) ** 2),
    ),
    (
        "wsqnorm_full_param",
        "any",
        lambda t: (t.x - t.y).weightedsqnorm(t.s),
        lambda d, xp: xp.einsum("...k,kl,...l->...", d.x - d.y, xp.reshape(d.s, D, D), d.x - d.y)[
            ..., None
        ],
    ),
    (
        "wsqnorm_full_j",
        "any",
        lambda t: (t.x - t.y).weightedsqnorm(t.w),
        lambda d, xp: xp.einsum(
            "...k,...kl,...l->...", d.x - d.y, xp.reshape(d.w, 1, N, D, D), d.x - d.y
        )[..., None],
    ),
    (
        "weightedsqdist",
        "pos",
        lambda t: t.x.weightedsqdist(t.y, t.p),
        lambda d, xp: xp.sum(d.p * (d.x - d.y) ** 2),
    ),
    (
        "weightedsqdist_full",
        "any",
        lambda t: t.x.weightedsqdist(t.y, t.s),
        lambda d, xp: xp.einsum("...k,kl,...l->...", d.x - d.y, xp.reshape(d.s, D, D), d.x - d.y)[
            ..., None
        ],
    ),
    # coordinates
    ("elem", "any", lambda t: (t.x - t.y).elem(1), lambda d, xp: (d.x - d.y)[..., 1:2]),
    ("extract", "any", lambda t: (t.x * t.y).extract(1, 2), lambda d, xp: (d.x * d.y)[..., 1:3]),
    (
        "getitem_ellipsis",
        "any",
        lambda t: (t.x - t.y)[..., 2],
        lambda d, xp: (d.x - d.y)[..., 2:3],
    ),
    ("getitem_colons", "any", lambda t: (t.x - t.y)[:, :, 0], lambda d, xp: (d.x - d.y)[..., 0:1]),
    ("getitem_slice", "any", lambda t: (t.x - t.y)[0:2], lambda d, xp: (d.x - d.y)[..., 0:2]),
    ("getitem_slice_open", "any", lambda t: (t.x * t.y)[1:], lambda d, xp: (d.x * d.y)[..., 1:]),
    ("getitem_neg", "any", lambda t: (t.x - t.y)[-1], lambda d, xp: (d.x - d.y)[..., 2:3]),
    ("getitem_neg_slice", "any", lambda t: (t.x - t.y)[-2:], lambda d, xp: (d.x - d.y)[..., 1:]),
    ("getitem_var", "any", lambda t: t.x[1] * t.y[2], lambda d, xp: d.x[..., 1:2] * d.y[..., 2:3]),
    # concatenation
    ("concat", "any", lambda t: t.x.concat(t.v), lambda d, xp: xp.cat(d.x, d.v)),
    (
        "concat_ij",
        "any",
        lambda t: (t.x - t.y).concat(t.u * t.v),
        lambda d, xp: xp.cat(d.x - d.y, d.u * d.v),
    ),
    (
        "concatenate",
        "any",
        lambda t: LazyTensor.concatenate((t.x, t.u, t.y)),
        lambda d, xp: xp.cat(d.x, d.u, d.y),
    ),
    (
        "concatenate_axis",
        "any",
        lambda t: LazyTensor.concatenate([t.y, t.x], axis=2),
        lambda d, xp: xp.cat(d.y, d.x),
    ),
    ("cat", "any", lambda t: LazyTensor.cat((t.y, t.x), -1), lambda d, xp: xp.cat(d.y, d.x)),
    ("cat_dim2", "any", lambda t: LazyTensor.cat((t.v, t.x), 2), lambda d, xp: xp.cat(d.v, d.x)),
    # matrix products
    (
        "matvecmult",
        "any",
        lambda t: t.a.matvecmult(t.y),
        lambda d, xp: xp.einsum("...kl,...l->...k", xp.reshape(d.a, M, 1, D, D), d.y),
    ),
    (
        "matvecmult_param",
        "any",
        lambda t: t.s.matvecmult(t.x - t.y),
        lambda d, xp: xp.einsum("kl,...l->...k", xp.reshape(d.s, D, D), d.x - d.y),
    ),
    (
        "vecmatmult",
        "any",
        lambda t: t.y.vecmatmult(t.b),
        lambda d, xp: xp.einsum("...k,...kl->...l", d.y, xp.reshape(d.b, M, 1, D, 2)),
    ),
    (
        "tensorprod",
        "any",
        lambda t: t.x.tensorprod(t.y[:2]),
        lambda d, xp: xp.reshape(d.x[..., :, None] * d.y[..., None, :2], M, N, D * 2),
    ),
    (
        "one_hot",
        "pos",
        lambda t: (t.u + t.v).one_hot(5),
        lambda d, xp: _to_float(xp.round(d.u + d.v) == xp.arange(5, d.u), d.u),
    ),
    # inner-dimension reductions (LazyTensor results)
    ("inner_sum", "any", lambda t: (t.x - t.y).sum(-1), lambda d, xp: xp.sum(d.x - d.y)),
    ("inner_sum_dim", "any", lambda t: (t.x * t.y).sum(dim=2), lambda d, xp: xp.sum(d.x * d.y)),
    ("inner_min", "any", lambda t: (t.x - t.y).min(-1), lambda d, xp: xp.amin(d.x - d.y)),
    ("inner_max", "any", lambda t: (t.x - t.y).max(-1), lambda d, xp: xp.amax(d.x - d.y)),
    ("inner_argmin", "any", lambda t: (t.x - t.y).argmin(-1), lambda d, xp: xp.argmin(d.x - d.y)),
    ("inner_argmax", "any", lambda t: (t.x - t.y).argmax(-1), lambda d, xp: xp.argmax(d.x - d.y)),
    ("inner_min_dim1", "any", lambda t: (t.u * t.v).min(-1), lambda d, xp: d.u * d.v),
    ("inner_argmax_dim1", "any", lambda t: (t.u * t.v).argmax(-1), lambda d, xp: 0 * d.u * d.v),
    # parameters in every spelling
    ("Pm_float", "any", lambda t: Pm(2.0) * (t.x - t.y), lambda d, xp: 2.0 * (d.x - d.y)),
    ("Pm_int", "any", lambda t: (t.x - t.y) * Pm(3), lambda d, xp: 3.0 * (d.x - d.y)),
    ("Pm_array", "any", lambda t: (t.x - t.y) * Pm(t.P), lambda d, xp: (d.x - d.y) * d.P),
    ("LT_array_1d", "any", lambda t: LazyTensor(t.P) + t.x * t.y, lambda d, xp: d.P + d.x * d.y),
    ("LT_float", "any", lambda t: LazyTensor(1.5) - t.x * t.y, lambda d, xp: 1.5 - d.x * d.y),
    (
        "LT_list",
        "any",
        lambda t: LazyTensor([1.0, -2.0, 0.5]) * (t.x - t.y),
        lambda d, xp: (d.x - d.y) * _ror_weights(d.x),
    ),
    (
        "LT_scalar_item",
        "any",
        lambda t: LazyTensor(t.P[1]) * (t.x - t.y),
        lambda d, xp: d.P[1] * (d.x - d.y),
    ),
    (
        "LT_0d",
        "any",
        lambda t: LazyTensor(t.P[1:2].reshape(())) * (t.x - t.y),
        lambda d, xp: d.P[1] * (d.x - d.y),
    ),
    (
        "Pm_0d",
        "any",
        lambda t: (t.x - t.y) / Pm(t.P[2:3].reshape(())),
        lambda d, xp: (d.x - d.y) / d.P[2],
    ),
    (
        "LT_param_3d",
        "any",
        lambda t: LazyTensor(t.P[None, None, :]) * t.x - t.y,
        lambda d, xp: d.P * d.x - d.y,
    ),
    ("array_times_lazy", "any", lambda t: t.P * (t.x - t.y), lambda d, xp: d.P * (d.x - d.y)),
    ("lazy_times_array", "any", lambda t: (t.x - t.y) * t.P, lambda d, xp: (d.x - d.y) * d.P),
    ("Vi_Vj_2d", "any", lambda t: Vi(t.X) - Vj(t.Y), lambda d, xp: d.x - d.y),
    (
        "Vi_Vj_1d",
        "any",
        lambda t: Vi(t.U[:, 0]) * Vj(t.Y),
        lambda d, xp: d.u * d.y,
    ),
    ("Vj_1d", "any", lambda t: t.x + Vj(t.V[:, 0]), lambda d, xp: d.x + d.v),
    (
        "axis_kw",
        "any",
        lambda t: LazyTensor(t.X, axis=0) - LazyTensor(t.Y, axis=1),
        lambda d, xp: d.x - d.y,
    ),
    (
        "axis_kw_1d",
        "any",
        lambda t: LazyTensor(t.U[:, 0], axis=0) * LazyTensor(t.V[:, 0], axis=1),
        lambda d, xp: d.u * d.v,
    ),
    # a realistic composite: Gaussian kernel with a diagonal metric, CSE-able subterms
    (
        "gaussian_composite",
        "any",
        lambda t: (
            (-t.x.weightedsqdist(t.y, t.p * t.p)).exp() * (t.x | t.y) + (t.x - t.y).sqnorm2()
        ),
        lambda d, xp: (
            xp.exp(-xp.sum(d.p * d.p * (d.x - d.y) ** 2)) * xp.sum(d.x * d.y)
            + xp.sum((d.x - d.y) ** 2)
        ),
    ),
]


def _ror_weights(like):
    w = np.array([1.0, -2.0, 0.5])
    if isinstance(like, np.ndarray):
        return w.astype(like.dtype)
    return torch.tensor(w, dtype=like.dtype)


# ----------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------


# Cases also reduced over i (sum(dim=0)): every compiled reduction is one kernel,
# so the transposed reduction is checked where i and j play different roles.
AXIS0_CASES = {
    "sub",
    "div",
    "div_dim1",
    "rsub_float_ij",
    "zero_sub_dim1",
    "minus_one_mul_dim1",
    "pow_int_m2",
    "powf_lt_dim1",
    "powf_lt_dimD",
    "atan2",
    "atan2_dim1",
    "rsqrt_zero",
    "step",
    "sinxdivx",
    "floor",
    "round2",
    "clamp_lazy",
    "ifelse_lazy",
    "mod_lazy",
    "lt",
    "ge",
    "normalize_zero",
    "wsqnorm_full_j",
    "weightedsqdist_full",
    "getitem_var",
    "concat_ij",
    "concatenate",
    "matvecmult",
    "vecmatmult",
    "tensorprod",
    "one_hot",
    "inner_argmin",
    "Vi_Vj_1d",
    "axis_kw",
    "gaussian_composite",
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_matches_dense(case, lib, dtype):
    """sum over j (and over i for AXIS0_CASES) of the LazyTensor op == the same
    sums of the dense op."""
    name, domain, lazy, dense = case
    lz, dn = _inputs(domain, lib, dtype)
    K = lazy(lz)
    F = dense(dn, XP[lib])
    _check_both_axes(K, F, lib, dtype, axes=(0, 1) if name in AXIS0_CASES else (1,))


def test_axis0_cases_exist():
    """Every name of AXIS0_CASES is a case (no silently skipped check)."""
    assert AXIS0_CASES <= {c[0] for c in CASES}


TRANSPOSE_CASES = [
    ("sub", lambda t: t.x - t.y, lambda d, xp: d.x - d.y),
    (
        "scalar",
        lambda t: (t.x * t.u).sin() | (t.y + t.p),
        lambda d, xp: xp.sum(xp.sin(d.x * d.u) * (d.y + d.p)),
    ),
    ("only_i", lambda t: t.x.exp() * 2, lambda d, xp: xp.exp(d.x) * 2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=[c[0] for c in TRANSPOSE_CASES])
def test_transpose(case, lib, dtype):
    """K.T reduced over j == K reduced over i (and vice versa); .T is .t(); K.T.T is K."""
    _, lazy, dense = case
    lz, dn = _inputs("any", lib, dtype)
    K = lazy(lz)
    full = _dense_full(dense(dn, XP[lib]))
    rows, cols, dim = full.shape
    for KT in (K.T, K.t()):
        assert KT._shape == (cols, rows, dim)
        for axis in (0, 1):
            out = KT.sum(dim=axis)
            _check_type(out, lib, dtype)
            _assert_sum_close(out, full, 1 - axis, dtype)
    KTT = K.T.T
    assert KTT._shape == K._shape
    _assert_sum_close(KTT.sum(dim=1), full, 1, dtype)
    # the transposed LazyTensor combines with a fresh i-variable of N points
    mixed = K.T + Vi(lz.Y).sum(-1)
    dense_mixed = full.transpose(1, 0, 2) + _np64(lz.Y).sum(-1)[:, None, None]
    assert mixed._shape == dense_mixed.shape
    for axis in (0, 1):
        _assert_sum_close(mixed.sum(dim=axis), dense_mixed, axis, dtype)


def _same_leaf_cases():
    return [
        ("Vi_minus_Vj_same", lambda t: Vi(t.X) - Vj(t.X), lambda X, Z, xp: X[:, None] - X[None]),
        (
            "x_minus_xT",
            lambda t: t.x - t.x.T,
            lambda X, Z, xp: X[:, None] - X[None],
        ),
        (
            "sqdist_same_rsqrt",
            lambda t: Vi(t.X).sqdist(Vj(t.X)).rsqrt(),
            lambda X, Z, xp: _rsqrt_dense(xp.sum((X[:, None] - X[None]) ** 2), xp),
        ),
        (
            "K_plus_KT",
            lambda t: (t.x - Vj(t.Z)) + (t.x - Vj(t.Z)).T,
            lambda X, Z, xp: (X[:, None] - Z[None]) + (X[None] - Z[:, None]),
        ),
        (
            "K_times_KT_scalar",
            lambda t: (t.x | Vj(t.Z)).exp() * (t.x | Vj(t.Z)).T,
            lambda X, Z, xp: xp.exp(xp.sum(X[:, None] * Z[None])) * xp.sum(X[None] * Z[:, None]),
        ),
        (
            "x_times_x_minus_xj",
            lambda t: t.x * t.x - Vj(t.X) * 2,
            lambda X, Z, xp: X[:, None] * X[:, None] - X[None] * 2,
        ),
    ]


def _rsqrt_dense(a, xp):
    return xp.where(a == 0, 0.0, 1 / xp.sqrt(xp.where(a == 0, 1.0, a)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("case", _same_leaf_cases(), ids=[c[0] for c in _same_leaf_cases()])
def test_same_leaf_twice(case, lib, dtype):
    """One array bound twice (as i and as j, or transposed) gives the right numbers."""
    _, lazy, dense = case
    rng = np.random.default_rng(1)
    X = _convert(rng.standard_normal((M, D)), lib, dtype)
    Z = _convert(rng.standard_normal((M, D)), lib, dtype)
    lz = SimpleNamespace(X=X, Z=Z, x=LazyTensor(X[:, None, :]))
    K = lazy(lz)
    _check_both_axes(K, dense(X, Z, XP[lib]), lib, dtype)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_repr_and_shape_attributes(lib, dtype):
    """repr shows formula and shape; shape, _shape, ndim (inner dim), dim(), nbatchdims, dtype."""
    lz, _ = _inputs("any", lib, dtype)
    K = lz.x - lz.y
    text = repr(K)
    assert K.formula.key in text
    assert "sub(" in text and "Var(" in text
    assert str((M, N, D)) in text
    assert str(K) == text
    assert K.shape == (M, N, D)
    assert K._shape == (M, N, D)
    assert K.ndim == D
    assert K.dim() == 3
    assert K.nbatchdims == 0
    assert K.dtype == dtype

    S = (lz.x | lz.y).exp()
    assert "exp(scalprod(" in repr(S)
    assert str((M, N)) in repr(S)
    assert S.shape == (M, N)
    assert S._shape == (M, N, 1)
    assert S.ndim == 1
    assert S.dim() == 3

    assert lz.x.shape == (M, 1, D)
    assert lz.y.shape == (1, N, D)
    assert lz.u.shape == (M, 1)
    assert lz.p._shape == (1, 1, D)
    assert (lz.x.concat(lz.y)).ndim == 2 * D
    assert (lz.x.tensorprod(lz.y)).shape == (M, N, D * D)

    P = Pm(2.0)
    assert P.dtype is None
    assert P._shape == (1, 1, 1)
    assert P.ndim == 1

    B = LazyTensor(_convert(np.ones((2, 4, M, 1, D)), lib, dtype))
    assert B.nbatchdims == 2
    assert B.shape == (2, 4, M, 1, D)
    assert B.dim() == 5
    assert (B - lz.y)._shape == (2, 4, M, N, D)


@pytest.mark.parametrize("lib", LIBS)
def test_powf_exponent_dimension_mismatch_raises(lib):
    """An exponent LazyTensor whose inner dim is neither 1 nor D is rejected."""
    lz, _ = _inputs("pos", lib, "float64")
    with pytest.raises(ValueError):
        lz.x ** lz.x.concat(lz.v)


NUMPY_INT_CASES = [
    ("add", lambda t, k: t + k),
    ("pow", lambda t, k: t**k),
    ("clamp", lambda t, k: t.clamp(-k, k)),
    ("getitem", lambda t, k: t[k - 1]),
    ("elem", lambda t, k: t.elem(k - 1)),
    ("round", lambda t, k: t.round(k)),
    ("one_hot", lambda t, k: t.sum(-1).one_hot(k + 1)),
]


@pytest.mark.parametrize("case", NUMPY_INT_CASES, ids=[c[0] for c in NUMPY_INT_CASES])
def test_numpy_integer_scalars_behave_like_int(case):
    """A NumPy integer (np.int64(2), e.g. from an index array) acts as the int 2:
    Python-int attributes, the same formula object (hash-consing, cache key) and
    the same numbers as with a Python int."""
    _, build = case
    lz, _ = _inputs("any", "numpy", "float64")
    K = (lz.x - lz.y).sinh().atan()  # a formula no other test interns first
    got = build(K, np.int64(2))
    assert "np." not in got.formula.key and "int64" not in got.formula.key, got.formula.key
    ref = build(K, 2)
    assert got.formula is ref.formula, (got.formula.key, ref.formula.key)
    np.testing.assert_array_equal(got.sum(dim=1), ref.sum(dim=1))


# ----------------------------------------------------------------------------
# Optional oracle: pykeops
# ----------------------------------------------------------------------------

PYKEOPS_FORMULAS = [
    (
        "gauss_sum_j",
        lambda LT, x, y, p: (-((LT(x[:, None, :]) - LT(y[None])) ** 2).sum(-1) * LT(p)).exp(),
        dict(name="sum", dim=1),
    ),
    (
        "vector_sum_i",
        lambda LT, x, y, p: (
            ((LT(x[:, None, :]) - LT(y[None])).abs() + 1).log()
            * (LT(x[:, None, :]) | LT(y[None])).cos()
            + (LT(x[:, None, :]).normalize() * LT(y[None])).relu()
        ),
        dict(name="sum", dim=0),
    ),
    (
        "argKmin_j",
        lambda LT, x, y, p: LT(x[:, None, :]).sqdist(LT(y[None])),
        dict(name="argKmin", dim=1, K=3),
    ),
]


@pytest.fixture(scope="module")
def pykeops_numpy():
    pykeops = pytest.importorskip("pykeops", reason="pykeops not installed")
    pykeops.set_verbose(False)
    # A per-version folder in the system temp dir: compiled formulas are reused
    # by the next run (the first one compiles, about 10 s per formula).
    folder = Path(tempfile.gettempdir()) / f"kernelsolve-test-pykeops-{pykeops.__version__}"
    pykeops.set_build_folder(str(folder))
    from pykeops.numpy import LazyTensor as PkLazyTensor

    return PkLazyTensor


@pytest.mark.parametrize("case", PYKEOPS_FORMULAS, ids=[c[0] for c in PYKEOPS_FORMULAS])
def test_against_pykeops(case, pykeops_numpy):
    """A few formulas give pykeops' numbers (float64, NumPy)."""
    _, build, red = case
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((M, D)), rng.standard_normal((N, D))
    p = np.array([0.7])
    outs = []
    for LT in (LazyTensor, pykeops_numpy):
        K = build(LT, x, y, p)
        if red["name"] == "sum":
            outs.append(np.asarray(K.sum(dim=red["dim"])))
        else:
            outs.append(np.asarray(K.argKmin(red["K"], dim=red["dim"])).astype(np.int64))
    ours, theirs = outs
    assert ours.shape == theirs.shape
    if red["name"] == "sum":
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_array_equal(ours, theirs)
