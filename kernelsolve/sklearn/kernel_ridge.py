"""``KernelRidge``: scikit-learn's kernel ridge regression, solved by the engine at scale.

The same class as ``sklearn.kernel_ridge.KernelRidge`` (parameters, fitted
attributes, input validation, results) with two more parameters, ``solver``
and ``cg_rtol``. ``fit`` solves ``(K + alpha I) c = y`` for the dual
coefficients ``c``:

* **direct** (``n <= DIRECT_MAX_N`` under ``solver="auto"``): scikit-learn's
  own method, the dense kernel matrix of ``pairwise_kernels`` and a Cholesky
  solve (``scipy.linalg.solve(assume_a="pos")``, least squares with a warning
  if singular), so the answer is scikit-learn's at any size.
* **cg** (larger ``n``): preconditioned conjugate gradients
  (:func:`kernelsolve.linalg.solve.solve`) on the kernel matrix as an engine
  formula (:mod:`.pairwise`), memory ``O(n)``, to relative residual
  ``cg_rtol``. Only where CG's answer can be trusted
  (:func:`.pairwise.cg_trusted`: a positive definite ``K + alpha I``);
  otherwise "auto" takes the direct path and ``solver="cg"`` is an error.

``predict`` is one engine reduction ``K(X, X_fit_) @ dual_coef_`` (memory
``O(n + m)``) for the named kernels on dense input; callables, sparse input
and ``kernel="precomputed"`` are computed exactly as scikit-learn does (dense
``pairwise_kernels``; a callable is called on each pair of rows).
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from numbers import Real

import numpy as np
import scipy.linalg
import scipy.sparse
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin, _fit_context
from sklearn.metrics.pairwise import PAIRWISE_KERNEL_FUNCTIONS, pairwise_kernels
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .. import dask_predict
from ..lazytensor import Vi, Vj
from ..linalg import precond
from ..linalg.blas import one_blas_thread
from ..linalg.operator import KernelOperator
from ..linalg.solve import solve
from .pairwise import KERNELS, cg_trusted, kernel_lazy

__all__ = ["KernelRidge", "DIRECT_MAX_N"]

#: ``solver="auto"`` solves directly (scikit-learn's dense Cholesky) up to this
#: many samples, by CG above (where the kernel allows, see :func:`.pairwise.cg_trusted`).
#: The crossover of ``benchmarks/bench_sklearn_krr_kde.py`` and of ``K.solve``'s
#: own ``kernelsolve.linalg.direct.DIRECT_MAX_N``.
DIRECT_MAX_N = 3000

#: The RPCholesky preconditioner of the CG path grows until ``trace(K - F F^T) <=
#: RPCHOLESKY_TRACE_FRACTION * alpha * n`` (or its rank reaches 500): ``K.solve``'s
#: own stop (fraction 1) suits its default ``rtol=1e-6``; for ``cg_rtol=1e-8`` a
#: larger factor pays. Measured (rbf, gamma 10, alpha 1e-2, 3-D, 2 loaded cores):
#: n = 2e4, rank 192 -> 445, CG iterations 78 -> 10, solve 70 s -> 9 s.
RPCHOLESKY_TRACE_FRACTION = 0.01

#: Above this many samples the direct solve runs on one BLAS thread: OpenBLAS's
#: threaded Cholesky (``dpotrf``; 0.3.30 in scipy's wheel, 0.3.31 in numpy's) segfaults
#: here at n = 16,000 with 2 threads (fine at 12,000, and at 16,000 on one thread;
#: scikit-learn's own ``KernelRidge`` crashes at n = 20,000 on this machine).
THREADED_CHOLESKY_MAX_N = 12000


class KernelRidge(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Kernel ridge regression (``sklearn.kernel_ridge.KernelRidge`` on the engine).

    Parameters
    ----------
    alpha : float or array-like of shape (n_targets,), default=1.0
        Regularisation, >= 0; one value per target if an array.
    kernel : str or callable, default="linear"
        A name of ``sklearn.metrics.pairwise.PAIRWISE_KERNEL_FUNCTIONS``
        ("rbf", "laplacian", "linear", "poly"/"polynomial", "sigmoid",
        "cosine", "chi2", "additive_chi2"), "precomputed" (``X`` is the kernel
        matrix) or a callable of two rows returning a number (evaluated densely
        pair by pair, as scikit-learn does, and solved directly).
    gamma : float, default=None
        Of rbf, laplacian, poly, sigmoid (None: ``1 / n_features``) and chi2
        (None: 1.0, ``chi2_kernel``'s default; scikit-learn's ``KernelRidge``
        raises a casting error there).
    degree : float, default=3
        Degree of the polynomial kernel.
    coef0 : float, default=1
        Constant of the polynomial and sigmoid kernels.
    kernel_params : dict, default=None
        Keyword arguments of a callable kernel.
    solver : {"auto", "direct", "cg"}, default="auto"
        "direct": scikit-learn's dense Cholesky solve (``O(n^2)`` memory).
        "cg": preconditioned CG on the engine's kernel matrix (``O(n)``
        memory); a ValueError where CG cannot be trusted (``alpha = 0``,
        sigmoid, additive_chi2, non-integer degree, callables, "precomputed",
        sparse ``X``). "auto": "direct" up to :data:`DIRECT_MAX_N` (3,000)
        samples or where CG cannot be trusted, else "cg".
    cg_rtol : float, default=1e-8
        Relative residual ``||y - (K + alpha I) c|| / ||y||`` at which CG stops.
    tol : float, optional
        CG path: its products with ``K`` skip the block pairs whose entries are
        negligible, within ``|K~v - Kv|_i <= tol max|v| sum_j |K_ij|`` for kernels
        that decay with distance (``docs/approximation.md``). None (default):
        exact. The direct path and ``predict`` are exact.

    Attributes
    ----------
    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
    X_fit_ : ndarray or sparse matrix of shape (n_samples, n_features)
        The training data (the training kernel matrix if "precomputed").
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined when ``X`` has string feature names.
    solver_ : str
        The path ``fit`` took, "direct" or "cg".
    skipped_pairs_ : float
        The fraction of point pairs the CG products skipped (``tol``; 0.0 exact).

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.random((200, 3)), rng.random(200)
    >>> model = KernelRidge(alpha=0.1, kernel="rbf", gamma=2.0).fit(X, y)
    >>> model.predict(X[:3]).shape, model.solver_
    ((3,), 'direct')
    """

    _parameter_constraints: dict = {
        "alpha": [Interval(Real, 0, None, closed="left"), "array-like"],
        "kernel": [StrOptions(set(PAIRWISE_KERNEL_FUNCTIONS) | {"precomputed"}), callable],
        "gamma": [Interval(Real, 0, None, closed="left"), None],
        "degree": [Interval(Real, 0, None, closed="left")],
        "coef0": [Interval(Real, None, None, closed="neither")],
        "kernel_params": [dict, None],
        "solver": [StrOptions({"auto", "direct", "cg"})],
        "cg_rtol": [Interval(Real, 0, 1, closed="neither")],
        "tol": [Interval(Real, 0, 1, closed="left"), None],
    }

    def __init__(
        self,
        alpha=1.0,
        *,
        kernel="linear",
        gamma=None,
        degree=3,
        coef0=1,
        kernel_params=None,
        solver="auto",
        cg_rtol=1e-8,
        tol=None,
    ):
        self.alpha = alpha
        self.kernel = kernel
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.kernel_params = kernel_params
        self.solver = solver
        self.cg_rtol = cg_rtol
        self.tol = tol

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.pairwise = self.kernel == "precomputed"
        return tags

    # ------------------------------------------------------------------
    def _params(self) -> dict:
        return {"gamma": self.gamma, "degree": self.degree, "coef0": self.coef0}

    def _dense_kernel(self, X, Y=None) -> np.ndarray:
        """scikit-learn's kernel matrix (``KernelRidge._get_kernel``)."""
        if callable(self.kernel):
            params = self.kernel_params or {}
        else:
            params = dict(self._params())
            if self.kernel == "chi2" and self.gamma is None:
                params["gamma"] = 1.0
        return pairwise_kernels(X, Y, metric=self.kernel, filter_params=True, **params)

    def _on_engine(self, *arrays) -> bool:
        """Named kernel and dense arrays: the engine's formula applies."""
        named = isinstance(self.kernel, str) and self.kernel in KERNELS
        return named and not any(scipy.sparse.issparse(a) for a in arrays)

    def _choose_solver(self, X, alpha: np.ndarray) -> str:
        trusted = self._on_engine(X) and cg_trusted(self.kernel, self.degree, alpha.min())
        if self.solver == "cg":
            if not trusted:
                raise ValueError(
                    f"solver='cg' cannot be trusted for kernel={self.kernel!r} with "
                    f"alpha={self.alpha!r} (K + alpha I may not be positive definite, or X "
                    "is sparse, or the kernel is a callable / precomputed); use "
                    "solver='direct' or 'auto'"
                )
            return "cg"
        if self.solver == "direct" or not trusted or X.shape[0] <= DIRECT_MAX_N:
            return "direct"
        return "cg"

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None) -> KernelRidge:
        """Fit the model: solve ``(K + alpha I) c = y`` (weighted as scikit-learn).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data (the kernel matrix, shape (n_samples, n_samples),
            if ``kernel="precomputed"``).
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : float or array-like of shape (n_samples,), default=None

        Returns
        -------
        self : KernelRidge
        """
        X, y = validate_data(
            self, X, y, accept_sparse=("csr", "csc"), multi_output=True, y_numeric=True
        )
        sw = None
        if sample_weight is not None:
            sw = np.sqrt(_check_sample_weight(sample_weight, X))
        alpha = np.atleast_1d(np.asarray(self.alpha, dtype=np.float64))
        ravel = y.ndim == 1
        Y = y.reshape(-1, 1) if ravel else y
        if alpha.ndim != 1 or alpha.size not in (1, Y.shape[1]):
            raise ValueError(
                f"alpha must be a number or one value per target ({Y.shape[1]}), "
                f"got shape {alpha.shape}"
            )
        if np.any(alpha < 0):
            raise ValueError(f"alpha must be >= 0, got {self.alpha!r}")
        self.solver_ = self._choose_solver(X, alpha)
        self.skipped_pairs_ = 0.0
        if self.solver_ == "direct":
            K = self._dense_kernel(X)
            dual = _solve_dense(K, Y, alpha, sw)
        else:
            dual = self._solve_cg(np.asarray(X, dtype=np.float64), Y, alpha, sw)
        self.dual_coef_ = dual.ravel() if ravel else dual
        self.X_fit_ = X
        return self

    def _solve_cg(self, X, Y, alpha, sw) -> np.ndarray:
        """One CG block solve per distinct alpha (all targets sharing it at once)."""
        K = kernel_lazy(self.kernel, X, X, **self._params())
        if sw is not None:
            w = sw[:, None].astype(np.float64)
            K = K * Vi(w) * Vj(w)  # S K S, S = diag(sqrt(sample_weight)): sklearn's system
            Y = Y * sw[:, None]
        op = KernelOperator.from_lazy(K, tol=self.tol)
        alphas = np.broadcast_to(alpha, (Y.shape[1],))
        dual = np.empty(Y.shape, dtype=np.float64)
        for a in np.unique(alphas):
            cols = np.flatnonzero(alphas == a)
            rhs = np.ascontiguousarray(Y[:, cols], dtype=np.float64)
            tol = RPCHOLESKY_TRACE_FRACTION * float(a)
            M = precond.make(op, float(a), "rpcholesky", trace_tol=tol)
            dual[:, cols] = solve(op, rhs, float(a), solver="cg", rtol=self.cg_rtol, precond=M)
        self.skipped_pairs_ = op.skipped_pairs
        return dual * sw[:, None] if sw is not None else dual

    def predict(self, X) -> np.ndarray:
        """Predict ``K(X, X_fit_) @ dual_coef_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples (the kernel matrix against the training samples, shape
            (n_samples, n_samples_fitted), if ``kernel="precomputed"``).

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_targets); a dask array or an
        xarray object for one, lazily (:mod:`kernelsolve.dask_predict`)
        """
        check_is_fitted(self)
        if dask_predict.is_lazy(X):
            tail, d = self.dual_coef_.shape[1:], self.n_features_in_
            return dask_predict.predict_points(
                self, "predict", X, n_features=d, tail=tail, name="X"
            )
        X = validate_data(self, X, accept_sparse=("csr", "csc"), reset=False)
        if not self._on_engine(X, self.X_fit_):
            return np.dot(self._dense_kernel(X, self.X_fit_), self.dual_coef_)
        X = np.ascontiguousarray(X, dtype=np.float64)
        X_fit = np.ascontiguousarray(self.X_fit_, dtype=np.float64)
        K = kernel_lazy(self.kernel, X, X_fit, **self._params())
        return K @ np.ascontiguousarray(self.dual_coef_, dtype=np.float64)


def _solve_dense(K: np.ndarray, Y: np.ndarray, alpha: np.ndarray, sw) -> np.ndarray:
    """scikit-learn's ``_solve_cholesky_kernel``: ``(S K S + alpha I) c' = S y``,
    ``c = S c'``, ``S = diag(sqrt(sample_weight))``; least squares with a
    warning when singular (one alpha), per-target solves for several alphas."""
    K = np.array(K, dtype=np.result_type(K.dtype, np.float32))  # a copy: X may be K
    if sw is not None:
        Y = Y * sw[:, None]
        K *= np.outer(sw, sw)
    diag = np.einsum("ii->i", K)  # a writable view of the diagonal
    with one_blas_thread() if K.shape[0] > THREADED_CHOLESKY_MAX_N else nullcontext():
        dual = _shifted_solves(K, diag, Y, alpha)
    return dual * sw[:, None] if sw is not None else dual


def _shifted_solves(K: np.ndarray, diag: np.ndarray, Y: np.ndarray, alpha: np.ndarray):
    """``(K + alpha I)^-1 Y``, ``diag`` the writable diagonal of ``K`` (shifted in place)."""
    if np.all(alpha == alpha[0]):
        diag += alpha[0]
        try:
            dual = scipy.linalg.solve(K, Y, assume_a="pos", overwrite_a=False)
        except np.linalg.LinAlgError:
            warnings.warn(
                "Singular matrix in solving dual problem. Using least-squares solution instead.",
                stacklevel=5,
            )
            dual = scipy.linalg.lstsq(K, Y)[0]
    else:
        dual = np.empty(Y.shape, dtype=K.dtype)
        for t, a in enumerate(alpha):
            diag += a
            dual[:, t] = scipy.linalg.solve(K, Y[:, t], assume_a="pos", overwrite_a=False)
            diag -= a
    return dual
