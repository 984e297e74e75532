"""Radial kernels ``phi(s)`` as the saddle-point solver uses them: an engine
formula and a NumPy function of ``s = r^2``.

The kernels themselves are defined once in :mod:`kernelsolve.linalg.kernels` (names,
signs and shape parameter of ``scipy.interpolate.RBFInterpolator``, ``r`` is
``epsilon * |x - y|``); written in terms of ``s`` so that the engine never takes
a square root it does not need. ``MIN_DEGREE`` is the lowest polynomial degree
that makes the kernel conditionally positive definite (-1: positive definite).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..engine import ir
from . import kernels

__all__ = ["RadialKernel", "KERNELS", "MIN_DEGREE", "SCALE_INVARIANT", "kernel_formula"]


@dataclass(frozen=True)
class RadialKernel:
    """``phi`` as a function of ``s = r^2``: an IR builder and a NumPy function."""

    name: str
    formula: Callable[[ir.Node], ir.Node]
    numpy: Callable[[np.ndarray], np.ndarray]

    @classmethod
    def of(cls, name: str, kernel: Callable, *args) -> RadialKernel:
        """``phi(s) = kernel(s, *args)`` for a kernel of :mod:`kernelsolve.linalg.kernels`."""
        return cls(
            name,
            lambda s: kernels.engine_formula(kernel, s, *args),
            lambda s: kernel(kernels.NUMPY, s, *args),
        )


KERNELS: dict[str, RadialKernel] = {
    name: RadialKernel.of(name, f) for name, f in kernels.RADIAL_BASIS_FUNCTIONS.items()
}

MIN_DEGREE = {"multiquadric": 0, "linear": 0, "thin_plate_spline": 1, "cubic": 1, "quintic": 2}
SCALE_INVARIANT = {"linear", "thin_plate_spline", "cubic", "quintic"}


def kernel_formula(phi: Callable[[ir.Node], ir.Node], dim: int, epsilon: float) -> ir.Node:
    """``phi(epsilon^2 |x_i - y_j|^2)`` with ``x`` variable 0 (i) and ``y`` variable 1 (j)."""
    s = ir.make("sqdist", ir.var(0, ir.I, dim), ir.var(1, ir.J, dim))
    if epsilon != 1.0:
        s = ir.make("mul", ir.const(float(epsilon) ** 2), s)
    return phi(s)
