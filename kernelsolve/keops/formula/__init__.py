"""pykeops' formula strings, parsed into the IR (never evaluated as Python).

* :mod:`.lexer`: tokens and :class:`FormulaError` (the caret under the token);
* :mod:`.aliases`: ``"x = Vi(3)"`` declarations;
* :mod:`.builders`: the functions of the language by name (the one table);
* :mod:`.parser`: the recursive-descent parser;
* :mod:`.autodiff`: ``Grad``, ``Diff``, ``Divergence``... on :mod:`~kernelsolve.engine.grad`.

>>> f, sig = parse_formulas(("Exp(-SqDist(x, y)) * b",), ("x = Vi(3)", "y = Vj(3)", "b = Vj(1)"))
>>> f[0].key, sig.cats
('mul(exp(neg(sqdist(Var(0,3,i),Var(1,3,j)))),Var(2,1,j))', (0, 1, 1))
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

from ...engine import ir
from .aliases import claim_position, declare
from .builders import BUILDERS, Builder
from .lexer import FormulaError
from .parser import parse_expression

__all__ = ["BUILDERS", "Builder", "FormulaError", "Signature", "parse", "parse_formulas"]


class Signature(NamedTuple):
    """What the arguments of a parsed formula are, by position."""

    #: category of each argument (``ir.I``, ``ir.J``, ``ir.P``)
    cats: tuple[int, ...]
    #: inner dimension of each argument
    dims: tuple[int, ...]

    @property
    def nargs(self) -> int:
        return len(self.cats)


def parse(formula: str, aliases: Sequence[str] = ()) -> ir.Node:
    """The IR node of ``formula`` with the alias declarations ``aliases``.

    >>> parse("Pow((X|Y), 2)", ["X = Vi(3)", "Y = Vj(3)"]).key
    'pow(scalprod(Var(0,3,i),Var(1,3,j)),2)'
    """
    return parse_formulas((formula,), aliases)[0][0]


def parse_formulas(
    formulas: Sequence[str | None], aliases: Sequence[str] = ()
) -> tuple[tuple[ir.Node | None, ...], Signature]:
    """The IR nodes of several formulas sharing ``aliases`` (None stays None),
    and the :class:`Signature` of their arguments: every position from 0 to the
    last one declared or used must be declared (by an alias or a ``Var``) with
    one category and dimension."""
    if isinstance(aliases, str):
        aliases = (aliases,)
    return _parse_cached(tuple(formulas), tuple(aliases))


@functools.lru_cache(maxsize=256)
def _parse_cached(formulas: tuple, aliases: tuple):
    names, positions = declare(aliases)
    parsed = [(None, ()) if f is None else parse_expression(f, names) for f in formulas]
    nodes = tuple(node for node, _ in parsed)
    found = dict(positions)
    for text, (node, written) in zip(formulas, parsed):
        used = ir.variables(node) if node is not None else ()
        for v in (*written, *used):
            claim_position(found, v, text, "argument {pos} is used as {new} but declared as {old}")
    n = 1 + max(found, default=-1)
    missing = [k for k in range(n) if k not in found]
    if missing:
        text = "; ".join(f for f in formulas if f)
        raise FormulaError(
            f"argument position(s) {missing} are neither declared nor used", text, 0, len(text)
        )
    return nodes, Signature(
        tuple(found[k].attrs[1] for k in range(n)), tuple(found[k].attrs[2] for k in range(n))
    )
