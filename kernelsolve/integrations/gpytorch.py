"""GPyTorch kernels whose kernel matrices are engine LinearOperators.

Exact Gaussian process regression needs products of the kernel matrix with
a handful of vectors (GPyTorch's CG and Lanczos run with about eleven
columns) and, for the hyperparameter gradients, the derivative of the
bilinear form ``sum_c u_c^T K v_c``. Both are reductions over the pairs
(i, j) and never need the matrix: this module hands them to the engine.

:class:`RBFKernel`, :class:`MaternKernel`, :class:`RQKernel` and
:class:`PeriodicKernel` subclass the GPyTorch kernels of the same names
(same constructor arguments, parameters, priors and constraints) and only
replace ``forward``. For a block of more than :data:`DENSE_MAX_ENTRIES`
entries, ``forward`` returns an :class:`EngineKernelOperator`, a
``linear_operator`` LinearOperator whose

* ``_matmul`` is one fused engine reduction ``sum_j k(x_i, x_j) V_j`` for
  all columns of ``V`` at once;
* ``_bilinear_derivative`` is computed analytically: the symbolic gradient
  of ``k(x_i, x_j) <U_i, V_j>`` with respect to the lengthscales, other
  parameters and (if they require grad) the inputs, reduced by the engine
  over j (and over i for the second input) - not autograd through CG;
* ``_diagonal`` is analytic and ``_get_indices`` (the rows GPyTorch's
  pivoted-Cholesky preconditioner reads) evaluates only the requested
  entries.

Smaller blocks are computed densely with torch (the same formulas), which
is cheaper than a compiled reduction there; set :data:`DENSE_MAX_ENTRIES`
to 0 to route every block through the engine.

Products of engine kernels (``k1 * k2``) are fused into one formula, so the
product costs one reduction, not GPyTorch's low-rank product approximation.
Sums and :class:`gpytorch.kernels.ScaleKernel` work through GPyTorch's own
operators (a sum of two kernels costs two reductions per product).

Example
-------
>>> import torch, gpytorch
>>> from kernelsolve.integrations.gpytorch import MaternKernel
>>> class GP(gpytorch.models.ExactGP):
...     def __init__(self, x, y, likelihood):
...         super().__init__(x, y, likelihood)
...         self.mean_module = gpytorch.means.ConstantMean()
...         self.covar_module = gpytorch.kernels.ScaleKernel(MaternKernel(nu=1.5))
...     def forward(self, x):
...         return gpytorch.distributions.MultivariateNormal(
...             self.mean_module(x), self.covar_module(x))
>>> x = torch.rand(2000, 2); y = torch.sin(6 * x).sum(-1)
>>> model = GP(x, y, gpytorch.likelihoods.GaussianLikelihood())
>>> mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
>>> loss = -mll(model(x), y)
>>> loss.backward()
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from gpytorch import kernels as _gk
from linear_operator.operators import KernelLinearOperator

from .. import autograd
from ..engine import dispatch, ir
from ..engine.request import ReductionRequest
from ..linalg import kernels

__all__ = [
    "DENSE_MAX_ENTRIES",
    "EngineKernel",
    "EngineKernelOperator",
    "MaternKernel",
    "PeriodicKernel",
    "ProductKernel",
    "RBFKernel",
    "RQKernel",
]

#: Kernel blocks with at most this many entries are evaluated densely by torch.
DENSE_MAX_ENTRIES = 800 * 800


# ---------------------------------------------------------------------------
# Kernel formulas: the kernels of kernelsolve.linalg.kernels as functions of the
# difference d = x_i - x_j, once as engine IR and once as torch code (for
# single entries, diagonals and small blocks).
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Formula:
    """A stationary kernel ``k(d)`` of the difference ``d = x_i - x_j``.

    ``params`` names the parameter tensors, each shaped ``(*batch, 1, p)``.
    ``engine(d, params)`` builds the IR (``params`` maps names to IR
    variables of width p); ``torch(d, params)`` computes it elementwise for a
    ``(..., D)`` tensor ``d`` and ``(..., p)`` parameters.
    """

    params: tuple[str, ...]
    engine: Callable[[ir.Node, dict], ir.Node]
    torch: Callable[[torch.Tensor, dict], torch.Tensor]


# The engine's formulas are differentiated symbolically: r = s * rsqrt(s) keeps the
# Matern gradients finite on the diagonal (kernelsolve.linalg.kernels.ENGINE_DIFFERENTIABLE).
_IR = kernels.ENGINE_DIFFERENTIABLE


def _engine_s(d, p) -> kernels.Expr:
    """``s = sum_k w_k d_k^2`` (``w = 1 / lengthscale^2``) as an IR expression."""
    return kernels.Expr(ir.make("weightedsqnorm", p["w"], d))


def _torch_s(d, p) -> torch.Tensor:
    return (p["w"] * d.square()).sum(-1)


def _of_scaled_distance(kernel: Callable, factor: float = 1.0) -> Formula:
    """``kernel(factor * s)``."""
    return Formula(
        ("w",),
        lambda d, p: kernel(_IR, factor * _engine_s(d, p)).node,
        lambda d, p: kernel(kernels.TORCH, factor * _torch_s(d, p)),
    )


RBF = _of_scaled_distance(kernels.gaussian, 0.5)
MATERN = {nu: _of_scaled_distance(k) for nu, k in kernels.MATERN.items()}
RQ = Formula(
    ("w", "alpha"),
    lambda d, p: kernels.rational_quadratic(_IR, _engine_s(d, p), kernels.Expr(p["alpha"])).node,
    lambda d, p: kernels.rational_quadratic(kernels.TORCH, _torch_s(d, p), p["alpha"][..., 0]),
)
# u = pi / period, v = 1 / lengthscale
PERIODIC = Formula(
    ("u", "v"),
    lambda d, p: (
        kernels.periodic(_IR, kernels.Expr(d), kernels.Expr(p["u"]), kernels.Expr(p["v"])).node
    ),
    lambda d, p: kernels.periodic(kernels.TORCH, d, p["u"], p["v"]),
)


@dataclass(frozen=True)
class Factor:
    """One factor of a (product) kernel: a formula, the input dimensions it
    reads (None: all) and the prefix of its parameter names."""

    formula: Formula
    dims: tuple[int, ...] | None
    prefix: str

    def names(self) -> tuple[str, ...]:
        return tuple(self.prefix + n for n in self.formula.params)


@dataclass(frozen=True)
class CovarFunction:
    """``k(x1, x2) = prod_f k_f(x1[..., dims_f] - x2[..., dims_f])``.

    Called with torch tensors (the ``covar_func`` protocol of
    ``linear_operator``'s KernelLinearOperator) it returns the dense
    ``(*batch, M, N)`` block; :meth:`formula` gives the engine IR.
    """

    factors: tuple[Factor, ...]

    def names(self) -> tuple[str, ...]:
        return tuple(n for f in self.factors for n in f.names())

    def pairs(self, d: torch.Tensor, params: dict) -> torch.Tensor:
        """Kernel values for differences ``d`` (..., D), parameters (..., p)."""
        out = None
        for f in self.factors:
            df = d if f.dims is None else d[..., list(f.dims)]
            p = {n: params[f.prefix + n] for n in f.formula.params}
            v = f.formula.torch(df, p)
            out = v if out is None else out * v
        return out

    def __call__(self, x1: torch.Tensor, x2: torch.Tensor, **params) -> torch.Tensor:
        d = x1.unsqueeze(-2) - x2.unsqueeze(-3)
        return self.pairs(d, {k: v.unsqueeze(-2) for k, v in params.items()})

    def formula(self, xi: ir.Node, xj: ir.Node, params: dict[str, ir.Node]) -> ir.Node:
        d = ir.make("sub", xi, xj)
        out = None
        for f in self.factors:
            if f.dims is None:
                df = d
            else:
                df = ir.make("elem", d, attrs=(f.dims[0],))
                for k in f.dims[1:]:
                    df = ir.make("concat", df, ir.make("elem", d, attrs=(k,)))
            v = f.formula.engine(df, {n: params[f.prefix + n] for n in f.formula.params})
            out = v if out is None else ir.make("mul", out, v)
        return out


# ---------------------------------------------------------------------------
# The LinearOperator
# ---------------------------------------------------------------------------


class EngineKernelOperator(KernelLinearOperator):
    """Kernel matrix ``K_ij = covar_func(x1_i, x2_j)`` whose products and
    gradients are engine reductions.

    Built by the kernels of this module; ``covar_func`` is a
    :class:`CovarFunction` and every parameter is a ``(*batch, 1, p)``
    tensor. Slicing, batch reshaping and transposition come from
    ``linear_operator``'s KernelLinearOperator.
    """

    def _leaves(self, rhs_dim: int | None = None):
        """Engine leaves ``[x1 (i), x2 (j), params (p)...]`` and their IR variables."""
        names = self.covar_func.names()
        d = self.x1.shape[-1]
        xi, xj = ir.var(0, ir.I, d), ir.var(1, ir.J, d)
        pvars = {}
        leaves = [self.x1, self.x2]
        for k, name in enumerate(names):
            p = self.tensor_params[name]
            pvars[name] = ir.var(2 + k, ir.P, p.shape[-1])
            leaves.append(p[..., 0, :])
        cats = [ir.I, ir.J] + [ir.P] * len(names)
        return leaves, cats, xi, xj, pvars

    def _matmul(self, rhs: torch.Tensor) -> torch.Tensor:
        vector = rhs.ndim == 1
        if vector:
            rhs = rhs.unsqueeze(-1)
        leaves, cats, xi, xj, pvars = self._leaves()
        k = self.covar_func.formula(xi, xj, pvars)
        outs = []
        for chunk in _column_chunks(rhs):
            v = ir.var(len(leaves), ir.J, chunk.shape[-1])
            args, vcats = tuple(leaves) + (chunk.contiguous(),), tuple(cats) + (ir.J,)
            outs.append(
                autograd.reduce(ReductionRequest(ir.make("mul", k, v), "sum", args, vcats))
            )
        out = outs[0] if len(outs) == 1 else torch.cat(outs, -1)
        return out[..., 0] if vector else out

    def _bilinear_derivative(self, left_vecs: torch.Tensor, right_vecs: torch.Tensor):
        # d/dtheta sum_ij k_ij <U_i, V_j>: the symbolic gradient of the summand,
        # reduced over j (x1 and the parameters) and over i (x2).
        representation = self.representation()
        wanted = [t.requires_grad for t in representation]
        if not any(wanted):
            return (None,) * len(representation)
        if left_vecs.ndim == 1:
            left_vecs, right_vecs = left_vecs.unsqueeze(-1), right_vecs.unsqueeze(-1)
        grads: list = [None] * len(representation)
        chunks = zip(_column_chunks(left_vecs.detach()), _column_chunks(right_vecs.detach()))
        for left, right in chunks:
            for slot, g in enumerate(self._bilinear_chunk(left, right, wanted)):
                if g is not None:
                    grads[slot] = g if grads[slot] is None else grads[slot] + g
        return tuple(grads)

    def _bilinear_chunk(self, left, right, wanted):
        representation = self.representation()
        leaves, cats, xi, xj, pvars = self._leaves()
        leaves = [t.detach() for t in leaves]
        n = len(leaves)
        c = left.shape[-1]
        U, V = ir.var(n, ir.I, c), ir.var(n + 1, ir.J, c)
        leaves += [left.contiguous(), right.contiguous()]
        cats += [ir.I, ir.J]
        k = self.covar_func.formula(xi, xj, pvars)
        weight = ir.make("scalprod", U, V)
        names = self.covar_func.names()
        grads: list = [None] * len(representation)

        # over j: x1 (if wanted) and the parameters, in one reduction
        parts = []
        if wanted[0]:
            parts.append((0, _grad(k, xi, weight)))
        # representation(): x1, x2, then the tensor parameters sorted by name
        slots = {name: 2 + k for k, name in enumerate(self._differentiable_kwargs)}
        for name in names:
            slot = slots[name]
            if wanted[slot]:
                parts.append((slot, _grad(k, pvars[name], weight)))
        if parts:
            joint = parts[0][1]
            for _, f in parts[1:]:
                joint = ir.make("concat", joint, f)
            total = dispatch.reduce(ReductionRequest(joint, "sum", tuple(leaves), tuple(cats)))
            start = 0
            for slot, f in parts:
                g = total[..., start : start + f.dim]
                start += f.dim
                if slot >= 2:  # a parameter: also sum over i, keep the (1, p) rows
                    g = g.sum(-2, keepdim=True)
                grads[slot] = _sum_to(g, representation[slot].shape)
        if wanted[1]:
            request = ReductionRequest(_grad(k, xj, weight), "sum", tuple(leaves), tuple(cats), 0)
            g = dispatch.reduce(request)
            grads[1] = _sum_to(g, representation[1].shape)
        return tuple(grads)

    @property
    def _symmetric(self) -> bool:
        return self.x1 is self.x2 or (
            self.x1.shape == self.x2.shape and torch.equal(self.x1, self.x2)
        )

    def _diagonal(self) -> torch.Tensor:
        if self._symmetric:  # stationary kernels: k(0) on the diagonal
            zero = torch.zeros_like(self.x1[..., :1, :])
            params = {k: v for k, v in self.tensor_params.items()}
            k0 = self.covar_func.pairs(zero, params)  # (*batch, 1)
            return k0.expand(*self.batch_shape, self.x1.shape[-2])
        return self.covar_func.pairs(self.x1 - self.x2, self.tensor_params)

    def _get_indices(self, row_index, col_index, *batch_indices):
        x1 = self.x1[(*batch_indices, row_index)]
        x2 = self.x2[(*batch_indices, col_index)]
        params = {k: v[batch_indices][..., 0, :] for k, v in self.tensor_params.items()}
        return self.covar_func.pairs(x1 - x2, params)

    def to_dense(self) -> torch.Tensor:
        return self.covar_func(self.x1, self.x2, **self.tensor_params)


#: Products with more columns run in chunks of this many, so that the engine
#: compiles at most this many kernel variants per formula (the column count is
#: part of the compiled kernel) while wide blocks still share each kernel value
#: among many columns.
MAX_COLUMNS = 32


def _column_chunks(t: torch.Tensor):
    c = t.shape[-1]
    if c <= MAX_COLUMNS:
        return [t]
    return list(t.split(MAX_COLUMNS, dim=-1))


def _grad(k: ir.Node, wrt: ir.Node, weight: ir.Node) -> ir.Node:
    from ..engine.grad import vjp

    return vjp(k, wrt, weight)


def _sum_to(g: torch.Tensor, shape) -> torch.Tensor:
    """Sum the broadcast dimensions of ``g`` away so that it has ``shape``."""
    return autograd._sum_to_shape(g, tuple(shape)).reshape(shape)


# ---------------------------------------------------------------------------
# GPyTorch kernels
# ---------------------------------------------------------------------------


class EngineKernel:
    """Mixin: ``forward`` returns an :class:`EngineKernelOperator`.

    Subclasses define :meth:`_engine_factors` (the formulas) and
    :meth:`_engine_params` (the parameter tensors, named as in the factors).
    """

    def _engine_factors(self, prefix: str = "") -> tuple[Factor, ...]:
        raise NotImplementedError

    def _engine_params(self, prefix: str = "") -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _dims(self):
        # the product kernel applies each factor's active_dims inside the formula
        return None

    def forward(self, x1, x2, diag: bool = False, last_dim_is_batch: bool = False, **params):
        if last_dim_is_batch:
            raise NotImplementedError(
                f"{type(self).__name__}: last_dim_is_batch=True is not supported by the "
                "kernelsolve kernels; use the gpytorch.kernels class of the same name"
            )
        covar = CovarFunction(self._engine_factors())
        theta = self._engine_params()
        if diag:
            return covar.pairs(x1 - x2, theta)
        m, n = x1.shape[-2], x2.shape[-2]
        if m * n <= DENSE_MAX_ENTRIES:
            return covar(x1, x2, **theta)
        same = x1 is x2 or (x1.shape == x2.shape and torch.equal(x1, x2))
        return EngineKernelOperator(x1, x1 if same else x2, covar_func=covar, **theta)

    def __mul__(self, other):
        if isinstance(other, EngineKernel):
            return ProductKernel(self, other)
        return super().__mul__(other)


def _as_rows(t: torch.Tensor, batch_shape) -> torch.Tensor:
    """A parameter as ``(*batch, 1, p)``."""
    return t.reshape(*batch_shape, 1, t.shape[-1])


class RBFKernel(EngineKernel, _gk.RBFKernel):
    """``exp(-|x1 - x2|^2 / (2 l^2))`` (gpytorch.kernels.RBFKernel) on the engine."""

    def _engine_factors(self, prefix=""):
        return (Factor(RBF, self._dims(), prefix),)

    def _engine_params(self, prefix=""):
        w = self.lengthscale.reciprocal().square()
        return {prefix + "w": _as_rows(w, self.batch_shape)}


class MaternKernel(EngineKernel, _gk.MaternKernel):
    """Matern kernel, nu in {0.5, 1.5, 2.5} (gpytorch.kernels.MaternKernel) on the engine."""

    def _engine_factors(self, prefix=""):
        return (Factor(MATERN[self.nu], self._dims(), prefix),)

    def _engine_params(self, prefix=""):
        w = self.lengthscale.reciprocal().square()
        return {prefix + "w": _as_rows(w, self.batch_shape)}


class RQKernel(EngineKernel, _gk.RQKernel):
    """Rational quadratic kernel (gpytorch.kernels.RQKernel) on the engine."""

    def _engine_factors(self, prefix=""):
        return (Factor(RQ, self._dims(), prefix),)

    def _engine_params(self, prefix=""):
        w = self.lengthscale.reciprocal().square()
        return {
            prefix + "w": _as_rows(w, self.batch_shape),
            prefix + "alpha": _as_rows(self.alpha, self.batch_shape),
        }


class PeriodicKernel(EngineKernel, _gk.PeriodicKernel):
    """Periodic kernel (gpytorch.kernels.PeriodicKernel) on the engine."""

    def _engine_factors(self, prefix=""):
        return (Factor(PERIODIC, self._dims(), prefix),)

    def _engine_params(self, prefix=""):
        u = math.pi / self.period_length
        v = self.lengthscale.reciprocal()
        return {
            prefix + "u": _as_rows(u, self.batch_shape),
            prefix + "v": _as_rows(v, self.batch_shape),
        }


class ProductKernel(EngineKernel, _gk.Kernel):
    """Product of engine kernels fused into one formula (``k1 * k2``).

    Each factor keeps its own ``active_dims``; the product is one reduction
    per matrix product, not GPyTorch's low-rank product approximation.
    """

    def __init__(self, *kernels):
        super().__init__()
        flat = []
        for k in kernels:
            if isinstance(k, ProductKernel) and k.active_dims is None:
                flat.extend(k.kernels)
            else:
                flat.append(k)
        if not all(isinstance(k, EngineKernel) for k in flat):
            raise TypeError("ProductKernel: every factor must be a kernelsolve engine kernel")
        self.kernels = torch.nn.ModuleList(flat)

    @property
    def is_stationary(self) -> bool:
        return True

    def _engine_factors(self, prefix=""):
        out = []
        for k, kern in enumerate(self.kernels):
            dims = None if kern.active_dims is None else tuple(int(d) for d in kern.active_dims)
            for f in kern._engine_factors(f"{prefix}{k}_"):
                out.append(Factor(f.formula, dims, f.prefix))
        return tuple(out)

    def _engine_params(self, prefix=""):
        out = {}
        for k, kern in enumerate(self.kernels):
            out.update(kern._engine_params(f"{prefix}{k}_"))
        return out
