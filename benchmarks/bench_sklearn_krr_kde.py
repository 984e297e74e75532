"""kernelsolve.sklearn's KernelRidge and KernelDensity against scikit-learn's, one run.

* KRR: ``KernelRidge(alpha=1e-2, kernel="rbf", gamma=10)`` (``--gamma``) on ``n`` points
  uniform in ``[0, 1]^3``, ``y = sum(sin(4 x)) + 0.1 noise``; ``fit`` then
  ``predict`` on 2,000 new points. scikit-learn builds the dense ``n x n``
  matrix and solves by Cholesky (above 12,000 points on one BLAS thread: OpenBLAS's
  threaded Cholesky segfaults on this machine from 16,000 points with 2 threads);
  ours (``solver="auto"``) solves directly up to ``DIRECT_MAX_N`` = 3,000 points
  and by preconditioned CG above (``cg_rtol=1e-8``), memory ``O(n)``.
* KDE: ``KernelDensity(kernel="gaussian", bandwidth="scott")`` on ``n``
  standard normal points in 3-D, ``score_samples`` at ``n`` other points
  (fit included). scikit-learn walks its KD tree (``atol = rtol = 0``); ours
  is one exact ``logsumexp`` over all pairs.

Each size runs both libraries (``--peer-max`` and below) or ours alone, prints
the seconds, the ratio (scikit-learn's time / ours: > 1 means ours is faster)
and the largest difference of the outputs relative to scikit-learn's largest
(KRR predictions; KDE: the densities ``exp(score_samples)``).

Usage::

    python benchmarks/bench_sklearn_krr_kde.py --quick        # 1e3, 2e3
    python benchmarks/bench_sklearn_krr_kde.py                # 5e3, 2e4 (both), 1e5 (ours)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shlex
import sys
import time

import numpy as np
import sklearn
from sklearn.kernel_ridge import KernelRidge as SkKernelRidge
from sklearn.neighbors import KernelDensity as SkKernelDensity

import kernelsolve
from kernelsolve.engine.backends.cpu import cpu_model
from kernelsolve.linalg.blas import one_blas_thread
from kernelsolve.sklearn import KernelDensity, KernelRidge
from kernelsolve.sklearn.kernel_ridge import THREADED_CHOLESKY_MAX_N


def krr_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 3))
    y = np.sin(4 * X).sum(1) + 0.1 * rng.standard_normal(n)
    return X, y, rng.random((2000, 3))


def kde_data(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)), rng.standard_normal((n, 3))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_krr(cls, X, y, X_test, gamma: float, one_thread: bool = False):
    def go():
        with one_blas_thread() if one_thread else contextlib.nullcontext():
            model = cls(alpha=1e-2, kernel="rbf", gamma=gamma).fit(X, y)
        return model.predict(X_test), getattr(model, "solver_", "cholesky")

    return timed(go)


def run_kde(cls, X, Y):
    return timed(lambda: (cls(kernel="gaussian", bandwidth="scott").fit(X).score_samples(Y), ""))


def row(task: str, n: int, ours, theirs, compare) -> str:
    t_ours, (out_ours, how) = ours
    label = f" ({how})" if how else ""
    if theirs is None:
        return f"| {task} | {n:,} | | {t_ours:.2f}{label} | | |"
    t_sk, (out_sk, _) = theirs
    a, b = compare(out_ours), compare(out_sk)
    diff = np.abs(a - b).max() / np.abs(b).max()
    ratio = t_sk / t_ours
    return f"| {task} | {n:,} | {t_sk:.2f} | {t_ours:.2f}{label} | {ratio:.2f}x | {diff:.1e} |"


def warm_up() -> None:
    """Compile the engine's kernels once (the on-disk cache keeps them), so that
    the timings are of the computation, not of the first compilation."""
    X, y, X_test = krr_data(4000)
    KernelRidge(alpha=1e-2, kernel="rbf", gamma=10.0, cg_rtol=1e-2).fit(X, y).predict(X_test)
    KernelDensity(bandwidth="scott").fit(X).score_samples(X_test)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5e3,2e4,1e5", help="comma-separated n")
    parser.add_argument("--peer-max", type=float, default=2e4, help="largest n for sklearn")
    parser.add_argument("--quick", action="store_true", help="n in {1e3, 2e3}")
    parser.add_argument("--gamma", type=float, default=10.0, help="KRR's rbf gamma")
    args = parser.parse_args(argv)
    sizes = [1000, 2000] if args.quick else [int(float(s)) for s in args.sizes.split(",")]
    print(
        f"# {cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start"
    )
    print(
        f"# python {platform.python_version()}, numpy {np.__version__}, scikit-learn "
        f"{sklearn.__version__}, kernelsolve {kernelsolve.__version__}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    )
    print(f"# {shlex.join(getattr(sys, 'orig_argv', [sys.executable, *sys.argv]))}")
    warm_up()
    print("| task | n | scikit-learn s | kernelsolve s | ratio | max rel. diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for n in sizes:
        peer = n <= args.peer_max
        X, y, X_test = krr_data(n)
        ours = run_krr(KernelRidge, X, y, X_test, args.gamma)
        # OpenBLAS's threaded dpotrf segfaults here from n = 16,000 (see
        # kernelsolve.sklearn.kernel_ridge.THREADED_CHOLESKY_MAX_N): one thread above
        one = n > THREADED_CHOLESKY_MAX_N
        theirs = run_krr(SkKernelRidge, X, y, X_test, args.gamma, one) if peer else None
        print(
            row(f"KRR rbf (gamma {args.gamma:g}) fit + predict", n, ours, theirs, lambda p: p),
            flush=True,
        )
        X, Y = kde_data(n)
        ours = run_kde(KernelDensity, X, Y)
        theirs = run_kde(SkKernelDensity, X, Y) if peer else None
        print(row("KDE gaussian score_samples", n, ours, theirs, np.exp), flush=True)


if __name__ == "__main__":
    main()
