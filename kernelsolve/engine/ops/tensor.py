"""Tensor ops on the inner dimension: pykeops' ``TensorDot`` (and ``Kron``,
which is a tensor dot without contraction whose axes are interleaved).

An inner dimension of ``prod(dimfa)`` coordinates is read as a row-major
tensor of shape ``dimfa``. ``tensordot(a, b, dimfa, dimfb, contfa, contfb,
perm)`` is ``np.tensordot(A, B, axes=(contfa, contfb))`` (axes ``contfa[k]``
of A and ``contfb[k]`` of B summed together; the kept axes of A, then those
of B, in order), with pykeops' optional permutation: kept axis ``k`` moves
to position ``perm[k]`` (``np.transpose(T, np.argsort(perm))``), flattened
row-major. The op's attributes are these five tuples of ints.

Its rules: C (each output coordinate a sum of products, unrolled), NumPy
(``einsum``), interval (the same sums of products in interval arithmetic:
tight when no coordinate appears twice in one sum), VJP and JVP (it is
bilinear: each derivative is a tensor dot of the same shape, built by
:func:`tensordot`). The IR builders
:func:`tensordot` and :func:`kron` check their arguments and are what the
formula-string parser maps ``TensorDot(...)`` and ``Kron(...)`` to.
"""

from __future__ import annotations

import itertools
import math
import string

import numpy as np

from ..ir import Node, make
from . import interval as iv
from .base import Op, declare

__all__ = ["kron", "tensordot"]


def _attrs(dimfa, dimfb, contfa, contfb, perm) -> tuple:
    """The op's attributes as tuples of Python ints (a canonical key)."""

    def ints(seq, name):
        seq = (seq,) if isinstance(seq, (int, np.integer)) else tuple(seq)
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in seq):
            raise TypeError(f"tensordot: {name} must be a tuple of ints, got {seq!r}")
        return tuple(int(v) for v in seq)

    dimfa, dimfb = ints(dimfa, "dimfa"), ints(dimfb, "dimfb")
    contfa, contfb = ints(contfa, "contfa"), ints(contfb, "contfb")
    kept = len(dimfa) + len(dimfb) - 2 * len(contfa)
    perm = tuple(range(kept)) if perm is None else ints(perm, "the permutation")
    return dimfa, dimfb, contfa, contfb, perm


def _dim(op: str, dims: tuple[int, ...], attrs: tuple) -> int:
    dimfa, dimfb, contfa, contfb, perm = attrs
    da, db = dims
    if any(d < 1 for d in dimfa + dimfb):
        raise ValueError(f"{op}: dimensions must be positive, got {dimfa} and {dimfb}")
    if math.prod(dimfa) != da or math.prod(dimfb) != db:
        raise ValueError(
            f"{op}: dimfa={dimfa} and dimfb={dimfb} need inner dimensions "
            f"{math.prod(dimfa)} and {math.prod(dimfb)}; the operands have {da} and {db}"
        )
    for cont, shape, name in ((contfa, dimfa, "contfa"), (contfb, dimfb, "contfb")):
        if len(set(cont)) != len(cont) or not all(0 <= k < len(shape) for k in cont):
            raise ValueError(f"{op}: {name}={cont} must list distinct axes in 0..{len(shape) - 1}")
    if len(contfa) != len(contfb) or [dimfa[k] for k in contfa] != [dimfb[k] for k in contfb]:
        raise ValueError(
            f"{op}: contracted axes must have equal sizes: contfa={contfa} of {dimfa}, "
            f"contfb={contfb} of {dimfb}"
        )
    kept = len(dimfa) + len(dimfb) - 2 * len(contfa)
    if sorted(perm) != list(range(kept)):
        raise ValueError(f"{op}: the permutation {perm} must reorder the {kept} kept axes")
    return (da * db) // math.prod(dimfa[k] for k in contfa) ** 2


def _kept(shape, cont):
    return [k for k in range(len(shape)) if k not in cont]


def _out_axes(attrs):
    """The kept axes as (operand 0 or 1, axis) in output order."""
    dimfa, dimfb, contfa, contfb, perm = attrs
    kept = [(0, k) for k in _kept(dimfa, contfa)] + [(1, k) for k in _kept(dimfb, contfb)]
    order = [None] * len(kept)
    for k, p in enumerate(perm):
        order[p] = kept[k]
    return order


def _terms(attrs) -> list[list[tuple[int, int]]]:
    """For each output coordinate, the (index in a, index in b) of its terms."""
    dimfa, dimfb, contfa, contfb, _ = attrs
    shapes, out_axes = (dimfa, dimfb), _out_axes(attrs)
    cont_shape = [dimfa[k] for k in contfa]
    coords = []
    for out_index in itertools.product(*[range(shapes[s][k]) for s, k in out_axes]):
        idx = ([0] * len(dimfa), [0] * len(dimfb))
        for (s, k), v in zip(out_axes, out_index):
            idx[s][k] = v
        terms = []
        for c_index in itertools.product(*[range(n) for n in cont_shape]):
            for ka, kb, v in zip(contfa, contfb, c_index):
                idx[0][ka], idx[1][kb] = v, v
            ia = int(np.ravel_multi_index(idx[0], dimfa)) if dimfa else 0
            ib = int(np.ravel_multi_index(idx[1], dimfb)) if dimfb else 0
            terms.append((ia, ib))
        coords.append(terms)
    return coords


def _c(e, node, a, b):
    return e.define([e.sum([f"{a[ia]} * {b[ib]}" for ia, ib in t]) for t in _terms(node.attrs)])


def _interval(a, b, *attrs):
    """Each output coordinate's sum of products, in interval arithmetic."""
    index = np.array(_terms(attrs), dtype=np.int64)  # (n_out, n_terms, 2)
    ia, ib = index[..., 0], index[..., 1]
    lo, hi = iv.total(*iv.mul((a[0][..., ia], a[1][..., ia]), (b[0][..., ib], b[1][..., ib])))
    return lo[..., 0], hi[..., 0]


def _numpy(a, b, dimfa, dimfb, contfa, contfb, perm):
    letters = iter(string.ascii_letters)
    la, lb = [next(letters) for _ in dimfa], [next(letters) for _ in dimfb]
    for ka, kb in zip(contfa, contfb):
        lb[kb] = la[ka]
    out = "".join({0: la, 1: lb}[s][k] for s, k in _out_axes((dimfa, dimfb, contfa, contfb, perm)))
    A = a.reshape(a.shape[:-1] + dimfa)
    B = b.reshape(b.shape[:-1] + dimfb)
    T = np.einsum(f"...{''.join(la)},...{''.join(lb)}->...{out}", A, B)
    return T.reshape(T.shape[: T.ndim - len(out)] + (-1,))


def _cotangent_dot(attrs, g, other, side):
    """The VJP of operand ``side`` (0: a, 1: b): the cotangent ``g`` (shaped
    as the output) contracted with the other operand over the other's kept
    axes; the result's axes put back in the operand's own order."""
    dimfa, dimfb, contfa, contfb, _ = attrs
    shapes, conts = (dimfa, dimfb), (contfa, contfb)
    out_axes = _out_axes(attrs)
    g_shape = tuple(shapes[s][k] for s, k in out_axes)
    o = 1 - side
    other_kept = _kept(shapes[o], conts[o])
    # g's axes that hold the other operand's kept axes, paired with them
    cont_g = [out_axes.index((o, k)) for k in other_kept]
    # result axes: g's remaining axes (this operand's kept axes, in output
    # order), then the other's remaining axes (its contracted ones, ascending)
    source = [k for s, k in out_axes if s == side]
    pair = dict(zip(conts[o], conts[side]))
    source += [pair[k] for k in sorted(conts[o])]
    return tensordot(g, other, g_shape, shapes[o], cont_g, other_kept, source)


def _vjp(node, g, a, b):
    return _cotangent_dot(node.attrs, g, b, 0), _cotangent_dot(node.attrs, g, a, 1)


def _jvp(node, tangents, a, b):
    ta, tb = tangents
    terms = []
    if ta is not None:
        terms.append(make("tensordot", ta, b, attrs=node.attrs))
    if tb is not None:
        terms.append(make("tensordot", a, tb, attrs=node.attrs))
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else make("add", *terms)


declare(
    Op(
        "tensordot",
        2,
        _dim,
        _c,
        _numpy,
        _vjp,
        "keops_tensordot",
        nattrs=5,
        doc=(
            "Tensor dot product of the inner dimensions read as row-major tensors of "
            "shapes dimfa and dimfb, summed over the axes contfa / contfb (pykeops' "
            "TensorDot; an optional permutation moves kept axis k to position perm[k])."
        ),
        jvp=_jvp,
        interval=_interval,
    )
)


def tensordot(a: Node, b: Node, dimfa, dimfb, contfa, contfb, perm=None) -> Node:
    """The IR node of pykeops' ``TensorDot(a, b, dimfa, dimfb, contfa, contfb[, perm])``.

    Example
    -------
    >>> from kernelsolve.engine import ir
    >>> A, v = ir.var(0, ir.I, 28), ir.var(1, ir.J, 7)
    >>> tensordot(A, v, (4, 7), (7,), (1,), (0,)).dim  # a matrix-vector product
    4
    """
    return make("tensordot", a, b, attrs=_attrs(dimfa, dimfb, contfa, contfb, perm))


def kron(a: Node, b: Node, dimfa, dimfb) -> Node:
    """The IR node of pykeops' ``Kron(a, b, dimfa, dimfb)``: the Kronecker
    product of ``a`` (shape ``dimfa``) and ``b`` (shape ``dimfb``, as many
    axes), of shape ``(dimfa[0] * dimfb[0], ...)``, flattened: a tensor dot
    without contraction whose output interleaves the axes of a and b.

    Example
    -------
    >>> from kernelsolve.engine import ir
    >>> kron(ir.var(0, ir.I, 6), ir.var(1, ir.J, 4), (3, 2), (2, 2)).dim
    24
    """
    dimfa, dimfb, *_ = _attrs(dimfa, dimfb, (), (), ())
    if len(dimfa) != len(dimfb):
        raise ValueError(f"kron: dimfa={dimfa} and dimfb={dimfb} must have as many axes")
    n = len(dimfa)
    perm = [2 * k for k in range(n)] + [2 * k + 1 for k in range(n)]
    return make("tensordot", a, b, attrs=(dimfa, dimfb, (), (), tuple(perm)))
