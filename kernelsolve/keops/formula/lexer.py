"""Tokens of pykeops' formula language, and errors that point at one.

A formula such as ``"Exp(-SqDist(x, y)) * b"`` or an alias such as
``"x = Vi(0, 3)"`` is cut into :class:`Token` s (names, integers, floats,
operators and brackets), each with its offset in the text, so that an error
can print the text with a caret under the offending token
(:class:`FormulaError`).

>>> [t.text for t in tokenize("Pow((X|Y), 2)")]
['Pow', '(', '(', 'X', '|', 'Y', ')', ',', '2', ')', '']
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["FormulaError", "Token", "tokenize"]

# Longest operators first: "**" before "*", "<=" before "<".
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<float>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>\d+)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op>\*\*|<=|>=|==|!=|[-+*/|()\[\],<>=])
    """,
    re.VERBOSE,
)


class FormulaError(ValueError):
    """A formula or alias that does not parse or does not make sense, with
    the text and a caret under the offending token."""

    def __init__(self, message: str, text: str, start: int, length: int = 1):
        self.reason, self.text, self.start = message, text, start
        caret = " " * start + "^" * max(1, length)
        super().__init__(f"{message}\n    {text}\n    {caret}")


class Token(NamedTuple):
    """One token: ``kind`` is "name", "int", "float", "op" or "end"."""

    kind: str
    text: str
    start: int

    def error(self, message: str, source: str) -> FormulaError:
        """A :class:`FormulaError` with the caret under this token."""
        return FormulaError(message, source, self.start, len(self.text) or 1)


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an "end" token.

    Raises :class:`FormulaError` at the first character that starts no token.
    """
    if not isinstance(text, str):
        raise TypeError(f"a formula must be a string, got {type(text).__name__}")
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FormulaError(f"unexpected character {text[pos]!r}", text, pos)
        kind = m.lastgroup
        if kind != "space":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens
