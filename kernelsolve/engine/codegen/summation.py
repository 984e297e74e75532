"""How the compiled targets add up sums: pykeops' ``sum_scheme`` option.

Every sum of a kernel (the sum reduction's accumulator, the running sums of
exponentials of the log-sum-exp family) is held as a pair ``(s, c)``: ``s``
the running sum and ``c`` a compensation term, the rounding error that a
compensated addition recovered; the value of the sum is ``s + c``
(``KS_TOTAL``). A reduction names these fields in ``Reduction.sums``;
:class:`~.spec.KernelSpec` declares the ``<field>_c`` companions and zeroes
them, and the reductions' C snippets add with two macros:

* ``KS_FOLD_ADD(T, s, c, x)``: one value into a running sum (the SIMD lanes
  of a CPU block, a GPU thread's fold);
* ``KS_MERGE_ADD(T, s, c, x)``: a partial sum (a block's, a tile's, a split's)
  into a row's sum.

A scheme is the choice of these two additions (plain or compensated) and,
on the GPU, whether a tile's values are first summed apart (:class:`Scheme`):

* ``"block_sum"`` (the default, as in pykeops): the values of a block (512
  columns on the CPU, one shared-memory tile on the GPU) are summed apart,
  and block sums are merged into the row with a compensated addition. The
  error of a float32 sum of 10^6 terms drops from about 1.5e-6 to the
  rounding of the result (about 6e-8) at no measurable cost
  (``benchmarks/bench_sum_scheme.py``).
* ``"direct_sum"``: plain additions everywhere (the GPU folds every value
  into the row's sum; the CPU's SIMD lanes are block sums regardless).
* ``"kahan_scheme"``: every value is added with compensation too (on the
  CPU in each SIMD lane; the compiler still adds the lanes of a block
  plainly, a few roundings per block that average out over blocks). It
  costs 1.5x (Gaussian) to 5x (a product) on the CPU and gains nothing
  measurable there over ``block_sum``.

The reference engine (NumPy, pairwise sums of tiles) ignores the scheme.

The compensated addition is Knuth's TwoSum, branch-free: ``t = s + x`` and
the exact error ``e = (s - (t - z)) + (x - z)`` with ``z = t - s``. No flag of
the targets lets the compiler reassociate it (no ``-ffast-math``; contraction
into FMA only makes ``e`` more exact). The error is kept only when it is
finite: once ``t`` is infinite, ``e`` would be NaN (``inf - inf``), and an
infinite sum must stay infinite, a NaN sum NaN.
"""

from __future__ import annotations

from typing import NamedTuple


class Scheme(NamedTuple):
    """One sum scheme: which additions are compensated, and whether the GPU
    sums a tile apart before merging it into the row."""

    name: str
    fold_compensated: bool
    merge_compensated: bool
    tile_sums: bool


SCHEMES = {
    s.name: s
    for s in (
        Scheme("direct_sum", False, False, False),
        Scheme("block_sum", False, True, True),
        Scheme("kahan_scheme", True, True, False),
    )
}
#: The scheme of ``sum_scheme=None`` (or pykeops' ``"auto"``).
DEFAULT_SCHEME = "block_sum"

_PLAIN = "#define {name}(T, s, c, x) ((s) += (T)(x))"
_COMPENSATED = (
    "#define {name}(T, s, c, x) do {{ \\\n"
    "  const T ks_x_ = (T)(x), ks_t_ = (s) + ks_x_, ks_z_ = ks_t_ - (s); \\\n"
    "  const T ks_e_ = ((s) - (ks_t_ - ks_z_)) + (ks_x_ - ks_z_); \\\n"
    "  (c) += ks_e_ - ks_e_ == 0 ? ks_e_ : (T)0; \\\n"
    "  (s) = ks_t_; \\\n"
    "}} while (0)"
)


def scheme(name: str | None) -> Scheme:
    """The :class:`Scheme` called ``name`` (None and ``"auto"``: the default).

    >>> scheme(None).name, scheme("kahan_scheme").fold_compensated
    ('block_sum', True)
    """
    key = DEFAULT_SCHEME if name in (None, "auto") else name
    try:
        return SCHEMES[key]
    except KeyError:
        raise ValueError(
            f"sum_scheme={name!r}: expected one of 'auto', {', '.join(map(repr, SCHEMES))}"
        ) from None


def preamble(name: str | None) -> str:
    """The C macros of scheme ``name``, pasted into every kernel source."""
    s = scheme(name)
    lines = [f"/* sum scheme: {s.name} (codegen/summation.py) */"]
    for macro, compensated in (
        ("KS_FOLD_ADD", s.fold_compensated),
        ("KS_MERGE_ADD", s.merge_compensated),
    ):
        lines.append((_COMPENSATED if compensated else _PLAIN).format(name=macro))
    lines.append("#define KS_TOTAL(s, c) ((s) + (c))")
    return "\n".join(lines) + "\n"
