"""What every notifier shares: the registry, the priority filter, rate limiting and delivery.

Each notifier only renders a payload (a pure function, tested by exact equality) and sends it.
Delivery is a store consumer (consumer.py) over the alerts the rules stored, after a durable
cursor per notifier: a destination that is down delays its alerts, retried with backoff, and
never blocks ingest or the rules; once it recovers every alert is delivered (at least once).

Two things a notifier never does silently (docs/rules.md, "Notifiers"):
- **Rate limiting counts, it does not drop.** Past ``rate_per_minute`` alerts of one rule in a
  minute, the next ones are held and, when the minute ends, sent as one notification that says
  how many there were, from when to when, with the latest of them (Falco deprecated its
  limiter because it dropped alerts without a word).
- **History is not news.** A notifier notifies alerts about events at most ``GRACE`` older than
  its first start on this store (kept in the store), so importing last month's log does not
  page anyone; ``serve --notify-since`` moves that point and ``import --notify`` marks what it
  imports as to be notified.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from auditsink.consumer import Backoff, Consumer, ConsumerLoop, Progress, deliver
from auditsink.rules.priority import PRIORITIES, RANK
from auditsink.store.base import Alert, AlertSelector, Store
from auditsink.timeutil import format_micros

log = logging.getLogger("auditsink.notify")

NOTIFIERS = {
    "stdout": "auditsink.notify.stdout:StdoutNotifier",
    "webhook": "auditsink.notify.webhook:WebhookNotifier",
    "slack": "auditsink.notify.slack:SlackNotifier",
}

# The API server retries a batch for about 100 s (design.md) and a restart takes seconds:
# events this much older than the notifier's start are still news.
GRACE_US = 10 * 60 * 1_000_000
START_STATE = "notify-start:"       # + notifier name: when it first ran on this store (µs)
INCLUDE_STATE = "notify-include"    # JSON [[first, last], ...]: positions `import --notify` wrote
NOTIFY_ALL = 0                      # ``since`` that notifies everything


class DeliveryError(Exception):
    """The destination did not take the payload; it will be retried."""


@dataclass
class NotifierConfig:
    """``--notify KIND[:URL]`` plus the shared settings.

    ``since``: notify alerts about events from this time (µs) on; None means "from this
    notifier's first start on this store, less GRACE_US", NOTIFY_ALL everything.
    """

    kind: str
    url: str = ""
    min_priority: str = "WARNING"
    rate_per_minute: int = 10
    link_base: str = ""
    timeout: float = 10.0
    since: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_notify(spec: str, **settings: Any) -> NotifierConfig:
    """``webhook:https://x/y`` -> NotifierConfig(kind="webhook", url="https://x/y").

    >>> parse_notify("slack:https://hooks.example/T0").kind
    'slack'
    """
    kind, _, url = spec.partition(":")
    if kind not in NOTIFIERS:
        raise ValueError(f"--notify {spec!r}: expected stdout, webhook:URL or slack:URL")
    if kind != "stdout" and not url.startswith(("http://", "https://")):
        raise ValueError(f"--notify {spec!r}: {kind} needs an http(s) URL, e.g. {kind}:https://host/path")
    min_priority = settings.pop("min_priority", "WARNING").upper()
    if min_priority not in RANK:
        raise ValueError(f"minimum priority {min_priority!r}: expected one of "
                         f"{', '.join(PRIORITIES)}")
    return NotifierConfig(kind=kind, url=url, min_priority=min_priority, **settings)


@dataclass
class Repeats:
    """Alerts of one rule held back by the rate limit within one window."""

    rule: str
    count: int
    first: Alert
    last: Alert
    limit: int

    def summary(self) -> Alert:
        """One alert standing for them all: the latest, with the count in its output.

        >>> a = Alert(time=1795702791292366, rule="r", priority=4, output="x", audit_id="a",
        ...           event=1)
        >>> Repeats("r", 3, a, a, 10).summary().output.split(" (")[0]
        '3 more alerts of this rule from 2026-11-26T14:19:51.292366Z to 2026-11-26T14:19:51.292366Z'
        """
        text = (f"{self.count} more alerts of this rule from {format_micros(self.first.time)} "
                f"to {format_micros(self.last.time)} (rate limit {self.limit} per minute; "
                f"`auditsink alerts --rule {self.rule}` lists them); the latest: "
                f"{self.last.output}")
        return dataclasses.replace(self.last, output=text)


class Notifier:
    """Base class: subclasses implement ``render`` (pure) and ``send``."""

    kind = "base"

    def __init__(self, config: NotifierConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        """The cursor name: one durable position per destination."""
        return f"notify:{self.config.kind}:{self.config.url}"

    def link(self, alert: Alert) -> str:
        """Where the events behind the alert can be read."""
        if not self.config.link_base:
            return ""
        # The auditID is the sender's: quoted, so "../x" or "?" cannot point the link elsewhere.
        return (f"{self.config.link_base.rstrip('/')}/api/v1/events/"
                f"{quote(alert.audit_id, safe='')}")

    def render(self, alert: Alert) -> Any:
        raise NotImplementedError

    def render_repeats(self, repeats: Repeats) -> Any:
        """The notification for alerts the rate limit held back (by default: the summary
        alert rendered like any other)."""
        return self.render(repeats.summary())

    def send(self, payload: Any) -> None:
        raise NotImplementedError


def build(config: NotifierConfig) -> Notifier:
    """Instantiate the notifier registered for ``config.kind``."""
    module_name, class_name = NOTIFIERS[config.kind].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    notifier: Notifier = cls(config)
    return notifier


@dataclass
class _Window:
    start: float
    sent: int = 0
    held: Repeats | None = None


class RateLimiter:
    """At most ``per_minute`` alerts per rule per minute; the rest are counted and handed back
    as one :class:`Repeats` when their minute is over."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.windows: dict[str, _Window] = {}
        self.suppressed = 0

    def allow(self, alert: Alert) -> bool:
        """Whether ``alert`` may be sent now; if not it is held for its window's summary."""
        if self.per_minute <= 0:
            return True
        now = self.clock()
        window = self.windows.get(alert.rule)
        if window is None or (now - window.start >= 60 and window.held is None):
            window = self.windows[alert.rule] = _Window(now)
        # (An expired window still holding alerts keeps counting until due() sends it.)
        if window.sent < self.per_minute and window.held is None:
            window.sent += 1
            return True
        self.suppressed += 1
        if window.held is None:
            window.held = Repeats(alert.rule, 1, alert, alert, self.per_minute)
        else:
            window.held.count += 1
            window.held.last = alert
        return False

    def due(self, flush_all: bool = False) -> list[Repeats]:
        """The summaries whose minute is over (all of them with ``flush_all``)."""
        now = self.clock()
        ready = []
        for rule, window in list(self.windows.items()):
            if window.held is not None and (flush_all or now - window.start >= 60):
                ready.append(window.held)
                window.held = None
                del self.windows[rule]
        return ready

    def oldest_held(self) -> int | None:
        """The log position of the oldest held alert: the cursor must not pass it."""
        held = [w.held.first.id for w in self.windows.values() if w.held is not None]
        return min(held) if held else None

    def reset(self) -> None:
        self.windows.clear()


class Delivery(Consumer):
    """Sends stored alerts to one notifier in order, retrying with backoff until delivered."""

    batch = 100

    def __init__(self, store: Store, notifier: Notifier, poll: float = 0.5,
                 backoff: tuple[float, float] = (1.0, 60.0),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.notifier = notifier
        self.name = notifier.name
        self.poll = poll
        self.backoff = Backoff(*backoff)
        self.limiter = RateLimiter(notifier.config.rate_per_minute, clock)
        self.minimum = RANK[notifier.config.min_priority]
        self.since: int | None = None
        self.delivered = 0
        self.failures = 0
        self.skipped_old = 0
        self.loop = ConsumerLoop(store, self)

    # -- the consumer --------------------------------------------------------------------

    def fetch(self, after: int, limit: int) -> Sequence[Alert]:
        return self.store.alerts(AlertSelector(), limit=limit, after_id=after, newest_first=False)

    def newest(self) -> int:
        latest = self.store.alerts(AlertSelector(), limit=1)
        return latest[0].id if latest else 0

    def resumed(self, position: int) -> None:
        self.limiter.reset()  # held alerts lie after the cursor: they are read again

    def process(self, entries: Sequence[Alert], stop: threading.Event) -> Progress | None:
        since = self._since()
        included = self._included()
        done = self.loop.read_position
        for alert in entries:
            if not self._flush(stop):
                return self._stopped(done)
            if alert.priority <= self.minimum:
                if alert.time < since and not any(a <= alert.event <= b for a, b in included):
                    self._skip_old(alert)
                elif self.limiter.allow(alert):
                    if not self._send(self.notifier.render(alert), stop):
                        return self._stopped(done)
            done = alert.id
        return Progress(self._committable(done))

    def idle(self, stop: threading.Event) -> Progress | None:
        if not self._flush(stop):
            return None
        return Progress(self._committable(self.loop.read_position))

    # -- helpers -------------------------------------------------------------------------

    def _committable(self, done: int) -> int:
        # Never past an alert held for a summary not sent yet: a restart reads it again.
        held = self.limiter.oldest_held()
        return max(self.loop.position, min(done, held - 1)) if held is not None else done

    def _stopped(self, done: int) -> Progress:
        return Progress(self._committable(done), read=done)

    def _flush(self, stop: threading.Event) -> bool:
        for repeats in self.limiter.due():
            if not self._send(self.notifier.render_repeats(repeats), stop):
                return False
        return True

    def _send(self, payload: Any, stop: threading.Event) -> bool:
        def failed(tries: int, exc: Exception, delay: float) -> None:
            self.failures += 1
            log.warning("%s notifier failed (%s); retrying in %.0fs", self.notifier.kind, exc,
                        delay)

        outcome = deliver(lambda: self.notifier.send(payload), stop, self.backoff,
                          on_failure=failed)
        if outcome is None:
            return False
        self.delivered += 1
        return True

    def _since(self) -> int:
        """The oldest event time this notifier notifies (resolved once, kept in the store)."""
        if self.since is None:
            wanted = self.notifier.config.since
            if wanted is not None:
                self.since = wanted
            else:
                key = START_STATE + self.name
                saved = self.store.load_state(key)
                start = int(saved) if saved else int(time.time() * 1_000_000)
                if not saved:
                    self.store.save_state(key, str(start).encode())
                self.since = start - GRACE_US
        return self.since

    def _included(self) -> list[tuple[int, int]]:
        data = self.store.load_state(INCLUDE_STATE)
        return [(int(a), int(b)) for a, b in json.loads(data)] if data else []

    def _skip_old(self, alert: Alert) -> None:
        if not self.skipped_old:
            log.info("%s notifier: not notifying alerts about events before %s (history, e.g. "
                     "imported; `serve --notify-since` or `import --notify` to notify them)",
                     self.notifier.kind, format_micros(self.since or 0))
        self.skipped_old += 1

    # -- running -------------------------------------------------------------------------

    def step(self, stop: threading.Event) -> int:
        """Deliver the next page of alerts; returns how many alerts were read."""
        return self.loop.step(stop)

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set, from one replica at a time (consumer.py)."""
        self.loop.run(stop)


def include_for_notifiers(store: Store, first: int, last: int, keep: int = 200) -> None:
    """Mark events at positions ``first..last`` as to be notified however old they are
    (``import --notify``); the newest ``keep`` ranges are kept."""
    if last < first:
        return
    data = store.load_state(INCLUDE_STATE)
    ranges = json.loads(data) if data else []
    ranges.append([first, last])
    store.save_state(INCLUDE_STATE, json.dumps(ranges[-keep:]).encode())
