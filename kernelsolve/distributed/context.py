"""``sharded()``: the context under which the engine's work is split across processes."""

from __future__ import annotations

import os
from contextlib import contextmanager

from ..engine import split
from . import partition
from .comm import DEFAULT_TIMEOUT, Communicator, ShardError
from .executor import ShardedExecutor

__all__ = ["sharded", "current"]

#: reductions with fewer kernel evaluations than this run whole on every
#: process (communication would cost more than the work it splits)
DEFAULT_MIN_PAIRS = 1 << 20

# every sharded() block opened in this process, in order: names its abort key
_epochs = [0]


@contextmanager
def sharded(
    group=None,
    *,
    rows: str = "replicated",
    timeout: float = DEFAULT_TIMEOUT,
    min_pairs: int | None = None,
    min_rows: int = partition.MIN_ROWS_PER_PROCESS,
    split_axis: str = "auto",
    debug: bool | None = None,
):
    """Split every reduction of the engine across the processes of ``group``.

    Inside the block, every reduction of a LazyTensor, ``K @ v``, ``K.solve``,
    the scipy adapters, the interpolators, kriging and the GPyTorch kernels
    runs by shares across the processes (SPMD: every process makes the same
    calls, as with DistributedDataParallel) and returns the whole result on
    every process.

    Parameters
    ----------
    group : torch.distributed ProcessGroup, optional
        The processes to split over (None: the default group). Initialise it
        first, e.g. ``torch.distributed.init_process_group("gloo")`` (CPU) or
        ``("nccl")`` with one GPU per process, as ``torchrun`` or ``srun`` set up.
    rows : {"replicated", "local"}
        "replicated": every process passes the same arrays; the output rows
        are split (bit-for-bit the one-process result) or, for a small output
        against many points, the reduced axis (merged in j order).
        "local": every process passes its own slice of the points of every
        variable (the full set is the slices in rank order), for data that
        does not fit on one node; each process gets its own rows of every
        result. Solvers need full vectors and refuse this mode.
    timeout : float
        Seconds any collective waits for the other processes before raising
        :class:`ShardTimeout` (a stuck or dead process never hangs the others).
    min_pairs : int, optional
        Reductions with fewer kernel evaluations (``batch * M * N``) run whole
        on every process, without communication (default
        :data:`DEFAULT_MIN_PAIRS`; 0 splits everything). Replicated mode.
    min_rows : int
        With ``split_axis="auto"``, outputs with fewer rows per process split
        the reduced axis instead (when it is the longer one).
    split_axis : {"auto", "rows", "cols"}
        Which axis replicated reductions split: the output rows, the reduced
        axis (j), or as :func:`.partition.choose_axis` decides.
    debug : bool, optional
        Also compare a digest of every reduction's arrays across processes
        (replicated mode): catches unseeded random probes and diverging data.
        Default: the ``KERNELSOLVE_SHARD_DEBUG`` environment variable.

    Yields
    ------
    ShardedExecutor
        The installed executor (``.counts``: how the reductions were split).

    Raises
    ------
    ShardError
        In every process, when one fails inside the block or they disagree.

    Example
    -------
    Run with ``torchrun --nproc-per-node 2 script.py``::

        torch.distributed.init_process_group("gloo")
        x = np.random.default_rng(0).random((100_000, 3))   # same on every process
        with kernelsolve.distributed.sharded():
            K = (-Vi(x).sqdist(Vj(x))).exp()
            a = K.solve(b, alpha=1e-2)   # the same a on every process
    """
    if rows not in ("replicated", "local"):
        raise ValueError(f'rows must be "replicated" or "local", got {rows!r}')
    if split_axis not in ("auto", "rows", "cols"):
        raise ValueError(f'split_axis must be "auto", "rows" or "cols", got {split_axis!r}')
    if debug is None:
        debug = os.environ.get("KERNELSOLVE_SHARD_DEBUG", "") not in ("", "0")
    if split.active() is not None:
        raise RuntimeError("sharded() blocks do not nest")
    _epochs[0] += 1
    comm = Communicator(group, timeout, _epochs[0])
    executor = ShardedExecutor(
        comm,
        local=rows == "local",
        min_pairs=DEFAULT_MIN_PAIRS if min_pairs is None else int(min_pairs),
        min_rows=min_rows,
        split_axis=split_axis,
        debug=bool(debug),
    )
    split.install(executor)
    try:
        yield executor
    except ShardError:
        raise
    except BaseException as error:
        comm.post_abort(f"{type(error).__name__}: {error}")
        raise
    finally:
        split.install(None)


def current() -> ShardedExecutor | None:
    """The executor of the enclosing ``sharded()`` block, or None."""
    active = split.active()
    return active if isinstance(active, ShardedExecutor) else None
