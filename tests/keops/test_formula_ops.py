"""Every function of the formula language against the LazyTensor formula it
stands for, both reduced by the NumPy reference engine."""

from __future__ import annotations

import numpy as np
import pytest

from kernelsolve import LazyTensor, Pm, Vi, Vj
from kernelsolve.keops.formula import BUILDERS
from kernelsolve.keops.numpy import Genred

rng = np.random.default_rng(0)
M, N = 7, 5
x, y = rng.uniform(0.1, 0.9, (M, 3)), rng.uniform(0.1, 0.9, (N, 3))
u, w = rng.uniform(0.1, 0.9, (M, 1)), rng.uniform(0.1, 0.9, (N, 1))
p, q = np.array([0.7]), rng.uniform(0.1, 0.9, 9)
ALIASES = ["x = Vi(3)", "y = Vj(3)", "u = Vi(1)", "w = Vj(1)", "p = Pm(1)", "q = Pm(9)"]
ARGS = (x, y, u, w, p, q)
X, Y, U, W, P, Q = Vi(x), Vj(y), Vi(u), Vj(w), Pm(p), Pm(q)


def _unit(k: int) -> LazyTensor:
    return Pm([1.0 if i == k else 0.0 for i in range(3)])


_UNARY_POSITIVE = {  # on x * y in (0.01, 0.81)
    "Exp": "exp", "Log": "log", "Sin": "sin", "Cos": "cos", "Tan": "tan", "Asin": "asin",
    "Acos": "acos", "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh", "Tanh": "tanh",
    "Sqrt": "sqrt", "Rsqrt": "rsqrt", "Square": "square", "Inv": "inv", "XLogX": "xlogx",
    "SinXDivX": "sinxdivx",
}  # fmt: skip
_UNARY_SIGNED = {  # on x - y, both signs
    "Abs": "abs", "Sign": "sign", "Step": "step", "ReLU": "relu", "ReLu": "relu",
    "Floor": "floor", "Minus": "__neg__", "Sum": "sum", "SqNorm2": "sqnorm2", "Norm2": "norm2",
    "Normalize": "normalize",
}  # fmt: skip

CASES: dict[str, list[tuple[str, object]]] = {
    "Var": [("Var(0,3,0) + Var(1,3,1)", lambda: X + Y)],
    "Vi": [("Vi(0,3) - Vj(1,3)", lambda: X - Y)],
    "Vj": [("Vj(1,3) * u", lambda: Y * U)],
    "Pm": [("Pm(4,1) * u", lambda: P * U)],
    "IntCst": [("IntCst(3) * u", lambda: 3 * U)],
    "RatCst": [("RatCst(2, 8) * u", lambda: 0.25 * U), ("RatCst(4, 2) * u", lambda: 2 * U)],
    "IntInv": [("IntInv(2) * u", lambda: 0.5 * U)],
    "Zero": [("Zero(3) + x", lambda: X)],
    "Add": [("Add(x, y)", lambda: X + Y)],
    "Subtract": [("Subtract(x, w)", lambda: X - W)],
    "Mult": [("Mult(x, y)", lambda: X * Y)],
    "Divide": [("Divide(x, y)", lambda: X / Y)],
    "Scalprod": [("Scalprod(x, y)", lambda: X | Y)],
    **{k: [(f"{k}(x * y)", lambda m=m: getattr(X * Y, m)())] for k, m in _UNARY_POSITIVE.items()},
    **{k: [(f"{k}(x - y)", lambda m=m: getattr(X - Y, m)())] for k, m in _UNARY_SIGNED.items()},
    "Sinc": [("Sinc(x - y)", lambda: (X - Y).sinc())],
    "Pow": [("Pow(x - y, 3)", lambda: (X - Y) ** 3), ("Pow(x, -2)", lambda: X**-2)],
    "Powf": [("Powf(x * y, u)", lambda: (X * Y) ** U)],
    "Atan2": [("Atan2(x - y, u)", lambda: (X - Y).atan2(U))],
    "Round": [
        ("Round(10 * x, 1)", lambda: (10 * X).round(1)),
        ("Round(3*x)", lambda: (3 * X).round()),
    ],
    "Clamp": [("Clamp(x - y, u - 1, w)", lambda: (X - Y).clamp(U - 1, W))],
    "ClampInt": [("ClampInt(10 * (x - y), -2, 3)", lambda: (10 * (X - Y)).clamp(-2, 3))],
    "IfElse": [("IfElse(x - y, x, y)", lambda: (X - Y).ifelse(X, Y))],
    "Mod": [
        ("Mod(10 * x, 3, u)", lambda: (10 * X).mod(3, U)),
        ("Mod(10 * x, 3)", lambda: (10 * X).mod(3)),
    ],
    "Equal": [("Equal(Floor(3*x), Floor(3*y))", lambda: (3 * X).floor() == (3 * Y).floor())],
    "NotEqual": [("NotEqual(Floor(3*x), Floor(3*y))", lambda: (3 * X).floor() != (3 * Y).floor())],
    "LessThan": [("LessThan(x, y)", lambda: X < Y)],
    "LessOrEqual": [("LessOrEqual(x, y)", lambda: X <= Y)],
    "GreaterThan": [("GreaterThan(x, y)", lambda: X > Y)],
    "GreaterOrEqual": [("GreaterOrEqual(x, y)", lambda: X >= Y)],
    "SumT": [("SumT(u, 3) + x", lambda: U + X)],
    "Min": [("Min(x - y)", lambda: (X - Y).min(-1))],
    "Max": [("Max(x - y)", lambda: (X - Y).max(-1))],
    "ArgMin": [("ArgMin(x - y)", lambda: (X - Y).argmin(-1))],
    "ArgMax": [("ArgMax(x - y)", lambda: (X - Y).argmax(-1))],
    "SqDist": [("SqDist(x, y)", lambda: X.sqdist(Y))],
    "WeightedSqNorm": [("WeightedSqNorm(q, x - y)", lambda: (X - Y).weightedsqnorm(Q))],
    "SqNormIso": [("SqNormIso(p, x)", lambda: X.weightedsqnorm(P))],
    "SqNormDiag": [("SqNormDiag(y, x)", lambda: X.weightedsqnorm(Y))],
    "SymSqNorm": [("SymSqNorm(q, x)", lambda: X.weightedsqnorm(Q))],
    "WeightedSqDist": [("WeightedSqDist(y, x, y)", lambda: X.weightedsqdist(Y, Y))],
    "Elem": [("Elem(x, 1)", lambda: X.elem(1))],
    "ElemT": [("ElemT(u, 3, 1) * x", lambda: _unit(1) * U * X)],
    "Extract": [("Extract(x, 1, 2)", lambda: X.extract(1, 2))],
    "ExtractT": [("ExtractT(x, 1, 5)", lambda: LazyTensor.concatenate((Pm([0.0]), X, Pm([0.0]))))],
    "Concat": [("Concat(x, y, u)", lambda: X.concat(Y).concat(U))],
    "OneHot": [("OneHot(Floor(3 * u), 3)", lambda: (3 * U).floor().one_hot(3))],
    "MatVecMult": [("MatVecMult(q, x)", lambda: Q.matvecmult(X))],
    "VecMatMult": [("VecMatMult(x, q)", lambda: X.vecmatmult(Q))],
    "TensorProd": [("TensorProd(x, y)", lambda: X.tensorprod(Y))],
    "Grad": [("Grad(SqDist(x, y), x, u)", lambda: X.sqdist(Y).grad(X, U))],
    "GradFromPos": [
        ("GradFromPos(Exp(-SqDist(x, y)), 1, u)", lambda: (-X.sqdist(Y)).exp().grad(Y, U))
    ],
    "Diff": [("Diff(SqDist(x, y), x, y)", lambda: 2 * ((X - Y) | Y))],
    "Divergence": [("Divergence(x * y, x)", lambda: Y.sum(-1))],
    "Laplacian": [("Laplacian(SqNorm2(x) * w, x)", lambda: 6 * W)],
    "GradMatrix": [
        (
            "GradMatrix(x * y, x)",
            lambda: LazyTensor.concatenate([Y[k] * _unit(k) for k in range(3)]),
        )
    ],
}

# complex formulas: interleaved (re, im) pairs in Genred, ComplexLazyTensor on the other side
_Z1 = "(Real2Complex(x) + Imag2Complex(y))"
_Z2 = "ComplexExp1j(x - y)"


def _z1():
    return X.real2complex() + Y.imag2complex()


def _z2():
    return (X - Y).exp1j()


CASES.update(
    {
        "TensorDot": [
            ("TensorDot(q, x, [3, 3], [3], [1], [0])", lambda: Q.matvecmult(X)),
            ("TensorDot(q, q, [3, 3], [3, 3], [1], [0], [1, 0])", lambda: _matmul_t(Q, Q)),
        ],
        "Kron": [("Kron(x, y, [3], [3])", lambda: X.tensorprod(Y))],
        "Real2Complex": [("Real2Complex(x)", lambda: X.real2complex())],
        "Imag2Complex": [("Imag2Complex(y)", lambda: Y.imag2complex())],
        "ComplexExp1j": [(_Z2, _z2)],
        "Conj": [(f"Conj({_Z1})", lambda: _z1().conj())],
        "ComplexReal": [(f"ComplexReal({_Z2})", lambda: _z2().real)],
        "ComplexImag": [(f"ComplexImag({_Z2})", lambda: _z2().imag)],
        "ComplexAbs": [(f"ComplexAbs({_Z1})", lambda: _z1().abs())],
        "ComplexSquareAbs": [(f"ComplexSquareAbs({_Z1})", lambda: _z1().abs() ** 2)],
        "ComplexAngle": [(f"ComplexAngle({_Z1})", lambda: _z1().angle())],
        "ComplexExp": [(f"ComplexExp({_Z1})", lambda: _z1().exp())],
        "ComplexSum": [(f"ComplexSum({_Z1})", lambda: _z1().sum(-1))],
        "ComplexSumT": [
            (f"ComplexSumT(ComplexSum({_Z1}), 6)", lambda: _z1().sum(-1) * Pm([1.0] * 3))
        ],
        "ComplexMult": [(f"ComplexMult({_Z1}, {_Z2})", lambda: _z1() * _z2())],
        "ComplexAdd": [(f"ComplexAdd({_Z1}, {_Z2})", lambda: _z1() + _z2())],
        "ComplexSubtract": [(f"ComplexSubtract({_Z1}, {_Z2})", lambda: _z1() - _z2())],
        "ComplexDivide": [(f"ComplexDivide({_Z1}, {_Z2})", lambda: _z1() / _z2())],
        "ComplexRealScal": [(f"ComplexRealScal(u, {_Z1})", lambda: U * _z1())],
    }
)


def _matmul_t(A: LazyTensor, B: LazyTensor) -> LazyTensor:
    # (A B)^T for 3 x 3 row-major matrices, coordinate by coordinate
    def entry(i: int, j: int) -> LazyTensor:
        terms = [A[3 * i + k] * B[3 * k + j] for k in range(3)]
        return terms[0] + terms[1] + terms[2]

    return LazyTensor.concatenate([entry(i, j) for j in range(3) for i in range(3)])


def _reference(lazy: LazyTensor) -> np.ndarray:
    # every case reduces over the same M x N grid, whichever variables it uses
    one = U * 0 + W * 0 + 1
    out = (lazy * one).sum(1, backend="reference")
    # Genred returns a complex result as interleaved real and imaginary parts
    return out.view(np.float64) if np.iscomplexobj(out) else out


def test_every_function_has_a_case():
    assert sorted(BUILDERS) == sorted(CASES)


@pytest.mark.parametrize(
    "formula,lazy",
    [pytest.param(f, lazy, id=f) for cases in CASES.values() for f, lazy in cases],
)
def test_function_matches_lazytensor(formula, lazy):
    got = Genred(formula, ALIASES, reduction_op="Sum", axis=1)(*ARGS, backend="reference")
    np.testing.assert_allclose(got, _reference(lazy()), rtol=1e-12, atol=1e-12)


def test_grad_without_cotangent_adds_an_argument():
    # pykeops: the cotangent is a new variable after the formula's, of the other category
    g = Genred("Grad(SqDist(x, y), x)", ["x = Vi(3)", "y = Vj(3)"], reduction_op="Sum", axis=1)
    assert g.nargs == 3 and g.signature.cats[2] == 1
    e = rng.random((N, 1))
    got = g(x, y, e, backend="reference")
    expected = X.sqdist(Y).grad(X, Vj(e)).sum(1, backend="reference")
    np.testing.assert_allclose(got, expected, rtol=1e-12)
