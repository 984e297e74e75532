"""Which block pairs a sum over j may skip within its budget: the bounds
half of ``tol=`` (:mod:`.approx` and :mod:`.approx_lse` run the sums).

A pair (i-cluster a, j-cluster b) gets an upper bound ``U[a, b, d]`` of its
part of the row sums ``sum_j |T_ij[d]|`` of the summed terms T, and each
i-cluster a lower bound ``L[a, d]`` of those sums for all its rows, both from
the interval ``lo <= F <= hi`` of the formula over the pair's boxes. Two
kinds of terms:

* ``"abs"``: T = F (``sum``): ``U = max(|lo|, |hi|) n_b``, and
  ``L = sum_b min(|lo|, |hi|) n_b`` (0 where the interval holds 0);
* ``"exp"``: T = exp(F) (the log-sum-exp family):
  ``U = exp(hi - c_a) n_b`` and ``L = sum_b exp(lo - c_a) n_b``, both scaled
  by ``exp(-c_a)``, ``c_a`` the largest finite ``hi`` of the row, so that
  nothing overflows (scores ``U / L`` do not depend on the scale).

NaN bounds give ``U = inf`` (never skipped). A pair's score is
``max_d U / L``; the pairs of a row are skipped in ascending score while
the skipped scores add up to at most the budget (:func:`keep_pairs`), so
the skipped part of every row sum is at most ``budget * L <= budget * sum``.

Two levels. Cells of the grid form coarse clusters (:mod:`.prune`); the
coarse pairs are bounded first, and the coarse pairs whose scores add up to
at most :data:`COARSE_SHARE` of the budget are skipped whole (those where T
is 0 among them), so the fine bounds are evaluated only inside the others.
A coarse box holds its cells' boxes: its L is at most every row's sum, and
the fine pass keeps within the rest of the budget.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .prune import CHUNK_PAIRS, Boxes, Grid, coarse_boxes, expand_spans

__all__ = ["COARSE_SHARE", "PairBounds", "keep_pairs"]

#: The share of the budget that skips whole coarse pairs.
COARSE_SHARE = 1e-3

_KINDS = ("abs", "exp")


class PairBounds:
    """The bounds of the block pairs of two clusterings, one coarse
    i-cluster at a time (recomputed per pass: storing them all would not
    fit at 1e6 points).

    Parameters
    ----------
    bi, bj : Boxes
        The boxes of the fine clusters of ``gi`` and ``gj`` over all
        variables of each side.
    gi, gj : Grid
        The clusterings.
    interval : callable
        ``interval(boxes_i, boxes_j) -> (lo, hi)``, shaped ``(ci, cj)`` or
        ``(ci, cj, dim)``, NaN where F may be NaN.
    dim : int
        The formula's inner dimension.
    tol : float
        The budget (relative to ``L``), > 0.
    kind : {"abs", "exp"}
        The summed terms: F or exp(F) (module docstring).
    """

    def __init__(
        self, bi: Boxes, bj: Boxes, gi: Grid, gj: Grid, interval: Callable, dim: int,
        tol: float, kind: str = "abs",
    ):  # fmt: skip
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.bi, self.fj, self.interval, self.dim, self.kind = bi, _finite(bj), interval, dim, kind
        self.tol = tol * (1 - COARSE_SHARE)
        self.n_j = (gj.ranges[:, 1] - gj.ranges[:, 0]).astype(np.float64)
        self.bad_i, self.bad_j = _non_finite(bi), _non_finite(bj)
        self.gi, self.gj = gi, gj
        self.skip = self._coarse_skips(tol * COARSE_SHARE)

    def _coarse_skips(self, budget: float) -> np.ndarray:
        """(coarse i, coarse j) bool: the coarse pairs skipped whole."""
        gi, gj = self.gi, self.gj
        ci, cj = coarse_boxes(_finite(self.bi), gi), coarse_boxes(self.fj, gj)
        n_c = np.add.reduceat(self.n_j, gj.coarse[:, 0]) if len(gj.coarse) else self.n_j[:0]
        skip = np.zeros((len(gi.coarse), len(gj.coarse)), dtype=bool)
        step = max(1, CHUNK_PAIRS // max(len(gj.coarse) * self.dim, 1))
        for a in range(0, len(gi.coarse) if len(gj.coarse) else 0, step):
            r = slice(a, min(a + step, len(gi.coarse)))
            U, L = self.magnitudes(*self._interval(ci.take(r), cj), n_c)
            skip[r] = ~keep_pairs(U, L, budget)
        return skip

    def _interval(self, bi: Boxes, bj: Boxes):
        lo, hi = self.interval(bi, bj)
        lo, hi = (np.asarray(v, dtype=np.float64) for v in (lo, hi))
        lo, hi = (v[..., None] if v.ndim == 2 else v for v in (lo, hi))
        shape = (len(bi.lo), len(bj.lo))
        if lo.shape[:2] != shape or hi.shape != lo.shape or lo.shape[2] not in (1, self.dim):
            raise ValueError(
                "interval(boxes_i, boxes_j) must return (lo, hi) shaped "
                f"{shape} or {shape + (self.dim,)}, got {lo.shape} and {hi.shape}"
            )
        return lo, hi

    def magnitudes(self, lo: np.ndarray, hi: np.ndarray, n_j: np.ndarray):
        """``(U, L)`` of the module docstring for bounds ``(rows, cols, d)``
        and column counts ``n_j``: U ``(rows, cols, d)``, L ``(rows, d)``
        (L is 0 where its sum is not finite: an infinite L would excuse anything)."""
        with np.errstate(invalid="ignore", over="ignore", under="ignore"):
            nan = np.isnan(lo) | np.isnan(hi)
            w = n_j[None, :, None]
            if self.kind == "abs":
                a_lo, a_hi = np.abs(lo), np.abs(hi)
                U = np.where(nan, np.inf, np.maximum(a_lo, a_hi)) * w
                low = np.where(nan | ((lo <= 0) & (hi >= 0)), 0.0, np.minimum(a_lo, a_hi))
            else:
                top = np.where(np.isfinite(hi), hi, -np.inf).max(axis=(1, 2), initial=-np.inf)
                c = np.where(np.isfinite(top), top, 0.0)[:, None, None]
                U = np.where(nan, np.inf, np.exp(hi - c)) * w
                low = np.where(nan, 0.0, np.exp(lo - c))
            L = (low * w).sum(axis=1)
        return U, np.where(np.isfinite(L), L, 0.0)

    def chunks(self):
        """``(fine i-clusters, their j-clusters, U, L)`` per coarse i-cluster;
        the j-clusters left out are in coarse pairs skipped whole."""
        every = np.arange(len(self.fj.lo))
        for A, span in enumerate(self.gi.coarse if len(every) else ()):
            fi = np.arange(*span)
            fj = every
            if not self.bad_i[fi].any():
                kept = expand_spans(self.gj.coarse[~self.skip[A]])
                fj = np.union1d(kept, np.flatnonzero(self.bad_j))
            lo, hi = self._interval(_finite(self.bi.take(fi)), self.fj.take(fj))
            U, L = self.magnitudes(lo, hi, self.n_j[fj])
            U[self.bad_i[fi]] = np.inf
            U[:, self.bad_j[fj]] = np.inf
            yield fi, fj, U, L

    def kept(self, lower: np.ndarray | None = None):
        """``(rows, cols)`` of the kept pairs, row-major, with the lower bounds
        ``lower`` (fine i-clusters, dim; None: the bounds' own L)."""
        rows, cols = [], []
        for fi, fj, U, L in self.chunks():
            r, c = np.nonzero(keep_pairs(U, L if lower is None else lower[fi], self.tol))
            rows.append(fi[r])
            cols.append(fj[c])
        return _cat(rows), _cat(cols)

    def core(self):
        """``(rows, cols, L)``: the pairs kept even if every row sum were its
        upper bound ``sum_b U`` (kept whatever the exact sums are), and the
        bounds' own L per fine i-cluster. Keeps the core masks for
        :meth:`kept_with_core`."""
        rows, cols = [], []
        L0 = np.zeros((len(self.bi.lo), self.dim))
        self.cores = []  # bool, a few bytes a pair
        for fi, fj, U, low in self.chunks():
            self.cores.append(keep_pairs(U, _finite_sum(U), self.tol))
            r, c = np.nonzero(self.cores[-1])
            rows.append(fi[r])
            cols.append(fj[c])
            L0[fi] = low
        return _cat(rows), _cat(cols), L0

    def kept_with_core(self, lower: np.ndarray):
        """``(rows, cols, rest)``, row-major: the pairs kept with the lower
        bounds ``lower`` or in the core; ``rest``: not core. After :meth:`core`."""
        rows, cols, rest = [], [], []
        for (fi, fj, U, _), core in zip(self.chunks(), self.cores):
            keep = core | keep_pairs(U, lower[fi], self.tol)
            r, c = np.nonzero(keep)
            rows.append(fi[r])
            cols.append(fj[c])
            rest.append(~core[r, c])
        return _cat(rows), _cat(cols), np.concatenate(rest) if rest else np.zeros(0, bool)


def keep_pairs(U: np.ndarray, L: np.ndarray, tol: float) -> np.ndarray:
    """The pairs (rows, cols) to evaluate: per row, the smallest scores
    ``max_d U / L`` are skipped while they add up to at most ``tol``.

    >>> U = np.array([[[1.0], [0.0], [1e-9], [5.0]]])
    >>> keep_pairs(U, np.array([[6.0]]), 1e-6).tolist()
    [[True, False, False, True]]
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s = np.where(U == 0, 0.0, U / L[:, None, :])  # U > 0 = L: inf; inf / inf: NaN
        score = np.nan_to_num(s.max(axis=2), nan=np.inf)
        ends = np.append(np.sort(score, axis=1), np.full((len(score), 1), np.inf), axis=1)
        run = np.cumsum(ends[:, :-1], axis=1)
    # the k smallest fit (a margin for the rounding of U / L and of the sum);
    # the scores below the (k+1)-th smallest are among them
    k = (run <= tol * (1 - 1e-9)).sum(axis=1)
    return ~(score < ends[np.arange(len(score)), k][:, None])


def _cat(parts) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def _finite_sum(U: np.ndarray) -> np.ndarray:
    """Per row and coordinate: the sum of the finite upper bounds."""
    return np.where(np.isfinite(U), U, 0.0).sum(axis=1)


def _non_finite(b: Boxes) -> np.ndarray:
    """The clusters holding a NaN or infinite coordinate: never skipped."""
    return ~(np.isfinite(b.lo).all(axis=1) & np.isfinite(b.hi).all(axis=1))


def _finite(b: Boxes) -> Boxes:
    """The boxes with non-finite coordinates replaced by 0 (their pairs are
    kept whatever the bound says; the interval rules refuse NaN boxes)."""
    bad = ~(np.isfinite(b.lo) & np.isfinite(b.hi))
    if not bad.any():
        return b
    return Boxes(np.where(bad, 0.0, b.lo), np.where(bad, 0.0, b.hi), b.slices)
