"""Reductions, gradients and solves under kernelsolve.distributed.sharded(),
on 2 and 3 processes (gloo, file rendezvous, one thread each)."""

import pytest

from . import scenarios
from .harness import run, values


@pytest.mark.parametrize("size", [2, 3])
def test_replicated_reductions_equal_one_process_bit_for_bit(size):
    for rank, report in enumerate(values(run(scenarios.replicated_battery, size, "rows"))):
        for name, same, _, counts in report:
            assert same, f"process {rank}: {name} differs from one process"
            assert counts["rows"] >= 1 and counts["cols"] == 0, (name, counts)


def test_split_j_merges_like_one_process():
    # every case splits j. Selections
    # (ties included) are identical; sums differ by rounding only (the
    # halves are added separately, then merged)
    for rank, report in enumerate(values(run(scenarios.replicated_battery, 2, "cols"))):
        for name, same, difference, counts in report:
            if name.startswith("block-sparse"):  # split by rows: ranges index j
                assert counts["rows"] >= 1 and same, (name, counts)
                continue
            assert counts["cols"] >= 1, (name, counts)
            if "min" in name or "arg" in name:
                assert same, f"process {rank}: {name} differs from one process"
            else:
                assert difference <= (1e-6 if "float32" in name else 1e-14), (name, difference)


def test_fewer_points_than_processes():
    for out in values(run(scenarios.fewer_points_than_processes, 3)):
        assert out == [True, True]


@pytest.mark.parametrize("size", [2, 3])
def test_local_rows_give_each_process_its_rows(size):
    for rank, report in enumerate(values(run(scenarios.local_rows, size))):
        for name, ok, rings in report:
            assert ok, f"process {rank}: {name} differs from its rows of one process"
            assert rings >= 1


def test_torch_gradients_equal_one_process():
    for same_value, same_grad in values(run(scenarios.torch_gradients, 2)):
        assert same_value and same_grad


def test_cg_solve_repeats_one_process():
    for out in values(run(scenarios.cg_solve, 2)):
        assert out["iterations"][0] == out["iterations"][1]
        assert out["rank"][0] == out["rank"][1]
        assert out["history"]
        assert out["max_difference"] == 0.0


def test_local_rows_gradients_are_rows_of_the_whole_gradient():
    for difference in values(run(scenarios.local_rows_gradients, 2)):
        assert difference <= 1e-12


def test_pruned_nearest_neighbours_split_like_one_process():
    for same, rows in values(run(scenarios.pruned_knn, 2)):
        assert same and rows >= 2  # the threshold pass and the K + 1 pass
