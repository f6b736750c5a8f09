"""PocketBase's filter language (the `fexpr` grammar): a tokenizer and a recursive-descent parser.

Independent of the rest of shipyard: it turns untrusted text into a small immutable AST and
nothing else, so the compiler never sees raw text. Every error names the offending position
(0-based character offset) so a client can point at it. Input size, the number of
comparisons and the nesting depth are bounded, so no input can cause deep recursion.

Grammar (as fexpr): `expr := and ("||" and)*`, `and := primary ("&&" primary)*`,
`primary := "(" expr ")" | operand SIGN operand`; operands are identifiers (`a.b:mod`,
`@request.auth.id`), 'single' or "double" quoted text (only `\\<quote>` is an escape; other
backslashes stay, as in PocketBase, so LIKE patterns keep `\\%`), numbers, `true`, `false`,
`null` and function calls `name(arg, ...)`. `//` starts a comment to the end of the line.
`&&` binds tighter than `||`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

SIGN_OPS = frozenset(
    ("=", "!=", "~", "!~", "<", "<=", ">", ">=", "?=", "?!=", "?~", "?!~", "?<", "?<=", "?>", "?>=")
)
MAX_FUNCTION_DEPTH = 3
MAX_SORT_FIELD_LENGTH = 255

_WHITESPACE = " \t\n\r"
_SIGN_CHARS = "=?!<>~"
_JOIN_CHARS = "&|"
_IDENT_RE = re.compile(r"[A-Za-z@_#][A-Za-z0-9_.:]*")
_NUMBER_RE = re.compile(r"-?[0-9]*(?:\.[0-9]*)?")
_SIGN_RE = re.compile(r"[=?!<>~]+")
_JOIN_RE = re.compile(r"[&|]+")
_SORT_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*(?::[A-Za-z]+)?")


class FilterSyntaxError(ValueError):
    """A filter or sort expression that cannot be parsed; `message` says what and where."""

    def __init__(self, reason: str, position: int) -> None:
        self.reason = reason
        self.position = position
        self.message = f"{reason} at position {position}"
        super().__init__(self.message)


# ------------------------------------------------------------------------------- the AST


@dataclass(frozen=True, slots=True)
class Identifier:
    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Text:
    value: str
    pos: int


@dataclass(frozen=True, slots=True)
class Number:
    value: float
    raw: str  # as written, so comparing with text compares with what the user typed
    pos: int


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Null:
    pos: int


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Operand, ...]
    pos: int


Operand = Identifier | Text | Number | Bool | Null | Call


@dataclass(frozen=True, slots=True)
class Comparison:
    left: Operand
    op: str
    right: Operand
    pos: int


@dataclass(frozen=True, slots=True)
class Logical:
    op: str  # "&&" | "||"
    items: tuple[Node, ...]
    pos: int


Node = Comparison | Logical


# ------------------------------------------------------------------------------- tokenizer


class Token(NamedTuple):
    kind: str  # ident | number | text | sign | join | ( | ) | , | eof
    value: str
    pos: int
    end: int


def _describe(tok: Token) -> str:
    return "the end of the filter" if tok.kind == "eof" else f"'{tok.value}'"


def _check_characters(text: str) -> None:
    """Reject what no database accepts in text (NUL, lone surrogates) before it gets that far."""
    nul = text.find("\x00")
    if nul >= 0:
        raise FilterSyntaxError("unexpected character '\\x00'", nul)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise FilterSyntaxError("invalid character", exc.start) from None


def _scan_text(text: str, start: int) -> tuple[Token, int]:
    """fexpr's rule: the text ends at the first quote not preceded by a backslash."""
    quote = text[start]
    i = text.find(quote, start + 1)
    while i > 0 and text[i - 1] == "\\":
        i = text.find(quote, i + 1)
    if i < 0:
        raise FilterSyntaxError("unterminated quoted text", start)
    raw = text[start + 1 : i]
    value = raw.replace("\\" + quote, quote) if "\\" in raw else raw
    return Token("text", value, start, i + 1), i + 1


def _scan_number(text: str, start: int) -> tuple[Token, int]:
    m = _NUMBER_RE.match(text, start)
    literal = m.group() if m else ""
    if literal in ("", "-") or literal.endswith(".") or not any(c.isdigit() for c in literal):
        raise FilterSyntaxError(f"invalid number '{literal or text[start]}'", start)
    return Token("number", literal, start, start + len(literal)), start + len(literal)


def _scan_identifier(text: str, start: int) -> tuple[Token, int]:
    m = _IDENT_RE.match(text, start)
    literal = m.group() if m else text[start]
    if literal[-1] in ".:" or literal in ("@", "_", "#"):
        raise FilterSyntaxError(f"invalid identifier '{literal}'", start)
    return Token("ident", literal, start, start + len(literal)), start + len(literal)


def _scan_operator(text: str, start: int, pattern: re.Pattern[str], kind: str) -> tuple[Token, int]:
    m = pattern.match(text, start)
    literal = m.group() if m else text[start]
    valid = literal in SIGN_OPS if kind == "sign" else literal in ("&&", "||")
    if not valid:
        what = f"operator '{literal}'" if kind == "sign" else f"'{literal}' (expected && or ||)"
        raise FilterSyntaxError(f"invalid {what}", start)
    return Token(kind, literal, start, start + len(literal)), start + len(literal)


def tokenize(text: str) -> list[Token]:
    """Split a filter into tokens, dropping whitespace and `//` comments; ends with an eof token."""
    return list(_tokens(text))


def _tokens(text: str) -> Iterator[Token]:
    """Tokens on demand, so the parser stops at the first problem of a huge input."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE:
            i += 1
            continue
        if ch == "/":
            if not text.startswith("//", i):
                raise FilterSyntaxError("invalid comment (expected //)", i)
            nl = text.find("\n", i)
            i = n if nl < 0 else nl + 1
            continue
        if ch in "(),":
            tok, i = Token(ch, ch, i, i + 1), i + 1
        elif ch in "'\"":
            tok, i = _scan_text(text, i)
        elif ch == "-" or (ch.isdigit() and ch.isascii()):
            tok, i = _scan_number(text, i)
        elif ch in "@_#" or (ch.isascii() and ch.isalpha()):
            tok, i = _scan_identifier(text, i)
        elif ch in _SIGN_CHARS:
            tok, i = _scan_operator(text, i, _SIGN_RE, "sign")
        elif ch in _JOIN_CHARS:
            tok, i = _scan_operator(text, i, _JOIN_RE, "join")
        else:
            raise FilterSyntaxError(f"unexpected character {ch!r}", i)
        yield tok
    yield Token("eof", "", n, n)


# ------------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, tokens: Iterator[Token], max_expressions: int, max_depth: int) -> None:
        self.tokens = tokens
        self.current = next(tokens)
        self.max_expressions = max_expressions
        self.max_depth = max_depth
        self.expressions = 0

    def peek(self) -> Token:
        return self.current

    def advance(self) -> Token:
        tok = self.current
        if tok.kind != "eof":
            self.current = next(self.tokens)
        return tok

    def parse_or(self, depth: int) -> Node:
        return self._joined("||", depth)

    def _joined(self, op: str, depth: int) -> Node:
        """One precedence level: `||` over `&&`-groups, `&&` over primaries (flattened)."""
        first = self.peek()
        items: list[Node] = []
        while True:
            node = self._joined("&&", depth) if op == "||" else self.parse_primary(depth)
            if isinstance(node, Logical) and node.op == op:
                items.extend(node.items)
            else:
                items.append(node)
            tok = self.peek()
            if tok.kind != "join" or tok.value != op:
                break
            self.advance()
        return items[0] if len(items) == 1 else Logical(op, tuple(items), first.pos)

    def parse_primary(self, depth: int) -> Node:
        tok = self.peek()
        if tok.kind != "(":
            return self.parse_comparison()
        if depth + 1 > self.max_depth:
            raise FilterSyntaxError(
                f"too deeply nested parentheses (max {self.max_depth} levels)", tok.pos
            )
        self.advance()
        if self.peek().kind == ")":
            raise FilterSyntaxError("empty parentheses", tok.pos)
        node = self.parse_or(depth + 1)
        close = self.peek()
        if close.kind != ")":
            raise FilterSyntaxError(
                f"expected ')' to close the '(' at position {tok.pos}, got {_describe(close)}",
                close.pos,
            )
        self.advance()
        return node

    def parse_comparison(self) -> Comparison:
        left = self.parse_operand("left", 0)
        sign = self.peek()
        if sign.kind != "sign":
            raise FilterSyntaxError(f"expected an operator, got {_describe(sign)}", sign.pos)
        self.advance()
        right = self.parse_operand("right", 0)
        self.expressions += 1
        if self.expressions > self.max_expressions:
            raise FilterSyntaxError(
                f"too many expressions (max {self.max_expressions})", _operand_pos(left)
            )
        return Comparison(left, sign.value, right, _operand_pos(left))

    def parse_operand(self, side: str, func_depth: int) -> Operand:
        tok = self.peek()
        if tok.kind == "number":
            self.advance()
            value = float(tok.value)
            if not math.isfinite(value):
                raise FilterSyntaxError(f"number out of range '{tok.value}'", tok.pos)
            return Number(value, tok.value, tok.pos)
        if tok.kind == "text":
            self.advance()
            return Text(tok.value, tok.pos)
        if tok.kind == "ident":
            self.advance()
            nxt = self.peek()
            if nxt.kind == "(" and nxt.pos == tok.end:
                return self.parse_call(tok, func_depth + 1)
            lowered = tok.value.lower()
            if lowered in ("true", "false"):
                return Bool(lowered == "true", tok.pos)
            if lowered == "null":
                return Null(tok.pos)
            return Identifier(tok.value, tok.pos)
        what = "an argument" if side == "argument" else f"a {side} operand"
        raise FilterSyntaxError(
            f"expected {what} (identifier, text or number), got {_describe(tok)}", tok.pos
        )

    def parse_call(self, name: Token, depth: int) -> Call:
        if depth > MAX_FUNCTION_DEPTH:
            raise FilterSyntaxError(
                f"too deeply nested function calls (max {MAX_FUNCTION_DEPTH})", name.pos
            )
        self.advance()  # (
        args: list[Operand] = []
        while self.peek().kind != ")":
            args.append(self.parse_operand("argument", depth))
            sep = self.peek()
            if sep.kind == ",":
                self.advance()
            elif sep.kind != ")":
                raise FilterSyntaxError(
                    f"expected ',' or ')' in the call of {name.value}(), got {_describe(sep)}",
                    sep.pos,
                )
        self.advance()  # )
        return Call(name.value, tuple(args), name.pos)


def _operand_pos(op: Operand) -> int:
    return op.pos


def parse(
    text: str, max_length: int = 3500, max_expressions: int = 200, max_depth: int = 32
) -> Node:
    """Parse a filter into its AST or raise FilterSyntaxError (limits are checked first)."""
    if len(text) > max_length:
        raise FilterSyntaxError(
            f"the filter is too long ({len(text)} characters, max {max_length})", max_length
        )
    _check_characters(text)
    parser = _Parser(_tokens(text), max_expressions, max_depth)
    if parser.peek().kind == "eof":
        raise FilterSyntaxError("empty filter expression", 0)
    node = parser.parse_or(0)
    tok = parser.peek()
    if tok.kind == ")":
        raise FilterSyntaxError("unexpected token ')'", tok.pos)
    if tok.kind != "eof":
        raise FilterSyntaxError(f"expected && or ||, got {_describe(tok)}", tok.pos)
    return node


def parse_sort(
    text: str, max_fields: int = 8, max_field_length: int = MAX_SORT_FIELD_LENGTH
) -> list[tuple[str, bool]]:
    """Parse `-a,+b,c.d,@random` into `[(name, descending), ...]`; "" gives []."""
    if not text.strip():
        return []
    if text.count(",") + 1 > max_fields:
        raise FilterSyntaxError(
            f"too many sort fields ({text.count(',') + 1}, max {max_fields})", 0
        )
    out: list[tuple[str, bool]] = []
    offset = 0
    for part in text.split(","):
        start = offset + len(part) - len(part.lstrip())
        offset += len(part) + 1
        item = part.strip()
        if not item:
            raise FilterSyntaxError("empty sort field", start)
        desc = item.startswith("-")
        name = item[1:] if item[0] in "+-" else item
        if len(name) > max_field_length:
            raise FilterSyntaxError(
                f"sort field too long (max {max_field_length} characters)", start
            )
        if name not in ("@random", "@rowid") and not _SORT_FIELD_RE.fullmatch(name):
            raise FilterSyntaxError(f"invalid sort field '{name}'", start)
        out.append((name, desc))
    return out
