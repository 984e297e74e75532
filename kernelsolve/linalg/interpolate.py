"""Radial basis function interpolation: a drop-in for scipy's ``RBFInterpolator``.

:class:`KernelInterpolator` takes ``RBFInterpolator``'s arguments in its order
(``y, d, neighbors, smoothing, kernel, epsilon, degree``) and computes the same
interpolant, by one of three methods:

* ``"direct"`` (:mod:`.rbf_direct`): the dense saddle system, solved by Cholesky
  on the null space of ``P^T`` where the kernel is (conditionally) positive definite
  there, else by LU as scipy; any kernel, any epsilon;
* ``"iterative"`` (:mod:`.saddle`): preconditioned GMRES in ``O(n)`` memory, with
  engine (or FMM) products, for sizes the dense system does not fit;
* ``neighbors=k`` (:mod:`.rbf_local`): scipy's local interpolants of the ``k``
  nearest data points of each evaluation point.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.spatial import KDTree

from .. import dask_predict
from ..engine.ranges.approx_reduce import check_tol
from ..tolerance import INTERPOLATOR_RTOL, check_tolerances, keywords
from .cg import ConvergenceWarning
from .dense import memory_budget
from .fmm2d_eval import TPSEvaluator
from .monomials import polynomial_matrix
from .radial import KERNELS, SCALE_INVARIANT
from .rbf_checks import Checked, check_fit, check_points
from .rbf_direct import direct_bytes, evaluate, solve_direct
from .rbf_local import local_interpolate
from .saddle import SaddleInfo, SaddleSolver

__all__ = ["KernelInterpolator", "ITERATIVE_FROM", "SolverSwitchWarning"]

#: ``solver="auto"``: GMRES from this many points for the kernels on which it converges
#: in a few tens of iterations (it beats LU from ~3000 points, see the class's Notes);
#: the other kernels are solved directly whenever the dense system fits the memory budget.
ITERATIVE_FROM = {"linear": 3000, "thin_plate_spline": 3000}
SOLVERS = ("auto", "direct", "iterative")


@dataclass
class DirectInfo(SaddleInfo):
    """:class:`SaddleInfo` of a direct solve, with the factorization used:
    ``"cholesky"`` (of the kernel block on the null space of ``P^T``),
    ``"pivoted cholesky"`` (of that block where it is singular to working
    precision) or ``"lu"`` (of the whole saddle system, as scipy)."""

    factorization: str = "lu"


class SolverSwitchWarning(UserWarning):
    """``solver="auto"`` changed method mid-fit (GMRES gave up, the dense solve
    took over): the answer is accurate, the time is not what the first choice
    promised."""


class KernelInterpolator:
    """Radial basis function interpolator in any dimension (drop-in for RBFInterpolator).

    Parameters
    ----------
    y : (n, ndim) array_like
        Data point coordinates.
    d : (n, ...) array_like
        Data values at ``y``, real or complex.
    neighbors : int, optional
        As scipy's: the value at each evaluation point is that of the interpolant of
        its ``neighbors`` nearest data points only (None, or ``>= n``, ``np.inf``: all
        points, one global interpolant).
    smoothing : float or (n,) array_like
        Smoothing parameter: 0 interpolates exactly.
    kernel : str
        "thin_plate_spline" (default), "linear", "cubic", "quintic",
        "multiquadric", "inverse_multiquadric", "inverse_quadratic", "gaussian".
    epsilon : float, optional
        Shape parameter (required unless the kernel is scale invariant).
    degree : int, optional
        Degree of the polynomial tail (default: the kernel's minimum, at least 0;
        -1 for none).
    solver : {"auto", "direct", "iterative"}
        How the global system is solved (ignored with ``neighbors < n``): "direct",
        the dense system, by Cholesky where the kernel is (conditionally) positive
        definite, else by LU as scipy (``8 (n + m)^2`` bytes, which must fit
        :func:`.dense.memory_budget`: ``kernelsolve.config.dense_memory_limit`` or
        ``dense_memory_fraction``); "iterative", GMRES in ``O(n)`` memory; "auto":
        GMRES from ``ITERATIVE_FROM`` (3000) points for "linear" and
        "thin_plate_spline" (with the dense solve as fallback should GMRES give up),
        direct for the other kernels, iterative where the dense system does not fit.
        See the Notes.
    rtol : float
        Iterative solver: GMRES stops a data column when ``||r|| <= rtol ||b||``
        (default 1e-8: the interpolant then agrees with scipy's to about 1e-6 on a
        well-conditioned system). ``eps=`` is a TypeError naming ``rtol``.
    maxiter : int
        Iterative solver: most GMRES iterations per data column (default 1000).
    precond_neighbors : int, optional
        Iterative solver: points per approximate cardinal function of the
        preconditioner (default 50; 30 with the coarse level and FMM products).
    coarse : int or "auto"
        Iterative solver: points of the coarse level of the preconditioner (see
        :mod:`.saddle`).
    products : {"auto", "engine", "fmm"}
        Iterative solver: products by engine reductions, or (``thin_plate_spline``
        in 2-D) a fast multipole method; "auto" takes the FMM from 5000 quasi-uniform
        points on.
    tol : float, optional
        Iterative solver with engine products: each product skips the block
        pairs holding at most ``tol`` of each row's ``sum_j |K_ij|`` (pays for
        kernels that decay, such as "gaussian"; ``info.skipped_pairs`` says
        how much). None (default): exact. The direct solve and evaluation are exact.
    verbose : bool
        Progress to stderr.

    Notes
    -----
    ``solver="auto"``, measured with ``benchmarks/bench_rbf_scipy.py`` on two busy
    cores (topobathy, standardised coordinates): the direct solve costs about as
    much as scipy's (0.2 s at 1500 points, 5-8 s at 6000, cubic in ``n``) and agrees
    with it to ~1e-10 wherever the system's condition number is below ~1e9 (its
    estimate is ``1 / info.rcond``). GMRES (``rtol=1e-8``, agreement ~1e-8) converges
    in 7-13 iterations for "linear" and "thin_plate_spline" and beats the LU from
    about 3000 points (0.8 s against 0.8-1.7 s at 3000; 1.6-1.8 s against 5.4-6.1 s
    at 6000; 6-10 s against 165-195 s on 20,000 points of the Jacksboro DEM).
    "cubic" converges as fast on topobathy (18 iterations at 6000 points) but gave up
    after 100 on the DEM at 20,000, so it is solved directly. For "quintic" and the
    smooth kernels ("gaussian", "multiquadric", ...), whose systems have condition
    numbers of 1e8 to 1e22 for usual shape parameters, the preconditioner does not
    capture the kernel and GMRES stalls even where the dense solve is accurate
    (inverse multiquadric, epsilon 10, condition 8e7: gave up at 6000 points):
    "auto" solves them directly whenever the dense system fits. An iterative fit
    that does not reach ``rtol`` warns (ConvergenceWarning) with what to change, and
    stops early, at the end of a restart cycle (100 iterations), once its rate of
    progress says ``rtol`` is out of reach within ``maxiter``, instead of running on
    for minutes.

    The direct solve, like scipy's, accepts repeated points where they are smoothed
    and raises :class:`numpy.linalg.LinAlgError` for a singular system (naming a
    rank-deficient polynomial tail). Evaluation is an engine reduction over the
    centres, in chunks of ``memory_budget`` floats (see :meth:`_chunk_evaluator`);
    a thin-plate spline fitted with FMM products evaluates at points inside the
    data's bounding box by the FMM instead (:mod:`.fmm2d_eval`: O(1) per point, not
    ``n``; the error at the rounding level of ``|Phi| |c|``).

    Attributes
    ----------
    solver : str
        The method used: "direct", "iterative" or "local" (``neighbors < n``).
    attempts : list of str
        The global methods tried, in order (``["iterative", "direct"]``: "auto"'s
        fallback after GMRES gave up).
    info : SaddleInfo
        Iterative solver: products, GMRES iterations, residuals, times; direct:
        ``product == "direct"``, the time, ``factorization`` (``"cholesky"``,
        ``"pivoted cholesky"`` or ``"lu"``, see :mod:`.rbf_direct`) and ``rcond``,
        LAPACK's estimate of the reciprocal condition number of the system
        factorized (the coefficients' relative error is up to about
        ``2.2e-16 / rcond``; with ``"lu"`` it is scipy's system, with
        ``"cholesky"`` its kernel block projected on the null space of ``P^T``;
        with ``"pivoted cholesky"`` that of 200 of its points, an upper bound,
        at most 1e-14: the system is singular to working precision).

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.random((500, 2))
    >>> f = KernelInterpolator(y, np.sin(4 * y[:, 0]) * y[:, 1])
    >>> x = rng.random((3, 2))
    >>> bool(np.allclose(f(x), np.sin(4 * x[:, 0]) * x[:, 1], atol=1e-2))
    True
    """

    @keywords(refused={"eps": "rtol"})
    def __init__(
        self,
        y,
        d,
        neighbors: int | float | None = None,
        smoothing=0.0,
        kernel: str = "thin_plate_spline",
        epsilon: float | None = None,
        degree: int | None = None,
        *,
        solver: str = "auto",
        rtol: float = INTERPOLATOR_RTOL,
        maxiter: int = 1000,
        precond_neighbors: int | None = None,
        coarse: int | str = "auto",
        products: str = "auto",
        tol: float | None = None,
        verbose: bool = False,
    ):
        check_tolerances(rtol, 0.0, maxiter)
        self.tol = check_tol(tol)
        if solver not in SOLVERS:
            raise ValueError(f"solver={solver!r}: expected one of {SOLVERS}")
        if products not in ("auto", "engine", "fmm"):
            raise ValueError(f"products={products!r}: expected 'auto', 'engine' or 'fmm'")
        if coarse != "auto" and (isinstance(coarse, str) or int(coarse) < 0):
            raise ValueError(f"coarse={coarse!r}: expected 'auto' or a number of points >= 0")
        a = check_fit(y, d, neighbors, smoothing, kernel, epsilon, degree)
        self.y, self.d, self.d_shape, self.d_dtype = a.y, a.d2, a.d_shape, a.d_dtype
        self.neighbors, self.smoothing, self.kernel = a.neighbors, a.smoothing, a.kernel
        self.epsilon, self.degree, self.powers = a.epsilon, a.degree, a.powers
        n = a.y.shape[0]
        t0 = time.perf_counter()
        if a.neighbors is not None and a.neighbors < n:
            self.solver = "local"
            self._tree = KDTree(a.y)  # scipy's tree: the same neighbours where distances tie
            self.info, self.attempts = SaddleInfo(product="local"), []
            return
        need, budget = direct_bytes(n, a.powers.shape[0]), memory_budget()
        fits = need <= budget
        self.solver = self._choose(solver, a, n, need, budget)
        self.attempts = [self.solver]
        if self.solver == "iterative":
            fallback = solver == "auto" and fits
            options = (precond_neighbors, coarse, products, verbose)
            self._fit_iterative(a, rtol, maxiter, *options, warn=not fallback)
            if self.info.converged or not fallback:
                return
            # "auto": GMRES gave up on a system that the dense solve can hold; the
            # switch changes the cost, so it is said, not silent
            warnings.warn(
                f"KernelInterpolator: GMRES gave up after {self.info.iterations} iterations "
                f"(relative residual {max(self.info.residual):.2e}, "
                f"{time.perf_counter() - t0:.1f} s); solving with the dense solve instead "
                f"({direct_bytes(n, a.powers.shape[0]) / 2**20:,.0f} MiB). Pass "
                "solver='direct' to skip the GMRES attempt.",
                SolverSwitchWarning,
                stacklevel=3,
            )
            self.solver = "direct"
            self.attempts.append("direct")
            del self._solver
        self._shift, self._scale, self._coeffs, rcond, how = solve_direct(
            a.y, a.d2, a.smoothing, KERNELS[a.kernel], a.epsilon, a.powers
        )
        self.info = DirectInfo(
            product="direct",
            solve_seconds=time.perf_counter() - t0,
            rcond=rcond,
            factorization=how,
        )

    @staticmethod
    def _choose(solver: str, a: Checked, n: int, need: int, budget: int) -> str:
        if solver == "direct" and need > budget:
            raise ValueError(
                f"solver='direct': the dense system of {n} points needs {need / 2**30:.1f} GiB, "
                f"above the dense memory budget of {budget / 2**30:.1f} GiB; raise "
                "kernelsolve.config.dense_memory_limit, or use solver='iterative'"
            )
        if solver == "auto":
            if need > budget:
                return "iterative"
            # negative smoothing (scipy accepts it) makes the system indefinite: LU only
            big = n >= ITERATIVE_FROM.get(a.kernel, math.inf)
            return "iterative" if big and not np.any(a.smoothing < 0) else "direct"
        return solver

    def _fit_iterative(
        self, a: Checked, rtol, maxiter, precond_neighbors, coarse, products, verbose, warn
    ) -> None:
        if np.any(a.smoothing < 0):
            raise ValueError(
                "Expected `smoothing` >= 0 with solver='iterative' (GMRES needs a "
                "conditionally positive definite system); use solver='direct'"
            )
        self._solver = SaddleSolver(
            a.y,
            KERNELS[a.kernel],
            a.epsilon,
            a.smoothing,
            a.powers,
            neighbors=precond_neighbors,
            coarse=coarse,
            products=products,
            verbose=verbose,
            tol=self.tol,
        )
        c, w, self.info = self._solver.solve(
            a.d2, rtol=rtol, maxiter=maxiter, warn=False, give_up=True
        )
        self._shift, self._scale = self._solver.shift, self._solver.scale
        self._coeffs = np.ascontiguousarray(np.vstack([c, w]))
        if warn and not self.info.converged:
            warnings.warn(self._advice(rtol, maxiter), ConvergenceWarning, stacklevel=4)

    def _advice(self, rtol: float, maxiter: int) -> str:
        info, n = self.info, self.y.shape[0]
        why = (
            f"stopped early after {info.iterations} iterations (at its rate of progress "
            f"it would not reach rtol within maxiter={maxiter})"
            if info.gave_up
            else f"did not reach rtol={rtol:g} in {maxiter} iterations"
        )
        fix = f"solver='direct' (needs {direct_bytes(n, len(self.powers)) / 2**20:,.0f} MiB)"
        if self.kernel not in SCALE_INVARIANT:
            fix += ", a larger epsilon (epsilon times the point spacing near 1 or above)"
        return (
            f"KernelInterpolator: GMRES {why}: relative residual {max(info.residual):.2e}, "
            f"so the interpolant is NOT accurate. The system is likely ill-conditioned; "
            f"use {fix}, or raise maxiter, precond_neighbors or coarse."
        )

    # ------------------------------------------------------------------
    def _chunk_evaluator(self, x, y, shift, scale, coeffs, memory_budget=1_000_000):
        """The interpolant of coefficients ``coeffs`` (``(n + m, k)``, centres ``y``) at
        ``x``, in chunks of at most ``memory_budget`` floats (scipy's contract).

        The kernel part is an engine reduction, which forms no ``(chunk, n)`` block:
        a chunk's memory is its polynomial block and its output, ``chunk * (m + k)``.
        """
        nx = x.shape[0]
        m, k = self.powers.shape[0], coeffs.shape[1]
        chunk = int(memory_budget) // (m + k) + 1
        out = np.empty((nx, k))
        for i in range(0, nx, chunk):
            out[i : i + chunk] = self._evaluate(x[i : i + chunk], y, shift, scale, coeffs)
        return out

    def _fmm_evaluator(self) -> TPSEvaluator | None:
        """The FMM evaluator of a fit with FMM products, built at the first evaluation
        or pickling (one downward pass of the FMM); kept and pickled (the solver is not)."""
        ev = getattr(self, "_fmm_eval", None)
        fmm = getattr(getattr(self, "_solver", None), "fmm", None)
        if ev is None and fmm is not None:
            ev = self._fmm_eval = TPSEvaluator(fmm, self._coeffs[: self.y.shape[0]])
        return ev

    def _evaluate(self, x, y, shift, scale, coeffs):
        """The interpolant at ``x``: by the FMM evaluator of the fit (thin-plate splines
        fitted with FMM products, points inside the data's box), else one engine
        reduction."""
        phi, ev = KERNELS[self.kernel], self._fmm_evaluator()
        if ev is None or coeffs is not self._coeffs:
            return evaluate(x, y, phi, self.epsilon, self.powers, shift, scale, coeffs)
        inside = ev.inside(x)
        out = np.empty((x.shape[0], coeffs.shape[1]))
        outside = ~inside
        out[outside] = evaluate(
            x[outside], y, phi, self.epsilon, self.powers, shift, scale, coeffs
        )
        xi = x[inside]
        poly = polynomial_matrix((xi - shift) / scale, self.powers) @ coeffs[y.shape[0] :]
        out[inside] = ev(xi) + poly
        return out

    def __call__(self, x) -> np.ndarray:
        """Values of the interpolant at ``x`` of shape ``(q, ndim)``: ``(q, ...)``.

        A dask array or an xarray DataArray/Dataset of points gives the same type back,
        lazily, chunk by chunk (:mod:`kernelsolve.dask_predict`)."""
        if dask_predict.is_lazy(x):
            return dask_predict.predict_points(
                self, "__call__", x, n_features=self.y.shape[1], tail=self.d_shape,
                dtype=self.d_dtype, names=("values",),
            )  # fmt: skip
        x = check_points(x, self.y.shape[1])
        nx = x.shape[0]
        budget = max(x.size + self.y.size + self.d.size, 1_000_000)
        if self.solver == "local":
            out = local_interpolate(
                x,
                self.y,
                self.d,
                self.smoothing,
                KERNELS[self.kernel],
                self.epsilon,
                self.powers,
                self.neighbors,
                self._tree,
            )
        else:
            out = self._chunk_evaluator(
                x, self.y, self._shift, self._scale, self._coeffs, memory_budget=budget
            )
        out = np.ascontiguousarray(out).view(self.d_dtype)
        return out.reshape((nx,) + self.d_shape)

    # ------------------------------------------------------------------
    def __getstate__(self) -> dict:
        # the iterative solver (preconditioner, FMM tables) is not needed to evaluate
        self._fmm_evaluator()
        state = dict(self.__dict__)
        state.pop("_solver", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
