"""The CUDA sources of GRADIENT kernels, checked without a GPU.

The kernels are collected the way the library really produces them: torch
backward (first and second order) runs on the CPU through LazyTensor for a
set of representative cases, while every call of
:func:`kernelsolve.engine.dispatch.reduce` is recorded (formula, reduction,
categories, axis, weight, K, accumulator dtype and the arrays). Each recorded
call becomes the :class:`~kernelsolve.engine.codegen.spec.KernelSpec` that
``dispatch._make_plan`` builds for a compiled target (the same spec for the
host and the CUDA target), deduplicated by value. A spec's id is
``<case>-o<order>-<n>``: order 1 or 2 for the kernels of the order-k backward,
0 for the kernels that a differentiable forward adds to the user's reduction
(the selected-pair kernels of min / Kmin, the second reduction of
sumsoftmaxweight); the user's own forward reduction belongs to the forward
matrix (cuda_matrix.py) and is not repeated here.

Checked:

* every gradient spec's CUDA source compiles with NVRTC (ks_main, ks_merge,
  the launcher's signature, no double arithmetic in float32 kernels);
* the same source, run by the host emulation harness on the recorded arrays
  (ragged tiles of 16, with and without a split of j), equals the NumPy
  reference engine;
* end to end, the gradients (order 1 and 2) computed by the CPU target and by
  the emulated CUDA target equal dense torch autograd on the broadcast
  (M, N, D) tensor, and the kernels launched are exactly the collected ones;
* the double backward launches no kernel on an all-zero cotangent, and one
  kernel has one KernelSpec (equal and equally hashed) whatever the sizes.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from unittest import mock

import numpy as np
import pytest

from kernelsolve import LazyTensor
from kernelsolve.engine import dispatch, ir
from kernelsolve.engine.backends import cpu, cuda, emulation, reference
from kernelsolve.engine.codegen.cuda import cuda_param_list, render_cuda
from kernelsolve.engine.codegen.spec import KernelSpec
from kernelsolve.engine.reductions import INDEX
from kernelsolve.engine.request import ReductionOptions, ReductionRequest

torch = pytest.importorskip("torch", reason="torch not installed: gradients come from torch")

needs_compiler = pytest.mark.skipif(
    cpu.find_compiler() is None, reason="no C++ compiler: the emulation builds the CUDA source"
)
needs_nvrtc = pytest.mark.skipif(
    cuda.nvrtc_available() is None,
    reason="no NVRTC/nvcc: CUDA sources are compiled in CI where cuda-python is installed",
)

M, N = 37, 45  # ragged against blocks of 16 (and against each other)
MB, NB = 19, 23  # sizes of the batched cases
KMIN = 3
BLOCK = 16

# ----------------------------------------------------------------------------
# Data and cases
# ----------------------------------------------------------------------------


def _i(a):
    return a[..., :, None, :]


def _j(a):
    return a[..., None, :, :]


def _p(a):
    return a[..., None, None, :]


def Li(a):
    return LazyTensor(_i(a))


def Lj(a):
    return LazyTensor(_j(a))


def Lp(a):
    return LazyTensor(_p(a))


def make_data(dtype: str, batch: bool, seed: int) -> dict[str, np.ndarray]:
    """Random float64 arrays: x, c1, c3 (i-side), y, b1, b3 (j-side, b > 0),
    parameters s (> 0), p3, A (2x3), S (3x3 positive definite)."""
    rng = np.random.default_rng(seed)
    m, n = (MB, NB) if batch else (M, N)
    bi, bj, bp = ((2, 1), (1, 3), (2, 1)) if batch else ((), (), ())
    B = rng.standard_normal((3, 3))
    return {
        "x": rng.standard_normal(bi + (m, 3)),
        "c1": rng.uniform(0.5, 2.0, bi + (m, 1)),
        "c3": rng.uniform(0.5, 2.0, bi + (m, 3)),
        "y": rng.standard_normal(bj + (n, 3)),
        "b1": rng.uniform(0.5, 2.0, bj + (n, 1)),
        "b3": rng.uniform(0.5, 2.0, bj + (n, 3)),
        "s": rng.uniform(0.5, 1.5, bp + (1,)),
        "p3": rng.uniform(-1.5, 1.5, (3,)),
        "A": rng.standard_normal((6,)),
        "S": (B @ B.T + np.eye(3)).reshape(9),
    }


# Each case: a LazyTensor computation and the same computation on dense
# broadcast torch tensors (batch + (M, N, D)). ``t`` maps names to tensors.


def _kv(t):
    K = (-(Li(t["x"]).sqdist(Lj(t["y"])) * Lp(t["s"]))).exp()
    return K @ t["b3"]


def _kv_dense(t):
    K = torch.exp(-((_i(t["x"]) - _j(t["y"])) ** 2).sum(-1) * _p(t["s"])[..., 0])
    return K @ t["b3"]


def _kv_i(t):
    K = (-(Li(t["x"]).sqdist(Lj(t["y"])) * Lp(t["s"]))).exp()
    F = K * Li(t["c1"])
    return F.sum(F.nbatchdims)


def _kv_i_dense(t):
    K = torch.exp(-((_i(t["x"]) - _j(t["y"])) ** 2).sum(-1, keepdim=True) * _p(t["s"]))
    return (K * _i(t["c1"])).sum(-3)


def _kv_acc(t):
    K = (-(Li(t["x"]).sqdist(Lj(t["y"])) * Lp(t["s"]))).exp()
    F = K * Lj(t["b3"])
    return F.sum(F.nbatchdims + 1, dtype_acc="float64")


def _nsq(t):
    return -(Li(t["x"]).sqdist(Lj(t["y"])) * Lp(t["s"]))


def _nsq_dense(t):
    return -((_i(t["x"]) - _j(t["y"])) ** 2).sum(-1, keepdim=True) * _p(t["s"])


def _lse(t):
    F = _nsq(t)
    return F.logsumexp(F.nbatchdims + 1)


def _lse_dense(t):
    return torch.logsumexp(_nsq_dense(t), dim=-2)


def _lse_i(t):
    F = _nsq(t)
    return F.logsumexp(F.nbatchdims)


def _lse_i_dense(t):
    return torch.logsumexp(_nsq_dense(t), dim=-3)


def _lsew(t):
    F = _nsq(t)
    return F.logsumexp(F.nbatchdims + 1, weight=Lj(t["b3"]))


def _lsew_dense(t):
    return torch.log((torch.exp(_nsq_dense(t)) * _j(t["b3"])).sum(-2))


def _ssw(t):
    F = _nsq(t)
    return F.sumsoftmaxweight(Lj(t["b3"]), axis=F.nbatchdims + 1)


def _ssw_dense(t):
    return (torch.softmax(_nsq_dense(t), dim=-2) * _j(t["b3"])).sum(-2)


def _ssw_i(t):
    F = _nsq(t)
    return F.sumsoftmaxweight(Li(t["c3"]), axis=F.nbatchdims)


def _ssw_i_dense(t):
    return (torch.softmax(_nsq_dense(t), dim=-3) * _i(t["c3"])).sum(-3)


def _min(t):
    F = Li(t["x"]).sqdist(Lj(t["y"])) * Lp(t["s"])
    return F.min(F.nbatchdims + 1)


def _min_dense(t):
    return (-_nsq_dense(t)).min(-2).values


def _min_i(t):
    F = Li(t["x"]).sqdist(Lj(t["y"])) * Lp(t["s"])
    return F.min(F.nbatchdims)


def _min_i_dense(t):
    return (-_nsq_dense(t)).min(-3).values


def _kmin(t):
    F = (Li(t["x"]) - Lj(t["y"])) * Lp(t["p3"])
    return F.Kmin(KMIN, dim=F.nbatchdims + 1)  # (M, K, 3)


def _kmin_dense(t):
    F = (_i(t["x"]) - _j(t["y"])) * _p(t["p3"])
    return torch.sort(F, dim=-2).values[..., :KMIN, :]


def _kmin_i(t):
    F = Li(t["x"]).sqdist(Lj(t["y"]))
    return F.Kmin(KMIN, dim=F.nbatchdims)  # (N, K)


def _kmin_i_dense(t):
    F = ((_i(t["x"]) - _j(t["y"])) ** 2).sum(-1)  # (M, N)
    return torch.sort(F, dim=-2).values[..., :KMIN, :].transpose(-1, -2)


def _mix_lazy(t):
    d = Li(t["x"]) - Lj(t["y"])
    q = d.weightedsqnorm(Lp(t["S"]))  # 1
    u = (q + 1.0).sqrt()
    a = d.elem(0).atan2(d.elem(1) + 2.0)
    c = d.elem(2).clamp(-0.5, 0.5)
    nrm = d.normalize() * Lp(t["p3"])  # 3
    tp = Lp(t["A"]).matvecmult(d).tensorprod(d)  # 2 x 3 = 6
    w = d.elem(0).ifelse(tp.elem(1), q * 0.25)
    e = (-q).exp() * Lj(t["b1"])
    return u.concat(a).concat(c).concat(nrm).concat(tp).concat(w).concat(e)  # 14


def _mix_dense_formula(t):
    d = _i(t["x"]) - _j(t["y"])
    S = t["S"].reshape(3, 3)
    q = torch.einsum("...k,kl,...l->...", d, S, d)[..., None]
    u = torch.sqrt(q + 1.0)
    a = torch.atan2(d[..., 0:1], d[..., 1:2] + 2.0)
    c = torch.clamp(d[..., 2:3], -0.5, 0.5)
    nrm = d / torch.linalg.vector_norm(d, dim=-1, keepdim=True) * _p(t["p3"])
    Ad = (t["A"].reshape(2, 3) * d[..., None, :]).sum(-1)
    tp = (Ad[..., :, None] * d[..., None, :]).reshape(d.shape[:-1] + (6,))
    w = torch.where(d[..., 0:1] >= 0, tp[..., 1:2], q * 0.25)
    e = torch.exp(-q) * _j(t["b1"])
    return torch.cat([u, a, c, nrm, tp, w, e], -1)


def _mix(t):
    F = _mix_lazy(t)
    return F.sum(F.nbatchdims + 1)


def _mix_dense(t):
    return _mix_dense_formula(t).sum(-2)


def _mix_i(t):
    F = _mix_lazy(t)
    return F.sum(F.nbatchdims)


def _mix_i_dense(t):
    return _mix_dense_formula(t).sum(-3)


@dataclass(frozen=True)
class GradCase:
    name: str
    lazy: Callable
    dense: Callable
    wrt: tuple[str, ...]
    dtype: str = "float64"
    order: int = 2  # highest order differentiated
    batch: bool = False

    @property
    def id(self) -> str:
        return f"{self.name}-{self.dtype[-2:]}" + ("-batch" if self.batch else "")


XYS = ("x", "y", "s")
CASES = [
    GradCase("kv", _kv, _kv_dense, ("x", "y", "b3", "s"), "float64"),
    GradCase("kv", _kv, _kv_dense, ("x", "y", "b3", "s"), "float32"),
    GradCase("kv", _kv, _kv_dense, ("x", "y", "b3", "s"), "float64", batch=True),
    GradCase("kv_acc64", _kv_acc, _kv_dense, ("x", "y", "b3", "s"), "float32"),
    GradCase("kv_i", _kv_i, _kv_i_dense, ("x", "y", "c1", "s"), "float32"),
    GradCase("lse", _lse, _lse_dense, XYS, "float64"),
    GradCase("lse", _lse, _lse_dense, XYS, "float32", batch=True),
    GradCase("lse_i", _lse_i, _lse_i_dense, XYS, "float32", order=1),
    GradCase("lsew", _lsew, _lsew_dense, ("x", "y", "b3", "s"), "float64"),
    GradCase("ssw", _ssw, _ssw_dense, ("x", "y", "b3", "s"), "float64"),
    GradCase("ssw_i", _ssw_i, _ssw_i_dense, ("x", "y", "c3", "s"), "float32", order=1),
    GradCase("min", _min, _min_dense, XYS, "float64"),
    GradCase("min_i", _min_i, _min_i_dense, XYS, "float32", order=1),
    GradCase("kmin", _kmin, _kmin_dense, ("x", "y", "p3"), "float64"),
    GradCase("kmin_i", _kmin_i, _kmin_i_dense, ("x", "y"), "float32", order=1),
    GradCase("mix", _mix, _mix_dense, ("x", "y", "b1", "p3", "A", "S"), "float64"),
    GradCase("mix_i", _mix_i, _mix_i_dense, ("x", "y", "p3", "A"), "float32", order=1),
]
CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASES), "duplicate case ids"


def tensors(c: GradCase, dtype: str | None = None) -> dict:
    """The case's data as torch tensors (``wrt`` require grad)."""
    dt = getattr(torch, dtype or c.dtype)
    data = make_data(c.dtype, c.batch, seed=CASES.index(c))
    out = {}
    for k, a in data.items():
        a = torch.tensor(a.astype(c.dtype), dtype=dt)  # float32 rounding kept in float64
        out[k] = a.requires_grad_(k in c.wrt)
    return out


def cotangents(c: GradCase, out_shape, wrt_shapes, dtype) -> tuple:
    rng = np.random.default_rng(1000 + CASES.index(c))
    G = torch.tensor(rng.standard_normal(tuple(out_shape)).astype(c.dtype), dtype=dtype)
    H = [
        torch.tensor(rng.standard_normal(tuple(s)).astype(c.dtype), dtype=dtype)
        for s in wrt_shapes
    ]
    return G, H


def gradients(c: GradCase, fn: Callable, t: dict, order: int, phase=None) -> list:
    """Order 1: d<G, out>/d wrt; order 2: d<H, grad_1>/d wrt (Hessian-vector
    products). ``phase(label)`` is told which order runs."""
    phase = phase or (lambda label: None)
    wrt = [t[k] for k in c.wrt]
    out = fn(t)
    dtype = wrt[0].dtype
    G, H = cotangents(c, out.shape, [w.shape for w in wrt], dtype)
    phase(1)
    g1 = torch.autograd.grad(out, wrt, G, create_graph=order > 1)
    if order == 1:
        return [g.detach() for g in g1]
    phase(2)
    h = sum((g * v).sum() for g, v in zip(g1, H))
    g2 = torch.autograd.grad(h, wrt, allow_unused=True)
    return [torch.zeros_like(w) if g is None else g.detach() for g, w in zip(g2, wrt)]


# ----------------------------------------------------------------------------
# Recording the engine calls and turning them into specs
# ----------------------------------------------------------------------------


@dataclass
class Call:
    """One recorded ``dispatch.reduce`` call."""

    case: str
    order: int  # 0: forward, 1, 2: inside the order-k backward
    formula: ir.Node
    reduction: str
    cats: tuple
    axis: int
    weight: ir.Node | None
    K: int | None
    acc_dtype: str | None
    leaves: list  # NumPy copies; Python numbers stay as they are
    first: bool = False  # the first call of the case (the user's forward reduction)


def _copy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().numpy().copy()
    return x


def record(c: GradCase, order: int) -> list[Call]:
    """Run the case's gradients (reference engine) and record every engine call."""
    calls: list[Call] = []
    state = {"order": 0}
    original = dispatch.reduce

    def recorder(request):
        calls.append(
            Call(
                c.id,
                state["order"],
                request.formula,
                request.reduction,
                tuple(request.cats),
                request.axis,
                request.weight,
                request.K,
                request.options.acc_dtype,
                [_copy(x) for x in request.arguments],
                first=not calls,
            )
        )
        # nothing compiled while collecting
        return original(request._replace(options=request.options._replace(target="reference")))

    def phase(k):
        state["order"] = k

    with mock.patch.object(dispatch, "reduce", recorder):
        gradients(c, c.lazy, tensors(c), order, phase)
    return calls


@dataclass
class GradSpec:
    """A deduplicated kernel with the arrays of its first recorded call, laid
    out as ``dispatch`` lays them out for a compiled target."""

    id: str
    call: Call
    plan: object  # dispatch.Plan
    leaves: list = field(default_factory=list)

    @property
    def spec(self) -> KernelSpec:
        return self.plan.spec

    @property
    def order(self) -> int:
        return self.call.order


def plan_of(call: Call):
    """``dispatch._make_plan`` for the host target (whose KernelSpec is the
    CUDA target's too), whether or not this machine has a compiler."""
    request = ReductionRequest(
        call.formula,
        call.reduction,
        tuple(call.leaves),
        call.cats,
        call.axis,
        call.weight,
        call.K,
        ReductionOptions("cpu", call.acc_dtype),
    )
    with mock.patch.object(dispatch, "_host_compiler_available", return_value=True):
        return dispatch._make_plan(request, "cpu")


def spec_key(spec: KernelSpec) -> tuple:
    """What makes two kernels the same, by value (the reduction by name and K)."""
    return (
        spec.formula,
        spec.weight,
        spec.reduction.name,
        spec.K,
        spec.dtype,
        spec.acc_dtype,
        spec.var_cats,
        spec.var_dims,
    )


def host_leaves(plan, leaves) -> list[np.ndarray]:
    """As ``dispatch.execute``: numbers become 1-D arrays, batch dims padded."""
    out = []
    for x, shape in zip(leaves, plan.shapes):
        if not isinstance(x, np.ndarray):
            x = np.asarray(x, dtype=plan.kind.dtype).reshape(-1)
        out.append(np.ascontiguousarray(x.reshape(shape)))
    return out


def _collect():
    calls, errors = {}, {}
    for c in CASES:
        try:
            calls[c.id] = record(c, c.order)
        except Exception as e:  # reported by test_every_case_records
            errors[c.id] = f"{type(e).__name__}: {e}"
    specs: dict[tuple, GradSpec] = {}
    every: dict[str, dict] = {}  # case id -> every spec its calls use (forward included)
    for cid, cs in calls.items():
        every[cid] = {}
        n = 0
        for call in cs:
            plan = plan_of(call)
            key = spec_key(plan.spec)
            every[cid].setdefault(key, plan.spec)
            if call.first or key in specs:
                continue  # the user's forward reduction is the forward matrix's business
            n += 1
            sid = f"{cid}-o{call.order}-{n}"
            specs[key] = GradSpec(sid, call, plan, host_leaves(plan, call.leaves))
    return calls, errors, list(specs.values()), every


CALLS, ERRORS, SPECS, CASE_SPECS = _collect()
SPEC_PARAMS = [pytest.param(g, id=g.id) for g in SPECS]


# ----------------------------------------------------------------------------
# The collection
# ----------------------------------------------------------------------------


def test_every_case_records():
    """Every case's forward and backward (to its order) ran on the reference
    engine while recording."""
    assert not ERRORS, ERRORS
    assert set(CALLS) == set(CASE_IDS)


def test_collection_is_representative():
    """At least 20 distinct gradient kernels: orders 1 and 2, float32 and
    float64, recorded over i and over j, batched, the row-wise kernels of
    min / Kmin (no j-variable), ragged sizes."""
    grads = [g for g in SPECS if g.order >= 1]
    assert len(grads) >= 20, len(grads)
    assert {g.order for g in grads} == {1, 2}
    assert {g.spec.dtype for g in grads} == {"float32", "float64"}
    assert {g.call.axis for g in grads} == {0, 1}
    assert {g.spec.dtype for g in grads if g.order == 2} == {"float32", "float64"}
    assert any(g.plan.batch for g in grads)
    assert any(g.spec.dtype == "float32" and g.spec.acc_dtype == "float64" for g in grads)
    assert all(g.spec.reduction.name == "sum" for g in grads)
    for name in ("min", "min_i", "kmin", "kmin_i"):
        rows = [g for g in SPECS if g.call.case.startswith(name + "-")]
        assert rows, name
        # the selected pairs: j-variables gathered and turned into i-variables
        assert all(ir.J not in g.spec.var_cats for g in rows), name
    assert any(g.plan.M % BLOCK and g.plan.N % BLOCK for g in SPECS)
    assert any(g.plan.N == 1 for g in SPECS)


# ----------------------------------------------------------------------------
# (a) NVRTC
# ----------------------------------------------------------------------------

TRIG = {"sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "sinxdivx"}
F64_INSN = re.compile(r"\.f64\s")


@pytest.fixture(scope="module")
def compiled():
    return {}


def _ptx(compiled: dict, g: GradSpec) -> tuple[str, str]:
    if g.id not in compiled:
        src = render_cuda(g.spec)
        compiled[g.id] = (src, cuda.nvrtc_compile(src))
    return compiled[g.id]


def _ops(spec: KernelSpec) -> set[str]:
    roots = [spec.formula] + ([spec.weight] if spec.weight is not None else [])
    return {n.op for r in roots for n in ir.topological_order(r)}


@needs_nvrtc
@pytest.mark.parametrize("g", SPEC_PARAMS)
def test_nvrtc_compiles(compiled, g):
    """The gradient kernel's CUDA source compiles to PTX with both entry
    points, and ks_main has the launcher's parameter list with one pointer
    of the dtype per argument."""
    src, ptx = _ptx(compiled, g)
    assert ".entry ks_main" in ptx and ".entry ks_merge" in ptx
    m = re.search(r'extern "C" __global__ void ks_main\(([^)]*)\)', src)
    assert m, "no ks_main in the source"
    sig = m.group(1)
    assert sig == ", ".join(f"{t} {n}" for t, n in cuda_param_list(g.spec))
    T = "double" if g.spec.dtype == "float64" else "float"
    assert re.findall(r"const (\w+)\* arg\d+", sig) == [T] * len(g.spec.var_cats)


@needs_nvrtc
@pytest.mark.parametrize(
    "g",
    [
        pytest.param(g, id=g.id)
        for g in SPECS
        if g.spec.dtype == "float32" and g.spec.acc_dtype == "float32" and not _ops(g.spec) & TRIG
    ],
)
def test_float32_gradient_ptx_has_no_double_arithmetic(compiled, g):
    """A float32 gradient kernel (no trig function, float accumulator)
    computes in single precision only: no .f64 instruction in the PTX."""
    _, ptx = _ptx(compiled, g)
    hits = [line.strip() for line in ptx.splitlines() if F64_INSN.search(line)]
    assert not hits, hits[:5]


# ----------------------------------------------------------------------------
# (b) Emulation of the CUDA source against the reference engine
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _prebuild(request):
    """Build, in parallel, the emulation libraries and host kernels that the
    collected tests of this module need (cached on disk for later runs)."""
    if cpu.find_compiler() is None:
        return
    emu, host = set(), set()
    for item in request.session.items:
        if item.module is not request.module or not hasattr(item, "callspec"):
            continue
        params, name = item.callspec.params, item.originalname
        if name in _EMULATE_SPEC:
            emu.add(params["g"].spec)
        elif name in _RUN_CASE and params["c"].id in CASE_SPECS:
            (emu if "emulated" in name else host).update(CASE_SPECS[params["c"].id].values())
    jobs = [(emulation.library, s) for s in emu] + [(cpu.kernel, s) for s in host]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda job: job[0](job[1]), jobs))


_EMULATE_SPEC = {"test_emulation_matches_reference", "test_emulation_default_launch"}
_RUN_CASE = {
    "test_cpu_gradient_matches_dense_torch",
    "test_emulated_cuda_gradient_matches_dense_torch",
}  # tests whose kernels the module fixture builds in parallel


def _scaled_close(got, ref, dtype: str, what: str, tight: bool = True) -> None:
    """Same shape, same NaN/inf pattern, close relative to the array's scale."""
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{what} NaN")
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref), err_msg=f"{what} inf")
    fin = np.isfinite(ref)
    scale = float(np.abs(ref[fin]).max(initial=0.0)) or 1.0
    if dtype == "float64":
        tol = dict(rtol=1e-11 if tight else 1e-10, atol=1e-12 * scale)
    else:
        # end to end, parameter gradients sum M * N terms with cancellation
        tol = dict(rtol=1e-4, atol=1e-5 * scale) if tight else dict(rtol=5e-4, atol=1e-4 * scale)
    np.testing.assert_allclose(got[fin], ref[fin], err_msg=what, **tol)


def _reference(g: GradSpec) -> list[np.ndarray]:
    p = g.plan
    return reference.reduce(
        p.formula,
        p.red,
        g.leaves,
        p.cats,
        p.batch,
        p.M,
        p.N,
        weight=p.weight,
        K=p.K,
        dtype=np.dtype(p.kind.dtype),
        acc_dtype=p.acc_dtype,
    )


@needs_compiler
@pytest.mark.parametrize("nsplit", [1, 3])
@pytest.mark.parametrize("g", SPEC_PARAMS)
def test_emulation_matches_reference(g, nsplit):
    """The gradient kernel's CUDA source, emulated on the recorded arrays with
    blocks of 16 (ragged last row block and j-tile) and 1 or 3 splits of j
    (+ ks_merge): the reference engine's outputs."""
    p = g.plan
    launch = cuda.plan_launch(g.spec, int(np.prod(p.batch)), p.M, p.N, block=BLOCK, nsplit=nsplit)
    assert launch.nsplit == min(nsplit, p.N)
    got = emulation.run(g.spec, g.leaves, p.batch, p.M, p.N, block=BLOCK, nsplit=nsplit)
    ref = _reference(g)
    outs = g.spec.outputs()
    assert len(got) == len(ref) == len(outs)
    for k, (a, r, o) in enumerate(zip(got, ref, outs)):
        assert a.shape == p.batch + (p.M, o.size)
        assert np.isfinite(r).all(), f"{g.id}: the recorded data gives non-finite values"
        if o.kind == INDEX:
            np.testing.assert_array_equal(a, r, err_msg=f"{g.id} output {k}")
        else:
            assert a.dtype == np.dtype(g.spec.dtype)
            _scaled_close(a, r, g.spec.dtype, f"{g.id} output {k} nsplit={nsplit}")


_FIRST_ORDER2 = {}
for _g in SPECS:
    if _g.order == 2:
        _FIRST_ORDER2.setdefault(_g.call.case, _g)


@needs_compiler
@pytest.mark.parametrize(
    "g",
    [p for p in SPEC_PARAMS if p.values[0] is _FIRST_ORDER2.get(p.values[0].call.case)],
)
def test_emulation_default_launch(g):
    """The default launch plan (one block of up to 256 threads, the split
    chosen by plan_launch) on an order-2 kernel of each case: the
    reference's outputs."""
    p = g.plan
    got = emulation.run(g.spec, g.leaves, p.batch, p.M, p.N)
    for k, (a, r) in enumerate(zip(got, _reference(g))):
        _scaled_close(a, r, g.spec.dtype, f"{g.id} output {k}")


# ----------------------------------------------------------------------------
# End to end: gradients against dense torch autograd
# ----------------------------------------------------------------------------

ORDER_PARAMS = [
    pytest.param(c, k, id=f"{c.id}-order{k}") for c in CASES for k in range(1, c.order + 1)
]


def _check_against_dense(c: GradCase, order: int, got: list) -> None:
    t64 = tensors(c, "float64")  # the same (float32-rounded) values, in float64
    want = gradients(c, c.dense, t64, order)
    for name, g, w in zip(c.wrt, got, want):
        assert g.dtype == getattr(torch, c.dtype), name
        _scaled_close(g.numpy(), w.numpy(), c.dtype, f"{c.id} order {order} d/d{name}", False)


@needs_compiler
@pytest.mark.parametrize("c,order", ORDER_PARAMS)
def test_cpu_gradient_matches_dense_torch(c, order):
    """Gradients (order 1) and Hessian-vector products (order 2) through the
    CPU target: dense torch autograd on the broadcast (M, N, D) tensor."""
    got = gradients(c, c.lazy, tensors(c), order)
    _check_against_dense(c, order, got)


def _emulated_execute(plan, leaves, launched: list):
    """``dispatch.execute`` with the CUDA source emulated on the host
    (blocks of 16, j split in 2) in place of the CPU kernel."""
    assert plan.target == "cpu", plan.target
    launched.append(spec_key(plan.spec))
    host = []
    for x in leaves:
        host.append(x.detach().numpy() if isinstance(x, torch.Tensor) else x)
    host = host_leaves(plan, host)
    outs = emulation.run(plan.spec, host, plan.batch, plan.M, plan.N, block=BLOCK, nsplit=2)
    outs = [torch.from_numpy(o) for o in outs]
    return plan.red.present(outs, plan.formula.dim, plan.K)


@needs_compiler
@pytest.mark.parametrize("c,order", ORDER_PARAMS)
def test_emulated_cuda_gradient_matches_dense_torch(c, order):
    """Every kernel of the forward and backward run as the emulated CUDA
    source (ragged blocks of 16, j split in 2): the gradients equal dense
    torch autograd. The kernels launched are the specs collected for the
    case (so the collection builds exactly what dispatch builds)."""
    launched = []
    execute = functools.partial(_emulated_execute, launched=launched)
    with mock.patch.object(dispatch, "execute", execute):
        got = gradients(c, c.lazy, tensors(c), order)
    _check_against_dense(c, order, got)
    want = [spec_key(plan_of(call).spec) for call in CALLS[c.id] if call.order <= order]
    assert launched == want


# ----------------------------------------------------------------------------
# Work done by the double backward
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("c", [pytest.param(c, id=c.id) for c in CASES if c.order == 2])
def test_double_backward_runs_no_kernel_on_a_zero_cotangent(c):
    """The order-2 backward launches no reduction whose cotangent input is
    identically zero (such a kernel only computes zeros: wasted work).
    The data and cotangents are random, so no legitimate input is 0."""
    wasted = []
    for call in CALLS[c.id]:
        if call.order != 2:
            continue
        for k, a in enumerate(call.leaves):
            if isinstance(a, np.ndarray) and a.size > 1 and not a.any():
                wasted.append((call.reduction, call.cats, call.axis, k))
    assert not wasted, f"kernels run on an all-zero argument: {wasted}"


# ----------------------------------------------------------------------------
# Kernel identity
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reduction,K",
    [("sum", None), ("min_argmin", None), ("logsumexp", None)]
    + [("kmin", KMIN), ("argkmin", KMIN), ("kmin_argkmin", KMIN)],
)
def test_one_kernel_has_one_spec(reduction, K):
    """Two calls of one kernel on different sizes get equal, equally hashed
    KernelSpecs. The kernel memos (host kernels, emulation libraries, CUDA
    modules) are keyed by the spec: unequal specs of one kernel re-render and
    reload it, and add a memo entry per new shape (the Kmin gradient runs a
    Kmin_argKmin kernel)."""
    f = ir.make("sqdist", ir.var(0, ir.I, 3), ir.var(1, ir.J, 3))
    specs = []
    for m in (5, 7):
        leaves = [np.zeros((m, 3)), np.zeros((6, 3))]
        call = Call("", 0, f, reduction, (ir.I, ir.J), 1, None, K, None, leaves)
        specs.append(plan_of(call).spec)
    a, b = specs
    assert spec_key(a) == spec_key(b)
    assert a == b
    assert hash(a) == hash(b)
