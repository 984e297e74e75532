"""One op, one place: every operation of the IR is one declaration
(kernelsolve.engine.ops) with all of its rules, and a LazyTensor method builds it.

These tests fail for an op added without a dimension rule, a C rendering, a
NumPy evaluation, a VJP rule, a JVP rule, an interval rule or a LazyTensor
method; the per-op checks of each rule's *values* are in test_ops.py (C and
NumPy against dense NumPy), test_grad.py (VJP against torch), test_jvp.py
(JVP against finite differences and the VJP), test_bounds.py (intervals
against the NumPy values over boxes) and test_codegen.py (rendering).
"""

from __future__ import annotations

import numpy as np
import pytest

from kernelsolve import LazyTensor, Vi, Vj
from kernelsolve.engine import ir
from kernelsolve.engine.backends import reference
from kernelsolve.engine.codegen.dialect import CPU
from kernelsolve.engine.codegen.formula import render_formula
from kernelsolve.engine.ops.base import Op, declare, no_gradient, no_tangent

OP_NAMES = sorted(ir.OPS)


def test_the_registry_holds_every_op():
    assert len(OP_NAMES) >= 50
    assert "var" not in ir.OPS and "const" not in ir.OPS  # leaves, not operations


@pytest.mark.parametrize("name", OP_NAMES)
def test_op_declares_every_rule(name):
    op = ir.OPS[name]
    assert isinstance(op, Op) and op.name == name
    assert op.arity in (1, 2, 3)
    for rule in (op.dim, op.c, op.numpy, op.vjp, op.jvp, op.interval):
        assert callable(rule)
    assert op.doc, f"{name}: no doc (the LazyTensor method's docstring)"
    assert hasattr(LazyTensor, op.method), f"{name}: no LazyTensor.{op.method}"


# How each op's LazyTensor method is called: x, y of inner dim 3 (i and j),
# s a scalar i-variable, m a 2x3 matrix (dim 6) j-variable. Adding an op
# means adding its call here.
def _operands():
    rng = np.random.default_rng(0)
    x, y = Vi(rng.random((4, 3))), Vj(rng.random((5, 3)))
    s, m = Vi(rng.random((4, 1))), Vj(rng.random((5, 6)))
    return x, y, s, m


CALLS = {
    "neg": lambda x, y, s, m: -x,
    "pow": lambda x, y, s, m: x**3,
    "round": lambda x, y, s, m: x.round(2),
    "clampint": lambda x, y, s, m: x.clamp(0, 1),
    "add": lambda x, y, s, m: x + y,
    "sub": lambda x, y, s, m: x - y,
    "mul": lambda x, y, s, m: x * y,
    "div": lambda x, y, s, m: x / y,
    "powf": lambda x, y, s, m: x**y,
    "atan2": lambda x, y, s, m: x.atan2(y),
    "eq": lambda x, y, s, m: x == y,
    "ne": lambda x, y, s, m: x != y,
    "lt": lambda x, y, s, m: x < y,
    "le": lambda x, y, s, m: x <= y,
    "gt": lambda x, y, s, m: x > y,
    "ge": lambda x, y, s, m: x >= y,
    "clamp": lambda x, y, s, m: x.clamp(y, y + 1.0),
    "ifelse": lambda x, y, s, m: s.ifelse(x, y),
    "mod": lambda x, y, s, m: x.mod(y, s),
    "scalprod": lambda x, y, s, m: x | y,
    "sqdist": lambda x, y, s, m: x.sqdist(y),
    "weightedsqnorm": lambda x, y, s, m: x.weightedsqnorm(s),
    "elem": lambda x, y, s, m: x.elem(1),
    "extract": lambda x, y, s, m: x.extract(1, 2),
    "concat": lambda x, y, s, m: x.concat(y),
    "matvecmult": lambda x, y, s, m: m.matvecmult(x),
    "vecmatmult": lambda x, y, s, m: x.extract(0, 2).vecmatmult(m),
    "tensorprod": lambda x, y, s, m: x.tensorprod(y),
    "onehot": lambda x, y, s, m: s.one_hot(3),
    # complex ops (engine/ops/complex.py): on exp(1j x), a complex LazyTensor
    "real2complex": lambda x, y, s, m: x.real2complex(),
    "imag2complex": lambda x, y, s, m: x.imag2complex(),
    "exp1j": lambda x, y, s, m: x.exp1j(),
    "conj": lambda x, y, s, m: x.exp1j().conj(),
    "complexreal": lambda x, y, s, m: x.exp1j().real,
    "compleximag": lambda x, y, s, m: x.exp1j().imag,
    "complexabs": lambda x, y, s, m: x.exp1j().abs(),
    "complexangle": lambda x, y, s, m: x.exp1j().angle(),
    "complexexp": lambda x, y, s, m: x.imag2complex().exp(),
    "complexsum": lambda x, y, s, m: x.exp1j().sum(-1),
    "complexmult": lambda x, y, s, m: x.exp1j() * y.exp1j(),
    "complexadd": lambda x, y, s, m: x.exp1j() + y,
    "complexsub": lambda x, y, s, m: x.exp1j() - y,
    "complexdiv": lambda x, y, s, m: x.exp1j() / y.exp1j(),
    "complexrealscal": lambda x, y, s, m: x.exp1j() * s,
    "tensordot": lambda x, y, s, m: m.keops_tensordot(x, (2, 3), (3,), (1,), (0,)),
}


@pytest.mark.parametrize("name", OP_NAMES)
def test_the_lazytensor_method_builds_the_op(name):
    """``op.method`` applied to LazyTensors gives a formula whose root is the op
    (unary ops without attributes: called with no argument)."""
    op = ir.OPS[name]
    x, y, s, m = _operands()
    if name in CALLS:
        out = CALLS[name](x, y, s, m)
    else:
        assert op.arity == 1 and not op.nattrs, f"{name}: add its call to CALLS"
        out = getattr(x, op.method)()
    assert isinstance(out, LazyTensor)
    assert out.formula.op == name


@pytest.mark.parametrize("name", OP_NAMES)
def test_every_rule_runs_on_the_op(name):
    """The C, NumPy, VJP, JVP and interval rules all accept the op as the
    LazyTensor method builds it and give results of the op's dimension (the
    values are checked elsewhere, see the module docstring)."""
    x, y, s, m = _operands()
    call = CALLS.get(name, lambda x, y, s, m: getattr(x, ir.OPS[name].method)())
    f = call(x, y, s, m).formula
    _, (coords,) = render_formula([f], "double", CPU, lambda v: [f"a{v.attrs[0]}"] * v.dim)
    assert len(coords) == f.dim
    dims = {v.attrs[0]: v.attrs[2] for v in ir.variables(f)}
    leaves = [np.full((2, dims.get(k, 1)), 0.5) for k in range(max(dims) + 1)]
    value = reference.evaluate(f, leaves, np.float64)
    assert value.shape == (2, f.dim)
    points = [reference.evaluate(a, leaves, np.float64) for a in f.args]
    lo, hi, _ = np.broadcast_arrays(
        *ir.OPS[name].interval(*[(p, p) for p in points], *f.attrs), value
    )
    assert lo.shape == hi.shape == (2, f.dim)
    assert ((lo <= value) & (value <= hi)).all()  # point boxes: the value itself
    contributions = ir.OPS[name].vjp(f, ir.const(1, f.dim), *f.args)
    assert len(contributions) == len(f.args)
    assert all(c is None or isinstance(c, ir.Node) for c in contributions)
    tangents = tuple(ir.const(1, a.dim) for a in f.args)
    t = ir.OPS[name].jvp(f, tangents, *f.args)
    assert t is None or (isinstance(t, ir.Node) and t.dim in (1, f.dim))
    zero = ir.OPS[name].jvp(f, (None,) * len(f.args), *f.args)  # all tangents zero
    assert zero is None or ir.is_const(zero, 0)


def test_declaring_an_op_twice_or_without_a_rule_fails():
    exp = ir.OPS["exp"]
    with pytest.raises(ValueError, match="already declared"):
        declare(exp)
    incomplete = Op(
        "nothing",
        1,
        exp.dim,
        exp.c,
        None,
        no_gradient,
        "nothing",
        jvp=no_tangent,
        interval=exp.interval,
    )
    with pytest.raises(TypeError, match="missing rule"):
        declare(incomplete)
    assert "nothing" not in ir.OPS


def test_declaring_an_op_without_a_jvp_or_an_interval_rule_fails():
    exp = ir.OPS["exp"]
    rules = (exp.dim, exp.c, exp.numpy, exp.vjp, "nothing")
    without_jvp = Op("nothing", 1, *rules, interval=exp.interval)
    with pytest.raises(TypeError, match=r"missing rule\(s\) \['jvp'\]"):
        declare(without_jvp)
    without_interval = Op("nothing", 1, *rules, jvp=exp.jvp)
    with pytest.raises(TypeError, match=r"missing rule\(s\) \['interval'\]"):
        declare(without_interval)
    assert "nothing" not in ir.OPS
