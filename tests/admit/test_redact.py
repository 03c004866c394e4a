"""No value of a Secret reaches the store or stdout, whatever shape the request takes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from auditsink.admit.redact import MARKER, redact_item
from auditsink.model import decode_body

SECRET = "hunter2"
SECRET_B64 = base64.b64encode(SECRET.encode()).decode()
LAST_APPLIED = json.dumps({"apiVersion": "v1", "kind": "Secret", "data": {"password": SECRET_B64}})


def _secret(data_field: str = "data") -> dict[str, Any]:
    return {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {
            "name": "s1",
            "namespace": "demo",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": LAST_APPLIED},
        },
        data_field: {"password": SECRET_B64 if data_field == "data" else SECRET},
    }


def _event(
    verb: str, request: Any = None, response: Any = None, audit_id: str = "a"
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "level": "RequestResponse",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": "admin"},
        "objectRef": {"resource": "secrets", "namespace": "demo", "name": "s1", "apiVersion": "v1"},
        "requestReceivedTimestamp": "2026-11-26T10:00:00.000001Z",
        "stageTimestamp": "2026-11-26T10:00:00.000002Z",
    }
    if request is not None:
        event["requestObject"] = request
    if response is not None:
        event["responseObject"] = response
    return event


CASES = {
    "create with data": _event("create", _secret(), _secret()),
    "create with stringData": _event("create", _secret("stringData")),
    "list of secrets": _event(
        "list", response={"kind": "SecretList", "items": [_secret(), _secret()]}
    ),
    "json patch": _event(
        "patch",
        [
            {"op": "replace", "path": "/data/password", "value": SECRET_B64},
            {"op": "add", "path": "/stringData", "value": {"k": SECRET}},
            {
                "op": "replace",
                "path": "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
                "value": LAST_APPLIED,
            },
            {
                "op": "add",
                "path": "/metadata/annotations",
                "value": {"kubectl.kubernetes.io/last-applied-configuration": LAST_APPLIED},
            },
        ],
    ),
    "merge patch": _event(
        "patch",
        {
            "data": {"password": SECRET_B64},
            "metadata": {
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": LAST_APPLIED}
            },
        },
    ),
    "table rows": _event(
        "list", response={"kind": "Table", "rows": [{"cells": ["s1"], "object": _secret()}]}
    ),
}


def test_every_shape_is_redacted() -> None:
    for label, event in CASES.items():
        items, bad = decode_body(json.dumps([event]).encode())
        assert not bad
        out = redact_item(items[0])
        text = out.raw.decode()
        assert SECRET not in text and SECRET_B64 not in text, label
        assert MARKER in text, label
        # Keys are kept: which keys a change touched still shows.
        assert "password" in text or "/stringData" in text or "k" in text, label


def test_other_resources_are_untouched() -> None:
    event = _event("create", _secret())
    event["objectRef"]["resource"] = "configmaps"
    items, _ = decode_body(json.dumps([event]).encode())
    assert redact_item(items[0]) is items[0]


def test_end_to_end_nothing_secret_reaches_store_or_stdout(
    server_factory: Any, tmp_path: Path
) -> None:
    server = server_factory("--format", "json")
    body = json.dumps(
        {
            "kind": "EventList",
            "apiVersion": "audit.k8s.io/v1",
            "items": [dict(e, auditID=label) for label, e in CASES.items()],
        }
    ).encode()
    status, answer = server.post(body)
    assert status == 200 and answer["stored"] == len(CASES)
    _, page = server.api_get("/api/v1/events?limit=100")
    assert len(page["events"]) == len(CASES)
    stored = json.dumps(page)
    assert SECRET not in stored and SECRET_B64 not in stored
    server.stop()
    printed = server.stdout_path.read_text()
    assert printed.count("\n") == len(CASES)
    assert SECRET not in printed and SECRET_B64 not in printed
    assert SECRET not in server.stderr()
    raw_db = b"".join(p.read_bytes() for p in tmp_path.glob("auditsink.db*"))
    assert SECRET.encode() not in raw_db and SECRET_B64.encode() not in raw_db
