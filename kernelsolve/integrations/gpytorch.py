"""GPyTorch kernels whose kernel matrices are engine LinearOperators.

Exact Gaussian process regression needs products of the kernel matrix with
a handful of vectors (GPyTorch's CG and Lanczos run with about eleven
columns) and, for the hyperparameter gradients, the derivative of the
bilinear form ``sum_c u_c^T K v_c``. Both are reductions over the pairs
(i, j) and never need the matrix: this module hands them to the engine.

:class:`RBFKernel`, :class:`MaternKernel`, :class:`RQKernel` and
:class:`PeriodicKernel` subclass the GPyTorch kernels of the same names
(same constructor arguments, parameters, priors and constraints) and only
replace ``forward``. A block that fits the memory budget is computed
densely by GPyTorch's own ``forward`` (see "Dense or engine" below); a
larger one is an :class:`EngineKernelOperator`, a ``linear_operator``
LinearOperator whose

* ``_matmul`` is one fused engine reduction ``sum_j k(x_i, x_j) V_j`` for
  all columns of ``V`` at once;
* ``_bilinear_derivative`` is computed analytically: the symbolic gradient
  of ``k(x_i, x_j) <U_i, V_j>`` with respect to the lengthscales, other
  parameters and (if they require grad) the inputs, reduced by the engine
  over j (and over i for the second input) - not autograd through CG;
* ``_diagonal`` is analytic and ``_get_indices`` (the rows GPyTorch's
  pivoted-Cholesky preconditioner reads) evaluates only the requested
  entries.

Dense or engine: GPyTorch makes many products with every kernel block it
multiplies (CG and Lanczos run tens to hundreds of iterations with ~11
columns; exact predictive variances solve with one column per test point),
and a stored block runs them at BLAS speed. Filling the block with torch
costs about one engine product, so every block GPyTorch
multiplies more than once repays it: the only question is memory. A block
of ``m x n`` entries (times the batch size) is dense when ``m n`` times the
item size times :data:`DENSE_TEMPORARIES` (the blocks GPyTorch's dense
formulas and their backward hold at once) fits
:func:`kernelsolve.linalg.dense.memory_budget` (``config.dense_memory_limit``
or ``config.dense_memory_fraction`` of the available memory). Then
``forward`` is GPyTorch's own: the same values, gradients (autograd through
the formulas) as ``gpytorch.kernels``, except that subnormal values are set
to 0 (:func:`~.gpytorch_operator.flush_subnormals`: on x86 they made
GPyTorch's BLAS products 5x slower on the DEM). To override, set
:data:`DENSE_MAX_ENTRIES` to an entry count (0 routes every block through
the engine); None (the default) uses the budget. Above it, an engine
operator whose bare block (without the temporaries) fits the budget fills
it once a solve has made ``TORCH_FILL_PRODUCTS`` (32) products (see
:mod:`.gpytorch_operator`) and runs later products at BLAS speed; its
gradients stay the engine's analytic ones.

Exact predictions go through :class:`~.gpytorch_predict.EnginePredictionStrategy`:
where the predictive variances would run CG with one column per test point and
a float64 Cholesky factor costs less, the factor is made once and serves every
later prediction.

Inputs and parameters of different dtypes are promoted (float64 data with a
float32 module computes in float64, as ``gpytorch.kernels`` do), and
``last_dim_is_batch=True`` makes each input dimension a batch of 1-D
kernels (``... x D x N x M``), as in GPyTorch.

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

import torch
from gpytorch import kernels as _gk

from ..engine import split
from ..engine.ranges.approx_reduce import check_tol
from ..linalg import dense
from .gpytorch_formulas import MATERN, PERIODIC, RBF, RQ, CovarFunction, Factor
from .gpytorch_operator import EngineKernelOperator, flush_subnormals
from .gpytorch_predict import EnginePredictionStrategy

__all__ = [
    "DENSE_MAX_ENTRIES",
    "DENSE_TEMPORARIES",
    "dense_fits",
    "EngineKernel",
    "EngineKernelOperator",
    "MaternKernel",
    "PeriodicKernel",
    "ProductKernel",
    "RBFKernel",
    "RQKernel",
]

#: None: blocks that fit the memory budget are dense (module docstring); an
#: int: blocks with at most this many entries are dense (0: none).
DENSE_MAX_ENTRIES: int | None = None

#: Blocks of the kernel's size that GPyTorch's dense training step holds at
#: once (distances, kernel values, the scaled and noisy copies, their grads, and
#: the copy with its subnormal values flushed, with its mask).
DENSE_TEMPORARIES = 7


def dense_fits(rows: int, cols: int, batch: int, dtype: torch.dtype, device: str = "cpu") -> bool:
    """Whether ``forward`` computes a ``batch x rows x cols`` block densely: it
    fits the memory budget with its temporaries (every block GPyTorch
    multiplies repays a torch fill, module docstring), or the override.

    Example
    -------
    >>> dense_fits(1500, 1500, 1, torch.float32)
    True
    """
    if DENSE_MAX_ENTRIES is not None:
        return rows * cols <= DENSE_MAX_ENTRIES
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = batch * rows * cols * itemsize * DENSE_TEMPORARIES
    return need <= dense.memory_budget(device)


def _dense_forward(rows: int, cols: int, batch: int, dtype: torch.dtype, device: str) -> bool:
    """Whether ``forward`` is GPyTorch's dense one. Under
    ``kernelsolve.distributed.sharded()`` a dense block would be computed whole
    on every process: only blocks that the split runs whole anyway (below its
    ``min_pairs``) are dense, unless :data:`DENSE_MAX_ENTRIES` says otherwise,
    and every process takes the same decision (it reads the free memory)."""
    fits = dense_fits(rows, cols, batch, dtype, device)
    active = split.active()
    if active is None or DENSE_MAX_ENTRIES is not None:
        return fits
    whole = batch * rows * cols < getattr(active, "min_pairs", 0)
    return split.everywhere(fits and whole)


# ---------------------------------------------------------------------------
# GPyTorch kernels
# ---------------------------------------------------------------------------


class EngineKernel:
    """Mixin: ``forward`` is GPyTorch's dense one for blocks within the memory
    budget and an :class:`EngineKernelOperator` above it.

    Subclasses define :meth:`_engine_factors` (the formulas) and
    :meth:`_engine_params` (the parameter tensors, named as in the factors).

    ``kernel.tol = 1e-8`` (default None, exact): the engine products and
    gradients skip the block pairs holding at most ``tol`` of each row's
    ``sum_j |F_ij|`` (:mod:`kernelsolve.engine.ranges.approx_reduce`;
    ``kernelsolve.approximation_report()`` says how much); blocks within the
    memory budget are dense and exact.
    """

    #: the error the engine's sums may make (None: exact)
    tol: float | None = None

    def _engine_factors(self, prefix: str = "") -> tuple[Factor, ...]:
        raise NotImplementedError

    def _engine_params(self, prefix: str = "") -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _dims(self):
        # the product kernel applies each factor's active_dims inside the formula
        return None

    def _dense_forward(self, x1, x2, diag=False, last_dim_is_batch=False, **params):
        # GPyTorch's own forward of the parent class (values, gradients, promotion)
        if last_dim_is_batch:
            params["last_dim_is_batch"] = True
        return super().forward(x1, x2, diag=diag, **params)

    def forward(self, x1, x2, diag: bool = False, last_dim_is_batch: bool = False, **params):
        m, n = x1.shape[-2], x2.shape[-2]
        batch = math.prod(torch.broadcast_shapes(x1.shape[:-2], x2.shape[:-2], self.batch_shape))
        if last_dim_is_batch:
            batch *= x1.shape[-1]
        dtype = torch.promote_types(x1.dtype, self._param_dtype())
        if diag or _dense_forward(m, n, batch, dtype, str(x1.device)):
            out = self._dense_forward(x1, x2, diag, last_dim_is_batch, **params)
            return out if diag else flush_subnormals(out)  # one flush, products included
        covar = CovarFunction(self._engine_factors(), tol=check_tol(self.tol))
        theta = {k: v.to(dtype) for k, v in self._engine_params().items()}
        same = x1 is x2 or (x1.shape == x2.shape and torch.equal(x1, x2))
        x1 = x1.to(dtype)
        x2 = x1 if same else x2.to(dtype)
        if last_dim_is_batch:
            x1, x2, theta = _last_dim_as_batch(x1, x2, theta)
        return EngineKernelOperator(x1, x1 if same else x2, covar_func=covar, **theta)

    def prediction_strategy(self, train_inputs, train_prior_dist, train_labels, likelihood):
        """GPyTorch's exact predictions, with one Cholesky factor where it costs
        less than CG (:class:`~.gpytorch_predict.EnginePredictionStrategy`)."""
        return EnginePredictionStrategy(train_inputs, train_prior_dist, train_labels, likelihood)

    def _param_dtype(self) -> torch.dtype:
        return next((p.dtype for p in self.parameters()), torch.get_default_dtype())

    def __mul__(self, other):
        if isinstance(other, EngineKernel):
            return ProductKernel(self, other)
        return super().__mul__(other)


def _last_dim_as_batch(x1, x2, theta):
    """Each input dimension a batch of 1-D kernels: points ``(..., D, N, 1)``,
    parameters ``(..., D, 1, 1)`` (an ARD parameter gives dimension k its
    k-th value, a shared one broadcasts)."""
    D = x1.shape[-1]
    out = {}
    for name, p in theta.items():  # (*batch, 1, p), p in {1, D}
        if p.shape[-1] not in (1, D):
            raise ValueError(
                f"last_dim_is_batch: parameter {name!r} has {p.shape[-1]} values for "
                f"{D} input dimensions"
            )
        out[name] = p.transpose(-1, -2).unsqueeze(-1)
    return x1.transpose(-1, -2).unsqueeze(-1), x2.transpose(-1, -2).unsqueeze(-1), out


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

    def forward(self, x1, x2, diag=False, last_dim_is_batch=False, **params):
        if last_dim_is_batch:
            return self._dense_forward(x1, x2, diag, last_dim_is_batch)
        return super().forward(x1, x2, diag, **params)

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

    def _dense_forward(self, x1, x2, diag=False, last_dim_is_batch=False, **params):
        if last_dim_is_batch:
            raise NotImplementedError(
                "ProductKernel: last_dim_is_batch=True is not supported (its factors read "
                "different input dimensions); use gpytorch.kernels.ProductKernel"
            )
        out = None
        for kern in self.kernels:
            dims = None if kern.active_dims is None else kern.active_dims
            a, b = (x1, x2) if dims is None else (x1[..., dims], x2[..., dims])
            v = kern._dense_forward(a, b, diag=diag, **params)
            out = v if out is None else out * v
        return out
