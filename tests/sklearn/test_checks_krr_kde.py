"""scikit-learn's own estimator checks on KernelRidge and KernelDensity."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from kernelsolve.sklearn import KernelDensity, KernelRidge


@parametrize_with_checks([KernelRidge(), KernelRidge(kernel="rbf"), KernelDensity()])
def test_sklearn_checks(estimator, check):
    check(estimator)
