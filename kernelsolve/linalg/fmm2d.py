"""Products with the 2-D thin-plate-spline matrix in O(n) time: a fast multipole method.

``Phi_ij = phi(eps |y_i - y_j|)`` with ``phi(r) = r^2 log r``. A dense product
costs ``n^2`` kernel evaluations (about 30 s at ``n = 1e5`` on two cores); this
one costs ``O(n)``.

Method (after Beatson and Newsam, 1992, "Fast evaluation of radial basis
functions: I"): with complex coordinates ``z``, ``w`` and any branch of the log,
``|z - w|^2 log|z - w| = Re[(z zbar - z wbar - zbar w + w wbar) log(z - w)]``, so
the far part of ``sum_j c_j phi(|z - w_j|)`` is the real part of a combination of
four potentials ``sum_j q_j log(z - w_j)`` with complex charges ``c``, ``c wbar``,
``c w`` and ``c |w|^2``; each is the classic 2-D Laplace FMM of Greengard and
Rokhlin (multipole, local expansions of ``order`` terms; branch jumps of the log
only change imaginary parts, which drop out). The points are binned into a
uniform quadtree; pairs in the same or adjacent leaf boxes form the *near
field*, a sparse matrix of exact kernel values.

Accuracy: the truncated expansions converge like ``0.55^order`` (bound;
measured error relative to ``|Phi| |V|``: 1e-8 at order 12, 4e-13 at 24, 1e-15
at the default 30, the rounding level). Interpolation coefficients cancel
strongly (``|Phi| |c| / |Phi c|`` is 2e7 for 1e5 DEM points), so relative to
``Phi c`` the error is ~3e-10 there, four times the engine's rounding error.

Cost at ``n = 1e5`` (uniform points, 6 levels, about 200 near pairs per point):
setup ~2.5 s, a product ~0.3-0.5 s on two loaded cores, against ~30 s for a
dense engine reduction. The uniform tree suits quasi-uniform points;
:func:`fmm_worthwhile` tells when the near field stays small.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse
from scipy.special import comb

from . import kernels
from .blas import one_blas_thread

__all__ = ["TPSFMM2D", "fmm_worthwhile"]

_PARITY_OFFSETS = {  # source offsets of the interaction list, by parity of the target box
    0: range(-2, 4),
    1: range(-3, 3),
}
_CHILD = [(a, b) for a in (0, 1) for b in (0, 1)]


def _levels(n: int, leaf_size: int) -> int:
    return max(0, round(math.log(max(n / leaf_size, 1.0), 4)))


def _leaf_boxes(z: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer box coordinates ``(ix, iy)`` of points ``z`` (complex, in [-0.5, 0.5]^2)."""
    m = 2**level
    ix = np.clip(np.floor((z.real + 0.5) * m), 0, m - 1).astype(np.int64)
    iy = np.clip(np.floor((z.imag + 0.5) * m), 0, m - 1).astype(np.int64)
    return ix, iy


def fmm_worthwhile(y: np.ndarray, *, leaf_size: int = 16, max_near: int = 400) -> bool:
    """True when the points are 2-D, the tree has at least 3 levels and its near field
    holds at most ``max_near`` pairs per point on average (quasi-uniform points; a
    cluster crowds a few leaf boxes and makes the near field quadratic).

    Example
    -------
    >>> import numpy as np
    >>> fmm_worthwhile(np.random.default_rng(0).random((20000, 2)))
    True
    """
    n = len(y)
    level = _levels(n, leaf_size)
    if y.shape[1] != 2 or level < 3:
        return False
    z = _unit(y)[0]
    ix, iy = _leaf_boxes(z, level)
    m = 2**level
    counts = np.bincount(ix * m + iy, minlength=m * m).reshape(m, m)
    padded = np.pad(counts, 1)
    around = sum(
        padded[1 + a : 1 + a + m, 1 + b : 1 + b + m] for a in (-1, 0, 1) for b in (-1, 0, 1)
    )
    return float((counts * around).sum()) <= max_near * n


def _unit(y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Complex coordinates in [-0.5, 0.5]^2 (slightly inside), the scale factor and the
    centre of the transform."""
    lo, hi = y.min(0), y.max(0)
    side = float((hi - lo).max())
    side = side if side > 0 else 1.0
    scale = side * (1 + 1e-9)
    u = (y - (lo + hi) / 2) / scale
    return u[:, 0] + 1j * u[:, 1], scale, (lo + hi) / 2


def _near_field(rx, ry, ix, iy, cx, cy, starts, m) -> scipy.sparse.csr_matrix:
    """Exact ``r^2 log r`` (unit coordinates) between rows ``(rx, ry)`` in leaf boxes
    ``(ix, iy)`` and the box-sorted sources ``(cx, cy)`` of the same or adjacent leaf
    boxes (``starts``: where each box's sources begin); CSR, filled in chunks of rows.

    Boxes are numbered ``ix * m + iy``, so the sources of a row are three contiguous
    ranges (columns ``ix - 1``, ``ix``, ``ix + 1``, rows ``iy +- 1``)."""
    n = len(rx)
    y0, y1 = np.maximum(iy - 1, 0), np.minimum(iy + 1, m - 1) + 1
    seg_start = np.empty((n, 3), dtype=np.int64)
    seg_len = np.empty((n, 3), dtype=np.int64)
    for col, a in enumerate((-1, 0, 1)):
        jx = ix + a
        ok = (jx >= 0) & (jx < m)
        jx = np.clip(jx, 0, m - 1)
        seg_start[:, col] = starts[jx * m + y0]
        seg_len[:, col] = np.where(ok, starts[jx * m + y1] - seg_start[:, col], 0)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(seg_len.sum(1), out=indptr[1:])
    nnz = int(indptr[-1])
    indices = np.empty(nnz, dtype=np.int32)
    values = np.empty(nnz)
    chunk = 4096
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        a, b = int(indptr[lo]), int(indptr[hi])
        lens = seg_len[lo:hi].ravel()
        # ragged arange: the column indices of every segment, one after the other
        first = np.cumsum(lens) - lens
        cols = np.repeat(seg_start[lo:hi].ravel() - first, lens) + np.arange(b - a)
        per_row = np.diff(indptr[lo : hi + 1])
        dx = np.repeat(rx[lo:hi], per_row) - cx[cols]
        dy = np.repeat(ry[lo:hi], per_row) - cy[cols]
        r2 = dx * dx
        r2 += dy * dy
        values[a:b] = kernels.thin_plate_spline(kernels.NUMPY, r2)  # 0 on the diagonal
        indices[a:b] = cols
    return scipy.sparse.csr_matrix((values, indices, indptr), shape=(n, len(cx)))


def _m2m(order: int) -> list[np.ndarray]:
    """Child-to-parent multipole shifts, one ``(order+1)^2`` matrix per child position."""
    p = order
    out = []
    for a, b in _CHILD:
        s = ((2 * a - 1) + 1j * (2 * b - 1)) / 2  # child centre - parent centre, in child sides
        T = np.zeros((p + 1, p + 1), dtype=complex)
        T[0, 0] = 1
        for i in range(1, p + 1):
            T[i, 0] = -(s**i) / i
            for k in range(1, i + 1):
                T[i, k] = s ** (i - k) * comb(i - 1, k - 1, exact=True)
            T[i] *= 0.5**i
        out.append(T)
    return out


def _l2l(order: int) -> list[np.ndarray]:
    """Parent-to-child local shifts, one matrix per child position."""
    p = order
    out = []
    for a, b in _CHILD:
        e = ((2 * a - 1) + 1j * (2 * b - 1)) / 2  # child centre - parent centre, in child sides
        T = np.zeros((p + 1, p + 1), dtype=complex)
        for m in range(p + 1):
            for i in range(m, p + 1):
                T[m, i] = comb(i, m, exact=True) * e ** (i - m) * 0.5**i
        out.append(T)
    return out


def _m2l(order: int, d: complex) -> np.ndarray:
    """Multipole (source) to local (target) with ``d`` = target - source centre in box
    sides; the ``Q log h`` part of the constant term is added per level."""
    p = order
    T = np.zeros((p + 1, p + 1), dtype=complex)
    k = np.arange(1, p + 1)
    dk = d ** (-k.astype(float))
    T[0, 0] = np.log(d)
    T[0, 1:] = dk
    for i in range(1, p + 1):
        sign_di = (-1) ** i * d ** (-float(i))
        T[i, 0] = -sign_di / i
        T[i, 1:] = sign_di * dk * comb(k + i - 1, i)
    return T


class TPSFMM2D:
    """``Phi @ V`` for ``Phi_ij = phi(eps |y_i - y_j|)``, ``phi(r) = r^2 log r``, in 2-D.

    Parameters
    ----------
    y : (n, 2) float64 array
        The points (sources and targets).
    epsilon : float
        Shape parameter (``phi(eps r) = eps^2 r^2 (log r + log eps)``).
    order : int
        Terms of the multipole and local expansions.
    leaf_size : int
        Average points per leaf box (sets the depth of the tree).

    Example
    -------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).random((4000, 2))
    >>> fmm = TPSFMM2D(y, 1.0)
    >>> v = np.ones((4000, 1))
    >>> r2 = ((y[:5, None] - y[None]) ** 2).sum(-1)
    >>> dense = (0.5 * r2 * np.log(np.where(r2 > 0, r2, 1))) @ v
    >>> bool(np.allclose(fmm.matmat(v)[:5], dense, rtol=1e-10))
    True
    """

    def __init__(self, y: np.ndarray, epsilon: float, *, order: int = 30, leaf_size: int = 16):
        y = np.ascontiguousarray(y, dtype=np.float64)
        if y.ndim != 2 or y.shape[1] != 2:
            raise ValueError(f"y must have shape (n, 2), got {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y holds NaN or inf; expected finite coordinates")
        if not (np.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"epsilon must be positive and finite, got {epsilon}")
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        n = len(y)
        self.n, self.order = n, int(order)
        self.level = L = max(2, _levels(n, leaf_size))
        z, scale, self.centre = _unit(y)
        self.scale = scale
        # phi(eps r_y) = (eps scale)^2 (r^2 log r + log(eps scale) r^2) with r = r_z
        self.factor = (epsilon * scale) ** 2
        self.log_es = math.log(epsilon * scale)
        m = 2**L
        ix, iy = _leaf_boxes(z, L)
        box = ix * m + iy
        self.perm = np.argsort(box, kind="stable")
        self.z = z[self.perm]
        box = box[self.perm]
        self.starts = starts = np.searchsorted(box, np.arange(m * m + 1))
        X, Y = np.ascontiguousarray(self.z.real), np.ascontiguousarray(self.z.imag)
        self.near = _near_field(X, Y, ix[self.perm], iy[self.perm], X, Y, starts, m)
        h = 1.0 / m
        centre = ((ix[self.perm] + 0.5) * h - 0.5) + 1j * ((iy[self.perm] + 0.5) * h - 0.5)
        t = (self.z - centre) / h  # |t| <= sqrt(2) / 2
        powers = t[:, None] ** np.arange(order + 1)
        kk = np.arange(order + 1)
        # L2P: row i holds t_i^k at the columns of its leaf's coefficients (sorted by box,
        # so the CSR is written directly); P2M is its transpose, scaled by -1/k afterwards
        cols = (box[:, None] * (order + 1) + kk).astype(np.int32)
        self.l2p = scipy.sparse.csr_matrix(
            (powers.ravel(), cols.ravel(), np.arange(0, n * (order + 1) + 1, order + 1)),
            shape=(n, m * m * (order + 1)),
        )
        self._p2m_scale = np.r_[1.0, -1.0 / kk[1:]][:, None]
        self.M2M, self.L2L = _m2m(order), _l2l(order)
        base = {
            (dx, dy): _m2l(order, complex(dx, dy))
            for dx in range(-3, 4)
            for dy in range(-3, 4)
            if max(abs(dx), abs(dy)) > 1
        }
        self._offsets = {
            (px, py): [
                (dx, dy)
                for dx in _PARITY_OFFSETS[px]
                for dy in _PARITY_OFFSETS[py]
                if max(abs(dx), abs(dy)) > 1
            ]
            for px in (0, 1)
            for py in (0, 1)
        }
        # local = T_(target - source) @ multipole, stacked over the 27 sources of a class
        self._stack = {
            key: np.concatenate([base[(-dx, -dy)] for dx, dy in offs], axis=1)
            for key, offs in self._offsets.items()
        }
        self.inv = np.empty(n, dtype=np.int64)
        self.inv[self.perm] = np.arange(n)

    # ------------------------------------------------------------------
    @property
    def near_pairs(self) -> int:
        """Stored near-field pairs (the memory is about 12 bytes per pair)."""
        return int(self.near.nnz)

    # ------------------------------------------------------------------
    def matmat(self, V: np.ndarray) -> np.ndarray:
        """``Phi @ V`` for ``V`` of shape ``(n, k)`` (float64); columns in blocks of 2."""
        V = np.asarray(V, dtype=np.float64)
        squeeze = V.ndim == 1
        V = V.reshape(self.n, -1)
        out = np.empty_like(V)
        # Two BLAS threads made a product 3-10x slower than one on a loaded 2-core machine
        # (threads of OpenBLAS wait for each other between the small GEMMs).
        with one_blas_thread():
            for k in range(0, V.shape[1], 2):
                out[:, k : k + 2] = self._matmat(V[:, k : k + 2])
        return out[:, 0] if squeeze else out

    def _matmat(self, V: np.ndarray) -> np.ndarray:
        c = V[self.perm]
        k = c.shape[1]
        z = self.z
        w = z[:, None]
        # unit-coordinate sums: near field exactly, far field by the FMM
        q = np.concatenate([c, c * w.conj(), c * w, c * (w * w.conj()).real], axis=1)
        far = self._far(q.astype(complex))
        L1, L2, L3, L4 = (far[:, i * k : (i + 1) * k] for i in range(4))
        zz = (z * z.conj()).real[:, None]
        tps = self.near @ c + (zz * L1 - w * L2 - w.conj() * L3 + L4).real
        # sum_j c_j |z - w_j|^2 exactly, from three moments
        c0, c1, c2 = c.sum(0), (c * w).sum(0), (c * zz).sum(0)
        r2 = zz * c0 - 2 * (w * c1.conj()).real + c2
        res = self.factor * (tps + self.log_es * r2)
        return res[self.inv]

    def _m2l_stack(self, px: int, py: int, lev: int) -> np.ndarray:
        """The stacked translations of a parity class at a level: the constant term of
        each local expansion gains ``Q log h`` (h the box side) per source box."""
        T = self._stack[(px, py)].copy()
        T[0, :: self.order + 1] += math.log(2.0**-lev)
        return T

    def _far(self, q: np.ndarray) -> np.ndarray:
        """Far-field log potentials ``sum_{j far from i} q_j log(z_i - w_j)`` of complex
        charge columns ``q`` (sorted order); only the real part of the combination is used."""
        return self.l2p @ self._locals(q)

    def _locals(self, q: np.ndarray) -> np.ndarray:
        """The leaves' local expansions of the far field of charges ``q``: ``(m * m *
        (order + 1), ncol)``, box ``ix * m + iy``'s coefficients in rows ``box * (order
        + 1) + k``, in powers of ``(z - centre) / h``."""
        p, L = self.order, self.level
        ncol = q.shape[1]
        m = 2**L
        # multipoles at the leaves: (p + 1, m, m, ncol)
        M = {L: (self.l2p.T @ q).reshape(m, m, p + 1, ncol).transpose(2, 0, 1, 3)}
        M[L] *= self._p2m_scale[:, None, None]
        for lev in range(L, 2, -1):  # upward pass, down to level 2
            child = M[lev]
            mp = 2 ** (lev - 1)
            par = np.zeros((p + 1, mp, mp, ncol), dtype=complex)
            for T, (a, b) in zip(self.M2M, _CHILD):
                X = np.ascontiguousarray(child[:, a::2, b::2, :]).reshape(p + 1, -1)
                par += (T @ X).reshape(par.shape)
            M[lev - 1] = par
        loc = None
        for lev in range(2, L + 1):  # downward pass
            ml = 2**lev
            if loc is None:
                loc = np.zeros((p + 1, ml, ml, ncol), dtype=complex)
            else:
                parent, loc = loc, np.zeros((p + 1, ml, ml, ncol), dtype=complex)
                X = parent.reshape(p + 1, -1)
                for T, (a, b) in zip(self.L2L, _CHILD):
                    loc[:, a::2, b::2, :] += (T @ X).reshape(p + 1, ml // 2, ml // 2, ncol)
            Mp = np.pad(M[lev], ((0, 0), (3, 3), (3, 3), (0, 0)))
            half = ml // 2
            for px in (0, 1):
                for py in (0, 1):
                    # the 27 translations of one parity class as one GEMM (inner size 27 (p+1))
                    X = np.concatenate(
                        [
                            Mp[
                                :,
                                px + dx + 3 : px + dx + 3 + ml : 2,
                                py + dy + 3 : py + dy + 3 + ml : 2,
                            ]
                            for dx, dy in self._offsets[(px, py)]
                        ]
                    ).reshape(-1, half * half * ncol)
                    T = self._m2l_stack(px, py, lev)
                    loc[:, px::2, py::2, :] += (T @ X).reshape(p + 1, half, half, ncol)
        return loc.transpose(1, 2, 0, 3).reshape(m * m * (p + 1), ncol)
