"""``serve --receivers N``: N receiver processes in front of one writer (issue 16).

One process did HTTP, decoding, redaction, the policy, compression, the SQLite commit and the
rules under one GIL, on one core. Here the serving process binds the webhook's socket and
forks N receivers before it starts any thread. It accepts the connections and hands each to
the receiver holding the fewest (handoff.py); the receivers do everything up to the rows,
which they send to the serving process over a socket pair each (relay.py). The serving
process is the writer: the store's group commit, the other consumers, the read API; the rules
have a process of their own. A receiver answers 200 only once the writer says the batch is
committed, as one process does.

Lifecycle: SIGTERM or SIGINT to the serving process closes the listening socket and stops the
receivers (each finishes its requests in flight, which the writer still commits), then the
writer drains and closes
the store. A receiver that dies stops the whole tree (exit status 1), so a supervisor
restarts it; if the serving process is killed, the kernel kills the receivers
(``PR_SET_PDEATHSIG``) and the port is free again at once.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

from auditsink.asgi import Receive, Scope, Send
from auditsink.metrics import CONTENT_TYPE
from auditsink.pipeline import Pipeline
from auditsink.printer import Printer
from auditsink.receive.handoff import Dispatcher, HandoffServer, channel_pair
from auditsink.receive.relay import RelayClient, RelayServer, SharedCounts, counters_of
from auditsink.receive.server import (
    ServeOptions,
    _Loop,
    _retention_loop,
    _Server,
    _uvicorn_config,
    ListenerLimits,
    check_exposure,
    fit_connections,
    parse_listen,
    raise_open_file_limit,
    receiver_app,
)
from auditsink.runtime import lower_priority, tune_for_ingest
from auditsink.store.base import Store, StoreError

log = logging.getLogger("auditsink.serve")
_PR_SET_PDEATHSIG = 1
# How much nicer than the writer the receivers run, and the rules than the receivers
# (runtime.lower_priority): the one SQLite writer is the stage every batch waits for, the
# receivers are several, and the rules may lag behind by a few seconds. Measured on 2 cores:
# 1.11-1.14x the events/s of equal priorities (benchmarks/README.md, "Priorities").
RECEIVER_NICE = 10
RULES_NICE = 9


def bind(listen: str, backlog: int = 2048) -> socket.socket:
    """The webhook's listening socket, bound here so that a port in use fails at once."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog)


@dataclass
class Receivers:
    """The forked receiver processes, as the writer sees them."""

    pids: list[int]
    sockets: list[socket.socket]  # the writer's end of each receiver's socket pair
    queue: SharedCounts
    listener: socket.socket  # the webhook's: the writer accepts, then hands over
    channels: list[socket.socket]  # the writer's end of each receiver's handoff channel
    closed: SharedCounts  # connections each receiver has closed
    stopping: bool = False
    failed: bool = False
    gone: set[int] = field(default_factory=set)
    #: processes of their own beside the receivers (the rules): name -> pid
    helpers: dict[str, int] = field(default_factory=dict)
    # a pipe's write end per helper, and per receiver opening a store of its own
    _ready: list[int] = field(default_factory=list)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to every receiver still running."""
        for index, pid in enumerate(self.pids):
            if index not in self.gone:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def fork_helper(self, name: str, run: Callable[[], int]) -> None:
        """Fork a process of its own that calls ``run()`` once :meth:`helpers_go` is called
        (after the writer opened the store: never two processes creating the schema at once)
        and runs until SIGTERM; its exit status is ``run()``'s."""
        if threading.active_count() > 1:
            raise RuntimeError("helpers must be forked before any thread starts")
        parent = os.getpid()
        wait, go = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(go)
                for sock in (*self.sockets, *self.channels, self.listener):
                    sock.close()
                _die_with(parent)
                for sig in (signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_IGN)  # the writer says when: SIGTERM
                if os.read(wait, 1) == b"1":
                    status = run()
            except BaseException:
                log.exception("%s process failed", name)
            finally:
                os._exit(status)
        os.close(wait)
        self.helpers[name] = pid
        self._ready.append(go)

    def helpers_go(self, go: bool = True) -> None:
        """Let the helpers, and receivers with a store of their own, start once the writer
        has opened the store (or, with ``go=False``, exit at once)."""
        for fd in self._ready:
            os.write(fd, b"1" if go else b"0")
            os.close(fd)
        self._ready.clear()

    def helper_failed(self) -> str | None:
        """The name of a helper that exited on its own, if one did."""
        for name, pid in list(self.helpers.items()):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                del self.helpers[name]
                return name
        return None

    def stop_helpers(self) -> None:
        """SIGTERM the helpers and wait for them (after the receivers stopped)."""
        for pid in self.helpers.values():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in self.helpers.values():
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.helpers.clear()

    def reap(self) -> None:
        """Wait for every receiver to exit."""
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass

    def kill(self) -> None:
        """Stop them now (the writer could not start)."""
        self.helpers_go(False)
        self.signal(signal.SIGKILL)
        self.reap()
        self.stop_helpers()


def start_receivers(count: int, sock: socket.socket, pipeline: Pipeline, options: ServeOptions,
                    *, url: str, queue_events: int,
                    own_store: Callable[[], Store] | None = None) -> Receivers:
    """Fork ``count`` receivers serving the connections accepted on ``sock`` through
    ``pipeline`` (no store: its rows go to the writer). With ``own_store`` (PostgreSQL, which
    takes many writers) each receiver commits to a store of its own instead, opened once
    :meth:`Receivers.helpers_go` says the writer has created the schema. Call before this
    process starts any thread: a thread does not survive a fork, and a lock it held would
    stay held in the child."""
    if threading.active_count() > 1:
        raise RuntimeError("receivers must be forked before any thread starts")
    queue, closed = SharedCounts(), SharedCounts(count)
    print_lock = multiprocessing.get_context("fork").Lock()
    parent = os.getpid()
    pids: list[int] = []
    ours: list[socket.socket] = []
    channels: list[socket.socket] = []
    ready: list[int] = []  # with own_store: a pipe's write end per receiver
    for slot in range(count):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channel, their_channel = channel_pair()
        wait, go = os.pipe() if own_store is not None else (-1, -1)
        pid = os.fork()
        if pid == 0:  # the receiver
            status = 1
            try:
                for other in (*ours, *channels, mine, channel, sock):
                    other.close()
                for fd in (*ready, go):
                    if fd >= 0:
                        os.close(fd)
                _die_with(parent)
                if own_store is None:  # one writer for all: it goes first (PostgreSQL takes many)
                    lower_priority(RECEIVER_NICE)
                client = RelayClient(theirs, queue, url=url, queue_events=queue_events)
                handoff = (their_channel, closed, slot)
                store = None
                if own_store is not None:
                    if os.read(wait, 1) != b"1":
                        os._exit(0)  # the writer could not start
                    store = own_store()
                status = _run_receiver(handoff, count, pipeline, options, client, print_lock,
                                       store)
            except BaseException:
                log.exception("receiver process failed")
            finally:
                os._exit(status)
        theirs.close()
        their_channel.close()
        if own_store is not None:
            os.close(wait)
            ready.append(go)
        pids.append(pid)
        ours.append(mine)
        channels.append(channel)
    return Receivers(pids, ours, queue, sock, channels, closed, _ready=ready)


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when the writer dies (Linux), as it would a thread."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


class _LockedPrinter:
    """The printer of one receiver among several: whole batches, one receiver at a time, so
    lines written to one stdout never interleave."""

    def __init__(self, printer: Printer, lock: Any) -> None:
        self.printer = printer
        self.lock = lock

    def write(self, items: Any, cluster: str = "") -> None:
        with self.lock:
            self.printer.write(items, cluster)


class _TreeMetrics:
    """``GET /metrics`` on a receiver answers for the whole process tree (from the writer)."""

    def __init__(self, app: Any, client: RelayClient) -> None:
        self.app = app
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["path"] != "/metrics"
                or scope["method"] not in ("GET", "HEAD")):
            await self.app(scope, receive, send)
            return
        try:
            body, status = await self.client.scrape(), 200
        except (StoreError, TimeoutError):
            body, status = b"the writer process did not answer\n", 503
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", CONTENT_TYPE.encode() if status == 200 else b"text/plain"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _run_receiver(handoff: tuple[socket.socket, SharedCounts, int], count: int,
                  pipeline: Pipeline, options: ServeOptions, client: RelayClient,
                  print_lock: Any, store: Store | None = None) -> int:
    """Serve the connections handed over until SIGTERM: through the writer (``client``), or
    committing to ``store`` of its own, drained and closed after the last request."""
    pipeline.store = cast(Any, client) if store is None else store
    if pipeline.printer is not None:
        pipeline.printer = cast(Any, _LockedPrinter(pipeline.printer, print_lock))
    app = _TreeMetrics(receiver_app(pipeline, options), client)
    limits = fit_connections(_share_of(options.limits, count), 1, raise_open_file_limit())
    _Loop.tls_handshake_timeout = limits.tls_handshake_timeout
    server = HandoffServer(_uvicorn_config(app, options.listen, options.tls, limits), *handoff)
    if options.authenticator is not None and hasattr(options.authenticator, "reload"):
        signal.signal(signal.SIGHUP, lambda *_: _reload(options.authenticator))
    else:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    async def main() -> None:
        await client.start(lambda: counters_of(pipeline.metrics))

        async def writer_gone() -> None:
            await client.lost.wait()
            if not server.should_exit:
                log.error("the writer process is gone: this receiver stops")
                server.should_exit = True

        watch = asyncio.create_task(writer_gone())
        try:
            await server.serve()
        finally:
            watch.cancel()
            await client.close()

    tune_for_ingest()
    try:
        with asyncio.Runner(loop_factory=_Loop) as runner:
            runner.run(main())
    finally:
        if store is not None:
            _close(store)
    return 0


def _share_of(limits: ListenerLimits, count: int) -> ListenerLimits:
    """One receiver's part of ``--max-connections``: the writer hands each new connection to
    the receiver holding the fewest, so they fill up evenly.

    >>> _share_of(ListenerLimits(max_connections=1000), 3).max_connections
    334
    """
    return replace(limits, max_connections=-(-limits.max_connections // count))


def _reload(authenticator: Any) -> None:
    try:
        authenticator.reload()
        log.info("reloaded credentials (SIGHUP), pid %d", os.getpid())
    except Exception as exc:  # keep serving with the old credentials
        log.error("credential reload failed, keeping the previous ones: %s", exc)


# -- the writer -----------------------------------------------------------------------------------


def serve_writer(receivers: Receivers, pipeline: Pipeline, options: ServeOptions,
                 api_app: Any = None, consumers: list[Any] | None = None) -> bool:
    """Be the writer of ``receivers`` until they have all stopped: commit their batches,
    run the consumers and the read API; then drain and close the store. Returns False when
    a receiver died (the caller exits with an error)."""
    check_exposure(options)
    store = pipeline.store
    assert store is not None
    relay = RelayServer(store, pipeline.metrics, receivers.queue)
    dispatcher = Dispatcher(receivers.listener, receivers.channels, receivers.closed)
    pipeline.metrics.register(dispatcher)
    api_server = None
    if api_app is not None and options.api_listen:
        limits = fit_connections(options.limits, 1, raise_open_file_limit())
        api_server = _Server(_uvicorn_config(api_app, options.api_listen, {}, limits))
    stop_background = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop_background,), daemon=True,
                                name=f"auditsink-{type(c).__name__.lower()}")
               for c in consumers or []]
    if options.retention_seconds:
        threads.append(threading.Thread(
            target=_retention_loop, args=(store, options.retention_seconds, stop_background),
            name="auditsink-retention", daemon=True))
    for thread in threads:
        thread.start()
    tune_for_ingest()
    try:
        with asyncio.Runner(loop_factory=_Loop) as runner:
            runner.run(_write(receivers, relay, dispatcher, api_server))
    finally:
        receivers.signal(signal.SIGKILL)  # only those still running: none, unless we failed
        receivers.reap()
        receivers.stop_helpers()
        stop_background.set()
        for thread in threads:
            thread.join(timeout=10)
        _close(store)
    return not receivers.failed


async def _write(receivers: Receivers, relay: RelayServer, dispatcher: Dispatcher,
                 api_server: Any) -> None:
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Future[None]] = []

    def stop() -> None:
        if not receivers.stopping:
            receivers.stopping = True
            stopping.append(asyncio.ensure_future(stop_receivers()))

    async def stop_receivers() -> None:
        await dispatcher.stop()  # no new connections, then
        receivers.signal(signal.SIGTERM)  # each receiver finishes what it has in flight

    def lost(index: int) -> None:
        receivers.gone.add(index)
        if not receivers.stopping:
            log.error("receiver process %d exited unexpectedly: stopping",
                      receivers.pids[index])
            receivers.failed = True
            stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    loop.add_signal_handler(signal.SIGHUP, lambda: receivers.signal(signal.SIGHUP))
    async def watch_helpers() -> None:
        while True:
            await asyncio.sleep(1.0)
            name = receivers.helper_failed()
            if name is not None and not receivers.stopping:
                log.error("the %s process exited unexpectedly: stopping", name)
                receivers.failed = True
                stop()

    api_task = asyncio.create_task(api_server._serve()) if api_server is not None else None
    watch = asyncio.create_task(watch_helpers())
    receivers.helpers_go()
    dispatcher.start()
    try:
        await relay.serve(receivers.sockets, lost)
    finally:
        watch.cancel()
        await dispatcher.stop()
        if api_task is not None:
            api_server.should_exit = True
            await asyncio.gather(api_task, return_exceptions=True)


def _close(store: Store) -> None:
    try:
        store.close()
    except Exception:
        log.exception("closing the store failed")


def receiver_count(setting: int, store_url: str, cpus: Callable[[], int | None] = os.cpu_count,
                   ) -> int:
    """How many receivers ``--receivers`` means: 0 is one per core for SQLite and
    PostgreSQL, else 1.

    >>> receiver_count(0, "sqlite:///a.db", lambda: 2), receiver_count(0, "none", lambda: 2)
    (2, 1)
    """
    if setting:
        return setting
    if not store_url.lower().startswith(("sqlite:", "postgres:", "postgresql:")):
        return 1
    return max(1, min(cpus() or 1, 8))
