"""What every notifier shares: the registry, the priority filter, rate limiting and delivery.

Each notifier only renders a payload (a pure function, tested by exact equality) and sends it.
Delivery runs in its own thread from the alerts stored in the store, after a durable cursor
per notifier: a destination that is down delays its alerts, retried with backoff, and never
blocks ingest or the rules; once it recovers every alert is delivered (at least once).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from auditsink.consumer import Follower
from auditsink.rules.priority import PRIORITIES, RANK
from auditsink.store.base import Alert, AlertSelector, Store

log = logging.getLogger("auditsink.notify")

NOTIFIERS = {
    "stdout": "auditsink.notify.stdout:StdoutNotifier",
    "webhook": "auditsink.notify.webhook:WebhookNotifier",
    "slack": "auditsink.notify.slack:SlackNotifier",
}


class DeliveryError(Exception):
    """The destination did not take the payload; it will be retried."""


@dataclass
class NotifierConfig:
    """``--notify KIND[:URL]`` plus the shared settings."""

    kind: str
    url: str = ""
    min_priority: str = "WARNING"
    rate_per_minute: int = 10
    link_base: str = ""
    timeout: float = 10.0
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
        raise ValueError(f"minimum priority {min_priority!r}: expected one of {', '.join(PRIORITIES)}")
    return NotifierConfig(kind=kind, url=url, min_priority=min_priority, **settings)


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
        return f"{self.config.link_base.rstrip('/')}/api/v1/events/{alert.audit_id}"

    def render(self, alert: Alert) -> Any:
        raise NotImplementedError

    def send(self, payload: Any) -> None:
        raise NotImplementedError


def build(config: NotifierConfig) -> Notifier:
    """Instantiate the notifier registered for ``config.kind``."""
    module_name, class_name = NOTIFIERS[config.kind].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    notifier: Notifier = cls(config)
    return notifier


class RateLimiter:
    """At most ``per_minute`` alerts per rule per minute; the rest are counted, not sent."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.windows: dict[str, tuple[float, int]] = {}
        self.suppressed = 0

    def allow(self, rule: str) -> bool:
        """Whether one more alert of ``rule`` may be sent now."""
        if self.per_minute <= 0:
            return True
        now = self.clock()
        start, count = self.windows.get(rule, (now, 0))
        if now - start >= 60:
            start, count = now, 0
        if count >= self.per_minute:
            self.suppressed += 1
            return False
        self.windows[rule] = (start, count + 1)
        return True


class Delivery:
    """Sends stored alerts to one notifier in order, retrying with backoff until delivered."""

    def __init__(self, store: Store, notifier: Notifier, poll: float = 0.5,
                 backoff: tuple[float, float] = (1.0, 60.0)) -> None:
        self.store = store
        self.notifier = notifier
        self.poll = poll
        self.backoff = backoff
        self.limiter = RateLimiter(notifier.config.rate_per_minute)
        self.position = store.get_cursor(notifier.name)
        self.minimum = RANK[notifier.config.min_priority]
        self.delivered = 0
        self.failures = 0

    def step(self, stop: threading.Event) -> int:
        """Deliver the next page of alerts; returns how many alerts were read."""
        page = self.store.alerts(AlertSelector(), limit=100, after_id=self.position, newest_first=False)
        for alert in page:
            if alert.priority <= self.minimum and self.limiter.allow(alert.rule):
                payload = self.notifier.render(alert)
                delay = self.backoff[0]
                while True:
                    try:
                        self.notifier.send(payload)
                        self.delivered += 1
                        break
                    except Exception as exc:  # any failure: keep the alert, retry later
                        self.failures += 1
                        log.warning("%s notifier failed (%s); retrying in %.0fs", self.notifier.kind,
                                    exc, delay)
                        if stop.wait(delay):
                            return 0  # stopping: the cursor stays before this alert
                        delay = min(delay * 2, self.backoff[1])
            self.store.commit_consumed(self.notifier.name, alert.id, [], expected=self.position)
            self.position = alert.id
        return len(page)

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set, from one replica at a time (consumer.py)."""
        Follower(self.store, self.notifier.name, lambda: self.step(stop), self._resume,
                 self.poll).run(stop)

    def _resume(self) -> None:
        self.position = self.store.get_cursor(self.notifier.name)
