"""kernelsolve: kernel linear algebra at scale.

Symbolic kernel matrices K_ij = F(x_i, y_j, p) that are never stored; every
reduction is one fused map-reduce. See :class:`LazyTensor`.
"""

from ._version import __version__
from .config import config
from .engine.cache import clear_cache
from .engine.ranges.approx_reduce import approximation_report
from .lazytensor import ComplexLazyTensor, LazyTensor, Pm, ReductionCall, Vi, Vj

__all__ = [
    "ComplexLazyTensor",
    "LazyTensor",
    "Pm",
    "ReductionCall",
    "Vi",
    "Vj",
    "approximation_report",
    "clear_cache",
    "config",
    "__version__",
]
