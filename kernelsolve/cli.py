"""Command line: ``kernelsolve info | demo``.

``kernelsolve demo`` is the main job of the README: it builds a Gaussian
kernel on a point cloud, computes a kernel sum, nearest neighbours and a
log-sum-exp with the compiled engine, checks each against a dense NumPy
computation on a subset of rows, and prints timings.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np


def _info(args) -> int:
    from . import __version__, config
    from .engine import cache
    from .engine.backends import cpu, cuda

    print(f"kernelsolve {__version__}")
    print(f"python      {platform.python_version()} ({sys.executable})")
    print(f"numpy       {np.__version__}")
    try:
        import torch

        print(f"torch       {torch.__version__}")
    except ImportError:
        print("torch       not installed")
    cc = cpu.find_compiler()
    print(f"compiler    {cc or 'none found: the NumPy reference engine is used'}")
    print(f"threads     {config.num_threads or cpu.num_threads(None, 1 << 40)}")
    print(f"cache       {cache.cache_dir()}")
    print(f"CUDA        {'available' if cuda.available() else 'not available'}")
    print(f"NVRTC check {cuda.nvrtc_available() or 'not available'}")
    return 0


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _demo(args) -> int:
    from . import LazyTensor

    rng = np.random.default_rng(0)
    n, d = args.n, 3
    dtype = np.float32 if args.dtype == "float32" else np.float64
    x = rng.random((n, d)).astype(dtype)
    b = rng.standard_normal((n, 2)).astype(dtype)
    sigma = 0.1
    print(f"kernelsolve demo: {n:,} points in {d}-D, {args.dtype}, Gaussian kernel sigma={sigma}")
    gib = n * n * np.dtype(dtype).itemsize / 2**30
    print(f"the {n:,} x {n:,} kernel matrix would take {gib:.1f} GiB; it is never built")
    print("(first calls include compiling each kernel, cached on disk afterwards)")

    x_i, x_j = LazyTensor(x[:, None, :]), LazyTensor(x[None, :, :])
    D_ij = ((x_i - x_j) ** 2).sum(-1)
    K_ij = (-D_ij / (2 * sigma**2)).exp()

    rows = min(n, 500)
    xs = x[:rows].astype(np.float64)
    D_dense = ((xs[:, None, :] - x[None, :, :].astype(np.float64)) ** 2).sum(-1)
    K_dense = np.exp(-D_dense / (2 * sigma**2))
    ok = True

    a, t1 = _timed(lambda: K_ij @ b)
    err = np.abs(a[:rows] - K_dense @ b).max() / np.abs(K_dense @ b).max()
    ok &= err < (1e-4 if dtype == np.float32 else 1e-10)
    print(f"  K @ b          {t1:8.3f} s  {n * n / t1:.3g} pairs/s  rel. error {err:.1e}")

    idx, t2 = _timed(lambda: D_ij.argKmin(8, dim=1))
    nn_dense = np.argsort(D_dense, axis=1, kind="stable")[:, :8]
    agree = (idx[:rows] == nn_dense).mean()
    ok &= agree > 0.99
    print(f"  8 neighbours   {t2:8.3f} s  {n * n / t2:.3g} pairs/s  agreement {agree:.2%}")

    lse, t3 = _timed(lambda: (-D_ij / (2 * sigma**2)).logsumexp(dim=1))
    m = (-D_dense / (2 * sigma**2)).max(1, keepdims=True)
    lse_dense = m + np.log(np.exp(-D_dense / (2 * sigma**2) - m).sum(1, keepdims=True))
    err3 = np.abs(lse[:rows] - lse_dense).max()
    ok &= err3 < (1e-3 if dtype == np.float32 else 1e-10)
    print(f"  logsumexp      {t3:8.3f} s  {n * n / t3:.3g} pairs/s  abs. error {err3:.1e}")
    print("all results agree with dense NumPy" if ok else "MISMATCH against dense NumPy")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kernelsolve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, compiler, cache and devices")
    demo = sub.add_parser("demo", help="kernel sum, neighbours and logsumexp on 100k points")
    demo.add_argument("-n", type=int, default=100_000, help="number of points (100000)")
    demo.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args(argv)
    return {"info": _info, "demo": _demo}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
