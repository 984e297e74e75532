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
from string import Template

import numpy as np

VALUE, INDEX = "value", "index"


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


# ----------------------------------------------------------------------------
# Sum
# ----------------------------------------------------------------------------


class SumReduction(Reduction):
    name = "sum"
    c_init = "for (int k = 0; k < $D; k++) $acc[k] = 0;"
    c_fold = "for (int k = 0; k < $D; k++) $acc[k] += $val[k];"
    c_merge = "for (int k = 0; k < $D; k++) $acc[k] += $acc_b[k];"
    c_finalize = "for (int k = 0; k < $D; k++) $out0[k] = ($out_t)$acc[k];"

    def fields(self, D, K=0, E=0):
        return [Field("acc", D, VALUE, 0)]

    def outputs(self, D, K=0, E=0):
        return [Output(D, VALUE)]

    def np_tile(self, vals, w, j0, acc_dtype):
        return {"acc": vals.sum(axis=-2, dtype=acc_dtype)}

    def np_merge(self, acc, part):
        acc["acc"] += part["acc"]
        return acc

    def np_finalize(self, acc):
        return [acc["acc"]]


def _copy_out(values: bool, indices: bool, size: str) -> str:
    """Finalize of the selection reductions: copy ``vals`` and/or ``idx``
    (``size`` entries) to the outputs, values first."""
    lines, n = [], 0
    if values:
        lines.append(f"for (int t = 0; t < {size}; t++) $out{n}[t] = ($out_t)$vals[t];")
        n += 1
    if indices:
        lines.append(f"for (int t = 0; t < {size}; t++) $out{n}[t] = $idx[t];")
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# Min / Max and their arg-versions
# ----------------------------------------------------------------------------

_MINMAX_PREAMBLE = """
/* b ranks before a (b wins) for min; NaN beats numbers, ties keep the
   smaller index, an index < 0 marks an empty slot. */
#define KS_MIN_BEFORE(vb, ib, va, ia) ((ib) >= 0 && ((ia) < 0 || (vb) < (va) || \
    ((vb) != (vb) && (va) == (va)) || \
    (((vb) == (va) || ((vb) != (vb) && (va) != (va))) && (ib) < (ia))))
#define KS_MAX_BEFORE(vb, ib, va, ia) ((ib) >= 0 && ((ia) < 0 || (vb) > (va) || \
    ((vb) != (vb) && (va) == (va)) || \
    (((vb) == (va) || ((vb) != (vb) && (va) != (va))) && (ib) < (ia))))
"""


class MinMaxReduction(Reduction):
    """min, max, argmin, argmax, min_argmin, max_argmax.

    The accumulator always carries the index: it costs one int64 per entry
    and lets every variant share one fold and one merge.
    """

    c_preamble = _MINMAX_PREAMBLE
    c_init = "for (int k = 0; k < $D; k++) { $vals[k] = $init; $idx[k] = -1; }"
    c_fold = (
        "for (int k = 0; k < $D; k++) {"
        " $acc_t v = ($acc_t)$val[k];"
        " if ($BEFORE(v, $j, $vals[k], $idx[k])) { $vals[k] = v; $idx[k] = $j; } }"
    )
    c_merge = (
        "for (int k = 0; k < $D; k++) {"
        " if ($BEFORE($vals_b[k], $idx_b[k], $vals[k], $idx[k])) {"
        " $vals[k] = $vals_b[k]; $idx[k] = $idx_b[k]; } }"
    )

    def __init__(self, kind: str, values: bool, indices: bool):
        assert kind in ("min", "max")
        self.kind = kind
        self.values = values
        self.indices = indices
        prefix = "arg" if not values else ""
        self.name = f"{kind}_arg{kind}" if values and indices else prefix + kind
        self.differentiable_outputs = values
        init = "INFINITY" if kind == "min" else "-INFINITY"
        before = "KS_MIN_BEFORE" if kind == "min" else "KS_MAX_BEFORE"
        self.c_init = self.c_init.replace("$init", init)
        self.c_fold = self.c_fold.replace("$BEFORE", before)
        self.c_merge = self.c_merge.replace("$BEFORE", before)
        self.c_finalize = _copy_out(values, indices, "$D")

    def fields(self, D, K=0, E=0):
        init = np.inf if self.kind == "min" else -np.inf
        return [Field("vals", D, VALUE, init), Field("idx", D, INDEX, -1)]

    def outputs(self, D, K=0, E=0):
        outs = []
        if self.values:
            outs.append(Output(D, VALUE))
        if self.indices:
            outs.append(Output(D, INDEX))
        return outs

    def np_tile(self, vals, w, j0, acc_dtype):
        # np.argmin / np.argmax return the first NaN when there is one.
        pick = np.argmin if self.kind == "min" else np.argmax
        arg = pick(vals, axis=-2)[..., None, :]
        best = np.take_along_axis(vals, arg, axis=-2)[..., 0, :]
        return {"vals": best.astype(acc_dtype), "idx": arg[..., 0, :].astype(np.int64) + j0}

    def np_merge(self, acc, part):
        va, vb = acc["vals"], part["vals"]
        better = vb < va if self.kind == "min" else vb > va
        take = better | (np.isnan(vb) & ~np.isnan(va))
        acc["vals"] = np.where(take, vb, va)
        acc["idx"] = np.where(take, part["idx"], acc["idx"])
        return acc

    def np_finalize(self, acc):
        outs = []
        if self.values:
            outs.append(acc["vals"])
        if self.indices:
            outs.append(acc["idx"])
        return outs


# ----------------------------------------------------------------------------
# K smallest values and their indices
# ----------------------------------------------------------------------------

_KMIN_PREAMBLE = """
/* Does (v, jv) rank before (u, ju) in a K-min list? NaN ranks after every
   number (as np.sort), ties go to the smaller index, ju < 0 is an empty slot
   (ranks after everything), jv < 0 never ranks before anything. */
#define KS_KMIN_BEFORE(v, jv, u, ju) ((jv) >= 0 && ((ju) < 0 || (v) < (u) || \
    ((u) != (u) && (v) == (v)) || \
    (((v) == (u) || ((v) != (v) && (u) != (u))) && (jv) < (ju))))
"""


_KMIN_BOUND: dict = {}


class KMinReduction(Reduction):
    """Kmin, argKmin, Kmin_argKmin: the K smallest values of each coordinate.

    Layout: slot ``k`` of coordinate ``d`` is entry ``k * D + d`` (sorted
    ascending in k), so the output reshapes to (..., K, D) for free.
    """

    uses_k = True
    c_preamble = _KMIN_PREAMBLE
    c_init = "for (int t = 0; t < $K * $D; t++) { $vals[t] = INFINITY; $idx[t] = -1; }"
    c_fold = """for (int d = 0; d < $D; d++) {
  $acc_t v = ($acc_t)$val[d];
  int p = $K - 1;
  const $acc_t worst = $vals[p * $D + d];
  /* Fast reject, the common case once the list is full: a later column
     with v >= worst (or NaN) never ranks before a non-NaN worst. */
  if ($idx[p * $D + d] >= 0 && worst == worst && !(v < worst)) continue;
  if (!KS_KMIN_BEFORE(v, $j, worst, $idx[p * $D + d])) continue;
  while (p > 0 && KS_KMIN_BEFORE(v, $j, $vals[(p - 1) * $D + d], $idx[(p - 1) * $D + d])) {
    $vals[p * $D + d] = $vals[(p - 1) * $D + d];
    $idx[p * $D + d] = $idx[(p - 1) * $D + d];
    p--;
  }
  $vals[p * $D + d] = v;
  $idx[p * $D + d] = $j;
}"""
    c_merge = """for (int d = 0; d < $D; d++) {
  $acc_t tv[$K];
  long long ti[$K];
  int a = 0, b = 0;
  for (int k = 0; k < $K; k++) {
    if (KS_KMIN_BEFORE($vals_b[b * $D + d], $idx_b[b * $D + d],
                       $vals[a * $D + d], $idx[a * $D + d])) {
      tv[k] = $vals_b[b * $D + d]; ti[k] = $idx_b[b * $D + d]; b++;
    } else {
      tv[k] = $vals[a * $D + d]; ti[k] = $idx[a * $D + d]; a++;
    }
  }
  for (int k = 0; k < $K; k++) { $vals[k * $D + d] = tv[k]; $idx[k * $D + d] = ti[k]; }
}"""

    def __init__(self, values: bool, indices: bool):
        self.values = values
        self.indices = indices
        self.name = {
            (True, False): "kmin",
            (False, True): "argkmin",
            (True, True): "kmin_argkmin",
        }[(values, indices)]
        self.differentiable_outputs = values
        self.c_finalize = _copy_out(values, indices, "$K * $D")

    def check(self, D, K=0, E=0):
        if not isinstance(K, (int, np.integer)) or isinstance(K, bool) or K < 1:
            raise ValueError(f"{self.name}: K must be a positive integer, got {K!r}")

    def fields(self, D, K=0, E=0):
        return [Field("vals", K * D, VALUE, np.inf), Field("idx", K * D, INDEX, -1)]

    def outputs(self, D, K=0, E=0):
        outs = []
        if self.values:
            outs.append(Output(K * D, VALUE))
        if self.indices:
            outs.append(Output(K * D, INDEX))
        return outs

    # During the NumPy reduction the accumulator is kept as (..., n, k, D)
    # with k <= K, and flattened at the end.
    def np_tile(self, vals, w, j0, acc_dtype):
        K = self._K
        order = np.argsort(vals, axis=-2, kind="stable")[..., :K, :]
        return {
            "vals": np.take_along_axis(vals, order, axis=-2).astype(acc_dtype),
            "idx": order.astype(np.int64) + j0,
        }

    def np_merge(self, acc, part):
        K = self._K
        v = np.concatenate([acc["vals"], part["vals"]], axis=-2)
        i = np.concatenate([acc["idx"], part["idx"]], axis=-2)
        # Stable: on ties (and among NaNs) the earlier columns, from acc, win.
        order = np.argsort(v, axis=-2, kind="stable")[..., :K, :]
        return {
            "vals": np.take_along_axis(v, order, axis=-2),
            "idx": np.take_along_axis(i, order, axis=-2),
        }

    def np_finalize(self, acc):
        shape = acc["vals"].shape[:-2] + (-1,)
        outs = []
        if self.values:
            outs.append(acc["vals"].reshape(shape))
        if self.indices:
            outs.append(acc["idx"].reshape(shape))
        return outs

    def with_k(self, K: int) -> KMinReduction:
        """Copy bound to K (the NumPy methods need it). One object per (kind, K),
        so that kernel specs holding it compare and hash equal across calls."""
        key = (self.values, self.indices, int(K))
        r = _KMIN_BOUND.get(key)
        if r is None:
            r = _KMIN_BOUND[key] = KMinReduction(self.values, self.indices)
            r._K = int(K)
        return r

    def present(self, outs, D, K=0):
        shaped = []
        for o in outs:
            o = o.reshape(tuple(o.shape[:-1]) + (K, D))
            shaped.append(o[..., 0] if D == 1 else o)
        return shaped[0] if len(shaped) == 1 else tuple(shaped)


# ----------------------------------------------------------------------------
# Log-sum-exp family (online max-shift)
# ----------------------------------------------------------------------------

# Invariant of an accumulator (m, s): the folded sum is s * exp(m), where m is
# the largest finite value seen (-inf if none). +inf values make s infinite,
# NaN makes s NaN; LSE_SCALE leaves 0, inf and NaN sums untouched, so that no
# inf - inf or 0 * inf is ever formed from the shift.
_LSE_PREAMBLE = """
#define LSE_SCALE(s, d) (((s) == 0 || isinf(s)) ? (s) : (s) * exp(d))
#define LSE_FINAL(m, s) ((m) == -INFINITY ? log(s) : (m) + log(s))
"""

_LSE_FOLD = """for (int k = 0; k < $D; k++) {
  $acc_t f = ($acc_t)$val[k];
  if (f > $m[k]) {
    if (f == INFINITY) $s[k] += f;
    else { $s[k] = LSE_SCALE($s[k], $m[k] - f) + 1; $m[k] = f; }
  } else if (f != -INFINITY) {
    $s[k] += exp(f - $m[k]);
  }
}"""

_LSE_MERGE = """for (int k = 0; k < $D; k++) {
  $acc_t mm = $m[k] > $m_b[k] ? $m[k] : $m_b[k];
  $s[k] = LSE_SCALE($s[k], $m[k] - mm) + LSE_SCALE($s_b[k], $m_b[k] - mm);
  $m[k] = mm;
}"""

# Weighted form: one scalar shift m, a vector s of W weighted sums; the
# weights are ``$wt(e)`` (rendered per reduction).
_WLSE_FOLD = """{
  $acc_t f = ($acc_t)$val[0];
  if (f > $m[0]) {
    if (f == INFINITY) { for (int e = 0; e < $W; e++) $s[e] += $wt(e) * f; }
    else {
      for (int e = 0; e < $W; e++) $s[e] = LSE_SCALE($s[e], $m[0] - f) + $wt(e);
      $m[0] = f;
    }
  } else if (f != -INFINITY) {
    $acc_t ef = exp(f - $m[0]);
    for (int e = 0; e < $W; e++) $s[e] += $wt(e) * ef;
  }
}"""

_WLSE_MERGE = """{
  $acc_t mm = $m[0] > $m_b[0] ? $m[0] : $m_b[0];
  for (int e = 0; e < $W; e++)
    $s[e] = LSE_SCALE($s[e], $m[0] - mm) + LSE_SCALE($s_b[e], $m_b[0] - mm);
  $m[0] = mm;
}"""


def _np_scale(s, d):
    with np.errstate(all="ignore"):
        return np.where((s == 0) | np.isinf(s), s, s * np.exp(d))


def _np_shift(f, axis=-2):
    """Largest finite value along ``axis`` (-inf if none), and the shift to
    subtract before exponentiating (0 where there is no finite value)."""
    finite = np.where(np.isfinite(f), f, -np.inf)
    m = finite.max(axis=axis)
    return m, np.where(m == -np.inf, 0, m)


def _np_lse_merge(acc, part):
    m = np.maximum(acc["m"], part["m"])
    s = _np_scale(acc["s"], acc["m"] - m) + _np_scale(part["s"], part["m"] - m)
    return {"m": m, "s": s}


def _np_lse_final(m, s):
    with np.errstate(all="ignore"):
        return np.where(m == -np.inf, np.log(s), m + np.log(s))


class LogSumExpReduction(Reduction):
    """log sum_j exp(F_ij), per coordinate of F."""

    name = "logsumexp"
    c_preamble = _LSE_PREAMBLE
    # Block = the NumPy tile algorithm: largest finite value, then a
    # vectorized sum of exp(v - shift). Same invariant as the fold.
    c_block = """for (int k = 0; k < $D; k++) {
  $acc_t bm = -INFINITY;
  #pragma omp simd reduction(max:bm)
  for (int64_t t = 0; t < $n; t++) {
    $acc_t v = ($acc_t)$buf[t * $D + k];
    bm = (v > bm && v < INFINITY) ? v : bm;
  }
  const $acc_t shift = bm == -INFINITY ? ($acc_t)0 : bm;
  $acc_t bs = 0;
  #pragma omp simd reduction(+:bs)
  for (int64_t t = 0; t < $n; t++) bs += $exp(($acc_t)$buf[t * $D + k] - shift);
  $m_b[k] = bm;
  $s_b[k] = bs;
}"""
    c_init = "for (int k = 0; k < $D; k++) { $m[k] = -INFINITY; $s[k] = 0; }"
    c_fold = _LSE_FOLD
    c_merge = _LSE_MERGE
    c_finalize = "for (int k = 0; k < $D; k++) $out0[k] = ($out_t)LSE_FINAL($m[k], $s[k]);"

    def fields(self, D, K=0, E=0):
        return [Field("m", D, VALUE, -np.inf), Field("s", D, VALUE, 0)]

    def outputs(self, D, K=0, E=0):
        return [Output(D, VALUE)]

    def np_tile(self, vals, w, j0, acc_dtype):
        vals = vals.astype(acc_dtype, copy=False)
        m, shift = _np_shift(vals)
        with np.errstate(all="ignore"):
            s = np.exp(vals - shift[..., None, :]).sum(axis=-2)
        return {"m": m, "s": s}

    np_merge = staticmethod(_np_lse_merge)

    def np_finalize(self, acc):
        return [_np_lse_final(acc["m"], acc["s"])]


class WeightedLogSumExpReduction(Reduction):
    """log sum_j exp(F_ij) w_ij, F scalar, w of dimension E (pykeops'
    LogSumExpWeight). Negative weighted sums give NaN, as log does."""

    name = "logsumexp_weight"
    uses_weight = True
    c_preamble = _LSE_PREAMBLE
    c_init = "$m[0] = -INFINITY; for (int e = 0; e < $E; e++) $s[e] = 0;"
    c_fold = _WLSE_FOLD.replace("$W", "$E").replace("$wt(e)", "($acc_t)$w[e]")
    c_merge = _WLSE_MERGE.replace("$W", "$E")
    c_finalize = "for (int e = 0; e < $E; e++) $out0[e] = ($out_t)LSE_FINAL($m[0], $s[e]);"

    def check(self, D, K=0, E=0):
        if D != 1:
            raise ValueError(
                f"logsumexp with weight: the formula must be scalar (inner dimension 1), got {D}"
            )

    def fields(self, D, K=0, E=0):
        return [Field("m", 1, VALUE, -np.inf), Field("s", E, VALUE, 0)]

    def outputs(self, D, K=0, E=0):
        return [Output(E, VALUE)]

    def np_tile(self, vals, w, j0, acc_dtype):
        vals = vals.astype(acc_dtype, copy=False)
        m, shift = _np_shift(vals)
        with np.errstate(all="ignore"):
            e = np.exp(vals - shift[..., None, :])
            s = (e * w).sum(axis=-2, dtype=acc_dtype)
        return {"m": m, "s": s}

    np_merge = staticmethod(_np_lse_merge)

    def np_finalize(self, acc):
        return [_np_lse_final(acc["m"], acc["s"])]


class SumSoftMaxWeightReduction(Reduction):
    """sum_j exp(F_ij) w_ij / sum_j exp(F_ij), F scalar, w of dimension E.

    The accumulator is the weighted log-sum-exp one with weights (1, w): the
    first sum is the softmax denominator.
    """

    name = "sumsoftmaxweight"
    uses_weight = True
    c_preamble = _LSE_PREAMBLE
    c_init = "$m[0] = -INFINITY; for (int e = 0; e < $E + 1; e++) $s[e] = 0;"
    c_fold = _WLSE_FOLD.replace("$W", "($E + 1)").replace(
        "$wt(e)", "(e == 0 ? ($acc_t)1 : ($acc_t)$w[e - 1])"
    )
    c_merge = _WLSE_MERGE.replace("$W", "($E + 1)")
    c_finalize = "for (int e = 0; e < $E; e++) $out0[e] = ($out_t)($s[e + 1] / $s[0]);"

    def check(self, D, K=0, E=0):
        if D != 1:
            raise ValueError(
                f"sumsoftmaxweight: the formula must be scalar (inner dimension 1), got {D}"
            )

    def fields(self, D, K=0, E=0):
        return [Field("m", 1, VALUE, -np.inf), Field("s", E + 1, VALUE, 0)]

    def outputs(self, D, K=0, E=0):
        return [Output(E, VALUE)]

    def np_tile(self, vals, w, j0, acc_dtype):
        vals = vals.astype(acc_dtype, copy=False)
        m, shift = _np_shift(vals)
        ones = np.ones(w.shape[:-1] + (1,), dtype=w.dtype)
        w1 = np.concatenate([np.broadcast_to(ones, w.shape[:-1] + (1,)), w], axis=-1)
        with np.errstate(all="ignore"):
            e = np.exp(vals - shift[..., None, :])
            s = (e * w1).sum(axis=-2, dtype=acc_dtype)
        return {"m": m, "s": s}

    np_merge = staticmethod(_np_lse_merge)

    def np_finalize(self, acc):
        s = acc["s"]
        with np.errstate(all="ignore"):
            return [s[..., 1:] / s[..., :1]]


# ----------------------------------------------------------------------------
# Registry: adding a reduction means adding one entry here.
# ----------------------------------------------------------------------------

REDUCTIONS: dict[str, Reduction] = {
    r.name: r
    for r in (
        SumReduction(),
        MinMaxReduction("min", values=True, indices=False),
        MinMaxReduction("max", values=True, indices=False),
        MinMaxReduction("min", values=False, indices=True),
        MinMaxReduction("max", values=False, indices=True),
        MinMaxReduction("min", values=True, indices=True),
        MinMaxReduction("max", values=True, indices=True),
        KMinReduction(values=True, indices=False),
        KMinReduction(values=False, indices=True),
        KMinReduction(values=True, indices=True),
        LogSumExpReduction(),
        WeightedLogSumExpReduction(),
        SumSoftMaxWeightReduction(),
    )
}


def get(name: str, K: int | None = None) -> Reduction:
    """The reduction called ``name`` (bound to ``K`` for the K-min family)."""
    try:
        red = REDUCTIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown reduction {name!r}; expected one of {sorted(REDUCTIONS)}"
        ) from None
    if red.uses_k:
        red.check(0, K)
        return red.with_k(K)
    return red
