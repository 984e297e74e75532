"""Radial kernels ``phi(r)``, as engine formulas and as NumPy functions.

The names, signs and shape parameter follow ``scipy.interpolate.RBFInterpolator``
(``r`` is ``epsilon * |x - y|``); each kernel is written in terms of
``s = r^2`` so that the engine never takes a square root it does not need.
``MIN_DEGREE`` is the lowest polynomial degree that makes the kernel
conditionally positive definite (-1: positive definite).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..engine import ir

__all__ = ["RadialKernel", "KERNELS", "MIN_DEGREE", "SCALE_INVARIANT", "kernel_formula"]


def _m(op, *args, attrs=()):
    return ir.make(op, *args, attrs=attrs)


def _c(v):
    return ir.const(v)


@dataclass(frozen=True)
class RadialKernel:
    """``phi`` as a function of ``s = r^2``: an IR builder and a NumPy function."""

    name: str
    formula: Callable[[ir.Node], ir.Node]
    numpy: Callable[[np.ndarray], np.ndarray]


def _np_xlogx(s):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 0, s * np.log(np.where(s > 0, s, 1.0)), 0.0)


KERNELS: dict[str, RadialKernel] = {
    k.name: k
    for k in (
        RadialKernel("linear", lambda s: _m("neg", _m("sqrt", s)), lambda s: -np.sqrt(s)),
        RadialKernel(
            "thin_plate_spline",
            lambda s: _m("mul", _c(0.5), _m("xlogx", s)),  # r^2 log r = s log(s) / 2
            lambda s: 0.5 * _np_xlogx(s),
        ),
        RadialKernel("cubic", lambda s: _m("mul", s, _m("sqrt", s)), lambda s: s * np.sqrt(s)),
        RadialKernel(
            "quintic",
            lambda s: _m("neg", _m("mul", _m("square", s), _m("sqrt", s))),
            lambda s: -(s**2) * np.sqrt(s),
        ),
        RadialKernel(
            "multiquadric",
            lambda s: _m("neg", _m("sqrt", _m("add", s, _c(1)))),
            lambda s: -np.sqrt(s + 1),
        ),
        RadialKernel(
            "inverse_multiquadric",
            lambda s: _m("rsqrt", _m("add", s, _c(1))),
            lambda s: 1 / np.sqrt(s + 1),
        ),
        RadialKernel(
            "inverse_quadratic",
            lambda s: _m("inv", _m("add", s, _c(1))),
            lambda s: 1 / (s + 1),
        ),
        RadialKernel("gaussian", lambda s: _m("exp", _m("neg", s)), lambda s: np.exp(-s)),
    )
}

MIN_DEGREE = {"multiquadric": 0, "linear": 0, "thin_plate_spline": 1, "cubic": 1, "quintic": 2}
SCALE_INVARIANT = {"linear", "thin_plate_spline", "cubic", "quintic"}


def kernel_formula(phi: Callable[[ir.Node], ir.Node], dim: int, epsilon: float) -> ir.Node:
    """``phi(epsilon^2 |x_i - y_j|^2)`` with ``x`` variable 0 (i) and ``y`` variable 1 (j)."""
    s = _m("sqdist", ir.var(0, ir.I, dim), ir.var(1, ir.J, dim))
    if epsilon != 1.0:
        s = _m("mul", _c(float(epsilon) ** 2), s)
    return phi(s)
