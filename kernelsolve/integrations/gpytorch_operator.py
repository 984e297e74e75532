"""The LinearOperator of the GPyTorch kernels: products and gradients on the engine.

See :mod:`kernelsolve.integrations.gpytorch` for how the kernels use it.
"""

from __future__ import annotations

import torch
from linear_operator.operators import KernelLinearOperator

from .. import autograd
from ..engine import dispatch, ir, split
from ..engine.request import ReductionOptions, ReductionRequest
from ..linalg import dense

__all__ = ["EngineKernelOperator", "MAX_COLUMNS", "TORCH_FILL_PRODUCTS", "flush_subnormals"]


class EngineKernelOperator(KernelLinearOperator):
    """Kernel matrix ``K_ij = covar_func(x1_i, x2_j)`` whose products and
    gradients are engine reductions.

    Built by the kernels of this module; ``covar_func`` is a
    :class:`CovarFunction` and every parameter is a ``(*batch, 1, p)``
    tensor. Slicing, batch reshaping and transposition come from
    ``linear_operator``'s KernelLinearOperator.

    Products are counted (``products``), a product with ``k`` columns as
    ``ceil(k / MAX_COLUMNS)`` engine products (it runs as that many
    reductions): once the count, this product included, reaches
    :data:`TORCH_FILL_PRODUCTS` in one solve and the block fits the memory
    budget (``dense.memory_budget()``), the operator fills it (torch formulas, without the autograd
    graph) and this and later products made without the graph (those of
    linear_operator's solves) are BLAS products; gradients stay the analytic
    engine ones of :meth:`_bilinear_derivative`.

    Under ``kernelsolve.distributed.sharded()`` each process fills and holds
    only its share of the rows, and a product gathers every process's rows of
    ``block @ rhs`` (the decision to fill is taken by all processes together);
    in ``debug`` mode or with local rows no block is held, and every product
    is a split engine reduction.
    """

    products = 0
    block = None
    block_share = None  # (lo, hi, processes) of the held rows under a split

    def _held_block(self) -> torch.Tensor | None:
        """The dense block, filled once the products made so far repay it; None
        where a product must carry the autograd graph (linear_operator's
        functions run products without it and differentiate by
        :meth:`_bilinear_derivative`). Under ``kernelsolve.distributed.sharded()``
        each process holds only its share of the rows (:meth:`_product`)."""
        if torch.is_grad_enabled() and any(t.requires_grad for t in self.representation()):
            return None
        share = _row_share(self.x1.shape[-2])
        if self.block is not None and self.block_share != share:
            self.block = None  # filled under another split (or none)
        if self.block is None:
            if share is False:  # the split's engine reductions must do the products
                return None
            lo, hi = share[:2] if share else (0, self.x1.shape[-2])
            rows = (hi - lo) * max(1, self.batch_shape.numel())
            nbytes = rows * self.x2.shape[-2] * self.x1.element_size()
            fits = nbytes <= dense.memory_budget(str(self.x1.device))
            if self.products >= TORCH_FILL_PRODUCTS and split.everywhere(fits):
                with torch.no_grad():
                    self.block, self.block_share = self._fill(lo, hi), share
        return self.block

    def _fill(self, lo: int, hi: int) -> torch.Tensor:
        # row chunks: the torch formulas hold (rows, n, D) differences
        n, d = self.x2.shape[-2], self.x2.shape[-1]
        step = max(1, 2**22 // max(1, n * d))
        x1 = self.x1.expand(*self.batch_shape, *self.x1.shape[-2:])
        params = self.tensor_params
        # written into one block (a list of parts and their concatenation held the
        # block twice and took 25 s at 2e4 x 2e4, against 2.6 s at 1e4)
        block = x1.new_empty(*x1.shape[:-2], hi - lo, n)
        for r in range(lo, hi, step):
            part = self.covar_func(x1[..., r : min(r + step, hi), :], self.x2, **params)
            block[..., r - lo : r - lo + part.shape[-2], :] = flush_subnormals(part)
        return block

    def _product(self, block: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        """``K @ rhs`` with the held block (or this process's rows of it)."""
        if self.block_share is None:
            return block @ rhs
        vector = rhs.ndim == 1
        out = block @ (rhs.unsqueeze(-1) if vector else rhs)
        rows = out.movedim(-2, 0)  # (rows of this process, *batch, columns)
        full = split.active().gather_rows(rows.cpu().numpy(), self.x1.shape[-2])
        out = torch.from_numpy(full).to(out.device).movedim(0, -2)
        return out[..., 0] if vector else out

    def _leaves(self, rhs_dim: int | None = None):
        """Engine leaves ``[x1 (i), x2 (j), params (p)...]`` and their IR variables."""
        names = self.covar_func.names()
        d = self.x1.shape[-1]
        xi, xj = ir.var(0, ir.I, d), ir.var(1, ir.J, d)
        pvars = {}
        leaves = [self.x1, self.x2]
        for k, name in enumerate(names):
            p = self.tensor_params[name]
            pvars[name] = ir.var(2 + k, ir.P, p.shape[-1])
            leaves.append(p[..., 0, :])
        cats = [ir.I, ir.J] + [ir.P] * len(names)
        return leaves, cats, xi, xj, pvars

    def _matmul(self, rhs: torch.Tensor) -> torch.Tensor:
        self.products += -(-(rhs.shape[-1] if rhs.ndim > 1 else 1) // MAX_COLUMNS)
        block = self._held_block()
        if block is not None:
            return self._product(block, rhs)
        vector = rhs.ndim == 1
        if vector:
            rhs = rhs.unsqueeze(-1)
        leaves, cats, xi, xj, pvars = self._leaves()
        k = self.covar_func.formula(xi, xj, pvars)
        outs, opts = [], self._options
        for chunk in _column_chunks(rhs):
            v = ir.var(len(leaves), ir.J, chunk.shape[-1])
            args, vcats = tuple(leaves) + (chunk.contiguous(),), tuple(cats) + (ir.J,)
            outs.append(
                autograd.reduce(
                    ReductionRequest(ir.make("mul", k, v), "sum", args, vcats, 1, options=opts)
                )  # fmt: skip
            )
        out = outs[0] if len(outs) == 1 else torch.cat(outs, -1)
        return out[..., 0] if vector else out

    def _bilinear_derivative(self, left_vecs: torch.Tensor, right_vecs: torch.Tensor):
        # d/dtheta sum_ij k_ij <U_i, V_j>: the symbolic gradient of the summand,
        # reduced over j (x1 and the parameters) and over i (x2).
        representation = self.representation()
        wanted = [t.requires_grad for t in representation]
        if not any(wanted):
            return (None,) * len(representation)
        if left_vecs.ndim == 1:
            left_vecs, right_vecs = left_vecs.unsqueeze(-1), right_vecs.unsqueeze(-1)
        grads: list = [None] * len(representation)
        chunks = zip(_column_chunks(left_vecs.detach()), _column_chunks(right_vecs.detach()))
        for left, right in chunks:
            for slot, g in enumerate(self._bilinear_chunk(left, right, wanted)):
                if g is not None:
                    grads[slot] = g if grads[slot] is None else grads[slot] + g
        return tuple(grads)

    def _bilinear_chunk(self, left, right, wanted):
        representation = self.representation()
        leaves, cats, xi, xj, pvars = self._leaves()
        leaves = [t.detach() for t in leaves]
        n = len(leaves)
        c = left.shape[-1]
        U, V = ir.var(n, ir.I, c), ir.var(n + 1, ir.J, c)
        leaves += [left.contiguous(), right.contiguous()]
        cats += [ir.I, ir.J]
        k = self.covar_func.formula(xi, xj, pvars)
        weight = ir.make("scalprod", U, V)
        names = self.covar_func.names()
        grads: list = [None] * len(representation)

        # over j: x1 (if wanted) and the parameters, in one reduction
        parts = []
        if wanted[0]:
            parts.append((0, _grad(k, xi, weight)))
        # representation(): x1, x2, then the tensor parameters sorted by name
        slots = {name: 2 + k for k, name in enumerate(self._differentiable_kwargs)}
        for name in names:
            slot = slots[name]
            if wanted[slot]:
                parts.append((slot, _grad(k, pvars[name], weight)))
        if parts:
            joint = parts[0][1]
            for _, f in parts[1:]:
                joint = ir.make("concat", joint, f)
            request = ReductionRequest(joint, "sum", tuple(leaves), tuple(cats), 1,
                                       options=self._options)  # fmt: skip
            total = dispatch.reduce(request)
            start = 0
            for slot, f in parts:
                g = total[..., start : start + f.dim]
                start += f.dim
                if slot >= 2:  # a parameter: also sum over i, keep the (1, p) rows
                    g = g.sum(-2, keepdim=True)
                grads[slot] = _sum_to(g, representation[slot].shape)
        if wanted[1]:
            f = _grad(k, xj, weight)
            request = ReductionRequest(f, "sum", tuple(leaves), tuple(cats), 0,
                                       options=self._options)  # fmt: skip
            g = dispatch.reduce(request)
            grads[1] = _sum_to(g, representation[1].shape)
        return tuple(grads)

    @property
    def _options(self) -> ReductionOptions:
        """The options of the engine's sums (the kernel's ``tol``)."""
        return ReductionOptions(tol=getattr(self.covar_func, "tol", None))

    @property
    def _symmetric(self) -> bool:
        return self.x1 is self.x2 or (
            self.x1.shape == self.x2.shape and torch.equal(self.x1, self.x2)
        )

    def _diagonal(self) -> torch.Tensor:
        if self._symmetric:  # stationary kernels: k(0) on the diagonal
            zero = torch.zeros_like(self.x1[..., :1, :])
            params = {k: v for k, v in self.tensor_params.items()}
            k0 = self.covar_func.pairs(zero, params)  # (*batch, 1)
            return k0.expand(*self.batch_shape, self.x1.shape[-2])
        return self.covar_func.pairs(self.x1 - self.x2, self.tensor_params)

    def _get_indices(self, row_index, col_index, *batch_indices):
        x1 = self.x1[(*batch_indices, row_index)]
        x2 = self.x2[(*batch_indices, col_index)]
        params = {k: v[batch_indices][..., 0, :] for k, v in self.tensor_params.items()}
        return self.covar_func.pairs(x1 - x2, params)

    def to_dense(self) -> torch.Tensor:
        return self.covar_func(self.x1, self.x2, **self.tensor_params)


#: A dense fill by the torch formulas costs 21-39 engine products with 11
#: columns (measured, Xeon AVX-512, float32, N = 1,500-10,000, D = 2 and 8, RBF
#: and Matern 5/2: fill 39 ms-1.6 s; up to 129 products where first touching the
#: block's memory stalled), and a BLAS product with the block saves only 30-75%
#: of an engine product: the block is filled at the 32nd product of a solve
#: (GPyTorch's training solves make about 22, so they stay matrix-free; an
#: evaluation-mode CG with hundreds of iterations fills), which never costs more
#: than about twice the better of the two choices. (When the engine's kernels
#: still took every subnormal value's microcode assist, a product cost more than
#: the fill and this was 1.)
TORCH_FILL_PRODUCTS = 32

#: Products with more columns run in chunks of this many, so that the engine
#: compiles at most this many kernel variants per formula (the column count is
#: part of the compiled kernel) while wide blocks still share each kernel value
#: among many columns.
MAX_COLUMNS = 32


def flush_subnormals(block):
    """``block`` with its subnormal entries (below ``finfo.tiny``: 1.2e-38 in
    float32) set to 0, on the CPU; other values and CUDA blocks unchanged.

    Kernel values underflow into the subnormal range all the time (a float32
    Gaussian of points 13-14 lengthscales apart), and x86 cores take a microcode
    assist for every subnormal operand: a BLAS product with a 1e4 x 1e4 RBF
    block of the Jacksboro DEM with 6.5% subnormal entries took 153 ms, 30 ms
    once they were 0 (measured, Xeon AVX-512, 11 columns; GPUs have no such
    penalty). The change is below 1.2e-38 (float32) per entry. Differentiable
    (``torch.where``): the flushed entries get no gradient (theirs would be a
    few hundred times their value over the lengthscale: negligible).

    Example
    -------
    >>> flush_subnormals(torch.tensor([1.0, 1e-40, 0.5])).tolist()
    [1.0, 0.0, 0.5]
    """
    if not torch.is_tensor(block) or not block.is_floating_point() or block.is_cuda:
        return block
    small = block.abs() < torch.finfo(block.dtype).tiny
    if torch.is_grad_enabled() and block.requires_grad:
        return torch.where(small, torch.zeros((), dtype=block.dtype), block)
    return block.masked_fill_(small, 0)


def _row_share(m: int):
    """This process's rows ``(lo, hi, processes)`` of an ``m``-row block under an
    installed split; None without one; False where no block may be held: local
    rows (the engine's ring does the products) or debug mode (every product a
    reduction whose arrays the processes compare)."""
    active = split.active()
    if active is None:
        return None
    if active.local or getattr(active, "debug", False):
        return False
    return (*active.bounds(m), active.size)


def _column_chunks(t: torch.Tensor):
    c = t.shape[-1]
    if c <= MAX_COLUMNS:
        return [t]
    return list(t.split(MAX_COLUMNS, dim=-1))


def _grad(k: ir.Node, wrt: ir.Node, weight: ir.Node) -> ir.Node:
    from ..engine.grad import vjp

    return vjp(k, wrt, weight)


def _sum_to(g: torch.Tensor, shape) -> torch.Tensor:
    """Sum the broadcast dimensions of ``g`` away so that it has ``shape``."""
    return autograd._sum_to_shape(g, tuple(shape)).reshape(shape)
