"""``auditsink worker --metrics-listen``: a worker's Prometheus metrics over plain HTTP.

A worker serves no API, so a few lines of asyncio answer ``GET /metrics`` and
``GET /healthz`` (one request per connection, which is how Prometheus scrapes) instead of
another web server in the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

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
            ("auditsink_rules_lag_events", "gauge", "Committed events not yet evaluated by the rules.",
             detector.lag),
            ("auditsink_rules_active", "gauge",
             "Whether this process runs the rules (1) or another one does (0).",
             lambda: int(detector.active)),
        ]
    return metrics


def render(metrics: list[Metric]) -> bytes:
    """The Prometheus text exposition format."""
    lines: list[str] = []
    for name, kind, help_text, read in metrics:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {read()}"]
    return ("\n".join(lines) + "\n").encode()


async def start_metrics_server(host: str, port: int, metrics: list[Metric],
                               extra: Callable[[], bytes] | None = None) -> asyncio.Server:
    """Answer ``GET /metrics`` and ``GET /healthz`` on ``host:port``; close it when done."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            parts = head.split(b" ", 2)
            path = parts[1].split(b"?", 1)[0] if len(parts) == 3 else b""
            if parts[0] != b"GET":
                status, kind, body = b"405 Method Not Allowed", b"text/plain", b"use GET\n"
            elif path == b"/metrics":
                status, kind, body = b"200 OK", b"text/plain; version=0.0.4", render(metrics) + (extra() if extra else b"")
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

    return await asyncio.start_server(answer, host, port)
