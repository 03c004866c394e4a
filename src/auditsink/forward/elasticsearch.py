"""``elasticsearch``: Elasticsearch or OpenSearch ``_bulk``, one ``create`` per event.

The document id is a hash of the deduplication key (cluster, auditID, stage, stageTimestamp),
so an event sent twice (at-least-once) is stored once: the second ``create`` answers 409,
which counts as delivered. Per-item errors are honoured: items refused with 429 or 5xx are
retried alone, items refused for good (a mapping error, 400) become dead letters of their
own; the rest of the batch is delivered. As documented for the Bulk API by Elastic (and
OpenSearch's, the same); tested against a local server that speaks it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from auditsink.forward._http import HttpClient, HttpConfig, join_url
from auditsink.forward.base import DeliveryError, Doc, Output, Rejection

_encoder = msgspec.json.Encoder()


@dataclass
class ElasticsearchConfig(HttpConfig):
    """``index``: an index or data stream name (``create`` works on both)."""

    index: str = "kubernetes-audit"

    def check(self) -> str:
        if not self.index or self.index != self.index.lower() or " " in self.index:
            return f"index {self.index!r}: expected a lower-case index or data stream name"
        return super().check()


def document_id(doc: Doc) -> str:
    """The event's dedup key, hashed: the same event always gets the same id."""
    event = doc.record.event
    key = "\x00".join((doc.record.cluster, event.auditID, event.stage, event.stageTimestamp))
    return hashlib.sha256(key.encode()).hexdigest()[:40]


@dataclass
class BulkPayload:
    """The request body, which event each action line is for, and (on a retry of part of a
    batch) the items already refused for good."""

    body: bytes
    docs: list[Doc]
    rejected: list[Rejection] = field(default_factory=list)


def render(docs: Sequence[Doc], index: str) -> BulkPayload:
    """The NDJSON ``_bulk`` body: an action line, then the document, per event."""
    lines = []
    for doc in docs:
        lines.append(_encoder.encode({"create": {"_index": index, "_id": document_id(doc)}}))
        lines.append(doc.body)
    return BulkPayload(b"\n".join(lines) + b"\n", list(docs))


class ElasticsearchOutput(Output):
    """POSTs each batch to ``_bulk`` and reads every item's answer."""

    config_class = ElasticsearchConfig

    def __init__(self, config: ElasticsearchConfig) -> None:
        super().__init__(config)
        self.index = config.index
        self.client = HttpClient(config, join_url(config.url, "/_bulk"))

    def render(self, docs: Sequence[Doc]) -> BulkPayload:
        return render(docs, self.index)

    def send(self, payload: BulkPayload) -> Sequence[Rejection]:
        _, answer = self.client.post(payload.body, "application/x-ndjson")
        try:
            result: dict[str, Any] = msgspec.json.decode(answer)
        except msgspec.DecodeError:
            raise DeliveryError(f"_bulk answered something that is not JSON: "
                                f"{answer[:200]!r}") from None
        if not result.get("errors"):
            return payload.rejected
        items = result.get("items") or []
        if len(items) != len(payload.docs):
            raise DeliveryError(f"_bulk answered {len(items)} items for {len(payload.docs)}")
        retry: list[Doc] = []
        rejected = list(payload.rejected)
        for doc, item in zip(payload.docs, items, strict=True):
            answer_item: dict[str, Any] = next(iter(item.values()), {})
            status = int(answer_item.get("status", 500))
            if status < 300 or status == 409:  # 409: this id is stored already
                continue
            error = answer_item.get("error") or {}
            reason = f"{status} {error.get('type', '')}: {error.get('reason', '')}".strip()
            if status == 429 or status >= 500:
                retry.append(doc)
            else:
                rejected.append(Rejection(doc.record.id, reason))
        if retry:
            # Dead letters of the refused ones are recorded once the rest has gone through.
            remaining = render(retry, self.index)
            remaining.rejected = rejected
            raise DeliveryError(f"_bulk: {len(retry)} of {len(payload.docs)} items to retry",
                                remaining=remaining)
        return rejected

    def close(self) -> None:
        self.client.close()

