"""Kernel formulas of the GPyTorch kernels, once as engine IR, once as torch.

The kernels of :mod:`kernelsolve.linalg.kernels` as functions of the
difference ``d = x_i - x_j``: the engine IR for reductions and torch code for
single entries, diagonals and dense blocks. Every :class:`Formula` is a
module-level constant pickled by its name (its functions are closures), so
that kernel operators built from it pickle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..engine import ir
from ..linalg import kernels

__all__ = ["CovarFunction", "Factor", "Formula", "MATERN", "PERIODIC", "RBF", "RQ"]

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

    name: str
    params: tuple[str, ...]
    engine: Callable[[ir.Node, dict], ir.Node]
    torch: Callable[[torch.Tensor, dict], torch.Tensor]

    def __reduce__(self):
        return (formula_named, (self.name,))


# The engine's formulas are differentiated symbolically: r = s * rsqrt(s) keeps the
# Matern gradients finite on the diagonal (kernelsolve.linalg.kernels.ENGINE_DIFFERENTIABLE).
_IR = kernels.ENGINE_DIFFERENTIABLE


def _engine_s(d, p) -> kernels.Expr:
    """``s = sum_k w_k d_k^2`` (``w = 1 / lengthscale^2``) as an IR expression."""
    return kernels.Expr(ir.make("weightedsqnorm", p["w"], d))


def _torch_s(d, p) -> torch.Tensor:
    return (p["w"] * d.square()).sum(-1)


def _of_scaled_distance(name: str, kernel: Callable, factor: float = 1.0) -> Formula:
    """``kernel(factor * s)``."""
    return Formula(
        name,
        ("w",),
        lambda d, p: kernel(_IR, factor * _engine_s(d, p)).node,
        lambda d, p: kernel(kernels.TORCH, factor * _torch_s(d, p)),
    )


RBF = _of_scaled_distance("rbf", kernels.gaussian, 0.5)
MATERN = {nu: _of_scaled_distance(f"matern{nu}", k) for nu, k in kernels.MATERN.items()}
RQ = Formula(
    "rq",
    ("w", "alpha"),
    lambda d, p: kernels.rational_quadratic(_IR, _engine_s(d, p), kernels.Expr(p["alpha"])).node,
    lambda d, p: kernels.rational_quadratic(kernels.TORCH, _torch_s(d, p), p["alpha"][..., 0]),
)
# u = pi / period, v = 1 / lengthscale
PERIODIC = Formula(
    "periodic",
    ("u", "v"),
    lambda d, p: (
        kernels.periodic(_IR, kernels.Expr(d), kernels.Expr(p["u"]), kernels.Expr(p["v"])).node
    ),
    lambda d, p: kernels.periodic(kernels.TORCH, d, p["u"], p["v"]),
)


_BY_NAME = {f.name: f for f in (RBF, RQ, PERIODIC, *MATERN.values())}


def formula_named(name: str) -> Formula:
    """The formula constant called ``name`` (how formulas unpickle)."""
    return _BY_NAME[name]


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
    #: engine products and gradients: the error allowed relative to
    #: ``sum_j |F_ij|`` (None: exact; :mod:`kernelsolve.engine.ranges.approx_reduce`)
    tol: float | None = None

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
