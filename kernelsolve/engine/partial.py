"""Partial results: the seam for every split of a reduction.

A reduction over j is a fold of the columns of each output row; the state of
that fold before finalize (the accumulator) is what a shard, a Dask chunk or
a tile of a split hands back, and the reduction's own merge of those states,
in j order, is the one-process answer. This module gives that seam on top
of :mod:`.dispatch`'s plans:

* :func:`restrict` - the plan and leaves of output rows ``[lo, hi)`` and/or
  reduced columns ``[lo, hi)`` (slices of the leaves, views where possible);
* :func:`execute_partial` - the accumulator state of a plan over a column
  range, by one kernel of the plan's target whose finalize copies the
  accumulator out (:class:`.reductions.partial.PartialReduction`), indices
  offset by the range's start;
* :func:`merge` - states of consecutive column ranges, in j order;
* :func:`finalize` - the state as :func:`.dispatch.execute` returns it.

The rows of a plan are its M axis (``plan.cats`` entry :data:`.ir.I`), the
columns its N axis (:data:`.ir.J`): those of the reduction over j that
:mod:`.dispatch` makes of a reduction over i (the request's ``axis=0``).
A state is a dict: field name -> NumPy array ``plan.batch + (M, size)``,
index fields int64, value fields in the accumulator dtype, sums with their
compensation folded in.

Example
-------
>>> import numpy as np
>>> from kernelsolve.engine import dispatch, ir
>>> from kernelsolve.engine.request import ReductionRequest
>>> x, y = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)
>>> a, b = np.array([[0.0], [3.0]]), np.array([[2.0], [0.5], [4.0], [0.5]])
>>> f = ir.make("abs", ir.make("sub", x, y))
>>> plan = dispatch.plan(ReductionRequest(f, "argmin", (a, b), (ir.I, ir.J)))
>>> states = [execute_partial(plan, (a, b), c) for c in [(0, 1), (1, 1), (1, 4)]]
>>> finalize(plan, merge(plan, states))[:, 0].tolist()  # ties: the earlier j
[1, 0]
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from . import arrays, dispatch, ir
from .backends import cpu
from .cache import register_memo
from .dispatch import Plan
from .ranges import plan as ranges_plan
from .reductions import INDEX
from .reductions.partial import PartialReduction

__all__ = ["execute_partial", "finalize", "merge", "restrict"]


def restrict(
    plan: Plan,
    leaves: Sequence,
    rows: tuple[int, int] | None = None,
    cols: tuple[int, int] | None = None,
) -> tuple[Plan, tuple]:
    """The plan and leaves of the same reduction restricted to output rows
    ``rows = (lo, hi)`` and/or reduced columns ``cols = (lo, hi)`` (None: all).

    Rows are the plan's M axis (the variables whose ``plan.cats`` entry is
    :data:`.ir.I`, after the transposition of a reduction over i), columns
    its N axis (:data:`.ir.J`). The leaves are sliced along their axis -2
    (views of NumPy arrays, torch tensors and CuPy arrays); empty ranges are
    allowed. Dense plans; block-sparse plans by rows only, with their
    ranges clipped by :func:`restrict_ranges`.

    Example
    -------
    >>> from kernelsolve.engine.request import ReductionRequest
    >>> x, y = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)
    >>> a, b = np.arange(4.0).reshape(4, 1), np.ones((3, 1))
    >>> plan = dispatch.plan(ReductionRequest(ir.make("mul", x, y), "sum", (a, b), (ir.I, ir.J)))
    >>> p, leaves = restrict(plan, (a, b), rows=(1, 3))
    >>> dispatch.execute(p, leaves)[:, 0].tolist()
    [3.0, 6.0]
    """
    if not (cols is None and isinstance(plan, Plan)):  # block-sparse plans by rows
        _check_dense(plan, "restrict")
    if len(leaves) != len(plan.cats):
        raise ValueError(f"restrict: expected {len(plan.cats)} leaves, got {len(leaves)}")
    r = _interval(rows, plan.M, "rows")
    c = _interval(cols, plan.N, "cols")
    return _restricted(plan, r, c), tuple(
        _slice(x, cat, r, c) for x, cat in zip(leaves, plan.cats)
    )


def restrict_ranges(plan: Plan, ranges, rows: tuple[int, int]):
    """pykeops' ``ranges`` of a block-sparse ``plan`` (as its request holds
    them) for the output rows ``rows = (lo, hi)`` of :func:`restrict`: the
    half the plan reads clipped to the rows and counted from ``lo``.

    Example
    -------
    >>> from kernelsolve.engine.request import ReductionRequest
    >>> x, y = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)
    >>> a, b = np.arange(4.0).reshape(4, 1), np.ones((3, 1))
    >>> half = (np.array([[0, 4]]), np.array([1]), np.array([[0, 2]]))
    >>> request = ReductionRequest(ir.make("mul", x, y), "sum", (a, b), (ir.I, ir.J),
    ...                            ranges=half + half)
    >>> plan = dispatch.plan(request)
    >>> p, leaves = restrict(plan, (a, b), rows=(1, 3))
    >>> dispatch.execute(p, leaves, restrict_ranges(plan, request.ranges, (1, 3)))[:, 0].tolist()
    [2.0, 4.0]
    """
    lo, hi = _interval(rows, plan.M, "rows")
    over_i = plan.range_names != ranges_plan.NAMES[:3]
    ours = ranges_plan.swap_axes(ranges) if over_i else tuple(ranges)
    clipped = ranges_plan.clip_rows(ours, lo, hi)
    return ranges_plan.swap_axes(clipped) if over_i else clipped


def execute_partial(
    plan: Plan, leaves: Sequence, cols: tuple[int, int] | None = None
) -> dict[str, np.ndarray]:
    """The accumulator state of ``plan`` on ``leaves`` over reduced columns
    ``cols = (lo, hi)`` (None: all).

    Returns a dict: field name -> host NumPy array ``plan.batch + (M, size)``;
    index fields int64 and counted from column 0 of the whole plan (``lo``
    added; empty slots stay -1), value fields in the accumulator dtype
    (float64 under ``acc_dtype="float64"``, else the compute dtype), sums
    with their compensation folded in. An empty range gives the neutral
    state (each field's initial value). One kernel of the plan's target
    (compiled CPU, CUDA or the reference engine) computes it.

    Example
    -------
    >>> from kernelsolve.engine.request import ReductionRequest
    >>> x, y = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)
    >>> a, b = np.zeros((1, 1)), np.array([[3.0], [1.0], [2.0]])
    >>> request = ReductionRequest(ir.make("add", x, y), "min_argmin", (a, b), (ir.I, ir.J))
    >>> plan = dispatch.plan(request)
    >>> state = execute_partial(plan, (a, b), cols=(1, 3))
    >>> state["vals"].tolist(), state["idx"].tolist()
    ([[1.0]], [[1]])
    """
    _check_dense(plan, "execute_partial")
    lo, hi = _interval(cols, plan.N, "cols") or (0, plan.N)
    if hi == lo or plan.M == 0 or 0 in plan.batch:
        return _neutral(plan)
    if (lo, hi) != (0, plan.N):
        plan, leaves = restrict(plan, leaves, cols=(lo, hi))
    part = _partial_plan(plan)
    outs = [_to_host(o) for o in dispatch.target_outputs(part, leaves)]
    state = part.red.present(outs, plan.formula.dim, plan.K)
    if lo:
        for name in _index_fields(plan):
            idx = state[name]
            idx[idx >= 0] += lo
    return state


def merge(plan: Plan, states: Sequence[dict]) -> dict[str, np.ndarray]:
    """The state of consecutive column ranges from theirs, given in j order,
    by the reduction's own merge (ties go to the earlier column; NaN and the
    K-min order as in one pass). The states are left unchanged.

    Example
    -------
    >>> from kernelsolve.engine.request import ReductionRequest
    >>> x, y = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)
    >>> a, b = np.zeros((1, 1)), np.array([[2.0], [1.0], [1.0]])
    >>> request = ReductionRequest(ir.make("add", x, y), "argmin", (a, b), (ir.I, ir.J))
    >>> plan = dispatch.plan(request)
    >>> parts = [execute_partial(plan, (a, b), c) for c in [(0, 2), (2, 3)]]
    >>> merge(plan, parts)["idx"].tolist()
    [[1]]
    """
    if not states:
        raise ValueError("merge: expected at least one state, got none")
    red = _partial_reduction(plan)
    acc = {name: a.copy() for name, a in _np_form(plan, states[0], 0).items()}
    with np.errstate(all="ignore"):  # inf - inf of log-sum-exp shifts, as in one pass
        for k, state in enumerate(states[1:], 1):
            acc = red.np_merge(acc, _np_form(plan, state, k))
    return red.present(red.np_finalize(acc), plan.formula.dim, plan.K)


def finalize(plan: Plan, state: dict):
    """What :func:`.dispatch.execute` returns for the whole columns, from
    their state: the reduction's finalize, then the caller's library,
    device, dtype and pykeops' shapes.

    Example
    -------
    >>> from kernelsolve.engine.request import ReductionRequest
    >>> x, y = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)
    >>> a, b = np.zeros((1, 1)), np.array([[0.0], [0.0]])
    >>> request = ReductionRequest(ir.make("add", x, y), "logsumexp", (a, b), (ir.I, ir.J))
    >>> plan = dispatch.plan(request)
    >>> state = merge(plan, [execute_partial(plan, (a, b), c) for c in [(0, 1), (1, 2)]])
    >>> bool(np.isclose(finalize(plan, state)[0, 0], np.log(2)))
    True
    """
    red, kind = plan.red, plan.kind
    with np.errstate(all="ignore"):  # log(0) of an empty log-sum-exp, 0 / 0 of a softmax
        outs = red.np_finalize(_np_form(plan, state, 0))
    values = np.dtype(np.float32 if kind.dtype in arrays.HALF_DTYPES else kind.dtype)
    specs = red.outputs(plan.formula.dim, plan.K, _weight_dim(plan))
    outs = [
        np.ascontiguousarray(o, dtype=np.int64 if s.kind == INDEX else values)
        for o, s in zip(outs, specs)
    ]
    cast = kind.dtype if kind.dtype in arrays.HALF_DTYPES else None
    return red.present(dispatch._cast_outputs(outs, kind, cast), plan.formula.dim, plan.K)


# ----------------------------------------------------------------------------
# Plans
# ----------------------------------------------------------------------------

# (plan, rows, cols) -> restricted plan; plan -> its partial plan
_restricted_plans: dict = register_memo({}, "partial.restricted")
_partial_plans: dict = register_memo({}, "partial.plans")


def _check_dense(plan: Plan, name: str) -> None:
    if not isinstance(plan, Plan):
        raise TypeError(f"{name}: expected a dispatch.Plan, got {type(plan).__name__}")
    if plan.range_names:
        raise ValueError(
            f"{name}: block-sparse plans (ranges=) are not supported; restrict the "
            "dense plan of the request, or split the ranges themselves"
        )


def _interval(bounds, n: int, name: str) -> tuple[int, int] | None:
    """``bounds`` checked as ``(lo, hi)`` with 0 <= lo <= hi <= n; None: all."""
    if bounds is None:
        return None
    try:
        lo, hi = (operator.index(b) for b in bounds)
    except (TypeError, ValueError):
        raise TypeError(f"{name}={bounds!r}: expected a pair of integers (lo, hi)") from None
    if not 0 <= lo <= hi <= n:
        raise ValueError(f"{name}={bounds!r}: expected 0 <= lo <= hi <= {n}")
    return lo, hi


def _slice(x, cat: int, r, c):
    """Leaf ``x`` of category ``cat`` on rows ``r`` and columns ``c``: a view."""
    bounds = r if cat == ir.I else c if cat == ir.J else None
    return x if bounds is None else x[..., bounds[0] : bounds[1], :]


def _restricted(plan: Plan, r, c) -> Plan:
    if r is None and c is None:
        return plan
    key = (plan, r, c)
    found = _restricted_plans.get(key)
    if found is None:
        M = plan.M if r is None else r[1] - r[0]
        N = plan.N if c is None else c[1] - c[0]
        # shapes[k][-2] is the count of an i- (j-) variable: M (N)
        shapes = tuple(
            s[:-2] + ({ir.I: M, ir.J: N}[cat],) + s[-1:] if cat != ir.P else s
            for s, cat in zip(plan.shapes, plan.cats)
        )
        found = replace(
            plan, M=M, N=N, shapes=shapes, host=_host_call(plan, plan.spec, shapes, M, N)
        )
        if len(_restricted_plans) > 1024:
            _restricted_plans.clear()
        _restricted_plans[key] = found
    return found


def _host_call(plan: Plan, spec, shapes, M: int, N: int):
    if plan.host is None:
        return None
    return cpu.HostCall(spec, shapes, [c == ir.J for c in plan.cats], plan.batch, M, N)


def _partial_plan(plan: Plan) -> Plan:
    """The plan whose outputs are ``plan``'s accumulator state."""
    found = _partial_plans.get(plan)
    if found is None:
        red = _partial_reduction(plan)
        spec = None if plan.spec is None else replace(plan.spec, reduction=red)
        host = _host_call(plan, spec, plan.shapes, plan.M, plan.N)
        found = replace(plan, red=red, spec=spec, host=host)
        if len(_partial_plans) > 1024:
            _partial_plans.clear()
        _partial_plans[plan] = found
    return found


def _partial_reduction(plan: Plan) -> PartialReduction:
    return plan.red if isinstance(plan.red, PartialReduction) else PartialReduction(plan.red)


# ----------------------------------------------------------------------------
# States
# ----------------------------------------------------------------------------


def _weight_dim(plan: Plan) -> int:
    return plan.weight.dim if plan.weight is not None else 0


def _fields(plan: Plan):
    return plan.red.fields(plan.formula.dim, plan.K, _weight_dim(plan))


def _index_fields(plan: Plan) -> list[str]:
    return [f.name for f in _fields(plan) if f.kind == INDEX]


def _acc_dtype(plan: Plan) -> np.dtype:
    """The dtype of the value fields of a state."""
    if plan.acc_dtype is not None:
        return np.dtype(plan.acc_dtype)
    dtype = plan.kind.dtype
    return np.dtype(np.float32 if dtype in arrays.HALF_DTYPES else dtype)


def _neutral(plan: Plan) -> dict[str, np.ndarray]:
    """The state of no column: each field's initial value."""
    acc = _acc_dtype(plan)
    return {
        f.name: np.full(
            plan.batch + (plan.M, f.size), f.init, dtype=np.int64 if f.kind == INDEX else acc
        )
        for f in _fields(plan)
    }


def _np_form(plan: Plan, state: dict, k: int) -> dict:
    """``state`` (the ``k``-th given) checked, in the form of the reduction's
    NumPy methods (K-min: ``(..., M, K, D)``)."""
    fields = _fields(plan)
    if not isinstance(state, dict) or set(state) != {f.name for f in fields}:
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"state {k}: expected a dict with the fields {[f.name for f in fields]}, got {got}"
        )
    lead = plan.batch + (plan.M,)
    out = {}
    for f in fields:
        a = np.asarray(state[f.name])
        if a.shape != lead + (f.size,):
            raise ValueError(
                f"state {k}: field {f.name!r} of shape {a.shape}, expected {lead + (f.size,)}"
            )
        out[f.name] = a.reshape(lead + (plan.K, plan.formula.dim)) if plan.red.uses_k else a
    return out


def _to_host(a) -> np.ndarray:
    """A target's output as a NumPy array (device arrays copied to the host)."""
    if isinstance(a, np.ndarray):
        return a
    if arrays.is_cupy(a):
        return a.get()
    return a.detach().cpu().numpy()
