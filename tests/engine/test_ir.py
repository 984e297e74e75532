"""Formula IR: hash-consing, output dims, simplification, rewrites, errors."""

import math
import pickle

import pytest

from kernelsolve.engine import ir

I, J, P = ir.I, ir.J, ir.P  # noqa: E741 (category names of the IR)


def x3():
    return ir.var(0, I, 3)


def y3():
    return ir.var(1, J, 3)


def gaussian(xv, yv, sigma):
    """exp(-|x - y|^2 * sigma), sigma a parameter."""
    d = ir.make("sqdist", xv, yv)
    return ir.make("exp", ir.make("neg", ir.make("mul", d, sigma)))


# ----------------------------------------------------------------------------
# Hash-consing
# ----------------------------------------------------------------------------

BUILDERS = {
    "var": lambda: ir.var(2, J, 4),
    "const": lambda: ir.const(2.5, 3),
    "gaussian": lambda: gaussian(x3(), y3(), ir.var(2, P, 1)),
    "attrs": lambda: ir.make("extract", ir.make("pow", x3(), attrs=(3,)), attrs=(1, 2)),
    "ternary": lambda: ir.make("ifelse", ir.var(0, I, 1), x3(), y3()),
    "float_const": lambda: ir.make("mul", x3(), ir.const(0.1)),
    "nan_const": lambda: ir.make("add", x3(), ir.const(math.nan)),
    "fresh_nan_const": lambda: ir.make("add", x3(), ir.const(float("nan"))),
    "folded_nan": lambda: ir.make(
        "add", x3(), ir.make("sub", ir.const(math.inf), ir.const(math.inf))
    ),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_same_formula_is_same_object(name):
    """Building a formula twice gives the identical (interned) node and key."""
    a = BUILDERS[name]()
    b = BUILDERS[name]()
    assert a is b
    assert a.key == b.key


def test_different_formulas_differ():
    """Structurally different formulas are distinct nodes with distinct keys."""
    nodes = [
        ir.var(0, I, 3),
        ir.var(0, J, 3),
        ir.var(1, I, 3),
        ir.var(0, I, 2),
        ir.const(1, 3),
        ir.const(2, 3),
        ir.const(1, 2),
        ir.const(0.5, 3),
        ir.make("add", x3(), y3()),
        ir.make("add", y3(), x3()),
        ir.make("sub", x3(), y3()),
        ir.make("pow", x3(), attrs=(3,)),
        ir.make("pow", x3(), attrs=(4,)),
        ir.make("extract", x3(), attrs=(0, 2)),
        ir.make("extract", x3(), attrs=(1, 2)),
        gaussian(x3(), y3(), ir.var(2, P, 1)),
        gaussian(y3(), x3(), ir.var(2, P, 1)),
    ]
    assert len({id(n) for n in nodes}) == len(nodes)
    assert len({n.key for n in nodes}) == len(nodes)


def test_key_distinguishes_close_floats():
    """Constants that differ in the last bit have different keys (exact text)."""
    a = ir.make("mul", x3(), ir.const(0.1))
    b = ir.make("mul", x3(), ir.const(math.nextafter(0.1, 1.0)))
    assert a is not b
    assert a.key != b.key


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_pickle_round_trip_reinterns(name):
    """Unpickling a node gives back the very same interned node."""
    node = BUILDERS[name]()
    back = pickle.loads(pickle.dumps(node))
    assert back is node
    assert back.key == node.key


def test_interned_nodes_are_released():
    """The intern table holds nodes weakly: a dropped formula can be rebuilt."""
    key = ir.make("add", ir.var(7, I, 5), ir.var(8, J, 5)).key
    # The node is gone (nothing refers to it); building it again still works.
    assert ir.make("add", ir.var(7, I, 5), ir.var(8, J, 5)).key == key


# ----------------------------------------------------------------------------
# Output dimensions and broadcasting
# ----------------------------------------------------------------------------

BINARY_ELEMENTWISE = ["add", "sub", "mul", "div", "powf", "atan2", "eq", "ne", "lt", "gt"]


@pytest.mark.parametrize("op", BINARY_ELEMENTWISE)
@pytest.mark.parametrize(("da", "db", "out"), [(1, 4, 4), (4, 1, 4), (4, 4, 4), (1, 1, 1)])
def test_elementwise_broadcasts_dim_one(op, da, db, out):
    """Elementwise binary ops broadcast dimension 1 against D."""
    node = ir.make(op, ir.var(0, I, da), ir.var(1, J, db))
    assert node.dim == out


@pytest.mark.parametrize("op", BINARY_ELEMENTWISE)
def test_elementwise_rejects_mismatch(op):
    """D vs E (both > 1) is a ValueError naming the operation."""
    with pytest.raises(ValueError, match=rf"^{op}\b.*\(3, 4\)"):
        ir.make(op, ir.var(0, I, 3), ir.var(1, J, 4))


@pytest.mark.parametrize("op", ["clamp", "ifelse", "mod"])
def test_ternary_broadcast(op):
    """Ternary elementwise ops broadcast and reject D vs E mismatches."""
    node = ir.make(op, ir.var(0, I, 1), ir.var(1, J, 3), ir.var(2, P, 1))
    assert node.dim == 3
    with pytest.raises(ValueError, match=op):
        ir.make(op, ir.var(0, I, 2), ir.var(1, J, 3), ir.var(2, P, 1))


@pytest.mark.parametrize(
    "op", ["neg", "exp", "log", "sqrt", "rsqrt", "square", "abs", "sign", "normalize"]
)
def test_unary_keeps_dim(op):
    """Unary elementwise ops and normalize keep the inner dimension."""
    assert ir.make(op, x3()).dim == 3


@pytest.mark.parametrize("op", ["sum", "max", "min", "argmax", "argmin", "sqnorm2", "norm2"])
def test_inner_reductions_are_scalar(op):
    """Reductions over the inner dimension give dimension 1."""
    assert ir.make(op, x3()).dim == 1


@pytest.mark.parametrize("op", ["scalprod", "sqdist"])
def test_scalprod_sqdist_need_equal_dims(op):
    """scalprod / sqdist: scalar output, equal dims required (no broadcast)."""
    assert ir.make(op, x3(), y3()).dim == 1
    with pytest.raises(ValueError, match=op):
        ir.make(op, x3(), ir.var(1, J, 4))
    with pytest.raises(ValueError, match=op):
        ir.make(op, x3(), ir.var(1, J, 1))


def test_elem_bounds():
    """elem(m) is scalar for 0 <= m < D and an error otherwise."""
    for m in range(3):
        assert ir.make("elem", x3(), attrs=(m,)).dim == 1
    for m in (-1, 3, 10):
        with pytest.raises(ValueError, match="elem"):
            ir.make("elem", x3(), attrs=(m,))


@pytest.mark.parametrize(("start", "d"), [(0, 1), (0, 3), (1, 2), (2, 1)])
def test_extract_in_bounds(start, d):
    """extract(start, d) has dimension d when the slice fits."""
    assert ir.make("extract", x3(), attrs=(start, d)).dim == d


@pytest.mark.parametrize(("start", "d"), [(-1, 1), (0, 0), (0, 4), (2, 2), (3, 1), (1, -1)])
def test_extract_out_of_bounds(start, d):
    """extract rejects slices outside [0, D) and empty slices."""
    with pytest.raises(ValueError, match="extract"):
        ir.make("extract", x3(), attrs=(start, d))


def test_concat_dims_add():
    """concat of dims 3 and 2 has dim 5; of 1 and 1 has dim 2."""
    assert ir.make("concat", x3(), ir.var(1, J, 2)).dim == 5
    assert ir.make("concat", ir.var(0, I, 1), ir.var(1, J, 1)).dim == 2


@pytest.mark.parametrize(("a", "v", "out"), [(6, 3, 2), (6, 2, 3), (4, 4, 1), (5, 1, 5)])
def test_matvecmult_dims(a, v, out):
    """matvecmult(A of dim n*p, v of dim p) has dim n."""
    assert ir.make("matvecmult", ir.var(0, I, a), ir.var(1, J, v)).dim == out


@pytest.mark.parametrize(("a", "v"), [(6, 4), (5, 2), (2, 4)])
def test_matvecmult_divisibility(a, v):
    """matvecmult needs dim(A) to be a multiple of dim(v)."""
    with pytest.raises(ValueError, match="matvecmult"):
        ir.make("matvecmult", ir.var(0, I, a), ir.var(1, J, v))


@pytest.mark.parametrize(("v", "a", "out"), [(3, 6, 2), (2, 6, 3), (4, 4, 1), (1, 5, 5)])
def test_vecmatmult_dims(v, a, out):
    """vecmatmult(v of dim n, A of dim n*p) has dim p."""
    assert ir.make("vecmatmult", ir.var(0, I, v), ir.var(1, J, a)).dim == out


@pytest.mark.parametrize(("v", "a"), [(4, 6), (2, 5), (4, 2)])
def test_vecmatmult_divisibility(v, a):
    """vecmatmult needs dim(A) to be a multiple of dim(v)."""
    with pytest.raises(ValueError, match="vecmatmult"):
        ir.make("vecmatmult", ir.var(0, I, v), ir.var(1, J, a))


def test_tensorprod_dims():
    """tensorprod of dims n and p has dim n*p."""
    assert ir.make("tensorprod", x3(), ir.var(1, J, 2)).dim == 6
    assert ir.make("tensorprod", ir.var(0, I, 1), ir.var(1, J, 4)).dim == 4


@pytest.mark.parametrize("s", [1, 3, 9])
def test_weightedsqnorm_accepted_weights(s):
    """weightedsqnorm accepts weights of dim 1, D and D*D; output scalar."""
    assert ir.make("weightedsqnorm", ir.var(1, P, s), x3()).dim == 1


@pytest.mark.parametrize("s", [2, 4, 6, 8, 27])
def test_weightedsqnorm_rejected_weights(s):
    """Any other weight dimension is a ValueError."""
    with pytest.raises(ValueError, match="weightedsqnorm"):
        ir.make("weightedsqnorm", ir.var(1, P, s), x3())


def test_onehot_needs_scalar():
    """one_hot(D) of a scalar has dim D; of a vector is an error."""
    assert ir.make("onehot", ir.var(0, I, 1), attrs=(5,)).dim == 5
    with pytest.raises(ValueError, match="one_hot"):
        ir.make("onehot", x3(), attrs=(5,))


def test_onehot_needs_positive_dim():
    """one_hot(0) would build a node of inner dimension 0: rejected."""
    with pytest.raises(ValueError):
        ir.make("onehot", ir.var(0, I, 1), attrs=(0,))


# ----------------------------------------------------------------------------
# Simplification
# ----------------------------------------------------------------------------


def test_zero_times_f():
    """0*f and f*0 give the zero constant of the broadcast dim."""
    f = x3()
    assert ir.make("mul", ir.const(0), f) is ir.const(0, 3)
    assert ir.make("mul", f, ir.const(0)) is ir.const(0, 3)
    assert ir.make("mul", ir.const(0, 3), ir.var(1, J, 1)) is ir.const(0, 3)
    assert ir.make("mul", ir.const(0.0), f) is ir.const(0, 3)


def test_one_times_f():
    """1*f and f*1 give f."""
    f = x3()
    assert ir.make("mul", ir.const(1), f) is f
    assert ir.make("mul", f, ir.const(1)) is f
    assert ir.make("mul", ir.const(1, 3), f) is f


def test_one_times_scalar_keeps_broadcast_dim():
    """f(dim 1) * Const(1, dim 3) keeps dim 3: not simplified to f."""
    s = ir.var(0, I, 1)
    for node in (ir.make("mul", s, ir.const(1, 3)), ir.make("mul", ir.const(1, 3), s)):
        assert node.dim == 3
        assert node is not s


def test_add_sub_zero():
    """f+0 -> f, 0+f -> f, f-0 -> f, 0-f -> neg f."""
    f = x3()
    assert ir.make("add", f, ir.const(0)) is f
    assert ir.make("add", ir.const(0), f) is f
    assert ir.make("sub", f, ir.const(0)) is f
    neg = ir.make("sub", ir.const(0), f)
    assert neg is ir.make("neg", f)
    assert neg.op == "neg" and neg.args == (f,)


def test_zero_plus_scalar_keeps_broadcast_dim():
    """Const(0, 3) + f(dim 1) and Const(0, 3) - f(dim 1) keep dim 3."""
    s = ir.var(0, I, 1)
    for node in (
        ir.make("add", ir.const(0, 3), s),
        ir.make("add", s, ir.const(0, 3)),
        ir.make("sub", s, ir.const(0, 3)),
        ir.make("sub", ir.const(0, 3), s),
    ):
        assert node.dim == 3


def test_const_broadcast_into_f():
    """Const(0, 1) + f(dim 3) -> f; Const(1, 1) * f(dim 3) -> f."""
    f = x3()
    assert ir.make("add", ir.const(0, 1), f) is f
    assert ir.make("mul", f, ir.const(1, 1)) is f


def test_double_negation():
    """neg(neg f) -> f."""
    f = x3()
    assert ir.make("neg", ir.make("neg", f)) is f


def test_minus_one_times_f():
    """-1*f -> neg f, and keeps the broadcast dim when f is a scalar."""
    f = x3()
    assert ir.make("mul", ir.const(-1), f) is ir.make("neg", f)
    s = ir.var(0, I, 1)
    assert ir.make("mul", ir.const(-1, 3), s).dim == 3


def test_div_by_one():
    """f/1 -> f."""
    f = x3()
    assert ir.make("div", f, ir.const(1)) is f


def test_zero_over_zero_not_folded_to_zero():
    """0/0 is not simplified to 0 (it is NaN at run time)."""
    node = ir.make("div", ir.const(0), ir.const(0))
    assert not ir.is_const(node, 0)


@pytest.mark.parametrize(
    ("n", "expected_op"), [(1, None), (2, "square"), (-1, "inv"), (0, "const"), (3, "pow")]
)
def test_pow_simplification(n, expected_op):
    """pow(f,1) -> f, pow(f,2) -> square, pow(f,-1) -> inv, pow(f,0) -> 1."""
    f = x3()
    node = ir.make("pow", f, attrs=(n,))
    assert node.dim == 3
    if expected_op is None:
        assert node is f
    else:
        assert node.op == expected_op
    if n == 2:
        assert node is ir.make("square", f)
    if n == -1:
        assert node is ir.make("inv", f)
    if n == 0:
        assert node is ir.const(1, 3)


@pytest.mark.parametrize(
    ("op", "a", "b", "expected"),
    [
        ("add", 2, 3, 5),
        ("add", 0.5, 0.25, 0.75),
        ("sub", 2, 5, -3),
        ("sub", 0.5, 2, -1.5),
        ("mul", 3, 4, 12),
        ("mul", 0.5, 3, 1.5),
        ("div", 3, 4, 0.75),
        ("div", 6, 3, 2),
        ("div", 1, 3, 1 / 3),
    ],
)
def test_binary_constant_folding(op, a, b, expected):
    """add/sub/mul/div of two constants fold to one constant."""
    node = ir.make(op, ir.const(a, 2), ir.const(b, 2))
    assert node is ir.const(expected, 2)


def test_unary_constant_folding():
    """neg and square of constants fold."""
    assert ir.make("neg", ir.const(2.5, 3)) is ir.const(-2.5, 3)
    assert ir.make("square", ir.const(-3)) is ir.const(9)


@pytest.mark.parametrize(("v", "n", "expected"), [(2, 3, 8), (2, -2, 0.25), (-3, 3, -27)])
def test_pow_constant_folding(v, n, expected):
    """pow of a constant folds to a constant."""
    assert ir.make("pow", ir.const(v), attrs=(n,)) is ir.const(expected)


def test_pow_constant_folding_overflow_gives_inf():
    """Folding 10.0 ** 400 gives +inf (as float arithmetic does), not an exception."""
    node = ir.make("pow", ir.const(10.5), attrs=(400,))
    assert node.dim == 1
    assert node.op != "const" or node.attrs[0] == math.inf


def test_folding_broadcasts_constants():
    """Const(2, 1) + Const(3, 4) folds to Const(5, 4)."""
    assert ir.make("add", ir.const(2, 1), ir.const(3, 4)) is ir.const(5, 4)


def test_div_by_zero_const_not_folded():
    """1/0 is not folded at build time (no ZeroDivisionError)."""
    node = ir.make("div", ir.const(1), ir.const(0))
    assert node.op == "div"


def test_pow_zero_negative_not_folded():
    """pow(0, -2) is not folded (no ZeroDivisionError)."""
    node = ir.make("pow", ir.const(0), attrs=(-2,))
    assert node.op != "const"


def test_sum_of_zero():
    """sum(0 vector) is the scalar 0."""
    assert ir.make("sum", ir.const(0, 4)) is ir.const(0, 1)


# ----------------------------------------------------------------------------
# Rewrites and queries
# ----------------------------------------------------------------------------


def _cats(node):
    return sorted((v.attrs[0], v.attrs[1]) for v in ir.variables(node))


def test_variables_sorted_unique():
    """variables() lists each var leaf once, sorted by argument index."""
    a, b, c = ir.var(2, P, 1), ir.var(0, I, 3), ir.var(1, J, 3)
    f = ir.make("mul", gaussian(b, c, a), ir.make("sum", ir.make("add", b, c)))
    assert ir.variables(f) == (b, c, a)
    assert ir.variables(ir.const(1)) == ()


def test_remap_renames_variables():
    """remap renames indices, keeps categories/dims, and is structural."""
    f = gaussian(ir.var(0, I, 3), ir.var(1, J, 3), ir.var(2, P, 1))
    g = ir.remap(f, (4, 0, 7))
    assert g is gaussian(ir.var(4, I, 3), ir.var(0, J, 3), ir.var(7, P, 1))
    assert ir.remap(g, (1, None, None, None, 0, None, None, 2)) is f
    assert ir.remap(f, (0, 1, 2)) is f


def test_swap_ij():
    """swap_ij swaps categories, keeps params; transposing twice is the identity."""
    f = gaussian(ir.var(0, I, 3), ir.var(1, J, 3), ir.var(2, P, 1))
    t = ir.swap_ij(f)
    assert t is gaussian(ir.var(0, J, 3), ir.var(1, I, 3), ir.var(2, P, 1))
    assert _cats(t) == [(0, J), (1, I), (2, P)]
    assert t.dim == f.dim
    assert ir.swap_ij(t) is f


def test_swap_ij_params_only():
    """A formula with only parameters and constants is unchanged by swap_ij."""
    f = ir.make("add", ir.var(0, P, 2), ir.const(1.5, 2))
    assert ir.swap_ij(f) is f


def test_topological_order_children_first_each_once():
    """Every node appears once, after all of its children."""
    xv, yv = x3(), y3()
    d = ir.make("sub", xv, yv)
    f = ir.make("add", ir.make("mul", d, d), ir.make("exp", d))
    order = ir.topological_order(f)
    assert len(order) == len({id(n) for n in order})
    pos = {id(n): k for k, n in enumerate(order)}
    for n in order:
        for a in n.args:
            assert pos[id(a)] < pos[id(n)]
    assert order[-1] is f
    assert list(f.walk()) == list(order)
    assert set(map(id, order)) == {id(n) for n in (xv, yv, d, f, f.args[0], f.args[1])}


def _tree_size(node):
    return 1 + sum(_tree_size(a) for a in node.args)


def test_cse_dag_smaller_than_tree():
    """A repeated subexpression is one shared node: DAG size < tree size."""
    d = ir.make("sqdist", x3(), y3())
    k = ir.make("exp", ir.make("neg", d))
    f = ir.make("add", ir.make("mul", k, d), ir.make("mul", k, k))
    # Building the shared part twice gives the same object.
    assert f.args[0].args[0] is f.args[1].args[0]
    assert ir.count_nodes(f) < _tree_size(f)
    assert ir.count_nodes(f) == len({id(n) for n in ir.topological_order(f)})
    assert ir.count_nodes(f) == 8  # x, y, d, neg, exp, k*d, k*k, add


def _doubling_dag(depth):
    return _doubling_dag_of(ir.var(0, I, 1), depth)


def _doubling_dag_of(f, depth):
    for _ in range(depth):
        f = ir.make("add", f, f)
    return f


def test_doubling_dag_linear_node_count():
    """f_{k+1} = f_k + f_k has depth+1 nodes although the tree has 2^depth leaves."""
    f = _doubling_dag(40)
    assert ir.count_nodes(f) == 41
    g = ir.remap(f, (3,))  # remap and swap_ij walk the DAG, not the tree
    assert ir.count_nodes(g) == 41
    assert ir.swap_ij(g) is _doubling_dag_of(ir.var(3, J, 1), 40)


def test_key_size_linear_in_dag_size():
    """The canonical key of a shared DAG does not blow up exponentially."""
    f = _doubling_dag(18)
    # 19 nodes; a tree-expanded key would hold 2^18 copies of the leaf.
    size, nodes = len(f.key), ir.count_nodes(f)
    assert size < 200 * nodes


def test_deep_formula_no_recursion_limit():
    """3000 nested adds: key, topological_order, swap_ij and remap work."""
    xv, yv = ir.var(0, I, 2), ir.var(1, J, 2)
    f = xv
    for k in range(3000):
        f = ir.make("add", f, yv if k % 2 else ir.const(k + 1, 2))
    order = ir.topological_order(f)
    assert order[-1] is f
    assert len(order) == 3000 + 2 + 1500  # adds, x, y, 1500 distinct constants
    key = f.key
    assert key.startswith("add(add(") and key.count("add(") == 3000
    t = ir.swap_ij(f)
    assert ir.swap_ij(t) is f
    assert ir.remap(f, (1, 0)).dim == 2


# ----------------------------------------------------------------------------
# Bad construction
# ----------------------------------------------------------------------------


def test_unknown_op():
    """An unknown op name is a ValueError naming it."""
    with pytest.raises(ValueError, match="frobnicate"):
        ir.make("frobnicate", x3())


@pytest.mark.parametrize("op", ["var", "const"])
def test_leaf_ops_not_through_make(op):
    """Leaves are built with var()/const(), not make()."""
    with pytest.raises(ValueError, match=op):
        ir.make(op)


@pytest.mark.parametrize(("op", "nargs"), [("add", 1), ("add", 3), ("exp", 2), ("clamp", 2)])
def test_wrong_arity(op, nargs):
    """Wrong number of arguments is a ValueError naming the op and the arity."""
    args = [ir.var(k, I, 1) for k in range(nargs)]
    with pytest.raises(ValueError, match=rf"{op} takes \d arguments, got {nargs}"):
        ir.make(op, *args)


@pytest.mark.parametrize("bad", [1.0, 2, "x", None, [1.0]])
def test_non_node_arguments(bad):
    """Arguments that are not IR nodes are a TypeError."""
    with pytest.raises(TypeError, match="IR nodes"):
        ir.make("add", x3(), bad)


@pytest.mark.parametrize("dim", [0, -1])
def test_var_bad_dim(dim):
    """var with inner dimension < 1 is a ValueError."""
    with pytest.raises(ValueError, match="dimension"):
        ir.var(0, I, dim)


@pytest.mark.parametrize("cat", [3, -1, "i", None])
def test_var_bad_cat(cat):
    """var with a category other than I/J/P is a ValueError."""
    with pytest.raises(ValueError, match="cat"):
        ir.var(0, cat, 2)


@pytest.mark.parametrize("value", ["1", None, True, [1.0]])
def test_const_bad_value(value):
    """const of a non-number (or a bool) is a TypeError."""
    with pytest.raises(TypeError, match="const"):
        ir.const(value)
