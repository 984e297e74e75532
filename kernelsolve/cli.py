"""Command line: ``kernelsolve info | demo | bench``.

* ``kernelsolve info``: versions, the CPU and CUDA targets, the kernel cache,
  and what is missing with the command that installs it.
* ``kernelsolve demo``: rebuild matplotlib's Jacksboro DEM from a random 20 %
  of its points with a thin-plate spline, ordinary kriging and an exact
  Gaussian process, next to scipy's dense RBFInterpolator (see
  :mod:`kernelsolve.demo`).
* ``kernelsolve bench``: a one-minute throughput check of the engine against
  tiled torch and pykeops (see :mod:`kernelsolve.quickbench`).

The CLI is the top layer: nothing in the library imports it.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np


# ----------------------------------------------------------------------------
# info
# ----------------------------------------------------------------------------
def _version_of(module: str) -> str | None:
    import importlib

    try:
        mod = importlib.import_module(module)
    except Exception:  # ImportError, or a broken install raising anything else
        return None
    return str(getattr(mod, "__version__", "installed"))


def _compiler_version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0].strip() if out.stdout else "unknown version"
    except (OSError, subprocess.SubprocessError):
        return "unknown version"


def _dir_size(path) -> tuple[int, int]:
    files, size = 0, 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                size += os.path.getsize(os.path.join(root, name))
                files += 1
            except OSError:
                pass
    return files, size


def _gpu_names() -> list[str]:
    """CUDA devices seen by CuPy, else by torch (empty without a GPU)."""
    try:
        import cupy

        names = []
        for k in range(cupy.cuda.runtime.getDeviceCount()):
            name = cupy.cuda.runtime.getDeviceProperties(k)["name"]
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        return names
    except Exception:  # no CuPy, no driver, no device
        pass
    try:
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
    except Exception:
        pass
    return []


def _cpu_self_test() -> tuple[bool, str]:
    """One tiny reduction through the compiled CPU target (compiles it if not cached)."""
    from . import LazyTensor

    x = np.random.default_rng(0).random((64, 3))
    t = time.perf_counter()
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # the reference fallback warns
            K = (-((LazyTensor(x[:, None, :]) - LazyTensor(x[None, :, :])) ** 2).sum(-1)).exp()
            out = K.sum(dim=1, backend="CPU")
    except Exception as exc:  # CompileError, missing compiler, ...
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    dense = np.exp(-((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)).sum(1)
    if not np.allclose(np.asarray(out).ravel(), dense, rtol=1e-10):
        return False, "wrong result against NumPy"
    return True, f"ok ({time.perf_counter() - t:.2f} s, compile included when not cached)"


def _info(args) -> int:
    from . import __version__, config
    from .engine import cache
    from .engine.backends import cpu, cuda

    rows: list[tuple[str, str]] = []
    missing: list[tuple[str, str]] = []
    rows.append(("kernelsolve", __version__))
    rows.append(("python", f"{platform.python_version()} ({sys.executable})"))
    rows.append(("platform", f"{platform.platform()}; {cpu.cpu_model()}, {os.cpu_count()} cores"))
    for name, mod, extra, why in (
        ("numpy", "numpy", None, None),
        ("scipy", "scipy", None, None),
        ("torch", "torch", "torch", "torch tensors, autograd, the demo's GP"),
        ("matplotlib", "matplotlib", "demo", "kernelsolve demo (data and figure)"),
        ("gpytorch", "gpytorch", "gpytorch", "kernelsolve.integrations.gpytorch"),
        ("pykeops", "pykeops", None, "kernelsolve bench comparisons (optional)"),
        ("cupy", "cupy", "cuda", "the CUDA target"),
    ):
        v = _version_of(mod)
        rows.append((name, v or "not installed"))
        if v is None and why:
            fix = f"pip install 'kernelsolve[{extra}]'" if extra else f"pip install {mod}"
            missing.append((f"{name} ({why})", fix))

    cc = cpu.find_compiler()
    threads = config.num_threads or cpu.num_threads(None, 1 << 40)
    if cc:
        rows.append(("CPU target", f"{cc}: {_compiler_version(cc)}"))
        rows.append(("CPU flags", " ".join(cpu.FLAGS)))
        ok, msg = _cpu_self_test()
        rows.append(("CPU check", msg))
        if not ok:
            missing.append(
                ("a working C++ compiler with OpenMP", "apt-get install g++ (or set CXX)")
            )
    else:
        rows.append(("CPU target", "no C++ compiler found: the NumPy reference engine is used"))
        missing.append(("a C++ compiler with OpenMP", "apt-get install g++ (or set CXX)"))
    rows.append(("OpenMP threads", f"{threads} (KERNELSOLVE_NUM_THREADS / OMP_NUM_THREADS)"))

    gpus = _gpu_names()
    cuda_ok = cuda.available()
    if cuda_ok:
        rows.append(("CUDA target", f"available (CuPy {_version_of('cupy')}): {', '.join(gpus)}"))
    elif gpus:
        rows.append(("CUDA target", f"GPU {', '.join(gpus)} found, but CuPy is missing"))
        missing.append(("CuPy (to run kernels on the GPU)", "pip install 'kernelsolve[cuda]'"))
    else:
        rows.append(("CUDA target", "no CUDA GPU found (the CPU target is used)"))
    nvrtc = cuda.nvrtc_available()
    rows.append(("NVRTC", nvrtc or "not available (checks CUDA sources without a GPU; tests)"))
    if not nvrtc:
        missing.append(
            (
                "NVRTC (CUDA source checks in the tests)",
                "pip install cuda-python nvidia-cuda-nvrtc-cu12",
            )
        )

    where = cache.cache_dir()
    files, size = _dir_size(where) if os.path.isdir(where) else (0, 0)
    rows.append(
        ("cache", f"{where} ({files} files, {size / 2**20:.1f} MiB; KERNELSOLVE_CACHE_DIR)")
    )

    width = max(len(k) for k, _ in rows) + 2
    for k, v in rows:
        print(f"{k:<{width}}{v}")
    if missing:
        print("missing:")
        for what, fix in missing:
            print(f"  {what}: {fix}")
    else:
        print("missing: nothing")
    return 0


# ----------------------------------------------------------------------------
# demo and bench
# ----------------------------------------------------------------------------
def _int_range(lo: int, hi: int | None, what: str):
    def parse(text: str) -> int:
        try:
            value = int(float(text)) if "e" in text.lower() else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer ({what}), got {text!r}"
            ) from None
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"expected an integer {bound} ({what}), got {value}")
        return value

    return parse


def _methods(text: str) -> tuple[str, ...]:
    from .demo import METHODS

    names = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    bad = [m for m in names if m not in METHODS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(METHODS)}, got {text!r}"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"methods listed twice in {text!r}")
    return names


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _demo(args, parser) -> int:
    from . import demo

    opts = demo.DemoOptions(
        n_train=args.n_train,
        methods=args.methods,
        device=args.device,
        seed=args.seed,
        out=args.out or None,
        quick=args.quick,
        scipy_n=args.scipy_n,
        smoothing=args.smoothing,
        gp_backend=args.gp_backend,
    )
    try:
        demo.run(opts)
    except demo.MissingDependency as exc:
        print(f"kernelsolve demo: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        if str(exc).startswith("--device"):
            parser.demo_parser.error(str(exc))
        raise
    return 0


def _bench(args, parser) -> int:
    from . import quickbench

    try:
        return quickbench.main(
            n=args.n, repeat=args.repeat, quick=args.quick, peers=args.peers, dtype=args.dtype
        )
    except quickbench.MissingDependency as exc:
        print(f"kernelsolve bench: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    from .demo import DEFAULT_N_TRAIN, DEFAULT_SCIPY_N

    parser = argparse.ArgumentParser(
        prog="kernelsolve", description="kernelsolve: kernel linear algebra at scale."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{info,demo,bench}")
    sub.add_parser("info", help="versions, targets, cache, and what is missing")

    d = sub.add_parser(
        "demo",
        help="rebuild a terrain (138,632 elevations) from 20%% of its points",
        description=(
            "Rebuild matplotlib's Jacksboro DEM from a random 20% of its points with a "
            "thin-plate spline, ordinary kriging and an exact GP, scored at the other 80%, "
            "next to scipy's dense RBFInterpolator; writes a PNG."
        ),
    )
    d.add_argument(
        "--n-train",
        type=_int_range(10, DEFAULT_N_TRAIN, "training points"),
        default=None,
        help=f"training points used, a random subset of the 20%% (default {DEFAULT_N_TRAIN}: all)",
    )
    d.add_argument(
        "--methods",
        type=_methods,
        default=("spline", "kriging", "gp"),
        help="comma-separated subset of spline,kriging,gp (default: all three)",
    )
    d.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the GP runs")
    d.add_argument("--seed", type=int, default=0, help="seed of the 20%% split (default 0)")
    d.add_argument(
        "--out", default="kernelsolve_demo.png", help="PNG path ('' for none; default %(default)s)"
    )
    d.add_argument("--quick", action="store_true", help="tiny sizes (a few seconds; for tests)")
    d.add_argument(
        "--scipy-n",
        type=_int_range(0, DEFAULT_N_TRAIN, "scipy points, 0 to skip"),
        default=None,
        help=f"points of scipy's dense RBFInterpolator (default {DEFAULT_SCIPY_N}; 0 skips it)",
    )
    d.add_argument(
        "--smoothing",
        type=_nonnegative_float,
        default=0.0,
        help="smoothing of the thin-plate spline (default 0: exact interpolation)",
    )
    d.add_argument(
        "--gp-backend",
        choices=("kernelsolve", "gpytorch"),
        default="kernelsolve",
        help="posterior mean by kernelsolve's PCG (default) or GPyTorch on kernelsolve kernels",
    )

    b = sub.add_parser(
        "bench",
        help="one-minute throughput check against tiled torch and pykeops",
        description="Gaussian K @ b (1 and 11 columns), logsumexp and argKmin(10), D = 3.",
    )
    b.add_argument(
        "-n", type=_int_range(100, None, "points, N = M"), default=None, help="N = M (20000)"
    )
    b.add_argument(
        "--repeat", type=_int_range(1, 100, "timed runs"), default=2, help="best of (2)"
    )
    b.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    b.add_argument(
        "--peers",
        default="torch,pykeops",
        help="comma-separated peers among torch,pykeops ('' for none; default %(default)s)",
    )
    b.add_argument("--quick", action="store_true", help="N = M = 2000, one run (for tests)")
    parser.demo_parser = d  # for errors found after parsing (--device cuda without a GPU)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info(args)
    if args.command == "demo":
        return _demo(args, parser)
    peers = tuple(p.strip().lower() for p in args.peers.split(",") if p.strip())
    bad = [p for p in peers if p not in ("torch", "pykeops")]
    if bad:
        parser.error(f"argument --peers: expected a subset of torch,pykeops, got {args.peers!r}")
    args.peers = peers
    return _bench(args, parser)


if __name__ == "__main__":
    sys.exit(main())
