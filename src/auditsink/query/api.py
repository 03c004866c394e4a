"""The read API (``--api-listen``): events, one request's stages, and stats, as JSON.

It listens apart from the ingest port so that the port facing the API server never serves
data. Query parameters are the CLI's selector flags (repeat a parameter for OR).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any
from urllib.parse import parse_qs, unquote

from auditsink.selector import SelectorError
from auditsink.priority import RANK, parse_priority
from auditsink.store.base import AlertSelector, Selector, Store
from auditsink.timeutil import parse_when

_LIST_PARAMS = {
    "user": "users", "group": "groups", "verb": "verbs", "resource": "resources",
    "apiGroup": "api_groups", "namespace": "namespaces", "name": "names", "stage": "stages",
    "level": "levels", "code": "codes", "cluster": "clusters",
}
MAX_LIMIT = 1000


def selector_from_query(query: dict[str, list[str]]) -> Selector:
    """Selector from query parameters.

    >>> selector_from_query({"user": ["alice"], "code": ["403"]}).users
    ['alice']
    """
    values: dict[str, Any] = {dest: query.get(param, []) for param, dest in _LIST_PARAMS.items()}
    selector = Selector(**values)
    if "since" in query:
        selector.since = parse_when(query["since"][0])
    if "until" in query:
        selector.until = parse_when(query["until"][0])
    return selector


def openapi() -> dict[str, Any]:
    """The OpenAPI 3 description of this API."""
    params = [
        {"name": p, "in": "query", "required": False, "schema": {"type": "array", "items": {"type": "string"}},
         "style": "form", "explode": True}
        for p in _LIST_PARAMS
    ] + [
        {"name": "since", "in": "query", "schema": {"type": "string"}, "description": "30m, 2h, 7d or RFC 3339"},
        {"name": "until", "in": "query", "schema": {"type": "string"}},
    ]
    event_list = {"type": "object", "properties": {
        "events": {"type": "array", "items": {"type": "object"}},
        "next": {"type": "string", "nullable": True, "description": "cursor for the next page"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "auditsink read API", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/events": {"get": {
                "summary": "Events matching the filters, newest first",
                "parameters": params + [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": MAX_LIMIT}},
                    {"name": "before", "in": "query", "schema": {"type": "string"}, "description": "cursor from `next`"}],
                "responses": {"200": {"description": "a page of events", "content": {"application/json": {"schema": event_list}}},
                              "400": {"description": "invalid filter"}}}},
            "/api/v1/events/{auditID}": {"get": {
                "summary": "Every stage of one request",
                "parameters": [{"name": "auditID", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the stages", "content": {"application/json": {"schema": event_list}}},
                              "404": {"description": "no such request"}}}},
            "/api/v1/alerts": {"get": {
                "summary": "Alerts raised by the detection rules, newest first",
                "parameters": [
                    {"name": "rule", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                    {"name": "priority", "in": "query", "schema": {"type": "string"}, "description": "at least this severe"},
                    {"name": "cluster", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                    {"name": "auditID", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                    {"name": "since", "in": "query", "schema": {"type": "string"}},
                    {"name": "until", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": MAX_LIMIT}},
                    {"name": "before", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "a page of alerts", "content": {"application/json": {"schema": {"type": "object"}}}},
                              "400": {"description": "invalid filter"}}}},
            "/api/v1/stats": {"get": {
                "summary": "Top users, verbs, resources, namespaces, failures, events per hour",
                "parameters": params,
                "responses": {"200": {"description": "stats", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        },
    }


class ReadAPI:
    """ASGI app for the read listener; bearer-token protected when a token is configured."""

    def __init__(self, store: Store, token: str | None = None) -> None:
        self.store = store
        self.token = token.encode() if token else None
        # The web UI (issue 7) answers /, /ui/... and /static/... behind the same authentication.
        from auditsink.web import WebUI

        self.web = WebUI(store)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _send(send, 405, {"error": "read-only API: use GET"})
            return
        if self.token is not None and not self._authorized(scope):
            await _send(send, 401, {"error": "unauthorized"})
            return
        path: str = scope["path"]
        if self.web.handles(path):
            await self.web(scope, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        try:
            status, payload = await asyncio.to_thread(self._route, path, query)
        except (SelectorError, ValueError) as exc:
            status, payload = 400, {"error": str(exc)}
        await _send(send, status, payload)

    def _authorized(self, scope: dict[str, Any]) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, credential = header.partition(b" ")
        assert self.token is not None
        return scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self.token)

    def _route(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if path == "/api/v1/events":
            return 200, self.events(query)
        if path.startswith("/api/v1/events/"):
            audit_id = unquote(path[len("/api/v1/events/"):])
            events = self.store.query(Selector(audit_ids=[audit_id]), limit=MAX_LIMIT, newest_first=False)
            if not events:
                return 404, {"error": f"no events with auditID {audit_id!r}"}
            return 200, {"events": [_doc(e) for e in events], "next": None}
        if path == "/api/v1/alerts":
            return 200, self.alerts(query)
        if path == "/api/v1/stats":
            return 200, self.store.stats(selector_from_query(query))
        if path in ("/openapi.json", "/api/v1/openapi.json"):
            return 200, openapi()
        if path in ("/healthz", "/readyz"):
            return 200, {"status": "ok"}
        return 404, {"error": f"no such endpoint {path}", "see": "/openapi.json"}

    def alerts(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """One page of alerts, newest first, with a cursor for the next page."""
        limit = min(int(query.get("limit", ["100"])[0]), MAX_LIMIT)
        before = query.get("before", [""])[0]
        found = self.store.alerts(alert_selector_from_query(query), limit=limit,
                                  before_id=int(before) if before else None)
        more = len(found) == limit and limit > 0
        return {"alerts": [a.to_dict() for a in found], "next": str(found[-1].id) if more else None}

    def events(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """One page of events, newest first, with a cursor for the next page."""
        selector = selector_from_query(query)
        limit = min(int(query.get("limit", ["100"])[0]), MAX_LIMIT)
        before = query.get("before", [""])[0]
        events = self.store.query(selector, limit=limit, before_id=int(before) if before else None)
        more = len(events) == limit and limit > 0
        return {"events": [_doc(e) for e in events], "next": str(events[-1].id) if more else None}


def alert_selector_from_query(query: dict[str, list[str]]) -> AlertSelector:
    """AlertSelector from ``rule``, ``priority``, ``cluster``, ``since``, ``until``."""
    selector = AlertSelector(rules=query.get("rule", []), clusters=query.get("cluster", []),
                             audit_ids=query.get("auditID", []))
    if "priority" in query:
        selector.min_priority = RANK[parse_priority(query["priority"][0])]
    if "since" in query:
        selector.since = parse_when(query["since"][0])
    if "until" in query:
        selector.until = parse_when(query["until"][0])
    return selector


def _doc(stored: Any) -> dict[str, Any]:
    return {"id": stored.id, "cluster": stored.cluster, "event": json.loads(stored.raw)}


async def _send(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
