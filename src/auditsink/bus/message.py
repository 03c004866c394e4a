"""One bus message = (part of) one admitted batch: the cluster name, the items' exact bytes and
the undecodable items, as zstd-compressed JSON.

The encoding is pure (no NATS here) so it is tested by exact equality. JSON rather than msgpack
because the items already are JSON: ``msgspec.Raw`` embeds them without re-encoding, and a
message piped through ``zstd -d`` is readable with jq. zstd because audit events repeat the
same keys, users and URIs, so a batch shrinks several times, which keeps big batches under the
NATS server's ``max_payload`` (1 MB by default) and the stream's disk use low.

Example (uncompressed)::

    {"cluster":"prod","items":[{"level":"Metadata","auditID":"a",...}],"bad":[]}
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import zstandard

from auditsink.model import BadItem, Item, decode_item, snippet

# Decompressed messages larger than this are refused: nothing we publish comes close (the
# receiver's --max-body is 64 MiB before compression), so it can only be a foreign message.
MAX_DECOMPRESSED = 512 * 1024 * 1024
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Room for the headers (Nats-Msg-Id, expected stream) inside the server's max_payload.
HEADER_ROOM = 1024


class Batch(msgspec.Struct, omit_defaults=True):
    """The message body before compression."""

    cluster: str = ""
    items: list[msgspec.Raw] = []
    bad: list[BadItem] = []


@dataclass(frozen=True)
class Message:
    """A payload ready to publish, its deduplication id and how many events it carries."""

    msg_id: str
    payload: bytes
    events: int


class PayloadTooLarge(ValueError):
    """One event is larger than the NATS server accepts even on its own."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Batch)


def encode(items: Sequence[Item], cluster: str, bad: Sequence[BadItem], limit: int,
           level: int = 1) -> list[Message]:
    """Encode a batch into messages whose payloads each fit in ``limit`` bytes.

    The id is a hash of the uncompressed content, so the API server's retry of the same body
    (to this replica or another) gets the same ids and JetStream's duplicate window drops it.

    >>> [m.events for m in encode([], "prod", [], 1 << 20)]
    [0]
    """
    compressor = zstandard.ZstdCompressor(level=level)
    raws = [msgspec.Raw(item.raw) for item in items]
    return _encode(raws, cluster, list(bad), limit - HEADER_ROOM, compressor)


def _encode(raws: list[msgspec.Raw], cluster: str, bad: list[BadItem], limit: int,
            compressor: zstandard.ZstdCompressor) -> list[Message]:
    body = _encoder.encode(Batch(cluster=cluster, items=raws, bad=bad))
    payload = compressor.compress(body)
    if len(payload) <= limit:
        return [Message(hashlib.blake2b(body, digest_size=16).hexdigest(), payload, len(raws))]
    if len(raws) <= 1:
        raise PayloadTooLarge(
            f"one audit event is {len(payload)} bytes compressed, over the NATS server's "
            f"max_payload ({limit + HEADER_ROOM} bytes): raise max_payload in the nats-server "
            "configuration (up to 64MB), or lower the audit policy level for that resource"
        )
    # Split into as many parts as the size suggests (plus slack), and split again whatever
    # still does not fit: a 64 MiB body costs one extra compression, not log2(n) of them.
    parts = min(len(raws), max(2, math.ceil(len(payload) * 1.2 / limit)))
    step = math.ceil(len(raws) / parts)
    messages: list[Message] = []
    for start in range(0, len(raws), step):
        # Undecodable items ride with the first part (they are few and small: snippets).
        messages.extend(_encode(raws[start : start + step], cluster, bad if start == 0 else [],
                                limit, compressor))
    return messages


def decode(payload: bytes) -> tuple[list[Item], str, list[BadItem]]:
    """A message back to (items, cluster, bad); an item that no longer decodes becomes bad.

    Raises ``ValueError`` for a payload that is not an auditsink message at all.
    """
    if payload[:4] == ZSTD_MAGIC:
        size = zstandard.frame_content_size(payload)
        if size < 0 or size > MAX_DECOMPRESSED:
            raise ValueError(f"compressed message of unknown or excessive size ({size})")
        try:
            payload = zstandard.ZstdDecompressor().decompress(payload)
        except zstandard.ZstdError as exc:
            raise ValueError(f"invalid zstd message: {exc}") from None
    try:
        batch = _decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not an auditsink bus message: {exc}") from None
    items: list[Item] = []
    bad = list(batch.bad)
    for index, raw in enumerate(batch.items):
        data = bytes(raw)
        try:
            items.append(Item(event=decode_item(data), raw=data))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            bad.append(BadItem(index=index, error=str(exc), snippet=snippet(data)))
    return items, batch.cluster, bad
