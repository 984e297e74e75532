"""Exact nearest neighbours by block pruning (engine/ranges/knn.py): the
pruned Kmin / argKmin / Kmin_argKmin / min / argmin against the dense
reduction on the original order, values and indices identical, on uniform,
clustered and integer-grid (heavy ties) points, duplicates, tiny inputs, K
near N, NaN; and that the pruning prunes.

The bound is ``provisional_sqdist_interval``: a sound interval of the
squared Euclidean distance between boxes written here, standing in for the
engine's interval rules."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelsolve.engine import dispatch, ir
from kernelsolve.engine.ranges import knn, prune
from kernelsolve.engine.request import ReductionRequest

IJ = (ir.I, ir.J)


def provisional_sqdist_interval(bi, bj):
    """PROVISIONAL sound interval of |x - y|^2 for x in the i-boxes, y in the
    j-boxes: per coordinate, the gap max(0, lo_j - hi_i, lo_i - hi_j) gives
    the lower bound, the farthest corners the upper one (NaN boxes: NaN)."""
    return _sqdist_boxes(bi.lo, bi.hi, bj.lo, bj.hi)


def _sqdist_boxes(lo_i, hi_i, lo_j, hi_j):
    li, hi_, lj, hj = lo_i[:, None], hi_i[:, None], lo_j[None], hi_j[None]
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, a block that is kept
        gap = np.maximum(0, np.maximum(lj - hi_, li - hj))
        far = np.maximum(hj - li, hi_ - lj)
    return (gap**2).sum(-1), (far**2).sum(-1)


def _sqdist(D: int) -> ir.Node:
    return ir.make("sqnorm2", ir.make("sub", ir.var(0, ir.I, D), ir.var(1, ir.J, D)))


def _dense(F, red, x, y, K):
    k = K if "k" in red.lower() else None
    return dispatch.reduce(ReductionRequest(F, red.lower(), (x, y), IJ, 1, None, k))


def _check(x, y, K, reds=("kmin_argkmin", "argmin", "min"), **kw):
    F = _sqdist(x.shape[1])
    for red in reds:
        want = _dense(F, red, x, y, K)
        got = knn.pruned_kmin(
            F, (x, y), IJ, K, reduction=red, interval=provisional_sqdist_interval, **kw
        )
        want = want if isinstance(want, tuple) else (want,)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype, red
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=red)


def _points(kind: str, rng, n: int, D: int) -> np.ndarray:
    if kind == "uniform":
        return rng.random((n, D)).astype(np.float32)
    if kind == "clustered":
        centres = rng.random((5, D))
        return (centres[rng.integers(0, 5, n)] + 0.02 * rng.standard_normal((n, D))).astype(
            np.float32
        )
    return rng.integers(0, 12, (n, D)).astype(np.float32)  # integer grid: heavy ties


@pytest.mark.parametrize("kind", ["uniform", "clustered", "grid"])
@pytest.mark.parametrize("D", [1, 2, 3])
def test_identical_to_dense(kind, D):
    rng = np.random.default_rng(D)
    x, y = _points(kind, rng, 1300, D), _points(kind, rng, 900, D)
    for K in (1, 5, 16):
        _check(x, y, K, cluster_size=40)


def test_ties_take_the_recompute_path():
    """On the integer grid the permuted kernel alone would break ties the
    wrong way: the K+1 test flags rows, and the result is still exact."""
    rng = np.random.default_rng(7)
    x = _points("grid", rng, 800, 2)
    F = _sqdist(2)
    plan = prune.prune_plan((x, x), IJ, 5, provisional_sqdist_interval, cluster_size=30)
    request = ReductionRequest(F, "kmin_argkmin", (x, x), IJ, 1, None, 5)
    _, fast_idx, redo = knn._fast(request, plan, 5)
    assert redo.any()
    dense_idx = _dense(F, "kmin_argkmin", x, x, 5)[1][plan.perm_i]
    assert not np.array_equal(fast_idx, dense_idx)  # the recompute is needed
    _check(x, x, 5, cluster_size=30)


def test_duplicates_k_near_n_and_tiny():
    rng = np.random.default_rng(3)
    base = rng.random((7, 2)).astype(np.float32)
    x, y = base[rng.integers(0, 7, 200)], base[rng.integers(0, 7, 150)]
    for K in (1, 5, 16, 148, 149, 150):
        _check(x, y, K, reds=("kmin_argkmin", "argkmin", "kmin"), cluster_size=20)
    with pytest.raises(ValueError, match="K=151 exceeds"):  # as the dense reduction
        _check(x, y, 151, reds=("kmin_argkmin",), cluster_size=20)
    _check(x, y, 1, reds=("argmin", "min", "min_argmin"), cluster_size=20)
    for M, N in ((1, 1), (3, 2), (2, 5)):
        a, b = rng.random((M, 3)).astype(np.float32), rng.random((N, 3)).astype(np.float32)
        _check(a, b, N)  # fewer points than a cluster, K = N
        _check(a, b, 1)


def test_nan_points_are_never_pruned():
    """NaN coordinates make F NaN on their rows / columns: Kmin sorts NaN
    last, min / argmin return the first NaN, as the dense reduction."""
    rng = np.random.default_rng(5)
    x, y = rng.random((400, 2)), rng.random((300, 2))
    x[[3, 50, 51]] = np.nan
    y[[10, 200], 1] = np.nan
    y[[7]] = np.inf
    x[[9], 0] = -np.inf  # F = +inf on that row, NaN against y[7]
    for K in (1, 5, 16):
        _check(x, y, K, cluster_size=25)
    _check(x, y, 1, reds=("min_argmin",), cluster_size=25)


def test_pruning_prunes():
    rng = np.random.default_rng(0)
    x = rng.random((10_000, 2)).astype(np.float32)
    plan = prune.prune_plan((x, x), IJ, 10, provisional_sqdist_interval)
    assert plan.kept_fraction() < 0.3
    assert plan.kept_pairs() < 0.4 * x.shape[0] ** 2


def test_torch_and_reuse_of_the_plan():
    rng = np.random.default_rng(1)
    x, y = torch.rand(500, 3, dtype=torch.float64), torch.rand(700, 3, dtype=torch.float64)
    F = _sqdist(3)
    plan = prune.prune_plan((x, y), IJ, 6, provisional_sqdist_interval, cluster_size=50)
    assert plan.kept_fraction() < 1.0
    for red in ("Kmin", "argKmin"):
        got = knn.pruned_kmin(
            F, (x, y), IJ, 6, reduction=red, interval=provisional_sqdist_interval, plan=plan
        )
        want = _dense(F, red, x, y, 6)
        assert isinstance(got, torch.Tensor)
        assert torch.equal(got, want)
    del rng


def test_bad_input():
    x = np.random.default_rng(0).random((50, 2))
    F = _sqdist(2)
    with pytest.raises(ValueError, match="reduction='sum'"):
        knn.pruned_kmin(F, (x, x), IJ, 3, reduction="sum", interval=provisional_sqdist_interval)
    with pytest.raises(ValueError, match="K must be a positive integer"):
        knn.pruned_kmin(F, (x, x), IJ, 0, interval=provisional_sqdist_interval)
    with pytest.raises(ValueError, match="must be scalar"):
        knn.pruned_kmin(
            ir.make("sub", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2)),
            (x, x),
            IJ,
            3,
            interval=provisional_sqdist_interval,
        )
    with pytest.raises(ValueError, match=r"shaped \(\d+, \d+\)"):
        knn.pruned_kmin(F, (x, x), IJ, 3, interval=lambda bi, bj: (np.zeros(3), np.zeros(3)))
    with pytest.raises(ValueError, match="leaves\\[0\\] must have shape"):
        knn.pruned_kmin(F, (x[None], x), IJ, 3, interval=provisional_sqdist_interval)


def test_cost_model():
    assert knn.pruning_pays(10**6, 10**6, 3)
    assert not knn.pruning_pays(2000, 2000, 2)
    assert not knn.pruning_pays(10**6, 10**6, 16)


@settings(max_examples=25, deadline=None)
@given(
    M=st.integers(1, 120),
    N=st.integers(1, 120),
    D=st.integers(1, 3),
    K=st.integers(1, 20),
    levels=st.integers(1, 6),
    cluster_size=st.integers(1, 40),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_integer_points(M, N, D, K, levels, cluster_size, seed):
    """Few distinct coordinates (ties everywhere), any sizes and clusters."""
    rng = np.random.default_rng(seed)
    K = min(K, N)
    x = rng.integers(0, levels, (M, D)).astype(np.float64)
    y = rng.integers(0, levels, (N, D)).astype(np.float64)
    _check(x, y, K, reds=("kmin_argkmin", "min_argmin"), cluster_size=cluster_size)


def test_several_variables_a_parameter_and_negative_values():
    """F = -exp(-(|x_i - y_j|^2 + p |u_i - w_j|^2)): two variables a side, a
    parameter, values in [-1, 0) (negative thresholds exercise the slack);
    the bound reads each variable's box with ``boxes.of(k)``."""
    rng = np.random.default_rng(11)
    x, y, u, w = (
        rng.random((900, 2)),
        rng.random((700, 2)),
        rng.random((900, 1)),
        rng.random((700, 1)),
    )
    p = np.array([0.5])
    X, Y, U = ir.var(0, ir.I, 2), ir.var(1, ir.J, 2), ir.var(2, ir.I, 1)
    W, P = ir.var(3, ir.J, 1), ir.var(4, ir.P, 1)
    d2 = ir.make(
        "add",
        ir.make("sqnorm2", ir.make("sub", X, Y)),
        ir.make("mul", P, ir.make("sqnorm2", ir.make("sub", U, W))),
    )
    F = ir.make("neg", ir.make("exp", ir.make("neg", d2)))
    leaves, cats = (x, y, u, w, p), (ir.I, ir.J, ir.I, ir.J, ir.P)

    def interval(bi, bj):
        lo_xy, hi_xy = _sqdist_boxes(*bi.of(0), *bj.of(1))
        lo_uw, hi_uw = _sqdist_boxes(*bi.of(2), *bj.of(3))
        # -exp(-d) increases with d: the bounds of d map to the bounds of F
        return -np.exp(-(lo_xy + p[0] * lo_uw)), -np.exp(-(hi_xy + p[0] * hi_uw))

    for red, K in (("kmin_argkmin", 7), ("argmin", None), ("min", None)):
        want = dispatch.reduce(ReductionRequest(F, red, leaves, cats, 1, None, K))
        got = knn.pruned_kmin(
            F, leaves, cats, K or 1, reduction=red, interval=interval, cluster_size=30
        )
        want, got = (a if isinstance(a, tuple) else (a,) for a in (want, got))
        for g, wt in zip(got, want):
            np.testing.assert_array_equal(g, wt, err_msg=red)
    plan = prune.prune_plan(leaves, cats, 7, interval, formula=F, cluster_size=30)
    assert plan.kept_fraction() < 0.5


def test_reduce_pruned_decides_and_transposes():
    rng = np.random.default_rng(2)
    x, y = rng.random((12_000, 2)).astype(np.float32), rng.random((9_000, 2)).astype(np.float32)
    F = _sqdist(2)
    for axis, leaves, cats in ((1, (x, y), IJ), (0, (y, x), (ir.J, ir.I))):
        # over i, F reads its i-variable from leaves[0]: swap the categories
        Fa = F if axis == 1 else ir.swap_ij(F)
        request = ReductionRequest(Fa, "argkmin", leaves, cats, axis, None, 10)
        got = knn.reduce_pruned(request, provisional_sqdist_interval)
        assert got is not None
        np.testing.assert_array_equal(got, dispatch.reduce(request))
    small = ReductionRequest(F, "argkmin", (x[:100], y[:100]), IJ, 1, None, 10)
    assert knn.reduce_pruned(small, provisional_sqdist_interval) is None
    summed = ReductionRequest(F, "sum", (x, y), IJ)
    assert knn.reduce_pruned(summed, provisional_sqdist_interval) is None
    xt = torch.from_numpy(x).requires_grad_()
    graded = ReductionRequest(F, "kmin", (xt, torch.from_numpy(y)), IJ, 1, None, 10)
    assert knn.reduce_pruned(graded, provisional_sqdist_interval) is None


def test_lazytensor_knn_prunes_by_itself_with_the_ops_bounds(monkeypatch):
    """Above the cost model's size, K.argKmin / Kmin_argKmin / min_argmin go
    through the pruned path (bounds from the ops' interval rules) and equal
    the dense reduction, ties included."""
    from kernelsolve import Vi, Vj

    rng = np.random.default_rng(5)
    x = np.round(rng.random((12_000, 2)) * 60).astype(np.float32)  # many ties
    y = np.round(rng.random((10_000, 2)) * 60).astype(np.float32)
    D = Vi(x).sqdist(Vj(y))
    ran = []
    real = knn.pruned_kmin
    monkeypatch.setattr(knn, "pruned_kmin", lambda *a, **k: ran.append(1) or real(*a, **k))
    pruned = [D.argKmin(7, dim=1), D.Kmin_argKmin(3, dim=1), D.min_argmin(dim=1)]
    assert len(ran) == 3
    monkeypatch.setattr(dispatch, "_PRUNABLE", frozenset())  # the dense reductions
    dense = [D.argKmin(7, dim=1), D.Kmin_argKmin(3, dim=1), D.min_argmin(dim=1)]
    for p, d in zip(pruned, dense):
        p, d = (p, d) if isinstance(p, tuple) else ((p,), (d,))
        for a, b in zip(p, d):
            assert np.array_equal(a, b)
