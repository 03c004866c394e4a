"""``splunk``: Splunk's HTTP Event Collector (HEC), ``/services/collector/event``.

Each event is one HEC event object (``time`` in epoch seconds, ``host``, ``source``,
``sourcetype``, ``index``, and the document as ``event``), several objects concatenated in one
request as HEC accepts them; ``Authorization: Splunk TOKEN``. As documented by Splunk
("Format events for HTTP Event Collector"); tested against a local server that speaks it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from auditsink.forward._http import HttpClient, HttpConfig, join_url, raw_json
from auditsink.forward.base import DeliveryError, Doc, Output, Rejection
from auditsink.timeutil import parse_timestamp

_encoder = msgspec.json.Encoder()


@dataclass
class SplunkConfig(HttpConfig):
    """``token`` (or ``token_file``): the HEC token; ``index``, ``sourcetype``, ``source``."""

    token: str = ""
    token_file: str = ""
    index: str = ""
    sourcetype: str = "kube:apiserver:audit"
    source: str = "auditsink"

    def check(self) -> str:
        if not (self.token or self.token_file):
            return "token (or token_file) is required: the HEC token"
        if self.token_file and not os.path.isfile(self.token_file):
            return f"token_file: no such file: {self.token_file}"
        return super().check()


def render(docs: Sequence[Doc], config: SplunkConfig) -> bytes:
    """Concatenated HEC event objects, one line each."""
    lines = []
    for doc in docs:
        event = doc.record.event
        hec: dict[str, Any] = {"time": parse_timestamp(event.stageTimestamp) / 1e6,
                               "host": doc.record.cluster or "kubernetes",
                               "source": config.source, "sourcetype": config.sourcetype}
        if config.index:
            hec["index"] = config.index
        hec["event"] = raw_json(doc.body)
        lines.append(_encoder.encode(hec))
    return b"\n".join(lines) + b"\n"


class SplunkOutput(Output):
    """POSTs each batch to HEC."""

    config_class = SplunkConfig

    def __init__(self, config: SplunkConfig) -> None:
        super().__init__(config)
        self.config: SplunkConfig = config
        self.client = HttpClient(config, join_url(config.url, "/services/collector/event"))
        token = config.token
        if config.token_file:
            with open(config.token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        self.client.headers["Authorization"] = f"Splunk {token}"

    def render(self, docs: Sequence[Doc]) -> bytes:
        return render(docs, self.config)

    def send(self, payload: bytes) -> Sequence[Rejection]:
        _, answer = self.client.post(payload, "application/json")
        try:
            code = msgspec.json.decode(answer).get("code", 0) if answer else 0
        except (msgspec.DecodeError, AttributeError):
            code = 0
        if code:  # HEC answers 200 with code 0 ("Success"); anything else is a failure
            raise DeliveryError(f"Splunk HEC answered code {code}: {answer[:200]!r}")
        return ()

    def close(self) -> None:
        self.client.close()
