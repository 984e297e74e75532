"""Every CUDA source produced by the test matrix compiles to PTX (NVRTC or nvcc).

No GPU needed: CI installs cuda-python (test extra) and compiles the exact text
that the CUDA target hands to CuPy's RawModule.
"""

import re
import shutil

import pytest

from kernelsolve.engine import ir
from kernelsolve.engine.backends import cuda
from kernelsolve.engine.codegen.cuda import cuda_merge_param_list, cuda_param_list, render_cuda

from .cuda_matrix import MATRIX, Case

pytestmark = pytest.mark.skipif(
    cuda.nvrtc_available() is None,
    reason="no NVRTC/nvcc: CUDA sources are compiled in CI where cuda-python is installed",
)

IDS = [c.id for c in MATRIX]
TRIG = {"sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "sinxdivx"}
F64_INSN = re.compile(r"\.f64\s")  # an f64 instruction or register declaration


def _signature(src: str, name: str) -> str:
    m = re.search(rf'extern "C" __global__ void {name}\(([^)]*)\)', src)
    assert m, f"no {name} in the source"
    return m.group(1)


def _ops(c: Case) -> set[str]:
    p = c.problem()
    roots = [p.formula] + ([p.weight] if p.weight is not None else [])
    return {n.op for r in roots for n in ir.topological_order(r)}


@pytest.fixture(scope="module")
def compiled():
    """PTX of every case of the matrix, compiled once."""
    return {}


def _ptx(compiled: dict, c: Case) -> tuple[str, str]:
    if c.id not in compiled:
        src = render_cuda(c.problem().spec)
        compiled[c.id] = (src, cuda.nvrtc_compile(src))
    return compiled[c.id]


def test_matrix_covers_everything():
    """The matrix holds every reduction of the registry, both dtypes, both
    axes, inner dims 1 and 3, K @ b with 1 and 3 columns, and the op kinds."""
    from kernelsolve.engine import reductions as R

    assert {c.reduction for c in MATRIX} == set(R.REDUCTIONS)
    for red in R.REDUCTIONS:
        assert {c.dtype for c in MATRIX if c.reduction == red} == {"float32", "float64"}, red
    assert {c.axis for c in MATRIX} == {0, 1}
    assert {c.problem().spec.D for c in MATRIX} >= {1, 3}
    assert {"kb1", "kb3"} <= {c.name for c in MATRIX}
    ops = set().union(*(_ops(c) for c in MATRIX if c.name == "mix"))
    want = {"sqrt", "sin", "clamp", "ifelse", "concat", "matvecmult", "tensorprod"}
    assert want | {"weightedsqnorm", "elem"} <= ops


@pytest.mark.parametrize("c", MATRIX, ids=IDS)
def test_nvrtc_compiles(compiled, c):
    """render_cuda(spec) compiles to PTX with both entry points."""
    _, ptx = _ptx(compiled, c)
    assert ".entry ks_main" in ptx
    assert ".entry ks_merge" in ptx


@pytest.mark.parametrize("c", MATRIX, ids=IDS)
def test_signature_types(compiled, c):
    """ks_main takes T* arguments of the dtype (double / float), int64 sizes,
    and accumulator-typed split buffers; the parameter list is the launcher's."""
    src, _ = _ptx(compiled, c)
    spec = c.problem().spec
    sig = _signature(src, "ks_main")
    assert sig == ", ".join(f"{t} {n}" for t, n in cuda_param_list(spec))
    T = "double" if c.dtype == "float64" else "float"
    ACC = "double" if c.acc_dtype == "float64" else "float"
    args = re.findall(r"const (\w+)\* arg\d+", sig)
    assert args == [T] * len(spec.var_cats)
    assert f"{ACC}* part_v" in sig
    for name in ("nbatch", "M", "N", "chunk", "blocks_per_batch"):
        assert f"int64_t {name}" in sig
    if c.dtype == "float32":
        assert "KS_DYNAMIC_SHARED(float, ysh)" in src
        if c.acc is None:
            assert "double" not in sig
    if c.dtype == "float64":
        assert "float" not in sig
        assert "KS_DYNAMIC_SHARED(double, ysh)" in src
    msig = _signature(src, "ks_merge")
    assert msig == ", ".join(f"{t} {n}" for t, n in cuda_merge_param_list(spec))


@pytest.mark.parametrize(
    "c",
    [c for c in MATRIX if c.dtype == "float32" and c.acc is None and not (_ops(c) & TRIG)],
    ids=lambda c: c.id,
)
def test_float32_ptx_has_no_double_arithmetic(compiled, c):
    """A float32 kernel (float accumulator, no trig function whose slow path
    uses double) computes in single precision only: no .f64 in the PTX."""
    _, ptx = _ptx(compiled, c)
    hits = [line.strip() for line in ptx.splitlines() if F64_INSN.search(line)]
    assert not hits, hits[:5]


def _tools() -> list[str]:
    tools = ["nvrtc"] if cuda.nvrtc_available() == "nvrtc" else []
    return tools + (["nvcc"] if shutil.which("nvcc") else [])


@pytest.mark.parametrize("tool", _tools())
@pytest.mark.parametrize(
    "c", [MATRIX[0], next(c for c in MATRIX if c.name == "mix")], ids=lambda c: c.id
)
def test_each_available_compiler(monkeypatch, tool, c):
    """Both compilation paths of nvrtc_compile (NVRTC, nvcc fallback) accept
    the generated source."""
    monkeypatch.setattr(cuda, "nvrtc_available", lambda: tool)
    ptx = cuda.nvrtc_compile(render_cuda(c.problem().spec))
    assert ".entry ks_main" in ptx and ".entry ks_merge" in ptx


def test_compile_error_is_reported():
    """A broken source raises RuntimeError carrying the compiler log."""
    with pytest.raises(RuntimeError, match="ks_undefined_symbol"):
        cuda.nvrtc_compile(
            'extern "C" __global__ void k(float* a) { a[0] = ks_undefined_symbol; }'
        )
