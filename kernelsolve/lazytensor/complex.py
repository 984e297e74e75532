"""Complex LazyTensors, as pykeops has them.

``LazyTensor(z)`` with a complex NumPy array or torch tensor (complex64,
complex128), a Python complex number or a list holding one returns a
:class:`ComplexLazyTensor`. The engine never sees complex numbers: a complex
array is bound through its real view (``(..., D)`` complex64 ->
``(..., 2D)`` float32, no copy when the last axis is contiguous), the formula
is a real formula of dimension 2D whose ops act on (re, im) pairs
(:mod:`kernelsolve.engine.ops.complex`), and a reduction's real result is
viewed back as complex (NumPy complex in, NumPy complex out; torch likewise,
with autograd through ``view_as_real`` / ``view_as_complex``).

What a complex LazyTensor supports: ``+ - * /`` with complex or real
LazyTensors, arrays and Python numbers (a real operand is promoted;
``z * u`` with a real ``u`` is ``complexrealscal``), ``-z``, ``z ** n`` (int
``n``), ``.real``, ``.imag``, ``.conj()``, ``.abs()``, ``.angle()``,
``.exp()``, ``.sum(-1)`` (inner sum), ``.normalize()``, ``.norm2()`` and
``.sqnorm2()`` (the norms of the complex vector, real), indexing and ``concat`` of complex
coordinates, ``.t()``, and the ``sum`` reduction over i or j (also
``K @ v`` with a complex ``K`` or ``v``). The other reductions (min,
logsumexp, argKmin...) and the functions without a complex meaning (``<``,
``sqrt``, ``log``, ``relu``, ``solve``...) raise ``TypeError``: reduce
``z.real``, ``z.imag`` or ``z.abs()`` instead.

torch gradients flow through the complex ops (their VJP rules are the
transposes of the real Jacobians, torch's convention for complex tensors), so
``backward`` works with complex tensors that require grad.

Example
-------
>>> import numpy as np
>>> from kernelsolve import LazyTensor
>>> x = np.random.rand(5, 1, 2) + 1j * np.random.rand(5, 1, 2)
>>> y = np.random.rand(1, 4, 2)
>>> K = (LazyTensor(x) * LazyTensor(y)).exp().sum(-1)
>>> type(K).__name__, K.sum(1).dtype
('ComplexLazyTensor', dtype('complex128'))
"""

from __future__ import annotations

import numpy as np

from ..engine import arrays, ir
from ..engine.ops import complex as cops
from .binding import bind_array, bind_number, is_int, join
from .core import LazyTensor, carry_ranges
from .reductions import ReductionCall, write_out

__all__ = ["ComplexLazyTensor", "is_complex_input"]

# Real ops whose value on the (re, im) pairs is their complex meaning: -z,
# z / |z|, and the (real) norms of a complex vector
_SAME_ON_PAIRS = ("neg", "normalize", "sqnorm2", "norm2")
# Real op name -> complex op, for the methods that LazyTensor builds with _unary
_UNARY = {"exp": "complexexp", "sum": "complexsum", "abs": "complexabs"}
_REAL_RESULT = ("complexabs", "complexangle", "complexreal", "compleximag", "sqnorm2", "norm2")
_BINARY = {"add": "complexadd", "sub": "complexsub", "mul": "complexmult", "div": "complexdiv"}


def is_complex_input(x) -> bool:
    """True for what ``LazyTensor(x)`` binds as complex: complex arrays and
    tensors, complex numbers, lists holding a complex number, complex
    LazyTensors."""
    t = type(x)
    if t is np.ndarray:
        return x.dtype.kind == "c"
    if t is float or t is int:
        return False
    if t is complex or isinstance(x, np.complexfloating):
        return True
    if isinstance(x, LazyTensor):
        return x.is_complex
    if isinstance(x, (list, tuple)):
        return any(isinstance(v, (complex, np.complexfloating)) for v in x)
    return _is_complex_array(x)


def _is_complex_array(x) -> bool:
    if arrays.is_torch(x):
        return x.is_complex()
    return arrays.is_array(x) and x.dtype.kind == "c"


# How errors word the real ops that have no complex meaning
_WORDS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "powf": "**"}
_WORDS.update(scalprod="| (scalar product)", clampint="clamp", clamp="clamp")


def unsupported(what: str) -> TypeError:
    """The error for ``what`` (an op name or a phrase) on a complex operand."""
    what = _WORDS.get(what, what)
    return TypeError(
        f"{what} has no meaning for complex LazyTensors; apply it to z.real, z.imag, "
        "z.abs() or z.angle() instead"
    )


def _real_view(x, axis):
    """The real array bound for the complex array ``x``: the last (inner)
    axis doubled, (re, im) interleaved."""
    if x.ndim == 0 or (x.ndim == 1 and axis in (0, 1)):
        x = x.reshape(-1, 1) if x.ndim == 1 else x.reshape(1)
    if arrays.is_torch(x):
        import torch  # loaded: x is a tensor

        if x.dtype not in (torch.complex64, torch.complex128):
            raise TypeError(f"LazyTensor: x has dtype {x.dtype}; expected complex64 or complex128")
        r = torch.view_as_real(x.resolve_conj())
        return r.reshape(tuple(x.shape[:-1]) + (2 * x.shape[-1],))
    if x.dtype not in (np.complex64, np.complex128):
        raise TypeError(f"LazyTensor: x has dtype {x.dtype}; expected complex64 or complex128")
    real = np.float32 if x.dtype == np.complex64 else np.float64
    if x.strides[-1] != x.itemsize:
        x = x.copy()  # the real view needs a contiguous last axis
    return x.view(real)


def _bind_complex(x, axis) -> tuple:
    """The fields of a complex variable (see :func:`.binding.bind_array`)."""
    if isinstance(x, (complex, np.complexfloating)):
        x = [x]
    if isinstance(x, (list, tuple)):
        pairs = [c for v in x for c in (complex(v).real, complex(v).imag)]
        return bind_number(pairs, axis)
    if _is_complex_array(x):
        return bind_array(_real_view(x, axis), axis)
    # a real array or number made complex: zero imaginary part
    if isinstance(x, (bool, int, float, np.number)):
        fields = bind_number(float(x), axis)
    else:
        fields = bind_array(x, axis)
    return (ir.make("real2complex", fields[0]),) + fields[1:]


class ComplexLazyTensor(LazyTensor):
    """A LazyTensor of complex numbers (pykeops' ``ComplexLazyTensor``).

    ``LazyTensor(z)`` returns one for complex input; ``ComplexLazyTensor(x)``
    with a real array or number gives ``x`` with zero imaginary part. Shapes
    follow the complex array (``ndim`` and ``shape`` count complex
    coordinates); reductions return complex arrays of the caller's library.
    See :mod:`kernelsolve.lazytensor.complex` for what it supports.

    Example
    -------
    >>> import numpy as np
    >>> z = ComplexLazyTensor(np.array([[1 + 2j], [3j]]), axis=0)
    >>> (z * z.conj()).real.sum(0)
    array([[14.]])
    """

    __slots__ = ()
    is_complex = True

    def __init__(self, x=None, axis: int | None = None):
        if x is None:
            return
        if isinstance(x, LazyTensor):
            if not x.is_complex:
                x = x.real2complex()
            for s in LazyTensor.__slots__:
                setattr(self, s, getattr(x, s, None))
            return
        (self.formula, self.variables, self.cats, self.ni, self.nj, self.batchdims, self._kind) = (
            _bind_complex(x, axis)
        )

    # ------------------------------------------------------------------
    # Shapes and names: complex coordinates
    # ------------------------------------------------------------------
    @property
    def _shape(self) -> tuple[int, ...]:
        return self.batchdims + (self.ni or 1, self.nj or 1, self.formula.dim // 2)

    @property
    def ndim(self) -> int:
        """Number of complex coordinates D (the formula has 2D real ones)."""
        return self.formula.dim // 2

    @property
    def dtype(self) -> str | None:
        """'complex64' or 'complex128' (None if only numbers are bound)."""
        if self._kind is None:
            return None
        return {"float32": "complex64", "float64": "complex128"}.get(self._kind.dtype)

    def __repr__(self) -> str:
        return "KernelSolve ComplexLazyTensor" + super().__repr__().split("LazyTensor", 1)[1]

    __str__ = __repr__

    # ------------------------------------------------------------------
    # Building formulas
    # ------------------------------------------------------------------
    def _with(self, node) -> LazyTensor:
        return wrap(self, node)

    def _unary(self, op: str, attrs: tuple = ()) -> LazyTensor:
        if op in _SAME_ON_PAIRS:
            return self._with(ir.make(op, self.formula, attrs=attrs))
        if op == "square":
            return self * self
        if op == "inv":
            return 1 / self
        if op not in _UNARY:
            raise unsupported(f"{_WORDS.get(op, op)}()")
        return self._with(ir.make(_UNARY[op], self.formula))

    def _nary(self, op: str, *others, attrs: tuple = ()) -> LazyTensor:
        if op != "concat":
            raise unsupported(op)
        other = ComplexLazyTensor(LazyTensor._as_lazy(others[0]))
        (a, b), joined = join([self, other])
        return carry_ranges(
            ComplexLazyTensor._new(ir.make("concat", a, b), *joined), (self, other)
        )

    def _binary(self, op: str, other, name: str = "the right operand") -> LazyTensor:
        return binary(op, self, LazyTensor._as_lazy(other), name)

    def __pow__(self, other):
        """``z ** n`` for an int ``n`` (repeated complex products)."""
        if isinstance(other, float) and other.is_integer():
            other = int(other)
        if not is_int(other):
            raise unsupported("z ** (non-integer exponent)")
        n = int(other)
        if n < 0:
            return 1 / self ** (-n)
        if n == 0:
            return self._with(ir.make("real2complex", ir.const(1, self.ndim)))
        out, base = None, self
        while n:  # binary exponentiation: log2(n) products
            if n & 1:
                out = base if out is None else out * base
            n >>= 1
            if n:
                base = base * base
        return out

    def __rpow__(self, other):
        raise unsupported("a complex exponent")

    # Complex-only methods ----------------------------------------------
    @property
    def real(self) -> LazyTensor:
        """Real part (a real LazyTensor)."""
        return self._with(ir.make("complexreal", self.formula))

    @property
    def imag(self) -> LazyTensor:
        """Imaginary part (a real LazyTensor)."""
        return self._with(ir.make("compleximag", self.formula))

    def conj(self) -> ComplexLazyTensor:
        """Complex conjugate."""
        return self._with(ir.make("conj", self.formula))

    def angle(self) -> LazyTensor:
        """Argument ``atan2(im, re)`` (a real LazyTensor)."""
        return self._with(ir.make("complexangle", self.formula))

    def real2complex(self):
        raise TypeError("real2complex: the LazyTensor is already complex")

    def imag2complex(self):
        raise TypeError("imag2complex: the LazyTensor is already complex; use 1j * z")

    def exp1j(self):
        raise TypeError("exp1j: expected a real LazyTensor; use (1j * z).exp() for a complex z")

    def elem(self, i: int) -> ComplexLazyTensor:
        """The complex coordinate ``z[i]``."""
        return self.extract(i, 1)

    def extract(self, i: int, d: int) -> ComplexLazyTensor:
        """The complex coordinates ``z[i:i+d]``."""
        if not (is_int(i) and is_int(d)):
            raise TypeError("extract: start and length must be ints")
        return self._with(ir.make("extract", self.formula, attrs=(2 * i, 2 * d)))

    def grad(self, other, gradin):
        raise TypeError("grad: symbolic gradients of complex LazyTensors are not supported")

    @property
    def solve(self):
        """Not supported: ``K.solve`` needs a real kernel (raises TypeError)."""
        raise TypeError("solve: complex kernels are not supported; K must be real")

    # ------------------------------------------------------------------
    # Reductions: sum only, returned as complex arrays
    # ------------------------------------------------------------------
    def _reduce(self, name: str, axis: int, *, weight=None, K=None, **kwargs):
        if name != "sum":
            raise unsupported(f"the {name} reduction")
        out = kwargs.pop("out", None)
        result = super()._reduce(name, axis, **kwargs)
        if isinstance(result, ReductionCall):
            return ComplexReductionCall(result.request)
        return write_out(as_complex(result), out)


def binary(op: str, a: LazyTensor, b: LazyTensor, name: str = "the right operand") -> LazyTensor:
    """``a op b`` (``op`` one of add, sub, mul, div) where at least one
    operand is complex: the real one is promoted."""
    if op not in _BINARY:
        raise unsupported(op)
    (fa, fb), joined = join((a, b), ("the left operand", name))
    if op == "mul" and not (a.is_complex and b.is_complex):
        node = (
            ir.make("complexrealscal", fb, fa)
            if a.is_complex
            else ir.make("complexrealscal", fa, fb)
        )
    elif op == "div" and not b.is_complex:
        node = ir.make("complexrealscal", ir.make("inv", fb), fa)
    else:
        fa = fa if a.is_complex else cops.real2complex(fa)
        fb = fb if b.is_complex else cops.real2complex(fb)
        node = ir.make(_BINARY[op], fa, fb)
    return carry_ranges(ComplexLazyTensor._new(node, *joined), (a, b))


def wrap(src: LazyTensor, node: ir.Node) -> LazyTensor:
    """``node`` over the arrays (and ranges) of ``src``: a ComplexLazyTensor,
    or a real LazyTensor for the ops with real results."""
    cls = LazyTensor if node.op in _REAL_RESULT else ComplexLazyTensor
    out = cls._new(node, src.variables, src.cats, src.ni, src.nj, src.batchdims, src._kind)
    return carry_ranges(out, (src,))


def as_complex(result):
    """A reduction's real result (last axis 2D, interleaved) as complex (D)."""
    if arrays.is_torch(result):
        import torch  # loaded: x is a tensor

        r = result.contiguous()
        return torch.view_as_complex(r.reshape(tuple(r.shape[:-1]) + (r.shape[-1] // 2, 2)))
    if result.strides[-1] != result.itemsize:
        result = result.copy()
    return result.view(np.complex64 if result.dtype == np.float32 else np.complex128)


class ComplexReductionCall(ReductionCall):
    """``call=False`` on a complex reduction: called with complex arrays (in
    the order of the variables), returns a complex array."""

    def __call__(self, *args, **kwargs):
        args = [_real_view(a, None) if _is_complex_array(a) else a for a in args]
        return as_complex(super().__call__(*args, **kwargs))
