"""``auditsink worker --metrics-listen``: a worker's Prometheus metrics over plain HTTP.

A worker serves no API, so a few lines of asyncio answer ``GET /metrics`` and
``GET /healthz`` (one request per connection, which is how Prometheus scrapes) instead of
another web server in the process. The exposition is prometheus-client's, from the process's
one registry (:func:`metrics_registry`); the request head is read with a 16 KiB limit and a
5 s timeout, so a client can hold neither memory nor a descriptor for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.core import Metric as Family

from auditsink.metrics import CONTENT_TYPE

# name, Prometheus type, help text, how to read the value when scraped
Metric = tuple[str, str, str, Callable[[], float]]


def worker_metrics(worker: Any, store: Any, detector: Any = None) -> list[Metric]:
    """What a worker reports: its own counts, the bus lag, the store, and the rules if it
    runs them (``--detect``)."""
    stats = worker.stats
    metrics: list[Metric] = [
        ("auditsink_worker_batches_total", "counter", "Batches stored and acknowledged.",
         lambda: stats.messages),
        ("auditsink_worker_events_stored_total", "counter", "Events this worker stored.",
         lambda: stats.stored),
        ("auditsink_worker_duplicate_events_total", "counter",
         "Events that were already stored (redeliveries, API server retries).",
         lambda: stats.duplicates),
        ("auditsink_worker_failed_batches_total", "counter",
         "Batches the store failed to commit, left for redelivery.", lambda: stats.failed),
        ("auditsink_worker_dropped_batches_total", "counter",
         "Undecodable messages dropped from the stream.", lambda: stats.dropped),
        ("auditsink_bus_waiting_batches", "gauge",
         "Batches in the stream no worker has taken yet (the bus lag; refreshed every 15 s).",
         lambda: stats.waiting),
        ("auditsink_bus_unacknowledged_batches", "gauge",
         "Batches taken by workers and not stored yet (refreshed every 15 s).",
         lambda: stats.unacknowledged),
        ("auditsink_store_queue_events", "gauge", "Events waiting for the store writer.",
         store.queue_depth),
    ]
    if hasattr(store, "last_commit_seconds"):
        metrics.append(("auditsink_store_last_commit_seconds", "gauge",
                        "How long the writer's latest group commit took.",
                        lambda: store.last_commit_seconds))
    if detector is not None:
        metrics += [
            ("auditsink_rules_lag_events", "gauge",
             "Committed events not yet evaluated by the rules.", detector.lag),
            ("auditsink_rules_active", "gauge",
             "Whether this process runs the rules (1) or another one does (0).",
             lambda: int(detector.active)),
        ]
    return metrics


class _Values:
    """A prometheus-client collector reading each metric's value when scraped."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Family]:
        for name, kind, help_text, read in self.metrics:
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, help_text, value=read())


def metrics_registry(metrics: list[Metric]) -> CollectorRegistry:
    """The worker process's registry, holding ``metrics``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Values(metrics))
    return registry


def render(metrics: list[Metric]) -> bytes:
    """The Prometheus text exposition format (prometheus-client's)."""
    return generate_latest(metrics_registry(metrics))


async def start_metrics_server(host: str, port: int, metrics: list[Metric],
                               collectors: Sequence[Any] = ()) -> asyncio.Server:
    """Answer ``GET /metrics`` and ``GET /healthz`` on ``host:port``; close it when done.

    ``collectors`` (prometheus-client collectors: the outputs') join the same registry.
    """
    registry = metrics_registry(metrics)
    for collector in collectors:
        registry.register(collector)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            head = head[: head.find(b"\r\n")]
            parts = head.split(b" ", 2)
            path = parts[1].split(b"?", 1)[0] if len(parts) == 3 else b""
            if parts[0] != b"GET":
                status, kind, body = b"405 Method Not Allowed", b"text/plain", b"use GET\n"
            elif path == b"/metrics":
                status, kind, body = b"200 OK", CONTENT_TYPE.encode(), generate_latest(registry)
            elif path == b"/healthz":
                status, kind, body = b"200 OK", b"application/json", b'{"status": "ok"}\n'
            else:
                status, kind, body = b"404 Not Found", b"text/plain", b"try /metrics\n"
            writer.write(b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (status, kind, len(body), body))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            pass  # a client that went away or sent no request: nothing to answer
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port, limit=16 * 1024)
