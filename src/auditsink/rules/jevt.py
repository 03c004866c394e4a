"""Extractors of the json plugin's fields (``jevt.*``/``json.*``) and the event time.

``jevt.value[/a/b]`` reads any value by JSON pointer (RFC 6901), ``jevt.obj`` is the whole
event, ``jevt.rawtime`` its time in nanoseconds, as Falco's json plugin gives them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from auditsink.rules.extract import MISSING, Extractor, Value, text


def json_pointer(doc: Any, pointer: str) -> Any:
    """Walk an RFC 6901 pointer; a missing step gives the module's missing marker.

    >>> json_pointer({"a": [{"b/c": 1}]}, "/a/0/b~1c")
    1
    """
    pointer = pointer.removeprefix("/")
    for key in pointer.split("/"):
        key = key.replace("~1", "/").replace("~0", "~")
        if type(doc) is dict:
            doc = doc.get(key, MISSING)
        elif type(doc) is list and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            return MISSING
        if doc is MISSING:
            return MISSING
    return doc


def jevt_value(arg: str | None) -> Extractor:
    """The value at JSON pointer ``arg``."""
    assert arg is not None
    pointer = arg

    def extract(doc: dict[str, Any]) -> Value:
        value = json_pointer(doc, pointer)
        return None if value is MISSING else text(value)

    return extract


def jevt_obj(arg: str | None) -> Extractor:
    """The whole event as indented JSON text."""
    return lambda doc: json.dumps(doc, indent=2, ensure_ascii=False)


def rawtime(doc: dict[str, Any]) -> int | None:
    """The event time (``stageTimestamp``) in nanoseconds since the epoch, like Falco's.

    >>> rawtime({"stageTimestamp": "2018-10-25T14:09:12.000001Z"})
    1540476552000001000
    """
    stamp = doc.get("stageTimestamp") or doc.get("requestReceivedTimestamp")
    if type(stamp) is not str:
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    seconds = int(when.timestamp())
    return seconds * 1_000_000_000 + when.microsecond * 1000


def rawtime_field(arg: str | None) -> Extractor:
    """:func:`rawtime` as a decimal string."""

    def extract(doc: dict[str, Any]) -> Value:
        ns = rawtime(doc)
        return None if ns is None else str(ns)

    return extract


def event_time(arg: str | None) -> Extractor:
    """The event's stageTimestamp as written."""

    def extract(doc: dict[str, Any]) -> Value:
        stamp = doc.get("stageTimestamp") or doc.get("requestReceivedTimestamp")
        return stamp if type(stamp) is str else None

    return extract
