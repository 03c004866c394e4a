"""Detections that need memory across events: bursts within a time window.

A condition sees one event; "twenty secret reads by one user within a minute" or "ten denied
requests from one address" need a count. :class:`BurstDetector` keeps, per key (user, source
IP), the times of the matching events in a sliding window and reports once when the count
reaches its threshold, then stays quiet for that key until the window has passed.

Time is the event's own ``stageTimestamp``, not the wall clock, so replaying a file gives the
same answer as seeing it live, and events arriving slightly out of order (the API server sends
batches concurrently) are fine. The number of keys is bounded (least recently seen are dropped):
source addresses and user names come from clients.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from auditsink.rules.engine import Detection, EventContext
from auditsink.rules.jevt import rawtime
from auditsink.store.base import RowFilter

Matcher = Callable[[dict[str, Any]], str | None]


@dataclass
class BurstDetector:
    """Report when ``threshold`` matching events share a key within ``window`` seconds.

    ``key_of(doc)`` returns the key (a user name, an address) when the event matches, else None.
    ``rows`` are the stored rows ``key_of`` can say yes to (never fewer; by default every
    row): the rules consumer reads only the events some detector or rule may want.
    """

    name: str
    priority: str
    key_of: Matcher
    describe: str  # output template: {key}, {count} and {window} are filled in
    threshold: int = 20
    window: float = 60.0
    tags: list[str] = field(default_factory=list)
    max_keys: int = 10_000
    rows: tuple[RowFilter, ...] = (RowFilter(),)
    _seen: OrderedDict[str, deque[int]] = field(default_factory=OrderedDict, repr=False)
    _quiet_until: dict[str, int] = field(default_factory=dict, repr=False)

    def observe(self, doc: dict[str, Any], raw: bytes) -> Detection | None:
        """Count one event; a Detection when this one completes a burst."""
        key = self.key_of(doc)
        if key is None:
            return None
        now = rawtime(doc)
        if now is None:
            return None
        span = int(self.window * 1e9)
        times = self._seen.get(key)
        if times is None:
            times = self._seen[key] = deque()
            if len(self._seen) > self.max_keys:
                old, _ = self._seen.popitem(last=False)
                self._quiet_until.pop(old, None)
        else:
            self._seen.move_to_end(key)
        times.append(now)
        while times and times[0] <= now - span:
            times.popleft()
        if len(times) < self.threshold or now < self._quiet_until.get(key, 0):
            return None
        self._quiet_until[key] = now + span
        audit_id = doc.get("auditID")
        stamp = doc.get("stageTimestamp") or ""
        return Detection(
            rule=self.name,
            priority=self.priority,
            output=self.describe.format(key=key, count=len(times), window=f"{self.window:g}s"),
            tags=list(self.tags),
            auditID=audit_id if isinstance(audit_id, str) else "",
            time=stamp if isinstance(stamp, str) else "",
            output_fields={"key": key, "count": len(times), "window_s": self.window},
            event=raw,
        )


def _ref(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = doc.get("objectRef")
    return ref if isinstance(ref, dict) else {}


def _code(doc: Mapping[str, Any]) -> int:
    status = doc.get("responseStatus")
    code = status.get("code") if isinstance(status, dict) else None
    return code if isinstance(code, int) else 0


def _user(doc: Mapping[str, Any]) -> str:
    user = doc.get("user")
    name = user.get("username") if isinstance(user, dict) else None
    return name if isinstance(name, str) else ""


# Identities that read secrets all day as part of running the cluster.
_ROUTINE_READERS = ("system:kube-controller-manager", "system:apiserver", "system:kube-scheduler")
_ROUTINE_PREFIXES = ("system:node:", "system:serviceaccount:kube-system:")


def secret_reader(doc: dict[str, Any]) -> str | None:
    """The user, for a successful get/list of secrets by someone outside the control plane."""
    if doc.get("stage") != "ResponseComplete" or doc.get("verb") not in ("get", "list"):
        return None
    if _ref(doc).get("resource") != "secrets" or not 200 <= _code(doc) < 300:
        return None
    user = _user(doc)
    if not user or user in _ROUTINE_READERS or user.startswith(_ROUTINE_PREFIXES):
        return None
    return user


# secret_reader and denied_source as row filters
_SECRET_READS = (RowFilter(stages=frozenset({"ResponseComplete"}),
                           verbs=frozenset({"get", "list"}), resources=frozenset({"secrets"}),
                           codes=(200, 299)),)
_DENIED = (RowFilter(codes=(401, 401)),
           RowFilter(stages=frozenset({"ResponseComplete"}), codes=(403, 403)))


def denied_source(doc: dict[str, Any]) -> str | None:
    """The first source IP, for a request refused with 401 (any stage) or 403 (on completion).

    A request that fails authentication produces a single ResponseStarted event with code 401;
    a 403 comes with the usual stages, so only its ResponseComplete is counted.
    """
    code = _code(doc)
    if code == 401 or (code == 403 and doc.get("stage") == "ResponseComplete"):
        ips = doc.get("sourceIPs")
        if isinstance(ips, list) and ips and isinstance(ips[0], str):
            return ips[0]
        return "<unknown>"
    return None


def default_detectors() -> list[BurstDetector]:
    """The built-in stateful detections (fresh state each call)."""
    return [
        BurstDetector(
            name="Secret Read Burst",
            priority="WARNING",
            key_of=secret_reader,
            rows=_SECRET_READS,
            describe="{count} successful secret reads by {key} within {window}",
            threshold=20,
            window=60,
            tags=["k8s", "credentials", "mitre_credential_access", "stateful"],
        ),
        BurstDetector(
            name="Repeated Access Denied",
            priority="WARNING",
            key_of=denied_source,
            rows=_DENIED,
            describe="{count} requests refused (401/403) from {key} within {window}",
            threshold=10,
            window=60,
            tags=["k8s", "authentication", "mitre_discovery", "stateful"],
        ),
    ]


class StatefulDetectors:
    """A set of burst detectors fed one event at a time, in arrival order."""

    def __init__(self, detectors: list[BurstDetector] | None = None) -> None:
        self.detectors = default_detectors() if detectors is None else detectors

    def row_filters(self) -> tuple[RowFilter, ...]:
        """The rows any detector may count (``BurstDetector.rows``)."""
        return tuple(row for detector in self.detectors for row in detector.rows)

    def observe(self, event: bytes | str | Mapping[str, Any] | EventContext) -> list[Detection]:
        """Count one event in every detector; the detections it completes."""
        ctx = event if isinstance(event, EventContext) else EventContext(event)
        raw = ctx.raw
        if raw is None:
            raw_bytes = msgspec.json.encode(ctx.doc)
        else:
            raw_bytes = raw.encode() if isinstance(raw, str) else raw
        found = []
        for detector in self.detectors:
            det = detector.observe(ctx.doc, raw_bytes)
            if det is not None:
                found.append(det)
        return found
