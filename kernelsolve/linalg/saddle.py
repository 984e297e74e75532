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
GMRES solves ``Pi A M u = Pi d`` with ``M = C``, close to the identity on the
high-frequency part of the data.

Local cardinal functions do not see the smooth, global part of the data: alone,
the iteration count grows with ``n`` (10, 16, 48 products at 1e3, 5e3, 2e4
thin-plate-spline points of the Jacksboro DEM), and stalls when the kernel
couples points far beyond a neighbourhood. From ``COARSE_MIN`` points on, ``M``
is two-level (the coarse space of two-level
domain decomposition, as in Beatson, Light and Billings, 2000):
``n / COARSE_RATIO`` well-spread points (one per cell of a grid) are
interpolated exactly by a dense LU, and the cardinal functions correct what
is left (coarse, then local: a multiplicative combination; the additive one
needed 66 iterations at 2e4 instead of 11)::

    g = E S_c^-1 [E^T u; 0],     M u = g + C (u - Pi A g),

so an iteration costs one product with ``A`` and one with its columns at the
coarse points (``n x n / 20`` kernel evaluations, or one FMM product). On the
DEM: 13 iterations at 5e3 and 2e4, 12 at 1e5. The coarse set is capped at
``COARSE_MAX`` points (dense ``COARSE_MAX^2`` memory), so beyond
``COARSE_RATIO * COARSE_MAX`` points the count will slowly grow again.

The coarse level is skipped only where it does not pay: for a kernel that has
decayed within the neighbourhood of a cardinal function (its *reach*, the share
of its variation over the domain left beyond the ``neighbors``-th nearest point,
below ``REACH_MIN``; e.g. a Gaussian with ``epsilon`` times the spacing near 1),
it only adds iterations (17 -> 29 measured). Growing kernels have reach 1.

Products with ``Phi`` are engine reductions, or, for the thin-plate spline in
2-D from ``FMM_MIN`` quasi-uniform points on, the fast multipole method of
:mod:`.fmm2d` (``O(n)`` per product instead of ``n^2`` kernel evaluations,
about 0.4 s instead of 30 s at 1e5 points; rounding-level error, ~1e-16 of
``|Phi| |c|``). GMRES: classical Gram-Schmidt (twice), one true residual from
``c = M u`` per restart cycle (its ``A c`` also gives ``w = R^-1 Q^T (d - A c)``).
Memory: ``O(n (neighbors + restart))``, the FMM's near field (~2.4 kB per point)
and the dense coarse system.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import scipy.linalg
import scipy.sparse
from scipy.spatial import cKDTree

from ..engine import ir
from ..engine.ranges.approx_kernel import ApproxKernel
from ..engine.ranges.approx_reduce import check_tol
from ..progress import Progress
from ..tolerance import KRIGING_RTOL, check_tolerances, keywords
from .blas import one_blas_thread
from .cg import ConvergenceWarning
from .fmm2d import TPSFMM2D, fmm_worthwhile
from .monomials import monomial_powers, polynomial_matrix
from .operator import kernel_sum
from .radial import RadialKernel, kernel_formula
from .rbf_checks import repeated_unsmoothed
from .rbf_direct import poly_frame, saddle_matrix
from .saddle_info import SaddleInfo

__all__ = ["monomial_powers", "polynomial_matrix", "SaddleSolver", "SaddleInfo"]

COARSE_RATIO = 20  # points per coarse point
COARSE_FLOOR = 200  # ... but at least this many coarse points (and at most n / 5)
COARSE_MIN = 1000  # fewer points: one level (cardinal functions with far points)
COARSE_MAX = 6000  # dense coarse system of at most ~290 MB
REACH_MIN = 0.1  # kernels with a smaller reach (see SaddleSolver._reach): one level
GIVE_UP_EVERY = 25  # iterations between two checks of give_up within a cycle ...
GIVE_UP_AFTER = 20.0  # ... once a column has run this many seconds
FMM_MIN = 5000  # fewer points: engine products (exact, and fast enough)


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
    neighbors : int, optional
        Points per approximate cardinal function (default 50; 30 with the coarse
        level and FMM products, where the setup dominates).
    far_points : int, optional
        Points spread over the domain added to every cardinal function (default 30
        with one level, 0 with the coarse level, which does their job).
    coarse : int or "auto"
        Points of the coarse level (0: none); "auto": ``n / 20`` (at least 200,
        at most ``n / 5`` and 6000) from 1000 points on, unless the kernel has
        decayed within the neighbourhood of a cardinal function (attribute
        ``reach`` below 0.1): always for the kernels that grow with ``r``, and for
        bounded ones (kriging's variograms, Gaussians) whose length scale spans
        several data spacings.
    products : {"auto", "engine", "fmm"}
        How products with the kernel matrix are computed; "fmm" needs the
        thin-plate spline in 2-D; "auto" uses it from 5000 quasi-uniform points on.
    seed : int
        Seed of the far points.
    tol : float, optional
        Engine products skip the block pairs holding at most ``tol`` of each
        row's ``sum_j |K_ij|`` (one symmetric pattern,
        :class:`~kernelsolve.engine.ranges.approx_kernel.ApproxKernel`; pays for
        kernels that decay, e.g. gaussian; None: exact).
    verbose : bool
        Progress to stderr.

    Example
    -------
    >>> import numpy as np
    >>> from kernelsolve.linalg.radial import KERNELS
    >>> y = np.random.default_rng(0).random((300, 2))
    >>> s = SaddleSolver(y, KERNELS["thin_plate_spline"], 1.0, np.zeros(300),
    ...                  monomial_powers(2, 1))
    >>> c, w, info = s.solve(np.sin(3 * y[:, :1]))
    >>> bool(np.allclose(s.evaluate(y, c, w), np.sin(3 * y[:, :1]), atol=1e-6))
    True
    """

    def __init__(
        self,
        y: np.ndarray,
        phi: RadialKernel,
        epsilon: float,
        smoothing: np.ndarray,
        powers: np.ndarray,
        *,
        neighbors: int | None = None,
        far_points: int | None = None,
        coarse: int | str = "auto",
        products: str = "auto",
        seed: int = 0,
        verbose: bool = False,
        tol: float | None = None,
    ):
        t0 = time.perf_counter()
        self.tol, self._approx = check_tol(tol), None
        self.y, self.phi, self.epsilon = y, phi, float(epsilon)
        self.smoothing, self.powers, self.verbose = smoothing, powers, verbose
        n, ndim = y.shape
        self.n = n
        self.formula = kernel_formula(phi.formula, ndim, self.epsilon)
        self.shift, self.scale = poly_frame(y)
        m = powers.shape[0]
        if m:
            P = polynomial_matrix((y - self.shift) / self.scale, powers)
            self.Q, self.R = np.linalg.qr(P)
            rank = int(np.linalg.matrix_rank(self.R))
            if rank < m:  # LinAlgError is a ValueError; scipy's wording
                raise np.linalg.LinAlgError(
                    f"the {m} monomials of the polynomial tail are linearly dependent at the "
                    "points (e.g. collinear points with degree 1): the matrix of monomials "
                    f"does not have full column rank ({rank}/{m}); lower the degree"
                )
        else:
            self.Q = self.R = None
        self.tree = cKDTree(y)
        self._check_distinct()
        self.fmm = self._make_fmm(products)
        self.product = "fmm" if self.fmm is not None else "engine"
        self.reach = self._reach(50 if neighbors is None else int(neighbors))
        n_coarse = self._coarse_size(coarse)
        two_level = n_coarse > 0
        if neighbors is None:  # cheap FMM products: a cheaper setup pays off
            neighbors = 30 if two_level and self.fmm is not None else 50
        far_default = far_points is None
        if far_default:
            far_points = 0 if two_level else 30
        q = int(min(max(neighbors, 2 * m + 1), n))
        far = int(min(far_points, n - q))
        self.coarse_idx = self.coarse_lu = None
        if two_level:
            with one_blas_thread():  # see .blas
                self._make_coarse(n_coarse)
            if self.coarse_idx is None and far_default:  # singular: one level after all
                far = int(min(30, n - q))
        self._log(
            f"{n} points (reach {self.reach:.2f}), {q} neighbours + {far} far points "
            f"per cardinal function, products by {self.product}"
        )
        sets, centre = self._local_sets(q, far, np.random.default_rng(seed))
        with one_blas_thread():
            self.C = self._cardinal(sets, centre)
        self.setup_seconds = time.perf_counter() - t0
        self._log(f"preconditioner ready in {self.setup_seconds:.1f} s")

    # ------------------------------------------------------------------
    def _log(self, msg: str) -> None:
        Progress("saddle", enabled=self.verbose).write(msg)

    def _check_distinct(self) -> None:
        pair = repeated_unsmoothed(self.y, self.smoothing, self.tree)
        if pair is not None:
            raise ValueError(
                f"y holds duplicate points (e.g. point {pair[0]} and point {pair[1]}) without "
                "smoothing; an interpolating spline needs distinct points (average or drop "
                "duplicates, or smooth them)"
            )

    def _make_fmm(self, products: str):
        if products not in ("auto", "engine", "fmm"):
            raise ValueError(f"products={products!r}: expected 'auto', 'engine' or 'fmm'")
        able = self.phi.name == "thin_plate_spline" and self.y.shape[1] == 2
        if products == "fmm" and not able:
            raise ValueError(
                "products='fmm' needs kernel='thin_plate_spline' and 2-D points, got "
                f"kernel={self.phi.name!r} in {self.y.shape[1]}-D"
            )
        if products == "engine" or not able:
            return None
        if products == "auto" and not (self.n >= FMM_MIN and fmm_worthwhile(self.y)):
            return None
        t = time.perf_counter()
        fmm = TPSFMM2D(self.y, self.epsilon)
        self._log(
            f"FMM with {fmm.level} levels, {fmm.near_pairs / self.n:.0f} near "
            f"pairs per point, ready in {time.perf_counter() - t:.1f} s"
        )
        return fmm

    def _reach(self, q: int) -> float:
        """Share of the kernel's variation over the domain that lies beyond the
        neighbourhood of a cardinal function: ``|phi(R) - phi(D)| / |phi(0) - phi(D)|``
        with ``R`` the median distance from a point to its ``q``-th nearest point and
        ``D`` the diameter of the bounding box (both times ``epsilon``). 1 for the
        kernels that grow with ``r``, or decay over many neighbourhoods; 0 for a kernel
        that has decayed within one."""
        n = self.n
        if n < 2:
            return 0.0
        rng = np.random.default_rng(0)
        sample = self.y[rng.choice(n, size=min(n, 256), replace=False)]
        dist, _ = self.tree.query(sample, min(q, n))
        R = float(np.median(np.asarray(dist).reshape(len(sample), -1)[:, -1])) * self.epsilon
        D = float(np.linalg.norm(self.y.max(0) - self.y.min(0))) * self.epsilon
        with np.errstate(all="ignore"):
            p0, pR, pD = (float(v) for v in self.phi.numpy(np.array([0.0, R * R, D * D])))
        span = abs(p0 - pD)
        if not (np.isfinite(span) and span > 0 and np.isfinite(pR)):
            return 1.0
        return float(min(max(abs(pR - pD) / span, 0.0), 1.0))

    def _coarse_size(self, coarse) -> int:
        m = self.powers.shape[0]
        if isinstance(coarse, str):
            if coarse != "auto":
                raise ValueError(f"coarse={coarse!r}: expected 'auto' or a number of points")
            # The local cardinal functions only see their neighbourhood: they fail on the
            # part of the data that the kernel couples over longer distances, which is
            # what the coarse level solves for. So: two levels unless the kernel has
            # decayed within a neighbourhood (reach < REACH_MIN). Measured (iterations,
            # one level -> two): 2-D DEM kriging at 5000 points, reach 0.3 to 0.5:
            # exponential 7 -> 6, matern 1.5 14 -> 7, spherical 66 -> 10, gaussian
            # 200+ -> 14, matern 2.5 200+ -> 9; RBFs with epsilon * spacing = 1 in
            # 2-D: inverse multiquadric (reach 0.24) 10 -> 7, inverse quadratic (0.06)
            # 8 -> 11, gaussian (0.00) 17 -> 29; 1-D gaussian (0.00) 11 -> 32; growing
            # kernels (reach 1) from 1000 points on: thin-plate spline 9 -> 6, cubic
            # in 3-D 77 -> 12.
            if self.n < COARSE_MIN or self.reach < REACH_MIN:
                return 0
            coarse = min(max(self.n // COARSE_RATIO, COARSE_FLOOR), self.n // 5, COARSE_MAX)
        coarse = int(coarse)
        if coarse < 0:
            raise ValueError(f"coarse must be >= 0 or 'auto', got {coarse}")
        if coarse == 0:
            return 0
        return min(max(coarse, 4 * m + 4), self.n)

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
        if far:
            near = np.setdiff1d(np.arange(n), special)
            tree = cKDTree(self.y[near])
        else:
            near, tree = np.arange(n), self.tree
        _, idx = tree.query(self.y, q)
        idx = np.asarray(idx).reshape(n, q)
        sets = np.concatenate([near[idx], np.broadcast_to(special, (n, far))], axis=1)
        # a near point is among its own nearest near points (first, unless repeated)
        own = sets[:, :q] == np.arange(n)[:, None]
        missing = ~own.any(1) & ~np.isin(np.arange(n), special)  # far points: below
        sets[missing, 0] = np.flatnonzero(missing)  # many copies of a point: it replaces one
        own[missing, 0] = True
        centre = np.argmax(own, axis=1).astype(np.int64)
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

    def _coarse_points(self, count: int) -> np.ndarray:
        """About ``count`` well-spread points: in each cell of a grid over the bounding
        box (``count`` cells), the point nearest to the cell's centre."""
        y = self.y
        lo, hi = y.min(0), y.max(0)
        ext = np.where(hi > lo, hi - lo, 1.0)
        side = (np.prod(ext) / count) ** (1.0 / y.shape[1])
        cells = np.maximum(np.ceil(ext / side), 1).astype(np.int64)
        cell = np.minimum(((y - lo) / ext * cells).astype(np.int64), cells - 1)
        key = np.ravel_multi_index(cell.T, cells)
        dist = (((y - lo) / ext * cells - cell - 0.5) ** 2).sum(1)
        order = np.lexsort((dist, key))
        first = np.r_[True, key[order][1:] != key[order][:-1]]
        return np.sort(order[first])

    def _make_coarse(self, count: int) -> None:
        """The coarse level: a dense LU of the saddle system on well-spread points."""
        t = time.perf_counter()
        idx = self._coarse_points(count)
        mc = len(idx)
        S = saddle_matrix(
            self.y[idx],
            self.smoothing[idx],
            self.phi,
            self.epsilon,
            self.powers,
            self.shift,
            self.scale,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            lu = scipy.linalg.lu_factor(S, overwrite_a=True, check_finite=False)
        diag = np.abs(np.diag(lu[0]))
        if not np.all(np.isfinite(diag)) or diag.min() <= 1e-13 * diag.max():
            self._log("coarse system singular to working precision: one level only")
            return
        self.coarse_idx, self.coarse_lu = idx, lu
        self._log(f"coarse level of {mc} points, factorized in {time.perf_counter() - t:.1f} s")

    # ------------------------------------------------------------------
    def kernel_matmat(self, V: np.ndarray) -> np.ndarray:
        """``Phi @ V`` (one engine reduction, or one FMM evaluation)."""
        if self.fmm is not None:
            return self.fmm.matmat(V)
        if self.tol:
            if self._approx is None:
                self._approx = ApproxKernel(self.formula, (self.y, self.y), (ir.I, ir.J), self.tol)
            return self._approx.matmat(V)
        return kernel_sum(self.formula, self.y, self.y, V)

    @property
    def skipped_pairs(self) -> float:
        """``tol=``: the fraction of the point pairs each product skips."""
        return 0.0 if self._approx is None else self._approx.info["skipped_pairs"]

    def A(self, V: np.ndarray) -> np.ndarray:
        return self.kernel_matmat(V) + self.smoothing[:, None] * V

    def project(self, V: np.ndarray) -> np.ndarray:
        return V if self.Q is None else V - self.Q @ (self.Q.T @ V)

    def _coarse_step(self, u: np.ndarray, info: SaddleInfo):
        """``g = E S_c^-1 [E^T u; 0]`` (length n) and ``Pi A g``."""
        idx, mc = self.coarse_idx, len(self.coarse_idx)
        rhs = np.zeros(mc + self.powers.shape[0])
        rhs[:mc] = u[idx]
        gamma = scipy.linalg.lu_solve(self.coarse_lu, rhs, check_finite=False)[:mc]
        g = np.zeros(self.n)
        g[idx] = gamma
        info.coarse_products += 1
        if self.fmm is not None:
            Ag = self.fmm.matmat(g[:, None])
        else:  # only the coarse columns: n x mc kernel evaluations
            yc = np.ascontiguousarray(self.y[idx])
            Ag = kernel_sum(self.formula, self.y, yc, gamma[:, None])
        Ag[:, 0] += self.smoothing * g
        return g, self.project(Ag)[:, 0]

    def precondition(self, u: np.ndarray, info: SaddleInfo) -> np.ndarray:
        """``M u``: coefficients that satisfy the constraint, close to the solution
        for data ``u``."""
        if self.coarse_idx is None:
            return self.C @ u
        g, Ag = self._coarse_step(u, info)
        return g + self.C @ (u - Ag)

    @keywords(refused={"tol": "rtol", "eps": "rtol"})
    def solve(
        self,
        d: np.ndarray,
        rtol: float = KRIGING_RTOL,
        maxiter: int = 500,
        restart: int = 100,
        *,
        warn: bool = True,
        give_up: bool = False,
    ):
        """Coefficients ``(c, w)`` for data ``d`` of shape ``(n, k)``; and a SaddleInfo.

        GMRES runs column by column and stops a column when the relative residual of
        the system projected on ``P^T c = 0`` (recomputed with a true product) is
        ``||r|| <= rtol ||b||`` (see :mod:`.tolerance`), or after ``maxiter`` iterations
        (a ConvergenceWarning unless ``warn`` is False: ``info.converged`` says it); it
        restarts every ``restart`` iterations. The default 1e-10 is for direct use; the
        interpolator and kriging pass their own. ``give_up``: stop a column at the end
        of a restart cycle when, at the best rate seen so far, ``rtol`` is out of reach
        within ``maxiter`` (``info.gave_up``), instead of spending them all.
        """
        check_tolerances(rtol, 0.0, maxiter)
        t0 = time.perf_counter()
        n = self.n
        info = SaddleInfo(setup_seconds=self.setup_seconds, product=self.product)
        c = np.zeros_like(d)
        Ac = np.zeros_like(d)
        for k in range(d.shape[1]):
            rhs = self.project(d[:, k : k + 1])[:, 0]
            norm = float(np.linalg.norm(rhs))
            # data in the span of the polynomials (or as many points as monomials):
            # what is left after the projection is rounding, c = 0
            if norm <= 1e-12 * float(np.linalg.norm(d[:, k])) or self.powers.shape[0] >= n:
                info.residual.append(0.0)
                continue
            # GMRES's Gram-Schmidt runs between the engine's products: one BLAS thread
            with Progress("saddle GMRES", enabled=self.verbose) as report, one_blas_thread():
                ck, Ack, res, ok = self._gmres(
                    rhs, norm, k, rtol, maxiter, min(restart, n), info, report, give_up
                )
            c[:, k], Ac[:, k] = ck, Ack
            info.residual.append(res)
            if not ok:
                info.converged = False
        if warn and not info.converged:
            warnings.warn(
                f"interpolation system: GMRES did not reach rtol={rtol:g} in {maxiter} "
                f"iterations (relative residuals {max(info.residual):.2e}); raise maxiter, "
                "neighbors or coarse",
                ConvergenceWarning,
                stacklevel=5,  # KernelInterpolator's caller (past two keywords wrappers)
            )
        if self.Q is not None:
            w = scipy.linalg.solve_triangular(self.R, self.Q.T @ (d - Ac))
        else:
            w = np.zeros((0, d.shape[1]))
        info.solve_seconds = time.perf_counter() - t0
        info.skipped_pairs = self.skipped_pairs
        return c, w, info

    def _gmres(self, rhs, norm, col, rtol, maxiter, restart, info, report: Progress, give_up):
        """Right-preconditioned restarted GMRES on ``Pi A M u = rhs``.

        Arnoldi with classical Gram-Schmidt, repeated once (stable, and two matrix-vector
        BLAS calls per step), Givens rotations for the small least-squares problem.
        Each cycle ends with the true residual from ``c = M u`` and one product ``A c``,
        which also gives ``A c`` for the polynomial part. Returns ``(c, A c, relative
        residual, converged)``.
        """
        n = self.n
        u = np.zeros(n)
        r = rhs.copy()
        rnorm = norm
        its = 0
        cycle_start = 1.0  # relative residual at the start of the cycle
        started = time.perf_counter()
        while True:
            V = np.empty((restart + 1, n))
            H = np.zeros((restart + 1, restart))
            cs, sn = np.zeros(restart), np.zeros(restart)
            g = np.zeros(restart + 1)
            g[0] = rnorm
            V[0] = r / rnorm
            j = 0
            while j < restart and its < maxiter:
                Mv = self.precondition(V[j], info)
                wv = self.project(self.A(Mv[:, None]))[:, 0]
                info.products += 1
                its += 1
                h = V[: j + 1] @ wv
                wv -= h @ V[: j + 1]
                h2 = V[: j + 1] @ wv
                wv -= h2 @ V[: j + 1]
                h += h2
                H[: j + 1, j] = h
                hn = float(np.linalg.norm(wv))
                H[j + 1, j] = hn
                for i in range(j):  # earlier rotations
                    a, b = H[i, j], H[i + 1, j]
                    H[i, j], H[i + 1, j] = cs[i] * a + sn[i] * b, -sn[i] * a + cs[i] * b
                rho = math.hypot(H[j, j], hn)
                cs[j], sn[j] = (1.0, 0.0) if rho == 0 else (H[j, j] / rho, hn / rho)
                H[j, j], H[j + 1, j] = rho, 0.0
                g[j + 1] = -sn[j] * g[j]
                g[j] *= cs[j]
                j += 1
                est = abs(g[j]) / norm
                report.update(1, f"column {col}, iteration {its}, residual {est:.2e}")
                if est <= rtol or hn <= 1e-14 * rnorm:
                    break
                # within a cycle only after GIVE_UP_AFTER s (2e4 points: minutes per cycle);
                # small fits wait for its end, as GMRES often speeds up late
                stalled = give_up and j % GIVE_UP_EVERY == 0
                stalled = stalled and time.perf_counter() - started > GIVE_UP_AFTER
                if stalled and _out_of_reach(est, cycle_start, its, j, rtol, maxiter):
                    break
                V[j] = wv / hn
            if j:
                yk = scipy.linalg.solve_triangular(H[:j, :j], g[:j])
                u += yk @ V[:j]
            info.iterations += j
            c = self.precondition(u, info)
            Ac = self.A(c[:, None])[:, 0]
            info.products += 1
            r = rhs - self.project(Ac[:, None])[:, 0]
            rnorm = float(np.linalg.norm(r))
            res = rnorm / norm
            ok = res <= max(rtol, 1e-14)
            if res <= rtol or its >= maxiter or j == 0:
                return c, Ac, res, ok
            if give_up and _out_of_reach(res, cycle_start, its, max(j, 1), rtol, maxiter):
                info.gave_up = True
                return c, Ac, res, ok
            cycle_start = res
            report.write(f"column {col}, restart after {its} iterations, residual {res:.2e}")

    # ------------------------------------------------------------------
    def evaluate(self, x: np.ndarray, c: np.ndarray, w: np.ndarray, dtype=None) -> np.ndarray:
        """The interpolant at points ``x`` (one reduction over the n centres, in
        ``dtype`` if given: see :func:`.operator.kernel_sum`)."""
        out = kernel_sum(self.formula, x, self.y, c, dtype=dtype)
        if self.Q is not None:
            out = out + polynomial_matrix((x - self.shift) / self.scale, self.powers) @ w
        return out


def _out_of_reach(res: float, start: float, its: int, cycle: int, rtol, maxiter) -> bool:
    """True when neither the mean rate of progress so far nor the last cycle's reaches
    ``rtol`` (with a factor 10 to spare) in the ``maxiter - its`` iterations left."""
    mean = math.log(max(res, 1e-300)) / its  # log of the mean reduction per iteration
    best = min(mean, math.log(max(res / start, 1e-300)) / max(cycle, 1))
    return best >= 0 or math.log(res) + best * (maxiter - its) > math.log(10 * rtol)
