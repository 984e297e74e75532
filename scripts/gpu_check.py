"""The Python half of ``scripts/gpu_check.sh``: probe the machine, write the report.

``python scripts/gpu_check.py probe --json OUT/probe.json``
    Card (nvidia-smi, torch), versions (torch and its CUDA, CuPy and its CUDA
    runtime and driver, Python, kernelsolve, the C++ compiler, pytest), and
    whether a GPU check can run: exit status 0 when torch and CuPy both see a
    CUDA device, 3 when not (the JSON says why), never an exception.
    ``--pretend-no-gpu`` reports "not ready" whatever the machine has.

``python scripts/gpu_check.py report OUTDIR``
    Reads what the steps left in OUTDIR (probe.json, steps.tsv, the pytest
    JUnit XML, the matrix JSON, the benchmark's Markdown / JSON and logs) and
    writes ``OUTDIR/gpu_report.md``. Missing or partial files (a step that
    timed out) become lines of the report, never an exception.

Nothing here needs a GPU to import or to run, so the tests exercise both
commands on any machine (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

READY, NOT_READY = 0, 3

# ----------------------------------------------------------------------------
# probe
# ----------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def probe_nvidia_smi() -> dict:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"found": False, "error": "nvidia-smi not found on PATH"}
    query = "--query-gpu=name,driver_version,memory.total"
    try:
        proc = subprocess.run(
            [exe, query, "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return {"found": True, "error": _first_line(exc)}
    if proc.returncode != 0:
        return {"found": True, "error": (proc.stdout + proc.stderr).strip()[:500]}
    return {"found": True, "gpus": [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]}


def probe_torch() -> dict:
    try:
        import torch
    except Exception as exc:
        return {"error": _first_line(exc)}
    info = {"version": torch.__version__, "cuda": torch.version.cuda}
    try:
        info["cuda_available"] = bool(torch.cuda.is_available())
        info["devices"] = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
    except Exception as exc:
        info.update(cuda_available=False, error=_first_line(exc))
    return info


def probe_cupy() -> dict:
    try:
        import cupy
    except Exception as exc:
        return {"error": _first_line(exc)}
    info = {"version": cupy.__version__}
    try:
        rt = cupy.cuda.runtime
        info["runtime"] = rt.runtimeGetVersion()
        info["driver"] = rt.driverGetVersion()
        info["device_count"] = rt.getDeviceCount()
    except Exception as exc:  # no driver: CUDARuntimeError
        info.update(device_count=0, error=_first_line(exc))
    return info


def probe_host() -> dict:
    """Python, kernelsolve (which copy), the C++ compiler, nvcc, pytest, hypothesis."""
    info = {"python": f"{platform.python_version()} ({sys.executable})"}
    try:
        import kernelsolve
        from kernelsolve.engine.backends import cpu

        info["kernelsolve"] = f"{kernelsolve.__version__} ({Path(kernelsolve.__file__).parent})"
        problem = cpu.compiler_problem()
        info["compiler"] = problem or cpu.find_compiler() or "none (CPU target unavailable)"
    except Exception as exc:
        info["kernelsolve"] = f"not importable: {_first_line(exc)}"
    info["nvcc"] = shutil.which("nvcc") or "not found"
    for mod in ("pytest", "hypothesis"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = "not installed"
    return info


def readiness(smi: dict, torch_info: dict, cupy_info: dict) -> list[str]:
    """Why no GPU check can run (empty: it can)."""
    reasons = []
    if torch_info.get("error") and "version" not in torch_info:
        reasons.append(f"torch does not import ({torch_info['error']})")
    elif not torch_info.get("cuda_available"):
        built = f"torch {torch_info.get('version')}, CUDA {torch_info.get('cuda') or 'none'}"
        reasons.append(f"torch.cuda.is_available() is False ({built})")
    if "version" not in cupy_info:
        reasons.append(f"CuPy does not import ({cupy_info.get('error')})")
    elif not cupy_info.get("device_count"):
        reasons.append(f"CuPy sees no CUDA device ({cupy_info.get('error') or '0 devices'})")
    if reasons and smi.get("error"):
        reasons.append(smi["error"])
    return reasons


def probe(pretend_no_gpu: bool = False) -> dict:
    smi, torch_info, cupy_info = probe_nvidia_smi(), probe_torch(), probe_cupy()
    reasons = readiness(smi, torch_info, cupy_info)
    if pretend_no_gpu:
        reasons.insert(0, "--pretend-no-gpu was given")
    return {
        "nvidia_smi": smi,
        "torch": torch_info,
        "cupy": cupy_info,
        "host": probe_host(),
        "ready": not reasons,
        "reasons": reasons,
    }


# ----------------------------------------------------------------------------
# report: reading what the steps left
# ----------------------------------------------------------------------------


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_steps(path: Path) -> list[dict]:
    """steps.tsv: step, rc (a number, or 'not-run'), seconds, limit, log."""
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return []
    keys = ("step", "rc", "seconds", "limit", "log")
    return [dict(zip(keys, ln.split("\t"))) for ln in lines if ln.strip()]


def junit_counts(path: Path) -> dict | None:
    """Counts of a pytest JUnit XML file, collection errors apart, and the
    first line of each failure (None when the file is missing or cut short)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    c = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors")}
    c["skipped"] = sum(int(s.get("skipped", 0)) for s in suites)
    c["collection_errors"], c["problems"] = 0, []
    for case in root.iter("testcase"):
        for bad in list(case.iter("failure")) + list(case.iter("error")):
            message = (bad.get("message") or bad.text or "").strip().splitlines()
            if "collection failure" in (bad.get("message") or ""):
                c["collection_errors"] += 1
            name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
            c["problems"].append(f"{name}: {message[0] if message else bad.tag}"[:300])
    c["passed"] = c["tests"] - c["failures"] - c["errors"] - c["skipped"]
    return c


def bench_counts(path: Path) -> dict | None:
    data = read_json(path)
    if data is None:
        return None
    libs = [lr for case in data.get("cases", []) for lr in case.get("libs", {}).values()]
    return {
        "cases": len(data.get("cases", [])),
        "ok": sum(lr.get("ok") is True for lr in libs),
        "wrong": sum(lr.get("ok") is False for lr in libs),
        "errors": sum(bool(lr.get("error")) for lr in libs),
    }


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ----------------------------------------------------------------------------
# report: what each step says
# ----------------------------------------------------------------------------

# step id -> (title, its result file); the shell script writes these files
STEPS = {
    "info": ("`python -m kernelsolve info`", "info.log"),
    "gpu-tests": ("GPU tests (`pytest -m gpu`)", "pytest_gpu.xml"),
    "matrix": ("CUDA vs CPU matrix (`python -m tests.engine.cuda_agreement`)", "matrix.json"),
    "bench": ("benchmark, float32 (`benchmarks/bench_reductions.py`)", "bench.json"),
    "bench-f64": ("benchmark, float64 Gaussian", "bench_f64.json"),
}
TIMED_OUT = {"124", "137"}


def _info_verdict(log: Path) -> tuple[bool, str]:
    """The CUDA target line of ``kernelsolve info`` (its exit status decides)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return False, "no output"
    cuda = [ln for ln in lines if ln.startswith("CUDA target")]
    return True, " ".join(cuda[0].split()) if cuda else "no CUDA target line"


def _pytest_verdict(c: dict | None, rehearsal: bool) -> tuple[bool, str]:
    if c is None:
        return False, "no JUnit XML"
    text = (
        f"{c['passed']} passed, {c['failures']} failed, {c['errors']} errors, "
        f"{c['skipped']} skipped"
    )
    if c["collection_errors"]:
        text += f" ({c['collection_errors']} modules not collected)"
    if c["passed"] == 0 and not rehearsal:
        text += "; no GPU test ran"
    real_errors = c["errors"] - c["collection_errors"]
    ok = c["failures"] == 0 and real_errors == 0 and (c["passed"] > 0 or rehearsal)
    return ok, text


def _matrix_verdict(m: dict | None) -> tuple[bool, str]:
    if m is None:
        return False, "no results"
    if m.get("error"):
        return False, f"not run: {m['error']}"
    text = f"{m['passed']} of {m['total']} comparisons agree, {m['failed']} differ"
    text += f" ({m.get('device', '?')} vs {m.get('oracle', '?')})"
    if not m.get("finished"):
        text += " (cut short)"
    return m["failed"] == 0 and m.get("finished", False) and m["total"] > 0, text


def _bench_verdict(b: dict | None) -> tuple[bool, str]:
    if b is None:
        return False, "no results"
    text = f"{b['cases']} cases: {b['ok']} results checked ok, {b['wrong']} wrong, "
    text += f"{b['errors']} errors"
    return b["wrong"] == 0 and b["errors"] == 0 and b["cases"] > 0, text


def step_verdict(out: Path, step: dict, rehearsal: bool) -> tuple[str, str]:
    """(PASS | FAIL | TIMEOUT | NOT RUN, what the step's results say)."""
    if step["rc"] == "not-run":
        return "NOT RUN", "no time left in the budget"
    sid = step["step"]
    result = out / STEPS.get(sid, ("", ""))[1]
    if sid == "info":
        ok, text = _info_verdict(result)
    elif sid == "gpu-tests":
        ok, text = _pytest_verdict(junit_counts(result), rehearsal)
    elif sid == "matrix":
        ok, text = _matrix_verdict(read_json(result))
    else:
        ok, text = _bench_verdict(bench_counts(result))
    if step["rc"] in TIMED_OUT:
        return "TIMEOUT", f"killed after {step['limit']} s; {text}"
    # pytest exits 1 for collection errors that the verdict may forgive
    rc_ok = step["rc"] == "0" or (sid == "gpu-tests" and step["rc"] == "1")
    return ("PASS" if ok and rc_ok else "FAIL"), f"{text} (exit status {step['rc']})"


def _card_lines(p: dict) -> list[str]:
    smi, t, c, h = (
        p.get("nvidia_smi", {}),
        p.get("torch", {}),
        p.get("cupy", {}),
        p.get("host", {}),
    )
    cards = smi.get("gpus") or [smi.get("error", "-")]
    return [
        f"- card (nvidia-smi: name, driver, memory): {'; '.join(cards)}",
        f"- card (torch): {', '.join(t.get('devices') or []) or '-'}",
        f"- torch {t.get('version', '-')} (CUDA {t.get('cuda') or '-'}); CuPy "
        f"{c.get('version', '-')} (CUDA runtime {c.get('runtime', '-')}, driver "
        f"{c.get('driver', '-')})",
        f"- Python {h.get('python', '-')}; kernelsolve {h.get('kernelsolve', '-')}",
        f"- C++ compiler: {h.get('compiler', '-')}; nvcc: {h.get('nvcc', '-')}; pytest "
        f"{h.get('pytest', '-')}; hypothesis {h.get('hypothesis', '-')}",
    ]


def _details(out: Path, verdicts: list[tuple[dict, str, str]]) -> list[str]:
    """Failures, the benchmark tables and the logs of the steps that did not pass."""
    lines = []
    junit = junit_counts(out / "pytest_gpu.xml")
    if junit and junit["problems"]:
        lines += ["", "## GPU test failures and errors", ""]
        lines += [f"- {p}" for p in junit["problems"][:30]]
    matrix = read_json(out / "matrix.json")
    bad = [r for r in (matrix or {}).get("results", []) if not r["ok"]]
    if bad:
        lines += ["", "## Matrix cases that differ", ""]
        lines += [
            f"- {r['case']} [{r['variant']}]: {r['error'].splitlines()[0]}" for r in bad[:30]
        ]
    for name in ("bench.md", "bench_f64.md"):
        try:
            table = (out / name).read_text().replace("\n## ", "\n### ").replace("## ", "### ", 1)
        except OSError:
            continue
        lines += ["", f"## Benchmark ({name})", "", table.strip()]
    info = log_tail(out / "info.log", lines=60)
    if info != "(no log)":
        lines += ["", "## kernelsolve info", "", "```", info, "```"]
    for step, status, _ in verdicts:
        if status != "PASS" and step.get("log"):
            tail = log_tail(out / step["log"])
            lines += ["", f"## Last lines of {step['log']} ({status})", "", "```", tail, "```"]
    return lines


def report(
    out: Path, rehearsal: bool = False, commit: str = "", ignore_probe: bool = False
) -> tuple[str, bool]:
    """The Markdown of ``out/gpu_report.md`` and whether every step passed
    (SKIPPED counts as passed: there was nothing to check)."""
    p = read_json(out / "probe.json") or {}
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    head = ["# kernelsolve GPU check", ""]
    if rehearsal:
        head += ["**REHEARSAL on the CPU**: every step ran a CPU stand-in; not a GPU result.", ""]
    meta = [f"- date: {now}; commit: {commit or 'unknown'}", *_card_lines(p)]
    if not p.get("ready") and ignore_probe:
        reasons = "; ".join(p.get("reasons") or ["the probe failed"])
        head += [f"The probe found no GPU ({reasons}); GPU_CHECK_IGNORE_PROBE=1: run anyway.", ""]
    elif not p.get("ready") and not rehearsal:
        reasons = p.get("reasons") or ["the probe failed (see probe.log)"]
        text = head + ["Result: **SKIPPED**: no GPU check was run, because:", ""]
        text += [f"- {r}" for r in reasons] + ["", "## Machine", "", *meta]
        return "\n".join(text) + "\n", True
    verdicts = [(s, *step_verdict(out, s, rehearsal)) for s in read_steps(out / "steps.tsv")]
    ok = bool(verdicts) and all(v == "PASS" for _, v, _ in verdicts)
    table = ["| step | result | details | seconds | limit | log |", "|---|---|---|---|---|---|"]
    for s, status, text in verdicts:
        title = STEPS.get(s["step"], (s["step"],))[0]
        row = [title, status, text, s["seconds"], s["limit"], s.get("log", "")]
        table.append("| " + " | ".join(row) + " |")
    body = head + [f"Result: **{'PASS' if ok else 'FAIL'}**", "", "## Machine", "", *meta]
    body += ["", "## Steps", "", *table, *_details(out, verdicts)]
    return "\n".join(body) + "\n", ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("probe", help="card, versions, and whether a GPU check can run")
    pr.add_argument("--json", required=True, metavar="PATH")
    pr.add_argument("--pretend-no-gpu", action="store_true")
    rp = sub.add_parser("report", help="write OUTDIR/gpu_report.md from the steps' files")
    rp.add_argument("outdir", type=Path)
    rp.add_argument("--rehearsal", action="store_true")
    rp.add_argument("--commit", default="")
    rp.add_argument("--ignore-probe", action="store_true")
    args = ap.parse_args(argv)
    if args.command == "probe":
        data = probe(args.pretend_no_gpu)
        Path(args.json).write_text(json.dumps(data, indent=1))
        print(
            "GPU check can run" if data["ready"] else "no GPU check: " + "; ".join(data["reasons"])
        )
        return READY if data["ready"] else NOT_READY
    text, ok = report(args.outdir, args.rehearsal, args.commit, args.ignore_probe)
    (args.outdir / "gpu_report.md").write_text(text)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
