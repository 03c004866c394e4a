"""Routes of the web UI, rendering a view's dict as HTML or as its ``.json`` twin, exports
streamed, and static files.

The read listener (``auditsink.readlistener``) hands it every ``/``, ``/ui...`` and
``/static/...`` request after its own authentication, so the UI is exactly as protected as the
API. :class:`WebUI` is an ASGI app.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, cast
from urllib.parse import parse_qs, quote

import jinja2

from auditsink.asgi import Receive, Scope, Send
from auditsink.selector import FIELDS
from auditsink.store.base import Store
from auditsink.web import charts, urls
from auditsink.web.views import alerts, events, export, history, overview, request, user
from auditsink.web.views._common import Invalid, NotFound, clean

_SUFFIX = r"(?P<fmt>\.json|\.html)?$"


@dataclass(frozen=True)
class Route:
    """One page: a path pattern, the view that makes its dict, the template that shows it."""

    pattern: re.Pattern[str]
    view: Callable[..., dict[str, Any]]
    template: str
    nav: str


# One readable table (datasette's _routes): every page answers HTML, or JSON with ".json".
ROUTES = [
    Route(re.compile(r"^/(?:ui/?)?$"), overview.view, "overview.html", "overview"),
    Route(re.compile(r"^/ui/overview" + _SUFFIX), overview.view, "overview.html", "overview"),
    Route(re.compile(r"^/ui/events" + _SUFFIX), events.view, "events.html", "events"),
    Route(re.compile(r"^/ui/requests/(?P<audit_id>.+?)" + _SUFFIX), request.view,
          "request.html", "events"),
    Route(re.compile(r"^/ui/objects/(?P<resource>[^/]+)/(?P<namespace>[^/]+)/(?P<name>[^/]+?)"
                     + _SUFFIX), history.view, "history.html", "events"),
    Route(re.compile(r"^/ui/users/(?P<username>.+?)" + _SUFFIX), user.view, "user.html", "users"),
    Route(re.compile(r"^/ui/alerts" + _SUFFIX), alerts.view, "alerts.html", "alerts"),
]
# Not a page: the explorer's whole result as a file, streamed (views/export.py).
EXPORT = re.compile(r"^/ui/events\.(?P<fmt>jsonl|csv)$")
_NOT_KEPT = frozenset({"cluster", "before", "after", "after_id"})
STATIC = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}
# Everything the pages load comes from this origin; inline SVG needs no scripts or styles.
HTML_HEADERS = [
    (b"content-security-policy", (b"default-src 'self'; img-src 'self' data:; "
                                  b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


@dataclass
class Response:
    """What the UI answers: status, content type, body, extra headers; an export's body
    comes as ``chunks``, read (in a thread) and sent one at a time."""

    status: int
    content_type: str
    body: bytes
    headers: list[tuple[bytes, bytes]]
    chunks: Iterator[bytes] | None = field(default=None, repr=False)


class WebUI:
    """The UI pages over a store; templates and static files are loaded once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("auditsink.web", "templates"),
            autoescape=True, trim_blocks=True, lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.globals.update(urls=urls, chart=charts.stacked_bars, colour=charts.colour,
                                fields=FIELDS)
        folder = resources.files("auditsink.web").joinpath("static")
        self.static = {name: folder.joinpath(name).read_bytes() for name in STATIC}

    @staticmethod
    def handles(path: str) -> bool:
        """Whether ``path`` belongs to the UI rather than to the JSON API."""
        return path == "/" or path == "/ui" or path.startswith(("/ui/", "/static/"))

    async def __call__(self, scope: Scope, receive: Receive | Send,
                       send: Send | None = None) -> None:
        """Answer one request (already authenticated by the read listener).

        An ASGI app; also called as ``(scope, send)``, in which case an export cannot notice
        that its client went away (``receive`` says so) and is read to its end.
        """
        if send is None:
            channel: Receive | None = None
            send = cast(Send, receive)
        else:
            channel = cast(Receive, receive)
        raw = scope.get("raw_path") or quote(scope["path"]).encode()
        answer = await asyncio.to_thread(
            self.respond, scope["path"], scope.get("query_string", b"").decode("latin-1"),
            raw.decode("latin-1"))
        headers = [(b"content-type", answer.content_type.encode()), *answer.headers]
        if answer.chunks is None:
            headers.append((b"content-length", str(len(answer.body)).encode()))
            await send({"type": "http.response.start", "status": answer.status,
                        "headers": headers})
            await send({"type": "http.response.body", "body": answer.body})
            return
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await _stream(answer.chunks, channel, send)

    def respond(self, path: str, query_string: str, raw_path: str | None = None) -> Response:
        """The answer to ``GET path?query_string``; ``raw_path`` keeps the client's escaping."""
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        query = clean(parse_qs(query_string, keep_blank_values=True))
        if path.rstrip("/") == "/ui/users" and query.get("user"):
            # The header's "user" box: a GET form cannot put the name in the path itself.
            location = urls.user_url(query["user"][0]).encode()
            return Response(303, "text/plain; charset=utf-8", b"", [(b"location", location)])
        exporting = EXPORT.match(path)
        if exporting:
            return self._export(query, exporting.group("fmt"))
        for route in ROUTES:
            match = route.pattern.match(path)
            if match is None:
                continue
            params = {k: v for k, v in match.groupdict().items() if k != "fmt"}
            as_json = match.groupdict().get("fmt") == ".json"
            template = route.template
            try:
                page = route.view(self.store, query, **params)
                status = 200
            except NotFound as exc:
                page, status = {"title": "Not found", "error": str(exc)}, 404
                template = "error.html"
            except Invalid as exc:
                status = 400
                page = exc.page or {"title": "Invalid request", "error": str(exc)}
                template = template if exc.page else "error.html"
            except ValueError as exc:  # SelectorError too
                page, status = {"title": "Invalid request", "error": str(exc)}, 400
                template = "error.html"
            if as_json:
                return _json(status, page)
            here = (raw_path or quote(path)).split("?", 1)[0]
            return self._html(status, template, page, route.nav, urls.json_twin(here, query_string),
                              query, here)
        return self._html(404, "error.html", {"title": "Not found", "error": f"no page {path}"},
                          "", "", {}, "/ui/overview")

    def _export(self, query: dict[str, list[str]], fmt: str) -> Response:
        try:
            content_type, chunks = export.export(self.store, query, fmt)
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        disposition = f'attachment; filename="auditsink-events.{fmt}"'.encode()
        return Response(200, content_type, b"", [(b"content-disposition", disposition),
                                                 (b"cache-control", b"no-store"),
                                                 (b"x-content-type-options", b"nosniff")],
                        chunks)

    def _html(self, status: int, template: str, page: dict[str, Any], nav: str,
              json_url: str, query: dict[str, list[str]], path: str) -> Response:
        # The header's cluster selector keeps the page's other parameters (not its cursors).
        keep = page.get("keep")
        if keep is None:
            keep = [(k, v) for k, vs in query.items() if k not in _NOT_KEPT for v in vs]
        if "clusters" not in page:  # an error page: the selector stays, never vanishes
            page = {**page, "clusters": self.store.clusters_seen(), "cluster_filter": []}
        body = self.env.get_template(template).render(page=page, nav=nav, json_url=json_url,
                                                      keep=keep, path=path)
        return Response(status, "text/html; charset=utf-8", body.encode(), list(HTML_HEADERS))

    def _static(self, name: str) -> Response:
        body = self.static.get(name)
        if body is None:
            return _json(404, {"error": f"no static file {name!r}"})
        headers = [(b"cache-control", b"max-age=300"), (b"x-content-type-options", b"nosniff")]
        return Response(200, STATIC[name], body, headers)


async def _stream(chunks: Iterator[bytes], receive: Receive | None, send: Send) -> None:
    """Send ``chunks`` as they are read (each read in a thread: it queries the store), and
    stop reading when the client goes away."""
    gone = asyncio.Event()

    async def watch() -> None:
        while receive is not None:
            message = await receive()
            if message.get("type") == "http.disconnect":
                gone.set()
                return

    watcher = asyncio.create_task(watch())
    try:
        while not gone.is_set():
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()


def _json(status: int, page: dict[str, Any]) -> Response:
    body = json.dumps(page, default=str, ensure_ascii=False).encode()
    return Response(status, "application/json", body, [(b"cache-control", b"no-store")])
