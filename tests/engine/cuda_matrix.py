"""THE CUDA test matrix, shared by test_cuda_source.py (NVRTC) and
test_cuda_emulation.py (host emulation of the same source).

A :class:`Case` is (name, LazyTensor formula builder, reduction, K, weight
builder) plus dtype, axis of the reduction and accumulator dtype. A builder
takes a :class:`Data` namespace of LazyTensors (generated for given sizes and
batch shapes) and returns a LazyTensor; the case turns it into a
:class:`~kernelsolve.engine.codegen.spec.KernelSpec` the way ``dispatch`` does
(``lazytensor.binding.join``, ``ir.swap_ij`` for a reduction over i, Python floats
bound to parameters as 1-element arrays, batch dims padded).

Every CUDA source produced by a case of :data:`MATRIX` is compiled by NVRTC;
the emulation tests run a subset of the same cases (selected by id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kernelsolve import LazyTensor
from kernelsolve.engine import ir
from kernelsolve.engine import reductions as R
from kernelsolve.engine.codegen.spec import KernelSpec
from kernelsolve.engine.reductions import INDEX
from kernelsolve.lazytensor.binding import join

# ----------------------------------------------------------------------------
# Data: every variable a builder may use, for given sizes and batch shapes
# ----------------------------------------------------------------------------

# Special data (builders add1 / add3): F = xs_i + (ya_j, yb_j or yc_j, chosen
# per row by sel_i = 0, -1, -2 = -(i % 3)), integer values (many ties) and:
NAN_COLS = (5, 30)  # ya: NaN columns (two: the first must win); ya[7, 2] NaN too
INF_COLS = (9,)  # ya and yb: +inf
NINF_COLS = (11, 20)  # yc: -inf (ya: -inf at 11 only)
# xs rows of NaN / +inf / -inf (and xs[0, 0] = NaN):
X_ROWS = {1: np.nan, 2: np.inf, 3: -np.inf, 4: np.inf, 5: -np.inf, 6: np.nan, 7: -np.inf}


@dataclass(frozen=True)
class Shapes:
    """Sizes and batch shapes of one problem (i-side, j-side, parameters)."""

    M: int = 23
    N: int = 41
    bx: tuple = ()
    by: tuple = ()
    bp: tuple = ()


class Data:
    """LazyTensors bound to random arrays of dtype ``dtype``.

    x, y: i/j-variables of dim 3; b1, b3: positive j-variables (weights,
    K @ b); g: positive parameter of dim 1; p3: parameter of dim 3; A: 2x3
    matrix parameter (dim 6); S: 3x3 positive-definite matrix (dim 9);
    xs1/xs3, sel, ya1/ya3, yb1/yb3, yc1/yc3: the special data (see X_ROWS),
    also kept as arrays in ``special``.
    """

    def __init__(self, rng: np.random.Generator, dtype: str, s: Shapes):
        dt = np.dtype(dtype)
        M, N = s.M, s.N

        def vi(a):
            return LazyTensor(np.asarray(a, dtype=dt).reshape(s.bx + (M, 1, -1)))

        def vj(a):
            return LazyTensor(np.asarray(a, dtype=dt).reshape(s.by + (1, N, -1)))

        def pm(a):
            a = np.asarray(a, dtype=dt)
            return LazyTensor(a.reshape(s.bp + (1, 1, -1)) if s.bp else a.reshape(-1))

        normal = rng.standard_normal
        self.x = vi(normal(s.bx + (M, 3)))
        self.y = vj(normal(s.by + (N, 3)))
        self.b1 = vj(rng.uniform(0.5, 2.0, s.by + (N, 1)))
        self.b3 = vj(rng.uniform(0.5, 2.0, s.by + (N, 3)))
        self.g = pm(rng.uniform(0.5, 1.5, s.bp + (1,)))
        self.p3 = pm(rng.uniform(-1.5, 1.5, s.bp + (3,)))
        self.A = pm(normal(s.bp + (6,)))
        B = normal(s.bp + (3, 3))
        S = B @ np.swapaxes(B, -1, -2) + np.eye(3)
        self.S = pm(S.reshape(s.bp + (9,)))

        def ints(shape):
            return rng.integers(-3, 4, size=shape).astype(dt)

        def fill(a, points, value, coord=slice(None)):
            # rows of an i-variable / columns of a j-variable (axis -2)
            for n in points:
                if n < a.shape[-2]:
                    a[..., n, coord] = value

        xs = ints(s.bx + (M, 3))
        for r, value in X_ROWS.items():
            fill(xs, (r,), value)
        xs[..., 0, 0] = np.nan  # one coordinate of row 0 only
        sel = np.broadcast_to(-(np.arange(M) % 3).astype(dt)[:, None], s.bx + (M, 1))
        ya, yb, yc = ints(s.by + (N, 3)), ints(s.by + (N, 3)), ints(s.by + (N, 3))
        fill(ya, NAN_COLS, np.nan)
        fill(ya, (7,), np.nan, 2)
        fill(ya, INF_COLS, np.inf)
        fill(ya, NINF_COLS[:1], -np.inf)
        fill(yb, INF_COLS, np.inf)
        fill(yc, NINF_COLS, -np.inf)
        self.special = {"xs": xs, "sel": sel, "ya": ya, "yb": yb, "yc": yc}
        self.sel = vi(sel)
        for d in (1, 3):
            for name, a in self.special.items():
                if name != "sel":
                    cat = vi if name == "xs" else vj
                    setattr(self, f"{name}{d}", cat(a[..., :d]))


def special_dense(special: dict, D: int) -> np.ndarray:
    """F of add1 / add3 for every pair, ``batch + (M, N, D)``, by broadcasting."""
    xs, sel = special["xs"][..., :, None, :D], special["sel"][..., :, None, :]
    ya, yb, yc = (special[k][..., None, :, :D] for k in ("ya", "yb", "yc"))
    with np.errstate(invalid="ignore"):
        return xs + np.where(sel >= 0, ya, np.where(sel + 1.5 >= 0, yb, yc))


# ----------------------------------------------------------------------------
# Formula builders
# ----------------------------------------------------------------------------


def gauss(v: Data) -> LazyTensor:
    """exp(-g |x - y|^2): inner dim 1."""
    return (-(v.g * v.x.sqdist(v.y))).exp()


def neg_sqdist(v: Data) -> LazyTensor:
    """-g |x - y|^2: scalar formula of the weighted reductions."""
    return -(v.g * v.x.sqdist(v.y))


def diff3(v: Data) -> LazyTensor:
    """(x - y) * p3: inner dim 3 (coordinates reduce independently)."""
    return (v.x - v.y) * v.p3


def kb1(v: Data) -> LazyTensor:
    """Gaussian kernel times a j-variable with 1 column (K @ b)."""
    return (-(v.x.sqdist(v.y) * 0.5)).exp() * v.b1


def kb3(v: Data) -> LazyTensor:
    """Gaussian kernel times a j-variable with 3 columns (K @ b)."""
    return (-(v.x.sqdist(v.y) * 0.5)).exp() * v.b3


def mix(v: Data) -> LazyTensor:
    """Parameters (arrays and Python floats) and many op kinds: sqrt, sin,
    clamp, ifelse, concat, matvecmult, tensorprod, weightedsqnorm, elem;
    inner dim 3."""
    d = v.x - v.y
    q = d.weightedsqnorm(v.S)  # 1
    t = v.A.matvecmult(d).tensorprod(d)  # 2 x 3 = 6
    u = (q + 1.0).sqrt()
    s = t.elem(4).sin()
    w = d.elem(0).ifelse(t.elem(1).clamp(-0.5, 0.5), q * 0.25)
    return u.concat(s).concat(w)


def ionly(v: Data) -> LazyTensor:
    """No j-variable at all: sin(x) * p3 (N = 1, nothing to stage)."""
    return v.x.sin() * v.p3


def add1(v: Data) -> LazyTensor:
    """xs + (ya, yb or yc by row), dim 1: NaN / inf rows and columns, ties."""
    return v.xs1 + v.sel.ifelse(v.ya1, (v.sel + 1.5).ifelse(v.yb1, v.yc1))


def add3(v: Data) -> LazyTensor:
    """xs + (ya, yb or yc by row), dim 3: NaN / inf rows and columns, ties."""
    return v.xs3 + v.sel.ifelse(v.ya3, (v.sel + 1.5).ifelse(v.yb3, v.yc3))


def w_b1(v: Data) -> LazyTensor:
    return v.b1


def w_b3(v: Data) -> LazyTensor:
    return v.b3


def w_mixed(v: Data) -> LazyTensor:
    """A weight formula of i and j (dim 3, positive)."""
    return (v.x - v.y).abs() * v.b3 + 0.25


def w_special(v: Data) -> LazyTensor:
    return v.b3


# ----------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------

Builder = Callable[[Data], LazyTensor]


@dataclass(frozen=True)
class Case:
    name: str  # formula name
    formula: Builder
    reduction: str
    K: int = 0
    weight: Builder | None = None
    dtype: str = "float64"
    axis: int = 1  # 1: reduce over j, 0: over i
    acc: str | None = None  # accumulator dtype (None: same as dtype)

    @property
    def id(self) -> str:
        red = self.reduction + (str(self.K) if self.K else "")
        if self.weight is not None:
            red += "-" + self.weight.__name__
        acc = "-acc64" if self.acc else ""
        return f"{self.name}-{red}-{self.dtype[-2:]}{acc}-{'ij'[self.axis]}"

    @property
    def acc_dtype(self) -> str:
        return self.acc or self.dtype

    def problem(self, shapes: Shapes = Shapes(), seed: int = 0) -> Problem:
        return Problem(self, shapes, seed)


UNWEIGHTED = [
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
]
WEIGHTED = ["logsumexp_weight", "sumsoftmaxweight"]
K_DEFAULT = 3


def _k(red: str) -> int:
    return K_DEFAULT if R.REDUCTIONS[red].uses_k else 0


def _build_matrix() -> list[Case]:
    cases = []
    for red in UNWEIGHTED:
        # vector formula, float64, over j; scalar Gaussian, float32, over i
        cases.append(Case("diff3", diff3, red, _k(red), dtype="float64", axis=1))
        cases.append(Case("gauss", gauss, red, _k(red), dtype="float32", axis=0))
    for red in WEIGHTED:
        for dtype in ("float32", "float64"):
            cases.append(Case("nsq", neg_sqdist, red, weight=w_b1, dtype=dtype))
            cases.append(Case("nsq", neg_sqdist, red, weight=w_mixed, dtype=dtype, axis=0))
        cases.append(Case("add1", add1, red, weight=w_special, dtype="float64"))
    for dtype in ("float32", "float64"):
        cases.append(Case("kb1", kb1, "sum", dtype=dtype))
        cases.append(Case("kb3", kb3, "sum", dtype=dtype))
    cases += [
        Case("kb3", kb3, "sum", dtype="float32", acc="float64"),
        Case("mix", mix, "sum", dtype="float64"),
        Case("mix", mix, "sum", dtype="float32", axis=0),
        Case("mix", mix, "min_argmin", dtype="float32"),
        Case("mix", mix, "kmin_argkmin", K_DEFAULT, dtype="float64", axis=0),
        Case("mix", mix, "logsumexp", dtype="float64"),
        Case("ionly", ionly, "sum", dtype="float64"),
        Case("diff3", diff3, "kmin_argkmin", 1, dtype="float64"),  # K = 1 for N = 1
    ]
    # Special values (NaN / inf rows and columns, ties)
    for red in ("min", "argmin", "max_argmax", "argkmin", "kmin_argkmin", "logsumexp", "sum"):
        cases.append(Case("add1", add1, red, _k(red), dtype="float64"))
    for red in ("min_argmin", "kmin_argkmin", "logsumexp"):
        cases.append(Case("add3", add3, red, _k(red), dtype="float32"))
    cases.append(Case("add1", add1, "argmin", dtype="float32", axis=0))
    return cases


MATRIX: list[Case] = _build_matrix()
BY_ID: dict[str, Case] = {c.id: c for c in MATRIX}
assert len(BY_ID) == len(MATRIX), "duplicate case ids"


def case(case_id: str) -> Case:
    return BY_ID[case_id]


# ----------------------------------------------------------------------------
# A case on concrete data: spec, leaves in GPU layout, the reference answer
# ----------------------------------------------------------------------------


def _batch_ndim(a: np.ndarray, cat: int) -> int:
    return a.ndim - (1 if cat == ir.P else 2)


class Problem:
    """A case bound to data, laid out as ``dispatch`` lays it out for the
    CUDA target: leaves ``batch + (n, d)`` / ``batch + (d,)`` with the full
    number of batch dims, categories swapped for a reduction over i."""

    def __init__(self, c: Case, shapes: Shapes, seed: int):
        self.case = c
        self.data = data = Data(np.random.default_rng(seed), c.dtype, shapes)
        operands = [c.formula(data)]
        if c.weight is not None:
            operands.append(c.weight(data))
        formulas, (variables, cats, _, _, batch, _) = join(operands)
        formula = formulas[0]
        weight = formulas[1] if c.weight is not None else None
        cats = list(cats)
        if c.axis == 0:
            formula = ir.swap_ij(formula)
            weight = ir.swap_ij(weight) if weight is not None else None
            cats = [{ir.I: ir.J, ir.J: ir.I, ir.P: ir.P}[k] for k in cats]
        host = [
            np.asarray(v, dtype=c.dtype).reshape(-1) if isinstance(v, tuple) else v
            for v in variables
        ]
        batch = tuple(
            np.broadcast_shapes(*(a.shape[: _batch_ndim(a, k)] for a, k in zip(host, cats)))
        )
        nb = len(batch)
        self.leaves = []
        for a, k in zip(host, cats):
            pad = nb - _batch_ndim(a, k)
            self.leaves.append(np.ascontiguousarray(a.reshape((1,) * pad + a.shape)))
        self.cats = tuple(cats)
        self.batch = batch
        self.M = max([a.shape[-2] for a, k in zip(host, cats) if k == ir.I], default=1)
        self.N = max([a.shape[-2] for a, k in zip(host, cats) if k == ir.J], default=1)
        self.formula, self.weight = formula, weight
        self.red = R.get(c.reduction, c.K) if c.K else R.get(c.reduction)
        self.spec = KernelSpec(
            formula,
            weight,
            self.red,
            c.K or 0,
            c.dtype,
            c.acc_dtype,
            self.cats,
            tuple(int(a.shape[-1]) for a in self.leaves),
        )

    def reference(self) -> list[np.ndarray]:
        from kernelsolve.engine.backends import reference

        return reference.reduce(
            self.formula,
            self.red,
            self.leaves,
            self.cats,
            self.batch,
            self.M,
            self.N,
            weight=self.weight,
            K=self.case.K or 0,
            dtype=np.dtype(self.case.dtype),
            acc_dtype=np.dtype(self.case.acc) if self.case.acc else None,
        )

    def emulate(self, block: int | None = 16, nsplit: int | None = 1) -> list[np.ndarray]:
        from kernelsolve.engine.backends import emulation

        return emulation.run(
            self.spec, self.leaves, self.batch, self.M, self.N, block=block, nsplit=nsplit
        )


# ----------------------------------------------------------------------------
# Comparison
# ----------------------------------------------------------------------------

TOL = {"float64": dict(rtol=1e-11, atol=1e-12), "float32": dict(rtol=3e-5, atol=3e-6)}


def assert_same(got: list, ref: list, spec: KernelSpec, what: str = "") -> None:
    """Index outputs identical; value outputs with the same NaN / inf pattern
    and close elsewhere (tolerance of the dtype)."""
    outs = spec.outputs()
    assert len(got) == len(ref) == len(outs), what
    for k, (g, r, o) in enumerate(zip(got, ref, outs)):
        assert g.shape == r.shape, f"{what} output {k}: shape {g.shape} != {r.shape}"
        if o.kind == INDEX:
            assert g.dtype == np.int64, what
            bad = np.argwhere(g != r)
            assert bad.size == 0, (
                f"{what} output {k}: indices differ at {bad[:5].tolist()}: "
                f"got {g[tuple(bad[0])]}, expected {r[tuple(bad[0])]}"
            )
        else:
            assert g.dtype == np.dtype(spec.dtype), what
            np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=f"{what} NaN {k}")
            np.testing.assert_array_equal(
                np.isposinf(g), np.isposinf(r), err_msg=f"{what} +inf {k}"
            )
            np.testing.assert_array_equal(
                np.isneginf(g), np.isneginf(r), err_msg=f"{what} -inf {k}"
            )
            fin = np.isfinite(r)
            np.testing.assert_allclose(
                g[fin], r[fin], err_msg=f"{what} output {k}", **TOL[spec.dtype]
            )
