"""``KernelDensity``: scikit-learn's kernel density estimate, exact sums by the engine.

The same class as ``sklearn.neighbors.KernelDensity`` (parameters, fitted
``bandwidth_``, ``score_samples``, ``score``, ``sample``, normalisations):
``score_samples`` is one engine reduction over all pairs instead of a tree
walk, exact by default, with memory ``O(n + m)``; ``rtol > 0`` has the
meaning it has in scikit-learn (the relative tolerance of the density) and
lets the engine skip far-away block pairs within it (``tol=`` sums). The
gaussian and exponential kernels are summed as a ``logsumexp`` of their logs
(a point far from the data gets a finite log density, as in scikit-learn);
the compact kernels (tophat, epanechnikov, linear, cosine) as sums, whose log
is ``-inf`` where no sample is within the bandwidth, as in scikit-learn.
"""

from __future__ import annotations

import itertools
from numbers import Integral, Real

import numpy as np
from scipy.special import gammainc
from sklearn.base import BaseEstimator, _fit_context
from sklearn.neighbors import BallTree, KDTree
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.extmath import row_norms
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ..lazytensor import Vi, Vj
from .pairwise import KDE_KERNELS, distance_lazy, kde_is_log, kde_log_kernel, kde_log_norm

__all__ = ["KernelDensity"]

_TREES = {"ball_tree": BallTree, "kd_tree": KDTree}
_EUCLIDEAN = ("euclidean", "l2")


class KernelDensity(BaseEstimator):
    """Kernel density estimation (``sklearn.neighbors.KernelDensity`` on the engine).

    Parameters
    ----------
    bandwidth : float or {"scott", "silverman"}, default=1.0
        The bandwidth, or the rule that gives it from ``X`` (``bandwidth_``).
    algorithm : {"kd_tree", "ball_tree", "auto"}, default="auto"
        Accepted and checked against ``metric`` as scikit-learn does (a
        ValueError for a metric the tree does not support); the sum itself is
        always the engine's exact sum over all pairs.
    kernel : {"gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine"}
    metric : str, default="euclidean"
        "euclidean"/"l2", "minkowski"/"p" (``metric_params={"p": p}``),
        "manhattan"/"cityblock"/"l1", "chebyshev"/"infinity", "seuclidean"
        (``{"V": ...}``), "mahalanobis" (``{"V": ...}`` or ``{"VI": ...}``),
        "haversine" (2 features: latitude, longitude in radians). Other metrics
        of scikit-learn's trees raise a ValueError in ``fit``. As in
        scikit-learn, the normalisation is the euclidean one whatever the metric.
    atol, rtol : float, default=0
        scikit-learn's tolerances of the density. ``rtol`` in (0, 1): the
        engine's ``tol=`` sums, which skip far-away block pairs with the
        density within ``rtol`` relative of the exact one (a guarantee, as in
        scikit-learn's tree; see ``docs/approximation.md``); 0: exact.
        ``atol`` is accepted and not used (the relative bound is tighter).
    breadth_first : bool, default=True
        Accepted for compatibility; not used.
    leaf_size : int, default=40
        Accepted for compatibility; not used.
    metric_params : dict, default=None
        Parameters of the metric (see ``metric``).

    Attributes
    ----------
    bandwidth_ : float
    X_fit_ : ndarray of shape (n_samples, n_features)
    sample_weight_ : ndarray of shape (n_samples,) or None
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined when ``X`` has string feature names.

    Example
    -------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(500, 2))
    >>> kde = KernelDensity(bandwidth="scott").fit(X)
    >>> kde.score_samples(X[:3]).shape, kde.sample(4, random_state=0).shape
    ((3,), (4, 2))
    """

    _parameter_constraints: dict = {
        "bandwidth": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"scott", "silverman"}),
        ],
        "algorithm": [StrOptions(set(_TREES) | {"auto"})],
        "kernel": [StrOptions(set(KDE_KERNELS))],
        "metric": [StrOptions(set(itertools.chain(*(t.valid_metrics for t in _TREES.values()))))],
        "atol": [Interval(Real, 0, None, closed="left")],
        "rtol": [Interval(Real, 0, None, closed="left")],
        "breadth_first": ["boolean"],
        "leaf_size": [Interval(Integral, 1, None, closed="left")],
        "metric_params": [None, dict],
    }

    def __init__(
        self,
        *,
        bandwidth=1.0,
        algorithm="auto",
        kernel="gaussian",
        metric="euclidean",
        atol=0,
        rtol=0,
        breadth_first=True,
        leaf_size=40,
        metric_params=None,
    ):
        self.algorithm = algorithm
        self.bandwidth = bandwidth
        self.kernel = kernel
        self.metric = metric
        self.atol = atol
        self.rtol = rtol
        self.breadth_first = breadth_first
        self.leaf_size = leaf_size
        self.metric_params = metric_params

    def _check_algorithm(self) -> None:
        if self.algorithm != "auto" and self.metric not in _TREES[self.algorithm].valid_metrics:
            raise ValueError(f"invalid metric for {_TREES[self.algorithm]}: '{self.metric}'")

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, sample_weight=None) -> KernelDensity:
        """Fit the model: keep ``X`` and the weights, fix ``bandwidth_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored (for pipelines).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples.

        Returns
        -------
        self : KernelDensity
        """
        self._check_algorithm()
        X = validate_data(self, X, order="C", dtype=np.float64)
        if isinstance(self.bandwidth, str):
            n, d = X.shape
            if self.bandwidth == "scott":
                self.bandwidth_ = n ** (-1 / (d + 4))
            else:
                self.bandwidth_ = (n * (d + 2) / 4) ** (-1 / (d + 4))
        else:
            self.bandwidth_ = self.bandwidth
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        distance_lazy(self.metric, X[:1], X[:1], self.metric_params)  # metric errors now
        self.X_fit_ = X
        self.sample_weight_ = sample_weight
        return self

    def _log_terms(self, X):
        """The formula whose sum (or logsumexp) over the training samples is the
        unnormalised density at ``X``."""
        h = float(self.bandwidth_)
        if self.kernel == "gaussian" and self.metric in _EUCLIDEAN:
            return (-0.5 / (h * h)) * Vi(X).sqdist(Vj(self.X_fit_))  # no sqrt then square
        dist = distance_lazy(self.metric, X, self.X_fit_, self.metric_params)
        return kde_log_kernel(self.kernel, dist, h)

    def score_samples(self, X) -> np.ndarray:
        """Log density of the model at each row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
            ``log sum_j w_j K_h(x - x_j) / sum_j w_j``; ``-inf`` where a
            compact kernel has no sample within the bandwidth.
        """
        check_is_fitted(self)
        X = validate_data(self, X, order="C", dtype=np.float64, reset=False)
        F, w = self._log_terms(X), self.sample_weight_
        # positive terms: tol= bounds the density's relative error by rtol
        tol = float(self.rtol) if 0 < self.rtol < 1 else None
        if kde_is_log(self.kernel):
            if w is not None:  # log w_j inside: a plain logsumexp, relative bound
                with np.errstate(divide="ignore"):
                    F = F + Vj(np.log(w)[:, None])
            log_sum = F.logsumexp(dim=1, tol=tol)
        else:
            ones = np.ones(self.X_fit_.shape[0]) if w is None else w
            with np.errstate(divide="ignore"):
                log_sum = np.log(F.__matmul__(ones, tol=tol))
        N = self.X_fit_.shape[0] if w is None else w.sum()
        log_norm = kde_log_norm(float(self.bandwidth_), self.X_fit_.shape[1], self.kernel)
        return np.asarray(log_sum).reshape(-1) + (log_norm - np.log(N))

    def score(self, X, y=None) -> float:
        """Total log density of the rows of ``X`` (the sum of :meth:`score_samples`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored (for pipelines).

        Returns
        -------
        float
        """
        return np.sum(self.score_samples(X))

    def sample(self, n_samples: int = 1, random_state=None) -> np.ndarray:
        """Draw samples from the model (gaussian and tophat kernels, as scikit-learn;
        the same draws for the same ``random_state``).

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState or None

        Returns
        -------
        ndarray of shape (n_samples, n_features)

        Raises
        ------
        NotImplementedError
            For the other kernels (as scikit-learn).
        """
        check_is_fitted(self)
        if self.kernel not in ("gaussian", "tophat"):
            raise NotImplementedError()
        data, w = self.X_fit_, self.sample_weight_
        rng = check_random_state(random_state)
        u = rng.uniform(0, 1, size=n_samples)
        if w is None:
            i = (u * data.shape[0]).astype(np.int64)
        else:
            cumsum_weight = np.cumsum(w)
            i = np.searchsorted(cumsum_weight, u * cumsum_weight[-1])
        if self.kernel == "gaussian":
            return np.atleast_2d(rng.normal(data[i], self.bandwidth_))
        # a d-dimensional normal draw mapped onto the uniform ball by the
        # incomplete gamma function (scikit-learn's construction)
        dim = data.shape[1]
        Z = rng.normal(size=(n_samples, dim))
        s_sq = row_norms(Z, squared=True)
        radius = gammainc(0.5 * dim, 0.5 * s_sq) ** (1.0 / dim) * self.bandwidth_
        correction = radius / np.sqrt(s_sq)
        return data[i] + Z * correction[:, np.newaxis]
