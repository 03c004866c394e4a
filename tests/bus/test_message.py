"""The bus message format: exact bytes, ids, splitting under max_payload, and decoding."""

from __future__ import annotations

import base64
import os
import sys

import pytest
import zstandard

from auditsink.bus.message import HEADER_ROOM, PayloadTooLarge, decode, encode
from auditsink.bus.nats import BusError, import_nats, parse_servers
from auditsink.model import BadItem, decode_body

EVENT = (b'{"level":"Metadata","auditID":"a1","stage":"ResponseComplete","verb":"get",'
         b'"stageTimestamp":"2026-11-26T14:23:16.451036Z"}')
BAD = BadItem(index=1, error="Expected `object`, got `int`", snippet="7")


def items_of(*raws: bytes) -> list:  # type: ignore[type-arg]
    items, bad = decode_body(b"[" + b",".join(raws) + b"]")
    assert not bad
    return items


def test_payload_is_compressed_json_with_the_exact_item_bytes() -> None:
    [message] = encode(items_of(EVENT), "prod", [BAD], 1 << 20)
    body = zstandard.ZstdDecompressor().decompress(message.payload)
    assert body == (b'{"cluster":"prod","items":[' + EVENT + b'],"bad":[{"index":1,'
                    b'"error":"Expected `object`, got `int`","snippet":"7"}]}')
    assert message.events == 1
    assert len(message.msg_id) == 32


def test_round_trip() -> None:
    [message] = encode(items_of(EVENT), "prod", [BAD], 1 << 20)
    items, cluster, bad = decode(message.payload)
    assert [i.raw for i in items] == [EVENT]
    assert items[0].event.auditID == "a1"
    assert (cluster, bad) == ("prod", [BAD])


def test_same_batch_same_id_other_cluster_other_id() -> None:
    first = encode(items_of(EVENT), "prod", [], 1 << 20)[0].msg_id
    assert encode(items_of(EVENT), "prod", [], 1 << 20)[0].msg_id == first
    assert encode(items_of(EVENT), "staging", [], 1 << 20)[0].msg_id != first


def big_event(i: int, size: int) -> bytes:
    # Random base64 barely compresses: the size after zstd stays close to `size`.
    blob = base64.b64encode(os.urandom(size * 3 // 4)).decode()
    return (b'{"level":"RequestResponse","auditID":"big-%d","stage":"ResponseComplete",'
            b'"requestObject":{"data":"%s"}}' % (i, blob.encode()))


def test_large_batch_is_split_under_the_limit_in_order() -> None:
    raws = [big_event(i, 40_000) for i in range(20)]
    limit = 128 * 1024
    messages = encode(items_of(*raws), "prod", [BAD], limit)
    assert len(messages) >= 5  # ~600 KB after zstd (base64 is 6 bits a byte)
    assert all(len(m.payload) <= limit - HEADER_ROOM for m in messages)
    decoded = [decode(m.payload) for m in messages]
    assert [i.raw for items, _, _ in decoded for i in items] == raws
    assert [bad for _, _, bad in decoded] == [[BAD]] + [[]] * (len(messages) - 1)
    assert len({m.msg_id for m in messages}) == len(messages)
    assert sum(m.events for m in messages) == 20


def test_one_event_over_max_payload_names_the_remedy() -> None:
    with pytest.raises(PayloadTooLarge, match="max_payload"):
        encode(items_of(big_event(0, 200_000)), "", [], 64 * 1024)


def test_uncompressed_payload_is_accepted_and_garbage_is_refused() -> None:
    items, cluster, bad = decode(b'{"items":[' + EVENT + b"]}")
    assert [i.raw for i in items] == [EVENT] and cluster == "" and bad == []
    with pytest.raises(ValueError, match="not an auditsink bus message"):
        decode(b"hello")


def test_an_item_that_no_longer_decodes_becomes_bad() -> None:
    items, _, bad = decode(b'{"items":[' + EVENT + b',{"level":"Metadata"}]}')
    assert len(items) == 1
    assert [b.index for b in bad] == [1]


def test_missing_client_library_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)
    with pytest.raises(BusError, match=r"pip install 'auditsink\[bus\]'"):
        import_nats()


def test_server_list() -> None:
    assert parse_servers("nats://a:4222,nats://b:4222") == ["nats://a:4222", "nats://b:4222"]
    with pytest.raises(BusError, match="nats://HOST:PORT"):
        parse_servers("a:4222")
