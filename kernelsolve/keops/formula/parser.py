"""A recursive-descent parser of pykeops' formula strings into the IR.

pykeops evaluates its formula strings as Python expressions over its own
classes; we parse the same language (never ``eval``) with Python's operator
precedence, from loosest to tightest:

======================  =========================================
``<  <=  >  >=  == !=`` comparisons (0/1 valued, not chained)
``|``                   scalar product ``(x|y)``
``+  -``                sum, difference
``*  /``                product, quotient
``-x  +x``              unary minus / plus
``**``                  power (``x**2`` square, ``x**n`` Pow, else Powf)
======================  =========================================

Atoms: integer and float literals, alias names, calls ``Name(args...)`` of
the functions of :data:`.builders.BUILDERS`, lists of integers ``[2, 3]`` (as
arguments), and parentheses. Numbers combine as Python numbers until they meet
a formula, where they become constants.
"""

from __future__ import annotations

import difflib
import operator

from ...engine import ir
from .builders import BUILDERS
from .lexer import FormulaError, Token, tokenize

__all__ = ["parse_expression"]

_COMPARE = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}
_ARITH = {"+": "add", "-": "sub", "*": "mul", "/": "div", "|": "scalprod"}
_FOLD = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Parser:
    """One pass over the tokens of ``text``; ``names`` maps aliases to variables."""

    def __init__(self, text: str, names: dict[str, ir.Node]):
        self.text, self.names = text, names
        self.tokens = tokenize(text)
        self.pos = 0
        # every variable written in the text, even one that simplifies away
        # (pykeops counts Grad(x + Var(1,3,1), ...)'s Var(1,3,1) as an argument)
        self.written: list[ir.Node] = []

    # -- token stream -------------------------------------------------
    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expect(self, text: str, what: str) -> Token:
        tok = self.peek()
        if tok.text != text or tok.kind == "end":
            found = "the end of the formula" if tok.kind == "end" else repr(tok.text)
            raise self.error(tok, f"expected {text!r} {what}, found {found}")
        return self.take()

    def error(self, tok: Token, message: str) -> FormulaError:
        return tok.error(message, self.text)

    # -- values: IR nodes, Python numbers, tuples of ints ----------------
    def node(self, value, tok: Token) -> ir.Node:
        if isinstance(value, ir.Node):
            return value
        if _number(value):
            return ir.const(value)
        raise self.error(tok, "a list of integers is not a formula")

    def apply(self, tok: Token, op: str, *args) -> ir.Node:
        """``ir.make(op, *args)``; a dimension error points at ``tok``."""
        try:
            return ir.make(op, *args)
        except (ValueError, TypeError) as e:
            raise self.error(tok, f"{tok.text!r}: {e}") from None

    def binary(self, tok: Token, left, right, ltok: Token, rtok: Token):
        op = _COMPARE.get(tok.text) or _ARITH[tok.text]
        if _number(left) and _number(right) and op in ("add", "sub", "mul", "div"):
            if op == "div" and right == 0:
                raise self.error(tok, "division by zero")
            return _FOLD[op](left, right)
        return self.apply(tok, op, self.node(left, ltok), self.node(right, rtok))

    # -- grammar --------------------------------------------------------
    def parse(self) -> ir.Node:
        start = self.peek()
        if start.kind == "end":
            raise self.error(start, "empty formula")
        value = self.compare()
        end = self.peek()
        if end.kind != "end":
            raise self.error(end, f"unexpected {end.text!r} after a complete formula")
        return self.node(value, start)

    def compare(self):
        first = self.peek()
        left = self.scalprod()
        tok = self.peek()
        if tok.kind == "op" and tok.text in _COMPARE:
            self.take()
            rtok = self.peek()
            left = self.binary(tok, left, self.scalprod(), first, rtok)
            again = self.peek()
            if again.kind == "op" and again.text in _COMPARE:
                raise self.error(again, "chained comparisons are not supported")
        return left

    def _left_assoc(self, ops: tuple[str, ...], operand):
        first = self.peek()
        left = operand()
        while self.peek().kind == "op" and self.peek().text in ops:
            tok = self.take()
            rtok = self.peek()
            left = self.binary(tok, left, operand(), first, rtok)
        return left

    def scalprod(self):
        return self._left_assoc(("|",), self.additive)

    def additive(self):
        return self._left_assoc(("+", "-"), self.term)

    def term(self):
        return self._left_assoc(("*", "/"), self.unary)

    def unary(self):
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("-", "+"):
            self.take()
            value = self.unary()
            if tok.text == "+":
                return value
            if _number(value):
                return -value
            return self.apply(tok, "neg", self.node(value, tok))
        return self.power()

    def power(self):
        btok = self.peek()
        base = self.atom()
        tok = self.peek()
        if not (tok.kind == "op" and tok.text == "**"):
            return base
        self.take()
        etok = self.peek()
        exponent = self.unary()  # Python: the exponent is a unary expression
        if _number(base) and _number(exponent):
            return base**exponent
        x = self.node(base, btok)
        if isinstance(exponent, float) and exponent.is_integer():
            exponent = int(exponent)
        if isinstance(exponent, int):
            try:
                return ir.make("pow", x, attrs=(exponent,))
            except (ValueError, TypeError) as e:
                raise self.error(tok, f"'**': {e}") from None
        return self.apply(tok, "powf", x, self.node(exponent, etok))

    def atom(self):
        tok = self.take()
        if tok.kind == "int":
            return int(tok.text)
        if tok.kind == "float":
            return float(tok.text)
        if tok.text == "(":
            value = self.compare()
            self.expect(")", "to close the parenthesis")
            return value
        if tok.text == "[":
            return self.int_list(tok)
        if tok.kind == "name":
            if self.peek().text == "(":
                return self.call(tok)
            if tok.text in self.names:
                return self.names[tok.text]
            raise self.error(tok, self.unknown_name(tok.text))
        if tok.kind == "end":
            raise self.error(tok, "the formula ends too early")
        raise self.error(tok, f"unexpected {tok.text!r}")

    def unknown_name(self, name: str) -> str:
        if name in BUILDERS:
            return f"{name} is a function: call it as {name}(...)"
        known = sorted(self.names)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown name {name!r} (aliases: {', '.join(known) or 'none'}){hint}"

    def int_list(self, open_tok: Token) -> tuple[int, ...]:
        items: list[int] = []
        if self.peek().text != "]":
            while True:
                tok = self.peek()
                value = self.unary()
                if not isinstance(value, int):
                    raise self.error(tok, "expected an integer in the list")
                items.append(value)
                if self.peek().text != ",":
                    break
                self.take()
        self.expect("]", f"to close the list opened at offset {open_tok.start}")
        return tuple(items)

    def call(self, name_tok: Token):
        name = name_tok.text
        builder = BUILDERS.get(name)
        if builder is None:
            close = difflib.get_close_matches(name, BUILDERS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise self.error(name_tok, f"unknown function {name!r}{hint}")
        self.take()  # "("
        args: list[tuple[object, Token]] = []
        if self.peek().text != ")":
            while True:
                tok = self.peek()
                args.append((self.compare(), tok))
                if self.peek().text != ",":
                    break
                self.take()
        self.expect(")", f"to close the arguments of {name}")
        return self.build(name_tok, builder, args)

    def build(self, name_tok: Token, builder, args):
        name, kinds = name_tok.text, builder.kinds
        least = len(kinds) - builder.optional
        if builder.variadic:
            ok, expected = len(args) >= least, f"at least {least}"
        else:
            ok = least <= len(args) <= len(kinds)
            expected = f"{least}" if builder.optional == 0 else f"{least} to {len(kinds)}"
        if not ok:
            raise self.error(name_tok, f"{name} takes {expected} arguments, got {len(args)}")
        values = []
        for k, (value, tok) in enumerate(args):
            kind = kinds[min(k, len(kinds) - 1)]
            if kind == "f":
                values.append(self.node(value, tok))
            elif kind == "i":
                if not isinstance(value, int):
                    raise self.error(tok, f"{name}: argument {k + 1} must be an integer literal")
                values.append(value)
            else:
                if not isinstance(value, tuple):
                    raise self.error(tok, f"{name}: argument {k + 1} must be a list like [2, 3]")
                values.append(value)
        try:
            node = builder.build(*values)
        except (ValueError, TypeError) as e:
            raise self.error(name_tok, f"{name}: {e}") from None
        if node.op == "var":
            self.written.append(node)
        return node


def parse_expression(text: str, names: dict[str, ir.Node]) -> tuple[ir.Node, tuple[ir.Node, ...]]:
    """The IR node of the formula ``text``, whose alias names are ``names``,
    and the variables written in the text (``Var(...)``, ``Vi(...)``...).

    Raises :class:`~.lexer.FormulaError` (a ``ValueError``) with a caret under
    the offending token.

    >>> x, y = ir.var(0, ir.I, 3), ir.var(1, ir.J, 3)
    >>> parse_expression("Exp(-SqDist(x, y))", {"x": x, "y": y})[0].key
    'exp(neg(sqdist(Var(0,3,i),Var(1,3,j))))'
    """
    parser = _Parser(text, names)
    try:
        node = parser.parse()
    except RecursionError:
        raise FormulaError("the formula is nested too deeply", text, 0, len(text)) from None
    return node, tuple(parser.written)
