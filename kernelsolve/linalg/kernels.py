"""Every stationary kernel of the library, each written once.

A kernel here is a Python function ``k(m, s, ...)`` of the *squared scaled
distance* ``s = |x - y|^2 / l^2`` (the periodic kernel: of the difference
``d``), written with the operators ``+ - * / **``, unary minus and the few
functions of a *math namespace* ``m``. The same definition then serves four
ways of computing, one namespace each:

* :data:`ENGINE`: ``s`` is an :class:`Expr` wrapping an engine IR node and the
  result is the formula the engine compiles (``r = sqrt(s)``);
  :data:`ENGINE_DIFFERENTIABLE` computes ``r = s * rsqrt(s)`` instead, which the
  engine evaluates as 0 with derivative 0 at ``s = 0`` (``rsqrt(0) = 0``), so that
  the symbolic gradients of the Matern kernels are finite on the diagonal;
* :data:`NUMPY`: NumPy arrays in, NumPy arrays out;
* :data:`TORCH`: torch tensors, differentiable by autograd (``r`` is
  ``sqrt(max(s, 1e-30))``: derivative 0 at ``s = 0``, like the engine's);
* :data:`LAZY`: :class:`~kernelsolve.LazyTensor` operands (or anything with the
  methods ``exp``, ``sqrt``, ...), giving a symbolic kernel matrix.

The radial basis functions of ``scipy.interpolate.RBFInterpolator`` (names,
signs and shape parameter ``s = (epsilon r)^2``), the Matern family and the
Gaussian, rational quadratic and periodic kernels of GPyTorch, and the
variogram shapes ``g`` of kriging (``g(0) = 0``, PyKrige's models) are all here.

Example
-------
>>> import numpy as np
>>> float(matern32(NUMPY, np.float64(0.0)))
1.0
>>> from kernelsolve.engine import ir
>>> s = ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2))
>>> gaussian(ENGINE, Expr(s)).node is ir.make("exp", ir.make("neg", s))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..engine import ir

__all__ = [
    "Expr",
    "MathNamespace",
    "ENGINE",
    "ENGINE_DIFFERENTIABLE",
    "NUMPY",
    "TORCH",
    "LAZY",
    "engine_formula",
    "gaussian",
    "exponential",
    "matern32",
    "matern52",
    "MATERN",
    "rational_quadratic",
    "periodic",
    "linear",
    "thin_plate_spline",
    "cubic",
    "quintic",
    "multiquadric",
    "inverse_multiquadric",
    "inverse_quadratic",
    "RADIAL_BASIS_FUNCTIONS",
    "spherical",
    "VARIOGRAM_SHAPES",
]


# ---------------------------------------------------------------------------
# Math namespaces
# ---------------------------------------------------------------------------
class Expr:
    """An engine IR node with Python operators (numbers become IR constants).

    Example
    -------
    >>> from kernelsolve.engine import ir
    >>> x = ir.var(0, ir.I, 1)
    >>> (1 - 2 * Expr(x)).node is ir.make("sub", ir.const(1), ir.make("mul", ir.const(2), x))
    True
    """

    __slots__ = ("node",)

    def __init__(self, node: ir.Node):
        self.node = node

    def __repr__(self) -> str:
        return f"Expr({self.node.key})"

    def __add__(self, other) -> Expr:
        return _make("add", self, other)

    def __radd__(self, other) -> Expr:
        return _make("add", other, self)

    def __sub__(self, other) -> Expr:
        return _make("sub", self, other)

    def __rsub__(self, other) -> Expr:
        return _make("sub", other, self)

    def __mul__(self, other) -> Expr:
        return _make("mul", self, other)

    def __rmul__(self, other) -> Expr:
        return _make("mul", other, self)

    def __truediv__(self, other) -> Expr:
        return _make("div", self, other)

    def __rtruediv__(self, other) -> Expr:
        return _make("div", other, self)

    def __neg__(self) -> Expr:
        return _make("neg", self)

    def __pow__(self, exponent) -> Expr:
        if isinstance(exponent, int) and not isinstance(exponent, bool):
            return Expr(ir.make("pow", self.node, attrs=(exponent,)))
        return _make("powf", self, exponent)


def _node(x) -> ir.Node:
    return x.node if isinstance(x, Expr) else ir.const(x)


def _make(op: str, *args) -> Expr:
    return Expr(ir.make(op, *(_node(a) for a in args)))


class MathNamespace:
    """The functions a kernel may call besides ``+ - * / **`` and unary minus.

    This base class calls them as methods of the operand (what LazyTensors and
    torch tensors offer); the other namespaces override what differs."""

    def exp(self, x):
        return x.exp()

    def sqrt(self, x):
        return x.sqrt()

    def rsqrt(self, x):
        return x.rsqrt()

    def inv(self, x):
        return x.inv()

    def xlogx(self, x):
        return x.xlogx()

    def square(self, x):
        return x.square()

    def sin(self, x):
        return x.sin()

    def sum(self, x):
        """Sum over the last (inner) dimension."""
        return x.sum(-1)

    def clamp(self, x, lo: float, hi: float):
        return x.clamp(lo, hi)

    def radius(self, s):
        """``r`` from ``s = r^2``."""
        return self.sqrt(s)


class _Engine(MathNamespace):
    def __init__(self, differentiable: bool):
        self.differentiable = differentiable

    def exp(self, x: Expr) -> Expr:
        return _make("exp", x)

    def sqrt(self, x: Expr) -> Expr:
        return _make("sqrt", x)

    def rsqrt(self, x: Expr) -> Expr:
        return _make("rsqrt", x)

    def inv(self, x: Expr) -> Expr:
        return _make("inv", x)

    def xlogx(self, x: Expr) -> Expr:
        return _make("xlogx", x)

    def square(self, x: Expr) -> Expr:
        return _make("square", x)

    def sin(self, x: Expr) -> Expr:
        return _make("sin", x)

    def sum(self, x: Expr) -> Expr:
        return _make("sum", x)

    def clamp(self, x: Expr, lo: float, hi: float) -> Expr:
        return _make("clamp", x, lo, hi)

    def radius(self, s: Expr) -> Expr:
        # s * rsqrt(s): 0 at s = 0 with derivative 0 there (rsqrt(0) = 0 in the
        # engine), where sqrt(s) would put 0 * inf = NaN in a gradient
        return s * self.rsqrt(s) if self.differentiable else self.sqrt(s)


class _Numpy(MathNamespace):
    def exp(self, x):
        return np.exp(x)

    def sqrt(self, x):
        return np.sqrt(x)

    def rsqrt(self, x):
        return 1 / np.sqrt(x)

    def inv(self, x):
        return 1 / x

    def xlogx(self, x):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)

    def square(self, x):
        return np.square(x)

    def sin(self, x):
        return np.sin(x)

    def clamp(self, x, lo: float, hi: float):
        return np.clip(x, lo, hi)


class _Torch(MathNamespace):
    def inv(self, x):
        return x.reciprocal()

    def xlogx(self, x):
        return x.xlogy(x)

    def radius(self, s):
        # derivative 0 at s = 0 (the clamp), as the engine's s * rsqrt(s)
        return s.clamp_min(1e-30).sqrt()


#: Engine formulas (``s`` an :class:`Expr`), ``r = sqrt(s)``.
ENGINE = _Engine(differentiable=False)
#: Engine formulas whose symbolic gradient is finite at ``s = 0``.
ENGINE_DIFFERENTIABLE = _Engine(differentiable=True)
#: NumPy arrays.
NUMPY = _Numpy()
#: torch tensors (autograd).
TORCH = _Torch()
#: LazyTensors.
LAZY = MathNamespace()


def engine_formula(kernel: Callable, s: ir.Node, *args, differentiable: bool = False) -> ir.Node:
    """The engine formula ``kernel(s, *args)`` of an IR node ``s`` (args: numbers or nodes).

    Example
    -------
    >>> from kernelsolve.engine import ir
    >>> s = ir.var(0, ir.I, 1)
    >>> engine_formula(matern32, s).dim, engine_formula(exponential, s).op
    (1, 'exp')
    """
    m = ENGINE_DIFFERENTIABLE if differentiable else ENGINE
    wrapped = [Expr(a) if isinstance(a, ir.Node) else a for a in args]
    return kernel(m, Expr(s), *wrapped).node


# ---------------------------------------------------------------------------
# Positive definite kernels of s = |x - y|^2 / l^2
# ---------------------------------------------------------------------------
def gaussian(m: MathNamespace, s):
    """``exp(-s)`` (GPyTorch's RBF kernel is ``gaussian(s / 2)``)."""
    return m.exp(-s)


def exponential(m: MathNamespace, s):
    """Matern 1/2: ``exp(-r)``."""
    return m.exp(-m.radius(s))


def matern32(m: MathNamespace, s):
    """Matern 3/2: ``(1 + u) exp(-u)``, ``u = sqrt(3) r``."""
    u = math.sqrt(3.0) * m.radius(s)
    return (1 + u) * m.exp(-u)


def matern52(m: MathNamespace, s):
    """Matern 5/2: ``(1 + u + u^2 / 3) exp(-u)``, ``u = sqrt(5) r``."""
    u = math.sqrt(5.0) * m.radius(s)
    return (1 + u + (5.0 / 3.0) * s) * m.exp(-u)


#: The Matern kernels by smoothness ``nu`` (their closed forms).
MATERN: dict[float, Callable] = {0.5: exponential, 1.5: matern32, 2.5: matern52}


def rational_quadratic(m: MathNamespace, s, alpha):
    """``(1 + s / (2 alpha))^(-alpha)``."""
    return (1 + s / (2 * alpha)) ** (-alpha)


def periodic(m: MathNamespace, d, u, v):
    """``exp(-2 sum_k v_k sin^2(u_k d_k))`` of the difference ``d`` (GPyTorch's
    periodic kernel with ``u = pi / period`` and ``v = 1 / lengthscale``)."""
    return m.exp(-2 * m.sum(v * m.square(m.sin(u * d))))


# ---------------------------------------------------------------------------
# Radial basis functions of s = (epsilon r)^2, scipy's names and signs
# ---------------------------------------------------------------------------
def linear(m: MathNamespace, s):
    """``-r``."""
    return -m.sqrt(s)


def thin_plate_spline(m: MathNamespace, s):
    """``r^2 log r = s log(s) / 2``."""
    return 0.5 * m.xlogx(s)


def cubic(m: MathNamespace, s):
    """``r^3``."""
    return s * m.sqrt(s)


def quintic(m: MathNamespace, s):
    """``-r^5``."""
    return -(m.square(s) * m.sqrt(s))


def multiquadric(m: MathNamespace, s):
    """``-sqrt(1 + r^2)``."""
    return -m.sqrt(s + 1)


def inverse_multiquadric(m: MathNamespace, s):
    """``1 / sqrt(1 + r^2)``."""
    return m.rsqrt(s + 1)


def inverse_quadratic(m: MathNamespace, s):
    """``1 / (1 + r^2)``."""
    return m.inv(s + 1)


#: ``scipy.interpolate.RBFInterpolator``'s kernels by name.
RADIAL_BASIS_FUNCTIONS: dict[str, Callable] = {
    f.__name__: f
    for f in (
        linear,
        thin_plate_spline,
        cubic,
        quintic,
        multiquadric,
        inverse_multiquadric,
        inverse_quadratic,
        gaussian,
    )
}


# ---------------------------------------------------------------------------
# Variogram shapes g(s), g(0) = 0, s = (h / length)^2
# ---------------------------------------------------------------------------
def spherical(m: MathNamespace, s):
    """``1.5 u - 0.5 u^3`` with ``u = min(r, 1)``."""
    u = m.clamp(m.radius(s), 0.0, 1.0)
    return 1.5 * u - 0.5 * u**3


def _power(m: MathNamespace, s, exponent):
    return s ** (exponent / 2.0)


def _matern_variogram(m: MathNamespace, s, nu):
    return 1 - MATERN[nu](m, s)


#: ``g(m, s, key)`` by PyKrige model name (``key``: the power model's exponent,
#: the Matern ``nu``; ignored by the others).
VARIOGRAM_SHAPES: dict[str, Callable] = {
    "linear": lambda m, s, key: m.radius(s),
    "power": _power,
    "gaussian": lambda m, s, key: 1 - gaussian(m, s),
    "exponential": lambda m, s, key: 1 - exponential(m, s),
    "spherical": lambda m, s, key: spherical(m, s),
    "matern": _matern_variogram,
}
