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

Usage::

    python benchmarks/bench_solve.py --quick
    python benchmarks/bench_solve.py                          # N in {2e4, 1e5}
    python benchmarks/bench_solve.py --sizes 1e5 --alphas 1e-4 --cap auto
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

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
    args = p.parse_args(argv)
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
