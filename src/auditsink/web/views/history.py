"""Object history: every recorded change of one object, who made it, and what changed."""

from __future__ import annotations

import difflib
import json
from typing import Any

from auditsink.store.base import Selector, Store
from auditsink.web import urls
from auditsink.web.urls import CLUSTER_SCOPED
from auditsink.web.views._common import Query, event_row, first, int_param

CHANGES = ["create", "update", "patch", "delete", "deletecollection"]
# A change is recorded once it completed (or panicked); RequestReceived would repeat it.
DONE = ["ResponseComplete", "Panic"]
PAGE = 100
MAX_CHANGES = 1000
# How many older changes to read to find the version the page's first change is diffed to.
BASE_LOOKBACK = 20
# Rewritten by the API server on every write: noise in a diff of what a person changed.
NOISE = ("managedFields",)


def view(store: Store, query: Query, resource: str, namespace: str, name: str) -> dict[str, Any]:
    """Changes of ``resource`` ``namespace``/``name`` in time order, each diffed to the last.

    A page holds the newest ``limit`` changes (before the ``before=`` cursor); older ones are
    a link away, so an object changed thousands of times still answers quickly.
    """
    ns = "" if namespace in (CLUSTER_SCOPED, "_") else namespace
    limit = int_param(query, "limit", PAGE, MAX_CHANGES) or PAGE
    before = int_param(query, "before", 0, 2**62) or None
    wanted = limit + BASE_LOOKBACK
    # Subresources count (pods/status, pods/exec): they change or act on the same object.
    found = store.query(Selector(resources=[f"{resource}/*"], namespaces=[ns], names=[name],
                                 verbs=CHANGES, stages=DONE), limit=wanted, before_id=before)
    # deletecollection names no object but deletes this one too (same namespace, same resource).
    found += store.query(Selector(resources=[resource], namespaces=[ns], names=[""],
                                  verbs=["deletecollection"], stages=DONE),
                         limit=wanted, before_id=before)
    found.sort(key=lambda s: s.id, reverse=True)
    shown, older = found[:limit], found[limit:wanted]
    # The version before this page, from the few changes just older than it.
    previous: str | None = next(
        (body for body in (_version(json.loads(s.raw)) for s in older) if body is not None), None)
    changes = []
    for stored in reversed(shown):
        event = json.loads(stored.raw)
        row = event_row(stored)
        body = _version(event)
        row["user_agent"] = event.get("userAgent", "")
        row["impersonated"] = (event.get("impersonatedUser") or {}).get("username", "")
        row["reason"] = (event.get("responseStatus") or {}).get("reason", "")
        row["recorded"] = body is not None
        row["diff"] = None
        if body is not None:
            row["diff"] = _diff(previous or "", body, row["time"])
            previous = body
        changes.append(row)
    here = urls.object_url(resource, ns, name)
    return {
        "title": f"{resource} {ns + '/' if ns else ''}{name}",
        "object": {"resource": resource, "namespace": ns, "name": name},
        "changes": changes,
        "next": str(shown[-1].id) if older else None,
        "earlier_url": here + urls.query_string({"before": str(shown[-1].id),
                                                 "limit": first(query, "limit")})
        if older else None,
        "latest_url": here if before else None,
        "events_url": urls.events_url(resource=f"{resource}/*", namespace=ns or None, name=name),
    }


def _version(event: dict[str, Any]) -> str | None:
    """The object as this change left it, pretty-printed; None when the body was not recorded.

    A successful answer's ``responseObject`` is the stored object; a create or update also
    sent the whole object as ``requestObject``; a patch only its patch, a delete its options.
    """
    code = (event.get("responseStatus") or {}).get("code", 0)
    if code >= 400 or (event.get("objectRef") or {}).get("subresource"):
        return None  # nothing changed, or a subresource answer that is not the object
    obj = event.get("responseObject")
    if not _is_object(obj) and event.get("verb") in ("create", "update"):
        obj = event.get("requestObject")
    if not isinstance(obj, dict) or not _is_object(obj):
        return None
    return json.dumps(_strip(obj), indent=2, sort_keys=True, ensure_ascii=False)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) and value.get("kind") not in (None, "Status", "DeleteOptions")


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in NOISE}
    return {**obj, "metadata": meta}


def _diff(before: str, after: str, when: str) -> list[str]:
    """Unified diff lines from the previous recorded version to this one."""
    return list(difflib.unified_diff(before.splitlines(), after.splitlines(),
                                     "previous", when, n=3, lineterm=""))
