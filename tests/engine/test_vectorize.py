"""The SIMD loops of the generated CPU kernels vectorize, on AVX2 and AVX-512.

The engine's speed comes from GCC vectorizing the ``#pragma omp simd`` loops
over j, ``ks_exp`` and ``ks_log`` inlined. A formula or flag change that keeps them scalar
still gives right answers, 4-7x slower: that happened once on AVX2, where
GCC would not turn the selects of ``ks_exp`` into blends without
``-fno-trapping-math`` (AVX-512 has mask registers and hid it), and the
double ``ks_exp`` used a 64-bit arithmetic shift that AVX2 lacks.

Each test renders a kernel, compiles it with the engine's flags for a given
x86-64 level (not ``-march=native``, so that both instruction sets are
checked on any x86-64 machine with GCC), asks GCC which loops it vectorized
(``-fopt-info-vec-optimized``) and requires every SIMD loop to be among them.
"""

from __future__ import annotations

import platform
import re
import subprocess

import numpy as np
import pytest

from kernelsolve import Vi, Vj
from kernelsolve.engine import dispatch
from kernelsolve.engine.backends import cpu
from kernelsolve.engine.codegen import cpu as codegen_cpu
from kernelsolve.engine.codegen import spec as codegen_spec

COMPILER = cpu.find_compiler()


def _is_gcc() -> bool:
    if COMPILER is None:
        return False
    out = subprocess.run([COMPILER, "--version"], capture_output=True, text=True).stdout
    return "clang" not in out.lower() and "Free Software Foundation" in out


pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or not _is_gcc(),
    reason="checks GCC's vectorizer report for x86-64 targets (needs GCC on x86-64); "
    "the kernels' results are checked on every machine by test_cpu_target.py",
)

# x86-64 levels: AVX2 + FMA (most laptops, AMD EPYC up to Zen 3) and AVX-512
ARCHES = {"avx2": "-march=x86-64-v3", "avx512": "-march=x86-64-v4"}


def _spec(formula_of, reduction: str, dtype: str) -> codegen_spec.KernelSpec:
    """The KernelSpec that ``reduction`` of the LazyTensor ``formula_of(x, y)`` runs."""
    rng = np.random.default_rng(0)
    x = rng.random((40, 3)).astype(dtype)
    y = rng.random((50, 3)).astype(dtype)
    b = rng.random((50, 2)).astype(dtype)
    K = formula_of(Vi(x), Vj(y))
    seen = {}
    execute = dispatch.execute

    def spy(plan, leaves):
        seen["spec"] = plan.spec
        return execute(plan, leaves)

    dispatch.execute = spy
    try:
        if reduction == "matmul":
            K @ b
        else:
            getattr(K, reduction)(dim=1)
    finally:
        dispatch.execute = execute
    return seen["spec"]


def _simd_pragma_lines(source: str) -> list[int]:
    """1-based line numbers of the ``#pragma omp simd`` lines."""
    lines = source.splitlines()
    return [k + 1 for k, line in enumerate(lines) if line.strip().startswith("#pragma omp simd")]


def _vectorized_lines(source: str, arch_flag: str, tmp_path) -> set[int]:
    src = tmp_path / "kernel.cpp"
    src.write_text(source)
    flags = [f for f in cpu.FLAGS if not f.startswith("-march=")] + [arch_flag]
    cmd = [
        COMPILER,
        *flags,
        "-fopt-info-vec-optimized",
        "-c",
        str(src),
        "-o",
        str(tmp_path / "k.o"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return {
        int(m)
        for m in re.findall(r"kernel\.cpp:(\d+):\d+: optimized: loop vectorized", proc.stderr)
    }


def gaussian(x, y):
    return (-((x - y) ** 2).sum(-1)).exp()


def laplace(x, y):
    return (-(x.sqdist(y) + 1e-12).sqrt()).exp()


CASES = [
    ("gaussian K @ b", gaussian, "matmul"),
    ("gaussian logsumexp", gaussian, "logsumexp"),
    ("laplace K @ b (sqrt)", laplace, "matmul"),
    ("relu K @ b (select)", lambda x, y: (1 - x.sqdist(y)).relu(), "matmul"),
    ("thin-plate spline K @ b (log)", lambda x, y: x.sqdist(y).xlogx(), "matmul"),
]


@pytest.mark.parametrize("arch", sorted(ARCHES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_simd_loops_vectorize(case, dtype, arch, tmp_path):
    _, formula_of, reduction = case
    source = codegen_cpu.render_cpu(_spec(formula_of, reduction, dtype))
    wanted = _simd_pragma_lines(source)
    assert wanted, "the kernel has no '#pragma omp simd' loop"
    done = _vectorized_lines(source, ARCHES[arch], tmp_path)
    # GCC reports a vectorized loop at the pragma (its reduction clause), the
    # `for` line or the first statement of the body
    scalar = [n for n in wanted if not done.intersection(range(n, n + 3))]
    listing = source.splitlines()
    assert not scalar, (
        f"{len(scalar)} of {len(wanted)} SIMD loops stay scalar with {ARCHES[arch]}: "
        + "; ".join(f"line {n}: {listing[n - 1].strip()}" for n in scalar)
    )
