"""The ingest ASGI application: the door kube-apiserver's audit webhook knocks on.

Answers are chosen for the sender's retry logic (k8s-audit-facts.md W13-W15): 200 only once
the events are committed; every error is retried about 5 times over ~100 s and then the batch
is dropped, so a body that can never be read gets 400 with a JSON reason (the retries are
cheap), overload gets 429 with ``Retry-After`` (retried inside the same 30 s attempt), and a
malformed item never costs its valid neighbours.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from auditsink.model import BodyError, BodyTooLarge, TooManyItems, decode_body, gunzip
from auditsink.pipeline import Pipeline
from auditsink.receive.auth import CLUSTER_NAME, CLUSTER_NAME_RULE, Authenticator
from auditsink.metrics import CONTENT_TYPE, auth_method
from auditsink.store.base import Overloaded
from auditsink.textsafe import cut, printable

log = logging.getLogger("auditsink.receive")

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

DEFAULT_MAX_BODY = 64 * 1024 * 1024
DEFAULT_MAX_EVENTS = 16_000
# JSON and NDJSON (audit-log lines) only. text/plain and the form encodings are what a web page
# can POST cross-origin without a CORS preflight, so accepting them let any page a user on the
# API server's host opened forge events into a loopback receiver (issue 17). No Content-Type at
# all stays accepted for tools; a browser always sends Origin with it, refused below.
_ACCEPTED_TYPES = frozenset({"", "application/json", "application/x-ndjson", "application/jsonl"})


class ReceiverApp:
    """Routes: POST ingest on ``/`` (or the configured paths) and ``/clusters/{name}``;
    GET ``/healthz``, ``/readyz``, ``/metrics``."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        paths: frozenset[str] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        body_timeout: float = 25.0,
        inflight_budget: int = 512 * 1024 * 1024,
        authenticator: Authenticator | None = None,
        max_events: int | None = DEFAULT_MAX_EVENTS,
        ready: Callable[[], bool] = lambda: True,
        accepting: Callable[[], bool] = lambda: True,
    ) -> None:
        self.pipeline = pipeline
        self.metrics = pipeline.metrics
        self.paths = paths
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.inflight_budget = inflight_budget
        self.inflight = 0
        self.max_events = max_events
        self.authenticator = authenticator
        self.ready = ready
        self.accepting = accepting
        self._seen_paths: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        if scope["method"] in ("GET", "HEAD") and path in ("/healthz", "/readyz", "/metrics"):
            await self._operations(path, send)
            return
        cluster = ""
        if path.startswith("/clusters/"):
            cluster = path[len("/clusters/") :].split("/", 1)[0]
            if not cluster:
                await _json(send, 404, {"error": "missing cluster name: POST /clusters/NAME"})
                return
            if not CLUSTER_NAME.match(cluster):
                await _json(send, 400, {"error": f"invalid cluster name {cut(repr(cluster), 80)}: "
                                                 f"{CLUSTER_NAME_RULE}"})
                return
        elif self.paths is not None and path not in self.paths:
            await _json(send, 404, {"error": cut(f"no ingest endpoint at {path}"),
                                    "endpoints": sorted(self.paths)})
            return
        if scope["method"] != "POST":
            await _json(send, 405, {"error": "use POST to send audit events"},
                        extra=[(b"allow", b"POST")])
            return
        started = time.perf_counter()
        status = await self._ingest(scope, receive, send, cluster)
        self.metrics.requests[(status,)] += 1
        self.metrics.observe_latency(time.perf_counter() - started)

    async def _ingest(self, scope: Scope, receive: Receive, send: Send, cluster: str) -> int:
        headers = dict(scope["headers"])
        # 0. a browser's request is never the API server's: refuse what a web page could send
        #    (every browser sends Origin with a POST, and Sec-Fetch-Site with any request)
        if b"origin" in headers or headers.get(b"sec-fetch-site", b"none") != b"none":
            log.warning("refused a browser request from %s (Origin %s)", _client(scope),
                        cut(repr(headers.get(b"origin", b"").decode("latin-1")), 100))
            return await _json(send, 403, {"error": "requests from web pages are refused: the "
                                           "webhook is for kube-apiserver"})
        # 1. authenticate the sender; the credential may name the cluster
        auth = self.authenticator
        if auth is not None and auth.enabled:
            authorization = headers.get(b"authorization")
            peer_cn = scope.get("auditsink.peer_cn")
            client = scope.get("client")
            peer = client[0] if client else ""
            if auth.may_block(authorization):
                # A bcrypt check takes ~0.5 s: run it off the event loop (it releases the GIL).
                result = await asyncio.to_thread(auth.authenticate, authorization, peer_cn, peer)
            else:
                result = auth.authenticate(authorization, peer_cn, peer)
            if result is None:
                # The label and the log name a fixed word: the header may be a bare token.
                method = auth_method(authorization)
                self.metrics.auth_failures[(method,)] += 1
                log.warning("rejected unauthenticated request from %s (%s)", _client(scope), method)
                return await _json(send, 401, {"error": "unauthorized"},
                                   extra=[(b"www-authenticate", b'Bearer realm="auditsink"')])
            bound = result.cluster
            if bound:
                if cluster and cluster != bound:
                    # Both names are validated (short, safe); the credential is never logged.
                    log.warning("refused a request for cluster %r from %s: its credential is "
                                "bound to cluster %r", cluster, _client(scope), bound)
                    return await _json(send, 403, {"error": "credential is not valid for cluster "
                                                   f"{cluster!r}"})  # validated above: short
                cluster = bound
        # 2. check the media type before reading anything
        ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        ctype = ctype.decode("latin-1")
        if ctype not in _ACCEPTED_TYPES:
            return await _json(send, 415, {"error": f"unsupported Content-Type "
                                           f"{cut(repr(ctype), 80)}: send application/json (an "
                                           "EventList, Event, or JSON lines) or "
                                           "application/x-ndjson"})
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"identity", b"gzip", b""):
            return await _json(send, 415, {"error": "unsupported Content-Encoding "
                                           f"{cut(repr(encoding.decode('latin-1')), 80)}: send "
                                           "identity or gzip"})
        # 3. a full store queue refuses now: reading and decoding a body only to answer 429
        #    after all cost the CPU the writer needed (measured: ingest fell by half under
        #    25x overload, and memory rose with the bodies read for nothing)
        if not self.accepting():
            return await _json(send, 429, {"error": "auditsink is behind, retry"},
                               extra=[(b"retry-after", b"1")])
        # 4. read the body within the size limit, the memory budget and the time limit; the
        #    bytes stay reserved until the answer, and what arrives beyond the declared length
        #    (chunked bodies) or comes out of gunzip is reserved as it appears
        declared = _content_length(headers)
        if declared is not None and declared > self.max_body:
            return await self._too_large(send, declared)
        budget = _Reservation(self, declared or 0)
        try:
            if not budget.fits():
                return await _busy(send, "too many bytes in flight, retry")
            return await self._read_and_store(scope, receive, send, cluster, encoding, budget)
        finally:
            budget.release()

    async def _read_and_store(self, scope: Scope, receive: Receive, send: Send, cluster: str,
                              encoding: bytes, budget: _Reservation) -> int:
        try:
            body = await self._read_body(scope, receive, budget)
        except BodyTooLarge:
            return await self._too_large(send, None)
        except _OverBudget:
            return await _busy(send, "too many bytes in flight, retry")
        except TimeoutError:
            log.warning("request body from %s not received within %ss", _client(scope),
                        self.body_timeout)
            return await _json(send, 408,
                               {"error": f"body not received within {self.body_timeout}s"})
        except ConnectionError:
            return 499
        self.metrics.bytes += len(body)
        # 5. decode: an unreadable body is 400, bad items are kept aside; the events of one body
        #    count against the store queue (before they are decoded: decoded, they take several
        #    times their bytes)
        try:
            if encoding == b"gzip":
                body = gunzip(body, self.max_body)
                if not budget.grow(len(body)):
                    return await _busy(send, "too many bytes in flight, retry")
            items, bad = decode_body(body, self.max_events)
        except BodyTooLarge:
            return await self._too_large(send, None)
        except TooManyItems as exc:
            log.error("rejected a body of %d events from %s: more than --queue-events %d",
                      exc.count, _client(scope), exc.limit)
            return await _json(send, 413, {"error": str(exc), "remedy": "raise auditsink "
                                           "--queue-events or lower "
                                           "--audit-webhook-batch-max-size"})
        except BodyError as exc:
            log.warning("rejected body from %s: %s", _client(scope), exc)
            return await _json(send, 400, {"error": str(exc)})
        if self.paths is None and scope["path"] not in self._seen_paths and not cluster:
            if len(self._seen_paths) < 16:  # a note for the operator, not a list of every path
                self._seen_paths.add(scope["path"])
                log.info("receiving audit events on %s", cut(scope["path"], 200))
        # 6. admit, commit, print; answer only after the commit
        try:
            written = await self.pipeline.ingest(items, bad, cluster)
        except Overloaded as exc:
            return await _json(send, 429, {"error": "auditsink is behind, retry"},
                               extra=[(b"retry-after", str(exc.retry_after).encode())])
        except Exception:
            log.exception("storing a batch of %d events failed", len(items))
            return await _json(send, 503, {"error": "the store failed; the sender will retry"})
        return await _json(send, 200, {"stored": written.stored, "duplicates": written.duplicates,
                                       "rejected": len(bad)})

    async def _read_body(self, scope: Scope, receive: Receive, budget: _Reservation) -> bytes:
        if scope.get("auditsink.body_received"):
            # The listener had the whole request before this ran (receive/server.py): reading
            # it cannot wait, and a timer per request was 5 % of blocking mode's event loop.
            return await self._read_chunks(receive, budget)
        async with asyncio.timeout(self.body_timeout):
            return await self._read_chunks(receive, budget)

    async def _read_chunks(self, receive: Receive, budget: _Reservation) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionError("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge(self.max_body)
            if size > budget.held and not budget.grow(size - budget.held):
                raise _OverBudget()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _too_large(self, send: Send, size: int | None) -> int:
        log.error(
            "rejected a body of %s bytes over the limit of %d: raise --max-body, lower the API "
            "server's --audit-webhook-batch-max-size, or enable --audit-webhook-truncate-enabled",
            size if size is not None else "more than the limit", self.max_body,
        )
        return await _json(send, 413, {"error": f"body larger than {self.max_body} bytes",
                                       "remedy": "raise auditsink --max-body or lower "
                                       "--audit-webhook-batch-max-size on the API server"})

    async def _operations(self, path: str, send: Send) -> None:
        if path == "/healthz":
            await _json(send, 200, {"status": "ok"})
        elif path == "/readyz":
            ok = self.ready()
            await _json(send, 200 if ok else 503, {"status": "ready" if ok else "not ready"})
        else:
            body = self.metrics.render()
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


class _OverBudget(Exception):
    """The bytes in flight would exceed ``--inflight-budget``."""


class _Reservation:
    """Bytes one request holds against the receiver's in-flight budget.

    The first request always fits (a budget smaller than one body must not refuse everything);
    after that, a request fits while the total stays within the budget.
    """

    def __init__(self, app: ReceiverApp, declared: int) -> None:
        self.app = app
        self.held = 0
        self._first = declared

    def fits(self) -> bool:
        return self.grow(self._first)

    def grow(self, size: int) -> bool:
        app = self.app
        if app.inflight > self.held and app.inflight + size > app.inflight_budget:
            return False
        app.inflight += size
        self.held += size
        return True

    def release(self) -> None:
        self.app.inflight -= self.held
        self.held = 0


async def _busy(send: Send, reason: str) -> int:
    return await _json(send, 429, {"error": reason}, extra=[(b"retry-after", b"1")])


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    value = headers.get(b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return printable(f"{client[0]}:{client[1]}") if client else "unknown"


async def _json(send: Send, status: int, payload: dict[str, Any],
                extra: list[tuple[bytes, bytes]] | None = None) -> int:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
