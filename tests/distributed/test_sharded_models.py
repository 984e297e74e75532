"""Models under kernelsolve.distributed.sharded() on 2 and 3 processes: exact
GP training with GPyTorch, the interpolators, kriging and the scipy adapter
give what one process gives."""

import numpy as np
import pytest

from . import model_scenarios
from .harness import Raised, run, values


def _assert_same_training(out, rank):
    (losses, grads), (one_losses, one_grads) = out["many"], out["one"]
    assert len(losses) == 5 and np.isfinite(losses).all()
    # bit for bit: every product and gradient reduction is split by rows
    assert np.array_equal(losses, one_losses), (rank, losses - one_losses)
    for step, (g, g1) in enumerate(zip(grads, one_grads)):
        assert g.keys() == g1.keys() and len(g) == 4
        for name in g:
            assert np.array_equal(g[name], g1[name]), (rank, step, name)
    # the engine operator did the work, and the training moved the loss
    assert out["calls"] == out["one_calls"]
    assert out["calls"]["_matmul"] >= 10 and out["calls"]["_bilinear_derivative"] == 5
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("size", [2, 3])
def test_exact_gp_training_on_the_engine_equals_one_process(size):
    """5 Adam steps, CG/Lanczos path, debug=True: every product is a split
    engine reduction whose arrays the processes compare."""
    results = values(run(model_scenarios.gp_training, size, 2000, "rbf", 5, False, True))
    for rank, out in enumerate(results):
        _assert_same_training(out, rank)
        calls = out["calls"]
        assert out["counts"]["rows"] == calls["_matmul"] + calls["_bilinear_derivative"]
        assert out["filled"] == []
        np.testing.assert_array_equal(out["many"][0], results[0]["many"][0])


def test_exact_gp_training_with_held_blocks_shares_their_rows():
    """The operator's dense block (filled after its first product): each
    process holds its rows, products gather them; Matern kernel."""
    results = values(run(model_scenarios.gp_training, 2, 2000, "matern", 5, True, False))
    shares = []
    for rank, out in enumerate(results):
        _assert_same_training(out, rank)
        assert out["counts"]["rows"] == 5  # the gradients; products use the block
        assert len(out["filled"]) == 1, out["filled"]
        shares.append(out["filled"][0])
    assert shares == [(0, 1000, 2000), (1000, 2000, 2000)]


def test_exact_gp_unseeded_probes_raise_on_every_process():
    for out in run(model_scenarios.gp_unseeded_probes, 2, timeout=120):
        assert isinstance(out, Raised) and out.type == "ShardError", out
        assert "manual_seed" in out.message


# the work is reductions split by rows: bit for bit
ROW_SPLIT = {
    "interpolator tps gmres",
    "interpolator gaussian direct",
    "aslinearoperator engine",
    "aslinearoperator auto",
}
# direct kriging: LAPACK/BLAS on each process's share of the targets (other
# row counts, other rounding); kriging by CG: one small-output reduction splits j
ROUNDING = {"ordinary kriging direct", "universal kriging direct", "ordinary kriging cg"}


def _check_models(results, expected, bitwise=ROW_SPLIT):
    for rank, report in enumerate(values(results)):
        assert [r[0] for r in report] == expected
        for name, (how, how_sharded), same, difference, counts in report:
            assert how == how_sharded, (rank, name, how, how_sharded)
            if name in bitwise:
                assert same, f"process {rank}: {name} differs by {difference:.1e}"
            else:
                assert name in ROUNDING and difference <= 1e-12, (rank, name, difference)
            if name in ("interpolator tps gmres", "aslinearoperator engine"):
                assert counts["rows"] >= 10, (name, counts)  # the iterations' products


def test_models_equal_one_process_on_two_processes():
    results = run(model_scenarios.models, 2)
    _check_models(results, [name for name, _ in model_scenarios.model_cases()])
    (name, how, *_), *_ = values(results)[0]
    assert how == ("iterative", "iterative")  # the GMRES fit was split


def test_models_on_three_processes_split_by_rows():
    """Every reduction split by rows (split_axis="rows"): kriging by CG, its
    variances included, is then bit for bit too."""
    names = [
        "interpolator gaussian direct",
        "ordinary kriging direct",
        "ordinary kriging cg",
        "universal kriging direct",
    ]
    results = run(model_scenarios.models, 3, names, "rows")
    _check_models(results, names, ROW_SPLIT | {"ordinary kriging cg"})
    for report in values(results):
        assert all(counts["cols"] == 0 for *_, counts in report)


def test_gpytorch_forward_under_sharded_keeps_large_blocks_on_the_engine():
    for kinds in values(run(model_scenarios.gp_forward_choice, 2)):
        assert kinds == {
            ("one", "small"): "Tensor",
            ("one", "large"): "Tensor",  # fits the memory budget: GPyTorch's dense forward
            ("sharded", "small"): "Tensor",  # run whole by the split anyway
            ("sharded", "large"): "EngineKernelOperator",
        }


def test_products_with_held_rows_equal_one_process():
    for rank, out in enumerate(values(run(model_scenarios.gp_held_block_products, 2))):
        lo, hi = (0, 151) if rank == 0 else (151, 301)
        for (kernel, rhs), (diff, share, shape) in out.items():
            # another summation order: within n eps (measured up to 1.1e-15 on Zen 5)
            assert diff <= 301 * np.finfo(np.float64).eps, (rank, kernel, rhs, diff)
            assert share == (lo, hi, 2)
            assert shape == ((2,) if kernel == "batch" else ()) + (hi - lo, 301)
