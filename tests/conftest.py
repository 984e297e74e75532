"""Shared test settings.

Tests marked ``gpu`` need a CUDA device that CuPy sees; without one they are
skipped with the reason (``pytest -m gpu`` selects them; see
``scripts/gpu_check.sh``).
"""

import numpy as np
import pytest

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # a GPU machine without hypothesis still runs `pytest -m gpu`
    settings = None

if settings is not None:
    settings.register_profile(
        "ci",
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile("ci")


def gpu_missing() -> str | None:
    """Why the CUDA target cannot run here, or None."""
    from kernelsolve.engine.backends import cuda

    if cuda.available():
        return None
    try:
        import cupy  # noqa: F401
    except Exception as exc:  # ImportError, or a CuPy built for another CUDA
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"needs a CUDA GPU: CuPy does not import ({type(exc).__name__}: {first})"
    return "needs a CUDA GPU: CuPy sees no CUDA device"


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    reason = gpu_missing() if gpu_items else None
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
