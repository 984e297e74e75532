"""The three ways :mod:`.kriging` solves the kriging system for the data and for the
kriging variances: closed form (pure nugget), GMRES on the saddle-point system
(any variogram) and batched CG on the covariance (bounded models with a nugget).

Each solver takes the (anisotropy-adjusted) points, the :class:`~.variogram.Variogram`,
the drift monomials and the data, solves at construction, and offers
``predict(xy)``, ``variance(xy)`` and the record ``info``. Why each works, and
when ``solver="auto"`` picks which, is in ``docs/kriging.md``.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg

from .. import autograd
from ..engine import ir
from ..engine.request import ReductionRequest
from . import precond as precond_mod
from .cg import cg
from .operator import KernelOperator, kernel_sum
from .radial import RadialKernel, kernel_formula
from .saddle import SaddleInfo, SaddleSolver, polynomial_matrix
from .variogram import BOUNDED_MODELS, Variogram

__all__ = [
    "DriftBasis",
    "NuggetSolver",
    "SaddleKrigingSolver",
    "CovarianceCGSolver",
    "choose_solver",
    "local_variance",
]

CG_MAX_CELLS = 150.0  # solver="auto": CG when the data span at most this many length scales^2
CG_MIN_NUGGET = 1e-6  # ... and the nugget is at least this fraction of the partial sill


def choose_solver(v: Variogram, xy: np.ndarray, solver: str) -> str:
    """The solver of ``solver="auto"`` (or a check of the one asked for): "nugget"
    for a pure nugget (closed form), "cg" for smooth bounded models with a nugget
    over few length scales, "saddle" otherwise (``docs/kriging.md``)."""
    if v.amplitude == 0:
        return "nugget"  # Phi = 0: closed form
    bounded = v.model.name in BOUNDED_MODELS
    if solver == "cg" and not (bounded and v.nugget > 0):
        raise ValueError(
            "solver='cg' needs a bounded variogram model (a covariance) with a nugget > 0, "
            f"got {v}"
        )
    if solver == "auto":
        smooth = v.model.name == "gaussian" or (v.model.name == "matern" and v.key > 1)
        extent = (xy.max(0) - xy.min(0)) / v.length
        cells = float(np.prod(np.maximum(extent, 1.0)))
        low_rank = cells <= CG_MAX_CELLS
        shifted = v.nugget >= CG_MIN_NUGGET * v.amplitude
        return "cg" if bounded and shifted and smooth and low_rank else "saddle"
    return solver


def _knn(x: np.ndarray, pts: np.ndarray, k: int):
    """``k`` nearest of ``pts`` for every row of ``x``: squared distances, indices."""
    ndim = pts.shape[1]
    f = ir.make("sqdist", ir.var(0, ir.I, ndim), ir.var(1, ir.J, ndim))
    d2, idx = autograd.reduce(ReductionRequest(f, "kmin_argkmin", (x, pts), (ir.I, ir.J), K=k))
    return d2.reshape(len(x), k), idx.reshape(len(x), k)


def local_variance(
    data: np.ndarray, v: Variogram, powers: np.ndarray, xy: np.ndarray, q: int
) -> np.ndarray:
    """Kriging variances at ``xy`` from the dense kriging system on each target's ``q``
    nearest data points: an upper bound of the exact variance (``docs/kriging.md``)."""
    d2, idx = _knn(xy, data, q)
    m = powers.shape[0]
    out = np.empty(len(xy))
    chunk = max(1, (1 << 24) // (8 * (q + m) ** 2))
    ar = np.arange(q)
    for a in range(0, len(xy), chunk):
        sl = slice(a, min(len(xy), a + chunk))
        pts = data[idx[sl]]  # (b, q, d)
        rel = pts - xy[sl, None, :]
        b = rel.shape[0]
        D = np.sqrt(((pts[:, :, None, :] - pts[:, None, :, :]) ** 2).sum(-1))
        M = np.zeros((b, q + m, q + m))
        M[:, :q, :q] = -v.gamma_continuous(D)
        M[:, ar, ar] += v.nugget
        h = np.sqrt((rel**2).sum(-1).max(1))[:, None, None]
        Pl = np.prod((rel / np.where(h > 0, h, 1.0))[:, :, None, :] ** powers, axis=-1)
        M[:, :q, q:] = Pl
        M[:, q:, :q] = Pl.transpose(0, 2, 1)
        rhs = np.zeros((b, q + m))
        rhs[:, :q] = -v.gamma_continuous(np.sqrt(np.maximum(d2[sl], 0.0)))
        rhs[:, q:] = polynomial_matrix(np.zeros((1, data.shape[1])), powers)[0]
        try:
            sol = np.linalg.solve(M, rhs[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            sol = np.stack([np.linalg.lstsq(Mk, rk, rcond=None)[0] for Mk, rk in zip(M, rhs)])
        out[sl] = v.nugget - (sol * rhs).sum(1)
    return out


class DriftBasis:
    """The drift monomials in coordinates centred and scaled to [-1, 1]."""

    def __init__(self, xy: np.ndarray, powers: np.ndarray, shift=None, scale=None):
        lo, hi = xy.min(0), xy.max(0)
        self.shift = (lo + hi) / 2 if shift is None else shift
        self.scale = np.where(hi > lo, (hi - lo) / 2, 1.0) if scale is None else scale
        self.powers = powers
        self.P = self(xy)

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        return polynomial_matrix((xy - self.shift) / self.scale, self.powers)


_SADDLE_BLOCK = 16  # right-hand sides per saddle solve (GMRES runs them one by one)
_CG_BLOCK = 64  # right-hand sides per batched CG solve (one product serves them all)


def _padded_chunks(k: int, size: int):
    """Slices of ``range(k)`` of length ``size`` (the last one padded by the caller with
    zero columns): a fixed number of columns keeps one compiled reduction."""
    for a in range(0, k, size):
        yield slice(a, min(k, a + size))


def _pad(V: np.ndarray, size: int) -> np.ndarray:
    """Zero columns up to ``size``: both solvers skip them at no cost."""
    if V.shape[1] == size:
        return V
    return np.concatenate([V, np.zeros((V.shape[0], size - V.shape[1]))], axis=1)


class NuggetSolver:
    """Pure nugget (``gamma_c = 0``): ``A = nugget I``, the drift is a least-squares fit,
    ``sigmasq = nugget (1 + p0^T (P^T P)^-1 p0)``."""

    def __init__(self, xy, v: Variogram, powers, z):
        self.v = v
        self.basis = DriftBasis(xy, powers)
        self.Q, self.R = np.linalg.qr(self.basis.P)
        self.w = scipy.linalg.solve_triangular(self.R, self.Q.T @ z)
        self.info = SaddleInfo()

    def predict(self, xy, dtype=None):
        return self.basis(xy) @ self.w

    def variance(self, xy):
        r = scipy.linalg.solve_triangular(self.R, self.basis(xy).T, trans="T")
        return self.v.nugget * (1.0 + (r**2).sum(0))


class SaddleKrigingSolver:
    """The saddle-point solver with the normalized kernel ``-g`` (any variogram)."""

    def __init__(
        self, xy, v: Variogram, powers, z, *, neighbors, coarse, seed, rtol, maxiter, verbose
    ):
        self.v, self.rtol, self.maxiter = v, rtol, maxiter
        self.yn = np.ascontiguousarray(xy / v.length)
        n = len(xy)
        self.s = SaddleSolver(
            self.yn,
            v.kernel(),
            1.0,
            np.full(n, v.nugget / v.amplitude),
            powers,
            neighbors=neighbors,
            coarse=coarse,
            seed=seed,
            verbose=verbose,
        )
        self.basis = DriftBasis(self.yn, powers, self.s.shift, self.s.scale)
        self.c, self.w, self.info = self.s.solve(z[:, None].copy(), rtol=rtol, maxiter=maxiter)
        self._drift = None

    def predict(self, xy, dtype=None):
        xn = np.ascontiguousarray(xy / self.v.length)
        return self.s.evaluate(xn, self.c, self.w, dtype)[:, 0]

    def drift_basis(self):
        """``S [0; I]``: weights and multipliers of the polynomial part of a right-hand side."""
        if self._drift is None:
            s = self.s
            m = s.Q.shape[1]
            L = s.Q @ scipy.linalg.solve_triangular(s.R, np.eye(m), trans="T")
            L = _pad(L, _SADDLE_BLOCK)  # zero columns: the same compiled product as below
            c, w, _ = s.solve(-s.A(L), rtol=self.rtol, maxiter=self.maxiter)
            self._drift = ((L + c)[:, :m], w[:, :m])
        return self._drift

    def variance(self, xy):
        v, s = self.v, self.s
        xn = xy / v.length
        p0 = self.basis(xn)  # (k, m)
        lam_b, nu_b = self.drift_basis()
        phi0 = float(s.phi.numpy(np.zeros(1))[0])
        out = np.empty(len(xy))
        size = _SADDLE_BLOCK
        for sl in _padded_chunks(len(xy), size):
            k0 = s.phi.numpy(((self.yn[:, None, :] - xn[None, sl, :]) ** 2).sum(-1))
            c, w, _ = s.solve(_pad(k0, size), rtol=self.rtol, maxiter=self.maxiter)
            k = k0.shape[1]
            lam = c[:, :k] + lam_b @ p0[sl].T
            nu = w[:, :k] + nu_b @ p0[sl].T
            quad = (k0 * lam).sum(0) + (nu * p0[sl].T).sum(0)
            out[sl] = v.amplitude * (v.nugget / v.amplitude + phi0 - quad)
        return out


class CovarianceCGSolver:
    """Bounded variograms with a nugget: the covariance ``psill (1 - g)`` plus the nugget
    is positive definite, so ``(K + alpha I) [a, B] = [z, P]`` by batched CG with a
    randomly pivoted Cholesky preconditioner, and the constraint by the Schur
    complement: ``w = (P^T B)^-1 P^T a``, ``c = a - B w``."""

    def __init__(self, xy, v: Variogram, powers, z, *, rank, rtol, maxiter, verbose, tol=None):
        self.v, self.rtol, self.maxiter, self.verbose = v, rtol, maxiter, verbose
        self.alpha = v.nugget / v.amplitude
        self.yn = np.ascontiguousarray(xy / v.length)
        shape = v.model.shape
        cov = RadialKernel.of("covariance", lambda m, s, key: 1 - shape(m, s, key), v.key)
        self.formula = kernel_formula(cov.formula, xy.shape[1], 1.0)
        self.numpy = cov.numpy
        self.op = KernelOperator(self.formula, (self.yn, self.yn), (ir.I, ir.J), tol=tol)
        t0 = time.perf_counter()
        self.M = precond_mod.make(self.op, self.alpha, "rpcholesky", rank, verbose=verbose)
        self.basis = DriftBasis(self.yn, powers)
        P = self.basis.P
        m = P.shape[1]
        sol, cg_info = self._solve(_pad(np.column_stack([z, P]), 4))  # OK and UK: one kernel
        a, self.B = sol[:, :1], sol[:, 1 : m + 1]
        self.G = P.T @ self.B  # P^T (K + alpha I)^-1 P, symmetric positive definite
        self.w = np.linalg.solve(self.G, P.T @ a)
        self.c = a - self.B @ self.w
        self.info = SaddleInfo(
            products=cg_info.iterations,
            residual=list(np.atleast_1d(cg_info.residual)),
            converged=bool(cg_info.converged),
            setup_seconds=float(getattr(self.M, "setup_seconds", 0.0)),
            solve_seconds=time.perf_counter() - t0,
            skipped_pairs=self.op.skipped_pairs,
        )

    def _solve(self, B):
        def A(V):
            return self.op.matmat(V) + self.alpha * V

        return cg(A, B, rtol=self.rtol, maxiter=self.maxiter, M=self.M, verbose=self.verbose)

    def predict(self, xy, dtype=None):
        xn = np.ascontiguousarray(xy / self.v.length)
        out = kernel_sum(self.formula, xn, self.yn, self.c, dtype=dtype)
        return out[:, 0] + self.basis(xn) @ self.w[:, 0]

    def variance(self, xy):
        v = self.v
        xn = xy / v.length
        p0 = self.basis(xn)
        P = self.basis.P
        out = np.empty(len(xy))
        size = _CG_BLOCK
        for sl in _padded_chunks(len(xy), size):
            k0 = self.numpy(((self.yn[:, None, :] - xn[None, sl, :]) ** 2).sum(-1))
            k = k0.shape[1]
            a0 = self._solve(_pad(k0, size))[0][:, :k]
            nu = np.linalg.solve(self.G, P.T @ a0 - p0[sl].T)
            lam = a0 - self.B @ nu
            quad = (k0 * lam).sum(0) + (nu * p0[sl].T).sum(0)
            out[sl] = v.amplitude * (self.alpha + 1.0 - quad)
        return out
