"""The SIMD loops of the block-sparse CPU kernels vectorize as the dense
ones do (the same strategies; only the loops over groups and j-ranges around
them change): test_vectorize.py's cases rendered with ``ranges``."""

import dataclasses

import pytest

from kernelsolve.engine.codegen import cpu as codegen_cpu

from .test_vectorize import (
    ARCHES,
    CASES,
    _simd_pragma_lines,
    _spec,
    _vectorized_lines,
    pytestmark,  # noqa: F401 - GCC on x86-64 only
)


@pytest.mark.parametrize("arch", sorted(ARCHES))
@pytest.mark.parametrize("case", CASES[:3], ids=[c[0] for c in CASES[:3]])
def test_ranges_simd_loops_vectorize(case, arch, tmp_path):
    _, formula_of, reduction = case
    spec = dataclasses.replace(_spec(formula_of, reduction, "float32"), ranges=True)
    source = codegen_cpu.render_cpu(spec)
    assert "ks_red[2 * ks_s]" in source
    wanted = _simd_pragma_lines(source)
    done = _vectorized_lines(source, ARCHES[arch], tmp_path)
    scalar = [n for n in wanted if not done.intersection(range(n, n + 3))]
    assert wanted and not scalar, f"scalar SIMD loops at lines {scalar}"
