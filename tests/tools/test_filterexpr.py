"""The filter language parser on its own: AST shapes, fexpr's lexical rules, errors, limits."""

from __future__ import annotations

import pytest

from shipyard.tools.filterexpr import (
    SIGN_OPS,
    Bool,
    Call,
    Comparison,
    FilterSyntaxError,
    Identifier,
    Logical,
    Node,
    Null,
    Number,
    Text,
    parse,
    parse_sort,
    tokenize,
)


def cmp(left: object, op: str, right: object, pos: int = 0) -> Comparison:
    return Comparison(left, op, right, pos)  # type: ignore[arg-type]


def names(node: Node) -> list[str]:
    """Left identifiers in order, to check structure without positions."""
    if isinstance(node, Comparison):
        assert isinstance(node.left, Identifier)
        return [node.left.name]
    return [n for item in node.items for n in names(item)]


def shape(node: Node) -> object:
    """The tree as nested tuples of ("&&"|"||", ...) and left identifier names."""
    if isinstance(node, Comparison):
        assert isinstance(node.left, Identifier)
        return node.left.name
    return (node.op, *(shape(i) for i in node.items))


# ------------------------------------------------------------------------------ operands


def test_simple_comparison() -> None:
    assert parse("a = 1") == cmp(Identifier("a", 0), "=", Number(1.0, "1", 4))


@pytest.mark.parametrize("op", sorted(SIGN_OPS))
def test_every_operator(op: str) -> None:
    node = parse(f"a {op} 'b'")
    assert isinstance(node, Comparison)
    assert node.op == op
    node = parse(f"a{op}'b'")  # no whitespace needed
    assert isinstance(node, Comparison)
    assert node.op == op


def test_there_are_sixteen_operators() -> None:
    assert len(SIGN_OPS) == 16


@pytest.mark.parametrize(
    ("text", "operand"),
    [
        ("'abc'", Text("abc", 4)),
        ('"abc"', Text("abc", 4)),
        ("''", Text("", 4)),
        ("\"mixed 'quotes' ok\"", Text("mixed 'quotes' ok", 4)),
        ("'mixed \"quotes\" ok'", Text('mixed "quotes" ok', 4)),
        ('"esc \\"q\\""', Text('esc "q"', 4)),
        ("'esc \\'q\\''", Text("esc 'q'", 4)),
        ('"a\\nb"', Text("a\\nb", 4)),  # only the quote is an escape, as in fexpr
        ('"50\\%"', Text("50\\%", 4)),
        ("'a\\\"b'", Text('a\\"b', 4)),
        ('"é ü 日本"', Text("é ü 日本", 4)),
        ('"// not a comment"', Text("// not a comment", 4)),
        ('"a && b || (c)"', Text("a && b || (c)", 4)),
        ("123", Number(123.0, "123", 4)),
        ("-5", Number(-5.0, "-5", 4)),
        ("10.50", Number(10.5, "10.50", 4)),
        ("-.5", Number(-0.5, "-.5", 4)),
        ("0", Number(0.0, "0", 4)),
        ("true", Bool(True, 4)),
        ("FALSE", Bool(False, 4)),
        ("True", Bool(True, 4)),
        ("null", Null(4)),
        ("NULL", Null(4)),
        ("b", Identifier("b", 4)),
        ("_b", Identifier("_b", 4)),
        ("b.c.d", Identifier("b.c.d", 4)),
        ("b:lower", Identifier("b:lower", 4)),
        ("b.c:length", Identifier("b.c:length", 4)),
        ("@request.auth.id", Identifier("@request.auth.id", 4)),
        ("@collection.x:alias.y", Identifier("@collection.x:alias.y", 4)),
        ("#x", Identifier("#x", 4)),
        ("data.items.0", Identifier("data.items.0", 4)),
        ("nullable", Identifier("nullable", 4)),
        ("true_value", Identifier("true_value", 4)),
    ],
)
def test_right_operands(text: str, operand: object) -> None:
    node = parse(f"a = {text}")
    assert isinstance(node, Comparison)
    assert node.right == operand


def test_literals_on_the_left() -> None:
    assert parse("'x' = a") == cmp(Text("x", 0), "=", Identifier("a", 6))
    assert parse("1 < 2") == cmp(Number(1.0, "1", 0), "<", Number(2.0, "2", 4))
    assert parse("null = true") == cmp(Null(0), "=", Bool(True, 7))


def test_function_calls() -> None:
    node = parse("geoDistance(a.lon, a.lat, 1.5, 'x') < 25")
    assert isinstance(node, Comparison)
    assert node.left == Call(
        "geoDistance",
        (
            Identifier("a.lon", 12),
            Identifier("a.lat", 19),
            Number(1.5, "1.5", 26),
            Text("x", 31),
        ),
        0,
    )
    assert parse("f() = 1") == cmp(Call("f", (), 0), "=", Number(1.0, "1", 6))
    node = parse("f(1,) = 1")  # a trailing comma is allowed
    assert isinstance(node, Comparison)
    assert node.left == Call("f", (Number(1.0, "1", 2),), 0)
    node = parse("f(g(h(1))) = 1")  # three levels
    assert isinstance(node, Comparison)
    assert isinstance(node.left, Call)
    node = parse("a = f( 1 , // comment\n 2 )")
    assert isinstance(node, Comparison)
    assert isinstance(node.right, Call)
    assert len(node.right.args) == 2


def test_identifier_then_space_then_paren_is_not_a_call() -> None:
    with pytest.raises(FilterSyntaxError, match="expected an operator, got '\\('"):
        parse("f (1) = 1")


# ------------------------------------------------------------------------------ structure


def test_and_binds_tighter_than_or() -> None:
    assert shape(parse("a=1 || b=1 && c=1")) == ("||", "a", ("&&", "b", "c"))
    assert shape(parse("a=1 && b=1 || c=1")) == ("||", ("&&", "a", "b"), "c")
    assert shape(parse("a=1 && b=1 || c=1 && d=1")) == ("||", ("&&", "a", "b"), ("&&", "c", "d"))


def test_parentheses_group() -> None:
    assert shape(parse("(a=1 || b=1) && c=1")) == ("&&", ("||", "a", "b"), "c")
    assert shape(parse("a=1 && (b=1 || (c=1 && d=1))")) == (
        "&&",
        "a",
        ("||", "b", ("&&", "c", "d")),
    )
    assert shape(parse("((((a=1))))")) == "a"


def test_same_operator_is_flattened() -> None:
    assert shape(parse("a=1 && b=1 && c=1")) == ("&&", "a", "b", "c")
    assert shape(parse("(a=1 || b=1) || c=1")) == ("||", "a", "b", "c")
    assert shape(parse("a=1 && (b=1 && c=1)")) == ("&&", "a", "b", "c")


def test_positions() -> None:
    node = parse("  title = 'x' && views > 10")
    assert isinstance(node, Logical)
    assert node.pos == 2
    first, second = node.items
    assert isinstance(first, Comparison)
    assert first.pos == 2
    assert first.right == Text("x", 10)
    assert isinstance(second, Comparison)
    assert second.left == Identifier("views", 17)


def test_whitespace_and_comments() -> None:
    text = "// leading\n\ta = 1 // trailing && b = 2\n\r\n&& // mid\n b = 2 // end"
    assert names(parse(text)) == ["a", "b"]
    assert names(parse("a=1//x")) == ["a"]


def test_tokens() -> None:
    kinds = [t.kind for t in tokenize("(a ?!= 'x') || f(1, b)")]
    assert kinds == [
        "(",
        "ident",
        "sign",
        "text",
        ")",
        "join",
        "ident",
        "(",
        "number",
        ",",
        "ident",
        ")",
        "eof",
    ]


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty filter expression at position 0"),
        ("   ", "empty filter expression at position 0"),
        ("// just a comment", "empty filter expression at position 0"),
        ("a = 1 )", "unexpected token ')' at position 6"),
        (
            "(a = 1",
            "expected ')' to close the '(' at position 0, got the end of the filter at position 6",
        ),
        ("((a = 1) && b = 2", "expected ')' to close the '(' at position 0"),
        ("()", "empty parentheses at position 0"),
        ("a = 1 && ()", "empty parentheses at position 9"),
        (
            "a = ",
            "expected a right operand (identifier, text or number), got the end of the filter at position 4",
        ),
        ("= 1", "expected a left operand (identifier, text or number), got '=' at position 0"),
        ("a 1", "expected an operator, got '1' at position 2"),
        ("a", "expected an operator, got the end of the filter at position 1"),
        ("a = 1 b = 2", "expected && or ||, got 'b' at position 6"),
        (
            "a = 1 &&",
            "expected a left operand (identifier, text or number), got the end of the filter at position 8",
        ),
        ("&& a = 1", "got '&&' at position 0"),
        ("a = 1 || || b = 2", "got '||' at position 9"),
        ("a == 1", "invalid operator '==' at position 2"),
        ("a =! 1", "invalid operator '=!' at position 2"),
        ("a ! 1", "invalid operator '!' at position 2"),
        ("a ?? 1", "invalid operator '??' at position 2"),
        ("a = 1 & b = 2", "invalid '&' (expected && or ||) at position 6"),
        ("a = 1 ||| b = 2", "invalid '|||' (expected && or ||) at position 6"),
        ("a = 'abc", "unterminated quoted text at position 4"),
        ('a = "abc\\"', "unterminated quoted text at position 4"),
        ("a = 1.", "invalid number '1.' at position 4"),
        ("a = -", "invalid number '-' at position 4"),
        ("a = -x", "invalid number '-' at position 4"),
        ("a = 1.2.3", "unexpected character '.' at position 7"),
        ("a. = 1", "invalid identifier 'a.' at position 0"),
        ("a: = 1", "invalid identifier 'a:' at position 0"),
        ("@ = 1", "invalid identifier '@' at position 0"),
        ("a = $b", "unexpected character '$' at position 4"),
        ("a = 1 ; b = 2", "unexpected character ';' at position 6"),
        ("a = `x`", "unexpected character '`' at position 4"),
        ("a = 1 / 2", "invalid comment (expected //) at position 6"),
        ("a = 1, b = 2", "expected && or ||, got ',' at position 5"),
        ("a = [1]", "unexpected character '[' at position 4"),
        ("a = 1e5", "expected && or ||, got 'e5' at position 5"),
        ("a = ²", "unexpected character '²' at position 4"),
        ("a = 'x\x00'", "unexpected character '\\x00' at position 6"),
        ("a = '\ud800'", "invalid character at position 5"),
        ("f(1 2) = 1", "expected ',' or ')' in the call of f(), got '2' at position 4"),
        ("f(1 = 1", "expected ',' or ')' in the call of f(), got '=' at position 4"),
        ("f(,) = 1", "expected an argument (identifier, text or number), got ',' at position 2"),
        ("f(g(h(i(1)))) = 1", "too deeply nested function calls (max 3) at position 6"),
        ("a = " + "9" * 400, "number out of range"),
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as exc:
        parse(text)
    assert message in exc.value.message
    assert str(exc.value) == exc.value.message
    assert exc.value.message.endswith(f"at position {exc.value.position}")


# ------------------------------------------------------------------------------ limits


def test_max_length_counts_characters() -> None:
    text = "a = '" + "é" * 95 + "'"
    assert len(text) == 101
    parse(text, max_length=101)
    with pytest.raises(FilterSyntaxError, match=r"too long \(101 characters, max 100\)"):
        parse(text, max_length=100)


def test_max_expressions() -> None:
    text = " || ".join(["a = 1"] * 5)
    parse(text, max_expressions=5)
    with pytest.raises(FilterSyntaxError, match=r"too many expressions \(max 4\) at position 36"):
        parse(text, max_expressions=4)


def test_max_depth() -> None:
    parse("(" * 32 + "a = 1" + ")" * 32)
    with pytest.raises(
        FilterSyntaxError, match=r"too deeply nested parentheses \(max 32 levels\) at position 32"
    ):
        parse("(" * 33 + "a = 1" + ")" * 33)
    parse("((a = 1) || (b = 1))", max_depth=2)
    with pytest.raises(FilterSyntaxError, match="at position 1"):
        parse("((a = 1))", max_depth=1)
    with pytest.raises(FilterSyntaxError, match="max 0 levels"):
        parse("(a = 1)", max_depth=0)


def test_no_input_recurses_deeply() -> None:
    """Huge or pathological inputs end in a FilterSyntaxError, never a RecursionError."""
    big = 10**7
    for text in [
        "(" * 500_000,
        ")" * 500_000,
        "(" * 100_000 + "a = 1" + ")" * 100_000,
        "a = 1 && " * 200_000 + "a = 1",
        "f(" * 1000 + ")" * 1000 + " = 1",
        "'" + "x" * 1_000_000,
        "a" * 1_000_000,
    ]:
        with pytest.raises(FilterSyntaxError):
            parse(text, max_length=big, max_expressions=1000, max_depth=32)


def test_long_flat_filters_are_fine() -> None:
    text = " && ".join(f"f{i} = {i}" for i in range(1000))
    node = parse(text, max_length=10**6, max_expressions=1000)
    assert isinstance(node, Logical)
    assert len(node.items) == 1000


def test_ast_is_immutable_and_hashable() -> None:
    node = parse("a = 1 && (b ?~ 'x' || f(c) > 2)")
    assert hash(node) == hash(parse("a = 1 && (b ?~ 'x' || f(c) > 2)"))
    with pytest.raises(AttributeError):
        node.op = "||"  # type: ignore[misc,union-attr]


# ------------------------------------------------------------------------------ sort


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("   ", []),
        ("title", [("title", False)]),
        ("-title", [("title", True)]),
        ("+title", [("title", False)]),
        ("-created,title", [("created", True), ("title", False)]),
        (" -a , +b ,c ", [("a", True), ("b", False), ("c", False)]),
        ("author.name", [("author.name", False)]),
        ("-data.items.0", [("data.items.0", True)]),
        ("title:lower", [("title:lower", False)]),
        ("@random", [("@random", False)]),
        ("-@random,id", [("@random", True), ("id", False)]),
        ("-@rowid", [("@rowid", True)]),
        ("posts_via_author.title", [("posts_via_author.title", False)]),
    ],
)
def test_parse_sort(text: str, expected: list[tuple[str, bool]]) -> None:
    assert parse_sort(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,,b", "empty sort field at position 2"),
        ("a, ", "empty sort field at position 3"),
        (",a", "empty sort field at position 0"),
        ("-", "invalid sort field '' at position 0"),
        ("--a", "invalid sort field '-a' at position 0"),
        ("- a", "invalid sort field ' a' at position 0"),
        ("a b", "invalid sort field 'a b' at position 0"),
        ("title, x;y", "invalid sort field 'x;y' at position 7"),
        ("a.", "invalid sort field 'a.' at position 0"),
        ("a..b", "invalid sort field 'a..b' at position 0"),
        ("1a", "invalid sort field '1a' at position 0"),
        ("@request.auth.id", "invalid sort field '@request.auth.id' at position 0"),
        ("@now", "invalid sort field '@now' at position 0"),
        ("a:b:c", "invalid sort field 'a:b:c' at position 0"),
        ("ti'tle", "invalid sort field 'ti'tle' at position 0"),
        ("RANDOM()", "invalid sort field 'RANDOM()' at position 0"),
        ("a,b,c,d,e,f,g,h,i", "too many sort fields (9, max 8) at position 0"),
        ("x" * 256, "sort field too long (max 255 characters) at position 0"),
    ],
)
def test_parse_sort_errors(text: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as exc:
        parse_sort(text)
    assert message in exc.value.message


def test_parse_sort_limits() -> None:
    assert len(parse_sort(",".join("abcdefgh"))) == 8
    assert len(parse_sort(",".join("abc"), max_fields=3)) == 3
    with pytest.raises(FilterSyntaxError, match="max 2"):
        parse_sort("a,b,c", max_fields=2)
    with pytest.raises(FilterSyntaxError, match="too many sort fields"):
        parse_sort("," * 100_000)
