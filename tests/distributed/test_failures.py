"""Failure behaviour of sharded(): a failing process makes every process
raise, disagreements raise a clear error, nothing hangs."""

from . import scenarios
from .harness import Raised, run


def test_a_process_that_raises_makes_every_process_raise():
    results = run(scenarios.one_process_raises, 3, timeout=120)
    assert isinstance(results[1], Raised) and results[1].type == "ValueError"
    for r in (0, 2):
        assert isinstance(results[r], Raised), results[r]
        assert results[r].type == "ShardError"
        assert "process 1" in results[r].message and "bad data" in results[r].message


def test_mixed_dtypes_across_processes_are_rejected():
    results = run(scenarios.mixed_dtypes, 2, timeout=120)
    for out in results:
        assert isinstance(out, Raised) and out.type == "ShardError", out
        assert "different reductions" in out.message


def test_a_missing_collective_times_out_with_a_clear_error():
    results = run(scenarios.one_process_skips, 2, timeout=120)
    assert isinstance(results[1], Raised) and results[1].type == "ShardTimeout", results[1]
    assert "waited 3 s" in results[1].message


def test_debug_mode_catches_unseeded_random_probes():
    for out in run(scenarios.unseeded_probes, 2, timeout=120):
        assert isinstance(out, Raised) and out.type == "ShardError", out
        assert "manual_seed" in out.message
