"""Partial results: a reduction whose outputs are its accumulator state.

:class:`PartialReduction` wraps a reduction and keeps its accumulator,
init, fold, merge and block snippets, so that a kernel of the wrapper folds
exactly as the wrapped one does; only finalize differs: it copies every
accumulator field to an output (a sum with its compensation folded in,
``KS_TOTAL``), values in the accumulator type (:data:`.base.ACCUMULATOR`),
indices as int64. This is the state a shard, a Dask chunk or a tile of a
split over j hands back (:mod:`kernelsolve.engine.partial`).

Its :meth:`~PartialReduction.np_merge` follows the compiled kernels on
*empty slots* (index -1: a row that folded nothing, a K-min list of fewer
than K columns), which rank after everything, NaN included; the NumPy
reference never meets them (its tiles always hold a column), states of
column ranges of any width do.
"""

from __future__ import annotations

import numpy as np

from .base import ACCUMULATOR, INDEX, Output, Reduction

# c_finalize of every wrapper: rendered per (D, K, E) by PartialReduction.render
_FINALIZE = "/* partial results: copy the accumulator */"


class PartialReduction(Reduction):
    """``inner`` with its accumulator fields as outputs (see the module docstring).

    Equal (and hashing equal) when the wrapped reductions are, so kernel
    specs holding it share the kernel memos.

    Example
    -------
    >>> from kernelsolve.engine import reductions as R
    >>> p = PartialReduction(R.get("min_argmin"))
    >>> p.name, [(o.size, o.kind) for o in p.outputs(2)]
    ('partial_min_argmin', [(2, 'accumulator'), (2, 'index')])
    """

    differentiable_outputs = False
    c_finalize = _FINALIZE

    def __init__(self, inner: Reduction):
        if isinstance(inner, PartialReduction):
            raise TypeError("PartialReduction: the reduction is already partial")
        self.inner = inner
        self.name = f"partial_{inner.name}"
        for attr in ("uses_weight", "plain_sum", "sums", "uses_k", "c_preamble"):
            setattr(self, attr, getattr(inner, attr))
        for attr in ("c_init", "c_fold", "c_merge", "c_block"):
            setattr(self, attr, getattr(inner, attr))

    def __eq__(self, other) -> bool:
        return type(other) is PartialReduction and other.inner == self.inner

    def __hash__(self) -> int:
        return hash((PartialReduction, self.inner))

    # --- layout ---------------------------------------------------------------
    def fields(self, D, K=0, E=0):
        return self.inner.fields(D, K, E)

    def outputs(self, D, K=0, E=0):
        return [
            Output(f.size, INDEX if f.kind == INDEX else ACCUMULATOR)
            for f in self.inner.fields(D, K, E)
        ]

    def check(self, D, K=0, E=0):
        self.inner.check(D, K, E)

    # --- C rendering ------------------------------------------------------------
    def render(self, snippet: str, **names: str) -> str:
        if snippet == _FINALIZE:
            snippet = self._finalize(int(names["D"]), int(names["K"]), int(names["E"]))
        return self.inner.render(snippet, **names)

    def _finalize(self, D: int, K: int, E: int) -> str:
        lines = []
        for k, f in enumerate(self.inner.fields(D, K, E)):
            if f.kind == INDEX:
                value = f"${f.name}[t]"
            elif f.name in self.sums:
                value = f"KS_TOTAL(${f.name}[t], ${f.name}_c[t])"
            else:
                value = f"${f.name}[t]"
            lines.append(f"for (int t = 0; t < {f.size}; t++) $out{k}[t] = {value};")
        return "\n".join(lines)

    # --- NumPy semantics ----------------------------------------------------------
    def np_tile(self, vals, w, j0, acc_dtype):
        return self.inner.np_tile(vals, w, j0, acc_dtype)

    def np_merge(self, acc: dict, part: dict) -> dict:
        """``part`` (later columns) merged into ``acc`` by the wrapped
        reduction's rule, empty slots (index -1) ranking after everything."""
        inner = self.inner
        if inner.uses_k:
            return self._merge_kmin(acc, part)
        idx = [f.name for f in inner.fields(1) if f.kind == INDEX]
        if idx:  # min/max: an empty slot of acc takes part's entry
            empty = acc[idx[0]] < 0
            acc = {n: np.where(empty, part[n], a) for n, a in acc.items()}
        return inner.np_merge(acc, part)

    def _merge_kmin(self, acc: dict, part: dict) -> dict:
        # np_merge's stable sort of the values (NaN last), then empty slots last
        v = np.concatenate([acc["vals"], part["vals"]], axis=-2)
        i = np.concatenate([acc["idx"], part["idx"]], axis=-2)
        order = np.argsort(v, axis=-2, kind="stable")
        empty = np.take_along_axis(i, order, axis=-2) < 0
        order = np.take_along_axis(order, np.argsort(empty, axis=-2, kind="stable"), axis=-2)
        order = order[..., : self.inner._K, :]
        return {
            "vals": np.take_along_axis(v, order, axis=-2),
            "idx": np.take_along_axis(i, order, axis=-2),
        }

    def np_finalize(self, acc: dict) -> list:
        """The fields, each ``(..., n, size)`` (K-min lists of fewer than K
        columns padded with empty slots, as the kernels leave them)."""
        outs = []
        for f in self.inner.fields(1, getattr(self.inner, "_K", 0), 1):
            a = acc[f.name]
            if self.uses_k:
                K = self.inner._K
                if a.shape[-2] < K:
                    pad = np.full(a.shape[:-2] + (K - a.shape[-2], a.shape[-1]), f.init, a.dtype)
                    a = np.concatenate([a, pad], axis=-2)
                a = a.reshape(a.shape[:-2] + (-1,))
            outs.append(a)
        return outs

    def present(self, outs: list, D: int, K: int = 0) -> dict:
        """The state: field name -> array ``(..., n, size)``."""
        E = 1  # only the names are read
        return {f.name: o for f, o in zip(self.inner.fields(D, K, E), outs)}

    def __repr__(self) -> str:
        return f"<partial reduction of {self.inner.name}>"
