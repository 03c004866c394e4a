"""Alerts as log lines on stderr (stdout carries the events)."""

from __future__ import annotations

import logging

from auditsink.notify.base import Notifier
from auditsink.rules.priority import PRIORITIES
from auditsink.store.base import Alert
from auditsink.timeutil import format_micros

log = logging.getLogger("auditsink.alert")


class StdoutNotifier(Notifier):
    """``--notify stdout``: one log line per alert."""

    kind = "stdout"

    def render(self, alert: Alert) -> str:
        """``time PRIORITY rule: output (auditID)``."""
        return (f"{format_micros(alert.time)} {PRIORITIES[alert.priority]} {alert.rule}: "
                f"{alert.output} (auditID {alert.audit_id})")

    def send(self, payload: str) -> None:
        log.warning("%s", payload)
