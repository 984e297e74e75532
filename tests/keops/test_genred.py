"""Genred: every reduction_op on NumPy and torch against dense NumPy, over i
and over j, with batch dimensions, gradients, out=, pickling and errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from kernelsolve.keops import numpy as knp
from kernelsolve.keops import torch as ktorch
from kernelsolve.keops.numpy import Genred

rng = np.random.default_rng(3)
M, N, D = 9, 7, 3
x, y = rng.random((M, D)), rng.random((N, D))
b, s = rng.standard_normal((N, 2)), np.array([2.0])
ALIASES = ["x = Vi(3)", "y = Vj(3)", "b = Vj(2)", "s = Pm(1)"]
FORMULA = "-s * SqDist(x, y)"  # scalar
F = -s[0] * ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)  # (M, N), dense
K = 3


def _lse(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))


def _dense(op, axis, w=None):
    """The expected output of ``op`` reducing F over ``axis`` (0: i, 1: j),
    with the weights ``w`` (over j) for the weighted ones."""
    f = F if axis == 1 else F.T  # rows: the output's index
    order = np.argsort(f, axis=1, kind="stable")
    table = {
        "Sum": lambda: f.sum(1)[:, None],
        "Min": lambda: f.min(1)[:, None],
        "Max": lambda: f.max(1)[:, None],
        "ArgMin": lambda: f.argmin(1)[:, None],
        "ArgMax": lambda: f.argmax(1)[:, None],
        "Min_ArgMin": lambda: (f.min(1)[:, None], f.argmin(1)[:, None]),
        "Max_ArgMax": lambda: (f.max(1)[:, None], f.argmax(1)[:, None]),
        "KMin": lambda: np.take_along_axis(f, order, 1)[:, :K],
        "ArgKMin": lambda: order[:, :K],
        "KMin_ArgKMin": lambda: (np.take_along_axis(f, order, 1)[:, :K], order[:, :K]),
        "LogSumExp": lambda: _lse(f, 1),
        "Max_SumShiftExp": lambda: np.concatenate(
            [f.max(1)[:, None], np.exp(f - f.max(1)[:, None]).sum(1)[:, None]], 1
        ),
        "Zero": lambda: np.zeros((f.shape[0], 1)),
    }
    if w is not None:  # weights indexed like the reduced axis
        e = np.exp(f - f.max(1, keepdims=True))
        table["SumSoftMaxWeight"] = lambda: e @ w / e.sum(1, keepdims=True)
        table["LogSumExpWeight"] = lambda: f.max(1)[:, None] + np.log(e @ w)
        table["Max_SumShiftExpWeight"] = lambda: np.concatenate([f.max(1)[:, None], e @ w], 1)
    return table[op]()


OPS = [
    "Sum", "Min", "Max", "ArgMin", "ArgMax", "Min_ArgMin", "Max_ArgMax", "KMin", "ArgKMin",
    "KMin_ArgKMin", "LogSumExp", "Max_SumShiftExp", "Zero",
]  # fmt: skip
WEIGHTED = ["SumSoftMaxWeight", "LogSumExpWeight", "Max_SumShiftExpWeight"]


def _check(got, want, index_op):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            _check(g, w, w.dtype.kind == "i")
        return
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else got
    assert got.shape == want.shape
    if index_op:
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("op", OPS)
def test_reductions_against_dense(op, axis, lib):
    g = (knp if lib == "numpy" else ktorch).Genred(
        FORMULA, ALIASES, reduction_op=op, axis=axis, opt_arg=K if "KMin" in op else None
    )
    args = (x, y, b, s) if lib == "numpy" else tuple(map(torch.tensor, (x, y, b, s)))
    got = g(*args)
    _check(got, _dense(op, axis), op.startswith("Arg"))


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("op", WEIGHTED)
def test_weighted_reductions(op, lib):
    g = Genred(FORMULA, ALIASES, reduction_op=op, axis=1, formula2="b")
    b_pos = np.abs(b)  # weighted log-sum-exp: positive weights
    args = (x, y, b_pos, s) if lib == "numpy" else tuple(map(torch.tensor, (x, y, b_pos, s)))
    _check(g(*args), _dense(op, 1, b_pos), False)


@pytest.mark.parametrize("op", WEIGHTED)
def test_weighted_reductions_over_i(op):
    a = np.abs(rng.standard_normal((M, 2)))  # weights indexed by i
    aliases = ["x = Vi(3)", "y = Vj(3)", "a = Vi(2)", "s = Pm(1)"]
    g = Genred(FORMULA, aliases, reduction_op=op, axis=0, formula2="a")
    _check(g(x, y, a, s), _dense(op, 0, a), False)


def test_logsumexp_with_weight_formula_is_lse_weight():
    lse = Genred(FORMULA, ALIASES, reduction_op="LogSumExp", axis=1, formula2="Exp(b)")
    e = np.exp(F - F.max(1, keepdims=True))
    np.testing.assert_allclose(lse(x, y, b, s), F.max(1)[:, None] + np.log(e @ np.exp(b)))


def test_batch_dimensions_and_vector_output():
    A = 2
    xb, yb = rng.random((A, M, D)), rng.random((A, N, D))
    sb = rng.random((A, 1)) + 1
    g = Genred("Exp(-s * SqDist(x, y)) * y", ["x = Vi(3)", "y = Vj(3)", "s = Pm(1)"], axis=1)
    got = g(xb, yb, sb)
    k = np.exp(-sb[:, :, None] * ((xb[:, :, None] - yb[:, None]) ** 2).sum(-1))
    np.testing.assert_allclose(got, k @ yb, rtol=1e-12)
    assert got.shape == (A, M, D)
    # a variable without the batch dimension broadcasts against the others
    np.testing.assert_allclose(g(xb, yb[0], sb), g(xb, np.stack([yb[0]] * A), sb), rtol=1e-14)


_TORCH_CASES = {
    "Sum": ("Exp(" + FORMULA + ") * Sum(b)", lambda f, bt: (f.exp() * bt.sum(-1)[None]).sum(1)),
    "LogSumExp": (FORMULA, lambda f, bt: f.logsumexp(1)),
    "SumSoftMaxWeight": (FORMULA, lambda f, bt: f.softmax(1) @ bt),
}


@pytest.mark.parametrize("op", sorted(_TORCH_CASES))
def test_torch_gradients_match_dense_torch(op):
    xt, yt, st = (torch.tensor(a, requires_grad=True) for a in (x, y, s))
    bt = torch.tensor(b)
    formula, dense = _TORCH_CASES[op]
    extra = {"formula2": "b"} if op == "SumSoftMaxWeight" else {}
    out = ktorch.Genred(formula, ALIASES, reduction_op=op, axis=1, **extra)(xt, yt, bt, st)
    want = dense(-st * ((xt[:, None] - yt[None]) ** 2).sum(-1), bt).reshape(out.shape)
    e = torch.randn_like(want)
    got = torch.autograd.grad(out, (xt, yt, st), e)
    ref = torch.autograd.grad(want, (xt, yt, st), e)
    for a, r in zip(got, ref):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-11)


def test_out_and_backend_keywords():
    g = Genred(FORMULA, ALIASES, reduction_op="Sum", axis=1)
    out = np.empty((M, 1))
    assert g(x, y, b, s, out=out, backend="CPU") is out
    np.testing.assert_allclose(out, _dense("Sum", 1))
    np.testing.assert_allclose(g(x, y, b, s, backend="reference"), out)
    with pytest.raises(ValueError, match="backend"):
        g(x, y, b, s, backend="TPU")


def test_options_of_the_constructor():
    g = Genred(FORMULA, ALIASES, reduction_op="Sum", axis=1, use_double_acc=True, dtype="float32")
    np.testing.assert_allclose(g(x, y, b, s), _dense("Sum", 1))
    with pytest.raises(ValueError, match="not both"):
        Genred(FORMULA, ALIASES, dtype_acc="float64", use_double_acc=True)


def test_pickle_roundtrip_still_computes():
    g = Genred(FORMULA, ALIASES, reduction_op="ArgKMin", axis=1, opt_arg=2)
    h = pickle.loads(pickle.dumps(g))
    assert type(h) is type(g) and h.node is g.node
    np.testing.assert_array_equal(h(x, y, b, s), g(x, y, b, s))


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"reduction_op": "Median"}, "reduction_op='Median'"),
        ({"reduction_op": "KMin"}, "opt_arg=K"),
        ({"reduction_op": "Sum", "opt_arg": 3}, "opt_arg is the K"),
        ({"reduction_op": "SumSoftMaxWeight"}, "needs formula2"),
        ({"reduction_op": "Min", "formula2": "b"}, "takes no formula2"),
        ({"axis": 2}, "axis must be 0"),
    ],
)
def test_bad_constructor_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        Genred(FORMULA, ALIASES, **kwargs)


def test_wrong_number_of_arrays():
    with pytest.raises(ValueError, match="expected 4 arrays"):
        Genred(FORMULA, ALIASES)(x, y)


def test_generic_shortcuts():
    gs = knp.generic_sum("Exp(-SqDist(x, y))", "a = Vj(1)", "x = Vi(3)", "y = Vj(3)")
    np.testing.assert_allclose(gs(x, y), np.exp(F / s[0]).sum(0)[:, None])
    gl = knp.generic_logsumexp("-s * SqDist(x, y)", "a = Vi(1)", *ALIASES)
    np.testing.assert_allclose(gl(x, y, b, s), _lse(F, 1))
    ga = knp.generic_argmin("-s * SqDist(x, y)", "a = Vi(1)", *ALIASES)
    np.testing.assert_array_equal(ga(x, y, b, s), F.argmin(1)[:, None])
    gk = ktorch.generic_argkmin("-s * SqDist(x, y)", "a = Vi(3)", *ALIASES)
    assert gk.opt_arg == 3 and gk.reduction_op == "ArgKMin"
    with pytest.raises(ValueError, match="Vi"):
        knp.generic_sum("x", "a = Pm(3)", "x = Vi(3)")


@pytest.mark.parametrize(
    "formula,op,kwargs",
    [
        ("Exp(-SqDist(x, y)) * b", "Sum", {}),
        ("SqDist(x, y)", "LogSumExp", {}),
        ("x - y", "KMin", {"opt_arg": 2}),  # vector formula: (M, K, D)
        ("SqDist(x, y)", "Max_SumShiftExpWeight", {"formula2": "b"}),
    ],
)
def test_against_pykeops(formula, op, kwargs):
    pk = pytest.importorskip("pykeops.numpy", reason="pykeops is an optional oracle")
    aliases = ["x = Vi(3)", "y = Vj(3)", "b = Vj(2)"]
    ours = Genred(formula, aliases, reduction_op=op, axis=1, **kwargs)(x, y, b)
    theirs = pk.Genred(formula, aliases, reduction_op=op, axis=1, **kwargs)(x, y, b)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_sum_scheme_refused_on_a_selection_as_on_lazytensor():
    # pykeops' rule, as LazyTensor.min(..., sum_scheme=...) applies it
    g = Genred(
        "SqDist(x, y)",
        ["x = Vi(3)", "y = Vj(3)"],
        reduction_op="Min",
        axis=1,
        sum_scheme="kahan_scheme",
    )
    x, y = np.random.default_rng(0).random((5, 3)), np.random.default_rng(1).random((4, 3))
    with pytest.raises(ValueError, match="sum_scheme"):
        g(x, y)
