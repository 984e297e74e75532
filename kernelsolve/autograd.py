"""torch autograd over engine reductions, to any order.

:func:`reduce` takes the :class:`~.engine.request.ReductionRequest` of
:func:`.engine.dispatch.reduce`. When no argument is a torch tensor that
requires a gradient (or grad mode is off) it *is* the engine call.
Otherwise the reduction becomes a node of torch's graph:

* ``sum`` (hence ``K @ v``), ``logsumexp`` (with and without weight): a
  :class:`torch.autograd.Function` whose backward builds the gradient
  *formulas* with :func:`.engine.grad.vjp` and evaluates them as ``sum``
  reductions through this same function. The backward is therefore itself
  differentiable (double backward, Hessian-vector products, any order), and
  every gradient is a compiled kernel like the forward. For a reduction over
  j, the gradients of the i-variables and the parameters come from one
  reduction over j (their formulas concatenated), those of the j-variables
  from one reduction over i.
* ``min``, ``max``, ``Kmin`` and their ``*_arg*`` forms: the engine returns the
  selected indices; the values' gradient is that of the formula evaluated at
  the selected pairs (the j-variables gathered with ``take_along_dim``, then a
  ``sum`` over a single j), so it flows to exactly the selected pairs.
* ``sumsoftmaxweight``: ``sum_j exp(F_ij - L_i) w_ij`` with
  ``L = logsumexp(F)``, two differentiable reductions.
* ``argmin``, ``argmax``, ``argKmin``: int64, no gradient.

Block-sparse reductions (``ranges``): the backward reductions keep the
request's ranges (the j-variables' reduction over i reads their other half),
and rows with no kept pair get no gradient.

Broadcast batch dimensions: each gradient is summed back to its argument's
shape. Tensors are saved with ``save_for_backward``, so a backward after an
in-place change of an argument raises torch's version-counter error.

``torch.func`` transforms: the functions define ``setup_context`` (so
``torch.func.grad``/``vjp``/``jacrev`` work) and a ``vmap`` rule that turns
the mapped dimension into a leading batch dimension of the reduction.

Forward mode (``torch.func.jvp``, ``jacfwd``, ``hessian``,
``torch.autograd.forward_ad``): the functions' ``jvp`` rule builds the
tangent *formula* with :func:`.engine.grad.jvp`, the input tangents bound as
extra variables of their arguments' categories, and evaluates it through this
same function, so that tangents are differentiable again (any order, forward
over reverse included). ``sum``: the sum of the formula's tangent;
``logsumexp``: its softmax-weighted sum, ``sum_j exp(F_ij - L_i) dF_ij``
(``exp(F - L) (dF w + dw)`` with a weight); ``min``/``max``/``Kmin`` values:
the tangent of the formula at the selected pairs; indices: none.
"""

from __future__ import annotations

from collections.abc import Sequence

from .engine import arrays, dispatch, ir
from .engine.cache import memoized
from .engine.grad import jvp, vjp
from .engine.request import ReductionRequest

__all__ = ["reduce", "needs_grad"]

# Reductions whose value output follows the index of a selected pair, and the
# engine reduction that returns (values, indices) for them.
_SELECT = {
    "min": "min_argmin",
    "max": "max_argmax",
    "min_argmin": "min_argmin",
    "max_argmax": "max_argmax",
    "kmin": "kmin_argkmin",
    "kmin_argkmin": "kmin_argkmin",
}
_INDEX_ONLY = {"argmin", "argmax", "argkmin"}
_SMOOTH = {"sum", "logsumexp", "logsumexp_weight"}


def needs_grad(leaves: Sequence) -> bool:
    """True if a leaf is a torch tensor that requires grad in grad mode, or
    one that a ``torch.func`` transform wraps."""
    Tensor = arrays.torch_tensor_type()  # None until torch is imported
    if Tensor is None:
        return False
    tensors = [x for x in leaves if isinstance(x, Tensor)]
    if not tensors:
        return False
    torch, wrapped, legacy = _torch_checks()
    grad = False
    for x in tensors:
        if wrapped(x):
            return True
        if legacy is not None and legacy(x):
            grad = None
            break
        grad = grad or x.requires_grad
    if grad is not None and _has_forward_tangent(torch, tensors):
        return True
    if grad is None:
        raise NotImplementedError(
            "kernelsolve reductions do not support torch's legacy batched gradients "
            "(autograd.grad(is_grads_batched=True), autograd.functional.jacobian/hessian "
            "with vectorize=True); use torch.func.jacrev / torch.func.vmap, which work"
        )
    return grad and torch.is_grad_enabled()


def _has_forward_tangent(torch, tensors) -> bool:
    """True inside ``torch.autograd.forward_ad.dual_level`` for a dual tensor
    (forward mode does not depend on grad mode)."""
    forward_ad = torch.autograd.forward_ad
    if forward_ad._current_level < 0:
        return False
    return any(forward_ad.unpack_dual(x).tangent is not None for x in tensors)


@memoized("autograd.torch_checks", maxsize=1)
def _torch_checks():
    """torch and its functorch predicates, looked up once (hot path)."""
    import torch

    functorch = torch._C._functorch
    legacy = getattr(functorch, "is_legacy_batchedtensor", None)
    return torch, functorch.is_functorch_wrapped_tensor, legacy


def reduce(request: ReductionRequest):
    """:func:`.engine.dispatch.reduce`, differentiable in torch.

    Example
    -------
    >>> import torch
    >>> from kernelsolve import Vi, Vj
    >>> x = torch.randn(50, 3, requires_grad=True)
    >>> y = torch.randn(40, 3)
    >>> s = (-Vi(x).sqdist(Vj(y))).exp().sum(1)   # runs through this function
    >>> s.sum().backward()
    >>> x.grad.shape
    torch.Size([50, 3])
    """
    if not needs_grad(request.arguments):
        return dispatch.reduce(request)
    request = request._replace(cats=tuple(request.cats), arguments=tuple(request.arguments))
    request = request.over_j()  # every rule below reduces over j
    name = request.reduction
    if name in _SMOOTH or name in _INDEX_ONLY:
        return _engine(request)
    if name in _SELECT:
        return _select_reduce(request)
    if name == "sumsoftmaxweight":
        lse = reduce(request._replace(reduction="logsumexp", weight=None))
        n = len(request.arguments)
        L = ir.var(n, ir.I, 1)
        summand = ir.make(
            "mul", ir.make("exp", ir.make("sub", request.formula, L)), request.weight
        )
        out = reduce(
            request._replace(
                formula=summand,
                reduction="sum",
                arguments=tuple(request.arguments) + (lse,),
                cats=request.cats + (ir.I,),
                weight=None,
            )
        )
        if request.ranges is not None:  # a row with no kept pair: 0 / 0 as the kernel
            out = out.masked_fill(lse.isneginf(), float("nan"))
        return out
    raise ValueError(f"no gradient rule for the reduction {name!r}")


def _engine(request: ReductionRequest):
    """``dispatch.reduce(request)`` as a node of torch's graph (and of
    torch.func's). The request goes in without its arrays, which torch sees
    as the function's inputs."""
    return _functions()[0].apply(_Call(request._replace(arguments=())), *request.arguments)


class _Call:
    """A request without its arrays, opaque to torch's pytrees (which would
    take the named tuple apart)."""

    __slots__ = ("request",)

    def __init__(self, request: ReductionRequest):
        self.request = request

    def run(self, leaves):
        return dispatch.reduce(self.request._replace(arguments=tuple(leaves)))


# ----------------------------------------------------------------------------
# sum / logsumexp: the backward is a pair of sum reductions
# ----------------------------------------------------------------------------


def _cotangents(request: ReductionRequest, G: ir.Node, L: ir.Node):
    """Cotangent formulas (on F, on W) of the reduction's output cotangent G.

    ``G`` and ``L`` (the saved output) are i-variables of the output's width.
    """
    F, W = request.formula, request.weight
    if request.reduction == "sum":
        return G, None
    shifted = ir.make("exp", ir.make("sub", F, L))  # d out / d F, per output column
    if request.reduction == "logsumexp":
        return ir.make("mul", G, shifted), None
    # logsumexp_weight: out_e = log sum_j exp(F) w_e, F scalar
    GS = ir.make("mul", G, shifted)
    return ir.make("sum", ir.make("mul", GS, W)), GS


def _smooth_backward(request: ReductionRequest, leaves, out, grad_out, wanted):
    """Gradients of the leaves flagged in ``wanted`` (None for the others)."""
    n = len(leaves)
    width = out.shape[-1]
    G = ir.var(n, ir.I, width)
    L = ir.var(n + 1, ir.I, width)
    HF, HW = _cotangents(request, G, L)
    variables = {}
    for root in (request.formula, request.weight):
        if root is not None:
            for v in ir.variables(root):
                variables[v.attrs[0]] = v

    def formula_of(k):
        v = variables.get(k)
        if v is None:
            return None
        f = vjp(request.formula, v, HF)
        if request.weight is not None:
            f = ir.make("add", f, vjp(request.weight, v, HW))
        return None if ir.is_const(f, 0) else f

    # the saved output enters the graph only where a formula reads it (logsumexp):
    # otherwise a double backward would run the forward's backward on a zero cotangent
    uses_out = any(L in ir.variables(f) for f in (HF, HW) if f is not None)
    ext_leaves = list(leaves) + [grad_out, out if uses_out else out.detach()]
    ext_cats = request.cats + (ir.I, ir.I)
    grads: list = [None] * n
    for group_cats, axis in (((ir.I, ir.P), 1), ((ir.J,), 0)):
        parts = []
        for k in range(n):
            if wanted[k] and request.cats[k] in group_cats:
                f = formula_of(k)
                if f is not None:
                    parts.append((k, f))
        if not parts:
            continue
        joint = parts[0][1]
        for _, f in parts[1:]:
            joint = ir.make("concat", joint, f)
        # block-sparse: the same kept blocks (over i: the other half of ranges)
        total = reduce(
            ReductionRequest(
                joint,
                "sum",
                tuple(ext_leaves),
                ext_cats,
                axis,
                options=request.options,
                ranges=request.ranges,
            )
        )
        start = 0
        for k, f in parts:
            g = total[..., start : start + f.dim]
            start += f.dim
            if request.cats[k] == ir.P:
                g = g.sum(-2)
            grads[k] = _sum_to_shape(g, tuple(leaves[k].shape))
    return grads


def _sum_to_shape(g, shape):
    """Undo broadcasting: sum ``g`` over the dimensions ``shape`` broadcast."""
    lead = g.ndim - len(shape)
    if lead > 0:
        g = g.sum(tuple(range(lead)))
    dims = tuple(k for k, s in enumerate(shape) if s == 1 and g.shape[k] != 1)
    if dims:
        g = g.sum(dims, keepdim=True)
    return g


@memoized("autograd.functions", maxsize=1)
def _functions():
    """The autograd.Function classes, built on first use (torch is optional)."""
    import torch

    class EngineReduction(torch.autograd.Function):
        """One engine reduction over j. Differentiable for sum and
        logsumexp(_weight); index outputs are marked non-differentiable, and
        min/max/Kmin values get their gradient from :func:`_select_reduce`."""

        @staticmethod
        def forward(call, *leaves):
            return call.run(leaves)

        @staticmethod
        def setup_context(ctx, inputs, output):
            call, *leaves = inputs
            ctx.call = call
            outs = output if isinstance(output, tuple) else (output,)
            ints = [o for o in outs if not o.is_floating_point()]
            if ints:
                ctx.mark_non_differentiable(*ints)
            if call.request.reduction not in _SMOOTH:
                ctx.save_for_forward(*outs)
                return
            # numbers bound to parameters are kept aside; tensors are saved so
            # that torch detects in-place changes before the backward
            ctx.numbers = [None if isinstance(x, torch.Tensor) else x for x in leaves]
            tensors = [x for x in leaves if isinstance(x, torch.Tensor)]
            ctx.save_for_backward(*tensors, output)
            ctx.save_for_forward(*tensors, output)

        @staticmethod
        def backward(ctx, grad_out, *more):
            request = ctx.call.request
            if request.reduction not in _SMOOTH:
                raise RuntimeError(
                    f"kernelsolve: the {request.reduction} reduction has no gradient "
                    "(integer indices)"
                )
            leaves, out = _saved_leaves(ctx)
            wanted = [
                ctx.needs_input_grad[k + 1] and isinstance(x, torch.Tensor)
                for k, x in enumerate(leaves)
            ]
            return (None, *_smooth_backward(request, leaves, out, grad_out, wanted))

        @staticmethod
        def jvp(ctx, _, *tangents):
            request = ctx.call.request
            if request.reduction not in _SMOOTH:
                return _no_tangents(ctx)
            leaves, out = _saved_leaves(ctx)
            return _smooth_jvp(request, leaves, out, tangents)

        @staticmethod
        def vmap(info, in_dims, call, *leaves):
            batched = _batched_leaves(call.request.cats, in_dims[1:], leaves)
            out = EngineReduction.apply(call, *batched)
            return out, (tuple(0 for _ in out) if isinstance(out, tuple) else 0)

    class KeepValues(torch.autograd.Function):
        """Returns ``values``; its gradient goes to ``selected`` (same shape).

        ``values`` come from the min/max kernel, ``selected`` is the formula
        re-evaluated at the chosen pairs: equal up to rounding, and the
        output keeps the kernel's values exactly.
        """

        @staticmethod
        def forward(values, selected):
            return values.clone()

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            return None, g

        @staticmethod
        def jvp(ctx, t_values, t_selected):
            # the values' own tangent is the kernel's, zero: the selected pairs carry it
            return t_selected if t_selected is not None else t_values

        @staticmethod
        def vmap(info, in_dims, values, selected):
            values, selected = (
                x if d is None else x.movedim(d, 0) for x, d in zip((values, selected), in_dims)
            )
            if in_dims[0] is None:
                values = values.expand_as(selected)
            if in_dims[1] is None:
                selected = selected.expand_as(values)
            return KeepValues.apply(values, selected), 0

    return EngineReduction, KeepValues


def _saved_leaves(ctx):
    """(the reduction's leaves, its output) as ``setup_context`` saved them:
    the numbers bound to parameters back in their places among the tensors."""
    *tensors, out = ctx.saved_tensors
    it = iter(tensors)
    return [next(it) if x is None else x for x in ctx.numbers], out


def _batched_leaves(cats, in_dims, leaves):
    """Leaves with the vmapped dimension moved to a new leading batch dim.

    Every tensor gets the same number of batch dimensions (size-1 padding
    after the new one), so that the mapped dimension lines up across leaves.
    """
    own = [
        x.ndim - (1 if c == ir.P else 2) - (d is not None)
        for x, c, d in zip(leaves, cats, in_dims)
        if hasattr(x, "ndim")
    ]
    nb = max(own, default=0)
    out = []
    for x, c, d in zip(leaves, cats, in_dims):
        if not hasattr(x, "ndim"):
            out.append(x)
            continue
        x = x.unsqueeze(0) if d is None else x.movedim(d, 0)
        rank = x.ndim - 1 - (1 if c == ir.P else 2)
        out.append(x.reshape((x.shape[0],) + (1,) * (nb - rank) + tuple(x.shape[1:])))
    return out


# ----------------------------------------------------------------------------
# min / max / Kmin: the gradient of the formula at the selected pairs
# ----------------------------------------------------------------------------


def _select_reduce(request: ReductionRequest):
    import torch

    engine_red = _SELECT[request.reduction]
    with torch.no_grad():
        values, idx = _engine(request._replace(reduction=engine_red, weight=None))
    D = request.formula.dim
    # indices seen as (..., M, K, D): K = 1 for min/max; Kmin drops D when 1
    if engine_red == "kmin_argkmin":
        idx4 = idx.unsqueeze(-1) if D == 1 else idx
    else:
        idx4 = idx.unsqueeze(-2)
    # a row with no kept pair (block-sparse) has index -1: no gradient there
    found = idx4 >= 0
    selected = _selected_values(request, idx4.clamp(min=0))
    selected = torch.where(found, selected, torch.zeros((), dtype=selected.dtype))
    out = _functions()[1].apply(values, selected.reshape(values.shape))
    return out if request.reduction in ("min", "max", "kmin") else (out, idx)


def _selected_values(request: ReductionRequest, idx):
    """``F(x_i, y_j)[d]`` at ``j = idx[..., i, k, d]``: shape ``idx.shape``, differentiable."""
    import torch

    batch, (M, Kk, D) = tuple(idx.shape[:-3]), tuple(idx.shape[-3:])
    rows = M * Kk
    # j-variables become i-variables: the formula is evaluated once per (i, k)
    cats = request.cats
    row_cats = tuple(ir.P if c == ir.P else ir.I for c in cats)
    per_row = ir.recategorize(request.formula, {ir.I: ir.I, ir.J: ir.I, ir.P: ir.P})
    columns = []
    for d in range(D):
        row_leaves = []
        for x, c in zip(request.arguments, cats):
            if c == ir.I:
                lead, width = tuple(x.shape[:-2]), x.shape[-1]
                x = x.unsqueeze(-2).expand(lead + (M, Kk, width)).reshape(lead + (rows, width))
            elif c == ir.J:
                x = x.expand(batch + tuple(x.shape[-2:]))
                x = torch.take_along_dim(x, idx[..., d].reshape(batch + (rows, 1)), dim=-2)
            row_leaves.append(x)
        f = per_row if D == 1 else ir.make("elem", per_row, attrs=(d,))
        r = reduce(
            ReductionRequest(f, "sum", tuple(row_leaves), row_cats, options=request.options)
        )
        # a formula of parameters alone gives one row: broadcast it
        columns.append(r.expand(batch + (rows, 1)).reshape(batch + (M, Kk)))
    return torch.stack(columns, -1)


# ----------------------------------------------------------------------------
# Forward mode: the tangent of a reduction is a reduction of the formula's tangent
# ----------------------------------------------------------------------------


def _no_tangents(ctx):
    """The tangents of an engine reduction without a rule of its own: zero for
    the values (min/max/Kmin get theirs from :func:`_select_reduce`), none for
    integer indices."""
    outs = ctx.saved_tensors
    zero = tuple(o.new_zeros(o.shape) if o.is_floating_point() else None for o in outs)
    return zero if len(zero) > 1 else zero[0]


def _smooth_jvp(request: ReductionRequest, leaves, out, tangents):
    """Tangent of the reduction ``out`` (``sum``, ``logsumexp``,
    ``logsumexp_weight`` over j) for the leaves' ``tangents`` (None: zero)."""
    variables = {}
    for root in (request.formula, request.weight):
        if root is not None:
            for v in ir.variables(root):
                variables[v.attrs[0]] = v
    ext_leaves, ext_cats = list(leaves), list(request.cats)
    tvars = {}
    for k, t in enumerate(tangents):
        v = variables.get(k)
        if t is None or v is None:
            continue
        tvars[v] = ir.var(len(ext_leaves), v.attrs[1], v.attrs[2])
        ext_leaves.append(t)
        ext_cats.append(request.cats[k])
    F, W = request.formula, request.weight
    summand = jvp(F, tvars)
    if request.reduction == "logsumexp_weight":
        summand = ir.make("add", ir.make("mul", summand, W), jvp(W, tvars))
    if request.reduction != "sum" and not ir.is_const(summand, 0):
        # d log sum_j e^F = sum_j e^(F - L) dF, L the output (softmax weights)
        L = ir.var(len(ext_leaves), ir.I, out.shape[-1])
        ext_leaves.append(out)
        ext_cats.append(ir.I)
        summand = ir.make("mul", ir.make("exp", ir.make("sub", F, L)), summand)
    if ir.is_const(summand, 0):
        return out.new_zeros(out.shape)
    # same axis, options and block-sparse ranges as the reduction itself
    tangent = reduce(
        request._replace(
            formula=summand,
            reduction="sum",
            arguments=tuple(ext_leaves),
            cats=tuple(ext_cats),
            weight=None,
            K=None,
        )
    )
    return tangent if tangent.shape == out.shape else tangent.expand(out.shape)
