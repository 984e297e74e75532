"""Tiled NumPy evaluation of a formula and a reduction.

The oracle for every compiled target and the fallback when no compiler is
available. Memory stays bounded: the (i, j) plane is cut into tiles small
enough that every intermediate of the formula on one tile fits in
``memory_limit`` bytes; each tile is reduced over j with the reduction's
``np_tile`` and merged into the running accumulator with ``np_merge``, in
increasing j, exactly as a compiled kernel folds.

Array layout of the arguments (after :mod:`..dispatch` normalised them):
an i- or j-variable is ``batch + (n, d)``, a parameter is ``batch + (d,)``,
``batch`` having the full number of batch dimensions (size-1 dims broadcast).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import ir
from ..reductions import INDEX, Reduction

DEFAULT_MEMORY_LIMIT = 64 * 2**20


# ----------------------------------------------------------------------------
# Elementwise and vector operations on arrays whose last axis is the inner dim
# ----------------------------------------------------------------------------


def _keep(f):
    return lambda a: f(a, axis=-1, keepdims=True)


def _rsqrt(a):
    # pykeops convention: rsqrt(0) = 0, which makes normalize(0) = 0.
    safe = np.where(a == 0, 1, a)
    return np.where(a == 0, 0, 1 / np.sqrt(safe))


def _sinxdivx(a):
    safe = np.where(a == 0, 1, a)
    return np.where(a == 0, 1, np.sin(safe) / safe)


def _xlogx(a):
    safe = np.where(a == 0, 1, a)
    return np.where(a == 0, 0, a * np.log(safe))


def _sign(a):
    # NaN stays NaN, +-0 stays +-0.
    return np.where(a > 0, 1, np.where(a < 0, -1, a)).astype(a.dtype)


def _step(a):
    return np.where(a < 0, 0, np.where(a >= 0, 1, a)).astype(a.dtype)


def _relu(a):
    return np.where(a < 0, 0, a).astype(a.dtype)


def _cmp(f):
    return lambda a, b: f(a, b).astype(np.result_type(a, b))


def _clamp(x, a, b):
    return np.where(x < a, a, np.where(x > b, b, x))


def _ifelse(x, a, b):
    return np.where(x >= 0, a, b)


def _mod(x, n, d):
    return x - n * np.floor((x - d) / n)


def _concat(a, b):
    shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    return np.concatenate(
        [np.broadcast_to(a, shape + a.shape[-1:]), np.broadcast_to(b, shape + b.shape[-1:])],
        axis=-1,
    )


def _matvec(A, v):
    p = v.shape[-1]
    A = A.reshape(A.shape[:-1] + (A.shape[-1] // p, p))
    return np.einsum("...np,...p->...n", A, v)


def _vecmat(v, A):
    n = v.shape[-1]
    A = A.reshape(A.shape[:-1] + (n, A.shape[-1] // n))
    return np.einsum("...n,...np->...p", v, A)


def _tensorprod(a, b):
    out = a[..., :, None] * b[..., None, :]
    return out.reshape(out.shape[:-2] + (-1,))


def _weightedsqnorm(s, x):
    D = x.shape[-1]
    if s.shape[-1] == D * D:
        S = s.reshape(s.shape[:-1] + (D, D))
        return np.einsum("...k,...kl,...l->...", x, S, x)[..., None]
    return (s * x * x).sum(axis=-1, keepdims=True)


def _onehot(x, D):
    r = np.round(x)
    return (r == np.arange(D, dtype=x.dtype)).astype(x.dtype)


def _round(x, d):
    return np.round(x, d) if d else np.round(x)


def _clampint(x, a, b):
    return np.where(x < a, a, np.where(x > b, b, x)).astype(x.dtype)


# Ops without attributes: op name -> f(*arrays)
NP_OPS = {
    "neg": np.negative,
    "abs": np.abs,
    "exp": np.exp,
    "log": np.log,
    "xlogx": _xlogx,
    "inv": lambda a: 1 / a,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "tanh": np.tanh,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "sqrt": np.sqrt,
    "rsqrt": _rsqrt,
    "square": np.square,
    "relu": _relu,
    "step": _step,
    "sign": _sign,
    "sinxdivx": _sinxdivx,
    "floor": np.floor,
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "powf": np.power,
    "atan2": np.arctan2,
    "eq": _cmp(np.equal),
    "ne": _cmp(np.not_equal),
    "lt": _cmp(np.less),
    "le": _cmp(np.less_equal),
    "gt": _cmp(np.greater),
    "ge": _cmp(np.greater_equal),
    "clamp": _clamp,
    "ifelse": _ifelse,
    "mod": _mod,
    "sum": _keep(np.sum),
    "max": _keep(np.max),
    "min": _keep(np.min),
    "sqnorm2": lambda a: (a * a).sum(axis=-1, keepdims=True),
    "norm2": lambda a: np.sqrt((a * a).sum(axis=-1, keepdims=True)),
    "normalize": lambda a: a * _rsqrt((a * a).sum(axis=-1, keepdims=True)),
    "scalprod": lambda a, b: (a * b).sum(axis=-1, keepdims=True),
    "sqdist": lambda a, b: ((a - b) ** 2).sum(axis=-1, keepdims=True),
    "weightedsqnorm": _weightedsqnorm,
    "concat": _concat,
    "matvecmult": _matvec,
    "vecmatmult": _vecmat,
    "tensorprod": _tensorprod,
}

# Ops with attributes: op name -> f(attrs, *arrays)
NP_OPS_ATTR = {
    "pow": lambda attrs, a: a ** attrs[0] if attrs[0] >= 0 else 1 / a ** (-attrs[0]),
    "round": lambda attrs, a: _round(a, attrs[0]),
    "clampint": lambda attrs, a: _clampint(a, attrs[0], attrs[1]),
    "elem": lambda attrs, a: a[..., attrs[0] : attrs[0] + 1],
    "extract": lambda attrs, a: a[..., attrs[0] : attrs[0] + attrs[1]],
    "onehot": lambda attrs, a: _onehot(a, attrs[0]),
    "argmax": lambda attrs, a: np.argmax(a, axis=-1)[..., None].astype(a.dtype),
    "argmin": lambda attrs, a: np.argmin(a, axis=-1)[..., None].astype(a.dtype),
}


def evaluate(root: ir.Node, leaves: Sequence[np.ndarray], dtype) -> np.ndarray:
    """Evaluate ``root`` with NumPy broadcasting.

    ``leaves[k]`` is the array bound to variable k, already shaped so that it
    broadcasts against the others (e.g. ``(..., ti, 1, d)`` for an i-variable
    on a tile). Each node of the DAG is computed once.
    """
    values: dict[int, np.ndarray] = {}
    with np.errstate(all="ignore"):
        for node in ir.topological_order(root):
            if node.op == "var":
                out = leaves[node.attrs[0]]
            elif node.op == "const":
                value, dim = node.attrs
                out = np.full((dim,), value, dtype=dtype)
            else:
                args = [values[id(a)] for a in node.args]
                if node.op in NP_OPS_ATTR:
                    out = NP_OPS_ATTR[node.op](node.attrs, *args)
                else:
                    out = NP_OPS[node.op](*args)
                out = np.asarray(out)
                if out.dtype != dtype:
                    out = out.astype(dtype)
            values[id(node)] = out
    return values[id(root)]


# ----------------------------------------------------------------------------
# Tiled map-reduce
# ----------------------------------------------------------------------------


def _tile_sizes(M, N, bytes_per_pair, min_cols, memory_limit):
    """Rows and columns of a tile whose temporaries fit ``memory_limit``."""
    pairs = max(1, memory_limit // max(1, bytes_per_pair))
    cols = min(N, max(min_cols, min(pairs, 8192)))
    rows = min(M, max(1, pairs // cols))
    return rows, cols


def reduce(
    formula: ir.Node,
    reduction: Reduction,
    leaves: Sequence[np.ndarray],
    cats: Sequence[int],
    batch: tuple[int, ...],
    M: int,
    N: int,
    *,
    weight: ir.Node | None = None,
    K: int = 0,
    dtype=np.float64,
    acc_dtype=None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> list[np.ndarray]:
    """Fold ``formula`` over j for every i: one array per reduction output,
    each of shape ``batch + (M, size)``.

    ``leaves[k]`` is bound to variable k, of category ``cats[k]``; ``weight``
    is the second formula of weighted reductions. Accumulation happens in
    ``acc_dtype`` (default: ``dtype``); index outputs are int64.
    """
    dtype = np.dtype(dtype)
    acc_dtype = np.dtype(acc_dtype or dtype)
    D = formula.dim
    E = weight.dim if weight is not None else 0

    roots = [formula] + ([weight] if weight is not None else [])
    nodes = {id(n): n for r in roots for n in ir.topological_order(r)}
    floats_per_pair = sum(n.dim for n in nodes.values()) + 4 * (D + E) + 2 * K * D
    nbatch = int(np.prod(batch, dtype=np.int64)) if batch else 1
    bytes_per_pair = nbatch * floats_per_pair * max(dtype.itemsize, acc_dtype.itemsize)
    rows, cols = _tile_sizes(M, N, bytes_per_pair, max(K, 1), memory_limit)

    nb = len(batch)
    outputs = []
    for i0 in range(0, M, rows):
        i1 = min(M, i0 + rows)
        acc = None
        for j0 in range(0, N, cols):
            j1 = min(N, j0 + cols)
            tile_leaves = []
            for arr, cat in zip(leaves, cats):
                if cat == ir.I:
                    tile_leaves.append(arr[..., i0:i1, None, :])
                elif cat == ir.J:
                    tile_leaves.append(arr[..., None, j0:j1, :])
                else:
                    tile_leaves.append(arr[..., None, None, :])
            shape = batch + (i1 - i0, j1 - j0)
            vals = evaluate(formula, tile_leaves, dtype)
            vals = np.broadcast_to(vals, shape + (D,))
            w = None
            if weight is not None:
                w = np.broadcast_to(evaluate(weight, tile_leaves, dtype), shape + (E,))
            with np.errstate(all="ignore"):
                part = reduction.np_tile(vals, w, j0, acc_dtype)
                acc = part if acc is None else reduction.np_merge(acc, part)
        outputs.append(reduction.np_finalize(acc))

    result = []
    for k, spec in enumerate(reduction.outputs(D, K, E)):
        out = np.concatenate([o[k] for o in outputs], axis=nb) if outputs else None
        result.append(out.astype(np.int64 if spec.kind == INDEX else dtype, copy=False))
    return result
