"""The formula parser: precedence, aliases, errors with a caret, and random
formulas against Python's own reading of the same text on LazyTensors."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kernelsolve import LazyTensor, Vi, Vj
from kernelsolve.engine import ir
from kernelsolve.keops.formula import FormulaError, parse, parse_formulas
from kernelsolve.keops.numpy import Genred

AL = ["x = Vi(3)", "y = Vj(3)", "u = Vi(1)", "w = Vj(1)"]


@pytest.mark.parametrize(
    "text,same",
    [
        ("x + y * x", "x + (y * x)"),
        ("x - y - x", "(x - y) - x"),
        ("x / y / x", "(x / y) / x"),
        ("-x**2", "-(x**2)"),
        ("x**2**1", "x**(2**1)"),
        ("-2**2 * u", "-4 * u"),
        ("(x|y) + u", "Scalprod(x, y) + u"),
        ("x|y + x", "x|(y + x)"),
        ("u < w + 1", "u < (w + 1)"),
        ("x * y | y", "(x * y) | y"),
        ("2 * 3 / 4 * u", "1.5 * u"),
        ("x**-1", "Inv(x)"),
        ("x**0.5", "Powf(x, 0.5)"),
        ("u >= w", "GreaterOrEqual(u, w)"),
        ("+u", "u"),
        ("- - u", "u"),
        ("IntCst(0) + x", "x"),
        ("  Exp( x )\t", "Exp(x)"),
        ("1e-1 * u", "0.1 * u"),
    ],
)
def test_precedence_and_literals(text, same):
    assert parse(text, AL) is parse(same, AL)


def test_aliases_with_and_without_positions():
    implicit = parse("Square(p - a) * Exp(x + y)", ["p=Pm(1)", "a=Vj(1)", "x=Vi(3)", "y=Vj(3)"])
    explicit = parse(
        "Square(p - a) * Exp(x + y)", ["p = Pm(0, 1)", "a=Vj(1,1)", "x=Vi(2,3)", "y=Vj(3,3)"]
    )
    mixed = parse(
        "Square(p - a) * Exp(x + y)", ["p = Pm(0,1)", "a=Vj(1)", "x=Var(2,3,0)", "y=Vy(3)"]
    )
    old = parse("Square(Pm(0,1) - a) * Exp(x + y)", ["a=Vj(1,1)", "x=Vx(2,3)", "y=Vj(3,3)"])
    assert implicit is explicit is mixed is old
    v = ir.variables(implicit)
    assert [n.attrs for n in v] == [(0, 2, 1), (1, 1, 1), (2, 0, 3), (3, 1, 3)]


def test_signature_counts_vars_written_in_the_text():
    (node,), sig = parse_formulas(
        ("Grad(Grad(x + Var(1,3,1), x, Var(2,3,0)), x, Var(3,3,0))",), ["x=Vi(0,3)"]
    )
    assert node is ir.const(0, 3)  # simplified away, yet 4 arguments as in pykeops
    assert sig.cats == (0, 1, 0, 0) and sig.dims == (3, 3, 3, 3)


def _caret(err: FormulaError) -> tuple[str, int, int]:
    _, text, marks = str(err).splitlines()
    start = marks.index("^")
    return text.strip(), start - 4, marks.count("^")


@pytest.mark.parametrize(
    "formula,offset,width,words",
    [
        ("Exp(x", 5, 1, "expected ')'"),
        ("Exp(x))", 6, 1, "unexpected ')'"),
        ("Fooo(x)", 0, 4, "unknown function 'Fooo'"),
        ("x + z", 4, 1, "unknown name 'z'"),
        ("Elem(x, y)", 8, 1, "integer literal"),
        ("x + Vi(0,2)", 2, 1, "do not broadcast"),
        ("SqDist(x, u)", 0, 6, "same inner dimension"),
        ("u < w < u", 6, 1, "chained"),
        ("x $ y", 2, 1, "unexpected character"),
        ("Pow(x)", 0, 3, "takes 2 arguments"),
        ("Round(x, 1, 2)", 0, 5, "takes 1 to 2 arguments"),
        ("Exp", 0, 3, "is a function"),
        ("Extract(x, [1], 2)", 11, 1, "integer literal"),
        ("x + [1, 2]", 4, 1, "not a formula"),
        ("Elem(x, 5)", 0, 4, "Elem"),
        ("u / 0 + 1 / 0", 10, 1, "division by zero"),
        ("Grad(x, x + y, x)", 0, 4, "must be a variable"),
    ],
)
def test_errors_point_at_the_token(formula, offset, width, words):
    with pytest.raises(FormulaError) as info:
        parse(formula, AL)
    text, start, count = _caret(info.value)
    assert text == formula
    assert (start, count) == (offset, width), str(info.value)
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "aliases,words",
    [
        (["x = Vi(3)", "x = Vj(3)"], "declared twice"),
        (["x = Vi(0, 3)", "y = Vj(0, 3)"], "position 0 is declared twice"),
        (["x = Vk(3)"], "expected Vi(...)"),
        (["x = Vi(3"], "expected ',' or ')'"),
        (["x = Vi(0)"], "dimension must be >= 1"),
        (["x = Var(0, 3)"], "Var takes"),
        (["x = Vi(0, 3)", "y = Vj(2, 3)"], "neither declared nor used"),
    ],
)
def test_bad_aliases(aliases, words):
    with pytest.raises(FormulaError, match=r"(?s).*" + re.escape(words)):
        parse_formulas(("x",), aliases)


def test_conflicting_use_of_a_position():
    with pytest.raises(FormulaError, match="used as Var"):
        parse("x + Var(0,3,1)", ["x = Vi(3)"])


def test_deep_nesting_is_a_formula_error():
    with pytest.raises(FormulaError, match="nested too deeply"):
        parse("(" * 5000 + "x" + ")" * 5000, AL)
    deep = "Exp(" * 30 + "u" + ")" * 30  # reasonable depths parse
    assert parse(deep, AL).dim == 1


def test_never_evaluates_python():
    with pytest.raises(FormulaError):
        parse("__import__('os').getcwd()", AL)
    with pytest.raises(FormulaError):
        parse("x.__class__", AL)


# -- random formulas: our parser against Python's reading of the same text ---------

rng = np.random.default_rng(1)
xs, ys = rng.uniform(0.1, 0.9, (6, 3)), rng.uniform(0.1, 0.9, (4, 3))
us, ws = rng.uniform(0.1, 0.9, (6, 1)), rng.uniform(0.1, 0.9, (4, 1))
LAZY = {"x": Vi(xs), "y": Vj(ys), "u": Vi(us), "w": Vj(ws)}


def _lt(t):
    return t if isinstance(t, LazyTensor) else LazyTensor(float(t))


FUNCTIONS = {"Sin": lambda t: _lt(t).sin(), "Cos": lambda t: _lt(t).cos(), "Abs": abs}


@st.composite
def formulas(draw, depth=3):
    """Syntactically valid text of the shared subset of Python and pykeops."""

    def operand(d):
        choices = ["leaf", "number"] + (["neg", "paren", "call", "power"] if d > 0 else [])
        kind = draw(st.sampled_from(choices))
        if kind == "leaf":
            return draw(st.sampled_from(["x", "y", "u", "w"]))
        if kind == "number":
            return draw(st.sampled_from(["2", "3", "0.5", "1.25"]))
        if kind == "neg":
            return "-" + operand(d - 1)
        if kind == "paren":
            return "(" + expr(d - 1) + ")"
        if kind == "call":
            return draw(st.sampled_from(sorted(FUNCTIONS))) + "(" + expr(d - 1) + ")"
        # a parenthesised base: no right-associative towers such as 2**2**3**3,
        # whose value overflows the oracle's Python floats
        return "(" + operand(d - 1) + ")**" + draw(st.sampled_from(["2", "3"]))

    def expr(d):
        text = operand(d)
        for _ in range(draw(st.integers(0, 3))):
            op = draw(st.sampled_from([" + ", " - ", " * ", "*", " / "]))
            rhs = draw(st.sampled_from(["2", "4"])) if op == " / " else operand(d)
            text += op + rhs
        return text

    return expr(depth)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(formulas())
def test_random_formulas_match_python_reading(text):
    expected = eval(text, {"__builtins__": {}}, {**LAZY, **FUNCTIONS})  # the test's oracle
    assume(isinstance(expected, LazyTensor))
    one = LAZY["u"] * 0 + LAZY["w"] * 0 + 1  # the full M x N grid
    want = (expected * one).sum(1, backend="reference")
    got = Genred(text, AL, reduction_op="Sum", axis=1)(xs, ys, us, ws, backend="reference")
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
