"""pykeops' alias declarations: ``"x = Vi(3)"``, ``"x = Vi(2, 3)"``,
``"Vj(1, 3)"``, ``"x = Var(0, 3, 1)"``.

* ``Vi`` / ``Vj`` / ``Pm`` (and the old names ``Vx`` / ``Vy``) give the
  category: indexed by i, by j, or a parameter;
* one integer is the dimension, and the position is the alias's place in
  the list; two integers are ``(position, dimension)``;
* ``Var(position, dimension, category)`` spells all three.

>>> declare(["x = Vi(3)", "y=Vj(2, 3)"])[0]["y"].key
'Var(2,3,j)'
"""

from __future__ import annotations

from collections.abc import Sequence

from ...engine import ir
from .lexer import FormulaError, Token, tokenize

__all__ = ["declare"]

_CATS = {"Vi": ir.I, "Vx": ir.I, "Vj": ir.J, "Vy": ir.J, "Pm": ir.P}


def _ints(tokens: list[Token], k: int, text: str) -> tuple[list[int], int]:
    """The comma-separated integers from ``tokens[k]`` (after "(") to ")"."""
    values: list[int] = []
    while True:
        tok = tokens[k]
        if tok.kind != "int":
            raise tok.error("expected an integer", text)
        values.append(int(tok.text))
        k += 1
        if tokens[k].text == ")":
            return values, k + 1
        if tokens[k].text != ",":
            raise tokens[k].error("expected ',' or ')'", text)
        k += 1


def parse_alias(text: str, index: int) -> tuple[str | None, ir.Node]:
    """(name or None, variable) of one declaration, the ``index``-th of its list."""
    tokens = tokenize(text)
    k, name = 0, None
    if len(tokens) > 2 and tokens[1].text == "=":
        if tokens[0].kind != "name":
            raise tokens[0].error("expected an alias name", text)
        name, k = tokens[0].text, 2
    head = tokens[k]
    if head.text not in _CATS and head.text != "Var":
        raise head.error("expected Vi(...), Vj(...), Pm(...) or Var(pos, dim, cat)", text)
    if tokens[k + 1].text != "(":
        raise tokens[k + 1].error(f"expected '(' after {head.text}", text)
    values, k = _ints(tokens, k + 2, text)
    if tokens[k].kind != "end":
        raise tokens[k].error("unexpected text after the declaration", text)
    if head.text == "Var":
        if len(values) != 3 or values[2] not in (0, 1, 2):
            raise head.error("Var takes (position, dimension, category 0, 1 or 2)", text)
        pos, dim, cat = values
    else:
        if len(values) not in (1, 2):
            raise head.error(f"{head.text} takes (dimension) or (position, dimension)", text)
        pos, dim = (index, values[0]) if len(values) == 1 else values
        cat = _CATS[head.text]
    if dim < 1:
        raise head.error(f"the dimension must be >= 1, got {dim}", text)
    return name, ir.var(pos, cat, dim)


def declare(aliases: Sequence[str]) -> tuple[dict[str, ir.Node], dict[int, ir.Node]]:
    """(name -> variable, position -> variable) of a list of declarations.

    Raises :class:`~.lexer.FormulaError` for a malformed declaration, a name
    declared twice, or one position declared with two categories or dimensions.
    """
    if isinstance(aliases, str):
        aliases = [aliases]
    names: dict[str, ir.Node] = {}
    positions: dict[int, ir.Node] = {}
    for index, text in enumerate(aliases):
        if text is None:  # pykeops' complete_aliases leaves holes as None
            continue
        name, v = parse_alias(text, index)
        if name is not None:
            if name in names:
                raise FormulaError(f"alias {name!r} is declared twice", text, 0, len(name))
            names[name] = v
        claim_position(positions, v, text, "position {pos} is declared twice, as {old} and {new}")
    return names, positions


def claim_position(positions: dict, v: ir.Node, text: str, conflict: str) -> None:
    """Record variable ``v`` at its argument position, or raise a
    :class:`FormulaError` on ``text`` when another variable holds it;
    ``conflict`` words the clash from ``{pos}``, ``{old}`` and ``{new}``
    (the variables' keys)."""
    pos = v.attrs[0]
    old = positions.get(pos)
    if old is not None and old is not v:
        message = conflict.format(pos=pos, old=old.key, new=v.key)
        raise FormulaError(message, text, 0, len(text))
    positions[pos] = v
