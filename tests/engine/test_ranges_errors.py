"""Bad ``ranges=`` give a clear error naming the array and what was expected
(never a crash or a read out of bounds): wrong container, dtype, shape,
ranges out of bounds, decreasing slices, overlapping ranges, batch
dimensions; and the error names the half in use (over i: ranges_j ...)."""

import numpy as np
import pytest
import torch

from kernelsolve import LazyTensor, Vi, Vj
from kernelsolve.engine.ranges import block_plan

M, N = 10, 8


def ok():
    return [np.array([[0, 4], [4, 10]]), np.array([1, 2]), np.array([[0, 3], [3, 8]])] * 2


def with_(k, value):
    r = ok()
    r[k] = value
    return tuple(r)


F = Vi(np.random.default_rng(0).random((M, 2))).sqdist(Vj(np.random.default_rng(1).random((N, 2))))

CASES = [
    (
        with_(0, np.array([[0, 4], [4, 10]], dtype=np.float32)),
        TypeError,
        "ranges_i must be int32 or int64, got float32",
    ),
    (with_(2, [[0, 3], [3, 8]]), TypeError, "redranges_j must be an integer array"),
    (with_(0, np.array([0, 4, 4, 10])), ValueError, r"ranges_i must have shape \(n, 2\)"),
    (with_(1, np.array([[1, 2]])), ValueError, r"slices_i must have shape \(2,\)"),
    (
        with_(0, np.array([[0, 4], [4, 11]])),
        ValueError,
        r"ranges_i\[1\] = \[4, 11\) is not a range 0 <= start <= end <= 10 "
        r"\(the number of i-points\)",
    ),
    (
        with_(2, np.array([[0, 3], [-1, 8]])),
        ValueError,
        r"redranges_j\[1\] = \[-1, 8\) is not a range",
    ),
    (
        with_(2, np.array([[0, 3], [5, 3]])),
        ValueError,
        r"redranges_j\[1\] = \[5, 3\) is not a range",
    ),
    (with_(1, np.array([2, 1])), ValueError, "slices_i must be non-decreasing"),
    (with_(1, np.array([1, 3])), ValueError, r"slices_i must be non-decreasing and at most 2"),
    (
        with_(0, np.array([[0, 5], [4, 10]])),
        ValueError,
        r"ranges_i \[0, 5\) and \[4, 10\) overlap",
    ),
    (with_(2, np.array([[0, 3], [2, 8]])), None, None),  # different i-ranges: may overlap
]


@pytest.mark.parametrize("ranges, error, match", CASES)
def test_bad_ranges_over_j(ranges, error, match):
    if error is None:
        F.sum(1, ranges=ranges)
        return
    with pytest.raises(error, match=match):
        F.sum(1, ranges=ranges)


def test_overlapping_j_ranges_of_one_i_range():
    r = (np.array([[0, 10]]), np.array([2]), np.array([[0, 5], [3, 8]])) * 2
    with pytest.raises(
        ValueError, match=r"of ranges_i\[0\] overlap: a pair would be counted twice"
    ):
        F.sum(1, ranges=r)


def test_names_of_the_half_in_use():
    """A reduction over i reads (ranges_j, slices_j, redranges_i): its errors say so."""
    r = ok()
    r[3] = np.array([[0, 4], [4, 9]])  # j has 8 points
    with pytest.raises(ValueError, match=r"ranges_j\[1\] = \[4, 9\) is not a range .* j-points"):
        F.sum(0, ranges=tuple(r))


@pytest.mark.parametrize("bad", [3, (np.zeros((1, 2)),) * 5, "ranges"])
def test_not_six_arrays(bad):
    with pytest.raises(TypeError, match="six integer arrays"):
        F.sum(1, ranges=bad)
    with pytest.raises(TypeError, match="six integer arrays"):
        block_plan(bad, M, N)


def test_torch_int32_and_int64_accepted():
    r = tuple(torch.as_tensor(a, dtype=torch.int32) for a in ok())
    r64 = tuple(torch.as_tensor(a) for a in ok())
    assert np.array_equal(F.sum(1, ranges=r), F.sum(1, ranges=r64))


def test_batch_dimensions_refused():
    """As pykeops, ranges take no batch dimensions: a clear error."""
    rng = np.random.default_rng(0)
    x, y = rng.random((3, M, 1, 2)), rng.random((3, 1, N, 2))
    K = LazyTensor(x).sqdist(LazyTensor(y))
    with pytest.raises(ValueError, match=r"ranges= with batch dimensions \(3,\)"):
        K.sum(2, ranges=ok())


def test_conflicting_ranges_of_operands():
    a, b = Vi(np.ones((M, 1))), Vj(np.ones((N, 1)))
    a.ranges = ok()
    b.ranges = with_(1, np.array([2, 2]))
    with pytest.raises(ValueError, match="different ranges"):
        a + b
    b.ranges = tuple(x.copy() for x in ok())  # equal values: fine
    assert (a + b).ranges is a.ranges
