"""LazyTensor: a symbolic matrix K_ij = F(x_i, y_j, p), never stored.

A LazyTensor holds a formula (an :mod:`~kernelsolve.engine.ir` node) and the
arrays bound to its variables. Operators build new formulas; reductions
(``sum``, ``logsumexp``, ``argKmin``, ``@``, ...) hand the formula and the
arrays to :func:`kernelsolve.engine.dispatch.reduce` and return arrays of the
caller's library.

The semantics are pykeops': code written for ``pykeops.torch.LazyTensor`` or
``pykeops.numpy.LazyTensor`` runs after changing the import.

>>> import numpy as np
>>> from kernelsolve import LazyTensor
>>> x, y = np.random.rand(100, 3), np.random.rand(200, 3)
>>> x_i, y_j = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
>>> K_ij = (-((x_i - y_j) ** 2).sum(-1)).exp()     # (100, 200) symbolic
>>> (K_ij @ np.ones(200)).shape
(100,)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from . import autograd
from .engine import arrays, dispatch, ir
from .engine.grad import vjp

_REDUCTION_KWARGS_IGNORED = (
    # Accepted for pykeops compatibility; they tune speed, not results.
    "enable_chunks",
    "sum_scheme",
    "device_id",
    "optional_flags",
    "use_fast_math",
)


class LazyTensor:
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
    """

    __slots__ = ("formula", "variables", "cats", "ni", "nj", "batchdims", "_kind", "_mm")

    # Make NumPy defer to our reflected operators: ``array * lazy`` calls
    # ``lazy.__rmul__`` instead of broadcasting over the LazyTensor.
    __array_ufunc__ = None
    __array_priority__ = 1000

    def __init__(self, x=None, axis=None):
        if x is None:  # internal: fields are set by _new
            return
        if type(x) is np.ndarray or type(x) is arrays.torch_tensor_type():
            self._init_array(x, axis)  # the common case first: no chain of type tests
            return
        if isinstance(x, LazyTensor):
            for s in LazyTensor.__slots__:
                setattr(self, s, getattr(x, s, None))
            return
        self.ni = self.nj = None
        self.batchdims = ()
        self._kind = None
        if isinstance(x, bool):
            raise TypeError("LazyTensor: x must be an array or a number, got bool")
        if isinstance(x, np.integer):
            x = int(x)
        if isinstance(x, int):
            if axis not in (None, 2):
                raise ValueError(f"LazyTensor: axis={axis} given for an integer constant")
            self.formula, self.variables, self.cats = ir.const(x), (), ()
            return
        if isinstance(x, (float, np.floating)):
            x = (float(x),)
        if isinstance(x, (list, tuple)):
            if axis not in (None, 2):
                raise ValueError(
                    f"LazyTensor: a list of numbers is a parameter; axis must be None "
                    f"or 2, got {axis}"
                )
            if len(x) == 0 or not all(
                isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in x
            ):
                raise TypeError("LazyTensor: a list must hold at least one number")
            leaf = tuple(float(v) for v in x)
            self.formula = ir.var(0, ir.P, len(leaf))
            self.variables, self.cats = (leaf,), (ir.P,)
            return
        if not arrays.is_array(x):
            raise TypeError(
                "LazyTensor: expected a NumPy array, a torch tensor, a number or a list "
                f"of numbers, got {type(x).__name__}"
            )
        self._init_array(x, axis)

    def _init_array(self, x, axis):
        kind = _kind_of(x)
        dt = kind.dtype
        if dt not in arrays.FLOAT_DTYPES:
            raise TypeError(
                f"LazyTensor: x has dtype {dt}; expected float16, bfloat16, float32 or float64"
            )
        shape = tuple(x.shape)
        if 0 in shape:
            raise ValueError(
                f"LazyTensor: x of shape {shape} is empty; expected no zero-size dimension"
            )
        if x.ndim >= 3:
            if axis is not None:
                raise ValueError(
                    f"LazyTensor: axis must not be given for a {x.ndim}-D array; the "
                    "category is read from the shape (..., M, 1, D) or (..., 1, N, D)"
                )
            m, n = shape[-3], shape[-2]
            if m == 1 and n == 1:
                leaf, cat = x[..., 0, 0, :], ir.P
            elif n == 1:
                leaf, cat = x[..., :, 0, :], ir.I
            elif m == 1:
                leaf, cat = x[..., 0, :, :], ir.J
            else:
                raise ValueError(
                    f"LazyTensor: x of shape {shape} is a full (M, N, D) array; expected "
                    "(..., M, 1, D) for an i-variable, (..., 1, N, D) for a j-variable or "
                    "(..., 1, 1, D) for a parameter"
                )
        elif x.ndim == 2:
            if axis not in (0, 1):
                raise ValueError(
                    f"LazyTensor: a 2-D array of shape {shape} needs axis=0 (indexed by i) "
                    f"or axis=1 (indexed by j), got axis={axis}"
                )
            leaf, cat = x, (ir.I if axis == 0 else ir.J)
        elif x.ndim == 1:
            if axis in (0, 1):  # a vector of N scalars indexed by i or j
                leaf, cat = x[:, None], (ir.I if axis == 0 else ir.J)
            elif axis in (None, 2):
                leaf, cat = x, ir.P
            else:
                raise ValueError(f"LazyTensor: axis must be None, 0, 1 or 2, got {axis}")
        else:  # 0-d
            if axis not in (None, 2):
                raise ValueError(f"LazyTensor: a 0-d array is a parameter; got axis={axis}")
            leaf, cat = x.reshape(1), ir.P
        lshape = tuple(leaf.shape)
        self.formula = ir.var(0, cat, lshape[-1])
        self.variables, self.cats = (leaf,), (cat,)
        self.ni = lshape[-2] if cat == ir.I else None
        self.nj = lshape[-2] if cat == ir.J else None
        self.batchdims = lshape[: len(lshape) - (1 if cat == ir.P else 2)]
        self._kind = kind

    @classmethod
    def _new(cls, formula, variables, cats, ni, nj, batchdims, kind):
        out = cls.__new__(cls)
        out.formula, out.variables, out.cats = formula, variables, cats
        out.ni, out.nj, out.batchdims, out._kind = ni, nj, batchdims, kind
        return out

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
        return LazyTensor._new(
            node, self.variables, self.cats, self.ni, self.nj, self.batchdims, self._kind
        )

    def _nary(self, op: str, *others, attrs: tuple = ()) -> LazyTensor:
        operands = [self] + [_as_lazy(o) for o in others]
        formulas, joined = _join(operands)
        node = ir.make(op, *formulas, attrs=attrs)
        return LazyTensor._new(node, *joined)

    def _binary(self, op: str, other) -> LazyTensor:
        """``_nary`` for one other operand (every arithmetic operator)."""
        if type(other) is not LazyTensor:
            other = _as_lazy(other)
        formulas, joined = _join((self, other))
        node = ir.make(op, formulas[0], formulas[1])
        return LazyTensor._new(node, *joined)

    # Arithmetic -------------------------------------------------------
    def __add__(self, other):
        return self._binary("add", other)

    def __radd__(self, other):
        return _as_lazy(other)._binary("add", self)

    def __sub__(self, other):
        return self._binary("sub", other)

    def __rsub__(self, other):
        return _as_lazy(other)._binary("sub", self)

    def __mul__(self, other):
        return self._binary("mul", other)

    def __rmul__(self, other):
        return _as_lazy(other)._binary("mul", self)

    def __truediv__(self, other):
        return self._binary("div", other)

    def __rtruediv__(self, other):
        return _as_lazy(other)._binary("div", self)

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
        other = _as_lazy(other)
        if other.ndim not in (1, self.ndim):
            raise ValueError(
                f"exponent of inner dimension {other.ndim} does not fit a base of inner "
                f"dimension {self.ndim}; expected 1 or {self.ndim}"
            )
        return self._nary("powf", other)

    def power(self, other):
        return self**other

    def __rpow__(self, other):
        return _as_lazy(other)._nary("powf", self)

    def __or__(self, other):
        """Scalar product ``(x | y)`` along the inner dimension."""
        return self._nary("scalprod", other)

    def __ror__(self, other):
        return _as_lazy(other)._nary("scalprod", self)

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

    # Elementwise functions ---------------------------------------------
    def abs(self):
        return self._unary("abs")

    def exp(self):
        return self._unary("exp")

    def log(self):
        return self._unary("log")

    def xlogx(self):
        """``x * log(x)``, 0 at 0."""
        return self._unary("xlogx")

    def inv(self):
        return self._unary("inv")

    def sin(self):
        return self._unary("sin")

    def cos(self):
        return self._unary("cos")

    def tan(self):
        return self._unary("tan")

    def asin(self):
        return self._unary("asin")

    def acos(self):
        return self._unary("acos")

    def atan(self):
        return self._unary("atan")

    def atan2(self, other):
        """Elementwise ``atan2(self, other)``."""
        return self._nary("atan2", other)

    def tanh(self):
        return self._unary("tanh")

    def sinh(self):
        return self._unary("sinh")

    def cosh(self):
        return self._unary("cosh")

    def sqrt(self):
        return self._unary("sqrt")

    def rsqrt(self):
        """``1 / sqrt(x)``, and 0 at 0 (pykeops' convention)."""
        return self._unary("rsqrt")

    def square(self):
        return self._unary("square")

    def sign(self):
        return self._unary("sign")

    def step(self):
        """1 where ``x >= 0``, 0 where ``x < 0``."""
        return self._unary("step")

    def relu(self):
        return self._unary("relu")

    def sinxdivx(self):
        """``sin(x) / x``, 1 at 0."""
        return self._unary("sinxdivx")

    def sinc(self):
        """Normalised sinc, ``sin(pi x) / (pi x)``."""
        return (math.pi * self).sinxdivx()

    def floor(self):
        return self._unary("floor")

    def round(self, other: int = 0):
        """Round to ``other`` decimals."""
        if not _is_int(other):
            raise TypeError(f"round: decimals must be an int, got {type(other).__name__}")
        return self._unary("round", (other,))

    def clamp(self, other1, other2):
        """Clamp to ``[other1, other2]`` (numbers or LazyTensors)."""
        if _is_int(other1) and _is_int(other2):
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
    def sqnorm2(self):
        return self._unary("sqnorm2")

    def norm2(self):
        return self._unary("norm2")

    def norm(self, dim):
        if dim not in (-1, len(self._shape) - 1):
            raise ValueError(f"norm: only the inner dimension (-1) is supported, got dim={dim}")
        return self.norm2()

    def normalize(self):
        """``x / |x|``, and 0 for the zero vector."""
        return self._unary("normalize")

    def sqdist(self, other):
        """``|x - y|^2``."""
        return self._nary("sqdist", other)

    def weightedsqnorm(self, other):
        """``x^T S x`` with weights ``S`` of dim 1 (isotropic), D (diagonal)
        or D*D (full, row-major)."""
        return _as_lazy(other)._nary("weightedsqnorm", self)

    def weightedsqdist(self, g, s):
        """``(x - g)^T S (x - g)``, see :meth:`weightedsqnorm`."""
        return (self - g).weightedsqnorm(s)

    def elem(self, i: int):
        """The coordinate ``x[i]``."""
        if not _is_int(i):
            raise TypeError(f"elem: index must be an int, got {type(i).__name__}")
        return self._unary("elem", (i,))

    def extract(self, i: int, d: int):
        """The coordinates ``x[i:i+d]``."""
        if not (_is_int(i) and _is_int(d)):
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
        if _is_int(key):
            if not -self.ndim <= key < self.ndim:
                raise ValueError(f"elem: index {key} out of range for inner dimension {self.ndim}")
            return self.elem(key % self.ndim)
        raise TypeError(f"LazyTensor index must be an int or a slice, got {type(key).__name__}")

    def one_hot(self, D: int):
        """One-hot vector of dimension D at index ``round(x)``."""
        if not _is_int(D) or D < 1:
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
        other = _as_lazy(other)
        if other.formula.op != "var":
            raise ValueError(
                "grad: other must be a variable (Vi(x), Vj(y) or Pm(p)), got a formula"
            )
        gradin = _as_lazy(gradin)
        if gradin.formula.dim not in (1, self.formula.dim):
            raise ValueError(
                f"grad: gradin has inner dimension {gradin.formula.dim}; expected "
                f"{self.formula.dim} (the dimension of the formula)"
            )
        formulas, joined = _join([self, other, gradin])
        f, v, g = formulas
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
        """Swap the i and j axes: ``K.t()[j, i] == K[i, j]``."""
        swap = {ir.I: ir.J, ir.J: ir.I, ir.P: ir.P}
        return LazyTensor._new(
            ir.swap_ij(self.formula),
            self.variables,
            tuple(swap[c] for c in self.cats),
            self.nj,
            self.ni,
            self.batchdims,
            self._kind,
        )

    @property
    def T(self) -> LazyTensor:
        return self.t()

    # ------------------------------------------------------------------
    # Reductions
    # ------------------------------------------------------------------
    def _axis(self, axis, dim) -> int:
        """0 (reduce over i) or 1 (reduce over j) from pykeops' axis/dim."""
        if dim is not None:
            axis = dim
        if axis is None:
            raise ValueError(
                f"axis (or dim) is required: {self.nbatchdims} reduces over i, "
                f"{self.nbatchdims + 1} over j"
            )
        nb = self.nbatchdims
        if _is_int(axis):
            if axis in (nb, nb + 1):
                return axis - nb
            if axis in (-3, -2):
                return axis + 3
        raise ValueError(
            f"axis={axis!r}: expected {nb} (reduce over i), {nb + 1} (reduce over j) "
            f"or {nb + 2} / -1 (the inner dimension, where supported)"
        )

    def _is_inner(self, axis, dim) -> bool:
        a = axis if dim is None else dim
        return a == -1 or a == len(self._shape) - 1

    def _reduce(self, name, axis, *, weight=None, K=None, **kwargs):
        if weight is None and not kwargs:  # the common call: nothing to join or parse
            return autograd.reduce(self.formula, name, self.variables, self.cats, axis=axis, K=K)
        opts = _reduction_options(kwargs)
        call = opts.pop("call")
        out = opts.pop("out")
        operands = [self] + ([_as_lazy(weight)] if weight is not None else [])
        formulas, (variables, cats, ni, nj, batch, kind) = _join(operands)
        weight_node = formulas[1] if weight is not None else None
        request = ReductionCall(formulas[0], name, variables, cats, axis, weight_node, K, opts)
        if not call:
            return request
        return _write_out(request(), out)

    def sum(self, axis=-1, dim=None, **kwargs):
        """Sum over i (axis = nbatchdims), over j (nbatchdims + 1), or over
        the inner dimension (axis=-1: returns a LazyTensor)."""
        if self._is_inner(axis, dim):
            return self._unary("sum")
        return self._reduce("sum", self._axis(axis, dim), **kwargs)

    def sum_reduction(self, axis=None, dim=None, **kwargs):
        return self._reduce("sum", self._axis(axis, dim), **kwargs)

    def _minmax(self, name, axis, dim, kwargs):
        if self._is_inner(axis, dim):
            return self._unary(name)
        return self._reduce(name, self._axis(axis, dim), **kwargs)

    def min(self, axis=-1, dim=None, **kwargs):
        """Minimum over i or j (NaN propagates, as ``np.min``), or over the
        inner dimension with axis=-1."""
        return self._minmax("min", axis, dim, kwargs)

    def max(self, axis=-1, dim=None, **kwargs):
        return self._minmax("max", axis, dim, kwargs)

    def argmin(self, axis=-1, dim=None, **kwargs):
        """int64 index of the minimum (the first NaN if any, as
        ``np.argmin``); over the inner dimension with axis=-1."""
        return self._minmax("argmin", axis, dim, kwargs)

    def argmax(self, axis=-1, dim=None, **kwargs):
        return self._minmax("argmax", axis, dim, kwargs)

    def min_reduction(self, axis=None, dim=None, **kwargs):
        return self._reduce("min", self._axis(axis, dim), **kwargs)

    def max_reduction(self, axis=None, dim=None, **kwargs):
        return self._reduce("max", self._axis(axis, dim), **kwargs)

    def argmin_reduction(self, axis=None, dim=None, **kwargs):
        return self._reduce("argmin", self._axis(axis, dim), **kwargs)

    def argmax_reduction(self, axis=None, dim=None, **kwargs):
        return self._reduce("argmax", self._axis(axis, dim), **kwargs)

    def min_argmin(self, axis=None, dim=None, **kwargs):
        """(values, int64 indices) of the minimum."""
        return self._reduce("min_argmin", self._axis(axis, dim), **kwargs)

    def max_argmax(self, axis=None, dim=None, **kwargs):
        return self._reduce("max_argmax", self._axis(axis, dim), **kwargs)

    min_argmin_reduction = min_argmin
    max_argmax_reduction = max_argmax

    def Kmin(self, K, axis=None, dim=None, **kwargs):
        """The K smallest values, sorted; shape (..., n, K) or (..., n, K, D).
        NaN ranks after every number, as in ``np.sort``."""
        return self._reduce("kmin", self._axis(axis, dim), K=K, **kwargs)

    def argKmin(self, K, axis=None, dim=None, **kwargs):
        """int64 indices of the K smallest values (K nearest neighbours)."""
        return self._reduce("argkmin", self._axis(axis, dim), K=K, **kwargs)

    def Kmin_argKmin(self, K, axis=None, dim=None, **kwargs):
        return self._reduce("kmin_argkmin", self._axis(axis, dim), K=K, **kwargs)

    Kmin_reduction = Kmin
    argKmin_reduction = argKmin
    Kmin_argKmin_reduction = Kmin_argKmin

    def logsumexp(self, axis=None, dim=None, weight=None, **kwargs):
        """``log sum exp(F)`` over i or j (per coordinate of F); with
        ``weight=w``: ``log sum exp(F) * w`` for a scalar F."""
        a = self._axis(axis, dim)
        if weight is None:
            return self._reduce("logsumexp", a, **kwargs)
        return self._reduce("logsumexp_weight", a, weight=weight, **kwargs)

    logsumexp_reduction = logsumexp

    def sumsoftmaxweight(self, weight, axis=None, dim=None, **kwargs):
        """``sum exp(F) * w / sum exp(F)`` for a scalar F."""
        return self._reduce("sumsoftmaxweight", self._axis(axis, dim), weight=weight, **kwargs)

    sumsoftmaxweight_reduction = sumsoftmaxweight

    # Linear operator ---------------------------------------------------
    def __matmul__(self, v):
        """``K @ v``: sum_j K_ij v_j for v of shape (N,), (N, E) or
        (..., N, E); returns (M,), (M, E) or (..., M, E)."""
        t = type(v)
        if t is np.ndarray or t is arrays.torch_tensor_type():
            # K @ v again with v of the same kind and shape (an iterative solver,
            # a training loop): the product's plan is kept on K, so the call skips
            # building the product formula and looking the plan up
            try:
                sig, context, plan = self._mm
            except (AttributeError, TypeError):  # never multiplied, or copied empty
                sig = None
            if sig is not None and sig == (t, v.shape, v.dtype, _device_of(v)):
                leaf = v[:, None] if v.ndim == 1 else v
                leaves = self.variables + (leaf,)
                if context == dispatch.context() and not autograd.needs_grad(leaves):
                    Kv = dispatch.execute(plan, leaves)
                    return Kv[..., 0] if v.ndim == 1 else Kv
        return self._matmul(v)

    def _matmul(self, v):
        if self.formula.dim != 1:
            raise ValueError(
                f"K @ v needs a scalar formula (inner dimension 1); K has inner "
                f"dimension {self.formula.dim}"
            )
        if not arrays.is_array(v):
            raise TypeError(
                f"K @ v: v must be a NumPy array or torch tensor, got {type(v).__name__}"
            )
        if v.ndim == 0:
            raise ValueError("K @ v: v must have at least one dimension")
        n = v.shape[0] if v.ndim == 1 else v.shape[-2]
        if self.nj is not None and n != self.nj:
            raise ValueError(f"K @ v: v has {n} rows; expected {self.nj} (the j axis of K)")
        if v.ndim <= 2:
            vj = LazyTensor(v, axis=1)
        else:
            vj = LazyTensor(v.reshape(tuple(v.shape[:-2]) + (1,) + tuple(v.shape[-2:])))
        prod = self._binary("mul", vj)  # v may bring batch dims of its own
        leaves = prod.variables
        if autograd.needs_grad(leaves):
            Kv = prod._reduce("sum", 1)
        else:
            plan = dispatch.plan(prod.formula, "sum", leaves, prod.cats, axis=1)
            if (
                v.ndim <= 2
                and len(leaves) == len(self.variables) + 1
                and leaves[-1] is vj.variables[0]
            ):
                # v's array was appended, not merged with one of K's: __matmul__
                # can rebuild these leaves itself next time
                sig = (type(v), v.shape, v.dtype, _device_of(v))
                self._mm = (sig, dispatch.context(), plan)
            Kv = dispatch.execute(plan, leaves)
        return Kv[..., 0] if v.ndim == 1 else Kv

    def solve(self, b, alpha: float = 1e-10, **kwargs):
        """Solve ``(alpha I + K) a = b`` by preconditioned conjugate gradients.

        ``K`` (this LazyTensor) must be a scalar kernel built from the same
        points on both sides. See :func:`kernelsolve.linalg.solve.solve` for
        the options (rtol, maxiter, precond, rank, return_info, ...).

        Example
        -------
        >>> import numpy as np
        >>> x = np.random.default_rng(0).random((500, 2))
        >>> K = (-Vi(x).sqdist(Vj(x)) * 20.0).exp()
        >>> a = K.solve(np.ones(500), alpha=0.1)
        >>> a.shape
        (500,)
        """
        from .linalg.solve import solve

        return solve(self, b, alpha, **kwargs)

    def matvec(self, v):
        return self @ v

    def rmatvec(self, v):
        return self.T @ v


class ReductionCall:
    """A reduction that is ready to run: ``call=False`` returns one.

    Calling it with no argument evaluates on the bound arrays; calling it
    with arrays rebinds the variables in order (same shapes' categories).
    """

    def __init__(self, formula, reduction, variables, cats, axis, weight, K, opts):
        self.formula = formula
        self.reduction = reduction
        self.variables = variables
        self.cats = cats
        self.axis = axis
        self.weight = weight
        self.K = K
        self.opts = opts

    def __call__(self, *args, **kwargs):
        variables = self.variables
        if args:
            if len(args) != len(variables):
                raise ValueError(
                    f"expected {len(variables)} arrays (one per variable), got {len(args)}"
                )
            variables = tuple(args)
        opts = dict(self.opts)
        opts.update(_reduction_options(kwargs, for_call=True))
        return autograd.reduce(
            self.formula,
            self.reduction,
            variables,
            self.cats,
            axis=self.axis,
            weight=self.weight,
            K=self.K,
            **opts,
        )

    def __repr__(self):
        return (
            f"ReductionCall({self.reduction}, axis={'ij'[self.axis]}, formula={self.formula.key})"
        )


# ----------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------


# (array type, dtype, device) -> ArrayKind: one dict lookup per LazyTensor
# construction instead of three library queries (a warm call builds several).
_KINDS: dict = {}


def _kind_of(x) -> dispatch.ArrayKind:
    """Library, dtype name and device of the array ``x``."""
    t = type(x)
    key = (t, x.dtype, "cpu" if t is np.ndarray else x.device)
    kind = _KINDS.get(key)
    if kind is None:
        kind = dispatch.ArrayKind(arrays.library(x), arrays.dtype_name(x), arrays.device(x))
        if len(_KINDS) < 256:
            _KINDS[key] = kind
    return kind


def _device_of(x):
    """The device attribute of a torch tensor, None for a NumPy array."""
    return None if type(x) is np.ndarray else x.device


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _as_lazy(x) -> LazyTensor:
    if isinstance(x, LazyTensor):
        return x
    if x is None:
        raise TypeError(
            "LazyTensor operand: expected a LazyTensor, an array, a number or a list "
            "of numbers, got None"
        )
    return LazyTensor(x)


def _join(operands: Sequence[LazyTensor]):
    """Merge the variable lists of ``operands``; returns their formulas
    renumbered into the merged list and the merged metadata."""
    if len(operands) == 2:
        a, b = operands
        if not b.variables or (b.variables is a.variables and b.cats == a.cats):
            # a constant, or the same arrays (x * x): nothing to merge or renumber
            return [a.formula, b.formula], _joined_meta(a, b, a.variables, a.cats)
        if not a.variables:
            return [a.formula, b.formula], _joined_meta(a, b, b.variables, b.cats)
    first = operands[0]
    variables = list(first.variables)
    cats = list(first.cats)
    formulas = [first.formula]
    ni, nj, batch, kind = first.ni, first.nj, first.batchdims, first._kind
    for op in operands[1:]:
        mapping = []
        for leaf, cat in zip(op.variables, op.cats):
            for k, (v, c) in enumerate(zip(variables, cats)):
                if v is leaf and c == cat:
                    mapping.append(k)
                    break
            else:
                variables.append(leaf)
                cats.append(cat)
                mapping.append(len(variables) - 1)
        mapping = tuple(mapping)
        same = mapping == tuple(range(len(mapping)))
        formulas.append(op.formula if same else ir.remap(op.formula, mapping))
        ni, nj, batch, kind = _merge_meta(ni, nj, batch, kind, op)
    return formulas, (tuple(variables), tuple(cats), ni, nj, batch, kind)


def _joined_meta(a: LazyTensor, b: LazyTensor, variables: tuple, cats: tuple) -> tuple:
    """The merged metadata of two operands whose variable lists need no merge."""
    ni, nj, batch, kind = _merge_meta(a.ni, a.nj, a.batchdims, a._kind, b)
    return variables, cats, ni, nj, batch, kind


def _merge_meta(ni, nj, batch, kind, op: LazyTensor) -> tuple:
    """(ni, nj, batch, kind) joined with ``op``'s; checks counts, batch broadcast, kind."""
    if op.batchdims != batch:
        try:
            batch = tuple(np.broadcast_shapes(batch, op.batchdims))
        except ValueError:
            raise ValueError(
                f"batch dimensions {batch} and {op.batchdims} do not broadcast"
            ) from None
    if ni != op.ni:
        ni = _same_count("i", ni, op.ni)
    if nj != op.nj:
        nj = _same_count("j", nj, op.nj)
    if kind != op._kind:
        kind = _same_kind(kind, op._kind)
    return ni, nj, batch, kind


def _same_count(axis: str, a, b):
    if a is not None and b is not None and a != b:
        raise ValueError(
            f"{axis}-variables with different numbers of points: {a} and {b}; "
            f"every variable indexed by {axis} must have the same length"
        )
    return a if a is not None else b


def _same_kind(a, b):
    if a is None or b is None:
        return a or b
    if a.lib != b.lib:
        raise TypeError(
            f"cannot mix {a.lib} and {b.lib} arrays in one formula; convert one of them"
        )
    if a.dtype != b.dtype:
        raise TypeError(
            f"cannot mix {a.dtype} and {b.dtype} arrays in one formula; cast one of them"
        )
    if a.device != b.device:
        raise ValueError(f"arrays on different devices in one formula: {a.device} and {b.device}")
    return a


def _reduction_options(kwargs: dict, for_call: bool = False) -> dict:
    """pykeops reduction keywords -> dispatch options."""
    opts = {} if for_call else {"call": True, "out": None, "backend": None, "acc_dtype": None}
    for key, value in kwargs.items():
        if key == "call" and not for_call:
            opts["call"] = bool(value)
        elif key == "out" and not for_call:
            opts["out"] = value
        elif key == "backend":
            dispatch.normalize_backend(value)  # validates early
            opts["backend"] = value
        elif key == "dtype_acc":
            opts["acc_dtype"] = None if value in (None, "auto") else str(value)
        elif key == "use_double_acc":
            if value:
                opts["acc_dtype"] = "float64"
        elif key == "ranges":
            if value is not None:
                raise NotImplementedError("ranges=: block-sparse reductions are not supported yet")
        elif key in _REDUCTION_KWARGS_IGNORED:
            pass
        else:
            raise TypeError(f"unexpected keyword argument {key!r} for a reduction")
    return opts


def _write_out(result, out):
    if out is None:
        return result
    if isinstance(result, tuple):
        raise ValueError("out= is not supported for reductions with several outputs")
    if not arrays.is_array(out) or arrays.library(out) != arrays.library(result):
        raise TypeError(
            f"out= must be a {arrays.library(result)} array like the result, "
            f"got {type(out).__name__}"
        )
    if tuple(out.shape) != tuple(result.shape):
        raise ValueError(f"out has shape {tuple(out.shape)}; expected {tuple(result.shape)}")
    if isinstance(out, np.ndarray):
        out[...] = result
    else:
        out.copy_(result)
    return out


def Vi(x, dim: int | None = None) -> LazyTensor:
    """i-variable from an (M, D) or (M,) array (or ``Vi(index, dim)``
    symbolic placeholders are not supported)."""
    _no_symbolic(x, dim, "Vi")
    return LazyTensor(x, axis=0)


def Vj(x, dim: int | None = None) -> LazyTensor:
    """j-variable from an (N, D) or (N,) array."""
    _no_symbolic(x, dim, "Vj")
    return LazyTensor(x, axis=1)


def Pm(x, dim: int | None = None) -> LazyTensor:
    """Parameter from a number, list of numbers, or (D,) array."""
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
