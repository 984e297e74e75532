"""Process-wide settings. The bottom layer: imports nothing from kernelsolve.

Each setting has a default that can be overridden by an environment variable
at import time or by assignment at run time::

    import kernelsolve
    kernelsolve.config.reference_memory_limit = 16 * 2**20
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


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


config = Config()
