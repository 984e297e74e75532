"""``GaussianProcessRegressor``: scikit-learn's estimator on the engine.

The same parameters, attributes and methods as
``sklearn.gaussian_process.GaussianProcessRegressor``, with scikit-learn's
own kernel objects (their ``theta``, ``bounds`` and ``clone_with_theta``),
translated to engine formulas by :mod:`.kernels`. Two paths, chosen by
``solver``:

* ``"direct"`` (``"auto"`` up to :data:`DIRECT_MAX_N` training points): what
  scikit-learn does, to rounding: the kernel matrix and its hyperparameter
  gradient as dense blocks filled by the engine, a Cholesky factor ``L_``,
  the exact log marginal likelihood (:func:`.lml.exact`). A kernel that has no
  formula (a custom kernel, Matern with another nu, ``PairwiseKernel``, non-numeric
  inputs) runs here on scikit-learn's own kernel calls, with a
  :class:`KernelFallbackWarning`.
* ``"iterative"`` (``"auto"`` above it): memory ``O(n)`` (times the
  preconditioner's rank, at most ``max_rank``), the ``n x n`` matrix never
  formed: ``alpha_ = (K + D)^-1 y`` by randomly pivoted Cholesky-preconditioned
  block CG, the log marginal likelihood and its gradient estimated by
  stochastic Lanczos quadrature and Hutchinson probes (:func:`.lml.estimate`,
  which states the estimator's variance), seeded by ``random_state`` so that
  the objective the optimizer sees is a deterministic function of ``theta``.
  ``predict`` gives the mean as one engine reduction; ``return_std`` solves
  ``(K + D) v = k(X, x_*)`` for every test point by the same block CG, in
  chunks of :data:`STD_CHUNK` points (cost: about ``q / STD_CHUNK`` CG runs of
  ``n^2``-pair products for ``q`` test points: exact to ``rtol`` but far
  dearer than the mean); ``return_cov`` and ``sample_y`` likewise, for at most
  :data:`MAX_COV_POINTS` test points.
"""

from __future__ import annotations

import numbers
import warnings
from operator import itemgetter

import numpy as np
import scipy.optimize
from scipy.linalg import cho_solve, solve_triangular
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin, _fit_context, clone
from sklearn.gaussian_process.kernels import RBF, Kernel
from sklearn.gaussian_process.kernels import ConstantKernel as C
from sklearn.preprocessing._data import _handle_zeros_in_scale
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import validate_data

from .. import dask_predict
from ..linalg.cg import NotPositiveDefiniteError
from . import lml as lml_mod
from .kernels import (
    EngineKernel,
    SklearnKernel,
    UntranslatableKernelError,
    check_products,
    translate,
)

__all__ = ["GaussianProcessRegressor", "KernelFallbackWarning", "DIRECT_MAX_N"]

#: ``solver="auto"`` is exact (dense Cholesky) up to this many training points.
DIRECT_MAX_N = 3000
#: Test points per block CG of ``predict(return_std=True)`` on the iterative path.
STD_CHUNK = 64
#: Most test points of ``return_cov`` (and ``sample_y``) on the iterative path.
MAX_COV_POINTS = 2000
#: Test rows per dense block of the direct path's ``predict`` (memory ``rows x n``).
DIRECT_ROWS = 2048


class KernelFallbackWarning(UserWarning):
    """The kernel has no engine formula: the direct path uses scikit-learn's own kernel calls."""


class GaussianProcessRegressor(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Gaussian process regression (scikit-learn's estimator) without the n x n matrix at scale.

    Parameters
    ----------
    kernel, alpha, optimizer, n_restarts_optimizer, normalize_y, copy_X_train,
    n_targets, random_state
        As in ``sklearn.gaussian_process.GaussianProcessRegressor`` (default
        kernel ``ConstantKernel(1.0, "fixed") * RBF(1.0, "fixed")``).
    solver : {"auto", "direct", "iterative"}
        "direct": dense Cholesky, scikit-learn's results to rounding.
        "iterative": preconditioned CG, estimated log marginal likelihood,
        memory O(n). "auto": "direct" up to :data:`DIRECT_MAX_N` training
        points (3,000), "iterative" above.
    n_probes : int
        Probes of the iterative log marginal likelihood (standard error
        ~ 1 / sqrt(n_probes); see :mod:`.lml`).
    rtol : float
        Relative residual of the iterative path's CG.
    maxiter : int
        Most CG iterations of the iterative path.
    max_rank : int
        Largest rank of its preconditioner (memory ``8 n max_rank`` bytes).
    tol : float, optional
        Iterative path: the products with the training kernel matrix (and its
        hyperparameter derivatives) skip the block pairs whose entries are
        negligible, within ``|K~v - Kv|_i <= tol max|v| sum_j |K_ij|``
        (``docs/approximation.md``); ``1e-8`` halves the cost of a Matern 3/2
        product on 1e5 DEM points. None (default): exact. The direct path and
        the predicted means are exact (``return_std``'s solves use ``tol``).
    product_dtype : {"float64", "float32"}
        Iterative path: the precision of the kernel products, derivatives and
        predictions (the CG vectors, the preconditioner and the likelihood
        estimate stay float64). "float32" makes them ~2.7x faster on the CPU
        (Matern 3/2, 2e4 points) with products accurate to ~1e-6 relative:
        for ``rtol`` of 1e-4 and looser (the demo's GP uses it at 1e-3). The
        direct path is float64.
    products : {"exact", "grid"}
        Iterative path: "grid" makes the training kernel's products near-exact
        in ``O(n log n)`` (:class:`~kernelsolve.linalg.grid_product.GridKernelProduct`:
        pairs in adjacent boxes exact, the rest interpolated on a grid and
        summed by FFTs; a 1e6-point product in 1.6 s instead of 12 minutes
        on two cores). Needs a stationary kernel, 1 to 3 features and
        ``tol=None``; the measured error is :attr:`grid_error_`. Hyperparameter
        gradients, predictions and the direct path stay exact.

    Attributes
    ----------
    X_train_, y_train_, kernel_, alpha_, log_marginal_likelihood_value_,
    n_features_in_, feature_names_in_
        As in scikit-learn; ``L_`` (the Cholesky factor) on the direct path only.
    solver_ : str
        The path taken, "direct" or "iterative".
    lml_estimate_ : lml.Estimate or None
        The iterative path's estimate at the fitted hyperparameters (value,
        standard error, CG iterations, preconditioner rank).
    skipped_pairs_ : float
        The fraction of point pairs the fit's products skipped (``tol``; 0.0 exact).
    grid_error_ : float or None
        ``products="grid"``: the largest error of a product on 200 random rows,
        relative to ``sum_j |K_ij v_j|`` (as ``tol``; the interpolation order is
        raised until it is at most 1e-6, else a ``GridAccuracyWarning``); None
        otherwise.

    Example
    -------
    >>> import numpy as np
    >>> from sklearn.gaussian_process.kernels import RBF, WhiteKernel
    >>> X = np.random.default_rng(0).random((200, 1)); y = np.sin(6 * X[:, 0])
    >>> gp = GaussianProcessRegressor(RBF(0.3) + WhiteKernel(1e-2), random_state=0).fit(X, y)
    >>> mean, std = gp.predict(X[:3], return_std=True)
    >>> bool(np.allclose(mean, y[:3], atol=0.05)), gp.solver_
    (True, 'direct')
    """

    _parameter_constraints: dict = {
        "kernel": [None, Kernel],
        "alpha": [Interval(numbers.Real, 0, None, closed="left"), np.ndarray],
        "optimizer": [StrOptions({"fmin_l_bfgs_b"}), callable, None],
        "n_restarts_optimizer": [Interval(numbers.Integral, 0, None, closed="left")],
        "normalize_y": ["boolean"],
        "copy_X_train": ["boolean"],
        "n_targets": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "solver": [StrOptions({"auto", "direct", "iterative"})],
        "n_probes": [Interval(numbers.Integral, 2, None, closed="left")],
        "rtol": [Interval(numbers.Real, 0, 1, closed="neither")],
        "maxiter": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_rank": [Interval(numbers.Integral, 0, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, 1, closed="left"), None],
        "product_dtype": [StrOptions({"float64", "float32"})],
        "products": [StrOptions({"exact", "grid"})],
    }

    def __init__(
        self,
        kernel=None,
        *,
        alpha=1e-10,
        optimizer="fmin_l_bfgs_b",
        n_restarts_optimizer=0,
        normalize_y=False,
        copy_X_train=True,
        n_targets=None,
        random_state=None,
        solver="auto",
        n_probes=16,
        rtol=1e-6,
        maxiter=1000,
        max_rank=1000,
        tol=None,
        product_dtype="float64",
        products="exact",
    ):
        self.kernel = kernel
        self.alpha = alpha
        self.optimizer = optimizer
        self.n_restarts_optimizer = n_restarts_optimizer
        self.normalize_y = normalize_y
        self.copy_X_train = copy_X_train
        self.n_targets = n_targets
        self.random_state = random_state
        self.solver = solver
        self.n_probes = n_probes
        self.rtol = rtol
        self.maxiter = maxiter
        self.max_rank = max_rank
        self.tol = tol
        self.product_dtype = product_dtype
        self.products = products

    # ------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the Gaussian process (hyperparameters by the optimizer, then ``alpha_``).

        Parameters
        ----------
        X : array of shape (n_samples, n_features) (or a list of objects for a
            kernel on structured data, direct path only)
        y : array of shape (n_samples,) or (n_samples, n_targets)

        Returns
        -------
        self
        """
        self.kernel_ = C() * RBF() if self.kernel is None else clone(self.kernel)
        self._rng = check_random_state(self.random_state)
        X, y = self._validate_fit(X, y)
        self._alpha = self._check_alpha(y)
        self.X_train_ = np.copy(X) if self.copy_X_train else X
        self.y_train_ = np.copy(y) if self.copy_X_train else y
        self.solver_ = self._choose_solver(X)
        # the direct path draws nothing more than scikit-learn (same restarts)
        self._seed = int(self._rng.randint(2**31 - 1)) if self.solver_ == "iterative" else 0
        self.lml_estimate_, self.skipped_pairs_, self.grid_error_ = None, 0.0, None
        if self.solver_ == "iterative":
            check_products(self.products, self.tol, self.kernel_, X)
        fixed = self.optimizer is None or self.kernel_.n_dims == 0
        if self.solver_ == "iterative" and fixed:
            self._fit_iterative()  # one estimate gives alpha_ and the likelihood
            self.log_marginal_likelihood_value_ = self.lml_estimate_.value
            return self
        self._optimize()
        if self.solver_ == "direct":
            self._fit_direct()
        else:
            self._fit_iterative()
        return self

    def _validate_fit(self, X, y):
        if self.kernel_.requires_vector_input:
            dtype, ensure_2d = "numeric", True
        else:
            dtype, ensure_2d = None, False
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, ensure_2d=ensure_2d, dtype=dtype
        )
        n_targets_seen = y.shape[1] if y.ndim > 1 else 1
        if self.n_targets is not None and n_targets_seen != self.n_targets:
            raise ValueError(
                "The number of targets seen in `y` is different from the parameter "
                f"`n_targets`. Got {n_targets_seen} != {self.n_targets}."
            )
        if self.normalize_y:
            self._y_train_mean = np.mean(y, axis=0)
            self._y_train_std = _handle_zeros_in_scale(np.std(y, axis=0), copy=False)
            y = (y - self._y_train_mean) / self._y_train_std
        else:
            shape = (y.shape[1],) if y.ndim == 2 else 1
            self._y_train_mean = np.zeros(shape=shape)
            self._y_train_std = np.ones(shape=shape)
        return X, y

    def _check_alpha(self, y):
        alpha = self.alpha
        if np.iterable(alpha):
            alpha = np.asarray(alpha, dtype=float)
            if alpha.shape[0] == 1:
                return float(alpha[0])
            if alpha.shape[0] != y.shape[0]:
                raise ValueError(
                    "alpha must be a scalar or an array with same number of "
                    f"entries as y. ({alpha.shape[0]} != {y.shape[0]})"
                )
        return alpha

    def _choose_solver(self, X) -> str:
        """ "direct" or "iterative"; also translates the kernel (``self._translation``,
        None for scikit-learn's own calls, with a warning)."""
        n = len(X)
        solver = self.solver
        if solver == "auto":
            solver = "direct" if n <= DIRECT_MAX_N else "iterative"
        self._translation = None
        try:
            if not self.kernel_.requires_vector_input:
                raise UntranslatableKernelError(
                    f"cannot translate the kernel {self.kernel_!r}: it takes non-vector inputs"
                )
            self._translation = translate(self.kernel_, X.shape[1])
        except UntranslatableKernelError as exc:
            if solver == "iterative":
                raise UntranslatableKernelError(
                    f"{exc}; the iterative solver needs an engine formula "
                    f"(n = {n} > {DIRECT_MAX_N} or solver='iterative')"
                ) from None
            warnings.warn(
                f"{exc}; using scikit-learn's own kernel calls (dense, direct solver)",
                KernelFallbackWarning,
                stacklevel=3,
            )
        return solver

    def _evaluator(self, kernel):
        if self._translation is None:
            return SklearnKernel(kernel)
        if self.solver_ != "iterative":
            return EngineKernel(self._translation, kernel)
        return EngineKernel(
            self._translation, kernel, tol=self.tol, dtype=self.product_dtype,
            products=self.products,
        )  # fmt: skip

    def _X64(self, X):
        return np.ascontiguousarray(X, dtype=np.float64) if self._translation else X

    def _optimize(self) -> None:
        """scikit-learn's optimisation of ``theta`` (with restarts), or the value at
        the kernel's own ``theta`` when ``optimizer`` is None."""
        if self.optimizer is None or self.kernel_.n_dims == 0:
            self.log_marginal_likelihood_value_ = self.log_marginal_likelihood(
                self.kernel_.theta, clone_kernel=False
            )
            return

        def obj_func(theta, eval_gradient=True):
            if eval_gradient:
                lml, grad = self.log_marginal_likelihood(
                    theta, eval_gradient=True, clone_kernel=False
                )
                return -lml, -grad
            return -self.log_marginal_likelihood(theta, clone_kernel=False)

        optima = [
            self._constrained_optimization(obj_func, self.kernel_.theta, self.kernel_.bounds)
        ]
        if self.n_restarts_optimizer > 0:
            if not np.isfinite(self.kernel_.bounds).all():
                raise ValueError(
                    "Multiple optimizer restarts (n_restarts_optimizer>0) "
                    "requires that all bounds are finite."
                )
            bounds = self.kernel_.bounds
            for _ in range(self.n_restarts_optimizer):
                theta_initial = self._rng.uniform(bounds[:, 0], bounds[:, 1])
                optima.append(self._constrained_optimization(obj_func, theta_initial, bounds))
        lml_values = list(map(itemgetter(1), optima))
        self.kernel_.theta = optima[np.argmin(lml_values)][0]
        self.kernel_._check_bounds_params()
        self.log_marginal_likelihood_value_ = -np.min(lml_values)

    def _constrained_optimization(self, obj_func, initial_theta, bounds):
        if self.optimizer == "fmin_l_bfgs_b":
            opt_res = scipy.optimize.minimize(
                obj_func, initial_theta, method="L-BFGS-B", jac=True, bounds=bounds
            )
            _check_optimize_result("lbfgs", opt_res)
            return opt_res.x, opt_res.fun
        if callable(self.optimizer):
            return self.optimizer(obj_func, initial_theta, bounds=bounds)
        raise ValueError(f"Unknown optimizer {self.optimizer}.")

    def _fit_direct(self) -> None:
        ev = self._evaluator(self.kernel_)
        K = ev.matrix(self._X64(self.X_train_))
        K[np.diag_indices_from(K)] += self._alpha
        try:
            self.L_ = np.linalg.cholesky(K)
        except np.linalg.LinAlgError as exc:
            exc.args = (
                f"The kernel, {self.kernel_}, is not returning a positive definite matrix. "
                "Try gradually increasing the 'alpha' parameter of your "
                "GaussianProcessRegressor estimator.",
            ) + exc.args
            raise
        self.alpha_ = cho_solve((self.L_, True), self.y_train_, check_finite=False)

    def _fit_iterative(self) -> None:
        ev = self._evaluator(self.kernel_)
        est, a, M = self._estimate(self.kernel_, eval_gradient=False, ev=ev)
        self.lml_estimate_, self._preconditioner = est, M
        self.skipped_pairs_ = ev.skipped_pairs
        self.grid_error_ = None if ev.grid is None else ev.grid.error
        self.alpha_ = a[:, 0] if self.y_train_.ndim == 1 else a

    def _estimate(self, kernel, eval_gradient: bool, ev=None):
        return lml_mod.estimate(
            self._evaluator(kernel) if ev is None else ev,
            self._X64(self.X_train_),
            self.y_train_,
            self._alpha,
            eval_gradient=eval_gradient,
            n_probes=self.n_probes,
            seed=self._seed,
            rtol=self.rtol,
            maxiter=self.maxiter,
            max_rank=self.max_rank,
        )

    # ------------------------------------------------------------------
    def log_marginal_likelihood(self, theta=None, eval_gradient=False, clone_kernel=True):
        """Log marginal likelihood of ``theta`` for the training data (scikit-learn's
        signature): exact on the direct path, estimated on the iterative one
        (:func:`.lml.estimate`, with the fit's seed; standard error in
        ``lml_estimate_`` at the fitted ``theta``).

        Parameters
        ----------
        theta : array of shape (n_kernel_params,), optional
            Log-transformed hyperparameters; None: the value at the fit.
        eval_gradient : bool
            Also return the gradient with respect to ``theta``.
        clone_kernel : bool
            Evaluate a copy of ``kernel_`` (else ``kernel_.theta`` is set).

        Returns
        -------
        float, and the gradient array when ``eval_gradient``
        """
        if theta is None:
            if eval_gradient:
                raise ValueError("Gradient can only be evaluated for theta!=None")
            return self.log_marginal_likelihood_value_
        if clone_kernel:
            kernel = self.kernel_.clone_with_theta(theta)
        else:
            kernel = self.kernel_
            kernel.theta = theta
        if self.solver_ == "iterative":
            try:
                est, _, _ = self._estimate(kernel, eval_gradient)
            except NotPositiveDefiniteError:  # as the direct path's failed Cholesky
                return (-np.inf, np.zeros_like(theta)) if eval_gradient else -np.inf
            return (est.value, est.gradient) if eval_gradient else est.value
        ev = self._evaluator(kernel)
        X = self._X64(self.X_train_)
        K = ev.matrix(X)
        K[np.diag_indices_from(K)] += self._alpha
        G = ev.gradient(X) if eval_gradient else None
        try:
            value, gradient, _, _ = lml_mod.exact(K, self.y_train_, G)
        except np.linalg.LinAlgError:
            return (-np.inf, np.zeros_like(theta)) if eval_gradient else -np.inf
        return (value, gradient) if eval_gradient else value

    # ------------------------------------------------------------------
    def predict(self, X, return_std=False, return_cov=False):
        """Predict with the Gaussian process (its prior before ``fit``).

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        return_std, return_cov : bool
            Also return the standard deviation or the joint covariance (at most
            one of them; on the iterative path see the module docstring for the
            cost and :data:`MAX_COV_POINTS`).

        Returns
        -------
        y_mean, and y_std or y_cov as in scikit-learn
        """
        if return_std and return_cov:
            raise RuntimeError("At most one of return_std or return_cov can be requested.")
        if dask_predict.is_lazy(X):
            return self._predict_lazily(X, return_std, return_cov)
        if self.kernel is None or self.kernel.requires_vector_input:
            dtype, ensure_2d = "numeric", True
        else:
            dtype, ensure_2d = None, False
        X = validate_data(self, X, ensure_2d=ensure_2d, dtype=dtype, reset=False)
        if not hasattr(self, "X_train_"):
            return self._predict_prior(X, return_std, return_cov)
        ev = self._evaluator(self.kernel_)
        Xq, Xt = self._X64(X), self._X64(self.X_train_)
        alpha = self.alpha_[:, None] if self.alpha_.ndim == 1 else self.alpha_
        y_mean = ev.cross_matmat(Xq, Xt, alpha)
        y_mean = self._y_train_std * y_mean + self._y_train_mean
        if y_mean.ndim > 1 and y_mean.shape[1] == 1:
            y_mean = np.squeeze(y_mean, axis=1)
        if not return_cov and not return_std:
            return y_mean
        if return_cov:
            y_cov = self._posterior_cov(ev, X, Xq, Xt)
            y_cov = np.outer(y_cov, self._y_train_std**2).reshape(*y_cov.shape, -1)
            if y_cov.shape[2] == 1:
                y_cov = np.squeeze(y_cov, axis=2)
            return y_mean, y_cov
        y_var = self.kernel_.diag(X).copy() - self._explained_variance(ev, Xq, Xt)
        y_var_negative = y_var < 0
        if np.any(y_var_negative):
            warnings.warn(
                "Predicted variances smaller than 0. Setting those variances to 0.",
                stacklevel=2,
            )
            y_var[y_var_negative] = 0.0
        y_var = np.outer(y_var, self._y_train_std**2).reshape(*y_var.shape, -1)
        if y_var.shape[1] == 1:
            y_var = np.squeeze(y_var, axis=1)
        return y_mean, np.sqrt(y_var)

    def _predict_prior(self, X, return_std, return_cov):
        if self.kernel is None:
            kernel = C(1.0, constant_value_bounds="fixed") * RBF(1.0, length_scale_bounds="fixed")
        else:
            kernel = self.kernel
        n_targets = self.n_targets if self.n_targets is not None else 1
        y_mean = np.zeros(shape=(X.shape[0], n_targets)).squeeze()
        if return_cov:
            y_cov = kernel(X)
            if n_targets > 1:
                y_cov = np.repeat(np.expand_dims(y_cov, -1), repeats=n_targets, axis=-1)
            return y_mean, y_cov
        if return_std:
            y_var = kernel.diag(X)
            if n_targets > 1:
                y_var = np.repeat(np.expand_dims(y_var, -1), repeats=n_targets, axis=-1)
            return y_mean, np.sqrt(y_var)
        return y_mean

    def _solved_cross(self, ev, Xq, Xt):
        """``V`` with ``V^T V = k(Xq, X) (K + D)^-1 k(X, Xq)``: ``L^-1 k(X, Xq)``
        (direct) or ``(K + D)^-1 k(X, Xq)`` with ``k(X, Xq)`` itself (iterative)."""
        Kt = ev.matrix(Xt, Xq)  # (n, q)
        if self.solver_ == "direct":
            return solve_triangular(self.L_, Kt, lower=True, check_finite=False), None
        op = ev.operator(Xt)
        D = ev.shift + np.asarray(self._alpha, dtype=float)
        D = D if np.ndim(D) == 0 else D[:, None]
        res = lml_mod.mbcg(
            lambda V: op.matmat(V) + D * V, self._preconditioner, Kt, self.rtol, self.maxiter
        )
        return Kt, res.x

    def _explained_variance(self, ev, Xq, Xt) -> np.ndarray:
        """``diag(k(Xq, X) (K + D)^-1 k(X, Xq))`` by chunks of test points."""
        rows = DIRECT_ROWS if self.solver_ == "direct" else STD_CHUNK
        out = np.empty(len(Xq))
        for lo in range(0, len(Xq), rows):
            V, W = self._solved_cross(ev, Xq[lo : lo + rows], Xt)
            W = V if W is None else W
            out[lo : lo + rows] = np.einsum("ij,ij->j", V, W)
        return out

    def _posterior_cov(self, ev, X, Xq, Xt) -> np.ndarray:
        if self.solver_ == "iterative" and len(Xq) > MAX_COV_POINTS:
            raise ValueError(
                f"return_cov on the iterative path takes at most {MAX_COV_POINTS} test points "
                f"(the covariance is q x q and needs q solves), got {len(Xq)}; use return_std"
            )
        prior = self.kernel_(X) if self._translation is None else ev.matrix(Xq)
        V, W = self._solved_cross(ev, Xq, Xt)
        return prior - V.T @ (V if W is None else W)

    def _predict_lazily(self, X, return_std: bool, return_cov: bool):
        """``predict`` over the chunks of a dask array or xarray object (the mean and
        the standard deviations are pointwise; the joint covariance is not)."""
        if return_cov:
            raise ValueError(
                "return_cov=True with a dask or xarray X: the joint covariance of all "
                "points is not computed chunk by chunk; use return_std=True"
            )
        targets = self.alpha_.shape[1:] if hasattr(self, "X_train_") else (self.n_targets,)
        tail = () if targets in ((), (1,), (None,)) else targets
        d = getattr(self, "n_features_in_", None)  # None before fit: any
        return dask_predict.predict_points(
            self, "predict", X, n_features=d, tail=tail, n_outputs=1 + bool(return_std),
            names=("mean", "std"), name="X", return_std=bool(return_std),
        )  # fmt: skip

    def sample_y(self, X, n_samples=1, random_state=0):
        """Draw samples from the Gaussian process (scikit-learn's method: the joint
        posterior at ``X`` from ``predict(X, return_cov=True)``).

        Returns
        -------
        array of shape (n_samples_X, n_samples) or (n_samples_X, n_targets, n_samples)
        """
        rng = check_random_state(random_state)
        y_mean, y_cov = self.predict(X, return_cov=True)
        if y_mean.ndim == 1:
            return rng.multivariate_normal(y_mean, y_cov, n_samples).T
        samples = [
            rng.multivariate_normal(y_mean[:, t], y_cov[..., t], n_samples).T[:, np.newaxis]
            for t in range(y_mean.shape[1])
        ]
        return np.hstack(samples)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags
