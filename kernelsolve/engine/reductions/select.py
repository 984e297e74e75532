"""Selections: min, max (and their arg- forms) and the K smallest values.

NaN semantics follow NumPy: ``min``/``max``/``argmin``/``argmax`` propagate
NaN (the first NaN wins, as in ``np.min`` / ``np.argmin``); ``Kmin`` and
``argKmin`` order NaN after every number, as ``np.sort`` does. Ties go to
the smaller index everywhere.
"""

from __future__ import annotations

import numpy as np

from ..cache import register_memo
from .base import INDEX, VALUE, Field, Output, Reduction, copy_out, preamble


class MinMaxReduction(Reduction):
    """min, max, argmin, argmax, min_argmin, max_argmax.

    The accumulator always carries the index: it costs one int64 per entry
    and lets every variant share one fold and one merge.
    """

    c_preamble = preamble("minmax.h")
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
        self.c_finalize = copy_out(values, indices, "$D")

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


# one bound copy per (kind, K): see KMinReduction.with_k
_KMIN_BOUND: dict = register_memo({}, "reductions.kmin_bound")


class KMinReduction(Reduction):
    """Kmin, argKmin, Kmin_argKmin: the K smallest values of each coordinate.

    Layout: slot ``k`` of coordinate ``d`` is entry ``k * D + d`` (sorted
    ascending in k), so the output reshapes to (..., K, D) for free.
    """

    uses_k = True
    c_preamble = preamble("kmin.h")
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
        self.c_finalize = copy_out(values, indices, "$K * $D")

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
