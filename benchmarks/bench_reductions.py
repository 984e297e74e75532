"""Side-by-side timings of kernel reductions: kernelsolve vs pykeops vs tiled torch.

Each case runs the same reduction on the same torch CPU tensors with

* kernelsolve (``kernelsolve.LazyTensor``, compiled CPU kernel),
* pykeops (``pykeops.torch.LazyTensor``, the same LazyTensor code), when importable,
* a torch baseline tiled over rows (each tile's M_chunk x N matrix <= ~256 MB),

and prints pairs/s and speed ratios as markdown tables, together with the machine,
the library versions, the date and the exact command line.

Cases (one table row each):

* ``gauss``: ``K @ b`` with K_ij = exp(-|x_i - y_j|^2), D in {3, 16}, float32 and
  float64, b with 1 and 11 columns;
* ``tps``: ``K @ b`` with the thin-plate spline K_ij = r^2 log r (D = 2,
  float32 and float64, b of 1 column): the kernels' log path;
* ``lse``: logsumexp over j of -|x_i - y_j|^2 (D = 3, float32);
* ``argkmin``: argKmin(K=10) over j of |x_i - y_j|^2 (D = 3, float32).

x, y (and b) are ``torch.rand`` samples in [0, 1]^D. Every library is warmed up once
on the same formula with tiny arrays (compilation happens there), then timed with
``time.perf_counter`` on the real size; the best of ``--repeat`` runs is reported.
kernelsolve and pykeops results are checked against the torch baseline on the first
100 rows; a mismatch is flagged in the table, never reported silently.

A second table holds: the first call of a new formula in a fresh process with an
empty kernelsolve cache (compilation included), the warm per-call time of a small
Gaussian ``K @ b`` at N = M = 100 (expression rebuilt each call; mean of ``--calls``
calls: 2000, or 200 with ``--quick``; ``--no-extras`` skips both), and the cost of
11 columns relative to 1 for every Gaussian case timed with both.

``--device cuda`` runs every library on torch CUDA tensors (kernelsolve's CUDA target
through CuPy; the torch baseline on the GPU, in tiles of ``--tile-mb``, 1024 MB by default
there), synchronising the device around each timed call; the first-call and warm-call
measures are CPU-only and skipped there. pykeops is optional everywhere.

``--quick`` is a smoke test (N = M = 2000, D = 3): its timings are dominated by noise.
The exit status is 1 when a library fails or a result fails the correctness check.
Run it on an otherwise idle machine: with more runnable processes than cores, the
multi-threaded runs (all three libraries) wait on descheduled threads and slow down
by up to 10x or more; the output warns when the load average says so.

Usage::

    python benchmarks/bench_reductions.py --quick           # smoke test, tiny sizes
    python benchmarks/bench_reductions.py                   # N = M in {1e4, 1e5}
    python benchmarks/bench_reductions.py --rows 20000      # cap M (rows) at 2e4
    python benchmarks/bench_reductions.py --sizes 1e4 --only gauss --no-torch
    # 1 vs 11 columns of K @ b only, D = 3 float32, two sizes, in one run:
    python benchmarks/bench_reductions.py --sizes 1e4,1e5 --only gauss --dims 3 \
        --dtypes float32 --no-extras
    python benchmarks/bench_reductions.py --repeat 3 \\
        --json results.json --markdown docs/bench_reductions.md
    # on a GPU, N = M = 1e6 against tiled torch (what scripts/gpu_check.sh runs):
    python benchmarks/bench_reductions.py --device cuda --sizes 1e6 --dims 3 --columns 1 \\
        --no-pykeops
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

import kernelsolve
from kernelsolve import LazyTensor as KSLazyTensor
from kernelsolve.engine.backends.cpu import cpu_model, find_compiler

KINDS = ("gauss", "tps", "lse", "argkmin")
MATMUL_KINDS = ("gauss", "tps")  # the K @ b cases (a b of E columns)
LIBS = ("kernelsolve", "pykeops", "torch")
KNN = 10  # K of argKmin
CHECK_ROWS = 100  # rows compared with the torch baseline
TILE_MB = {"cpu": 256, "cuda": 1024}  # torch baseline: MB of one M_chunk x N tile
TILE_BYTES = TILE_MB["cpu"] * 2**20  # set by main() from --tile-mb / --device
# N = M of the warm-up call: small, but above kernelsolve's one-thread cut-off (2^16 pairs)
# so that the warm-up also starts the OpenMP / intra-op thread pools of every library.
TINY = 512
RTOL = {"float32": 1e-3, "float64": 1e-6}
MIN_INDEX_MATCH = 0.99
DTYPES = {"float32": torch.float32, "float64": torch.float64}


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    kind: str  # one of KINDS
    M: int  # rows (i)
    N: int  # columns (j), reduced over
    D: int
    dtype: str
    E: int = 1  # columns of b (gauss only)

    @property
    def name(self) -> str:
        return {
            "gauss": "Gaussian K @ b",
            "tps": "thin-plate spline K @ b",
            "lse": "logsumexp",
            "argkmin": f"argKmin(K={KNN})",
        }[self.kind]

    @property
    def label(self) -> str:
        cols = f" E={self.E}" if self.kind in MATMUL_KINDS else ""
        return f"{self.name} {self.M} x {self.N} D={self.D} {self.dtype}{cols}"

    @property
    def pairs(self) -> int:
        return self.M * self.N


def build_cases(
    sizes: list[int],
    dims: list[int],
    rows: int | None,
    only: str | None,
    dtypes: tuple[str, ...] = ("float32", "float64"),
    columns: tuple[int, ...] = (1, 11),
):
    cases = []
    for n in sizes:
        m = min(n, rows) if rows else n
        if only in (None, "gauss"):
            for d in dims:
                for dtype in dtypes:
                    for e in columns:
                        cases.append(Case("gauss", m, n, d, dtype, e))
        if only in (None, "tps"):
            for dtype in dtypes:
                cases.append(Case("tps", m, n, 2, dtype))
        if only in (None, "lse"):
            cases.append(Case("lse", m, n, 3, "float32"))
        if only in (None, "argkmin"):
            cases.append(Case("argkmin", m, n, 3, "float32"))
    return cases


def make_data(
    case: Case, M: int | None = None, N: int | None = None, seed: int = 0, device: str = "cpu"
) -> dict:
    """x (M, D), y (N, D) and, for gauss, b (N, E): uniform in [0, 1] (drawn on
    the host, the same numbers for every device), on ``device``."""
    M, N = M or case.M, N or case.N
    g = torch.Generator().manual_seed(seed)
    dt = DTYPES[case.dtype]
    data = {
        "x": torch.rand(M, case.D, generator=g, dtype=dt),
        "y": torch.rand(N, case.D, generator=g, dtype=dt),
    }
    if case.kind in MATMUL_KINDS:
        data["b"] = torch.rand(N, case.E, generator=g, dtype=dt)
    return {k: v.to(device) for k, v in data.items()}


# ------------------------------------------------- LazyTensor formulas (both libraries)


def lazy_gauss(LT, x, y, b):
    x_i, y_j = LT(x[:, None, :]), LT(y[None, :, :])
    K_ij = (-((x_i - y_j) ** 2).sum(-1)).exp()
    return K_ij @ b


def lazy_tps(LT, x, y, b):
    s = LT(x[:, None, :]).sqdist(LT(y[None, :, :]))
    return (s * s.log() * 0.5) @ b  # r^2 log r: the log path of the kernels


def lazy_lse(LT, x, y):
    x_i, y_j = LT(x[:, None, :]), LT(y[None, :, :])
    return (-((x_i - y_j) ** 2).sum(-1)).logsumexp(dim=1)


def lazy_argkmin(LT, x, y):
    x_i, y_j = LT(x[:, None, :]), LT(y[None, :, :])
    return ((x_i - y_j) ** 2).sum(-1).argKmin(KNN, dim=1)


LAZY = {"gauss": lazy_gauss, "tps": lazy_tps, "lse": lazy_lse, "argkmin": lazy_argkmin}


# ------------------------------------------------------------ torch baseline (tiled)


def row_chunk(N: int, dtype: torch.dtype) -> int:
    """Rows per tile so that a tile x N matrix stays <= TILE_BYTES."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return max(1, TILE_BYTES // (N * itemsize))


def sqdist_tile(xc, y):
    d = torch.cdist(xc, y)
    return d.square_()


def torch_gauss(x, y, b):
    out = torch.empty(x.shape[0], b.shape[1], dtype=x.dtype, device=x.device)
    step = row_chunk(y.shape[0], x.dtype)
    for s in range(0, x.shape[0], step):
        k = sqdist_tile(x[s : s + step], y).neg_().exp_()
        torch.matmul(k, b, out=out[s : s + step])
    return out


def torch_tps(x, y, b):
    out = torch.empty(x.shape[0], b.shape[1], dtype=x.dtype, device=x.device)
    step = row_chunk(y.shape[0], x.dtype)
    for s in range(0, x.shape[0], step):
        d = sqdist_tile(x[s : s + step], y)
        torch.matmul(d * d.log() * 0.5, b, out=out[s : s + step])
    return out


def torch_lse(x, y):
    out = torch.empty(x.shape[0], 1, dtype=x.dtype, device=x.device)
    step = row_chunk(y.shape[0], x.dtype)
    for s in range(0, x.shape[0], step):
        out[s : s + step, 0] = torch.logsumexp(sqdist_tile(x[s : s + step], y).neg_(), dim=1)
    return out


def torch_argkmin(x, y):
    out = torch.empty(x.shape[0], KNN, dtype=torch.int64, device=x.device)
    step = row_chunk(y.shape[0], x.dtype)
    for s in range(0, x.shape[0], step):
        d = sqdist_tile(x[s : s + step], y)
        out[s : s + step] = torch.topk(d, KNN, dim=1, largest=False, sorted=True).indices
    return out


TORCH = {"gauss": torch_gauss, "tps": torch_tps, "lse": torch_lse, "argkmin": torch_argkmin}


# ------------------------------------------------------------------ library runners


def import_pykeops():
    """``pykeops.torch.LazyTensor`` or None (with the reason)."""
    try:
        import pykeops

        pykeops.set_verbose(False)
        from pykeops.torch import LazyTensor

        return LazyTensor, pykeops.__version__, None
    except Exception as exc:  # any import failure: not available
        return None, None, f"{type(exc).__name__}: {exc}"


def runner(lib: str, kind: str, pk_lazy=None) -> Callable:
    """A function ``f(**data)`` computing case ``kind`` with library ``lib``."""
    if lib == "kernelsolve":
        return lambda **d: LAZY[kind](KSLazyTensor, **d)
    if lib == "pykeops":
        return lambda **d: LAZY[kind](pk_lazy, **d)
    return lambda **d: TORCH[kind](**d)


def sync(data: dict) -> None:
    """Wait for the device of ``data``'s tensors (GPU work is asynchronous)."""
    if any(v.is_cuda for v in data.values()):
        torch.cuda.synchronize()


def best_time(fn: Callable, data: dict, repeat: int):
    """(best seconds over ``repeat`` runs, result of the last run)."""
    best, out = math.inf, None
    for _ in range(repeat):
        sync(data)
        t0 = time.perf_counter()
        out = fn(**data)
        sync(data)
        best = min(best, time.perf_counter() - t0)
    return best, out


def check(kind: str, dtype: str, got, ref) -> tuple[bool, str]:
    """Compare the first CHECK_ROWS rows of a result with the torch reference."""
    got = got[: ref.shape[0]].reshape(ref.shape)
    if kind == "argkmin":
        rate = (got.long() == ref).double().mean().item()
        return rate >= MIN_INDEX_MATCH, f"index match {rate:.2%}"
    got, ref = got.double(), ref.double()
    if not torch.isfinite(got).all():
        return False, "non-finite values"
    err = ((got - ref).abs() / (ref.abs() + 1e-6 * ref.abs().max())).max().item()
    return err <= RTOL[dtype], f"max rel err {err:.1e}"


@dataclass
class LibResult:
    seconds: float | None = None
    warmup_seconds: float | None = None
    pairs_per_s: float | None = None
    ok: bool | None = None
    check: str = ""
    error: str | None = None


@dataclass
class CaseResult:
    case: Case
    libs: dict[str, LibResult] = field(default_factory=dict)


def run_case(case: Case, libs: list[str], repeat: int, pk_lazy, device: str = "cpu") -> CaseResult:
    data = make_data(case, device=device)
    tiny = make_data(case, M=TINY, N=TINY, seed=1, device=device)
    head = {k: (v[:CHECK_ROWS] if k == "x" else v) for k, v in data.items()}
    ref = TORCH[case.kind](**head).reshape(min(CHECK_ROWS, case.M), -1)
    result = CaseResult(case)
    for lib in libs:
        r = result.libs[lib] = LibResult()
        fn = runner(lib, case.kind, pk_lazy)
        try:
            t0 = time.perf_counter()
            fn(**tiny)  # warm-up: compiles the formula (kernelsolve, pykeops)
            sync(tiny)
            r.warmup_seconds = time.perf_counter() - t0
            r.seconds, out = best_time(fn, data, repeat)
        except Exception as exc:  # report, go on with the rest
            r.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            continue
        r.pairs_per_s = case.pairs / r.seconds
        if lib != "torch":
            r.ok, r.check = check(case.kind, case.dtype, out, ref)
        del out
    return result


# -------------------------------------------------------------------- extra measures


FIRST_CALL_CODE = textwrap.dedent(
    """
    import json, time
    import torch
    from kernelsolve import LazyTensor
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(1000, 3, generator=g), torch.rand(1000, 3, generator=g)
    b = torch.rand(1000, 1, generator=g)
    def f():
        x_i, y_j = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
        return (-((x_i - y_j) ** 2).sum(-1)).exp() @ b
    t0 = time.perf_counter(); f(); t1 = time.perf_counter(); f(); t2 = time.perf_counter()
    print(json.dumps({"first": t1 - t0, "second": t2 - t1}))
    """
)


def first_call_seconds() -> dict:
    """First ``K @ b`` (N = M = 1000) in a fresh process: with an empty kernel
    cache (compilation included), then again in a new process with the cache filled."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="kernelsolve-bench-cache-") as cache:
        env = dict(os.environ, KERNELSOLVE_CACHE_DIR=cache)
        for label in ("empty_cache", "disk_cache"):
            proc = subprocess.run(
                [sys.executable, "-c", FIRST_CALL_CODE],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
                out[label] = {"error": f"subprocess failed: {tail[0]}"}
                continue
            out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def warm_call_us(LT, calls: int, n: int = 100) -> float:
    """Mean microseconds of a Gaussian K @ b (N = M = n, float32, D = 3),
    LazyTensor construction included, after warm-up."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g)
    b = torch.rand(n, 1, generator=g)
    for _ in range(10):
        lazy_gauss(LT, x, y, b)
    t0 = time.perf_counter()
    for _ in range(calls):
        lazy_gauss(LT, x, y, b)
    return (time.perf_counter() - t0) / calls * 1e6


def column_cost(results: list[CaseResult]) -> list[dict]:
    """time(E = 11) / time(E = 1) of every Gaussian (M, N, D, dtype) timed with both,
    per library: ``[{"M", "N", "D", "dtype", <lib>: ratio or None}, ...]``."""
    groups: dict[tuple, dict[int, CaseResult]] = {}
    for r in results:
        if r.case.kind == "gauss":
            key = (r.case.M, r.case.N, r.case.D, r.case.dtype)
            groups.setdefault(key, {})[r.case.E] = r
    out = []
    for (M, N, D, dtype), by_e in groups.items():
        if 1 not in by_e or 11 not in by_e:
            continue
        row = {"M": M, "N": N, "D": D, "dtype": dtype}
        for lib in by_e[1].libs:
            t1, t11 = by_e[1].libs[lib].seconds, by_e[11].libs.get(lib, LibResult()).seconds
            row[lib] = t11 / t1 if t1 and t11 else None
        out.append(row)
    return out


# ------------------------------------------------------------------------- machine


def compiler_info() -> str:
    cc = find_compiler()
    if cc is None:
        return "none found (kernelsolve falls back to the NumPy reference)"
    try:
        proc = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        return f"{cc}: {proc.stdout.splitlines()[0]}"
    except (OSError, subprocess.SubprocessError, IndexError):
        return f"{cc}: version unknown"


def machine_info(pykeops_version: str | None) -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "kernelsolve": kernelsolve.__version__,
        "pykeops": pykeops_version or "not available",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "compiler": compiler_info(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
    }


def gpu_info() -> str:
    """The GPU, its CUDA and CuPy versions (for runs with ``--device cuda``)."""
    name = torch.cuda.get_device_name(0)
    mem = torch.cuda.get_device_properties(0).total_memory / 2**30
    try:
        import cupy

        cupy_version = cupy.__version__
    except Exception as exc:  # the kernelsolve rows then say what failed
        cupy_version = f"not importable ({type(exc).__name__})"
    return f"{name}, {mem:.0f} GiB (torch CUDA {torch.version.cuda}, CuPy {cupy_version})"


# ------------------------------------------------------------------------- output


def fmt3(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def fmt_ratio(a: LibResult, b: LibResult | None) -> str:
    if b is None or a.pairs_per_s is None or b.pairs_per_s is None:
        return "-"
    return f"{a.pairs_per_s / b.pairs_per_s:.2f}x"


def check_cell(r: CaseResult, libs: list[str]) -> tuple[str, list[str]]:
    """The 'check' cell of a row and its warning lines (errors, wrong results)."""
    c, cells, warnings = r.case, [], []
    where = c.label
    for lib in libs:
        lr = r.libs[lib]
        if lr.error:
            cells.append(f"{lib}: ERROR")
            warnings.append(f"{lib} failed on {where}: {lr.error}")
        elif lr.ok is False:
            cells.append(f"{lib}: **WRONG** ({lr.check})")
            warnings.append(
                f"{lib} differs from the torch baseline on {where} ({lr.check}): "
                "its timing is NOT valid"
            )
        elif lr.ok:
            cells.append(f"{lib}: ok ({lr.check})")
    return "; ".join(cells), warnings


def main_table(results: list[CaseResult], libs: list[str]) -> list[str]:
    peers = [lib for lib in libs if lib != "kernelsolve"]
    head = ["case", "M x N", "D", "dtype", "E"]
    head += [f"{lib} s" for lib in libs] + [f"{lib} pairs/s" for lib in libs]
    head += [f"ks/{lib}" for lib in peers] + ["check"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        c, ks = r.case, r.libs["kernelsolve"]
        cells = [
            c.name,
            f"{c.M} x {c.N}",
            str(c.D),
            c.dtype,
            str(c.E) if c.kind in MATMUL_KINDS else "-",
        ]
        cells += [fmt3(r.libs[lib].seconds) for lib in libs]
        cells += [fmt3(r.libs[lib].pairs_per_s) for lib in libs]
        cells += [fmt_ratio(ks, r.libs[lib]) for lib in peers]
        check_text, warnings = check_cell(r, libs)
        lines.append("| " + " | ".join([*cells, check_text]) + " |")
        lines += [f"| WARNING: {w} |" for w in warnings]
    return lines


def extras_table(extras: dict) -> list[str]:
    lines = ["| measure | value |", "|---|---|"]
    fc = extras.get("first_call")
    if fc:
        for label, text in (
            ("empty_cache", "first K @ b, new formula, empty cache (compile included), N=M=1000"),
            ("disk_cache", "first K @ b in a new process, kernel already on disk, N=M=1000"),
        ):
            v = fc.get(label, {})
            val = v.get("error") or f"{v['first']:.3f} s (second call {v['second'] * 1e3:.2f} ms)"
            lines.append(f"| kernelsolve: {text} | {val} |")
    wc = extras.get("warm_call_us")
    if wc:
        for lib, us in wc.items():
            if lib not in LIBS:
                continue
            lines.append(
                f"| {lib}: warm call, Gaussian K @ b float32 N=M=100, LazyTensor built "
                f"each call (mean of {wc['calls']}) | {us:.1f} us |"
            )
        if "kernelsolve" in wc and "pykeops" in wc:
            lines.append(
                f"| warm call ratio pykeops / kernelsolve | "
                f"{wc['pykeops'] / wc['kernelsolve']:.2f}x |"
            )
    for cc in extras.get("columns_11_over_1") or []:
        for lib, v in cc.items():
            if lib in LIBS:
                lines.append(
                    f"| {lib}: time(11 columns) / time(1 column), Gaussian D={cc['D']} "
                    f"{cc['dtype']}, {cc['M']} x {cc['N']} | {'-' if v is None else f'{v:.2f}'} |"
                )
    return lines


def load_warning(info: dict) -> list[str]:
    """A warning line when the 1-minute load average says other processes compete
    for the cores (at the start or at the end of the run)."""
    loads = [info[k][0] for k in ("load_average_at_start", "load_average_at_end") if k in info]
    cores = info["cores"] or 1
    if loads and max(loads) > 0.5 * cores:
        return [
            f"- WARNING: 1-minute load average up to {max(loads)} on {cores} cores: other "
            "processes compete for the CPU, timings (multi-threaded ones most) are not reliable"
        ]
    return []


def machine_lines(info: dict) -> list[str]:
    return [
        f"- machine: {info['cpu']}, {info['cores']} cores (torch threads "
        f"{info['torch_threads']}, OMP_NUM_THREADS={info['OMP_NUM_THREADS']}); load average "
        f"(1, 5, 15 min) at start {info['load_average_at_start']}, at end "
        f"{info.get('load_average_at_end', '-')}",
        f"- versions: kernelsolve {info['kernelsolve']}, pykeops {info['pykeops']}, torch "
        f"{info['torch']}, numpy {info['numpy']}, Python {info['python']}",
        f"- compiler: {info['compiler']}",
        *([f"- GPU: {info['gpu']}"] if info.get("gpu") else []),
        f"- date: {info['date']}",
        f"- command: `{info['command']}`",
        *load_warning(info),
    ]


def print_report(title: str, columns: list[str], rows: list[str], info: dict) -> None:
    """A markdown table with the machine lines under it (the other benchmarks' output);
    records the load average at the end in ``info``."""
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(f"\n## {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    print("\n".join(rows))
    print()
    print("\n".join(machine_lines(info)))


# --------------------------------------------------------------------------- main


def parse_sizes(text: str) -> list[int]:
    return [int(float(s)) for s in text.split(",") if s.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sizes", type=parse_sizes, default=[10_000, 100_000], help="N values")
    p.add_argument("--rows", type=int, default=None, help="cap M (rows); default M = N")
    p.add_argument("--repeat", type=int, default=1, help="timed runs per case; best is kept")
    p.add_argument("--quick", action="store_true", help="smoke test: N = 2000, D = 3 only")
    p.add_argument("--only", choices=KINDS, default=None, help="run one kind of case")
    p.add_argument(
        "--dims", type=parse_sizes, default=None, help="D of the gauss cases (3,16; --quick: 3)"
    )
    p.add_argument(
        "--dtypes",
        type=lambda t: tuple(t.split(",")),
        default=("float32", "float64"),
        help="dtypes of the gauss cases (float32,float64)",
    )
    p.add_argument(
        "--columns", type=parse_sizes, default=[1, 11], help="columns of b, gauss cases (1,11)"
    )
    p.add_argument(
        "--no-extras",
        action="store_true",
        help="skip the first-call and warm-call measures (the column ratios are kept)",
    )
    p.add_argument("--no-pykeops", action="store_true", help="skip pykeops")
    p.add_argument("--no-torch", action="store_true", help="skip the torch baseline timing")
    p.add_argument(
        "--calls", type=int, default=None, help="warm-call measure: calls (2000; --quick: 200)"
    )
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the tensors live and every library runs (default cpu)",
    )
    p.add_argument(
        "--tile-mb",
        type=int,
        default=None,
        help=f"MB of one tile of the torch baseline (default {TILE_MB})",
    )
    p.add_argument("--json", metavar="PATH", help="write results as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the markdown tables (overwrite)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device (CPU-only torch build or no driver)")
    if args.tile_mb is None:
        args.tile_mb = TILE_MB[args.device]
    elif args.tile_mb < 1:
        p.error("--tile-mb must be positive")
    if args.repeat < 1 or (args.rows is not None and args.rows < 1) or (args.calls or 1) < 1:
        p.error("--repeat, --rows and --calls must be positive")
    bad = [d for d in args.dtypes if d not in DTYPES]
    if bad:
        p.error(f"--dtypes: unknown {bad}; expected a comma-separated subset of {list(DTYPES)}")
    if min(args.columns, default=0) < 1 or min(args.dims or [1]) < 1 or not args.sizes:
        p.error("--sizes, --dims and --columns must be positive")
    if args.quick:
        args.sizes = [2000]
    if args.dims is None:
        args.dims = [3] if args.quick else [3, 16]
    if args.calls is None:
        args.calls = 200 if args.quick else 2000
    return args


def progress_line(r: CaseResult) -> str:
    """One line per finished case (on stderr: a run cut short still shows them)."""
    cells = []
    for lib, lr in r.libs.items():
        if lr.error:
            cells.append(f"{lib} ERROR {lr.error}")
        else:
            verdict = "" if lr.ok is None else (" ok" if lr.ok else " WRONG")
            cells.append(f"{lib} {fmt3(lr.seconds)} s ({fmt3(lr.pairs_per_s)} pairs/s){verdict}")
    return f"done {r.case.label}: " + "; ".join(cells)


def main(argv=None) -> int:
    global TILE_BYTES
    args = parse_args(argv)
    TILE_BYTES = args.tile_mb * 2**20
    pk_lazy, pk_version, pk_reason = (None, None, "disabled (--no-pykeops)")
    if not args.no_pykeops:
        pk_lazy, pk_version, pk_reason = import_pykeops()
    libs = (
        ["kernelsolve"] + (["pykeops"] if pk_lazy else []) + ([] if args.no_torch else ["torch"])
    )
    info = machine_info(pk_version)
    if pk_lazy is None:
        info["pykeops"] = f"not run: {pk_reason}"
    if args.device == "cuda":
        info["gpu"] = gpu_info()

    results = []
    cases = build_cases(
        args.sizes, args.dims, args.rows, args.only, args.dtypes, tuple(args.columns)
    )
    for case in cases:
        print(f"running {case.label}", file=sys.stderr, flush=True)
        results.append(run_case(case, libs, args.repeat, pk_lazy, args.device))
        print(progress_line(results[-1]), file=sys.stderr, flush=True)

    extras = {}
    if args.device != "cpu" and not args.no_extras:
        print("first-call and warm-call measures are CPU-only: skipped", file=sys.stderr)
    elif not args.no_extras:
        extras["first_call"] = first_call_seconds()
        wc = {"calls": args.calls, "kernelsolve": warm_call_us(KSLazyTensor, args.calls)}
        if pk_lazy is not None:
            wc["pykeops"] = warm_call_us(pk_lazy, args.calls)
        extras["warm_call_us"] = wc
    extras["columns_11_over_1"] = column_cost(results)
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]

    where = "" if args.device == "cpu" else f" on {args.device.upper()}"
    md = [f"## Reductions{where}: kernelsolve vs peers", "", *machine_lines(info), ""]
    md += [
        f"Times in seconds (best of {args.repeat}); pairs/s = M*N / time; ks/peer = "
        "kernelsolve pairs/s divided by the peer's (> 1: kernelsolve faster).",
        "",
        *main_table(results, libs),
    ]
    extra_rows = extras_table(extras)
    if len(extra_rows) > 2:  # more than the header
        md += ["", "### Extra measurements", "", *extra_rows]
    text = "\n".join(md)
    print("\n" + text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.json:
        payload = {
            "machine": info,
            "args": vars(args),
            "libraries": libs,
            "cases": [
                {**asdict(r.case), "libs": {k: asdict(v) for k, v in r.libs.items()}}
                for r in results
            ],
            "extras": extras,
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
    failed = any(lr.ok is False or lr.error for r in results for lr in r.libs.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
