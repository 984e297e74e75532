"""Dense NumPy helpers that pykeops' tests import from ``pykeops.numpy.utils``:
the small reference computations (distances, the usual kernels, their
logarithms and radial derivatives, a stable log-sum-exp) the KeOps results are
compared with. They build full ``(M, N)`` arrays: for tests and small data.

>>> x = np.array([[0.0, 0.0], [1.0, 0.0]])
>>> squared_distances(x, x).tolist()
[[0.0, 1.0], [1.0, 0.0]]
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "WarmUpGpu",
    "chain_rules",
    "differences",
    "grad_np_kernel",
    "log_np_kernel",
    "log_sum_exp",
    "np_kernel",
    "np_kernel_sphere",
    "squared_distances",
]

_KERNELS = ("gaussian", "laplacian", "cauchy", "inverse_multiquadric")


def squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``|x_i - y_j|^2`` for ``(M, D)`` and ``(N, D)`` points, as ``(M, N)``
    (expanded as ``|x|^2 + |y|^2 - 2 x.y``, like pykeops' helper)."""
    xx = np.sum(x * x, axis=1)[:, None]
    yy = np.sum(y * y, axis=1)[None, :]
    return xx + yy - 2.0 * (x @ y.T)


def differences(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``x_i[d] - y_j[d]`` laid out as ``(D, M, N)``."""
    return x.T[:, :, None] - y.T[:, None, :]


def _check_kernel(kernel: str, choices=_KERNELS) -> None:
    if kernel not in choices:
        raise ValueError(f"kernel={kernel!r}: expected one of {', '.join(choices)}")


def np_kernel(x: np.ndarray, y: np.ndarray, s, kernel: str) -> np.ndarray:
    """The ``(M, N)`` matrix of a radial kernel of scale ``s``: "gaussian"
    ``exp(-r^2/s^2)``, "laplacian" ``exp(-r/s)``, "cauchy" ``1/(1 + r^2/s^2)``,
    "inverse_multiquadric" ``1/sqrt(1 + r^2/s^2)``."""
    _check_kernel(kernel)
    return np.exp(log_np_kernel(x, y, s, kernel))


def log_np_kernel(x: np.ndarray, y: np.ndarray, s, kernel: str) -> np.ndarray:
    """The logarithm of :func:`np_kernel`, computed directly."""
    _check_kernel(kernel)
    q = squared_distances(x, y) / (s * s)
    if kernel == "gaussian":
        return -q
    if kernel == "laplacian":
        return -np.sqrt(q)
    if kernel == "cauchy":
        return -np.log1p(q)
    return -0.5 * np.log1p(q)


def grad_np_kernel(x: np.ndarray, y: np.ndarray, s, kernel: str) -> np.ndarray:
    """``k'(r^2)``: the derivative of each kernel with respect to the squared
    distance ``r^2`` (the factor of ``2 (x_i - y_j)`` in its gradient)."""
    _check_kernel(kernel)
    r2 = squared_distances(x, y)
    s2 = s * s
    if kernel == "gaussian":
        return -np.exp(-r2 / s2) / s2
    if kernel == "laplacian":
        t = -np.sqrt(r2 / s2)  # d/dr2 exp(-sqrt(r2)/s) = exp(t) / (2 s^2 t)
        return np.exp(t) / (2 * s2 * t)
    if kernel == "cauchy":
        return -1.0 / (s * (r2 / s2 + 1)) ** 2
    return -0.5 / (s2 * (r2 / s2 + 1) ** 1.5)


def np_kernel_sphere(nalpha: np.ndarray, nbeta: np.ndarray, s, kernel: str) -> np.ndarray:
    """Kernels on unit vectors (normals) from ``p = <a_i, b_j>``: "binet"
    ``p^2``, "linear" ``p``, "gaussian_unoriented" ``exp((2p^2 - 2)/s^2)``,
    "gaussian_oriented" ``exp((2p - 2)/s^2)``."""
    _check_kernel(kernel, ("binet", "linear", "gaussian_unoriented", "gaussian_oriented"))
    p = nalpha @ nbeta.T
    if kernel == "binet":
        return p * p
    if kernel == "linear":
        return p
    if kernel == "gaussian_unoriented":
        return np.exp((2.0 * p * p - 2.0) / (s * s))
    return np.exp((2.0 * p - 2.0) / (s * s))


def log_sum_exp(mat: np.ndarray, axis: int = 0) -> np.ndarray:
    """``log sum exp(mat)`` along ``axis``, shifted by the maximum so that no
    ``exp`` overflows.

    >>> float(log_sum_exp(np.array([1000.0, 1000.0])))  # doctest: +ELLIPSIS
    1000.693...
    """
    m = np.max(mat, axis=axis)
    return m + np.log(np.sum(np.exp(mat - np.expand_dims(m, axis)), axis=axis))


def chain_rules(q: np.ndarray, ax: np.ndarray, by: np.ndarray, Aa: np.ndarray, p: np.ndarray):
    """The gradient with respect to ``ax`` of ``<q, K p>`` for a radial kernel
    whose derivative matrix (``k'(|x_i - y_j|^2)``) is ``Aa``: column ``d`` is
    ``sum_k q_ik ((2 (x_id - y_jd) Aa_ij) @ p)_ik``; float32, as pykeops'."""
    out = np.zeros(ax.shape, dtype="float32")
    for d in range(ax.shape[1]):
        diff = ax[:, d][:, None] - by[:, d][None, :]
        out[:, d] = np.sum(q * ((2 * diff * Aa) @ p), axis=1)
    return out


def WarmUpGpu() -> None:  # noqa: N802 (pykeops' name)
    """Run one small reduction on the GPU, if there is one, so that later
    timings exclude the first call's compilation and context creation."""
    from .. import config
    from ..genred import Genred

    if not config.gpu_available:
        return
    import torch

    x = torch.rand(10, 1, dtype=torch.float64, device="cuda")
    Genred("Exp(-SqDist(x, y)) * x", ["x = Vi(1)", "y = Vj(1)"], axis=1)(x, x)
