"""Formula intermediate representation: immutable, hash-consed nodes.

A formula F(x_i, y_j, p) is a DAG of :class:`Node`. Every node is created
through :func:`make`, which

* checks the inner dimensions of the arguments (dim 1 broadcasts),
* simplifies the trivial cases (``0*f``, ``1*f``, ``f+0``, ``--f``, constant
  folding), and
* hash-conses: two structurally equal formulas are the *same* Python object.

Hash-consing gives common-subexpression elimination for free (a DAG walk
visits a shared subformula once) and makes the node itself a cache key:
``node.key`` is a canonical string that two equal formulas share.

Variables are leaves ``Var(index, cat, dim)``: ``index`` is the position of
the bound array in the caller's argument list, ``cat`` is :data:`I` (indexed
by i), :data:`J` (indexed by j) or :data:`P` (a parameter, the same for every
pair).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator

import numpy as np

from .cache import memoized, register_memo
from .ops.base import OPS, Op

__all__ = ["I", "J", "P", "OPS", "Op", "Node", "make", "var", "const", "swap_cats"]

I, J, P = 0, 1, 2  # noqa: E741 (category names of the DESIGN)
CAT_NAMES = {I: "i", J: "j", P: "p"}


class Node:
    """One formula node. Never construct directly: use :func:`make`."""

    __slots__ = ("op", "args", "attrs", "dim", "_key", "__weakref__")

    op: str
    args: tuple[Node, ...]
    attrs: tuple
    dim: int

    def __repr__(self) -> str:
        return self.key

    def __reduce__(self):
        # Pickle by structure; unpickling goes through make() and so re-interns.
        return (_rebuild, (self.op, self.args, self.attrs))

    @property
    def key(self) -> str:
        """Canonical text of the formula, identical for equal formulas."""
        k = self._key
        if k is None:
            k = _render_key(self)
            self._key = k
        return k

    def walk(self) -> Iterator[Node]:
        """Nodes of the DAG in topological order (children first), each once."""
        return iter(topological_order(self))


def _rebuild(op, args, attrs):
    if op == "var":
        return var(*attrs)
    if op == "const":
        return const(*attrs)
    return make(op, *args, attrs=attrs)


# --------------------------------------------------------------------------
# Hash-consing
# --------------------------------------------------------------------------

# Never emptied by clear_cache: two live equal formulas must stay one object.
_interned = register_memo(weakref.WeakValueDictionary(), "ir.interned", clearable=False)
# (op, args, attrs) -> the node make() returned for it (after simplification)
_made = register_memo(weakref.WeakValueDictionary(), "ir.made")
# The same for the nodes made again recently, held strongly: a warm call
# rebuilds its formula op by op, and a weak lookup costs ~1 us of Python.
# Bounded (cleared when full), so formulas that are no longer used still go.
_recent: dict = register_memo({}, "ir.recent")


def _intern(op: str, args: tuple[Node, ...], attrs: tuple, dim: int) -> Node:
    # Child nodes are themselves interned, so identity is structural equality
    # and the tuple of children can serve in the key directly.
    k = (op, args, attrs)
    node = _interned.get(k)
    if node is None:
        node = Node.__new__(Node)
        node.op, node.args, node.attrs, node.dim, node._key = op, args, attrs, dim, None
        _interned[k] = node
    return node


# Variable leaves, held strongly: every LazyTensor construction asks for one,
# and the weak intern table costs ~1 us per lookup. They are few and tiny.
_vars: dict[tuple, Node] = register_memo({}, "ir.vars")


def var(index: int, cat: int, dim: int) -> Node:
    """Variable leaf: argument ``index``, indexed by ``cat`` (I, J or P)."""
    node = _vars.get((index, cat, dim))
    if node is not None and type(index) is int and type(dim) is int:
        return node
    if cat not in (I, J, P):
        raise ValueError(f"var: cat must be I, J or P (0, 1, 2), got {cat!r}")
    if dim < 1:
        raise ValueError(f"var: inner dimension must be >= 1, got {dim}")
    node = _intern("var", (), (int(index), int(cat), int(dim)), int(dim))
    if len(_vars) < 4096:
        _vars[node.attrs] = node
    return node


def const(value: float, dim: int = 1) -> Node:
    """Constant vector of ``dim`` copies of ``value`` (ints stay exact)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"const: expected an int or float, got {type(value).__name__}")
    if isinstance(value, float):
        if math.isnan(value):
            value = math.nan  # one NaN object: NaN != NaN would defeat interning
        elif (
            value.is_integer()
            and abs(value) < 2**53
            and not (value == 0 and math.copysign(1.0, value) < 0)
        ):
            value = int(value)
    return _intern("const", (), (value, int(dim)), int(dim))


def zero(dim: int = 1) -> Node:
    return const(0, dim)


def is_const(node: Node, value=None) -> bool:
    if node.op != "const":
        return False
    return value is None or node.attrs[0] == value


# --------------------------------------------------------------------------
# Construction with simplification
# --------------------------------------------------------------------------

_FOLD_UNARY = {
    "neg": lambda a: -a,
    "square": lambda a: a * a,
    "abs": abs,
}
_FOLD_BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
}


def make(op: str, *args: Node, attrs: tuple = ()) -> Node:
    """Create (or find) the node ``op(*args; attrs)``, simplified.

    Raises ValueError when the inner dimensions of ``args`` do not fit ``op``.
    """
    key = (op, args, attrs if type(attrs) is tuple else tuple(attrs))
    try:
        made = _recent.get(key)
        if made is not None:
            return made
        made = _made.get(key)
    except TypeError:  # unhashable argument: the checks below explain it
        made = None
    if made is not None:  # the whole construction, simplification included, is memoised
        _remember(key, made)
        return made
    info = OPS.get(op)
    if info is None:
        raise ValueError(f"unknown operation {op!r}")
    if len(args) != info.arity:
        raise ValueError(f"{op} takes {info.arity} arguments, got {len(args)}")
    if len(attrs) != info.nattrs:
        raise ValueError(f"{op} takes {info.nattrs} attribute(s), got {tuple(attrs)!r}")
    for a in args:
        if not isinstance(a, Node):
            raise TypeError(f"{op}: arguments must be IR nodes, got {type(a).__name__}")
    # NumPy integers become Python ints: one canonical key per formula.
    attrs = tuple(int(a) if _is_np_int(a) else a for a in attrs)
    dim = info.dim(op, tuple(a.dim for a in args), attrs)
    node = _simplify(op, args, attrs, dim)
    if node is None:
        node = _intern(op, args, attrs, dim)
    _made[(op, args, attrs)] = node
    _remember((op, args, attrs), node)
    return node


def _remember(key: tuple, node: Node) -> None:
    if len(_recent) >= 8192:
        _recent.clear()
    _recent[key] = node


def _is_np_int(a) -> bool:
    return isinstance(a, np.integer)


def _broadcast_to(node: Node, dim: int) -> Node | None:
    """``node`` viewed with inner dimension ``dim``, or None if not free."""
    if node.dim == dim:
        return node
    if node.op == "const":
        return const(node.attrs[0], dim)
    return None


def _simplify(op, args, attrs, dim) -> Node | None:
    consts = [a.op == "const" for a in args]
    if all(consts) and args:
        vals = [a.attrs[0] for a in args]
        if op in _FOLD_UNARY:
            return const(_FOLD_UNARY[op](vals[0]), dim)
        if op in _FOLD_BINARY:
            return const(_FOLD_BINARY[op](*vals), dim)
        if op == "div" and vals[1] != 0:
            q = vals[0] / vals[1]
            return const(q, dim)
        if op == "pow" and not (vals[0] == 0 and attrs[0] < 0):
            try:
                return const(float(vals[0]) ** attrs[0], dim)
            except OverflowError:
                return None  # evaluated at run time, where it is +-inf
    if op == "neg" and args[0].op == "neg":
        return args[0].args[0]
    if op == "add":
        a, b = args
        if is_const(a, 0):
            return _broadcast_to(b, dim)
        if is_const(b, 0):
            return _broadcast_to(a, dim)
    elif op == "sub":
        a, b = args
        if is_const(b, 0):
            return _broadcast_to(a, dim)
        if is_const(a, 0) and b.dim == dim:
            return make("neg", b)
    elif op == "mul":
        a, b = args
        if is_const(a, 0) or is_const(b, 0):
            return zero(dim)
        if is_const(a, 1):
            return _broadcast_to(b, dim)
        if is_const(b, 1):
            return _broadcast_to(a, dim)
        if is_const(a, -1) and b.dim == dim:
            return make("neg", b)
        if is_const(b, -1) and a.dim == dim:
            return make("neg", a)
    elif op == "div":
        a, b = args
        if is_const(b, 1):
            return _broadcast_to(a, dim)
        if is_const(a, 0) and not is_const(b, 0):
            return zero(dim)
    elif op == "pow":
        (n,) = attrs
        if n == 1:
            return args[0]
        if n == 0:
            return const(1, dim)
        if n == 2:
            return make("square", args[0])
        if n == -1:
            return make("inv", args[0])
    elif op in ("sum", "sqnorm2") and is_const(args[0], 0):
        return zero(1)
    return None


# --------------------------------------------------------------------------
# Queries and rewrites (memoised: nodes are immutable)
# --------------------------------------------------------------------------


@memoized("ir.topological_order")
def topological_order(root: Node) -> tuple[Node, ...]:
    """All nodes of ``root``'s DAG, children before parents, each once."""
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in seen:
            continue
        if expanded:
            seen.add(id(node))
            order.append(node)
        else:
            stack.append((node, True))
            for child in reversed(node.args):
                if id(child) not in seen:
                    stack.append((child, False))
    return tuple(order)


@memoized("ir.variables")
def variables(root: Node) -> tuple[Node, ...]:
    """The ``var`` leaves of ``root``, sorted by argument index."""
    leaves = {n for n in topological_order(root) if n.op == "var"}
    return tuple(sorted(leaves, key=lambda n: n.attrs))


@memoized("ir.remap")
def remap(root: Node, mapping: tuple[int, ...]) -> Node:
    """Rename variable ``k`` to ``mapping[k]`` throughout ``root``."""

    def leaf(node: Node) -> Node:
        index, cat, dim = node.attrs
        return var(mapping[index], cat, dim)

    return _rebuild_leaves(root, leaf)


@memoized("ir.swap_ij")
def swap_ij(root: Node) -> Node:
    """Transpose: i-variables become j-variables and vice versa."""
    return recategorize(root, _SWAPPED)


_SWAPPED = {I: J, J: I, P: P}


def swap_cats(cats) -> tuple[int, ...]:
    """The categories of the transposed formula (:func:`swap_ij`): i <-> j.

    >>> swap_cats((I, J, P)) == (J, I, P)
    True
    """
    return tuple([_SWAPPED[c] for c in cats])


def recategorize(root: Node, new_cat: dict[int, int]) -> Node:
    """The formula with each variable of category ``c`` moved to ``new_cat[c]``."""

    def leaf(node: Node) -> Node:
        index, cat, dim = node.attrs
        return var(index, new_cat[cat], dim)

    return _rebuild_leaves(root, leaf)


def _rebuild_leaves(root: Node, leaf: Callable[[Node], Node]) -> Node:
    new: dict[int, Node] = {}
    for node in topological_order(root):
        if node.op == "var":
            new[id(node)] = leaf(node)
        elif node.op == "const":
            new[id(node)] = node
        else:
            new[id(node)] = make(node.op, *(new[id(a)] for a in node.args), attrs=node.attrs)
    return new[id(root)]


def count_nodes(root: Node) -> int:
    return len(topological_order(root))


# --------------------------------------------------------------------------
# Canonical text
# --------------------------------------------------------------------------


def _fmt_attr(a) -> str:
    if isinstance(a, float):
        if math.isnan(a) or math.isinf(a):
            return repr(a)
        return float.hex(a) if not a.is_integer() else repr(a)
    return repr(a)


def _render_key(node: Node) -> str:
    """Nested text; a non-leaf used more than once is written once as
    ``#k=...`` and referenced as ``#k`` after, so the key stays linear in
    the size of the DAG. Iterative: deep formulas do not hit the recursion
    limit."""
    order = topological_order(node)
    uses: dict[int, int] = {}
    for n in order:
        for a in n.args:
            uses[id(a)] = uses.get(id(a), 0) + 1
    text: dict[int, str] = {}
    lets: list[str] = []
    for n in order:
        if n.op == "var":
            index, cat, dim = n.attrs
            t = f"Var({index},{dim},{CAT_NAMES[cat]})"
        elif n.op == "const":
            value, dim = n.attrs
            t = f"Const({_fmt_attr(value)},{dim})"
        else:
            parts = [text[id(a)] for a in n.args] + [_fmt_attr(a) for a in n.attrs]
            t = f"{n.op}({','.join(parts)})"
            if uses.get(id(n), 0) > 1:
                name = f"#{len(lets)}"
                lets.append(f"{name}={t}")
                t = name
        text[id(n)] = t
    body = text[id(node)]
    return f"{'; '.join(lets)}; {body}" if lets else body
