"""The Dask tests' cluster: 2 worker processes of one thread on loopback, one per
test module (starting one costs seconds)."""

import os
from pathlib import Path

# dask, distributed and xarray are in the test extra: a missing one fails, never skips
import distributed
import pytest

import kernelsolve


@pytest.fixture(scope="module")
def client():
    # the workers import this kernelsolve (the tests' one), not an installed copy
    root = str(Path(kernelsolve.__file__).resolve().parents[1])
    env = {"PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        env=env,
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()
