"""``loki``: Grafana Loki's push API (``/loki/api/v1/push``, JSON).

Labels are kept few and low-cardinality, as Loki wants them: ``cluster``, ``verb``, ``level``
and ``namespace`` (empty ones left out); everything else (user, object, code) stays in the
line, where LogQL's ``| json`` reads it. Each stream's entries are sent in time order
(nanosecond strings). As documented by Grafana ("Loki HTTP API: Ingest logs"); tested against
a local server that speaks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from auditsink.forward._http import HttpClient, HttpConfig, join_url
from auditsink.forward.base import Doc, Output, Rejection
from auditsink.timeutil import parse_timestamp

_encoder = msgspec.json.Encoder()
LABELS = ("cluster", "verb", "level", "namespace")


@dataclass
class LokiConfig(HttpConfig):
    """``tenant``: sent as ``X-Scope-OrgID`` (multi-tenant Loki); ``labels``: static labels
    added to every stream (``{env: prod}``)."""

    tenant: str = ""
    labels: dict[str, str] = field(default_factory=dict)


def labels_of(doc: Doc, static: dict[str, str]) -> dict[str, str]:
    """The stream labels of one event."""
    event = doc.record.event
    found = {"cluster": doc.record.cluster, "verb": event.verb, "level": event.level,
             "namespace": event.objectRef.namespace if event.objectRef else ""}
    return {**static, **{k: v for k, v in found.items() if v}}


def render(docs: Sequence[Doc], static: dict[str, str] | None = None) -> bytes:
    """The push body: one stream per label set, entries in time order."""
    streams: dict[tuple[tuple[str, str], ...], list[tuple[int, str]]] = {}
    for doc in docs:
        key = tuple(sorted(labels_of(doc, static or {}).items()))
        time_ns = parse_timestamp(doc.record.event.stageTimestamp) * 1000
        streams.setdefault(key, []).append((time_ns, doc.body.decode("utf-8", "replace")))
    body: dict[str, Any] = {"streams": [
        {"stream": dict(key),
         "values": [[str(t), line] for t, line in sorted(entries, key=lambda e: e[0])]}
        for key, entries in streams.items()
    ]}
    return _encoder.encode(body)


class LokiOutput(Output):
    """POSTs each batch to the push API."""

    config_class = LokiConfig

    def __init__(self, config: LokiConfig) -> None:
        super().__init__(config)
        self.static = dict(config.labels)
        self.client = HttpClient(config, join_url(config.url, "/loki/api/v1/push"))
        if config.tenant:
            self.client.headers["X-Scope-OrgID"] = config.tenant

    def render(self, docs: Sequence[Doc]) -> bytes:
        return render(docs, self.static)

    def send(self, payload: bytes) -> Sequence[Rejection]:
        self.client.post(payload, "application/json")
        return ()

    def close(self) -> None:
        self.client.close()
