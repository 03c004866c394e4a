"""An SQLite event row before the writer gives it dictionary ids and a log position.

The writer thread used to build every row itself. With several receiver processes
(``serve --receivers N``, issue 16) each receiver builds them instead, compresses the bodies of
its batch and hands the writer a :class:`PreparedBatch`: the writer is then left with what only
it can do (intern strings, insert, commit), on a core of its own. The in-process path builds
the same rows with :func:`rows_of`, so both end in the same ``INSERT``.

A row refers to its strings (:func:`~auditsink.store._rows.row_strings`) by their index in
its batch's table of distinct strings: 400 generated events hold about 290 distinct ones
against 4,400 in their rows, so the writer decodes and interns each once per batch, not once
per row (issue 16: decoding the rows was a seventh of the writer process).
"""

from __future__ import annotations

import binascii
import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import zstandard

from auditsink.model import LEVEL_RANK, BadItem, Event, Item
from auditsink.selector import bounded
from auditsink.store._rows import decision_value, row_strings
from auditsink.store.sql.where import STAGE_INDEX
from auditsink.timeutil import parse_timestamp

#: (time µs, packed auditID, stage, level, object name, code, decision, then the index in the
#: batch's strings of each of row_strings(), in KEY_COLUMNS order); the auditID is bytes or str
#: (msgpack keeps them apart; a msgspec union cannot say so)
Row = tuple[int, Any, int, int, str, int, int,
            int, int, int, int, int, int, int, int, int, int, int]
# A batch this small is sent as bytes and compressed by the writer together with the rest of
# its group commit: one-event bodies (blocking mode) compressed alone took twice the disk.
COMPRESS_FROM = 32


class PreparedBatch(msgspec.Struct, array_like=True, gc=False):
    """One received batch as the writer needs it, small enough to cross a socket cheaply."""

    cluster: str
    #: the distinct strings the rows refer to, "" first (see :func:`rows_of`)
    strings: list[str]
    rows: list[Row]
    #: (max stageTimestamp µs, zstd frame) per blob, when the receiver compressed the bodies
    blobs: list[tuple[int, bytes]] = []
    #: (index into ``blobs``, offset, length) per row, with ``blobs``
    places: list[tuple[int, int, int]] = []
    #: the rows' exact bytes, when the writer compresses them (small batches)
    raws: list[bytes] = []
    #: undecodable items: (index in the body, error, snippet)
    bad: list[tuple[int, str, str]] = []

    def bad_items(self) -> list[BadItem]:
        return [BadItem(index, error, snippet) for index, error, snippet in self.bad]


def pack_audit_id(audit_id: str) -> bytes | str:
    """A canonical (lower-case) UUID as its 16 bytes, anything else unchanged.

    auditIDs are usually UUIDs: 16 bytes instead of 36 characters in the row and two indexes
    saves ~60 bytes per event. Non-canonical IDs stay text, so no two distinct IDs collide.

    >>> pack_audit_id("6f0c2b4e-1d2a-4c3b-9e8f-0a1b2c3d4e5f").hex()
    '6f0c2b4e1d2a4c3b9e8f0a1b2c3d4e5f'
    >>> pack_audit_id("my-id")
    'my-id'
    >>> pack_audit_id("6f0c2b4e-1d2a-4c3b-9e8f-0a1b2c3d4e 5f")  # fromhex would skip the space
    '6f0c2b4e-1d2a-4c3b-9e8f-0a1b2c3d4e 5f'
    >>> pack_audit_id("6F0C2B4E-1D2A-4C3B-9E8F-0A1B2C3D4E5F")  # would collide with lower case
    '6F0C2B4E-1D2A-4C3B-9E8F-0A1B2C3D4E5F'
    """
    # Cheaper than a regex (this runs for every event stored): the dashes where a UUID has
    # them, 32 hex digits between, and lower case (the packed bytes' hex gives them back).
    if len(audit_id) == 36 and audit_id[8] == audit_id[13] == audit_id[18] == audit_id[23] == "-":
        compact = audit_id.replace("-", "")
        if len(compact) == 32:
            try:
                packed = binascii.unhexlify(compact)
            except (binascii.Error, ValueError):  # not hex, or not ASCII
                return audit_id
            if packed.hex() == compact:
                return packed
    return audit_id


def rows_of(events: Iterable[Event]) -> tuple[list[Row], list[str]]:
    """The columns of the events' rows that do not depend on the store's state, and the
    table of strings they index.

    "" is always index 0, so that the writer can tell the impersonated-user column's "" (no
    strings id: nobody) from the others' (the id of "").
    """
    table: defaultdict[str, int] = defaultdict(itertools.count().__next__)
    table[""]  # noqa: B018 (index 0)
    index = table.__getitem__  # a new string gets the next index: all in C, on the hot path
    rows: list[Row] = []
    # mypy cannot count what map() unpacks into the tuple (row_strings gives 11: Row's)
    append: Any = rows.append
    for event in events:
        ref = event.objectRef
        status = event.responseStatus
        append((parse_timestamp(event.stageTimestamp), pack_audit_id(bounded(event.auditID)),
                STAGE_INDEX.get(event.stage, 0), LEVEL_RANK[event.level],
                bounded(ref.name) if ref else "", status.code if status is not None else 0,
                decision_value(event), *map(index, row_strings(event))))
    return rows, list(table)


def prepare(items: Sequence[Item], cluster: str, bad: Sequence[BadItem],
            compressor: zstandard.ZstdCompressor, blob_events: int) -> PreparedBatch:
    """Build the rows of a batch, and compress its bodies unless it is small (with
    ``compressor``: one per receiver, reused)."""
    rows, strings = rows_of([item.event for item in items])
    bad_rows = [(b.index, b.error, b.snippet) for b in bad]
    if len(items) < COMPRESS_FROM:
        return PreparedBatch(cluster, strings, rows, raws=[item.raw for item in items],
                             bad=bad_rows)
    blobs: list[tuple[int, bytes]] = []
    places: list[tuple[int, int, int]] = []
    for start in range(0, len(items), blob_events):
        chunk = items[start:start + blob_events]
        index = len(blobs)
        blobs.append((max(row[0] for row in rows[start:start + blob_events]),
                      compressor.compress(b"\n".join(i.raw for i in chunk))))
        offset = 0
        for item in chunk:
            length = len(item.raw)
            places.append((index, offset, length))
            offset += length + 1
    return PreparedBatch(cluster, strings, rows, blobs, places, bad=bad_rows)


ENCODER = msgspec.msgpack.Encoder()
DECODER = msgspec.msgpack.Decoder(PreparedBatch)
