"""Request view: every stage of one auditID, who made it, and what was sent and answered."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from auditsink.selector import Selector
from auditsink.store.base import AlertSelector, Store
from auditsink.web import urls
from auditsink.web.views._common import NotFound, Query, cluster_choice, clusters_of
from auditsink.web.views._rows import alert_row, carries_cluster, row_of

MAX_STAGES = 100
# Secrets are redacted in the store, but some other objects carry credentials in clear text
# (a TokenReview's spec.token, a kubeconfig's password): never show values under these keys.
HIDDEN_KEYS = frozenset({"token", "password", "authorization", "bearertoken", "client-key-data",
                         "refresh-token", "access-token", "id-token"})
HIDDEN = "<hidden by auditsink>"


def scrub(value: Any) -> Any:
    """A copy of a decoded object with credential-like values hidden.

    >>> scrub({"spec": {"token": "eyJ..."}, "status": {}})
    {'spec': {'token': '<hidden by auditsink>'}, 'status': {}}
    """
    if isinstance(value, dict):
        return {k: HIDDEN if k.lower() in HIDDEN_KEYS and v not in ("", None) else scrub(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def pretty(value: Any) -> str | None:
    """Indented JSON of a request/response object, keys in their original order."""
    if value is None:
        return None
    return json.dumps(scrub(value), indent=2, ensure_ascii=False)


def view(store: Store, query: Query, audit_id: str) -> dict[str, Any]:
    """The stages of one request in one cluster, oldest first, with its objects and alerts.

    An auditID is the client's to choose (its ``Audit-ID`` header), so two clusters may
    share one: without ``cluster=`` and with several, the page lists them to choose from
    rather than mixing their stages.
    """
    chosen = clusters_of(query)
    stored = store.page(Selector(audit_ids=[audit_id], clusters=chosen), limit=MAX_STAGES,
                        oldest_first=True)
    if not stored:
        where = f" in cluster {chosen[0]!r}" if len(chosen) == 1 else ""
        raise NotFound(f"no events with auditID {audit_id!r}{where}")
    seen = sorted({s.cluster for s in stored})
    if len(seen) > 1:
        return {"title": f"Request {audit_id}", "auditID": audit_id,
                **cluster_choice(store, chosen), "choose": [
                    {"cluster": c, "url": urls.request_url(audit_id, c),
                     "stages": sum(1 for s in stored if s.cluster == c)} for c in seen]}
    cluster = seen[0]
    events = [json.loads(s.raw) for s in stored]
    carry = carries_cluster(store)
    stages = [row_of(e, s.id, s.cluster, carry) for e, s in zip(events, stored)]
    last = events[-1]
    # The last stage is the most complete (it has the response); objects may sit on any stage.
    newest_first = events[::-1]
    request_object = next((e["requestObject"] for e in newest_first if "requestObject" in e), None)
    response_object = next((e["responseObject"] for e in newest_first if "responseObject" in e),
                           None)
    status: dict[str, Any] = next(
        (e["responseStatus"] for e in newest_first if e.get("responseStatus")), {})
    user = last.get("user") or {}
    impersonated = last.get("impersonatedUser")
    ref = last.get("objectRef") or {}
    annotations: dict[str, str] = {}
    for event in events:
        annotations.update(event.get("annotations") or {})
    summary = stages[-1]
    alerts = store.alert_page(AlertSelector(audit_ids=[audit_id], clusters=[cluster]),
                              limit=100)
    return {
        "title": f"Request {audit_id}",
        **cluster_choice(store, chosen),
        "auditID": audit_id,
        "choose": None,
        "request_cluster": cluster,
        "verb": last.get("verb", ""),
        "uri": last.get("requestURI", ""),
        "level": last.get("level", ""),
        "received": last.get("requestReceivedTimestamp", ""),
        "completed": last.get("stageTimestamp", ""),
        "user": {"username": user.get("username", ""), "uid": user.get("uid", ""),
                 "groups": user.get("groups", []),
                 "extra": scrub(user.get("extra", {}))},
        "impersonated_user": scrub(impersonated) if impersonated else None,
        "source_ips": last.get("sourceIPs", []),
        "user_agent": last.get("userAgent", ""),
        "object_ref": {k: ref.get(k, "") for k in
                       ("resource", "subresource", "namespace", "name", "apiGroup", "apiVersion")}
        if ref else None,
        "status": {"code": status.get("code", 0), "status": status.get("status", ""),
                   "reason": status.get("reason", ""), "message": status.get("message", "")},
        "decision": annotations.get("authorization.k8s.io/decision", ""),
        "reason": annotations.get("authorization.k8s.io/reason", ""),
        "annotations": annotations,
        "stages": stages,
        "request_object": pretty(request_object),
        "response_object": pretty(response_object),
        "alerts": [alert_row(a, carry) for a in alerts],
        "links": {
            "object": summary["object_url"] or None,
            "user": summary["user_url"] or None,
            "impersonated": urls.user_url(impersonated["username"], cluster if carry else None)
            if impersonated and impersonated.get("username") else None,
            "api": "/api/v1/events/" + quote(audit_id, safe=""),
        },
    }
