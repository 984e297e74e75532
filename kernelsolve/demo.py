"""The main job of ``kernelsolve demo``: rebuild a terrain from a fifth of its points.

Data: matplotlib's Jacksboro fault DEM (``cbook.get_sample_data``, shipped with
matplotlib, so nothing is downloaded), 344 x 403 = 138,632 elevations in
metres. Coordinates are the grid indices divided by the longer side minus one
(the true aspect ratio, x in [0, 1], y in [0, 0.853]). A random 20 % of the
points (27,726, fixed seed) is the training set; every other point (110,906)
is held out, and each method is scored by its RMSE there.

Methods (``--methods``), each fitted on the first ``n_train`` points of the
(shuffled) training set:

* ``spline``: thin-plate spline, :class:`~kernelsolve.linalg.interpolate.KernelInterpolator`
  (degree 1, smoothing 0 unless ``smoothing`` is given: measured on this data,
  smoothing *raises* the iteration count of its preconditioned GMRES).
* ``kriging``: :class:`~kernelsolve.linalg.kriging.OrdinaryKriging` with an
  exponential variogram fitted (:func:`~kernelsolve.linalg.kriging.fit_variogram`)
  to the semivariogram of the pairs closer than :data:`VARIOGRAM_LAG_SPACINGS`
  mean data spacings among :data:`VARIOGRAM_POINTS` training points.
  PyKrige's default binning spans every pair distance up to the domain's
  diameter; its first bin then holds distances up to ~0.2 and the fitted
  nugget swallows the short-scale relief (nugget ~5,000 m^2, RMSE 38 m at
  5,000 points, measured), so the short lags are binned here instead.
  (Matern-3/2 kriging predicts 0.2 m better; with the two-level saddle
  preconditioner, which OrdinaryKriging now uses for bounded variograms too,
  it converges in 8 products at 27,726 points, the exponential model in 7.)
* ``gp``: exact Gaussian process, Matern-3/2 kernel plus noise and a constant
  mean. The four hyperparameters maximise the exact marginal likelihood of
  :data:`GP_FIT_POINTS` random training points (dense torch, L-BFGS); the
  posterior mean given all ``n_train`` points is ``m + K_*x a`` with
  ``(K + noise I) a = y - m`` solved by RPCholesky-preconditioned CG
  (:func:`kernelsolve.linalg.solve.solve`, rank :data:`GP_RANK`) and one
  reduction for ``K_*x a``.

Next to them, scipy's dense ``RBFInterpolator`` (thin-plate spline) at the
size it handles in a few seconds (``scipy_n``): the same kind of model, on
fewer points, is what the O(N) solves improve on.

Example
-------
>>> from kernelsolve.demo import DemoOptions, run  # doctest: +SKIP
>>> results = run(DemoOptions(quick=True, out="demo.png"))  # doctest: +SKIP
>>> [r.method for r in results]  # doctest: +SKIP
['thin-plate spline', 'ordinary kriging', 'exact GP', 'dense RBFInterpolator']
"""

from __future__ import annotations

import io
import math
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DemoOptions",
    "METHODS",
    "MethodResult",
    "MissingDependency",
    "Progress",
    "Terrain",
    "fit_gp_hyperparameters",
    "format_table",
    "gp_posterior_mean",
    "load_dem",
    "matern32",
    "run",
    "short_lag_variogram",
    "split",
    "write_figure",
]

DEM_FILE = "jacksboro_fault_dem.npz"
TRAIN_FRACTION = 0.2
METHODS = ("spline", "kriging", "gp")
#: Training points used by default: the whole 20 % (see :func:`run`).
DEFAULT_N_TRAIN = 27_726
#: Points of scipy's dense RBFInterpolator (its (N + 3)^2 system).
DEFAULT_SCIPY_N = 4000
#: Points of the empirical variogram behind kriging, and its largest lag in
#: mean data spacings (sqrt(area / n_train); 10 spacings = 0.056 at 27,726 points).
VARIOGRAM_POINTS = 3000
VARIOGRAM_LAG_SPACINGS = 10.0
VARIOGRAM_LAGS = 20
#: Points of the dense marginal-likelihood fit of the GP hyperparameters.
GP_FIT_POINTS = 1500
#: Rank of the RPCholesky preconditioner of the GP solve and the CG tolerance.
GP_RANK = 2000
GP_RTOL = 1e-3
GP_MAXITER = 500
#: Relative residual and iteration cap of the spline and kriging solves (GMRES).
SOLVER_RTOL = 1e-6
SOLVER_MAXITER = 200
KRIGING_MODEL = "exponential"

QUICK = dict(n_train=1000, scipy_n=300, variogram_points=600, gp_fit_points=250, gp_rank=250)

_LABELS = {
    "spline": "thin-plate spline",
    "kriging": "ordinary kriging",
    "gp": "exact GP",
    "scipy": "dense RBFInterpolator",
}


class MissingDependency(RuntimeError):
    """An optional package the demo needs is not installed."""


def _require(module: str, why: str, extra: str = "demo"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(
            f"{why} needs {module}, which is not installed: pip install 'kernelsolve[{extra}]'"
        ) from None


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------
@dataclass
class Terrain:
    """The DEM as a grid and as scattered points.

    Attributes
    ----------
    z : (ny, nx) float64 array
        Elevations in metres.
    points : (ny * nx, 2) float64 array
        ``(x, y)`` of every cell, row-major like ``z.ravel()``.
    values : (ny * nx,) float64 array
        ``z.ravel()``.
    """

    z: np.ndarray
    points: np.ndarray
    values: np.ndarray


def load_dem() -> Terrain:
    """matplotlib's Jacksboro fault DEM with coordinates scaled to the unit square.

    Example
    -------
    >>> t = load_dem()
    >>> t.z.shape, t.points.shape
    ((344, 403), (138632, 2))
    """
    cbook = _require("matplotlib.cbook", "kernelsolve demo (the Jacksboro DEM)")
    with cbook.get_sample_data(DEM_FILE) as dem:
        z = np.asarray(dem["elevation"], dtype=np.float64)
    ny, nx = z.shape
    rows, cols = np.indices(z.shape)
    scale = max(nx, ny) - 1  # one scale for both axes keeps the aspect ratio
    points = np.stack([cols.ravel() / scale, rows.ravel() / scale], axis=1)
    return Terrain(z, points, z.ravel().copy())


def split(n_points: int, seed: int, fraction: float = TRAIN_FRACTION):
    """Random ``(train, test)`` indices: ``int(fraction * n)`` training points
    in random order (their first ``k`` are a random subset too), the rest sorted.

    Example
    -------
    >>> train, test = split(100, seed=0)
    >>> len(train), len(test), len(set(train) | set(test))
    (20, 80, 100)
    """
    order = np.random.default_rng(seed).permutation(n_points)
    k = int(fraction * n_points)
    return order[:k], np.sort(order[k:])


# ----------------------------------------------------------------------------
# Progress
# ----------------------------------------------------------------------------
class Progress:
    """A progress bar on a terminal (one line redrawn every half second), plain
    lines otherwise (one per stage, no control characters).

    Stages carry weights (rough shares of the run time) for the bar.
    """

    def __init__(self, weights: dict[str, float], stream=None, tty: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.weights = weights
        self.total = sum(weights.values()) or 1.0
        self.done_weight = 0.0
        self.stage = ""
        self.detail = ""
        self.t0 = time.perf_counter()
        self._cols = max(40, shutil.get_terminal_size((100, 24)).columns - 1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if self.tty:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._draw()

    def _line(self) -> str:
        frac = min(self.done_weight / self.total, 1.0)
        width = 24
        fill = int(round(frac * width))
        bar = "#" * fill + "." * (width - fill)
        elapsed = time.perf_counter() - self.t0
        text = f"{self.stage}: {self.detail}" if self.detail else self.stage
        return f"[{bar}] {frac:4.0%} {elapsed:6.1f} s  {text}"

    def _draw(self) -> None:
        with self._lock:
            if self.tty:
                cols = self._cols
                self.stream.write("\r" + self._line()[:cols].ljust(cols))
                self.stream.flush()

    def start(self, stage: str, detail: str = "") -> None:
        """Begin a stage (printed as its own line when not on a terminal)."""
        self.stage, self.detail = stage, detail
        if self.tty:
            self._draw()
        else:
            elapsed = time.perf_counter() - self.t0
            text = f"{stage}: {detail}" if detail else stage
            print(f"{elapsed:7.1f} s  {text}", file=self.stream, flush=True)

    def update(self, detail: str) -> None:
        """New detail for the current stage (only redrawn on a terminal)."""
        self.detail = detail
        if self.tty:
            self._draw()

    def finish(self, key: str, message: str) -> None:
        """A weighted step is complete; ``message`` is printed on its own line."""
        self.done_weight += self.weights.get(key, 0.0)
        with self._lock:
            elapsed = time.perf_counter() - self.t0
            if self.tty:
                self.stream.write("\r" + " " * self._cols + "\r")
            print(f"{elapsed:7.1f} s  {message}", file=self.stream, flush=True)
        if self.tty:
            self._draw()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            with self._lock:
                self.stream.write("\r" + " " * self._cols + "\r")
                self.stream.flush()


# ----------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------
@dataclass
class DemoOptions:
    """Options of :func:`run` (the command line's, see ``kernelsolve demo --help``)."""

    n_train: int | None = None
    methods: tuple[str, ...] = METHODS
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


@dataclass
class _Problem:
    X: np.ndarray  # (n, 2) training points
    y: np.ndarray  # (n,) elevations (m)
    Xt: np.ndarray  # (q, 2) held-out points, then the training points n_train leaves out
    yt: np.ndarray  # (t,) elevations at the held-out points (t <= q): the RMSE's
    mean: float
    std: float
    seed: int
    device: str
    sizes: dict


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, dtype=np.float64) - truth) ** 2)))


def _spline(p: _Problem, prog: Progress, smoothing: float) -> tuple[np.ndarray, str]:
    from .linalg.interpolate import KernelInterpolator

    prog.update(f"GMRES on {len(p.X):,} points")
    f = KernelInterpolator(
        p.X,
        (p.y - p.mean) / p.std,
        smoothing=smoothing,
        rtol=SOLVER_RTOL,
        maxiter=SOLVER_MAXITER,
    )
    prog.update(f"evaluating at {len(p.Xt):,} points")
    pred = f(p.Xt) * p.std + p.mean
    info = f.info
    smooth = f", smoothing {smoothing:g}" if smoothing else ""
    conv = "" if info.converged else ", NOT CONVERGED"
    return pred, f"{info.products} kernel products{smooth}{conv}"


def short_lag_variogram(X: np.ndarray, z: np.ndarray, max_lag: float, nlags: int):
    """Binned semivariogram ``(lags, semivariance)`` of the pairs closer than ``max_lag``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((500, 2))
    >>> lags, sv = short_lag_variogram(X, X[:, 0], 0.2, 5)
    >>> bool(np.all(np.diff(sv) > 0)), bool(lags.max() < 0.2)
    (True, True)
    """
    from scipy.spatial import cKDTree

    pairs = cKDTree(X).query_pairs(max_lag, output_type="ndarray")
    if len(pairs) < 2 * nlags:
        raise ValueError(
            f"too few point pairs closer than {max_lag} ({len(pairs)}) to fit a variogram"
        )
    d = np.linalg.norm(X[pairs[:, 0]] - X[pairs[:, 1]], axis=1)
    g = 0.5 * (z[pairs[:, 0]] - z[pairs[:, 1]]) ** 2
    k = np.minimum((d / max_lag * nlags).astype(np.int64), nlags - 1)
    count = np.bincount(k, minlength=nlags)
    keep = count > 0
    lags = np.bincount(k, d, nlags)[keep] / count[keep]
    return lags, np.bincount(k, g, nlags)[keep] / count[keep]


def _kriging(p: _Problem, prog: Progress) -> tuple[np.ndarray, str]:
    from .linalg.kriging import OrdinaryKriging, fit_variogram

    m = min(p.sizes["variogram_points"], len(p.X))
    prog.update(f"variogram of {m:,} points")
    # the lags that matter are those between a target and its nearest data points
    span = p.X.max(0) - p.X.min(0)
    max_lag = VARIOGRAM_LAG_SPACINGS * math.sqrt(float(np.prod(span)) / len(p.X))
    lags, sv = short_lag_variogram(p.X[:m], p.y[:m], max_lag, VARIOGRAM_LAGS)
    psill, length, nugget = fit_variogram(lags, sv, KRIGING_MODEL)
    params = {"psill": psill, "range": length, "nugget": nugget}
    prog.update(f"solving on {len(p.X):,} points")
    ok = OrdinaryKriging(
        p.X[:, 0],
        p.X[:, 1],
        p.y,
        KRIGING_MODEL,
        params,
        variance=False,
        rtol=SOLVER_RTOL,
        maxiter=SOLVER_MAXITER,
        seed=p.seed,
    )
    prog.update(f"evaluating at {len(p.Xt):,} points")
    pred, _ = ok.execute("points", p.Xt[:, 0], p.Xt[:, 1], variance=False)
    detail = (
        f"{KRIGING_MODEL} variogram, range {length:.3g}, sill {psill + nugget:.3g} m^2, "
        f"nugget {nugget:.3g} m^2; {ok.solver} solver, {ok.info.products} products"
        + ("" if ok.info.converged else ", NOT CONVERGED")
    )
    return np.asarray(pred), detail


def _oversubscribed() -> bool:
    """More runnable processes than cores over the last minute."""
    try:
        return os.getloadavg()[0] > (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return False


def fit_gp_hyperparameters(X, y, device: str = "cpu", max_iter: int = 25) -> dict:
    """Matern-3/2 + noise + constant mean by exact marginal likelihood (dense torch).

    ``y`` should be standardised. Returns ``lengthscale``, ``outputscale``,
    ``noise`` (a variance, floored at 1e-6) and ``mean``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((200, 2))
    >>> h = fit_gp_hyperparameters(X, np.sin(6 * X[:, 0]) + 0.1 * rng.standard_normal(200))
    >>> 0.003 < h["noise"] < 0.03
    True
    """
    torch = _require("torch", "the GP of kernelsolve demo (its hyperparameter fit)")
    Xs = torch.as_tensor(np.asarray(X), dtype=torch.float64, device=device)
    ys = torch.as_tensor(np.asarray(y), dtype=torch.float64, device=device)
    n = len(ys)
    D = torch.cdist(Xs, Xs)
    eye = torch.eye(n, dtype=torch.float64, device=device)
    span = float((Xs.max(0).values - Xs.min(0).values).norm())
    # log lengthscale, log outputscale, log(noise - floor), mean
    raw = torch.tensor(
        [math.log(0.1 * span), 0.0, math.log(1e-2), 0.0], dtype=torch.float64, device=device
    ).requires_grad_()
    opt = torch.optim.LBFGS(
        [raw], lr=1.0, max_iter=max_iter, tolerance_change=1e-7, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        ls, os_, noise, m = raw[0].exp(), raw[1].exp(), raw[2].exp() + 1e-6, raw[3]
        r = math.sqrt(3.0) * D / ls
        K = os_ * (1 + r) * torch.exp(-r) + noise * eye
        L = torch.linalg.cholesky(K)
        a = torch.cholesky_solve((ys - m)[:, None], L)
        loss = (0.5 * ((ys - m)[:, None] * a).sum() + L.diagonal().log().sum()) / n
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    if device == "cpu" and _oversubscribed():
        # torch's OpenMP threads spin-wait for each other when other processes hold
        # the cores: measured 2x (n = 1500) to 7x (n = 300) slower than one thread
        torch.set_num_threads(1)
    try:
        opt.step(closure)
    finally:
        torch.set_num_threads(threads)
    ls, os_, noise, m = (float(v) for v in raw.detach().cpu())
    return {
        "lengthscale": math.exp(ls),
        "outputscale": math.exp(os_),
        "noise": math.exp(noise) + 1e-6,
        "mean": m,
    }


def matern32(A, B, lengthscale: float, outputscale: float):
    """The Matern-3/2 LazyTensor ``s (1 + r) exp(-r)``, ``r = sqrt(3) |a_i - b_j| / l``.

    Example
    -------
    >>> X = np.random.default_rng(0).random((300, 2))
    >>> r = np.sqrt(3) * np.linalg.norm(X[:, None] - X[None], axis=-1) / 0.5
    >>> dense = 2.0 * (1 + r) * np.exp(-r)
    >>> K = matern32(X, X, 0.5, 2.0)
    >>> bool(np.allclose(K @ np.ones((300, 1)), dense.sum(1, keepdims=True)))
    True
    """
    from . import Vi, Vj

    r = Vi(A).sqdist(Vj(B)).sqrt() * (math.sqrt(3.0) / lengthscale)
    return outputscale * (1 + r) * (-r).exp()


def gp_posterior_mean(
    X,
    y,
    Xq,
    h: dict,
    *,
    rank: int = GP_RANK,
    rtol: float = GP_RTOL,
    callback=None,
):
    """Posterior mean ``m + K(Xq, X) (K(X, X) + noise I)^-1 (y - m)`` of the GP ``h``.

    ``X``, ``y``, ``Xq`` are torch tensors (their dtype and device are used: the
    demo passes float32, whose kernel products are ~3x faster than float64's;
    the CG tolerance is far above float32 rounding and the preconditioner works
    in float64). The system is solved by RPCholesky-preconditioned CG.
    Returns ``(mean at Xq, SolveInfo)``.

    Example
    -------
    >>> import torch
    >>> X = torch.rand(500, 2, dtype=torch.float64); y = torch.sin(6 * X[:, 0])
    >>> h = dict(lengthscale=0.3, outputscale=1.0, noise=1e-2, mean=0.0)
    >>> mu, info = gp_posterior_mean(X, y, X[:3], h, rank=100, rtol=1e-8)
    >>> bool(torch.allclose(mu, y[:3], atol=0.05)), info.converged
    (True, True)
    """
    from .linalg.solve import solve

    K = matern32(X, X, h["lengthscale"], h["outputscale"])
    b = (y - h["mean"])[:, None]
    a, info = solve(
        K,
        b,
        alpha=h["noise"],
        rtol=rtol,
        rank=min(rank, len(X)),
        maxiter=GP_MAXITER,
        callback=callback,
        return_info=True,
    )
    mu = (matern32(Xq, X, h["lengthscale"], h["outputscale"]) @ a)[:, 0] + h["mean"]
    return mu, info


def _gp(p: _Problem, prog: Progress, backend: str) -> tuple[np.ndarray, str]:
    torch = _require("torch", "the GP of kernelsolve demo")
    yn = (p.y - p.mean) / p.std
    m = min(p.sizes["gp_fit_points"], len(p.X))
    sub = np.random.default_rng(p.seed + 1).choice(len(p.X), size=m, replace=False)
    prog.update(f"marginal likelihood of {m:,} points (dense torch)")
    h = fit_gp_hyperparameters(p.X[sub], yn[sub], device=p.device)
    dev = torch.device(p.device)
    X = torch.as_tensor(p.X, dtype=torch.float32, device=dev)
    Xt = torch.as_tensor(p.Xt, dtype=torch.float32, device=dev)
    y = torch.as_tensor(yn, dtype=torch.float32, device=dev)
    desc = (
        f"lengthscale {h['lengthscale']:.3g}, outputscale {h['outputscale'] * p.std**2:.3g} "
        f"m^2, noise {h['noise'] * p.std**2:.3g} m^2"
    )
    if backend == "gpytorch":
        pred = _gp_gpytorch(X, y, Xt, h, prog)
        detail = f"{desc}; GPyTorch ExactGP with kernelsolve's MaternKernel"
    else:
        rank = min(p.sizes["gp_rank"], len(p.X))
        prog.update(f"RPCholesky rank {rank:,} + CG on {len(p.X):,} points")
        count = [0]

        def callback(_):
            count[0] += 1
            prog.update(f"CG iteration {count[0]} on {len(p.X):,} points")

        pred, info = gp_posterior_mean(X, y, Xt, h, rank=rank, callback=callback)
        detail = (
            f"{desc}; CG {info.iterations} iterations (rtol {GP_RTOL:g}), "
            f"RPCholesky rank {info.preconditioner.rank}"
            + ("" if info.converged else ", NOT CONVERGED")
        )
    pred = pred.double().cpu().numpy() * p.std + p.mean
    return pred, detail


def _gp_gpytorch(X, y, Xt, h: dict, prog: Progress):
    """Posterior mean by GPyTorch (its CG and preconditioner) on kernelsolve's kernel."""
    torch = _require("torch", "--gp-backend gpytorch", "gpytorch")
    gpytorch = _require("gpytorch", "--gp-backend gpytorch", "gpytorch")
    from .integrations.gpytorch import MaternKernel

    class ExactGP(gpytorch.models.ExactGP):
        def __init__(self, x, t, likelihood):
            super().__init__(x, t, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(MaternKernel(nu=1.5))

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(x), self.covar_module(x)
            )

    likelihood = gpytorch.likelihoods.GaussianLikelihood().to(X.device)
    model = ExactGP(X, y, likelihood).to(X.device)
    model.covar_module.base_kernel.lengthscale = h["lengthscale"]
    model.covar_module.outputscale = h["outputscale"]
    likelihood.noise = h["noise"]
    model.mean_module.constant.data.fill_(h["mean"])
    model.eval()
    likelihood.eval()
    prog.update(f"GPyTorch posterior mean on {len(X):,} points")
    out = []
    # no covariances (GPyTorch would build the test-test block); a few test blocks;
    # the CG tolerance of the kernelsolve path (GPyTorch's default is 1e-2)
    with (
        torch.no_grad(),
        gpytorch.settings.skip_posterior_variances(),
        gpytorch.settings.eval_cg_tolerance(GP_RTOL),
    ):
        for s in range(0, len(Xt), 20_000):
            out.append(model(Xt[s : s + 20_000]).mean)
            prog.update(f"GPyTorch posterior mean at {s + len(out[-1]):,} of {len(Xt):,}")
    return torch.cat(out)


def _scipy(p: _Problem, prog: Progress, n: int) -> tuple[np.ndarray, str]:
    from scipy.interpolate import RBFInterpolator

    prog.update(f"dense solve on {n:,} points")
    f = RBFInterpolator(p.X[:n], (p.y[:n] - p.mean) / p.std, kernel="thin_plate_spline")
    prog.update(f"evaluating at {len(p.Xt):,} points")
    return f(p.Xt) * p.std + p.mean, "thin-plate spline, dense LU"


# ----------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------
def _check_device(device: str) -> None:
    if device == "cpu":
        return
    if device != "cuda":
        raise ValueError(f"device={device!r}: expected 'cpu' or 'cuda'")
    torch = _require("torch", "--device cuda")
    from .engine.backends import cuda

    if not torch.cuda.is_available():
        raise ValueError(
            "--device cuda: torch sees no CUDA GPU (torch.cuda.is_available() is False)"
        )
    if not cuda.available():
        raise MissingDependency(
            "--device cuda: kernelsolve's CUDA target needs CuPy with a visible GPU: "
            "pip install 'kernelsolve[cuda]'"
        )


def check_dependencies(methods, gp_backend: str = "kernelsolve") -> None:
    """Raise :class:`MissingDependency` naming the pip extra for what is missing."""
    _require("matplotlib", "kernelsolve demo (the DEM sample data and the figure)")
    if "gp" in methods:
        _require("torch", "the GP of kernelsolve demo (--methods without gp runs without it)")
        if gp_backend == "gpytorch":
            _require("gpytorch", "--gp-backend gpytorch", "gpytorch")


def _sizes(opts: DemoOptions, n_all: int) -> dict:
    sizes = dict(
        n_train=DEFAULT_N_TRAIN,
        scipy_n=DEFAULT_SCIPY_N,
        variogram_points=VARIOGRAM_POINTS,
        gp_fit_points=GP_FIT_POINTS,
        gp_rank=GP_RANK,
    )
    if opts.quick:
        sizes.update(QUICK)
    if opts.n_train is not None:
        sizes["n_train"] = opts.n_train
    if opts.scipy_n is not None:
        sizes["scipy_n"] = opts.scipy_n
    if not 10 <= sizes["n_train"] <= n_all:
        raise ValueError(f"n_train must be between 10 and {n_all}, got {sizes['n_train']}")
    if not 0 <= sizes["scipy_n"] <= n_all:
        raise ValueError(f"scipy_n must be between 0 and {n_all}, got {sizes['scipy_n']}")
    return sizes


def run(opts: DemoOptions) -> list[MethodResult]:
    """Run the demo: fit every method, print progress, return the results
    (kernelsolve's methods, then scipy's) and write the figure to ``opts.out``.
    """
    methods = tuple(opts.methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"methods={methods!r}: expected a non-empty subset of {METHODS}")
    if opts.gp_backend not in ("kernelsolve", "gpytorch"):
        raise ValueError(f"gp_backend={opts.gp_backend!r}: expected 'kernelsolve' or 'gpytorch'")
    check_dependencies(methods, opts.gp_backend)
    _check_device(opts.device)
    terrain = load_dem()
    train, test = split(len(terrain.values), opts.seed)
    sizes = _sizes(opts, len(train))
    n = sizes["n_train"]
    tr = train[:n]
    p = _Problem(
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
    scipy_n = min(sizes["scipy_n"], n)
    weights = {"spline": 3.0, "kriging": 2.0, "gp": 3.0, "scipy": 1.5, "figure": 0.3}
    weights = {k: v for k, v in weights.items() if k in methods or k == "figure"}
    if scipy_n:
        weights["scipy"] = 1.5
    load0 = _load()
    prog = Progress(weights, stream=opts.stream, tty=opts.tty)
    out = sys.stdout if opts.stream is None else opts.stream
    ny, nx = terrain.z.shape
    print(
        f"kernelsolve demo: Jacksboro DEM, {ny} x {nx} = {ny * nx:,} elevations; "
        f"{n:,} training points (of the random {TRAIN_FRACTION:.0%}, seed {opts.seed}), "
        f"RMSE at the {len(test):,} held-out points",
        file=out,
        flush=True,
    )
    if opts.device == "cuda":
        print(
            "--device cuda: the GP runs on the GPU; the spline and kriging solvers take NumPy "
            "arrays and run on the CPU",
            file=out,
        )
    results: list[MethodResult] = []
    jobs = [(m, lambda m=m: _run_method(m, p, prog, opts)) for m in methods]
    if scipy_n:
        jobs.append(("scipy", lambda: _scipy(p, prog, scipy_n)))
    try:
        for key, job in jobs:
            prog.start(_LABELS[key])
            t0, c0 = time.perf_counter(), time.process_time()
            pred, details = job()
            seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
            r = MethodResult(
                key=key,
                method=_LABELS[key],
                library=_library(key, opts.gp_backend),
                n_train=scipy_n if key == "scipy" else n,
                rmse=_rmse(np.asarray(pred)[: len(p.yt)], p.yt),
                seconds=seconds,
                cpu_seconds=cpu_seconds,
                prediction=np.asarray(pred, dtype=np.float64),
                details=details,
            )
            results.append(r)
            prog.finish(key, f"{r.method}: RMSE {r.rmse:.2f} m in {r.seconds:.1f} s ({details})")
        if opts.out:
            prog.start("figure", opts.out)
            best = min((r for r in results if r.key != "scipy"), key=lambda r: r.rmse)
            write_figure(opts.out, terrain, train[:n], test, best)
            prog.finish("figure", f"figure: {opts.out} ({best.method})")
    finally:
        prog.close()
    load = f" (1-min load average {load0} at the start, {_load()} at the end)"
    print(format_table(results, p.yt, time.perf_counter() - prog.t0, load), file=out, flush=True)
    return results


def _library(key: str, gp_backend: str) -> str:
    if key == "scipy":
        return "scipy"
    return "gpytorch+ks" if key == "gp" and gp_backend == "gpytorch" else "kernelsolve"


def _run_method(key: str, p: _Problem, prog: Progress, opts: DemoOptions):
    if key == "spline":
        return _spline(p, prog, opts.smoothing)
    if key == "kriging":
        return _kriging(p, prog)
    return _gp(p, prog, opts.gp_backend)


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


def write_figure(path: str, terrain: Terrain, train, test, best: MethodResult) -> None:
    """Truth, reconstruction and absolute error of ``best`` as a PNG.

    ``best.prediction`` holds the values at ``test`` followed by those at the
    other points outside ``train``, in increasing order (what :func:`run` predicts).
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # no display needed; keeps a user's interactive backend
    import matplotlib.pyplot as plt

    ny, nx = terrain.z.shape
    data = np.zeros(len(terrain.values), dtype=bool)
    data[train] = True
    query = np.flatnonzero(~data)
    query = np.concatenate([test, np.setdiff1d(query, test)])  # the order of the predictions
    rec = terrain.values.copy()
    rec[query] = best.prediction
    err = np.zeros_like(rec)
    err[query] = np.abs(best.prediction - terrain.values[query])
    vmin, vmax = terrain.z.min(), terrain.z.max()
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.2), constrained_layout=True)
    panels = [
        (terrain.z, f"truth ({ny} x {nx} elevations)", "terrain", vmin, vmax),
        (
            rec.reshape(ny, nx),
            f"{best.method} from {len(train):,} points",
            "terrain",
            vmin,
            vmax,
        ),
        (
            err.reshape(ny, nx),
            f"absolute error (held-out RMSE {best.rmse:.1f} m; 0 at the data)",
            "magma",
            0.0,
            float(np.percentile(err[query], 99)),
        ),
    ]
    for ax, (img, title, cmap, lo, hi) in zip(axes, panels):
        im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, origin="upper", interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.85, label="m")
    fig.suptitle(
        f"kernelsolve demo: Jacksboro DEM from {TRAIN_FRACTION:.0%} of its points",
        fontsize=11,
    )
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    buf.seek(0)
    try:
        from PIL import Image  # a dependency of matplotlib
    except ImportError:
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        return
    # a 256-colour palette: the noisy error panel makes a full-colour PNG ~500 kB
    with Image.open(buf) as im:
        im.convert("RGB").quantize(256).save(path, format="PNG", optimize=True)
