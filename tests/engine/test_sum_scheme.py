"""pykeops' ``sum_scheme``: the accuracy of each scheme on the CPU target and
in the CUDA source (run by the emulation harness, compiled by NVRTC), every
sum-type reduction against the NumPy reference engine, and inf / NaN kept
through the compensated additions (codegen/summation.py)."""

import numpy as np
import pytest

from kernelsolve import Vi, Vj
from kernelsolve.engine import dispatch, ir
from kernelsolve.engine import reductions as R
from kernelsolve.engine.backends import cuda, emulation
from kernelsolve.engine.backends.cpu import find_compiler
from kernelsolve.engine.codegen import summation
from kernelsolve.engine.codegen.cpu import render_cpu
from kernelsolve.engine.codegen.cuda import render_cuda
from kernelsolve.engine.codegen.spec import KernelSpec
from kernelsolve.engine.request import ReductionOptions, ReductionRequest

SCHEMES = list(summation.SCHEMES)
SUM_REDUCTIONS = ["sum", "logsumexp", "logsumexp_weight", "sumsoftmaxweight"]
CATS = (ir.I, ir.J, ir.J)
needs_compiler = pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler")


def _gauss(x, y):
    return (-Vi(x).sqdist(Vj(y)) * 4.0).exp()


@pytest.fixture(scope="module")
def big():
    """float32 points, N = 10^6 j: the size of issue 17's accuracy target."""
    rng = np.random.default_rng(0)
    x = rng.random((4, 3)).astype(np.float32)
    y = rng.random((10**6, 3)).astype(np.float32)
    return x, y


def _rel(a, b):
    return float(np.max(np.abs(a - b) / np.abs(b)))


@needs_compiler
def test_default_scheme_reaches_float32_rounding(big):
    """A float32 Gaussian sum and a sum of positive products over 10^6 j err
    by at most 2e-7 relative (against the float64 computation of the same
    inputs) by default and with kahan_scheme; direct_sum, without the
    compensation, errs by several times more (the compensation is live: a
    compiler flag that reassociated it away would fail here)."""
    x, y = big
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    for build in (_gauss, lambda x, y: Vi(x) * Vj(y)):
        exact = build(x64, y64).sum(1)
        errs = {s: _rel(build(x, y).sum(1, sum_scheme=s), exact) for s in SCHEMES}
        assert _rel(build(x, y).sum(1), exact) == errs["block_sum"]
        assert errs["block_sum"] <= 2e-7 and errs["kahan_scheme"] <= 2e-7, errs
        assert errs["direct_sum"] > 3 * errs["block_sum"], errs


@needs_compiler
def test_default_scheme_accuracy_of_logsumexp_weight(big):
    """The weighted log-sum-exp folds pair by pair on the CPU: block_sum sums
    each block apart and merges it compensated (direct_sum does not)."""
    x, y = big
    b = np.linspace(0.5, 1.5, len(y), dtype=np.float32)[:, None]
    exact = (-Vi(x.astype(float)).sqdist(Vj(y.astype(float)))).logsumexp(
        1, weight=Vj(b.astype(float))
    )
    f = -Vi(x).sqdist(Vj(y))
    assert _rel(f.logsumexp(1, weight=Vj(b)), exact) <= 2e-7
    assert _rel(f.logsumexp(1, weight=Vj(b), sum_scheme="kahan_scheme"), exact) <= 2e-7


def _problem(reduction, rng, M=37, N=1300):
    """Formula, weight and float32 arrays of one sum-type reduction."""
    x = rng.standard_normal((M, 2)).astype(np.float32)
    y = rng.standard_normal((N, 2)).astype(np.float32)
    w = rng.random((N, 3)).astype(np.float32) + 0.1
    xi, yj, wj = ir.var(0, ir.I, 2), ir.var(1, ir.J, 2), ir.var(2, ir.J, 3)
    f = ir.make("neg", ir.make("sqdist", xi, yj))
    if reduction == "sum":
        f = ir.make("mul", ir.make("exp", f), wj)
    elif reduction == "logsumexp":
        f = ir.make("add", f, wj)  # a vector: one log-sum-exp per coordinate
    weight = wj if R.get(reduction).uses_weight else None
    return f, weight, [x, y, w]


def _run(f, weight, reduction, arrays, target, scheme=None):
    options = ReductionOptions(target, None, scheme)
    cats = CATS[: len(arrays)]
    request = ReductionRequest(f, reduction, tuple(arrays), cats, 1, weight, None, options)
    return dispatch.reduce(request)


def _emulate(f, weight, reduction, arrays, scheme, **launch):
    spec = KernelSpec(
        formula=f,
        weight=weight,
        reduction=R.get(reduction),
        K=0,
        dtype="float32",
        acc_dtype="float32",
        var_cats=CATS[: len(arrays)],
        var_dims=tuple(a.shape[-1] for a in arrays),
        sum_scheme=scheme,
    )
    M, N = len(arrays[0]), len(arrays[1])
    return emulation.run(spec, arrays, (), M, N, **launch)[0]


@needs_compiler
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("reduction", SUM_REDUCTIONS)
def test_every_sum_reduction_in_every_scheme(reduction, scheme):
    """CPU target and emulated CUDA source (one split, and j split in three
    with the merge kernel) agree with the float64 reference engine."""
    f, weight, arrays = _problem(reduction, np.random.default_rng(1))
    ref = _run(f, weight, reduction, [a.astype(np.float64) for a in arrays], "reference")
    got = _run(f, weight, reduction, arrays, "cpu", scheme)
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-6)
    for launch in ({"block": 64, "nsplit": 1}, {"block": 32, "nsplit": 3}):
        emu = _emulate(f, weight, reduction, arrays, scheme, **launch)
        np.testing.assert_allclose(emu, ref, rtol=2e-6, atol=1e-6)


BIG = np.float32(3e38)
# (j values, what their sum is): inf and NaN must survive the compensated
# additions (inf - inf in an error term would turn an infinite sum into NaN)
SPECIAL = [
    ("inf late", lambda n: np.r_[np.ones(n - 1), np.inf], np.inf),
    ("inf early", lambda n: np.r_[np.inf, np.ones(n - 1)], np.inf),
    ("-inf", lambda n: np.r_[np.ones(n - 1), -np.inf], -np.inf),
    ("inf and -inf", lambda n: np.r_[np.inf, np.ones(n - 2), -np.inf], np.nan),
    ("nan", lambda n: np.r_[np.ones(n // 2), np.nan, np.ones(n - n // 2 - 1)], np.nan),
    ("overflow", lambda n: np.full(n, BIG), np.inf),
]


@needs_compiler
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("name", "values", "expected"), SPECIAL, ids=[s[0] for s in SPECIAL])
def test_inf_and_nan_survive_compensation(name, values, expected, scheme):
    """sum_j x_i y_j with inf, -inf, NaN or overflowing y over 2100 j (several
    CPU blocks and GPU tiles): inf stays inf, inf - inf and NaN give NaN, on
    the CPU target and in the emulated CUDA source (split j included)."""
    n = 2100
    x = np.ones((3, 1), np.float32)
    y = values(n).astype(np.float32)[:, None]
    f = ir.make("mul", ir.var(0, ir.I, 1), ir.var(1, ir.J, 1))
    outs = [_run(f, None, "sum", [x, y], "cpu", scheme)]
    outs += [_emulate(f, None, "sum", [x, y], scheme, block=64, nsplit=k) for k in (1, 3)]
    for out in outs:
        np.testing.assert_array_equal(out[:, 0], np.full(3, expected, np.float32))


@needs_compiler
@pytest.mark.parametrize("scheme", SCHEMES)
def test_logsumexp_inf_and_nan(scheme):
    """Log-sum-exp with +inf, only -inf, or NaN values among 2100 j."""
    n = 2100
    x = np.array([[1.0], [-np.inf], [np.nan]], np.float32)  # rows: +inf, -inf, NaN
    y = np.r_[np.linspace(0.5, 1, n - 1), np.inf].astype(np.float32)[:, None]
    f = ir.make("mul", ir.var(0, ir.I, 1), ir.make("abs", ir.var(1, ir.J, 1)))
    expected = np.array([np.inf, -np.inf, np.nan], np.float32)
    for out in (
        _run(f, None, "logsumexp", [x, y], "cpu", scheme),
        _emulate(f, None, "logsumexp", [x, y], scheme, block=64, nsplit=3),
    ):
        np.testing.assert_array_equal(out[:, 0], expected)


@pytest.mark.skipif(cuda.nvrtc_available() is None, reason="no NVRTC or nvcc to compile CUDA")
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("reduction", SUM_REDUCTIONS)
def test_nvrtc_compiles_every_scheme(reduction, scheme):
    f, weight, arrays = _problem(reduction, np.random.default_rng(2), M=4, N=8)
    spec = KernelSpec(
        f, weight, R.get(reduction), 0, "float32", "float32", CATS, (2, 2, 3), sum_scheme=scheme
    )
    assert "ks_main" in cuda.nvrtc_compile(render_cuda(spec))


def test_schemes_differ_only_in_their_additions():
    """The scheme is how the templates add, one table: the sources of two
    schemes differ in the macros and (block_sum) the GPU's tile sums."""
    f, weight, _ = _problem("sum", np.random.default_rng(3))
    specs = {
        s: KernelSpec(
            f, weight, R.get("sum"), 0, "float32", "float32", CATS, (2, 2, 3), sum_scheme=s
        )
        for s in SCHEMES
    }
    assert (
        KernelSpec(f, weight, R.get("sum"), 0, "float32", "float32", CATS, (2, 2, 3))
        == (specs[summation.DEFAULT_SCHEME])
    )
    cpu = {s: render_cpu(spec) for s, spec in specs.items()}
    assert "ks_t_" in summation.preamble("block_sum")  # compensated merge
    assert "ks_t_" not in summation.preamble("direct_sum")
    assert cpu["direct_sum"] != cpu["block_sum"]
    assert (
        "acc_b" in render_cuda(specs["block_sum"])
        and "acc_b" not in render_cuda(specs["direct_sum"]).split("ks_merge")[0]
    )
    with pytest.raises(ValueError, match="sum_scheme='pairwise'"):
        summation.scheme("pairwise")
