"""Object history: every recorded change of one object, who made it, and what changed."""

from __future__ import annotations

import difflib
import json
from typing import Any

from auditsink.query.params import first, key_from
from auditsink.selector import Selector
from auditsink.store.base import Store, StoredEvent, TimeKey, format_key
from auditsink.web import urls
from auditsink.web.urls import CLUSTER_SCOPED
from auditsink.web.views._common import Query, cluster_choice, clusters_of, int_param
from auditsink.web.views._rows import carries_cluster, event_row

CHANGES = ["create", "update", "patch", "delete", "deletecollection"]
# A change is recorded once it completed (or panicked); RequestReceived would repeat it.
DONE = ["ResponseComplete", "Panic"]
PAGE = 100
MAX_CHANGES = 1000
# How many older changes to read to find the version the page's first change is diffed to.
BASE_LOOKBACK = 20
MAX_CLUSTERS = 50
# Rewritten by the API server on every write: noise in a diff of what a person changed.
NOISE = ("managedFields",)


def view(store: Store, query: Query, resource: str, namespace: str, name: str) -> dict[str, Any]:
    """Changes of ``resource`` ``namespace``/``name``, newest first (``order=oldest`` for
    oldest first), each diffed to the version before it **in the same cluster**.

    A page holds ``limit`` changes; ``before=``/``after=`` (time-order cursors) page to older
    and newer ones, so an object changed thousands of times still answers quickly.
    """
    ns = "" if namespace in (CLUSTER_SCOPED, "_") else namespace
    clusters = clusters_of(query)
    order = first(query, "order", "newest")
    if order not in ("newest", "oldest"):
        raise ValueError(f"order={order!r}: expected newest or oldest")
    limit = int_param(query, "limit", PAGE, MAX_CHANGES)
    before, after = key_from(query, "before"), key_from(query, "after")
    if before is not None and after is not None:
        raise ValueError("give before= or after=, not both")
    # Subresources count (pods/status, pods/exec): they change or act on the same object.
    # deletecollection names no object but deletes this one too (same namespace, resource).
    selectors = [
        Selector(resources=[f"{resource}/*"], namespaces=[ns], names=[name], verbs=CHANGES,
                 stages=DONE, clusters=clusters),
        Selector(resources=[resource], namespaces=[ns], names=[""], verbs=["deletecollection"],
                 stages=DONE, clusters=clusters),
    ]
    if after is not None or (before is None and order == "oldest"):
        found = _read(store, selectors, limit + 1, after=after, oldest_first=True)
        newer, older = len(found) > limit, after is not None
    else:
        found = _read(store, selectors, limit + 1, before=before)
        older, newer = len(found) > limit, before is not None
    shown = sorted(found[:limit], key=lambda s: s.key)  # oldest first: the order of diffs
    previous = _bases(store, selectors, shown)
    carry = carries_cluster(store)
    changes = []
    for stored in shown:
        event = json.loads(stored.raw)
        row = event_row(stored, carry)
        body = _version(event)
        row["user_agent"] = event.get("userAgent", "")
        row["reason"] = (event.get("responseStatus") or {}).get("reason", "")
        row["recorded"] = body is not None
        row["diff"] = None
        if body is not None:
            row["diff"] = _diff(previous.get(stored.cluster) or "", body, row["time"])
            previous[stored.cluster] = body
        changes.append(row)
    if order == "newest":
        changes.reverse()
    # Which clusters hold this object: one indexed look-up per cluster, and none at all in a
    # store of one cluster.
    in_clusters = [c for c in store.clusters_seen()[:MAX_CLUSTERS] if carry and any(
        store.page(sel.replace(clusters=[c]), 1) for sel in selectors)]
    state = {"order": order if order != "newest" else None,
             "limit": first(query, "limit") or None}

    chosen = clusters[0] if len(clusters) == 1 else None

    def link(cluster: str | None = chosen, **params: str | None) -> str:
        return urls.object_url(resource, ns, name, cluster, **{**state, **params})

    oldest, newest = (shown[0].key, shown[-1].key) if shown else (None, None)
    return {
        "title": f"{resource} {ns + '/' if ns else ''}{name}",
        **cluster_choice(store, clusters),
        "object": {"resource": resource, "namespace": ns, "name": name},
        "order": order,
        "changes": changes,
        "clusters_of_object": [{"cluster": c, "url": link(c)} for c in in_clusters],
        "older_url": link(before=format_key(oldest)) if older and oldest else None,
        "newer_url": link(after=format_key(newest)) if newer and newest else None,
        "latest_url": link() if before or after else None,
        "order_url": link(order="oldest" if order == "newest" else None),
        "events_url": urls.events_url(
            [("resource", f"{resource}/*"), ("namespace", urls.spell(ns)), ("name", name)]
            + [("cluster", urls.spell(c)) for c in clusters], range="all"),
    }


def _read(store: Store, selectors: list[Selector], limit: int, *,
          before: TimeKey | None = None, after: TimeKey | None = None,
          oldest_first: bool = False) -> list[StoredEvent]:
    """The first ``limit`` changes of all ``selectors`` together, in the order asked."""
    found: list[StoredEvent] = []
    for selector in selectors:
        found += store.page(selector, limit, before=before, after=after,
                            oldest_first=oldest_first)
    found.sort(key=lambda s: s.key, reverse=not oldest_first)
    return found[:limit]


def _bases(store: Store, selectors: list[Selector], shown: list[StoredEvent]) -> dict[str, str]:
    """For each cluster on the page, its version just before the page's first change: the
    first change shown of that cluster is diffed to it (never to another cluster's)."""
    bases: dict[str, str] = {}
    if not shown:
        return bases
    for cluster in sorted({s.cluster for s in shown}):
        own = [sel.replace(clusters=[cluster]) for sel in selectors]
        older = _read(store, own, BASE_LOOKBACK, before=shown[0].key)
        body = next((b for b in (_version(json.loads(s.raw)) for s in older) if b is not None),
                    None)
        if body is not None:
            bases[cluster] = body
    return bases


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
