"""Run a function on 2 or 3 processes joined by torch.distributed (gloo, file rendezvous).

``run(fn, size, *args)`` starts ``size`` fresh processes (spawn), each with one
thread, a gloo group initialised from a file in a temporary folder (no
network), calls ``fn(rank, size, *args)`` and returns every process's result
in rank order; an exception in a process comes back as a :class:`Raised`.
A process that does not finish within ``timeout`` seconds fails the test
(a hang is a bug: every collective of kernelsolve.distributed has a timeout).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
import traceback
from dataclasses import dataclass
from datetime import timedelta


@dataclass
class Raised:
    """What a process raised: the exception's type name, message and traceback."""

    type: str
    message: str
    trace: str


def _entry(fn, rank, size, folder, args, threads, group_timeout, backend="gloo"):
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch
    import torch.distributed as dist

    import kernelsolve

    torch.set_num_threads(threads)
    kernelsolve.config.num_threads = threads
    dist.init_process_group(
        backend,
        init_method=f"file://{folder}/rendezvous",
        rank=rank,
        world_size=size,
        timeout=timedelta(seconds=group_timeout),
    )
    try:
        result = fn(rank, size, *args)
    except BaseException as error:
        result = Raised(type(error).__name__, str(error), traceback.format_exc())
    with open(f"{folder}/{rank}.pkl", "wb") as f:
        pickle.dump(result, f)
    if not isinstance(result, Raised):
        dist.destroy_process_group()


def run(
    fn,
    size: int,
    *args,
    timeout: float = 240,
    threads: int = 1,
    group_timeout=120,
    backend: str = "gloo",
):
    """``[fn(rank, size, *args) for rank in range(size)]``, each in its own process
    (``backend``: "gloo", or "nccl" with one GPU per process)."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as folder:
        procs = [
            ctx.Process(
                target=_entry, args=(fn, r, size, folder, args, threads, group_timeout, backend)
            )
            for r in range(size)
        ]
        for p in procs:
            p.start()
        hung = []
        for r, p in enumerate(procs):
            p.join(timeout)
            if p.is_alive():
                hung.append(r)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        assert not hung, f"processes {hung} of {size} did not finish in {timeout} s (a hang)"
        results = []
        for r, p in enumerate(procs):
            path = f"{folder}/{r}.pkl"
            assert os.path.exists(path), f"process {r} died (exit code {p.exitcode})"
            with open(path, "rb") as f:
                results.append(pickle.load(f))
        return results


def values(results: list) -> list:
    """The results, failing the test with a process's traceback if one raised."""
    for r, out in enumerate(results):
        if isinstance(out, Raised):
            raise AssertionError(f"process {r} raised {out.type}: {out.message}\n{out.trace}")
    return results
