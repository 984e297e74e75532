"""The LazyTensor class: construction, shape, and the operators that build
formulas. Reductions come from :class:`.reductions.Reductions`.

The elementwise functions without arguments (``exp``, ``sin``, ``sqrt``,
``relu``, ...) are not written here: each op declared with a method of its
own name (:mod:`kernelsolve.engine.ops`) gets one, with the declaration's
docstring (:func:`_add_op_methods`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..engine import arrays, ir
from ..engine.grad import vjp
from ..engine.ranges.plan import join_ranges, swap_axes
from .binding import bind_array, bind_number, is_int, join
from .reductions import Reductions
from .tensor_products import TensorProducts


class LazyTensor(TensorProducts, Reductions):
    """Symbolic (batch..., M, N, D) tensor whose entries are a formula.

    Parameters
    ----------
    x : array, float, int, list of floats or LazyTensor
        * ``(..., M, 1, D)`` array: variable indexed by i;
        * ``(..., 1, N, D)`` array: variable indexed by j;
        * ``(..., 1, 1, D)``, ``(D,)`` or 0-d array, float, list of floats:
          parameter (the same for every pair);
        * ``(M, D)`` array with ``axis=0`` (i) or ``axis=1`` (j);
        * int: an integer constant, folded at compile time.
    axis : {None, 0, 1, 2}
        Category of a 2-D array (0: i, 1: j, 2: parameter).

    Notes
    -----
    As in pykeops, ``ndim`` is the inner dimension D (not the number of
    axes; that is ``dim()``), and ``shape`` drops D when it is 1.

    Example
    -------
    >>> import numpy as np
    >>> x, y = np.random.rand(100, 3), np.random.rand(200, 3)
    >>> K = (-LazyTensor(x[:, None, :]).sqdist(LazyTensor(y[None, :, :]))).exp()
    >>> K.shape, (K @ np.ones(200)).shape
    ((100, 200), (100,))
    """

    __slots__ = ("formula", "variables", "cats", "ni", "nj", "batchdims", "_kind", "_mm")
    __slots__ += ("_ranges",)

    # Make NumPy defer to our reflected operators: ``array * lazy`` calls
    # ``lazy.__rmul__`` instead of broadcasting over the LazyTensor.
    __array_ufunc__ = None
    __array_priority__ = 1000
    is_complex = False  # ComplexLazyTensor (lazytensor/complex.py): True

    def __init__(self, x=None, axis: int | None = None):
        if x is None:  # internal: fields are set by _new
            return
        try:
            if type(x) is np.ndarray or type(x) is arrays.torch_tensor_type():
                fields = bind_array(x, axis)  # the common case first: no chain of type tests
            elif isinstance(x, LazyTensor):
                if x.is_complex:
                    return self._become_complex(x, axis)
                for s in LazyTensor.__slots__:
                    setattr(self, s, getattr(x, s, None))
                return
            elif isinstance(x, (bool, int, float, np.number, list, tuple)):
                fields = bind_number(x, axis)
            elif arrays.is_array(x):
                fields = bind_array(x, axis)
            else:
                raise TypeError(
                    "LazyTensor: expected a NumPy array, a torch tensor, a number or a list "
                    f"of numbers, got {type(x).__name__}"
                )
        except TypeError:
            # complex input is refused by the real bindings; as in pykeops,
            # LazyTensor(complex) is then a ComplexLazyTensor (lazytensor/complex.py)
            if type(self) is not LazyTensor or not _complex.is_complex_input(x):
                raise
            return self._become_complex(x, axis)
        self.formula, self.variables, self.cats, self.ni, self.nj, self.batchdims, self._kind = (
            fields
        )

    def _become_complex(self, x, axis) -> None:
        # The two classes share one layout (ComplexLazyTensor adds no slot), so
        # the instance can change class: the real path pays nothing for this.
        self.__class__ = _complex.ComplexLazyTensor
        self.__init__(x, axis)

    @classmethod
    def _new(cls, formula, variables, cats, ni, nj, batchdims, kind) -> LazyTensor:
        out = cls.__new__(cls)
        out.formula, out.variables, out.cats = formula, variables, cats
        out.ni, out.nj, out.batchdims, out._kind = ni, nj, batchdims, kind
        return out

    @property
    def ranges(self):
        """pykeops' block-sparse ``ranges`` (six integer arrays, see
        :mod:`kernelsolve.engine.ranges`) that this LazyTensor's reductions and
        ``@`` use when they are not given ``ranges=``; None (default): dense.
        Operations carry it to their results, as in pykeops."""
        return getattr(self, "_ranges", None)

    @ranges.setter
    def ranges(self, value) -> None:
        self._ranges = value
        self._mm = None  # the kept plan of K @ v was made without these ranges

    @staticmethod
    def _as_lazy(x) -> LazyTensor:
        if isinstance(x, LazyTensor):
            return x
        if x is None:
            raise TypeError(
                "LazyTensor operand: expected a LazyTensor, an array, a number or a list "
                "of numbers, got None"
            )
        return LazyTensor(x)

    # ------------------------------------------------------------------
    # Shapes
    # ------------------------------------------------------------------
    @property
    def _shape(self) -> tuple[int, ...]:
        return self.batchdims + (self.ni or 1, self.nj or 1, self.formula.dim)

    @property
    def shape(self) -> tuple[int, ...]:
        """``batch + (M, N)`` plus ``(D,)`` when D > 1, as in pykeops."""
        s = self._shape
        return s[:-1] if s[-1] == 1 else s

    @property
    def ndim(self) -> int:
        """Inner dimension D of the formula (pykeops' meaning of ndim)."""
        return self.formula.dim

    def dim(self) -> int:
        """Number of axes of ``_shape``: batch dims + 3."""
        return len(self._shape)

    @property
    def nbatchdims(self) -> int:
        return len(self.batchdims)

    @property
    def dtype(self) -> str | None:
        """Name of the dtype of the bound arrays (None if only numbers)."""
        return self._kind.dtype if self._kind else None

    def __repr__(self) -> str:
        lib = f"{self._kind.lib} {self._kind.dtype}" if self._kind else "no arrays"
        return (
            f"KernelSolve LazyTensor\n    formula: {self.formula.key}\n"
            f"    shape: {self.shape}\n    arrays: {len(self.variables)} ({lib})"
        )

    __str__ = __repr__
    __hash__ = object.__hash__

    # ------------------------------------------------------------------
    # Building formulas
    # ------------------------------------------------------------------
    def _unary(self, op: str, attrs: tuple = ()) -> LazyTensor:
        node = ir.make(op, self.formula, attrs=attrs)
        out = LazyTensor._new(
            node, self.variables, self.cats, self.ni, self.nj, self.batchdims, self._kind
        )
        return carry_ranges(out, (self,))

    def _nary(self, op: str, *others, attrs: tuple = ()) -> LazyTensor:
        operands = [self] + [LazyTensor._as_lazy(o) for o in others]
        for o in operands:
            if o.is_complex:  # ops without a complex meaning (<, atan2, |, ...)
                if op == "concat":
                    return self.real2complex()._nary(op, *others)
                raise _complex.unsupported(op)
        formulas, joined = join(operands)
        out = LazyTensor._new(ir.make(op, *formulas, attrs=attrs), *joined)
        return carry_ranges(out, operands)

    def _binary(self, op: str, other, name: str = "the right operand") -> LazyTensor:
        """``_nary`` for one other operand (every arithmetic operator);
        ``name`` words ``other`` in errors."""
        if type(other) is not LazyTensor:
            other = LazyTensor._as_lazy(other)
            if other.is_complex:
                return _complex.binary(op, self, other, name)
        formulas, joined = join((self, other), ("the left operand", name))
        out = LazyTensor._new(ir.make(op, formulas[0], formulas[1]), *joined)
        return carry_ranges(out, (self, other))

    # Arithmetic -------------------------------------------------------
    def __add__(self, other):
        return self._binary("add", other)

    def __radd__(self, other):
        return LazyTensor._as_lazy(other)._binary("add", self)

    def __sub__(self, other):
        return self._binary("sub", other)

    def __rsub__(self, other):
        return LazyTensor._as_lazy(other)._binary("sub", self)

    def __mul__(self, other):
        return self._binary("mul", other)

    def __rmul__(self, other):
        return LazyTensor._as_lazy(other)._binary("mul", self)

    def __truediv__(self, other):
        return self._binary("div", other)

    def __rtruediv__(self, other):
        return LazyTensor._as_lazy(other)._binary("div", self)

    def __neg__(self):
        return self._unary("neg")

    def __abs__(self):
        return self._unary("abs")

    def __pow__(self, other):
        """``x ** n`` (int: exact power, 2: square, 0.5: sqrt, -0.5: rsqrt,
        other floats or LazyTensors: elementwise ``powf``)."""
        if isinstance(other, bool):
            raise TypeError("exponent must be a number or a LazyTensor, got bool")
        if isinstance(other, np.integer):
            other = int(other)
        if isinstance(other, int):
            return self._unary("pow", (other,))
        if isinstance(other, float):
            if other == 0.5:
                return self.sqrt()
            if other == -0.5:
                return self.rsqrt()
            if other.is_integer():
                return self._unary("pow", (int(other),))
        other = LazyTensor._as_lazy(other)
        if other.ndim not in (1, self.ndim):
            raise ValueError(
                f"exponent of inner dimension {other.ndim} does not fit a base of inner "
                f"dimension {self.ndim}; expected 1 or {self.ndim}"
            )
        return self._nary("powf", other)

    def power(self, other):
        return self**other

    def __rpow__(self, other):
        return LazyTensor._as_lazy(other)._nary("powf", self)

    def __or__(self, other):
        """Scalar product ``(x | y)`` along the inner dimension."""
        return self._nary("scalprod", other)

    def __ror__(self, other):
        return LazyTensor._as_lazy(other)._nary("scalprod", self)

    # Comparisons (0/1 valued) -----------------------------------------
    def __eq__(self, other):  # type: ignore[override]
        return self._nary("eq", other)

    def __ne__(self, other):  # type: ignore[override]
        return self._nary("ne", other)

    def __lt__(self, other):
        return self._nary("lt", other)

    def __le__(self, other):
        return self._nary("le", other)

    def __gt__(self, other):
        return self._nary("gt", other)

    def __ge__(self, other):
        return self._nary("ge", other)

    # Elementwise functions with arguments ------------------------------
    def atan2(self, other):
        """Elementwise ``atan2(self, other)``."""
        return self._nary("atan2", other)

    def sinc(self):
        """Normalised sinc, ``sin(pi x) / (pi x)``."""
        return (math.pi * self).sinxdivx()

    def round(self, other: int = 0):
        """Round to ``other`` decimals."""
        if not is_int(other):
            raise TypeError(f"round: decimals must be an int, got {type(other).__name__}")
        return self._unary("round", (other,))

    def clamp(self, other1, other2):
        """Clamp to ``[other1, other2]`` (numbers or LazyTensors)."""
        if is_int(other1) and is_int(other2):
            return self._unary("clampint", (other1, other2))
        return self._nary("clamp", other1, other2)

    def clampint(self, a: int, b: int):
        return self._unary("clampint", (a, b))

    def ifelse(self, other1, other2):
        """``other1`` where ``self >= 0``, ``other2`` elsewhere."""
        return self._nary("ifelse", other1, other2)

    def mod(self, modulus, offset=0):
        """``x - modulus * floor((x - offset) / modulus)``."""
        return self._nary("mod", modulus, offset)

    # Vector operations ---------------------------------------------------
    def norm(self, dim):
        if dim not in (-1, len(self._shape) - 1):
            raise ValueError(f"norm: only the inner dimension (-1) is supported, got dim={dim}")
        return self.norm2()

    def sqdist(self, other):
        """``|x - y|^2``."""
        return self._nary("sqdist", other)

    def weightedsqnorm(self, other):
        """``x^T S x`` with weights ``S`` of dim 1 (isotropic), D (diagonal)
        or D*D (full, row-major)."""
        return LazyTensor._as_lazy(other)._nary("weightedsqnorm", self)

    def weightedsqdist(self, g, s):
        """``(x - g)^T S (x - g)``, see :meth:`weightedsqnorm`."""
        return (self - g).weightedsqnorm(s)

    def elem(self, i: int):
        """The coordinate ``x[i]``."""
        if not is_int(i):
            raise TypeError(f"elem: index must be an int, got {type(i).__name__}")
        return self._unary("elem", (i,))

    def extract(self, i: int, d: int):
        """The coordinates ``x[i:i+d]``."""
        if not (is_int(i) and is_int(d)):
            raise TypeError("extract: start and length must be ints")
        return self._unary("extract", (i, d))

    def __getitem__(self, key):
        """``x[k]``, ``x[a:b]`` or ``x[..., :, :, k]``: inner dimension only."""
        if isinstance(key, tuple):
            rest, last = key[:-1], key[-1]
            if key and key[0] is Ellipsis:
                rest = rest[1:]
            if (
                len(key) == 0
                or any(r != slice(None) for r in rest)
                or (key[0] is not Ellipsis and len(key) != len(self._shape))
            ):
                raise ValueError(
                    "LazyTensor indexing acts on the inner dimension only: use x[k], "
                    "x[a:b] or x[:, :, ..., k] with one ':' per other axis"
                )
            key = last
        if isinstance(key, slice):
            if key.step not in (None, 1):
                raise ValueError(f"slice step {key.step} unsupported; expected 1")
            start, stop, _ = key.indices(self.ndim)
            return self.extract(start, stop - start)
        if is_int(key):
            if not -self.ndim <= key < self.ndim:
                raise ValueError(f"elem: index {key} out of range for inner dimension {self.ndim}")
            return self.elem(key % self.ndim)
        raise TypeError(f"LazyTensor index must be an int or a slice, got {type(key).__name__}")

    def one_hot(self, D: int):
        """One-hot vector of dimension D at index ``round(x)``."""
        if not is_int(D) or D < 1:
            raise ValueError(f"one_hot: D must be a positive int, got {D!r}")
        return self._unary("onehot", (D,))

    def concat(self, other):
        """Concatenation along the inner dimension."""
        return self._nary("concat", other)

    @staticmethod
    def concatenate(tuple_of_lt: Sequence[LazyTensor], axis: int = -1):
        if axis not in (-1,) and not (tuple_of_lt and axis == len(tuple_of_lt[0]._shape) - 1):
            raise ValueError(f"concatenate: only the inner axis (-1) is supported, got {axis}")
        if len(tuple_of_lt) == 0:
            raise ValueError("concatenate: expected at least one LazyTensor")
        out = tuple_of_lt[0]
        for t in tuple_of_lt[1:]:
            out = out.concat(t)
        return out

    @staticmethod
    def cat(tuple_of_lt: Sequence[LazyTensor], dim: int):
        return LazyTensor.concatenate(tuple_of_lt, dim)

    def matvecmult(self, other):
        """Matrix (row-major, dim n*p) times vector (dim p): dim n."""
        return self._nary("matvecmult", other)

    def vecmatmult(self, other):
        """Vector (dim n) times matrix (row-major, dim n*p): dim p."""
        return self._nary("vecmatmult", other)

    def tensorprod(self, other):
        """Outer product (dims n and p): dim n*p, row-major."""
        return self._nary("tensorprod", other)

    # Complex numbers (lazytensor/complex.py) ----------------------------
    def real2complex(self):
        """``x`` as complex numbers with zero imaginary part (a ComplexLazyTensor)."""
        return self._as_complex("real2complex")

    def imag2complex(self):
        """``1j * x`` (a ComplexLazyTensor)."""
        return self._as_complex("imag2complex")

    def exp1j(self):
        """``exp(1j * x)`` = ``cos(x) + 1j sin(x)`` (a ComplexLazyTensor)."""
        return self._as_complex("exp1j")

    def _as_complex(self, op: str):
        return _complex.wrap(self, ir.make(op, self.formula))

    @property
    def real(self):
        """The real part of a real LazyTensor: itself (as NumPy's ``.real``)."""
        return self

    @property
    def imag(self):
        """The imaginary part of a real LazyTensor: 0 (as NumPy's ``.imag``)."""
        return self * 0

    def conj(self):
        """The conjugate of a real LazyTensor: itself."""
        return self

    def angle(self):
        """The argument of real numbers: 0 for x >= 0, pi for x < 0 (``atan2(0, x)``)."""
        return LazyTensor._as_lazy(0)._nary("atan2", self)

    def _combine(self, build, *others) -> LazyTensor:
        """``build(*formulas)`` (an IR builder) of this LazyTensor and ``others``."""
        formulas, joined = join([self] + [LazyTensor._as_lazy(o) for o in others])
        return LazyTensor._new(build(*formulas), *joined)

    # Symbolic gradient ------------------------------------------------
    def grad(self, other: LazyTensor, gradin) -> LazyTensor:
        """The LazyTensor ``sum_k gradin_k * d self_k / d other`` (pykeops' ``grad``).

        ``other`` must be a variable (``Vi(x)``, ``Vj(y)`` or ``Pm(p)``) of
        this formula; ``gradin`` has the inner dimension of ``self``. The
        result is a formula like any other, so it can be reduced or
        differentiated again.

        Example
        -------
        >>> import numpy as np
        >>> x, y = np.random.rand(5, 2), np.random.rand(4, 2)
        >>> g = Vi(x).sqdist(Vj(y)).grad(Vi(x), 1.0)   # 2 (x_i - y_j)
        >>> g.sum(1).shape
        (5, 2)
        """
        other = LazyTensor._as_lazy(other)
        if other.formula.op != "var":
            raise ValueError(
                "grad: other must be a variable (Vi(x), Vj(y) or Pm(p)), got a formula"
            )
        gradin = LazyTensor._as_lazy(gradin)
        if gradin.formula.dim not in (1, self.formula.dim):
            raise ValueError(
                f"grad: gradin has inner dimension {gradin.formula.dim}; expected "
                f"{self.formula.dim} (the dimension of the formula)"
            )
        (f, v, g), joined = join([self, other, gradin], ("the formula", "other", "gradin"))
        if v.attrs[0] >= len(self.variables):
            raise ValueError(
                "grad: other is not a variable of this formula (pass the LazyTensor used "
                "to build it, e.g. X = Vi(x); F = f(X); F.grad(X, e))"
            )
        if g.dim != f.dim:
            g = ir.make("mul", g, ir.const(1, f.dim))
        return LazyTensor._new(vjp(f, v, g), *joined)

    # ------------------------------------------------------------------
    # Transpose
    # ------------------------------------------------------------------
    def t(self) -> LazyTensor:
        """Swap the i and j axes: ``K.t()[j, i] == K[i, j]`` (and the halves of ``ranges``)."""
        out = type(self)._new(
            ir.swap_ij(self.formula),
            self.variables,
            ir.swap_cats(self.cats),
            self.nj,
            self.ni,
            self.batchdims,
            self._kind,
        )
        if self.ranges is not None:
            out._ranges = swap_axes(self.ranges)
        return out

    @property
    def T(self) -> LazyTensor:
        return self.t()


def carry_ranges(out: LazyTensor, operands) -> LazyTensor:
    """``out`` with the ``ranges`` of its operands (pykeops carries them through
    every operation; two different ones are an error)."""
    found = [r for o in operands if (r := getattr(o, "_ranges", None)) is not None]
    if found:
        out._ranges = join_ranges(found)
    return out


# ComplexLazyTensor subclasses LazyTensor: imported once LazyTensor exists
from . import complex as _complex  # noqa: E402


def _op_method(cls: type, name: str, doc: str):
    def method(self):
        return self._unary(name)

    method.__name__ = name
    method.__qualname__ = f"{cls.__name__}.{name}"
    method.__doc__ = doc
    return method


def _add_op_methods(cls: type) -> None:
    """Give ``cls`` a method for every unary op without attributes whose
    declared method is its own name (``x.exp()``, ``x.relu()``, ...), with
    the declaration's docstring; hand-written methods take precedence."""
    for op in ir.OPS.values():
        if op.arity == 1 and not op.nattrs and op.method == op.name and not hasattr(cls, op.name):
            setattr(cls, op.name, _op_method(cls, op.name, op.doc))


_add_op_methods(LazyTensor)


def Vi(x, dim: int | None = None) -> LazyTensor:
    """i-variable from an (M, D) or (M,) array (``Vi(index, dim)`` symbolic
    placeholders are not supported).

    >>> import numpy as np
    >>> Vi(np.zeros((5, 3))).shape
    (5, 1, 3)
    """
    _no_symbolic(x, dim, "Vi")
    return LazyTensor(x, axis=0)


def Vj(x, dim: int | None = None) -> LazyTensor:
    """j-variable from an (N, D) or (N,) array.

    >>> import numpy as np
    >>> Vj(np.zeros((4, 3))).shape
    (1, 4, 3)
    """
    _no_symbolic(x, dim, "Vj")
    return LazyTensor(x, axis=1)


def Pm(x, dim: int | None = None) -> LazyTensor:
    """Parameter from a number, list of numbers, or (D,) array.

    >>> Pm([1.0, 2.0]).ndim
    2
    """
    _no_symbolic(x, dim, "Pm")
    if arrays.is_array(x) and x.ndim >= 2:
        raise ValueError(f"Pm: expected a 0-d or 1-d array, got shape {tuple(x.shape)}")
    if isinstance(x, int) and not isinstance(x, bool):
        x = float(x)
    return LazyTensor(x, axis=2 if arrays.is_array(x) and x.ndim == 1 else None)


def _no_symbolic(x, dim, name):
    if dim is not None:
        raise NotImplementedError(
            f"{name}(index, dim): symbolic placeholder variables are not supported; pass an array"
        )
