"""``kernelsolve bench``: a one-minute throughput check of the engine.

Four reductions of a Gaussian kernel on ``N = M`` random points in 3-D
(float32 by default): ``K @ b`` with 1 and 11 columns, ``logsumexp`` and
``argKmin(10)``, computed by kernelsolve, by torch tiled over rows (each tile
a dense ``rows x N`` block of about 64 MiB) and by pykeops when it is
installed. Each result is checked on its first rows against a dense float64
NumPy computation, so a fast wrong answer is reported as wrong. pairs/s is
``M N / seconds``, the best of ``repeat`` runs after one warm-up call on
1,000 points (which compiles kernelsolve's and pykeops' kernels, or loads
them from their caches).

The full comparison with more sizes and dtypes is ``benchmarks/bench_reductions.py``
in the source tree; this module does not depend on it.

Example
-------
>>> from kernelsolve import quickbench
>>> quickbench.main(n=2000, repeat=1, peers=("torch",))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["main", "run", "Row", "MissingDependency"]

KNN = 10
CHECK_ROWS = 200
WARM_N = 1000  # points of the warm-up call
TILE_BYTES = 64 * 2**20
RTOL = {"float32": 1e-4, "float64": 1e-10}
CASES = (("gauss", 1), ("gauss", 11), ("lse", 1), ("argkmin", 1))


class MissingDependency(RuntimeError):
    """torch (needed by every peer and the common inputs) is missing."""


@dataclass
class Row:
    """One case: seconds, pairs/s and check per library."""

    case: str
    seconds: dict
    checks: dict

    def pairs_per_s(self, lib: str, pairs: int) -> float | None:
        s = self.seconds.get(lib)
        return None if s is None else pairs / s


def _label(kind: str, e: int) -> str:
    if kind == "gauss":
        return f"Gaussian K @ b, {e} column{'s' if e > 1 else ''}"
    return {"lse": "logsumexp", "argkmin": f"argKmin({KNN})"}[kind]


def _lazy(LT, kind, x, y, b):
    x_i, y_j = LT(x[:, None, :]), LT(y[None, :, :])
    D_ij = ((x_i - y_j) ** 2).sum(-1)
    if kind == "gauss":
        return (-D_ij).exp() @ b
    if kind == "lse":
        return (-D_ij).logsumexp(dim=1)
    return D_ij.argKmin(KNN, dim=1)


def _torch_tiled(torch, kind, x, y, b):
    n = y.shape[0]
    step = max(1, TILE_BYTES // (n * x.element_size()))
    cols = {"gauss": b.shape[1], "lse": 1, "argkmin": KNN}[kind]
    out = torch.empty(
        x.shape[0], cols, dtype=torch.int64 if kind == "argkmin" else x.dtype, device=x.device
    )
    for s in range(0, x.shape[0], step):
        d = torch.cdist(x[s : s + step], y).square_()
        if kind == "gauss":
            torch.matmul(d.neg_().exp_(), b, out=out[s : s + step])
        elif kind == "lse":
            out[s : s + step, 0] = torch.logsumexp(d.neg_(), dim=1)
        else:
            out[s : s + step] = torch.topk(d, KNN, dim=1, largest=False, sorted=True).indices
    return out


def _dense(kind, x, y, b):
    d = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    if kind == "gauss":
        return np.exp(-d) @ b
    if kind == "lse":
        m = (-d).max(1, keepdims=True)
        return m + np.log(np.exp(-d - m).sum(1, keepdims=True))
    return np.argsort(d, axis=1, kind="stable")[:, :KNN]


def _check(kind: str, dtype: str, got, ref) -> tuple[bool, str]:
    got = np.asarray(got.detach().cpu() if hasattr(got, "detach") else got)
    got = got[: ref.shape[0]].reshape(ref.shape)
    if kind == "argkmin":
        rate = float((got == ref).mean())
        return rate >= 0.99, f"index match {rate:.1%}"
    err = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-300))
    return err <= RTOL[dtype], f"rel. err {err:.1e}"


def _time(fn: Callable, warm: Callable, repeat: int):
    warm()  # compiles (or loads) the kernel and starts the thread pools: small data suffice
    best, out = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _pykeops():
    try:
        import pykeops

        pykeops.set_verbose(False)
        from pykeops.torch import LazyTensor

        return LazyTensor, pykeops.__version__
    except Exception:  # any import or build-environment failure: not available
        return None, None


def machine_line(torch, versions: dict) -> str:
    """CPU, cores, threads, load average and library versions in one line."""
    from .engine.backends.cpu import cpu_model

    cpu = cpu_model()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    libs = ", ".join(f"{k} {v}" for k, v in versions.items())
    return (
        f"machine: {cpu}, {os.cpu_count()} cores (torch threads {torch.get_num_threads()}), "
        f"load average {load}; {libs}"
    )


def run(n: int, repeat: int, peers, dtype: str = "float32", seed: int = 0, log=print):
    """Time every case; returns ``(rows, libraries, pairs)``."""
    try:
        import torch
    except ImportError:
        raise MissingDependency(
            "kernelsolve bench compares on torch tensors: pip install 'kernelsolve[torch]'"
        ) from None
    from . import LazyTensor, __version__

    libs = ["kernelsolve"]
    versions = {"kernelsolve": __version__, "torch": torch.__version__}
    pk = None
    if "torch" in peers:
        libs.append("torch")
    if "pykeops" in peers:
        pk, v = _pykeops()
        if pk is None:
            log("pykeops: not installed or not working; skipped (pip install pykeops)")
        else:
            libs.append("pykeops")
            versions["pykeops"] = v
    g = torch.Generator().manual_seed(seed)
    dt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    x = torch.rand(n, 3, generator=g, dtype=dt)
    y = torch.rand(n, 3, generator=g, dtype=dt)
    bs = {e: torch.rand(n, e, generator=g, dtype=dt) for e in (1, 11)}
    t = min(n, WARM_N)
    rows = []
    xs, ys = x[:CHECK_ROWS].double().numpy(), y.double().numpy()
    for kind, e in CASES:
        b = bs[e]
        ref = _dense(kind, xs, ys, b.double().numpy())
        fns = {
            "kernelsolve": lambda kind, x, y, b: _lazy(LazyTensor, kind, x, y, b),
            "torch": lambda kind, x, y, b: _torch_tiled(torch, kind, x, y, b),
            "pykeops": lambda kind, x, y, b: _lazy(pk, kind, x, y, b),
        }
        row = Row(_label(kind, e), {}, {})
        for lib in libs:
            f = fns[lib]
            seconds, out = _time(
                lambda f=f, kind=kind, b=b: f(kind, x, y, b),
                lambda f=f, kind=kind, b=b: f(kind, x[:t], y[:t], b[:t]),
                repeat,
            )
            row.seconds[lib] = seconds
            row.checks[lib] = _check(kind, dtype, out, ref)
        rows.append(row)
        log(f"  {row.case}: " + ", ".join(f"{k} {v:.3f} s" for k, v in row.seconds.items()))
    return rows, libs, n * n, machine_line(torch, versions)


def format_rows(rows, libs, pairs: int) -> str:
    """The table: pairs/s per library, kernelsolve's ratio to each peer, checks."""
    head = f"{'case':<28}" + "".join(f"{lib + ' pairs/s':>21}" for lib in libs)
    head += "".join(f"{'ks / ' + lib:>15}" for lib in libs[1:]) + "  check"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r.case:<28}"
        for lib in libs:
            line += f"{r.pairs_per_s(lib, pairs):>21.3g}"
        for lib in libs[1:]:
            line += f"{r.seconds[lib] / r.seconds['kernelsolve']:>14.2f}x"
        checks = "; ".join(
            f"{lib} {'ok' if ok else 'WRONG'} ({msg})" for lib, (ok, msg) in r.checks.items()
        )
        lines.append(f"{line}  {checks}")
    return "\n".join(lines)


def main(
    n: int | None = None,
    repeat: int = 2,
    quick: bool = False,
    peers=("torch", "pykeops"),
    dtype: str = "float32",
) -> int:
    """Run the bench and print the table; 1 if a result is wrong, else 0."""
    if n is None:
        n = 2000 if quick else 20_000
    if quick:
        repeat = 1
    t0 = time.perf_counter()
    print(
        f"kernelsolve bench: N = M = {n:,}, D = 3, {dtype}, best of {repeat} after a warm-up call "
        f"on {min(n, WARM_N):,} points (which compiles or loads each kernel)",
        flush=True,
    )
    rows, libs, pairs, machine = run(n, repeat, peers, dtype, log=lambda s: print(s, flush=True))
    print()
    print(format_rows(rows, libs, pairs))
    print(machine)
    print(f"total {time.perf_counter() - t0:.1f} s")
    ok = all(c[0] for r in rows for c in r.checks.values())
    if not ok:
        print("WRONG results above: the timings of those libraries are not meaningful")
    return 0 if ok else 1
