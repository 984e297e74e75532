"""The log-sum-exp family: logsumexp, its weighted form and sumsoftmaxweight,
all with an online max-shift. They propagate NaN, and ``-inf``, ``+inf``
inputs give ``-inf``, ``+inf`` without ever forming ``inf - inf``.
"""

from __future__ import annotations

import numpy as np

from .base import VALUE, Field, Output, Reduction, preamble

# Invariant of an accumulator (m, s): the folded sum is s * exp(m), where m is
# the largest finite value seen (-inf if none). +inf values make s infinite,
# NaN makes s NaN; LSE_SCALE leaves 0, inf and NaN sums untouched, so that no
# inf - inf or 0 * inf is ever formed from the shift (logsumexp.h).
_LSE_PREAMBLE = preamble("logsumexp.h")

_LSE_FOLD = """for (int k = 0; k < $D; k++) {
  $acc_t f = ($acc_t)$val[k];
  if (f > $m[k]) {
    if (f == INFINITY) $s[k] += f;
    else {
      const $acc_t sc = exp($m[k] - f);
      $s[k] = LSE_MUL($s[k], sc);
      $s_c[k] = LSE_MUL($s_c[k], sc);
      KS_FOLD_ADD($acc_t, $s[k], $s_c[k], 1);
      $m[k] = f;
    }
  } else if (f != -INFINITY) {
    KS_FOLD_ADD($acc_t, $s[k], $s_c[k], exp(f - $m[k]));
  }
}"""

_LSE_MERGE = """for (int k = 0; k < $D; k++) {
  const $acc_t mm = $m[k] > $m_b[k] ? $m[k] : $m_b[k];
  const $acc_t ea = exp($m[k] - mm), eb = exp($m_b[k] - mm);
  $s[k] = LSE_MUL($s[k], ea);
  $s_c[k] = LSE_MUL($s_c[k], ea);
  KS_MERGE_ADD($acc_t, $s[k], $s_c[k], LSE_MUL($s_b[k], eb));
  $s_c[k] += LSE_MUL($s_c_b[k], eb);
  $m[k] = mm;
}"""

# Weighted form: one scalar shift m, a vector s of W weighted sums; the
# weights are ``$wt(e)`` (rendered per reduction).
_WLSE_FOLD = """{
  $acc_t f = ($acc_t)$val[0];
  if (f > $m[0]) {
    if (f == INFINITY) { for (int e = 0; e < $W; e++) $s[e] += $wt(e) * f; }
    else {
      const $acc_t sc = exp($m[0] - f);
      for (int e = 0; e < $W; e++) {
        $s[e] = LSE_MUL($s[e], sc);
        $s_c[e] = LSE_MUL($s_c[e], sc);
        KS_FOLD_ADD($acc_t, $s[e], $s_c[e], $wt(e));
      }
      $m[0] = f;
    }
  } else if (f != -INFINITY) {
    $acc_t ef = exp(f - $m[0]);
    for (int e = 0; e < $W; e++) KS_FOLD_ADD($acc_t, $s[e], $s_c[e], $wt(e) * ef);
  }
}"""

_WLSE_MERGE = """{
  const $acc_t mm = $m[0] > $m_b[0] ? $m[0] : $m_b[0];
  const $acc_t ea = exp($m[0] - mm), eb = exp($m_b[0] - mm);
  for (int e = 0; e < $W; e++) {
    $s[e] = LSE_MUL($s[e], ea);
    $s_c[e] = LSE_MUL($s_c[e], ea);
    KS_MERGE_ADD($acc_t, $s[e], $s_c[e], LSE_MUL($s_b[e], eb));
    $s_c[e] += LSE_MUL($s_c_b[e], eb);
  }
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
    sums = ("s",)
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
  $acc_t bs = 0, bc = 0;
  #pragma omp simd reduction(+:bs, bc)
  for (int64_t t = 0; t < $n; t++)
    KS_FOLD_ADD($acc_t, bs, bc, $exp(($acc_t)$buf[t * $D + k] - shift));
  $m_b[k] = bm;
  $s_b[k] = bs;
  $s_c_b[k] = bc;
}"""
    c_init = "for (int k = 0; k < $D; k++) { $m[k] = -INFINITY; $s[k] = 0; }"
    c_fold = _LSE_FOLD
    c_merge = _LSE_MERGE
    c_finalize = (
        "for (int k = 0; k < $D; k++) "
        "$out0[k] = ($out_t)LSE_FINAL($m[k], KS_TOTAL($s[k], $s_c[k]));"
    )

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
    sums = ("s",)
    c_preamble = _LSE_PREAMBLE
    c_init = "$m[0] = -INFINITY; for (int e = 0; e < $E; e++) $s[e] = 0;"
    c_fold = _WLSE_FOLD.replace("$W", "$E").replace("$wt(e)", "($acc_t)$w[e]")
    c_merge = _WLSE_MERGE.replace("$W", "$E")
    c_finalize = (
        "for (int e = 0; e < $E; e++) "
        "$out0[e] = ($out_t)LSE_FINAL($m[0], KS_TOTAL($s[e], $s_c[e]));"
    )

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
    sums = ("s",)
    c_preamble = _LSE_PREAMBLE
    c_init = "$m[0] = -INFINITY; for (int e = 0; e < $E + 1; e++) $s[e] = 0;"
    c_fold = _WLSE_FOLD.replace("$W", "($E + 1)").replace(
        "$wt(e)", "(e == 0 ? ($acc_t)1 : ($acc_t)$w[e - 1])"
    )
    c_merge = _WLSE_MERGE.replace("$W", "($E + 1)")
    c_finalize = (
        "for (int e = 0; e < $E; e++) "
        "$out0[e] = ($out_t)(KS_TOTAL($s[e + 1], $s_c[e + 1]) / KS_TOTAL($s[0], $s_c[0]));"
    )

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
