"""Apply a policy on our side, to events the API server already recorded (``serve --policy``).

We can only take away: drop the event, lower its level (strip the bodies that level would not
have had) and remove ``metadata.managedFields``. A policy level above the recorded one cannot
add what the API server never sent, so the event is kept as it is.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from auditsink.model import LEVEL_RANK, Item, RawObject, encode

_REQUEST = LEVEL_RANK["Request"]
_RESPONSE = LEVEL_RANK["RequestResponse"]


class Decision(NamedTuple):
    """The outcome for one request: level, omitted stages, omitManagedFields, matching rule."""

    level: str
    omit_stages: frozenset[str]
    omit_managed_fields: bool
    rule: int | None


def apply_decision(decision: Decision, item: Item) -> Item | None:
    """The item as recorded under ``decision``, or None when the decision drops it.

    The input is never modified; when nothing changes the same ``item`` is returned and its
    bytes are not re-encoded. ``policy.apply_policy`` is this after ``evaluate_event``.
    """
    event = item.event
    if decision.level == "None" or event.stage in decision.omit_stages:
        return None
    rank = LEVEL_RANK[decision.level]
    recorded = LEVEL_RANK.get(event.level, _RESPONSE)
    if rank >= recorded and not decision.omit_managed_fields:
        return item  # the common case: nothing to take away
    changes: dict[str, Any] = {}
    if rank < recorded:
        changes["level"] = decision.level
        # UNSET: absent, never encoded (model.RawObject).
        if rank < _RESPONSE and event.responseObject:
            changes["responseObject"] = msgspec.UNSET
        if rank < _REQUEST and event.requestObject:
            changes["requestObject"] = msgspec.UNSET
    if decision.omit_managed_fields:
        for key in ("requestObject", "responseObject"):
            raw = changes.get(key, getattr(event, key))
            stripped = strip_managed_fields(raw)
            if stripped is not None:
                changes[key] = stripped
    if not changes:
        return item
    new_event = msgspec.structs.replace(event, **changes)
    return Item(event=new_event, raw=encode(new_event))


def strip_managed_fields(raw: RawObject) -> msgspec.Raw | None:
    """``raw`` without ``metadata.managedFields`` (on the object or a list's items), or None.

    >>> bytes(strip_managed_fields(msgspec.Raw(b'{"metadata":{"name":"a","managedFields":[{}]}}')))
    b'{"metadata":{"name":"a"}}'
    """
    # Cheap test first: most bodies have no managed fields (creates, patches, Status).
    if not raw or b'"managedFields"' not in bytes(raw):
        return None
    value = msgspec.json.decode(raw)
    if not isinstance(value, dict):
        return None  # a JSON patch (array): the API server leaves patches alone too
    changed = _strip_one(value)
    items = value.get("items")
    if isinstance(items, list):
        for entry in items:
            if isinstance(entry, dict):
                changed = _strip_one(entry) or changed
    return msgspec.Raw(msgspec.json.encode(value)) if changed else None


def _strip_one(obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        del meta["managedFields"]
        return True
    return False
