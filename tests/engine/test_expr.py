"""The expression parser: what clinicians write, and the errors they get."""

from __future__ import annotations

import pytest

from app.engine.expr import BoolOp, ExprSyntaxError, Literal, NotOp, Predicate, parse


def test_comparison_with_unit() -> None:
    node = parse("pao2_mmhg < 8 kPa")
    assert node == Predicate(
        "pao2_mmhg", 0, "<", (Literal(8.0, 12, "kPa", 14),), "pao2_mmhg < 8 kPa"
    )


@pytest.mark.parametrize(
    ("text", "op", "values"),
    [
        ("x <= 3", "<=", [3.0]),
        ("x ≤ 3", "<=", [3.0]),
        ("x ≥ -2.5", ">=", [-2.5]),
        ("x = 1", "==", [1.0]),
        ("x != 1", "!=", [1.0]),
        ("x between 18 and 65", "between", [18.0, 65.0]),
        ("x in [a, b,c]", "in", ["a", "b", "c"]),
        ("x is false", "==", [False]),
        ("x", "==", [True]),
    ],
)
def test_predicate_forms(text: str, op: str, values: list[object]) -> None:
    node = parse(text)
    assert isinstance(node, Predicate)
    assert (node.feature, node.op, [a.value for a in node.args]) == ("x", op, values)


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("(p < 6 g/(24.h))", "g/(24.h)"),
        ("(x > 50 mm[Hg])", "mm[Hg]"),
        ("(l < 45 %)", "%"),
        ("s >= 2 {score} and t", "{score}"),
    ],
)
def test_units_with_brackets_and_parentheses(text: str, unit: str) -> None:
    node = parse(text)
    first = node.children[0] if isinstance(node, BoolOp) else node
    assert isinstance(first, Predicate)
    assert first.args[0].unit == unit


def test_boolean_structure_and_not() -> None:
    node = parse("a and not (b or c)")
    assert isinstance(node, BoolOp)
    assert node.op == "and"
    assert isinstance(node.children[1], NotOp)
    inner = node.children[1].child
    assert isinstance(inner, BoolOp)
    assert inner.op == "or"


@pytest.mark.parametrize("text", ["a or b and c", "a and b or c", "a and b or c and d"])
def test_mixing_and_or_without_parentheses_is_refused(text: str) -> None:
    with pytest.raises(ExprSyntaxError, match="parentheses"):
        parse(text)


@pytest.mark.parametrize("text", ["(a and b) or c", "a or (b and c)", "a and (b or c) and d"])
def test_parenthesised_mixtures_parse(text: str) -> None:
    assert isinstance(parse(text), BoolOp)


@pytest.mark.parametrize(
    ("text", "offset", "message"),
    [
        ("", 0, "empty"),
        ("x <", 3, "expected a number"),
        ("x between 1", 11, "expected 'and'"),
        ("x in a", 5, "'\\['"),
        ("x in [a b]", 8, "',' or ']'"),
        ("(x > 1", 6, "expected '\\)'"),
        ("x > 1 )", 6, "unexpected"),
        ("and > 1", 0, "keyword"),
        ("x is maybe", 5, "'true' or 'false'"),
        ("x > 1.2.3", 4, "malformed number"),
    ],
)
def test_syntax_errors_point_at_the_problem(text: str, offset: int, message: str) -> None:
    with pytest.raises(ExprSyntaxError, match=message) as info:
        parse(text)
    assert info.value.offset == offset
