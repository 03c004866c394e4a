"""``http``: batches POSTed to any HTTP endpoint, as NDJSON (one document per line) or one
JSON array; gzip, headers, bearer or basic auth, TLS and mTLS (_http.py).

Another auditsink takes ``format: native`` NDJSON as it is (``http:https://other/clusters/prod``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from auditsink.forward._http import HttpClient, HttpConfig
from auditsink.forward.base import Doc, Output, Rejection


@dataclass
class HttpOutputConfig(HttpConfig):
    """``mode``: ``ndjson`` (application/x-ndjson) or ``array`` (application/json)."""

    mode: str = "ndjson"

    def check(self) -> str:
        if self.mode not in ("ndjson", "array"):
            return f"mode {self.mode!r}: expected ndjson or array"
        return super().check()


def render(docs: Sequence[Doc], mode: str = "ndjson") -> bytes:
    """The request body.

    >>> from auditsink.forward.base import Doc
    >>> render([Doc(None, b'{"a":1}'), Doc(None, b'{"b":2}')], "array")  # type: ignore[arg-type]
    b'[{"a":1},{"b":2}]'
    """
    if mode == "array":
        return b"[" + b",".join(doc.body for doc in docs) + b"]"
    return b"".join(doc.body + b"\n" for doc in docs)


class HttpOutput(Output):
    """POSTs each batch."""

    config_class = HttpOutputConfig

    def __init__(self, config: HttpOutputConfig) -> None:
        super().__init__(config)
        self.mode = config.mode
        self.client = HttpClient(config)
        self.content_type = "application/json" if config.mode == "array" else "application/x-ndjson"

    def render(self, docs: Sequence[Doc]) -> bytes:
        return render(docs, self.mode)

    def send(self, payload: bytes) -> Sequence[Rejection]:
        self.client.post(payload, self.content_type)
        return ()

    def close(self) -> None:
        self.client.close()
