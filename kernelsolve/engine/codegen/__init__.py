"""One C code generator, two targets.

* :mod:`.spec`: :class:`~.spec.KernelSpec`, what determines a kernel's source;
* :mod:`.dialect`: the table of what differs between targets;
* :mod:`.formula`: formula -> straight-line C for one pair (each op's ``c``
  rule, :mod:`..ops`);
* :mod:`.cpu`: the CPU template (OpenMP over rows, SIMD over j), one function
  per strategy;
* :mod:`.cuda`: the GPU template (one thread per row, shared-memory tiles).

C preambles that are plain text are the ``.h`` files beside these modules.
"""
