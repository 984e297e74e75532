"""Formulas and reductions for the autograd cross-product of tests/test_autograd.py.

Each :class:`OpCase` builds one small formula ``F(X, Y, P)`` around one IR op
(``X`` an i-variable, ``Y`` a j-variable, ``P`` a parameter) and draws its
inputs inside the op's domain and away from its kinks: values that fall on
either side of a kink or a discontinuity (``abs``, ``relu``, ``clamp``,
``clampint``, ``ifelse``, ``mod``) are drawn from separated levels, so that a
finite-difference step never crosses one.

Each :class:`Red` is one reduction of a LazyTensor, over i or over j,
possibly with an extra tensor argument (``v`` of ``K @ v``, the weight of
``logsumexp`` / ``sumsoftmaxweight``). Those three need a scalar formula: a
vector formula is summed over its inner dimension first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from kernelsolve import LazyTensor, Vi, Vj
from kernelsolve.engine import ir

M, N = 4, 5  # points indexed by i and by j in the cross-product
E = 2  # columns of v (K @ v) and of the weights


# ----------------------------------------------------------------------------
# Samplers: rng, shape -> float64 array
# ----------------------------------------------------------------------------


def uniform(lo, hi):
    def draw(rng, shape):
        return rng.uniform(lo, hi, shape)

    return draw


def signed(lo, hi):
    """Random sign times U(lo, hi): |value| >= lo, away from 0."""

    def draw(rng, shape):
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(lo, hi, shape)

    return draw


def levels(values, noise):
    """One of ``values`` plus U(-noise, noise): away from the gaps between levels."""

    def draw(rng, shape):
        return rng.choice(np.asarray(values, float), shape) + rng.uniform(-noise, noise, shape)

    return draw


ANY = uniform(-1.0, 1.0)
POS = uniform(0.5, 1.5)
SCALE = uniform(0.8, 1.2)
TINY = uniform(-0.1, 0.1)
AWAY = signed(0.4, 1.0)


# ----------------------------------------------------------------------------
# Op cases
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OpCase:
    """A formula exercising the IR op ``op``; ``dims`` are those of X, Y, P."""

    name: str
    op: str
    build: Callable[[LazyTensor, LazyTensor, LazyTensor], LazyTensor]
    dims: tuple[int, int, int]
    samplers: tuple[Callable, Callable, Callable]

    def inputs(self, seed: int = 0, m: int = M, n: int = N, dtype=torch.float64):
        """x (m, dx), y (n, dy), p (dp,): leaf tensors that require grad."""
        rng = np.random.default_rng(seed)
        dx, dy, dp = self.dims
        sx, sy, sp = self.samplers
        arrays = (sx(rng, (m, dx)), sy(rng, (n, dy)), sp(rng, (dp,)))
        return tuple(torch.tensor(a, dtype=dtype, requires_grad=True) for a in arrays)

    def lazy(self, x, y, p) -> LazyTensor:
        return self.build(Vi(x), Vj(y), LazyTensor(p))

    def ops_in_formula(self) -> set[str]:
        """The IR ops of the built formula (checked to contain ``op``)."""
        x, y, p = self.inputs()
        return {n.op for n in ir.topological_order(self.lazy(x, y, p).formula)}


def _case(name, build, dims, samplers=(ANY, ANY, ANY), op=None):
    return OpCase(name, op or name, build, dims, samplers)


D3 = (3, 3, 3)
D2 = (2, 2, 2)

OP_CASES: list[OpCase] = [
    # arithmetic
    _case("neg", lambda X, Y, P: -(X * Y) + P, D2),
    _case("add", lambda X, Y, P: X + Y + P, D2),
    _case("sub", lambda X, Y, P: X - Y - P, D2),
    _case("mul", lambda X, Y, P: X * Y * P, D2),
    _case("div", lambda X, Y, P: X / Y / P, D2, (ANY, POS, POS)),
    # elementwise unary
    _case("exp", lambda X, Y, P: (X * P - Y).exp(), D2),
    _case("log", lambda X, Y, P: (X * P + Y).log(), D2, (POS, POS, POS)),
    _case("xlogx", lambda X, Y, P: (X * P + Y).xlogx(), D2, (POS, uniform(0.1, 0.9), POS)),
    _case("inv", lambda X, Y, P: (X * P + Y).inv(), D2, (POS, POS, POS)),
    _case("sin", lambda X, Y, P: (X * P + Y).sin(), D2, (uniform(-2, 2), ANY, SCALE)),
    _case("cos", lambda X, Y, P: (X * P + Y).cos(), D2, (uniform(-2, 2), ANY, SCALE)),
    _case(
        "tan",
        lambda X, Y, P: (X * P + Y).tan(),
        D2,
        (uniform(-0.6, 0.6), uniform(-0.3, 0.3), SCALE),
    ),
    _case(
        "asin",
        lambda X, Y, P: (X * P + Y).asin(),
        D2,
        (uniform(-0.4, 0.4), uniform(-0.3, 0.3), SCALE),
    ),
    _case(
        "acos",
        lambda X, Y, P: (X * P + Y).acos(),
        D2,
        (uniform(-0.4, 0.4), uniform(-0.3, 0.3), SCALE),
    ),
    _case("atan", lambda X, Y, P: (X * P + Y).atan(), D2, (uniform(-2, 2), ANY, SCALE)),
    _case("tanh", lambda X, Y, P: (X * P + Y).tanh(), D2),
    _case("sinh", lambda X, Y, P: (X * P + Y).sinh(), D2),
    _case("cosh", lambda X, Y, P: (X * P + Y).cosh(), D2),
    _case("sqrt", lambda X, Y, P: (X * P + Y).sqrt(), D2, (POS, POS, POS)),
    _case("rsqrt", lambda X, Y, P: (X * P + Y).rsqrt(), D2, (POS, POS, POS)),
    _case("square", lambda X, Y, P: (X * P + Y).square(), D2),
    _case("abs", lambda X, Y, P: (X * P + Y).abs(), D2, (AWAY, TINY, SCALE)),
    _case("relu", lambda X, Y, P: (X * P + Y).relu(), D2, (AWAY, TINY, SCALE)),
    _case(
        "sinxdivx",
        lambda X, Y, P: (X * P + Y).sinxdivx(),
        D2,
        (signed(0.4, 3.0), TINY, SCALE),
    ),
    _case("pow3", lambda X, Y, P: (X * P + Y) ** 3, D2, op="pow"),
    _case("pow-2", lambda X, Y, P: (X * P + Y) ** -2, D2, (POS, POS, POS), op="pow"),
    # binary
    _case("powf", lambda X, Y, P: (X + Y) ** (P * X), D2, (POS, POS, ANY)),
    _case("powf_number", lambda X, Y, P: (X * P + Y) ** 1.5, D2, (POS, POS, POS), op="powf"),
    _case("atan2", lambda X, Y, P: (X * P).atan2(Y), D2, (ANY, POS, ANY)),
    # ternary, with kinks / discontinuities kept away from the samples
    _case(
        "clamp",
        lambda X, Y, P: (X * P).clamp(Y - 0.5, Y + 0.35),
        (2, 1, 2),
        (
            levels([-0.9, -0.7, -0.3, 0.1, 0.5, 0.8], 0.02),
            uniform(-0.1, 0.05),
            uniform(0.95, 1.05),
        ),
    ),
    _case(
        "clampint",
        lambda X, Y, P: (X * P + Y).clampint(-1, 1),
        D2,
        (
            levels([-1.6, -1.3, -0.6, -0.2, 0.3, 0.7, 1.4, 1.8], 0.02),
            uniform(-0.05, 0.05),
            uniform(0.95, 1.05),
        ),
    ),
    _case(
        "ifelse",
        lambda X, Y, P: (X - Y).ifelse(Y * P, X * X * P),
        D2,
        (AWAY, TINY, ANY),
    ),
    _case(
        "mod",
        lambda X, Y, P: X.mod(P, Y),
        (2, 1, 1),
        # (x - y) / p stays within 0.25 of k + 1/2: far from the jumps of floor
        (levels([-1.5, -0.5, 0.5, 1.5], 0.1), TINY, uniform(0.98, 1.02)),
    ),
    # inner reductions and vector ops
    _case("sum", lambda X, Y, P: (X * Y + P).sum(-1), D3),
    _case("max", lambda X, Y, P: (X * P - Y).max(-1), D3),
    _case("min", lambda X, Y, P: (X * P - Y).min(-1), D3),
    _case("sqnorm2", lambda X, Y, P: (X * P - Y).sqnorm2(), D3),
    _case("norm2", lambda X, Y, P: (X * P - Y).norm2(), D3),
    _case("normalize", lambda X, Y, P: (X * P - Y).normalize(), D3),
    _case("scalprod", lambda X, Y, P: (X * P) | Y, D3),
    _case("sqdist", lambda X, Y, P: (X * P).sqdist(Y), D3),
    _case(
        "wsqnorm_1",
        lambda X, Y, P: (X - Y).weightedsqnorm(P),
        (2, 2, 1),
        (ANY, ANY, POS),
        op="weightedsqnorm",
    ),
    _case(
        "wsqnorm_D",
        lambda X, Y, P: (X - Y).weightedsqnorm(P),
        (2, 2, 2),
        (ANY, ANY, POS),
        op="weightedsqnorm",
    ),
    _case(
        "wsqnorm_DD",
        lambda X, Y, P: (X - Y).weightedsqnorm(P),
        (2, 2, 4),
        op="weightedsqnorm",
    ),
    _case("elem", lambda X, Y, P: (X * Y + P)[1], D3),
    _case("extract", lambda X, Y, P: (X * Y + P)[0:2], D3),
    _case("concat", lambda X, Y, P: X.concat(Y * P), D2),
    _case("matvecmult", lambda X, Y, P: X.matvecmult(Y * P), (6, 2, 2)),
    _case("vecmatmult", lambda X, Y, P: (X * P).vecmatmult(Y), (2, 6, 2)),
    _case("tensorprod", lambda X, Y, P: X.tensorprod(Y * P), (2, 3, 3)),
    # every complex op (engine/ops/complex.py) in one real-valued formula; each
    # op's own VJP is checked against torch in tests/engine/test_complex_ops.py
    _case("complex", lambda X, Y, P: _complex_mix(X, Y, P), D2, op="complexmult"),
    _case(
        "tensordot",
        lambda X, Y, P: X.keops_tensordot(Y * P, (2, 3), (3, 2), (1,), (0,), (1, 0)),
        (6, 6, 6),
    ),
]


def _complex_mix(X, Y, P):
    z = X.exp1j() * P + Y.imag2complex()
    w = (Y * 0.5).real2complex() + 2j - X.imag2complex() * 0.25  # |w| >= 1.75
    q = (z * w.conj() * 0.1).exp() / w  # angle(q) within 1.1 of -pi/2: no branch cut
    return q.abs() + q.angle() * 0.5 + z.real - w.imag + q.sum(-1).real


CASES_BY_NAME = {c.name: c for c in OP_CASES}


# ----------------------------------------------------------------------------
# Reductions
# ----------------------------------------------------------------------------


def _scalar(F: LazyTensor) -> LazyTensor:
    """A scalar formula for the reductions that need one (``K @ v``, weights)."""
    return F if F.ndim == 1 else F.sum(-1)


def _extra_var(w, axis):
    """The extra tensor as a variable indexed like the reduced axis."""
    return Vj(w) if axis == 1 else Vi(w)


@dataclass(frozen=True)
class Red:
    """One reduction: ``apply(F, axis, extra)``; ``extra`` (rows on the
    reduced axis, E columns) is drawn by ``extra_sampler`` when not None."""

    name: str
    apply: Callable
    extra_sampler: Callable | None = None
    fixed_axis: int | None = None  # sum_i / sum_j; the others alternate

    def extra(self, axis, seed=0, m=M, n=N, dtype=torch.float64):
        if self.extra_sampler is None:
            return ()
        rng = np.random.default_rng(seed + 1000)
        rows = n if axis == 1 else m
        w = torch.tensor(self.extra_sampler(rng, (rows, E)), dtype=dtype, requires_grad=True)
        return (w,)


def _kv(F, axis, w):
    K = _scalar(F)
    return K @ w if axis == 1 else K.T @ w


REDUCTIONS: list[Red] = [
    Red("sum_j", lambda F, a: F.sum(dim=1), fixed_axis=1),
    Red("sum_i", lambda F, a: F.sum(dim=0), fixed_axis=0),
    Red("K@v", _kv, ANY),
    Red("logsumexp", lambda F, a: F.logsumexp(dim=a)),
    Red(
        "logsumexp_weight",
        lambda F, a, w: _scalar(F).logsumexp(dim=a, weight=_extra_var(w, a)),
        POS,
    ),
    Red(
        "sumsoftmaxweight",
        lambda F, a, w: _scalar(F).sumsoftmaxweight(_extra_var(w, a), dim=a),
        ANY,
    ),
    Red("min", lambda F, a: F.min(dim=a)),
    Red("max", lambda F, a: F.max(dim=a)),
    Red("Kmin", lambda F, a: F.Kmin(2, dim=a)),
    Red("min_argmin", lambda F, a: F.min_argmin(dim=a)[0]),
]
REDUCTIONS_BY_NAME = {r.name: r for r in REDUCTIONS}


def axis_for(case_index: int, red: Red) -> int:
    """Reductions other than sum_i / sum_j alternate between over i and over j
    from one op case to the next, so that both axes are exercised."""
    return red.fixed_axis if red.fixed_axis is not None else case_index % 2


def differentiable_function(case: OpCase, red: Red, axis: int):
    """``f(x, y, p, *extra) -> reduction of the case's formula``: for gradcheck."""

    def f(x, y, p, *extra):
        return red.apply(case.lazy(x, y, p), axis, *extra)

    return f
