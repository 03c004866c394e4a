"""Helpers the forward tests share: run an output over a store, read what it stored."""

from __future__ import annotations

import threading
from typing import Any

from auditsink.forward import Doc, Forwarder, Record, parse_output
from auditsink.model import decode_item
from auditsink.store.base import Selector


def stored_raw(store: Any) -> list[bytes]:
    """Every stored event's bytes, in log order."""
    return [e.raw for e in store.iter_all(Selector())]


def forward_all(store: Any, settings: dict[str, Any], output: Any = None) -> Forwarder:
    """Run an output over everything in the store (until caught up) and return it."""
    forwarder = Forwarder(store, parse_output({"batch_seconds": 0, **settings}), output)
    stop = threading.Event()
    try:
        while forwarder.step(stop):
            pass
    finally:
        forwarder.output.close()
    return forwarder


def doc(body: bytes, raw: bytes = b'{"level":"Metadata","auditID":"a","stage":"ResponseComplete"}',
        position: int = 1, cluster: str = "") -> Doc:
    """A document as an encoder would hand it to an output."""
    return Doc(Record(position, cluster, decode_item(raw), raw), body)
