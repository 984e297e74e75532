"""Binding arrays to formula variables, and joining the variable lists of
two formulas.

A LazyTensor's fields (``formula``, ``variables``, ``cats``, ``ni``, ``nj``,
``batchdims``, ``_kind``) come from :func:`bind_array` / :func:`bind_number`
(one array or number) and from :func:`join` (several operands), as plain
tuples in that order (LazyTensors are built on every warm call: no extra
object per construction). Both check what a kernel would
otherwise read wrong: shapes, point counts, batch broadcasting, and one
library / dtype / device per formula.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..engine import arrays, ir
from ..engine.arrays import ArrayKind


def is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def bind_number(x, axis) -> tuple:
    """An int constant (folded) or a parameter of Python floats."""
    if isinstance(x, bool):
        raise TypeError("LazyTensor: x must be an array or a number, got bool")
    if isinstance(x, np.integer):
        x = int(x)
    if isinstance(x, int):
        if axis not in (None, 2):
            raise ValueError(f"LazyTensor: axis={axis} given for an integer constant")
        return ir.const(x), (), (), None, None, (), None
    if isinstance(x, (float, np.floating)):
        x = (float(x),)
    if axis not in (None, 2):
        raise ValueError(
            f"LazyTensor: a list of numbers is a parameter; axis must be None or 2, got {axis}"
        )
    if len(x) == 0 or not all(
        isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in x
    ):
        raise TypeError("LazyTensor: a list must hold at least one number")
    leaf = tuple(float(v) for v in x)
    return ir.var(0, ir.P, len(leaf)), (leaf,), (ir.P,), None, None, (), None


def _leaf_of(x, shape: tuple, axis) -> tuple[object, int]:
    """The array bound to the variable (shape ``batch + (n, d)`` or
    ``batch + (d,)``) and its category, from pykeops' shape conventions."""
    if len(shape) >= 3:
        if axis is not None:
            raise ValueError(
                f"LazyTensor: axis must not be given for a {len(shape)}-D array; the "
                "category is read from the shape (..., M, 1, D) or (..., 1, N, D)"
            )
        m, n = shape[-3], shape[-2]
        if m == 1 and n == 1:
            return x[..., 0, 0, :], ir.P
        if n == 1:
            return x[..., :, 0, :], ir.I
        if m == 1:
            return x[..., 0, :, :], ir.J
        raise ValueError(
            f"LazyTensor: x of shape {shape} is a full (M, N, D) array; expected "
            "(..., M, 1, D) for an i-variable, (..., 1, N, D) for a j-variable or "
            "(..., 1, 1, D) for a parameter"
        )
    if len(shape) == 2:
        if axis not in (0, 1):
            raise ValueError(
                f"LazyTensor: a 2-D array of shape {shape} needs axis=0 (indexed by i) "
                f"or axis=1 (indexed by j), got axis={axis}"
            )
        return x, (ir.I if axis == 0 else ir.J)
    if len(shape) == 1:
        if axis in (0, 1):  # a vector of N scalars indexed by i or j
            return x[:, None], (ir.I if axis == 0 else ir.J)
        if axis in (None, 2):
            return x, ir.P
        raise ValueError(f"LazyTensor: axis must be None, 0, 1 or 2, got {axis}")
    if axis not in (None, 2):
        raise ValueError(f"LazyTensor: a 0-d array is a parameter; got axis={axis}")
    return x.reshape(1), ir.P


def bind_array(x, axis) -> tuple:
    """The fields of a variable bound to the array ``x`` (see
    :class:`~kernelsolve.LazyTensor` for the shapes)."""
    kind = arrays.kind_of(x)
    if kind.dtype not in arrays.FLOAT_DTYPES:
        raise TypeError(
            f"LazyTensor: x has dtype {kind.dtype}; expected float16, bfloat16, float32 or float64"
        )
    shape = tuple(x.shape)
    if any(s != s for s in shape):  # NaN: a dask array of unknown chunk sizes
        raise ValueError(
            f"LazyTensor: x of shape {shape} has unknown sizes; call "
            "x.compute_chunk_sizes() on the dask array first"
        )
    if 0 in shape:
        raise ValueError(
            f"LazyTensor: x of shape {shape} is empty; expected no zero-size dimension"
        )
    leaf, cat = _leaf_of(x, shape, axis)
    lshape = tuple(leaf.shape)
    ni = lshape[-2] if cat == ir.I else None
    nj = lshape[-2] if cat == ir.J else None
    batch = lshape[: len(lshape) - (1 if cat == ir.P else 2)]
    return ir.var(0, cat, lshape[-1]), (leaf,), (cat,), ni, nj, batch, kind


def join(operands: Sequence, names: Sequence[str] = ()) -> tuple[list[ir.Node], tuple]:
    """Merge the variable lists of ``operands`` (LazyTensors); returns their
    formulas renumbered into the merged list and the merged fields
    ``(variables, cats, ni, nj, batchdims, kind)``.
    ``names`` word the operands in errors (default: "operand k")."""
    if len(operands) == 2:
        a, b = operands
        if not b.variables or (b.variables is a.variables and b.cats == a.cats):
            # a constant, or the same arrays (x * x): nothing to merge or renumber
            meta = merge_meta(a.ni, a.nj, a.batchdims, a._kind, b, names)
            return [a.formula, b.formula], (a.variables, a.cats, *meta)
        if not a.variables:
            meta = merge_meta(a.ni, a.nj, a.batchdims, a._kind, b, names)
            return [a.formula, b.formula], (b.variables, b.cats, *meta)
    first = operands[0]
    variables, cats = list(first.variables), list(first.cats)
    formulas = [first.formula]
    ni, nj, batch, kind = first.ni, first.nj, first.batchdims, first._kind
    for k, op in enumerate(operands[1:], start=1):
        mapping = []
        for leaf, cat in zip(op.variables, op.cats):
            for m, (v, c) in enumerate(zip(variables, cats)):
                if v is leaf and c == cat:
                    mapping.append(m)
                    break
            else:
                variables.append(leaf)
                cats.append(cat)
                mapping.append(len(variables) - 1)
        mapping = tuple(mapping)
        same = mapping == tuple(range(len(mapping)))
        formulas.append(op.formula if same else ir.remap(op.formula, mapping))
        ni, nj, batch, kind = merge_meta(ni, nj, batch, kind, op, names, k)
    return formulas, (tuple(variables), tuple(cats), ni, nj, batch, kind)


def merge_meta(ni, nj, batch, kind, op, names: Sequence[str] = (), k: int = 1) -> tuple:
    """(ni, nj, batch, kind) joined with operand ``k`` (``op``)'s: checks point
    counts, batch broadcasting and one library / dtype / device."""
    if op.batchdims != batch:
        try:
            batch = tuple(np.broadcast_shapes(batch, op.batchdims))
        except ValueError:
            raise ValueError(
                f"batch dimensions {batch} and {op.batchdims} do not broadcast"
            ) from None
    if ni != op.ni:
        ni = same_count("i", ni, op.ni)
    if nj != op.nj:
        nj = same_count("j", nj, op.nj)
    if kind != op._kind:
        name = names[k] if k < len(names) else f"operand {k}"
        kind = same_kind(kind, op._kind, name)
    return ni, nj, batch, kind


def same_count(axis: str, a, b):
    if a is not None and b is not None and a != b:
        raise ValueError(
            f"{axis}-variables with different numbers of points: {a} and {b}; "
            f"every variable indexed by {axis} must have the same length"
        )
    return a if a is not None else b


def same_kind(a: ArrayKind | None, b: ArrayKind | None, name: str = "the other operand"):
    """The common kind of ``a`` (the formula so far) and ``b`` (the operand
    ``name``), or a ``TypeError`` naming that operand."""
    if a is None or b is None:
        return a or b
    joined = arrays.with_dask(a, b)  # NumPy (CuPy) arrays join dask arrays of their chunks
    if joined is None:
        arrays.check_same_kind(*arrays.as_chunks(a, b), "the rest of the formula", name)
    return joined or a
