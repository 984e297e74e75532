"""The keyword-only options of the kriging classes beyond PyKrige's: which solver,
how the kriging variance is computed, and the iterative solvers' settings; the
warning that default variances are local approximations."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

import numpy as np

from ..engine.ranges.approx_reduce import check_tol
from ..tolerance import KRIGING_RTOL, check_tolerances
from .dense import available_memory, memory_budget
from .kriging_direct import MATRIX_SHARE, direct_bytes
from .kriging_inputs import variance_mode

__all__ = [
    "SolverOptions",
    "SOLVERS",
    "VALUES_ONLY_DIRECT_MAX",
    "LocalVarianceWarning",
    "warn_local_variances",
]

#: solver="auto" is "direct" wherever PyKrige's dense system fits the memory
#: budget (:func:`.kriging_direct.direct_fits`), where PyKrige itself could run.
SOLVERS = ("auto", "direct", "saddle", "cg")

#: ... except for objects built with ``variance=False`` above this many unknowns:
#: values alone are exact to ``rtol`` from the iterative solvers, which beat one
#: LU from about here (4,000 unknowns, measured on the Jacksboro DEM).
VALUES_ONLY_DIRECT_MAX = 4000


class LocalVarianceWarning(UserWarning):
    """``variance="auto"`` gave local (approximate) kriging variances: the dense
    system does not fit the memory budget and exact ones cost a solve per target."""


def warn_local_variances(k: int, q: int, unknowns: int, asked: str, solver: str) -> None:
    """The LocalVarianceWarning: ``k`` targets' variances local on ``q`` neighbours,
    why the dense system of ``unknowns`` was not solved (``asked``: the ``solver``
    option), and what exact variances cost."""
    need = direct_bytes(unknowns)
    why = (
        f"solver={solver!r} was asked for"
        if asked != "auto"
        else f"its {need / 1e6:.4g} MB exceed the dense memory budget "
        f"({memory_budget() / 1e6:.4g} MB; kernelsolve.config.dense_memory_limit)"
    )
    free = available_memory()
    direct = ""
    if need / MATRIX_SHARE <= free:
        direct = f", solver='direct' at one LU ({need / 1e6:.4g} MB of {free / 1e6:.4g} MB free)"
    warnings.warn(
        f"kriging variances at {k} targets are local approximations (kriging on the "
        f"{q} nearest data), not exact: they are upper bounds, too large in data gaps "
        "(by up to 0.27 of the largest variance at n = 10,000 with 64 neighbours, "
        f"median 4e-3; docs/kriging.md). The exact dense system of {unknowns} unknowns "
        f"is not solved because {why}. variance='exact' gives exact variances at the "
        f"cost of one iterative solve of {unknowns} unknowns per target ({k} solves)"
        f"{direct}; variance='local' silences this warning.",
        LocalVarianceWarning,
        stacklevel=9,  # the caller of execute
    )


@dataclass
class SolverOptions:
    """Options of the solvers (documented in :class:`.kriging.OrdinaryKriging`)."""

    solver: str = "auto"
    variance: str | bool = "auto"
    exact_variance_max: int | None = None
    variance_neighbors: int = 64
    variance_check: int = 10
    max_pairs: int = 1 << 22
    rank: int | None = None
    tol: float | None = None
    rtol: float = KRIGING_RTOL
    maxiter: int = 1000
    neighbors: int = 50
    coarse: int | str = "auto"
    seed: int = 0

    @classmethod
    def pick(cls, arguments: dict) -> dict:
        """These options out of a constructor's arguments (``locals()``): each class
        lists them in its signature, where ``help`` shows them."""
        return {f.name: arguments[f.name] for f in fields(cls)}

    @classmethod
    def parse(cls, options: dict, drift_size: int) -> SolverOptions:
        """Checked options; a ValueError naming a bad value."""
        o = cls(**options)
        if o.solver not in SOLVERS:
            raise ValueError(f"solver={o.solver!r}: expected one of {SOLVERS}")
        o.variance = variance_mode(o.variance)
        coarse = o.coarse
        if isinstance(coarse, str) and coarse != "auto":
            raise ValueError(f"coarse={coarse!r}: expected 'auto' or a number of points")
        if not isinstance(coarse, str) and not (
            isinstance(coarse, (int, np.integer)) and not isinstance(coarse, bool) and coarse >= 0
        ):
            raise ValueError(f"coarse must be 'auto' or an integer >= 0, got {coarse!r}")
        if int(o.variance_neighbors) < drift_size + 1:
            raise ValueError(
                f"variance_neighbors must be >= {drift_size + 1}, got {o.variance_neighbors}"
            )
        o.variance_neighbors = int(o.variance_neighbors)
        o.variance_check = max(0, int(o.variance_check))
        o.seed = int(o.seed)
        check_tolerances(o.rtol, 0.0, o.maxiter)
        if o.rtol == 0 or o.maxiter == 0:  # GMRES would only ever stop at maxiter
            name, value = ("rtol", o.rtol) if o.rtol == 0 else ("maxiter", o.maxiter)
            raise ValueError(f"{name} must be > 0, got {value}")
        o.rtol, o.maxiter = float(o.rtol), int(o.maxiter)
        o.tol = check_tol(o.tol)
        return o
