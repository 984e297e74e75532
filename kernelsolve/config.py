"""Process-wide settings. The bottom layer: imports nothing from kernelsolve.

Each setting has a default that can be overridden by an environment variable
at import time or by assignment at run time::

    import kernelsolve
    kernelsolve.config.reference_memory_limit = 16 * 2**20
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r}: expected a number") from None
    if not 0 < value <= 1:
        raise ValueError(f"environment variable {name}={raw!r}: expected a number in (0, 1]")
    return value


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r}: expected an integer") from None
    if value <= 0:
        raise ValueError(f"environment variable {name}={raw!r}: expected a positive integer")
    return value


@dataclass
class Config:
    """Settings read by the engine on every call."""

    #: Bytes of temporaries the NumPy reference engine may hold per tile
    #: (``KERNELSOLVE_REFERENCE_MEMORY``).
    reference_memory_limit: int = field(
        default_factory=lambda: _env_int("KERNELSOLVE_REFERENCE_MEMORY", 64 * 2**20)
    )

    #: OpenMP threads of the CPU target; None: ``OMP_NUM_THREADS`` or all cores
    #: (``KERNELSOLVE_NUM_THREADS``).
    num_threads: int | None = field(
        default_factory=lambda: _env_int("KERNELSOLVE_NUM_THREADS", 0) or None
    )

    #: Target used when a reduction is called without ``backend=``:
    #: "auto" (compiled when possible), "CPU", "GPU" or "reference"
    #: (``KERNELSOLVE_BACKEND``).
    backend: str = field(default_factory=lambda: os.environ.get("KERNELSOLVE_BACKEND", "auto"))

    #: Bytes a solver may spend on a dense kernel block that it builds once and
    #: reuses for many products (``KERNELSOLVE_DENSE_MEMORY``); None: the share
    #: ``dense_memory_fraction`` of the memory available when the block is built.
    dense_memory_limit: int | None = field(
        default_factory=lambda: _env_int("KERNELSOLVE_DENSE_MEMORY", 0) or None
    )

    #: Share of the available memory a dense block may take when
    #: ``dense_memory_limit`` is None (``KERNELSOLVE_DENSE_FRACTION``).
    dense_memory_fraction: float = field(
        default_factory=lambda: _env_float("KERNELSOLVE_DENSE_FRACTION", 0.25)
    )


config = Config()
