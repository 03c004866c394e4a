"""``auditsink worker``: move batches from the JetStream stream into the store.

A durable pull consumer shared by every worker (JetStream hands each message to one of them, so
more workers = more throughput). A message is acknowledged only after the store committed its
events: a worker killed at any moment leaves its unacknowledged messages to be redelivered to
another after ``ack_wait``. That is at-least-once delivery into the store, and the store's
deduplication (cluster + auditID + stage + stageTimestamp) makes it exactly once in the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from auditsink.bus.message import decode
from auditsink.bus.nats import (
    DEFAULT_CONSUMER,
    BusConfig,
    BusError,
    _describe,
    connect,
    ensure_stream,
    import_nats,
)
from auditsink.model import BadItem, Item
from auditsink.store.base import Overloaded, Store, WriteResult

log = logging.getLogger("auditsink.worker")


@dataclass
class WorkerStats:
    """What a worker did since it started, and the consumer's backlog at the last report."""

    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    failed: int = 0
    dropped: int = 0
    waiting: int = 0
    unacknowledged: int = 0
    started: float = field(default_factory=time.monotonic)


class Worker:
    """Fetch batches, submit them to the store (group commit), ack each after its commit."""

    def __init__(self, config: BusConfig, store: Store, consumer: str = DEFAULT_CONSUMER,
                 fetch: int = 64, ack_wait: float = 30.0, report_every: float = 15.0) -> None:
        self.config = config
        self.store = store
        self.consumer = consumer
        self.fetch = fetch
        self.ack_wait = ack_wait
        self.report_every = report_every
        self.stats = WorkerStats()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; the batch in hand is committed and acked first."""
        nats = import_nats()
        nc = await connect(self.config, f"auditsink-worker/{self.consumer}")
        reporter: asyncio.Task[None] | None = None
        try:
            js = nc.jetstream(timeout=5.0)
            sub = await self._subscribe(js, stop)
            if sub is None:
                return
            log.info("worker consuming stream %s as %s into %s", self.config.stream, self.consumer,
                     self.store.url)
            reporter = asyncio.create_task(self._report(sub))
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(self.fetch, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    # Nothing to do for a second (fetch raises either, depending on the path).
                    continue
                except nats.errors.Error as exc:
                    # Reconnecting, or the consumer's leader is being elected: try again soon.
                    log.warning("fetch failed: %s", _describe(exc))
                    await asyncio.sleep(0.5)
                    continue
                await self._handle(msgs)
        finally:
            if reporter is not None:
                reporter.cancel()
                await asyncio.gather(reporter, return_exceptions=True)
            await nc.close()

    async def _subscribe(self, js: Any, stop: asyncio.Event) -> Any:
        """Create the stream and the durable consumer if needed, retrying while NATS settles."""
        nats = import_nats()
        from nats.js import api

        config = api.ConsumerConfig(
            durable_name=self.consumer, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=self.ack_wait,
            max_deliver=-1, filter_subject=self.config.subject,
            # Every worker pulls at most `fetch` at a time; this bounds redeliveries after a crash.
            max_ack_pending=max(1000, self.fetch * 16),
        )
        while not stop.is_set():
            try:
                await ensure_stream(js, self.config)
                try:
                    await js.add_consumer(self.config.stream, config)
                except nats.js.errors.BadRequestError as exc:
                    # Exists with other settings (an older worker's ack_wait): use it as it is.
                    log.warning("using the existing consumer %s: %s", self.consumer,
                                exc.description)
                return await js.pull_subscribe_bind(durable=self.consumer,
                                                    stream=self.config.stream)
            except BusError:
                raise
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("waiting for JetStream: %s", _describe(exc))
                await asyncio.sleep(1.0)
        return None

    async def _handle(self, msgs: list[Any]) -> None:
        decoded: list[tuple[Any, list[Item], str, list[BadItem]]] = []
        for msg in msgs:
            try:
                items, cluster, bad = decode(msg.data)
            except ValueError as exc:
                # Redelivering it would fail the same way forever: drop it, loudly.
                log.error("dropping message %s of stream %s: %s", _seq(msg), self.config.stream,
                          exc)
                self.stats.dropped += 1
                await _reply(msg.term())
                continue
            decoded.append((msg, items, cluster, bad))
        # Submit them all before waiting: the store commits them together (group commit).
        results = await asyncio.gather(
            *(self._store(items, cluster, bad) for _, items, cluster, bad in decoded),
            return_exceptions=True)
        for (msg, _, _, _), result in zip(decoded, results):
            if isinstance(result, BaseException):
                log.error("storing message %s failed, redelivering it: %s", _seq(msg), result)
                self.stats.failed += 1
                await _reply(msg.nak(delay=2))
                continue
            # After the commit, never before: a crash between the two only causes a
            # redelivery, which the store deduplicates.
            await _reply(msg.ack())
            self.stats.messages += 1
            self.stats.stored += result.stored
            self.stats.duplicates += result.duplicates

    async def _store(self, items: list[Item], cluster: str, bad: list[BadItem]) -> WriteResult:
        while True:
            try:
                return await self.store.submit(items, cluster, bad)
            except Overloaded:
                await asyncio.sleep(0.05)  # the store's queue is full: wait for its writer

    async def _report(self, sub: Any) -> None:
        """Log the backlog (the bus lag) and the throughput every ``report_every`` seconds."""
        nats = import_nats()
        last = (time.monotonic(), 0)
        while True:
            await asyncio.sleep(self.report_every)
            try:
                info = await sub.consumer_info()
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("cannot read the consumer's backlog: %s", _describe(exc))
                continue
            stats = self.stats
            stats.waiting = info.num_pending or 0
            stats.unacknowledged = info.num_ack_pending or 0
            now = time.monotonic()
            rate = (stats.stored + stats.duplicates - last[1]) / max(now - last[0], 1e-9)
            last = (now, stats.stored + stats.duplicates)
            log.info("bus lag: %d batches waiting, %d being stored by workers; this worker: "
                     "%d events stored, %d duplicates, %.0f events/s", stats.waiting,
                     stats.unacknowledged, stats.stored, stats.duplicates, rate)


async def _reply(coro: Any) -> None:
    """Ack, nak or term; a lost reply only means JetStream redelivers after ack_wait."""
    nats = import_nats()
    try:
        await coro
    except nats.errors.Error as exc:
        log.warning("could not answer JetStream (it will redeliver): %s", _describe(exc))


def _seq(msg: Any) -> str:
    try:
        return str(msg.metadata.sequence.stream)
    except Exception:  # noqa: BLE001 - not a JetStream message: no sequence to show
        return "?"
