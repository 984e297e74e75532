"""Formula -> straight-line C statements for one (i, j) pair.

Every node of the hash-consed DAG becomes one scalar per inner coordinate
(``v7_0, v7_1, ...``), computed once (CSE), with the inner dimensions
unrolled. Each op's text comes from its declaration's ``c`` rule
(:mod:`..ops`); the CPU template (:mod:`.cpu`) and the CUDA template
(:mod:`.cuda`) wrap the very same statements, and only the :mod:`.dialect`
(the names of ``exp`` and ``log``) differs between them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .. import ir
from .dialect import Dialect
from .spec import KernelSpec


def c_literal(value, T: str) -> str:
    """Exact C literal of ``value`` in type ``T``.

    >>> c_literal(0.1, "double"), c_literal(3, "float")
    ('((double)0x1.999999999999ap-4)', '((float)3)')
    """
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        if abs(value) < 2**53:
            return f"(({T}){int(value)})"
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        if math.isnan(value):
            return f"(({T})NAN)"
        return f"(({T}){'-' if value < 0 else ''}INFINITY)"
    return f"(({T}){float(value).hex()})"


class Emitter:
    """Collects the statements of one formula DAG. The ops' ``c`` rules see
    it as ``e`` (see :class:`..ops.base.Op`)."""

    def __init__(
        self, T: str, dialect: Dialect, leaf: Callable[[ir.Node], list[str]], prefix: str = "v"
    ):
        self.T = T
        self.exp = dialect.exp
        self.log = dialect.log or self.fn("log")
        self.leaf = leaf
        self.prefix = prefix
        self.lines: list[str] = []
        self.values: dict[int, list[str]] = {}
        self.count = 0

    def fn(self, name: str) -> str:
        """libm name for the compute type: sin -> sinf for float."""
        return name + ("f" if self.T == "float" else "")

    def lit(self, value) -> str:
        """Exact literal of ``value`` in the compute type."""
        return c_literal(value, self.T)

    def sum(self, terms: Sequence[str]) -> str:
        """The expression of the sum of ``terms`` (0 when empty)."""
        return "(" + " + ".join(terms) + ")" if terms else f"(({self.T})0)"

    def define(self, exprs: Sequence[str]) -> list[str]:
        """One statement per expression (one local name, one per coordinate);
        returns the names."""
        name = f"{self.prefix}{self.count}"
        self.count += 1
        out = []
        for k, e in enumerate(exprs):
            self.lines.append(f"const {self.T} {name}_{k} = {e};")
            out.append(f"{name}_{k}")
        return out

    def emit(self, node: ir.Node) -> list[str]:
        """The coordinates of ``node``, emitting what is not emitted yet."""
        for n in ir.topological_order(node):
            if id(n) not in self.values:
                self.values[id(n)] = self._node(n)
        return self.values[id(node)]

    def _node(self, n: ir.Node) -> list[str]:
        if n.op == "var":
            return self.leaf(n)
        if n.op == "const":
            value, dim = n.attrs
            return [c_literal(value, self.T)] * dim
        op = ir.OPS[n.op]
        args = [self.values[id(a)] for a in n.args]
        if not op.elementwise:
            return op.c(self, n, *args)
        # dim-1 arguments broadcast
        cols = [[a[0] if len(a) == 1 else a[k] for a in args] for k in range(n.dim)]
        exprs = [op.c(self, *col, *n.attrs) for col in cols]
        if not isinstance(exprs[0], tuple):
            return self.define(exprs)
        # a nested select in two statements: GCC 12 with AVX-512 miscompiles
        # some nested ?: inside `omp simd` loops (clamp(clamp(x, y, y + 1), x, x + 1))
        inner = self.define([first for first, _ in exprs])
        return self.define([outer(t) for t, (_, outer) in zip(inner, exprs)])


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
    em = Emitter(T, dialect, leaf, prefix)
    results = [em.emit(r) for r in roots]
    return em.lines, results


def param_and_i_loads(
    spec: KernelSpec, arg: Callable[[int], str], row: str = "i", suffix: str = ""
) -> tuple[list[str], dict[int, list[str]]]:
    """Load parameters and i-variables into scalars, once per output row.
    ``arg(k)`` is the C expression of the k-th argument pointer; ``suffix``
    tells apart the loads of a second row in the same scope. Returns the
    statements and, per argument index, the names of its coordinates."""
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
            f"const {spec.T} {n} = {spec.load(f'p{k}{suffix}[{c}]')};" for c, n in enumerate(names)
        ]
        exprs[k] = names
    return lines, exprs
