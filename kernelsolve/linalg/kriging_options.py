"""The keyword-only options of the kriging classes beyond PyKrige's: which solver,
how the kriging variance is computed, and the iterative solvers' settings."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..tolerance import KRIGING_RTOL, check_tolerances
from .kriging_inputs import variance_mode

__all__ = ["SolverOptions", "SOLVERS", "DIRECT_MAX"]

SOLVERS = ("auto", "direct", "saddle", "cg")
#: solver="auto" solves directly up to this many unknowns (data + drift terms):
#: an LU of 4,000 unknowns takes about 1 s on 2 cores, and exact variances then
#: cost one triangular solve per target, as PyKrige's do (docs/kriging.md).
DIRECT_MAX = 4000


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
        return o
