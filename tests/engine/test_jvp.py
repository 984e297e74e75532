"""Forward mode on the IR: every op's JVP rule and :func:`grad.jvp` on random
formulas, through the NumPy reference engine, in float64.

Two independent checks:

* against central finite differences of the formula itself (the values),
  wherever the JVP is a derivative: the formula is smooth at the step and
  every op is differentiable at its arguments (at an op's kink the JVP
  composes documented conventions, which need not be a derivative), and
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


def _smooth_profile(at, h: float):
    """Judge ``s -> at(s)`` (an array per step ``s``) at 0 on the scale ``h``.

    Returns (smooth, central difference, its tolerance). A smooth profile
    has ``(at(s) - 2 at(0) + at(-s)) / s = s F'' + O(s^3)``, so that bend
    shrinks 4 times from ``s = h`` to ``h / 4`` however curved ``F`` is; a
    kink at 0 keeps it at its slope jump (where the central differences of
    both steps agree on the mean of the two slopes). A kink or jump strictly
    inside the step makes the central differences with ``h`` and ``h / 4``
    disagree. Rounding of ``F`` in the differences: about eps |F| / step.
    """
    f = {s: at(s) for s in (-h, -h / 4, 0.0, h / 4, h)}
    central = (f[h] - f[-h]) / (2 * h)
    finer = (f[h / 4] - f[-h / 4]) / (h / 2)
    tol = 1e-5 * (1 + np.abs(central)) + 1e-8 * np.abs(f[0.0])

    def bend(s):
        return (f[s] - 2 * f[0.0] + f[-s]) / s

    smooth = (np.abs(central - finer) <= tol) & (np.abs(bend(h / 4) - bend(h) / 4) <= tol)
    return smooth, central, tol


def _ops_differentiable(f: ir.Node, values: dict, free: set, shape, rng) -> np.ndarray:
    """(M, N) mask of the pairs where the chain rule holds at every op of
    ``f``, judged along random moves ``r`` of the variables.

    The JVP composes each op's derivative, with the documented conventions at
    its kinks. At a kink of an inner op (``abs`` at 0, ``clamp`` at a bound,
    a tie of ``min``) the composition need not be a derivative even where
    the formula is smooth along the tangent: ``clamp(|y|, x, x + 1)`` at
    ``y = 0 = x + 1`` is ``x + 1`` along every tangent with ``|ty| > |tx|``,
    but its JVP is ``sign(0) ty = 0``. So each op node must pass
    :func:`_smooth_profile` both moved with the variables (``node(v + s r)``)
    and with its arguments moved to first order (``op(args + s args')``:
    what the chain rule sees), both with the same slope; the last check
    catches a selector that moves to second order only (``ifelse(-x^2, x,
    -x)`` at ``x = 0`` is ``-x``, its JVP ``+t``). Arguments held by a
    locally constant op (``relu`` of a negative) do not move, so the kink of
    ``abs(relu(x))`` at ``x < 0`` is not crossed, as it should not be, and an
    op of arguments tied by the formula (``clamp(x, x, x + 1)``) is smooth.
    """
    ok = np.ones(shape[:2], dtype=bool)
    for _ in range(2):  # a kink seen along no random move: probability 0
        r = {k: rng.standard_normal(values[k].shape) for k in free}
        for node in ir.topological_order(f):
            if node.args and any(v.attrs[0] in free for v in ir.variables(node)):
                good = _chain_rule_holds(node, values, r)
                ok &= np.broadcast_to(good, shape[:2] + good.shape[-1:]).all(axis=-1)
    return ok


def _along(g: ir.Node, values: dict, r: dict):
    """:func:`_smooth_profile` of ``g`` at the variables moved along ``r``."""
    return _smooth_profile(lambda s: _shifted(g, values, r, s), H)


def _chain_rule_holds(node: ir.Node, values: dict, r: dict) -> np.ndarray:
    """Where ``node`` along ``r`` and its op on its arguments moved to first
    order along ``r`` are both smooth, with the same slope."""
    along, slope, tol = _along(node, values, r)
    at = [_eval(a, _leaves(values, {}, {})) for a in node.args]
    slopes = [_along(a, values, r)[1] for a in node.args]

    def first_order(s):
        with np.errstate(all="ignore"):  # out of the op's domain: NaN, not smooth
            return ir.OPS[node.op].numpy(*(a + s * d for a, d in zip(at, slopes)), *node.attrs)

    linear, lin_slope, lin_tol = _smooth_profile(first_order, H)
    return along & linear & (np.abs(slope - lin_slope) <= tol + lin_tol)


def _against_finite_differences(case, seed):
    """(JVP, central differences, tolerance, pairs where they must agree),
    each (M, N, dim): the formula along the tangents is smooth at the step
    (:func:`_smooth_profile`) and every op is differentiable at its
    arguments (:func:`_ops_differentiable`)."""
    f, values, tangents, free = _grid_case(case, seed)
    tvars = _tangent_vars(f, lambda v: v.attrs[0] in free)
    shape = (case.M, case.N, f.dim)
    got = np.broadcast_to(_eval(jvp(f, tvars), _leaves(values, tangents, tvars)), shape)
    smooth, want, tol = _smooth_profile(
        lambda s: np.broadcast_to(_shifted(f, values, tangents, s), shape), H
    )
    rng = np.random.default_rng(seed + 2)
    smooth = smooth & _ops_differentiable(f, values, free, shape, rng)[..., None]
    return got, want, tol, smooth


@given(case=cases(lib="numpy"), seed=st.integers(0, 2**16))
def test_random_formula_jvp_matches_finite_differences(case, seed):
    """Wherever the JVP is a derivative (see :func:`_against_finite_differences`):
    grid data sit on kinks often and are left out there; random data rarely."""
    got, want, tol, smooth = _against_finite_differences(case, seed)
    if not case.grid:
        assert smooth.mean() >= 0.9
    assert np.all(np.abs(got - want)[smooth] <= tol[smooth])


def test_smooth_profile_tells_curvature_from_kinks():
    """Curvature is not a kink (sin(40 x^2) was judged kinked by a one-sided
    difference test); a kink at or within the step, or a jump, is."""
    x = np.linspace(-1, 1, 101)
    assert _smooth_profile(lambda s: np.sin(40 * (x + s) ** 2), H)[0].all()
    near = np.array([0.0, 0.2 * H, 0.7 * H, 2 * H])
    assert _smooth_profile(lambda s: np.abs(near + s), H)[0].tolist() == [0, 0, 0, 1]
    assert not _smooth_profile(lambda s: np.floor(1.0 + s), H)[0]


KINKS = {  # x, y, is the pair checked against finite differences
    "clamp_at_abs_kink": (-1.0, 0.0, False),
    "selector_of_second_order": (0.0, 0.0, False),
    "tie_of_min": (0.5, 0.5, False),
    "arguments_tied": (0.5, 0.0, True),
    "kink_not_crossed": (-0.5, 0.0, True),
}


def _kink_formula(kind: str) -> ir.Node:
    """A formula of x (var 0) and y (var 1) with an inner op on its kink at
    the point of ``KINKS`` (or seemingly so)."""
    x, y, m, one = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1), ir.make, ir.const(1)
    return {
        "clamp_at_abs_kink": lambda: m("clamp", m("abs", y), x, m("add", x, one)),
        "selector_of_second_order": lambda: m("ifelse", m("neg", m("mul", x, x)), x, m("neg", x)),
        "tie_of_min": lambda: m("min", m("concat", x, y)),
        "arguments_tied": lambda: m("clamp", x, x, m("add", x, one)),
        "kink_not_crossed": lambda: m("abs", m("relu", x)),
    }[kind]()


@pytest.mark.parametrize("kind", sorted(KINKS))
def test_chain_rule_judge_at_kinks(kind):
    """Pairs with an op on its kink are left out of the finite-difference
    check, even where the formula is smooth along the tangent (there the JVP,
    a composition of conventions, is no derivative); pairs where the kink is
    not crossed, or the op's arguments move together, are checked, and there
    the JVP is the derivative."""
    f, (xv, yv, checked) = _kink_formula(kind), KINKS[kind]
    values = {0: np.full((1, 1, 1), xv), 1: np.full((1, 1, 1), yv)}
    ok = _ops_differentiable(f, values, {0, 1}, (1, 1, 1), np.random.default_rng(0))
    assert ok.tolist() == [[checked]]
    tangents = {0: np.full((1, 1, 1), 0.7), 1: np.full((1, 1, 1), -1.3)}
    tvars = _tangent_vars(f, lambda v: True)
    got = _eval(jvp(f, tvars), _leaves(values, tangents, tvars))
    smooth, want, _ = _smooth_profile(lambda s: _shifted(f, values, tangents, s), H)
    if checked:
        np.testing.assert_allclose(got, want, rtol=1e-6)
    elif kind != "tie_of_min":  # smooth along this tangent, yet no derivative
        assert smooth.all() and np.abs(got - want).min() > 0.5
