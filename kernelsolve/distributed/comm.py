"""The communicator: the few collectives the sharded engine needs, on torch.distributed.

Every collective here has a timeout and watches for an abort: a process that
leaves a :func:`~kernelsolve.distributed.sharded` block by an exception posts
its error in the process group's store, and every other process waiting in
one of these collectives raises :class:`ShardError` instead of hanging.
Arrays cross as torch tensors: on the host for gloo, on the current CUDA
device for NCCL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from ..engine import arrays

__all__ = ["Communicator", "ShardError", "ShardTimeout"]

#: seconds a collective may wait for the other processes by default
DEFAULT_TIMEOUT = 300.0
# how often a waiting collective looks for an abort posted by another process
_ABORT_POLL_S = 0.05


class ShardError(RuntimeError):
    """A process of a sharded computation failed: every process raises this
    (naming the process and its error) instead of waiting for it forever.

    The process group is unusable afterwards (a collective may be half done):
    end the processes, as after an NCCL error."""


class ShardTimeout(ShardError):
    """A collective waited longer than ``sharded(timeout=...)`` for the other
    processes (one of them is stuck, dead, or running other code)."""


@dataclass
class Communicator:
    """Collectives over one torch.distributed process group.

    Parameters
    ----------
    group : ProcessGroup or None
        None: the default group (``torch.distributed.init_process_group``).
    timeout : float
        Seconds any collective waits before raising :class:`ShardTimeout`.
    epoch : int
        Names this session's abort key in the store (each ``sharded()`` block
        is one session; every process opens them in the same order).
    """

    group: object = None
    timeout: float = DEFAULT_TIMEOUT
    epoch: int = 0

    def __post_init__(self):
        import torch
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "kernelsolve.distributed.sharded(): torch.distributed is not initialised; "
                "call torch.distributed.init_process_group(...) first (torchrun and srun "
                "set the environment for init_process_group('gloo' or 'nccl'))"
            )
        if not self.timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout}")
        self.torch, self.dist = torch, dist
        self.rank = dist.get_rank(self.group)
        self.size = dist.get_world_size(self.group)
        self.backend = str(dist.get_backend(self.group)).lower()
        self.device = "cpu"
        if self.backend == "nccl":
            self.device = f"cuda:{torch.cuda.current_device()}"
        self._store = _default_store(dist)
        self._abort_key = f"kernelsolve/abort/{self.epoch}"
        self._next_poll = 0.0

    # --- failure ----------------------------------------------------------
    def post_abort(self, message: str) -> None:
        """Tell every other process that this one failed (``message`` says how)."""
        if self._store is not None:
            text = f"process {self.rank}: {message}"
            try:
                self._store.set(self._abort_key, text.encode())
            except Exception:  # the store itself may be gone with the group
                pass

    def _check_abort(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._store is None or (now < self._next_poll and not force):
            return
        self._next_poll = now + _ABORT_POLL_S
        try:
            if not self._store.check([self._abort_key]):
                return
            message = self._store.get(self._abort_key).decode()
        except Exception:
            return
        raise ShardError(f"another process failed inside sharded(): {message}")

    def wait(self, work, what: str) -> None:
        """Wait for an async collective: raise on timeout or on an abort."""
        deadline = time.monotonic() + self.timeout
        delay = 1e-5
        while not work.is_completed():
            if time.monotonic() > deadline:
                raise ShardTimeout(
                    f"process {self.rank} waited {self.timeout:g} s in {what} for the other "
                    f"{self.size - 1} process(es); one of them is stuck, dead or running "
                    "different code (every process must make the same kernelsolve calls "
                    "in the same order); raise sharded(timeout=...) for longer steps"
                )
            self._check_abort()
            time.sleep(delay)
            delay = min(2 * delay, 0.005)
        try:
            work.wait(timeout=timedelta(seconds=self.timeout))
        except Exception as error:
            self._check_abort(force=True)
            raise ShardError(
                f"{what} failed on process {self.rank} ({type(error).__name__}: {error}); "
                "another process has probably died"
            ) from error

    # --- collectives --------------------------------------------------------
    def all_gather(self, tensor, what: str = "all_gather") -> list:
        """Every process's ``tensor`` (same shape and dtype everywhere), in rank order."""
        parts = [self.torch.empty_like(tensor) for _ in range(self.size)]
        work = self.dist.all_gather(parts, tensor.contiguous(), group=self.group, async_op=True)
        self.wait(work, what)
        return parts

    def all_reduce(self, tensor, what: str = "all_reduce"):
        """The elementwise sum of ``tensor`` over the processes (in place, returned)."""
        work = self.dist.all_reduce(tensor, group=self.group, async_op=True)
        self.wait(work, what)
        return tensor

    def broadcast(self, tensor, source: int, what: str = "broadcast"):
        """``tensor`` of process ``source`` on every process (in place, returned)."""
        src = self.dist.get_global_rank(self.group, source) if self.group is not None else source
        work = self.dist.broadcast(tensor, src=src, group=self.group, async_op=True)
        self.wait(work, what)
        return tensor

    # --- arrays -----------------------------------------------------------
    def to_wire(self, a):
        """A torch tensor of ``a`` (NumPy, torch or CuPy) where the backend
        moves data (host for gloo, the CUDA device for NCCL); no copy when it
        already lives there."""
        torch = self.torch
        if isinstance(a, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(a))
        elif arrays.is_cupy(a):
            t = torch.from_dlpack(a)
        else:
            t = a.detach()
        return t.to(self.device)

    def gather_rows(self, local, counts: list[int], what: str = "gather_rows"):
        """The rows of every process joined along axis -2 (``local`` has
        ``counts[rank]`` rows there), as a torch tensor on the wire device."""
        t = self.to_wire(local)
        most = max(counts)
        if t.shape[-2] < most:
            pad = list(t.shape)
            pad[-2] = most - t.shape[-2]
            t = torch_cat(self.torch, [t, t.new_zeros(pad)])
        parts = self.all_gather(t, what)
        return torch_cat(self.torch, [p[..., :n, :] for p, n in zip(parts, counts)])


def torch_cat(torch, parts: list):
    """Join tensors along axis -2."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)


def _default_store(dist):
    """The default group's key-value store (abort messages travel through it),
    or None where this torch does not expose it."""
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:
        return None
