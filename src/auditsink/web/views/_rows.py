"""One event or alert as a table row, with both sides of its identity and its cluster."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from auditsink.priority import PRIORITIES
from auditsink.store.base import Alert, Store, StoredEvent, format_key
from auditsink.timeutil import format_micros, parse_timestamp
from auditsink.web import urls

DECISION = "authorization.k8s.io/decision"


def carries_cluster(store: Store) -> bool:
    """Whether links must name their cluster: when the store holds several. A store of one
    cluster has nothing to tell apart, and its links stay short."""
    return len(store.clusters_seen()) > 1


def event_row(stored: StoredEvent, carry: bool = True) -> dict[str, Any]:
    """One stored event as the explorer's row (also the JSON twin's)."""
    return row_of(json.loads(stored.raw), stored.id, stored.cluster, carry)


def row_of(event: dict[str, Any], ident: int, cluster: str, carry: bool = True) -> dict[str, Any]:
    """The fields every event table shows, with links to the pages about them (in the
    event's cluster when ``carry``).

    ``user`` is who made the request (the authenticated user), ``impersonated`` who it was
    made as (``kubectl --as``): a row shows both, "admin as mallory".
    """
    in_cluster = cluster if carry else None
    ref = event.get("objectRef") or {}
    user = (event.get("user") or {}).get("username", "")
    impersonated = (event.get("impersonatedUser") or {}).get("username", "")
    resource = ref.get("resource", "")
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    name = ref.get("name", "")
    namespace = ref.get("namespace", "")
    status = event.get("responseStatus") or {}
    audit_id = event.get("auditID", "")
    when = event.get("stageTimestamp", "")
    time_us = parse_timestamp(when)
    return {
        "id": ident,
        "key": format_key((time_us, ident)),
        "cluster": cluster,
        "time": when,
        "time_us": time_us,
        "auditID": audit_id,
        "stage": event.get("stage", ""),
        "level": event.get("level", ""),
        "user": user,
        "impersonated": impersonated,
        "verb": event.get("verb", ""),
        "resource": resource,
        "namespace": namespace,
        "name": name,
        "uri": event.get("requestURI", ""),
        "code": status.get("code", 0),
        "decision": (event.get("annotations") or {}).get(DECISION, ""),
        "request_url": urls.request_url(audit_id, in_cluster),
        "user_url": urls.user_url(user, in_cluster) if user else "",
        "impersonated_url": urls.user_url(impersonated, in_cluster) if impersonated else "",
        "object_url": urls.object_url(ref.get("resource", ""), namespace, name, in_cluster)
        if name and ref.get("resource") else "",
    }


def is_request(row: dict[str, Any]) -> bool:
    """Whether a row is the one event that stands for its request (the store's
    ``requests_only``): its completion or panic, or a failed ResponseStarted."""
    return row["stage"] in ("ResponseComplete", "Panic") or (
        row["stage"] == "ResponseStarted" and row["code"] >= 400)


def alert_row(alert: Alert, carry: bool = True) -> dict[str, Any]:
    """An alert as every alert table shows it, linked to the request behind it."""
    doc: dict[str, Any] = alert.to_dict()
    doc["key"] = format_key((alert.time, alert.id))
    doc["request_url"] = urls.request_url(alert.audit_id, alert.cluster if carry else None)
    return doc


def group_row(group: dict[str, Any], link: Callable[..., str], carry: bool = True
              ) -> dict[str, Any]:
    """One rule's alerts in one cluster (``store.alert_groups``), linked to their list."""
    rank = int(str(group["priority"]))
    cluster = str(group["cluster"])
    return {"rule": group["rule"], "cluster": cluster, "priority": PRIORITIES[rank],
            "count": group["count"], "first": format_micros(int(str(group["first"]))),
            "last": format_micros(int(str(group["last"]))),
            "url": link(rule=str(group["rule"]), cluster=urls.spell(cluster) if carry else None)}
