"""Run the ingest listener (and the read API listener) under uvicorn.

uvicorn with httptools and uvloop was chosen by measurement (benchmarks/README.md): it is the
fastest pure-pip ASGI server stack here, and its protocol class can be extended to pass the
TLS peer certificate to the app for mTLS cluster names.

Limits on each listener (docs/security.md; issue 17). uvicorn has the idle keep-alive timeout
(``timeout_keep_alive``) and nothing else we need with httptools: ``h11_max_incomplete_event_size``
exists for h11 only (and answers 400), ``limit_concurrency`` answers 503 but keeps the
connection and its descriptor, and there is no header or TLS-handshake timeout. So
:class:`GuardedProtocol` adds, in the smallest way we found:
- a request line plus headers larger than ``max_header_bytes`` is answered 431 and closed;
- a connection must finish its request head within ``header_timeout`` of its first byte, and
  one that never sends anything is closed after the keep-alive timeout;
- past ``max_connections``, the connection idle the longest is closed (the newcomer, if every
  other one is busy with a request), so idle connections cannot lock the API server out;
and :class:`_Loop` gives TLS handshakes ``tls_handshake_timeout`` (asyncio's default is 60 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import resource
import signal
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from auditsink.pipeline import Pipeline
from auditsink.receive.app import DEFAULT_MAX_BODY, DEFAULT_MAX_EVENTS, ReceiverApp
from auditsink.receive.tls import peer_cn_from_transport
from auditsink.runtime import tune_for_ingest
from auditsink.store.base import Store

log = logging.getLogger("auditsink.serve")


class ConfigError(ValueError):
    """A setting that cannot work; the message names it and says what to do."""


def parse_listen(value: str, what: str = "--listen") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) to a tuple.

    >>> parse_listen("127.0.0.1:8080")
    ('127.0.0.1', 8080)
    """
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{what} {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    if not 1 <= int(port) <= 65535:
        # Else the socket layer takes the port modulo 65536 and listens somewhere else.
        raise ConfigError(f"{what} {value!r}: the port must be 1 to 65535")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ListenerLimits:
    """What one client may hold on a listener; the defaults suit kube-apiserver's client-go,
    whose idle connections live 90 s and whose request heads are a few hundred bytes."""

    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 75.0
    tls_handshake_timeout: float = 10.0
    max_connections: int = 1000


_IDLE, _HEAD, _BODY = 0, 1, 2
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _OneWritePerResponse:
    """The transport as a response cycle sees it: what it writes goes out in one send.

    uvicorn writes a response's head and its body with two ``transport.write`` calls, and
    uvloop sends each at once: two system calls, and two TCP segments on the wire. On
    loopback a send costs the receiving side's work too, and in blocking mode (one event per
    request) the two were a tenth of the event loop's time (py-spy, 2026-12-04). Writes are
    held here and sent together when the response completes (the protocol's
    ``on_response_complete``), or at the end of this loop step, whichever comes first, so a
    streamed body still leaves as it is written.
    """

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def flush(self) -> None:
        if self._held:
            held, self._held = self._held, []
            if not self._transport.is_closing():
                self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # get_extra_info and the rest, unchanged
        return getattr(self._transport, name)


class GuardedProtocol(HttpToolsProtocol):
    """httptools protocol with the listener limits, and the TLS client certificate's CN in
    the scope (``auditsink.peer_cn``). :func:`protocol_with` binds the limits."""

    limits: ClassVar[ListenerLimits] = ListenerLimits()
    _peer_cn: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer_cn = peer_cn_from_transport(transport)
        self._state = _IDLE
        self._head_bytes = 0
        self._head_tail = b""  # the last bytes of the head so far: "\r\n\r\n" may straddle reads
        self._head_timer: asyncio.TimerHandle | None = None
        self._idle_since = self.loop.time()
        self._writes = _OneWritePerResponse(transport, self.loop)
        # uvicorn arms its keep-alive timer only after a response: a connection that never
        # sends a request would stay open for good.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler)
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def _alive(self) -> bool:
        return not self.transport.is_closing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _busy(self) -> bool:
        return self._state == _BODY or (self.cycle is not None and not self.cycle.response_complete)

    def _make_room(self) -> None:
        # (connections closed a moment ago still count until their connection_lost runs)
        alive = [c for c in self.connections if isinstance(c, GuardedProtocol) and c._alive()]
        if len(alive) <= self.limits.max_connections:
            return
        idle = [c for c in alive if c is not self and not c._busy()]
        victim = min(idle, key=lambda c: c._idle_since) if idle else self
        # abort, not close: a TLS close waits (30 s) for a peer that may never read
        victim.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._state != _BODY:
            if self._head_timer is None and not self._busy():
                self._head_timer = self.loop.call_later(self.limits.header_timeout,
                                                        self._head_timed_out)
            # Measure the head on the raw bytes, before httptools buffers them: it keeps a
            # header it has not seen the end of (the 30 MB one) in memory.
            end = (self._head_tail + data).find(b"\r\n\r\n")
            if end >= 0:
                size = self._head_bytes + end - len(self._head_tail) + 4
            else:
                size = self._head_bytes + len(data)
            if size > self.limits.max_header_bytes:
                if not self.transport.is_closing():
                    self._refuse(431)
                return
            self._head_bytes, self._head_tail = (size, data[-3:]) if end < 0 else (0, b"")
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._state = _HEAD
        self.scope["auditsink.peer_cn"] = self._peer_cn  # type: ignore[typeddict-unknown-key]

    def on_headers_complete(self) -> None:
        self._state = _BODY
        self._head_bytes, self._head_tail = 0, b""
        self._stop_head_timer()
        super().on_headers_complete()
        # the cycle just made (its task has not run yet) writes through the coalescer
        self.cycle.transport = self._writes  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._state = _IDLE
        # The whole body is buffered: the app may read it without a timer (receive/app.py).
        self.scope["auditsink.body_received"] = True  # type: ignore[typeddict-unknown-key]
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._writes.flush()
        self._idle_since = self.loop.time()
        super().on_response_complete()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._state != _BODY and not self._busy() and not self.transport.is_closing():
            self._refuse(408)

    def _refuse(self, status: int) -> None:
        """Answer ``status`` and close: what Go's net/http does for these two cases."""
        self._stop_head_timer()
        reason = _REASONS[status]
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (status, reason, len(reason), reason))
        self.transport.close()


def protocol_with(limits: ListenerLimits) -> type[GuardedProtocol]:
    """A protocol class bound to ``limits`` (uvicorn instantiates it per connection)."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})


class _Loop(uvloop.Loop):
    """uvloop with a TLS handshake timeout of our choosing on the servers uvicorn creates."""

    tls_handshake_timeout: ClassVar[float] = ListenerLimits.tls_handshake_timeout

    async def create_server(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.tls_handshake_timeout)
        return await super().create_server(*args, **kwargs)


def raise_open_file_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit, as Go's runtime does at start
    (the soft default, 1,024, is a few hundred idle connections); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # e.g. a hard limit of "unlimited" on macOS
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def fit_connections(limits: ListenerLimits, listeners: int, open_files: int) -> ListenerLimits:
    """``limits`` with ``max_connections`` lowered so that every listener's connections, plus
    a reserve for the store and the process, fit in ``open_files`` descriptors."""
    room = max(16, (open_files - 256) // max(1, listeners))
    if limits.max_connections <= room:
        return limits
    log.warning("--max-connections %d per listener does not fit the open-file limit %d: "
                "using %d (raise LimitNOFILE or ulimit -n)", limits.max_connections, open_files,
                room)
    return replace(limits, max_connections=room)


@dataclass
class ServeOptions:
    """Everything ``auditsink serve`` needs beyond the pipeline."""

    listen: str = "127.0.0.1:8080"
    api_listen: str | None = None
    paths: list[str] = field(default_factory=list)
    max_body: int = DEFAULT_MAX_BODY
    body_timeout: float = 25.0
    tls: dict[str, Any] = field(default_factory=dict)
    authenticator: Any = None
    api_token: str | None = None
    insecure: bool = False
    retention_seconds: float | None = None
    max_events: int = DEFAULT_MAX_EVENTS
    inflight_budget: int = 512 * 1024 * 1024
    limits: ListenerLimits = field(default_factory=ListenerLimits)


def check_exposure(options: ServeOptions) -> None:
    """Refuse to listen beyond loopback without TLS and sender authentication."""
    host, _ = parse_listen(options.listen)
    if is_loopback(host) or options.insecure:
        return
    has_auth = options.authenticator is not None and options.authenticator.enabled
    if not options.tls or not has_auth:
        missing = " and ".join(
            what for what, ok in (("TLS (--tls-cert/--tls-key)", bool(options.tls)),
                                  ("sender authentication (--token-file, --basic-auth-file or "
                                   "--client-ca)", has_auth))
            if not ok
        )
        raise ConfigError(
            f"refusing to listen on {options.listen} beyond loopback without {missing}: anyone on "
            "the network could send fake audit events. Configure them, or pass --insecure."
        )


class _Server(uvicorn.Server):
    """uvicorn's server without re-raising the stop signal on exit, so the store can drain."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _uvicorn_config(app: Any, listen: str, tls: dict[str, Any],
                    limits: ListenerLimits | None = None) -> uvicorn.Config:
    host, port = parse_listen(listen)
    limits = limits or ListenerLimits()
    return uvicorn.Config(
        app, host=host, port=port, http=protocol_with(limits), loop="uvloop", lifespan="off",
        access_log=False, log_config=None, server_header=False,
        # The client address is the socket's: uvicorn would otherwise take X-Forwarded-For
        # from any loopback sender, who could then pose as any address in the log and in
        # the per-address bcrypt budget (receive/auth.py).
        proxy_headers=False,
        # uvicorn annotates an int; it only hands the value to loop.call_later (seconds).
        timeout_keep_alive=limits.idle_timeout,  # type: ignore[arg-type]
        timeout_graceful_shutdown=30, **tls,
    )


def receiver_app(pipeline: Pipeline, options: ServeOptions) -> ReceiverApp:
    """The ingest app over ``pipeline`` (its store decides readiness and 429s)."""
    store = pipeline.store
    return ReceiverApp(
        pipeline, paths=frozenset(options.paths) if options.paths else None,
        max_body=options.max_body, body_timeout=options.body_timeout,
        authenticator=options.authenticator,
        max_events=options.max_events, inflight_budget=options.inflight_budget,
        ready=((lambda: store.queue_depth() < getattr(store, "queue_events", 1 << 30)) if store
               else (lambda: True)),
        accepting=store.has_room if store is not None else (lambda: True),
    )


def serve(pipeline: Pipeline, options: ServeOptions, api_app: Any = None,
          consumers: list[Any] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; then finish in-flight requests and drain the store.

    ``consumers`` (the rules, notifiers) each have ``run(stop_event)`` and get a thread.
    """
    check_exposure(options)
    store = pipeline.store
    app = receiver_app(pipeline, options)
    with_api = api_app is not None and bool(options.api_listen)
    limits = fit_connections(options.limits, 2 if with_api else 1, raise_open_file_limit())
    _Loop.tls_handshake_timeout = limits.tls_handshake_timeout
    servers = [_Server(_uvicorn_config(app, options.listen, options.tls, limits))]
    if with_api:
        assert options.api_listen is not None
        api_server = _Server(_uvicorn_config(api_app, options.api_listen, {}, limits))
        servers.append(api_server)
    stop_background = threading.Event()
    threads = [
        threading.Thread(target=consumer.run, args=(stop_background,), daemon=True,
                         name=f"auditsink-{type(consumer).__name__.lower()}")
        for consumer in consumers or []
    ]
    if store is not None and options.retention_seconds:
        threads.append(threading.Thread(
            target=_retention_loop, args=(store, options.retention_seconds, stop_background),
            name="auditsink-retention", daemon=True))
    for thread in threads:
        thread.start()
    if options.authenticator is not None and hasattr(options.authenticator, "reload"):
        signal.signal(signal.SIGHUP, lambda *_: _reload(options.authenticator))
    tune_for_ingest()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve_all(servers))
    finally:
        stop_background.set()
        for thread in threads:
            thread.join(timeout=10)
        if store is not None:
            store.close()


def _loop_factory() -> Any:
    return _Loop


async def _serve_all(servers: Sequence[uvicorn.Server]) -> None:
    main, *others = servers
    tasks = [asyncio.create_task(s._serve()) for s in others]  # only `main` handles signals
    try:
        await main.serve()
    finally:
        for server in others:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)


def _reload(authenticator: Any) -> None:
    try:
        authenticator.reload()
        log.info("reloaded credentials (SIGHUP)")
    except Exception as exc:  # keep serving with the old credentials
        log.error("credential reload failed, keeping the previous ones: %s", exc)


def _retention_loop(store: Store, keep_seconds: float, stop: threading.Event) -> None:
    while not stop.wait(timeout=60 if keep_seconds > 600 else 5):
        cutoff = int((time.time() - keep_seconds) * 1_000_000)
        try:
            deleted = store.prune(cutoff)
        except Exception as exc:
            log.error("retention pruning failed: %s", exc)
            continue
        if deleted:
            log.info("retention: deleted %d events older than %ss", deleted, keep_seconds)
