"""The functions of pykeops' formula language, by name: the one table.

Each entry of :data:`BUILDERS` says which arguments a name takes and builds
the IR node from them. Argument kinds, one letter each:

* ``f``: a formula (a number there is the constant of dimension 1),
* ``i``: a literal integer (``Elem(x, 2)``, ``Pow(x, -3)``),
* ``l``: a literal list of integers (``[2, 3]``).

Adding a function is one line here; the ops other modules declare
(:mod:`kernelsolve.engine.ops.tensor`, :mod:`kernelsolve.engine.ops.complex`)
come in the same way.

>>> BUILDERS["Exp"].kinds, BUILDERS["Elem"].kinds
('f', 'fi')
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from ...engine import ir
from ...engine.ops import complex as complex_ops
from ...engine.ops import tensor as tensor_ops
from ...engine.ops.derivatives import place
from . import autodiff

__all__ = ["BUILDERS", "Builder"]


@dataclass(frozen=True)
class Builder:
    """How to build one function of the formula language.

    ``build`` takes the arguments in order (IR nodes for ``f``, ints for
    ``i``, tuples of ints for ``l``); the last ``optional`` arguments may be
    left out (``build`` gets fewer); with ``variadic`` the last kind repeats.
    """

    build: Callable
    kinds: str
    optional: int = 0
    variadic: bool = False
    doc: str = ""


def _make(op: str) -> Callable:
    return lambda *args: ir.make(op, *args)


def _unary(op: str) -> Builder:
    return Builder(_make(op), "f")


def _binary(op: str) -> Builder:
    return Builder(_make(op), "ff")


def _attr(op: str, kinds: str) -> Builder:
    """An op whose first argument is a formula and the rest its integer attributes."""
    return Builder(lambda x, *attrs: ir.make(op, x, attrs=attrs), kinds)


def _var(cat: int) -> Builder:
    return Builder(lambda pos, dim: _variable(pos, dim, cat), "ii")


def _variable(pos: int, dim: int, cat: int) -> ir.Node:
    if pos < 0:
        raise ValueError(f"a variable's position must be >= 0, got {pos}")
    if cat not in (ir.I, ir.J, ir.P):
        raise ValueError(f"a variable's category must be 0 (i), 1 (j) or 2 (parameter), got {cat}")
    return ir.var(pos, cat, dim)


def _rational(p: int, q: int) -> ir.Node:
    if q == 0:
        raise ValueError("RatCst(p, q): q must not be 0")
    r = Fraction(p, q)
    return ir.const(r.numerator if r.denominator == 1 else r.numerator / r.denominator)


def _zero(dim: int) -> ir.Node:
    if dim < 1:
        raise ValueError(f"Zero(dim): dim must be >= 1, got {dim}")
    return ir.const(0, dim)


def _weighted(check: str | None):
    """``WeightedSqNorm(S, X)`` and its specialised forms, which pykeops picks
    from the dimension of S: 1 (isotropic), X.dim (diagonal), X.dim**2 (full)."""

    def build(s: ir.Node, x: ir.Node) -> ir.Node:
        need = {"iso": 1, "diag": x.dim, "sym": x.dim * x.dim}.get(check)
        if need is not None and s.dim != need:
            raise ValueError(f"the weight has dimension {s.dim}; expected {need}")
        return ir.make("weightedsqnorm", s, x)

    return build


def _elem_t(x: ir.Node, n: int, m: int) -> ir.Node:
    if x.dim != 1 or not 0 <= m < n:
        raise ValueError(f"ElemT(x, n, m) needs a scalar x and 0 <= m < n, got m={m}, n={n}")
    return place(x, m, n)


def _extract_t(x: ir.Node, start: int, dim: int) -> ir.Node:
    if start < 0 or start + x.dim > dim:
        raise ValueError(f"ExtractT: x of dimension {x.dim} at {start} does not fit in {dim}")
    return place(x, start, dim)


def _sum_t(x: ir.Node, dim: int) -> ir.Node:
    if x.dim != 1:
        raise ValueError(f"SumT(x, dim) needs a scalar x, got dimension {x.dim}")
    return ir.make("mul", x, ir.const(1, dim))


def _round(x: ir.Node, d: int = 0) -> ir.Node:
    return ir.make("round", x, attrs=(d,))


def _mod(x: ir.Node, n: ir.Node, d: ir.Node | None = None) -> ir.Node:
    return ir.make("mod", x, n, ir.const(0) if d is None else d)


def _arity(build: Callable) -> int:
    """How many formulas a complex builder takes (1 or 2)."""
    return len(inspect.signature(build).parameters)


BUILDERS: dict[str, Builder] = {
    # variables and constants
    "Var": Builder(_variable, "iii"),
    "Vi": _var(ir.I),
    "Vj": _var(ir.J),
    "Pm": _var(ir.P),
    "IntCst": Builder(ir.const, "i"),
    "RatCst": Builder(_rational, "ii"),
    "IntInv": Builder(lambda n: _rational(1, n), "i"),
    "Zero": Builder(_zero, "i"),
    # arithmetic in function form
    "Add": _binary("add"),
    "Subtract": _binary("sub"),
    "Mult": _binary("mul"),
    "Divide": _binary("div"),
    "Minus": _unary("neg"),
    "Scalprod": _binary("scalprod"),
    # elementwise functions
    **{
        name: _unary(op)
        for name, op in (
            ("Exp", "exp"),
            ("Log", "log"),
            ("Sin", "sin"),
            ("Cos", "cos"),
            ("Tan", "tan"),
            ("Asin", "asin"),
            ("Acos", "acos"),
            ("Atan", "atan"),
            ("Sinh", "sinh"),
            ("Cosh", "cosh"),
            ("Tanh", "tanh"),
            ("Sqrt", "sqrt"),
            ("Rsqrt", "rsqrt"),
            ("Square", "square"),
            ("Inv", "inv"),
            ("Abs", "abs"),
            ("Sign", "sign"),
            ("Step", "step"),
            ("ReLU", "relu"),
            ("ReLu", "relu"),
            ("Floor", "floor"),
            ("XLogX", "xlogx"),
            ("SinXDivX", "sinxdivx"),
        )
    },
    "Sinc": Builder(lambda x: ir.make("sinxdivx", ir.make("mul", ir.const(math.pi), x)), "f"),
    "Pow": _attr("pow", "fi"),
    "Powf": _binary("powf"),
    "Atan2": _binary("atan2"),
    "Round": Builder(_round, "fi", optional=1),
    "Clamp": Builder(_make("clamp"), "fff"),
    "ClampInt": _attr("clampint", "fii"),
    "IfElse": Builder(_make("ifelse"), "fff"),
    "Mod": Builder(_mod, "fff", optional=1),
    # comparisons (0/1 valued)
    "Equal": _binary("eq"),
    "NotEqual": _binary("ne"),
    "LessThan": _binary("lt"),
    "LessOrEqual": _binary("le"),
    "GreaterThan": _binary("gt"),
    "GreaterOrEqual": _binary("ge"),
    # vectors
    "Sum": _unary("sum"),
    "SumT": Builder(_sum_t, "fi"),
    "Min": _unary("min"),
    "Max": _unary("max"),
    "ArgMin": _unary("argmin"),
    "ArgMax": _unary("argmax"),
    "SqNorm2": _unary("sqnorm2"),
    "Norm2": _unary("norm2"),
    "Normalize": _unary("normalize"),
    "SqDist": _binary("sqdist"),
    "WeightedSqNorm": Builder(_weighted(None), "ff"),
    "SqNormIso": Builder(_weighted("iso"), "ff"),
    "SqNormDiag": Builder(_weighted("diag"), "ff"),
    "SymSqNorm": Builder(_weighted("sym"), "ff"),
    "WeightedSqDist": Builder(lambda s, x, y: _weighted(None)(s, ir.make("sub", x, y)), "fff"),
    "Elem": _attr("elem", "fi"),
    "ElemT": Builder(_elem_t, "fii"),
    "Extract": _attr("extract", "fii"),
    "ExtractT": Builder(_extract_t, "fii"),
    "Concat": Builder(autodiff.concat, "ff", variadic=True),
    "OneHot": _attr("onehot", "fi"),
    "MatVecMult": _binary("matvecmult"),
    "VecMatMult": _binary("vecmatmult"),
    "TensorProd": _binary("tensorprod"),
    # symbolic derivatives
    "Grad": Builder(autodiff.grad, "fff", optional=1),
    "GradFromPos": Builder(autodiff.grad_from_pos, "fif"),
    "Diff": Builder(autodiff.diff, "fff"),
    "Divergence": Builder(autodiff.divergence, "ff"),
    "Laplacian": Builder(autodiff.laplacian, "ff"),
    "GradMatrix": Builder(autodiff.grad_matrix, "ff"),
    # tensors of the inner dimension (row-major shapes given as integer lists)
    "TensorDot": Builder(tensor_ops.tensordot, "fflllll", optional=1),
    "Kron": Builder(tensor_ops.kron, "ffll"),
    # complex numbers (interleaved real and imaginary parts): engine/ops/complex.py
    **{
        name: Builder(build, "fi" if name == "ComplexSumT" else "f" * _arity(build))
        for name, build in complex_ops.PYKEOPS.items()
    },
}
