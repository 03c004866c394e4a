"""Secret redaction: no value of a Secret reaches the store or stdout.

What is replaced by :data:`MARKER` in events about ``secrets`` (core group):
- ``data`` and ``stringData`` values of the Secret (keys are kept: which keys changed matters);
- the ``kubectl.kubernetes.io/last-applied-configuration`` annotation, where kubectl apply
  keeps the whole manifest in clear text;
- the same inside lists (``SecretList``, ``Table`` rows with objects) and inside patches:
  JSON patches (arrays of operations) and merge/strategic/apply patches (objects).
Only events whose ``objectRef.resource`` is ``secrets`` are decoded, so the hot path for
everything else is one comparison.
"""

from __future__ import annotations

from typing import Any

import msgspec

from auditsink.model import Event, Item, encode

MARKER = "<redacted>"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_SECRET_FIELDS = ("data", "stringData")
# JSON-pointer paths (RFC 6901: "/" in keys is written "~1") that hold secret values.
_SECRET_POINTERS = ("/data", "/stringData", "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")


def _redact_object(obj: Any) -> bool:
    """Redact in place anything secret inside ``obj``; returns whether something changed."""
    changed = False
    if isinstance(obj, dict):
        for key in _SECRET_FIELDS:
            values = obj.get(key)
            if isinstance(values, dict):
                for name in values:
                    if values[name] != MARKER:
                        values[name] = MARKER
                        changed = True
            elif values is not None and values != MARKER:
                obj[key] = MARKER
                changed = True
        annotations = obj.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            if annotations[LAST_APPLIED] != MARKER:
                annotations[LAST_APPLIED] = MARKER
                changed = True
        for key, value in obj.items():
            if key not in _SECRET_FIELDS and isinstance(value, (dict, list)):
                changed |= _redact_object(value)
    elif isinstance(obj, list):
        if obj and all(isinstance(op, dict) and "op" in op for op in obj):
            return _redact_json_patch(obj)
        for value in obj:
            if isinstance(value, (dict, list)):
                changed |= _redact_object(value)
    return changed


def _redact_json_patch(ops: list[dict[str, Any]]) -> bool:
    changed = False
    for op in ops:
        path = str(op.get("path", ""))
        if "value" not in op:
            continue
        if any(path == p or path.startswith(p + "/") for p in _SECRET_POINTERS):
            if op["value"] != MARKER:
                op["value"] = MARKER
                changed = True
        elif isinstance(op["value"], (dict, list)):
            # A patch that replaces "/", "/metadata" or "/metadata/annotations" carries the
            # secret values inside its value.
            changed |= _redact_object(op["value"])
            value = op["value"]
            if path.endswith("/annotations") and isinstance(value, dict) and LAST_APPLIED in value:
                value[LAST_APPLIED] = MARKER
                changed = True
    return changed


def redact_item(item: Item) -> Item:
    """Return ``item`` with secret values replaced; the same object when nothing changed."""
    event = item.event
    ref = event.objectRef
    if ref is None or ref.resource != "secrets" or ref.apiGroup:
        return item
    changed = False
    for field in ("requestObject", "responseObject"):
        raw = getattr(event, field)
        if not raw:
            continue
        try:
            obj = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            # An unreadable body about a Secret could hold anything: drop it.
            setattr(event, field, msgspec.Raw(msgspec.json.encode(MARKER)))
            changed = True
            continue
        if _redact_object(obj):
            setattr(event, field, msgspec.Raw(msgspec.json.encode(obj)))
            changed = True
    if not changed:
        return item
    return Item(event=event, raw=encode(event))


def redacted(event: Event) -> bool:
    """Whether an event is one redaction looks at (for tests and docs)."""
    ref = event.objectRef
    return ref is not None and ref.resource == "secrets" and not ref.apiGroup
