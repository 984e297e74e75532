"""The interpolation system with a polynomial tail, solved iteratively in O(n) memory.

Radial basis interpolation and kriging solve the saddle-point system

    [ A   P ] [c]   [d]
    [ P^T 0 ] [w] = [0],     A = Phi + diag(s),  Phi_ij = phi(eps |y_i - y_j|),

with ``P`` the monomials of degree <= ``degree`` at the points. It is
indefinite, and for conditionally positive definite kernels ``Phi`` alone is
not positive definite; only ``A`` restricted to ``{c : P^T c = 0}`` is.

Method (after Beatson, Cherrie and Mouat, 1999): with ``Pi = I - Q Q^T``
(``P = Q R``) the conditions are ``P^T c = 0`` and ``Pi (A c - d) = 0``. Each
point gets an *approximate cardinal function*: the interpolant, on its
``neighbors`` nearest points, of the data 1 at the point and 0 at the
others, with the same kernel and a polynomial tail; its coefficients
``lambda_i`` satisfy ``P^T lambda_i = 0`` by construction. With ``C`` the sparse
matrix of these columns, ``c = C u`` always satisfies the constraint, and
GMRES solves ``Pi A C u = Pi d``, which is close to the identity on the
relevant subspace: the iteration count stays small as ``n`` grows. Then
``w = R^-1 Q^T (d - A c)``. Products with ``Phi`` are engine reductions; the
memory is ``O(n (neighbors + restart))``.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from itertools import combinations_with_replacement

import numpy as np
import scipy.linalg
import scipy.sparse
from scipy.sparse.linalg import LinearOperator, gmres

from .. import autograd
from ..engine import ir
from .cg import ConvergenceWarning
from .radial import RadialKernel, kernel_formula

__all__ = ["monomial_powers", "polynomial_matrix", "SaddleSolver", "SaddleInfo"]


def monomial_powers(ndim: int, degree: int) -> np.ndarray:
    """Exponents of the monomials of degree <= ``degree`` in ``ndim`` variables."""
    rows = []
    for deg in range(degree + 1):
        for combo in combinations_with_replacement(range(ndim), deg):
            p = np.zeros(ndim, dtype=np.int64)
            for k in combo:
                p[k] += 1
            rows.append(p)
    return np.array(rows, dtype=np.int64).reshape(len(rows), ndim)


def polynomial_matrix(x: np.ndarray, powers: np.ndarray) -> np.ndarray:
    """``out[i, k] = prod_l x[i, l] ** powers[k, l]``."""
    return np.prod(x[:, None, :] ** powers[None, :, :], axis=-1)


@dataclass
class SaddleInfo:
    """Record of a solve: matrix products, relative residual per column, setup time."""

    products: int = 0
    residual: list = field(default_factory=list)
    converged: bool = True
    setup_seconds: float = 0.0
    solve_seconds: float = 0.0


class SaddleSolver:
    """Solver for one point set, kernel and smoothing; reusable for many right-hand sides.

    Parameters
    ----------
    y : (n, ndim) float64 array
        Points (distinct).
    phi : RadialKernel
    epsilon : float
    smoothing : (n,) float64 array
    powers : (m, ndim) int array
        Monomials of the tail (``m = 0``: none).
    neighbors : int
        Points per approximate cardinal function.
    verbose : bool
        Progress to stderr.
    """

    def __init__(
        self,
        y: np.ndarray,
        phi: RadialKernel,
        epsilon: float,
        smoothing: np.ndarray,
        powers: np.ndarray,
        *,
        neighbors: int = 50,
        far_points: int = 30,
        seed: int = 0,
        verbose: bool = False,
    ):
        t0 = time.perf_counter()
        self.y, self.phi, self.epsilon = y, phi, float(epsilon)
        self.smoothing, self.powers, self.verbose = smoothing, powers, verbose
        n, ndim = y.shape
        self.n = n
        self.formula = kernel_formula(phi.formula, ndim, self.epsilon)
        lo, hi = y.min(0), y.max(0)
        self.shift = (lo + hi) / 2
        scale = (hi - lo) / 2
        self.scale = np.where(scale == 0, 1.0, scale)
        m = powers.shape[0]
        if m:
            P = polynomial_matrix((y - self.shift) / self.scale, powers)
            self.Q, self.R = np.linalg.qr(P)
            if np.linalg.matrix_rank(self.R) < m:
                raise ValueError(
                    f"the {m} monomials of the polynomial tail are linearly dependent at the "
                    "points (e.g. collinear points with degree 1): lower the degree"
                )
        else:
            self.Q = self.R = None
        q = int(min(max(neighbors, 2 * m + 1), n))
        far = int(min(far_points, n - q))
        self._log(f"saddle: {n} points, {q} neighbours + {far} far points per cardinal function")
        self._check_distinct()
        sets, centre = self._local_sets(q, far, np.random.default_rng(seed))
        self.C = self._cardinal(sets, centre)
        self.setup_seconds = time.perf_counter() - t0
        self._log(f"saddle: preconditioner ready in {self.setup_seconds:.1f} s")

    # ------------------------------------------------------------------
    def _log(self, msg: str) -> None:
        if self.verbose:
            print(msg, file=sys.stderr)

    def _knn(self, x: np.ndarray, pts: np.ndarray, q: int):
        ndim = self.y.shape[1]
        f = ir.make("sqdist", ir.var(0, ir.I, ndim), ir.var(1, ir.J, ndim))
        d2, idx = autograd.reduce(f, "kmin_argkmin", (x, pts), (ir.I, ir.J), K=q)
        return idx.reshape(len(x), q), d2.reshape(len(x), q)

    def _check_distinct(self) -> None:
        if self.n < 2:
            return
        idx, d2 = self._knn(self.y, self.y, 2)
        if np.any(d2[:, 1] == 0):
            i = int(np.argmax(d2[:, 1] == 0))
            raise ValueError(
                f"y holds duplicate points (e.g. point {i} and point {int(idx[i, 1])}); "
                "an interpolating spline needs distinct points (average or drop duplicates)"
            )

    def _local_sets(self, q: int, far: int, rng):
        """Point sets of the cardinal functions, ``(n, q + far)`` indices, and
        the position of each centre in its set.

        A set holds the centre's ``q`` nearest points among the *near* points
        and ``far`` points spread over the domain, the same for every set:
        they make the approximate cardinal functions small far from their
        centre (the "special points" of Beatson, Cherrie and Mouat).
        """
        n = self.n
        special = np.sort(rng.choice(n, size=far, replace=False)) if far else np.zeros(0, int)
        near = np.setdiff1d(np.arange(n), special)
        idx, _ = self._knn(self.y, self.y[near], q)
        sets = np.concatenate([near[idx], np.broadcast_to(special, (n, far))], axis=1)
        centre = np.zeros(n, dtype=np.int64)  # a near point is its own nearest near point
        centre[special] = q + np.arange(far)
        return sets, centre

    def _cardinal(self, sets: np.ndarray, centre: np.ndarray) -> scipy.sparse.csc_matrix:
        """Sparse ``C``: column i holds the coefficients of the cardinal function of i."""
        n, q = sets.shape
        m = self.powers.shape[0]
        vals = np.empty((n, q))
        chunk = max(1, int(2**23 // ((q + m) ** 2 * 8)))  # ~8 MiB per local-system block
        ar = np.arange(q)
        for start in range(0, n, chunk):
            sl = slice(start, min(n, start + chunk))
            nb = sets[sl]
            b = nb.shape[0]
            pts = self.y[nb]  # (b, q, ndim)
            s2 = np.zeros((b, q, q))
            for k in range(pts.shape[2]):  # one coordinate at a time: no (b, q, q, ndim)
                diff = pts[:, :, None, k] - pts[:, None, :, k]
                s2 += diff * diff
            s2 *= self.epsilon**2
            B = np.zeros((b, q + m, q + m))
            B[:, :q, :q] = self.phi.numpy(s2)
            B[:, ar, ar] += self.smoothing[nb]
            if m:
                # monomials in local coordinates: same span, better conditioned
                origin = self.y[nb[:, 0]][:, None, :]
                h = np.sqrt(((pts - origin) ** 2).sum(-1).max(1))[:, None, None]
                h = np.where(h > 0, h, 1.0)
                Pl = np.prod(((pts - origin) / h)[:, :, None, :] ** self.powers, axis=-1)
                B[:, :q, q:] = Pl
                B[:, q:, :q] = Pl.transpose(0, 2, 1)
            rhs = np.zeros((b, q + m, 1))
            rhs[np.arange(b), centre[sl], 0] = 1.0
            try:
                sol = np.linalg.solve(B, rhs)
            except np.linalg.LinAlgError:
                sol = np.stack([np.linalg.lstsq(Bk, rk, rcond=None)[0] for Bk, rk in zip(B, rhs)])
            vals[sl] = sol[:, :q, 0]
        indptr = np.arange(0, n * q + 1, q)
        return scipy.sparse.csc_matrix((vals.ravel(), sets.ravel(), indptr), shape=(n, n))

    # ------------------------------------------------------------------
    def kernel_matmat(self, V: np.ndarray) -> np.ndarray:
        """``Phi @ V`` (one engine reduction)."""
        f = ir.make("mul", self.formula, ir.var(2, ir.J, V.shape[1]))
        return autograd.reduce(f, "sum", (self.y, self.y, V), (ir.I, ir.J, ir.J))

    def A(self, V: np.ndarray) -> np.ndarray:
        return self.kernel_matmat(V) + self.smoothing[:, None] * V

    def project(self, V: np.ndarray) -> np.ndarray:
        return V if self.Q is None else V - self.Q @ (self.Q.T @ V)

    def solve(self, d: np.ndarray, rtol: float = 1e-10, maxiter: int = 500, restart: int = 100):
        """Coefficients ``(c, w)`` for data ``d`` of shape ``(n, k)``; and a SaddleInfo."""
        t0 = time.perf_counter()
        n = self.n
        info = SaddleInfo(setup_seconds=self.setup_seconds)
        C = self.C

        def product(u):
            info.products += 1
            return self.project(self.A(C @ u.reshape(n, 1)))[:, 0]

        op = LinearOperator((n, n), matvec=product, dtype=np.float64)
        c = np.zeros_like(d)
        for k in range(d.shape[1]):
            rhs = self.project(d[:, k : k + 1])[:, 0]
            norm = float(np.linalg.norm(rhs))
            # data in the span of the polynomials (or as many points as monomials):
            # what is left after the projection is rounding, c = 0
            if norm <= 1e-12 * float(np.linalg.norm(d[:, k])) or self.powers.shape[0] >= n:
                info.residual.append(0.0)
                continue
            count = [0]

            def progress(r, count=count, k=k):
                count[0] += 1
                if self.verbose and count[0] % 10 == 0:
                    self._log(f"saddle: column {k}, iteration {count[0]}, residual {r:.2e}")

            u, status = gmres(
                op,
                rhs,
                rtol=rtol,
                atol=0.0,
                restart=min(restart, n),
                maxiter=max(1, math.ceil(maxiter / min(restart, n))),
                callback=progress,
                callback_type="pr_norm",
            )
            c[:, k] = C @ u
            res = float(np.linalg.norm(self.project(self.A(c[:, k : k + 1]))[:, 0] - rhs)) / norm
            info.residual.append(res)
            if status != 0 or not res <= max(10 * rtol, 1e-14):
                info.converged = False
        if not info.converged:
            warnings.warn(
                f"interpolation system: GMRES did not reach rtol={rtol:g} in {maxiter} "
                f"iterations (relative residuals {max(info.residual):.2e}); raise maxiter "
                "or neighbors",
                ConvergenceWarning,
                stacklevel=3,
            )
        if self.Q is not None:
            w = scipy.linalg.solve_triangular(self.R, self.Q.T @ (d - self.A(c)))
        else:
            w = np.zeros((0, d.shape[1]))
        info.solve_seconds = time.perf_counter() - t0
        return c, w, info

    # ------------------------------------------------------------------
    def evaluate(self, x: np.ndarray, c: np.ndarray, w: np.ndarray) -> np.ndarray:
        """The interpolant at points ``x`` (one reduction over the n centres)."""
        f = ir.make("mul", self.formula, ir.var(2, ir.J, c.shape[1]))
        out = autograd.reduce(f, "sum", (x, self.y, c), (ir.I, ir.J, ir.J))
        if self.Q is not None:
            out = out + polynomial_matrix((x - self.shift) / self.scale, self.powers) @ w
        return out
