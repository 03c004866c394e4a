"""Alerts to a Slack (or Slack-compatible: Mattermost, Rocket.Chat) incoming webhook."""

from __future__ import annotations

from typing import Any

from auditsink.notify.base import Notifier
from auditsink.notify.webhook import post_json
from auditsink.rules.priority import PRIORITIES
from auditsink.store.base import Alert
from auditsink.timeutil import format_micros

_COLORS = {0: "#7f0000", 1: "#b30000", 2: "#e01e5a", 3: "#e01e5a", 4: "#ecb22e", 5: "#2eb67d", 6: "#36c5f0", 7: "#cccccc"}


class SlackNotifier(Notifier):
    """``--notify slack:URL``: one message with an attachment per alert."""

    kind = "slack"

    def render(self, alert: Alert) -> dict[str, Any]:
        """The incoming-webhook payload."""
        fields = [
            {"title": "rule", "value": alert.rule, "short": True},
            {"title": "priority", "value": PRIORITIES[alert.priority], "short": True},
            {"title": "time", "value": format_micros(alert.time), "short": True},
            {"title": "auditID", "value": alert.audit_id, "short": True},
        ]
        if alert.cluster:
            fields.append({"title": "cluster", "value": alert.cluster, "short": True})
        link = self.link(alert)
        text = f"*{PRIORITIES[alert.priority]}* {alert.rule}: {alert.output}"
        if link:
            text += f" (<{link}|events>)"
        return {
            "text": text,
            "attachments": [{"color": _COLORS[alert.priority], "fallback": alert.output, "fields": fields}],
        }

    def send(self, payload: dict[str, Any]) -> None:
        post_json(self.config.url, payload, self.config.timeout)
