"""A non-editable install works: the wheel holds every file the package needs.

The package's source files are copied to a temporary directory (so that the
build never writes into the checkout), built into a wheel with
``pip wheel --no-deps --no-build-isolation``, and installed with
``pip install --no-deps --no-index`` into a fresh virtual environment that sees
the host's packages (``--system-site-packages``: numpy, scipy, torch come from
the host, nothing is downloaded). Then, from a directory outside the
repository, without PYTHONPATH and with a private kernel cache, the venv's
``kernelsolve info`` runs, a reduction is compiled and checked, and the
imported kernelsolve is checked to be the installed one, with its headers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kernelsolve.engine.backends import cpu

REPO = Path(__file__).resolve().parents[1]
BUILD_FILES = ("pyproject.toml", "README.md")  # what setuptools reads besides the package
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.egg-info")

pytest.importorskip("setuptools", reason="building the wheel needs setuptools (build backend)")


def package_files(root: Path) -> set[str]:
    """Paths (relative to ``root``, '/'-separated) of the files of the package
    under ``root/kernelsolve``, without caches and build products."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root / "kernelsolve"):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.endswith(".egg-info")]
        for name in filenames:
            if not name.endswith((".pyc", ".so")):
                found.add(Path(dirpath, name).relative_to(root).as_posix())
    return found


def run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"$ {' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(REPO / "kernelsolve", src / "kernelsolve", ignore=IGNORED)
    for name in BUILD_FILES:
        shutil.copy(REPO / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(dist), str(src)],
        cwd=src,
    )
    (whl,) = dist.glob("kernelsolve-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv (host packages visible) with the wheel installed."""
    where = tmp_path_factory.mktemp("venv") / "env"
    run([sys.executable, "-m", "venv", "--system-site-packages", str(where)])
    python = where / "bin" / "python"
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)])
    return where


@pytest.fixture
def outside(tmp_path) -> tuple[Path, dict]:
    """(a working directory outside the repository, an environment without
    PYTHONPATH and with a private kernel cache)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["KERNELSOLVE_CACHE_DIR"] = str(tmp_path / "kernel-cache")
    work = tmp_path / "work"
    work.mkdir()
    return work, env


def test_wheel_ships_every_file_of_the_package(wheel):
    """Every file under kernelsolve/ in the source tree (the .h headers
    included, in any subdirectory) is in the wheel, and nothing else is."""
    with zipfile.ZipFile(wheel) as z:
        shipped = {n for n in z.namelist() if n.startswith("kernelsolve/")}
    source = package_files(REPO)
    assert any(p.endswith(".h") for p in source), "no header in the source tree?"
    assert source - shipped == set(), f"missing from the wheel: {sorted(source - shipped)}"
    assert shipped - source == set(), f"unexpected in the wheel: {sorted(shipped - source)}"


CHECK_INSTALL = """
import json, pathlib, sys, warnings
import numpy as np
import kernelsolve
from kernelsolve import Vi, Vj

pkg = pathlib.Path(kernelsolve.__file__).resolve().parent
x = np.random.default_rng(0).random((50, 3))
with warnings.catch_warnings():
    warnings.simplefilter("error")  # the reference fallback would warn
    got = (-((Vi(x) - Vj(x)) ** 2).sum(-1)).exp().sum(dim=1, backend="CPU")
want = np.exp(-((x[:, None] - x[None]) ** 2).sum(-1)).sum(1)
print(json.dumps({
    "package": str(pkg),
    "prefix": sys.prefix,
    "headers": sorted(p.relative_to(pkg.parent).as_posix() for p in pkg.rglob("*.h")),
    "max_error": float(np.abs(np.asarray(got).ravel() - want).max()),
}))
"""


@pytest.mark.skipif(cpu.find_compiler() is None, reason="no C++ compiler: nothing to compile")
def test_installed_wheel_runs_info_and_a_compiled_reduction(venv, outside):
    work, env = outside
    python, command = venv / "bin" / "python", venv / "bin" / "kernelsolve"

    out = json.loads(run([python, "-c", CHECK_INSTALL], cwd=work, env=env).stdout)
    pkg = Path(out["package"])
    assert pkg.is_relative_to(venv.resolve()) and not pkg.is_relative_to(REPO)
    assert Path(out["prefix"]).resolve() == venv.resolve()
    assert out["headers"] == sorted(p for p in package_files(REPO) if p.endswith(".h"))
    assert out["max_error"] < 1e-10
    assert list(Path(env["KERNELSOLVE_CACHE_DIR"]).rglob("*.so")), "nothing was compiled"

    info = run([command, "info"], cwd=work, env=env).stdout
    assert re.search(r"^CPU check\s+ok", info, re.M), info
    assert env["KERNELSOLVE_CACHE_DIR"] in info
    version = run([command, "--version"], cwd=work, env=env).stdout
    assert version.startswith("kernelsolve ")
