"""Alerts to a Slack (or Slack-compatible: Mattermost, Rocket.Chat) incoming webhook.

Everything in an alert but its priority comes from an event, so from whoever made the API
request: a user name ``<!channel>`` would page everyone, ``<https://evil|events>`` would be a
disguised link. Slack's mrkdwn reads ``<...>`` as links and mentions and asks senders to escape
``&``, ``<`` and ``>`` (https://api.slack.com/reference/surfaces/formatting#escaping); the one
link we send is built from the configured base and the percent-quoted auditID.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from auditsink.notify.base import Notifier
from auditsink.notify.webhook import post_json
from auditsink.rules.priority import PRIORITIES
from auditsink.store.base import Alert
from auditsink.textsafe import printable
from auditsink.timeutil import format_micros

_COLORS = {0: "#7f0000", 1: "#b30000", 2: "#e01e5a", 3: "#e01e5a", 4: "#ecb22e", 5: "#2eb67d",
           6: "#36c5f0", 7: "#cccccc"}


def escape(text: str) -> str:
    """Text for Slack mrkdwn: ``&``, ``<`` and ``>`` as entities, control characters escaped.

    >>> escape("<!channel> & <https://evil|events>")
    '&lt;!channel&gt; &amp; &lt;https://evil|events&gt;'
    """
    return printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackNotifier(Notifier):
    """``--notify slack:URL``: one message with an attachment per alert."""

    kind = "slack"

    def render(self, alert: Alert) -> dict[str, Any]:
        """The incoming-webhook payload."""
        fields = [
            {"title": "rule", "value": escape(alert.rule), "short": True},
            {"title": "priority", "value": PRIORITIES[alert.priority], "short": True},
            {"title": "time", "value": format_micros(alert.time), "short": True},
            {"title": "auditID", "value": escape(alert.audit_id), "short": True},
        ]
        if alert.cluster:
            fields.append({"title": "cluster", "value": escape(alert.cluster), "short": True})
        text = f"*{PRIORITIES[alert.priority]}* {escape(alert.rule)}: {escape(alert.output)}"
        if self.config.link_base:
            # Quoted, so an auditID holding "|", ">" or "/" can neither end the link nor
            # point it elsewhere (the Audit-ID header is the client's choice).
            base = self.config.link_base.rstrip("/")
            link = f"{base}/api/v1/events/{quote(alert.audit_id, safe='')}"
            text += f" (<{escape(link)}|events>)"
        return {
            "text": text,
            "attachments": [{"color": _COLORS[alert.priority], "fallback": escape(alert.output),
                             "fields": fields}],
        }

    def send(self, payload: dict[str, Any]) -> None:
        post_json(self.config.url, payload, self.config.timeout)
