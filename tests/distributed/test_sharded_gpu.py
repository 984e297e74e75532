"""sharded() with torch CUDA tensors (needs a GPU: `pytest -m gpu`)."""

import pytest

from . import scenarios
from .harness import run, values


@pytest.mark.gpu
def test_cuda_tensors_with_gloo_on_two_processes():
    for out in values(run(scenarios.cuda_tensors, 2)):
        assert out == [("cuda", True)] * 4


@pytest.mark.gpu
def test_cuda_tensors_with_nccl_on_one_gpu():
    # NCCL wants one GPU per process: a group of one exercises its code path
    for out in values(run(scenarios.cuda_tensors, 1, backend="nccl")):
        assert out == [("cuda", True)] * 4
