"""Command line: ``kernelsolve [--version] info | demo | bench`` (also
``python -m kernelsolve``).

* ``kernelsolve info``: versions, the CPU and CUDA targets, the kernel cache
  (path, size, safety), the process-global caches, and what is missing with
  the command that installs it (see :mod:`kernelsolve.diagnostics`).
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
import sys

import numpy as np


# ----------------------------------------------------------------------------
# info
# ----------------------------------------------------------------------------
def _info(args) -> int:
    from . import diagnostics

    print(diagnostics.collect().render())
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
    from . import __version__
    from .demo import DEFAULT_N_TRAIN, DEFAULT_SCIPY_N

    parser = argparse.ArgumentParser(
        prog="kernelsolve", description="kernelsolve: kernel linear algebra at scale."
    )
    parser.add_argument("--version", action="version", version=f"kernelsolve {__version__}")
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
