"""Turn a parsed condition into one Python closure, once, at load time.

Macros are inlined and list names expanded first (:func:`expand`), so the closure never looks
anything up by name. Operators follow libsinsp: a comparison on a field that is not available is
false (``!=`` too); on list fields only ``in`` (every value in the set, so an empty list is
``in`` anything), ``intersects`` (some value in the set) and ``exists`` are allowed.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from auditsink.rules.condition import (
    And,
    Check,
    ConditionError,
    Ident,
    ListValue,
    Node,
    Not,
    Or,
    Value,
    parse,
)
from auditsink.rules.fields import FieldError, FieldRef, resolve

Predicate = Callable[[Any], bool]
LIST_FIELD_OPS = frozenset({"in", "intersects", "exists"})


class Expanded(Check, frozen=True):
    """A check whose list operand is expanded to plain strings (``values``)."""

    values: tuple[str, ...] = ()


def expand_list(
    name: str, lists: Mapping[str, Sequence[str]], seen: tuple[str, ...] = ()
) -> list[str]:
    """The items of list ``name`` with nested list names replaced by their items.

    >>> expand_list("a", {"a": ["x", "b"], "b": ["y"]})
    ['x', 'y']
    """
    if name in seen:
        raise ValueError(f"list '{name}' refers to itself ({' -> '.join(seen + (name,))})")
    out: list[str] = []
    for item in lists[name]:
        if item in lists:
            out.extend(expand_list(item, lists, seen + (name,)))
        else:
            out.append(item)
    return out


def expand(
    node: Node,
    macros: Mapping[str, Node],
    lists: Mapping[str, Sequence[str]],
    stack: tuple[str, ...] = (),
) -> Node:
    """Inline macros and expand list references; raises ConditionError at the offending node.

    Checks are validated here (field, argument, operator, operand) so every error carries the
    offset of the check in the text being expanded.
    """
    if isinstance(node, And):
        return And(tuple(expand(c, macros, lists, stack) for c in node.children), node.pos)
    if isinstance(node, Or):
        return Or(tuple(expand(c, macros, lists, stack) for c in node.children), node.pos)
    if isinstance(node, Not):
        return Not(expand(node.child, macros, lists, stack), node.pos)
    if isinstance(node, Ident):
        if node.name in stack:
            raise ConditionError(
                f"macro '{node.name}' refers to itself ({' -> '.join(stack + (node.name,))})",
                node.pos,
            )
        macro = macros.get(node.name)
        if macro is None:
            raise ConditionError(f"undefined macro '{node.name}'", node.pos)
        try:
            return expand(macro, macros, lists, stack + (node.name,))
        except ConditionError as exc:
            # Offsets inside the macro mean nothing in the caller's text: name the macro and
            # keep its offset in the message, and point at the reference.
            raise ConditionError(
                f"in macro '{node.name}' at offset {exc.pos}: {exc.message}", node.pos
            ) from None
    assert isinstance(node, Check)
    if isinstance(node.value, Ident):
        if node.value.name not in lists:
            raise ConditionError(f"undefined list '{node.value.name}'", node.value.pos)
        values = tuple(expand_list(node.value.name, lists))
    elif isinstance(node.value, ListValue):
        items: list[str] = []
        for item in node.value.items:
            if item.bare and item.text in lists:
                items.extend(expand_list(item.text, lists))
            else:
                items.append(item.text)
        values = tuple(items)
    elif isinstance(node.value, Value):
        values = (node.value.text,)
    else:
        values = ()
    expanded = Expanded(node.field, node.arg, node.op, node.value, node.pos, values)
    _check(expanded)  # validate field, operator and operand here, where the position is known
    return expanded


def compile_condition(node: Node) -> Predicate:
    """Build the closure for an expanded AST; ``ctx.get(ref)`` supplies field values.

    >>> from auditsink.rules.engine import EventContext
    >>> pred = compile_condition(expand(parse("ka.verb in (get, list)"), {}, {}))
    >>> pred(EventContext({"auditID": "x", "verb": "get"}))
    True
    """
    if isinstance(node, And):
        return _all([compile_condition(c) for c in node.children])
    if isinstance(node, Or):
        return _any([compile_condition(c) for c in node.children])
    if isinstance(node, Not):
        inner = compile_condition(node.child)
        return lambda ctx: not inner(ctx)
    assert isinstance(node, Expanded), f"unexpanded node {node!r}"
    return _check(node)


def _all(preds: list[Predicate]) -> Predicate:
    if len(preds) == 2:
        a, b = preds
        return lambda ctx: a(ctx) and b(ctx)
    if len(preds) == 3:
        a, b, c = preds
        return lambda ctx: a(ctx) and b(ctx) and c(ctx)

    def every(ctx: Any) -> bool:
        for pred in preds:
            if not pred(ctx):
                return False
        return True

    return every


def _any(preds: list[Predicate]) -> Predicate:
    if len(preds) == 2:
        a, b = preds
        return lambda ctx: a(ctx) or b(ctx)

    def some(ctx: Any) -> bool:
        for pred in preds:
            if pred(ctx):
                return True
        return False

    return some


def field_ref(node: Check) -> FieldRef:
    """Resolve the node's field, turning FieldError into a positioned ConditionError."""
    try:
        return resolve(node.field, node.arg)
    except FieldError as exc:
        raise ConditionError(str(exc), node.pos) from None


def _check(node: Expanded) -> Predicate:
    ref = field_ref(node)
    op = node.op
    if ref.spec.is_list and op not in LIST_FIELD_OPS:
        raise ConditionError(
            f"'{ref.key}' is a list field: only 'in', 'intersects' and 'exists' apply to it "
            f"(did you mean 'intersects ({', '.join(node.values)})'?)",
            node.pos,
        )
    get = _getter(ref)
    if op == "exists":
        return lambda ctx: get(ctx) is not None
    if ref.spec.is_list:
        members = frozenset(node.values)
        if op == "in":
            # Every extracted value must be in the set (libsinsp CO_IN on list fields).
            def all_in(ctx: Any) -> bool:
                values = get(ctx)
                return values is not None and members.issuperset(values)

            return all_in

        def intersects(ctx: Any) -> bool:
            values = get(ctx)
            return values is not None and not members.isdisjoint(values)

        return intersects
    key, extract, which = ref.key, ref.extract, _source(ref)
    if op in ("=", "in", "intersects"):
        # The hot operators, with the cache lookup inlined. A missing value (None) is never
        # equal to a string nor in a set of strings, so it needs no test of its own.
        if op == "=":
            (rhs,) = node.values

            def equals(ctx: Any) -> bool:
                cache = ctx.cache
                value = cache[key] if key in cache else cache.setdefault(key, extract(which(ctx)))
                return value == rhs

            return equals
        members = frozenset(node.values)

        def member(ctx: Any) -> bool:
            cache = ctx.cache
            value = cache[key] if key in cache else cache.setdefault(key, extract(which(ctx)))
            return value in members

        return member
    test = _scalar_test(op, node.values, node.pos)

    def check(ctx: Any) -> bool:
        value = get(ctx)
        return value is not None and test(value)

    return check


def _source(ref: FieldRef) -> Callable[[Any], Any]:
    """Which view of the event a field reads: ka.* fields see nothing without an auditID."""
    if ref.key.startswith("ka."):
        return _ka_doc
    return _doc


def _ka_doc(ctx: Any) -> Any:
    return ctx.ka_doc


def _doc(ctx: Any) -> Any:
    return ctx.doc


def _getter(ref: FieldRef) -> Callable[[Any], Any]:
    key = ref.key
    extract = ref.extract
    which = _source(ref)

    def get(ctx: Any) -> Any:
        cache = ctx.cache
        if key in cache:
            return cache[key]
        value = cache[key] = extract(which(ctx))
        return value

    return get


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _scalar_test(op: str, values: tuple[str, ...], pos: int) -> Callable[[str], bool]:
    """The test a present value must pass (``=``, ``in`` and ``intersects`` are in _check)."""
    if op == "pmatch":
        prefixes = tuple(v.rstrip("/") for v in values)
        return lambda v: any(v == p or v.startswith(p + "/") or p == "" for p in prefixes)
    (rhs,) = values
    if op == "!=":
        return rhs.__ne__
    if op == "contains":
        return lambda v: rhs in v
    if op == "icontains":
        low = rhs.casefold()
        return lambda v: low in v.casefold()
    if op == "startswith":
        return lambda v: v.startswith(rhs)
    if op == "endswith":
        return lambda v: v.endswith(rhs)
    if op in ("bcontains", "bstartswith"):
        try:
            needle = bytes.fromhex(rhs)
        except ValueError:
            raise ConditionError(f"'{op}' takes a hex string, got {rhs!r}", pos) from None
        if op == "bcontains":
            return lambda v: needle in v.encode()
        return lambda v: v.encode().startswith(needle)
    if op in ("glob", "iglob"):
        pattern = re.compile(fnmatch.translate(rhs), re.IGNORECASE if op == "iglob" else 0)
        return lambda v: pattern.match(v) is not None
    if op == "regex":
        try:
            rx = re.compile(rhs)
        except re.error as exc:
            raise ConditionError(f"invalid regex {rhs!r}: {exc}", pos) from None
        return lambda v: rx.fullmatch(v) is not None
    return _ordering(op, rhs)


def _ordering(op: str, rhs: str) -> Callable[[str], bool]:
    # Numbers compare as numbers when both sides are numeric (response codes, uids); anything
    # else compares as strings, which is what libsinsp does for string fields.
    num = _number(rhs)
    cmp = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[op]

    def ordered(v: str) -> bool:
        if num is not None:
            left = _number(v)
            if left is not None:
                return bool(cmp(left, num))
        return bool(cmp(v, rhs))

    return ordered


def required_values(node: Node, keys: frozenset[str]) -> frozenset[str] | None:
    """The values a field (any of ``keys``) must take for ``node`` to hold; None if unknown.

    Used to index rules by verb/stage/resource: sound for ``and`` (intersection) and ``or``
    (union of constrained branches), conservative elsewhere.

    >>> n = expand(parse("ka.verb=create and (ka.uri=/ or ka.verb in (get))"), {}, {})
    >>> sorted(required_values(n, frozenset({"ka.verb"})))
    ['create']
    """
    if isinstance(node, Expanded):
        if _key(node) in keys and node.op in ("=", "in", "intersects"):
            return frozenset(node.values)
        return None
    if isinstance(node, And):
        found: frozenset[str] | None = None
        for child in node.children:
            got = required_values(child, keys)
            if got is not None:
                found = got if found is None else found & got
        return found
    if isinstance(node, Or):
        union: set[str] = set()
        for child in node.children:
            got = required_values(child, keys)
            if got is None:
                return None
            union |= got
        return frozenset(union)
    return None


def _key(node: Expanded) -> str:
    """The field a comparison tests, as the index keys name it (``jevt.value[/verb]``)."""
    return node.field if node.arg is None else f"{node.field}[{node.arg}]"


def requires_present(node: Node, keys: frozenset[str]) -> bool:
    """Whether ``node`` can only hold when a field (any of ``keys``) is present: it is tested
    with ``exists``, or must equal non-empty values, in every way the condition can hold.

    >>> n = expand(parse("ka.verb=get and (ka.impuser.name exists or ka.uri=/)"), {}, {})
    >>> requires_present(n, frozenset({"ka.impuser.name"}))
    False
    """
    if isinstance(node, Expanded):
        if _key(node) not in keys:
            return False
        return node.op == "exists" or (node.op in ("=", "in") and bool(node.values)
                                       and "" not in node.values)
    if isinstance(node, And):
        return any(requires_present(child, keys) for child in node.children)
    if isinstance(node, Or):
        return all(requires_present(child, keys) for child in node.children)
    return False


def compile_text(
    text: str, macros: Mapping[str, Node], lists: Mapping[str, Sequence[str]]
) -> Predicate:
    """Parse, expand and compile a condition string (handy for tests and ad-hoc filters)."""
    return compile_condition(expand(parse(text), macros, lists))
