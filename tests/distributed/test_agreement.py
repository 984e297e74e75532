"""The header check and the shares, in one process (the multi-process
behaviour is in test_sharded.py and test_failures.py)."""

import numpy as np
import pytest

from kernelsolve import Vi, Vj
from kernelsolve.distributed import ShardError, partition
from kernelsolve.distributed.executor import _check, _signature
from kernelsolve.engine import dispatch
from kernelsolve.engine.request import ReductionRequest


def _plan(dtype=np.float64, m=20, n=30):
    rng = np.random.default_rng(0)
    K = (-Vi(rng.random((m, 2)).astype(dtype)).sqdist(Vj(rng.random((n, 2)).astype(dtype)))).exp()
    return dispatch.plan(ReductionRequest(K.formula, "sum", tuple(K.variables), tuple(K.cats)))


def _header(plan, device=0, data=0, local=False):
    return np.array([_signature(plan, local), plan.M, plan.N, device, data], dtype=np.int64)


def test_mixed_devices_are_named():
    plan = _plan()
    with pytest.raises(ShardError, match=r"mixed devices.*process 0: CPU, process 1: GPU"):
        _check([_header(plan), _header(plan, device=1)], 0, False, False, plan)


def test_different_reductions_are_refused():
    a, b = _plan(), _plan(np.float32)
    with pytest.raises(ShardError, match="different reductions"):
        _check([_header(a), _header(b)], 0, False, False, a)
    with pytest.raises(ShardError, match="different reductions"):  # sizes, replicated
        _check([_header(a), _header(_plan(m=21))], 0, False, False, a)


def test_local_rows_may_differ_in_size():
    a, b = _plan(m=20), _plan(m=21)
    _check([_header(a, local=True), _header(b, local=True)], 0, True, False, a)


def test_debug_digests_must_agree():
    plan = _plan()
    _check([_header(plan, data=5), _header(plan, data=7)], 0, False, False, plan)
    with pytest.raises(ShardError, match="manual_seed"):
        _check([_header(plan, data=5), _header(plan, data=7)], 0, False, True, plan)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 100, 101])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shares_cover_the_rows_in_order(n, size):
    shares = [partition.bounds(n, size, r) for r in range(size)]
    assert shares[0][0] == 0 and shares[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(shares, shares[1:]))
    sizes = partition.counts(n, size)
    assert max(sizes) - min(sizes) <= 1 and partition.offsets(sizes) == [s[0] for s in shares]


def test_bad_rank_is_refused():
    with pytest.raises(ValueError, match="rank 3 is not one of 3"):
        partition.bounds(10, 3, 3)


def test_sharded_needs_an_initialised_group():
    import kernelsolve.distributed as ksd

    with pytest.raises(RuntimeError, match="init_process_group"):
        with ksd.sharded():
            pass
    with pytest.raises(ValueError, match="rows must be"):
        with ksd.sharded(rows="mine"):
            pass


def test_restricted_block_sparse_rows_equal_the_whole():
    from kernelsolve.engine import partial
    from kernelsolve.keops.numpy.cluster import from_matrix

    rng = np.random.default_rng(1)
    x, y, b = rng.random((50, 2)), rng.random((40, 2)), rng.random((40, 1))
    K = (-Vi(x).sqdist(Vj(y))).exp() * Vj(b)
    ranges = from_matrix(
        np.array([[0, 20], [20, 50]]), np.array([[0, 25], [25, 40]]), np.array([[1, 0], [1, 1]])
    )
    for axis in (1, 0):
        request = ReductionRequest(
            K.formula, "sum", tuple(K.variables), tuple(K.cats), axis=axis, ranges=ranges
        )
        plan = dispatch.plan(request)
        whole = dispatch.execute(plan, request.arguments, ranges)
        cuts = [0, 7, 20, 33, plan.M]
        pieces = []
        for lo, hi in zip(cuts, cuts[1:]):
            sub, leaves = partial.restrict(plan, request.arguments, rows=(lo, hi))
            pieces.append(
                dispatch.execute(sub, leaves, partial.restrict_ranges(plan, ranges, (lo, hi)))
            )
        assert np.array_equal(np.concatenate(pieces), whole)
