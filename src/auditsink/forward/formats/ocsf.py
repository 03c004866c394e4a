"""``ocsf``: OCSF API Activity (class 6003), schema version :data:`OCSF_VERSION`, with the
original event kept in ``raw_data``.

Mapping (docs/forward.md, "OCSF"): the authenticated user is ``actor.user`` (the
impersonated one, when any, goes to ``unmapped.impersonated_user``); the verb is
``api.operation`` and picks the activity (create 1, get/list/watch 2, update/patch 3,
delete/deletecollection 4, anything else 99); the object is ``resources[0]``; the response code
gives ``status_id`` (>= 400 Failure, else Success; Unknown before a response);
``metadata.uid`` is the auditID; a collection request's resource is named after the
collection (``pods``). What OCSF has no place for (cluster, stage, level,
annotations) is in ``unmapped``. Tested against the OCSF 1.5.0 JSON schema
(tests/forward/test_formats.py).
"""

from __future__ import annotations

from typing import Any

import msgspec

from auditsink.forward.base import Record
from auditsink.forward.formats._common import HTTP_METHODS, split_uri, valid_ips
from auditsink.model import to_log_line
from auditsink.timeutil import parse_timestamp

OCSF_VERSION = "1.5.0"
CLASS_UID = 6003
CATEGORY_UID = 6  # Application Activity

_ACTIVITIES = {"create": (1, "Create"), "get": (2, "Read"), "list": (2, "Read"),
               "watch": (2, "Read"), "update": (3, "Update"), "patch": (3, "Update"),
               "delete": (4, "Delete"), "deletecollection": (4, "Delete")}
# OCSF 1.5.0's http_method enum has no PATCH: a patch keeps its verb in api.operation only.
_OCSF_METHODS = {"OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "CONNECT"}
_encoder = msgspec.json.Encoder()


def to_ocsf(record: Record) -> dict[str, Any]:
    """The OCSF document as a dict."""
    event = record.event
    activity_id, activity = _ACTIVITIES.get(event.verb, (99, "Other"))
    code = event.code
    if code == 0:
        status_id, status = 0, "Unknown"
    elif code >= 400:
        status_id, status = 2, "Failure"
    else:
        status_id, status = 1, "Success"
    user: dict[str, Any] = {"name": event.user.username or "system:anonymous"}
    if event.user.uid:
        user["uid"] = event.user.uid
    if event.user.groups:
        user["groups"] = [{"name": g} for g in event.user.groups]
    ref = event.objectRef
    api: dict[str, Any] = {"operation": event.verb or "unknown",
                           "request": {"uid": event.auditID}}
    if code:
        response: dict[str, Any] = {"code": code}
        if event.responseStatus is not None and event.responseStatus.message:
            response["message"] = event.responseStatus.message
        api["response"] = response
    if ref is not None:
        api["service"] = {"name": ref.apiGroup or "core"}
        if ref.apiVersion:
            api["version"] = ref.apiVersion
    path, query = split_uri(event.requestURI)
    url: dict[str, Any] = {"path": path, "url_string": event.requestURI}
    if query:
        url["query_string"] = query
    http_request: dict[str, Any] = {"url": url}
    if event.userAgent:
        http_request["user_agent"] = event.userAgent
    method = HTTP_METHODS.get(event.verb)
    if method in _OCSF_METHODS:
        http_request["http_method"] = method
    ips = valid_ips(event)
    # src_endpoint is required and needs an ip (or a name): events without sourceIPs say so.
    src: dict[str, Any] = {"ip": ips[0]} if ips else {"name": "unknown"}
    if len(ips) > 1:
        src["intermediate_ips"] = ips[1:]
    unmapped: dict[str, Any] = {"cluster": record.cluster, "stage": event.stage,
                                "level": event.level}
    if event.impersonatedUser is not None:
        unmapped["impersonated_user"] = {"name": event.impersonatedUser.username,
                                         "groups": event.impersonatedUser.groups}
    if event.annotations:
        unmapped["annotations"] = event.annotations
    doc: dict[str, Any] = {
        "class_uid": CLASS_UID, "class_name": "API Activity",
        "category_uid": CATEGORY_UID, "category_name": "Application Activity",
        "activity_id": activity_id, "activity_name": activity,
        "type_uid": CLASS_UID * 100 + activity_id, "type_name": f"API Activity: {activity}",
        "time": parse_timestamp(event.stageTimestamp) // 1000,
        "severity_id": 1, "severity": "Informational",
        "status_id": status_id, "status": status,
        "metadata": {
            "version": OCSF_VERSION, "uid": event.auditID, "log_name": "kubernetes-audit",
            "original_time": event.stageTimestamp,
            "product": {"name": "Kubernetes API server", "vendor_name": "Kubernetes",
                        "feature": {"name": "audit"}},
        },
        "actor": {"user": user},
        "api": api,
        "src_endpoint": src,
        "http_request": http_request,
        "raw_data": to_log_line(record.raw).decode("utf-8", "replace"),
        "unmapped": unmapped,
    }
    if code:
        doc["status_code"] = str(code)
    if event.responseStatus is not None and event.responseStatus.reason:
        doc["status_detail"] = event.responseStatus.reason
    if ref is not None:
        # OCSF wants a name or uid; a collection request (list, watch, create) has neither,
        # and a collection is addressed by its resource: "pods".
        resource: dict[str, Any] = {"type": event.resource_path,
                                    "name": ref.name or event.resource_path or "unknown"}
        for key, value in (("namespace", ref.namespace), ("uid", ref.uid)):
            if value:
                resource[key] = value
        if ref.apiGroup:
            resource["group"] = {"name": ref.apiGroup}
        doc["resources"] = [resource]
    return doc


def encode(record: Record) -> bytes:
    """One OCSF API Activity document (compact JSON)."""
    return _encoder.encode(to_ocsf(record))
