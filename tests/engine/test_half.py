"""float16 / bfloat16 inputs, computed and accumulated in float32.

* CUDA target: the generated source loads ``__half`` / ``__nv_bfloat16``
  arguments, converts them to float and writes the value outputs back in the
  input's dtype. It compiles with NVRTC, and runs under the emulation harness
  (whose host ``__half`` / ``__nv_bfloat16`` conversions are checked bit for
  bit against NumPy and torch) with results equal to the reference engine on
  float32 copies, to the rounding of the output dtype.
* Host targets (CPU, reference): float32 copies in, results cast back: the
  same bits as the float32 computation on the same values, rounded.

Checked for sum (``K @ b``), logsumexp and argKmin.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from kernelsolve import LazyTensor
from kernelsolve.engine import ir
from kernelsolve.engine import reductions as R
from kernelsolve.engine.backends import cuda, emulation, reference
from kernelsolve.engine.backends.cpu import compile_shared, find_compiler
from kernelsolve.engine.codegen import cuda as codegen_cuda
from kernelsolve.engine.codegen import spec as codegen_spec
from kernelsolve.engine.codegen.dialect import CUDA

torch = pytest.importorskip("torch", reason="bfloat16 data comes from torch (test extra)")

needs_compiler = pytest.mark.skipif(
    find_compiler() is None, reason="no C++ compiler: the emulation builds the CUDA source"
)
HALF = ("float16", "bfloat16")
# relative rounding of one conversion to the output dtype, and some room for the
# float32 arithmetic done in another order than the reference's
ROUND = {"float16": 2.0**-11, "bfloat16": 2.0**-8}


# ----------------------------------------------------------------------------
# float32 <-> half / bfloat16 bits (torch does both roundings, to nearest even)
# ----------------------------------------------------------------------------


def to_bits(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values -> the stored array the kernel reads (float16, or the int16
    bits of bfloat16)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if dtype == "float16":
        return t.to(torch.float16).numpy()
    return t.to(torch.bfloat16).view(torch.int16).numpy()


def from_bits(a: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float16":
        return a.astype(np.float32)
    return (a.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


# ----------------------------------------------------------------------------
# The emulation header's conversions
# ----------------------------------------------------------------------------

_CONVERT = r"""
#include "%s"
extern "C" void f2h(const float* x, unsigned short* h, long n) {
  for (long i = 0; i < n; i++) h[i] = __float2half_rn(x[i]).__x;
}
extern "C" void h2f(const unsigned short* h, float* x, long n) {
  for (long i = 0; i < n; i++) { __half v; v.__x = h[i]; x[i] = __half2float(v); }
}
extern "C" void f2bf(const float* x, unsigned short* h, long n) {
  for (long i = 0; i < n; i++) h[i] = __float2bfloat16(x[i]).__x;
}
extern "C" void bf2f(const unsigned short* h, float* x, long n) {
  for (long i = 0; i < n; i++) { __nv_bfloat16 v; v.__x = h[i]; x[i] = __bfloat162float(v); }
}
"""


@pytest.fixture(scope="module")
def convert(tmp_path_factory):
    d = tmp_path_factory.mktemp("half")
    src, lib = d / "convert.cpp", d / "convert.so"
    src.write_text(_CONVERT % emulation.HEADER)
    compile_shared(src, lib, emulation.FLAGS)
    so = ctypes.CDLL(str(lib))
    for fn in (so.f2h, so.h2f, so.f2bf, so.bf2f):
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    return so


def _float_samples() -> np.ndarray:
    """Random float32 bit patterns plus every pattern next to a rounding boundary of
    half (13 dropped bits) and of bfloat16 (16 dropped bits): ties, +-1 ulp."""
    rng = np.random.default_rng(0)
    hi16 = np.arange(2**16, dtype=np.uint32) << 16
    hi19 = np.arange(2**19, dtype=np.uint32) << 13
    parts = [rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)]
    parts += [hi16 + d for d in (0, 0x7FFF, 0x8000, 0x8001)]
    parts += [hi19 + d for d in (0, 0xFFF, 0x1000, 0x1001)]
    return np.concatenate(parts).view(np.float32)


@needs_compiler
def test_emulated_conversions_are_bit_exact(convert):
    """float -> half and float -> bfloat16 round to nearest even (overflow to inf,
    subnormals, signed zeros) exactly as NumPy / torch; half -> float and
    bfloat16 -> float are exact; NaN stays NaN."""
    x = _float_samples()
    n, nan = len(x), np.isnan(x)
    h = np.empty(n, np.uint16)
    convert.f2h(x.ctypes.data, h.ctypes.data, n)
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    assert (h[~nan] == want[~nan]).all()
    assert np.isnan(h[nan].view(np.float16)).all()
    b = np.empty(n, np.uint16)
    convert.f2bf(x.ctypes.data, b.ctypes.data, n)
    want = to_bits(x, "bfloat16").view(np.uint16)
    assert (b[~nan] == want[~nan]).all()
    assert np.isnan(from_bits(b[nan], "bfloat16")).all()
    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    for fn, dtype in ((convert.h2f, "float16"), (convert.bf2f, "bfloat16")):
        f = np.empty(2**16, np.float32)
        fn(every.ctypes.data, f.ctypes.data, 2**16)
        w = every.view(np.float16).astype(np.float32) if dtype == "float16" else None
        w = from_bits(every, dtype) if w is None else w
        finite = ~np.isnan(w)
        assert (f.view(np.uint32)[finite] == w.view(np.uint32)[finite]).all(), dtype
        assert np.isnan(f[~finite]).all()


# ----------------------------------------------------------------------------
# The CUDA source: NVRTC and emulation
# ----------------------------------------------------------------------------

X, Y, B = ir.var(0, ir.I, 3), ir.var(1, ir.J, 3), ir.var(2, ir.J, 2)
SQ = ir.make("sqdist", X, Y)
GAUSS_B = ir.make("mul", ir.make("exp", ir.make("neg", SQ)), B)  # K @ b, 2 columns
CASES = {  # name -> (formula, reduction, K)
    "sum": (GAUSS_B, "sum", 0),
    "logsumexp": (ir.make("neg", SQ), "logsumexp", 0),
    "argkmin": (SQ, "argkmin", 3),
}


def half_spec(dtype: str, name: str) -> codegen_spec.KernelSpec:
    formula, red, K = CASES[name]
    return codegen_spec.KernelSpec(
        formula, None, R.get(red, K or None), K, dtype, "float32", (ir.I, ir.J, ir.J), (3, 3, 2)
    )


@pytest.mark.skipif(
    cuda.nvrtc_available() is None or cuda.cuda_include_dir() is None,
    reason="no NVRTC/nvcc, or no cuda_fp16.h / cuda_bf16.h to include (CI installs them)",
)
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", HALF)
def test_half_source_compiles_with_nvrtc(dtype, name):
    """The float16 / bfloat16 source includes CUDA's headers, takes __half /
    __nv_bfloat16 pointers, converts on load and compiles to PTX."""
    src = codegen_cuda.render_cuda(half_spec(dtype, name))
    stype, load = {d: (s, f) for d, s, f in CUDA.half_types}[dtype]
    assert "#include <cuda_fp16.h>" in src and "#include <cuda_bf16.h>" in src
    assert f"const {stype}* arg0" in src and f"{load}(" in src
    ptx = cuda.nvrtc_compile(src)
    assert ".entry ks_main" in ptx and ".entry ks_merge" in ptx
    assert ("cvt.f32.f16" if dtype == "float16" else ".b16") in ptx


def _data(dtype: str, M: int, N: int, seed: int):
    """Inputs as the kernel stores them, and their exact float32 values."""
    rng = np.random.default_rng(seed)
    raw = [rng.uniform(0, 1, (M, 3)), rng.uniform(0, 1, (N, 3)), rng.uniform(-1, 1, (N, 2))]
    stored = [to_bits(a, dtype) for a in raw]
    return stored, [from_bits(s, dtype) for s in stored]


@needs_compiler
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", HALF)
def test_emulated_half_kernel_matches_reference(dtype, name):
    """37 rows x 45 columns, blocks of 16, j split in 2 (merge pass): the emulated
    kernel on float16 / bfloat16 data equals the reference engine on the float32
    values of the same data, up to the rounding of the output; argKmin indices
    are identical."""
    spec = half_spec(dtype, name)
    formula, red, K = CASES[name]
    stored, exact = _data(dtype, 37, 45, seed=len(name))
    outs = emulation.run(spec, stored, (), 37, 45, block=16, nsplit=2)
    want = reference.reduce(
        formula, R.get(red, K or None), exact, spec.var_cats, (), 37, 45, K=K, dtype=np.float32
    )
    assert len(outs) == len(want)
    for got, ref in zip(outs, want):
        if ref.dtype == np.int64:
            np.testing.assert_array_equal(got, ref)
            continue
        assert got.dtype == (np.float16 if dtype == "float16" else np.int16)
        g = from_bits(got, dtype)
        scale = np.abs(ref).max()
        np.testing.assert_allclose(g, ref, rtol=ROUND[dtype], atol=1e-6 * scale)
        # the output is the float32 result rounded once: never further than that
        assert (np.abs(g - ref) <= ROUND[dtype] * np.abs(ref) + 1e-6 * scale).all()


# ----------------------------------------------------------------------------
# Host targets: float32 copies in, the input's dtype out
# ----------------------------------------------------------------------------

LIB_DTYPES = [("numpy", "float16"), ("torch", "float16"), ("torch", "bfloat16")]


def _lazy(lib: str, dtype: str, M=40, N=70, seed=1):
    stored, exact = _data(dtype, M, N, seed)
    if lib == "numpy":
        arrays = [np.asarray(s) for s in stored]
    else:
        tdt = getattr(torch, dtype)
        arrays = [torch.from_numpy(e).to(tdt) for e in exact]
    return arrays, exact


def _reductions(x, y, b, backend):
    x_i, y_j = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
    D = ((x_i - y_j) ** 2).sum(-1)
    out = {
        "K * b": ((-D).exp() * LazyTensor(b[None, :, :])).sum(1, backend=backend),
        "logsumexp": (-D).logsumexp(1, backend=backend),
        "argKmin": D.argKmin(3, 1, backend=backend),
    }
    if backend is None:
        out["K @ b"] = (-D).exp() @ b
    return out


@pytest.mark.parametrize("backend", [None, "reference"])
@pytest.mark.parametrize("lib,dtype", LIB_DTYPES)
def test_host_half_inputs_give_the_float32_result_rounded(lib, dtype, backend):
    """CPU (compiled) and reference targets: a float16 / bfloat16 input gives the
    float32 computation on the same values, cast to the input's dtype: the same
    bits; indices int64 and identical."""
    arrays, exact = _lazy(lib, dtype)
    got = _reductions(*arrays, backend)
    want = _reductions(*exact, backend)
    for key in got:
        g, w = got[key], want[key]
        if key == "argKmin":
            assert str(g.dtype).endswith("int64")
            np.testing.assert_array_equal(np.asarray(g), w)
            continue
        assert str(g.dtype).endswith(dtype), (key, g.dtype)
        if lib == "numpy":
            np.testing.assert_array_equal(g, w.astype(np.float16))
        else:
            np.testing.assert_array_equal(
                g.view(torch.int16).numpy(),
                torch.from_numpy(w).to(getattr(torch, dtype)).view(torch.int16).numpy(),
            )


def test_half_accumulation_options():
    """dtype_acc: float32 (the default for half inputs) and float64 are accepted,
    anything else is a ValueError."""
    (x, y, b), _ = _lazy("torch", "float16", 10, 20)
    K = (-((LazyTensor(x[:, None, :]) - LazyTensor(y[None, :, :])) ** 2).sum(-1)).exp()
    a32 = K.sum(1, dtype_acc="float32")
    a64 = K.sum(1, dtype_acc="float64")
    assert a32.dtype == a64.dtype == torch.float16
    with pytest.raises(ValueError, match="dtype_acc"):
        K.sum(1, dtype_acc="int32")


def test_other_dtypes_are_refused():
    """Integer arrays stay a TypeError naming the dtype."""
    x = np.zeros((4, 3), np.int32)
    with pytest.raises(TypeError, match="int32"):
        LazyTensor(x[:, None, :])
