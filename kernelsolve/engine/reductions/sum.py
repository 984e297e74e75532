"""The sum: accumulate every value of a row."""

from __future__ import annotations

from .base import VALUE, Field, Output, Reduction


class SumReduction(Reduction):
    name = "sum"
    plain_sum = True
    sums = ("acc",)
    c_init = "for (int k = 0; k < $D; k++) $acc[k] = 0;"
    c_fold = "for (int k = 0; k < $D; k++) KS_FOLD_ADD($acc_t, $acc[k], $acc_c[k], $val[k]);"
    c_merge = """for (int k = 0; k < $D; k++) {
  KS_MERGE_ADD($acc_t, $acc[k], $acc_c[k], $acc_b[k]);
  $acc_c[k] += $acc_c_b[k];
}"""
    c_finalize = "for (int k = 0; k < $D; k++) $out0[k] = ($out_t)KS_TOTAL($acc[k], $acc_c[k]);"

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
