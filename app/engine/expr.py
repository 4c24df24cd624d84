"""Parser for the criterion expression language.

A small recursive-descent parser: no `eval`, no regex over the whole expression. It produces an
untyped syntax tree with character offsets; the loader then resolves feature ids, types and
units against the catalogue (see `compile.py`).

    expression := disjunction
    disjunction:= conjunction ("or" conjunction)*
    conjunction:= unary ("and" unary)*
    unary      := "not" unary | "(" expression ")" | predicate
    predicate  := FEATURE                                  boolean feature is true
                | FEATURE "is" ("true" | "false")
                | FEATURE OP literal                        OP: < <= > >= == != (≤ ≥ also)
                | FEATURE "between" number "and" number [unit]
                | FEATURE "in" "[" literal ("," literal)* "]"
    literal    := number [unit] | word

Mixing `and` with `or` without parentheses is refused: precedence is a poor thing to rely on
in a document that clinicians review.
"""

from __future__ import annotations

from dataclasses import dataclass

KEYWORDS = frozenset({"and", "or", "not", "between", "in", "is", "true", "false"})
_OPS = {
    "<=": "<=",
    ">=": ">=",
    "==": "==",
    "!=": "!=",
    "<": "<",
    ">": ">",
    "≤": "<=",
    "≥": ">=",
    "=": "==",
}


class ExprSyntaxError(ValueError):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Literal:
    value: float | bool | str
    offset: int
    unit: str | None = None
    unit_offset: int = 0


@dataclass(frozen=True, slots=True)
class Predicate:
    feature: str
    offset: int
    op: str  # one of _OPS values, "between", "in" or "is"
    args: tuple[Literal, ...]
    text: str


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "and" | "or"
    children: tuple[Syntax, ...]


@dataclass(frozen=True, slots=True)
class NotOp:
    child: Syntax


Syntax = Predicate | BoolOp | NotOp


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        # ids of `and` nodes written without parentheses, to refuse `a or b and c`
        self.bare: set[int] = set()

    # --- scanning -----------------------------------------------------------------------
    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek_word(self) -> str | None:
        self.skip_space()
        end = self.pos
        while end < len(self.text) and _is_word_char(self.text[end]):
            end += 1
        return self.text[self.pos : end] if end > self.pos else None

    def accept_word(self, word: str) -> bool:
        if self.peek_word() == word:
            self.pos += len(word)
            return True
        return False

    def accept_char(self, ch: str) -> bool:
        self.skip_space()
        if self.text.startswith(ch, self.pos):
            self.pos += len(ch)
            return True
        return False

    def expect_char(self, ch: str, what: str) -> None:
        if not self.accept_char(ch):
            raise ExprSyntaxError(f"expected {what}", self.pos)

    def word(self, what: str) -> tuple[str, int]:
        word = self.peek_word()
        if word is None or word[0].isdigit():
            found = self.text[self.pos : self.pos + 12] or "end of expression"
            raise ExprSyntaxError(f"expected {what}, found {found!r}", self.pos)
        start = self.pos
        self.pos += len(word)
        return word, start

    # --- grammar ------------------------------------------------------------------------
    def parse(self) -> Syntax:
        if not self.text.strip():
            raise ExprSyntaxError("empty expression", 0)
        node = self.disjunction()
        self.skip_space()
        if self.pos < len(self.text):
            raise ExprSyntaxError(f"unexpected {self.text[self.pos : self.pos + 12]!r}", self.pos)
        return node

    def disjunction(self) -> Syntax:
        first_start = self.pos
        children = [self.conjunction()]
        while self.accept_word("or"):
            children.append(self.conjunction())
        if len(children) == 1:
            return children[0]
        if any(id(child) in self.bare for child in children):
            raise ExprSyntaxError("mixing 'and' and 'or' needs parentheses", first_start)
        return BoolOp("or", tuple(children))

    def conjunction(self) -> Syntax:
        children = [self.unary()]
        while self.accept_word("and"):
            children.append(self.unary())
        if len(children) == 1:
            return children[0]
        node = BoolOp("and", tuple(children))
        self.bare.add(id(node))
        return node

    def unary(self) -> Syntax:
        if self.accept_word("not"):
            return NotOp(self.unary())
        if self.accept_char("("):
            inner = self.disjunction()
            self.expect_char(")", "')'")
            self.bare.discard(id(inner))
            return inner
        return self.predicate()

    def predicate(self) -> Syntax:
        feature, start = self.word("a feature id")
        if feature in KEYWORDS:
            raise ExprSyntaxError(f"expected a feature id, found keyword {feature!r}", start)
        args: tuple[Literal, ...]
        if self.accept_word("between"):
            low = self.literal()
            if not self.accept_word("and"):
                raise ExprSyntaxError("expected 'and' in 'between … and …'", self.pos)
            high = self.literal()
            op, args = "between", (low, high)
        elif self.accept_word("in"):
            op, args = "in", self.literal_list()
        elif self.accept_word("is"):
            value, offset = self.word("'true' or 'false'")
            if value not in ("true", "false"):
                raise ExprSyntaxError(f"expected 'true' or 'false', found {value!r}", offset)
            op, args = "==", (Literal(value == "true", offset),)
        elif (symbol := self.operator()) is not None:
            op, args = symbol, (self.literal(),)
        else:
            op, args = "==", (Literal(True, start),)
        return Predicate(feature, start, op, args, self.text[start : self.pos].strip())

    def operator(self) -> str | None:
        self.skip_space()
        for symbol in sorted(_OPS, key=len, reverse=True):
            if self.text.startswith(symbol, self.pos):
                self.pos += len(symbol)
                return _OPS[symbol]
        return None

    def literal_list(self) -> tuple[Literal, ...]:
        self.expect_char("[", "'[' to open a list of values")
        items = [self.literal()]
        while self.accept_char(","):
            items.append(self.literal())
        self.expect_char("]", "',' or ']'")
        return tuple(items)

    def literal(self) -> Literal:
        self.skip_space()
        start = self.pos
        end = start + (1 if self.text[start : start + 1] == "-" else 0)
        while end < len(self.text) and (self.text[end].isdigit() or self.text[end] == "."):
            end += 1
        digits = self.text[start:end]
        if digits and digits not in ("-", "."):
            try:
                number = float(digits)
            except ValueError:
                raise ExprSyntaxError(f"malformed number {digits!r}", start) from None
            self.pos = end
            unit, unit_offset = self.unit()
            return Literal(number, start, unit, unit_offset)
        word, offset = self.word("a number or a value")
        if word in ("true", "false"):
            return Literal(word == "true", offset)
        return Literal(word, offset)

    def unit(self) -> tuple[str | None, int]:
        """An optional UCUM unit after a number: the next run of non-space characters.

        UCUM units contain brackets and parentheses (`mm[Hg]`, `g/(24.h)`), so a closing
        parenthesis or bracket ends the unit only when it does not balance one inside it.
        """
        self.skip_space()
        start = self.pos
        word = self.peek_word()
        if start >= len(self.text) or self.text[start] in "),]" or word in KEYWORDS:
            return None, 0
        end = start
        parens = brackets = 0
        while end < len(self.text) and not self.text[end].isspace():
            ch = self.text[end]
            if (ch == ")" and parens == 0) or (ch in ",]" and brackets == 0):
                break
            parens += (ch == "(") - (ch == ")")
            brackets += (ch == "[") - (ch == "]")
            end += 1
        self.pos = end
        return self.text[start:end], start


def parse(text: str) -> Syntax:
    """Parse an expression; raises ExprSyntaxError with the character offset of the problem."""
    return _Parser(text).parse()
