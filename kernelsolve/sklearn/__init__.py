"""scikit-learn estimators on the engine: the same classes as scikit-learn's
``GaussianProcessRegressor``, ``KernelRidge`` and ``KernelDensity``, with the
kernel sums, solves and log-likelihoods computed without forming the n x n
matrix, so the change is one import and the limit moves to 1e6 points."""

from .density import KernelDensity
from .gaussian_process import GaussianProcessRegressor
from .kernel_ridge import KernelRidge
from .kernels import GridAccuracyWarning

__all__: list[str] = [
    "GaussianProcessRegressor",
    "GridAccuracyWarning",
    "KernelDensity",
    "KernelRidge",
]
