"""scikit-learn's kernel and metric names as engine formulas (LazyTensors).

:func:`kernel_lazy` is ``sklearn.metrics.pairwise.pairwise_kernels(X, Y,
metric=name, gamma=, degree=, coef0=)`` as a symbolic matrix: the same
formula, defaults and edge cases (``gamma=None`` is ``1 / n_features``;
cosine rows of norm 0 give 0; ``(x - y)^2 / (x + y)`` is 0 where ``x + y =
0``), evaluated by the engine without forming the matrix.
:func:`distance_lazy` is the distance of a ``BallTree`` / ``KDTree`` metric,
:func:`kde_log_norm` the normalisation of ``sklearn.neighbors.KernelDensity``.

Example
-------
>>> import numpy as np
>>> from sklearn.metrics.pairwise import rbf_kernel
>>> X, Y = np.random.default_rng(0).random((2, 50, 3))
>>> K = kernel_lazy("rbf", X, Y, gamma=0.5)
>>> v = np.ones(50)
>>> bool(np.allclose(K @ v, rbf_kernel(X, Y, gamma=0.5) @ v))
True
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln

from ..lazytensor import LazyTensor, Vi, Vj

__all__ = [
    "KERNELS",
    "CG_KERNELS",
    "cg_trusted",
    "kernel_lazy",
    "METRICS",
    "distance_lazy",
    "KDE_KERNELS",
    "kde_log_norm",
    "kde_log_kernel",
    "kde_is_log",
]

#: scikit-learn's kernel names (``PAIRWISE_KERNEL_FUNCTIONS``) mapped here.
KERNELS = (
    "additive_chi2", "chi2", "linear", "polynomial", "poly", "rbf", "laplacian", "sigmoid",
    "cosine",
)  # fmt: skip

#: The positive semi-definite kernels: the Gaussian, Laplacian and chi2 ones
#: (definite on distinct points), the linear, cosine and polynomial ones (integer
#: degree: Gram matrices of features, often of low rank).
CG_KERNELS = ("rbf", "laplacian", "chi2", "linear", "cosine", "poly", "polynomial")


def cg_trusted(kernel, degree: float, alpha_min: float) -> bool:
    """True when CG's answer for ``(K + alpha I) c = y`` can be trusted.

    CG needs a positive definite matrix with a condition number it can beat:
    a positive semi-definite kernel (:data:`CG_KERNELS`) and ``alpha > 0``.
    The sigmoid and additive chi2 kernels, non-integer degrees, callables and
    precomputed matrices are not positive semi-definite in general; there and
    with ``alpha = 0`` scikit-learn's Cholesky may fail and fall back to least
    squares, which CG cannot reproduce.

    Example
    -------
    >>> cg_trusted("rbf", 3, 1e-3), cg_trusted("rbf", 3, 0.0), cg_trusted("sigmoid", 3, 1.0)
    (True, False, False)
    """
    if not isinstance(kernel, str) or kernel not in CG_KERNELS or not alpha_min > 0:
        return False
    return kernel not in ("poly", "polynomial") or float(degree).is_integer()


def _gamma(gamma, X: np.ndarray) -> float:
    return 1.0 / X.shape[1] if gamma is None else float(gamma)


def _chi2_terms(X: np.ndarray, Y: np.ndarray) -> LazyTensor:
    """``sum_k (x_k - y_k)^2 / (x_k + y_k)``, a term 0 where ``x_k + y_k = 0``."""
    for name, A in (("X", X), ("Y", Y)):
        if np.any(A < 0):
            raise ValueError(f"{name} contains negative values.")
    x, y = Vi(X), Vj(Y)
    s = x + y
    # x + y = 0 only where x = y = 0 (both non-negative): the term is 0 / 1 there
    return ((x - y).square() / (s + (s == 0))).sum()


def _normalized(A: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", A, A))
    norms[norms == 0] = 1.0  # sklearn.preprocessing.normalize: zero rows stay zero
    return A / norms[:, None]


def kernel_lazy(
    kernel: str, X: np.ndarray, Y: np.ndarray, *, gamma=None, degree=3, coef0=1
) -> LazyTensor:
    """``K_ij = k(X_i, Y_j)`` for scikit-learn's kernel name ``kernel``.

    Parameters
    ----------
    kernel : str
        One of :data:`KERNELS`.
    X, Y : numpy.ndarray, shapes ``(m, d)`` and ``(n, d)``
        Rows i and columns j.
    gamma, degree, coef0
        As in ``sklearn.metrics.pairwise`` (``gamma=None``: ``1 / d``; chi2's
        own default 1.0).

    Returns
    -------
    LazyTensor of shape ``(m, n)``

    Example
    -------
    >>> X = np.arange(6.0).reshape(3, 2)
    >>> (kernel_lazy("linear", X, X) @ np.ones(3)).tolist()
    [9.0, 39.0, 69.0]
    """
    if kernel == "linear":
        return Vi(X) | Vj(Y)
    if kernel == "cosine":
        return Vi(_normalized(X)) | Vj(_normalized(Y))
    if kernel in ("poly", "polynomial"):
        base = _gamma(gamma, X) * (Vi(X) | Vj(Y)) + float(coef0)
        degree = float(degree)
        return base ** int(degree) if degree.is_integer() else base**degree
    if kernel == "sigmoid":
        return (_gamma(gamma, X) * (Vi(X) | Vj(Y)) + float(coef0)).tanh()
    if kernel == "rbf":
        return (-_gamma(gamma, X) * Vi(X).sqdist(Vj(Y))).exp()
    if kernel == "laplacian":
        return (-_gamma(gamma, X) * (Vi(X) - Vj(Y)).abs().sum()).exp()
    if kernel == "additive_chi2":
        return -_chi2_terms(X, Y)
    if kernel == "chi2":
        return (-(1.0 if gamma is None else float(gamma)) * _chi2_terms(X, Y)).exp()
    raise ValueError(f"kernel must be one of {KERNELS} or 'precomputed', got {kernel!r}")


# ---------------------------------------------------------------------------
# Distances of the neighbour trees' metrics
# ---------------------------------------------------------------------------
#: Metric names of ``BallTree`` / ``KDTree`` that map to a formula here.
METRICS = (
    "euclidean", "l2", "minkowski", "p", "manhattan", "cityblock", "l1", "chebyshev",
    "infinity", "seuclidean", "mahalanobis", "haversine",
)  # fmt: skip


def _minkowski(X, Y, p: float) -> LazyTensor:
    if p == 2:
        return Vi(X).sqdist(Vj(Y)).sqrt()
    diff = (Vi(X) - Vj(Y)).abs()
    if p == 1:
        return diff.sum()
    if math.isinf(p):
        return diff.max()
    return (diff**p).sum() ** (1.0 / p)


def _whitening(metric: str, params: dict, d: int) -> np.ndarray:
    """``L`` with ``|L^T (x - y)|`` the seuclidean / mahalanobis distance."""
    if metric == "seuclidean":
        if "V" not in params:
            raise ValueError("metric 'seuclidean' needs metric_params={'V': variances}")
        V = np.asarray(params["V"], dtype=np.float64)
        if V.shape != (d,):
            raise ValueError(f"metric_params['V'] must have shape ({d},), got {V.shape}")
        return np.diag(1.0 / np.sqrt(V))
    if "VI" in params:
        VI = np.asarray(params["VI"], dtype=np.float64)
    elif "V" in params:
        VI = np.linalg.inv(np.asarray(params["V"], dtype=np.float64))
    else:
        raise ValueError("metric 'mahalanobis' needs metric_params={'V': ...} or {'VI': ...}")
    if VI.shape != (d, d):
        raise ValueError(f"the mahalanobis matrix must have shape ({d}, {d}), got {VI.shape}")
    try:
        return np.linalg.cholesky(VI)
    except np.linalg.LinAlgError:
        raise ValueError("the mahalanobis matrix VI must be positive definite") from None


def _haversine(X: np.ndarray, Y: np.ndarray) -> LazyTensor:
    if X.shape[1] != 2:
        raise ValueError("Haversine distance only valid in 2 dimensions")
    lat_i, lat_j = Vi(X[:, :1].copy()), Vj(Y[:, :1].copy())
    lon_i, lon_j = Vi(X[:, 1:].copy()), Vj(Y[:, 1:].copy())
    s0 = (0.5 * (lat_i - lat_j)).sin()
    s1 = (0.5 * (lon_i - lon_j)).sin()
    return 2 * (s0 * s0 + lat_i.cos() * lat_j.cos() * s1 * s1).sqrt().asin()


def distance_lazy(metric: str, X: np.ndarray, Y: np.ndarray, params: dict | None) -> LazyTensor:
    """The distance ``d(X_i, Y_j)`` of a ``BallTree`` metric as a LazyTensor.

    ``params`` are the tree's ``metric_params``: ``p`` (minkowski, default 2),
    ``V`` (seuclidean), ``V`` or ``VI`` (mahalanobis).

    Example
    -------
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> (distance_lazy("euclidean", X, X, None) @ np.ones(2)).tolist()
    [5.0, 5.0]
    """
    params = dict(params or {})
    if metric not in METRICS:
        raise ValueError(
            f"metric {metric!r} has no engine formula; kernelsolve's KernelDensity "
            f"supports {METRICS}"
        )
    if metric in ("minkowski", "p"):
        unknown = set(params) - {"p"}
        if unknown:
            raise ValueError(f"minkowski: unsupported metric_params {sorted(unknown)} (only 'p')")
        p = float(params.get("p", 2))
        if not p >= 1:
            raise ValueError(f"minkowski needs p >= 1, got p={p}")
        return _minkowski(X, Y, p)
    if metric in ("seuclidean", "mahalanobis"):
        L = _whitening(metric, params, X.shape[1])
        return _minkowski(X @ L, Y @ L, 2)
    if metric == "haversine":
        return _haversine(X, Y)
    p = {"manhattan": 1, "cityblock": 1, "l1": 1, "chebyshev": math.inf, "infinity": math.inf}
    return _minkowski(X, Y, p.get(metric, 2))


# ---------------------------------------------------------------------------
# KernelDensity's kernels of the distance
# ---------------------------------------------------------------------------
#: ``sklearn.neighbors.KernelDensity``'s kernels.
KDE_KERNELS = ("gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine")


def kde_is_log(kernel: str) -> bool:
    """True for the kernels summed as ``logsumexp`` of their log (never 0)."""
    return kernel in ("gaussian", "exponential")


def kde_log_kernel(kernel: str, dist: LazyTensor, h: float) -> LazyTensor:
    """The unnormalised kernel of the distance ``dist`` at bandwidth ``h``:
    its log for gaussian and exponential (:func:`kde_is_log`), else its value
    (0 for ``dist >= h``, as scikit-learn's trees).

    Example
    -------
    >>> X = np.array([[0.0], [1.0]])
    >>> k = kde_log_kernel("tophat", distance_lazy("euclidean", X, X, None), 1.0)
    >>> (k @ np.ones(2)).tolist()
    [1.0, 1.0]
    """
    if kernel == "gaussian":
        return (-0.5 / (h * h)) * dist.square()
    if kernel == "exponential":
        return (-1.0 / h) * dist
    if kernel == "tophat":
        return dist < h
    if kernel == "epanechnikov":
        return (1.0 - dist.square() / (h * h)).relu()
    if kernel == "linear":
        return (1.0 - dist / h).relu()
    if kernel == "cosine":
        return (0.5 * math.pi / h * dist).cos() * (dist < h)
    raise ValueError(f"kernel must be one of {KDE_KERNELS}, got {kernel!r}")


def _log_vn(n: int) -> float:
    """log of the volume of the unit n-ball."""
    return 0.5 * n * math.log(math.pi) - gammaln(0.5 * n + 1)


def _log_sn(n: int) -> float:
    """log of the surface of the unit n-sphere (in n + 1 dimensions)."""
    return math.log(2 * math.pi) + _log_vn(n - 1)


def kde_log_norm(h: float, d: int, kernel: str) -> float:
    """log of the normalisation of ``kernel`` at bandwidth ``h`` in dimension ``d``,
    scikit-learn's ``kernel_norm(h, d, kernel, return_log=True)``.

    Example
    -------
    >>> round(kde_log_norm(1.0, 1, "gaussian"), 6) == round(-0.5 * math.log(2 * math.pi), 6)
    True
    """
    if kernel == "gaussian":
        factor = 0.5 * d * math.log(2 * math.pi)
    elif kernel == "tophat":
        factor = _log_vn(d)
    elif kernel == "epanechnikov":
        factor = _log_vn(d) + math.log(2.0 / (d + 2.0))
    elif kernel == "exponential":
        factor = _log_sn(d - 1) + gammaln(d)
    elif kernel == "linear":
        factor = _log_vn(d) - math.log(d + 1.0)
    elif kernel == "cosine":
        factor, tmp = 0.0, 2.0 / math.pi
        for k in range(1, d + 1, 2):  # sklearn's chain-rule series, term by term
            factor += tmp
            tmp *= -(d - k) * (d - k - 1) * (2.0 / math.pi) ** 2
        factor = math.log(factor) + _log_sn(d - 1)
    else:
        raise ValueError(f"kernel must be one of {KDE_KERNELS}, got {kernel!r}")
    return float(-factor - d * math.log(h))
