"""The engine's split across processes: every reduction, computed by shares.

:class:`ShardedExecutor` is what :func:`~kernelsolve.distributed.sharded`
installs in :mod:`kernelsolve.engine.split`. Every reduction then reaches it
instead of running whole:

* **replicated** inputs (every process holds the same arrays): the output
  rows are split in contiguous shares (:func:`.partition.bounds`), each
  process reduces its rows exactly as one process would (the same kernel,
  the same order of summation per row) and the rows are gathered, so every
  process gets the one-process result bit for bit. A small output against a
  long reduced axis splits j instead: each process reduces its columns to the
  accumulator state (:mod:`kernelsolve.engine.partial`), the states are
  gathered and merged in j order with the reduction's own merge.
* **local** rows (``sharded(rows="local")``: each process holds its slice of
  every variable's points, in rank order): each process's slice of j travels
  to every process in turn (a broadcast per process), each process folds it
  into the states of its own rows, in j order, and keeps its rows.

Before any data moves, the processes exchange one small header per
reduction: whether their share succeeded and what they computed (formula,
sizes, dtype, device, and in debug mode a digest of the arrays). A failed
share makes every process raise; a mismatch raises :class:`.comm.ShardError`
naming the difference.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np

from ..engine import arrays, dispatch, partial, split
from ..engine import ir as _ir
from ..engine.request import ReductionOptions, ReductionRequest
from . import partition
from .comm import Communicator, ShardError

__all__ = ["ShardedExecutor"]

# header fields exchanged before every split reduction
_SIGNATURE, _M, _N, _DEVICE, _DATA = range(5)


class ShardedExecutor:
    """Runs each reduction across the processes of ``comm`` (see the module
    docstring). ``min_pairs``: reductions with fewer kernel evaluations run
    whole on every process, without communication (replicated mode only)."""

    def __init__(
        self,
        comm: Communicator,
        local: bool = False,
        min_pairs: int = 0,
        min_rows: int = partition.MIN_ROWS_PER_PROCESS,
        split_axis: str = "auto",
        debug: bool = False,
    ):
        self.comm, self.local, self.debug = comm, local, debug
        self.min_pairs, self.min_rows, self.split_axis = min_pairs, min_rows, split_axis
        self.rank, self.size = comm.rank, comm.size
        #: what the reductions so far did: {"rows": n, "cols": n, "whole": n, "ring": n}
        self.counts = {"rows": 0, "cols": 0, "whole": 0, "ring": 0}

    # --- the split seam (kernelsolve.engine.split) -------------------------
    def bounds(self, n: int) -> tuple[int, int]:
        """This process's rows ``[lo, hi)`` of ``n`` (:func:`.partition.bounds`)."""
        return partition.bounds(n, self.size, self.rank)

    def all_sum(self, a: np.ndarray) -> np.ndarray:
        """The float64 sum of ``a`` over the processes (every process gets it)."""
        t = self.comm.to_wire(np.array(a, dtype=np.float64))
        return self.comm.all_reduce(t, "all_sum").cpu().numpy()

    def gather_rows(self, a: np.ndarray, n: int) -> np.ndarray:
        """The whole ``(n, ...)`` host array from every process's rows
        ``a = whole[lo:hi]`` (shares of :meth:`bounds`), on every process."""
        b = np.asarray(a)
        width = int(np.prod(b.shape[1:]))  # reshape(-1) fails on a process with no rows
        out = self.comm.gather_rows(b.reshape(len(b), width), partition.counts(n, self.size))
        return out.cpu().numpy().reshape((n,) + b.shape[1:])

    def __call__(self, plan: dispatch.Plan, leaves, ranges=None):
        """What ``dispatch.execute(plan, leaves, ranges)`` returns, computed by shares."""
        with split.suspended():  # the shares below run in this process
            if self.local:
                return self._ring(plan, tuple(leaves), ranges)
            return self._replicated(plan, tuple(leaves), ranges)

    # --- replicated inputs ----------------------------------------------------
    def _replicated(self, plan, leaves, ranges):
        if partition.pairs(plan.batch, plan.M, plan.N) < self.min_pairs and not self.debug:
            self.counts["whole"] += 1
            return dispatch.execute(plan, leaves, ranges)
        axis = self.split_axis
        if axis == "auto":
            axis = partition.choose_axis(plan.M, plan.N, self.size, self.min_rows)
        if ranges is not None:
            axis = "rows"
        self.counts[axis] += 1
        if axis == "rows":
            lo, hi = self.bounds(plan.M)
            outs = self._attempt(self._rows, plan, leaves, ranges, lo, hi)
            self._agree(plan, leaves)
            rows = partition.counts(plan.M, self.size)
            full = [self._from_wire(self.comm.gather_rows(o, rows), plan.kind) for o in outs]
            return plan.red.present(full, plan.formula.dim, plan.K)
        cols = self.bounds(plan.N)
        state = self._attempt(partial.execute_partial, plan, leaves, cols)
        self._agree(plan, leaves)
        gathered = {k: self.comm.all_gather(self.comm.to_wire(v)) for k, v in state.items()}
        states = [{k: v[r].cpu().numpy() for k, v in gathered.items()} for r in range(self.size)]
        return partial.finalize(plan, partial.merge(plan, states))

    @staticmethod
    def _rows(plan, leaves, ranges, lo, hi) -> list:
        sub, sub_leaves = partial.restrict(plan, leaves, rows=(lo, hi))
        if ranges is not None:
            ranges = partial.restrict_ranges(plan, ranges, rows=(lo, hi))
        return dispatch.outputs(sub, sub_leaves, ranges)

    # --- local rows: every process's j in turn ---------------------------------
    def _ring(self, plan, leaves, ranges):
        if ranges is not None:
            raise ValueError(
                "ranges= under sharded(rows='local'): block-sparse plans index the global "
                "points, which no process holds; use replicated inputs (sharded())"
            )
        self.counts["ring"] += 1
        jvars = [k for k, c in enumerate(plan.cats) if c == _ir.J and arrays.is_array(leaves[k])]
        header = self._agree(plan, leaves)
        if not jvars:  # nothing to reduce across processes: one column, here
            return dispatch.execute(plan, leaves)
        sizes = [int(h[_N]) for h in header]
        starts = partition.offsets(sizes)
        state = None
        for source in range(self.size):
            theirs = self._slice_of(source, plan, leaves, jvars, sizes[source])
            if sizes[source] == 0:
                continue
            part = self._attempt(_fold_share, plan, theirs)
            for k, v in part.items():
                if v.dtype == np.int64:
                    part[k] = v + starts[source]
            state = part if state is None else partial.merge(plan, [state, part])
        return partial.finalize(plan, state)

    def _slice_of(self, source: int, plan, leaves, jvars, n: int) -> tuple:
        """``leaves`` with the j-variables of process ``source`` (which sends them)."""
        out = list(leaves)
        for k in jvars:
            mine = self.comm.to_wire(leaves[k])
            if source == self.rank:
                self.comm.broadcast(mine.contiguous(), source, "the j-points of a process")
                continue
            shape = list(mine.shape)
            shape[-2] = n
            t = mine.new_empty(shape)
            self.comm.broadcast(t, source, "the j-points of a process")
            out[k] = self._from_wire(t, plan.kind)
        return tuple(out)

    # --- agreement --------------------------------------------------------------
    def _attempt(self, work, *args):
        """``work(*args)``: this process's share; on failure tell the others first."""
        try:
            return work(*args)
        except ShardError:
            raise
        except Exception as error:
            self.comm.post_abort(f"{type(error).__name__}: {error}")
            raise

    def _agree(self, plan, leaves) -> list:
        """Exchange headers (after this process's share succeeded: a failed one
        posts an abort instead, which the others see while they wait here);
        raise on any mismatch. Returns every process's header."""
        torch = self.comm.torch
        mine = np.zeros(5, dtype=np.int64)
        mine[_SIGNATURE] = _signature(plan, local=self.local)
        mine[_M], mine[_N] = plan.M, plan.N
        mine[_DEVICE] = 0 if plan.kind.device == "cpu" else 1
        if self.debug:
            mine[_DATA] = _digest(leaves)
        t = torch.from_numpy(mine).to(self.comm.device)
        headers = [h.cpu().numpy() for h in self.comm.all_gather(t, "the reduction's header")]
        _check(headers, self.rank, self.local, self.debug, plan)
        return headers

    @staticmethod
    def _from_wire(t, kind):
        """A wire tensor as the caller's array (library and device of ``kind``)."""
        if kind.lib == arrays.NUMPY:
            return t.cpu().numpy()
        if kind.lib == arrays.CUPY:
            return sys.modules["cupy"].from_dlpack(t.to(kind.device))
        return t.to(kind.device)


def _check(headers: list, rank: int, local: bool, debug: bool, plan) -> None:
    """Raise :class:`ShardError` when the processes' headers disagree."""
    devices = {int(h[_DEVICE]) for h in headers}
    if len(devices) > 1:
        where = ", ".join(
            f"process {r}: {'GPU' if h[_DEVICE] else 'CPU'}" for r, h in enumerate(headers)
        )
        raise ShardError(
            f"mixed devices across processes ({where}): every process must hold its arrays "
            "on the same kind of device (one GPU per process with NCCL, or all on the host)"
        )
    if len({int(h[_SIGNATURE]) for h in headers}) > 1:
        raise ShardError(
            "the processes reached different reductions (formula, reduction, dtype or "
            f"{'batch' if local else 'sizes'} differ; process {rank} runs {plan.red.name} "
            f"of {plan.formula!r} on {plan.kind.dtype} data): every process must make the "
            "same kernelsolve calls, in the same order, on arrays of the same shapes"
        )
    if debug and not local and len({int(h[_DATA]) for h in headers}) > 1:
        raise ShardError(
            "sharded(debug=True): the arrays of a reduction differ across processes; in "
            "replicated mode every process must pass the same data (seed random probe "
            "vectors identically on every process, e.g. torch.manual_seed(0))"
        )


def _signature(plan, local: bool) -> int:
    """A 63-bit digest of what a reduction computes (stable across processes,
    unlike Python's hash of strings)."""
    text = f"{plan.formula!r}|{plan.weight!r}|{plan.red.name}|{plan.K}|{plan.kind.dtype}"
    text += f"|{plan.batch}|{plan.acc_dtype}"
    if not local:
        text += f"|{plan.M}|{plan.N}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def _digest(leaves) -> int:
    """A 63-bit digest of the arrays' values (debug mode)."""
    h = hashlib.blake2b(digest_size=8)
    for x in leaves:
        h.update(np.ascontiguousarray(arrays.to_host(x) if arrays.is_array(x) else x).tobytes())
    return int.from_bytes(h.digest(), "little") >> 1


def _fold_share(plan, leaves) -> dict:
    """The accumulator state of ``plan``'s reduction on ``leaves`` (whose
    j-variables are another process's points: other sizes, a new plan)."""
    return partial.execute_partial(dispatch.plan(_request_of(plan, leaves)), leaves)


def _request_of(plan, leaves) -> ReductionRequest:
    """The request (over j) of ``plan`` bound to ``leaves`` of other sizes."""
    sum_scheme = plan.spec.sum_scheme if plan.spec is not None else None
    options = ReductionOptions(plan.target, plan.acc_dtype, sum_scheme)
    K = plan.K if plan.red.uses_k else None
    return ReductionRequest(
        plan.formula, plan.red.name, leaves, plan.cats, 1, plan.weight, K, options
    )
