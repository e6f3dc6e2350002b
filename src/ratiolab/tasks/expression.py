"""A small recursive-descent parser for integer expressions (``+ - * /`` and parentheses), no ``eval``.

Grammar::

    expr   := term (('+' | '-') term)*
    term   := factor (('*' | '/') factor)*
    factor := NUMBER | '(' expr ')'

Values are exact ``Fraction``s; division by zero and malformed input raise ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

MAX_LENGTH = 200


@dataclass(frozen=True)
class Parsed:
    """The exact value of an expression and the integer literals it uses, in order."""

    value: Fraction
    numbers: tuple[int, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text.replace(" ", "")
        self.pos = 0
        self.numbers: list[int] = []

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expr(self) -> Fraction:
        value = self.term()
        while self._peek() in ("+", "-"):
            op = self.text[self.pos]
            self.pos += 1
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self) -> Fraction:
        value = self.factor()
        while self._peek() in ("*", "/"):
            op = self.text[self.pos]
            self.pos += 1
            rhs = self.factor()
            if op == "*":
                value = value * rhs
            elif rhs == 0:
                raise ValueError("division by zero")
            else:
                value = value / rhs
        return value

    def factor(self) -> Fraction:
        if self._peek() == "(":
            self.pos += 1
            value = self.expr()
            if self._peek() != ")":
                raise ValueError(f"expected ')' at position {self.pos}")
            self.pos += 1
            return value
        start = self.pos
        while self._peek().isdigit() and self._peek().isascii():
            self.pos += 1
        if start == self.pos:
            raise ValueError(f"expected a number or '(' at position {start}")
        number = int(self.text[start : self.pos])
        self.numbers.append(number)
        return Fraction(number)


def parse(text: str) -> Parsed:
    """Parse and evaluate ``text`` exactly; raise ValueError on malformed or over-long input."""
    if len(text) > MAX_LENGTH:
        raise ValueError(f"expression longer than {MAX_LENGTH} characters")
    parser = _Parser(text)
    value = parser.expr()
    if parser.pos != len(parser.text):
        raise ValueError(f"unexpected {parser.text[parser.pos]!r} at position {parser.pos}")
    return Parsed(value=value, numbers=tuple(parser.numbers))
