"""One name and one meaning for the stopping rule of every iterative solver.

A bottom-layer module (it imports nothing from kernelsolve): the solvers of
:mod:`kernelsolve.linalg` and ``LazyTensor.solve`` read it.

Every solver of :mod:`kernelsolve.linalg` (:func:`~.cg.cg`, :func:`~.solve.solve`
and ``LazyTensor.solve``, :class:`~.interpolate.KernelInterpolator`, the kriging
classes, :func:`~.gp.gp_posterior_mean`, :meth:`~.saddle.SaddleSolver.solve`)
stops a right-hand side ``b`` when its residual ``r = b - A x`` satisfies

    ||r|| <= max(rtol ||b||, atol)

(``atol``, an absolute floor, only in the CG solvers; the others stop at
``||r|| <= rtol ||b||``), or after ``maxiter`` iterations with a
``ConvergenceWarning``. ``rtol`` is a *relative residual*, not an error
bound: the error of ``x`` can be up to the condition number times larger.

The defaults differ, each for a reason its docstring gives; they are the
constants below, which the signatures use:

* ``cg``, ``solve``, ``LazyTensor.solve``: :data:`CG_RTOL` = 1e-6, pykeops'
  tolerance (a port changes one import);
* ``KernelInterpolator``: :data:`INTERPOLATOR_RTOL` = 1e-8, so that it agrees
  with scipy's direct ``RBFInterpolator`` to about 1e-6;
* ``OrdinaryKriging``, ``UniversalKriging``, ``SaddleSolver.solve``:
  :data:`KRIGING_RTOL` = 1e-10, so that predictions and variances agree with
  PyKrige's direct solve to about 1e-6;
* ``gp_posterior_mean``: :data:`GP_RTOL` = 1e-3, far below the model's own error.

``rpcholesky`` has no residual tolerance: its ``trace_tol`` stops the automatic
rank when ``trace(K - F F^T) <= trace_tol * n``.

Old spellings: ``tol=`` (scipy's name before ``rtol``) still works in
:func:`~.cg.cg` and :func:`~.solve.solve` with a DeprecationWarning, and is
``trace_tol`` in ``rpcholesky``; elsewhere it, and pykeops' ``eps=``, raise a
TypeError naming ``rtol``.
"""

from __future__ import annotations

import functools
import numbers
import warnings
from collections.abc import Callable

__all__ = [
    "CG_RTOL",
    "GP_RTOL",
    "INTERPOLATOR_RTOL",
    "KRIGING_RTOL",
    "check_tolerances",
    "keywords",
]

CG_RTOL = 1e-6
INTERPOLATOR_RTOL = 1e-8
KRIGING_RTOL = 1e-10
GP_RTOL = 1e-3


def check_tolerances(rtol: float, atol: float = 0.0, maxiter: int | None = None) -> None:
    """ValueError naming the first of ``rtol``, ``atol``, ``maxiter`` that is not a
    number >= 0 (NaN is not; ``maxiter``: an integer >= 0, or None).

    Example
    -------
    >>> check_tolerances(1e-6, 0.0, 100)
    >>> check_tolerances(float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: rtol must be a number >= 0, got nan
    """
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(value, numbers.Real) and value >= 0):  # NaN fails >= 0 too
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if maxiter is not None and not (isinstance(maxiter, numbers.Integral) and maxiter >= 0):
        raise ValueError(f"maxiter must be an integer >= 0, got {maxiter!r}")


def keywords(
    renamed: dict[str, str] | None = None,
    refused: dict[str, str] | None = None,
    name: str | None = None,
) -> Callable:
    """Decorator for the old spellings of keyword arguments.

    ``renamed={"tol": "rtol"}``: ``tol=`` still works, passed on as ``rtol=`` with a
    DeprecationWarning; ``refused={"eps": "rtol"}``: ``eps=`` raises a TypeError
    naming ``rtol``. The messages name the function as ``name`` (default: its
    qualified name). The decorated function keeps its signature
    (``inspect.signature`` and ``help`` follow ``__wrapped__``).

    Example
    -------
    >>> @keywords(renamed={"tol": "rtol"}, refused={"eps": "rtol"})
    ... def solve(b, *, rtol=1e-6):
    ...     return rtol
    >>> import warnings
    >>> with warnings.catch_warnings(record=True):
    ...     solve(1.0, tol=1e-3)
    0.001
    >>> solve(1.0, eps=1e-3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: solve: eps= is not accepted; the tolerance is rtol= (relative residual: ...)
    """
    renamed, refused = dict(renamed or {}), dict(refused or {})

    def decorate(f: Callable) -> Callable:
        shown = name or f.__qualname__.removesuffix(".__init__")

        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            for old, new in refused.items():
                if old in kwargs:
                    raise TypeError(f"{shown}: {old}= is not accepted; {_meaning(new)}")
            for old, new in renamed.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{shown}: both {old}= and {new}= given; {_meaning(new)}")
                    warnings.warn(
                        f"{shown}: {old}= is deprecated; {_meaning(new)}",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return f(*args, **kwargs)

        return wrapper

    return decorate


_MEANINGS = {
    "rtol": "the tolerance is rtol= (relative residual: stop when ||r|| <= rtol ||b||)",
    "trace_tol": "the automatic rank stops at trace_tol= (trace(K - F F^T) <= trace_tol * n)",
}


def _meaning(new: str) -> str:
    return _MEANINGS.get(new, f"use {new}=")
