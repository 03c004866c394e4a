"""Query-string parameters shared by the read API and the web UI: limits, cursors, alerts.

Every one is validated: a value that can never be right is a ValueError (answered 400) that
says what was expected, never a 500 or a silently different answer (``limit=-1`` used to
return the whole store).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from auditsink.priority import RANK, parse_priority
from auditsink.store.base import AlertSelector, TimeKey, parse_key
from auditsink.timeutil import parse_when

Query = Mapping[str, Sequence[str]]
# Digits in a log position or a limit: enough for 2**62, not enough to make int() slow.
_MAX_DIGITS = 19


def first(query: Query, name: str, default: str = "") -> str:
    """The first value of a parameter."""
    values = query.get(name)
    return values[0] if values else default


def limit_from(query: Query, default: int, maximum: int, name: str = "limit") -> int:
    """``limit`` as a whole number from 1 to ``maximum``.

    >>> limit_from({"limit": ["20"]}, 100, 1000)
    20
    """
    text = first(query, name).strip()
    if not text:
        return default
    if not text.isdigit() or len(text) > _MAX_DIGITS or not 1 <= int(text) <= maximum:
        raise ValueError(f"{name}={text[:40]!r}: expected a whole number from 1 to {maximum}")
    return int(text)


def key_from(query: Query, name: str) -> TimeKey | None:
    """A time-order cursor (``before``/``after``), as a page's ``next`` gave it."""
    text = first(query, name).strip()
    return parse_key(text) if text else None


def position_from(query: Query, name: str) -> int | None:
    """A log position (follow mode's ``after``): a whole number, or None when absent."""
    text = first(query, name).strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > _MAX_DIGITS:
        raise ValueError(f"{name}={text[:40]!r}: expected a log position (a whole number)")
    return int(text)


def alert_selector_from_query(query: Query) -> AlertSelector:
    """AlertSelector from ``rule``, ``priority`` (at least this severe), ``cluster``,
    ``auditID``, ``since``, ``until``.

    >>> alert_selector_from_query({"priority": ["warning"]}).min_priority
    4
    """
    selector = AlertSelector(rules=list(query.get("rule", [])),
                             clusters=list(query.get("cluster", [])),
                             audit_ids=list(query.get("auditID", [])))
    if first(query, "priority"):
        selector.min_priority = RANK[parse_priority(first(query, "priority"))]
    if first(query, "since"):
        selector.since = parse_when(first(query, "since"))
    if first(query, "until"):
        selector.until = parse_when(first(query, "until"))
    return selector
