"""The demo's driver: options, one run of every method with a progress display,
the final table and the figure."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..progress import Progress
from . import methods, settings
from .data import TRAIN_FRACTION, Terrain, load_dem, split
from .deps import check_dependencies, check_device
from .figure import write_figure

__all__ = ["DemoOptions", "MethodResult", "run", "format_table"]

#: Rough shares of the run time, for the progress bar.
_WEIGHTS = {"spline": 3.0, "kriging": 2.0, "gp": 3.0, "scipy": 1.5, "figure": 0.3}


@dataclass
class DemoOptions:
    """Options of :func:`run` (the command line's, see ``kernelsolve demo --help``)."""

    n_train: int | None = None
    methods: tuple[str, ...] = settings.METHODS
    device: str = "cpu"
    seed: int = 0
    out: str | None = "kernelsolve_demo.png"
    quick: bool = False
    scipy_n: int | None = None
    smoothing: float = 0.0
    gp_backend: str = "kernelsolve"
    stream: object = None  # progress (default stderr)
    tty: bool | None = None


@dataclass
class MethodResult:
    """One line of the final table."""

    key: str
    method: str
    library: str
    n_train: int
    rmse: float
    seconds: float
    cpu_seconds: float
    prediction: np.ndarray = field(repr=False)
    details: str = ""


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, dtype=np.float64) - truth) ** 2)))


def _check_options(opts: DemoOptions) -> tuple[str, ...]:
    chosen = tuple(opts.methods)
    bad = [m for m in chosen if m not in settings.METHODS]
    if bad or not chosen:
        raise ValueError(f"methods={chosen!r}: expected a non-empty subset of {settings.METHODS}")
    if opts.gp_backend not in ("kernelsolve", "gpytorch"):
        raise ValueError(f"gp_backend={opts.gp_backend!r}: expected 'kernelsolve' or 'gpytorch'")
    check_dependencies(chosen, opts.gp_backend)
    check_device(opts.device)
    return chosen


def _sizes(opts: DemoOptions, n_all: int) -> dict:
    sizes = dict(
        n_train=settings.DEFAULT_N_TRAIN,
        scipy_n=settings.DEFAULT_SCIPY_N,
        variogram_points=settings.VARIOGRAM_POINTS,
        gp_fit_points=settings.GP_FIT_POINTS,
        gp_rank=settings.GP_RANK,
    )
    if opts.quick:
        sizes.update(settings.QUICK)
    if opts.n_train is not None:
        sizes["n_train"] = opts.n_train
    if opts.scipy_n is not None:
        sizes["scipy_n"] = opts.scipy_n
    if not 10 <= sizes["n_train"] <= n_all:
        raise ValueError(f"n_train must be between 10 and {n_all}, got {sizes['n_train']}")
    if not 0 <= sizes["scipy_n"] <= n_all:
        raise ValueError(f"scipy_n must be between 0 and {n_all}, got {sizes['scipy_n']}")
    return sizes


def _problem(terrain: Terrain, train, test, sizes: dict, opts: DemoOptions) -> methods.Problem:
    n = sizes["n_train"]
    tr = train[:n]
    return methods.Problem(
        X=terrain.points[tr],
        y=terrain.values[tr],
        # the unused training points are predicted too, only for the figure
        Xt=terrain.points[np.concatenate([test, np.sort(train[n:])])],
        yt=terrain.values[test],
        mean=float(terrain.values[tr].mean()),
        std=float(terrain.values[tr].std()),
        seed=opts.seed,
        device=opts.device,
        sizes=sizes,
    )


def _jobs(chosen, p: methods.Problem, opts: DemoOptions, scipy_n: int) -> list:
    """``(key, job)``: each job maps the progress display to ``(prediction, details)``."""
    fits: dict[str, Callable] = {
        "spline": lambda bar: methods.spline(p, bar, opts.smoothing),
        "kriging": lambda bar: methods.kriging(p, bar),
        "gp": lambda bar: (
            methods.gp_gpytorch(p, bar) if opts.gp_backend == "gpytorch" else methods.gp(p, bar)
        ),
    }
    jobs = [(key, fits[key]) for key in chosen]
    if scipy_n:
        jobs.append(("scipy", lambda bar: methods.scipy_rbf(p, bar, scipy_n)))
    return jobs


def _library(key: str, gp_backend: str) -> str:
    if key == "scipy":
        return "scipy"
    return "gpytorch+ks" if key == "gp" and gp_backend == "gpytorch" else "kernelsolve"


def _run_job(key: str, job: Callable, bar: Progress, p, opts, n_train: int) -> MethodResult:
    bar.set_description(settings.LABELS[key])
    bar.write("")
    t0, c0 = time.perf_counter(), time.process_time()
    pred, details = job(bar)
    r = MethodResult(
        key=key,
        method=settings.LABELS[key],
        library=_library(key, opts.gp_backend),
        n_train=n_train,
        rmse=_rmse(np.asarray(pred)[: len(p.yt)], p.yt),
        seconds=time.perf_counter() - t0,
        cpu_seconds=time.process_time() - c0,
        prediction=np.asarray(pred, dtype=np.float64),
        details=details,
    )
    bar.update(_WEIGHTS[key])
    bar.write(f"RMSE {r.rmse:.2f} m in {r.seconds:.1f} s ({details})")
    return r


def run(opts: DemoOptions) -> list[MethodResult]:
    """Run the demo: fit every method, print progress, return the results
    (kernelsolve's methods, then scipy's) and write the figure to ``opts.out``.

    Example
    -------
    >>> import io
    >>> results = run(DemoOptions(quick=True, methods=("spline",), scipy_n=0, out=None,
    ...                           stream=io.StringIO()))  # doctest: +SKIP
    >>> [r.method for r in results]  # doctest: +SKIP
    ['thin-plate spline']
    """
    chosen = _check_options(opts)
    terrain = load_dem()
    train, test = split(len(terrain.values), opts.seed)
    sizes = _sizes(opts, len(train))
    n = sizes["n_train"]
    p = _problem(terrain, train, test, sizes, opts)
    scipy_n = min(sizes["scipy_n"], n)
    jobs = _jobs(chosen, p, opts, scipy_n)
    total = sum(_WEIGHTS[key] for key, _ in jobs) + (_WEIGHTS["figure"] if opts.out else 0)
    load0 = _load()
    out = sys.stdout if opts.stream is None else opts.stream
    _print_header(out, terrain, n, len(test), opts)
    bar = Progress(
        "kernelsolve demo",
        total,
        stream=opts.stream,
        tty=opts.tty,
        interval=None,
        clock=True,
        refresh=0.5,
        unit="",
    )
    results: list[MethodResult] = []
    try:
        for key, job in jobs:
            results.append(_run_job(key, job, bar, p, opts, scipy_n if key == "scipy" else n))
        if opts.out:
            bar.set_description("figure")
            bar.write(opts.out)
            best = min((r for r in results if r.key != "scipy"), key=lambda r: r.rmse)
            write_figure(opts.out, terrain, train[:n], test, best)
            bar.update(_WEIGHTS["figure"])
            bar.write(f"{opts.out} ({best.method})")
    finally:
        elapsed = bar.elapsed
        bar.close()
    load = f" (1-min load average {load0} at the start, {_load()} at the end)"
    print(format_table(results, p.yt, elapsed, load), file=out, flush=True)
    return results


def _print_header(out, terrain: Terrain, n: int, n_test: int, opts: DemoOptions) -> None:
    ny, nx = terrain.z.shape
    print(
        f"kernelsolve demo: Jacksboro DEM, {ny} x {nx} = {ny * nx:,} elevations; "
        f"{n:,} training points (of the random {TRAIN_FRACTION:.0%}, seed {opts.seed}), "
        f"RMSE at the {n_test:,} held-out points",
        file=out,
        flush=True,
    )
    if opts.device == "cuda":
        print(
            "--device cuda: the GP runs on the GPU; the spline and kriging solvers take NumPy "
            "arrays and run on the CPU",
            file=out,
        )


def _dense_bytes(n: int) -> str:
    b = 8.0 * n**2
    return f"{b / 2**30:.1f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return "?"


def format_table(
    results: list[MethodResult], truth: np.ndarray, total: float, load: str = ""
) -> str:
    """The final table: method, library, training points, held-out RMSE, wall and CPU
    time (all threads), and the memory of the dense system a direct solver would factor.
    """
    head = (
        f"{'method':<24}{'library':<13}{'training pts':>13}{'RMSE (m)':>10}{'time (s)':>10}"
        f"{'CPU (s)':>9}{'dense matrix':>14}"
    )
    lines = ["", head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.method:<24}{r.library:<13}{r.n_train:>13,}{r.rmse:>10.2f}{r.seconds:>10.1f}"
            f"{r.cpu_seconds:>9.1f}{_dense_bytes(r.n_train):>14}"
        )
    base = _rmse(np.full(len(truth), truth.mean()), truth)
    lines += [
        "-" * len(head),
        f"predicting the mean elevation: RMSE {base:.2f} m; total wall time {total:.1f} s "
        f"on {os.cpu_count()} cores{load}",
        "dense matrix: the N x N float64 kernel matrix a dense solver factors at that N "
        "(kernelsolve never forms it)",
    ]
    return "\n".join(lines)
