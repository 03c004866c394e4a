"""Alerts as lines on stdout, where ``serve`` also prints events (``--format none`` for alerts
alone): ``--notify stdout`` means stdout, so ``serve --notify stdout > alerts.log`` works."""

from __future__ import annotations

import sys
from typing import IO, Any

from auditsink.notify.base import Notifier
from auditsink.rules.priority import PRIORITIES
from auditsink.store.base import Alert
from auditsink.timeutil import format_micros


class StdoutNotifier(Notifier):
    """``--notify stdout``: one line per alert."""

    kind = "stdout"
    #: where the lines go; the events' printer writes whole lines to the same buffer, and a
    #: buffered writer takes one write at a time, so the two never split each other's lines
    stream: IO[Any] | None = None

    def render(self, alert: Alert) -> str:
        """``time PRIORITY rule: output (auditID)``."""
        return (f"{format_micros(alert.time)} {PRIORITIES[alert.priority]} {alert.rule}: "
                f"{alert.output} (auditID {alert.audit_id})")

    def send(self, payload: str) -> None:
        stream = self.stream if self.stream is not None else sys.stdout.buffer
        stream.write(payload.encode("utf-8", "replace") + b"\n")
        stream.flush()
