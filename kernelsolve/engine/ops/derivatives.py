"""Building blocks of the ops' VJP rules (``vjp(node, g, *args)``) and JVP
rules (``jvp(node, tangents, *args)``).

The rules are written with IR ops only (:func:`..ir.make`), so a gradient or
a tangent is a formula like any other: compiled by every target,
differentiable again.
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


def self_adjoint(vjp: Callable) -> Callable:
    """The JVP of a one-argument op whose Jacobian is symmetric (a unary
    elementwise op: diagonal; ``normalize``): its VJP rule applied to the
    tangent, since ``J t = J^T t``."""

    def rule(node, tangents, x):
        (t,) = tangents
        return None if t is None else vjp(node, t, x)[0]

    return rule


def linear(tangents, *partials: Callable[[], ir.Node] | None) -> ir.Node | None:
    """``sum_k tangents[k] * partials[k]()`` over the arguments whose tangent is
    not None (None if there is none): the JVP of an elementwise op whose
    partial derivatives are ``partials`` (None for a zero partial). Each
    partial is built only when its tangent is there."""
    total = None
    for t, p in zip(tangents, partials):
        if t is None or p is None:
            continue
        term = ir.make("mul", t, p())
        total = term if total is None else ir.make("add", total, term)
    return total


def added(*terms: ir.Node | None) -> ir.Node | None:
    """The sum of the terms that are not None (None if all are)."""
    total = None
    for t in terms:
        if t is not None:
            total = t if total is None else ir.make("add", total, t)
    return total


def bilinear(op: str, tangents, a: ir.Node, b: ir.Node) -> ir.Node | None:
    """The JVP of a bilinear op ``op(a, b)``: ``op(ta, b) + op(a, tb)``."""
    ta, tb = tangents
    return added(
        None if ta is None else ir.make(op, ta, b),
        None if tb is None else ir.make(op, a, tb),
    )
