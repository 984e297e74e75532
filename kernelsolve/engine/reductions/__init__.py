"""Reductions as data.

A reduction folds the values F(x_i, y_j) of one output row over j; each is
described once (accumulator fields, C snippets, NumPy semantics: see
:mod:`.base`) and every target reads the same description. This module is
the registry: adding a reduction means writing its class (:mod:`.sum`,
:mod:`.select`, :mod:`.logsumexp`) and adding one entry to
:data:`REDUCTIONS`.
"""

from __future__ import annotations

from .base import ACCUMULATOR, INDEX, VALUE, Field, Output, Reduction
from .logsumexp import (
    LogSumExpReduction,
    SumSoftMaxWeightReduction,
    WeightedLogSumExpReduction,
)
from .select import KMinReduction, MinMaxReduction
from .sum import SumReduction

__all__ = ["ACCUMULATOR", "INDEX", "VALUE", "Field", "Output", "REDUCTIONS", "Reduction", "get"]

REDUCTIONS: dict[str, Reduction] = {
    r.name: r
    for r in (
        SumReduction(),
        MinMaxReduction("min", values=True, indices=False),
        MinMaxReduction("max", values=True, indices=False),
        MinMaxReduction("min", values=False, indices=True),
        MinMaxReduction("max", values=False, indices=True),
        MinMaxReduction("min", values=True, indices=True),
        MinMaxReduction("max", values=True, indices=True),
        KMinReduction(values=True, indices=False),
        KMinReduction(values=False, indices=True),
        KMinReduction(values=True, indices=True),
        LogSumExpReduction(),
        WeightedLogSumExpReduction(),
        SumSoftMaxWeightReduction(),
    )
}


def get(name: str, K: int | None = None) -> Reduction:
    """The reduction called ``name`` (bound to ``K`` for the K-min family)."""
    try:
        red = REDUCTIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown reduction {name!r}; expected one of {sorted(REDUCTIONS)}"
        ) from None
    if red.uses_k:
        red.check(0, K)
        return red.with_k(K)
    return red
