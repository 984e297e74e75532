"""The IR's operations, one declaration each (see :mod:`.base`).

:mod:`.elementwise` and :mod:`.vector` hold the declarations; importing
:mod:`kernelsolve.engine` imports them, which fills :data:`.base.OPS`.
This package's ``__init__`` imports nothing itself, so that the IR can import
:mod:`.base` without a cycle.
"""
