"""kernelsolve.progress: a tqdm bar on a terminal, plain lines elsewhere (also
without tqdm), and nothing at all when disabled."""

from __future__ import annotations

import ast
import io
import re
import sys
from pathlib import Path

import pytest

from kernelsolve import progress
from kernelsolve.progress import Progress

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # any control character but \t and \n


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_stages(stream, **kw) -> str:
    bar = Progress("demo", total=2, stream=stream, interval=None, **kw)
    bar.set_description("stage a")
    bar.write("detail")
    bar.update(0, "not printed off a terminal")
    bar.update(1)
    bar.write("a done")
    bar.update(1, "half way")
    bar.close()
    return stream.getvalue()


def test_plain_lines_off_a_terminal():
    text = run_stages(io.StringIO())
    assert text.splitlines() == ["stage a: detail", "stage a: a done"]
    assert not CONTROL.search(text)


def test_a_terminal_without_tqdm_gets_plain_lines(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    assert not progress.tqdm_available()
    stream = FakeTerminal()
    bar = Progress("x", stream=stream)
    assert not bar.is_bar
    bar.close()
    text = run_stages(FakeTerminal())
    assert text.splitlines() == ["stage a: detail", "stage a: a done"]
    assert not CONTROL.search(text)


def test_a_terminal_with_tqdm_gets_a_bar():
    pytest.importorskip("tqdm", reason="the bar needs tqdm (the demo extra)")
    stream = FakeTerminal()
    text = run_stages(stream)
    assert "\r" in text and "50%" in text and "stage a" in text
    assert "a done" in text and "not printed off a terminal" in text  # the status, on the bar
    # tty=False forces plain lines even on a terminal
    assert not CONTROL.search(run_stages(FakeTerminal(), tty=False))


def test_status_lines_are_rate_limited_and_the_last_one_is_kept(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    out = io.StringIO()
    bar = Progress("cg", stream=out, interval=1.0)
    for k in range(1, 6):
        bar.update(1, f"iteration {k}")
        clock[0] += 0.4
    bar.close()
    # printed at t = 0 (iteration 1), 1.2 (iteration 4), and the last status on close
    assert out.getvalue().splitlines() == ["cg: iteration 1", "cg: iteration 4", "cg: iteration 5"]


def test_clock_prefix_and_disabled_display(monkeypatch):
    clock = [10.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    out = io.StringIO()
    bar = Progress("fit", stream=out, clock=True)
    clock[0] += 2.5
    bar.write("done")
    assert out.getvalue() == "    2.5 s  fit: done\n"
    silent = io.StringIO()
    with Progress("fit", stream=silent, enabled=False) as off:
        off.update(1, "x")
        off.write("y")
    assert silent.getvalue() == ""


def test_refresh_thread_stops_on_close():
    pytest.importorskip("tqdm", reason="the bar needs tqdm (the demo extra)")
    bar = Progress("tick", total=1, stream=FakeTerminal(), refresh=0.01)
    bar.update(0)  # the bar (and its refresh thread) start at the first update
    assert bar._thread is not None and bar._thread.is_alive()
    thread = bar._thread
    bar.close()
    assert not thread.is_alive()


def test_imports_nothing_from_kernelsolve():
    tree = ast.parse(Path(progress.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("kernelsolve")
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("kernelsolve") for a in node.names)


def test_a_display_that_only_writes_draws_no_bar():
    """Solvers log setup messages through a display: no bar until something advances."""
    pytest.importorskip("tqdm", reason="the bar needs tqdm (the demo extra)")
    stream = FakeTerminal()
    with Progress("saddle", stream=stream) as log:
        assert log.is_bar
        log.write("coarse level of 200 points")
    assert stream.getvalue() == "saddle: coarse level of 200 points\n"
