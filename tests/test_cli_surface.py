"""The command's surface: ``--version``, ``python -m kernelsolve``, what ``info``
reports (memo sizes, the kernel cache and its safety, no third-party chatter),
and a ``$CXX`` / ``$CC`` that names no compiler.

The end-to-end runs start ``python -m kernelsolve`` in a fresh process from a
directory outside the repository, with this checkout first on PYTHONPATH and
a private kernel cache.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kernelsolve import Vi, Vj, __version__, cli
from kernelsolve.engine import cache
from kernelsolve.engine.backends import cpu

REPO = Path(__file__).resolve().parents[1]
needs_compiler = pytest.mark.skipif(
    cpu.find_compiler() is None, reason="no C++ compiler: the CPU target is not available"
)


def run_module(tmp_path, *args, **env) -> subprocess.CompletedProcess:
    """``python -W always -m kernelsolve ARGS`` in a fresh process, from
    ``tmp_path``, with a private cache (unless ``env`` sets one)."""
    base = dict(os.environ)
    base["PYTHONPATH"] = os.pathsep.join([str(REPO), base.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    base[cache.ENV_VAR] = str(tmp_path / "kernel-cache")
    base.update(env)
    return subprocess.run(
        [sys.executable, "-W", "always", "-m", "kernelsolve", *args],
        cwd=tmp_path,
        env=base,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def fresh_compiler_lookup():
    """find_compiler() is an lru_cache: forget it before and after the test."""
    cpu.find_compiler.cache_clear()
    yield
    cpu.find_compiler.cache_clear()


# ---------------------------------------------------------------------- --version, -m
def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"kernelsolve {__version__}"


def test_python_dash_m_kernelsolve(tmp_path):
    proc = run_module(tmp_path, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"kernelsolve {__version__}"
    proc = run_module(tmp_path)  # no command: argparse's usage error
    assert proc.returncode == 2 and "usage: kernelsolve" in proc.stderr


# ---------------------------------------------------------------------- info
def test_info_prints_no_third_party_chatter(tmp_path):
    """`python -W always -m kernelsolve info`: nothing on stderr, no warning line
    (pykeops prints "[KeOps] Warning" on import; torch, gpytorch and cupy may
    warn) on stdout; the report itself is complete."""
    proc = run_module(tmp_path, "info")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    assert not re.search(r"warn|\[KeOps\]", out, re.I), out
    for field in ("kernelsolve", "CPU target", "CUDA target", "cache", "cache safe", "missing"):
        assert re.search(rf"^{re.escape(field)}\b", out, re.M), f"no {field!r} in:\n{out}"
    assert re.search(rf"^cache\s+{re.escape(str(tmp_path / 'kernel-cache'))} ", out, re.M)


@needs_compiler
def test_info_reports_memo_sizes_and_the_cache(capsys, tmp_path, monkeypatch):
    """Every registered process-global cache appears with its size; the disk
    cache line gives the path, the file count, the size and 'cache safe yes'."""
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "c"))
    monkeypatch.setattr(cpu, "_memo", {})  # the self-test compiles into the private cache
    table = cache.register_memo({"a": 1, "b": 2, "c": 3}, "test.three_entries")
    try:
        assert cli.main(["info"]) == 0
        sizes = cache.memo_sizes()
    finally:
        del cache._memos["test.three_entries"]
    out = capsys.readouterr().out
    memos = out.split("memos (entries held by this process's caches):\n")[1].split("missing")[0]
    listed = {name: int(n) for name, n in re.findall(r"^  (\S+)\s+(\d+)$", memos, re.M)}
    assert listed == sizes and listed["test.three_entries"] == 3 == len(table)
    assert {"cpu.kernels", "dispatch.plans"} <= set(listed)
    files, size = cache.disk_usage(tmp_path / "c")
    assert files >= 2  # the self-test's .so and .cpp
    assert f"{tmp_path / 'c'} ({files} files, {size / 2**20:.1f} MiB" in out
    assert re.search(r"^cache safe\s+yes", out, re.M)


def test_info_reports_an_unsafe_cache_without_a_traceback(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    proc = run_module(tmp_path, "info", KERNELSOLVE_CACHE_DIR=str(open_dir))
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr
    assert re.search(
        rf"^cache safe\s+NO: .*{re.escape(str(open_dir))}.*mode 0777", proc.stdout, re.M
    )
    missing = proc.stdout.split("missing:")[1]
    assert f"chmod 700 {open_dir}" in missing


# ---------------------------------------------------------------------- $CXX / $CC
def test_cxx_naming_no_compiler_is_reported_by_info(tmp_path):
    proc = run_module(tmp_path, "info", CXX="/nonexistent/g++-42")
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr
    assert re.search(
        r"^CPU target\s+error: CXX='/nonexistent/g\+\+-42' names no", proc.stdout, re.M
    )
    assert "the compiler named by CXX" in proc.stdout.split("missing:")[1]


@pytest.mark.parametrize("var", ["CXX", "CC"])
def test_compiler_variable_naming_no_compiler_is_an_error(
    var, tmp_path, monkeypatch, fresh_compiler_lookup
):
    """$CXX (or $CC with CXX unset) naming no executable: find_compiler keeps
    the user's choice (no other compiler, no reference fallback), and the first
    compile raises CompilerNotFoundError naming the variable and its value."""
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv(var, "no-such-compiler-42")
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "c"))
    monkeypatch.setattr(cpu, "_memo", {})
    assert cpu.find_compiler() == "no-such-compiler-42"
    assert var in cpu.compiler_problem()
    x = np.random.default_rng(0).random((6, 2))
    with pytest.raises(cpu.CompilerNotFoundError, match=f"{var}='no-such-compiler-42'"):
        (Vi(x) - Vj(x)).sin().sum(dim=1)
    assert not list((tmp_path / "c").rglob("*.so"))


@needs_compiler
def test_valid_cxx_wins_over_a_bogus_cc(monkeypatch, fresh_compiler_lookup):
    """$CXX is used when set; $CC is then never consulted."""
    real = cpu.find_compiler()
    monkeypatch.setenv("CXX", real)
    monkeypatch.setenv("CC", "no-such-compiler-42")
    cpu.find_compiler.cache_clear()
    assert cpu.find_compiler() == real and cpu.compiler_problem() is None


@needs_compiler
def test_no_variable_means_the_first_compiler_on_path(monkeypatch, fresh_compiler_lookup):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("CC", raising=False)
    found = cpu.find_compiler()
    assert found and os.access(found, os.X_OK) and cpu.compiler_problem() is None
