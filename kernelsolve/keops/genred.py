"""``Genred``: pykeops' generic reduction of a formula string, and the
``generic_sum`` / ``generic_logsumexp`` / ``generic_argmin`` /
``generic_argkmin`` shortcuts.

The formula is parsed once (:mod:`.formula`) into the IR; a call binds the
arrays in position order into one
:class:`~kernelsolve.engine.request.ReductionRequest`, reads pykeops' keywords
with :func:`~kernelsolve.lazytensor.reductions.reduction_options` (as every
LazyTensor reduction does) and runs it through :func:`kernelsolve.autograd.reduce`:
NumPy in, NumPy out; torch in, torch out with autograd.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..engine.request import ReductionRequest
from ..lazytensor.options import check_sum_scheme, reduction_options, write_out
from .formula import parse_formulas
from .formula.aliases import parse_alias
from .reductions import reduction_of

__all__ = ["Genred", "generic_argkmin", "generic_argmin", "generic_logsumexp", "generic_sum"]


def _accuracy_options(
    dtype_acc: str, use_double_acc: bool, sum_scheme: str, enable_chunks: bool, fast_math: bool
) -> dict:
    """pykeops' constructor options as the reduction keywords they stand for."""
    if dtype_acc not in (None, "auto") and use_double_acc:
        raise ValueError("Genred: set dtype_acc or use_double_acc, not both")
    options = {"enable_chunks": enable_chunks, "use_fast_math": fast_math}
    if dtype_acc not in (None, "auto"):
        options["dtype_acc"] = dtype_acc
    if use_double_acc:
        options["use_double_acc"] = True
    if sum_scheme not in (None, "auto"):
        options["sum_scheme"] = sum_scheme
    return options


class Genred:
    """A reduction of a formula string, called on arrays (pykeops' ``Genred``).

    Parameters
    ----------
    formula : str
        The formula, e.g. ``"Exp(-SqDist(x, y)) * b"`` (pykeops' language:
        ``+ - * /``, ``(x|y)``, ``Exp``, ``SqDist``, ``Grad``..., see
        ``docs/keops.md``).
    aliases : list of str
        ``"x = Vi(3)"`` (i-variable of dimension 3, argument = its place in
        the list), ``"y = Vj(1, 3)"`` (position 1), ``"p = Pm(2)"``.
    reduction_op : str
        "Sum", "Min", "Max", "ArgMin", "ArgMax", "Min_ArgMin", "Max_ArgMax",
        "KMin", "ArgKMin", "KMin_ArgKMin" (K = ``opt_arg``), "LogSumExp",
        "SumSoftMaxWeight" (weights = ``formula2``), "Max_SumShiftExp", "Zero"...
    axis : {0, 1}
        0: reduce over i (one output row per j); 1: over j.
    opt_arg : int, optional
        K of the K-min family.
    formula2 : str, optional
        The weights of "SumSoftMaxWeight" and weighted "LogSumExp".
    dtype_acc, use_double_acc, sum_scheme, enable_chunks, use_fast_math
        pykeops' accuracy and speed options, as on every reduction.
    dtype, cuda_type, rec_multVar_highdim
        Accepted for old pykeops code; the dtype comes from the arrays.

    Example
    -------
    >>> import numpy as np
    >>> conv = Genred("Exp(-SqDist(x, y)) * b", ["x = Vi(3)", "y = Vj(3)", "b = Vj(1)"],
    ...               reduction_op="Sum", axis=1)
    >>> x, y, b = np.random.rand(5, 3), np.random.rand(4, 3), np.random.rand(4, 1)
    >>> conv(x, y, b).shape
    (5, 1)
    """

    def __init__(
        self,
        formula: str,
        aliases: Sequence[str],
        reduction_op: str = "Sum",
        axis: int = 0,
        dtype: str | None = None,
        opt_arg: int | None = None,
        formula2: str | None = None,
        cuda_type: str | None = None,
        dtype_acc: str = "auto",
        use_double_acc: bool = False,
        sum_scheme: str = "auto",
        enable_chunks: bool = True,
        rec_multVar_highdim: bool = False,
        use_fast_math: bool = True,
    ):
        if axis not in (0, 1):
            raise ValueError(f"Genred: axis must be 0 (reduce over i) or 1 (over j), got {axis!r}")
        self.reduction, self.engine = reduction_of(reduction_op, opt_arg, formula2 is not None)
        self.formula, self.formula2 = formula, formula2
        self.aliases = tuple(aliases)
        self.reduction_op, self.axis, self.opt_arg = reduction_op, axis, opt_arg
        self.options = _accuracy_options(
            dtype_acc, use_double_acc, sum_scheme, enable_chunks, use_fast_math
        )
        (self.node, self.weight), self.signature = parse_formulas(
            (formula, formula2), self.aliases
        )

    @property
    def nargs(self) -> int:
        """How many arrays a call takes."""
        return self.signature.nargs

    def __call__(self, *args, backend: str = "auto", device_id: int = -1, ranges=None, out=None):
        """The reduction of the arrays ``args`` (one per argument position).

        i- and j-variables are ``(M, D)`` / ``(N, D)`` arrays (with leading
        batch dimensions if any), parameters ``(D,)`` vectors. ``backend``
        ("auto", "CPU", "GPU"...), ``ranges`` (block-sparse) and ``out`` are
        pykeops' keywords; ``device_id`` is accepted.
        """
        if len(args) != self.nargs:
            raise ValueError(
                f"Genred: expected {self.nargs} arrays (one per argument of "
                f"{self.formula!r}), got {len(args)}"
            )
        keywords = dict(self.options, backend=backend, device_id=device_id, out=out)
        if ranges is not None:
            keywords["ranges"] = ranges
        options, _, out, ranges = reduction_options(keywords)
        if self.engine is not None:  # None: Max_SumShiftExp, whose runner sums
            check_sum_scheme(options, self.engine)
        request = ReductionRequest(
            self.node,
            self.engine,
            tuple(args),
            self.signature.cats,
            self.axis,
            self.weight,
            self.opt_arg,
            options,
            ranges,
        )
        return write_out(self.reduction.run(request), out)

    def __repr__(self) -> str:
        return (
            f"Genred({self.formula!r}, {list(self.aliases)!r}, reduction_op="
            f"{self.reduction_op!r}, axis={self.axis})"
        )


def _axis_of(output: str, what: str) -> tuple[int, int]:
    """(axis, dimension) of an output declaration ``"a = Vi(3)"``."""
    _, v = parse_alias(output, 0)
    _, cat, dim = v.attrs
    if cat not in (0, 1):
        raise ValueError(f"{what}: the output {output!r} must be Vi(...) or Vj(...)")
    return 1 - cat, dim


def generic_sum(formula: str, output: str, *aliases: str, **kwargs) -> Genred:
    """``Genred(formula, aliases, "Sum")`` reducing over the axis that
    ``output`` ("a = Vi(D)": over j) leaves.

    >>> import numpy as np
    >>> f = generic_sum("Exp(-SqNorm2(x - y))", "a = Vi(1)", "x = Vi(3)", "y = Vj(3)")
    >>> f(np.zeros((2, 3)), np.zeros((5, 3))).ravel().tolist()
    [5.0, 5.0]
    """
    axis, _ = _axis_of(output, "generic_sum")
    return Genred(formula, aliases, reduction_op="Sum", axis=axis, **kwargs)


def generic_logsumexp(formula: str, output: str, *aliases: str, **kwargs) -> Genred:
    """``Genred(formula, aliases, "LogSumExp")`` (see :func:`generic_sum`)."""
    axis, _ = _axis_of(output, "generic_logsumexp")
    return Genred(formula, aliases, reduction_op="LogSumExp", axis=axis, **kwargs)


def generic_argmin(formula: str, output: str, *aliases: str, **kwargs) -> Genred:
    """``Genred(formula, aliases, "ArgMin")`` (see :func:`generic_sum`)."""
    axis, _ = _axis_of(output, "generic_argmin")
    return Genred(formula, aliases, reduction_op="ArgMin", axis=axis, **kwargs)


def generic_argkmin(formula: str, output: str, *aliases: str, **kwargs) -> Genred:
    """``Genred(formula, aliases, "ArgKMin", opt_arg=K)`` with ``output``
    "a = Vi(K)": the K nearest along j."""
    axis, k = _axis_of(output, "generic_argkmin")
    return Genred(formula, aliases, reduction_op="ArgKMin", axis=axis, opt_arg=k, **kwargs)
