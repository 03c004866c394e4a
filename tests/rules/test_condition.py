"""The condition parser: precedence, values, lists, and positioned errors."""

from __future__ import annotations

import pytest

from auditsink.rules.condition import (
    And,
    Check,
    ConditionError,
    Ident,
    ListValue,
    Not,
    Or,
    Value,
    parse,
    parse_field,
)


def check(text: str) -> Check:
    """Parse a condition that must be a single check."""
    node = parse(text)
    assert isinstance(node, Check)
    return node


def test_precedence_not_and_or() -> None:
    node = parse("a or b and not c")
    assert isinstance(node, Or)
    left, right = node.children
    assert left == Ident("a", 0)
    assert isinstance(right, And)
    assert isinstance(right.children[1], Not)


def test_parentheses_and_not_paren() -> None:
    node = parse("not(a or b) and (c)")
    assert isinstance(node, And)
    first, second = node.children
    assert isinstance(first, Not) and isinstance(first.child, Or)
    assert second == Ident("c", 17)


def test_double_not_cancels() -> None:
    assert parse("not not a") == Ident("a", 8)


def test_operators_without_blanks() -> None:
    node = parse("ka.verb=get")
    assert node == Check("ka.verb", None, "=", Value("get"), 0)
    assert parse("ka.verb==get") == Check("ka.verb", None, "=", Value("get"), 0)
    assert check("ka.verb!=get").op == "!="
    assert check("ka.response.code>=400").op == ">="


def test_word_operators_need_a_blank() -> None:
    assert check("ka.uri startswith /api").op == "startswith"
    with pytest.raises(ConditionError) as exc:
        parse("ka.uri startswith/api")
    assert exc.value.pos == 7


def test_quoted_values_and_escapes() -> None:
    node = parse("ka.user.name startswith \"system:\" and ka.uri contains 'a\\'b'")
    assert isinstance(node, And)
    first, second = node.children
    assert isinstance(first, Check) and isinstance(second, Check)
    assert first.value == Value("system:", bare=False)
    assert second.value == Value("a'b", bare=False)


def test_list_literal_and_list_reference() -> None:
    node = parse('ka.verb in (create, "update",patch)')
    assert isinstance(node, Check)
    assert node.value == ListValue((Value("create"), Value("update", bare=False), Value("patch")))
    assert check("ka.verb in ()").value == ListValue(())
    assert check("ka.verb in my_verbs").value == Ident("my_verbs", 11)


def test_field_arguments() -> None:
    node = parse("jevt.value[/requestObject/spec/tls] exists")
    assert node == Check("jevt.value", "/requestObject/spec/tls", "exists", None, 0)
    assert parse_field("ka.req.pod.volumes.hostpath[/etc*]") == (
        "ka.req.pod.volumes.hostpath",
        "/etc*",
    )
    assert check('ka.uri.param["command"] = ls').arg == "command"


def test_multiline_condition() -> None:
    node = parse("kevt\n  and pod\n  and kcreate\n")
    assert isinstance(node, And) and len(node.children) == 3


@pytest.mark.parametrize(
    ("text", "pos", "fragment"),
    [
        ("", 0, "empty"),
        ("ka.verb", 7, "expected an operator"),
        ("ka.verb = get and", 17, "operand"),
        ("ka.verb in (a, b", 16, "')'"),
        ("(a and b", 8, "')'"),
        ("a b", 2, "unexpected token"),
        ("ka.verb = ", 10, "expected a value"),
        ('ka.uri = "abc', 9, "unterminated"),
        ("tolower(ka.verb) = get", 0, "not supported"),
        ("ka.uri.param[ = x", 13, "field argument"),
    ],
)
def test_errors_carry_positions(text: str, pos: int, fragment: str) -> None:
    with pytest.raises(ConditionError) as exc:
        parse(text)
    assert exc.value.pos == pos
    assert fragment in exc.value.message


def test_nesting_limit() -> None:
    with pytest.raises(ConditionError, match="nested too deeply"):
        parse("(" * 150 + "a" + ")" * 150)
