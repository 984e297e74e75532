"""One reduction request: what the layers above ask of the engine.

A :class:`ReductionRequest` is built once (by :class:`~kernelsolve.LazyTensor`,
the solvers or the integrations) and handed down unchanged through
:func:`kernelsolve.autograd.reduce` to :func:`.dispatch.reduce` /
:func:`.dispatch.plan`. It is an immutable named tuple: cheap to build on the
warm path, and ``request._replace(arguments=...)`` rebinds it to new arrays.

Target names: inside the library a target is ``"cpu"``, ``"cuda"`` or
``"reference"`` (:data:`TARGETS`). The names users pass as ``backend=``
(pykeops' ``"CPU"``, ``"GPU"``, ``"gpu_1d"``, ``"gpu_2d"``, and ``"auto"``)
are mapped once, at the API edge, by :func:`target_of`.
"""

from __future__ import annotations

from typing import NamedTuple

from . import ir
from .ranges.plan import swap_axes

#: The targets of the engine: compiled C++ on the host, CUDA, the NumPy oracle.
TARGETS = ("cpu", "cuda", "reference")

# backend= values accepted at the API edge, and the target each selects
# ("auto": where the data lives; None: the configured default).
_BACKENDS = {
    None: None,
    "auto": "auto",
    "cpu": "cpu",
    "reference": "reference",
    "gpu": "cuda",
    "cuda": "cuda",
    "gpu_1d": "cuda",
    "gpu_2d": "cuda",
}


def target_of(backend, name: str = "backend") -> str | None:
    """The target selected by a user's ``backend=`` value.

    Accepts ``None`` (the configured default, ``config.backend``), ``"auto"``
    (where the data lives), ``"CPU"``, ``"GPU"`` (and pykeops' ``"gpu_1d"``,
    ``"gpu_2d"``), ``"cuda"`` and ``"reference"``, in any case. ``name`` words
    the setting in the error (``backend``, ``kernelsolve.config.backend``).

    >>> target_of("GPU"), target_of("gpu_2d"), target_of("CPU"), target_of(None)
    ('cuda', 'cuda', 'cpu', None)
    """
    key = backend.lower() if isinstance(backend, str) else backend
    if key not in _BACKENDS:
        raise ValueError(
            f"{name}={backend!r}: expected one of 'auto', 'CPU', 'GPU', 'reference' (or None)"
        )
    return _BACKENDS[key]


#: How errors name a target: the user's word for it (pykeops' names).
USER_NAMES = {"cpu": "CPU", "cuda": "GPU", "reference": "reference", "auto": "auto"}


class ReductionOptions(NamedTuple):
    """How to run a reduction, apart from what it computes."""

    #: a :data:`TARGETS` name, ``"auto"``, or None for ``config.backend``
    target: str | None = None
    #: accumulator dtype: None (the compute dtype) or ``"float64"``
    acc_dtype: str | None = None
    #: how sums accumulate: None (the default scheme), or pykeops' names
    #: ``"direct_sum"``, ``"block_sum"``, ``"kahan_scheme"``
    sum_scheme: str | None = None
    #: sum-type reductions: the error allowed relative to sum_j |F_ij|
    #: (None: exact; :mod:`.ranges.approx_reduce`)
    tol: float | None = None


DEFAULT_OPTIONS = ReductionOptions()


class ReductionRequest(NamedTuple):
    """Reduce ``formula`` over i (``axis=0``) or j (``axis=1``).

    ``arguments[k]`` is bound to variable k of category ``cats[k]``: an array
    shaped ``batch + (n, d)`` for an i- or j-variable, ``batch + (d,)`` for a
    parameter, or a tuple of Python floats for a parameter. ``weight`` is the
    second formula of the weighted reductions, ``K`` the count of the K-min
    family. ``ranges`` (None: dense) is a block-sparse plan in pykeops'
    six-array layout (``ranges_i, slices_i, redranges_j, ranges_j,
    slices_j, redranges_i``).

    Example
    -------
    >>> import numpy as np
    >>> from kernelsolve.engine import dispatch
    >>> x, y = ir.var(0, ir.I, 1), ir.var(1, ir.J, 1)
    >>> request = ReductionRequest(ir.make("mul", x, y), "sum",
    ...                            (np.ones((3, 1)), np.full((4, 1), 0.5)), (ir.I, ir.J))
    >>> dispatch.reduce(request)[:, 0].tolist()
    [2.0, 2.0, 2.0]
    """

    formula: ir.Node
    reduction: str
    arguments: tuple
    cats: tuple[int, ...]
    axis: int = 1
    weight: ir.Node | None = None
    K: int | None = None
    options: ReductionOptions = DEFAULT_OPTIONS
    ranges: tuple | None = None

    def over_j(self) -> ReductionRequest:
        """The same request as a reduction over j (transposed when over i):
        every target folds over j, and reads the first half of ``ranges``."""
        if self.axis == 1:
            return self
        if self.axis != 0:
            raise ValueError(
                f"axis must be 0 (reduce over i) or 1 (reduce over j), got {self.axis}"
            )
        weight = ir.swap_ij(self.weight) if self.weight is not None else None
        return self._replace(
            formula=ir.swap_ij(self.formula),
            weight=weight,
            cats=ir.swap_cats(self.cats),
            axis=1,
            # the transposed reduction reads the other half of pykeops' layout
            ranges=swap_axes(self.ranges),
        )
