"""scikit-learn's kernel objects translated to engine formulas.

:func:`translate` walks a kernel of ``sklearn.gaussian_process.kernels`` and
returns a :class:`Translation`: one scalar engine formula
``F(x_i, x_j, p)`` of the points (variables 0 and 1, dimension ``d``) and of
the vector ``p`` (variable 2, a parameter) of the natural logarithms of *all*
the kernel's hyperparameters, fixed ones included, so that a change of value
never changes the formula (no recompilation during the optimisation), plus
the diagonal shift the kernel adds to the training covariance only
(``WhiteKernel``: scikit-learn's ``k(X) = noise I`` and ``k(X, Y) = 0``).
Every hyperparameter enters as ``exp(p_k)``, so the derivative with respect to
scikit-learn's ``theta`` (the logarithms of the free hyperparameters, in the
same order) is the forward-mode derivative of ``F`` (:func:`.engine.grad.jvp`)
along the coordinate ``p_k``.

Translated (exact types only: a subclass may override ``__call__``):
``ConstantKernel``, ``RBF`` (scalar or one length scale per feature),
``Matern`` (nu 0.5, 1.5, 2.5, inf; any other nu needs Bessel functions),
``RationalQuadratic``, ``ExpSineSquared``, ``WhiteKernel``, ``DotProduct``,
``Sum``, ``Product`` and ``Exponentiation``. A ``WhiteKernel`` is allowed in
sums and in products with a ``ConstantKernel``. Anything else raises
:class:`UntranslatableKernelError` naming the kernel.

Example
-------
>>> import numpy as np
>>> from sklearn.gaussian_process.kernels import RBF, WhiteKernel
>>> k = 2.0 * RBF(0.5) + WhiteKernel(0.1)
>>> t = translate(k, 3)
>>> t.n_params, t.free.tolist(), round(t.shift(t.params_of(k)), 6)
(3, [0, 1, 2], 0.1)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.gaussian_process import kernels as sk

from .. import autograd
from ..engine import grad, ir
from ..engine.request import ReductionOptions, ReductionRequest
from ..linalg import dense
from ..linalg import kernels as formulas
from ..linalg.grid_product import GridKernelProduct
from ..linalg.operator import KernelOperator

__all__ = [
    "GRID_TARGET_ERROR",
    "EngineKernel",
    "GridAccuracyWarning",
    "SklearnKernel",
    "Translation",
    "UntranslatableKernelError",
    "check_products",
    "translate",
]


class UntranslatableKernelError(TypeError):
    """The kernel (or a part of it) has no engine formula."""


def _untranslatable(kernel, why: str) -> UntranslatableKernelError:
    return UntranslatableKernelError(f"cannot translate the kernel {kernel!r}: {why}")


@dataclass
class _Part:
    """A translated sub-kernel: its formula (None: zero off the diagonal),
    its training-diagonal shift as a sum of terms ``c * exp(sum p[idx])`` and,
    for a constant kernel, its value as one such term."""

    formula: ir.Node | None
    shift: list = field(default_factory=list)
    constant: tuple | None = None


@dataclass
class Translation:
    """A kernel as an engine formula; see the module docstring.

    Attributes
    ----------
    formula : ir.Node
        Scalar formula of ``x_i`` (var 0), ``x_j`` (var 1), ``p`` (var 2, P).
    n_features : int
    n_params : int
        Length of ``p`` (all hyperparameter values, fixed ones included).
    free : numpy.ndarray
        Indices into ``p`` of scikit-learn's ``theta``, in its order.
    shift_terms : list
        The training-diagonal shift: terms ``(c, indices)`` worth
        ``c * exp(sum(p[indices]))``.
    """

    formula: ir.Node
    n_features: int
    n_params: int
    free: np.ndarray
    shift_terms: list
    _gradients: list | None = None

    def params_of(self, kernel) -> np.ndarray:
        """``p`` of a kernel of the translated structure (``log`` of every value)."""
        values = [np.atleast_1d(np.asarray(v, dtype=float)) for v, _ in _slots(kernel)]
        with np.errstate(divide="ignore"):
            return np.log(np.concatenate(values)) if values else np.zeros(0)

    def shift(self, p: np.ndarray) -> float:
        """The diagonal the kernel adds to the training covariance."""
        return float(sum(c * math.exp(float(np.sum(p[list(idx)]))) for c, idx in self.shift_terms))

    def shift_gradient(self, p: np.ndarray) -> np.ndarray:
        """Derivative of :meth:`shift` with respect to ``theta`` (the free entries)."""
        out = np.zeros(self.n_params)
        for c, idx in self.shift_terms:
            value = c * math.exp(float(np.sum(p[list(idx)])))
            for k in idx:
                out[k] += value
        return out[self.free]

    def gradients(self) -> list[ir.Node]:
        """``dF/dtheta_k`` for each free hyperparameter (forward-mode, symbolic)."""
        if self._gradients is None:
            pv = _params_var(self.n_params)
            self._gradients = [grad.jvp(self.formula, {pv: _onehot(k, pv.dim)}) for k in self.free]
        return self._gradients

    def stacked_gradient(self) -> ir.Node:
        """The gradients as one formula of dimension ``len(free)``."""
        out = None
        for g in self.gradients():
            out = g if out is None else ir.make("concat", out, g)
        return out


def _params_var(n_params: int) -> ir.Node:
    return ir.var(2, ir.P, max(n_params, 1))


def _onehot(k: int, dim: int) -> ir.Node:
    parts = [ir.const(0, k)] if k else []
    parts.append(ir.const(1, 1))
    if dim - k - 1:
        parts.append(ir.const(0, dim - k - 1))
    out = parts[0]
    for p in parts[1:]:
        out = ir.make("concat", out, p)
    return out


_LEAVES = (
    sk.ConstantKernel,
    sk.RBF,
    sk.Matern,
    sk.RationalQuadratic,
    sk.ExpSineSquared,
    sk.WhiteKernel,
    sk.DotProduct,
)


def _slots(kernel):
    """``(value, hyperparameter)`` of every hyperparameter, in ``theta``'s order."""
    if type(kernel) in (sk.Sum, sk.Product):
        yield from _slots(kernel.k1)
        yield from _slots(kernel.k2)
    elif type(kernel) is sk.Exponentiation:
        yield from _slots(kernel.kernel)
    elif type(kernel) in _LEAVES:
        for h in kernel.hyperparameters:
            yield getattr(kernel, h.name), h
    else:
        raise _untranslatable(kernel, _why(kernel))


def _why(kernel) -> str:
    if isinstance(kernel, _LEAVES + (sk.Sum, sk.Product, sk.Exponentiation)):
        return (
            f"{type(kernel).__name__} subclasses {type(kernel).__mro__[1].__name__} and may "
            "compute something else; only scikit-learn's own classes are translated"
        )
    return (
        f"{type(kernel).__name__} has no engine formula (translated: ConstantKernel, RBF, "
        "Matern with nu in 0.5, 1.5, 2.5, inf, RationalQuadratic, ExpSineSquared, WhiteKernel, "
        "DotProduct and their sums, products and powers)"
    )


def translate(kernel, n_features: int) -> Translation:
    """The :class:`Translation` of a scikit-learn kernel for ``n_features``-dimensional points.

    Raises
    ------
    UntranslatableKernelError
        Naming the kernel (or part) that has no formula.

    Example
    -------
    >>> from sklearn.gaussian_process.kernels import Matern
    >>> translate(Matern(length_scale=[1.0, 2.0], nu=1.5), 2).n_params
    2
    """
    slots = list(_slots(kernel))
    n_params = sum(h.n_elements for _, h in slots)
    free, start = [], 0
    for _, h in slots:
        if not h.fixed:
            free.extend(range(start, start + h.n_elements))
        start += h.n_elements
    builder = _Builder(n_features, n_params)
    part = builder.part(kernel)
    f = part.formula
    if f is None or not {0, 1} <= {v.attrs[0] for v in ir.variables(f)}:
        raise _untranslatable(
            kernel,
            "it does not depend on the points off the diagonal (a constant or white kernel)",
        )
    return Translation(f, n_features, n_params, np.asarray(free, dtype=np.int64), part.shift)


class _Builder:
    """Builds the formula of each part, taking hyperparameter slots in order."""

    def __init__(self, d: int, n_params: int):
        self.d, self.next = d, 0
        self.p = _params_var(n_params)
        self.xi, self.xj = ir.var(0, ir.I, d), ir.var(1, ir.J, d)

    def take(self, n: int = 1) -> tuple[ir.Node, tuple]:
        """``exp`` of the next ``n`` slots of ``p`` (a node of dimension ``n``)."""
        k = self.next
        self.next += n
        node = (
            ir.make("elem", self.p, attrs=(k,))
            if n == 1
            else ir.make("extract", self.p, attrs=(k, n))
        )
        return node, tuple(range(k, k + n))

    def value(self, n: int = 1) -> ir.Node:
        return ir.make("exp", self.take(n)[0])

    def part(self, kernel) -> _Part:
        kind = type(kernel)
        if kind is sk.Sum:
            a, b = self.part(kernel.k1), self.part(kernel.k2)
            return _Part(_add(a.formula, b.formula), a.shift + b.shift)
        if kind is sk.Product:
            return self._product(kernel)
        if kind is sk.Exponentiation:
            a = self.part(kernel.kernel)
            if a.shift or a.formula is None:
                raise _untranslatable(kernel, "a WhiteKernel raised to a power")
            e = kernel.exponent
            if float(e).is_integer():
                return _Part(ir.make("pow", a.formula, attrs=(int(e),)))
            return _Part(ir.make("powf", a.formula, ir.const(float(e))))
        if kind is sk.ConstantKernel:
            node, idx = self.take()
            return _Part(ir.make("exp", node), constant=(1.0, idx))
        if kind is sk.WhiteKernel:
            _, idx = self.take()
            return _Part(None, [(1.0, idx)])
        if kind is sk.DotProduct:
            (node, _) = self.take()
            sigma2 = ir.make("exp", ir.make("mul", ir.const(2), node))
            return _Part(ir.make("add", sigma2, ir.make("scalprod", self.xi, self.xj)))
        return _Part(self._stationary(kernel))

    def _product(self, kernel) -> _Part:
        a, b = self.part(kernel.k1), self.part(kernel.k2)
        f = _mul(a.formula, b.formula)
        for c, other in ((a, b), (b, a)):
            if c.constant is not None:
                k, idx = c.constant
                shift = [(k * s, idx + j) for s, j in other.shift]
                const = None
                if other.constant is not None:
                    const = (k * other.constant[0], idx + other.constant[1])
                return _Part(f, shift, const)
        if a.shift or b.shift:
            raise _untranslatable(kernel, "a WhiteKernel in a product with a non-constant kernel")
        return _Part(f)

    def _scaled_sqdist(self, kernel) -> ir.Node:
        """``sum_k (x_k - y_k)^2 / l_k^2`` (one or ``d`` length scales)."""
        n = int(np.size(kernel.length_scale))
        if n not in (1, self.d):
            raise ValueError(
                f"{type(kernel).__name__}: length_scale has {n} entries, X has {self.d} features"
            )
        node, _ = self.take(n)
        inv2 = ir.make("exp", ir.make("mul", ir.const(-2), node))
        if n == 1:
            return ir.make("mul", ir.make("sqdist", self.xi, self.xj), inv2)
        diff = ir.make("sub", self.xi, self.xj)
        return ir.make("sum", ir.make("mul", inv2, ir.make("square", diff)))

    def _stationary(self, kernel) -> ir.Node:
        kind = type(kernel)
        if kind is sk.RBF:
            return _exp_half(self._scaled_sqdist(kernel))
        if kind is sk.Matern:
            nu = float(kernel.nu)
            if nu == math.inf:
                return _exp_half(self._scaled_sqdist(kernel))
            if nu not in formulas.MATERN:
                raise _untranslatable(kernel, f"Matern nu={nu} (translated: 0.5, 1.5, 2.5, inf)")
            s = self._scaled_sqdist(kernel)
            return formulas.engine_formula(formulas.MATERN[nu], s, differentiable=True)
        if kind is sk.RationalQuadratic:
            if np.size(kernel.length_scale) != 1:
                raise _untranslatable(kernel, "RationalQuadratic has one length scale only")
            # slots in sklearn's order: alpha, then length_scale
            a = self.value()
            s = self._scaled_sqdist(kernel)
            base = ir.make("add", ir.const(1), ir.make("div", s, ir.make("mul", ir.const(2), a)))
            return ir.make("exp", ir.make("neg", ir.make("mul", a, ir.make("log", base))))
        if kind is sk.ExpSineSquared:
            # slots in sklearn's order: length_scale, then periodicity
            inv2 = ir.make("exp", ir.make("mul", ir.const(-2), self.take()[0]))
            period = self.value()
            r = ir.make("sqrt", ir.make("sqdist", self.xi, self.xj))
            arg = ir.make("div", ir.make("mul", ir.const(math.pi), r), period)
            sin2 = ir.make("square", ir.make("sin", arg))
            return ir.make("exp", ir.make("mul", ir.const(-2), ir.make("mul", sin2, inv2)))
        raise _untranslatable(kernel, _why(kernel))  # pragma: no cover (filtered by _slots)


def _exp_half(s: ir.Node) -> ir.Node:
    return ir.make("exp", ir.make("mul", ir.const(-0.5), s))


def _add(a: ir.Node | None, b: ir.Node | None) -> ir.Node | None:
    if a is None or b is None:
        return a if b is None else b
    return ir.make("add", a, b)


def _mul(a: ir.Node | None, b: ir.Node | None) -> ir.Node | None:
    if a is None or b is None:
        return None
    return ir.make("mul", a, b)


# ---------------------------------------------------------------------------
# Evaluation: the same interface on the engine and on scikit-learn's own calls
# ---------------------------------------------------------------------------
class EngineKernel:
    """A translated kernel bound to hyperparameter values, evaluated by the engine.

    Dense blocks (:func:`.linalg.dense.block`) serve the exact path, products
    (:class:`.linalg.operator.KernelOperator` and one reduction per call) the
    iterative one; nothing here forms an ``n x n`` matrix unless asked to.
    With ``tol`` (the estimator's), the training products and their
    hyperparameter derivatives skip the block pairs whose entries are
    negligible (``docs/approximation.md``; :attr:`skipped_pairs`); dense blocks
    and predictions stay exact. With ``products="grid"``, the training
    products come from a :class:`.linalg.grid_product.GridKernelProduct`
    (:attr:`grid`, set by :meth:`operator`).
    """

    def __init__(
        self, translation: Translation, kernel, tol: float | None = None, dtype=np.float64,
        products: str = "exact",
    ):  # fmt: skip
        self.tol, self._op, self.dtype = tol, None, np.dtype(dtype)
        self.products, self.grid, self._grid_points = products, None, None
        self.t = translation
        self.p = translation.params_of(kernel)
        self.parg = (self.p if self.p.size else np.zeros(1)).astype(self.dtype)
        self.shift = translation.shift(self.p)

    def _leaves(self, X, Y):
        X, Y = (np.ascontiguousarray(a, dtype=self.dtype) for a in (X, Y))
        return (X, Y, self.parg), (ir.I, ir.J, ir.P)

    def _vectors(self, V) -> np.ndarray:
        return np.ascontiguousarray(V, dtype=self.dtype)

    def matrix(self, X, Y=None) -> np.ndarray:
        """``k(X, Y)``; ``k(X)`` (``Y`` None) includes the white-noise diagonal."""
        leaves, cats = self._leaves(X, X if Y is None else Y)
        K = dense.block(self.t.formula, leaves, cats).astype(np.float64, copy=False)
        if Y is None and self.shift:
            K[np.diag_indices_from(K)] += self.shift
        return K

    def gradient(self, X) -> np.ndarray:
        """``dk(X)/dtheta``, shape ``(n, n, len(theta))`` (scikit-learn's layout)."""
        leaves, cats = self._leaves(X, X)
        n, T = X.shape[0], len(self.t.free)
        out = np.empty((n, n, T))
        dshift = self.t.shift_gradient(self.p)
        for k, g in enumerate(self.t.gradients()):
            out[:, :, k] = (
                dense.block(g, leaves, cats) if g.dim == 1 and not ir.is_const(g, 0) else 0
            )
            out[np.arange(n), np.arange(n), k] += dshift[k]
        return out

    def operator(self, X) -> KernelOperator:
        """``k(X)`` without its white-noise diagonal, as products (never formed)."""
        leaves, cats = self._leaves(X, X)
        self._op = KernelOperator(self.t.formula, leaves, cats, tol=self.tol)
        op = self._op if self.dtype == np.float64 else _Float64Vectors(self._op)
        if self.products == "grid":
            if self.grid is not None and self._grid_points is X:
                # predict(return_std=True) asks once per chunk of test points: one setup
                return _GridProducts(op, self.grid)
            self.grid = GridKernelProduct(
                self.t.formula, leaves, cats, target_error=GRID_TARGET_ERROR
            )
            self._grid_points = X
            if self.grid.error > GRID_TARGET_ERROR:
                warnings.warn(
                    f'products="grid": the sampled error of a product is {self.grid.error:.1e} '
                    f"(target {GRID_TARGET_ERROR:g}) at interpolation order {self.grid.order}; "
                    "with these few points the boxes are wide against the kernel's length "
                    'scale: products="exact" costs little at this size',
                    GridAccuracyWarning,
                    stacklevel=3,
                )
            return _GridProducts(op, self.grid)
        return op

    @property
    def skipped_pairs(self) -> float:
        """The fraction of point pairs the last :meth:`operator`'s products skip."""
        return 0.0 if self._op is None else self._op.skipped_pairs

    def cross_matmat(self, Xq, X, V) -> np.ndarray:
        """``k(Xq, X) @ V`` as one reduction (``V`` of shape ``(n, m)``)."""
        f = ir.make("mul", self.t.formula, ir.var(3, ir.J, V.shape[1]))
        leaves, cats = self._leaves(Xq, X)
        args = leaves + (self._vectors(V),)
        out = autograd.reduce(ReductionRequest(f, "sum", args, cats + (ir.J,)))
        return out.astype(np.float64, copy=False)

    def gradient_matmat(self, X, V) -> np.ndarray:
        """``dk(X)/dtheta_k @ V`` for every ``k``, shape ``(n, len(theta), m)``: one
        reduction of the stacked symbolic derivatives times ``V_j`` (white noise included)."""
        n, m, T = X.shape[0], V.shape[1], len(self.t.free)
        if T == 0:
            return np.zeros((n, 0, m))
        g = self.t.stacked_gradient()
        if g.dim != T:  # a derivative that simplified to a scalar constant
            g = _widen(self.t.gradients())
        f = ir.make("tensorprod", g, ir.var(3, ir.J, m))
        leaves, cats = self._leaves(X, X)
        options = ReductionOptions(tol=self.tol)
        args = leaves + (self._vectors(V),)
        out = autograd.reduce(ReductionRequest(f, "sum", args, cats + (ir.J,), options=options))
        out = out.astype(np.float64, copy=False).reshape(n, T, m)
        return out + self.t.shift_gradient(self.p)[None, :, None] * V[:, None, :]


class _Float64Vectors:
    """A float32 kernel operator seen by float64 solvers: the products, columns
    and diagonal computed in float32 (what ``dtype=float32`` buys: ~2.7x faster
    on the CPU) and handed back as float64, so that the CG vectors, the
    preconditioner and the Lanczos coefficients stay in float64."""

    dtype = np.dtype(np.float64)  # what the solvers see (rpcholesky's factor dtype)

    def __init__(self, op: KernelOperator):
        self.op = op
        self.n = op.n

    @property
    def skipped_pairs(self) -> float:
        return self.op.skipped_pairs

    def matmat(self, V) -> np.ndarray:
        return self.op.matmat(np.ascontiguousarray(V, dtype=np.float32)).astype(np.float64)

    def diagonal(self) -> np.ndarray:
        return np.asarray(self.op.diagonal(), dtype=np.float64)

    def columns(self, index, *args, **kwargs) -> np.ndarray:
        return np.asarray(self.op.columns(index, *args, **kwargs), dtype=np.float64)


class GridAccuracyWarning(UserWarning):
    """``products="grid"`` could not bring its sampled error to :data:`GRID_TARGET_ERROR`."""


#: ``products="grid"`` raises its interpolation order until the sampled error of a
#: product (relative to ``sum_j |K_ij v_j|``) is at most this: the accuracy of
#: float32 products (``product_dtype="float32"``).
GRID_TARGET_ERROR = 1e-6


def check_products(products: str, tol, kernel, X) -> None:
    """ValueError unless ``products="grid"`` can serve ``kernel`` on ``X`` (the
    iterative path of the estimators; "exact" always can)."""
    if products != "grid":
        return
    if tol is not None:
        raise ValueError(f'products="grid" and tol={tol!r} exclude each other: use one')
    if not kernel.is_stationary():
        raise ValueError(
            f'products="grid" needs a stationary kernel (k(x, y) a function of x - y), '
            f"got {kernel}"
        )
    if not 1 <= np.shape(X)[1] <= 3:
        raise ValueError(
            f'products="grid" needs 1 to 3 features (its grid grows as order^d), '
            f"got {np.shape(X)[1]}"
        )


class _GridProducts(_Float64Vectors):
    """A kernel operator whose products come from a :class:`GridKernelProduct`
    (``products="grid"``) and whose diagonal and columns (the preconditioner's)
    stay the exact operator's, handed back as float64."""

    def __init__(self, op, grid: GridKernelProduct):
        super().__init__(op)
        self.grid = grid

    def matmat(self, V) -> np.ndarray:
        return self.grid.matmat(np.asarray(V, dtype=np.float64))


def _widen(nodes: list) -> ir.Node:
    out = None
    for g in nodes:
        g = g if g.dim == 1 else ir.make("sum", g)
        out = g if out is None else ir.make("concat", out, g)
    return out


class SklearnKernel:
    """The exact path's interface on scikit-learn's own kernel calls (dense, for a
    kernel :func:`translate` refuses; the estimator warns when it uses it)."""

    def __init__(self, kernel):
        self.kernel = kernel

    def matrix(self, X, Y=None) -> np.ndarray:
        return self.kernel(X, Y)

    def gradient(self, X) -> np.ndarray:
        return self.kernel(X, eval_gradient=True)[1]

    def cross_matmat(self, Xq, X, V) -> np.ndarray:
        return self.kernel(Xq, X) @ V
