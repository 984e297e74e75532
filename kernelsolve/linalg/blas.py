"""One BLAS thread for NumPy/SciPy work done between engine reductions.

On a 2-core machine the engine's OpenMP threads and OpenBLAS's threads compete:
after a reduction OpenMP's threads spin, and when other processes hold the
cores OpenBLAS's threads wait for each other. Measured here: the FMM's products
3-10x slower with two BLAS threads than with one, the GP preconditioner of the
demo 9.3 s against 6.0 s. The linear algebra between reductions is also mostly
small or memory-bound, where a second thread gains little.

Example
-------
>>> import numpy as np
>>> with one_blas_thread():
...     x = np.linalg.solve(np.eye(3), np.ones(3))
>>> x.tolist()
[1.0, 1.0, 1.0]
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

try:  # a dependency of kernelsolve; the fallback only keeps a broken install running
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

__all__ = ["one_blas_thread"]


def one_blas_thread() -> AbstractContextManager:
    """A context in which BLAS (OpenBLAS, MKL, ... as seen by threadpoolctl) runs on
    one thread."""
    return threadpool_limits(1, "blas") if threadpool_limits else nullcontext()
