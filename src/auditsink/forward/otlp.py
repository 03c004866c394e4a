"""``otlp``: OpenTelemetry logs over OTLP/HTTP with the JSON encoding (``/v1/logs``), for an
OpenTelemetry Collector or any backend that takes OTLP.

One ``resourceLogs`` per cluster (``service.name: kube-apiserver``, ``k8s.cluster.name``),
each event one log record: the document as the string body, time from ``stageTimestamp``,
INFO (WARN for a response of 400 or more), and the fields people filter on as attributes
(``k8s.audit.*``, ``user.name``, ``http.response.status_code``). A partial success is logged,
not retried, as the OTLP specification requires. As specified by OpenTelemetry ("OTLP
Specification", OTLP/HTTP, JSON Protobuf Encoding); tested against a local server that
speaks it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from auditsink import __version__
from auditsink.forward._http import HttpClient, HttpConfig, join_url
from auditsink.forward.base import Doc, Output, Rejection
from auditsink.timeutil import parse_timestamp

log = logging.getLogger("auditsink.forward")
_encoder = msgspec.json.Encoder()


@dataclass
class OtlpConfig(HttpConfig):
    """Nothing beyond the HTTP settings: ``url`` is the collector (``http://otel:4318``)."""


def _attr(key: str, value: str | int) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # int64 is a string in OTLP JSON
    return {"key": key, "value": {"stringValue": value}}


def log_record(doc: Doc, observed_ns: int) -> dict[str, Any]:
    """One OTLP LogRecord."""
    event = doc.record.event
    ref = event.objectRef
    attributes = [_attr("k8s.audit.id", event.auditID), _attr("k8s.audit.stage", event.stage),
                  _attr("k8s.audit.level", event.level), _attr("k8s.audit.verb", event.verb),
                  _attr("user.name", event.user.username)]
    if ref is not None:
        attributes.append(_attr("k8s.audit.resource", event.resource_path))
        if ref.namespace:
            attributes.append(_attr("k8s.namespace.name", ref.namespace))
        if ref.name:
            attributes.append(_attr("k8s.audit.name", ref.name))
    if event.code:
        attributes.append(_attr("http.response.status_code", event.code))
    warn = event.code >= 400
    return {"timeUnixNano": str(parse_timestamp(event.stageTimestamp) * 1000),
            "observedTimeUnixNano": str(observed_ns),
            "severityNumber": 13 if warn else 9, "severityText": "WARN" if warn else "INFO",
            "body": {"stringValue": doc.body.decode("utf-8", "replace")},
            "attributes": attributes}


def render(docs: Sequence[Doc], observed_ns: int | None = None) -> bytes:
    """The ExportLogsServiceRequest, JSON-encoded."""
    observed = time.time_ns() if observed_ns is None else observed_ns
    by_cluster: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_cluster.setdefault(doc.record.cluster, []).append(log_record(doc, observed))
    request = {"resourceLogs": [
        {"resource": {"attributes": [_attr("service.name", "kube-apiserver"),
                                     *([_attr("k8s.cluster.name", c)] if c else [])]},
         "scopeLogs": [{"scope": {"name": "auditsink", "version": __version__},
                        "logRecords": records}]}
        for c, records in by_cluster.items()
    ]}
    return _encoder.encode(request)


class OtlpOutput(Output):
    """POSTs each batch to ``/v1/logs``."""

    config_class = OtlpConfig

    def __init__(self, config: OtlpConfig) -> None:
        super().__init__(config)
        self.client = HttpClient(config, join_url(config.url, "/v1/logs"))
        self.partially_rejected = 0

    def render(self, docs: Sequence[Doc]) -> bytes:
        return render(docs)

    def send(self, payload: bytes) -> Sequence[Rejection]:
        _, answer = self.client.post(payload, "application/json")
        try:
            partial = (msgspec.json.decode(answer) if answer else {}).get("partialSuccess") or {}
        except (msgspec.DecodeError, AttributeError):
            partial = {}
        rejected = int(partial.get("rejectedLogRecords") or 0)
        if rejected:
            # The collector does not say which: count and log, do not retry (the spec says so).
            self.partially_rejected += rejected
            log.warning("OTLP endpoint rejected %d log records: %s", rejected,
                        str(partial.get("errorMessage", ""))[:200])
        return ()

    def close(self) -> None:
        self.client.close()
