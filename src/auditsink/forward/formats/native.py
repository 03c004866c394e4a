"""``native``: one audit.k8s.io/v1 Event with ``kind`` and ``apiVersion``, the log backend's
line (``--audit-log-path``), which audit2rbac, ``auditsink import`` and every log reader take."""

from __future__ import annotations

from auditsink.forward.base import Record
from auditsink.model import to_log_line


def encode(record: Record) -> bytes:
    """The event's exact stored bytes, as an audit-log line (no newline).

    >>> from auditsink.model import decode_item
    >>> raw = b'{"level":"Metadata","auditID":"a","stage":"ResponseComplete"}'
    >>> encode(Record(1, "", decode_item(raw), raw))
    b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a","stage":"ResponseComplete"}'
    """
    return to_log_line(record.raw)
