"""Credential redaction: no Secret value and no token reaches the store or stdout.

What is replaced by :data:`MARKER` in events about ``secrets`` (core group):
- ``data`` and ``stringData`` values of the Secret (keys are kept: which keys changed matters);
- the ``kubectl.kubernetes.io/last-applied-configuration`` annotation, where kubectl apply
  keeps the whole manifest in clear text;
- the same inside lists (``SecretList``, ``Table`` rows with objects) and inside patches:
  JSON patches (arrays of operations) and merge/strategic/apply patches (objects).

What is replaced by :data:`MARKER` in events about tokens (live bearer credentials):
- ``serviceaccounts/token`` (TokenRequest, authentication.k8s.io/v1): ``status.token`` of the
  response;
- every ``authentication.k8s.io`` resource (TokenReview, SelfSubjectReview and any later one):
  every field named ``token`` at any depth, which covers TokenReview ``spec.token`` in the
  request and in the response that echoes it.
Only events whose ``objectRef`` names one of these resources are decoded, so the hot path for
everything else is one or two comparisons.
"""

from __future__ import annotations

from typing import Any

import msgspec

from auditsink.model import Event, Item, encode

MARKER = "<redacted>"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_SECRET_FIELDS = ("data", "stringData")
# JSON-pointer paths (RFC 6901: "/" in keys is written "~1") that hold secret values.
_SECRET_POINTERS = ("/data", "/stringData",
                    "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")


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


AUTHENTICATION_GROUP = "authentication.k8s.io"
_TOKEN_FIELD = "token"


def _redact_tokens(obj: Any) -> bool:
    """Replace every ``token`` field inside ``obj`` (authentication.k8s.io bodies)."""
    changed = False
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == _TOKEN_FIELD:
                if value != MARKER:
                    obj[key] = MARKER
                    changed = True
            elif isinstance(value, (dict, list)):
                changed |= _redact_tokens(value)
    elif isinstance(obj, list):
        for value in obj:
            if isinstance(value, dict) and "op" in value and "value" in value and str(
                value.get("path", "")
            ).rsplit("/", 1)[-1] == _TOKEN_FIELD:
                value["value"] = MARKER  # a JSON patch setting a token
                changed = True
            elif isinstance(value, (dict, list)):
                changed |= _redact_tokens(value)
    return changed


def _redactor(event: Event) -> Any:
    """The redaction that applies to ``event``, or None (the common case)."""
    ref = event.objectRef
    if ref is None:
        return None
    if ref.apiGroup == "":
        if ref.resource == "secrets":
            return _redact_object
        if ref.resource == "serviceaccounts" and ref.subresource == "token":
            return _redact_tokens
        return None
    return _redact_tokens if ref.apiGroup == AUTHENTICATION_GROUP else None


def redact_item(item: Item) -> Item:
    """Return ``item`` with secret values and tokens replaced; the same object when nothing
    changed."""
    event = item.event
    redact = _redactor(event)
    if redact is None:
        return item
    changed = False
    for field in ("requestObject", "responseObject"):
        raw = getattr(event, field)
        if not raw:
            continue
        try:
            obj = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            # An unreadable body about a Secret or a token could hold anything: drop it.
            setattr(event, field, msgspec.Raw(msgspec.json.encode(MARKER)))
            changed = True
            continue
        if redact(obj):
            setattr(event, field, msgspec.Raw(msgspec.json.encode(obj)))
            changed = True
    if not changed:
        return item
    return Item(event=event, raw=encode(event))


def redacted(event: Event) -> bool:
    """Whether an event is one redaction looks at (for tests and docs)."""
    return _redactor(event) is not None
