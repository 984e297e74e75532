"""Gaussian kernel products whose values underflow into the subnormal range: one run.

``K @ V`` with ``K_ij = exp(-|x_i - x_j|^2 / (2 l^2))`` on N points of the
Jacksboro fault DEM (coordinates standardised) and V with 11 columns (the width
of GPyTorch's CG), for several lengthscales ``l``. In float32 a value is
subnormal below 1.2e-38, i.e. for pairs between 13.2 and 14.4 lengthscales
apart; x86 cores take a microcode assist (~100 cycles) for each subnormal
operand or result, which is why the fraction of such pairs (column
``subnormal``) decides the speed of code that keeps them. Columns:

* ``kernelsolve``: ``LazyTensor`` reduction (compiled CPU kernel, which flushes
  subnormal results to zero while it runs);
* ``pykeops``: the same formula with pykeops (where installed);
* ``torch dense``: the N x N block (made outside the timing) times V, as dense
  GPyTorch does; ``torch flushed``: the same block with its subnormal values set
  to 0 (as ``kernelsolve.integrations.gpytorch`` stores its blocks).

Usage::

    python benchmarks/bench_subnormals.py                 # N = 1e4, float32
    python benchmarks/bench_subnormals.py --n 20000 --dtype float64
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_reductions import import_pykeops, machine_info, print_report  # noqa: E402

from kernelsolve import LazyTensor  # noqa: E402


def dem_points(n: int) -> np.ndarray:
    from matplotlib import cbook

    data = cbook.get_sample_data("jacksboro_fault_dem.npz")
    rows, cols = np.indices(data["elevation"].shape)
    pts = np.stack([cols.ravel() * float(data["dx"]), rows.ravel() * float(data["dy"])], 1)
    pts = pts[np.random.default_rng(0).permutation(len(pts))[:n]]
    return (pts - pts.mean(0)) / pts.std(0)


def best_ms(matrix, v, repeats: int) -> float:
    """Best time of ``matrix @ v`` in ms, after one untimed product (compilation)."""
    matrix @ v
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        matrix @ v
        times.append(time.perf_counter() - t)
    return 1e3 * min(times)


def gaussian(lazy, x, scale):
    xi, xj = lazy(x[:, None, :] * scale), lazy(x[None, :, :] * scale)
    return (-0.5 * ((xi - xj) ** 2).sum(-1)).exp()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--lengthscales", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5, 1.0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    x = torch.tensor(dem_points(args.n), dtype=dtype)
    v = torch.randn(args.n, 11, dtype=dtype, generator=torch.Generator().manual_seed(0))
    pk_lazy, pk_version, pk_error = import_pykeops()
    if pk_error:
        print(f"pykeops not available ({pk_error}): no pykeops column")
    info = machine_info(pk_version)
    tiny = torch.finfo(dtype).tiny
    rows = []
    for ls in args.lengthscales:
        block = torch.exp(-0.5 * torch.cdist(x / ls, x / ls).square())
        subnormal = float(((block > 0) & (block < tiny)).double().mean())
        flushed = block.masked_fill(block < tiny, 0)
        ours_k = gaussian(LazyTensor, x, 1 / ls)
        t_ours = best_ms(ours_k, v, args.repeats)
        err = float((ours_k @ v - flushed @ v).abs().max() / (flushed @ v).abs().max())
        t_pk = "-"
        if pk_lazy is not None:
            pk_k = gaussian(pk_lazy, x, 1 / ls)
            t_pk = best_ms(pk_k, v, args.repeats)
        t_dense = best_ms(block, v, args.repeats)
        t_flushed = best_ms(flushed, v, args.repeats)
        pk_text = t_pk if isinstance(t_pk, str) else f"{t_pk:.1f} ({t_pk / t_ours:.2f}x)"
        rows.append(
            f"| {ls:g} | {100 * subnormal:.2f}% | {t_ours:.1f} | {pk_text} | "
            f"{t_dense:.1f} ({t_dense / t_ours:.2f}x) | {t_flushed:.1f} "
            f"({t_flushed / t_ours:.2f}x) | {err:.1e} |"
        )
        print(rows[-1], flush=True)
    cols = ["lengthscale", "subnormal", "kernelsolve ms", "pykeops ms (/ ours)"]
    cols += ["torch dense ms (/ ours)", "torch flushed ms (/ ours)", "ours vs flushed dense"]
    print_report(
        f"Gaussian K @ V (11 columns), N = {args.n:,}, {args.dtype}, DEM points: "
        f"best of {args.repeats}",
        cols,
        rows,
        info,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
