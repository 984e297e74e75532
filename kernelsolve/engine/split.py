"""The seam through which work is split across processes.

The engine knows nothing of communication. A layer above it (today
:mod:`kernelsolve.distributed`) installs a *split*: an object that
:func:`.dispatch.execute` hands every reduction to, and that the solvers
consult to keep their own state (a preconditioner's factor, a dense block)
split by rows. While none is installed (the default), nothing changes and the
hot path pays one global read.

A split provides:

* ``__call__(plan, leaves, ranges)``: the result of
  :func:`.dispatch.execute` for the whole problem (on every process, or its
  share of rows in a row-sharded mode);
* ``rank``, ``size``: this process and the number of processes;
* ``local``: True when every array is this process's slice of rows (then
  vectors are not full on every process, and solvers that need full vectors
  refuse to run);
* ``bounds(n) -> (lo, hi)``: this process's contiguous share of ``n`` rows;
* ``all_sum(a)``: the elementwise sum of a host array over the processes;
* ``gather_rows(a, n)``: the full ``(n, ...)`` host array from every
  process's rows ``a = full[lo:hi]``.
"""

from __future__ import annotations

__all__ = ["active", "everywhere", "install", "suspended"]

_active = None


def active():
    """The installed split, or None (one process does all the work)."""
    return _active


def install(split):
    """Install ``split`` (None: remove it); returns the one it replaces."""
    global _active
    previous, _active = _active, split
    return previous


class suspended:
    """``with split.suspended():`` runs the engine in this process alone (the
    installed split, if any, is put back on exit): for work on this process's
    own share, such as the rows of a dense block it keeps."""

    def __enter__(self):
        self.previous = install(None)
        return self.previous

    def __exit__(self, *exc):
        install(self.previous)
        return False


def everywhere(flag: bool) -> bool:
    """``flag`` on every process of the installed split (True only where every
    process says True); ``flag`` itself without one. For decisions that read
    this process's state (free memory) and choose which collectives follow."""
    if _active is None:
        return flag
    return float(_active.all_sum([float(flag)])[0]) == _active.size
