"""Building blocks of the ops' VJP rules (``vjp(node, g, *args)``).

The rules are written with IR ops only (:func:`..ir.make`), so a gradient is
a formula like any other: compiled by every target, differentiable again.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import ir


def chain(deriv: Callable[[ir.Node, ir.Node], ir.Node]) -> Callable:
    """The VJP of an elementwise unary op whose derivative is
    ``deriv(node, x)`` (``node`` is the op's own value, often reused)."""

    def rule(node, g, x):
        return (ir.make("mul", g, deriv(node, x)),)

    return rule


def place(g: ir.Node, start: int, total: int) -> ir.Node:
    """The ``total``-vector equal to ``g`` at ``[start, start + g.dim)``, 0 elsewhere."""
    out = g
    if start > 0:
        out = ir.make("concat", ir.const(0, start), out)
    rest = total - start - g.dim
    if rest > 0:
        out = ir.make("concat", out, ir.const(0, rest))
    return out


def masked(g: ir.Node, *masks: ir.Node) -> ir.Node:
    """``g`` times each 0/1 mask."""
    out = g
    for m in masks:
        out = ir.make("mul", out, m)
    return out
