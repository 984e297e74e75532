"""scikit-learn's estimator checks on GaussianProcessRegressor."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from kernelsolve.sklearn import GaussianProcessRegressor

# The iterative path with a noise level CG can use (the default alpha=1e-10 leaves the
# small, duplicated check data singular to rounding: CG then stops on non-positive
# curvature) and fixed hyperparameters: L-BFGS on the estimated likelihood of the default
# kernel takes ~15 s per fit here, times ~40 fits (tests/sklearn/test_gpr.py covers it).
ESTIMATORS = [
    GaussianProcessRegressor(),
    GaussianProcessRegressor(solver="iterative", alpha=1e-2, optimizer=None),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_checks(estimator, check):
    check(estimator)
