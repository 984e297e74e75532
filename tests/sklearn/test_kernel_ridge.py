"""kernelsolve.sklearn.KernelRidge against scikit-learn's: every kernel name, both
solvers, several targets and alphas, sample weights, callables, sparse and
precomputed input, the errors, pickling."""

import pickle

import numpy as np
import pytest
import scipy.sparse
from sklearn.kernel_ridge import KernelRidge as SkKernelRidge
from sklearn.utils._param_validation import InvalidParameterError

from kernelsolve.sklearn import KernelRidge
from kernelsolve.sklearn import kernel_ridge as krr_module

RTOL = 1e-6
#: scikit-learn's kernel names, with parameters (and alpha) that keep K + alpha I
#: positive definite (the least-squares fallback is tested on its own, smaller)
KERNELS = [
    ("rbf", dict(gamma=5.0)),
    ("laplacian", dict(gamma=1.0)),
    ("linear", {}),
    ("poly", dict(degree=3)),
    ("polynomial", dict(degree=2, gamma=0.5, coef0=0.5)),
    ("sigmoid", dict(gamma=0.2, coef0=0.1, alpha=1.0)),
    ("cosine", {}),
    ("chi2", dict(gamma=1.0)),
    ("additive_chi2", dict(alpha=2000.0)),  # K has an eigenvalue near -1171
]


def data(n, d=3, targets=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d))  # non-negative: the chi2 kernels need it
    shape = (n,) if targets is None else (n, targets)
    y = np.sin(4 * X).sum(1).reshape(-1, 1)[:, [0] * (targets or 1)].reshape(shape)
    return X, y + 0.1 * rng.standard_normal(shape), rng.random((200, d))


def assert_close(ours, theirs, rtol=RTOL):
    scale = np.abs(theirs).max()
    assert np.abs(ours - theirs).max() <= rtol * scale


@pytest.mark.parametrize("kernel,params", KERNELS, ids=[k for k, _ in KERNELS])
def test_every_kernel_name_as_sklearn_at_2000(kernel, params):
    X, y, X_test = data(2000)
    params = {"alpha": 0.1, **params}
    ours = KernelRidge(kernel=kernel, **params).fit(X, y)
    theirs = SkKernelRidge(kernel=kernel, **params).fit(X, y)
    assert ours.solver_ == "direct"
    assert_close(ours.dual_coef_, theirs.dual_coef_)
    assert_close(ours.predict(X_test), theirs.predict(X_test))


def test_singular_falls_back_to_least_squares_as_sklearn():
    X, y, X_test = data(300)
    with pytest.warns(UserWarning, match="Singular matrix"):
        ours = KernelRidge(alpha=0.1, kernel="additive_chi2").fit(X, y)
    with pytest.warns(UserWarning, match="Singular matrix"):
        theirs = SkKernelRidge(alpha=0.1, kernel="additive_chi2").fit(X, y)
    assert_close(ours.predict(X_test), theirs.predict(X_test))


CG_KERNELS = [k for k in KERNELS if k[0] not in ("sigmoid", "additive_chi2")]


@pytest.mark.parametrize("kernel,params", CG_KERNELS, ids=[k for k, _ in CG_KERNELS])
def test_cg_as_sklearn(kernel, params):
    n = 2000 if kernel == "rbf" else 600
    X, y, X_test = data(n)
    ours = KernelRidge(alpha=0.01, kernel=kernel, solver="cg", **params).fit(X, y)
    theirs = SkKernelRidge(alpha=0.01, kernel=kernel, **params).fit(X, y)
    assert ours.solver_ == "cg"
    assert_close(ours.predict(X_test), theirs.predict(X_test))


@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_targets_alphas_and_sample_weights(solver):
    X, y, X_test = data(500, targets=3)
    y[:, 1] *= -2.0
    sw = np.random.default_rng(3).random(500) + 0.1
    sw[:5] = 0.0  # zero weights are allowed
    for alpha in (0.05, [0.05, 0.5, 2.0]):
        ours = KernelRidge(alpha=alpha, kernel="rbf", gamma=2.0, solver=solver)
        theirs = SkKernelRidge(alpha=alpha, kernel="rbf", gamma=2.0)
        ours.fit(X, y, sample_weight=sw)
        theirs.fit(X, y, sample_weight=sw)
        assert ours.dual_coef_.shape == theirs.dual_coef_.shape == (500, 3)
        assert_close(ours.predict(X_test), theirs.predict(X_test))


def test_auto_switches_to_cg_above_the_threshold(monkeypatch):
    X, y, X_test = data(400)
    monkeypatch.setattr(krr_module, "DIRECT_MAX_N", 100)
    model = KernelRidge(alpha=0.1, kernel="rbf").fit(X, y)
    assert model.solver_ == "cg"
    assert_close(
        model.predict(X_test), SkKernelRidge(alpha=0.1, kernel="rbf").fit(X, y).predict(X_test)
    )
    # where CG cannot be trusted, "auto" stays direct whatever the size
    for kernel, alpha in (("sigmoid", 1.0), ("additive_chi2", 1e3), ("rbf", 0.0)):
        assert KernelRidge(alpha=alpha, kernel=kernel).fit(X, y).solver_ == "direct"
    poly = KernelRidge(alpha=0.1, kernel="poly", degree=2.5).fit(X, y)
    assert poly.solver_ == "direct"


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel="sigmoid"),
        dict(kernel="additive_chi2"),
        dict(kernel="linear", alpha=0.0),
        dict(kernel="rbf", alpha=0.0),
        dict(kernel="poly", degree=1.5),
        dict(kernel="precomputed"),
        dict(kernel=lambda a, b: float(a @ b)),
    ],
)
def test_cg_refused_where_it_cannot_be_trusted(kwargs):
    X, y, _ = data(50)
    if kwargs["kernel"] == "precomputed":
        X = X @ X.T
    with pytest.raises(ValueError, match="solver='cg' cannot be trusted"):
        KernelRidge(solver="cg", **kwargs).fit(X, y)


def test_callable_sparse_and_precomputed_as_sklearn():
    X, y, X_test = data(100)

    def kernel(a, b, scale=1.0):
        return np.exp(-scale * np.abs(a - b).sum())

    for kwargs in (dict(kernel=kernel, kernel_params={"scale": 2.0}),):
        ours = KernelRidge(**kwargs).fit(X, y).predict(X_test)
        np.testing.assert_allclose(
            ours, SkKernelRidge(**kwargs).fit(X, y).predict(X_test), rtol=RTOL
        )
    Xs, Xs_test = scipy.sparse.csr_matrix(X), scipy.sparse.csr_matrix(X_test)
    ours = KernelRidge(kernel="rbf").fit(Xs, y).predict(Xs_test)
    np.testing.assert_allclose(
        ours, SkKernelRidge(kernel="rbf").fit(Xs, y).predict(Xs_test), rtol=RTOL
    )
    K, K_test = X @ X.T, X_test @ X.T
    ours = KernelRidge(kernel="precomputed").fit(K, y)
    np.testing.assert_allclose(ours.predict(K_test), X_test @ X.T @ ours.dual_coef_, rtol=RTOL)
    np.testing.assert_array_equal(K, X @ X.T)  # the user's matrix is not modified


def test_chi2_default_gamma_is_chi2_kernels():
    X, y, X_test = data(100)
    ours = KernelRidge(kernel="chi2").fit(X, y).predict(X_test)
    ref = SkKernelRidge(kernel="chi2", gamma=1.0).fit(X, y).predict(X_test)
    np.testing.assert_allclose(ours, ref, rtol=RTOL)


def test_bad_input():
    X, y, _ = data(50)
    with pytest.raises(ValueError, match="alpha must be a number or one value per target"):
        KernelRidge(alpha=[1.0, 2.0]).fit(X, y)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        KernelRidge(alpha=[-1.0]).fit(X, y)
    with pytest.raises(InvalidParameterError, match="solver"):
        KernelRidge(solver="lu").fit(X, y)
    with pytest.raises(InvalidParameterError, match="kernel"):
        KernelRidge(kernel="gaussian").fit(X, y)
    with pytest.raises(ValueError, match="X contains negative values"):
        KernelRidge(kernel="chi2", solver="cg").fit(X - 1.0, y)
    model = KernelRidge().fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :2])


def test_pickle_round_trip():
    X, y, X_test = data(300, targets=2)
    model = KernelRidge(alpha=0.1, kernel="laplacian", solver="cg").fit(X, y)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(X_test), model.predict(X_test))
    assert again.get_params() == model.get_params()


def test_large_direct_solves_run_on_one_blas_thread(monkeypatch):
    # OpenBLAS's threaded Cholesky segfaults from n = 16,000 on 2 threads
    from threadpoolctl import threadpool_info

    seen, original = [], krr_module._shifted_solves

    def spy(*args):
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return original(*args)

    monkeypatch.setattr(krr_module, "_shifted_solves", spy)
    monkeypatch.setattr(krr_module, "THREADED_CHOLESKY_MAX_N", 100)
    X, y, X_test = data(200)
    ours = KernelRidge(kernel="rbf", solver="direct").fit(X, y)
    assert seen == [{1}]
    assert_close(ours.predict(X_test), SkKernelRidge(kernel="rbf").fit(X, y).predict(X_test))
