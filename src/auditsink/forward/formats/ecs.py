"""``ecs``: Elastic Common Schema, close to what Elastic's Kubernetes audit-logs integration
writes: ``@timestamp``, ``event.*``, ``user.*``, ``source.ip``, ``url.*``, ``http.*``,
``orchestrator.*``, and the whole audit event under ``kubernetes.audit`` (the integration's
field group), so nothing is lost."""

from __future__ import annotations

from typing import Any

import msgspec

from auditsink.forward.base import Record
from auditsink.forward.formats._common import HTTP_METHODS, split_uri, valid_ips

ECS_VERSION = "8.11.0"
_TYPES = {"create": "creation", "delete": "deletion", "deletecollection": "deletion",
          "update": "change", "patch": "change", "get": "access", "list": "access",
          "watch": "access"}
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def to_ecs(record: Record) -> dict[str, Any]:
    """The ECS document as a dict."""
    event = record.event
    code = event.code
    outcome = "unknown" if code == 0 else ("failure" if code >= 400 else "success")
    doc: dict[str, Any] = {
        "@timestamp": event.stageTimestamp,
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "event", "category": ["web"], "type": [_TYPES.get(event.verb, "info")],
                  "action": event.verb, "outcome": outcome, "id": event.auditID,
                  "dataset": "kubernetes.audit_logs", "provider": "kube-apiserver",
                  "start": event.requestReceivedTimestamp or None,
                  "end": event.stageTimestamp or None},
        "user": {"name": event.user.username},
        "orchestrator": {"type": "kubernetes", "cluster": {"name": record.cluster},
                         "api_version": event.objectRef.apiVersion if event.objectRef else None},
        "kubernetes": {"audit": _decoder.decode(record.raw)},
    }
    if event.user.groups:
        doc["user"]["roles"] = event.user.groups
    if event.impersonatedUser is not None:
        doc["user"]["effective"] = {"name": event.impersonatedUser.username}
    ips = valid_ips(event)
    if ips:
        doc["source"] = {"ip": ips[0]}
        if len(ips) > 1:
            doc["related"] = {"ip": ips}
    path, query = split_uri(event.requestURI)
    doc["url"] = {"original": event.requestURI, "path": path, **({"query": query} if query else {})}
    http: dict[str, Any] = {}
    if event.verb in HTTP_METHODS:
        http["request"] = {"method": HTTP_METHODS[event.verb]}
    if code:
        http["response"] = {"status_code": code}
    if http:
        doc["http"] = http
    if event.userAgent:
        doc["user_agent"] = {"original": event.userAgent}
    ref = event.objectRef
    if ref is not None:
        doc["orchestrator"]["resource"] = {"type": event.resource_path, "name": ref.name or None}
        if ref.namespace:
            doc["orchestrator"]["namespace"] = ref.namespace
    return _drop_none(doc)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def encode(record: Record) -> bytes:
    """One ECS document (compact JSON)."""
    return _encoder.encode(to_ecs(record))
