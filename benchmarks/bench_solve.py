"""Solving (alpha I + K) a = b: plain CG vs RPCholesky-preconditioned CG vs pykeops, one run.

K_ij = exp(-|x_i - x_j|^2 / (2 sigma^2)), x uniform in [0, 1]^3, b uniform in
[0, 1], float64 torch CPU tensors (CG to a relative residual of 1e-6 at
alpha = 1e-4 needs float64: float32 products alone are off by more). For each
N in ``--sizes`` and alpha in ``--alphas`` the script runs

* ``pcg``: ``K.solve(b, alpha, precond="rpcholesky")``, automatic rank; the time
  includes building the preconditioner (its share is given separately),
* ``cg``: ``K.solve(b, alpha, precond=None)``, the same CG without preconditioner,
* ``pykeops``: ``pykeops.torch.LazyTensor.solve`` (plain CG; its stopping rule
  ``|r|^2 < n eps^2`` is given ``eps = rtol |b| / sqrt(n)``, the same relative
  residual).

Plain CG and pykeops are capped (``--cap``: an iteration count, or ``auto`` =
5 x the preconditioned iterations + 5, which is enough to decide the "<= 1/5 of
the iterations" question); a capped run reports its iterations and time as lower
bounds (">="). pykeops has no iteration cap of its own: the script counts its
products and stops it at the cap. Every solution's true relative residual
``|b - (alpha I + K) a| / |b|`` is computed with one more product.

``--methods`` prints a second table instead: ``solver="auto"`` against forced
``"cg"`` and forced ``"direct"`` (Cholesky) and the dense reference (the matrix
by NumPy broadcasting, then ``numpy.linalg.solve`` and scipy's
``cho_factor``/``cho_solve``), NumPy float64, 2-D points, Gaussian and Matern
3/2 kernels, time, method, iterations and true relative residual of each; and
the float32 true residual against CG's recurrence. This is where
``kernelsolve.linalg.direct.DIRECT_MAX_N`` comes from.

Usage::

    python benchmarks/bench_solve.py --quick
    python benchmarks/bench_solve.py                          # N in {2e4, 1e5}
    python benchmarks/bench_solve.py --sizes 1e5 --alphas 1e-4 --cap auto
    python benchmarks/bench_solve.py --methods --sizes 1000,1999,2001,5000,20000 --alphas 1e-3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from contextlib import nullcontext

import numpy as np
import scipy.linalg
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_reductions import import_pykeops, machine_info, print_report  # noqa: E402

from kernelsolve import Vi, Vj  # noqa: E402
from kernelsolve.linalg.cg import ConvergenceWarning  # noqa: E402


def kernel(LT, x, sigma):
    return (-((LT(x[:, None, :]) - LT(x[None, :, :])) ** 2).sum(-1) / (2 * sigma**2)).exp()


def true_residual(K, a, b, alpha) -> float:
    return float(((K @ a + alpha * a - b).norm() / b.norm()).item())


def run_kernelsolve(K, b, alpha, rtol, precond, cap):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a, info = K.solve(b, alpha, rtol=rtol, precond=precond, maxiter=cap, return_info=True)
    seconds = time.perf_counter() - t0
    M = info.preconditioner
    return {
        "iterations": info.iterations,
        "converged": info.converged,
        "seconds": seconds,
        "setup": M.setup_seconds if M is not None else 0.0,
        "rank": M.rank if M is not None else 0,
        "residual": true_residual(K, a, b, alpha),
    }


class _Capped(Exception):
    pass


def run_pykeops(pk_lazy, x, b, alpha, rtol, sigma, cap):
    import pykeops.torch.operations as pk_ops

    solver = pk_ops.ConjugateGradientSolver
    count = {"n": 0, "a": None}

    def counting(binding, linop, rhs, eps=1e-6):
        def op(p):
            if count["n"] >= cap:
                raise _Capped
            count["n"] += 1
            return linop(p)

        return solver(binding, op, rhs, eps=eps)

    # compile pykeops' kernels before timing (a solve on 50 points)
    xs, bs = x[:50].contiguous(), b[:50].contiguous()
    kernel(pk_lazy, xs, sigma).solve(pk_lazy(bs[:, None, :]), alpha=alpha, eps=1e-3)
    pk_ops.ConjugateGradientSolver = counting
    try:
        K = kernel(pk_lazy, x, sigma)
        eps = rtol * float(b.norm()) / (b.numel() ** 0.5)
        t0 = time.perf_counter()
        try:
            a = K.solve(pk_lazy(b[:, None, :]), alpha=alpha, eps=eps)
            converged = True
        except _Capped:
            a, converged = None, False
        seconds = time.perf_counter() - t0
    finally:
        pk_ops.ConjugateGradientSolver = solver
    res = true_residual(Kref(x, sigma), a, b, alpha) if a is not None else None
    return {
        "iterations": count["n"],
        "converged": converged,
        "seconds": seconds,
        "setup": 0.0,
        "rank": 0,
        "residual": res,
    }


def Kref(x, sigma):
    """The same matrix as a kernelsolve LazyTensor (to check any solution)."""
    return (-Vi(x).sqdist(Vj(x)) / (2 * sigma**2)).exp()


def fmt_row(N, alpha, name, r, plain) -> str:
    ge = "" if r["converged"] else ">="
    ratio_it = ratio_t = ""
    if plain is not None and name != "cg":
        pge = "" if plain["converged"] else ">="
        ratio_it = f"{pge}{plain['iterations'] / max(r['iterations'], 1):.1f}x"
        ratio_t = f"{pge}{plain['seconds'] / r['seconds']:.2f}x"
    res = "-" if r["residual"] is None else f"{r['residual']:.1e}"
    rank = r["rank"] or "-"
    return (
        f"| {N:.0e} | {alpha:g} | {name} | {ge}{r['iterations']} | {ge}{r['seconds']:.1f} | "
        f"{r['setup']:.1f} | {rank} | {res} | {ratio_it} | {ratio_t} |"
    )


# ------------------------------------------------------------ --methods: auto/cg/direct
LENGTHSCALE = 0.2  # of both kernels, on points uniform in [0, 1]^2


def method_kernel(name: str, x, dense: bool = False):
    """Gaussian or Matern 3/2 of lengthscale LENGTHSCALE: a LazyTensor, or the dense
    NumPy matrix by broadcasting (the reference)."""
    if dense:
        d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        if name == "gauss":
            return np.exp(-d2 / (2 * LENGTHSCALE**2))
        r = np.sqrt(d2) * (3**0.5 / LENGTHSCALE)
        return (1 + r) * np.exp(-r)
    if name == "gauss":
        return (-Vi(x).sqdist(Vj(x)) / (2 * LENGTHSCALE**2)).exp()
    r = Vi(x).sqdist(Vj(x)).sqrt() * (3**0.5 / LENGTHSCALE)
    return (1 + r) * (-r).exp()


def warm_up(kernel: str, x, b) -> None:
    """Compile the engine's kernels of both paths (products, diagonal, columns) on
    60 points before timing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = method_kernel(kernel, np.ascontiguousarray(x[:60]))
        for solver in ("direct", "cg"):
            small.solve(np.ascontiguousarray(b[:60]), 1e-2, solver=solver)


def timed_solve(K, b, alpha, rtol, **kw):
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a, info = K.solve(b, alpha, rtol=rtol, return_info=True, **kw)
    seconds = time.perf_counter() - t0
    res = float(np.linalg.norm(K @ a + alpha * a - b) / np.linalg.norm(b))
    cg_res = f"{float(info.cg.residual.max()):.1e}" if info.cg is not None else "-"
    pre = info.preconditioner.name if info.preconditioner is not None else "-"
    note = ",".join(sorted({type(w.message).__name__ for w in caught}))
    return seconds, info.method, info.iterations, pre, res, cg_res, note


def dense_reference(kernel: str, x, b, alpha):
    """Seconds of (NumPy build + numpy.linalg.solve) and (build + cho_factor/cho_solve)."""
    t0 = time.perf_counter()
    A = method_kernel(kernel, x, dense=True)
    A[np.diag_indices_from(A)] += alpha
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    np.linalg.solve(A, b)
    t_np = built + time.perf_counter() - t0
    t0 = time.perf_counter()
    scipy.linalg.cho_solve(scipy.linalg.cho_factor(A, overwrite_a=True), b)
    return t_np, built + time.perf_counter() - t0


def methods_table(args) -> list[str]:
    rows = []
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    for N in sizes:
        rng = np.random.default_rng(0)
        x, b = rng.random((N, 2)), rng.standard_normal(N)
        for kernel in args.kernels.split(","):
            K = method_kernel(kernel, x)
            warm_up(kernel, x, b)
            for alpha in [float(a) for a in args.alphas.split(",")]:
                runs = {"auto": {}, "cg": {"solver": "cg"}}
                if N <= args.max_direct:
                    runs["direct"] = {"solver": "direct"}
                if N <= 2000:  # the old "auto" preconditioner below 2,000 points
                    runs["cg+jacobi"] = {"solver": "cg", "precond": "jacobi", "maxiter": 300}
                if args.only:
                    runs = {k: v for k, v in runs.items() if k in args.only.split(",")}
                for name, kw in runs.items():
                    t, method, it, pre, res, cg_res, note = timed_solve(
                        K, b, alpha, args.rtol, **kw
                    )
                    rows.append(
                        f"| {N} | {kernel} | {alpha:g} | {name} | {method} | {pre} | {it} | "
                        f"{t:.2f} | {res:.1e} | {cg_res} | {note or '-'} |"
                    )
                    print(rows[-1], flush=True)
                if N <= args.max_direct and (not args.only or "dense" in args.only):
                    t_np, t_cho = dense_reference(kernel, x, b, alpha)
                    for name, t in (("numpy.linalg.solve", t_np), ("scipy cho_solve", t_cho)):
                        rows.append(
                            f"| {N} | {kernel} | {alpha:g} | {name} (dense) | direct "
                            f"| - | - | {t:.2f} | - | - | - |"
                        )
                        print(rows[-1], flush=True)
    return rows


def float32_rows(args) -> list[str]:
    """float32 solves: the true residual against the recurrence's, per method."""
    rows = []
    for N in (2000, 5000):
        rng = np.random.default_rng(1)
        x, b = rng.random((N, 2)).astype(np.float32), rng.standard_normal(N).astype(np.float32)
        K = method_kernel("gauss", x)
        warm_up("gauss", x, b)
        for alpha in (1e-2, 1e-4):
            for name, kw in (("cg", {"solver": "cg"}), ("direct", {"solver": "direct"})):
                t, method, it, pre, res, cg_res, note = timed_solve(K, b, alpha, 1e-6, **kw)
                rows.append(
                    f"| {N} | gauss float32 | {alpha:g} | {name} | {method} | {pre} | {it} | "
                    f"{t:.2f} | {res:.1e} | {cg_res} | {note or '-'} |"
                )
                print(rows[-1], flush=True)
    return rows


def main_methods(args) -> int:
    info = machine_info(None)
    limit = nullcontext()
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(args.blas_threads, "blas")
    with limit:
        rows = methods_table(args) + ([] if args.no_float32 else float32_rows(args))
    print_report(
        f"K.solve: solver='auto' vs 'cg' vs 'direct' and dense references, NumPy, 2-D, "
        f"lengthscale {LENGTHSCALE}, rtol = {args.rtol:g}, BLAS threads "
        f"{args.blas_threads or 'default'}",
        ["N", "kernel", "alpha", "run", "method", "precond", "iterations", "seconds"]
        + ["true rel. residual", "CG recurrence residual", "warnings"],
        rows,
        info,
    )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2e4,1e5")
    p.add_argument("--alphas", default="1e-2,1e-4")
    p.add_argument("--sigma", type=float, default=0.5)
    p.add_argument("--rtol", type=float, default=1e-6)
    p.add_argument("--cap", default="auto", help="iteration cap of plain CG and pykeops")
    p.add_argument(
        "--pykeops-cap", type=int, default=None, help="iteration cap of pykeops (default: --cap)"
    )
    p.add_argument("--no-pykeops", action="store_true")
    p.add_argument("--quick", action="store_true", help="N = 2000 only")
    p.add_argument("--methods", action="store_true", help="auto vs cg vs direct (NumPy)")
    p.add_argument("--max-direct", type=float, default=2e4, help="largest N forced direct")
    p.add_argument(
        "--only", default="", help="--methods: runs to make (auto,cg,direct,cg+jacobi,dense)"
    )
    p.add_argument("--kernels", default="gauss,matern32", help="--methods: kernels")
    p.add_argument("--no-float32", action="store_true", help="--methods: skip float32 rows")
    p.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="BLAS threads (threadpoolctl; default: BLAS's own): 1 on a loaded machine, "
        "where OpenBLAS's threads wait for each other",
    )
    args = p.parse_args(argv)
    if args.methods:
        return main_methods(args)
    sizes = [2000] if args.quick else [int(float(s)) for s in args.sizes.split(",")]
    alphas = [float(a) for a in args.alphas.split(",")]
    if args.no_pykeops:
        pk_lazy, pk_version, pk_error = None, None, "disabled by --no-pykeops"
    else:
        pk_lazy, pk_version, pk_error = import_pykeops()
    info = machine_info(pk_version)
    rows = []
    for N in sizes:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(N, 3, generator=g, dtype=torch.float64)
        b = torch.rand(N, 1, generator=g, dtype=torch.float64)
        K = Kref(x, args.sigma)
        Kref(x[:50], args.sigma) @ b[:50]  # compile the product kernel before timing
        for alpha in alphas:
            pcg = run_kernelsolve(K, b, alpha, args.rtol, "rpcholesky", 10_000)
            cap = 5 * pcg["iterations"] + 5 if args.cap == "auto" else int(args.cap)
            plain = run_kernelsolve(K, b, alpha, args.rtol, None, cap)
            rows.append(fmt_row(N, alpha, "cg", plain, None))
            rows.append(fmt_row(N, alpha, "pcg (rpcholesky)", pcg, plain))
            if pk_lazy is not None:
                pk_cap = cap if args.pykeops_cap is None else args.pykeops_cap
                pk = run_pykeops(pk_lazy, x, b, alpha, args.rtol, args.sigma, pk_cap)
                rows.append(fmt_row(N, alpha, "pykeops solve", pk, plain))
            print(rows[-1] if pk_lazy is not None else rows[-2], flush=True)
    if pk_lazy is None:
        print(f"pykeops not run: {pk_error}")
    print_report(
        f"Solve (alpha I + K) a = b: Gaussian sigma = {args.sigma}, D = 3, float64, "
        f"rtol = {args.rtol:g}",
        ["N", "alpha", "method", "iterations", "seconds (total)", "of which setup", "rank"]
        + ["true rel. residual", "iterations: cg / this", "time: cg / this"],
        rows,
        info,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
