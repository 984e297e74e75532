"""Block-sparse reductions: pykeops' ``ranges`` and the clustering helpers.

* :mod:`.plan`: the six-array ``ranges`` layout checked and turned into a
  :class:`~.plan.BlockPlan` (groups of output rows, each with its kept
  j-ranges) that every target runs;
* :mod:`.reference`: the NumPy oracle of a block-sparse reduction;
* :mod:`.cluster`: ``grid_cluster``, ``cluster_ranges_centroids``,
  ``sort_clusters``, ``from_matrix``, ``swap_axes`` on NumPy arrays and torch
  tensors (``kernelsolve.keops.{numpy,torch}.cluster`` expose them);
* :mod:`.prune` and :mod:`.knn`: exact ``Kmin`` / ``argKmin`` / ``min`` /
  ``argmin`` evaluating only the block pairs a pluggable bound keeps;
* :mod:`.approx`: ``sum`` within ``tol * sum_j |F_ij|`` by skipping block pairs.
"""

from .plan import BlockPlan, block_plan, swap_axes

__all__ = ["BlockPlan", "block_plan", "swap_axes"]
