"""The kernel signature shared by every target: :class:`KernelSpec`.

A spec is everything that determines the source of one kernel: the formula
(and weight formula), the reduction, K, the dtypes and each argument's
category and inner dimension. Sizes and batch shapes are run-time arguments,
so one compiled kernel serves every problem size.

Variables reach the kernel through a table of pointers ``args`` and a table
of int64 batch offsets ``boff[var * nbatch + b]``; i-variables are laid out
``(batch, M, D)``, j-variables ``(batch, D, NS)`` on the CPU (structure of
arrays, see :mod:`.cpu`) and ``(batch, N, D)`` on the GPU, parameters
``(batch, D)``. All indexing is int64.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ir
from ..reductions import ACCUMULATOR, INDEX, VALUE, Field, Reduction
from .dialect import CUDA
from .summation import Scheme, scheme

# Compute type of each dtype: float16 / bfloat16 are computed and accumulated
# in float (the CUDA target loads and converts them; the CPU target is handed
# float32 copies by dispatch and never sees them).
C_TYPES = {"float32": "float", "float64": "double", "float16": "float", "bfloat16": "float"}
# dtype -> (C storage type, conversion to the compute type), for the dtypes
# stored narrower than they are computed: the GPU dialect's table
_HALF = {dtype: (storage, load) for dtype, storage, load in CUDA.half_types}


@dataclass(frozen=True)
class KernelSpec:
    """Everything that determines the source of one kernel."""

    formula: ir.Node
    weight: ir.Node | None
    reduction: Reduction
    K: int
    dtype: str  # "float32" | "float64"; CUDA only: "float16" | "bfloat16" (stored)
    acc_dtype: str
    var_cats: tuple[int, ...]  # category of each argument
    var_dims: tuple[int, ...]
    # block-sparse: the kernel folds the kept j-ranges of groups of rows
    # (engine/ranges) instead of every j
    ranges: bool = False
    sum_scheme: str | None = None  # a summation.SCHEMES name; None: the default

    def __post_init__(self):
        object.__setattr__(self, "sum_scheme", scheme(self.sum_scheme).name)
        # Specs key the kernel memos on every call: hash the fields once.
        fields = (self.formula, self.weight, self.reduction, self.K, self.dtype)
        fields += (self.acc_dtype, self.var_cats, self.var_dims, self.ranges, self.sum_scheme)
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash

    @property
    def T(self) -> str:
        """C type of the arithmetic (float for float16 / bfloat16)."""
        return C_TYPES[self.dtype]

    @property
    def S(self) -> str:
        """C type of the arrays in memory (arguments and value outputs)."""
        half = _HALF.get(self.dtype)
        return half[0] if half else self.T

    def load(self, expr: str) -> str:
        """``expr`` (an element of an argument) as the compute type."""
        half = _HALF.get(self.dtype)
        return f"{half[1]}({expr})" if half else expr

    @property
    def ACC(self) -> str:
        return C_TYPES[self.acc_dtype]

    @property
    def D(self) -> int:
        return self.formula.dim

    @property
    def j_dims(self) -> int:
        """Values of j-variables per column j (what a j-tile stores)."""
        return sum(d for c, d in zip(self.var_cats, self.var_dims) if c == ir.J)

    @property
    def itemsize(self) -> int:
        """Bytes of one value of the compute type (what a j-tile holds)."""
        return 8 if self.T == "double" else 4

    @property
    def E(self) -> int:
        return self.weight.dim if self.weight is not None else 0

    @property
    def roots(self) -> list[ir.Node]:
        """The formulas every pair evaluates: the formula, then the weight."""
        return [self.formula] + ([self.weight] if self.weight is not None else [])

    @property
    def scheme(self) -> Scheme:
        """How the kernel adds up its sums (:mod:`.summation`)."""
        return scheme(self.sum_scheme)

    def fields(self):
        """The reduction's accumulator fields, then :meth:`compensations`."""
        return self.reduction.fields(self.D, self.K, self.E) + self.compensations()

    def compensations(self) -> list[Field]:
        """The compensation term ``<name>_c`` of each sum of the reduction
        (``Reduction.sums``; see :mod:`.summation`)."""
        sizes = {f.name: f.size for f in self.reduction.fields(self.D, self.K, self.E)}
        return [Field(f"{n}_c", sizes[n], VALUE, 0) for n in self.reduction.sums]

    def outputs(self):
        return self.reduction.outputs(self.D, self.K, self.E)

    def names(self, row: str | None = None, into: str = "") -> dict[str, str]:
        """``$``-placeholder values for the reduction's C snippets. With
        ``row``, the accumulator fields are rows ``<field>_rows[row]`` of
        per-row arrays (see :meth:`declare_acc`); with ``into="_b"``, they
        are the second accumulator (a tile's sum on the GPU)."""
        names = {
            "D": str(self.D),
            "K": str(self.K),
            "E": str(self.E),
            "acc_t": self.ACC,
            "out_t": self.S,
        }
        for f in self.fields():
            names[f.name] = f"{f.name}_rows[{row}]" if row else f.name + into
            names[f.name + "_b"] = f.name + "_b"
        return names

    def declare_acc(self, indent: str = "", suffix: str = "", rows: int = 0) -> list[str]:
        """Declarations of the accumulator fields (``suffix="_b"``: the
        second accumulator of ``c_merge``; ``rows``: one per row,
        ``<field>_rows[rows][size]``)."""
        lines = []
        for f in self.fields():
            ctype = "int64_t" if f.kind == INDEX else self.ACC
            if rows:
                lines.append(f"{indent}{ctype} {f.name}_rows[{rows}][{f.size}];")
            else:
                lines.append(f"{indent}{ctype} {f.name}{suffix}[{f.size}];")
        return lines

    def out_decls(self, row: str) -> list[str]:
        """Typed output pointers at row ``row`` (an int64 C expression)."""
        lines = []
        for k, o in enumerate(self.outputs()):
            ctype = "int64_t" if o.kind == INDEX else self.ACC if o.kind == ACCUMULATOR else self.S
            lines.append(f"{ctype}* out{k} = (({ctype}*)outs[{k}]) + ({row}) * {o.size};")
        return lines

    def snippet(self, which: str, row: str | None = None, into: str = "", **extra: str) -> str:
        """The reduction's ``c_<which>`` snippet with its placeholders filled
        (``init`` also zeroes the compensation terms of the sums)."""
        red = self.reduction
        names = self.names(row, into)
        names.update(extra)
        text = red.render(getattr(red, f"c_{which}"), **names)
        if which == "init":
            for f in self.compensations():
                text += f"\nfor (int k = 0; k < {f.size}; k++) {names[f.name]}[k] = 0;"
        return text
