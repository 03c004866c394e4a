"""Run the ingest listener (and the read API listener) under uvicorn.

uvicorn with httptools and uvloop was chosen by measurement (benchmarks/README.md): it is the
fastest pure-pip ASGI server stack here, and its protocol class can be extended to pass the
TLS peer certificate to the app for mTLS cluster names.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from auditsink.pipeline import Pipeline
from auditsink.receive.app import DEFAULT_MAX_BODY, ReceiverApp
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


class PeerCertProtocol(HttpToolsProtocol):
    """httptools protocol that puts the TLS client certificate's CN into the scope."""

    _peer_cn: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer_cn = peer_cn_from_transport(transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["auditsink.peer_cn"] = self._peer_cn  # type: ignore[typeddict-unknown-key]


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


def check_exposure(options: ServeOptions) -> None:
    """Refuse to listen beyond loopback without TLS and sender authentication."""
    host, _ = parse_listen(options.listen)
    if is_loopback(host) or options.insecure:
        return
    has_auth = options.authenticator is not None and options.authenticator.enabled
    if not options.tls or not has_auth:
        missing = " and ".join(
            what for what, ok in (("TLS (--tls-cert/--tls-key)", bool(options.tls)),
                                  ("sender authentication (--token-file, --basic-auth-file or --client-ca)", has_auth))
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
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _uvicorn_config(app: Any, listen: str, tls: dict[str, Any]) -> uvicorn.Config:
    host, port = parse_listen(listen)
    return uvicorn.Config(
        app, host=host, port=port, http=PeerCertProtocol, loop="uvloop", lifespan="off",
        access_log=False, log_config=None, server_header=False, timeout_keep_alive=75,
        timeout_graceful_shutdown=30, **tls,
    )


def serve(pipeline: Pipeline, options: ServeOptions, api_app: Any = None,
          consumers: list[Any] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; then finish in-flight requests and drain the store.

    ``consumers`` (the rules, notifiers) each have ``run(stop_event)`` and get a thread.
    """
    check_exposure(options)
    store = pipeline.store
    app = ReceiverApp(
        pipeline, paths=frozenset(options.paths) if options.paths else None,
        max_body=options.max_body, body_timeout=options.body_timeout, authenticator=options.authenticator,
        ready=(lambda: store.queue_depth() < getattr(store, "queue_events", 1 << 30)) if store else (lambda: True),
        accepting=store.has_room if store is not None else (lambda: True),
    )
    servers = [_Server(_uvicorn_config(app, options.listen, options.tls))]
    if api_app is not None and options.api_listen:
        api_server = _Server(_uvicorn_config(api_app, options.api_listen, {}))
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
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return None
    return uvloop.new_event_loop


async def _serve_all(servers: list[uvicorn.Server]) -> None:
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
            deleted = store.prune(cutoff)  # type: ignore[attr-defined]
        except Exception as exc:
            log.error("retention pruning failed: %s", exc)
            continue
        if deleted:
            log.info("retention: deleted %d events older than %ss", deleted, keep_seconds)
