"""A symmetric kernel matrix as the solvers see it: products, diagonal, columns.

:class:`KernelOperator` wraps a scalar formula ``K_ij = F(x_i, x_j, p)`` and
the arrays bound to its variables (what a :class:`~kernelsolve.LazyTensor`
holds) and offers the three things the solvers need, each one engine
reduction and none of them forming the matrix:

* ``matmat(V)`` : ``K @ V`` (differentiable in torch),
* ``diagonal()``: ``F(x_i, x_i)``, the formula with every j-variable replaced
  by its i-partner, reduced over a single j,
* ``columns(S)``: ``K[:, S]``, the j-variables gathered at ``S`` and laid out
  as a *batch* dimension of size ``len(S)`` with one j each, so that one
  compiled kernel (whose source does not depend on ``len(S)``) fills the block.

Materialising: a CG or Lanczos run makes hundreds of products, and for a
few thousand points the whole matrix fits in memory and runs at BLAS speed.
A solver that knows how many products follow calls
:meth:`KernelOperator.materialize` up front: when ``dense.dense_pays`` (the
block fits :func:`.dense.memory_budget` and the products repay building it,
about :data:`.dense.FILL_PRODUCTS` products) the engine fills ``K`` once and
every later product, diagonal and column comes from it. The constructor's
``materialize`` option: ``False`` (the default) only on that call,
``"auto"`` also once the products made so far pass ``FILL_PRODUCTS`` (for
callers that cannot know; results then depend on the history at rounding
level, BLAS and engine sums differ in order), ``True`` on the first
product whatever the size, and never for ``materialize(...)`` of an
operator built with ``materialize=None``.

Symmetry is structural: the matrix must be square and every j-variable must
hold the same array (the same object, or equal values) as an i-variable of
the same dimension, and every i-variable must have such a partner.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import autograd
from ..engine import arrays, ir, split
from ..engine.ranges.approx_kernel import ApproxKernel
from ..engine.ranges.approx_reduce import check_tol
from ..engine.request import ReductionOptions, ReductionRequest, target_of
from . import dense as _dense
from .rowblocks import RowBlocks

__all__ = ["KernelOperator", "kernel_sum"]


class KernelOperator:
    """The symmetric ``n x n`` matrix ``K_ij = F(x_i, x_j)`` of a scalar formula.

    Parameters
    ----------
    formula : ir.Node
        Scalar formula (inner dimension 1).
    leaves : sequence
        The arrays (or numbers, for parameters) bound to its variables.
    cats : sequence of int
        Category of each leaf (``ir.I``, ``ir.J``, ``ir.P``).
    backend : str, optional
        Passed to every reduction.
    materialize : {False, "auto", True, None}
        When to hold the dense matrix (see the module docstring): False when
        :meth:`materialize` says it pays, "auto" also once the products so
        far repay it, True on the first product, None never.
    tol : float, optional
        Products skip the block pairs that hold at most ``tol`` of every row's
        ``sum_j |K_ij|``, one symmetric pattern for all of them
        (:class:`~kernelsolve.engine.ranges.approx_kernel.ApproxKernel`):
        ``|(K~ v)_i - (K v)_i| <= tol max|v| sum_j |K_ij|``. A held dense
        block is exact. None (default): exact products.

    Raises
    ------
    ValueError
        If the matrix is not square, not symmetric by construction, has batch
        dimensions, or the formula is not scalar.
    """

    def __init__(
        self,
        formula: ir.Node,
        leaves: Sequence,
        cats: Sequence[int],
        backend=None,
        materialize: bool | str | None = False,
        tol: float | None = None,
    ):
        if getattr(split.active(), "local", False):
            raise ValueError(
                "a kernel operator (K.solve, aslinearoperator, the interpolators) needs "
                "whole vectors on every process: under sharded(rows='local') each process "
                "holds only its rows; use sharded() with the same arrays on every process"
            )
        if materialize not in ("auto", True, False, None):
            raise ValueError(
                f'materialize must be False, "auto", True or None, got {materialize!r}'
            )
        self.materialize_mode, self.products, self.block = materialize, 0, None
        self.block_rows: RowBlocks | None = None  # the rows the block holds
        if formula.dim != 1:
            raise ValueError(
                f"K must be a scalar formula (inner dimension 1), got inner dimension "
                f"{formula.dim}"
            )
        self.formula, self.leaves, self.cats = formula, tuple(leaves), tuple(cats)
        self.backend, self.tol, self._approx = backend, check_tol(tol), None
        self.options = ReductionOptions(target_of(backend))
        arrs = [x for x in self.leaves if arrays.is_array(x)]
        if not arrs:
            raise ValueError("K holds no array: bind the points as NumPy arrays or tensors")
        self.lib, self.dtype = arrays.library(arrs[0]), arrays.dtype_name(arrs[0])
        self.device = arrays.device(arrs[0])
        for x, c in zip(self.leaves, self.cats):
            if arrays.is_array(x) and x.ndim != (1 if c == ir.P else 2):
                raise ValueError(
                    "K has batch dimensions; solve each batch element separately "
                    f"(a {'parameter' if c == ir.P else 'variable'} has shape {tuple(x.shape)})"
                )
        self.partner = self._partners()
        ns = {x.shape[0] for x, c in zip(self.leaves, self.cats) if c == ir.I}
        self.n = ns.pop()
        self.shape = (self.n, self.n)

    @classmethod
    def from_lazy(
        cls, K, backend=None, materialize: bool | str | None = False, tol: float | None = None
    ) -> KernelOperator:
        """The operator of a LazyTensor ``K`` (``K.formula``, ``K.variables``, ``K.cats``)."""
        return cls(
            K.formula, K.variables, K.cats, backend=backend, materialize=materialize, tol=tol
        )

    @property
    def skipped_pairs(self) -> float:
        """The fraction of the point pairs each product skips (``tol``; 0.0
        when exact or dense-backed)."""
        if self._approx is None or self.block is not None:
            return 0.0
        return self._approx.info["skipped_pairs"]

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    def materialize(self, products: float = float("inf")) -> bool:
        """Build and hold the dense matrix now if ``products`` expected products
        repay it and it fits the memory budget (``dense.dense_pays``); True when
        the operator is dense-backed afterwards. ``materialize=None`` operators
        stay matrix-free.

        Example
        -------
        >>> x = np.random.default_rng(0).random((100, 2))
        >>> s = ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2))
        >>> op = KernelOperator(ir.make("exp", ir.make("neg", s)), (x, x), (ir.I, ir.J))
        >>> op.materialize(products=200)
        True
        """
        self._drop_stale_block()
        if self.block is None and self.materialize_mode is not None:
            rows = RowBlocks(self.n)
            if self.materialize_mode is True or self._all_fit(rows, products):
                self.block, self.block_rows = self._local_block(rows), rows
        return self.block is not None

    def _all_fit(self, rows: RowBlocks, products: float) -> bool:
        """``dense.dense_pays`` for this process's rows, on every process (they
        must agree: one holding a block makes no engine reductions)."""
        h = rows.hi - rows.lo
        fits = _dense.dense_pays(h, self.n, self.itemsize, products, self.device)
        if not rows.sharded or products < _dense.FILL_PRODUCTS:
            return fits
        rows.executor()  # the processes this layout was made for
        return split.everywhere(fits)

    def _local_block(self, rows: RowBlocks):
        """The dense rows ``rows.lo:rows.hi`` of ``K`` (all of them in one process)."""
        if not rows.sharded:
            return self.dense()
        import contextlib

        no_grad = contextlib.nullcontext()
        if self.lib == "torch":
            import torch

            no_grad = torch.no_grad()
        leaves = self._restricted((rows.lo, rows.hi))
        with split.suspended(), no_grad:
            return _dense.block(self.formula, leaves, self.cats, backend=self.backend)

    def _restricted(self, rows: tuple[int, int]) -> tuple:
        """The leaves with every i-variable restricted to ``rows``."""
        lo, hi = rows
        return tuple(x[lo:hi] if c == ir.I else x for x, c in zip(self.leaves, self.cats))

    def _held(self) -> RowBlocks:
        """The rows the block holds (all of them for a block set by hand)."""
        return self.block_rows or RowBlocks(self.n, shared=False)

    def _drop_stale_block(self) -> None:
        """Forget a block held for other processes than the active split's."""
        if self.block is not None:
            active = split.active()
            now = (0, 1) if active is None else (active.rank, active.size)
            if now != self._held().key:
                self.block, self.block_rows = None, None

    def _partners(self) -> dict[int, int]:
        """j-variable index -> index of the i-variable holding the same points."""
        dims = {}
        for v in ir.variables(self.formula):
            index, _, dim = v.attrs
            dims[index] = dim
        I_vars = [k for k, c in enumerate(self.cats) if c == ir.I and k in dims]
        J_vars = [k for k, c in enumerate(self.cats) if c == ir.J and k in dims]
        if not I_vars or not J_vars:
            raise ValueError(
                "K is not a kernel matrix of a point set: it needs i- and j-variables "
                "built from the same points (e.g. Vi(x) and Vj(x))"
            )
        partner, used = {}, set()
        for kj in J_vars:
            same = (ki for ki in I_vars if dims[ki] == dims[kj])
            match = next((ki for ki in same if _same(self.leaves[ki], self.leaves[kj])), None)
            if match is None:
                shape = tuple(self.leaves[kj].shape)
                raise ValueError(
                    f"K is not symmetric: its j-variable of shape {shape} holds points that "
                    "no i-variable holds (K built from different x and y); solve needs "
                    "K_ij = k(x_i, x_j) built from the same points, e.g. Vi(x) and Vj(x)"
                )
            partner[kj] = match
            used.add(match)
        if used != set(I_vars):
            raise ValueError(
                "K is not symmetric: an i-variable has no j-variable holding the same points"
            )
        return partner

    def check_symmetric(self, samples: int = 16, seed: int = 0) -> None:
        """Raise if ``K[S, S]`` is not symmetric for ``samples`` random points ``S``.

        The structure (same points on both sides) is checked at construction;
        this catches formulas that are not symmetric in their arguments, such
        as ``exp(x_i - x_j)``, for the price of one small engine call.
        """
        rng = np.random.default_rng(seed)
        S = rng.choice(self.n, size=min(samples, self.n), replace=False)
        block = arrays.to_host(self.columns(S))[S].astype(np.float64)
        scale = np.abs(block).max()
        tol = (1e-4 if self.dtype == "float32" else 1e-10) * max(scale, np.finfo(float).tiny)
        err = np.abs(block - block.T).max()
        if not err <= tol:
            raise ValueError(
                f"K is not symmetric: |K[i, j] - K[j, i]| = {err:.3g} for sampled points "
                f"(max |K| = {scale:.3g}); solve needs a symmetric kernel k(x, y) = k(y, x)"
            )

    def _use_block(self) -> bool:
        """The held block serves this call (a block built without the autograd
        graph, e.g. inside a solve's forward, does not serve a call that needs
        gradients to the leaves)."""
        self._drop_stale_block()
        if self.block is None:
            return False
        if self.lib == "numpy" or self.block.requires_grad:
            return True
        import torch

        wants = any(arrays.is_array(x) and x.requires_grad for x in self.leaves)
        return not (wants and torch.is_grad_enabled())

    # ------------------------------------------------------------------
    def matmat(self, V):
        """``K @ V`` for ``V`` of shape ``(n, k)`` (or ``(n,)``)."""
        self.products += 1
        self._drop_stale_block()
        if self.block is None and self.materialize_mode in ("auto", True):
            # "auto": the products made so far are the estimate of those to come
            self.materialize(self.products)
        if self._use_block():
            rows = self._held()
            return _full(rows, rows.product(self.block, V), V)
        vector = V.ndim == 1
        Vm = V[:, None] if vector else V
        n = len(self.leaves)
        args, cats = self.leaves + (Vm,), self.cats + (ir.J,)
        options = self.options
        if self.tol:
            if not autograd.needs_grad(args):
                return self._approx_kernel().matmat(V)
            options = options._replace(tol=self.tol)  # each product its own pattern
        f = ir.make("mul", self.formula, ir.var(n, ir.J, Vm.shape[-1]))
        out = autograd.reduce(ReductionRequest(f, "sum", args, cats, options=options))
        return out[:, 0] if vector else out

    __matmul__ = matmat

    def _approx_kernel(self) -> ApproxKernel:
        if self._approx is None:
            # ApproxKernel copies the points to the host (arrays.to_host: detached)
            self._approx = ApproxKernel(
                self.formula, self.leaves, self.cats, self.tol, self.options
            )
        return self._approx

    def diagonal(self):
        """``K_ii`` for every i, shape ``(n,)``, in the library of the points."""
        if self._use_block():
            rows = self._held()
            if not rows.sharded:
                block = self.block
                return block.diagonal().copy() if self.lib == "numpy" else block.diagonal()
            mine = np.arange(rows.hi - rows.lo)
            return _full(rows, arrays.to_host(self.block)[mine, mine + rows.lo], self.block)
        return autograd.reduce(self.diagonal_request())[:, 0]

    def diagonal_request(self) -> ReductionRequest:
        """The reduction whose output ``(n, 1)`` is ``K_ii``: the formula with
        each j-variable read as its i-partner, summed over the one column of a
        formula without j-variables."""
        mapping = tuple(self.partner.get(k, k) for k in range(len(self.leaves)))
        f = ir.recategorize(ir.remap(self.formula, mapping), {ir.I: ir.I, ir.J: ir.I, ir.P: ir.P})
        cats = tuple(ir.P if c == ir.P else ir.I for c in self.cats)
        return ReductionRequest(f, "sum", self.leaves, cats, options=self.options)

    def columns(self, index, rows: tuple[int, int] | None = None):
        """``K[:, index]``, shape ``(n, len(index))``; with ``rows=(lo, hi)`` only
        ``K[lo:hi, index]``, computed by this process alone (under ``sharded()``:
        its own rows, e.g. of a factor it holds; without ``rows`` the work is split
        and every process gets all rows)."""
        index = np.asarray(index, dtype=np.int64)
        if self._use_block():
            return self._block_columns(index, rows)
        leaves = []
        for x, c in zip(self._restricted(rows) if rows else self.leaves, self.cats):
            if c == ir.J:
                x = arrays.take_rows(x, index)[:, None, :]  # batch of len(index), one j each
            leaves.append(x)
        request = ReductionRequest(
            self.formula, "sum", tuple(leaves), self.cats, options=self.options
        )
        if rows is None:
            out = autograd.reduce(request)
        else:
            with split.suspended():
                out = autograd.reduce(request)
        return out[..., 0].T  # (len(index), n) -> (n, len(index))

    def _block_columns(self, index: np.ndarray, rows):
        held, block = self._held(), self.block
        local = block[:, index] if self.lib == "numpy" else block[:, list(index)]
        if not held.sharded:
            return local if rows is None else local[rows[0] : rows[1]]
        if rows == (held.lo, held.hi):
            return local
        full = _full(held, local, block)
        return full if rows is None else full[rows[0] : rows[1]]

    def dense(self):
        """The whole ``n x n`` matrix, built by the engine (see :mod:`.dense` for
        when that pays: ``dense.dense_pays``; :meth:`materialize` holds it)."""
        if self._use_block():
            rows = self._held()
            return _full(rows, self.block, self.block) if rows.sharded else self.block
        return _dense.block(self.formula, self.leaves, self.cats, backend=self.backend)


def _full(rows: RowBlocks, local, like):
    """The rows of every process (``rows.gather``) in the library and on the
    device of ``like``; ``local`` itself in one process."""
    if not rows.sharded:
        return local
    full = rows.gather(local)
    if arrays.library(like) == "numpy":
        return full
    return arrays.from_numpy(full, arrays.library(like), arrays.device(like))


def _same(a, b) -> bool:
    if a is b:
        return True
    if not (arrays.is_array(a) and arrays.is_array(b)) or tuple(a.shape) != tuple(b.shape):
        return False
    return bool((a == b).all())


def kernel_sum(formula: ir.Node, x, y, V, *, dtype=None):
    """``out_i = sum_j k(x_i, y_j) V_j``: one engine reduction, for a formula of
    variable 0 (``x``, over i) and variable 1 (``y``, over j) only.

    The arrays are NumPy or torch (all alike). ``dtype`` (NumPy arrays, e.g.
    ``np.float32``): evaluate in that precision (``x``, ``y`` and ``V`` are cast;
    the result comes back in the dtype of ``V``); None: as given.

    Example
    -------
    >>> x, y = np.random.default_rng(0).random((5, 2)), np.random.default_rng(1).random((4, 2))
    >>> s = ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2))
    >>> f = ir.make("exp", ir.make("neg", s))
    >>> dense = np.exp(-((x[:, None] - y[None]) ** 2).sum(-1))
    >>> bool(np.allclose(kernel_sum(f, x, y, np.ones((4, 1)))[:, 0], dense.sum(1)))
    True
    """
    f = ir.make("mul", formula, ir.var(2, ir.J, V.shape[1]))
    if dtype is None or np.dtype(dtype) == V.dtype:
        return autograd.reduce(ReductionRequest(f, "sum", (x, y, V), (ir.I, ir.J, ir.J)))
    cast = tuple(np.ascontiguousarray(a, dtype=dtype) for a in (x, y, V))
    out = autograd.reduce(ReductionRequest(f, "sum", cast, (ir.I, ir.J, ir.J)))
    return out.astype(V.dtype)
