"""What both SQL stores put in a row and read back from one.

Repeated strings (users, verbs, namespaces, user agents, request paths...) are stored once in
the ``strings`` table and referenced by id; :func:`row_strings` lists an event's, in the order
of :data:`KEY_COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from auditsink.model import LEVELS, STAGES, Event
from auditsink.selector import (
    DECISIONS,
    INDEXED_CHARS,
    INDEXED_GROUPS,
    bounded,
    client_ip,
    decision_of,
    request_path,
)

# Group lists are interned as one string with this prefix, so no user or verb can collide.
GROUPS_PREFIX = "\x1fgroups\x1f"
# Undecodable items are kept for inspection, but never more than this much of each.
REJECTED_BODY_BYTES = 4096
# Columns the UI may group by, and those that hold dictionary ids.
GROUPABLE = frozenset({"user", "verb", "resource", "subresource", "namespace", "cluster",
                       "api_group", "groups", "code", "name", "stage", "level",
                       "impersonated_user"})
INTERNED = frozenset({"user", "verb", "resource", "subresource", "namespace", "cluster",
                      "api_group", "groups", "impersonated_user"})


# The interned columns of an event row, in the order :func:`row_strings` gives their values.
KEY_COLUMNS = ("verb", "user", "groups", "source_ip", "user_agent", "api_group", "resource",
               "subresource", "namespace", "impersonated_user", "uri")
# impersonated_user is 0 when nobody was impersonated (no strings row has id 0), so that a
# partial index holds only the few impersonated requests.
NOBODY = 0
_DECISION = {name: index + 1 for index, name in enumerate(DECISIONS)}


def row_strings(event: Event) -> tuple[str, ...]:
    """The strings an event's row refers to by id, in :data:`KEY_COLUMNS` order (groups as
    one prefixed string; "" impersonated user: nobody), each :func:`bounded`."""
    ref = event.objectRef
    user = event.user
    impersonated = event.impersonatedUser
    groups = user.groups
    strings = (
        event.verb, user.username,
        GROUPS_PREFIX + "\n".join(groups[:INDEXED_GROUPS]), client_ip(event), event.userAgent,
        ref.apiGroup if ref else "", ref.resource if ref else "",
        ref.subresource if ref else "", ref.namespace if ref else "",
        impersonated.username if impersonated is not None else "",
        request_path(event.requestURI),
    )
    # Values past INDEXED_CHARS are rare: one length check each here instead of a call of
    # bounded() each (this runs for every event stored, on the receivers' hot path).
    if max(map(len, strings)) <= INDEXED_CHARS:
        return strings
    return (*map(bounded, strings[:2]), _groups(groups), *map(bounded, strings[3:]))


def _groups(groups: list[str]) -> str:
    """The group list as one string; each group bounded, the list too (a few thousand)."""
    return GROUPS_PREFIX + "\n".join(bounded(g) for g in groups[:INDEXED_GROUPS])


def decision_value(event: Event) -> int:
    """The decision column: 0 no annotation, 1 allow, 2 forbid (3 anything else)."""
    decision = decision_of(event)
    if not decision:
        return 0
    return _DECISION.get(decision, len(_DECISION) + 1)


def group_rows(rows: Iterable[Sequence[Any]], columns: Sequence[str],
               names: dict[int, str]) -> list[dict[str, object]]:
    """Rows of ``SELECT <columns>, count`` as dicts, dictionary ids turned back into names.

    >>> group_rows([(3, 1, 7)], ["verb", "stage"], {3: "get"})
    [{'verb': 'get', 'stage': 'ResponseStarted', 'count': 7}]
    """
    out: list[dict[str, object]] = []
    for row in rows:
        entry: dict[str, object] = {}
        for i, column in enumerate(columns):
            value = row[i]
            if column in INTERNED:
                value = names.get(value, "")
                if column == "groups":
                    value = value[len(GROUPS_PREFIX):].split("\n") if value else []
            elif column == "stage":
                value = STAGES[value]
            elif column == "level":
                value = LEVELS[value]
            entry[column] = value
        entry["count"] = row[-1]
        out.append(entry)
    return out
