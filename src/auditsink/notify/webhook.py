"""Alerts POSTed as JSON to any HTTP endpoint."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from auditsink.notify.base import DeliveryError, Notifier, Repeats
from auditsink.rules.priority import PRIORITIES
from auditsink.store.base import Alert
from auditsink.timeutil import format_micros


def post_json(url: str, payload: Any, timeout: float) -> None:
    """POST ``payload`` as JSON; any non-2xx answer or network error is a DeliveryError."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "auditsink"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (operator's URL)
            response.read()
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} from {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"{url}: {getattr(exc, 'reason', exc)}") from None


class WebhookNotifier(Notifier):
    """``--notify webhook:URL``: the alert as a JSON object."""

    kind = "webhook"

    def render(self, alert: Alert) -> dict[str, Any]:
        """The JSON payload (falcosidekick-like field names)."""
        return {
            "rule": alert.rule,
            "priority": PRIORITIES[alert.priority],
            "output": alert.output,
            "time": format_micros(alert.time),
            "auditID": alert.audit_id,
            "cluster": alert.cluster,
            "tags": alert.tags,
            "output_fields": alert.fields,
            "link": self.link(alert),
            "source": "k8s_audit",
        }

    def send(self, payload: dict[str, Any]) -> None:
        post_json(self.config.url, payload, self.config.timeout)

    def render_repeats(self, repeats: Repeats) -> dict[str, Any]:
        """The summary alert, plus how many alerts it stands for and their span."""
        payload = self.render(repeats.summary())
        payload["repeats"] = {
            "count": repeats.count, "first_auditID": repeats.first.audit_id,
            "last_auditID": repeats.last.audit_id, "from": format_micros(repeats.first.time),
            "to": format_micros(repeats.last.time), "rate_per_minute": repeats.limit,
        }
        return payload
