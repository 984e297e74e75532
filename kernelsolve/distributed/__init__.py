"""Past one machine: the engine's work split across processes with torch.distributed.

``with kernelsolve.distributed.sharded():`` splits every reduction (and so
``K @ v``, ``K.solve``, the interpolators, kriging and the GPyTorch kernels)
across the processes of a torch.distributed group, SPMD: every process runs
the same script (``torchrun``, ``srun``) and gets the whole result. See
``docs/distributed.md``.

Modules: :mod:`.comm` (collectives with timeouts and abort),
:mod:`.partition` (shares of rows), :mod:`.executor` (the split of one
reduction), :mod:`.context` (``sharded()``).
"""

from .comm import ShardError, ShardTimeout
from .context import current, sharded
from .executor import ShardedExecutor
from .partition import bounds

__all__ = ["ShardError", "ShardTimeout", "ShardedExecutor", "bounds", "current", "sharded"]
