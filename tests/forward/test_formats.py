"""The formats: OCSF validated against the OCSF schema, ECS and native by exact output.

OCSF validation: the JSON Schema that ``ocsf-json-schema`` (PyPI) generates from the OCSF
1.5.0 schema export it ships (schema.ocsf.io's ``/export/schema``, bundled in the package),
checked with ``jsonschema`` (Draft 2020-12). That schema sets ``additionalProperties: false``
on the class and every object, and holds every enum, so an unknown key, a missing required
attribute or a wrong id fails. (ocsf-lib, the OCSF project's own library, parses schemas and
compares versions but validates no events, and fetches schemas from the network.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditsink.forward.base import Record
from auditsink.forward.formats import ecs, native, ocsf
from auditsink.model import decode_body, decode_item

EXEC = (b'{"level":"RequestResponse","auditID":"ca1ed9f4","stage":"ResponseComplete",'
        b'"requestURI":"/api/v1/namespaces/default/pods/web/exec?command=bash&container=c1",'
        b'"verb":"create","user":{"username":"alice","uid":"u-1","groups":["devs",'
        b'"system:authenticated"]},"impersonatedUser":{"username":"bob"},"sourceIPs":['
        b'"10.0.0.7","not-an-ip"],"userAgent":"kubectl/v1.20.0","objectRef":{"resource":"pods",'
        b'"namespace":"default","name":"web","apiVersion":"v1","subresource":"exec"},'
        b'"responseStatus":{"metadata":{},"code":101},"requestReceivedTimestamp":'
        b'"2026-11-26T14:19:51.280000Z","stageTimestamp":"2026-11-26T14:19:51.292366Z",'
        b'"annotations":{"authorization.k8s.io/decision":"allow"}}')


def _record(raw: bytes = EXEC, cluster: str = "prod") -> Record:
    return Record(7, cluster, decode_item(raw), raw)


@pytest.fixture(scope="module")
def ocsf_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema_lib = pytest.importorskip("ocsf_json_schema")
    schema = schema_lib.OcsfJsonSchemaEmbedded(
        schema_lib.get_ocsf_schema(version=ocsf.OCSF_VERSION))
    assert schema.lookup_class_name_from_uid(class_uid=6003) == "api_activity"
    class_schema = schema.get_class_schema(class_name="api_activity", profiles=[])
    return jsonschema.Draft202012Validator(class_schema)


def test_ocsf_document() -> None:
    doc = json.loads(ocsf.encode(_record()))
    assert doc == {
        "class_uid": 6003, "class_name": "API Activity", "category_uid": 6,
        "category_name": "Application Activity", "activity_id": 1, "activity_name": "Create",
        "type_uid": 600301, "type_name": "API Activity: Create", "time": 1795702791292,
        "severity_id": 1, "severity": "Informational", "status_id": 1, "status": "Success",
        "status_code": "101",
        "metadata": {"version": "1.5.0", "uid": "ca1ed9f4", "log_name": "kubernetes-audit",
                     "original_time": "2026-11-26T14:19:51.292366Z",
                     "product": {"name": "Kubernetes API server", "vendor_name": "Kubernetes",
                                 "feature": {"name": "audit"}}},
        "actor": {"user": {"name": "alice", "uid": "u-1",
                           "groups": [{"name": "devs"}, {"name": "system:authenticated"}]}},
        "api": {"operation": "create", "request": {"uid": "ca1ed9f4"},
                "response": {"code": 101}, "service": {"name": "core"}, "version": "v1"},
        "src_endpoint": {"ip": "10.0.0.7"},
        "http_request": {"url": {"path": "/api/v1/namespaces/default/pods/web/exec",
                                 "url_string": "/api/v1/namespaces/default/pods/web/exec"
                                               "?command=bash&container=c1",
                                 "query_string": "command=bash&container=c1"},
                         "user_agent": "kubectl/v1.20.0", "http_method": "POST"},
        "resources": [{"type": "pods/exec", "name": "web", "namespace": "default"}],
        "raw_data": native.encode(_record()).decode(),
        "unmapped": {"cluster": "prod", "stage": "ResponseComplete", "level": "RequestResponse",
                     "impersonated_user": {"name": "bob", "groups": []},
                     "annotations": {"authorization.k8s.io/decision": "allow"}},
    }


def test_ocsf_validates_against_the_schema(ocsf_validator: Any, fixtures_dir: Path) -> None:
    items, _ = decode_body((fixtures_dir / "audit.log").read_bytes())
    samples = [_record(EXEC),
               *(Record(i, "", item.event, item.raw) for i, item in enumerate(items))]
    verbs = set()
    for record in samples:
        doc = json.loads(ocsf.encode(record))
        errors = sorted(ocsf_validator.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, (record.event.auditID,
                            [f"{list(e.path)}: {e.message}" for e in errors[:3]])
        verbs.add(record.event.verb)
        assert json.loads(doc["raw_data"])["auditID"] == record.event.auditID
    assert {"create", "get", "list", "watch", "update", "patch", "delete"} <= verbs


def test_the_validator_catches_mistakes(ocsf_validator: Any) -> None:
    doc = json.loads(ocsf.encode(_record()))
    doc["actor"]["user"]["nickname"] = "al"   # not an OCSF attribute
    del doc["api"]                             # required
    doc["activity_id"] = 7                     # not in the enum
    messages = " | ".join(e.message for e in ocsf_validator.iter_errors(doc))
    assert "'api' is a required property" in messages
    assert "'nickname' was unexpected" in messages and "7 is not one of" in messages


def test_ecs_document() -> None:
    doc = json.loads(ecs.encode(_record()))
    audit = doc.pop("kubernetes")["audit"]
    assert audit == json.loads(EXEC)
    assert doc == {
        "@timestamp": "2026-11-26T14:19:51.292366Z", "ecs": {"version": "8.11.0"},
        "event": {"kind": "event", "category": ["web"], "type": ["creation"], "action": "create",
                  "outcome": "success", "id": "ca1ed9f4", "dataset": "kubernetes.audit_logs",
                  "provider": "kube-apiserver", "start": "2026-11-26T14:19:51.280000Z",
                  "end": "2026-11-26T14:19:51.292366Z"},
        "user": {"name": "alice", "roles": ["devs", "system:authenticated"],
                 "effective": {"name": "bob"}},
        "orchestrator": {"type": "kubernetes", "cluster": {"name": "prod"}, "api_version": "v1",
                         "resource": {"type": "pods/exec", "name": "web"}, "namespace": "default"},
        "source": {"ip": "10.0.0.7"},
        "url": {"original": "/api/v1/namespaces/default/pods/web/exec?command=bash&container=c1",
                "path": "/api/v1/namespaces/default/pods/web/exec",
                "query": "command=bash&container=c1"},
        "http": {"request": {"method": "POST"}, "response": {"status_code": 101}},
        "user_agent": {"original": "kubectl/v1.20.0"},
    }


def test_native_is_the_log_line() -> None:
    assert native.encode(_record()) == b'{"kind":"Event","apiVersion":"audit.k8s.io/v1",' + EXEC[1:]
