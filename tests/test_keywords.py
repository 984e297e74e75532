"""pykeops' keywords on the reductions and on ``K @ v``: ``sum_scheme``,
``backend``, ``out``, ``device_id``, ``enable_chunks``, ``dtype_acc``,
``logsumexp(other=)``; each checked against dense NumPy / torch."""

import inspect

import numpy as np
import pytest
import torch

from kernelsolve import LazyTensor, ReductionCall, Vi, Vj


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x, y = rng.random((30, 3)), rng.random((40, 3))
    b = rng.standard_normal((40, 2))
    dense = np.exp(-((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))
    return x, y, b, dense


def _K(x, y):
    return (-Vi(x).sqdist(Vj(y))).exp()


@pytest.mark.parametrize("scheme", ["auto", "direct_sum", "block_sum", "kahan_scheme", None])
def test_matmul_takes_the_reduction_keywords(data, scheme):
    x, y, b, dense = data
    K = _K(x, y)
    out = K.__matmul__(b, sum_scheme=scheme, backend="CPU", enable_chunks=False)
    np.testing.assert_allclose(out, dense @ b, rtol=1e-12)
    np.testing.assert_allclose(K.__matmul__(b[:, 0], dtype_acc="float64"), dense @ b[:, 0])


def test_matmul_keeps_the_fast_plan_without_keywords(data):
    """The plain ``K @ v`` still keeps its plan on K (the solvers' hot path)."""
    x, y, b, dense = data
    K = _K(x, y)
    np.testing.assert_allclose(K @ b, dense @ b, rtol=1e-12)
    assert K._mm is not None
    np.testing.assert_allclose(K.__matmul__(b, sum_scheme="kahan_scheme"), dense @ b)
    np.testing.assert_allclose(K @ b, dense @ b, rtol=1e-12)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_out_is_written_and_returned(data, lib):
    x, y, b, dense = data
    if lib == "torch":
        x, y, b = (torch.from_numpy(a) for a in (x, y, b))
        out = torch.empty(30, 2, dtype=torch.float64)
    else:
        out = np.empty((30, 2))
    K = _K(x, y)
    assert K.__matmul__(b, out=out) is out
    np.testing.assert_allclose(np.asarray(out), dense @ np.asarray(b), rtol=1e-12)
    out1 = out[:, 0].clone() if lib == "torch" else np.empty(30)
    assert K.__matmul__(b[:, 0], out=out1) is out1  # 1-D v: out has the 1-D shape
    np.testing.assert_allclose(np.asarray(out1), dense @ np.asarray(b)[:, 0], rtol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        K.__matmul__(b, out=out[:5])


def test_matmul_call_false_gives_a_reduction_call(data):
    x, y, b, dense = data
    rc = _K(x, y).__matmul__(b, call=False)
    assert isinstance(rc, ReductionCall)
    np.testing.assert_allclose(rc(), dense @ b, rtol=1e-12)


def test_device_id_on_host_data(data):
    x, y, b, dense = data
    K = _K(x, y)
    for dev in (-1, None, "cpu"):
        np.testing.assert_allclose(K.__matmul__(b, device_id=dev), dense @ b, rtol=1e-12)
        np.testing.assert_allclose(K.sum(1, device_id=dev)[:, 0], dense.sum(1), rtol=1e-12)
    with pytest.raises(
        ValueError, match="device_id=0 asks for GPU 0, but the data is on the host"
    ):
        K.__matmul__(b, device_id=0)
    with pytest.raises(ValueError, match="device_id='cuda:1'"):
        K.sum(1, device_id="cuda:1")
    with pytest.raises(ValueError, match="device_id='tpu'"):
        K.sum(1, device_id="tpu")
    rc = K.sum(1, call=False)
    with pytest.raises(ValueError, match="on the host"):
        rc(device_id=1)


def test_logsumexp_other_is_the_weight(data):
    x, y, b, dense = data
    f = -Vi(x).sqdist(Vj(y))
    w = np.abs(b) + 0.1
    expected = np.log(np.exp(-((x[:, None] - y[None]) ** 2).sum(-1)) @ w)
    np.testing.assert_allclose(f.logsumexp(1, other=Vj(w)), expected, rtol=1e-12)
    np.testing.assert_allclose(f.logsumexp(dim=1, weight=Vj(w)), expected, rtol=1e-12)
    with pytest.raises(TypeError, match="once"):
        f.logsumexp(1, weight=Vj(w), other=Vj(w))


def test_logsumexp_other_matches_pykeops():
    pk = pytest.importorskip("pykeops.numpy", reason="pykeops: the optional oracle")
    rng = np.random.default_rng(1)
    x, y, w = rng.random((20, 2)), rng.random((25, 2)), rng.random((25, 3)) + 0.1
    ours = (-Vi(x).sqdist(Vj(y))).logsumexp(1, other=Vj(w))
    theirs = (-pk.Vi(x).sqdist(pk.Vj(y))).logsumexp(1, other=pk.Vj(w))
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_sum_scheme_is_validated(data):
    x, y, b, _ = data
    K = _K(x, y)
    with pytest.raises(ValueError, match="sum_scheme='pairwise'"):
        K.sum(1, sum_scheme="pairwise")
    with pytest.raises(ValueError, match="only valid for sum-type"):
        K.min(1, sum_scheme="kahan_scheme")
    with pytest.raises(ValueError, match="only valid for sum-type"):
        K.argKmin(3, 1, sum_scheme="block_sum")
    K.min(1, sum_scheme="direct_sum")  # pykeops' default for min: accepted


def test_accumulator_keywords(data):
    x, y, _, dense = data
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    K = _K(x32, y32)
    for kw in ({"dtype_acc": "float64"}, {"use_double_acc": True}, {"dtype_acc": "float32"}):
        np.testing.assert_allclose(K.sum(1, **kw)[:, 0], dense.sum(1), rtol=1e-5)
    with pytest.raises(ValueError, match="only one"):
        K.sum(1, dtype_acc="float32", use_double_acc=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'sum_schem'"):
        K.sum(1, sum_schem="block_sum")


def test_signature_lists_the_keywords():
    params = inspect.signature(LazyTensor.sum).parameters
    for name in ("sum_scheme", "device_id", "enable_chunks", "out", "backend", "dtype_acc"):
        assert name in params
    assert "other" in inspect.signature(LazyTensor.logsumexp).parameters


def test_torch_matmul_keywords_keep_gradients():
    x = torch.rand(20, 3, dtype=torch.float64, requires_grad=True)
    y, b = torch.rand(25, 3, dtype=torch.float64), torch.rand(25, 2, dtype=torch.float64)
    K = (-LazyTensor(x[:, None]).sqdist(LazyTensor(y[None]))).exp()
    out = K.__matmul__(b, sum_scheme="kahan_scheme", backend="CPU")
    (g,) = torch.autograd.grad(out.sum(), x)
    dense = torch.exp(-((x[:, None] - y[None]) ** 2).sum(-1)) @ b
    (g_ref,) = torch.autograd.grad(dense.sum(), x)
    torch.testing.assert_close(out, dense)
    torch.testing.assert_close(g, g_ref)
