"""What each process runs in the sharded solve tests (importable by spawned processes).

Each scenario computes a result inside ``sharded()`` and the same in one
process (outside it, in the same process: every process holds all the data)
and returns what the test asserts on, including the shapes of the state each
process holds.
"""

from __future__ import annotations

import numpy as np

import kernelsolve.distributed as ksd
from kernelsolve import Vi, Vj
from kernelsolve.integrations.scipy import aslinearoperator
from kernelsolve.linalg.operator import KernelOperator

from .scenarios import _gauss


def _problem(n: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    return rng.random((n, 2)), rng.standard_normal((n, 2))


def rpcholesky_cg(rank, size, n):
    """K.solve by CG with RPCholesky, in one process and sharded."""
    x, b = _problem(n)
    K = _gauss(x, x, 30.0)
    options = dict(alpha=1e-3, solver="cg", precond="rpcholesky", rtol=1e-8, return_info=True)
    a1, info1 = K.solve(b, **options)
    with ksd.sharded(min_pairs=0):
        a2, info2 = K.solve(b, **options)
    P1, P2 = info1.preconditioner, info2.preconditioner
    return dict(
        pivots=(P1.pivots, P2.pivots),
        rank=(P1.rank, P2.rank),
        residual_trace=(P1.residual_trace, P2.residual_trace),
        top=(P1.top_eigenvalue, P2.top_eigenvalue),
        iterations=(info1.iterations, info2.iterations),
        history=(info1.cg.history, info2.cg.history),
        max_difference=float(np.abs(a1 - a2).max()),
        factor_shape=(P1.apply.F.shape, P2.apply.F.shape),
        rows=(P1.rows, P2.rows),
    )


def preconditioner_outside_its_block(rank, size):
    """A sharded preconditioner applied after its sharded() block has closed."""
    x, b = _problem(1500)
    with ksd.sharded(min_pairs=0):
        _, info = _gauss(x, x, 30.0).solve(
            b, alpha=1e-3, solver="cg", precond="rpcholesky", return_info=True
        )
    return info.preconditioner(b)


def materialized_products(rank, size, n):
    """A dense-backed operator under sharded(): products, diagonal, columns and
    the rows of the block each process holds."""
    x, V = _problem(n, seed=5)
    S = np.array([0, 7, n // 2, n - 1])

    def ops():
        op = KernelOperator.from_lazy(_gauss(x, x, 10.0), materialize=True)
        return op, op @ V, op.diagonal(), op.columns(S), op.columns(S, rows=(3, 40))

    one = ops()
    with ksd.sharded(min_pairs=0):
        many = ops()
        op = many[0]
        held, again = op.block.shape, op @ V
        lo, hi = op.block_rows.lo, op.block_rows.hi
    after = op @ V  # outside the block: the local rows are dropped, the block rebuilt
    same = [bool(np.array_equal(u, v)) for u, v in zip(one[1:], many[1:])]
    return dict(
        same=same,
        again=bool(np.array_equal(again, one[1])),
        held=held,
        rows=(lo, hi),
        after=bool(np.array_equal(after, one[1])),
        after_shape=op.block.shape,
    )


def scipy_adapter(rank, size, n):
    """aslinearoperator with a held block under sharded(): matvec, rmatvec."""
    x, V = _problem(n, seed=6)
    y = x[: n // 2] + 0.1

    def ops():
        A = aslinearoperator((-Vi(y).sqdist(Vj(x)) * 10.0).exp(), materialize=True)
        return A, A @ V, A.rmatmat(np.ones((len(y), 1)))

    one = ops()
    with ksd.sharded(min_pairs=0):
        many = ops()
    return dict(
        product=bool(np.array_equal(one[1], many[1])),
        adjoint=float(np.abs(one[2] - many[2]).max() / np.abs(one[2]).max()),
        held=many[0].block.shape,
    )
