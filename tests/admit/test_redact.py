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


# -- tokens: TokenRequest and TokenReview carry live bearer credentials -------------------------
# tests/admit/data/token-bodies.jsonl: the webhook bodies of a real kube-apiserver v1.20.2 (the
# harness in ../shared/kube, a throwaway cluster) while kubectl created a ServiceAccount, asked
# for a token (POST .../serviceaccounts/robot/token) and reviewed it (POST .../tokenreviews), at
# RequestResponse level.
TOKEN_BODIES = Path(__file__).resolve().parent / "data" / "token-bodies.jsonl"


def _issued_token() -> str:
    for line in TOKEN_BODIES.read_bytes().splitlines():
        for item in json.loads(line)["items"]:
            ref = item["objectRef"]
            if ref.get("subresource") == "token":
                return str(item["responseObject"]["status"]["token"])
    raise AssertionError("the capture holds no TokenRequest")


TOKEN = "eyJhbGciOiJSUzI1NiJ9.payload.signature"
AUTHN = "authentication.k8s.io"
TOKEN_CASES = {
    "token request": dict(_event("create", {"kind": "TokenRequest", "apiVersion": f"{AUTHN}/v1",
                                            "spec": {"audiences": ["api"]}},
                                 {"kind": "TokenRequest", "apiVersion": f"{AUTHN}/v1",
                                  "spec": {"audiences": ["api"]},
                                  "status": {"token": TOKEN,
                                             "expirationTimestamp": "2026-11-26T11:00:00Z"}}),
                          objectRef={"resource": "serviceaccounts", "subresource": "token",
                                     "namespace": "demo", "name": "robot", "apiVersion": "v1"}),
    "token review": dict(_event("create", {"kind": "TokenReview", "apiVersion": f"{AUTHN}/v1",
                                           "spec": {"token": TOKEN}},
                                {"kind": "TokenReview", "apiVersion": f"{AUTHN}/v1",
                                 "spec": {"token": TOKEN}, "status": {"authenticated": True}}),
                         objectRef={"resource": "tokenreviews", "apiGroup": AUTHN,
                                    "apiVersion": "v1"}),
    "v1beta1 token review": dict(_event("create", {"kind": "TokenReview",
                                                   "apiVersion": f"{AUTHN}/v1beta1",
                                                   "spec": {"token": TOKEN}}),
                                 objectRef={"resource": "tokenreviews", "apiGroup": AUTHN,
                                            "apiVersion": "v1beta1"}),
}


def test_every_token_shape_is_redacted() -> None:
    for label, event in TOKEN_CASES.items():
        items, bad = decode_body(json.dumps([event]).encode())
        assert not bad
        text = redact_item(items[0]).raw.decode()
        assert TOKEN not in text, label
        assert '"token":"<redacted>"' in text, label
        assert "audiences" in text or "authenticated" in text or "TokenReview" in text, label


def test_real_token_bodies_are_redacted() -> None:
    token = _issued_token()
    for line in TOKEN_BODIES.read_bytes().splitlines():
        items, bad = decode_body(line)
        assert not bad
        for item in items:
            assert token not in redact_item(item).raw.decode(), item.event.objectRef


def test_token_never_reaches_store_stdout_or_api(server_factory: Any, tmp_path: Path) -> None:
    token = _issued_token()
    server = server_factory("--format", "json")
    bodies = TOKEN_BODIES.read_bytes().splitlines()
    assert sum(body.count(token.encode()) for body in bodies) == 3  # the sender sent it in clear
    for body in bodies:
        status, answer = server.post(body)
        assert status == 200, answer
    _, page = server.api_get("/api/v1/events?limit=100")
    assert len(page["events"]) == 6
    served = json.dumps(page)
    assert token not in served
    kinds = {(e["event"]["objectRef"].get("subresource"), e["event"]["objectRef"]["resource"])
             for e in page["events"] if "<redacted>" in json.dumps(e)}
    assert kinds == {("token", "serviceaccounts"), (None, "tokenreviews")}
    server.stop()
    assert token not in server.stdout_path.read_text() and token not in server.stderr()
    raw_db = b"".join(p.read_bytes() for p in tmp_path.glob("auditsink.db*"))
    assert token.encode() not in raw_db
