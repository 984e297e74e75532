"""The command line (``kernelsolve info | demo | bench``) and the demo's pieces.

The demo's methods are checked against independent dense computations at
small sizes (scipy's RBFInterpolator here; the GP and the short-lag
semivariogram, now library code, in tests/linalg); the end-to-end runs use
``--quick``.
"""

from __future__ import annotations

import io
import math
import re
import sys

import numpy as np
import pytest

from kernelsolve import cli, demo
from kernelsolve.demo import methods
from kernelsolve.progress import Progress

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
    return methods.Problem(
        X, y, t.points[test[:q]], t.values[test[:q]], y.mean(), y.std(), seed, "cpu", sizes
    )


def test_spline_matches_scipy_rbfinterpolator():
    from scipy.interpolate import RBFInterpolator

    p = _small_problem()
    prog = Progress(stream=io.StringIO(), tty=False)
    pred, details = methods.spline(p, prog, 0.0)
    ref = RBFInterpolator(p.X, p.y, kernel="thin_plate_spline")(p.Xt)
    assert np.abs(pred - ref).max() < 1e-4 * np.abs(ref).max()
    assert "dense cholesky" in details  # 300 points: the direct solve (Cholesky path)


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


def test_demo_gp_runs_without_torch(capsys, monkeypatch):
    """The main job's GP is kernelsolve.sklearn's estimator on NumPy: no torch."""
    for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    rc, out, err = _run(capsys, "demo", "--quick", "--methods", "gp", "--out", "")
    assert rc == 0, err
    rmse = float(re.search(r"^exact GP\s+kernelsolve\s+[\d,]+\s+(\S+)", out, re.M).group(1))
    assert rmse < 80  # as the quick run with torch installed (58.7 m, seed 0)


def test_missing_sklearn_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    rc, _, err = _run(capsys, "demo", "--quick", "--methods", "gp", "--out", "")
    assert rc == 1
    assert "sklearn" in err and "pip install 'kernelsolve[demo]'" in err


def test_gpytorch_backend_without_torch_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    rc, _, err = _run(capsys, "demo", "--quick", "--methods", "gp", "--gp-backend", "gpytorch")
    assert rc == 1
    assert "torch" in err and "pip install 'kernelsolve[gpytorch]'" in err
