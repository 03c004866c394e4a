"""NATS JetStream as a bus between the receivers and the store (issue 8).

``auditsink serve --bus nats://...`` publishes each admitted batch to a JetStream stream and
answers 200 once JetStream acknowledged it (the PubAck: stored on a quorum of the stream's
replicas); ``auditsink worker`` moves the batches into the store. :class:`NatsBus` has the
``submit`` shape the pipeline calls on a store, so the receiver does not know the difference.

nats-py is an optional dependency, imported only when ``--bus`` is used.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from auditsink.bus.message import Message, encode
from auditsink.model import BadItem, Item
from auditsink.store.base import Overloaded, StoreError, WriteResult

log = logging.getLogger("auditsink.bus")

DEFAULT_STREAM = "auditsink"
DEFAULT_SUBJECT = "auditsink.events"
DEFAULT_CONSUMER = "auditsink-worker"
# The API server retries a failed batch after sleeping ~10, 15, 22 and 34 s, each attempt
# taking up to 30 s: five minutes covers the whole retry schedule (k8s-audit-facts W13).
DUPLICATE_WINDOW = 300.0
_JS_ERR_STREAM_NAME_IN_USE = 10058


class BusError(Exception):
    """The bus cannot be used as configured; the message says what to do."""


class BusUnavailable(Overloaded):
    """JetStream is unreachable or slow: answer 429 with Retry-After, the sender retries."""

    def __init__(self, reason: str, retry_after: int = 2) -> None:
        super().__init__(retry_after)
        self.args = (reason,)


def import_nats() -> Any:
    """The nats-py package, or a :class:`BusError` saying how to install it."""
    try:
        import nats
    except ImportError:
        raise BusError("--bus needs the NATS client library: pip install 'auditsink[bus]' "
                       "(or pip install nats-py)") from None
    return nats


@dataclass
class BusConfig:
    """Where the bus is: the NATS servers and the stream's name, subject and replicas."""

    servers: list[str]
    stream: str = DEFAULT_STREAM
    subject: str = DEFAULT_SUBJECT
    replicas: int = 1


def parse_servers(value: str) -> list[str]:
    """``--bus`` to a server list.

    >>> parse_servers("nats://a:4222, nats://b:4222")
    ['nats://a:4222', 'nats://b:4222']
    """
    servers = [part.strip() for part in value.split(",") if part.strip()]
    for server in servers:
        if "://" not in server:
            raise BusError(f"--bus {server!r}: expected nats://HOST:PORT (comma-separated for "
                           "a cluster)")
    if not servers:
        raise BusError("--bus: expected nats://HOST:PORT[,nats://HOST:PORT...]")
    return servers


async def connect(config: BusConfig, name: str, timeout: float = 10.0) -> Any:
    """Connect to the first reachable server; reconnect forever afterwards."""
    nats = import_nats()
    nc = nats.NATS()
    last_error: list[BaseException] = []

    async def on_error(exc: BaseException) -> None:
        last_error[:] = [exc]
        log.debug("nats: %s", exc)

    async def on_disconnected() -> None:
        if not nc.is_closed:  # also called by our own close()
            log.warning("disconnected from NATS; reconnecting")

    async def on_reconnected() -> None:
        url = nc.connected_url
        log.info("reconnected to NATS at %s", url.netloc if url else "?")

    try:
        # max_reconnect_attempts=-1 also makes the first connect retry forever: bound it.
        await asyncio.wait_for(nc.connect(
            servers=config.servers, name=name, connect_timeout=2, reconnect_time_wait=0.5,
            max_reconnect_attempts=-1, error_cb=on_error, disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
        ), timeout)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        await _close_quietly(nc)
        reason = last_error[0] if last_error else exc
        raise BusError(f"cannot connect to NATS at {','.join(config.servers)} within "
                       f"{timeout:g}s: {reason or type(reason).__name__}") from None
    return nc


async def _close_quietly(nc: Any) -> None:
    try:
        await nc.close()
    except Exception:  # noqa: BLE001, S110 - closing a connection that never opened may fail
        pass


async def ensure_stream(js: Any, config: BusConfig) -> None:
    """Create the stream if missing; an existing one is used as it is (its owner may have
    tuned it with ``nats stream edit``), unless it cannot receive our subject."""
    from nats.js import api
    from nats.js.errors import BadRequestError, NotFoundError

    wanted = api.StreamConfig(
        name=config.stream, subjects=[config.subject], num_replicas=config.replicas,
        storage=api.StorageType.FILE,
        # A work queue: a batch is deleted once a worker acknowledged it (it is in the store).
        retention=api.RetentionPolicy.WORK_QUEUE,
        # When the stream is full, refuse new batches (429, the API server retries) rather
        # than the default of silently deleting the oldest ones, which no worker stored yet.
        discard=api.DiscardPolicy.NEW,
        duplicate_window=DUPLICATE_WINDOW,
    )
    try:
        existing = (await js.stream_info(config.stream)).config
    except NotFoundError:
        try:
            await js.add_stream(wanted)
            log.info("created JetStream stream %s (subject %s, %d replicas)", config.stream,
                     config.subject, config.replicas)
            return
        except BadRequestError as exc:
            # Another replica or worker created it in between: use theirs.
            if exc.err_code != _JS_ERR_STREAM_NAME_IN_USE:
                raise BusError(f"cannot create JetStream stream {config.stream!r}: "
                               f"{exc.description}") from None
        existing = (await js.stream_info(config.stream)).config
    if config.subject not in (existing.subjects or []):
        raise BusError(f"JetStream stream {config.stream!r} exists but does not take subject "
                       f"{config.subject!r} (it takes {', '.join(existing.subjects or [])}): pass "
                       "--bus-subject accordingly, or another --bus-stream")
    if existing.num_replicas != config.replicas:
        log.warning("stream %s has %s replicas, not the %d of --bus-replicas; keeping it as it is "
                    "(change it with `nats stream edit %s --replicas %d`)", config.stream,
                    existing.num_replicas, config.replicas, config.stream, config.replicas)


class NatsBus:
    """A pipeline sink that publishes admitted batches to JetStream instead of a store.

    The NATS connection lives on its own event loop in a thread, so it is opened before the
    server's loop exists and closed after it ends, exactly like a store's writer thread.
    """

    def __init__(self, config: BusConfig, timeout: float = 5.0, max_inflight: int = 1024,
                 connect_timeout: float = 10.0, health_interval: float = 2.0) -> None:
        self.config = config
        self.url = f"NATS stream {config.stream} at {','.join(config.servers)}"
        self.timeout = timeout
        self.max_inflight = max_inflight
        self.connect_timeout = connect_timeout
        self.health_interval = health_interval
        self.stream_ok = False
        self.pending_messages = 0
        self.stream_bytes = 0
        self._nc: Any = None
        self._js: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._inflight = 0
        self._inflight_events = 0
        self._limit = 1024 * 1024
        self._last_warning = 0.0
        self._needs_setup = False

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, create the stream if needed and start watching its health."""
        import_nats()
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="auditsink-bus", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), loop).result()
        except BaseException:
            self.close()
            raise

    async def _start(self) -> None:
        nats = import_nats()
        self._nc = await connect(self.config, "auditsink-serve", self.connect_timeout)
        self._js = self._nc.jetstream(timeout=self.timeout)
        # Headers count towards max_payload; message.encode leaves room for them.
        self._limit = self._nc.max_payload
        try:
            await ensure_stream(self._js, self.config)
            self.stream_ok = True
        except (TimeoutError, nats.errors.Error) as exc:
            # A cluster starting together may still be electing its JetStream leaders: serve
            # (not ready, 429s) rather than exit, and let the watcher set the stream up.
            log.warning("JetStream is not ready yet (%s); /readyz answers 503 until it is",
                        _describe(exc))
            self._needs_setup = True
        self._watcher = asyncio.create_task(self._watch())

    def close(self) -> None:
        """Wait for in-flight publishes, close the connection and stop the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        self._loop = self._thread = None

    async def _shutdown(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        deadline = time.monotonic() + self.timeout + 1
        while self._inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._nc is not None:
            await _close_quietly(self._nc)

    # -- publishing ------------------------------------------------------------------------

    def submit(self, items: list[Item], cluster: str = "",
               bad: Sequence[BadItem] = ()) -> asyncio.Future[WriteResult]:
        """Publish a batch; the future resolves once JetStream stored every part of it.

        Raises :class:`BusUnavailable` (an :class:`Overloaded`: 429) when NATS is unreachable
        or too many batches are waiting for their acknowledgement.
        """
        loop, nc = self._loop, self._nc
        if loop is None or nc is None:
            raise StoreError("the bus is not open")
        if not nc.is_connected:
            raise self._unavailable("not connected to NATS (reconnecting)")
        messages = encode(items, cluster, bad, self._limit)
        with self._lock:
            if self._inflight >= self.max_inflight:
                raise self._unavailable(f"{self._inflight} batches waiting for JetStream", 1)
            self._inflight += 1
            self._inflight_events += len(items)
        future = asyncio.run_coroutine_threadsafe(self._publish(messages), loop)
        future.add_done_callback(lambda _: self._release(len(items)))
        return asyncio.wrap_future(future)

    def write(self, items: list[Item], cluster: str = "",
              bad: Sequence[BadItem] = ()) -> WriteResult:
        """Publish from a plain thread and wait for JetStream's acknowledgement."""
        if self._loop is None:
            raise StoreError("the bus is not open")
        messages = encode(items, cluster, bad, self._limit)
        return asyncio.run_coroutine_threadsafe(self._publish(messages), self._loop).result()

    def _release(self, events: int) -> None:
        with self._lock:
            self._inflight -= 1
            self._inflight_events -= events

    async def _publish(self, messages: list[Message]) -> WriteResult:
        nats = import_nats()
        js, stream, subject = self._js, self.config.stream, self.config.subject
        # Parts of a split batch are published concurrently; the batch is acknowledged only
        # when all are. A retry republishes all parts: the ones already stored are dropped by
        # the duplicate window (same Nats-Msg-Id), and the store deduplicates events anyway.
        acks = await asyncio.gather(*(
            js.publish(subject, m.payload, timeout=self.timeout, stream=stream,
                       headers={"Nats-Msg-Id": m.msg_id})
            for m in messages), return_exceptions=True)
        result = WriteResult()
        for message, ack in zip(messages, acks):
            if isinstance(ack, (asyncio.TimeoutError, nats.errors.Error)):
                raise self._unavailable(_describe(ack))
            if isinstance(ack, BaseException):
                raise ack
            if ack.duplicate:
                result.duplicates += message.events
            else:
                result.stored += message.events
        self.stream_ok = True
        return result

    def _unavailable(self, reason: str, retry_after: int = 2) -> BusUnavailable:
        now = time.monotonic()
        if now - self._last_warning > 5:  # one line per 5 s, not one per request
            self._last_warning = now
            log.warning("answering 429: the bus cannot take batches: %s", reason)
        return BusUnavailable(reason, retry_after)

    # -- health ----------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Connected, and the stream answered its last health check (it has a leader)."""
        nc = self._nc
        return nc is not None and nc.is_connected and self.stream_ok

    def queue_depth(self) -> int:
        """Events published and not yet acknowledged by JetStream."""
        return self._inflight_events

    def has_room(self) -> bool:
        """Whether another batch may be published now. Not the health check: a publish is
        tried while the stream looks unhealthy, since it can be back (a new leader) before
        the next check says so."""
        return self._inflight < self.max_inflight

    @property
    def queue_events(self) -> int:
        """The receiver's /readyz is ``queue_depth() < queue_events``: 0 when the bus is down
        makes it answer 503, so a load balancer stops sending here while NATS is away."""
        return 1 << 30 if self.healthy else 0

    async def _watch(self) -> None:
        from nats.js.errors import NotFoundError

        nats = import_nats()
        while True:
            await asyncio.sleep(self.health_interval)
            was_ok = self.stream_ok
            if self._needs_setup:
                try:
                    await ensure_stream(self._js, self.config)
                    self._needs_setup = False
                except BusError as exc:  # someone made a stream of that name we cannot use
                    log.warning("%s", exc)
                    continue
                except (TimeoutError, nats.errors.Error) as exc:
                    log.debug("stream setup: %s", _describe(exc))
                    continue
            try:
                info = await self._js.stream_info(self.config.stream)
            except NotFoundError:
                log.warning("stream %s disappeared; creating it again", self.config.stream)
                self.stream_ok = False
                self._needs_setup = True
                continue
            except (TimeoutError, nats.errors.Error) as exc:
                self.stream_ok = False
                if was_ok:
                    log.warning("stream %s is not answering: %s", self.config.stream,
                                _describe(exc))
                continue
            self.stream_ok = True
            self.pending_messages = info.state.messages
            self.stream_bytes = info.state.bytes
            if not was_ok:
                log.info("stream %s is answering again", self.config.stream)

    def register_metrics(self, metrics: Any) -> None:
        """Bus gauges on the receiver's /metrics."""
        metrics.gauge("auditsink_bus_up", "1 when NATS is connected and the stream answers.",
                      lambda: 1 if self.healthy else 0)
        metrics.gauge("auditsink_bus_pending_messages",
                      "Batches in the stream not yet stored by a worker (the bus lag).",
                      lambda: self.pending_messages)
        metrics.gauge("auditsink_bus_stream_bytes", "Size of the stream.",
                      lambda: self.stream_bytes)


def _describe(exc: BaseException) -> str:
    """A short reason for logs: ``TimeoutError`` says nothing by its str()."""
    name = type(exc).__name__
    if isinstance(exc, asyncio.TimeoutError) or "Timeout" in name:
        return "JetStream did not acknowledge in time (no stream leader, or overloaded)"
    if "NoStreamResponse" in name or "NoResponders" in name:
        return "no JetStream server answers for the stream (leader election, or stream missing)"
    description = getattr(exc, "description", None)
    return f"{name}: {description}" if description else (str(exc) or name)
