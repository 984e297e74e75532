"""pykeops' symbolic derivatives in formula strings: ``Grad``, ``GradFromPos``,
``Diff``, ``Divergence``, ``Laplacian`` and ``GradMatrix``.

Each is built from :func:`kernelsolve.engine.grad.vjp` (the one symbolic
differentiation of the library), so the result is an ordinary IR formula that
every target compiles and that can be differentiated again.

>>> from kernelsolve.engine import ir
>>> x = ir.var(0, ir.I, 3)
>>> grad(ir.make("sqnorm2", x), x, ir.const(1)).key
'mul(Const(2,1),Var(0,3,i))'
"""

from __future__ import annotations

from ...engine import ir
from ...engine.grad import vjp
from ...engine.ops.derivatives import place

__all__ = ["diff", "divergence", "grad", "grad_from_pos", "grad_matrix", "laplacian"]


def concat(*parts: ir.Node) -> ir.Node:
    """``Concat(a, b, ...)``: the parts one after another."""
    out = parts[0]
    for p in parts[1:]:
        out = ir.make("concat", out, p)
    return out


def _need_var(v: ir.Node, what: str = "the variable") -> None:
    if v.op != "var":
        raise ValueError(f"{what} of a derivative must be a variable (an alias or Var(...))")


def _fresh_index(*nodes: ir.Node) -> int:
    used = [v.attrs[0] for n in nodes for v in ir.variables(n)]
    return 1 + max(used, default=-1)


def grad(f: ir.Node, v: ir.Node, e: ir.Node | None = None) -> ir.Node:
    """``Grad(f, v, e)``: ``sum_k e_k d f_k / d v`` (dimension ``v.dim``).

    Without ``e`` (pykeops' two-argument form) the cotangent is a new variable
    after the formula's, indexed like the output (the category other than
    ``v``'s), as pykeops does.
    """
    _need_var(v)
    if e is None:
        if v.attrs[1] == ir.P:
            raise ValueError("Grad(f, p) without a cotangent: p must not be a parameter")
        e = ir.var(_fresh_index(f, v), 1 - v.attrs[1], f.dim)
    if e.dim != f.dim:
        if e.dim != 1:
            raise ValueError(
                f"the cotangent has dimension {e.dim}; expected {f.dim} (the formula's) or 1"
            )
        e = ir.make("mul", e, ir.const(1, f.dim))
    return vjp(f, v, e)


def grad_from_pos(f: ir.Node, pos: int, e: ir.Node) -> ir.Node:
    """``GradFromPos(f, pos, e)``: ``Grad`` with respect to the variable at argument ``pos``."""
    found = [v for v in ir.variables(f) if v.attrs[0] == pos]
    if not found:
        raise ValueError(f"the formula has no variable at position {pos}")
    return grad(f, found[0], e)


def diff(f: ir.Node, v: ir.Node, u: ir.Node) -> ir.Node:
    """``Diff(f, v, u)``: the directional derivative ``sum_k u_k d f / d v_k``
    (dimension ``f.dim``), as the VJP of the VJP: ``J u = d/dg <J^T g, u>``."""
    _need_var(v)
    if u.dim != v.dim:
        raise ValueError(f"the direction has dimension {u.dim}; expected {v.dim}")
    g = ir.var(_fresh_index(f, v, u), ir.I, f.dim)
    out = vjp(vjp(f, v, g), g, u)
    if g in ir.variables(out):  # only for a VJP rule that is not linear in g
        raise ValueError("Diff: this formula's derivative could not be formed")
    return out


def _basis(k: int, dim: int) -> ir.Node:
    return place(ir.const(1), k, dim)


def grad_matrix(f: ir.Node, v: ir.Node) -> ir.Node:
    """``GradMatrix(f, v)``: the Jacobian, row ``k`` the gradient of ``f_k``
    (dimension ``f.dim * v.dim``, row-major)."""
    _need_var(v)
    return concat(*[vjp(f, v, _basis(k, f.dim)) for k in range(f.dim)])


def divergence(f: ir.Node, v: ir.Node) -> ir.Node:
    """``Divergence(f, v)``: ``sum_k d f_k / d v_k`` (``f.dim == v.dim``)."""
    _need_var(v)
    if f.dim != v.dim:
        raise ValueError(f"Divergence: the formula has dimension {f.dim}, the variable {v.dim}")
    out = ir.const(0)
    for k in range(f.dim):
        out = ir.make("add", out, ir.make("elem", vjp(f, v, _basis(k, f.dim)), attrs=(k,)))
    return out


def laplacian(f: ir.Node, v: ir.Node) -> ir.Node:
    """``Laplacian(f, v)``: the divergence of the gradient of a scalar ``f``."""
    if f.dim != 1:
        raise ValueError(f"Laplacian: the formula must be scalar, got dimension {f.dim}")
    return divergence(grad(f, v, ir.const(1)), v)
