"""pykeops' reduction names (``reduction_op=``) and how each one runs here.

Every name maps to one :class:`Reduction`: the engine reduction it becomes
(:data:`kernelsolve.engine.reductions.REDUCTIONS`), whether it takes ``K``
(``opt_arg``) or a second formula (``formula2``), and a runner that turns a
:class:`~kernelsolve.engine.request.ReductionRequest` into pykeops' output.
Outputs follow pykeops: values ``(M, D)``, indices int64, ``KMin`` ``(M, K)``
(``(M, K, D)`` when ``D > 1``), ``Max_SumShiftExp`` the pairs ``(max, sum
exp(f - max))`` side by side.

>>> sorted(REDUCTIONS)[:4]
['ArgKMin', 'ArgMax', 'ArgMin', 'KMin']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .. import autograd
from ..engine import arrays, ir
from ..engine.request import ReductionRequest

__all__ = ["REDUCTIONS", "Reduction", "reduction_of"]


def _engine(request: ReductionRequest):
    return autograd.reduce(request)


def _zero(request: ReductionRequest):
    """pykeops' ``Zero`` reduction: zeros of the output's shape."""
    return autograd.reduce(
        request._replace(formula=ir.const(0, request.formula.dim), reduction="sum", weight=None)
    )


def _concat(a, b):
    if arrays.library(a) == arrays.TORCH:
        import torch

        return torch.cat([a, b], dim=-1)
    if arrays.library(a) == arrays.CUPY:
        import cupy

        return cupy.concatenate([a, b], axis=-1)
    return np.concatenate([a, b], axis=-1)


def _max_sumshiftexp(request: ReductionRequest):
    """``(m, s)`` with ``m = max f`` and ``s = sum exp(f - m) g`` (``g = 1``
    without a weight): a max reduction, then a sum with ``m`` bound as a
    variable of the output's category."""
    f, g = request.formula, request.weight
    if f.dim != 1:
        raise ValueError(f"Max_SumShiftExp needs a scalar formula, got dimension {f.dim}")
    m = autograd.reduce(request._replace(reduction="max", weight=None))
    out_cat = ir.I if request.axis == 1 else ir.J
    shift = ir.var(len(request.arguments), out_cat, 1)
    summand = ir.make("exp", ir.make("sub", f, shift))
    if g is not None:
        summand = ir.make("mul", summand, g)
    s = autograd.reduce(
        request._replace(
            formula=summand,
            reduction="sum",
            weight=None,
            arguments=tuple(request.arguments) + (m,),
            cats=tuple(request.cats) + (out_cat,),
        )
    )
    return _concat(m, s)


class Reduction(NamedTuple):
    """One ``reduction_op`` of pykeops."""

    #: the engine reduction (None: the runner decides)
    engine: str | None
    #: takes ``opt_arg`` (the K of the K-min family)
    uses_k: bool = False
    #: ``formula2``: "no" (refused), "optional", "required"
    weight: str = "no"
    #: the engine reduction when ``formula2`` is given (LogSumExp)
    weighted: str | None = None
    run: Callable = _engine


def _plain(engine: str) -> Reduction:
    return Reduction(engine)


REDUCTIONS: dict[str, Reduction] = {
    "Sum": _plain("sum"),
    "Min": _plain("min"),
    "Max": _plain("max"),
    "ArgMin": _plain("argmin"),
    "ArgMax": _plain("argmax"),
    "Min_ArgMin": _plain("min_argmin"),
    "MinArgMin": _plain("min_argmin"),
    "Max_ArgMax": _plain("max_argmax"),
    "MaxArgMax": _plain("max_argmax"),
    "KMin": Reduction("kmin", uses_k=True),
    "ArgKMin": Reduction("argkmin", uses_k=True),
    "KMin_ArgKMin": Reduction("kmin_argkmin", uses_k=True),
    "KMinArgKMin": Reduction("kmin_argkmin", uses_k=True),
    "LogSumExp": Reduction("logsumexp", weight="optional", weighted="logsumexp_weight"),
    "LogSumExpWeight": Reduction("logsumexp_weight", weight="required"),
    "SumSoftMaxWeight": Reduction("sumsoftmaxweight", weight="required"),
    "SoftMax": Reduction("sumsoftmaxweight", weight="required"),
    "Max_SumShiftExp": Reduction(None, run=_max_sumshiftexp),
    "Max_SumShiftExpWeight": Reduction(None, weight="optional", run=_max_sumshiftexp),
    "Zero": Reduction(None, run=_zero),
}


def reduction_of(name: str, opt_arg, has_weight: bool) -> tuple[Reduction, str | None]:
    """The :class:`Reduction` called ``name`` and its engine name, after
    checking ``opt_arg`` and ``formula2`` against it (ValueError otherwise)."""
    red = REDUCTIONS.get(name)
    if red is None:
        raise ValueError(f"reduction_op={name!r}: expected one of {', '.join(sorted(REDUCTIONS))}")
    if red.uses_k:
        if isinstance(opt_arg, bool) or not isinstance(opt_arg, (int, np.integer)) or opt_arg < 1:
            raise ValueError(f"reduction_op={name!r} needs opt_arg=K, an integer >= 1")
    elif opt_arg is not None:
        raise ValueError(f"opt_arg is the K of KMin/ArgKMin/KMin_ArgKMin; {name} takes none")
    if red.weight == "required" and not has_weight:
        raise ValueError(f"reduction_op={name!r} needs formula2 (the weights)")
    if red.weight == "no" and has_weight:
        raise ValueError(f"reduction_op={name!r} takes no formula2")
    engine = red.weighted if (has_weight and red.weighted) else red.engine
    return red, engine
