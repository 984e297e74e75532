"""Property-based tests: random formulas, evaluated lazily and densely.

Strategy
--------
A random formula is a small tree (:class:`T`) over the leaves ``x`` (i-variable,
``(M, Dx)``), ``y`` (j-variable, ``(N, Dy)``), ``p`` (parameter of dim 1 or D) and
Python ints and floats. Every node records its inner dimension, so only
dimension-compatible combinations are built (dim 1 broadcasts against D; ops that
need equal dims get their operand sliced with ``extract`` / tiled with ``concat``).
One tree is interpreted three ways:

* :class:`LazyBackend` builds the kernelsolve ``LazyTensor`` (varying the spelling:
  ``x[k]`` / ``x.elem(k)``, ``x ** 2`` / ``x.square()``, ``Vi(x)`` / ``LazyTensor(x[:, None])``),
* :class:`DenseBackend` evaluates it with NumPy (numpy inputs) or torch (torch inputs) on
  the broadcast arrays ``x[:, None, :]``, ``y[None, :, :]``: the full (M, N, D) tensor,
  computed without kernelsolve's engine,
* :class:`CodeBackend` renders it as Python source, so that hypothesis prints a
  reproducer (``x_i``, ``y_j``, ``p`` are the LazyTensors of the case).

The formula of a case is 1 to 3 independent random formulas (op nesting depth <= 4 each)
concatenated along the inner dimension: reductions act per coordinate, so each one is
checked on its own for the price of one engine call (one compiled kernel).

Engines: properties 1-5 run ``backend="reference"`` (the NumPy engine, a few ms per
call); property 6 runs the compiled CPU target (``backend="CPU"``), one reduction of one
random formula per example, because each example compiles a kernel (0.1-0.6 s).

Keeping values finite and well conditioned
------------------------------------------
* Data are uniform in [-1, 1] (rounded to float32, so that both precisions see the same
  inputs) or, for exact ties and zeros, on the grid k/4, |k| <= 4.
* Every node carries an upper bound of |value|. Operands whose bound is too large are
  "tamed" with ``atan`` before a product, a power, a square or a periodic function:
  arguments of sin / cos / sinxdivx / exp(sin) stay below 20, every value below ~1e5.
* ``exp`` only as ``exp(-f**2)`` or ``exp(sin(f))``; divisions by ``1 + g**2`` or by a
  non-zero number; ``sqrt(|f| + 1)``, ``log(f**2 + 1)``; negative powers act on
  ``1 + g**2``. So no inf / NaN ever appears.
* ``ifelse`` is discontinuous: its condition is built from IEEE-exact operations only
  (add, sub, mul, neg, abs, elem of the leaves), so that every implementation agrees on
  its sign.

Tolerances
----------
The dense reference is computed in the input precision (the value compared) and in the
other precision. ``|dense32 - dense64|`` measures how much float32 rounding the formula
amplifies at each (i, j) (its condition number); the allowed error of the engine's value
at (i, j) is ``8 * |dense32 - dense64|`` (times 2**-29 for float64). On top of that come
``rtol`` (2e-4 float32, 1e-9 float64) times the natural scale of each reduction (the sum of
|F| for a sum, the largest |F| of the row for min / max / K-min / logsumexp) and a tiny
``atol`` for underflow. A mistake of the engine (wrong op, wrong index, wrong axis) is
orders of magnitude above these bounds.
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import kernelsolve
from kernelsolve import LazyTensor, Pm, Vi, Vj
from kernelsolve.engine import cache as kernel_cache
from kernelsolve.engine import ir
from kernelsolve.engine.backends import cpu as cpu_backend
from kernelsolve.engine.backends import reference as reference_engine

try:
    import torch
except ImportError:  # pragma: no cover - torch is in the test extra
    torch = None

LIBS = ("numpy", "torch") if torch is not None else ("numpy",)
DTYPES = ("float32", "float64")
TOL = {"float32": (2e-4, 1e-30), "float64": (1e-9, 1e-280)}  # (rtol, atol)
ERR_FACTOR = 8.0  # allowed engine error / measured float32 rounding error of the formula
EPS_RATIO = {"float32": 1.0, "float64": 2.0**-29}  # eps(dtype) / eps(float32)

INTS = (-2, -1, 0, 1, 2, 3)  # 0, 1, -1 exercise the IR simplifications
DIVISORS = (2, -4, 3, 0.5, -1.5)
CLAMP_LO = (-1, 0, -0.5, -2.0)
CLAMP_HI = (1, 2, 0.5, 1.5)


# ----------------------------------------------------------------------------
# Formula trees
# ----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class T:
    """A node of a random formula: ``op(*args; *attrs)`` of inner dim ``dim``,
    |value| <= ``bound``."""

    op: str
    args: tuple = ()
    attrs: tuple = ()
    dim: int = 1
    bound: float = 1.0

    def __repr__(self) -> str:
        return interpret(self, CodeBackend())


def interpret(t: T, backend):
    if t.op == "leaf":
        return backend.leaf(t.attrs[0])
    if t.op == "num":
        return backend.num(t.attrs[0])
    args = [interpret(a, backend) for a in t.args]
    return getattr(backend, t.op)(*args, *t.attrs)


def leaf_names(t: T) -> set[str]:
    if t.op == "leaf":
        return {t.attrs[0]}
    return set().union(*(leaf_names(a) for a in t.args)) if t.args else set()


def num(v) -> T:
    return T("num", (), (v,), 1, abs(float(v)))


def leaf(name: str, dims: dict) -> T:
    return T("leaf", (), (name,), dims[name], 1.0)


def tame(t: T, limit: float) -> T:
    """``t``, or ``atan(t)`` when |t| may exceed ``limit``."""
    return t if t.bound <= limit else T("atan", (t,), (), t.dim, math.pi / 2)


def isum(t: T) -> T:
    return T("isum", (t,), ("-1",), 1, t.dim * t.bound)


def extract(t: T, start: int, d: int, style: str = "method") -> T:
    return T("extract", (t,), (start, d, style), d, t.bound)


def exact(draw, t: T, d: int) -> T:
    """``t`` with inner dimension exactly ``d`` (slice, or tile with concat then slice)."""
    if t.dim == d:
        return t
    if t.dim > d:
        return extract(t, draw(st.integers(0, t.dim - d)), d)
    out = t
    while out.dim < d:
        out = T("concat", (out, t), ("method",), out.dim + t.dim, t.bound)
    return exact(draw, out, d)


def fit(draw, t: T, d: int, exact_ops: bool = False) -> T:
    """``t`` with an inner dimension that broadcasts against ``d`` (1 or d)."""
    if t.dim in (1, d):
        return t
    if t.dim > d:
        return exact(draw, t, d)
    if exact_ops:  # elem is an exact operation, sum is not
        return T("elem", (t,), (0, "method"), 1, t.bound)
    return isum(t) if draw(st.booleans()) else exact(draw, t, d)


def cap(draw, t: T, d: int) -> T:
    """``t`` with at most ``d`` coordinates."""
    return t if t.dim <= d else exact(draw, t, d)


def gen_leaf(draw, dims) -> T:
    return leaf(draw(st.sampled_from(("x", "y", "x", "y", "p"))), dims)


def gen_number(draw) -> T:
    return num(draw(st.one_of(st.sampled_from(INTS), st.floats(-2, 2, width=32))))


def gen(draw, dims, depth: int) -> T:
    """A random formula (holding at least one variable) of nesting depth <= depth."""
    if depth <= 0 or draw(st.integers(0, 4)) == 0:
        return gen_leaf(draw, dims)
    maker = draw(st.sampled_from(MAKERS))
    return maker(draw, dims, depth - 1)


def gen_exact(draw, dims, depth: int) -> T:
    """A formula made of IEEE-exact operations only (for ifelse conditions)."""
    if depth <= 0 or draw(st.integers(0, 2)) == 0:
        return gen_leaf(draw, dims)
    op = draw(st.sampled_from(("neg", "abs", "elem", "add", "sub", "mul")))
    a = gen_exact(draw, dims, depth - 1)
    if op in ("neg", "abs"):
        return T(op, (a,), ("method",) if op == "abs" else (), a.dim, a.bound)
    if op == "elem":
        return T("elem", (a,), (draw(st.integers(0, a.dim - 1)), "method"), 1, a.bound)
    b = gen_number(draw) if draw(st.booleans()) else gen_exact(draw, dims, depth - 1)
    b = fit(draw, b, a.dim, exact_ops=True)
    if draw(st.booleans()):
        a, b = b, a
    bound = a.bound * b.bound if op == "mul" else a.bound + b.bound
    return T(op, (a, b), (), max(a.dim, b.dim), bound)


# --- makers: one per family of operations ------------------------------------


def m_neg(draw, dims, d):
    f = gen(draw, dims, d)
    return T("neg", (f,), (), f.dim, f.bound)


def m_exp(draw, dims, d):
    f = gen(draw, dims, d)
    if draw(st.booleans()):  # exp(-f**2) in (0, 1]
        a = tame(f, 30)
        sq = T("square", (a,), ("method",), a.dim, a.bound**2)
        return T("exp", (T("neg", (sq,), (), a.dim, sq.bound),), (), a.dim, 1.0)
    s = T("sin", (tame(f, 20),), (), f.dim, 1.0)  # exp(sin f) in [1/e, e]
    return T("exp", (s,), (), f.dim, math.e)


def m_bounded(draw, dims, d):
    """sin, cos, sinxdivx (argument < 20), tanh, atan: |value| <= pi / 2."""
    op = draw(st.sampled_from(("sin", "cos", "tanh", "atan", "sinxdivx")))
    f = gen(draw, dims, d)
    if op in ("sin", "cos", "sinxdivx"):
        f = tame(f, 20)
    return T(op, (f,), (), f.dim, math.pi / 2)


def m_piecewise(draw, dims, d):
    op = draw(st.sampled_from(("abs", "relu")))
    f = gen(draw, dims, d)
    attrs = (draw(st.sampled_from(("method", "builtin"))),) if op == "abs" else ()
    return T(op, (f,), attrs, f.dim, f.bound)


def m_square(draw, dims, d):
    f = tame(gen(draw, dims, d), 100)
    return T("square", (f,), (draw(st.sampled_from(("method", "pow"))),), f.dim, f.bound**2)


def m_sqrt_log(draw, dims, d):
    f = gen(draw, dims, d)
    if draw(st.booleans()):  # sqrt(|f| + 1)
        a = tame(f, 1e4)
        absolute = T("abs", (a,), ("method",), a.dim, a.bound)
        inner = T("add", (absolute, num(1)), (), a.dim, a.bound + 1)
        return T("sqrt", (inner,), (), a.dim, math.sqrt(inner.bound))
    a = tame(f, 1e3)  # log(f**2 + 1)
    sq = T("square", (a,), ("method",), a.dim, a.bound**2)
    inner = T("add", (sq, num(1)), (), a.dim, sq.bound + 1)
    return T("log", (inner,), (), a.dim, math.log(inner.bound))


def one_plus_square(g: T) -> T:
    g = tame(g, 100)
    sq = T("square", (g,), ("method",), g.dim, g.bound**2)
    return T("add", (num(1), sq), (), g.dim, sq.bound + 1)


def m_pow(draw, dims, d):
    k = draw(st.sampled_from((2, 3, -1, -2, 0, 1)))
    style = draw(st.sampled_from(("int", "float", "power")))
    f = gen(draw, dims, d)
    if k >= 0:
        f = tame(f, 10)
        return T("pow", (f,), (k, style), f.dim, f.bound**k)
    base = one_plus_square(f)  # >= 1: negative powers stay in (0, 1]
    return T("pow", (base,), (k, style), base.dim, 1.0)


def m_clamp(draw, dims, d):
    f = gen(draw, dims, d)
    if draw(st.booleans()):  # number bounds (two ints: clampint)
        lo, hi = num(draw(st.sampled_from(CLAMP_LO))), num(draw(st.sampled_from(CLAMP_HI)))
        return T("clamp", (f, lo, hi), (), f.dim, max(lo.bound, hi.bound))
    g = tame(fit(draw, gen(draw, dims, d - 1), f.dim), 1e4)  # bounds g <= g + 1
    hi = T("add", (g, num(1)), (), g.dim, g.bound + 1)
    return T("clamp", (f, g, hi), (), max(f.dim, g.dim), hi.bound)


def m_ifelse(draw, dims, d):
    c = gen_exact(draw, dims, min(d, 2))
    a = gen_number(draw) if draw(st.integers(0, 3)) == 0 else gen(draw, dims, d)
    b = gen_number(draw) if draw(st.integers(0, 3)) == 0 else gen(draw, dims, d)
    b = fit(draw, b, a.dim)
    c = fit(draw, c, max(a.dim, b.dim), exact_ops=True)
    return T("ifelse", (c, a, b), (), max(c.dim, a.dim, b.dim), max(a.bound, b.bound))


def m_arith(draw, dims, d):
    op = draw(st.sampled_from(("add", "sub", "mul")))
    a = gen(draw, dims, d)
    b = gen_number(draw) if draw(st.integers(0, 2)) == 0 else gen(draw, dims, d)
    b = fit(draw, b, a.dim)
    limit = 100 if op == "mul" else 1e4
    a, b = tame(a, limit), tame(b, limit)
    if draw(st.booleans()):  # numbers on the left too (reflected operators)
        a, b = b, a
    bound = a.bound * b.bound if op == "mul" else a.bound + b.bound
    return T(op, (a, b), (), max(a.dim, b.dim), bound)


def m_div(draw, dims, d):
    if draw(st.booleans()):  # f / k, k a non-zero number
        a = tame(gen(draw, dims, d), 1e4)
        k = num(draw(st.sampled_from(DIVISORS)))
        return T("div", (a, k), (), a.dim, a.bound / k.bound)
    a = gen_number(draw) if draw(st.integers(0, 3)) == 0 else tame(gen(draw, dims, d), 1e4)
    den = one_plus_square(fit(draw, gen(draw, dims, d), a.dim))  # >= 1
    return T("div", (a, den), (), max(a.dim, den.dim), a.bound)


def m_inner_reduce(draw, dims, d):
    op = draw(st.sampled_from(("isum", "imax", "imin")))
    f = tame(gen(draw, dims, d), 1e4)
    style = draw(st.sampled_from(("-1", "dim=-1")))
    return T(op, (f,), (style,), 1, f.dim * f.bound if op == "isum" else f.bound)


def m_norms(draw, dims, d):
    op = draw(st.sampled_from(("sqnorm2", "norm2", "norm2_offset")))
    f = gen(draw, dims, d)
    if op == "sqnorm2":
        f = tame(f, 30)
        return T("sqnorm2", (f,), (), 1, f.dim * f.bound**2)
    f = tame(f, 1e4)
    if op == "norm2_offset":  # norm2(f + 1)
        f = T("add", (f, num(1)), (), f.dim, f.bound + 1)
    style = draw(st.sampled_from(("method", "norm")))
    return T("norm2", (f,), (style,), 1, math.sqrt(f.dim) * f.bound)


def m_elem_extract(draw, dims, d):
    f = gen(draw, dims, d)
    if f.dim == 1 or draw(st.booleans()):
        k = draw(st.integers(0, f.dim - 1))
        style = draw(st.sampled_from(("method", "index", "negative", "ellipsis")))
        return T("elem", (f,), (k, style), 1, f.bound)
    start = draw(st.integers(0, f.dim - 1))
    length = draw(st.integers(1, f.dim - start))
    return extract(f, start, length, draw(st.sampled_from(("method", "slice", "ellipsis"))))


def m_scalprod_sqdist(draw, dims, d):
    op = draw(st.sampled_from(("scalprod", "sqdist")))
    a = tame(gen(draw, dims, d), 30 if op == "scalprod" else 20)
    b = tame(exact(draw, gen(draw, dims, d), a.dim), a.bound)
    bound = a.dim * a.bound * b.bound if op == "scalprod" else a.dim * (a.bound + b.bound) ** 2
    return T(op, (a, b), (), 1, bound)


def m_concat(draw, dims, d):
    a = cap(draw, gen(draw, dims, d), 4)
    b = cap(draw, gen(draw, dims, d), 4)
    style = draw(st.sampled_from(("method", "concatenate", "cat")))
    return T("concat", (a, b), (style,), a.dim + b.dim, max(a.bound, b.bound))


def m_tensorprod(draw, dims, d):
    a = tame(cap(draw, gen(draw, dims, d), 2), 100)
    b = tame(cap(draw, gen(draw, dims, d), 3), 100)
    return T("tensorprod", (a, b), (), a.dim * b.dim, a.bound * b.bound)


def m_matvec(draw, dims, d):
    n, p = draw(st.sampled_from((2, 3, 1))), draw(st.sampled_from((2, 3, 1)))
    A = tame(exact(draw, gen(draw, dims, d), n * p), 30)
    if draw(st.booleans()):  # matvecmult(A: n*p, v: p) -> n
        v = tame(exact(draw, gen(draw, dims, d), p), 30)
        return T("matvecmult", (A, v), (), n, p * A.bound * v.bound)
    v = tame(exact(draw, gen(draw, dims, d), n), 30)  # vecmatmult(v: n, A: n*p) -> p
    return T("vecmatmult", (v, A), (), p, n * A.bound * v.bound)


def m_weightedsqnorm(draw, dims, d):
    x = tame(cap(draw, gen(draw, dims, d), 3), 10)
    D = x.dim
    sdim = draw(st.sampled_from(sorted({1, D, D * D})))
    s = tame(exact(draw, gen(draw, dims, d), sdim), 10)
    return T("weightedsqnorm", (x, s), (), 1, D * D * s.bound * x.bound**2)


MAKERS = (
    m_neg,
    m_arith,
    m_exp,
    m_bounded,
    m_piecewise,
    m_square,
    m_sqrt_log,
    m_pow,
    m_div,
    m_clamp,
    m_ifelse,
    m_inner_reduce,
    m_norms,
    m_elem_extract,
    m_scalprod_sqdist,
    m_concat,
    m_tensorprod,
    m_matvec,
    m_weightedsqnorm,
)


def gen_one(draw, dims, depth: int) -> T:
    """A random formula that holds both x and y (so that M and N are those of the data)."""
    t = gen(draw, dims, depth)
    for name in ("x", "y"):
        if name not in leaf_names(t):
            op = draw(st.sampled_from(("add", "sub", "mul")))
            t = tame(t, 100)
            v = fit(draw, leaf(name, dims), t.dim)
            if draw(st.booleans()):
                t, v = v, t
            bound = t.bound * v.bound if op == "mul" else t.bound + v.bound
            t = T(op, (t, v), (), max(t.dim, v.dim), bound)
    return t


def gen_formula(draw, dims, depth: int = 4) -> T:
    """1 to 3 independent random formulas, concatenated: every reduction acts per
    coordinate, so each is checked on its own, for the price of one engine call."""
    out = gen_one(draw, dims, depth)
    for _ in range(draw(st.integers(0, 2))):
        more = cap(draw, gen_one(draw, dims, depth), 6)
        out = T("concat", (out, more), ("method",), out.dim + more.dim, max(out.bound, more.bound))
    return out


# ----------------------------------------------------------------------------
# Interpreters
# ----------------------------------------------------------------------------


class LazyBackend:
    """Builds the kernelsolve LazyTensor of a tree."""

    def __init__(self, leaves: dict):
        self.leaves = leaves

    def leaf(self, name):
        return self.leaves[name]

    def num(self, v):
        return v

    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def mul(self, a, b):
        return a * b

    def div(self, a, b):
        return a / b

    def neg(self, a):
        return -a

    def exp(self, a):
        return a.exp()

    def sin(self, a):
        return a.sin()

    def cos(self, a):
        return a.cos()

    def tanh(self, a):
        return a.tanh()

    def atan(self, a):
        return a.atan()

    def sinxdivx(self, a):
        return a.sinxdivx()

    def abs(self, a, style):
        return a.abs() if style == "method" else abs(a)

    def relu(self, a):
        return a.relu()

    def square(self, a, style):
        return a.square() if style == "method" else a**2

    def sqrt(self, a):
        return a.sqrt()

    def log(self, a):
        return a.log()

    def pow(self, a, k, style):
        if style == "int":
            return a**k
        if style == "float":
            return a ** float(k)
        return a.power(k)

    def clamp(self, a, lo, hi):
        return a.clamp(lo, hi)

    def ifelse(self, c, a, b):
        return c.ifelse(a, b)

    def isum(self, a, style):
        return a.sum(-1) if style == "-1" else a.sum(dim=-1)

    def imax(self, a, style):
        return a.max(-1) if style == "-1" else a.max(dim=-1)

    def imin(self, a, style):
        return a.min(-1) if style == "-1" else a.min(dim=-1)

    def sqnorm2(self, a):
        return a.sqnorm2()

    def norm2(self, a, style):
        return a.norm2() if style == "method" else a.norm(-1)

    def elem(self, a, k, style):
        if style == "method":
            return a.elem(k)
        if style == "index":
            return a[k]
        if style == "negative":
            return a[k - a.ndim]
        return a[..., k]

    def extract(self, a, start, d, style):
        if style == "method":
            return a.extract(start, d)
        if style == "slice":
            return a[start : start + d]
        return a[..., start : start + d]

    def scalprod(self, a, b):
        return a | b

    def sqdist(self, a, b):
        return a.sqdist(b)

    def concat(self, a, b, style):
        if style == "method":
            return a.concat(b)
        if style == "concatenate":
            return LazyTensor.concatenate((a, b))
        return LazyTensor.cat((a, b), -1)

    def tensorprod(self, a, b):
        return a.tensorprod(b)

    def matvecmult(self, A, v):
        return A.matvecmult(v)

    def vecmatmult(self, v, A):
        return v.vecmatmult(A)

    def weightedsqnorm(self, x, s):
        return x.weightedsqnorm(s)


class CodeBackend:
    """Renders a tree as the Python code that LazyBackend runs."""

    def leaf(self, name):
        return {"x": "x_i", "y": "y_j", "p": "p"}[name]

    def num(self, v):
        return repr(v)

    def add(self, a, b):
        return f"({a} + {b})"

    def sub(self, a, b):
        return f"({a} - {b})"

    def mul(self, a, b):
        return f"({a} * {b})"

    def div(self, a, b):
        return f"({a} / {b})"

    def neg(self, a):
        return f"(-{a})"

    def __getattr__(self, op):  # unary methods without attributes
        return lambda a: f"{a}.{op}()"

    def abs(self, a, style):
        return f"{a}.abs()" if style == "method" else f"abs({a})"

    def square(self, a, style):
        return f"{a}.square()" if style == "method" else f"{a}**2"

    def pow(self, a, k, style):
        return {"int": f"{a}**{k}", "float": f"{a}**{float(k)}", "power": f"{a}.power({k})"}[style]

    def clamp(self, a, lo, hi):
        return f"{a}.clamp({lo}, {hi})"

    def ifelse(self, c, a, b):
        return f"{c}.ifelse({a}, {b})"

    def isum(self, a, style):
        return f"{a}.sum({style})"

    def imax(self, a, style):
        return f"{a}.max({style})"

    def imin(self, a, style):
        return f"{a}.min({style})"

    def norm2(self, a, style):
        return f"{a}.norm2()" if style == "method" else f"{a}.norm(-1)"

    def elem(self, a, k, style):
        return {
            "method": f"{a}.elem({k})",
            "index": f"{a}[{k}]",
            "negative": f"{a}[{k} - {a}.ndim]",
            "ellipsis": f"{a}[..., {k}]",
        }[style]

    def extract(self, a, s, d, style):
        return {
            "method": f"{a}.extract({s}, {d})",
            "slice": f"{a}[{s}:{s + d}]",
            "ellipsis": f"{a}[..., {s}:{s + d}]",
        }[style]

    def scalprod(self, a, b):
        return f"({a} | {b})"

    def sqdist(self, a, b):
        return f"{a}.sqdist({b})"

    def concat(self, a, b, style):
        return {
            "method": f"{a}.concat({b})",
            "concatenate": f"LazyTensor.concatenate(({a}, {b}))",
            "cat": f"LazyTensor.cat(({a}, {b}), -1)",
        }[style]

    def tensorprod(self, a, b):
        return f"{a}.tensorprod({b})"

    def matvecmult(self, A, v):
        return f"{A}.matvecmult({v})"

    def vecmatmult(self, v, A):
        return f"{v}.vecmatmult({A})"

    def weightedsqnorm(self, x, s):
        return f"{x}.weightedsqnorm({s})"


class DenseBackend:
    """Evaluates a tree on broadcast NumPy arrays / torch tensors whose last axis is the
    inner dimension; independent of kernelsolve's engine."""

    def __init__(self, lib: str, dtype: str, leaves: dict):
        self.lib, self.dtype, self.leaves = lib, dtype, leaves
        self.torch = lib == "torch"

    # library primitives
    def _sum(self, a, axis):
        return a.sum(dim=axis, keepdim=True) if self.torch else a.sum(axis=axis, keepdims=True)

    def _where(self, c, a, b):
        return torch.where(c, a, b) if self.torch else np.where(c, a, b)

    def _fn(self, np_name, torch_name=None):
        return getattr(torch, torch_name or np_name) if self.torch else getattr(np, np_name)

    def _broadcast(self, a, shape):
        return a.expand(shape) if self.torch else np.broadcast_to(a, shape)

    # leaves
    def leaf(self, name):
        return self.leaves[name]

    def num(self, v):
        if self.torch:
            return torch.full((1,), v, dtype=getattr(torch, self.dtype))
        return np.full((1,), v, dtype=self.dtype)

    # elementwise
    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def mul(self, a, b):
        return a * b

    def div(self, a, b):
        return a / b

    def neg(self, a):
        return -a

    def exp(self, a):
        return self._fn("exp")(a)

    def sin(self, a):
        return self._fn("sin")(a)

    def cos(self, a):
        return self._fn("cos")(a)

    def tanh(self, a):
        return self._fn("tanh")(a)

    def atan(self, a):
        return self._fn("arctan", "atan")(a)

    def sinxdivx(self, a):
        return self._fn("sinc")(a / math.pi)  # normalised sinc(t) = sin(pi t) / (pi t)

    def abs(self, a, style):
        return self._fn("abs")(a)

    def relu(self, a):
        return torch.relu(a) if self.torch else np.maximum(a, 0)

    def square(self, a, style):
        return a * a

    def sqrt(self, a):
        return self._fn("sqrt")(a)

    def log(self, a):
        return self._fn("log")(a)

    def pow(self, a, k, style):
        return a**k if k >= 0 else 1 / a ** (-k)

    def clamp(self, a, lo, hi):
        return self._fn("minimum")(self._fn("maximum")(a, lo), hi)

    def ifelse(self, c, a, b):
        return self._where(c >= 0, a, b)

    # inner-dimension reductions and vector ops
    def isum(self, a, style):
        return self._sum(a, -1)

    def imax(self, a, style):
        return a.amax(dim=-1, keepdim=True) if self.torch else a.max(axis=-1, keepdims=True)

    def imin(self, a, style):
        return a.amin(dim=-1, keepdim=True) if self.torch else a.min(axis=-1, keepdims=True)

    def sqnorm2(self, a):
        return self._sum(a * a, -1)

    def norm2(self, a, style):
        return self.sqrt(self.sqnorm2(a))

    def elem(self, a, k, style):
        return a[..., k : k + 1]

    def extract(self, a, start, d, style):
        return a[..., start : start + d]

    def scalprod(self, a, b):
        return self._sum(a * b, -1)

    def sqdist(self, a, b):
        return self._sum((a - b) * (a - b), -1)

    def concat(self, a, b, style):
        lead = tuple(np.broadcast_shapes(tuple(a.shape[:-1]), tuple(b.shape[:-1])))
        a = self._broadcast(a, lead + tuple(a.shape[-1:]))
        b = self._broadcast(b, lead + tuple(b.shape[-1:]))
        return torch.cat([a, b], dim=-1) if self.torch else np.concatenate([a, b], axis=-1)

    def tensorprod(self, a, b):
        out = a[..., :, None] * b[..., None, :]
        return out.reshape(tuple(out.shape[:-2]) + (-1,))

    def matvecmult(self, A, v):
        p = v.shape[-1]
        A2 = A.reshape(tuple(A.shape[:-1]) + (A.shape[-1] // p, p))
        return self._sum(A2 * v[..., None, :], -1)[..., 0]

    def vecmatmult(self, v, A):
        n = v.shape[-1]
        A2 = A.reshape(tuple(A.shape[:-1]) + (n, A.shape[-1] // n))
        return self._sum(v[..., :, None] * A2, -2)[..., 0, :]

    def weightedsqnorm(self, x, s):
        D = x.shape[-1]
        if D > 1 and s.shape[-1] == D * D:  # full matrix, row-major: x^T S x
            S = s.reshape(tuple(s.shape[:-1]) + (D, D))
            xSx = self._sum(x[..., :, None] * S * x[..., None, :], -1)
            return self._sum(xSx[..., 0], -1)
        return self._sum(s * x * x, -1)  # isotropic or diagonal


# ----------------------------------------------------------------------------
# Test cases: data, LazyTensors, dense references
# ----------------------------------------------------------------------------


@dataclass(repr=False)
class Case:
    lib: str
    dtype: str
    dims: dict
    M: int
    N: int
    tree: T
    seed: int
    grid: bool
    ctor: tuple = ("3d", "3d", "1d")  # how x_i, y_j, p are built (unbatched cases)
    batch: dict = field(default_factory=lambda: {"x": (), "y": (), "p": ()})
    weight: T | None = None

    def __repr__(self) -> str:
        lines = [
            f"Case(lib={self.lib}, dtype={self.dtype}, M={self.M}, N={self.N}, dims={self.dims}, "
            f"batch={self.batch}, seed={self.seed}, grid={self.grid}, ctor={self.ctor})",
            f"    F = {self.tree!r}",
        ]
        if self.weight is not None:
            lines.append(f"    w = {self.weight!r}")
        return "\n".join(lines)

    @property
    def batched(self) -> bool:
        return any(self.batch.values())

    def data(self, seed=None) -> dict:
        """float64 NumPy data (float32-representable): x (bx, M, Dx), y (by, N, Dy),
        p (bp, Dp)."""
        rng = np.random.default_rng(self.seed if seed is None else seed)
        shapes = {
            "x": self.batch["x"] + (self.M, self.dims["x"]),
            "y": self.batch["y"] + (self.N, self.dims["y"]),
            "p": self.batch["p"] + (self.dims["p"],),
        }
        out = {}
        for name, shape in shapes.items():
            if self.grid:
                out[name] = rng.integers(-4, 5, size=shape) / 4
            else:
                out[name] = rng.uniform(-1, 1, size=shape).astype(np.float32).astype(np.float64)
        return out

    def arrays(self, dtype=None, lib=None, seed=None) -> dict:
        lib, dtype = lib or self.lib, dtype or self.dtype
        out = {}
        for name, a in self.data(seed).items():
            a = a.astype(dtype)
            out[name] = torch.from_numpy(a) if lib == "torch" else a
        return out

    def lazy_leaves(self, arrays: dict) -> dict:
        x, y, p = arrays["x"], arrays["y"], arrays["p"]
        if self.batched:
            return {
                "x": LazyTensor(x[..., :, None, :]),
                "y": LazyTensor(y[..., None, :, :]),
                "p": LazyTensor(p[..., None, None, :]),
            }
        cx, cy, cp = self.ctor
        return {
            "x": {"3d": lambda: LazyTensor(x[:, None, :]), "V": lambda: Vi(x),
                  "axis": lambda: LazyTensor(x, axis=0)}[cx](),
            "y": {"3d": lambda: LazyTensor(y[None, :, :]), "V": lambda: Vj(y),
                  "axis": lambda: LazyTensor(y, axis=1)}[cy](),
            "p": {"1d": lambda: LazyTensor(p), "Pm": lambda: Pm(p),
                  "3d": lambda: LazyTensor(p[None, None, :])}[cp](),
        }  # fmt: skip

    def lazy(self, tree=None, arrays=None, leaves=None):
        leaves = leaves or self.lazy_leaves(arrays or self.arrays())
        out = interpret(tree or self.tree, LazyBackend(leaves))
        assert isinstance(out, LazyTensor), "strategy bug: the formula is a plain number"
        return out

    def dense(self, tree: T, dtype: str) -> np.ndarray:
        """The full (batch, M, N, D) tensor of ``tree`` computed densely in ``dtype``,
        as float64 NumPy."""
        a = self.arrays(dtype)
        leaves = {
            "x": a["x"][..., :, None, :],
            "y": a["y"][..., None, :, :],
            "p": a["p"][..., None, None, :],
        }
        with np.errstate(under="ignore"):
            out = interpret(tree, DenseBackend(self.lib, dtype, leaves))
        out = out.numpy() if self.lib == "torch" else out
        assert out.dtype == np.dtype(dtype)
        batch = np.broadcast_shapes(*(self.batch[n] for n in leaf_names(tree)))
        out = np.broadcast_to(out.astype(np.float64), batch + (self.M, self.N, tree.dim))
        assert np.isfinite(out).all(), f"strategy bug: non-finite dense values for {tree!r}"
        return out

    def reference(self, tree=None):
        """(dense values in the case dtype, allowed error per entry), both float64."""
        tree = tree or self.tree
        lo, hi = self.dense(tree, "float32"), self.dense(tree, "float64")
        values = lo if self.dtype == "float32" else hi
        return values, ERR_FACTOR * EPS_RATIO[self.dtype] * np.abs(lo - hi)


def batch_shapes(draw) -> dict:
    """Per-variable batch shapes (0 to 2 dims, sizes 1..3) that broadcast together."""
    common = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    out = {}
    for name in ("x", "y", "p"):
        nb = draw(st.integers(0, len(common)))
        sizes = common[len(common) - nb :]
        out[name] = tuple(s if draw(st.booleans()) else 1 for s in sizes)
    return out


@st.composite
def cases(draw, batched=False, weighted=False, lib=None):
    """A random Case; ``batched=None``: batch shapes drawn or not."""
    lib = lib or draw(st.sampled_from(LIBS))
    dtype = draw(st.sampled_from(DTYPES))
    D = draw(st.integers(1, 4))
    dims = {
        "x": draw(st.sampled_from((D, D, 1))),
        "y": draw(st.sampled_from((D, D, 1))),
        "p": draw(st.sampled_from((1, D))),
    }
    tree = gen_formula(draw, dims, depth=4)
    weight = gen(draw, dims, 3) if weighted else None
    case = Case(
        lib=lib,
        dtype=dtype,
        dims=dims,
        M=draw(st.integers(1, 12)),
        N=draw(st.integers(1, 12)),
        tree=tree,
        seed=draw(st.integers(0, 2**32 - 1)),
        grid=draw(st.integers(0, 3)) == 0,
        ctor=(
            draw(st.sampled_from(("3d", "V", "axis"))),
            draw(st.sampled_from(("3d", "V", "axis"))),
            draw(st.sampled_from(("1d", "Pm", "3d"))),
        ),
        weight=weight,
    )
    if batched or (batched is None and draw(st.booleans())):
        case.batch = batch_shapes(draw)
    return case


# ----------------------------------------------------------------------------
# Checking helpers
# ----------------------------------------------------------------------------


def to_numpy(result, case: Case, index: bool = False) -> np.ndarray:
    """``result`` as NumPy, after checking its library and dtype."""
    if case.lib == "torch":
        assert isinstance(result, torch.Tensor), f"expected a torch tensor, got {type(result)}"
        result = result.numpy()
    else:
        assert isinstance(result, np.ndarray), f"expected a NumPy array, got {type(result)}"
    assert result.dtype == np.dtype("int64" if index else case.dtype), result.dtype
    return result if index else result.astype(np.float64)


def check(got: np.ndarray, want: np.ndarray, tol, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    tol = np.broadcast_to(tol, want.shape)
    bad = ~(np.abs(got - want) <= tol)
    if bad.any():
        k = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{bad.size} entries differ; first at {k}: "
            f"got {got[k]!r}, expected {want[k]!r}, tolerance {tol[k]:.3g}"
        )


def along(F: np.ndarray, axis: int) -> np.ndarray:
    """(batch, n_out, n_reduced, D) view of the dense (batch, M, N, D) tensor for a
    reduction over i (axis 0) or j (axis 1)."""
    return F if axis == 1 else np.swapaxes(F, -3, -2)


def values_at(G: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """G[..., r, idx[..., r, k, d], d]: the dense values at returned indices."""
    return np.take_along_axis(G, idx, axis=-2)


def scalar_tree(t: T) -> T:
    return t if t.dim == 1 else isum(tame(t, 1e4))


def positive(w: T) -> T:
    """0.5 + w**2 >= 0.5: weights for logsumexp(weight=), whose log needs a positive sum."""
    w = tame(w, 30)
    sq = T("square", (w,), ("method",), w.dim, w.bound**2)
    return T("add", (num(0.5), sq), (), w.dim, sq.bound + 0.5)


class Prepared:
    """A case's LazyTensors and dense references (values, allowed errors)."""

    def __init__(self, case: Case):
        note(repr(case))  # the formula as LazyTensor code, in the failure report
        self.case = case
        self.leaves = case.lazy_leaves(case.arrays())
        self.F = case.lazy(leaves=self.leaves)
        self.ref = {"F": case.reference()}
        if case.weight is not None:
            trees = {"S": scalar_tree(case.tree), "W": case.weight, "Wpos": positive(case.weight)}
            self.lazy = {k: case.lazy(t, leaves=self.leaves) for k, t in trees.items()}
            self.ref.update({k: case.reference(t) for k, t in trees.items()})

    def dense(self, name: str, axis: int):
        values, err = self.ref[name]
        return along(values, axis), along(err, axis)


def verify(prep: Prepared, name: str, axis: int, backend: str, K: int = 1, dim=None) -> None:
    """Run one reduction of the prepared formula over i (axis 0) or j (axis 1) and compare
    it with the dense computation. ``dim``: the axis as passed to LazyTensor (default
    nbatchdims + axis)."""
    case, F = prep.case, prep.F
    rtol, atol = TOL[case.dtype]
    dim = F.nbatchdims + axis if dim is None else dim
    kw = {"dim": dim, "backend": backend}
    G, E = prep.dense("F", axis)  # (batch, n_out, n, D)
    n = G.shape[-2]
    what = f"{name}(dim={dim}, backend={backend!r})"
    # Scale of a value picked from one row (min, max, K-min):
    row_tol = rtol * np.abs(G).max(axis=-2) + E.max(axis=-2) + atol

    if name == "sum":
        tol = rtol * np.abs(G).sum(axis=-2) + E.sum(axis=-2) + atol
        check(to_numpy(F.sum(**kw), case), G.sum(axis=-2), tol, what)
    elif name in ("min", "max", "argmin", "argmax", "min_argmin", "max_argmax"):
        kind = "min" if "min" in name else "max"
        want = G.min(axis=-2) if kind == "min" else G.max(axis=-2)
        out = getattr(F, name)(**kw)
        values, index = {
            kind: (out, None),
            "arg" + kind: (None, out),
            f"{kind}_arg{kind}": tuple(out),
        }[name]
        if values is not None:
            check(to_numpy(values, case), want, row_tol, what)
        if index is not None:
            idx = to_numpy(index, case, index=True)
            assert idx.shape == want.shape, (what, idx.shape, want.shape)
            assert ((0 <= idx) & (idx < n)).all(), f"{what}: index out of [0, {n})"
            check(values_at(G, idx[..., None, :])[..., 0, :], want, row_tol, f"F at {what}")
    elif name in ("Kmin", "argKmin", "Kmin_argKmin"):
        want = np.sort(G, axis=-2)[..., :K, :]  # (batch, n_out, K, D)
        tol = row_tol[..., None, :]
        out = getattr(F, name)(K, **kw)
        values, index = {
            "Kmin": (out, None),
            "argKmin": (None, out),
            "Kmin_argKmin": tuple(out),
        }[name]
        if values is not None:
            values = kmin_shaped(values, case, want)
            assert (np.diff(values, axis=-2) >= 0).all(), f"{what}: values not sorted"
            check(values, want, tol, f"{what}, K={K}")
        if index is not None:
            idx = kmin_shaped(index, case, want, index=True)
            assert ((0 <= idx) & (idx < n)).all(), f"{what}: index out of [0, {n})"
            repeated = ~(np.diff(np.sort(idx, axis=-2), axis=-2) > 0)
            assert not repeated.any(), f"{what}: repeated index"
            check(values_at(G, idx), want, tol, f"F at {what}, K={K}")
    elif name == "logsumexp":
        m = G.max(axis=-2, keepdims=True)
        want = (m + np.log(np.exp(G - m).sum(axis=-2, keepdims=True)))[..., 0, :]
        tol = rtol * (np.abs(G).max(axis=-2) + 1) + E.max(axis=-2) + atol
        check(to_numpy(F.logsumexp(**kw), case), want, tol, what)
    elif name in ("sumsoftmaxweight", "logsumexp_weight"):
        S, W, Wpos = (prep.lazy[k] for k in ("S", "W", "Wpos"))
        kw["dim"] = S.nbatchdims + axis if dim is None else dim
        G, E = prep.dense("S", axis)  # (batch, n_out, n, 1)
        e = np.exp(G - G.max(axis=-2, keepdims=True))
        if name == "sumsoftmaxweight":
            Wd, We = prep.dense("W", axis)  # (batch, n_out, n, dim w)
            want = (e * Wd).sum(axis=-2) / e.sum(axis=-2)
            wmax = np.abs(Wd).max(axis=-2)
            # a weight that cancels to 0 exactly in NumPy (x0 e - x0 e) need not in
            # the compiled kernel, whose contracted multiply-adds (FMA) round once:
            # its rounding is relative to the weights' scale over the data, not 0
            scale = np.maximum(wmax, np.abs(Wd).max())
            tol = rtol * scale + We.max(axis=-2) + 2 * wmax * E.max(axis=-2) + atol
            got = S.sumsoftmaxweight(W, **kw)
        else:
            Pd, Pe = prep.dense("Wpos", axis)  # >= 0.5
            want = G.max(axis=-2) + np.log((e * Pd).sum(axis=-2))
            tol = rtol * (np.abs(G).max(axis=-2) + 1) + E.max(axis=-2) + 2 * Pe.max(axis=-2)
            tol = tol + atol
            got = S.logsumexp(weight=Wpos, **kw)
        check(to_numpy(got, case), want, tol, what)
    else:  # pragma: no cover
        raise ValueError(name)


def kmin_shaped(r, case: Case, want: np.ndarray, index: bool = False) -> np.ndarray:
    """A K-min output as (batch, n_out, K, D): checks pykeops' shape, (.., n_out, K)
    when D == 1."""
    r = to_numpy(r, case, index=index)
    D = want.shape[-1]
    expected = want.shape if D > 1 else want.shape[:-1]
    assert r.shape == expected, f"K-min output of shape {r.shape}, expected {expected}"
    return r if D > 1 else r[..., None]


REF = "reference"  # the NumPy engine: fast, so every property runs it on every example


# ----------------------------------------------------------------------------
# 1. Sums over i and over j
# ----------------------------------------------------------------------------


@given(case=cases())
def test_sum_over_i_and_j_matches_dense(case):
    """F.sum(dim=1) and F.sum(dim=0) equal the sums of the dense (M, N, D) tensor."""
    prep = Prepared(case)
    for axis in (0, 1):
        verify(prep, "sum", axis, REF)


# ----------------------------------------------------------------------------
# 2. Every other reduction
# ----------------------------------------------------------------------------


@given(case=cases())
def test_min_max_argmin_argmax_match_dense(case):
    """min / max / argmin / argmax / min_argmin / max_argmax over i and j: values equal the
    dense extrema; the dense values at the returned indices are extremal (ties allowed)."""
    prep = Prepared(case)
    for axis in (0, 1):
        for name in ("min", "max", "argmin", "argmax", "min_argmin", "max_argmax"):
            verify(prep, name, axis, REF)


@given(case=cases(), data=st.data())
def test_kmin_argkmin_match_dense(case, data):
    """Kmin / argKmin / Kmin_argKmin (K <= n): the sorted K smallest values, K distinct
    indices whose dense values are those K smallest."""
    prep = Prepared(case)
    for axis in (0, 1):
        K = data.draw(st.integers(1, case.N if axis == 1 else case.M), label=f"K{axis}")
        for name in ("Kmin", "argKmin", "Kmin_argKmin"):
            verify(prep, name, axis, REF, K=K)


@given(case=cases())
def test_logsumexp_matches_dense(case):
    """logsumexp over i and j (per coordinate) equals the dense, max-shifted value."""
    prep = Prepared(case)
    for axis in (0, 1):
        verify(prep, "logsumexp", axis, REF)


@given(case=cases(weighted=True))
def test_weighted_reductions_match_dense(case):
    """Scalar F, weight w (any dim): sumsoftmaxweight(w) = sum softmax(F) w and
    logsumexp(weight=w') = log sum exp(F) w' (w' = 0.5 + w**2 > 0), over i and j."""
    prep = Prepared(case)
    for axis in (0, 1):
        verify(prep, "sumsoftmaxweight", axis, REF)
        verify(prep, "logsumexp_weight", axis, REF)


# ----------------------------------------------------------------------------
# 3. Batch dimensions
# ----------------------------------------------------------------------------


@given(case=cases(batched=True), data=st.data())
def test_batched_reductions_match_dense_broadcasting(case, data):
    """Per-variable batch shapes that broadcast: sum, min_argmin, Kmin_argKmin and
    logsumexp over i and j equal the dense computation with NumPy / torch broadcasting;
    the batch dims of the result are the broadcast of those of the variables."""
    prep = Prepared(case)
    batch = prep.ref["F"][0].shape[:-3]
    assert tuple(prep.F.batchdims) == batch, (prep.F.batchdims, batch)
    nb = len(batch)
    for axis in (0, 1):
        dim = data.draw(st.sampled_from((nb + axis, axis - 3)), label=f"dim{axis}")
        K = data.draw(st.integers(1, case.N if axis == 1 else case.M), label=f"K{axis}")
        for name in ("sum", "min_argmin", "Kmin_argKmin", "logsumexp"):
            verify(prep, name, axis, REF, K=K, dim=dim)


# ----------------------------------------------------------------------------
# 4. Transposition and hash-consing
# ----------------------------------------------------------------------------


@given(case=cases())
def test_transpose_law(case):
    """F.T.sum(dim=1) == F.sum(dim=0) and F.T.sum(dim=0) == F.sum(dim=1) (and the same
    for min); F.T has shape (N, M[, D]); F.T.T is the same formula."""
    prep = Prepared(case)
    F, Ft = prep.F, prep.F.T
    assert Ft.shape == (F.shape[1], F.shape[0]) + F.shape[2:]
    assert Ft.T.formula is F.formula
    assert F.t().formula is Ft.formula
    eps = np.finfo(case.dtype).eps
    _, atol = TOL[case.dtype]
    for axis in (0, 1):
        G, _ = prep.dense("F", axis)
        tol = 16 * eps * (G.shape[-2] + 1) * np.abs(G).sum(axis=-2) + atol
        a = to_numpy(Ft.sum(dim=1 - axis, backend=REF), case)
        b = to_numpy(F.sum(dim=axis, backend=REF), case)
        check(a, b, tol, f"F.T.sum(dim={1 - axis}) vs F.sum(dim={axis})")
        a = to_numpy(Ft.min(dim=1 - axis, backend=REF), case)
        b = to_numpy(F.min(dim=axis, backend=REF), case)
        check(a, b, 16 * eps * np.abs(G).max(axis=-2) + atol, f"F.T.min vs F.min ({axis})")


@given(case=cases())
def test_same_formula_is_the_same_object(case):
    """Building one random formula twice (fresh arrays, another library / dtype) gives the
    very same hash-consed IR node, with the same key; double transposition gives it back."""
    note(repr(case))
    F1 = case.lazy()
    other_lib = LIBS[(LIBS.index(case.lib) + 1) % len(LIBS)]
    other_dtype = "float64" if case.dtype == "float32" else "float32"
    arrays = case.arrays(dtype=other_dtype, lib=other_lib, seed=case.seed + 1)
    F2 = replace(case, lib=other_lib, dtype=other_dtype).lazy(arrays=arrays)
    assert F2.formula is F1.formula, f"{F1.formula.key}\n!=\n{F2.formula.key}"
    F3 = case.lazy()
    assert F3.formula is F1.formula
    assert F3.formula.key == F1.formula.key
    assert ir.swap_ij(ir.swap_ij(F1.formula)) is F1.formula
    assert F1.formula.dim == case.tree.dim


@given(case=cases())
def test_formula_pickle_roundtrip_reinterns(case):
    """Node.__reduce__ pickles by structure and re-interns: unpickling a formula gives back
    the very same node (ir.py's documented contract)."""
    note(repr(case))
    formula = case.lazy().formula
    assert pickle.loads(pickle.dumps(formula)) is formula


# ----------------------------------------------------------------------------
# 5. Memory cap of the reference engine
# ----------------------------------------------------------------------------


@given(case=cases(), cap_bytes=st.sampled_from((1, 300, 2_000)), data=st.data())
def test_memory_cap_invariance(case, cap_bytes, data):
    """With ``config.reference_memory_limit`` tiny (many small tiles, merged accumulators),
    sum / min_argmin / Kmin_argKmin / logsumexp give the results of the default cap."""
    prep = Prepared(case)
    F = prep.F
    K = data.draw(st.integers(1, min(case.M, case.N)), label="K")

    def run():
        out = {}
        for axis in (0, 1):
            kw = {"dim": axis, "backend": REF}
            out["sum", axis] = to_numpy(F.sum(**kw), case)
            v, i = F.min_argmin(**kw)
            out["min", axis] = to_numpy(v, case), to_numpy(i, case, index=True)
            v, i = F.Kmin_argKmin(K, **kw)
            out["kmin", axis] = to_numpy(v, case), to_numpy(i, case, index=True)
            out["lse", axis] = to_numpy(F.logsumexp(**kw), case)
        return out

    default = run()
    calls = []
    evaluate = reference_engine.evaluate
    old = kernelsolve.config.reference_memory_limit
    try:
        kernelsolve.config.reference_memory_limit = cap_bytes
        reference_engine.evaluate = lambda *a, **k: calls.append(1) or evaluate(*a, **k)
        small = run()
    finally:
        kernelsolve.config.reference_memory_limit = old
        reference_engine.evaluate = evaluate
    if cap_bytes == 1 and case.M * case.N > 1:  # one row per tile at most
        assert len(calls) > 8, "the memory cap did not split the work into tiles"

    # capped vs default: the same engine, tiles only change the order of the folds (and
    # may change the SIMD path of NumPy's elementwise functions): 64 eps of the scale of
    # the reduction, plus the conditioning of the formula. Engine vs dense values at the
    # returned indices: the rtol of verify().
    eps = np.finfo(case.dtype).eps
    rtol, atol = TOL[case.dtype]
    for axis in (0, 1):
        G, E = prep.dense("F", axis)
        n = G.shape[-2]
        scale, Emax = np.abs(G).max(axis=-2), E.max(axis=-2)
        tight = 64 * eps * scale + Emax + atol
        row_tol = rtol * scale + Emax + atol
        sum_tol = 64 * n * eps * np.abs(G).sum(axis=-2) + E.sum(axis=-2) + atol
        check(small["sum", axis], default["sum", axis], sum_tol, f"capped sum({axis})")
        check(small["min", axis][0], default["min", axis][0], tight, f"capped min({axis})")
        at = values_at(G, small["min", axis][1][..., None, :])[..., 0, :]
        check(at, G.min(axis=-2), row_tol, f"F at capped argmin({axis})")
        v, i = small["kmin", axis]
        v0, _ = default["kmin", axis]
        if v.ndim == 2:  # D == 1: (n_out, K)
            v, v0, i = v[..., None], v0[..., None], i[..., None]
        check(v, v0, tight[..., None, :], f"capped Kmin({axis})")
        check(values_at(G, i), v, 2 * row_tol[..., None, :], f"F at capped argKmin({axis})")
        lse_tol = 64 * n * eps * (scale + 1) + Emax + atol
        check(small["lse", axis], default["lse", axis], lse_tol, f"capped logsumexp({axis})")


# ----------------------------------------------------------------------------
# 6. The compiled CPU target on random formulas
# ----------------------------------------------------------------------------

# Each example compiles one kernel (~0.6 s), so each example runs ONE reduction, drawn
# with sum weighted up; batch shapes are drawn too (the compiled target lays out batch
# strides itself).
COMPILED_REDUCTIONS = (
    "sum",
    "sum",
    "sum",
    "min_argmin",
    "max_argmax",
    "Kmin_argKmin",
    "argKmin",
    "logsumexp",
    "sumsoftmaxweight",
    "logsumexp_weight",
)


@pytest.fixture(scope="module")
def private_kernel_cache(tmp_path_factory):
    """Random kernels go to a temporary cache, not the user's ~/.cache/kernelsolve."""
    if cpu_backend.find_compiler() is None:
        pytest.skip("no C++ compiler: the CPU target is unavailable")
    old = os.environ.get(kernel_cache.ENV_VAR)
    os.environ[kernel_cache.ENV_VAR] = str(tmp_path_factory.mktemp("kernels"))
    yield
    if old is None:
        del os.environ[kernel_cache.ENV_VAR]
    else:
        os.environ[kernel_cache.ENV_VAR] = old


@given(
    case=cases(batched=None, weighted=True),
    name=st.sampled_from(COMPILED_REDUCTIONS),
    axis=st.integers(0, 1),
    data=st.data(),
)
def test_compiled_cpu_target_matches_dense(private_kernel_cache, case, name, axis, data):
    """backend="CPU" (generated C++, compiled): one random reduction of a random formula
    (random batch shapes) equals the dense computation."""
    prep = Prepared(case)
    K = data.draw(st.integers(1, case.N if axis == 1 else case.M), label="K")
    verify(prep, name, axis, "CPU", K=K)
