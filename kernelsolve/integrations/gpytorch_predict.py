"""Exact GPyTorch predictions by one Cholesky factor, where it costs less than CG.

GPyTorch's exact predictive variances solve ``(K + sigma^2 I) X = K_train,test``
by conjugate gradients with one column per test point (unless
``fast_pred_var``): at 500 test points every CG iteration is a product with
500 columns, and hundreds of iterations follow. A Cholesky factor of the
training covariance costs ``n^3 / 3`` multiply-adds once, after which every
solve is two triangular solves. :class:`EnginePredictionStrategy` (the
prediction strategy of the kernels in :mod:`kernelsolve.integrations.gpytorch`,
also under ``ScaleKernel``) factors the training covariance when
:func:`direct_pays`:

* the float64 factor fits the memory budget
  (:func:`kernelsolve.linalg.dense.memory_budget`), and
* it costs less than GPyTorch's cheapest CG: :data:`MIN_CG_ITERATIONS`
  products with ``columns`` columns (GPyTorch's ``linear_cg`` never stops
  before 10 iterations), that is ``n < 6 * MIN_CG_ITERATIONS * columns``.

The factor is float64 (as the float32 variances of a float32 model are
computed from it, they are exact to float32 rounding, where GPyTorch's CG
stops at ``eval_cg_tolerance``, 0.01); it is made once per strategy (GPyTorch
keeps the strategy between predictions until the model changes) and serves
the predictive means too. It is used only with GPyTorch's default
``detach_test_caches`` (a factor has no graph) and without ``fast_pred_var``
and missing-label policies other than "ignore"; every other case is
GPyTorch's own code. ``psd_safe_cholesky`` adds jitter with a
``NumericalWarning`` where the matrix is not numerically positive definite,
as GPyTorch's own Cholesky paths do.
"""

from __future__ import annotations

import math

import torch
from gpytorch import settings
from gpytorch.models.exact_prediction_strategies import DefaultPredictionStrategy
from gpytorch.utils.memoize import cached
from linear_operator import to_dense, to_linear_operator
from linear_operator.operators import MatmulLinearOperator
from linear_operator.utils.cholesky import psd_safe_cholesky

from ..linalg import dense

__all__ = ["EnginePredictionStrategy", "MIN_CG_ITERATIONS", "direct_pays"]

#: GPyTorch's ``linear_cg`` runs at least this many iterations.
MIN_CG_ITERATIONS = 10

#: Entries of the training covariance evaluated at once when the factor is made
#: (a float32 kernel's differences for 2-D points: 128 MiB).
CHUNK_ENTRIES = 2**24


def direct_pays(n: int, columns: int, batch: int = 1, device: str = "cpu") -> bool:
    """Whether a float64 Cholesky factor of a ``batch x n x n`` training
    covariance costs less than GPyTorch's CG for ``columns`` right-hand sides
    (``n^3 / 3`` against ``2 n^2 columns`` per iteration, at least
    :data:`MIN_CG_ITERATIONS` iterations) and fits the memory budget (the
    factor is made in place, from row chunks of the matrix).

    Example
    -------
    >>> direct_pays(5000, 500), direct_pays(5000, 1)
    (True, False)
    """
    cheaper = n < 6 * MIN_CG_ITERATIONS * columns
    nbytes = batch * n * n * 8
    return cheaper and nbytes <= dense.memory_budget(device)


class EnginePredictionStrategy(DefaultPredictionStrategy):
    """GPyTorch's ``DefaultPredictionStrategy`` whose predictive covariance (and
    later means) use one float64 Cholesky factor of the training covariance
    where :func:`direct_pays` (module docstring); GPyTorch's CG otherwise.

    Example
    -------
    >>> import torch, gpytorch
    >>> from kernelsolve.integrations.gpytorch import RBFKernel
    >>> class GP(gpytorch.models.ExactGP):
    ...     def __init__(self, x, y):
    ...         super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood())
    ...         self.mean_module = gpytorch.means.ZeroMean()
    ...         self.covar_module = gpytorch.kernels.ScaleKernel(RBFKernel())
    ...     def forward(self, x):
    ...         return gpytorch.distributions.MultivariateNormal(
    ...             self.mean_module(x), self.covar_module(x))
    >>> x = torch.rand(1000, 2); model = GP(x, torch.sin(6 * x).sum(-1)).eval()
    >>> with torch.no_grad():
    ...     var = model.likelihood(model(torch.rand(200, 2))).variance
    >>> type(model.prediction_strategy).__name__
    'EnginePredictionStrategy'
    """

    _factor: torch.Tensor | None = None

    def _usable(self) -> bool:
        """The factor may stand in for GPyTorch's solves (module docstring)."""
        return (
            settings.detach_test_caches.on()
            and settings.fast_pred_var.off()
            and settings.observation_nan_policy.value() == "ignore"
        )

    def _ensure_factor(self, columns: int) -> torch.Tensor | None:
        """The factor, made now if it pays for ``columns`` right-hand sides."""
        if self._factor is not None or not self._usable():
            return self._factor
        covar = self.lik_train_train_covar
        n, batch = covar.shape[-1], covar.shape[:-2].numel()
        if not direct_pays(n, columns, batch, str(covar.device)):
            return None
        with torch.no_grad():
            self._factor = _cholesky(covar)
        return self._factor

    def _solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """``(K + noise)^{-1} rhs`` by the factor, in ``rhs``'s dtype."""
        x = torch.cholesky_solve(rhs.to(torch.float64), self._factor)
        return x.to(rhs.dtype)

    @cached(name="mean_cache")
    def _mean_cache(self, nan_policy: str) -> torch.Tensor:
        if self._factor is None or nan_policy != "ignore" or not self._usable():
            return DefaultPredictionStrategy._mean_cache.__wrapped__(self, nan_policy)
        mvn = self.likelihood(self.train_prior_dist, self.train_inputs)
        offset = (self.train_labels - mvn.loc).unsqueeze(-1).detach()
        return self._solve(offset).squeeze(-1)

    def exact_prediction(self, *args, **kwargs):
        # the factor first when the variances will use it, so that the means
        # (computed first by GPyTorch) come from it too
        if settings.skip_posterior_variances.off():
            self._ensure_factor(_test_points(self.num_train, args, kwargs))
        return super().exact_prediction(*args, **kwargs)

    def exact_predictive_covar(self, test_test_covar, test_train_covar):
        if settings.skip_posterior_variances.on() or not self._usable():
            return super().exact_predictive_covar(test_test_covar, test_train_covar)
        if self._ensure_factor(test_train_covar.shape[-2]) is None:
            return super().exact_predictive_covar(test_test_covar, test_train_covar)
        # GPyTorch's own assembly, with the factor's solve: lazy where the test
        # covariance is, so that ``.variance`` of many test points never forms
        # the test x test matrix
        cross = to_dense(test_train_covar)
        rhs = self._solve(cross.mT)
        if torch.is_tensor(test_test_covar):
            if test_test_covar.dim() == 2:
                return to_linear_operator(torch.addmm(test_test_covar, cross, rhs, alpha=-1))
            return to_linear_operator(test_test_covar - cross @ rhs)
        return test_test_covar + MatmulLinearOperator(cross, rhs.mul(-1))


def _test_points(num_train: int, args: tuple, kwargs: dict) -> int:
    """The number of test points of an ``exact_prediction`` call: GPyTorch 1.14+
    passes ``(test_mean, test_test_covar, test_train_covar)``, earlier versions
    ``(joint_mean, joint_covar)`` over the training and test points."""
    cross = kwargs.get("test_train_covar", args[2] if len(args) > 2 else None)
    if cross is not None:
        return cross.shape[-2]
    joint = kwargs.get("joint_covar", args[1] if len(args) > 1 else None)
    return joint.shape[-1] - num_train


def _float64_matrix(covar) -> torch.Tensor:
    """The (lazy) covariance as one float64 block, evaluated in row chunks of at
    most :data:`CHUNK_ENTRIES` entries, so that no model-dtype copy of the whole
    matrix (or of a kernel's ``(rows, n, D)`` differences) is ever held."""
    covar = covar.evaluate_kernel()
    *batch, n, _ = covar.shape
    out = torch.empty(*batch, n, n, dtype=torch.float64, device=covar.device)
    step = max(1, CHUNK_ENTRIES // max(1, n * max(1, math.prod(batch))))
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        out[..., r0:r1, :] = to_dense(covar[..., r0:r1, :]).detach()
    return out


def _cholesky(covar) -> torch.Tensor:
    """The float64 lower Cholesky factor of a (lazy) covariance, made in place
    (one n x n float64 block); where the matrix is not numerically positive
    definite, GPyTorch's ``psd_safe_cholesky`` retries with jitter and a
    ``NumericalWarning`` (on a fresh copy: the failed attempt overwrote it)."""
    matrix = _float64_matrix(covar)
    info = torch.empty(matrix.shape[:-2], dtype=torch.int32, device=matrix.device)
    torch.linalg.cholesky_ex(matrix, out=(matrix, info))
    if not bool((info == 0).all()):
        del matrix
        return psd_safe_cholesky(_float64_matrix(covar))
    return matrix
