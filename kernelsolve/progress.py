"""One progress display for every long computation: the demo, the solvers' ``verbose``
reports and the command line.

On a terminal, :class:`Progress` draws a `tqdm <https://tqdm.github.io>`_ bar
(tqdm is optional: ``pip install 'kernelsolve[demo]'``); messages are printed
above it. Without tqdm, or when the stream is not a terminal (a log file, a
pipe, a notebook's captured stderr), it prints plain lines with no control
characters: every message, and the status at most once per ``interval``
seconds (and once more when it closes).

This module is a bottom-layer utility: it imports nothing from kernelsolve.

Example
-------
>>> import io
>>> out = io.StringIO()
>>> with Progress("cg", stream=out, interval=0.0) as bar:
...     bar.update(1, "iteration 1, residual 1.0e-03")
...     bar.write("done")
>>> print(out.getvalue().strip())
cg: iteration 1, residual 1.0e-03
cg: done
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress", "tqdm_available"]


def _tqdm():
    """tqdm's bar class, or None when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def tqdm_available() -> bool:
    """Whether tqdm can be imported (the bar needs it; plain lines do not)."""
    return _tqdm() is not None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """A progress display: a tqdm bar on a terminal, plain lines elsewhere.

    Parameters
    ----------
    desc : str
        What is running (``"cg"``, ``"saddle"``, a stage of the demo); plain lines
        read ``"desc: text"``.
    total : float, optional
        The amount of work for a bar with a percentage (None: a counter).
    stream : text stream, optional
        Where to write (default ``sys.stderr`` at construction).
    tty : bool, optional
        Draw a bar (True) or print plain lines (False); default: whether
        ``stream`` is a terminal. A bar needs tqdm: without it, plain lines.
    interval : float or None
        Least seconds between two plain status lines (:meth:`update`); None:
        status is shown on the bar only, never as a line.
    clock : bool
        Start plain lines with the seconds since the display was created.
    refresh : float or None
        Redraw the bar every ``refresh`` seconds from a background thread (so
        that its clock moves during long steps); None: only on updates.
    enabled : bool
        False: every method does nothing (a solver's ``verbose=False``).
    unit : str
        tqdm's unit of the counter; "" for a bar of weights (no counts or rate shown).

    Example
    -------
    >>> import io
    >>> out = io.StringIO()
    >>> bar = Progress("fit", total=2, stream=out, interval=None)
    >>> bar.update(1, "not shown off a terminal")
    >>> bar.write("half way")
    >>> bar.close()
    >>> out.getvalue()
    'fit: half way\\n'
    """

    def __init__(
        self,
        desc: str = "",
        total: float | None = None,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval: float | None = 1.0,
        clock: bool = False,
        refresh: float | None = None,
        enabled: bool = True,
        unit: str = "it",
    ):
        self.enabled = enabled
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        self.interval = interval
        self.clock = clock
        self.t0 = time.perf_counter()
        self._status = ""
        self._shown = True  # the current status has been printed (or there is none)
        self._last_line = -float("inf")
        self._bar = None  # drawn at the first update: a display that only writes has none
        self._stop = threading.Event()
        self._thread = None
        tqdm = _tqdm() if enabled and (_isatty(self.stream) if tty is None else tty) else None
        self._tqdm = tqdm
        self._bar_options = dict(
            total=total,
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
            unit=unit,
            bar_format=None if unit else "{l_bar}{bar}| [{elapsed}{postfix}]",
        )
        self._refresh = refresh

    @property
    def is_bar(self) -> bool:
        """True when updates draw a tqdm bar (a terminal with tqdm installed)."""
        return self._tqdm is not None

    def _draw_bar(self):
        if self._bar is None:
            self._bar = self._tqdm(desc=self.desc, **self._bar_options)
            if self._refresh:
                self._thread = threading.Thread(
                    target=self._tick, args=(self._refresh,), daemon=True
                )
                self._thread.start()
        return self._bar

    @property
    def elapsed(self) -> float:
        """Seconds since the display was created."""
        return time.perf_counter() - self.t0

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            self._bar.refresh()

    def _line(self, text: str) -> str:
        text = f"{self.desc}: {text}" if self.desc and text else (text or self.desc)
        return f"{self.elapsed:7.1f} s  {text}" if self.clock else text

    def _print(self, text: str) -> None:
        print(self._line(text), file=self.stream, flush=True)
        self._last_line = time.perf_counter()

    def set_description(self, desc: str) -> None:
        """Rename what is running (the bar's label, the prefix of plain lines)."""
        if not self.enabled:
            return
        self.desc = desc
        if self._bar is not None:
            self._bar.set_description_str(desc)

    def update(self, n: float = 0, status: str | None = None) -> None:
        """Advance by ``n`` and show ``status`` (on the bar, or as a plain line at
        most every ``interval`` seconds)."""
        if not self.enabled:
            return
        if status is not None:
            self._status, self._shown = status, False
        if self._tqdm is not None:
            bar = self._draw_bar()
            if status is not None:
                bar.set_postfix_str(status, refresh=False)
            bar.update(n)
            return
        if self.interval is None or self._shown:
            return
        if time.perf_counter() - self._last_line >= self.interval:
            self._print(self._status)
            self._shown = True

    def write(self, message: str) -> None:
        """Print ``message`` on its own line (above the bar on a terminal)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._tqdm.write(self._line(message), file=self.stream)
        else:
            self._print(message)

    def close(self) -> None:
        """Remove the bar; off a terminal, print the last status if it was not shown."""
        if not self.enabled:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._tqdm is None and self.interval is not None and not self._shown:
            self._print(self._status)
        self._shown = True
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
