"""Bounds of formulas over boxes (kernelsolve.engine.bounds and the ops'
interval rules), checked against the NumPy reference engine.

* Soundness, every op: random boxes (points, wide, straddling 0, out of an
  op's domain), the op's formula evaluated at sample points of the boxes
  (corners, the points nearest 0 and nearest an integer, random points):
  every value lies in the interval, and a NaN anywhere makes it NaN.
* Soundness, random formulas (tests/test_properties.py's strategy): points
  clustered on a grid, their bounding boxes (corners added as points).
* Tightness: the rules declared tight give the exact range (to rounding)
  where the extremes are sampled; the Gaussian kernel's bound over far and
  overlapping boxes; ``sqdist``'s lower bound is the boxes' distance squared.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernelsolve.engine import ir
from kernelsolve.engine.backends import reference
from kernelsolve.engine.bounds import cluster_boxes, formula_interval, magnitude
from kernelsolve.engine.ranges.cluster import grid_cluster
from tests.engine.test_ops_declared import CALLS, OP_NAMES, _operands
from tests.test_properties import cases

RTOL = 1e-12  # tightness: the rules widen by 16 ulps per op


def _check_contains(values, lo, hi, what: str) -> None:
    """Every value in [lo, hi] where the interval is not NaN; NaN values only
    where it is (``values`` broadcast against ``lo``)."""
    values, lo, hi = np.broadcast_arrays(values, lo, hi)
    nan_box = np.isnan(lo) | np.isnan(hi)
    assert not (np.isnan(lo) ^ np.isnan(hi)).any(), f"{what}: NaN on one end only"
    missed = np.isnan(values) & ~nan_box
    outside = ~nan_box & ~np.isnan(values) & ~((lo <= values) & (values <= hi))
    bad = missed | outside
    if bad.any():
        k = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} values outside their interval; first at {k}: "
            f"{values[k]!r} not in [{lo[k]!r}, {hi[k]!r}]"
        )


def _op_formula(name: str) -> ir.Node:
    x, y, s, m = _operands()
    call = CALLS.get(name, lambda x, y, s, m: getattr(x, ir.OPS[name].method)())
    return call(x, y, s, m).formula


CENTRES = np.array([0.0, 0.0, 1.0, -1.0, 0.5, -0.5, np.pi / 2, np.pi, -np.pi, 2.0, 3.0, 1 / np.e])


def _random_boxes(rng, B: int, dim: int, unbounded: bool = True):
    """``(lo, hi)`` of B boxes: centres at special values or random, widths
    from 0 (points) to wide, one side sometimes 0 (``unbounded``: or infinite)."""
    special = rng.choice(CENTRES, size=(B, dim))
    centre = np.where(rng.random((B, dim)) < 0.4, special, rng.uniform(-3, 3, (B, dim)))
    widths = np.array([0.0, 0.0, 1e-3, 0.1, 0.5, 1.0, 3.0, 20.0])
    lo = centre - rng.choice(widths, size=(B, dim)) * rng.random((B, dim))
    hi = centre + rng.choice(widths, size=(B, dim)) * rng.random((B, dim))
    side = rng.random((B, dim)) if unbounded else np.full((B, dim), 0.5)
    # a few unbounded sides: infinite points
    return np.where(side < 0.03, -np.inf, lo), np.where(side > 0.97, np.inf, hi)


def _samples(rng, lo, hi, count: int):
    """Points of the boxes: corners, nearest 0, nearest an integer, random."""
    yield lo
    yield hi
    yield np.clip(0.0, lo, hi)
    yield np.clip(np.round(_inside(lo, hi, 0.5)), lo, hi)
    for t in range(count):
        if t % 2:
            yield np.where(rng.integers(0, 2, lo.shape) == 1, hi, lo)
        else:
            yield _inside(lo, hi, rng.random(lo.shape))


def _inside(lo, hi, u):
    """The point at ``u`` in [0, 1] across each box (up to 1000 from the
    finite end of a half-line), clipped: rounding may step out."""
    finite_lo, finite_hi = np.isfinite(lo), np.isfinite(hi)
    span = np.where(finite_lo & finite_hi, hi - lo, 1e3)
    start = np.where(finite_lo, lo, np.where(finite_hi, hi - span, -500.0))
    return np.clip(start + u * span, lo, hi)


def _check_formula(f: ir.Node, rng, B: int, what: str) -> None:
    """Random boxes for each variable of ``f`` (pair k of every variable
    together), the interval, and the values at 28 sample points."""
    variables = ir.variables(f)
    boxes = [None] * (max(v.attrs[0] for v in variables) + 1)
    for v in variables:
        k, _, dim = v.attrs
        boxes[k] = _random_boxes(rng, B, dim)
    # pairs: box k of every variable together (a parameter's too, laid out as i's)
    lo, hi = formula_interval(f, boxes, [ir.I] * len(boxes), pairs=True)
    assert lo.shape == hi.shape == (B, f.dim)
    streams = {v.attrs[0]: _samples(rng, *boxes[v.attrs[0]], 24) for v in variables}
    for t in range(28):
        leaves = [None] * len(boxes)
        for k, stream in streams.items():  # corners of all variables together
            leaves[k] = next(stream)
        values = reference.evaluate(f, leaves, np.float64)
        _check_contains(values, lo, hi, f"{what}, sample {t}")
    return lo


@pytest.mark.parametrize("name", OP_NAMES)
def test_every_op_interval_holds_its_values(name):
    lo = _check_formula(_op_formula(name), np.random.default_rng(OP_NAMES.index(name)), 400, name)
    assert not np.isnan(lo).all(), f"{name}: NaN everywhere is sound but useless"


def _fit(t: ir.Node, d: int) -> ir.Node:
    """``t`` with inner dimension ``d`` (tiled with concat, then sliced)."""
    while t.dim < d:
        t = ir.make("concat", t, t)
    return t if t.dim == d else ir.make("extract", t, attrs=(0, d))


def _composed(name: str, slots: list, fresh: list) -> ir.Node:
    """The formula of ``CALLS[name]`` on test_ops_declared's operands, each
    operand (x, y, s, m) replaced by the formula in its slot; numbers bound
    by the call (``y + 1.0``) stay variables, renumbered from ``fresh[0]``."""
    operands = _operands()
    bases = [o.variables[0] for o in operands]
    call = CALLS.get(name, lambda x, y, s, m: getattr(x, ir.OPS[name].method)())
    lazy = call(*operands)
    new: dict[int, ir.Node] = {}
    for node in ir.topological_order(lazy.formula):
        if node.op == "var":
            k, cat, dim = node.attrs
            slot = [j for j, b in enumerate(bases) if lazy.variables[k] is b]
            if slot:
                new[id(node)] = slots[slot[0]]
            else:
                new[id(node)] = ir.var(fresh[0], cat, dim)
                fresh[0] += 1
        elif node.op == "const":
            new[id(node)] = node
        else:
            new[id(node)] = ir.make(node.op, *(new[id(a)] for a in node.args), attrs=node.attrs)
    return new[id(lazy.formula)]


@given(ops=st.lists(st.sampled_from(OP_NAMES), min_size=9, max_size=9), seed=st.integers(0, 99))
def test_random_compositions_of_every_op(ops, seed):
    """Two levels of any ops (their results refitted to the operands'
    dimensions 3, 3, 1, 6 of test_ops_declared.CALLS), then one more:
    out-of-domain values, infinities and NaN flow through every rule."""
    slots = [ir.var(0, ir.I, 3), ir.var(1, ir.J, 3), ir.var(2, ir.I, 1), ir.var(3, ir.J, 6)]
    fresh = [4]
    for level in range(2):
        names = ops[4 * level : 4 * level + 4]
        slots = [_fit(_composed(n, slots, fresh), d) for n, d in zip(names, (3, 3, 1, 6))]
    f = _composed(ops[8], slots, fresh)
    _check_formula(f, np.random.default_rng(seed), 50, repr(f))


# ----------------------------------------------------------------------------
# Tight rules: the exact range, where sampling finds the extremes
# ----------------------------------------------------------------------------

# op -> (formula of a dim-1 x, the boxes' range: inside the op's domain and
# where the rule is tight)
UNARY_TIGHT = {
    "neg": (-5, 5),
    "abs": (-5, 5),
    "exp": (-5, 5),
    "log": (0.01, 5),
    "xlogx": (0, 3),
    "inv": (0.1, 5),
    "sin": (-10, 10),
    "cos": (-10, 10),
    "tan": (-1.5, 1.5),
    "asin": (-1, 1),
    "acos": (-1, 1),
    "atan": (-5, 5),
    "tanh": (-5, 5),
    "sinh": (-5, 5),
    "cosh": (-5, 5),
    "sqrt": (0, 5),
    "rsqrt": (0.01, 5),
    "square": (-5, 5),
    "relu": (-5, 5),
    "step": (-5, 5),
    "sign": (-5, 5),
    "floor": (-5, 5),
    "sinxdivx": (-np.pi, np.pi),
}


@pytest.mark.parametrize("name", sorted(UNARY_TIGHT))
def test_tight_unary_rules_give_the_range(name):
    """Over 2001 points of each box (ends included), the sampled range equals
    the interval up to the sampling step (exactly for monotone ops)."""
    x = ir.var(0, ir.I, 1)
    f = ir.make(name, x)
    a, b = UNARY_TIGHT[name]
    rng = np.random.default_rng(len(name))
    ends = rng.uniform(a, b, (200, 2))
    ends[:20, 1] = ends[:20, 0]  # points
    ends[20:40, 0] = max(a, min(0.0, b))  # from 0 (or the domain's end)
    ends = np.sort(ends, axis=1)
    lo, hi = formula_interval(f, [(ends[:, :1], ends[:, 1:])], [ir.I], pairs=True)
    grid = ends[:, :1] + np.linspace(0, 1, 2001) * (ends[:, 1:] - ends[:, :1])
    kinks = np.array([0.0, np.exp(-1)])  # abs, relu, step, ... at 0; xlogx's minimum
    grid = np.clip(
        np.concatenate([grid, kinks + 0 * ends[:, :1]], axis=1), ends[:, :1], ends[:, 1:]
    )
    values = reference.evaluate(f, [grid[..., None]], np.float64)[..., 0]
    _check_contains(values, lo, hi, name)
    scale = 1 + np.abs(values).max(axis=1, keepdims=True)
    assert np.all(np.abs(values.min(axis=1, keepdims=True) - lo) <= 1e-5 * scale)
    assert np.all(np.abs(values.max(axis=1, keepdims=True) - hi) <= 1e-5 * scale)


BINARY_TIGHT = {  # op -> (range of the first argument, of the second)
    "add": ((-5, 5), (-5, 5)),
    "sub": ((-5, 5), (-5, 5)),
    "mul": ((-5, 5), (-5, 5)),
    "div": ((-5, 5), (0.5, 5)),
    "powf": ((0, 5), (-3, 3)),
    "atan2": ((-5, 5), (0.1, 5)),
    "scalprod": ((-5, 5), (-5, 5)),
    "sqdist": ((-5, 5), (-5, 5)),
}


@pytest.mark.parametrize("name", sorted(BINARY_TIGHT))
def test_tight_binary_rules_reach_their_ends(name):
    """The interval's ends are values of the op at points of the boxes (the
    corners; for sqdist, the nearest and farthest points per coordinate)."""
    x, y = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)
    f = ir.make(name, x, y)
    rng = np.random.default_rng(len(name) + 7)
    (a0, a1), (b0, b1) = BINARY_TIGHT[name]
    bx = np.sort(rng.uniform(a0, a1, (300, 2)), axis=1)[:, :, None]
    by = np.sort(rng.uniform(b0, b1, (300, 2)), axis=1)[:, :, None]
    lo, hi = formula_interval(
        f, [(bx[:, 0], bx[:, 1]), (by[:, 0], by[:, 1])], [ir.I, ir.J], pairs=True
    )
    points_x = [bx[:, 0], bx[:, 1]]
    points_y = [by[:, 0], by[:, 1]]
    if name == "sqdist":  # the nearest points: each end of one box clipped into the other
        points_x += [np.clip(by[:, 0], bx[:, 0], bx[:, 1]), np.clip(by[:, 1], bx[:, 0], bx[:, 1])]
        points_y += [np.clip(bx[:, 0], by[:, 0], by[:, 1]), np.clip(bx[:, 1], by[:, 0], by[:, 1])]
    values = np.stack(
        [reference.evaluate(f, [px, py], np.float64) for px in points_x for py in points_y]
    )
    for v in values:
        _check_contains(v, lo, hi, name)
    np.testing.assert_allclose(values.min(axis=0), lo, rtol=RTOL, atol=1e-300)
    np.testing.assert_allclose(values.max(axis=0), hi, rtol=RTOL, atol=1e-300)


# ops whose formula in CALLS is monotone or multilinear in each coordinate,
# with every coordinate once per output: the extremes are at vertices
VERTEX_TIGHT = (
    "add sub mul neg relu exp scalprod sum max min elem extract concat tensorprod "
    "matvecmult vecmatmult tensordot real2complex imag2complex".split()
)


@pytest.mark.parametrize("name", VERTEX_TIGHT)
def test_vertex_tight_rules_give_the_hull_of_the_vertices(name):
    f = _op_formula(name)
    variables = ir.variables(f)
    rng = np.random.default_rng(len(name))
    B = 30
    boxes = [None] * (max(v.attrs[0] for v in variables) + 1)
    for v in variables:
        boxes[v.attrs[0]] = _random_boxes(rng, B, v.attrs[2], unbounded=False)
    lo, hi = formula_interval(f, boxes, [ir.I] * len(boxes), pairs=True)
    # every vertex: one bit per coordinate of every variable
    sizes = [v.attrs[2] for v in variables]
    bits = (np.arange(2 ** sum(sizes))[:, None] >> np.arange(sum(sizes))) & 1
    leaves = [None] * len(boxes)
    start = 0
    for v, d in zip(variables, sizes):
        b_lo, b_hi = boxes[v.attrs[0]]
        pick = bits[:, None, start : start + d] == 1  # (vertices, 1, d)
        leaves[v.attrs[0]] = np.where(pick, b_hi, b_lo)  # (vertices, B, d)
        start += d
    values = np.broadcast_to(reference.evaluate(f, leaves, np.float64), (len(bits), B, f.dim))
    _check_contains(values, lo, hi, name)
    scale = np.abs(values).max(axis=0)  # sums: tight to their rounding
    tol = RTOL * scale + 1e-300
    assert np.all(np.abs(values.min(axis=0) - lo) <= tol), name
    assert np.all(np.abs(values.max(axis=0) - hi) <= tol), name


@pytest.mark.parametrize("n", [-3, -2, -1, 2, 3, 4, 7])
def test_integer_powers_are_tight(n):
    x = ir.var(0, ir.I, 1)
    f = ir.make("pow", x, attrs=(n,))
    rng = np.random.default_rng(n + 10)
    ends = np.sort(rng.uniform(-3, 3, (300, 2)), axis=1)
    if n < 0:  # away from the pole at 0
        ends = np.where(ends[:, :1] * ends[:, 1:] > 0, ends, np.abs(ends) + 0.1)
        ends = np.sort(ends, axis=1)
    lo, hi = formula_interval(f, [(ends[:, :1], ends[:, 1:])], [ir.I], pairs=True)
    points = np.clip(np.concatenate([ends, np.zeros((300, 1))], axis=1), ends[:, :1], ends[:, 1:])
    values = reference.evaluate(f, [points[..., None]], np.float64)[..., 0]
    _check_contains(values, lo, hi, f"x ** {n}")
    np.testing.assert_allclose(values.min(axis=1, keepdims=True), lo, rtol=RTOL, atol=1e-300)
    np.testing.assert_allclose(values.max(axis=1, keepdims=True), hi, rtol=RTOL, atol=1e-300)


# ----------------------------------------------------------------------------
# Random formulas over clustered points
# ----------------------------------------------------------------------------


def _with_corners(rng, points, size):
    """Grid clusters of ``points`` (M, d), their boxes, and the points plus
    one random corner of each box (labelled with it)."""
    labels = grid_cluster(points, size)
    lo, hi = cluster_boxes(points, labels)
    corners = np.where(rng.integers(0, 2, lo.shape) == 1, hi, lo)
    return (
        (lo, hi),
        np.concatenate([points, corners]),
        np.concatenate([labels, np.arange(len(lo))]),
    )


@given(case=cases(lib="numpy"), size=st.sampled_from([0.3, 0.8, 5.0]), seed=st.integers(0, 99))
def test_random_formula_bounds_hold_over_clusters(case, size, seed):
    lazy = case.lazy(arrays=case.data())
    f, cats = lazy.formula, lazy.cats
    rng = np.random.default_rng(seed)
    boxes, leaves, labels = [], [], []
    p_samples = {}
    for k, (a, c) in enumerate(zip(lazy.variables, cats)):
        a = np.asarray(a, dtype=np.float64)
        if c == ir.P:
            a = a.reshape(-1)
            if seed % 2:  # a parameter box around the value, sampled at its ends
                r = rng.uniform(0, 0.5, a.shape)
                boxes.append((a - r, a + r))
                inner = np.clip(a - r + rng.random(a.shape) * 2 * r, a - r, a + r)
                p_samples[k] = [a - r, a + r, inner]
            else:
                boxes.append(a)
            leaves.append(a[None, None, :])
            labels.append(None)
            continue
        box, points, lab = _with_corners(rng, a.reshape(-1, a.shape[-1]), size)
        boxes.append(box)
        leaves.append(points[:, None, :] if c == ir.I else points[None, :, :])
        labels.append(lab)
    lo, hi = formula_interval(f, boxes, cats)
    # no i- or no j-variable (a size-1 array read as a parameter): one cluster
    li = next((lab for lab, c in zip(labels, cats) if c == ir.I), np.zeros(1, int))
    lj = next((lab for lab, c in zip(labels, cats) if c == ir.J), np.zeros(1, int))
    lo, hi = lo[li[:, None], lj[None, :]], hi[li[:, None], lj[None, :]]
    # the strategy's formulas are finite on bounded data (it tames their
    # arguments): so are their bounds, no NaN, no infinity
    assert np.isfinite(lo).all() and np.isfinite(hi).all(), repr(case)
    for t in range(3 if p_samples else 1):
        for k, samples in p_samples.items():
            leaves[k] = samples[t][None, None, :]
        values = reference.evaluate(f, leaves, np.float64)
        _check_contains(values, lo, hi, repr(case))


# ----------------------------------------------------------------------------
# Kernels: tight where it matters
# ----------------------------------------------------------------------------


def _gaussian(h):
    x, y = ir.var(0, ir.I, 3), ir.var(1, ir.J, 3)
    return ir.make("exp", ir.make("neg", ir.make("div", ir.make("sqdist", x, y), h)))


def _box_distances(bx, by):
    """(Ci, Cj) smallest and largest distances between points of the boxes."""
    (xl, xh), (yl, yh) = bx, by
    gap = np.maximum(0, np.maximum(xl[:, None] - yh[None], yl[None] - xh[:, None]))
    far = np.maximum(xh[:, None] - yl[None], yh[None] - xl[:, None])
    return np.sqrt((gap**2).sum(-1)), np.sqrt((far**2).sum(-1))


def test_gaussian_bound_over_far_and_overlapping_boxes():
    rng = np.random.default_rng(3)
    x, y = rng.random((400, 3)), rng.random((300, 3)) + np.array([0.5, 0.0, 0.0])
    bx = cluster_boxes(x, grid_cluster(x, 0.25))
    by = cluster_boxes(y, grid_cluster(y, 0.25))
    h = 0.05
    near, far = _box_distances(bx, by)
    for param, boxes_h, cats_h in (
        (ir.const(h), [], []),  # a number in the formula
        (ir.var(2, ir.P, 1), [np.array([h])], [ir.P]),  # an exact parameter
    ):
        lo, hi = formula_interval(_gaussian(param), [bx, by, *boxes_h], [ir.I, ir.J, *cats_h])
        # in the log domain: exp(-100) is tight to 1e-12 relative in its exponent
        np.testing.assert_allclose(np.log(hi[..., 0]), -(near**2) / h, rtol=RTOL, atol=RTOL)
        np.testing.assert_allclose(np.log(lo[..., 0]), -(far**2) / h, rtol=RTOL, atol=RTOL)
    overlap = near == 0
    assert 0 < overlap.sum() < overlap.size  # both kinds of pairs are there
    np.testing.assert_allclose(hi[..., 0][overlap], 1.0, rtol=RTOL)
    assert (magnitude(lo, hi)[..., 0][~overlap] < 1).all()
    # a bandwidth interval: the bound at its widest end
    lo, hi = formula_interval(
        _gaussian(ir.var(2, ir.P, 1)), [bx, by, ([h / 2], [h])], [ir.I, ir.J, ir.P]
    )
    np.testing.assert_allclose(np.log(hi[..., 0]), -(near**2) / h, rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(np.log(lo[..., 0]), -(far**2) / (h / 2), rtol=RTOL, atol=RTOL)


def test_sqdist_lower_bound_is_the_boxes_distance():
    """What exact nearest-neighbour pruning reads: ``lo`` of ``|x - y|^2``."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(300, 2)), rng.normal(size=(200, 2)) * 2
    bx = cluster_boxes(x, grid_cluster(x, 0.5))
    by = cluster_boxes(y, grid_cluster(y, 0.7))
    f = ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2))
    lo, hi = formula_interval(f, [bx, by], [ir.I, ir.J])
    near, far = _box_distances(bx, by)
    np.testing.assert_allclose(lo[..., 0], near**2, rtol=RTOL, atol=1e-300)
    np.testing.assert_allclose(hi[..., 0], far**2, rtol=RTOL)


# ----------------------------------------------------------------------------
# NaN and infinities
# ----------------------------------------------------------------------------


def _pair(f, bx, by):
    lo, hi = formula_interval(f, [bx, by], [ir.I, ir.J], pairs=True)
    return lo[..., 0], hi[..., 0]


X, Y = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)


def test_nan_and_infinite_values_make_unbounded_intervals():
    inside = ([[0.0], [2.0]], [[1.0], [3.0]])
    other = ([[0.5], [0.0]], [[2.0], [1.0]])  # overlaps the first box, not the second
    # sqrt(x - y): x - y may be negative on the first pair only
    lo, hi = _pair(ir.make("sqrt", ir.make("sub", X, Y)), inside, other)
    assert np.isnan(lo[0]) and np.isnan(hi[0])
    np.testing.assert_allclose([lo[1], hi[1]], [1.0, np.sqrt(3)], rtol=RTOL)
    # log |x - y|^2: -inf where the boxes touch, never NaN
    lo, hi = _pair(ir.make("log", ir.make("sqdist", X, Y)), inside, other)
    assert lo[0] == -np.inf and np.isfinite(hi).all() and np.isclose(lo[1], np.log(1.0))
    # 1 / |x - y|^2: inf where they touch; times (x - y): 0 * inf is NaN
    inv = ir.make("inv", ir.make("sqdist", X, Y))
    lo, hi = _pair(inv, inside, other)
    assert hi[0] == np.inf and np.isfinite(hi[1])
    lo, hi = _pair(ir.make("mul", inv, ir.make("sub", X, Y)), inside, other)
    assert np.isnan(lo[0]) and np.isfinite(lo[1])
    assert magnitude(lo, hi)[0] == np.inf
    # the same, at the points: inf and NaN values are inside their interval
    for f in (inv, ir.make("mul", inv, ir.make("sub", X, Y))):
        lo, hi = _pair(f, ([[1.0]], [[1.0]]), ([[1.0]], [[1.0]]))
        _check_contains(
            reference.evaluate(f, [np.ones((1, 1))] * 2, np.float64),
            lo[:, None],
            hi[:, None],
            "point",
        )


def test_ifelse_takes_the_decided_branch_and_the_hull_otherwise():
    f = ir.make("ifelse", X, ir.make("exp", Y), ir.make("neg", ir.make("square", Y)))
    xs = ([[1.0], [-2.0], [-1.0]], [[2.0], [-1.0], [1.0]])
    ys = ([[0.0]] * 3, [[1.0]] * 3)
    lo, hi = _pair(f, xs, ys)
    np.testing.assert_allclose(lo, [1.0, -1.0, -1.0], rtol=RTOL)
    np.testing.assert_allclose(hi, [np.e, 0.0, np.e], rtol=RTOL, atol=1e-300)


def test_bad_boxes_are_refused_with_the_variable_named():
    f = ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2))
    good = (np.zeros((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"boxes\[1\].*dimension 2"):
        formula_interval(f, [good, (np.zeros((3, 3)), np.ones((3, 3)))], [ir.I, ir.J])
    with pytest.raises(ValueError, match=r"boxes\[0\].*lo <= hi"):
        formula_interval(f, [(np.ones((3, 2)), np.zeros((3, 2))), good], [ir.I, ir.J])
    with pytest.raises(ValueError, match="variable 1"):
        formula_interval(f, [good], [ir.I])
    with pytest.raises(ValueError, match="cluster_boxes"):
        cluster_boxes(np.zeros((3, 2)), np.zeros(4, dtype=int))


def test_cluster_boxes_are_the_bounding_boxes_of_grid_cells():
    rng = np.random.default_rng(5)
    x = rng.random((500, 3))
    labels = grid_cluster(x, 0.3)
    lo, hi = cluster_boxes(x, labels)
    assert lo.shape == hi.shape == (labels.max() + 1, 3)
    assert (lo[labels] <= x).all() and (x <= hi[labels]).all()
    for c in range(len(lo)):  # each face touches a point
        np.testing.assert_array_equal(lo[c], x[labels == c].min(0))
        np.testing.assert_array_equal(hi[c], x[labels == c].max(0))
        assert (np.floor(lo[c] / 0.3) == np.floor(hi[c] / 0.3)).all()  # inside one cell


def test_a_leading_batch_bounds_each_batch_alone():
    """Boxes ``batch + (C, d)`` and parameters ``batch + (d,)``: one call
    equals one call per batch entry."""
    rng = np.random.default_rng(6)
    f = _gaussian(ir.var(2, ir.P, 1))
    bx = tuple(np.sort(rng.random((2, 2, 4, 3)), axis=0))  # (lo, hi), batch 2, 4 clusters
    by = tuple(np.sort(rng.random((2, 2, 5, 3)), axis=0))
    h = np.array([[0.1], [0.3]])
    lo, hi = formula_interval(f, [bx, by, h], [ir.I, ir.J, ir.P])
    assert lo.shape == (2, 4, 5, 1)
    for b in range(2):
        one = formula_interval(
            f, [(bx[0][b], bx[1][b]), (by[0][b], by[1][b]), h[b]], [ir.I, ir.J, ir.P]
        )
        np.testing.assert_array_equal(lo[b], one[0])
        np.testing.assert_array_equal(hi[b], one[1])
