"""Reductions as data.

A reduction folds the values F(x_i, y_j) of one output row over j. Each
reduction is described once, here, by

* its accumulator: named fields, each a vector of values or of int64 indices
  with a neutral initial value,
* ``fold``: absorb the value of one pair (j) into an accumulator,
* ``merge``: combine two accumulators (tiles, threads, split-j blocks),
* ``finalize``: turn the accumulator into the output vectors.

Every target reads the same description: the compiled targets render the C
snippets (``string.Template`` text with ``$``-placeholders, see
:meth:`Reduction.render`), the NumPy reference engine calls the ``np_*``
methods, which implement the same semantics on a whole tile of j at once.

Placeholders in the C snippets: ``$D`` (inner dimension of the formula),
``$K`` (number of kept values for K-min), ``$E`` (weight dimension),
``$acc_t`` (accumulator type), ``$out_t`` (output type), ``$val`` (pointer to
the formula value), ``$w`` (pointer to the weight value), ``$j`` (int64 index
of the folded pair), each field name (this accumulator), the field name with
``_b`` (the other accumulator in ``merge``) and ``$out0``, ``$out1`` (output
pointers).

NaN semantics follow NumPy: ``min``/``max``/``argmin``/``argmax`` propagate
NaN (the first NaN wins, as in ``np.min`` / ``np.argmin``); ``Kmin`` and
``argKmin`` order NaN after every number, as ``np.sort`` does; ``sum`` and
``logsumexp`` propagate NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

VALUE, INDEX = "value", "index"
# An output kind of partial results (reductions/partial.py): a value stored in
# the accumulator type (float64 under acc_dtype="float64"), not the input's.
ACCUMULATOR = "accumulator"


@dataclass(frozen=True)
class Field:
    """One accumulator field: ``size`` entries of kind VALUE or INDEX."""

    name: str
    size: int
    kind: str
    init: float | int


@dataclass(frozen=True)
class Output:
    """One output vector of a reduction, per output row."""

    size: int
    kind: str


class Reduction:
    """Base class. Subclasses set the C snippets and the NumPy methods."""

    name: str = ""
    uses_weight = False  # needs a second formula (weights), e.g. logsumexp(weight=)
    # The accumulator is the plain sum of the values (one VALUE field of D
    # entries): the CPU template then folds inside the SIMD loop itself.
    plain_sum = False
    # The accumulator fields that are sums: each gets a compensation term
    # ``<name>_c`` (``$<name>_c`` in the snippets, the value of the sum being
    # ``KS_TOTAL(s, c)``), and pykeops' ``sum_scheme`` applies (see
    # ``codegen/summation.py``: additions go through KS_FOLD_ADD / KS_MERGE_ADD).
    sums: tuple[str, ...] = ()
    uses_k = False  # takes the integer K (Kmin family)
    differentiable_outputs = True
    c_preamble = ""
    c_init = ""
    c_fold = ""
    c_merge = ""
    c_finalize = ""
    # Optional: reduce a whole block of values ``$buf[0 .. $n)`` (row-major,
    # D per pair) into the ``_b`` fields with SIMD loops; the target then
    # merges it with ``c_merge``. Without it, targets ``c_fold`` pair by pair.
    c_block = ""

    # --- layout --------------------------------------------------------------
    def fields(self, D: int, K: int = 0, E: int = 0) -> list[Field]:
        raise NotImplementedError

    def outputs(self, D: int, K: int = 0, E: int = 0) -> list[Output]:
        raise NotImplementedError

    def check(self, D: int, K: int = 0, E: int = 0) -> None:
        """Raise ValueError if the reduction cannot apply to these dims."""

    # --- C rendering -----------------------------------------------------------
    def render(self, snippet: str, **names: str) -> str:
        """Fill the ``$``-placeholders of one of the ``c_*`` snippets."""
        return Template(snippet).substitute(**names)

    # --- NumPy semantics on a tile ------------------------------------------
    def np_tile(self, vals, w, j0: int, acc_dtype) -> dict:
        """Accumulator of one tile. ``vals``: (..., ti, tj, D), reduced on
        axis -2; ``w``: (..., ti, tj, E) or None; ``j0``: index of the first
        column of the tile."""
        raise NotImplementedError

    def np_merge(self, acc: dict, part: dict) -> dict:
        """Merge ``part`` (later columns) into ``acc`` (earlier columns)."""
        raise NotImplementedError

    def np_finalize(self, acc: dict) -> list:
        """Output arrays, each (..., n, size) flat, in :meth:`outputs` order."""
        raise NotImplementedError

    # --- user-facing shape --------------------------------------------------
    def present(self, outs: list, D: int, K: int = 0):
        """Arrange flat outputs as the user sees them (pykeops' shapes)."""
        return outs[0] if len(outs) == 1 else tuple(outs)

    def __repr__(self) -> str:
        return f"<reduction {self.name}>"


def preamble(name: str) -> str:
    """The C preamble ``name`` (a ``.h`` file beside this module): macros the
    snippets of a reduction use, pasted into every source that renders them."""
    return (Path(__file__).parent / name).read_text()


def copy_out(values: bool, indices: bool, size: str) -> str:
    """Finalize of the selection reductions: copy ``vals`` and/or ``idx``
    (``size`` entries) to the outputs, values first."""
    lines, n = [], 0
    if values:
        lines.append(f"for (int t = 0; t < {size}; t++) $out{n}[t] = ($out_t)$vals[t];")
        n += 1
    if indices:
        lines.append(f"for (int t = 0; t < {size}; t++) $out{n}[t] = $idx[t];")
    return "\n".join(lines)
