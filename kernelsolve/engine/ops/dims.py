"""Inner-dimension rules of the ops: ``rule(op_name, arg_dims, attrs) -> dim``.

Each raises ``ValueError`` naming the op and what was expected when the
arguments do not fit. Elementwise ops broadcast dimension-1 arguments.
"""

from __future__ import annotations


def elementwise(op: str, dims: tuple[int, ...], attrs: tuple) -> int:
    """Equal dimensions, or dimension 1 (broadcast)."""
    out = max(dims)
    for d in dims:
        if d != 1 and d != out:
            raise ValueError(
                f"{op}: inner dimensions {dims} do not broadcast; "
                "expected equal dimensions or dimension 1"
            )
    return out


def scalar(op: str, dims: tuple[int, ...], attrs: tuple) -> int:
    """A reduction of the inner dimension: one value."""
    return 1


def same(op: str, dims: tuple[int, ...], attrs: tuple) -> int:
    """Two vectors of one dimension, one value (scalar product, distance)."""
    if len(set(dims)) != 1:
        raise ValueError(f"{op}: both arguments must have the same inner dimension, got {dims}")
    return 1


def keep(op: str, dims: tuple[int, ...], attrs: tuple) -> int:
    """The dimension of the (only) argument."""
    return dims[0]


def elem(op: str, dims: tuple[int, ...], attrs: tuple) -> int:
    (m,) = attrs
    if not 0 <= m < dims[0]:
        raise ValueError(f"elem: index {m} out of range for inner dimension {dims[0]}")
    return 1


def extract(op: str, dims: tuple[int, ...], attrs: tuple) -> int:
    start, d = attrs
    if start < 0 or d < 1 or start + d > dims[0]:
        raise ValueError(
            f"extract: slice [{start}:{start + d}] out of range for inner dimension {dims[0]}"
        )
    return d


def concat(op: str, dims: tuple[int, ...], attrs: tuple) -> int:
    return dims[0] + dims[1]


def matvec(op: str, dims: tuple[int, ...], attrs: tuple) -> int:
    a, v = dims  # a: n*p matrix (row-major), v: p
    if a % v:
        raise ValueError(
            f"matvecmult: matrix dimension {a} is not a multiple of vector dimension {v}"
        )
    return a // v


def vecmat(op: str, dims: tuple[int, ...], attrs: tuple) -> int:
    v, a = dims  # v: n, a: n*p matrix (row-major)
    if a % v:
        raise ValueError(
            f"vecmatmult: matrix dimension {a} is not a multiple of vector dimension {v}"
        )
    return a // v


def tensorprod(op: str, dims: tuple[int, ...], attrs: tuple) -> int:
    return dims[0] * dims[1]


def weightedsqnorm(op: str, dims: tuple[int, ...], attrs: tuple) -> int:
    s, x = dims
    if s not in (1, x, x * x):
        raise ValueError(
            f"weightedsqnorm: weights of dimension {s} do not fit a vector of "
            f"dimension {x}; expected 1 (isotropic), {x} (diagonal) or "
            f"{x * x} (full)"
        )
    return 1


def onehot(op: str, dims: tuple[int, ...], attrs: tuple) -> int:
    if dims[0] != 1:
        raise ValueError("one_hot: expected a scalar formula (inner dimension 1)")
    if not isinstance(attrs[0], int) or attrs[0] < 1:
        raise ValueError(f"one_hot: dimension must be a positive int, got {attrs[0]!r}")
    return attrs[0]
