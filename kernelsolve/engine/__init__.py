"""The engine: formulas (IR), their gradients, reductions, code generation,
targets and dispatch. Importing it declares every operation of the IR
(:mod:`.ops.elementwise`, :mod:`.ops.vector`, :mod:`.ops.complex`, :mod:`.ops.tensor`)."""

from . import ir
from .ops import complex as _complex  # noqa: F401
from .ops import elementwise as _elementwise  # noqa: F401  (declares the ops)
from .ops import tensor as _tensor  # noqa: F401
from .ops import vector as _vector  # noqa: F401

__all__ = ["ir"]
