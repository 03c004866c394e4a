"""Between the receiver processes and the one writer (``serve --receivers N``, issue 16).

Each receiver process does HTTP, authentication, decoding, the policy, redaction and the
rows' compression, then sends the batch's rows (:class:`~auditsink.store.sqlite.rows.PreparedBatch`,
msgpack) to the serving process over a Unix socket pair, and answers its sender only when the
writer says the batch is committed: the acknowledgement still follows the commit.

Frames, either way: a 4-byte length (kind and payload), a kind byte, a msgpack payload.

- ``B`` receiver -> writer: a batch, ``[id, PreparedBatch]``; ``A`` writer -> receiver: its
  outcome ``[id, status, stored, duplicates, message, duplicate_items]`` (status 0 committed,
  1 overloaded: answer 429, 2 the store failed: answer 503).
- ``M`` receiver -> writer: a scrape of ``/metrics`` ``[id]``; the writer asks every receiver
  for its counters (``S [token]``, answered ``C [token, counters]``), adds them up with its own
  gauges (queue, store, rules) and answers ``R [id, text]``: one scrape sees the whole
  process tree, whichever receiver took the connection.

The writer's queue depth is published in shared memory (:class:`SharedCounts`), so a receiver
refuses with 429 before reading a body when the writer is full, as one process does.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import mmap
import socket
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import zstandard
from prometheus_client.core import HistogramMetricFamily, Metric

from auditsink.metrics import LATENCY_BUCKETS, Metrics
from auditsink.model import BadItem, Item
from auditsink.store.base import Overloaded, StoreError, WriteResult
from auditsink.store.sqlite.rows import PreparedBatch, prepare

log = logging.getLogger("auditsink.relay")

_HEAD = struct.Struct("<Ic")
_ENCODE = msgspec.msgpack.Encoder().encode
_decode_any = msgspec.msgpack.Decoder().decode
_decode_batch = msgspec.msgpack.Decoder(tuple[int, PreparedBatch]).decode
OK, OVERLOADED, FAILED = 0, 1, 2
SCRAPE_TIMEOUT = 5.0
_NOTHING = WriteResult()


class SharedCounts:
    """A few integers in anonymous shared memory, made before the receivers are forked, each
    written by one process and read by the others: the writer's queue depth (slot 0 of the
    relay's), the connections each receiver has closed (handoff.py)."""

    def __init__(self, slots: int = 1) -> None:
        self._map = mmap.mmap(-1, 8 * max(1, slots))

    def set(self, value: int, slot: int = 0) -> None:
        struct.pack_into("<q", self._map, 8 * slot, value)

    def add(self, slot: int, value: int = 1) -> None:
        """Add to ``slot``; only its one writer may call this (it is not atomic)."""
        self.set(self.get(slot) + value, slot)

    def get(self, slot: int = 0) -> int:
        value: int = struct.unpack_from("<q", self._map, 8 * slot)[0]
        return value


def _frame(kind: bytes, payload: bytes) -> bytes:
    return _HEAD.pack(len(payload) + 1, kind) + payload


async def _read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readexactly(_HEAD.size)
    size, kind = _HEAD.unpack(head)
    return kind, await reader.readexactly(size - 1)


# -- the receiver's side ------------------------------------------------------------------------


class RelayClient:
    """What a receiver process's pipeline takes for its store: ``submit`` builds the rows,
    sends them to the writer process and resolves once they are committed there."""

    def __init__(self, sock: socket.socket, queue: SharedCounts, *, url: str, queue_events: int,
                 compression_level: int = 3, blob_events: int = 128) -> None:
        self.sock = sock
        self.queue = queue
        self.url = url
        self.queue_events = queue_events
        self.compressor = zstandard.ZstdCompressor(level=compression_level)
        self.blob_events = blob_events
        self.last_commit_seconds = 0.0
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.counters: Callable[[], dict[str, Any]] = dict
        self.lost = asyncio.Event()

    async def start(self, counters: Callable[[], dict[str, Any]]) -> None:
        """Connect the socket to the running loop; ``counters`` answers the writer's scrapes."""
        self.counters = counters
        reader, self._writer = await asyncio.open_connection(sock=self.sock)
        self._task = asyncio.create_task(self._read(reader))

    def submit(self, items: list[Item], cluster: str = "",
               bad: Sequence[BadItem] = ()) -> asyncio.Future[WriteResult]:
        """Send a batch's rows to the writer; the future resolves once they are committed."""
        if self._writer is None or self.lost.is_set():
            raise StoreError("the writer process is gone")
        queued = self.queue.get()
        if queued and queued + len(items) > self.queue_events:
            raise Overloaded(retry_after=1)
        prepared = prepare(items, cluster, bad, self.compressor, self.blob_events)
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        self._writer.write(_frame(b"B", _ENCODE((ident, prepared))))
        return future

    async def scrape(self) -> bytes:
        """The ``/metrics`` text of the whole process tree, from the writer."""
        if self._writer is None or self.lost.is_set():
            raise StoreError("the writer process is gone")
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        self._writer.write(_frame(b"M", _ENCODE([ident])))
        text: bytes = await asyncio.wait_for(future, SCRAPE_TIMEOUT * 2)
        return text

    def queue_depth(self) -> int:
        """Events waiting for the writer (all receivers')."""
        return self.queue.get()

    def has_room(self) -> bool:
        """Whether the writer's queue has room for another batch."""
        return self.queue.get() < self.queue_events

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                kind, payload = await _read_frame(reader)
                message = _decode_any(payload)
                if kind == b"A":
                    ident, status, stored, duplicates, text, repeated = message
                    future = self._waiting.pop(ident, None)
                    if future is None or future.done():
                        continue
                    if status == OK:
                        future.set_result(WriteResult(stored=stored, duplicates=duplicates,
                                                      duplicate_items=tuple(repeated)))
                    elif status == OVERLOADED:
                        future.set_exception(Overloaded(retry_after=1))
                    else:
                        future.set_exception(StoreError(text))
                elif kind == b"S":
                    assert self._writer is not None
                    self._writer.write(_frame(b"C", _ENCODE([message[0], self.counters()])))
                elif kind == b"R":
                    future = self._waiting.pop(message[0], None)
                    if future is not None and not future.done():
                        future.set_result(message[1])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.lost.set()
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(StoreError("the writer process is gone"))
            self._waiting.clear()

    async def close(self) -> None:
        """Stop reading and close the socket (the writer sees EOF: this receiver is done)."""
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


# -- the writer's side --------------------------------------------------------------------------


class RelayServer:
    """Reads every receiver's socket in the writer process, submits their batches to the
    store's group commit and answers each once committed; adds up the scrapes."""

    def __init__(self, store: Any, metrics: Metrics, queue: SharedCounts) -> None:
        self.store = store
        self.metrics = metrics
        self.queue = queue
        self._writers: list[asyncio.StreamWriter] = []
        self._tokens = itertools.count(1)
        self._scrapes: dict[int, tuple[asyncio.Future[None], list[dict[str, Any]], int]] = {}
        self.latency = _SummedLatency()
        metrics.registry.unregister(metrics.latency)  # the receivers' histograms, summed
        metrics.registry.register(self.latency)

    async def serve(self, socks: Sequence[socket.socket],
                    on_lost: Callable[[int], None]) -> None:
        """Serve every receiver until it closes its socket; ``on_lost(index)`` is called
        when one does (it stopped, or died)."""
        connections = [await asyncio.open_connection(sock=sock) for sock in socks]
        self._writers = [writer for _, writer in connections]
        await asyncio.gather(*(self._serve_one(index, reader, writer, on_lost)
                               for index, (reader, writer) in enumerate(connections)))

    async def _serve_one(self, index: int, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter, on_lost: Callable[[int], None]) -> None:
        try:
            while True:
                kind, payload = await _read_frame(reader)
                if kind == b"B":
                    self._submit(writer, *_decode_batch(payload))
                elif kind == b"C":
                    token, counters = _decode_any(payload)
                    self._counted(token, counters)
                elif kind == b"M":
                    asyncio.create_task(self._scrape(writer, _decode_any(payload)[0]))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
            writer.close()
            on_lost(index)

    def _submit(self, writer: asyncio.StreamWriter, ident: int, batch: PreparedBatch) -> None:
        def answer(status: int, result: WriteResult = _NOTHING, text: str = "") -> None:
            self.queue.set(self.store.queue_depth())
            if not writer.is_closing():
                writer.write(_frame(b"A", _ENCODE(
                    (ident, status, result.stored, result.duplicates, text,
                     result.duplicate_items))))

        try:
            future = self.store.submit_prepared(batch)
        except Overloaded:
            answer(OVERLOADED)
            return
        except Exception as exc:
            answer(FAILED, text=str(exc))
            return
        self.queue.set(self.store.queue_depth())

        def committed(done: asyncio.Future[WriteResult]) -> None:
            if done.cancelled():
                answer(FAILED, text="cancelled")
            elif done.exception() is not None:
                log.error("committing a batch of %d events failed: %s", len(batch.rows),
                          done.exception())
                answer(FAILED, text=str(done.exception()))
            else:
                answer(OK, done.result())

        future.add_done_callback(committed)

    async def _scrape(self, writer: asyncio.StreamWriter, ident: int) -> None:
        token = next(self._tokens)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        found: list[dict[str, Any]] = []
        self._scrapes[token] = (done, found, len(self._writers))
        for each in self._writers:
            each.write(_frame(b"S", _ENCODE([token])))
        try:
            await asyncio.wait_for(done, SCRAPE_TIMEOUT)
        except TimeoutError:
            log.warning("a receiver did not answer a scrape within %ss", SCRAPE_TIMEOUT)
        finally:
            self._scrapes.pop(token, None)
        sum_counters(self.metrics, found, self.latency)
        if not writer.is_closing():
            writer.write(_frame(b"R", _ENCODE([ident, self.metrics.render()])))

    def _counted(self, token: int, counters: dict[str, Any]) -> None:
        entry = self._scrapes.get(token)
        if entry is None:
            return
        done, found, expected = entry
        found.append(counters)
        if len(found) >= expected and not done.done():
            done.set_result(None)


# -- counters across processes ------------------------------------------------------------------


def counters_of(metrics: Metrics) -> dict[str, Any]:
    """A receiver's counters, as they cross the socket."""
    buckets: list[float] = []
    total = 0.0
    for family in metrics.latency.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets.append(sample.value)
            elif sample.name.endswith("_sum"):
                total = sample.value
    return {"events": [[*key, value] for key, value in metrics.events.items()],
            "requests": [[*key, value] for key, value in metrics.requests.items()],
            "auth_failures": [[*key, value] for key, value in metrics.auth_failures.items()],
            "bytes": metrics.bytes, "bad_items": metrics.bad_items,
            "duplicates": metrics.duplicates, "dropped_by_policy": metrics.dropped_by_policy,
            "latency": [buckets, total]}


def sum_counters(metrics: Metrics, found: list[dict[str, Any]], latency: _SummedLatency) -> None:
    """Set the writer's counters to the sum of every receiver's."""
    metrics.events = Counter()
    metrics.requests = Counter()
    metrics.auth_failures = Counter()
    metrics.bytes = metrics.bad_items = metrics.duplicates = metrics.dropped_by_policy = 0
    latency.reset()
    for counters in found:
        for key_value in counters["events"]:
            metrics.events[tuple(key_value[:-1])] += key_value[-1]
        for code, value in counters["requests"]:
            metrics.requests[(code,)] += value
        for method, value in counters["auth_failures"]:
            metrics.auth_failures[(method,)] += value
        metrics.bytes += counters["bytes"]
        metrics.bad_items += counters["bad_items"]
        metrics.duplicates += counters["duplicates"]
        metrics.dropped_by_policy += counters["dropped_by_policy"]
        latency.add(*counters["latency"])


class _SummedLatency:
    """The request-latency histogram of all receivers, for prometheus-client."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.buckets = [0.0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def add(self, buckets: list[float], total: float) -> None:
        for index, value in enumerate(buckets[:len(self.buckets)]):
            self.buckets[index] += value
        self.total += total

    def collect(self) -> list[Metric]:
        bounds = [str(b) for b in LATENCY_BUCKETS] + ["+Inf"]
        return [HistogramMetricFamily(
            "auditsink_request_duration_seconds", "Ingest request latency.",
            buckets=list(zip(bounds, self.buckets)), sum_value=self.total)]
