"""Dense kriging, as PyKrige solves it: for few data points, moving windows, and the
cases the iterative solvers do not take (custom and hole-effect variograms, any
drift term, geographic distances, pseudo-inverses).

* :class:`Metric`: Euclidean or great-circle distances (degrees).
* :func:`direct_fits`: the dense system of ``unknowns`` fits
  :func:`.dense.memory_budget` (``solver="auto"`` then takes it).
* :class:`DirectSystem`: PyKrige's kriging matrix (``-gamma`` off the diagonal,
  0 on it, the drift columns and the constant), built in blocks of rows and
  LU-factorized once in place (or pseudo-inverted); predictions from one solve
  for the data, variances from triangular solves for blocks of targets at once
  (BLAS-3), the blocks sized by :func:`.dense.memory_budget`.
* :func:`moving_window`: kriging of every target on its ``k`` nearest data
  (a k-d tree), all the small systems solved in one batched LAPACK call per block.
* :func:`sequential_statistics`: PyKrige's ``delta, sigma, epsilon``: each datum
  kriged from those before it, in ``O(n^3)`` by bordering the inverse.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from ..engine import split
from ..progress import Progress
from .dense import memory_budget
from .kriging_inputs import EPS, PSEUDO_INVERSES, great_circle_distance, unit_sphere

__all__ = [
    "MATRIX_SHARE",
    "Metric",
    "DirectSystem",
    "direct_bytes",
    "direct_fits",
    "moving_window",
    "sequential_statistics",
]

#: Share of :func:`.dense.memory_budget` the kriging matrix may take (its LU
#: overwrites it); the blocks of matrix rows and of targets take a tenth at most.
MATRIX_SHARE = 0.8


class Metric:
    """Distances between points: ``"euclidean"`` or ``"geographic"`` (longitude,
    latitude in degrees; great-circle distances in degrees)."""

    def __init__(self, kind: str):
        if kind not in ("euclidean", "geographic"):
            raise ValueError(f"coordinates_type={kind!r}: expected 'euclidean' or 'geographic'")
        self.kind = kind

    def matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(len(a), len(b))`` distances."""
        if self.kind == "euclidean":
            return cdist(a, b)
        return great_circle_distance(a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1])

    def pairwise(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distances between ``a[..., :]`` and ``b[..., :]`` (broadcasting)."""
        if self.kind == "euclidean":
            return np.sqrt(((a - b) ** 2).sum(-1))
        return great_circle_distance(a[..., 0], a[..., 1], b[..., 0], b[..., 1])

    def within(self, near: np.ndarray) -> np.ndarray:
        """``(b, k, k)`` distances among each of ``b`` groups of ``k`` points."""
        if self.kind != "euclidean":
            return self.pairwise(near[:, :, None, :], near[:, None, :, :])
        d2 = np.zeros(near.shape[:2] + near.shape[1:2])
        for c in np.moveaxis(near, -1, 0):  # one coordinate at a time: no (b, k, k, d) array
            diff = c[:, :, None] - c[:, None, :]
            d2 += diff * diff
        return np.sqrt(d2)

    def tree_points(self, pts: np.ndarray) -> np.ndarray:
        """Points whose Euclidean neighbours are the neighbours in this metric."""
        return pts if self.kind == "euclidean" else unit_sphere(pts[:, 0], pts[:, 1])


def _rows_per_block(cols: int, arrays: int = 4) -> int:
    """Targets per block so that ``arrays`` float64 blocks of ``cols`` fit a tenth
    of the dense memory budget."""
    return int(max(1, min(1 << 16, memory_budget() // (10 * 8 * arrays * max(cols, 1)))))


def direct_bytes(unknowns: int) -> int:
    """Bytes of the dense kriging matrix of ``unknowns`` (float64, factorized in place)."""
    return 8 * int(unknowns) ** 2


def direct_fits(unknowns: int) -> bool:
    """True when the dense system of ``unknowns`` (data + drift terms + 1) fits
    :data:`MATRIX_SHARE` of :func:`.dense.memory_budget`.

    Example
    -------
    >>> direct_fits(1000)
    True
    >>> direct_fits(10**7)
    False
    """
    return direct_bytes(unknowns) <= MATRIX_SHARE * memory_budget()


class DirectSystem:
    """PyKrige's kriging system on ``n`` points, factorized once.

    Parameters
    ----------
    pts : (n, d) ndarray
        Data points (adjusted for anisotropy).
    values : (n,) ndarray
    gamma : callable
        ``gamma(h)``, the variogram with its nugget.
    metric : Metric
    drift : (n, m) ndarray
        Drift columns; the constant column is added here.
    pseudo_inv : str or None
        "pinv" or "pinvh" to pseudo-invert the matrix (PyKrige's ``pseudo_inv_type``).
    """

    def __init__(self, pts, values, gamma, metric: Metric, drift, pseudo_inv=None):
        n, m = pts.shape[0], drift.shape[1] + 1
        self.pts, self.values, self.gamma, self.metric = pts, values, gamma, metric
        self.n = n
        A = self._matrix(drift)
        self.size = n + m
        self.inverse = self.lu = None
        if pseudo_inv:
            self.inverse = PSEUDO_INVERSES[pseudo_inv](A)
        else:  # in place: A is Fortran-ordered, so the LU is the only (n + m)^2 array
            lu, piv = scipy.linalg.lu_factor(A, overwrite_a=True, check_finite=False)
            if not np.all(np.isfinite(lu)) or np.min(np.abs(np.diag(lu))) == 0:
                raise np.linalg.LinAlgError(
                    "the kriging matrix is singular (duplicate points or a drift that is "
                    "not identifiable?); try pseudo_inv=True"
                )
            self.lu = (lu, piv)
        rhs = np.concatenate([values, np.zeros(m)])
        self.weights = self.solve(rhs[:, None])[:, 0]  # A symmetric: z = b . A^-1 [z; 0]

    def _matrix(self, drift: np.ndarray) -> np.ndarray:
        """PyKrige's matrix, its variogram block built a block of rows at a time
        (a whole ``gamma(D)`` would hold several ``n^2`` temporaries)."""
        n, m = self.n, drift.shape[1] + 1
        A = np.zeros((n + m, n + m), order="F")
        At = A.T  # C-ordered view: its rows are A's columns (A is symmetric)
        rows = _rows_per_block(n, arrays=8)
        for a in range(0, n, rows):
            sl = slice(a, min(n, a + rows))
            At[sl, :n] = -self.gamma(self.metric.matrix(self.pts[sl], self.pts))
        A[np.arange(n), np.arange(n)] = 0.0
        A[:n, n : n + m - 1] = drift
        A[:n, n + m - 1] = 1.0
        A[n:, :n] = A[:n, n:].T
        return A

    def solve(self, B: np.ndarray) -> np.ndarray:
        if self.inverse is not None:
            return self.inverse @ B
        return scipy.linalg.lu_solve(self.lu, B, check_finite=False)

    def execute(self, tpts, tdrift, exact_values: bool, variance: bool, progress=None):
        """Predictions and kriging variances at ``tpts`` (drift columns ``tdrift``).

        Under ``kernelsolve.distributed.sharded()`` (replicated inputs) each
        process computes its share of the targets and gathers the others'
        (every target's sums run as in one process)."""
        active = split.active()
        if active is None or active.local:
            return self._targets(tpts, tdrift, exact_values, variance, progress)
        k = tpts.shape[0]
        lo, hi = active.bounds(k)
        z, s = self._targets(tpts[lo:hi], tdrift[lo:hi], exact_values, variance, progress)
        return active.gather_rows(z, k), None if s is None else active.gather_rows(s, k)

    def _targets(self, tpts, tdrift, exact_values: bool, variance: bool, progress=None):
        k = tpts.shape[0]
        z = np.empty(k)
        s = np.empty(k) if variance else None
        block = _rows_per_block(self.size, arrays=8)  # gamma's temporaries, b, the solve
        if progress is not None:
            what = "predictions and variances" if variance else "predictions"
            progress.write(f"direct solve: {self.n} data, {k} targets ({what})")
        for a in range(0, k, block):
            sl = slice(a, min(k, a + block))
            bd = self.metric.matrix(tpts[sl], self.pts)
            b = np.empty((bd.shape[0], self.size))
            b[:, : self.n] = -self.gamma(bd)
            if exact_values:
                b[:, : self.n][bd <= EPS] = 0.0
            b[:, self.n : -1] = tdrift[sl]
            b[:, -1] = 1.0
            z[sl] = b @ self.weights
            if variance:
                s[sl] = -(self.solve(b.T) * b.T).sum(0)
            if progress is not None:
                progress.update(sl.stop - sl.start)
        return z, s


def moving_window(pts, values, gamma, metric: Metric, tpts, k: int, exact_values: bool, verbose):
    """Ordinary kriging of each target on its ``k`` nearest data points (PyKrige's
    ``n_closest_points``): predictions and variances."""
    tree = cKDTree(metric.tree_points(pts))
    k = int(min(k, pts.shape[0]))
    nt = tpts.shape[0]
    z, s = np.empty(nt), np.empty(nt)
    # small blocks: the (b, k, k) arrays stay in cache (measured 2x faster than 1e5)
    block = min(4096, _rows_per_block((k + 1) * (k + 1), arrays=3))
    tq = metric.tree_points(tpts)
    with Progress("moving-window kriging", total=nt, enabled=verbose) as bar:
        for a in range(0, nt, block):
            sl = slice(a, min(nt, a + block))
            bd, idx = tree.query(tq[sl], k=k)
            idx, bd = idx.reshape(-1, k), bd.reshape(-1, k)
            near = pts[idx]  # (b, k, d)
            if metric.kind != "euclidean":  # the tree's distances are chords
                bd = metric.pairwise(tpts[sl, None, :], near)
            D = metric.within(near)
            nb = idx.shape[0]
            A = np.zeros((nb, k + 1, k + 1))
            A[:, :k, :k] = -gamma(D.reshape(nb, k * k)).reshape(nb, k, k)
            A[:, np.arange(k), np.arange(k)] = 0.0
            A[:, k, :k] = A[:, :k, k] = 1.0
            b = np.empty((nb, k + 1))
            b[:, :k] = -gamma(bd)
            if exact_values:
                b[:, :k][bd <= EPS] = 0.0
            b[:, k] = 1.0
            x = np.linalg.solve(A, b[:, :, None])[:, :, 0]
            z[sl] = (x[:, :k] * values[idx]).sum(1)
            s[sl] = -(x * b).sum(1)
            bar.update(nb)
    return z, s


def _ordinary_matrix(pts, gamma, metric: Metric) -> np.ndarray:
    """The ordinary kriging matrix with the multiplier first."""
    n = pts.shape[0]
    A = np.zeros((n + 1, n + 1))
    A[1:, 1:] = -gamma(metric.matrix(pts, pts))
    A[np.arange(1, n + 1), np.arange(1, n + 1)] = 0.0
    A[0, 1:] = A[1:, 0] = 1.0
    return A


def sequential_statistics(pts, values, gamma, metric: Metric, pseudo_inv: bool, verbose=False):
    """PyKrige's ``delta, sigma, epsilon``: datum ``i`` kriged (ordinary) from data
    ``0 .. i-1``; the inverse of the growing system is bordered one row at a time."""
    n = pts.shape[0]
    delta, sigma = np.zeros(n), np.zeros(n)
    inv = np.array([[0.0, 1.0], [1.0, 0.0]])  # unknowns: the multiplier, then the weights
    with Progress("kriging statistics", total=max(n - 1, 0), enabled=verbose) as bar:
        for i in range(1, n):
            d = metric.pairwise(pts[:i], pts[i][None, :])
            c = np.concatenate([[1.0], -gamma(d)])
            b = c.copy()
            hit = np.flatnonzero(d <= EPS)
            if hit.size:
                b[1 + hit[0]] = 0.0
            if pseudo_inv:  # PyKrige's least-squares solve of the whole system
                x = np.linalg.lstsq(_ordinary_matrix(pts[:i], gamma, metric), b, rcond=None)[0]
            else:
                x = inv @ b
            ss = -(x @ b)
            if abs(ss) >= EPS:
                delta[i] = values[i] - x[1:] @ values[:i]
                sigma[i] = np.sqrt(ss) if ss > 0 else np.nan
            u = inv @ c
            schur = -(c @ u)
            inv = np.block(
                [
                    [inv + np.outer(u, u) / schur, -u[:, None] / schur],
                    [-u[None, :] / schur, np.array([[1.0 / schur]])],
                ]
            )
            bar.update(1)
    keep = sigma > EPS
    delta, sigma = delta[keep], sigma[keep]
    return delta, sigma, delta / sigma
