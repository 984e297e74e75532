"""Symbolic vector-Jacobian (reverse mode) and Jacobian-vector (forward
mode) products on the formula IR.

:func:`vjp` turns a formula ``F`` (a :class:`~.ir.Node`), a variable leaf
``x`` of ``F`` and a cotangent formula ``g`` (of dimension ``F.dim``) into the
formula of ``sum_k g_k dF_k/dx``, of dimension ``x.dim``. The result is an
ordinary IR node, so the engine compiles it like any other formula, and
:func:`vjp` can be applied to it again (derivatives of any order).

Approach: reverse-mode accumulation over ``ir.topological_order(F)``,
visited parents first. Every node that depends on ``x`` gets an *adjoint*
(a node of the same dimension), the sum (``add``) of the contributions of its
parents; the root's adjoint is ``g``. Each op's contributions come from the
``vjp`` rule of its declaration (:mod:`.ops`), written with IR ops only.
Nodes are built through :func:`ir.make`, so ``0 * f``/``f + 0`` simplify away
and equal subformulas are shared (hash-consing): e.g. the gradient of
``exp(-sqdist(x, y))`` w.r.t. ``x`` contains ``x - y`` once. The conventions
at non-differentiable points are documented with the declarations
(:mod:`.ops.elementwise`, :mod:`.ops.vector`).

Broadcasting: an elementwise op broadcasts a dim-1 argument against a dim-D
node; the contribution to that argument is then summed (``sum``) over the
inner dimension. Conversely a dim-1 contribution to a dim-D argument is
broadcast (multiplied by ``const(1, D)``).

:func:`jvp` is the forward twin: given a tangent formula for some variables,
it visits ``ir.topological_order(F)`` children first and gives each node that
depends on them a *tangent* (a node of the same dimension) from the ``jvp``
rule of its op; the root's tangent is the result, ``sum_x dF/dx . t_x``.
Hash-consing shares the subformulas of the tangent with those of ``F``.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import ir

__all__ = ["jvp", "vjp"]


def _fit(c: ir.Node, dim: int) -> ir.Node:
    """Contribution ``c`` brought to dimension ``dim``: summed when it was
    broadcast (``dim == 1``), broadcast when it is a scalar."""
    if c.dim == dim:
        return c
    if dim == 1:
        return ir.make("sum", c)
    if c.dim == 1:
        return ir.make("mul", c, ir.const(1, dim))
    raise ValueError(f"grad: contribution of dimension {c.dim} for an argument of dimension {dim}")


# ----------------------------------------------------------------------------
# Reverse-mode accumulation
# ----------------------------------------------------------------------------


def vjp(root: ir.Node, wrt: ir.Node, cotangent: ir.Node) -> ir.Node:
    """Formula of ``sum_k cotangent_k * d root_k / d wrt`` (dimension ``wrt.dim``).

    ``wrt`` must be a ``var`` leaf; if it does not occur in ``root`` the result
    is ``const(0, wrt.dim)``. ``cotangent`` is any node of dimension ``root.dim``.
    """
    if wrt.op != "var":
        raise ValueError(f"vjp: wrt must be a var leaf, got {wrt.op!r}")
    if cotangent.dim != root.dim:
        raise ValueError(
            f"vjp: cotangent has dimension {cotangent.dim}, the formula has {root.dim}"
        )
    order = ir.topological_order(root)
    # Nodes whose value depends on wrt: only they carry adjoints.
    live: set[int] = set()
    for node in order:
        if node is wrt or any(id(a) in live for a in node.args):
            live.add(id(node))
    if id(root) not in live:
        return ir.const(0, wrt.dim)

    adjoint: dict[int, ir.Node] = {id(root): cotangent}
    for node in reversed(order):
        if node.op in ("var", "const") or id(node) not in live:
            continue
        g = adjoint.pop(id(node), None)
        if g is None or ir.is_const(g, 0):
            continue
        contribs = ir.OPS[node.op].vjp(node, g, *node.args)
        for arg, c in zip(node.args, contribs):
            if c is None or id(arg) not in live:
                continue
            c = _fit(c, arg.dim)
            if ir.is_const(c, 0):
                continue
            prev = adjoint.get(id(arg))
            adjoint[id(arg)] = c if prev is None else ir.make("add", prev, c)
    return adjoint.get(id(wrt), ir.const(0, wrt.dim))


# ----------------------------------------------------------------------------
# Forward-mode propagation
# ----------------------------------------------------------------------------


def jvp(root: ir.Node, tangents: Mapping[ir.Node, ir.Node]) -> ir.Node:
    """Formula of ``sum_x d root / d x . tangents[x]`` (dimension ``root.dim``).

    ``tangents`` maps ``var`` leaves to tangent formulas of their dimension;
    variables not in it have a zero tangent. If none of them occurs in
    ``root`` the result is ``const(0, root.dim)``.

    Example
    -------
    >>> from kernelsolve.engine import ir
    >>> x, t = ir.var(0, ir.I, 1), ir.var(1, ir.I, 1)
    >>> jvp(ir.make("square", x), {x: t}).key
    'mul(mul(Const(2,1),Var(1,1,i)),Var(0,1,i))'
    """
    tangent: dict[int, ir.Node] = {}
    for v, t in tangents.items():
        if v.op != "var":
            raise ValueError(f"jvp: tangents must be keyed by var leaves, got {v.op!r}")
        if t.dim != v.dim:
            raise ValueError(
                f"jvp: the tangent of {v.key} has dimension {t.dim}, expected {v.dim}"
            )
        if not ir.is_const(t, 0):
            tangent[id(v)] = t
    for node in ir.topological_order(root):
        if node.op in ("var", "const"):
            continue
        ts = tuple(tangent.get(id(a)) for a in node.args)
        if all(t is None for t in ts):
            continue
        t = ir.OPS[node.op].jvp(node, ts, *node.args)
        if t is None:
            continue
        t = _fit(t, node.dim) if t.dim == 1 else t
        if t.dim != node.dim:
            raise ValueError(
                f"jvp: the {node.op} rule gave a tangent of dimension {t.dim}, expected {node.dim}"
            )
        if not ir.is_const(t, 0):
            tangent[id(node)] = t
    return tangent.get(id(root), ir.const(0, root.dim))
