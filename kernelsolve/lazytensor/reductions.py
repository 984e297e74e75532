"""The reductions of a LazyTensor: pykeops' methods, ``K @ v`` with its kept
plan, ``K.solve``, and :class:`ReductionCall` (``call=False``).

Every reduction builds one :class:`~kernelsolve.engine.request.ReductionRequest`
and hands it to :func:`kernelsolve.autograd.reduce`. pykeops' keywords
(``backend=``, ``dtype_acc=``, ``call=``, ``out=``, ``tol=``, ...) are read at
the API edge by :mod:`.options` into the request's options.
"""

from __future__ import annotations

import numpy as np

from .. import autograd
from ..engine import arrays, dispatch
from ..engine.request import DEFAULT_OPTIONS, ReductionRequest
from ..tolerance import CG_RTOL, keywords
from .binding import is_int, join
from .options import (
    check_device_id,
    check_sum_scheme,
    reduction_method,
    reduction_options,
    write_out,
)


class ReductionCall:
    """A reduction that is ready to run: ``call=False`` returns one.

    Calling it with no argument evaluates on the bound arrays; calling it
    with arrays rebinds the variables in order (same categories), and
    keywords (``backend=``, ``dtype_acc=``) override the options.

    Example
    -------
    >>> import numpy as np
    >>> from kernelsolve import Vi, Vj
    >>> x, y = np.random.rand(5, 2), np.random.rand(4, 2)
    >>> rc = Vi(x).sqdist(Vj(y)).sum(1, call=False)
    >>> rc(x, 2 * y).shape
    (5, 1)
    """

    def __init__(self, request: ReductionRequest):
        self.request = request

    # What the reduction is (read-only; pykeops-era code read these fields).
    formula = property(lambda self: self.request.formula)
    reduction = property(lambda self: self.request.reduction)
    variables = property(lambda self: self.request.arguments)
    cats = property(lambda self: self.request.cats)
    axis = property(lambda self: self.request.axis)
    weight = property(lambda self: self.request.weight)
    K = property(lambda self: self.request.K)
    options = property(lambda self: self.request.options)

    def __call__(self, *args, **kwargs):
        request = self.request
        if args:
            if len(args) != len(request.arguments):
                raise ValueError(
                    f"expected {len(request.arguments)} arrays (one per variable), got {len(args)}"
                )
            request = request._replace(arguments=tuple(args))
        if kwargs:
            options, call, out, ranges = reduction_options(kwargs, request.options)
            if "call" in kwargs or "out" in kwargs:
                raise TypeError("call= and out= are given when the reduction is made, not run")
            check_sum_scheme(options, request.reduction)
            if kwargs.get("device_id") is not None:
                check_device_id(kwargs["device_id"], arrays.resolve_kind(request.arguments).device)
            request = request._replace(options=options)
            if "ranges" in kwargs:
                request = request._replace(ranges=ranges)
        return _run(request, any(arrays.is_dask(x) for x in request.arguments))

    def __repr__(self):
        r = self.request
        return f"ReductionCall({r.reduction}, axis={'ij'[r.axis]}, formula={r.formula.key})"


class Reductions:
    """The reduction methods of :class:`~kernelsolve.LazyTensor` (a mixin)."""

    __slots__ = ()

    def _axis(self, axis, dim) -> int:
        """0 (reduce over i) or 1 (reduce over j) from pykeops' axis/dim."""
        if dim is not None:
            axis = dim
        if axis is None:
            raise ValueError(
                f"axis (or dim) is required: {self.nbatchdims} reduces over i, "
                f"{self.nbatchdims + 1} over j"
            )
        nb = self.nbatchdims
        if is_int(axis):
            if axis in (nb, nb + 1):
                return axis - nb
            if axis in (-3, -2):
                return axis + 3
        raise ValueError(
            f"axis={axis!r}: expected {nb} (reduce over i), {nb + 1} (reduce over j) "
            f"or {nb + 2} / -1 (the inner dimension, where supported)"
        )

    def _is_inner(self, axis, dim) -> bool:
        a = axis if dim is None else dim
        return a == -1 or a == len(self._shape) - 1

    def _reduce(self, name: str, axis: int, *, weight=None, K=None, **kwargs):
        if weight is None and not kwargs:  # the common call: nothing to join or parse
            request = ReductionRequest(
                self.formula,
                name,
                self.variables,
                self.cats,
                axis,
                None,
                K,
                DEFAULT_OPTIONS,
                self.ranges,
            )
            return _run(request, self._kind is not None and self._kind.lib == arrays.DASK)
        options, call, out, ranges = reduction_options(kwargs)
        if "ranges" not in kwargs:  # K.ranges = ... (pykeops' attribute)
            ranges = self.ranges
        check_sum_scheme(options, name)
        if kwargs.get("device_id") is not None and self._kind is not None:
            check_device_id(kwargs["device_id"], self._kind.device)
        operands = [self] + ([self._as_lazy(weight)] if weight is not None else [])
        formulas, (variables, cats, *_, kind) = join(operands, ("the formula", "weight"))
        weight_node = formulas[1] if weight is not None else None
        request = ReductionRequest(
            formulas[0], name, variables, cats, axis, weight_node, K, options, ranges
        )
        if not call:
            return ReductionCall(request)
        return write_out(_run(request, kind is not None and kind.lib == arrays.DASK), out)

    @reduction_method
    def sum(self, axis=-1, dim=None, **kwargs):
        """Sum over i (axis = nbatchdims), over j (nbatchdims + 1), or over
        the inner dimension (axis=-1: returns a LazyTensor)."""
        if self._is_inner(axis, dim):
            return self._unary("sum")
        return self._reduce("sum", self._axis(axis, dim), **kwargs)

    @reduction_method
    def sum_reduction(self, axis=None, dim=None, **kwargs):
        """Sum over i or j (pykeops' ``sum_reduction``: the axis is required)."""
        return self._reduce("sum", self._axis(axis, dim), **kwargs)

    def _minmax(self, name, axis, dim, kwargs):
        if self._is_inner(axis, dim):
            return self._unary(name)
        return self._reduce(name, self._axis(axis, dim), **kwargs)

    @reduction_method
    def min(self, axis=-1, dim=None, **kwargs):
        """Minimum over i or j (NaN propagates, as ``np.min``), or over the
        inner dimension with axis=-1."""
        return self._minmax("min", axis, dim, kwargs)

    @reduction_method
    def max(self, axis=-1, dim=None, **kwargs):
        """Maximum over i or j (NaN propagates, as ``np.max``), or over the
        inner dimension with axis=-1."""
        return self._minmax("max", axis, dim, kwargs)

    @reduction_method
    def argmin(self, axis=-1, dim=None, **kwargs):
        """int64 index of the minimum (the first NaN if any, as
        ``np.argmin``); over the inner dimension with axis=-1."""
        return self._minmax("argmin", axis, dim, kwargs)

    @reduction_method
    def argmax(self, axis=-1, dim=None, **kwargs):
        """int64 index of the maximum (the first NaN if any, as
        ``np.argmax``); over the inner dimension with axis=-1."""
        return self._minmax("argmax", axis, dim, kwargs)

    @reduction_method
    def min_reduction(self, axis=None, dim=None, **kwargs):
        """Minimum over i or j (the axis is required)."""
        return self._reduce("min", self._axis(axis, dim), **kwargs)

    @reduction_method
    def max_reduction(self, axis=None, dim=None, **kwargs):
        """Maximum over i or j (the axis is required)."""
        return self._reduce("max", self._axis(axis, dim), **kwargs)

    @reduction_method
    def argmin_reduction(self, axis=None, dim=None, **kwargs):
        """int64 index of the minimum over i or j (the axis is required)."""
        return self._reduce("argmin", self._axis(axis, dim), **kwargs)

    @reduction_method
    def argmax_reduction(self, axis=None, dim=None, **kwargs):
        """int64 index of the maximum over i or j (the axis is required)."""
        return self._reduce("argmax", self._axis(axis, dim), **kwargs)

    @reduction_method
    def min_argmin(self, axis=None, dim=None, **kwargs):
        """(values, int64 indices) of the minimum."""
        return self._reduce("min_argmin", self._axis(axis, dim), **kwargs)

    @reduction_method
    def max_argmax(self, axis=None, dim=None, **kwargs):
        """(values, int64 indices) of the maximum."""
        return self._reduce("max_argmax", self._axis(axis, dim), **kwargs)

    min_argmin_reduction = min_argmin
    max_argmax_reduction = max_argmax

    @reduction_method
    def Kmin(self, K, axis=None, dim=None, **kwargs):
        """The K smallest values, sorted; shape (..., n, K) or (..., n, K, D).
        NaN ranks after every number, as in ``np.sort``."""
        return self._reduce("kmin", self._axis(axis, dim), K=K, **kwargs)

    @reduction_method
    def argKmin(self, K, axis=None, dim=None, **kwargs):
        """int64 indices of the K smallest values (K nearest neighbours)."""
        return self._reduce("argkmin", self._axis(axis, dim), K=K, **kwargs)

    @reduction_method
    def Kmin_argKmin(self, K, axis=None, dim=None, **kwargs):
        """(the K smallest values, their int64 indices), as Kmin and argKmin."""
        return self._reduce("kmin_argkmin", self._axis(axis, dim), K=K, **kwargs)

    Kmin_reduction = Kmin
    argKmin_reduction = argKmin
    Kmin_argKmin_reduction = Kmin_argKmin

    @reduction_method
    def logsumexp(self, axis=None, dim=None, weight=None, other=None, **kwargs):
        """``log sum exp(F)`` over i or j (per coordinate of F); with
        ``weight=w`` (or pykeops' other name for it, ``other=w``):
        ``log sum exp(F) * w`` for a scalar F."""
        if other is not None:
            if weight is not None:
                raise TypeError("logsumexp: give the weight once, as weight= or other=")
            weight = other
        a = self._axis(axis, dim)
        if weight is None:
            return self._reduce("logsumexp", a, **kwargs)
        return self._reduce("logsumexp_weight", a, weight=weight, **kwargs)

    logsumexp_reduction = logsumexp

    @reduction_method
    def sumsoftmaxweight(self, weight, axis=None, dim=None, **kwargs):
        """``sum exp(F) * w / sum exp(F)`` for a scalar F."""
        return self._reduce("sumsoftmaxweight", self._axis(axis, dim), weight=weight, **kwargs)

    sumsoftmaxweight_reduction = sumsoftmaxweight

    # Linear operator ---------------------------------------------------
    def __matmul__(self, v, **kwargs):
        """``K @ v``: sum_j K_ij v_j for v of shape (N,), (N, E) or
        (..., N, E); returns (M,), (M, E) or (..., M, E).

        ``K.__matmul__(v, **options)`` takes the options of the reductions
        (``sum_scheme=``, ``backend=``, ``out=``, ``device_id=``, ...: see
        :meth:`sum`), as pykeops' does.

        Example
        -------
        >>> import numpy as np
        >>> from kernelsolve import Vi, Vj
        >>> x, b = np.random.rand(5, 2), np.ones((5, 1))
        >>> K = (-Vi(x).sqdist(Vj(x))).exp()
        >>> out = np.empty((5, 1))
        >>> K.__matmul__(b, sum_scheme="kahan_scheme", out=out) is out
        True
        """
        t = type(v)
        if kwargs:
            return self._matmul(v, kwargs)
        if t is np.ndarray or t is arrays.torch_tensor_type():
            # K @ v again with v of the same kind and shape (an iterative solver,
            # a training loop): the product's plan is kept on K, so the call skips
            # building the product formula and looking the plan up
            try:
                sig, context, plan = self._mm
            except (AttributeError, TypeError):  # never multiplied, or copied empty
                sig = None
            if sig is not None and sig == (t, v.shape, v.dtype, _device_of(v)):
                leaf = v[:, None] if v.ndim == 1 else v
                leaves = self.variables + (leaf,)
                if context == dispatch.context() and not autograd.needs_grad(leaves):
                    Kv = _execute(plan, leaves, self.ranges)
                    return Kv[..., 0] if v.ndim == 1 else Kv
        return self._matmul(v)

    def _matmul(self, v, kwargs=None):
        if self.ndim != 1:
            raise ValueError(
                f"K @ v needs a scalar formula (inner dimension 1); K has inner "
                f"dimension {self.ndim}"
            )
        if not arrays.is_array(v):
            raise TypeError(
                f"K @ v: v must be a NumPy array or torch tensor (or a CuPy or dask "
                f"array), got {type(v).__name__}"
            )
        if v.ndim == 0:
            raise ValueError("K @ v: v must have at least one dimension")
        n = v.shape[0] if v.ndim == 1 else v.shape[-2]
        if self.nj is not None and n != self.nj:
            raise ValueError(f"K @ v: v has {n} rows; expected {self.nj} (the j axis of K)")
        if v.ndim <= 2:
            vj = type(self)(v, axis=1)
        else:
            vj = type(self)(v.reshape(tuple(v.shape[:-2]) + (1,) + tuple(v.shape[-2:])))
        prod = self._binary("mul", vj, "v")  # v may bring batch dims of its own
        if kwargs:  # a complex prod's _reduce returns complex arrays
            out = kwargs.pop("out", None)
            Kv = prod._reduce("sum", 1, **kwargs)
            if isinstance(Kv, ReductionCall):
                return Kv
            return write_out(Kv[..., 0] if v.ndim == 1 else Kv, out)
        if prod.is_complex:  # lazytensor/complex.py: a complex sum, complex out
            Kv = prod.sum(prod.nbatchdims + 1)
            return Kv[..., 0] if v.ndim == 1 else Kv
        leaves = prod.variables
        if prod._kind.lib == arrays.DASK or autograd.needs_grad(leaves):
            Kv = prod._reduce("sum", 1)
        else:
            request = ReductionRequest(prod.formula, "sum", leaves, prod.cats, ranges=self.ranges)
            plan = dispatch.plan(request)
            if (
                v.ndim <= 2
                and len(leaves) == len(self.variables) + 1
                and leaves[-1] is vj.variables[0]
            ):
                # v's array was appended, not merged with one of K's: __matmul__
                # can rebuild these leaves itself next time
                sig = (type(v), v.shape, v.dtype, _device_of(v))
                self._mm = (sig, dispatch.context(), plan)
            Kv = _execute(plan, leaves, self.ranges)
        return Kv[..., 0] if v.ndim == 1 else Kv

    @keywords(refused={"eps": "rtol"}, name="LazyTensor.solve")
    def solve(
        self,
        b,
        alpha: float = 1e-10,
        *,
        solver: str = "auto",
        x0=None,
        rtol: float = CG_RTOL,
        atol: float = 0.0,
        maxiter: int | None = None,
        precond="auto",
        rank: int | None = None,
        callback=None,
        verbose: bool = False,
        backend=None,
        tol: float | None = None,
        return_info: bool = False,
    ):
        """Solve ``(alpha I + K) a = b``: Cholesky when small, preconditioned CG when large.

        ``K`` (this LazyTensor) must be a scalar kernel built from the same
        points on both sides. The parameters are those of
        :func:`kernelsolve.linalg.solve.solve` (which documents each):
        ``solver`` is "auto" (a dense Cholesky factor up to 3,000 points when
        it fits the memory budget, CG beyond), "direct" or "cg";
        ``rtol``/``atol`` require ``|r| <= max(rtol |b|, atol)`` per column of
        the true residual, ``precond`` (CG) is "auto", "rpcholesky", "jacobi",
        None or a callable, ``tol`` lets CG's products skip the block pairs
        holding at most ``tol`` of each row's ``sum_j |K_ij|`` (None: exact),
        ``return_info`` also returns a ``SolveInfo``.

        Example
        -------
        >>> import numpy as np
        >>> from kernelsolve import Vi, Vj
        >>> x = np.random.default_rng(0).random((500, 2))
        >>> K = (-Vi(x).sqdist(Vj(x)) * 20.0).exp()
        >>> a = K.solve(np.ones(500), alpha=0.1)
        >>> a.shape
        (500,)
        """
        if arrays.is_dask(b) or (self._kind is not None and self._kind.lib == arrays.DASK):
            from ..integrations.dask_solve import solve  # upward, when called: dask is optional
        else:
            from ..linalg.solve import solve

        return solve(
            self,
            b,
            alpha,
            solver=solver,
            x0=x0,
            rtol=rtol,
            atol=atol,
            maxiter=maxiter,
            precond=precond,
            rank=rank,
            callback=callback,
            verbose=verbose,
            backend=backend,
            tol=tol,
            return_info=return_info,
        )

    def matvec(self, v):
        return self @ v

    def rmatvec(self, v):
        return self.T @ v


def _run(request: ReductionRequest, dask: bool):
    """The reduction of ``request``: by the engine (``autograd.reduce``), or as
    lazy dask arrays when ``dask`` (a dask array among its arguments)."""
    if not dask:
        return autograd.reduce(request)
    from ..integrations import dask_reduce  # upward, when called: dask is optional

    return dask_reduce.reduce(request)


def _execute(plan, leaves, ranges):
    """``dispatch.execute``, called as ``(plan, leaves)`` when dense (the form
    that tools wrapping it, such as the tests' spies, take)."""
    if ranges is None:
        return dispatch.execute(plan, leaves)
    return dispatch.execute(plan, leaves, ranges)


def _device_of(x):
    """The device attribute of a torch tensor, None for a NumPy array."""
    return None if type(x) is np.ndarray else x.device
