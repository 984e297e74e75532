"""The CUDA test matrix on a GPU against the CPU target (cuda_agreement.py).

``test_device_matrix_agrees_with_cpu`` is marked ``gpu``: every case of the
matrix, in every layout of ``cuda_agreement.VARIANTS``, launched by the CUDA
target through CuPy, gives the CPU target's answer. (``scripts/gpu_check.sh``
runs the same comparisons through ``python -m tests.engine.cuda_agreement``.)

The other tests run everywhere: they check the harness itself on the host
emulation of the same CUDA source, including that a wrong result is caught.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from kernelsolve.engine.backends import cpu

from . import cuda_agreement as agreement
from .cuda_matrix import MATRIX

needs_compiler = pytest.mark.skipif(
    cpu.find_compiler() is None, reason="no C++ compiler: the emulation builds the CUDA source"
)


@pytest.mark.gpu
@pytest.mark.parametrize("c", [pytest.param(c, id=c.id) for c in MATRIX])
def test_device_matrix_agrees_with_cpu(c):
    failures = [
        r.error for v in agreement.VARIANTS if not (r := agreement.compare(c, v, "cuda")).ok
    ]
    assert not failures, "\n".join(failures)


@needs_compiler
def test_harness_on_the_emulation_target(tmp_path, capsys):
    """Three cases in every layout, on the host emulation: exit status 0,
    one record per comparison in the JSON, counts that add up."""
    out = tmp_path / "matrix.json"
    assert agreement.main(["--target", "emulation", "--limit", "3", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    n = 3 * len(agreement.VARIANTS)
    assert data["finished"] and data["total"] == data["passed"] == n and data["failed"] == 0
    assert [r["case"] for r in data["results"]] == [
        c.id for c in MATRIX[:3] for _ in agreement.VARIANTS
    ]
    assert data["oracle"] == "CPU target" and "emulation" in data["device"]
    assert f"{n} of {n} comparisons agree" in capsys.readouterr().out


@needs_compiler
def test_harness_catches_a_wrong_result(tmp_path, monkeypatch):
    """Negative control: a target whose first value is off by 1e-3 is reported
    as differing (exit status 1, the case named in the JSON)."""
    real = agreement.TARGETS["emulation"]

    def off(p, v):
        outs = real(p, v)
        value = next(o for o in outs if o.dtype.kind == "f")
        value.flat[0] += 1e-3 * (1 + np.abs(value.flat[0]))
        return outs

    monkeypatch.setitem(agreement.TARGETS, "emulation", off)
    out = tmp_path / "matrix.json"
    rc = agreement.main(
        ["--target", "emulation", "--limit", "1", "--variants", "plan", "--json", str(out)]
    )
    data = json.loads(out.read_text())
    assert rc == 1 and data["failed"] == 1 and not data["results"][0]["ok"]
    assert MATRIX[0].id in data["results"][0]["error"]


def test_forced_plan_restores_the_launch_plan():
    """forced_plan patches plan_launch only inside the block."""

    class FakeCuda:
        @staticmethod
        def plan_launch(spec, nbatch, M, N, **kw):
            return kw

    real = FakeCuda.plan_launch
    with agreement.forced_plan(FakeCuda, 16, 3):
        assert FakeCuda.plan_launch(None, 1, 2, 3, sm_count=7) == {
            "sm_count": 7,
            "block": 16,
            "nsplit": 3,
        }
    assert FakeCuda.plan_launch is real
    with agreement.forced_plan(FakeCuda, None, None):
        assert FakeCuda.plan_launch is real
