"""``KernelSolve``: pykeops' linear solve ``(alpha I + K) a = b`` of a
formula string, on the library's one solver (:func:`kernelsolve.linalg.solve.solve`).

The formula must be a scalar kernel times the unknown, ``K(x, y) * b`` (or
``b * K(x, y)``, ``2 * K * b / s``, ``K1 * b + K2 * b``...), with the kernel
built from the same points on both sides (``Kinv(x, x, b, ...)``); the solve
is then differentiable in torch with respect to ``b``, ``alpha``, the points
and the parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..engine import ir
from ..linalg.operator import KernelOperator
from ..linalg.solve import solve
from .formula import parse_formulas
from .formula.aliases import declare, parse_alias
from .formula.lexer import FormulaError

__all__ = ["KernelSolve"]


def _unknown(varinvalias: str, aliases: Sequence[str], formula: str) -> ir.Node:
    """The variable named ``varinvalias`` (an alias name or ``Var(pos, dim, cat)``)."""
    if varinvalias.replace(" ", "").startswith("Var("):
        return parse_alias(varinvalias, 0)[1]
    names, _ = declare(aliases)
    if varinvalias not in names:
        raise ValueError(
            f"KernelSolve: varinvalias={varinvalias!r} is not an alias of {sorted(names)}"
        )
    return names[varinvalias]


def _factor(node: ir.Node, b: ir.Node) -> ir.Node | None:
    """The scalar ``K`` with ``node == K * b`` read off products, quotients,
    negations and sums of such terms; None when ``node`` is not of that form."""
    if node is b:
        return ir.const(1)
    if b not in ir.variables(node):
        return None
    op, args = node.op, node.args
    if op == "neg":
        k = _factor(args[0], b)
        return None if k is None else ir.make("neg", k)
    if op in ("mul", "div"):
        left, right = args
        free = right if b not in ir.variables(right) else left if op == "mul" else None
        if free is None or free.dim != 1 or (op == "mul" and b in ir.variables(free)):
            return None
        k = _factor(left if free is right else right, b)
        return None if k is None else ir.make(op, k, free)
    if op in ("add", "sub"):
        parts = [_factor(a, b) for a in args]
        return None if None in parts else ir.make(op, *parts)
    return None


def _kernel_of(node: ir.Node, b: ir.Node, formula: str) -> ir.Node:
    """The scalar kernel ``K`` of a formula that is ``K * b`` up to the
    arrangement of its factors (``b * K``, ``2 * K * b / s``, ``K1 * b + K2 * b``)."""
    k = _factor(node, b)
    if k is None:
        raise FormulaError(
            f"KernelSolve needs a formula 'K(x, y) * {b.key}' with a scalar K free of the "
            "unknown; other linear formulas are not supported",
            formula,
            0,
            len(formula),
        )
    return k


class KernelSolve:
    """Solve ``(alpha I + K) a = b`` for the kernel of a formula string
    (pykeops' ``KernelSolve``).

    Parameters
    ----------
    formula : str
        ``"K(x, y) * b"``: a scalar kernel times the unknown ``b``.
    aliases : list of str
        As in :class:`~kernelsolve.keops.genred.Genred`.
    varinvalias : str
        The alias of the unknown (a ``Vj`` variable for ``axis=1``, ``Vi``
        for ``axis=0``).
    axis : {0, 1}
        The axis the formula is reduced over (as in Genred).
    dtype_acc, use_double_acc, sum_scheme, enable_chunks, rec_multVar_highdim,
    dtype, cuda_type, use_fast_math
        Accepted for pykeops code; the solver reads the arrays' dtype.

    Example
    -------
    >>> import numpy as np
    >>> Kinv = KernelSolve("Exp(-g * SqDist(x, y)) * b",
    ...                    ["x = Vi(2)", "y = Vj(2)", "b = Vj(1)", "g = Pm(1)"], "b", axis=1)
    >>> x, b = np.random.rand(50, 2), np.random.rand(50, 1)
    >>> Kinv(x, x, b, np.array([10.0]), alpha=0.1).shape
    (50, 1)
    """

    def __init__(
        self,
        formula: str,
        aliases: Sequence[str],
        varinvalias: str,
        axis: int = 0,
        dtype_acc: str = "auto",
        use_double_acc: bool = False,
        sum_scheme: str = "auto",
        enable_chunks: bool = True,
        rec_multVar_highdim=None,
        dtype: str | None = None,
        cuda_type: str | None = None,
        use_fast_math: bool = True,
    ):
        if axis not in (0, 1):
            raise ValueError(f"KernelSolve: axis must be 0 or 1, got {axis!r}")
        self.formula, self.aliases, self.axis = formula, tuple(aliases), axis
        self.varinvalias = varinvalias
        (node,), self.signature = parse_formulas((formula,), self.aliases)
        b = _unknown(varinvalias, self.aliases, formula)
        if b.attrs[1] != (ir.J if axis == 1 else ir.I):
            raise ValueError(
                f"KernelSolve: with axis={axis} the unknown must be a "
                f"{'Vj' if axis == 1 else 'Vi'} variable, got {b.key}"
            )
        self.varinvpos = b.attrs[0]
        kernel = _kernel_of(node, b, formula)
        if axis == 0:  # the solver reduces over j
            kernel = ir.swap_ij(kernel)
        # the kernel's variables without the unknown, renumbered
        keep = [k for k in range(self.signature.nargs) if k != self.varinvpos]
        mapping = [0] * self.signature.nargs
        for new, old in enumerate(keep):
            mapping[old] = new
        self.kernel = ir.remap(kernel, tuple(mapping))
        cats = [self.signature.cats[k] for k in keep]
        self.cats = tuple(ir.swap_cats(cats)) if axis == 0 else tuple(cats)
        self.keep = tuple(keep)

    def __call__(
        self,
        *args,
        backend: str = "auto",
        device_id: int = -1,
        alpha: float = 1e-10,
        eps: float = 1e-6,
        ranges=None,
    ):
        """The solution ``a`` (shaped like ``b``) of ``(alpha I + K) a = b``.

        ``eps`` is pykeops' stopping rule: the residual's root mean square
        below ``eps`` (each column's norm at most ``eps * sqrt(n)``).
        ``alpha`` may be a number or a one-element array.
        """
        if len(args) != self.signature.nargs:
            raise ValueError(
                f"KernelSolve: expected {self.signature.nargs} arrays, got {len(args)}"
            )
        if ranges is not None:
            raise NotImplementedError("KernelSolve: ranges= (block-sparse) is not supported")
        b = args[self.varinvpos]
        op = KernelOperator(self.kernel, [args[k] for k in self.keep], self.cats, backend=backend)
        n = b.shape[-2] if b.ndim >= 2 else b.shape[0]
        return solve(op, b, alpha, rtol=0.0, atol=eps * math.sqrt(n))

    def __repr__(self) -> str:
        return f"KernelSolve({self.formula!r}, {list(self.aliases)!r}, {self.varinvalias!r})"
