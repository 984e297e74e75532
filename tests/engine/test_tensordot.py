"""pykeops' TensorDot and Kron (engine/ops/tensor.py): values against dense
np.tensordot / np.kron on the compiled CPU target, the reference engine and
the emulated CUDA source; gradients against torch (both operands, with a
permutation, as pykeops' test_TensorDot_with_permute); the JVP rule against
torch.func.jvp of the dense computation; argument errors."""

import numpy as np
import pytest
import torch

from kernelsolve import LazyTensor, Vi, Vj
from kernelsolve.engine import ir
from kernelsolve.engine import reductions as R
from kernelsolve.engine.backends import emulation, reference
from kernelsolve.engine.backends.cpu import find_compiler
from kernelsolve.engine.codegen.spec import KernelSpec
from kernelsolve.engine.ops import tensor

needs_compiler = pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler")

# (dimfa, dimfb, contfa, contfb, perm)
CASES = [
    ((4, 7), (7,), (1,), (0,), None),  # matrix-vector product
    ((2, 3), (3, 2), (1,), (0,), None),  # matrix product
    ((2, 3), (3, 2), (1,), (0,), (1, 0)),  # its transpose
    ((2, 3), (2,), (), (), (2, 0, 1)),  # outer product, permuted
    ((2, 3, 2), (2, 3), (0, 1), (0, 1), None),  # two contracted axes
    ((3, 2), (2, 3), (0, 1), (1, 0), None),  # full contraction: a scalar
    ((2, 1, 3), (3, 1), (2, 1), (0, 1), None),  # size-1 axes
]


def dense_tensordot(a, b, dimfa, dimfb, contfa, contfb, perm):
    """np.tensordot on every (i, j) pair, then pykeops' permutation."""
    A = a.reshape(a.shape[:-1] + tuple(dimfa))
    B = b.reshape(b.shape[:-1] + tuple(dimfb))
    out = []
    for Ai, Bj in zip(A.reshape((-1,) + tuple(dimfa)), B.reshape((-1,) + tuple(dimfb))):
        T = np.tensordot(Ai, Bj, axes=(list(contfa), list(contfb)))
        if perm is not None:
            T = np.transpose(T, np.argsort(perm))
        out.append(T.reshape(-1))
    return np.array(out)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_tensordot_values(case):
    dimfa, dimfb, contfa, contfb, perm = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, int(np.prod(dimfa))))
    y = rng.standard_normal((6, int(np.prod(dimfb))))
    args = (dimfa, dimfb, contfa, contfb) + ((perm,) if perm is not None else ())
    f = Vi(x).keops_tensordot(Vj(y), *args)
    pairs = dense_tensordot(
        np.repeat(x, 6, axis=0), np.tile(y, (5, 1)), dimfa, dimfb, contfa, contfb, perm
    )
    expected = pairs.reshape(5, 6, -1).sum(1)
    assert f.formula.dim == expected.shape[1]
    for backend in ("reference", "CPU"):
        np.testing.assert_allclose(f.sum(1, backend=backend), expected, rtol=1e-12, atol=1e-12)


@needs_compiler
def test_tensordot_in_the_cuda_source():
    """The emulated CUDA kernel (the same C rule) agrees with the reference."""
    dimfa, dimfb, contfa, contfb = (2, 3, 2), (2, 3), (0, 1), (0, 1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 12)).astype(np.float32)
    y = rng.standard_normal((9, 6)).astype(np.float32)
    node = tensor.tensordot(ir.var(0, ir.I, 12), ir.var(1, ir.J, 6), dimfa, dimfb, contfa, contfb)
    spec = KernelSpec(node, None, R.get("sum"), 0, "float32", "float32", (ir.I, ir.J), (12, 6))
    (out,) = emulation.run(spec, [x, y], (), 7, 9, block=32, nsplit=2)
    ref = reference.reduce(node, R.get("sum"), [x, y], (ir.I, ir.J), (), 7, 9)[0]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_tensordot_with_permute_gradients():
    """pykeops' test_TensorDot_with_permute (its axes and permutation, smaller
    sizes: a wide formula takes minutes to compile): values and the gradients
    with respect to both operands, against torch.tensordot."""
    M, N = 5, 6
    x = torch.randn(M, 2, 3, 2, 1, 2, requires_grad=True, dtype=torch.float64)
    y = torch.randn(N, 2, 2, 2, 3, 2, 1, requires_grad=True, dtype=torch.float64)
    dimfa, dimfb = x.shape[1:], y.shape[1:]
    contfa, contfb, perm = [5, 1, 3], [2, 5, 3], [4, 3, 2, 0, 1]
    perm_torch = (0,) + tuple(int(i) + 1 for i in np.argsort(perm))
    dense = torch.tensordot(x, y, dims=(contfa, contfb)).sum(3).permute(perm_torch)
    f = LazyTensor(x.reshape(M, 1, -1)).keops_tensordot(
        LazyTensor(y.reshape(1, N, -1)),
        dimfa,
        dimfb,
        tuple(np.array(contfa) - 1),
        tuple(np.array(contfb) - 1),
        tuple(perm),
    )
    ours = f.sum_reduction(dim=1)
    torch.testing.assert_close(ours.flatten(), dense.flatten())
    e = torch.randn_like(dense)
    for var in (x, y):
        (g,) = torch.autograd.grad(ours, var, e.reshape(M, -1), retain_graph=True)
        (g_ref,) = torch.autograd.grad(dense, var, e, retain_graph=True)
        torch.testing.assert_close(g.flatten(), g_ref.flatten())


@pytest.mark.parametrize("case", CASES, ids=str)
def test_tensordot_jvp_rule(case):
    """The JVP rule (a + ta, b + tb: bilinear) against torch.func.jvp."""
    dimfa, dimfb, contfa, contfb, perm = case
    da, db = int(np.prod(dimfa)), int(np.prod(dimfb))
    a, b = ir.var(0, ir.P, da), ir.var(1, ir.P, db)
    ta, tb = ir.var(2, ir.P, da), ir.var(3, ir.P, db)
    node = tensor.tensordot(a, b, dimfa, dimfb, contfa, contfb, perm)
    rng = np.random.default_rng(2)
    vals = [rng.standard_normal((1, d)) for d in (da, db, da, db)]

    def dense(a, b):
        T = torch.tensordot(a.reshape(dimfa), b.reshape(dimfb), dims=(list(contfa), list(contfb)))
        return (T.permute(tuple(np.argsort(perm))) if perm is not None else T).reshape(-1)

    tv = [torch.from_numpy(v[0]) for v in vals]
    _, expected = torch.func.jvp(dense, (tv[0], tv[1]), (tv[2], tv[3]))
    for tangents, want in (
        ((ta, tb), expected),
        ((ta, None), torch.func.jvp(dense, (tv[0], tv[1]), (tv[2], 0 * tv[3]))[1]),
        ((None, tb), torch.func.jvp(dense, (tv[0], tv[1]), (0 * tv[2], tv[3]))[1]),
    ):
        out = ir.OPS["tensordot"].jvp(node, tangents, a, b)
        got = reference.evaluate(out, vals, np.float64)
        np.testing.assert_allclose(got[0], want.numpy(), rtol=1e-12, atol=1e-12)
    assert ir.OPS["tensordot"].jvp(node, (None, None), a, b) is None


@pytest.mark.parametrize(
    ("dimfa", "dimfb"), [((2, 1, 1, 2), (1, 2, 2, 1)), ((2, 3), (2, 2)), ((4,), (3,))]
)
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_kron_lazytensor(dimfa, dimfb, lib):
    """pykeops' test_kron LazyTensor parts: sum_j kron(x_i, y_j) against np.kron."""
    rng = np.random.default_rng(3)
    x = rng.random((11, int(np.prod(dimfa))))
    y = rng.random((15, int(np.prod(dimfb))))
    expected = np.array(
        [sum(np.kron(xi.reshape(dimfa), yj.reshape(dimfb)).reshape(-1) for yj in y) for xi in x]
    )
    X, Y = (torch.from_numpy(x), torch.from_numpy(y)) if lib == "torch" else (x, y)
    got = LazyTensor(X[:, None, :]).keops_kron(LazyTensor(Y[None, :, :]), dimfa, dimfb).sum(1)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12)


def test_kron_gradients():
    x = torch.rand(4, 6, dtype=torch.float64, requires_grad=True)
    y = torch.rand(5, 4, dtype=torch.float64, requires_grad=True)
    ours = Vi(x).keops_kron(Vj(y), (3, 2), (2, 2)).sum(1)
    dense = torch.stack(
        [sum(torch.kron(xi.reshape(3, 2), yj.reshape(2, 2)).reshape(-1) for yj in y) for xi in x]
    )
    g = torch.rand_like(dense)
    for var in (x, y):
        torch.testing.assert_close(
            torch.autograd.grad(ours, var, g, retain_graph=True)[0],
            torch.autograd.grad(dense, var, g, retain_graph=True)[0],
        )


def test_bad_arguments_are_named():
    x, y = Vi(np.ones((3, 6))), Vj(np.ones((4, 6)))
    with pytest.raises(ValueError, match=r"dimfa=\(2, 2\).*need inner dimensions 4"):
        x.keops_tensordot(y, (2, 2), (2, 3), (0,), (0,))
    with pytest.raises(ValueError, match="equal sizes"):
        x.keops_tensordot(y, (2, 3), (2, 3), (0,), (1,))
    with pytest.raises(ValueError, match="distinct axes"):
        x.keops_tensordot(y, (2, 3), (2, 3), (2,), (0,))
    with pytest.raises(ValueError, match="permutation"):
        x.keops_tensordot(y, (2, 3), (2, 3), (0,), (0,), (0, 0))
    with pytest.raises(TypeError, match="tuple of ints"):
        x.keops_tensordot(y, (2, 3.0), (2, 3), (0,), (0,))
    with pytest.raises(ValueError, match="as many axes"):
        x.keops_kron(y, (2, 3), (6,))
