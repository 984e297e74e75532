"""What each process runs in the distributed tests (importable by spawned processes).

Each scenario computes results inside ``sharded()`` and the same results in
one process (outside it, in the same process: every process holds all the
data in replicated mode), and returns what the test asserts on.
"""

from __future__ import annotations

import time

import numpy as np

import kernelsolve.distributed as ksd
from kernelsolve import LazyTensor, Vi, Vj


def _gauss(x, y, scale=4.0):
    return (-Vi(x).sqdist(Vj(y)) * scale).exp()


def reduction_cases(rng, dtype):
    """(name, function of nothing -> result) for a battery of reductions."""
    M, N = 301, 257  # divisible by neither 2 nor 3
    x = rng.random((M, 3)).astype(dtype)
    y = rng.random((N, 3)).astype(dtype)
    b = rng.standard_normal((N, 2)).astype(dtype)
    bi = rng.standard_normal((M, 2)).astype(dtype)
    g = np.round(rng.random((M, 1)) * 4).astype(dtype)  # ties
    h = np.round(rng.random((N, 1)) * 4).astype(dtype)
    xb = rng.random((2, M, 1, 2)).astype(dtype)  # batch dimensions
    yb = rng.random((1, 1, N, 2)).astype(dtype)
    d = LazyTensor(g[:, None, :]) - LazyTensor(h[None, :, :])
    hn = h.copy()
    hn[[3, 200]] = np.nan  # NaN columns: min/argmin propagate the first, Kmin sorts them last
    dn = LazyTensor(g[:, None, :]) - LazyTensor(hn[None, :, :])
    return [
        ("K @ b", lambda: _gauss(x, y) @ b),
        ("sum over i", lambda: (_gauss(x, y) * Vi(bi)).sum(0)),
        ("logsumexp", lambda: (-Vi(x).sqdist(Vj(y)) * 3).logsumexp(1)),
        ("weighted logsumexp", lambda: (-Vi(x).sqdist(Vj(y))).logsumexp(1, weight=Vj(b).exp())),
        ("sumsoftmaxweight", lambda: (-Vi(x).sqdist(Vj(y))).sumsoftmaxweight(Vj(b), axis=1)),
        ("argKmin ties", lambda: d.abs().argKmin(5, dim=1)),
        ("Kmin_argKmin over i", lambda: d.abs().Kmin_argKmin(3, dim=0)),
        ("min_argmin", lambda: Vi(x).sqdist(Vj(y)).min_argmin(1)),
        ("argmax ties", lambda: d.abs().argmax(1)),
        ("min_argmin NaN", lambda: dn.abs().min_argmin(1)),
        ("Kmin_argKmin NaN", lambda: dn.abs().Kmin_argKmin(4, dim=1)),
        ("batch", lambda: (-LazyTensor(xb).sqdist(LazyTensor(yb))).exp().sum(2)),
        ("block-sparse", lambda: _block_sparse(x, y, b)),
    ]


def _block_sparse(x, y, b):
    """K @ b with pykeops ranges: row blocks straddling any split, some kept."""
    from kernelsolve.keops.numpy.cluster import from_matrix

    ri = np.array([[0, 100], [100, 250], [250, 301]])
    rj = np.array([[0, 60], [60, 130], [130, 257]])
    keep = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=bool)
    K = _gauss(x, y)
    K.ranges = from_matrix(ri, rj, keep)
    return K @ b


def _host(out):
    if isinstance(out, tuple):
        return tuple(_host(o) for o in out)
    return out.detach().numpy() if hasattr(out, "detach") else np.asarray(out)


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return all(_same(u, v) for u, v in zip(a, b))
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def _difference(a, b) -> float:
    """Largest relative difference (0 for equal index outputs)."""
    if isinstance(a, tuple):
        return max(_difference(u, v) for u, v in zip(a, b))
    if a.dtype.kind != "f":
        return 0.0 if np.array_equal(a, b) else np.inf
    scale = np.abs(a[np.isfinite(a)]).max(initial=1.0)
    diff = np.where(np.isnan(a) & np.isnan(b), 0, np.abs(a - b))
    return float(diff.max(initial=0.0) / scale)


def replicated_battery(rank, size, split_axis):
    """Every case inside sharded(min_pairs=0) against one process: bit-for-bit
    equality and the largest relative difference."""
    report = []
    for dtype in (np.float64, np.float32):
        cases = reduction_cases(np.random.default_rng(0), dtype)
        for name, f in cases:
            one = _host(f())
            with ksd.sharded(min_pairs=0, split_axis=split_axis) as ex:
                many = _host(f())
            name = f"{name} {np.dtype(dtype).name}"
            report.append((name, _same(one, many), _difference(one, many), dict(ex.counts)))
    return report


def fewer_points_than_processes(rank, size):
    rng = np.random.default_rng(1)
    x, y = rng.random((2, 2)), rng.random((size - 1, 2))
    out = []
    for f in (lambda: _gauss(x, y).sum(1), lambda: Vi(x).sqdist(Vj(y)).argmin(1)):
        one = _host(f())
        with ksd.sharded(min_pairs=0):
            many = _host(f())
        out.append(_same(one, many))
    return out


def local_rows(rank, size):
    """Each process passes its slice of x (and of b); compare with its rows of
    the one-process result."""
    rng = np.random.default_rng(2)
    n = 203
    x, b = rng.random((n, 2)), rng.standard_normal((n, 1))
    g = np.round(rng.random((n, 1)) * 3)
    lo, hi = ksd.bounds(n, size, rank)
    cases = [
        ("K @ b", lambda x, b, g: _gauss(x, x) @ b),
        ("argKmin", lambda x, b, g: (Vi(g) - Vj(g)).abs().argKmin(4, dim=1)),
        ("logsumexp over i", lambda x, b, g: (-Vi(x).sqdist(Vj(x))).logsumexp(0)),
    ]
    report = []
    for name, f in cases:
        one = f(x, b, g)
        with ksd.sharded(rows="local") as ex:
            mine = f(x[lo:hi], b[lo:hi], g[lo:hi])
        want = one[lo:hi]
        ok = (
            np.allclose(mine, want, rtol=1e-12, atol=1e-12)
            if mine.dtype.kind == "f"
            else (np.array_equal(mine, want))
        )
        report.append((name, bool(ok), ex.counts["ring"]))
    return report


def torch_gradients(rank, size):
    import torch

    torch.manual_seed(0)
    x = torch.rand(400, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(400, 1, dtype=torch.float64)

    def loss():
        K = (-Vi(x).sqdist(Vj(x)) * 5).exp()
        return ((K @ b) ** 2).sum() + (-Vi(x).sqdist(Vj(x))).logsumexp(1).sum()

    value = loss()
    (grad,) = torch.autograd.grad(value, x)
    with ksd.sharded(min_pairs=0):
        value2 = loss()
        (grad2,) = torch.autograd.grad(value2, x)
    return bool(torch.equal(value, value2)), bool(torch.equal(grad, grad2))


def cg_solve(rank, size):
    """K.solve by CG with RPCholesky: the same pivots, iterations, history."""
    rng = np.random.default_rng(3)
    x, b = rng.random((3000, 2)), rng.standard_normal((3000, 1))
    K = _gauss(x, x, 30.0)
    a1, info1 = K.solve(b, alpha=1e-3, solver="cg", rtol=1e-8, return_info=True)
    with ksd.sharded(min_pairs=0):
        a2, info2 = K.solve(b, alpha=1e-3, solver="cg", rtol=1e-8, return_info=True)
    return dict(
        iterations=(info1.iterations, info2.iterations),
        history=info1.cg.history == info2.cg.history,
        rank=(info1.preconditioner.rank, info2.preconditioner.rank),
        max_difference=float(np.abs(a1 - a2).max()),
    )


# --- failures -----------------------------------------------------------------


def one_process_raises(rank, size):
    """Process 1 raises in its own code inside the block; the others are in a
    reduction by then (or reach one): every process must raise, none hang."""
    x = np.random.default_rng(4).random((2000, 2))
    with ksd.sharded(min_pairs=0, timeout=60):
        if rank == 1:
            raise ValueError("bad data on process 1")
        for _ in range(3):
            _gauss(x, x) @ np.ones((2000, 1))
    return "finished"


def mixed_dtypes(rank, size):
    x = np.random.default_rng(5).random((500, 2)).astype(np.float32 if rank else np.float64)
    with ksd.sharded(min_pairs=0, timeout=60):
        return _gauss(x, x).sum(1)


def one_process_skips(rank, size):
    """Process 0 makes one reduction fewer: the others time out, clearly."""
    x = np.random.default_rng(6).random((500, 2))
    with ksd.sharded(min_pairs=0, timeout=3):
        if rank != 0:
            _gauss(x, x).sum(1)
    if rank == 0:
        time.sleep(8)  # alive (its connections open) while the others wait
    return "finished"


def unseeded_probes(rank, size):
    """Debug mode catches arrays that differ across processes."""
    x = np.random.default_rng(7).random((300, 2))
    z = np.random.default_rng(100 + rank).standard_normal((300, 4))  # unseeded probes
    with ksd.sharded(min_pairs=0, timeout=60, debug=True):
        return _gauss(x, x) @ z


def local_rows_gradients(rank, size):
    """rows="local": each process's loss on its rows; the backward's reductions
    over i fold every process's cotangents, so each process gets its rows of
    the gradient of the sum of the losses (as DistributedDataParallel)."""
    import torch

    torch.manual_seed(0)
    x = torch.rand(203, 2, dtype=torch.float64)
    b = torch.randn(203, 1, dtype=torch.float64)

    def loss(x, b):
        return ((_gauss(x, x) @ b) ** 2).sum() + (-Vi(x).sqdist(Vj(x))).logsumexp(1).sum()

    whole = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss(whole, b), whole)
    lo, hi = ksd.bounds(len(x), size, rank)
    mine = x[lo:hi].clone().requires_grad_()
    with ksd.sharded(rows="local"):
        (grad_mine,) = torch.autograd.grad(loss(mine, b[lo:hi]), mine)
    return float((grad_mine - grad[lo:hi]).abs().max() / grad.abs().max())


def cuda_tensors(rank, size):
    """torch CUDA tensors under sharded(): rows split (and j split) equal one
    process; the result stays on the GPU. With gloo the shares cross through
    the host; with NCCL on the GPU."""
    import torch

    torch.manual_seed(0)
    x = torch.rand(3001, 3, device="cuda")
    b = torch.randn(3001, 2, device="cuda")
    out = []
    for f in (lambda: _gauss(x, x) @ b, lambda: Vi(x[:5]).sqdist(Vj(x)).argKmin(4, dim=1)):
        one = f()
        for axis in ("rows", "cols"):
            with ksd.sharded(min_pairs=0, split_axis=axis):
                many = f()
            out.append(
                (many.device.type, bool(torch.equal(one, many) or torch.allclose(one, many)))
            )
    return out


def pruned_knn(rank, size):
    """A nearest-neighbour reduction large enough to prune itself
    (engine/ranges/knn.py): its block-sparse passes split by rows."""
    rng = np.random.default_rng(8)
    x = np.round(rng.random((12_000, 2)) * 60).astype(np.float32)  # ties
    y = np.round(rng.random((10_000, 2)) * 60).astype(np.float32)
    one = Vi(x).sqdist(Vj(y)).argKmin(5, dim=1)
    with ksd.sharded() as ex:
        many = Vi(x).sqdist(Vj(y)).argKmin(5, dim=1)
    return bool(np.array_equal(one, many)), ex.counts["rows"]
