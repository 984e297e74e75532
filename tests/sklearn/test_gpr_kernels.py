"""scikit-learn's kernel objects as engine formulas: values and theta-gradients
equal to scikit-learn's own calls, theta order, and clear refusals."""

import numpy as np
import pytest
from sklearn.gaussian_process import kernels as sk

from kernelsolve.sklearn.kernels import EngineKernel, UntranslatableKernelError, translate

#: Every kernel of issue 20 (and their sums, products, powers), in 2-D.
KERNELS = [
    sk.RBF(0.3),
    sk.RBF([0.3, 0.7]),
    sk.Matern(0.4, nu=0.5),
    sk.Matern([0.4, 0.2], nu=1.5),
    sk.Matern(0.4, nu=2.5),
    sk.Matern([0.5, 0.3], nu=np.inf),
    sk.RationalQuadratic(0.5, 2.0),
    sk.ExpSineSquared(0.8, 1.3),
    sk.DotProduct(0.7),
    sk.ConstantKernel(2.0) * sk.RBF(0.3) + sk.WhiteKernel(0.1),
    sk.ConstantKernel(0.5) * (sk.Matern(0.3) + sk.WhiteKernel(0.2)),
    sk.RBF(0.3) ** 2,
    sk.RBF(0.4) ** 1.5,
    sk.ConstantKernel(3.0, "fixed") * sk.RBF(0.2) + sk.ConstantKernel(0.1),
    sk.RBF(0.5) * sk.ExpSineSquared(1.0, 2.0) + sk.DotProduct(0.1, "fixed"),
]


def _ids(k):
    return repr(k)[:60]


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    return rng.random((120, 2)), rng.random((30, 2))


@pytest.mark.parametrize("kernel", KERNELS, ids=_ids)
def test_matrix_and_gradient_equal_sklearn(kernel, points):
    X, Y = points
    t = translate(kernel, 2)
    ek = EngineKernel(t, kernel)
    np.testing.assert_array_equal(t.params_of(kernel)[t.free], kernel.theta)
    K, G = kernel(X, eval_gradient=True)
    np.testing.assert_allclose(ek.matrix(X), K, rtol=1e-12, atol=1e-14 * np.abs(K).max())
    np.testing.assert_allclose(ek.matrix(Y, X), kernel(Y, X), rtol=1e-12, atol=1e-14)
    scale = np.abs(G).max()
    np.testing.assert_allclose(ek.gradient(X), G, rtol=1e-10, atol=1e-13 * scale)
    V = np.random.default_rng(1).standard_normal((len(X), 3))
    ref = np.einsum("ijk,jm->ikm", G, V)
    got = ek.gradient_matmat(X, V)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(ek.cross_matmat(Y, X, V), kernel(Y, X) @ V, rtol=1e-12, atol=1e-12)


def test_new_values_keep_the_formula():
    a, b = sk.RBF(0.3) + sk.WhiteKernel(0.1), sk.RBF(2.0) + sk.WhiteKernel(0.5)
    assert translate(a, 2).formula is translate(b, 2).formula


@pytest.mark.parametrize(
    "kernel, match",
    [
        (sk.Matern(0.5, nu=1.0), "Matern nu=1.0"),
        (sk.PairwiseKernel(), "PairwiseKernel has no engine formula"),
        (sk.RBF(0.3) * sk.WhiteKernel(), "WhiteKernel in a product"),
        (sk.WhiteKernel() ** 2, "WhiteKernel raised to a power"),
        (sk.ConstantKernel() + sk.WhiteKernel(), "does not depend on the points"),
        (type("MyRBF", (sk.RBF,), {})(1.0), "MyRBF subclasses RBF"),
    ],
)
def test_untranslatable_kernels_named(kernel, match):
    with pytest.raises(UntranslatableKernelError, match=match):
        translate(kernel, 2)


def test_length_scale_size_checked():
    with pytest.raises(ValueError, match="length_scale has 3 entries, X has 2 features"):
        translate(sk.RBF([1.0, 2.0, 3.0]), 2)
