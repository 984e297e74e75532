"""``pykeops.numpy.cluster``: clustering helpers for block-sparse reductions
(``ranges=``), with pykeops' names, signatures and results on NumPy arrays.

>>> from kernelsolve.keops.numpy.cluster import grid_cluster, from_matrix, swap_axes
"""

# the same functions for both libraries: they follow their inputs' library
from ...engine.ranges.cluster import *  # noqa: F403
from ...engine.ranges.cluster import __all__  # noqa: F401
