"""The HTTP outputs over real sockets. ``http`` also into a real second auditsink; Splunk HEC,
Elasticsearch/OpenSearch ``_bulk``, Loki push and OTLP/HTTP cannot run here, so each is sent
to a local server (servers.py) that speaks the protocol as its vendor documents it: the
paths, headers, bodies and answers (including per-item and partial failures) below."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from forward.helpers import doc, forward_all, stored_raw
from forward.servers import Request, http_server

from auditsink.forward import Forwarder, parse_output
from auditsink.forward.loki import render as loki_render
from auditsink.model import decode_body, to_log_line
from auditsink.setup.certs import generate_ca, generate_client_cert, generate_server_cert
from auditsink.store.base import Selector
from auditsink.store.sqlite import SQLiteStore


def _lines(body: bytes) -> list[Any]:
    return [json.loads(line) for line in body.splitlines() if line]


def test_http_ndjson_gzip_and_bearer(fixture_store: SQLiteStore, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    with http_server() as server:
        forwarder = forward_all(fixture_store, {
            "type": "http", "url": server.url + "/ingest", "compress": True,
            "bearer_token_file": str(token), "headers": {"X-Team": "platform"},
            "batch_events": 300})
        requests = server.requests
    assert [r.path for r in requests] == ["/ingest"] * 4
    first = requests[0]
    assert first.headers["authorization"] == "Bearer s3cret"
    assert first.headers["content-type"] == "application/x-ndjson"
    assert first.headers["content-encoding"] == "gzip" and first.raw_size < len(first.body) / 3
    assert first.headers["x-team"] == "platform"
    sent = b"".join(r.body for r in requests).splitlines()
    assert sent == [to_log_line(raw) for raw in stored_raw(fixture_store)]
    assert forwarder.stats.delivered == 974 and forwarder.stats.batches == 4


def test_http_array_basic_auth_through_an_outage(fixture_store: SQLiteStore) -> None:
    down = [True]
    with http_server() as server:
        server.respond = lambda request: (503, b"maintenance") if down[0] else (200, b"")
        url = server.url.replace("http://", "http://ops:pw%40@") + "/x"
        forwarder = Forwarder(fixture_store, parse_output({
            "type": "http", "url": url, "mode": "array", "format": "ecs", "batch_seconds": 0,
            "backoff_seconds": 0.02, "backoff_max_seconds": 0.05, "max_attempts": 0}))
        threading.Timer(0.3, lambda: down.__setitem__(0, False)).start()
        stop = threading.Event()
        while forwarder.step(stop):
            pass
        forwarder.output.close()
        requests = server.requests
    assert forwarder.stats.failed >= 2 and forwarder.stats.retried == 1
    assert forwarder.stats.delivered == 974 and not fixture_store.dead_letters()
    docs = [d for r in requests for d in json.loads(r.body)]
    assert len(docs) == 974 and docs[0]["ecs"] == {"version": "8.11.0"}
    assert requests[0].headers["authorization"] == "Basic " + base64.b64encode(b"ops:pw@").decode()
    assert requests[0].headers["content-type"] == "application/json"


def test_http_over_mtls(fixture_store: SQLiteStore, tmp_path: Path) -> None:
    ca = generate_ca()
    for name, pair in (("ca", ca), ("server", generate_server_cert(ca, ["127.0.0.1"])),
                       ("client", generate_client_cert(ca, "auditsink"))):
        (tmp_path / f"{name}.crt").write_bytes(pair.cert_pem)
        (tmp_path / f"{name}.key").write_bytes(pair.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    context.load_verify_locations(tmp_path / "ca.crt")
    context.verify_mode = ssl.CERT_REQUIRED
    settings = {"type": "http", "ca_file": str(tmp_path / "ca.crt"), "batch_events": 1000}
    with http_server(context) as server:
        ok = forward_all(fixture_store, {**settings, "name": "mtls", "url": server.url,
                                         "cert_file": str(tmp_path / "client.crt"),
                                         "key_file": str(tmp_path / "client.key")})
        assert ok.stats.delivered == 974 and len(server.requests) == 1
        # Without a client certificate the server refuses the handshake: nothing delivered.
        refused = forward_all(fixture_store, {**settings, "name": "nocert", "url": server.url,
                                              "max_attempts": 1})
    (dead,) = fixture_store.dead_letters("output:nocert")
    assert refused.stats.delivered == 0 and dead.events == 974
    assert "password" not in dead.error.lower()


def test_http_into_another_auditsink(server_factory: Any, fixture_store: SQLiteStore) -> None:
    other = server_factory("--format", "none", "--no-rules")
    forwarder = forward_all(fixture_store, {
        "type": "http", "url": f"http://127.0.0.1:{other.port}/clusters/prod", "compress": True})
    assert forwarder.stats.delivered == 974
    other.stop()
    copy = SQLiteStore(f"sqlite:///{other.workdir}/auditsink.db")
    copy.open(start_writer=False)
    try:
        assert stored_raw(copy) == stored_raw(fixture_store)
        assert {e.cluster for e in copy.iter_all(Selector())} == {"prod"}
    finally:
        copy.close()


def test_splunk_hec(fixture_store: SQLiteStore) -> None:
    with http_server() as server:
        server.respond = lambda request: (200, b'{"text":"Success","code":0}')
        forward_all(fixture_store, {"type": "splunk", "url": server.url, "token": "hec-token",
                                    "index": "k8s", "format": "ocsf", "batch_events": 500})
        requests = server.requests
        assert [r.path for r in requests] == ["/services/collector/event"] * 2
        assert requests[0].headers["authorization"] == "Splunk hec-token"
        events = [e for r in requests for e in _lines(r.body)]
        assert len(events) == 974
        first = events[0]
        assert set(first) == {"time", "host", "source", "sourcetype", "index", "event"}
        assert (first["host"], first["source"], first["sourcetype"], first["index"]) == (
            "prod", "auditsink", "kube:apiserver:audit", "k8s")
        assert first["event"]["class_uid"] == 6003
        assert first["time"] == pytest.approx(first["event"]["time"] / 1000, abs=0.001)
        # HEC answers 200 with a non-zero code when it refuses (6: invalid data format).
        server.respond = lambda request: (200, b'{"text":"Invalid data format","code":6}')
        refused = forward_all(fixture_store, {"type": "splunk", "name": "bad", "url": server.url,
                                              "token": "t", "max_attempts": 1})
    assert refused.stats.delivered == 0
    assert "code 6" in fixture_store.dead_letters("output:bad")[0].error


def _bulk_double(store: dict[str, Any], flaky: set[str]) -> Any:
    """_bulk as Elastic documents it: per-item results, 409 for an existing _id, and here
    429 once for the ids in ``flaky`` and 400 for a document that has a ``"bad"`` key."""

    def respond(request: Request) -> tuple[int, bytes]:
        assert request.path == "/_bulk"
        assert request.headers["content-type"] == "application/x-ndjson"
        lines = request.body.splitlines()
        items, errors = [], False
        for action_line, source in zip(lines[::2], lines[1::2]):
            action = json.loads(action_line)["create"]
            ident = action["_id"]
            if ident in flaky:
                flaky.discard(ident)
                items.append({"create": {"_id": ident, "status": 429, "error": {
                    "type": "es_rejected_execution_exception", "reason": "queue full"}}})
                errors = True
            elif b'"bad"' in source:
                items.append({"create": {"_id": ident, "status": 400, "error": {
                    "type": "mapper_parsing_exception", "reason": "failed to parse"}}})
                errors = True
            elif ident in store:
                items.append({"create": {"_id": ident, "status": 409, "error": {
                    "type": "version_conflict_engine_exception", "reason": "exists"}}})
                errors = True
            else:
                store[ident] = json.loads(source)
                items.append({"create": {"_id": ident, "status": 201, "result": "created"}})
        return 200, json.dumps({"took": 1, "errors": errors, "items": items}).encode()

    return respond


def test_elasticsearch_bulk_honours_per_item_errors(tmp_path: Path) -> None:
    from auditsink.forward.elasticsearch import document_id

    raws = [json.dumps({"level": "Metadata", "auditID": f"id-{n}", "stage": "ResponseComplete",
                        "verb": "get", "stageTimestamp": "2026-11-26T14:19:51.292366Z",
                        **({"annotations": {"bad": "x"}} if n == 3 else {})}).encode()
            for n in range(10)]
    store = SQLiteStore(f"sqlite:///{tmp_path}/a.db")
    store.open()
    store.write(decode_body(b"\n".join(raws))[0])
    indexed: dict[str, Any] = {}
    flaky = {document_id(doc(b"", raws[n], n + 1)) for n in (1, 7)}
    settings = {"type": "elasticsearch", "url": "", "index": "k8s-audit",
                "backoff_seconds": 0.01, "batch_events": 100}
    with http_server() as server:
        server.respond = _bulk_double(indexed, flaky)
        settings["url"] = server.url
        forwarder = forward_all(store, settings)
        assert forwarder.stats.failed == 1 and not flaky  # one retry, of the two 429s only
        expected = [f"id-{n}" for n in range(10) if n != 3]
        assert sorted(d["auditID"] for d in indexed.values()) == expected
        (dead,) = store.dead_letters("output:elasticsearch")
        assert (dead.first, dead.last, dead.events) == (4, 4, 1)
        assert "400 mapper_parsing_exception: failed to parse" in dead.error
        # At least once, stored once: sending everything again creates nothing new.
        again = forward_all(store, {**settings, "name": "again"})
    assert again.stats.delivered == 9 and len(indexed) == 9
    store.close()


def test_loki_push_labels_and_order() -> None:
    events = [
        (b'{"level":"Metadata","auditID":"b","stage":"ResponseComplete","verb":"get",'
         b'"objectRef":{"resource":"pods","namespace":"demo"},'
         b'"stageTimestamp":"2026-11-26T14:19:52.000001Z"}'),
        (b'{"level":"Metadata","auditID":"a","stage":"ResponseComplete","verb":"get",'
         b'"objectRef":{"resource":"pods","namespace":"demo"},'
         b'"stageTimestamp":"2026-11-26T14:19:51.000001Z"}'),
        (b'{"level":"Request","auditID":"c","stage":"ResponseComplete","verb":"list",'
         b'"stageTimestamp":"2026-11-26T14:19:50.5Z"}'),
    ]
    docs = [doc(raw, raw, n, "prod") for n, raw in enumerate(events)]
    assert json.loads(loki_render(docs, {"job": "auditsink"})) == {"streams": [
        {"stream": {"job": "auditsink", "cluster": "prod", "verb": "get", "level": "Metadata",
                    "namespace": "demo"},
         "values": [["1795702791000001000", events[1].decode()],
                    ["1795702792000001000", events[0].decode()]]},
        {"stream": {"job": "auditsink", "cluster": "prod", "verb": "list", "level": "Request"},
         "values": [["1795702790500000000", events[2].decode()]]},
    ]}


def test_loki_push_over_http(fixture_store: SQLiteStore) -> None:
    with http_server() as server:
        server.respond = lambda request: (204, b"")
        forward_all(fixture_store, {"type": "loki", "url": server.url, "tenant": "team-a",
                                    "batch_events": 1000})
        (request,) = server.requests
    assert request.path == "/loki/api/v1/push" and request.headers["x-scope-orgid"] == "team-a"
    streams = json.loads(request.body)["streams"]
    assert sum(len(s["values"]) for s in streams) == 974
    assert {k for s in streams for k in s["stream"]} <= {"cluster", "verb", "level", "namespace"}
    assert len(streams) < 100  # low cardinality: no user, name or auditID in the labels


def test_otlp_logs(fixture_store: SQLiteStore, caplog: pytest.LogCaptureFixture) -> None:
    with http_server() as server:
        server.respond = lambda request: (200, b'{"partialSuccess":{"rejectedLogRecords":"2",'
                                                b'"errorMessage":"too old"}}')
        forwarder = forward_all(fixture_store, {"type": "otlp", "url": server.url,
                                                "batch_events": 1000})
        (request,) = server.requests
    assert request.path == "/v1/logs" and request.headers["content-type"] == "application/json"
    (resource,) = json.loads(request.body)["resourceLogs"]
    cluster = {"key": "k8s.cluster.name", "value": {"stringValue": "prod"}}
    assert cluster in resource["resource"]["attributes"]
    records = resource["scopeLogs"][0]["logRecords"]
    assert len(records) == 974
    first = records[0]
    body = json.loads(first["body"]["stringValue"])
    assert first["timeUnixNano"].isdigit() and body["kind"] == "Event"
    keys = {a["key"] for a in first["attributes"]}
    assert {"k8s.audit.id", "k8s.audit.verb", "user.name"} <= keys
    # A partial success is not retried (the spec forbids it): logged and counted.
    assert forwarder.stats.failed == 0 and forwarder.output.partially_rejected == 2
    assert "rejected 2 log records: too old" in caplog.text


def test_secrets_stay_out_of_errors_and_names(tmp_path: Path) -> None:
    from auditsink.forward import parse_forward

    config = parse_forward("http:https://ops:hunter2@collector.example/ingest")
    assert config.name == "http:https://collector.example/ingest" and "hunter2" not in config.cursor
    store = SQLiteStore(f"sqlite:///{tmp_path}/a.db")
    store.open()
    store.write(decode_body(b'{"level":"Metadata","auditID":"a","stage":"ResponseComplete"}')[0])
    forwarder = Forwarder(store, parse_output({"type": "http", "url": "http://ops:hunter2@127.0.0.1:1/x",
                                               "max_attempts": 1, "batch_seconds": 0}))
    forwarder.step(threading.Event())
    forwarder.output.close()
    (dead,) = store.dead_letters()
    assert "hunter2" not in dead.error and "127.0.0.1:1" in dead.error
    store.close()
