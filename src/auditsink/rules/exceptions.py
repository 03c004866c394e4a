"""Rule ``exceptions`` turned into condition ASTs, the way Falco's rule compiler does.

Two forms (https://falco.org/docs/rules/exceptions/):

- ``fields: [f1, f2]`` with ``comps`` (default ``=`` for each) and ``values`` a list of tuples:
  each tuple becomes ``(f1 c1 v1 and f2 c2 v2)``, the tuples are or-ed. A tuple element that is
  itself a list becomes a list literal ``(a, b)``, for ``in``/``intersects``/``pmatch``.
- ``fields: f`` (one field) with ``comps`` one operator (default ``in``) and ``values`` a flat
  list: ``f in (v1, v2, ...)``.

The rule then becomes ``(condition) and not (exception 1) and not (exception 2) ...``;
exceptions without values add nothing.
"""

from __future__ import annotations

from typing import Any

import msgspec

from auditsink.rules.condition import (
    ALL_OPS,
    LIST_OPS,
    And,
    Check,
    ConditionError,
    ListValue,
    Node,
    Not,
    Or,
    Value,
    parse_field,
)


class ExceptionDef(msgspec.Struct):
    """One named exception of a rule, as written in YAML (values may grow by appends)."""

    name: str
    fields: str | list[str]
    comps: str | list[str] | None
    values: list[Any]


class ExceptionError(ValueError):
    """An exception that cannot be compiled; the message names it."""


def parse_exception(item: Any) -> ExceptionDef:
    """Validate the YAML shape of one exception entry."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ExceptionError(f"an exception must be a mapping with a 'name', got {item!r}")
    name = item["name"]
    fields = item.get("fields")
    if fields is not None and not isinstance(fields, (str, list)):
        raise ExceptionError(f"exception '{name}': 'fields' must be a string or a list")
    comps = item.get("comps")
    if comps is not None and not isinstance(comps, (str, list)):
        raise ExceptionError(f"exception '{name}': 'comps' must be a string or a list")
    values = item.get("values") or []
    if not isinstance(values, list):
        raise ExceptionError(f"exception '{name}': 'values' must be a list")
    return ExceptionDef(name, fields if fields is not None else [], comps, list(values))


def merge_exceptions(base: list[ExceptionDef], extra: list[ExceptionDef]) -> list[ExceptionDef]:
    """Append semantics: values of a same-named exception are added, new ones are appended."""
    merged = [ExceptionDef(e.name, e.fields, e.comps, list(e.values)) for e in base]
    by_name = {e.name: e for e in merged}
    for ex in extra:
        if ex.name in by_name:
            target = by_name[ex.name]
            if ex.fields and ex.fields != target.fields:
                raise ExceptionError(
                    f"exception '{ex.name}': appended fields {ex.fields!r} differ from "
                    f"{target.fields!r}"
                )
            target.values.extend(ex.values)
        else:
            copy = ExceptionDef(ex.name, ex.fields, ex.comps, list(ex.values))
            merged.append(copy)
            by_name[ex.name] = copy
    return merged


def _value(item: Any, comp: str, name: str) -> Value | ListValue:
    if isinstance(item, list):
        return ListValue(tuple(Value(_scalar(v, name)) for v in item))
    text = _scalar(item, name)
    if comp in LIST_OPS:
        # Falco writes ``field in (value)``, so a bare list name here is expanded too.
        return ListValue((Value(text),))
    return Value(text, bare=False)


def _scalar(item: Any, name: str) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (str, int, float)):
        return str(item)
    raise ExceptionError(f"exception '{name}': value {item!r} is not a string or number")


def _check(field: str, comp: str, value: Value | ListValue, name: str) -> Check:
    if comp not in ALL_OPS or comp == "exists":
        raise ExceptionError(f"exception '{name}': unknown comparison operator {comp!r}")
    try:
        fname, arg = parse_field(field)
    except ConditionError:
        raise ExceptionError(f"exception '{name}': {field!r} is not a field name") from None
    if isinstance(value, ListValue) and comp not in LIST_OPS:
        raise ExceptionError(
            f"exception '{name}': a list value needs 'in', 'intersects' or 'pmatch', not {comp!r}"
        )
    return Check(fname, arg, "=" if comp == "==" else comp, value)


def exception_node(ex: ExceptionDef) -> Node | None:
    """The condition matching events the exception allows; None when it has no values."""
    if not ex.values:
        return None
    if isinstance(ex.fields, str):
        comp = ex.comps if isinstance(ex.comps, str) else "in"
        if comp in LIST_OPS:
            items = tuple(Value(_scalar(v, ex.name)) for v in ex.values)
            return _check(ex.fields, comp, ListValue(items), ex.name)
        alts: tuple[Node, ...] = tuple(
            _check(ex.fields, comp, Value(_scalar(v, ex.name), bare=False), ex.name)
            for v in ex.values
        )
        return alts[0] if len(alts) == 1 else Or(alts)
    fields = ex.fields
    if not fields:
        raise ExceptionError(f"exception '{ex.name}': 'fields' is missing")
    if ex.comps is None:
        comps = ["="] * len(fields)
    elif isinstance(ex.comps, list) and len(ex.comps) == len(fields):
        comps = [str(c) for c in ex.comps]
    else:
        raise ExceptionError(
            f"exception '{ex.name}': 'comps' must list one operator per field ({len(fields)})"
        )
    alternatives: list[Node] = []
    for row in ex.values:
        if not isinstance(row, list) or len(row) != len(fields):
            raise ExceptionError(
                f"exception '{ex.name}': each value must be a list of {len(fields)} items "
                f"(one per field), got {row!r}"
            )
        checks: tuple[Node, ...] = tuple(
            _check(f, c, _value(v, c, ex.name), ex.name)
            for f, c, v in zip(fields, comps, row, strict=True)
        )
        alternatives.append(checks[0] if len(checks) == 1 else And(checks))
    return alternatives[0] if len(alternatives) == 1 else Or(tuple(alternatives))


def with_exceptions(condition: Node, exceptions: list[ExceptionDef]) -> Node:
    """``(condition) and not (ex1) and not (ex2) ...``."""
    parts: list[Node] = [condition]
    for ex in exceptions:
        node = exception_node(ex)
        if node is not None:
            parts.append(Not(node))
    return parts[0] if len(parts) == 1 else And(tuple(parts))
