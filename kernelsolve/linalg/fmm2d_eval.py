"""A fitted 2-D thin-plate spline at new points in O(1) per point, by the FMM.

``sum_j c_j phi(eps |x - y_j|)`` at ``q`` new points costs ``q n`` kernel
evaluations densely (4e13 for a 2e4 x 2e4 grid and 1e5 centres: hours). With
the coefficients ``c`` fixed, the far field of the sources is a set of local
expansions per leaf box of the :class:`.fmm2d.TPSFMM2D` tree, computed once;
a new point then costs one near-field sum over the sources of its own and the
adjacent leaf boxes (~200) plus one local expansion of ``order + 1`` terms for
each of the four log potentials. The error is the FMM's (rounding level at the
default order 30, relative to ``|Phi| |c|``; see :mod:`.fmm2d`).

Points outside the sources' bounding box are not covered (the tree does not
reach them): :meth:`TPSEvaluator.inside` tells which are, and the caller
evaluates the others densely.
"""

from __future__ import annotations

import numpy as np

from .. import autograd
from ..engine import ir
from ..engine.request import ReductionRequest
from . import kernels
from .blas import one_blas_thread
from .fmm2d import TPSFMM2D, _leaf_boxes

__all__ = ["TPSEvaluator"]

#: Points per block: the gathered local expansions take ``BLOCK (order + 1) 4 k``
#: complex numbers (32 MiB at order 30, one column).
BLOCK = 16384


class TPSEvaluator:
    """``sum_j c_j phi(eps |x - y_j|)`` (``phi(r) = r^2 log r``) at any 2-D points
    inside the sources' box, from an FMM tree and fixed coefficients ``c``.

    Parameters
    ----------
    fmm : TPSFMM2D
        The tree of the sources ``y`` (and ``epsilon``).
    c : (n,) or (n, k) array
        Coefficients, in the order of ``y``.

    It keeps ``O(n + boxes (order + 1) k)`` numbers (about 11 MB for 1e5 sources and
    one column), not the FMM's near-field matrix, and pickles.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y, c, x = rng.random((6000, 2)), rng.standard_normal(6000), rng.random((3, 2))
    >>> ev = TPSEvaluator(TPSFMM2D(y, 1.0), c)
    >>> r2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    >>> dense = (0.5 * r2 * np.log(r2)) @ c
    >>> bool(np.allclose(ev(x)[:, 0], dense, rtol=1e-9))
    True
    """

    def __init__(self, fmm: TPSFMM2D, c):
        c = np.asarray(c, dtype=np.float64).reshape(fmm.n, -1)
        cs = c[fmm.perm]
        w = fmm.z[:, None]
        ww = (w * w.conj()).real
        q = np.concatenate([cs, cs * w.conj(), cs * w, cs * ww], axis=1).astype(complex)
        with one_blas_thread():
            flat = fmm._locals(q)
        m = 2**fmm.level
        self.locals = flat.reshape(m * m, fmm.order + 1, q.shape[1])
        self.c = cs
        self.moments = (cs.sum(0), (cs * w).sum(0), (cs * ww).sum(0))
        self.sources = np.ascontiguousarray(np.stack([fmm.z.real, fmm.z.imag], axis=1))
        self.starts, self.level, self.order = fmm.starts, fmm.level, fmm.order
        self.centre, self.scale = fmm.centre, fmm.scale
        self.factor, self.log_es = fmm.factor, fmm.log_es

    def inside(self, x: np.ndarray) -> np.ndarray:
        """True for the points ``x`` (q, 2) that the tree covers (inside the sources'
        bounding box, up to rounding)."""
        u = (np.asarray(x, dtype=np.float64) - self.centre) / self.scale
        return np.all(np.abs(u) <= 0.5, axis=1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The sums at ``x`` (q, 2), all :meth:`inside`: ``(q, k)``."""
        x = np.asarray(x, dtype=np.float64)
        if not np.all(self.inside(x)):
            raise ValueError("x: points outside the sources' bounding box (see inside())")
        out = np.empty((x.shape[0], self.c.shape[1]))
        with one_blas_thread():
            for a in range(0, x.shape[0], BLOCK):
                out[a : a + BLOCK] = self._block(x[a : a + BLOCK])
        return out

    def _block(self, x: np.ndarray) -> np.ndarray:
        u = (x - self.centre) / self.scale
        z = u[:, 0] + 1j * u[:, 1]
        m, k = 2**self.level, self.c.shape[1]
        ix, iy = _leaf_boxes(z, self.level)
        h = 1.0 / m
        t = (z - (((ix + 0.5) * h - 0.5) + 1j * ((iy + 0.5) * h - 0.5))) / h
        powers = np.empty((t.shape[0], self.order + 1), dtype=complex)
        powers[:, 0] = 1.0
        np.cumprod(
            np.broadcast_to(t[:, None], (t.shape[0], self.order)), axis=1, out=powers[:, 1:]
        )
        far = np.einsum("tp,tpc->tc", powers, self.locals[ix * m + iy])
        L1, L2, L3, L4 = (far[:, i * k : (i + 1) * k] for i in range(4))
        w = z[:, None]
        zz = (w * w.conj()).real
        tps = self._near(u, ix, iy) + (zz * L1 - w * L2 - w.conj() * L3 + L4).real
        c0, c1, c2 = self.moments
        r2 = zz * c0 - 2 * (w * c1.conj()).real + c2  # sum_j c_j |z - w_j|^2, exactly
        return self.factor * (tps + self.log_es * r2)

    def _near(self, u: np.ndarray, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
        """``sum_j c_j r^2 log r`` (unit coordinates) over the sources of each point's own
        and adjacent leaf boxes: one block-sparse engine reduction (pykeops' ranges), the
        points sorted by box, each box's sources three contiguous runs."""
        m = 2**self.level
        box = ix * m + iy
        order = np.argsort(box, kind="stable")
        boxes, first, count = np.unique(box[order], return_index=True, return_counts=True)
        bx, by = boxes // m, boxes % m
        y0, y1 = np.maximum(by - 1, 0), np.minimum(by + 1, m - 1) + 1
        runs = []
        for a in (-1, 0, 1):  # one run per column of boxes, empty off the grid
            jx = np.clip(bx + a, 0, m - 1)
            lo, hi = self.starts[jx * m + y0], self.starts[jx * m + y1]
            off = (bx + a < 0) | (bx + a >= m)
            runs.append(np.stack([lo, np.where(off, lo, hi)], axis=1))
        redranges = np.stack(runs, axis=1).reshape(-1, 2)
        ranges_i = np.stack([first, first + count], axis=1)
        slices_i = 3 * np.arange(1, len(boxes) + 1)
        empty = np.zeros((0, 2), dtype=np.int64)
        plan = tuple(
            np.ascontiguousarray(a, dtype=np.int64)
            for a in (ranges_i, slices_i, redranges, empty, np.zeros(0, np.int64), empty)
        )
        out = np.empty((u.shape[0], self.c.shape[1]))
        out[order] = autograd.reduce(
            ReductionRequest(
                _near_formula(self.c.shape[1]),
                "sum",
                (np.ascontiguousarray(u[order]), self.sources, self.c),
                (ir.I, ir.J, ir.J),
                ranges=plan,
            )
        )
        return out


def _near_formula(k: int) -> ir.Node:
    s = ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2))
    phi = kernels.engine_formula(kernels.thin_plate_spline, s)
    return ir.make("mul", phi, ir.var(2, ir.J, k))
