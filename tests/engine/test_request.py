"""The reduction request: target names, the transpose, and what the engine
accepts or refuses (engine/request.py, engine/dispatch.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kernelsolve import Vi, Vj
from kernelsolve.engine import dispatch, ir
from kernelsolve.engine.request import (
    TARGETS,
    ReductionOptions,
    ReductionRequest,
    target_of,
)

X, Y = np.random.default_rng(0).random((5, 2)), np.random.default_rng(1).random((4, 2))
F = ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2))
DENSE = ((X[:, None] - Y[None]) ** 2).sum(-1)


@pytest.mark.parametrize(
    "backend,target",
    [
        (None, None),
        ("auto", "auto"),
        ("CPU", "cpu"),
        ("cpu", "cpu"),
        ("GPU", "cuda"),
        ("gpu_1d", "cuda"),
        ("gpu_2d", "cuda"),
        ("cuda", "cuda"),
        ("reference", "reference"),
    ],
)
def test_pykeops_names_map_to_the_targets(backend, target):
    assert target_of(backend) == target
    assert target in TARGETS + ("auto", None)


def test_unknown_backend_names_the_setting():
    with pytest.raises(ValueError, match="backend='TPU'"):
        target_of("TPU")
    with pytest.raises(ValueError, match="config.backend='nope'"):
        target_of("nope", "kernelsolve.config.backend")


def test_a_target_outside_the_table_is_refused():
    """A ReductionOptions built by hand with an unknown target never runs."""
    request = ReductionRequest(F, "sum", (X, Y), (ir.I, ir.J), options=ReductionOptions("GPU"))
    with pytest.raises(ValueError, match="target='GPU'"):
        dispatch.reduce(request)


def test_over_j_transposes_formula_and_categories():
    request = ReductionRequest(F, "sum", (X, Y), (ir.I, ir.J), axis=0)
    over_j = request.over_j()
    assert over_j.axis == 1 and over_j.cats == (ir.J, ir.I)
    assert over_j.formula is ir.swap_ij(F)
    assert over_j.over_j() is over_j  # already over j: the same request
    np.testing.assert_allclose(dispatch.reduce(request)[:, 0], DENSE.sum(0))
    with pytest.raises(ValueError, match="axis must be 0"):
        ReductionRequest(F, "sum", (X, Y), (ir.I, ir.J), axis=2).over_j()


def test_lists_are_accepted_for_arguments_and_categories():
    request = ReductionRequest(F, "sum", [X, Y], [ir.I, ir.J])
    np.testing.assert_allclose(dispatch.reduce(request)[:, 0], DENSE.sum(1))


def test_device_errors_name_the_backend_as_the_user_did():
    with pytest.raises(ValueError, match="backend='GPU' with host arrays"):
        Vi(X).sqdist(Vj(Y)).sum(dim=1, backend="gpu_2d")


def test_reduction_call_exposes_its_request():
    rc = Vi(X).sqdist(Vj(Y)).sum(dim=1, call=False)
    assert rc.reduction == "sum" and rc.axis == 1 and rc.K is None
    assert rc.formula is rc.request.formula and rc.cats == (ir.I, ir.J)
    assert rc.variables[0] is X and rc.weight is None
    assert rc.options == ReductionOptions()
