"""The record of an iterative solve of the interpolation and kriging systems
(:class:`SaddleInfo`), apart from the solver so that every solver can fill one."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SaddleInfo"]


@dataclass
class SaddleInfo:
    """Record of a solve.

    ``products``: products with the full kernel matrix (engine reductions or FMM
    evaluations, see ``product``); ``coarse_products``: products with its columns
    at the coarse points (two-level preconditioner); ``iterations``: GMRES
    iterations over all columns; ``residual``: relative residual per column.
    """

    products: int = 0
    residual: list = field(default_factory=list)
    converged: bool = True
    setup_seconds: float = 0.0
    solve_seconds: float = 0.0
    coarse_products: int = 0
    iterations: int = 0
    product: str = "engine"
    gave_up: bool = False  # stopped before maxiter: would not reach rtol in time
    skipped_pairs: float = 0.0  # tol=: the fraction of point pairs each product skipped
    rcond: float | None = None  # direct solves: reciprocal condition number estimate
