"""K.solve's preconditioned CG, its RPCholesky factor and materialised dense
blocks under kernelsolve.distributed.sharded(), on 2 and 3 processes (gloo,
file rendezvous, one thread each): the same pivots, iterations, residual
history and solution as one process, each process holding its rows only."""

import numpy as np
import pytest

from kernelsolve.linalg.rowblocks import ROW_BLOCK

from . import solve_scenarios
from .harness import run, values


def _rows(n, size, rank):
    """The rows a process holds: whole blocks of ROW_BLOCK, split in rank order."""
    blocks = -(-n // ROW_BLOCK)
    base, extra = divmod(blocks, size)
    first = rank * base + min(rank, extra)
    last = first + base + (rank < extra)
    return min(first * ROW_BLOCK, n), min(last * ROW_BLOCK, n)


@pytest.mark.parametrize("size", [2, 3])
def test_rpcholesky_cg_repeats_one_process(size):
    n = 3000
    held = 0
    for rank, out in enumerate(values(run(solve_scenarios.rpcholesky_cg, size, n))):
        one, many = out["pivots"]
        assert len(one) > 0 and np.array_equal(one, many), f"process {rank}: pivots differ"
        assert out["rank"][0] == out["rank"][1] > 0
        assert out["residual_trace"][0] == out["residual_trace"][1]
        assert out["top"][0] == out["top"][1]
        assert out["iterations"][0] == out["iterations"][1]
        assert out["history"][0] == out["history"][1], f"process {rank}: history differs"
        assert out["max_difference"] == 0.0
        r = out["rank"][0]
        lo, hi = _rows(n, size, rank)
        assert out["rows"] == ((0, n), (lo, hi))
        assert out["factor_shape"] == ((n, r), (hi - lo, r))
        held += hi - lo
    assert held == n  # every row of the factor on exactly one process


def test_sharded_preconditioner_refused_outside_its_block():
    for out in run(solve_scenarios.preconditioner_outside_its_block, 2):
        assert "inside sharded() on the same processes" in out.message, out


@pytest.mark.parametrize("size", [2, 3])
def test_materialized_operator_holds_its_rows(size):
    n = 1500
    for rank, out in enumerate(values(run(solve_scenarios.materialized_products, size, n))):
        assert out["same"] == [True] * 4, f"process {rank}: {out['same']}"
        assert out["again"]
        lo, hi = _rows(n, size, rank)
        assert out["rows"] == (lo, hi) and out["held"] == (hi - lo, n)
        assert out["after"] and out["after_shape"] == (n, n)


def test_scipy_adapter_holds_its_rows():
    n = 2200
    for rank, out in enumerate(values(run(solve_scenarios.scipy_adapter, 2, n))):
        assert out["product"]
        assert out["adjoint"] <= 1e-13  # the engine against one process's BLAS
        lo, hi = _rows(n // 2, 2, rank)
        assert out["held"] == (hi - lo, n)
