"""Audit timestamps and user-given times, as integer microseconds since the epoch (UTC)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_second_cache: dict[str, int] = {}
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s|m|h|d|w)$")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_timestamp(value: str) -> int:
    """An audit MicroTime to microseconds since the epoch; 0 when empty or unreadable.

    >>> parse_timestamp("2026-11-26T14:19:51.292366Z")
    1795702791292366
    """
    # Fast path for the sender's fixed format (UTC, exactly 6 fraction digits): cache the
    # seconds part, which many events in a batch share.
    if len(value) == 27 and value[19] == "." and value[26] == "Z":
        head = value[:19]
        seconds = _second_cache.get(head)
        if seconds is None:
            try:
                seconds = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp())
            except ValueError:
                return 0
            if len(_second_cache) > 100_000:
                _second_cache.clear()
            _second_cache[head] = seconds
        try:
            return seconds * 1_000_000 + int(value[20:26])
        except ValueError:
            return 0
    if not value:
        return 0
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return 0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp()) * 1_000_000 + parsed.microsecond


def parse_when(value: str, now: float | None = None) -> int:
    """A user's time: relative to now (``90s``, ``15m``, ``2h``, ``7d``) or RFC 3339.

    >>> parse_when("2026-11-26T14:19:51Z")
    1795702791000000
    """
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        current = time.time() if now is None else now
        return int((current - float(match.group(1)) * _UNIT_SECONDS[match.group(2)]) * 1_000_000)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid time {value!r}: use a duration like 30m, 2h, 7d or RFC 3339 like "
            "2026-11-26T14:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp()) * 1_000_000 + parsed.microsecond


def parse_duration(value: str) -> float:
    """A duration like ``30d`` or ``12h`` in seconds.

    >>> parse_duration("2h")
    7200.0
    """
    match = _RELATIVE.match(value.strip())
    if not match:
        raise ValueError(f"invalid duration {value!r}: use e.g. 90s, 15m, 12h, 30d, 2w")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_micros(micros: int) -> str:
    """Microseconds since the epoch as the audit MicroTime form.

    >>> format_micros(1795702791292366)
    '2026-11-26T14:19:51.292366Z'
    """
    dt = datetime.fromtimestamp(micros // 1_000_000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{micros % 1_000_000:06d}Z"
