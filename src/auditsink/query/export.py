"""A whole answer as a file: JSONL audit-log lines (re-importable) or CSV, streamed.

Both read the store a page at a time in time order (``Store.iter_page``), so an export of a
million events costs one page of memory. CSV cells that a spreadsheet would run as a formula
(``=``, ``+``, ``-``, ``@``...) are prefixed with ``'``: every value comes from an event, and
events are hostile.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from auditsink.model import decode_item, to_log_line
from auditsink.selector import Selector, client_ip, decision_of, request_path
from auditsink.store.base import EventReader

FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
CSV_COLUMNS = ("time", "cluster", "auditID", "stage", "level", "user", "impersonatedUser",
               "verb", "resource", "apiGroup", "namespace", "name", "code", "decision",
               "sourceIP", "userAgent", "requestPath")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_LINES_PER_CHUNK = 500


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA) else value


def export(store: EventReader, selector: Selector, fmt: str, *, oldest_first: bool = True,
           requests_only: bool = False) -> Iterator[bytes]:
    """Chunks of the export file of every matching event, in time order."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}: expected one of {', '.join(FORMATS)}")
    events = store.iter_page(selector, oldest_first=oldest_first, requests_only=requests_only)
    if fmt == "jsonl":
        lines: list[bytes] = []
        for stored in events:
            lines.append(to_log_line(stored.raw) + b"\n")
            if len(lines) >= _LINES_PER_CHUNK:
                yield b"".join(lines)
                lines = []
        yield b"".join(lines)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for stored in events:
        event = decode_item(stored.raw)
        ref = event.objectRef
        imp = event.impersonatedUser
        writer.writerow([_cell(v) for v in (
            event.stageTimestamp, stored.cluster, event.auditID, event.stage, event.level,
            event.user.username, imp.username if imp is not None else "", event.verb,
            event.resource_path, ref.apiGroup if ref else "", ref.namespace if ref else "",
            ref.name if ref else "", str(event.code or ""), decision_of(event),
            client_ip(event), event.userAgent, request_path(event.requestURI))])
        count += 1
        if count % _LINES_PER_CHUNK == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
