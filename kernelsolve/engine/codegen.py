"""One C renderer: formula + reduction -> source of one fused map-reduce kernel.

The formula is rendered once, as straight-line C for a single (i, j) pair:
every node of the hash-consed DAG becomes one scalar per inner coordinate
(``v7_0, v7_1, ...``), computed once (CSE), with the inner dimensions
unrolled. :func:`render_formula` returns those statements; the CPU template
(:func:`render_cpu`) and the CUDA template (:func:`render_cuda`) wrap the very
same statements. What differs between the two targets is a small table, a
:class:`Dialect`: kernel prefix, function qualifier, shared-memory keyword,
barrier, thread indices and the name of ``exp``.

Variables reach the kernel through a table of pointers ``args`` and a table
of int64 batch offsets ``boff[var * nbatch + b]``; i-variables are laid out
``(batch, M, D)``, j-variables ``(batch, D, NS)`` on the CPU (structure of
arrays, so the loop over j reads contiguous memory and vectorizes; the row
stride ``NS`` is N rounded up to :data:`CPU_J_ALIGN`, see :func:`cpu_j_stride`)
and ``(batch, N, D)`` on the GPU, parameters ``(batch, D)``. All indexing is
int64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import ir
from .reductions import INDEX, Reduction

# ----------------------------------------------------------------------------
# Dialects: the only place where CPU and CUDA source differ.
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    name: str
    kernel_prefix: str  # before a kernel entry point
    func_prefix: str  # before helper functions
    shared: str  # qualifier of block-shared arrays
    barrier: str  # block-wide barrier statement
    thread_idx: str
    block_idx: str
    block_dim: str
    exp_name: str  # vectorizable exp with inf/NaN semantics


CPU = Dialect(
    name="cpu",
    kernel_prefix='extern "C"',
    func_prefix="static inline",
    shared="",
    barrier="",
    thread_idx="0",
    block_idx="0",
    block_dim="1",
    exp_name="ks_exp",
)

CUDA = Dialect(
    name="cuda",
    kernel_prefix='extern "C" __global__',
    func_prefix="static __device__ __forceinline__",
    shared="__shared__",
    barrier="__syncthreads();",
    thread_idx="threadIdx.x",
    block_idx="blockIdx.x",
    block_dim="blockDim.x",
    exp_name="exp",
)

# Compute type of each dtype: float16 / bfloat16 are computed and accumulated
# in float (the CUDA target loads and converts them; the CPU target is handed
# float32 copies by dispatch and never sees them).
C_TYPES = {"float32": "float", "float64": "double", "float16": "float", "bfloat16": "float"}
HALF_DTYPES = ("float16", "bfloat16")
# Storage type in memory (arguments, outputs) and its conversion to the compute
# type, for the dtypes stored narrower than they are computed.
STORAGE_TYPES = {"float16": "__half", "bfloat16": "__nv_bfloat16"}
LOAD_FUNCTIONS = {"float16": "__half2float", "bfloat16": "__bfloat162float"}


# ----------------------------------------------------------------------------
# Math preamble for the CPU: exp that vectorizes and keeps inf/NaN right.
# ----------------------------------------------------------------------------

# exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln2 / 2, with a polynomial
# for exp(r) (float: 1.3 ulp, double: 1 ulp, measured over the whole range).
# Branch-free, so GCC vectorizes it inside `omp simd` loops; 2^n is applied
# as two factors so that subnormal results are right; the selects at the end
# give exactly 0 below the range, +inf above it, and NaN for NaN (why not
# -ffast-math: it lets the compiler assume no inf/NaN, which logsumexp's
# -inf start and min's +inf start need).
CPU_MATH = r"""
static inline float ks_exp(float x) {
  float t = x * 1.44269504088896341f + 12582912.0f;
  float n = t - 12582912.0f;
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t e = __builtin_bit_cast(int32_t, t) - 0x4B400000;
  int32_t e1 = e >> 1, e2 = e - e1;
  float y = p * __builtin_bit_cast(float, (e1 + 127) << 23)
              * __builtin_bit_cast(float, (e2 + 127) << 23);
  y = x < -104.0f ? 0.0f : y;
  y = x > 88.72283935546875f ? INFINITY : y;
  y = x != x ? x : y;
  return y;
}

// x where m is all ones, +0 where m is 0: the mask of the padding columns
// (codegen.CPU_VECTOR_J) as bit operations, not as a select: GCC 12 with
// AVX-512 miscompiled `acc += keep ? v : -0` in the SIMD loop of a formula
// with selects of its own (a gradient with ifelse/clamp).
static inline float ks_keep(float x, int32_t m) {
  return __builtin_bit_cast(float, __builtin_bit_cast(int32_t, x) & m);
}

static inline double ks_keep(double x, int32_t m) {
  return __builtin_bit_cast(double, __builtin_bit_cast(int64_t, x) & (int64_t)m);
}

static inline double ks_exp(double x) {
  double t = x * 1.4426950408889634074 + 6755399441055744.0;
  double n = t - 6755399441055744.0;
  double r = x - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;
  double p = 1.6059043836821614599e-10;
  p = p * r + 2.0876756987868098979e-9;
  p = p * r + 2.5052108385441718775e-8;
  p = p * r + 2.7557319223985890653e-7;
  p = p * r + 2.7557319223985890653e-6;
  p = p * r + 2.4801587301587301587e-5;
  p = p * r + 1.9841269841269841270e-4;
  p = p * r + 1.3888888888888888889e-3;
  p = p * r + 8.3333333333333333333e-3;
  p = p * r + 4.1666666666666666667e-2;
  p = p * r + 1.6666666666666666667e-1;
  p = p * r + 0.5;
  p = p * r * r + r + 1.0;
  // n = n1 + n2 split in floating point (n1 = round(n / 2) by the same
  // shifter), so that only 64-bit add/sub/shift-left remain: AVX2 has no
  // 64-bit arithmetic right shift, and `e >> 1` kept this loop scalar there
  double t1 = n * 0.5 + 6755399441055744.0;
  double n1 = t1 - 6755399441055744.0;
  double t2 = (n - n1) + 6755399441055744.0;
  int64_t e1 = __builtin_bit_cast(int64_t, t1) - 0x4338000000000000LL;
  int64_t e2 = __builtin_bit_cast(int64_t, t2) - 0x4338000000000000LL;
  double y = p * __builtin_bit_cast(double, (e1 + 1023) << 52)
               * __builtin_bit_cast(double, (e2 + 1023) << 52);
  y = x < -746.0 ? 0.0 : y;
  y = x > 709.782712893384 ? INFINITY : y;
  y = x != x ? x : y;
  return y;
}
"""


# ----------------------------------------------------------------------------
# Formula -> straight-line statements
# ----------------------------------------------------------------------------


def c_literal(value, T: str) -> str:
    """Exact C literal of ``value`` in type ``T``."""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        if abs(value) < 2**53:
            return f"(({T}){int(value)})"
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        if math.isnan(value):
            return f"(({T})NAN)"
        return f"(({T}){'-' if value < 0 else ''}INFINITY)"
    return f"(({T}){float(value).hex()})"


def _fn(name: str, T: str) -> str:
    """libm name for type T: sin -> sinf for float."""
    return name + ("f" if T == "float" else "")


# Elementwise ops: C expression of one coordinate from argument expressions.
_ELEMENTWISE: dict[str, Callable[..., str]] = {
    "neg": lambda T, a: f"(-{a})",
    "abs": lambda T, a: f"{_fn('fabs', T)}({a})",
    "log": lambda T, a: f"{_fn('log', T)}({a})",
    "xlogx": lambda T, a: f"({a} == 0 ? ({T})0 : {a} * {_fn('log', T)}({a}))",
    "inv": lambda T, a: f"(({T})1 / {a})",
    "sin": lambda T, a: f"{_fn('sin', T)}({a})",
    "cos": lambda T, a: f"{_fn('cos', T)}({a})",
    "tan": lambda T, a: f"{_fn('tan', T)}({a})",
    "asin": lambda T, a: f"{_fn('asin', T)}({a})",
    "acos": lambda T, a: f"{_fn('acos', T)}({a})",
    "atan": lambda T, a: f"{_fn('atan', T)}({a})",
    "tanh": lambda T, a: f"{_fn('tanh', T)}({a})",
    "sinh": lambda T, a: f"{_fn('sinh', T)}({a})",
    "cosh": lambda T, a: f"{_fn('cosh', T)}({a})",
    "sqrt": lambda T, a: f"{_fn('sqrt', T)}({a})",
    "rsqrt": lambda T, a: f"({a} == 0 ? ({T})0 : ({T})1 / {_fn('sqrt', T)}({a}))",
    "square": lambda T, a: f"({a} * {a})",
    "relu": lambda T, a: f"({a} < 0 ? ({T})0 : {a})",
    "sinxdivx": lambda T, a: f"({a} == 0 ? ({T})1 : {_fn('sin', T)}({a}) / {a})",
    "floor": lambda T, a: f"{_fn('floor', T)}({a})",
    "add": lambda T, a, b: f"({a} + {b})",
    "sub": lambda T, a, b: f"({a} - {b})",
    "mul": lambda T, a, b: f"({a} * {b})",
    "div": lambda T, a, b: f"({a} / {b})",
    "powf": lambda T, a, b: f"{_fn('pow', T)}({a}, {b})",
    "atan2": lambda T, a, b: f"{_fn('atan2', T)}({a}, {b})",
    "eq": lambda T, a, b: f"({a} == {b} ? ({T})1 : ({T})0)",
    "ne": lambda T, a, b: f"({a} != {b} ? ({T})1 : ({T})0)",
    "lt": lambda T, a, b: f"({a} < {b} ? ({T})1 : ({T})0)",
    "le": lambda T, a, b: f"({a} <= {b} ? ({T})1 : ({T})0)",
    "gt": lambda T, a, b: f"({a} > {b} ? ({T})1 : ({T})0)",
    "ge": lambda T, a, b: f"({a} >= {b} ? ({T})1 : ({T})0)",
    "ifelse": lambda T, x, a, b: f"({x} >= 0 ? {a} : {b})",
    "mod": lambda T, x, n, d: f"({x} - {n} * {_fn('floor', T)}(({x} - {d}) / {n}))",
}


def _pow_int(T: str, a: str, n: int) -> str:
    if n == 0:
        return f"(({T})1)"
    m = abs(n)
    if m <= 8:
        prod = " * ".join([a] * m)
        expr = f"({prod})"
    else:
        expr = f"{_fn('pow', T)}({a}, ({T}){m})"
    return expr if n > 0 else f"(({T})1 / {expr})"


# Selects rendered as two statements (inner, then outer using the inner's
# value ``t``): same semantics as the NumPy reference's nested np.where.
_TWO_STEP = {
    "clamp": (
        lambda T, x, a, b: f"({x} > {b} ? {b} : {x})",
        lambda T, t, x, a, b: f"({x} < {a} ? {a} : {t})",
    ),
    "step": (
        lambda T, a: f"({a} >= 0 ? ({T})1 : {a})",
        lambda T, t, a: f"({a} < 0 ? ({T})0 : {t})",
    ),
    "sign": (
        lambda T, a: f"({a} < 0 ? ({T})-1 : {a})",
        lambda T, t, a: f"({a} > 0 ? ({T})1 : {t})",
    ),
}


class _Emitter:
    """Collects the statements of one formula DAG."""

    def __init__(
        self, T: str, dialect: Dialect, leaf: Callable[[ir.Node], list[str]], prefix: str = "v"
    ):
        self.T = T
        self.dialect = dialect
        self.leaf = leaf
        self.prefix = prefix
        self.lines: list[str] = []
        self.values: dict[int, list[str]] = {}
        self.count = 0

    def emit(self, node: ir.Node) -> list[str]:
        for n in ir.topological_order(node):
            if id(n) not in self.values:
                self.values[id(n)] = self._node(n)
        return self.values[id(node)]

    def _define(self, exprs: Sequence[str]) -> list[str]:
        name = f"{self.prefix}{self.count}"
        self.count += 1
        out = []
        for k, e in enumerate(exprs):
            self.lines.append(f"const {self.T} {name}_{k} = {e};")
            out.append(f"{name}_{k}")
        return out

    def _node(self, n: ir.Node) -> list[str]:
        T = self.T
        if n.op == "var":
            return self.leaf(n)
        if n.op == "const":
            value, dim = n.attrs
            return [c_literal(value, T)] * dim
        args = [self.values[id(a)] for a in n.args]
        op, D = n.op, n.dim

        def at(a: list[str], k: int) -> str:  # dim-1 arguments broadcast
            return a[0] if len(a) == 1 else a[k]

        if op == "exp":
            return self._define([f"{self.dialect.exp_name}({a})" for a in args[0]])
        if op in _TWO_STEP:
            # Nested selects are split into two statements: GCC 12 with
            # AVX-512 miscompiles some nested ?: inside `omp simd` loops
            # (seen with clamp(clamp(x, y, y + 1), x, x + 1)).
            inner, outer = _TWO_STEP[op]
            cols = [[at(a, k) for a in args] for k in range(D)]
            tmp = self._define([inner(T, *c) for c in cols])
            return self._define([outer(T, t, *c) for t, c in zip(tmp, cols)])
        if op in _ELEMENTWISE:
            f = _ELEMENTWISE[op]
            return self._define([f(T, *(at(a, k) for a in args)) for k in range(D)])
        (a, *rest) = args
        if op == "pow":
            return self._define([_pow_int(T, x, n.attrs[0]) for x in a])
        if op == "round":
            d = n.attrs[0]
            if d == 0:
                return self._define([f"{_fn('nearbyint', T)}({x})" for x in a])
            s = c_literal(10.0**d, T)
            return self._define([f"({_fn('nearbyint', T)}({x} * {s}) / {s})" for x in a])
        if op == "clampint":
            lo, hi = (c_literal(v, T) for v in n.attrs)
            tmp = self._define([f"({x} > {hi} ? {hi} : {x})" for x in a])
            return self._define([f"({x} < {lo} ? {lo} : {t})" for x, t in zip(a, tmp)])
        if op == "sum":
            return self._define([_join_sum(a, T)])
        if op in ("max", "min"):
            best = a[0]
            cmp = ">" if op == "max" else "<"
            for x in a[1:]:  # NaN-propagating, as np.max, in two selects
                (t,) = self._define([f"(({x} {cmp} {best} || {x} != {x}) ? {x} : {best})"])
                (best,) = self._define([f"({best} != {best} ? {best} : {t})"])
            return self._define([best])
        if op in ("argmax", "argmin"):
            best, idx = a[0], c_literal(0, T)
            cmp = ">" if op == "argmax" else "<"
            for k, x in enumerate(a[1:], start=1):
                take = f"(({x} {cmp} {best}) || ({x} != {x} && {best} == {best}))"
                best, idx = self._define(
                    [f"({take} ? {x} : {best})", f"({take} ? {c_literal(k, T)} : {idx})"]
                )
            return self._define([idx])
        if op == "sqnorm2":
            return self._define([_join_sum([f"{x} * {x}" for x in a], T)])
        if op == "norm2":
            return self._define([f"{_fn('sqrt', T)}({_join_sum([f'{x} * {x}' for x in a], T)})"])
        if op == "normalize":
            (s,) = self._define([_join_sum([f"{x} * {x}" for x in a], T)])
            (r,) = self._define([f"({s} == 0 ? ({T})0 : ({T})1 / {_fn('sqrt', T)}({s}))"])
            return self._define([f"{x} * {r}" for x in a])
        if op == "scalprod":
            b = rest[0]
            return self._define([_join_sum([f"{x} * {y}" for x, y in zip(a, b)], T)])
        if op == "sqdist":
            b = rest[0]
            diffs = self._define([f"{x} - {y}" for x, y in zip(a, b)])
            return self._define([_join_sum([f"{d} * {d}" for d in diffs], T)])
        if op == "weightedsqnorm":
            s, x = a, rest[0]
            Dx = len(x)
            if len(s) == 1:
                return self._define([f"{s[0]} * ({_join_sum([f'{v} * {v}' for v in x], T)})"])
            if len(s) == Dx:
                return self._define([_join_sum([f"{w} * {v} * {v}" for w, v in zip(s, x)], T)])
            terms = [f"{s[k * Dx + m]} * {x[k]} * {x[m]}" for k in range(Dx) for m in range(Dx)]
            return self._define([_join_sum(terms, T)])
        if op == "elem":
            return [a[n.attrs[0]]]
        if op == "extract":
            start, d = n.attrs
            return a[start : start + d]
        if op == "concat":
            return a + rest[0]
        if op == "matvecmult":
            v = rest[0]
            P = len(v)
            return self._define(
                [_join_sum([f"{a[r * P + p]} * {v[p]}" for p in range(P)], T) for r in range(D)]
            )
        if op == "vecmatmult":
            A = rest[0]
            v = a
            return self._define(
                [
                    _join_sum([f"{v[r]} * {A[r * D + p]}" for r in range(len(v))], T)
                    for p in range(D)
                ]
            )
        if op == "tensorprod":
            b = rest[0]
            return self._define([f"{x} * {y}" for x in a for y in b])
        if op == "onehot":
            r = f"{_fn('nearbyint', T)}({a[0]})"
            return self._define([f"({r} == ({T}){k} ? ({T})1 : ({T})0)" for k in range(D)])
        raise NotImplementedError(f"codegen: no C rendering for op {op!r}")


def _join_sum(terms: Sequence[str], T: str) -> str:
    return "(" + " + ".join(terms) + ")" if terms else f"(({T})0)"


def render_formula(
    roots: Sequence[ir.Node],
    T: str,
    dialect: Dialect,
    leaf: Callable[[ir.Node], list[str]],
    prefix: str = "v",
) -> tuple[list[str], list[list[str]]]:
    """Statements computing ``roots`` for one pair, and each root's
    coordinate expressions. ``leaf(var_node)`` gives the C expressions of a
    variable's coordinates. Shared subformulas are computed once. Local
    names start with ``prefix`` (two renderings can share one scope)."""
    em = _Emitter(T, dialect, leaf, prefix)
    results = [em.emit(r) for r in roots]
    return em.lines, results


# ----------------------------------------------------------------------------
# Kernel signature, shared by every target
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelSpec:
    """Everything that determines the source of one kernel."""

    formula: ir.Node
    weight: ir.Node | None
    reduction: Reduction
    K: int
    dtype: str  # "float32" | "float64"; CUDA only: "float16" | "bfloat16" (stored)
    acc_dtype: str
    var_cats: tuple[int, ...]  # category of each argument
    var_dims: tuple[int, ...]

    def __post_init__(self):
        # Specs key the kernel memos on every call: hash the fields once.
        fields = (self.formula, self.weight, self.reduction, self.K, self.dtype)
        fields += (self.acc_dtype, self.var_cats, self.var_dims)
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash

    @property
    def T(self) -> str:
        """C type of the arithmetic (float for float16 / bfloat16)."""
        return C_TYPES[self.dtype]

    @property
    def S(self) -> str:
        """C type of the arrays in memory (arguments and value outputs)."""
        return STORAGE_TYPES.get(self.dtype, self.T)

    def load(self, expr: str) -> str:
        """``expr`` (an element of an argument) as the compute type."""
        fn = LOAD_FUNCTIONS.get(self.dtype)
        return f"{fn}({expr})" if fn else expr

    @property
    def ACC(self) -> str:
        return C_TYPES[self.acc_dtype]

    @property
    def D(self) -> int:
        return self.formula.dim

    @property
    def j_dims(self) -> int:
        """Values of j-variables per column j (what a j-tile stores)."""
        return sum(d for c, d in zip(self.var_cats, self.var_dims) if c == ir.J)

    @property
    def itemsize(self) -> int:
        """Bytes of one value of the compute type (what a j-tile holds)."""
        return 8 if self.T == "double" else 4

    @property
    def E(self) -> int:
        return self.weight.dim if self.weight is not None else 0

    def fields(self):
        return self.reduction.fields(self.D, self.K, self.E)

    def outputs(self):
        return self.reduction.outputs(self.D, self.K, self.E)

    def names(self, row: str | None = None) -> dict[str, str]:
        """``$``-placeholder values for the reduction's C snippets. With
        ``row``, the accumulator fields are rows ``<field>_rows[row]`` of
        per-row arrays (see :meth:`declare_acc`)."""
        names = {
            "D": str(self.D),
            "K": str(self.K),
            "E": str(self.E),
            "acc_t": self.ACC,
            "out_t": self.S,
        }
        for f in self.fields():
            names[f.name] = f"{f.name}_rows[{row}]" if row else f.name
            names[f.name + "_b"] = f.name + "_b"
        return names

    def declare_acc(self, indent: str = "", suffix: str = "", rows: int = 0) -> list[str]:
        """Declarations of the accumulator fields (``suffix="_b"``: the
        second accumulator of ``c_merge``; ``rows``: one per row,
        ``<field>_rows[rows][size]``)."""
        lines = []
        for f in self.fields():
            ctype = "int64_t" if f.kind == INDEX else self.ACC
            if rows:
                lines.append(f"{indent}{ctype} {f.name}_rows[{rows}][{f.size}];")
            else:
                lines.append(f"{indent}{ctype} {f.name}{suffix}[{f.size}];")
        return lines

    def out_decls(self, row: str) -> list[str]:
        """Typed output pointers at row ``row`` (an int64 C expression)."""
        lines = []
        for k, o in enumerate(self.outputs()):
            ctype = "int64_t" if o.kind == INDEX else self.S
            lines.append(f"{ctype}* out{k} = (({ctype}*)outs[{k}]) + ({row}) * {o.size};")
        return lines

    def snippet(self, which: str, row: str | None = None, **extra: str) -> str:
        red = self.reduction
        text = getattr(red, f"c_{which}")
        names = self.names(row)
        names.update(extra)
        return red.render(text, **names)


def _param_and_i_loads(
    spec: KernelSpec, T: str, arg: Callable[[int], str], row: str = "i", suffix: str = ""
) -> tuple[list[str], dict[int, list[str]]]:
    """Load parameters and i-variables into scalars, once per output row.
    ``arg(k)`` is the C expression of the k-th argument pointer; ``suffix``
    tells apart the loads of a second row in the same scope."""
    lines, exprs = [], {}
    for k, (cat, d) in enumerate(zip(spec.var_cats, spec.var_dims)):
        if cat == ir.P:
            base = f"{arg(k)} + boff[{k} * nbatch + b]"
        elif cat == ir.I:
            base = f"{arg(k)} + boff[{k} * nbatch + b] + {row} * {d}"
        else:
            continue
        names = [f"a{k}_{c}{suffix}" for c in range(d)]
        lines.append(f"const {spec.S}* p{k}{suffix} = {base};")
        lines += [
            f"const {T} {n} = {spec.load(f'p{k}{suffix}[{c}]')};" for c, n in enumerate(names)
        ]
        exprs[k] = names
    return lines, exprs


# ----------------------------------------------------------------------------
# CPU template: OpenMP over output rows, SIMD over j.
# ----------------------------------------------------------------------------

CPU_BLOCK_J = 512  # j per block: the formula of a block is evaluated in one SIMD loop
CPU_BLOCK_FLOATS = 4096  # cap on the per-thread block buffer (it lives on the stack)
# j per block of a factored sum (see :func:`factor_scalar`): its buffers hold one
# value per column and row, and longer blocks spread the horizontal reductions of
# the E accumulators over more columns (measured: 1024 and up are equally fast).
CPU_FACTORED_BLOCK_J = 1024
# Columns of v per product loop of a factored sum: two rows keep 2 x this many
# accumulators, which must stay in the 32 vector registers of AVX-512.
CPU_FACTORED_CHUNK = 12
# Rows of j-variables ((D, N) layout) start every CPU_J_ALIGN elements, so that
# with a 64-byte aligned base every vector load of a block is aligned (a load
# split over two cache lines made K @ b with 11 columns ~15% slower); the
# padding (zeros) is also what the whole-vector loops read past N.
CPU_J_ALIGN = 16
# The SIMD loops of a block run whole vectors of CPU_VECTOR_J columns (a
# multiple of every vector length: 16 floats in AVX-512), reading the padding
# columns of the last block and masking them out of sums: GCC's own epilogue
# for the leftover columns is scalar (one scalar exp per column and row),
# which made N = 100 twice as slow and cost ~10% at N = 1000. Blocks start at
# multiples of CPU_VECTOR_J, so the padding read never passes the row stride.
CPU_VECTOR_J = 16


def cpu_j_stride(n: int) -> int:
    """Elements between consecutive coordinates of a j-variable in the CPU
    layout: ``n`` rounded up to a multiple of :data:`CPU_J_ALIGN`. The kernel
    computes the same value (:func:`c_j_stride`).

    >>> cpu_j_stride(100), cpu_j_stride(112)
    (112, 112)
    """
    return -(-n // CPU_J_ALIGN) * CPU_J_ALIGN


def c_j_stride(n: str) -> str:
    """C expression of :func:`cpu_j_stride` of the int64 expression ``n``."""
    a = CPU_J_ALIGN
    return f"({n} + {a - 1}) / {a} * {a}"


def factor_scalar(formula: ir.Node) -> tuple[ir.Node, ir.Node] | None:
    """``(s, v)`` when ``formula`` is ``s * v`` with ``s`` scalar and ``v`` a
    vector (dim >= 2) that does not depend on i: the shape of ``K @ b``.

    A sum of such a formula is rendered in two SIMD loops per block: ``s`` for
    every column into a buffer, then ``sum_j s_j * v_j`` for the E columns.
    Fused in one loop, the E accumulators of two rows, the j loads and the
    registers of ``s`` (exp constants) do not fit the vector registers, and
    the loop spills; split, each loop runs at the speed of its arithmetic.

    Example
    -------
    >>> x, y, b = ir.var(0, ir.I, 3), ir.var(1, ir.J, 3), ir.var(2, ir.J, 11)
    >>> k = ir.make("exp", ir.make("neg", ir.make("sqdist", x, y)))
    >>> factor_scalar(ir.make("mul", k, b)) == (k, b)
    True
    """
    if formula.op != "mul" or formula.dim < 2:
        return None
    a, b = formula.args
    if a.dim == 1 and b.dim > 1:
        s, v = a, b
    elif b.dim == 1 and a.dim > 1:
        s, v = b, a
    else:
        return None
    if any(leaf.attrs[1] == ir.I for leaf in ir.variables(v)):
        return None
    return s, v


def cpu_block_j(spec: KernelSpec) -> int:
    """Columns per block: 512, fewer for wide formulas so that the block
    buffers (``D`` and ``E`` values per column) stay small on any thread stack;
    :data:`CPU_FACTORED_BLOCK_J` for a factored sum (one value per column)."""
    if spec.reduction.name == "sum" and factor_scalar(spec.formula) is not None:
        return CPU_FACTORED_BLOCK_J
    bj = min(CPU_BLOCK_J, CPU_BLOCK_FLOATS // max(spec.D, spec.E, 1))
    if bj >= CPU_VECTOR_J:  # whole vectors (see CPU_VECTOR_J)
        return bj // CPU_VECTOR_J * CPU_VECTOR_J
    return max(1, bj)


def cpu_tiling(spec: KernelSpec) -> tuple[int, int]:
    """(rows per group, j columns per tile) of the CPU kernel.

    A group of rows walks j tile by tile, so that a tile of j-variables
    (about 512 KB) stays in the L2 cache while every row of the group reads
    it; per-row accumulators of a group stay small on the stack.
    """
    entries = sum(f.size for f in spec.fields())
    rows = max(1, min(32, 4096 // max(1, entries)))
    bytes_per_col = max(1, spec.j_dims) * spec.itemsize
    bj = cpu_block_j(spec)
    tile = max(bj, (512 * 1024 // bytes_per_col) // bj * bj)
    return rows, tile


def cpu_full_vectors(spec: KernelSpec) -> bool:
    """Whether the SIMD loops of a block run whole vectors (see
    :data:`CPU_VECTOR_J`): blocks of a multiple of CPU_VECTOR_J columns, i.e.
    every formula of inner dimension up to 256."""
    return cpu_block_j(spec) % CPU_VECTOR_J == 0


def _simd_loop(
    pragma: str, body: Callable[[str | None], list[str]], full: bool, bj: int
) -> list[str]:
    """The SIMD loop over the columns of a block. With ``full`` it runs whole
    vectors (see :data:`CPU_VECTOR_J`): a block of ``bj`` columns as one loop
    of constant length, a shorter (last) block over ``nv`` columns, where
    ``body(mask)`` gets the name of an int32 mask, all ones on the columns
    ``j < j1`` and 0 on the padding columns (sums must add nothing there; see
    ``ks_keep``). The mask comes from a 32-bit lane counter: a 64-bit one costs
    GCC two index vectors and a permute per iteration. Without ``full`` the
    loop stops at ``j1``."""
    if not full:
        return [pragma, "for (int64_t j = j0; j < j1; j++) {", *_indent(2, body(None)), "}"]
    plain, masked = body(None), body("km")
    if plain == masked:  # nothing to mask: one loop for every block
        return [
            pragma,
            "for (int32_t jj = 0; jj < nv; jj++) {",
            "  const int64_t j = j0 + jj;",
            *_indent(2, plain),
            "}",
        ]
    return [
        f"if (nj == {bj}) {{",
        "  " + pragma,
        f"  for (int32_t jj = 0; jj < {bj}; jj++) {{",
        "    const int64_t j = j0 + jj;",
        *_indent(4, plain),
        "  }",
        "} else {",
        "  " + pragma,
        "  for (int32_t jj = 0; jj < nv; jj++) {",
        "    const int64_t j = j0 + jj;",
        "    const int32_t km = (jj - nj) >> 31;  // all ones on the columns < j1",
        *_indent(4, masked),
        "  }",
        "}",
    ]


def _indent(n: int, lines: list[str]) -> list[str]:
    return [" " * n + line for line in lines]


def render_cpu(spec: KernelSpec, entry: str = "ks_kernel") -> str:
    """C++ source of the CPU kernel.

    Entry point::

        int entry(int64_t nbatch, int64_t M, int64_t N, const T** args,
                  const int64_t* boff, void** outs, int nthreads)

    OpenMP threads take groups of output rows; a group walks j in tiles that
    stay in cache (:func:`cpu_tiling`), and each row of the group runs over
    the tile in blocks: the formula is evaluated for a whole block in one
    ``omp simd`` loop (vectorized, with the j-variables read contiguously
    from their (D, NS) layout), then the reduction folds the block (or
    reduces it with its ``c_block`` and merges). A plain sum folds inside the
    SIMD loop itself; a sum of ``s * v`` (``K @ b``, see :func:`factor_scalar`)
    runs one SIMD loop for ``s`` and one for the products with ``v``.
    """
    T, ACC = spec.T, spec.ACC
    D, E = spec.D, spec.E
    pre_lines, loaded = _param_and_i_loads(spec, T, lambda k: f"args[{k}]")

    jvars = [k for k, c in enumerate(spec.var_cats) if c == ir.J]
    j_loads = []
    for k in jvars:
        d = spec.var_dims[k]
        j_loads += [f"const {T} a{k}_{c} = q{k}[{c} * NS + j];" for c in range(d)]
        loaded[k] = [f"a{k}_{c}" for c in range(d)]
    j_bases = [f"const {T}* q{k} = args[{k}] + boff[{k} * nbatch + b];" for k in jvars]

    roots = [spec.formula] + ([spec.weight] if spec.weight is not None else [])
    stmts, results = render_formula(roots, T, CPU, lambda n: loaded[n.attrs[0]])
    fexpr = results[0]
    wexpr = results[1] if spec.weight is not None else []

    fast_sum = spec.reduction.name == "sum"
    factored = factor_scalar(spec.formula) if fast_sum else None
    body, dual_pre, dual_body = [], [], []

    def add(acc: str, e: str, mask: str | None) -> str:
        # masked lanes add +0, which leaves every sum unchanged (a sum that
        # starts at +0 is never -0 under round to nearest)
        if mask is None:
            return f"{acc} += ({ACC})({e});"
        return f"{acc} += ({ACC})ks_keep(({T})({e}), {mask});"

    full = cpu_full_vectors(spec)
    bj = cpu_block_j(spec)

    if factored is not None:
        # K @ b: s (the kernel value) of one or two rows for the whole block
        # into kbuf / kbuf2, then the E products with the j-only vector v,
        # each load of v shared by the two rows.
        scal, vec = factored
        acc = spec.names("rr")[spec.fields()[0].name]
        acc2 = spec.names("rr + 1")[spec.fields()[0].name]
        dual_pre, loaded2 = _param_and_i_loads(
            spec, T, lambda k: f"args[{k}]", row="(i + 1)", suffix="_2"
        )
        loaded2.update({k: loaded[k] for k in jvars})
        s_stmts, (s_expr,) = render_formula([scal], T, CPU, lambda n: loaded[n.attrs[0]])
        s2_stmts, (s2_expr,) = render_formula(
            [scal], T, CPU, lambda n: loaded2[n.attrs[0]], prefix="w"
        )
        v_stmts, (v_expr,) = render_formula([vec], T, CPU, lambda n: loaded[n.attrs[0]], "z")
        sums, sums2 = [f"s{k}" for k in range(D)], [f"u{k}" for k in range(D)]

        def two_loops(two: bool) -> list[str]:
            # j-loads the scalar or the vector do not use are dead code to GCC
            def scalar_body(mask):
                # padding columns store 0, so that the products below need no
                # mask when v is a j-variable (whose padding is 0 too)
                def kval(e):
                    return e if mask is None else f"ks_keep({e}, {mask})"

                out = j_loads + s_stmts + (s2_stmts if two else [])
                out.append(f"kbuf[j - j0] = {kval(s_expr[0])};")
                return out + ([f"kbuf2[j - j0] = {kval(s2_expr[0])};"] if two else [])

            out = _simd_loop("#pragma omp simd", scalar_body, full, bj)
            # the columns in chunks, so that the accumulators of a loop stay
            # in vector registers (v is recomputed per chunk: it is j-only)
            for c0 in range(0, D, CPU_FACTORED_CHUNK):
                cols = range(c0, min(D, c0 + CPU_FACTORED_CHUNK))
                acc_names = [sums[k] for k in cols] + ([sums2[k] for k in cols] if two else [])

                def product_body(mask, cols=cols):
                    if vec.op == "var" and vec.attrs[1] == ir.J:
                        mask = None  # 0 * 0 on the padding (a j-variable's is 0): adds 0
                    out = [f"const {T} k1 = kbuf[j - j0];"]
                    out += [f"const {T} k2 = kbuf2[j - j0];"] if two else []
                    out += j_loads + v_stmts
                    out += [add(sums[k], f"k1 * {v_expr[k]}", mask) for k in cols]
                    if two:
                        out += [add(sums2[k], f"k2 * {v_expr[k]}", mask) for k in cols]
                    return out

                out += [f"{ACC} {x} = 0;" for x in acc_names]
                pragma = f"#pragma omp simd reduction(+:{', '.join(acc_names)})"
                out += _simd_loop(pragma, product_body, full, bj)
                out += [f"{acc}[{k}] += ({ACC}){sums[k]};" for k in cols]
                if two:
                    out += [f"{acc2}[{k}] += ({ACC}){sums2[k]};" for k in cols]
            return out

        body, dual_body = two_loops(False), two_loops(True)
    elif fast_sum:
        acc = spec.names("rr")[spec.fields()[0].name]
        acc2 = spec.names("rr + 1")[spec.fields()[0].name]
        sums = [f"s{k}" for k in range(D)]
        body += [f"{ACC} {s} = 0;" for s in sums]
        body += _simd_loop(
            f"#pragma omp simd reduction(+:{', '.join(sums)})",
            lambda mask: j_loads + stmts + [add(s, e, mask) for s, e in zip(sums, fexpr)],
            full,
            bj,
        )
        body += [f"{acc}[{k}] += ({ACC}){s};" for k, s in enumerate(sums)]
        # Two rows of one batch entry share every load of the j-variables:
        # the formula is rendered a second time on the next row's i-loads.
        dual_pre, loaded2 = _param_and_i_loads(
            spec, T, lambda k: f"args[{k}]", row="(i + 1)", suffix="_2"
        )
        loaded2.update({k: loaded[k] for k in jvars})
        stmts2, (fexpr2,) = render_formula(
            [spec.formula], T, CPU, lambda n: loaded2[n.attrs[0]], prefix="w"
        )
        sums2 = [f"u{k}" for k in range(D)]
        dual_body += [f"{ACC} {s} = 0;" for s in sums + sums2]
        dual_body += _simd_loop(
            f"#pragma omp simd reduction(+:{', '.join(sums + sums2)})",
            lambda mask: (
                j_loads
                + stmts
                + stmts2
                + [add(s, e, mask) for s, e in zip(sums, fexpr)]
                + [add(s, e, mask) for s, e in zip(sums2, fexpr2)]
            ),
            full,
            bj,
        )
        dual_body += [f"{acc}[{k}] += ({ACC}){s};" for k, s in enumerate(sums)]
        dual_body += [f"{acc2}[{k}] += ({ACC}){s};" for k, s in enumerate(sums2)]
    else:
        body += _simd_loop(
            "#pragma omp simd",
            lambda mask: (
                j_loads
                + stmts
                # padding columns fill the buffer past j1 - j0, which the fold never reads
                + [f"buf[(j - j0) * {D} + {k}] = {e};" for k, e in enumerate(fexpr)]
                + [f"wbuf[(j - j0) * {E} + {k}] = {e};" for k, e in enumerate(wexpr)]
            ),
            full,
            bj,
        )
        if spec.reduction.c_block:
            block = spec.snippet("block", buf="buf", n="(j1 - j0)", exp=CPU.exp_name)
            body += block.splitlines()
            body += spec.snippet("merge", row="rr").splitlines()
        else:
            fold = spec.snippet("fold", row="rr", val="val", w="w", j="j")
            body.append("for (int64_t j = j0; j < j1; j++) {")
            body.append(f"  const {T}* val = buf + (j - j0) * {D};")
            if E:
                body.append(f"  const {T}* w = wbuf + (j - j0) * {E};")
            body += ["  " + line for line in fold.splitlines()]
            body.append("}")

    outs = {f"out{k}": f"out{k}" for k in range(2)}
    finalize = spec.snippet("finalize", row="rr", **outs)
    init = spec.snippet("init", row="rr")
    rows, tile = cpu_tiling(spec)
    # columns of a block (nj) and of its whole vectors (nv, see CPU_VECTOR_J)
    v = CPU_VECTOR_J
    counts = []
    if full:
        counts = [
            "const int32_t nj = (int32_t)(j1 - j0);",
            f"const int32_t nv = (nj + {v - 1}) / {v} * {v};",
        ]
    scratch = []
    if spec.reduction.c_block:
        scratch += spec.declare_acc(suffix="_b")
    if factored is not None:
        scratch.append(f"{T} kbuf[{bj}], kbuf2[{bj}];")
    if not fast_sum:
        scratch.append(f"{T} buf[{bj} * {D}];")
        if E:
            scratch.append(f"{T} wbuf[{bj} * {E}];")

    def ind(n: int, lines: list[str]) -> list[str]:
        return [" " * n + line for line in lines]

    dual = []
    if dual_body:  # rows i and i + 1 of one batch entry, then skip to i + 2
        dual = [
            "if (r + 1 < r1 && i + 1 < M) {",
            *ind(2, pre_lines + dual_pre + j_bases),
            f"  for (int64_t j0 = t0; j0 < t1; j0 += {bj}) {{",
            f"    const int64_t j1 = j0 + {bj} < t1 ? j0 + {bj} : t1;",
            *ind(4, counts),
            *ind(4, dual_body),
            "  }",
            "  r++;",
            "  continue;",
            "}",
        ]

    src = [
        "#include <stdint.h>",
        "#include <math.h>",
        "#include <string.h>",
        CPU_MATH,
        spec.reduction.c_preamble,
        f"{CPU.kernel_prefix} int {entry}(int64_t nbatch, int64_t M, int64_t N,",
        f"    const {T}** args, const int64_t* boff, void** outs, int nthreads) {{",
        "  const int64_t R = nbatch * M;",
        f"  const int64_t NS = {c_j_stride('N')};",
        f"  const int64_t ngroups = (R + {rows - 1}) / {rows};",
        "  #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)",
        "  for (int64_t g = 0; g < ngroups; g++) {",
        f"    const int64_t r0 = g * {rows}, r1 = r0 + {rows} < R ? r0 + {rows} : R;",
        *spec.declare_acc("    ", rows=rows),
        *ind(4, scratch),
        "    for (int64_t r = r0; r < r1; r++) {",
        "      const int64_t rr = r - r0;",
        *ind(6, init.splitlines()),
        "    }",
        f"    for (int64_t t0 = 0; t0 < N; t0 += {tile}) {{",
        f"      const int64_t t1 = t0 + {tile} < N ? t0 + {tile} : N;",
        "      for (int64_t r = r0; r < r1; r++) {",
        "        const int64_t rr = r - r0;",
        "        const int64_t b = r / M, i = r - b * M;",
        *ind(8, dual),
        *ind(8, pre_lines + j_bases),
        f"        for (int64_t j0 = t0; j0 < t1; j0 += {bj}) {{",
        f"          const int64_t j1 = j0 + {bj} < t1 ? j0 + {bj} : t1;",
        *ind(10, counts),
        *ind(10, body),
        "        }",
        "      }",
        "    }",
        "    for (int64_t r = r0; r < r1; r++) {",
        "      const int64_t rr = r - r0;",
        *ind(6, spec.out_decls("r")),
        *ind(6, finalize.splitlines()),
        "    }",
        "  }",
        "  return 0;",
        "}",
        "",
    ]
    return "\n".join(src)


# ----------------------------------------------------------------------------
# CUDA template: one thread per output row, j-tiles staged in shared memory,
# optional split of j over gridDim.y merged by a second kernel.
# ----------------------------------------------------------------------------

CUDA_PREAMBLE = r"""
#if defined(__CUDACC_RTC__)
typedef long long int64_t;
typedef int int32_t;
#define INFINITY __int_as_float(0x7f800000)
#define NAN __int_as_float(0x7fffffff)
#else
#include <stdint.h>
#include <math.h>
#endif
#ifndef KS_EMULATION
#define KS_DYNAMIC_SHARED(T, name) \
  extern __shared__ __align__(16) unsigned char ks_smem[]; T* name = (T*)ks_smem
#endif
"""

# float16 / bfloat16 arguments: CUDA's types and conversions (the emulation
# header defines host versions of the few that the kernels use).
CUDA_HALF_INCLUDES = r"""
#ifndef KS_EMULATION
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#endif
"""


def cuda_param_list(spec: KernelSpec) -> list[tuple[str, str]]:
    """(C type, name) of every parameter of ``ks_main``, in order; the
    launcher (CuPy or the emulation harness) passes them in this order."""
    ACC = spec.ACC
    params = [("int64_t", "nbatch"), ("int64_t", "M"), ("int64_t", "N")]
    params += [(f"const {spec.S}*", f"arg{k}") for k in range(len(spec.var_cats))]
    params += [("const int64_t*", "boff")]
    params += [("void*", f"outp{k}") for k in range(len(spec.outputs()))]
    params += [(f"{ACC}*", "part_v"), ("int64_t*", "part_i")]
    params += [("int64_t", "chunk"), ("int64_t", "blocks_per_batch")]
    return params


def cuda_merge_param_list(spec: KernelSpec) -> list[tuple[str, str]]:
    params = [("int64_t", "rows")]
    params += [("void*", f"outp{k}") for k in range(len(spec.outputs()))]
    params += [(f"const {spec.ACC}*", "part_v"), ("const int64_t*", "part_i")]
    params += [("int64_t", "nsplit")]
    return params


def _field_slots(spec: KernelSpec):
    """Offsets of the value fields and index fields in the split buffers."""
    val_off, idx_off, slots = 0, 0, []
    for f in spec.fields():
        if f.kind == INDEX:
            slots.append((f, "part_i", idx_off))
            idx_off += f.size
        else:
            slots.append((f, "part_v", val_off))
            val_off += f.size
    return slots, val_off, idx_off


def cuda_shared_bytes(spec: KernelSpec, block: int) -> int:
    """Dynamic shared memory of ``ks_main`` for a block of ``block`` threads."""
    return block * max(spec.j_dims, 1) * spec.itemsize


def split_sizes(spec: KernelSpec) -> tuple[int, int]:
    """Entries per row of the split-j buffers (values, indices)."""
    _, nv, ni = _field_slots(spec)
    return nv, ni


def render_cuda(spec: KernelSpec) -> str:
    """CUDA source with two kernels, ``ks_main`` and ``ks_merge``.

    ``ks_main`` runs one thread per output row (b, i); blocks never span two
    batch entries (``blocks_per_batch`` blocks per entry along gridDim.x).
    Each block walks the j range of its split (``gridDim.y`` splits of
    ``chunk`` columns) in tiles of ``blockDim.x`` columns: every thread
    stages one column's j-variables into shared memory (float16 / bfloat16
    converted to float on the way: they are computed and accumulated in
    float, and the value outputs are written back in the input's dtype,
    rounded to nearest even), a barrier, then
    every thread folds the tile, a barrier. With one split the row is
    finalized in place; with several, each split stores its accumulator in
    ``part_v``/``part_i`` and ``ks_merge`` merges them in order.
    """
    T, D, E = spec.T, spec.D, spec.E
    pre_lines, loaded = _param_and_i_loads(spec, T, lambda k: f"arg{k}", row="ii")
    jvars = [k for k, c in enumerate(spec.var_cats) if c == ir.J]
    offs, dj = {}, 0
    for k in jvars:
        offs[k] = dj
        dj += spec.var_dims[k]
    stage, j_loads = [], []
    for k in jvars:
        d = spec.var_dims[k]
        src = f"arg{k} + boff[{k} * nbatch + b] + jl * {d}"
        stage.append(f"const {spec.S}* q{k} = {src};")
        stage += [
            f"ysh[threadIdx.x * {dj} + {offs[k] + c}] = {spec.load(f'q{k}[{c}]')};"
            for c in range(d)
        ]
        j_loads += [f"const {T} a{k}_{c} = ysh[jj * {dj} + {offs[k] + c}];" for c in range(d)]
        loaded[k] = [f"a{k}_{c}" for c in range(d)]
    roots = [spec.formula] + ([spec.weight] if spec.weight is not None else [])
    stmts, results = render_formula(roots, T, CUDA, lambda n: loaded[n.attrs[0]])
    fold = spec.snippet("fold", val="val", w="w", j="j")
    val_decl = [f"const {T} val[{D}] = {{{', '.join(results[0])}}};"]
    if E:
        val_decl.append(f"const {T} w[{E}] = {{{', '.join(results[1])}}};")

    slots, nv, ni = _field_slots(spec)
    store, load_a, load_b = [], [], []
    for f, buf, off in slots:
        n = nv if buf == "part_v" else ni
        store.append(
            f"for (int t = 0; t < {f.size}; t++) "
            f"{buf}[(r * gridDim.y + blockIdx.y) * {n} + {off} + t] = {f.name}[t];"
        )
        load_a.append(
            f"for (int t = 0; t < {f.size}; t++) "
            f"{f.name}[t] = {buf}[r * nsplit * {n} + {off} + t];"
        )
        load_b.append(
            f"for (int t = 0; t < {f.size}; t++) "
            f"{f.name}_b[t] = {buf}[(r * nsplit + ks_s) * {n} + {off} + t];"
        )
    outs = {f"out{k}": f"out{k}" for k in range(2)}
    finalize = spec.snippet("finalize", **outs)
    out_decls = [s.replace("outs[", "outp").replace("]) +", ") +") for s in spec.out_decls("r")]
    decl_b = spec.declare_acc(suffix="_b")

    params = ", ".join(f"{t} {n}" for t, n in cuda_param_list(spec))
    mparams = ", ".join(f"{t} {n}" for t, n in cuda_merge_param_list(spec))
    ind = "        "
    src = [
        CUDA_PREAMBLE,
        CUDA_HALF_INCLUDES if spec.dtype in HALF_DTYPES else "",
        spec.reduction.c_preamble,
        f"{CUDA.kernel_prefix} void ks_main({params}) {{",
        f"  KS_DYNAMIC_SHARED({T}, ysh);",
        "  const int64_t b = blockIdx.x / blocks_per_batch;",
        "  const int64_t i = (blockIdx.x % blocks_per_batch) * (int64_t)blockDim.x + threadIdx.x;",
        "  const bool active = i < M;",
        "  const int64_t ii = active ? i : 0;  // inactive threads still stage tiles",
        "  const int64_t js = (int64_t)blockIdx.y * chunk;",
        "  const int64_t je = js + chunk < N ? js + chunk : N;",
        *["  " + s for s in pre_lines],
        *spec.declare_acc("  "),
        *["  " + line for line in spec.snippet("init").splitlines()],
        "  for (int64_t jt = js; jt < je; jt += blockDim.x) {",
        "    const int64_t jl = jt + threadIdx.x;",
        "    if (jl < je) {",
        *["      " + s for s in stage],
        "    }",
        f"    {CUDA.barrier}",
        "    if (active) {",
        "      const int64_t jn = je - jt < (int64_t)blockDim.x ? je - jt : (int64_t)blockDim.x;",
        "      for (int64_t jj = 0; jj < jn; jj++) {",
        "        const int64_t j = jt + jj;",
        *[ind + s for s in j_loads + stmts + val_decl],
        *[ind + line for line in fold.splitlines()],
        "      }",
        "    }",
        f"    {CUDA.barrier}",
        "  }",
        "  if (!active) return;",
        "  const int64_t r = b * M + i;",
        "  if (gridDim.y == 1) {",
        *["    " + s for s in out_decls],
        *["    " + line for line in finalize.splitlines()],
        "  } else {",
        *["    " + s for s in store],
        "  }",
        "}",
        "",
        f"{CUDA.kernel_prefix} void ks_merge({mparams}) {{",
        "  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;",
        "  if (r >= rows) return;",
        *spec.declare_acc("  "),
        *["  " + s for s in decl_b],
        *["  " + s for s in load_a],
        "  for (int64_t ks_s = 1; ks_s < nsplit; ks_s++) {",
        *["    " + s for s in load_b],
        *["    " + line for line in spec.snippet("merge").splitlines()],
        "  }",
        *["  " + s for s in out_decls],
        *["  " + line for line in finalize.splitlines()],
        "}",
        "",
    ]
    return "\n".join(src)
