"""The read API (``/api/v1/...`` on ``--api-listen``): events, requests, counts, alerts, as JSON.

Query parameters are the selector's fields (selector.FIELDS: ``user=alice&code=4xx``; repeat
one for OR, ``namespace!=kube-system`` to exclude, ``q=`` for query-bar text). Pages are in
time order with a ``next`` cursor; ``/api/v1/events/follow`` is the log-order feed that never
skips or repeats an event however batches arrive. readlistener.py mounts this beside the web
UI behind one authentication.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote

from auditsink.asgi import Receive, Scope, Send, query_of, send_json, send_stream
from auditsink.query.export import FORMATS, export
from auditsink.query.params import (
    alert_selector_from_query,
    first,
    key_from,
    limit_from,
    position_from,
)
from auditsink.selector import FIELDS, Selector, SelectorError, from_query
from auditsink.store.base import Store, StoredEvent, format_key
from auditsink.timeutil import format_micros

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_BUCKETS = 2000
PREFIX = "/api/v1/"


def _doc(stored: StoredEvent) -> dict[str, Any]:
    import json

    return {"id": stored.id, "cluster": stored.cluster, "event": json.loads(stored.raw)}


def _flag(query: dict[str, list[str]], name: str) -> bool:
    value = first(query, name).lower()
    if value not in ("", "0", "1", "true", "false"):
        raise ValueError(f"{name}={value[:20]!r}: expected 1 or 0")
    return value in ("1", "true")


def _order(query: dict[str, list[str]]) -> bool:
    """``order=oldest`` (True) or ``newest`` (the default)."""
    order = first(query, "order", "newest")
    if order not in ("newest", "oldest"):
        raise ValueError(f"order={order[:20]!r}: expected newest or oldest")
    return order == "oldest"


class ReadAPI:
    """The JSON endpoints over a store (authentication is the listener's)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def handles(path: str) -> bool:
        """Whether ``path`` is one of this API's."""
        return path.startswith(PREFIX) or path in ("/openapi.json", "/healthz", "/readyz")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        query = query_of(scope)
        try:
            if path == "/api/v1/events/export":
                selector = from_query(query)
                fmt = first(query, "format", "jsonl")
                if fmt not in FORMATS:
                    raise ValueError(f"format={fmt[:20]!r}: expected one of {', '.join(FORMATS)}")
                chunks = export(self.store, selector, fmt, oldest_first=first(
                    query, "order", "oldest") != "newest", requests_only=_flag(query, "requests"))
                filename = f"auditsink-events.{fmt}".encode()
                await send_stream(send, 200, FORMATS[fmt], chunks, [
                    (b"content-disposition", b'attachment; filename="' + filename + b'"'),
                    (b"cache-control", b"no-store")])
                return
            status, payload = await asyncio.to_thread(self.route, path, query)
        except (SelectorError, ValueError) as exc:
            status, payload = 400, {"error": str(exc)[:500]}
        await send_json(send, status, payload, [(b"cache-control", b"no-store")])

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        """The status and JSON answer of one GET."""
        if path == "/api/v1/events":
            return 200, self.events(query)
        if path == "/api/v1/events/follow":
            return 200, self.follow(query)
        if path.startswith("/api/v1/events/"):
            audit_id = unquote(path[len("/api/v1/events/"):])
            found = self.store.page(Selector(audit_ids=[audit_id]), limit=MAX_LIMIT,
                                    oldest_first=True)
            if not found:
                return 404, {"error": f"no events with auditID {audit_id[:200]!r}"}
            return 200, {"events": [_doc(e) for e in found], "next": None}
        if path == "/api/v1/counts":
            return 200, self.counts(query)
        if path == "/api/v1/alerts":
            return 200, self.alerts(query)
        if path == "/api/v1/alerts/groups":
            groups = self.store.alert_groups(alert_selector_from_query(query),
                                             limit=limit_from(query, 100, MAX_LIMIT))
            return 200, {"groups": [_group(g) for g in groups]}
        if path == "/api/v1/stats":
            return 200, self.store.stats(from_query(query))
        if path == "/api/v1/clusters":
            return 200, {"clusters": self.store.clusters_seen()}
        if path in ("/openapi.json", "/api/v1/openapi.json"):
            return 200, openapi()
        if path in ("/healthz", "/readyz"):
            return 200, {"status": "ok"}
        return 404, {"error": f"no such endpoint {path[:200]}", "see": "/openapi.json"}

    def events(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """One page in time order (newest first unless ``order=oldest``) and the cursor of the
        next: pass it back as ``before`` (newest first) or ``after`` (oldest first)."""
        selector = from_query(query)
        limit = limit_from(query, DEFAULT_LIMIT, MAX_LIMIT)
        oldest = _order(query)
        before, after = key_from(query, "before"), key_from(query, "after")
        if (before and oldest) or (after and not oldest):
            raise ValueError("before= goes with order=newest, after= with order=oldest")
        found = self.store.page(selector, limit + 1, before=before, after=after,
                                oldest_first=oldest, requests_only=_flag(query, "requests"))
        page = found[:limit]
        answer: dict[str, Any] = {
            "events": [_doc(e) for e in page],
            "next": format_key(page[-1].key) if len(found) > limit else None,
        }
        if _flag(query, "total"):
            answer["total"] = self.store.count(selector, _flag(query, "requests"))
        return answer

    def follow(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """Events committed after log position ``after``, in commit order: ask again with the
        answer's ``position`` (at once while ``more``) to get every event exactly once.
        Without ``after``, the answer is empty and ``position`` is the end of the log now."""
        selector = from_query(query)
        after = position_from(query, "after")
        if after is None:
            return {"events": [], "position": self.store.last_id(), "more": False}
        limit = limit_from(query, MAX_LIMIT, MAX_LIMIT)
        # The end of the log first: positions become visible in order, so once fewer than
        # ``limit`` matches follow ``after``, none is missing up to ``end`` and the next poll
        # may start there (past the events that did not match).
        end = self.store.last_id()
        found = self.store.query(selector, limit=limit, after_id=after, newest_first=False)
        more = len(found) == limit
        position = found[-1].id if more else max(end, found[-1].id if found else after, after)
        return {"events": [_doc(e) for e in found], "position": position, "more": more}

    def counts(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """Matching events per time bucket (``bucket`` seconds), for histograms."""
        selector = from_query(query)
        text = first(query, "bucket", "60")
        if not text.isdigit() or not 1 <= int(text) <= 86400 * 7:
            raise ValueError(f"bucket={text[:20]!r}: expected seconds from 1 to 604800")
        bucket = int(text) * 1_000_000
        if selector.since is not None and selector.until is not None and (
                selector.until - selector.since) // bucket > MAX_BUCKETS:
            raise ValueError(f"more than {MAX_BUCKETS} buckets: choose a wider bucket")
        rows = self.store.counts_by_time(selector, bucket, "stage",
                                         requests_only=_flag(query, "requests"))
        totals: dict[int, int] = {}
        for start, _, n in rows:
            totals[start] = totals.get(start, 0) + n
        return {"bucket_seconds": bucket // 1_000_000, "total": sum(totals.values()),
                "counts": [{"t": format_micros(t), "count": n} for t, n in sorted(totals.items())]}

    def alerts(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """One page of alerts in time order, newest first, with a cursor for the next."""
        limit = limit_from(query, DEFAULT_LIMIT, MAX_LIMIT)
        found = self.store.alert_page(alert_selector_from_query(query), limit + 1,
                                      before=key_from(query, "before"))
        page = found[:limit]
        return {"alerts": [a.to_dict() for a in page],
                "next": format_key((page[-1].time, page[-1].id)) if len(found) > limit else None}


def _group(group: dict[str, object]) -> dict[str, object]:
    from auditsink.priority import PRIORITIES

    return {**group, "priority": PRIORITIES[int(str(group["priority"]))],
            "first": format_micros(int(str(group["first"]))),
            "last": format_micros(int(str(group["last"])))}


def selector_parameters() -> list[dict[str, Any]]:
    """The OpenAPI parameters of every selector field, ``q``, ``since`` and ``until``."""
    params: list[dict[str, Any]] = [
        {"name": f.name, "in": "query", "required": False, "style": "form", "explode": True,
         "description": f"{f.help} Syntax: {f.syntax}. Repeat for OR; `{f.name}!=` excludes.",
         "schema": {"type": "array", "items": {"type": "string"}}}
        for f in FIELDS]
    params += [
        {"name": "q", "in": "query", "schema": {"type": "string"},
         "description": "Query-bar terms: user:alice -namespace:kube-system code:4xx"},
        {"name": "since", "in": "query", "schema": {"type": "string"},
         "description": "30m, 2h, 7d (ago) or RFC 3339"},
        {"name": "until", "in": "query", "schema": {"type": "string"}},
    ]
    return params


def openapi() -> dict[str, Any]:
    """The OpenAPI 3 description of this API."""
    params = selector_parameters()
    limit = {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}}
    page = [limit,
            {"name": "before", "in": "query", "schema": {"type": "string"},
             "description": "`next` of the previous page (order=newest)"},
            {"name": "after", "in": "query", "schema": {"type": "string"},
             "description": "`next` of the previous page (order=oldest)"},
            {"name": "order", "in": "query", "schema": {"type": "string",
                                                         "enum": ["newest", "oldest"]}},
            {"name": "requests", "in": "query", "schema": {"type": "integer", "enum": [0, 1]},
             "description": "1: one event per request (its completion)"},
            {"name": "total", "in": "query", "schema": {"type": "integer", "enum": [0, 1]},
             "description": "1: also count every match"}]
    event_list = {"type": "object", "properties": {
        "events": {"type": "array", "items": {"type": "object"}},
        "next": {"type": "string", "nullable": True, "description": "cursor for the next page"}}}
    json_answer = {"content": {"application/json": {"schema": {"type": "object"}}}}
    bad = {"description": "invalid filter or parameter"}
    alert_params = [
        {"name": "rule", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
        {"name": "priority", "in": "query", "schema": {"type": "string"},
         "description": "at least this severe"},
        {"name": "cluster", "in": "query",
         "schema": {"type": "array", "items": {"type": "string"}}},
        {"name": "auditID", "in": "query",
         "schema": {"type": "array", "items": {"type": "string"}}},
        {"name": "since", "in": "query", "schema": {"type": "string"}},
        {"name": "until", "in": "query", "schema": {"type": "string"}}]

    def get(summary: str, parameters: list[dict[str, Any]], ok: dict[str, Any]
            ) -> dict[str, Any]:
        return {"get": {"summary": summary, "parameters": parameters,
                        "responses": {"200": ok, "400": bad}}}

    return {
        "openapi": "3.0.3",
        "info": {"title": "auditsink read API", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/events": get(
                "Events matching the filters in time order (stageTimestamp), newest first",
                params + page, {"description": "a page of events",
                                "content": {"application/json": {"schema": event_list}}}),
            "/api/v1/events/follow": get(
                "Events committed after a log position, in commit order (lossless follow)",
                params + [{"name": "after", "in": "query", "schema": {"type": "integer"},
                           "description": "`position` of the previous answer"}, limit],
                {"description": "events, position, more", **json_answer}),
            "/api/v1/events/export": get(
                "Every matching event as a file, streamed (oldest first)",
                params + [{"name": "format", "in": "query",
                           "schema": {"type": "string", "enum": list(FORMATS)}},
                          page[3], page[4]],
                {"description": "JSONL audit-log lines or CSV",
                 "content": {t: {"schema": {"type": "string"}} for t in FORMATS.values()}}),
            "/api/v1/events/{auditID}": {"get": {
                "summary": "Every stage of one request",
                "parameters": [{"name": "auditID", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the stages", "content": {
                    "application/json": {"schema": event_list}}},
                              "404": {"description": "no such request"}}}},
            "/api/v1/counts": get(
                "Matching events per time bucket",
                params + [{"name": "bucket", "in": "query", "schema": {"type": "integer"},
                           "description": "seconds per bucket (default 60)"}, page[4]],
                {"description": "counts per bucket", **json_answer}),
            "/api/v1/alerts": get(
                "Alerts raised by the detection rules, newest first by time",
                alert_params + [limit, page[1]], {"description": "a page of alerts",
                                                  **json_answer}),
            "/api/v1/alerts/groups": get(
                "Alerts grouped by rule and cluster, most severe first",
                alert_params + [limit], {"description": "groups", **json_answer}),
            "/api/v1/stats": get(
                "Top users, verbs, resources, namespaces, failures, events per hour", params,
                {"description": "stats", **json_answer}),
            "/api/v1/clusters": get("Every cluster the store has events of", [],
                                    {"description": "cluster names", **json_answer}),
        },
    }
