"""The C renderer (kernelsolve.engine.codegen): one formula renderer, two templates.

Pure text checks, nothing is compiled: common subexpressions are emitted once,
constants are exact literals, the CPU and CUDA sources wrap the very same formula
statements (differing only through the Dialect table), and every loop index is int64.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest

from kernelsolve import Vi, Vj
from kernelsolve.engine import ir, reductions
from kernelsolve.engine.codegen import cpu as codegen_cpu
from kernelsolve.engine.codegen import cuda as codegen_cuda
from kernelsolve.engine.codegen.dialect import CPU, CUDA
from kernelsolve.engine.codegen.formula import c_literal, render_formula
from kernelsolve.engine.codegen.spec import KernelSpec

T_OF = {"float32": "float", "float64": "double"}

x3 = ir.var(0, ir.I, 3)
y3 = ir.var(1, ir.J, 3)
p1 = ir.var(2, ir.P, 1)


def leaf(node):
    """C names of a variable's coordinates, as both templates name them."""
    index, _, dim = node.attrs
    return [f"a{index}_{c}" for c in range(dim)]


def spec_of(formula, reduction="sum", K=0, dtype="float64", weight=None, cats=None, dims=None):
    variables = ir.variables(formula) + (ir.variables(weight) if weight is not None else ())
    by_index = {v.attrs[0]: v for v in variables}
    n = max(by_index) + 1
    return KernelSpec(
        formula=formula,
        weight=weight,
        reduction=reductions.get(reduction, K or None),
        K=K,
        dtype=dtype,
        acc_dtype=dtype,
        var_cats=cats or tuple(by_index[k].attrs[1] for k in range(n)),
        var_dims=dims or tuple(by_index[k].attrs[2] for k in range(n)),
    )


def gaussian_sqdist():
    return ir.make("exp", ir.make("neg", ir.make("sqdist", x3, y3)))


def gaussian_sum_square():
    diff = ir.make("sub", x3, y3)
    return ir.make("exp", ir.make("neg", ir.make("sum", ir.make("square", diff))))


# ----------------------------------------------------------------------------
# Common subexpressions
# ----------------------------------------------------------------------------


def test_shared_subexpression_is_emitted_once():
    """sin(x - y) + exp(x - y) * (x - y), the difference built three times: hash-consing
    makes it one node, rendered once per coordinate and then referred to by name."""
    F = ir.make(
        "add",
        ir.make("sin", ir.make("sub", x3, y3)),
        ir.make("mul", ir.make("exp", ir.make("sub", x3, y3)), ir.make("sub", x3, y3)),
    )
    lines, (result,) = render_formula([F], "double", CPU, leaf)
    text = "\n".join(lines)
    for c in range(3):
        assert text.count(f"a0_{c} - a1_{c}") == 1, text
    # the difference is a named value used by sin, exp and the product
    (name,) = {
        m.group(1) for m in re.finditer(r"const double (v\d+)_0 = \(?a0_0 - a1_0\)?;", text)
    }
    assert text.count(f"{name}_0") >= 4, text  # definition + three uses
    assert len(result) == 3


def test_subexpression_shared_by_formula_and_weight_is_emitted_once():
    """Two roots (formula and weight) sharing x - y: one definition."""
    diff = ir.make("sub", x3, y3)
    F = ir.make("sqnorm2", diff)
    W = ir.make("abs", ir.make("sub", x3, y3))
    lines, results = render_formula([F, W], "float", CPU, leaf)
    text = "\n".join(lines)
    for c in range(3):
        assert text.count(f"a0_{c} - a1_{c}") == 1, text
    assert len(results) == 2 and len(results[0]) == 1 and len(results[1]) == 3


@pytest.mark.parametrize("make", [gaussian_sqdist, gaussian_sum_square])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gaussian_kernel_differences_computed_once(make, dtype):
    """exp(-sqdist(x, y)) and exp(-sum(square(x - y))): x_i - y_j once per coordinate in
    the CPU and the CUDA source, one exp."""
    F = make()
    spec = spec_of(F, "sum", dtype=dtype)
    cuda_src = codegen_cuda.render_cuda(spec)
    # The CPU source has one SIMD loop per row path (one row, or two rows that
    # share the j loads, the second row's loads suffixed _2): check each loop.
    loops = codegen_cpu.render_cpu(spec).split("#pragma omp simd")[1:]
    assert loops
    for body, exp_name in [(b.split("acc_rows")[0], "ks_exp") for b in loops] + [
        (cuda_src, "exp")
    ]:
        rows = 2 if re.search(r"const \w+ w\d+_0 =", body) else 1
        for c in range(3):
            assert body.count(f"a0_{c} - a1_{c}") == 1, body
            assert body.count(f"a0_{c}_2 - a1_{c}") == rows - 1, body
        # one exp per row in the loop, spelled by the dialect
        assert len(re.findall(rf"= {exp_name}\([vw]\d+_0\);", body)) == rows, body


def test_gaussian_from_lazytensor_renders_one_difference_per_coordinate():
    """The same through LazyTensor: (-Vi(x).sqdist(Vj(y))).exp() and
    (-((Vi(x) - Vj(y)) ** 2).sum(-1)).exp()."""
    x, y = np.zeros((4, 3)), np.zeros((5, 3))
    for F in ((-Vi(x).sqdist(Vj(y))).exp(), (-((Vi(x) - Vj(y)) ** 2).sum(-1)).exp()):
        lines, _ = render_formula([F.formula], "double", CPU, leaf)
        text = "\n".join(lines)
        for c in range(3):
            assert text.count(f"a0_{c} - a1_{c}") == 1, text
        assert text.count("ks_exp(") == 1


# ----------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------


def literal_value(lit: str, T: str) -> float:
    m = re.fullmatch(rf"\(\({T}\)(.+)\)", lit)
    assert m, lit
    body = m.group(1)
    if body in ("INFINITY", "-INFINITY"):
        return -math.inf if body.startswith("-") else math.inf
    if body == "NAN":
        return math.nan
    return float.fromhex(body) if "0x" in body else float(int(body))


@pytest.mark.parametrize("T", ["float", "double"])
@pytest.mark.parametrize(
    "value",
    [0.1, 1 / 3, -2.5e-8, 1e300, 5e-324, 2.2250738585072014e-308, math.pi, -0.7, 2.0**60 + 2**8],
)
def test_float_constants_are_exact_literals(value, T):
    """c_literal of a float is a hexadecimal literal that round-trips exactly."""
    lit = c_literal(value, T)
    assert "0x" in lit or value.is_integer()
    assert literal_value(lit, T) == value


@pytest.mark.parametrize("T", ["float", "double"])
@pytest.mark.parametrize("value", [0, 1, -1, 3, -7, 2**40, 2.0, -16.0])
def test_integer_constants_stay_integers(value, T):
    """Integers (and integral floats below 2**53) render as integer literals."""
    lit = c_literal(value, T)
    assert lit == f"(({T}){int(value)})"


@pytest.mark.parametrize("T", ["float", "double"])
def test_special_constants(T):
    assert c_literal(math.inf, T) == f"(({T})INFINITY)"
    assert c_literal(-math.inf, T) == f"(({T})-INFINITY)"
    assert c_literal(math.nan, T) == f"(({T})NAN)"


def test_constants_in_a_rendered_formula():
    """0.1 * x + 3 and x ** 2.5 render 0.1 as its exact hex literal and 3 as an integer."""
    F = ir.make("add", ir.make("mul", ir.const(0.1), x3), ir.const(3))
    lines, _ = render_formula([F], "double", CPU, leaf)
    text = "\n".join(lines)
    assert c_literal(0.1, "double") in text
    assert float.fromhex("0x1.999999999999ap-4") == 0.1
    assert "((double)3)" in text
    assert "0.1" not in text and "3.0" not in text


# ----------------------------------------------------------------------------
# One renderer, two templates
# ----------------------------------------------------------------------------

FORMULAS = {
    "gaussian": gaussian_sqdist(),
    "mixed": ir.make(
        "add",
        ir.make("mul", ir.make("sin", ir.make("sub", x3, y3)), p1),
        ir.make("sqrt", ir.make("add", ir.make("abs", x3), ir.const(1))),
    ),
    "no_exp": ir.make("scalprod", ir.make("sub", x3, y3), ir.make("mul", x3, y3)),
    "exp_twice": ir.make("add", ir.make("exp", x3), ir.make("exp", ir.make("neg", y3))),
}
CASES = [("sum", 0), ("min_argmin", 0), ("kmin_argkmin", 3), ("logsumexp", 0)]


@pytest.mark.parametrize("red,K", CASES)
@pytest.mark.parametrize("name", list(FORMULAS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_statements_in_cpu_and_cuda_sources(dtype, name, red, K):
    """The statements of render_formula appear verbatim in both sources; the CPU and
    CUDA statements differ only by the name of exp (ks_exp vs exp)."""
    F = FORMULAS[name]
    spec = spec_of(F, red, K, dtype)
    T = T_OF[dtype]
    cpu_src, cuda_src = codegen_cpu.render_cpu(spec), codegen_cuda.render_cuda(spec)
    cpu_lines, _r1 = render_formula([F], T, CPU, leaf)
    cuda_lines, _r2 = render_formula([F], T, CUDA, leaf)
    assert cpu_lines and len(cpu_lines) == len(cuda_lines)
    for line in cpu_lines:
        assert line in cpu_src, line
    for line in cuda_lines:
        assert line in cuda_src, line
    assert [s.replace("ks_exp(", "exp(") for s in cpu_lines] == cuda_lines
    if "exp" in F.key:
        assert any("ks_exp(" in s for s in cpu_lines)
    else:
        assert cpu_lines == cuda_lines
    assert "ks_exp" not in cuda_src


def test_weighted_statements_in_both_sources():
    """Formula and weight statements (sumsoftmaxweight) appear in both sources."""
    F = ir.make("neg", ir.make("sqdist", x3, y3))
    w = ir.var(3, ir.J, 2)
    W = ir.make("mul", w, ir.make("sum", ir.make("sub", x3, y3)))
    spec = spec_of(F, "sumsoftmaxweight", weight=W, dims=(3, 3, 1, 2), cats=(0, 1, 2, 1))
    cpu_lines, _ = render_formula([F, W], "double", CPU, leaf)
    cuda_lines, _ = render_formula([F, W], "double", CUDA, leaf)
    cpu_src, cuda_src = codegen_cpu.render_cpu(spec), codegen_cuda.render_cuda(spec)
    assert all(s in cpu_src for s in cpu_lines)
    assert all(s in cuda_src for s in cuda_lines)
    assert cpu_lines == cuda_lines


def test_dialect_table():
    """The target differences live in the Dialect table."""
    assert CPU.exp == "ks_exp" and CUDA.exp == "exp"
    assert CPU.kernel_prefix == 'extern "C"'
    assert "__global__" in CUDA.kernel_prefix and "__global__" not in CPU.kernel_prefix
    assert CUDA.barrier == "__syncthreads();"
    assert "threadIdx" in CUDA.thread_x and "blockIdx" in CUDA.block_x
    assert "blockIdx" in CUDA.block_y and "gridDim" in CUDA.grid_dim_y
    assert "blockDim" in CUDA.block_dim_x


def test_gpu_template_spells_no_cuda_word_itself():
    """Every CUDA-specific word of the GPU template comes from the dialect: the
    template's own text names none of them (another GPU dialect reuses it)."""
    template = Path(codegen_cuda.__file__).read_text()
    words = ("threadIdx", "blockIdx", "blockDim", "gridDim", "__syncthreads", "__global__")
    words += ("__half", "__nv_bfloat16", "__half2float", "__bfloat162float")
    spec_module = Path(codegen_cuda.__file__).with_name("spec.py").read_text()
    for word in words:
        assert word not in template and word not in spec_module, word
    src = codegen_cuda.render_cuda(spec_of(gaussian_sqdist(), "argkmin", 4))
    for field in dataclasses.fields(CUDA):
        value = getattr(CUDA, field.name)
        if field.name not in ("half_preamble", "half_types") and value is not None:
            assert value.strip() in src, field.name


def test_dialect_has_no_dead_field():
    """Every field of the dialect tables is read by the code generator."""
    package = Path(codegen_cuda.__file__).parent
    code = "".join(p.read_text() for p in package.glob("*.py") if p.name != "dialect.py")
    for field in dataclasses.fields(CUDA):
        assert f".{field.name}" in code, field.name


@pytest.mark.parametrize("red,K", [("sum", 0), ("argkmin", 4), ("logsumexp", 0)])
def test_template_specific_text_stays_in_its_template(red, K):
    """OpenMP pragmas and ks_exp only in the CPU source; __global__, __syncthreads and
    shared memory only in the CUDA source."""
    spec = spec_of(gaussian_sqdist(), red, K)
    cpu_src, cuda_src = codegen_cpu.render_cpu(spec), codegen_cuda.render_cuda(spec)
    assert "#pragma omp" in cpu_src and "#pragma omp" not in cuda_src
    assert "ks_exp(" in cpu_src
    for word in ("__global__", "__syncthreads", "threadIdx", "blockIdx"):
        assert word in cuda_src and word not in cpu_src, word


# ----------------------------------------------------------------------------
# int64 indexing
# ----------------------------------------------------------------------------

SPECS = [
    ("sum", 0),
    ("min_argmin", 0),
    ("max_argmax", 0),
    ("kmin_argkmin", 3),
    ("logsumexp", 0),
]


def declared_type(src: str, name: str) -> set[str]:
    """The C types with which ``name`` is declared (``T name =`` / ``T a = .., name =``)."""
    types = set()
    for stmt in re.split(r"[;{}()]", src):
        m = re.match(r"\s*(?:const\s+)?((?:unsigned\s+|long\s+)*\w+)\s+(.*)$", stmt, re.S)
        if not m:
            continue
        ctype, rest = m.groups()
        if ctype in ("return", "if", "else", "for", "while", "define", "typedef"):
            continue
        for decl in re.split(r",", rest):
            d = re.match(r"\s*\**\s*(\w+)\s*(=|\[|$)", decl)
            if d and d.group(1) == name:
                types.add(ctype)
    return types


@pytest.mark.parametrize("red,K", SPECS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_loop_indices_are_int64(dtype, red, K):
    """i, j and r (row) are declared int64_t in both sources, and nothing declares them
    with a narrower type; sizes (M, N, nbatch) are int64_t parameters."""
    spec = spec_of(gaussian_sqdist(), red, K, dtype)
    cpu_src, cuda_src = codegen_cpu.render_cpu(spec), codegen_cuda.render_cuda(spec)
    # the kernels, past the math helpers of the preamble (ks_exp has its own local r)
    kernels = [
        cpu_src[cpu_src.index("int ks_kernel(") :],
        cuda_src[cuda_src.index("void ks_main(") :],
    ]
    for src in kernels:
        for name in ("i", "j", "r"):
            types = declared_type(src, name)
            assert types == {"int64_t"}, f"{name} declared as {types}"
        for name in ("M", "N", "nbatch"):
            assert re.search(rf"\bint64_t {name}\b", src), name
        assert not re.search(r"\b(?:int|unsigned|int32_t|long)\s+[ijr]\b\s*[=;,]", src)


def test_cpu_kernel_loops_in_int64():
    """The CPU template: the row-group, row, tile, block and SIMD loops run on int64_t."""
    src = codegen_cpu.render_cpu(spec_of(gaussian_sqdist(), "min_argmin"))
    assert "const int64_t R = nbatch * M;" in src
    assert re.search(r"for \(int64_t g = 0; g < ngroups; g\+\+\)", src)
    assert re.search(r"for \(int64_t r = r0; r < r1; r\+\+\)", src)
    assert re.search(r"for \(int64_t t0 = 0; t0 < N; t0 \+= \d+\)", src)
    assert re.search(r"for \(int64_t j0 = t0; j0 < t1; j0 \+= \d+\)", src)
    assert re.search(r"for \(int64_t j = j0; j < j1; j\+\+\)", src)
    assert "const int64_t b = r / M, i = r - b * M;" in src
