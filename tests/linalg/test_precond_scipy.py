"""The preconditioner outside kernelsolve's own solvers (kernelsolve/linalg/precond.py).

* :func:`precond.rpcholesky` on a LazyTensor, as ``K.solve`` takes it, gives the
  preconditioner it builds from the :class:`KernelOperator`;
* :meth:`Preconditioner.aslinearoperator` as the ``M`` of ``scipy.sparse.linalg.cg``
  cuts its iterations on a Gaussian kernel and applies the same matrix;
* preconditioners and the :class:`SolveInfo` of a solve pickle and still work.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse.linalg as sla

from kernelsolve import Vi, Vj
from kernelsolve.linalg import precond
from kernelsolve.linalg.operator import KernelOperator


def points(n, seed=0):
    return np.random.default_rng(seed).random((n, 2))


def gauss(x, scale=10.0):
    return (-Vi(x).sqdist(Vj(x)) * scale).exp()


def test_rpcholesky_takes_a_lazytensor():
    x = points(300)
    R = np.random.default_rng(1).standard_normal((300, 2))
    from_lazy = precond.rpcholesky(gauss(x), alpha=1e-3, rank=40, seed=2)
    from_op = precond.rpcholesky(KernelOperator.from_lazy(gauss(x)), alpha=1e-3, rank=40, seed=2)
    assert from_lazy.rank == 40
    np.testing.assert_allclose(from_lazy(R), from_op(R), rtol=1e-12)


def test_rpcholesky_refuses_other_objects():
    with pytest.raises(TypeError, match="KernelOperator or a symmetric kernel LazyTensor"):
        precond.rpcholesky(np.eye(3), alpha=1.0)


def test_rpcholesky_lazytensor_must_be_symmetric():
    x, y = points(30), points(30, seed=1)
    with pytest.raises(ValueError, match="not symmetric"):
        precond.rpcholesky((-Vi(x).sqdist(Vj(y))).exp(), alpha=1.0)


def _scipy_cg(A, b, M=None):
    count = [0]

    def cb(_):
        count[0] += 1

    a, status = sla.cg(A, b, rtol=1e-8, maxiter=3000, M=M, callback=cb)
    return a, status, count[0]


def test_aslinearoperator_in_scipy_cg():
    """scipy's cg with M = P.aslinearoperator() needs a fraction of the iterations."""
    n, alpha = 1500, 1e-4
    x = points(n, seed=3)
    K = gauss(x)
    A = sla.LinearOperator((n, n), matvec=lambda v: K @ v + alpha * v, dtype=np.float64)
    b = np.random.default_rng(3).standard_normal(n)
    P = precond.rpcholesky(K, alpha)
    M = P.aslinearoperator()
    assert isinstance(M, sla.LinearOperator) and M.shape == (n, n) and M.dtype == np.float64
    a, status, pre = _scipy_cg(A, b, M)
    assert status == 0
    assert np.linalg.norm(A @ a - b) <= 1.01e-8 * np.linalg.norm(b)
    _, _, plain = _scipy_cg(A, b)
    assert pre * 5 < plain


def test_aslinearoperator_applies_the_preconditioner():
    """Vectors and blocks, float32 input computed in float64; Jacobi too."""
    x = points(200, seed=4)
    R = np.random.default_rng(4).standard_normal((200, 3))
    for P in [
        precond.rpcholesky(gauss(x), 1e-2, rank=30),
        precond.jacobi(np.linspace(1.0, 2.0, 200), 0.5),
    ]:
        M = P.aslinearoperator()
        np.testing.assert_allclose(M.matmat(R), P(R), rtol=1e-12)
        np.testing.assert_allclose(M.matvec(R[:, 0]), P(R)[:, 0], rtol=1e-12)
        out = M @ R[:, 1].astype(np.float32)
        assert out.dtype == np.float64
        np.testing.assert_allclose(out, P(R[:, 1:2].astype(np.float32).astype(float))[:, 0])


@pytest.mark.parametrize("kind", ["rpcholesky", "rpcholesky-rank0", "jacobi"])
def test_preconditioner_pickles(kind):
    x = points(150, seed=5)
    R = np.random.default_rng(5).standard_normal((150, 2))
    P = {
        "rpcholesky": lambda: precond.rpcholesky(gauss(x), 1e-2, rank=20),
        "rpcholesky-rank0": lambda: precond.rpcholesky(gauss(x), 1e-2, rank=0),
        "jacobi": lambda: precond.jacobi(np.linspace(1.0, 2.0, 150), 0.5),
    }[kind]()
    before = P(R)  # fills the per-device cache, which is not pickled
    Q = pickle.loads(pickle.dumps(P))
    assert Q.name == P.name and Q.rank == P.rank
    np.testing.assert_array_equal(Q(R), before)
    np.testing.assert_array_equal(Q.aslinearoperator() @ R, before)
