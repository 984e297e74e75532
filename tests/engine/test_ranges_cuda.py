"""Block-sparse CUDA kernels without a GPU: every case of the CUDA test
matrix rendered with ``ranges`` compiles with NVRTC, and its exact source,
run by the host emulation (blocks of 16 threads: ragged row groups and
j-tiles), agrees with the NumPy block-sparse oracle on random patterns
(empty rows, empty and one-point clusters, unkept rows)."""

import dataclasses

import numpy as np
import pytest

from kernelsolve.engine.backends import cuda, emulation
from kernelsolve.engine.backends.cpu import find_compiler
from kernelsolve.engine.codegen.cuda import cuda_param_list, render_cuda
from kernelsolve.engine.ranges import block_plan
from kernelsolve.engine.ranges import reference as ranges_reference

from .cuda_matrix import MATRIX, Case, Shapes, assert_same
from .ranges_cases import random_ranges

IDS = [c.id for c in MATRIX]


def _ranges_spec(p):
    return dataclasses.replace(p.spec, ranges=True)


@pytest.mark.skipif(cuda.nvrtc_available() is None, reason="no NVRTC/nvcc to compile CUDA")
@pytest.mark.parametrize("c", MATRIX, ids=IDS)
def test_nvrtc_compiles_ranges_kernels(c: Case):
    """The block-sparse source of every case compiles to PTX, and its entry
    point takes the groups and the j-ranges last."""
    spec = _ranges_spec(c.problem(Shapes(5, 7)))
    src = render_cuda(spec)
    assert ".entry ks_main" in cuda.nvrtc_compile(src)
    assert [n for _, n in cuda_param_list(spec)][-2:] == ["ks_groups", "ks_red"]


@pytest.mark.skipif(find_compiler() is None, reason="the emulation builds the CUDA source")
@pytest.mark.parametrize(
    "c", MATRIX[::3] + [c for c in MATRIX if c.name == "add1"][:4], ids=lambda c: c.id
)
def test_emulated_ranges_match_reference(c: Case):
    """The block-sparse CUDA source, emulated, equals the NumPy oracle: 37
    rows in groups of at most 16, j-ranges of any length (ragged tiles)."""
    rng = np.random.default_rng(len(c.id))
    p = c.problem(Shapes(37, 45))
    spec = _ranges_spec(p)
    for trial in range(2):
        ranges, _ = random_ranges(rng, p.M, p.N, ci=6, cj=5, density=0.5)
        blocks = block_plan(ranges, p.M, p.N)
        ref = ranges_reference.reduce(
            p.formula,
            p.red,
            p.leaves,
            p.cats,
            blocks,
            weight=p.weight,
            K=c.K or 0,
            dtype=np.dtype(c.dtype),
            acc_dtype=np.dtype(c.acc) if c.acc else None,
        )
        got = emulation.run(spec, p.leaves, p.batch, p.M, p.N, block=16, blocks=blocks)
        assert_same(got, ref, spec, f"{c.id} trial {trial}")


@pytest.mark.skipif(find_compiler() is None, reason="the emulation builds the CUDA source")
def test_emulated_nothing_kept():
    """No block kept: every row gets the empty value, as on the CPU."""
    c = next(c for c in MATRIX if c.reduction == "min_argmin")
    p = c.problem(Shapes(20, 9))
    empty = (np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros((0, 2), np.int64))
    got = emulation.run(
        _ranges_spec(p),
        p.leaves,
        p.batch,
        p.M,
        p.N,
        block=16,
        blocks=block_plan(empty * 2, p.M, p.N),
    )
    assert np.isposinf(got[0]).all() and (got[1] == -1).all()
