"""Bounds of a formula over boxes of points, from the ops' interval rules.

For a formula F and an axis-aligned box per variable (a box of i-points, a
box of j-points, parameters as exact values or boxes), :func:`formula_interval`
gives per output coordinate an interval ``[lo, hi]`` holding ``F(x, y, p)``
for every point of the boxes. It evaluates the formula's DAG once per node,
in topological order (as the reference engine), with each op's ``interval``
rule (:mod:`.ops.interval`) on arrays of boxes: one call bounds every pair
of an i-cluster and a j-cluster at once.

Guarantee. For every ``x`` in the i-box, ``y`` in the j-box and ``p`` in
the parameter box (endpoints included):

* if ``lo`` and ``hi`` are numbers, F's value as the NumPy reference engine
  computes it in float64 (:func:`.backends.reference.evaluate`) is not NaN
  and lies in ``[lo, hi]`` (which may be infinite: ``hi = inf`` where F may
  be ``inf``);
* if F is NaN at some point of the boxes, ``lo`` and ``hi`` are NaN.

So ``max(|lo|, |hi|)`` (:func:`magnitude`, ``inf`` for NaN) bounds ``|F|``
over a pair of clusters, and a comparison with a NaN bound is False: a
consumer that skips a block when ``bound <= budget`` (or prunes it when
``lo > best``) never skips a block where F may be NaN. The rounding of the
reference engine is covered (each rule's result is widened by a few ulps,
sums by their rounding error); a compiled kernel's own rounding (float32,
fused multiply-adds) is the caller's to add.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import ir

__all__ = ["cluster_boxes", "formula_interval", "magnitude"]

#: Relative widening of every op's interval: the rules compute their ends
#: with the op's own float operations, which are monotone when correctly
#: rounded; libm's functions (exp, sin, pow, ...) are within an ulp or so.
WIDEN = 16 * float(np.finfo(np.float64).eps)


def _box(value, k: int, dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` of variable ``k``'s box: a pair, or one array (exact values)."""
    if value is None:
        raise ValueError(f"boxes[{k}]: the formula uses variable {k}; got None")
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"boxes[{k}]: expected (lo, hi) or an array, got {len(value)} items")
        lo, hi = (np.asarray(v, dtype=np.float64) for v in value)
    else:
        lo = hi = np.asarray(value, dtype=np.float64)
    if lo.shape != hi.shape or lo.ndim == 0 or lo.shape[-1] != (dim or lo.shape[-1]):
        ending = "" if dim is None else f", ending with the variable's dimension {dim}"
        raise ValueError(
            f"boxes[{k}]: lo {lo.shape} and hi {hi.shape} must have one shape{ending}"
        )
    if np.any(lo > hi) or np.isnan(lo).any() or np.isnan(hi).any():
        raise ValueError(f"boxes[{k}]: expected lo <= hi everywhere (no NaN, no empty box)")
    return lo, hi


def _place(pair, cat: int, pairs: bool):
    """The box laid out for broadcasting: i ``(..., Ci, 1, d)``, j ``(..., 1,
    Cj, d)``, parameter ``(..., 1, 1, d)``; with ``pairs``: i and j ``(..., P,
    d)``, parameter ``(..., 1, d)``."""
    if pairs:
        return pair if cat != ir.P else tuple(v[..., None, :] for v in pair)
    if cat == ir.I:
        return tuple(v[..., :, None, :] for v in pair)
    if cat == ir.J:
        return tuple(v[..., None, :, :] for v in pair)
    return tuple(v[..., None, None, :] for v in pair)


def _widened(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``lo`` and ``hi`` moved outward by :data:`WIDEN` relative (0 and
    infinities stay: ``inf * (1 - WIDEN)`` is ``inf``)."""
    out = []
    for v, side in ((lo, -WIDEN), (hi, WIDEN)):
        w = np.sign(v)
        w *= side
        w += 1
        w *= v
        out.append(w)
    return out[0], out[1]


def _settle(op: ir.Op, args, flags, out) -> tuple[np.ndarray, np.ndarray, bool]:
    """The rule's result as float64 ``(lo, hi, may be NaN somewhere)``: NaN
    where an argument is (per coordinate for elementwise ops, the whole
    output otherwise) and on both ends where on one; widened outward."""
    lo, hi = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in out))
    quick = np.add.reduce(lo, axis=None) + np.add.reduce(hi, axis=None)
    if not (any(flags) or np.isnan(quick)):  # no NaN anywhere (the common case)
        return *_widened(lo, hi), False
    bad = np.isnan(lo) | np.isnan(hi)
    for (a_lo, a_hi), flag in zip(args, flags):
        if flag:
            nan = np.isnan(a_lo) | np.isnan(a_hi)
            bad = bad | (nan if op.elementwise else nan.any(axis=-1, keepdims=True))
    lo, hi = _widened(np.where(bad, np.nan, lo), np.where(bad, np.nan, hi))
    return lo, hi, bool(bad.any())


def formula_interval(
    formula: ir.Node, boxes: Sequence, cats: Sequence[int], *, pairs: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``formula`` over boxes of its variables (see the module's
    guarantee).

    Parameters
    ----------
    formula
        The IR formula.
    boxes
        One entry per variable index: ``(lo, hi)`` arrays or one array
        (exact values, ``lo = hi``); None for a variable the formula does
        not use. An i- or j-variable's box is ``batch +
        (C, d)`` (C clusters of the i- or the j-points); a parameter's is
        ``batch + (d,)``.
    cats
        The category of each variable (``ir.I``, ``ir.J``, ``ir.P``).
    pairs
        False: every i-box against every j-box, output ``batch + (Ci, Cj,
        dim)``. True: i-box k against j-box k (both ``batch + (P, d)``),
        output ``batch + (P, dim)``.

    Returns
    -------
    (lo, hi)
        float64 arrays; NaN on both where F may be NaN.

    Example
    -------
    >>> from kernelsolve.engine import ir
    >>> x, y = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)
    >>> f = ir.make("exp", ir.make("neg", ir.make("sqdist", x, y)))
    >>> lo, hi = formula_interval(f, [([[0.0]], [[1.0]]), ([[3.0]], [[4.0]])], [ir.I, ir.J])
    >>> bool(np.isclose(hi[0, 0, 0], np.exp(-4.0))), bool(np.isclose(lo[0, 0, 0], np.exp(-16.0)))
    (True, True)
    """
    if len(boxes) != len(cats):
        raise ValueError(f"boxes and cats: {len(boxes)} boxes for {len(cats)} categories")
    dims = {v.attrs[0]: v.attrs[2] for v in ir.variables(formula)}
    if dims and max(dims) >= len(boxes):
        raise ValueError(f"boxes: the formula uses variable {max(dims)}, only {len(boxes)} given")
    # every box, used or not, shapes the output (Ci, Cj, as the reductions)
    leaves = {
        k: _place(_box(b, k, dims.get(k)), cats[k], pairs)
        for k, b in enumerate(boxes)
        if b is not None or k in dims
    }
    values: dict[int, tuple] = {}  # (lo, hi, may hold NaN) of each node
    with np.errstate(all="ignore"):
        for node in ir.topological_order(formula):
            if node.op == "var":
                out = (*leaves[node.attrs[0]], False)
            elif node.op == "const":
                value, dim = node.attrs
                v = np.full((dim,), value, dtype=np.float64)
                out = (v, v, bool(np.isnan(value)))
            else:
                op = ir.OPS[node.op]
                args = [values[id(a)][:2] for a in node.args]
                flags = [values[id(a)][2] for a in node.args]
                out = _settle(op, args, flags, op.interval(*args, *node.attrs))
            values[id(node)] = out
    lo, hi, _ = values[id(formula)]
    shapes = [v.shape[:-1] for pair in leaves.values() for v in pair]
    shape = np.broadcast_shapes(*shapes, lo.shape[:-1]) + (formula.dim,)
    return np.broadcast_to(lo, shape), np.broadcast_to(hi, shape)


def magnitude(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``max(|lo|, |hi|)``: a bound of ``|F|`` (``inf`` where F may be NaN).

    >>> magnitude(np.array([-3.0, np.nan]), np.array([2.0, np.nan])).tolist()
    [3.0, inf]
    """
    return np.where(np.isnan(lo) | np.isnan(hi), np.inf, np.maximum(np.abs(lo), np.abs(hi)))


def cluster_boxes(x, labels) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box ``(lo, hi)``, each ``(C, D)``, of the points ``x``
    (shape (M, D)) of each cluster ``0 .. C-1`` (``labels``, shape (M,), e.g.
    from :func:`kernelsolve.engine.ranges.cluster.grid_cluster`). A label
    with no point gives an empty box (``lo = inf > hi = -inf``), which
    :func:`formula_interval` refuses.

    >>> lo, hi = cluster_boxes(np.array([[0.0], [0.3], [2.0]]), np.array([0, 0, 1]))
    >>> lo.tolist(), hi.tolist()
    ([[0.0], [2.0]], [[0.3], [2.0]])
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if x.ndim != 2 or len(labels) != len(x):
        raise ValueError(
            f"cluster_boxes: x must be (M, D) and labels (M,), got {x.shape} and {labels.shape}"
        )
    C = int(labels.max()) + 1 if len(labels) else 0
    lo = np.full((C, x.shape[1]), np.inf)
    hi = np.full((C, x.shape[1]), -np.inf)
    np.minimum.at(lo, labels, x)
    np.maximum.at(hi, labels, x)
    return lo, hi
