"""Python steps of PostgreSQL migrations: what SQL cannot do alone (reading zstd bodies).

Each runs inside its migration's transaction, right after the migration's SQL (schema.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
import zstandard

from auditsink.model import Event
from auditsink.selector import bounded, request_path
from auditsink.store._rows import NOBODY, decision_value

log = logging.getLogger("auditsink.store")
_decode = msgspec.json.Decoder(Event).decode
_CHUNK = 20_000


def fill_identity(conn: Any) -> None:
    """Migration 0005: impersonated user, decision and request path from every stored body."""
    total = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    if not total:
        return
    log.warning("migration 0005: reading %d stored events once to index impersonation, "
                "decisions and request paths", total)
    ids: dict[str, int] = {}

    def intern(value: str) -> int:
        ident = ids.get(value)
        if ident is None:
            conn.execute("INSERT INTO strings (value) VALUES (%s) ON CONFLICT (value) DO NOTHING",
                         (value,))
            ident = ids[value] = conn.execute("SELECT id FROM strings WHERE value = %s",
                                              (value,)).fetchone()[0]
        return int(ident)

    decompress = zstandard.ZstdDecompressor().decompress
    after, cached_blob, body = -1, -1, b""
    while True:
        rows = conn.execute("SELECT id, blob, start, length FROM events WHERE id > %s"
                            " ORDER BY id LIMIT %s", (after, _CHUNK)).fetchall()
        if not rows:
            return
        updates = []
        for ident, blob, start, length in rows:
            if blob != cached_blob:
                found = conn.execute("SELECT data FROM blobs WHERE id = %s", (blob,)).fetchone()
                cached_blob, body = blob, decompress(bytes(found[0])) if found else b""
            try:
                event = _decode(body[start:start + length])
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            who = event.impersonatedUser
            who_id = intern(bounded(who.username)) if who is not None and who.username else NOBODY
            path_id = intern(bounded(request_path(event.requestURI)))
            updates.append((who_id, decision_value(event), path_id, ident))
        with conn.cursor() as cur:
            cur.executemany("UPDATE events SET impersonated_user = %s, decision = %s, uri = %s"
                            " WHERE id = %s", updates)
        after = rows[-1][0]


# migration version -> its Python step
STEPS: dict[int, Callable[[Any], None]] = {5: fill_identity}
