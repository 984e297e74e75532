"""The notebooks and the documentation's code run as written.

* Every notebook in ``notebooks/`` is executed top to bottom by nbclient in a
  fresh ``python3`` kernel, with ``KERNELSOLVE_NOTEBOOK_SMALL=1`` (each
  notebook reads it in its first code cell and shrinks its sizes) and the
  ``Agg`` matplotlib backend. Any exception fails the test; the notebooks
  assert their numbers against dense NumPy / scipy / torch computations, so a
  wrong result fails too.
* The committed notebooks carry no outputs (nbformat v4, kernel ``python3``).
* The ``python`` code blocks of README.md and docs/porting_from_pykeops.md run
  (one namespace per file, in order; a block fenced as ``python no-run`` is
  shown but not run), the ``>>>`` examples of docs/API.md pass as doctests, and
  docs/API.md is what ``scripts/gen_api.py`` generates from the docstrings.
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds; generous because CI machines are shared
SMALL_LINE = 'SMALL = os.environ.get("KERNELSOLVE_NOTEBOOK_SMALL") == "1"'


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def test_there_are_notebooks():
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_lazytensor_tour.ipynb",
        "02_solve_and_precondition.ipynb",
        "03_kriging_and_splines_dem.ipynb",
        "04_gp_regression_gpytorch.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped(path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook without code"
    assert SMALL_LINE in code[0].source, "the first code cell must read KERNELSOLVE_NOTEBOOK_SMALL"
    for k, cell in enumerate(code):
        assert cell.outputs == [], f"code cell {k} has outputs: strip them before committing"
        assert cell.execution_count is None, f"code cell {k} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
    pytest.importorskip("nbclient", reason="nbclient is not installed")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed")
    if "gpytorch" in path.name and not _has("gpytorch"):
        pytest.skip("gpytorch is not installed (pip install kernelsolve[gpytorch])")
    from nbclient import NotebookClient

    monkeypatch.setenv("KERNELSOLVE_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The kernel spec runs "python": make that the interpreter running the tests
    # (a virtual environment need not be activated).
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # files it writes land here
    )
    client.execute()  # raises CellExecutionError with the failing cell and traceback


# ----------------------------------------------------------------------
# Documentation
# ----------------------------------------------------------------------
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```\s*$", re.M | re.S)


def _python_blocks(text: str) -> list[str]:
    """The ``python`` fenced blocks, minus those marked ``no-run``."""
    blocks = []
    for m in FENCE.finditer(text):
        words = m["info"].split()
        if words[:1] == ["python"] and "no-run" not in words:
            blocks.append(m["body"])
    return blocks


def test_python_blocks_are_found():
    text = "a\n```python\nx = 1\n```\n```python no-run\ny\n```\n```bash\nls\n```\n"
    assert _python_blocks(text) == ["x = 1\n"]


@pytest.mark.parametrize("name", ["README.md", "docs/porting_from_pykeops.md"])
def test_markdown_python_blocks_run(name, tmp_path):
    blocks = _python_blocks((ROOT / name).read_text())
    assert blocks, f"{name} has no python blocks"
    script = "\n".join(f"# --- block {k}\n{b}" for k, b in enumerate(blocks))
    # A fresh interpreter: no state from other tests, the Agg backend, and a
    # traceback that names the block.
    # A private kernel cache: the blocks may call kernelsolve.clear_cache().
    env = dict(os.environ, MPLBACKEND="Agg", KERNELSOLVE_CACHE_DIR=str(tmp_path / "cache"))
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"{name}:\n{run.stderr[-4000:]}"


def _load_gen_api():
    spec = importlib.util.spec_from_file_location("gen_api", ROOT / "scripts" / "gen_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_is_current():
    if not _has("gpytorch"):
        pytest.skip("gpytorch is not installed: docs/API.md documents integrations.gpytorch")
    expected = _load_gen_api().render()
    current = (ROOT / "docs" / "API.md").read_text()
    assert current == expected, "docs/API.md is stale: run python scripts/gen_api.py"


def test_api_reference_examples():
    """Each docstring's examples, with the globals of its module (as doctest does)."""
    import importlib

    chunks = _load_gen_api().doctest_chunks((ROOT / "docs" / "API.md").read_text())
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    ran = set()
    for module_name, chunk, line in chunks:
        if module_name.endswith(".gpytorch") and not _has("gpytorch"):
            continue  # documented, but its examples need gpytorch
        module = importlib.import_module(module_name)
        test = parser.get_doctest(chunk, dict(vars(module)), module_name, "docs/API.md", line)
        if test.examples:
            runner.run(test)
            ran.add(module_name)
    result = runner.summarize(verbose=False)
    assert result.attempted > 20 and len(ran) >= 8
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed (above)"
