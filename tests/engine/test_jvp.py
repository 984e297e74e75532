"""Forward mode on the IR: every op's JVP rule and :func:`grad.jvp` on random
formulas, through the NumPy reference engine, in float64.

Two independent checks:

* against central finite differences of the formula itself (the values), and
* against the VJP rules, by transposition: ``<J t, u> = sum_x <t_x, J_x^T u>``
  (exact up to rounding, conventions at kinks included, since each JVP rule
  is the transpose of its op's VJP rule).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernelsolve.engine import ir
from kernelsolve.engine.backends import reference
from kernelsolve.engine.grad import jvp, vjp
from tests.engine.test_ops_declared import CALLS, OP_NAMES, _operands
from tests.test_properties import cases

H = 1e-6  # finite-difference step (central differences, float64)
U_INDEX = 1000  # variable index of the cotangent u in the transposition check


def _tangent_vars(f: ir.Node, free) -> dict:
    """A tangent variable (index k + 100, same category and dim) for each
    variable k of ``f`` in ``free``."""
    return {v: ir.var(v.attrs[0] + 100, *v.attrs[1:]) for v in ir.variables(f) if free(v)}


def _leaves(values: dict, tangents: dict, tvars: dict, u=None) -> list:
    """The reference engine's leaf list: values by index, tangents at k + 100."""
    leaves: list = [None] * (U_INDEX + 1)
    for k, a in values.items():
        leaves[k] = a
    for v, tv in tvars.items():
        leaves[tv.attrs[0]] = tangents[v.attrs[0]]
    leaves[U_INDEX] = u
    return leaves


def _eval(f: ir.Node, leaves) -> np.ndarray:
    return reference.evaluate(f, leaves, np.float64)


def _shifted(f: ir.Node, values: dict, tangents: dict, step: float) -> np.ndarray:
    """``f`` at the values moved by ``step`` times their tangents."""
    moved = {k: a + step * tangents[k] if k in tangents else a for k, a in values.items()}
    return _eval(f, _leaves(moved, {}, {}))


def _finite_difference(f: ir.Node, values: dict, tangents: dict, h: float) -> np.ndarray:
    return (_shifted(f, values, tangents, h) - _shifted(f, values, tangents, -h)) / (2 * h)


def _transposition_sides(f, values, tangents, tvars, u):
    """(<J t, u>, sum_x <t_x, J_x^T u>), both summed over every pair."""
    leaves = _leaves(values, tangents, tvars, u)
    uvar = ir.var(U_INDEX, ir.I, f.dim)
    forward = _eval(jvp(f, tvars), leaves)
    lhs = float(np.sum(np.broadcast_to(forward, u.shape) * u))
    rhs = 0.0
    scale = abs(lhs)
    for v, tv in tvars.items():
        back = _eval(vjp(f, v, uvar), leaves)
        prod = np.broadcast_to(back, u.shape[:-1] + (v.dim,)) * _eval(tv, leaves)
        rhs += float(np.sum(prod))
        scale += float(np.sum(np.abs(prod)))
    return lhs, rhs, scale


# ----------------------------------------------------------------------------
# Every op, through the formula its LazyTensor method builds
# ----------------------------------------------------------------------------


def _op_case(name: str, rows: int = 7, seed: int = 0):
    """The op's formula (see test_ops_declared.CALLS), values in [0.1, 0.9]
    (inside every op's domain), random tangents; every variable has ``rows`` rows."""
    x, y, s, m = _operands()
    call = CALLS.get(name, lambda x, y, s, m: getattr(x, ir.OPS[name].method)())
    f = call(x, y, s, m).formula
    rng = np.random.default_rng(seed)
    values, tangents = {}, {}
    for v in ir.variables(f):
        k, _, d = v.attrs
        values[k] = rng.uniform(0.1, 0.9, size=(rows, d))
        tangents[k] = rng.standard_normal((rows, d))
    return f, values, tangents


@pytest.mark.parametrize("name", OP_NAMES)
def test_every_op_jvp_matches_finite_differences(name):
    f, values, tangents = _op_case(name)
    tvars = _tangent_vars(f, lambda v: True)
    t = jvp(f, tvars)
    assert t.dim == f.dim
    got = np.broadcast_to(_eval(t, _leaves(values, tangents, tvars)), (7, f.dim))
    want = _finite_difference(f, values, tangents, H)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * (1 + np.abs(want).max()))
    if not ir.OPS[name].differentiable:
        assert ir.is_const(t, 0)


@pytest.mark.parametrize("name", OP_NAMES)
def test_every_op_jvp_is_the_transpose_of_its_vjp(name):
    f, values, tangents = _op_case(name, seed=1)
    tvars = _tangent_vars(f, lambda v: True)
    u = np.random.default_rng(2).standard_normal((7, f.dim))
    lhs, rhs, scale = _transposition_sides(f, values, tangents, tvars, u)
    assert abs(lhs - rhs) <= 1e-12 * (1 + scale)


@pytest.mark.parametrize("name", OP_NAMES)
def test_every_op_jvp_one_argument_at_a_time(name):
    """A tangent on one argument only (the others None in the rule): the
    partial JVPs add up to the full one."""
    f, values, tangents = _op_case(name, seed=3)
    variables = ir.variables(f)
    full = _tangent_vars(f, lambda v: True)
    leaves = _leaves(values, tangents, full)
    total = np.zeros((7, f.dim))
    for v in variables:
        total = total + _eval(jvp(f, {v: full[v]}), leaves)
    np.testing.assert_allclose(total, np.broadcast_to(_eval(jvp(f, full), leaves), total.shape))


def test_jvp_of_a_formula_without_the_variables_is_zero():
    x, y = ir.var(0, ir.I, 2), ir.var(1, ir.J, 2)
    f = ir.make("exp", ir.make("neg", ir.make("sqdist", x, x)))
    assert jvp(f, {y: ir.var(2, ir.J, 2)}) is ir.const(0, 1)
    assert jvp(f, {}) is ir.const(0, 1)


def test_jvp_checks_its_arguments():
    x = ir.var(0, ir.I, 2)
    with pytest.raises(ValueError, match="keyed by var leaves"):
        jvp(ir.make("exp", x), {ir.make("exp", x): ir.var(1, ir.I, 2)})
    with pytest.raises(ValueError, match="dimension 3, expected 2"):
        jvp(ir.make("exp", x), {x: ir.var(1, ir.I, 3)})


def test_jvp_shares_subformulas_with_the_formula():
    """Hash-consing: the tangent of exp(-|x - y|^2) reuses the node x - y and
    the value exp(...) itself (no second copy of either)."""
    x, y = ir.var(0, ir.I, 3), ir.var(1, ir.J, 3)
    f = ir.make("exp", ir.make("neg", ir.make("sqdist", x, y)))
    t = jvp(f, {x: ir.var(2, ir.I, 3), y: ir.var(3, ir.J, 3)})
    nodes = ir.topological_order(t)
    assert f in nodes and ir.make("sub", x, y) in nodes
    assert sum(n.op == "exp" for n in nodes) == 1


def test_sinxdivx_derivative_is_zero_at_zero():
    x, t = ir.var(0, ir.I, 1), ir.var(1, ir.I, 1)
    f = ir.make("sinxdivx", x)
    xs, ts = np.array([[0.0], [1e-3], [2.0]]), np.ones((3, 1))
    got = _eval(jvp(f, {x: t}), [xs, ts])
    want = [[0.0], [-1e-3 / 3], [(np.cos(2) - np.sin(2) / 2) / 2]]
    np.testing.assert_allclose(got, want, rtol=1e-6)  # -x / 3 + O(x^3) near 0
    back = _eval(vjp(f, x, t), [xs, ts])
    np.testing.assert_allclose(back, got)


@pytest.mark.parametrize("op", ["max", "min"])
def test_inner_extremum_of_a_persistent_tie(op):
    """max(concat(x, x)) = x: tangent t and gradient g, not 2 t and 2 g (ties
    share the derivative evenly, as torch's amax)."""
    x, t = ir.var(0, ir.I, 1), ir.var(1, ir.I, 1)
    f = ir.make(op, ir.make("concat", x, x))
    xs, ts = np.array([[0.3], [-1.0]]), np.array([[2.0], [0.5]])
    np.testing.assert_allclose(_eval(jvp(f, {x: t}), [xs, ts]), ts)
    np.testing.assert_allclose(_eval(vjp(f, x, t), [xs, ts]), ts)


def test_jvp_of_a_jvp_is_the_second_derivative():
    """Any order: d^2/dh^2 sin(x + h t) = -sin(x) t^2."""
    x, t = ir.var(0, ir.I, 1), ir.var(1, ir.I, 1)
    second = jvp(jvp(ir.make("sin", x), {x: t}), {x: t})
    xs, ts = np.array([[0.3], [1.2]]), np.array([[0.5], [-2.0]])
    got = _eval(second, [xs, ts])
    np.testing.assert_allclose(got, -np.sin(xs) * ts**2)


# ----------------------------------------------------------------------------
# Random formulas (tests/test_properties.py's strategy)
# ----------------------------------------------------------------------------


def _grid_case(case, seed: int):
    """The case's formula on its (M, N) grid: values and tangents of its array
    variables broadcast as (M, 1, D), (1, N, D), (1, 1, D); numbers bound to
    parameters stay fixed."""
    arrays = {k: np.asarray(a, dtype=np.float64) for k, a in case.data().items()}
    lazy = case.lazy(arrays=arrays)
    f, bound, cats = lazy.formula, lazy.variables, lazy.cats
    rng = np.random.default_rng(seed)
    values, tangents, free = {}, {}, set()
    for k, (a, c) in enumerate(zip(bound, cats)):
        a = np.asarray(a, dtype=np.float64)
        if c == ir.P:
            shaped = a.reshape(1, 1, -1)
        else:
            shaped = a[:, None, :] if c == ir.I else a[None, :, :]
        values[k] = shaped
        if isinstance(bound[k], np.ndarray):
            free.add(k)
            tangents[k] = rng.standard_normal(shaped.shape)
    return f, values, tangents, free


@given(case=cases(lib="numpy"), seed=st.integers(0, 2**16))
def test_random_formula_jvp_is_the_transpose_of_its_vjp(case, seed):
    f, values, tangents, free = _grid_case(case, seed)
    tvars = _tangent_vars(f, lambda v: v.attrs[0] in free)
    u = np.random.default_rng(seed + 1).standard_normal((case.M, case.N, f.dim))
    lhs, rhs, scale = _transposition_sides(f, values, tangents, tvars, u)
    assert abs(lhs - rhs) <= 1e-10 * (1 + scale)


@given(case=cases(lib="numpy"), seed=st.integers(0, 2**16))
def test_random_formula_jvp_matches_finite_differences(case, seed):
    """Pairs where the formula is not smooth at the scale of the step (a kink
    of clamp / abs / relu / ifelse / max within ``H``: the one-sided
    differences disagree, or the central ones with steps H and H/4) are left
    out; they are rare off the grid."""
    f, values, tangents, free = _grid_case(case, seed)
    tvars = _tangent_vars(f, lambda v: v.attrs[0] in free)
    shape = (case.M, case.N, f.dim)
    got = np.broadcast_to(_eval(jvp(f, tvars), _leaves(values, tangents, tvars)), shape)
    at = {h: np.broadcast_to(_shifted(f, values, tangents, h), shape) for h in (-H, 0, H)}
    want = (at[H] - at[-H]) / (2 * H)
    finer = np.broadcast_to(_finite_difference(f, values, tangents, H / 4), shape)
    # rounding of F in the differences: about eps |F| / step
    tol = 1e-5 * (1 + np.abs(want)) + 1e-8 * np.abs(at[0])
    one_sided = (at[H] - at[0]) / H - (at[0] - at[-H]) / H
    smooth = (np.abs(want - finer) <= tol) & (np.abs(one_sided) <= 4 * tol)
    if not case.grid:  # grid data sit on kinks often; random data rarely
        assert smooth.mean() >= 0.9
    assert np.all(np.abs(got - want)[smooth] <= tol[smooth])
