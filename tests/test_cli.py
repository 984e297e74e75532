"""The command line (``kernelsolve info | demo | bench``) and the demo's pieces.

The demo's methods are checked against independent dense computations at
small sizes (scipy's RBFInterpolator, a dense NumPy GP, a brute-force
semivariogram); the end-to-end runs use ``--quick``.
"""

from __future__ import annotations

import io
import math
import re
import sys

import numpy as np
import pytest

from kernelsolve import cli, demo

torch = pytest.importorskip("torch", reason="the demo's GP and the bench need torch (test extra)")
pytest.importorskip("matplotlib", reason="the demo's data and figure need matplotlib")


def _run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _usage_error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(list(argv))
    assert exc.value.code == 2
    return capsys.readouterr().err


# ---------------------------------------------------------------------- info
def test_info_prints_every_field(capsys):
    rc, out, _ = _run(capsys, "info")
    assert rc == 0
    for field in (
        "kernelsolve",
        "python",
        "numpy",
        "torch",
        "CPU target",
        "CPU flags",
        "CPU check",
        "OpenMP threads",
        "CUDA target",
        "NVRTC",
        "cache",
        "missing:",
    ):
        assert re.search(rf"^{re.escape(field)}", out, re.M), f"no {field!r} line in:\n{out}"
    from kernelsolve import __version__

    assert re.search(rf"^kernelsolve\s+{re.escape(__version__)}$", out, re.M)
    # the cache line gives the directory, file count and size
    assert re.search(r"^cache\s+\S+ \(\d+ files, [\d.]+ MiB", out, re.M)
    threads = re.search(r"^OpenMP threads\s+(\d+)", out, re.M)
    assert threads and int(threads.group(1)) >= 1
    from kernelsolve.engine.backends import cpu

    if cpu.find_compiler():
        assert re.search(r"^CPU check\s+ok", out, re.M)
        assert "-fopenmp" in out


def test_info_names_the_fix_for_missing_packages(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gpytorch", None)  # import gpytorch -> ImportError
    rc, out, _ = _run(capsys, "info")
    assert rc == 0
    assert re.search(r"^gpytorch\s+not installed", out, re.M)
    assert "pip install 'kernelsolve[gpytorch]'" in out.split("missing:")[1]


# ---------------------------------------------------------------------- demo
def test_demo_quick_end_to_end(capsys, tmp_path):
    png = tmp_path / "sub" / "demo.png"
    rc, out, err = _run(capsys, "demo", "--quick", "--out", str(png))
    assert rc == 0, err
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 300_000
    rows = re.findall(
        r"^(thin-plate spline|ordinary kriging|exact GP|dense RBFInterpolator)\s+"
        r"(kernelsolve|scipy)\s+([\d,]+)\s+(\S+)\s+(\S+)",
        out,
        re.M,
    )
    assert [r[0] for r in rows] == [
        "thin-plate spline",
        "ordinary kriging",
        "exact GP",
        "dense RBFInterpolator",
    ], out
    base = float(re.search(r"predicting the mean elevation: RMSE ([\d.]+) m", out).group(1))
    assert 150 < base < 175  # the DEM's standard deviation is 162 m
    for name, lib, n, rmse, seconds in rows:
        rmse = float(rmse)
        assert math.isfinite(rmse) and rmse < 0.7 * base, (name, rmse, base)
        assert float(seconds) >= 0
        assert int(n.replace(",", "")) == (demo.QUICK["scipy_n"] if lib == "scipy" else 1000)
    # the O(N) methods use more points than scipy and do better
    ks = [float(r[3]) for r in rows if r[1] == "kernelsolve"]
    assert max(ks) < float(rows[-1][3])
    # progress goes to stderr: one line per stage, no carriage returns off a terminal
    assert "\r" not in err
    for stage in ("thin-plate spline", "ordinary kriging", "exact GP", "figure"):
        assert stage in err


def test_demo_without_figure_and_one_method(capsys):
    results = demo.run(
        demo.DemoOptions(
            quick=True, methods=("kriging",), scipy_n=0, out=None, stream=io.StringIO()
        )
    )
    assert [r.key for r in results] == ["kriging"]
    r = results[0]
    assert r.n_train == 1000 and r.prediction.shape == (138_632 - 1000,)
    assert r.rmse < 80


def test_gp_backend_gpytorch_agrees_with_kernelsolve():
    pytest.importorskip("gpytorch", reason="--gp-backend gpytorch needs gpytorch")
    opts = dict(quick=True, methods=("gp",), scipy_n=0, out=None, stream=io.StringIO())
    ks = demo.run(demo.DemoOptions(**opts))[0]
    gp = demo.run(demo.DemoOptions(gp_backend="gpytorch", **opts))[0]
    assert gp.library == "gpytorch+ks" and ks.library == "kernelsolve"
    # same hyperparameters; the two CG solves stop at different tolerances
    assert abs(gp.rmse - ks.rmse) < 0.5
    assert np.sqrt(np.mean((gp.prediction - ks.prediction) ** 2)) < 1.0


def test_split_and_data():
    t = demo.load_dem()
    assert t.z.shape == (344, 403) and t.points.shape == (138_632, 2)
    assert t.points[:, 0].max() == 1.0 and np.isclose(t.points[:, 1].max(), 343 / 402)
    train, test = demo.split(len(t.values), seed=0)
    assert len(train) == 27_726 and len(test) == 110_906
    assert len(np.union1d(train, test)) == 138_632
    again, _ = demo.split(len(t.values), seed=0)
    other, _ = demo.split(len(t.values), seed=1)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def _small_problem(n=300, q=2000, seed=0):
    t = demo.load_dem()
    train, test = demo.split(len(t.values), seed)
    X, y = t.points[train[:n]], t.values[train[:n]]
    sizes = dict(variogram_points=n, gp_fit_points=n, gp_rank=n)
    return demo._Problem(
        X, y, t.points[test[:q]], t.values[test[:q]], y.mean(), y.std(), seed, "cpu", sizes
    )


def test_spline_matches_scipy_rbfinterpolator():
    from scipy.interpolate import RBFInterpolator

    p = _small_problem()
    prog = demo.Progress({}, stream=io.StringIO(), tty=False)
    pred, details = demo._spline(p, prog, 0.0)
    ref = RBFInterpolator(p.X, p.y, kernel="thin_plate_spline")(p.Xt)
    assert np.abs(pred - ref).max() < 1e-4 * np.abs(ref).max()
    assert "kernel products" in details


def test_gp_posterior_mean_matches_dense_numpy():
    rng = np.random.default_rng(0)
    X = rng.random((400, 2))
    y = np.sin(5 * X[:, 0]) * np.cos(3 * X[:, 1]) + 0.05 * rng.standard_normal(400)
    Xq = rng.random((50, 2))
    h = dict(lengthscale=0.2, outputscale=0.8, noise=1e-2, mean=0.1)
    mu, info = demo.gp_posterior_mean(
        torch.tensor(X), torch.tensor(y), torch.tensor(Xq), h, rank=100, rtol=1e-10
    )

    def k(A, B):
        r = math.sqrt(3) * np.linalg.norm(A[:, None] - B[None], axis=-1) / h["lengthscale"]
        return h["outputscale"] * (1 + r) * np.exp(-r)

    a = np.linalg.solve(k(X, X) + h["noise"] * np.eye(400), y - h["mean"])
    dense = k(Xq, X) @ a + h["mean"]
    assert info.converged
    np.testing.assert_allclose(mu.numpy(), dense, rtol=0, atol=1e-7)


def _nll(X, y, h):
    r = math.sqrt(3) * np.linalg.norm(X[:, None] - X[None], axis=-1) / h["lengthscale"]
    K = h["outputscale"] * (1 + r) * np.exp(-r) + h["noise"] * np.eye(len(y))
    L = np.linalg.cholesky(K)
    a = np.linalg.solve(K, y - h["mean"])
    return 0.5 * (y - h["mean"]) @ a + np.log(np.diag(L)).sum()


def test_gp_hyperparameters_maximise_the_likelihood():
    rng = np.random.default_rng(1)
    X = rng.random((300, 2))
    y = np.sin(6 * X[:, 0]) + X[:, 1] + 0.1 * rng.standard_normal(300)
    y = (y - y.mean()) / y.std()
    h = demo.fit_gp_hyperparameters(X, y)
    best = _nll(X, y, h)
    # an independent NumPy likelihood: every 5 % move of one parameter is worse
    for key in ("lengthscale", "outputscale", "noise"):
        for f in (0.95, 1.05):
            assert _nll(X, y, {**h, key: h[key] * f}) > best - 1e-6, key
    for dm in (-0.05, 0.05):
        assert _nll(X, y, {**h, "mean": h["mean"] + dm}) > best - 1e-6


def test_short_lag_variogram_matches_brute_force():
    rng = np.random.default_rng(2)
    X = rng.random((400, 2))
    z = np.sin(4 * X[:, 0]) + rng.standard_normal(400) * 0.1
    lags, sv = demo.short_lag_variogram(X, z, 0.15, 6)
    i, j = np.triu_indices(400, 1)
    d = np.linalg.norm(X[i] - X[j], axis=1)
    g = 0.5 * (z[i] - z[j]) ** 2
    edges = np.linspace(0, 0.15, 7)
    ref_l, ref_g = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (d >= lo) & (d < hi)
        ref_l.append(d[sel].mean())
        ref_g.append(g[sel].mean())
    np.testing.assert_allclose(lags, ref_l, rtol=1e-12)
    np.testing.assert_allclose(sv, ref_g, rtol=1e-12)
    with pytest.raises(ValueError, match="too few point pairs"):
        demo.short_lag_variogram(X[:3], z[:3], 0.01, 6)


def test_progress_lines_and_terminal_bar():
    plain = io.StringIO()
    p = demo.Progress({"a": 1.0, "b": 1.0}, stream=plain, tty=False)
    p.start("stage a", "detail")
    p.update("not printed off a terminal")
    p.finish("a", "a done")
    p.close()
    text = plain.getvalue()
    assert "\r" not in text and "stage a: detail" in text and "a done" in text
    assert "not printed" not in text
    bar = io.StringIO()
    p = demo.Progress({"a": 1.0, "b": 1.0}, stream=bar, tty=True)
    p.start("stage a")
    p.finish("a", "a done")
    p.update("half way")
    p.close()
    assert "\r[" in bar.getvalue() and "50%" in bar.getvalue()


# ---------------------------------------------------------------------- bench
def test_bench_quick(capsys):
    rc, out, _ = _run(capsys, "bench", "--quick", "--peers", "torch")
    assert rc == 0, out
    for case in (
        "Gaussian K @ b, 1 column",
        "Gaussian K @ b, 11 columns",
        "logsumexp",
        "argKmin(10)",
    ):
        line = next(ln for ln in out.splitlines() if ln.startswith(case + " "))
        assert "kernelsolve ok" in line and "torch ok" in line
        assert re.search(r"\d\.\d\dx", line)
    assert "machine:" in out and "load average" in out


# ---------------------------------------------------------------------- bad options
@pytest.mark.parametrize(
    "argv, message",
    [
        (("demo", "--n-train", "0"), "--n-train"),
        (("demo", "--n-train", "30000"), "between 10 and 27726"),
        (("demo", "--n-train", "many"), "expected an integer"),
        (("demo", "--methods", "spline,nn"), "--methods"),
        (("demo", "--methods", "gp,gp"), "twice"),
        (("demo", "--device", "tpu"), "--device"),
        (("demo", "--scipy-n", "-1"), "--scipy-n"),
        (("demo", "--smoothing", "-1"), "--smoothing"),
        (("demo", "--gp-backend", "sklearn"), "--gp-backend"),
        (("bench", "-n", "5"), "-n"),
        (("bench", "--peers", "jax"), "--peers"),
        (("frobnicate",), "invalid choice"),
        ((), "required"),
    ],
)
def test_bad_options_are_argparse_errors(capsys, argv, message):
    assert message in _usage_error(capsys, *argv)


def test_device_cuda_without_gpu_is_a_clear_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: --device cuda is valid here")
    err = _usage_error(capsys, "demo", "--quick", "--device", "cuda")
    assert "--device cuda" in err and "GPU" in err


def test_missing_torch_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    rc, _, err = _run(capsys, "demo", "--quick", "--methods", "gp", "--out", "")
    assert rc == 1
    assert "torch" in err and "pip install 'kernelsolve[demo]'" in err
