"""What an IR operation is: one declaration that every target reads.

An :class:`Op` gathers everything the library knows about one operation:

* ``arity`` and ``nattrs`` (how many child formulas and integer attributes),
* ``dim``: the output's inner dimension from the arguments' (raises
  ``ValueError`` on a mismatch),
* ``c``: its C rendering, read by :mod:`..codegen.formula` for the CPU and the
  CUDA targets alike,
* ``numpy``: its NumPy evaluation, read by the reference engine,
* ``vjp``: its vector-Jacobian product, read by :mod:`..grad`,
* ``jvp``: its Jacobian-vector product (forward mode), read by :mod:`..grad`,
* ``interval``: its interval rule (bounds over boxes), read by
  :mod:`..bounds`; the building blocks are in :mod:`.interval`,
* ``method``: the :class:`~kernelsolve.LazyTensor` attribute that builds it.

``tests/engine/test_ops_declared.py`` fails for any op that lacks one of them,
and :func:`declare` refuses it.
This module imports nothing from the rest of the library (the IR imports it);
the declarations themselves live in :mod:`.elementwise`, :mod:`.vector`,
:mod:`.complex` and :mod:`.tensor`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["OPS", "Op", "declare", "no_gradient", "no_tangent"]


def no_gradient(node, g, *args) -> tuple[None, ...]:
    """The VJP of an op whose derivative is 0 wherever it exists (step, sign,
    floor, comparisons, argmin, ...): no contribution to any argument."""
    return (None,) * len(args)


def no_tangent(node, tangents, *args) -> None:
    """The JVP of an op whose derivative is 0 wherever it exists (the forward
    twin of :func:`no_gradient`): a zero tangent whatever the arguments'."""
    return None


@dataclass(frozen=True)
class Op:
    """One IR operation, declared once (see the module docstring).

    Calling conventions of the rules:

    * ``dim(op_name, arg_dims, attrs) -> int``;
    * ``c``: for an ``elementwise`` op, ``c(e, *coordinates, *attrs)`` gives
      the C expression of one output coordinate from one coordinate of each
      argument (dim-1 arguments broadcast), or ``(inner, outer)`` where
      ``outer(t)`` uses the value ``t`` of the expression ``inner``: two
      statements, for nested selects that GCC would miscompile in one. For
      the other ops, ``c(e, node, *args)`` gets each argument as the list of
      its coordinates and returns the output's (statements go through
      ``e.define``). ``e`` is the emitter: ``e.T`` (C type), ``e.fn(name)``
      (libm name for ``e.T``), ``e.lit(value)``, ``e.exp`` and ``e.log`` (the target's),
      ``e.define(exprs)``, ``e.sum(terms)``;
    * ``numpy(*arrays, *attrs)``: arrays whose last axis is the inner
      dimension (broadcasting like the formula), result likewise;
    * ``vjp(node, cotangent, *args)``: one contribution per argument (an IR
      node, or None for none), written with IR ops only; :func:`no_gradient`
      for ops whose derivative is 0;
    * ``jvp(node, tangents, *args)``: ``tangents`` holds one tangent per
      argument (an IR node of the argument's dim, or None for a zero
      tangent); returns the output's tangent (an IR node of ``node.dim``, or
      of dim 1 which then broadcasts; written with IR ops only) or None when
      it is zero; :func:`no_tangent` for ops whose derivative is 0;
    * ``interval(*pairs, *attrs)``: each argument an interval ``(lo, hi)`` of
      float64 arrays shaped ``(..., dim)`` (dim-1 arguments broadcast like
      the formula's), returns the output's ``(lo, hi)``: every value the op
      takes on arguments inside their intervals lies in it, and ``lo = hi =
      NaN`` where it may be NaN (conventions: :mod:`.interval`). A rule that
      is not tight says so in ``doc``.
    """

    name: str
    arity: int
    dim: Callable[[str, tuple[int, ...], tuple], int]
    c: Callable
    numpy: Callable
    vjp: Callable
    method: str
    elementwise: bool = False
    nattrs: int = 0
    doc: str = ""
    jvp: Callable | None = None
    interval: Callable | None = None

    @property
    def differentiable(self) -> bool:
        """False for ops whose VJP is :func:`no_gradient`."""
        return self.vjp is not no_gradient


#: Every operation of the IR, by name (filled by :func:`declare`).
OPS: dict[str, Op] = {}


def declare(op: Op) -> Op:
    """Register ``op`` in :data:`OPS` (a name may be declared once)."""
    if op.name in OPS or op.name in ("var", "const"):
        raise ValueError(f"operation {op.name!r} is already declared")
    rules = ("dim", "c", "numpy", "vjp", "jvp", "interval")
    missing = [f for f in rules if not callable(getattr(op, f))]
    if missing or not op.method:
        raise TypeError(f"operation {op.name!r}: missing rule(s) {missing or ['method']}")
    OPS[op.name] = op
    return op
