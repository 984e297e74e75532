"""End to end on a GPU: torch CUDA tensors and CuPy arrays through LazyTensor.

Each test that takes the ``device`` fixture runs twice: on ``cuda`` (marked
``gpu``: selected by ``pytest -m gpu``, skipped without a CUDA device) and on
``cpu`` (in the default run), so that the tests' own logic and oracles are
checked everywhere and the GPU run only adds the device. The oracles are
dense torch computations in float64 on the host. Tests without the fixture
are GPU-only (CuPy in and out, streams, mixing host and device arrays).
"""

from __future__ import annotations

import pytest

from kernelsolve import LazyTensor

torch = pytest.importorskip("torch", reason="torch not installed (test extra)")

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]
TOL = {torch.float32: dict(rtol=2e-5, atol=1e-6), torch.float64: dict(rtol=1e-11, atol=1e-12)}


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device (CPU-only torch build or no driver)")
    return torch.device(request.param)


def rand(*shape, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


def gauss(x, y):
    """exp(-|x_i - y_j|^2) for (..., M, D) and (..., N, D) tensors, as a LazyTensor."""
    x_i, y_j = LazyTensor(x[..., :, None, :]), LazyTensor(y[..., None, :, :])
    return (-((x_i - y_j) ** 2).sum(-1)).exp()


def dense_gauss(x, y):
    x, y = x.cpu().double(), y.cpu().double()
    return torch.exp(-((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1))


def assert_close(got, want, dtype, device):
    assert isinstance(got, torch.Tensor) and got.device.type == device.type
    assert got.dtype == dtype
    torch.testing.assert_close(got.cpu().double(), want, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_gaussian_matmul(device, dtype):
    """K @ b: a tensor of the input's device and dtype, equal to dense K @ b."""
    x, y = (
        rand(300, 3, device=device, dtype=dtype),
        rand(500, 3, seed=1, device=device, dtype=dtype),
    )
    b = rand(500, 2, seed=2, device=device, dtype=dtype)
    got = gauss(x, y) @ b
    assert_close(got, dense_gauss(x, y) @ b.cpu().double(), dtype, device)


def test_logsumexp_and_nearest_neighbours(device):
    x, y = rand(200, 3, device=device), rand(400, 3, seed=1, device=device)
    d2 = LazyTensor(x[:, None, :]).sqdist(LazyTensor(y[None, :, :]))
    dense = ((x.cpu()[:, None, :] - y.cpu()[None, :, :]) ** 2).sum(-1)
    lse = (-d2).logsumexp(dim=1)
    assert_close(lse, torch.logsumexp(-dense, dim=1, keepdim=True), torch.float64, device)
    idx = d2.argKmin(5, dim=1)
    assert idx.dtype == torch.int64 and idx.device.type == device.type
    assert torch.equal(idx.cpu(), torch.topk(dense, 5, dim=1, largest=False).indices)
    values, index = d2.min_argmin(dim=0)
    assert torch.equal(index.cpu().ravel(), dense.argmin(dim=0))
    assert_close(values.ravel(), dense.min(dim=0).values, torch.float64, device)


def test_few_rows_many_columns(device):
    """7 rows, 300,000 columns: on a GPU the plan splits j (merge pass)."""
    x, y = rand(7, 2, device=device), rand(300_000, 2, seed=1, device=device)
    b = rand(300_000, 1, seed=2, device=device)
    got = gauss(x, y) @ b
    assert_close(got, dense_gauss(x, y) @ b.cpu(), torch.float64, device)


def test_batch_dimensions(device):
    """(B, M, 1, D) x (B, 1, N, D): one reduction per batch entry."""
    x, y = rand(3, 40, 2, device=device), rand(3, 60, 2, seed=1, device=device)
    b = rand(3, 60, 4, seed=2, device=device)
    got = gauss(x, y) @ b
    assert got.shape == (3, 40, 4)
    assert_close(got, dense_gauss(x, y) @ b.cpu(), torch.float64, device)


def test_gradients_match_dense_autograd(device):
    x = rand(80, 3, device=device).requires_grad_()
    y = rand(120, 3, seed=1, device=device).requires_grad_()
    b = rand(120, 2, seed=2, device=device)
    ((gauss(x, y) @ b) ** 2).sum().backward()
    xd, yd = (t.detach().cpu().requires_grad_() for t in (x, y))
    ((dense_gauss(xd, yd) @ b.cpu()) ** 2).sum().backward()
    assert x.grad.device.type == device.type
    torch.testing.assert_close(x.grad.cpu(), xd.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y.grad.cpu(), yd.grad, rtol=1e-10, atol=1e-12)


def test_float16_in_float16_out(device):
    x, y = rand(64, 3, device=device, dtype=torch.float16), rand(96, 3, seed=1, device=device)
    y = y.half()
    got = gauss(x, y).sum(dim=1)
    assert got.dtype == torch.float16 and got.device.type == device.type
    torch.testing.assert_close(
        got.cpu().double(), dense_gauss(x, y).sum(1, keepdim=True), rtol=2e-3, atol=1e-3
    )


def test_solve(device):
    """(alpha I + K) a = b by PCG on the device, against a dense solve."""
    x = rand(400, 2, device=device)
    b = rand(400, 1, seed=1, device=device)
    K = (-LazyTensor(x[:, None, :]).sqdist(LazyTensor(x[None, :, :])) / 0.1).exp()
    a = K.solve(b, alpha=0.1, rtol=1e-10)
    assert a.device.type == device.type
    dense = torch.exp(-((x.cpu()[:, None] - x.cpu()[None]) ** 2).sum(-1) / 0.1)
    want = torch.linalg.solve(dense + 0.1 * torch.eye(400, dtype=torch.float64), b.cpu())
    torch.testing.assert_close(a.cpu().reshape(want.shape), want, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ GPU only
@pytest.fixture
def cuda_device() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device (CPU-only torch build or no driver)")
    return torch.device("cuda")


@pytest.mark.gpu
def test_cupy_in_cupy_out():
    cupy = pytest.importorskip("cupy", reason="CuPy not installed")
    import numpy as np

    rng = np.random.default_rng(0)
    x, y, b = rng.random((100, 3)), rng.random((150, 3)), rng.random((150, 2))
    xg, yg, bg = (cupy.asarray(a) for a in (x, y, b))
    K = (-LazyTensor(xg[:, None, :]).sqdist(LazyTensor(yg[None, :, :]))).exp()
    got = K @ bg
    assert isinstance(got, cupy.ndarray)
    dense = np.exp(-((x[:, None] - y[None]) ** 2).sum(-1))
    np.testing.assert_allclose(cupy.asnumpy(got), dense @ b, rtol=1e-11)
    idx = LazyTensor(xg[:, None, :]).sqdist(LazyTensor(yg[None, :, :])).argKmin(3, dim=1)
    assert isinstance(idx, cupy.ndarray) and idx.dtype == cupy.int64


@pytest.mark.gpu
def test_runs_on_the_callers_stream(cuda_device):
    """Launched on torch's current stream: right once that stream is synchronised."""
    x, y = rand(2000, 3, device=cuda_device), rand(3000, 3, seed=1, device=cuda_device)
    b = rand(3000, 1, seed=2, device=cuda_device)
    want = dense_gauss(x, y) @ b.cpu()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = gauss(x, y) @ b
    stream.synchronize()
    torch.testing.assert_close(got.cpu(), want, rtol=1e-11, atol=1e-12)


@pytest.mark.gpu
def test_mixing_host_and_device_tensors_is_an_error(cuda_device):
    x, y = rand(10, 3, device=cuda_device), rand(20, 3, seed=1)
    with pytest.raises((TypeError, ValueError), match="(?i)device|cuda|cpu"):
        gauss(x, y).sum(dim=1)
