"""Bad inputs to LazyTensor and its reductions raise clear errors.

Each error must be a ValueError / TypeError (NotImplementedError / RuntimeError where
documented) whose message names the argument or what was expected. Documented
non-errors (NaN propagation, tensors that require grad) are checked too.
"""

from __future__ import annotations

import numpy as np
import pytest

from kernelsolve import LazyTensor, Pm, Vi, Vj

try:
    import torch
except ImportError:  # pragma: no cover - torch is in the test extra
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")
LIBS = ["numpy", pytest.param("torch", marks=needs_torch)]
M, N = 5, 7


def to_lib(a: np.ndarray, lib: str):
    return torch.from_numpy(np.ascontiguousarray(a)) if lib == "torch" else a


def to_np(a):
    return a.detach().cpu().numpy() if torch is not None and isinstance(a, torch.Tensor) else a


def pts(lib="numpy", dtype="float64", m=M, n=N, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = to_lib(rng.standard_normal((m, d)).astype(dtype), lib)
    y = to_lib(rng.standard_normal((n, d)).astype(dtype), lib)
    return x, y


def lazy_pair(lib="numpy", dtype="float64", d=3):
    x, y = pts(lib, dtype, d=d)
    return LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])


def scalar_kernel(lib="numpy", dtype="float64"):
    """(M, N) Gaussian kernel of inner dimension 1."""
    x_i, y_j = lazy_pair(lib, dtype)
    return (-((x_i - y_j) ** 2).sum(-1)).exp()


def assert_names_both(excinfo, a, b):
    msg = str(excinfo.value)
    assert a in msg and b in msg, msg


# ----------------------------------------------------------------------------
# Shapes at construction
# ----------------------------------------------------------------------------


def test_batch_dims_that_do_not_broadcast():
    """Batch dims (2, 3) and (4, 3) cannot be combined in one formula."""
    a = LazyTensor(np.ones((2, 3, M, 1, 3)))
    b = LazyTensor(np.ones((4, 3, 1, N, 3)))
    with pytest.raises(ValueError, match=r"batch dimensions \(2, 3\) and \(4, 3\)"):
        a + b


@pytest.mark.parametrize("lib", LIBS)
def test_full_MND_array_is_rejected(lib):
    """A dense (M, N, D) array with M, N > 1 is neither an i- nor a j-variable."""
    with pytest.raises(ValueError, match=r"full \(M, N, D\) array"):
        LazyTensor(to_lib(np.ones((M, N, 3)), lib))


@pytest.mark.parametrize("axis", [None, 2, 3])
def test_2d_array_needs_axis_0_or_1(axis):
    """A 2-D array needs axis=0 (i) or axis=1 (j)."""
    with pytest.raises(ValueError, match=r"needs axis=0 .* or axis=1"):
        LazyTensor(np.ones((M, 3)), axis=axis)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_axis_given_for_3d_array(axis):
    """The category of a 3-D array is read from its shape; axis= is an error."""
    with pytest.raises(ValueError, match="axis must not be given for a 3-D array"):
        LazyTensor(np.ones((M, 1, 3)), axis=axis)


def test_inner_dims_do_not_broadcast():
    """x of inner dim 3 plus y of inner dim 2."""
    x_i = LazyTensor(np.ones((M, 1, 3)))
    y_j = LazyTensor(np.ones((1, N, 2)))
    with pytest.raises(ValueError, match=r"inner dimensions \(3, 2\) do not broadcast"):
        x_i + y_j
    with pytest.raises(ValueError, match=r"inner dimensions \(3, 2\) do not broadcast"):
        x_i * y_j


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(lambda a, b: a | b, id="scalprod"),
        pytest.param(lambda a, b: a.sqdist(b), id="sqdist"),
    ],
)
def test_scalprod_and_sqdist_need_equal_dims(op):
    """(x | y) and sqdist need equal inner dimensions (3 vs 2)."""
    x_i = LazyTensor(np.ones((M, 1, 3)))
    y_j = LazyTensor(np.ones((1, N, 2)))
    with pytest.raises(ValueError, match=r"same inner dimension, got \(3, 2\)"):
        op(x_i, y_j)


def test_matvecmult_not_divisible():
    """matvecmult: a matrix of dim 3 cannot multiply a vector of dim 2."""
    A = LazyTensor(np.ones((M, 1, 3)))
    v = LazyTensor(np.ones((1, N, 2)))
    with pytest.raises(ValueError, match="matrix dimension 3 is not a multiple of vector"):
        A.matvecmult(v)
    with pytest.raises(ValueError, match="matrix dimension 3 is not a multiple of vector"):
        v.vecmatmult(A)


def test_weightedsqnorm_weights_of_wrong_dim():
    """weightedsqnorm: weights of dim 2 fit neither 1, D=3 nor D*D=9."""
    x_i = LazyTensor(np.ones((M, 1, 3)))
    s = Pm(np.ones(2))
    with pytest.raises(ValueError, match=r"weights of dimension 2 .* expected 1 .*3 .*9"):
        x_i.weightedsqnorm(s)


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(lambda x: x.elem(3), id="elem(3)"),
        pytest.param(lambda x: x[3], id="[3]"),
        pytest.param(lambda x: x[..., 3], id="[...,3]"),
        pytest.param(lambda x: x.elem(-1), id="elem(-1)"),
    ],
)
def test_elem_out_of_range(op):
    """x[k] / elem(k) with k outside [0, D)."""
    x_i = LazyTensor(np.ones((M, 1, 3)))
    with pytest.raises(ValueError, match=r"elem: index -?\d out of range for inner dimension 3"):
        op(x_i)


def test_negative_index_out_of_range_names_the_index():
    """x[-4] on D = 3 is out of range; the message should show the index the user wrote
    (-4), or at least say out of range."""
    x_i = LazyTensor(np.ones((M, 1, 3)))
    with pytest.raises(ValueError, match="out of range"):
        x_i[-4]


@pytest.mark.parametrize("start,length", [(2, 2), (3, 1), (-1, 2), (0, 0), (0, 4)])
def test_extract_out_of_range(start, length):
    """extract(start, d) must stay inside the inner dimension and have d >= 1."""
    x_i = LazyTensor(np.ones((M, 1, 3)))
    with pytest.raises(ValueError, match=r"extract: slice \[.*\] out of range"):
        x_i.extract(start, length)


def test_slice_with_step():
    """Slices of the inner dimension must have step 1."""
    x_i = LazyTensor(np.ones((M, 1, 3)))
    with pytest.raises(ValueError, match="slice step 2 unsupported"):
        x_i[::2]


@pytest.mark.parametrize(
    "key",
    [
        pytest.param((0, slice(None), slice(None)), id="[0,:,:]"),
        pytest.param((slice(None), 0, slice(None)), id="[:,0,:]"),
        pytest.param((Ellipsis, 0, slice(None)), id="[...,0,:]"),
        pytest.param((slice(None), 1), id="[:,1]"),
    ],
)
def test_indexing_a_non_inner_axis(key):
    """Only the inner dimension can be indexed."""
    x_i = LazyTensor(np.ones((M, 1, 3)))
    with pytest.raises(ValueError, match="indexing acts on the inner dimension only"):
        x_i[key]


def test_index_of_wrong_type():
    """A float index is a TypeError naming the accepted kinds."""
    x_i = LazyTensor(np.ones((M, 1, 3)))
    with pytest.raises(TypeError, match="index must be an int or a slice"):
        x_i[1.5]


# ----------------------------------------------------------------------------
# Reduction axes, keywords and backends
# ----------------------------------------------------------------------------

AXIS_CALLS = {
    "sum(dim=5)": lambda F: F.sum(dim=5),
    "sum(axis=5)": lambda F: F.sum(axis=5),
    "sum(dim=-4)": lambda F: F.sum(dim=-4),
    "min(dim=3)": lambda F: F.min(dim=3),
    "argmin(dim=7)": lambda F: F.argmin(dim=7),
    "Kmin(2, dim=2)": lambda F: F.Kmin(2, dim=2),
    "argKmin(2, dim=2)": lambda F: F.argKmin(2, dim=2),
    "Kmin_argKmin(2, dim=-1)": lambda F: F.Kmin_argKmin(2, dim=-1),
    "min_argmin(dim=2)": lambda F: F.min_argmin(dim=2),
    "logsumexp(dim=2)": lambda F: F.logsumexp(dim=2),
    "sum_reduction(dim=2)": lambda F: F.sum_reduction(dim=2),
    "sum(axis='i')": lambda F: F.sum(axis="i"),
}


@pytest.mark.parametrize("call", list(AXIS_CALLS.values()), ids=list(AXIS_CALLS))
def test_reduction_over_a_nonexistent_axis(call):
    """A reduction axis that is neither i, j (nor the inner dim where supported)."""
    F = scalar_kernel()
    with pytest.raises(ValueError, match=r"axis=.*: expected 0 \(reduce over i\), 1"):
        call(F)


def test_reduction_axis_on_batched_lazytensor():
    """With one batch dim, the axes are 1 (i) and 2 (j); 4 does not exist."""
    F = LazyTensor(np.ones((2, M, 1, 3))) - LazyTensor(np.ones((2, 1, N, 3)))
    with pytest.raises(ValueError, match=r"expected 1 \(reduce over i\), 2 \(reduce over j\)"):
        F.min_argmin(dim=4)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda F: F.logsumexp(), id="logsumexp()"),
        pytest.param(lambda F: F.logsumexp(axis=None), id="logsumexp(axis=None)"),
        pytest.param(lambda F: F.sum_reduction(), id="sum_reduction()"),
        pytest.param(lambda F: F.argKmin(2), id="argKmin(2)"),
        pytest.param(lambda F: F.min_argmin(), id="min_argmin()"),
    ],
)
def test_reduction_without_axis(call):
    """Reductions without a default axis say that axis (or dim) is required."""
    with pytest.raises(ValueError, match=r"axis \(or dim\) is required"):
        call(scalar_kernel())


@pytest.mark.parametrize("kw", ["foo", "axis_", "reduction_op", "backend_"])
def test_unknown_keyword(kw):
    """Unknown reduction keywords are a TypeError naming the keyword."""
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{kw}'"):
        scalar_kernel().sum(dim=1, **{kw: 1})


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda F, r: F.sum(dim=1, ranges=r), id="sum"),
        pytest.param(lambda F, r: F.argKmin(2, dim=0, ranges=r), id="argKmin"),
    ],
)
def test_ranges_malformed(call):
    """Malformed ranges= (slices of shape (1, 2) instead of (1,)) is a ValueError
    naming the array (tests/engine/test_ranges_errors.py has every case)."""
    ranges = (np.array([[0, M]]), np.array([[0, 1]]), np.array([[0, 1]])) * 2
    with pytest.raises(ValueError, match="slices_[ij] must have shape"):
        call(scalar_kernel(), ranges)


@pytest.mark.parametrize("backend", ["GPU", "gpu", "GPU_1D", "GPU_2D", "cuda"])
@pytest.mark.parametrize("lib", LIBS)
def test_gpu_backend_on_host_arrays(backend, lib):
    """backend='GPU' with host arrays is refused: host data is never moved to the GPU
    behind the user's back (dispatch, commit 600a617: a ValueError naming host arrays)."""
    with pytest.raises(ValueError, match=r"backend=.* with host arrays.*never moves"):
        scalar_kernel(lib).sum(dim=1, backend=backend)


@pytest.mark.parametrize("backend", ["nonsense", "", 1, "CPU2"])
def test_unknown_backend(backend):
    """An unknown backend name is a ValueError listing the valid ones."""
    with pytest.raises(ValueError, match=r"backend=.*expected one of 'auto', 'CPU', 'GPU'"):
        scalar_kernel().sum(dim=1, backend=backend)


@pytest.mark.parametrize("value", ["float16", "int32", "float32"])
def test_bad_dtype_acc_for_float64(value):
    """dtype_acc must be 'auto', the input dtype or 'float64'."""
    with pytest.raises(ValueError, match=rf"dtype_acc='{value}': expected one of \['auto'"):
        scalar_kernel(dtype="float64").sum(dim=1, dtype_acc=value)


# ----------------------------------------------------------------------------
# Array libraries, dtypes and non-array operands
# ----------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("order", ["numpy+torch", "torch+numpy"])
def test_mixing_numpy_and_torch(order):
    """A formula with NumPy and torch arrays is a TypeError naming both libraries."""
    x, y = pts("numpy")
    a = LazyTensor(x[:, None, :])
    b = LazyTensor(torch.from_numpy(y)[None, :, :])
    if order == "torch+numpy":
        a, b = b, a
    with pytest.raises(TypeError) as excinfo:
        a - b
    assert_names_both(excinfo, "numpy", "torch")


@needs_torch
def test_matmul_mixing_numpy_and_torch():
    """K (NumPy) @ v (torch) is a TypeError naming both libraries."""
    with pytest.raises(TypeError) as excinfo:
        scalar_kernel("numpy") @ torch.ones(N, dtype=torch.float64)
    assert_names_both(excinfo, "numpy", "torch")


@pytest.mark.parametrize("lib", LIBS)
def test_mixing_float32_and_float64(lib):
    """A formula with float32 and float64 arrays is a TypeError naming both dtypes."""
    x32, _ = pts(lib, "float32")
    _, y64 = pts(lib, "float64")
    with pytest.raises(TypeError) as excinfo:
        LazyTensor(x32[:, None, :]) - LazyTensor(y64[None, :, :])
    assert_names_both(excinfo, "float32", "float64")
    with pytest.raises(TypeError) as excinfo:
        scalar_kernel(lib, "float64") @ to_lib(np.ones(N, dtype=np.float32), lib)
    assert_names_both(excinfo, "float32", "float64")


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_non_float_numpy_arrays(dtype):
    """Integer and bool arrays: TypeError naming the float dtypes accepted
    (complex arrays make a ComplexLazyTensor: tests/test_complex.py)."""
    x = np.ones((M, 1, 3), dtype=dtype)
    with pytest.raises(
        TypeError, match=rf"dtype {dtype}; expected float16, bfloat16, float32 or float64"
    ):
        LazyTensor(x)
    with pytest.raises(TypeError, match="expected float16, bfloat16, float32 or float64"):
        Vi(x[:, 0, :])


@needs_torch
@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_non_float_torch_tensors(dtype):
    """The same for torch tensors."""
    x = torch.ones((M, 1, 3), dtype=getattr(torch, dtype))
    with pytest.raises(
        TypeError, match=rf"dtype {dtype}; expected float16, bfloat16, float32 or float64"
    ):
        LazyTensor(x)


def test_integer_vector_in_matmul():
    """K @ v with an integer v is a TypeError."""
    with pytest.raises(TypeError, match="expected float16, bfloat16, float32 or float64"):
        scalar_kernel() @ np.ones(N, dtype=np.int64)


def test_bool_is_not_a_number():
    """True/False are not accepted as constants."""
    with pytest.raises(TypeError, match="bool"):
        LazyTensor(True)
    x_i, _ = lazy_pair()
    with pytest.raises(TypeError, match="bool"):
        x_i + True
    with pytest.raises(TypeError, match="bool"):
        x_i**True
    with pytest.raises(TypeError, match="list must hold at least one number"):
        LazyTensor([1.0, True])


@pytest.mark.parametrize(
    "operand",
    ["abc", b"abc", object(), {"a": 1}, ["a", "b"], [], {1.0}],
    ids=["str", "bytes", "object", "dict", "list-of-str", "empty-list", "set"],
)
def test_non_array_operands(operand):
    """Strings and other objects are a TypeError naming what was expected."""
    x_i, _ = lazy_pair()
    with pytest.raises(TypeError, match="LazyTensor: "):
        x_i + operand
    with pytest.raises(TypeError, match="LazyTensor: "):
        operand * x_i
    with pytest.raises(TypeError, match="LazyTensor: "):
        LazyTensor(operand)


def test_none_operand_is_a_type_error():
    """x_i + None and None * x_i must be a TypeError (not an AttributeError from an
    uninitialised LazyTensor shell)."""
    x_i, _ = lazy_pair()
    with pytest.raises(TypeError):
        x_i + None
    with pytest.raises(TypeError):
        None * x_i
    with pytest.raises(TypeError):
        x_i.sqdist(None)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: LazyTensor(2.0), id="float"),
        pytest.param(lambda: LazyTensor(2) + 1.5, id="int+float"),
        pytest.param(lambda: Pm(3.0) * Pm([1.0, 2.0]), id="Pm"),
        pytest.param(lambda: LazyTensor([1.0, 2.0, 3.0]).exp(), id="list"),
    ],
)
@pytest.mark.parametrize("axis", [0, 1])
def test_formula_of_python_numbers_only(make, axis):
    """Reducing a formula without any array: ValueError, cannot infer the array type."""
    with pytest.raises(ValueError, match="cannot infer the array type"):
        make().sum(dim=axis)


# ----------------------------------------------------------------------------
# Empty point sets, K, and numbers of points
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda a: LazyTensor(a((0, 1, 3))), id="M=0"),
        pytest.param(lambda a: LazyTensor(a((1, 0, 3))), id="N=0"),
        pytest.param(lambda a: LazyTensor(a((M, 1, 0))), id="D=0"),
        pytest.param(lambda a: LazyTensor(a((0, M, 1, 3))), id="batch=0"),
        pytest.param(lambda a: Vi(a((0, 3))), id="Vi-M=0"),
        pytest.param(lambda a: Vj(a((N, 0))), id="Vj-D=0"),
        pytest.param(lambda a: Vj(a((0,))), id="Vj-1d-N=0"),
        pytest.param(lambda a: Pm(a((0,))), id="Pm-D=0"),
    ],
)
@pytest.mark.parametrize("lib", LIBS)
def test_empty_arrays_rejected_at_construction(make, lib):
    """Zero-size point sets or dimensions: ValueError at construction, naming the shape."""

    def a(shape):
        return to_lib(np.ones(shape), lib)

    with pytest.raises(ValueError, match=r"of shape \(.*\) is empty"):
        make(a)


@pytest.mark.parametrize("name", ["Kmin", "argKmin", "Kmin_argKmin"])
@pytest.mark.parametrize("axis,n", [(0, M), (1, N)])
def test_K_larger_than_number_of_points(name, axis, n):
    """K > number of points along the reduced axis: ValueError naming K and that number."""
    F = scalar_kernel()
    with pytest.raises(ValueError, match=rf"K={n + 1} exceeds the number of points .*{n}"):
        getattr(F, name)(n + 1, dim=axis)


@pytest.mark.parametrize("K", [0, -1, 2.5, None, True, "3"])
@pytest.mark.parametrize("name", ["Kmin", "argKmin", "Kmin_argKmin"])
def test_K_not_a_positive_integer(K, name):
    """K = 0, -1, 2.5, None, True, '3': ValueError 'K must be a positive integer'."""
    with pytest.raises(ValueError, match="K must be a positive integer"):
        getattr(scalar_kernel(), name)(K, dim=1)


@pytest.mark.parametrize("cat", ["i", "j"])
def test_variables_with_different_numbers_of_points(cat):
    """x_i with 5 points + z_i with 6 points (and the same for j)."""
    rng = np.random.default_rng(1)
    if cat == "i":
        a, b = LazyTensor(rng.random((5, 1, 3))), LazyTensor(rng.random((6, 1, 3)))
    else:
        a, b = Vj(rng.random((5, 3))), Vj(rng.random((6, 3)))
    with pytest.raises(ValueError, match=rf"{cat}-variables with different numbers of points"):
        a + b


# ----------------------------------------------------------------------------
# K @ v
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("shape", [(N - 1,), (N + 1, 2), (M,)])
def test_matmul_wrong_number_of_rows(lib, shape):
    """K @ v with v rows != N names both numbers."""
    v = to_lib(np.ones(shape), lib)
    with pytest.raises(ValueError, match=rf"v has {shape[0]} rows; expected {N}"):
        scalar_kernel(lib) @ v


def test_transpose_matmul_wrong_number_of_rows():
    """K.T @ w needs w with M rows."""
    with pytest.raises(ValueError, match=rf"v has {N} rows; expected {M}"):
        scalar_kernel().T @ np.ones(N)


def test_matmul_needs_a_scalar_formula():
    """K of inner dim 3 cannot be applied with @."""
    x_i, y_j = lazy_pair()
    with pytest.raises(ValueError, match="needs a scalar formula .* inner dimension 3"):
        (x_i - y_j) @ np.ones(N)


@pytest.mark.parametrize("v", [[1.0] * N, 3.0, None, "v"], ids=["list", "float", "None", "str"])
def test_matmul_v_not_an_array(v):
    """v must be a NumPy array or a torch tensor."""
    with pytest.raises(TypeError, match="v must be a NumPy array or torch tensor"):
        scalar_kernel() @ v


def test_matmul_0d_v():
    """A 0-d v has no rows."""
    with pytest.raises(ValueError, match="at least one dimension"):
        scalar_kernel() @ np.array(1.0)


# ----------------------------------------------------------------------------
# out=
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("shape", [(M,), (M, 2), (N, 1), (1, M)])
def test_out_of_wrong_shape(lib, shape):
    """out= must have the shape of the result; the message gives both shapes."""
    out = to_lib(np.empty(shape), lib)
    with pytest.raises(ValueError, match=rf"out has shape .*; expected \({M}, 1\)"):
        scalar_kernel(lib).sum(dim=1, out=out)


def test_out_for_a_tuple_reduction():
    """out= is documented as unsupported for reductions with two outputs."""
    with pytest.raises(ValueError, match="out= is not supported"):
        scalar_kernel().min_argmin(dim=1, out=np.empty((M, 1)))


@pytest.mark.parametrize("out", [[0.0] * M, 3.0, "out"], ids=["list", "float", "str"])
def test_out_not_an_array(out):
    """out= that is not an array must be a TypeError (not an AttributeError)."""
    with pytest.raises(TypeError, match="out"):
        scalar_kernel().sum(dim=1, out=out)


# ----------------------------------------------------------------------------
# ReductionCall (call=False) with new arrays
# ----------------------------------------------------------------------------


def test_reduction_call_wrong_number_of_arrays():
    """A ReductionCall needs one array per variable."""
    x_i, y_j = lazy_pair()
    rc = (x_i - y_j).sum(dim=1, call=False)
    x, y = pts()
    with pytest.raises(ValueError, match="expected 2 arrays .*got 1"):
        rc(x)
    with pytest.raises(ValueError, match="expected 2 arrays .*got 3"):
        rc(x, y, y)


def test_reduction_call_mixed_dtypes():
    """New arrays of different dtypes: TypeError naming both."""
    x_i, y_j = lazy_pair()
    rc = (x_i - y_j).sum(dim=1, call=False)
    x, y = pts()
    with pytest.raises(TypeError) as excinfo:
        rc(x.astype(np.float32), y)
    assert_names_both(excinfo, "float32", "float64")


@pytest.mark.parametrize(
    "xshape",
    [
        pytest.param((M, 1), id="inner-dim-1-for-a-dim-3-variable"),
        pytest.param((M, 2), id="inner-dim-2-for-a-dim-3-variable"),
    ],
)
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_reduction_call_wrong_inner_dim(xshape, backend):
    """Rebinding a dim-3 variable to an array of another inner dimension must be a
    ValueError naming the dimension (it must not broadcast silently)."""
    x_i, y_j = lazy_pair()
    rc = (x_i - y_j).sum(dim=1, call=False, backend=backend)
    _, y = pts()
    with pytest.raises(ValueError, match="dimension"):
        rc(np.ones(xshape), y)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_reduction_call_different_numbers_of_i_points(backend):
    """Rebinding two i-variables to arrays of 5 and 6 points must be a ValueError naming
    the numbers of points (as at construction), and a 1-point array must not broadcast."""
    rng = np.random.default_rng(2)
    x_i = LazyTensor(rng.random((M, 1, 3)))
    z_i = LazyTensor(rng.random((M, 1, 3)))
    y_j = LazyTensor(rng.random((1, N, 3)))
    rc = (x_i * z_i - y_j).sum(dim=1, call=False, backend=backend)
    y = rng.random((N, 3))
    with pytest.raises(ValueError, match="numbers of points"):
        rc(rng.random((5, 3)), rng.random((6, 3)), y)
    with pytest.raises(ValueError, match="numbers of points"):
        rc(rng.random((5, 3)), rng.random((1, 3)), y)


def test_reduction_call_non_array():
    """Rebinding an i-variable to a list must be a TypeError."""
    x_i, y_j = lazy_pair()
    rc = (x_i - y_j).sum(dim=1, call=False)
    _, y = pts()
    with pytest.raises(TypeError):
        rc([[1.0, 2.0, 3.0]] * M, y)


# ----------------------------------------------------------------------------
# Documented non-errors
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("axis", [0, 1])
def test_nan_in_inputs_propagates(lib, axis):
    """NaN in an input is not an error: sum gives NaN where the dense sum does, min gives
    NaN (np.min semantics), and the other entries stay finite."""
    x, y = pts("numpy")
    x[1, 0] = np.nan
    F = LazyTensor(to_lib(x, lib)[:, None, :]) - LazyTensor(to_lib(y, lib)[None, :, :])
    Fd = x[:, None, :] - y[None, :, :]
    s, mn = to_np(F.sum(dim=axis)), to_np(F.min(dim=axis))
    for got, want in ((s, Fd.sum(axis=axis)), (mn, Fd.min(axis=axis))):
        assert np.isnan(got).any()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert to_np(F.argmin(dim=axis)).dtype == np.int64


@needs_torch
@pytest.mark.parametrize("axis", [0, 1])
def test_torch_tensor_requiring_grad_is_accepted(axis):
    """Tensors with requires_grad=True are accepted and give the plain values."""
    x, y = pts("numpy")
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tensor(y, requires_grad=True)
    b = torch.ones(N, 2, dtype=torch.float64, requires_grad=True)
    F = LazyTensor(xt[:, None, :]) - LazyTensor(yt[None, :, :])
    Fd = x[:, None, :] - y[None, :, :]
    np.testing.assert_allclose(to_np(F.sum(dim=axis)), Fd.sum(axis=axis), rtol=1e-12)
    order = np.argsort(Fd, axis=axis, kind="stable")
    order = order[:2].transpose(1, 0, 2) if axis == 0 else order[:, :2]
    np.testing.assert_array_equal(to_np(F.argKmin(2, dim=axis)), order)
    K = (-(F**2).sum(-1)).exp()
    Kd = np.exp(-(Fd**2).sum(-1))
    np.testing.assert_allclose(to_np(K @ b), Kd @ np.ones((N, 2)), rtol=1e-12)
    assert xt.grad is None  # nothing was back-propagated by the forward pass
