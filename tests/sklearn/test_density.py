"""kernelsolve.sklearn.KernelDensity against scikit-learn's: every kernel, both
bandwidth rules, sample weights, the metrics, far points, sampling, the errors,
pickling."""

import pickle

import numpy as np
import pytest
from sklearn.neighbors import KernelDensity as SkKernelDensity
from sklearn.utils._param_validation import InvalidParameterError

from kernelsolve import approximation_report
from kernelsolve.sklearn import KernelDensity
from kernelsolve.sklearn.pairwise import KDE_KERNELS, METRICS

RTOL = 1e-6


def data(n=1000, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(300, d))
    return X, Y, rng.random(n) + 0.05


def assert_as_sklearn(ours, theirs):
    """Equal at RTOL where ours is finite. Where ours is -inf (no sample within a
    compact kernel's bandwidth: the exact density is 0), scikit-learn's tree
    gives -inf or, from rounding in its bound bookkeeping, a density below
    1e-12 of its largest (log density < max - 27)."""
    finite = np.isfinite(ours)
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=RTOL)
    assert np.all(theirs[~finite] < theirs[finite].max() - 27)


def oracle(X, Y, kernel, h, w):
    """The density by dense NumPy (euclidean), as scikit-learn's test_kde does."""
    from sklearn.neighbors._ball_tree import kernel_norm

    d = np.sqrt(((Y[:, None, :] - X) ** 2).sum(-1))
    k = {
        "gaussian": np.exp(-0.5 * d * d / (h * h)),
        "tophat": 1.0 * (d < h),
        "epanechnikov": (1.0 - d * d / (h * h)) * (d < h),
        "exponential": np.exp(-d / h),
        "linear": (1 - d / h) * (d < h),
        "cosine": np.cos(0.5 * np.pi * d / h) * (d < h),
    }[kernel]
    return kernel_norm(h, X.shape[1], kernel) * (k @ w) / w.sum()


def both(X, sample_weight=None, **params):
    ours = KernelDensity(**params).fit(X, sample_weight=sample_weight)
    theirs = SkKernelDensity(**params).fit(X, sample_weight=sample_weight)
    return ours, theirs


@pytest.mark.parametrize("kernel", KDE_KERNELS)
@pytest.mark.parametrize("bandwidth", [0.4, "scott", "silverman"])
def test_every_kernel_and_bandwidth_with_weights(kernel, bandwidth):
    X, Y, w = data()
    for sample_weight in (None, w):
        ours, theirs = both(X, sample_weight, kernel=kernel, bandwidth=bandwidth)
        assert ours.bandwidth_ == pytest.approx(theirs.bandwidth_, rel=1e-15)
        got, ref = ours.score_samples(Y), theirs.score_samples(Y)
        assert_as_sklearn(got, ref)
        weights = np.ones(len(X)) if sample_weight is None else sample_weight
        exact = oracle(X, Y, kernel, ours.bandwidth_, weights)
        with np.errstate(divide="ignore"):
            np.testing.assert_allclose(got, np.log(exact), rtol=1e-10)  # -inf where 0
        if np.all(np.isfinite(ref)):
            assert ours.score(Y) == pytest.approx(theirs.score(Y), rel=RTOL)


def test_far_points_finite_for_gaussian_minus_inf_for_compact_kernels():
    X, _, w = data(200)
    far = np.full((2, 3), 50.0)
    for kernel in ("gaussian", "exponential", "tophat", "epanechnikov"):
        ours, theirs = both(X, w, kernel=kernel, bandwidth=0.5)
        got, ref = ours.score_samples(far), theirs.score_samples(far)
        assert np.all(np.isfinite(got)) == (kernel in ("gaussian", "exponential"))
        np.testing.assert_allclose(got, ref, rtol=RTOL)  # sklearn: -inf there too


METRIC_PARAMS = {
    "minkowski": {"p": 3},
    "p": {"p": 1.5},
    "seuclidean": {"V": np.array([1.0, 2.0])},
    "mahalanobis": {"VI": np.array([[2.0, 0.3], [0.3, 1.0]])},
}


@pytest.mark.parametrize("metric", METRICS)
def test_metrics_as_sklearn(metric):
    X, Y, w = data(300, d=2)
    if metric == "haversine":
        X, Y = X * 0.5, Y * 0.5  # radians
    params = dict(metric=metric, metric_params=METRIC_PARAMS.get(metric), algorithm="ball_tree")
    for kernel in ("gaussian", "linear"):
        ours, theirs = both(X, w, kernel=kernel, bandwidth=0.7, **params)
        assert_as_sklearn(ours.score_samples(Y), theirs.score_samples(Y))


@pytest.mark.parametrize("kernel", ["gaussian", "tophat"])
def test_sample_draws_as_sklearn(kernel):
    X, _, w = data(300)
    for sample_weight in (None, w):
        ours, theirs = both(X, sample_weight, kernel=kernel, bandwidth=0.3)
        np.testing.assert_array_equal(
            ours.sample(50, random_state=7), theirs.sample(50, random_state=7)
        )


def test_sample_other_kernels_not_implemented_as_sklearn():
    X, _, _ = data(50)
    with pytest.raises(NotImplementedError):
        KernelDensity(kernel="cosine").fit(X).sample(3)


def test_bad_input():
    X, Y, _ = data(50)
    with pytest.raises(ValueError, match="has no engine formula"):
        KernelDensity(metric="canberra").fit(X)
    with pytest.raises(ValueError, match="only valid in 2 dimensions"):
        KernelDensity(metric="haversine").fit(X)
    with pytest.raises(ValueError, match="needs metric_params"):
        KernelDensity(metric="seuclidean").fit(X)
    with pytest.raises(ValueError, match="invalid metric"):
        KernelDensity(algorithm="kd_tree", metric="haversine").fit(X[:, :2])
    with pytest.raises(InvalidParameterError, match="kernel"):
        KernelDensity(kernel="triangle").fit(X)
    with pytest.raises(InvalidParameterError, match="bandwidth"):
        KernelDensity(bandwidth=0.0).fit(X)
    with pytest.raises(ValueError, match="Negative values in data"):
        KernelDensity().fit(X, sample_weight=-np.ones(50))
    with pytest.raises(ValueError, match="features"):
        KernelDensity().fit(X).score_samples(Y[:, :2])


def test_pickle_round_trip():
    X, Y, w = data(200)
    kde = KernelDensity(kernel="epanechnikov", bandwidth="silverman").fit(X, sample_weight=w)
    again = pickle.loads(pickle.dumps(kde))
    np.testing.assert_array_equal(again.score_samples(Y), kde.score_samples(Y))


@pytest.mark.parametrize("kernel", ["gaussian", "exponential", "tophat", "epanechnikov"])
def test_rtol_bounds_the_relative_error_of_the_density(kernel):
    # scikit-learn's rtol: the density within rtol (relative) of the exact one;
    # here by the engine's tol= sums, which skip far-away block pairs
    rng = np.random.default_rng(7)
    X, Q, w = rng.random((1500, 2)), rng.random((1000, 2)), rng.random(1500) + 0.1
    exact = KernelDensity(bandwidth=0.02, kernel=kernel).fit(X, sample_weight=w)
    approx = KernelDensity(bandwidth=0.02, kernel=kernel, rtol=1e-4).fit(X, sample_weight=w)
    le = exact.score_samples(Q)
    with approximation_report() as report:
        la = approx.score_samples(Q)
    assert report.skipped_fraction > 0.05  # (most at 1e5 points: docs/BENCHMARKS.md)
    assert np.array_equal(np.isinf(le), np.isinf(la))
    finite = np.isfinite(le)
    assert np.abs(np.expm1(la[finite] - le[finite])).max() <= 1e-4
