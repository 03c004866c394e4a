"""``auditsink worker``: the consumer side of the NATS bus (``serve --bus`` is the producer).

Also home of the ``--bus*`` options both commands share.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from typing import Any

import click

from auditsink.cli import main
from auditsink.cli.common import F, config_option, store_option
from auditsink.logs import setup_logging

log = logging.getLogger("auditsink.cli")


def bus_options(f: F) -> F:
    """``--bus`` and the stream's ``--bus-stream``, ``--bus-subject``, ``--bus-replicas``."""
    f = click.option("--bus-replicas", default=1, show_default=True, type=click.IntRange(1, 5),
                     envvar="AUDITSINK_BUS_REPLICAS",
                     help="Copies JetStream keeps of every batch when creating the stream (3 survives losing a NATS node).")(f)
    f = click.option("--bus-subject", default="auditsink.events", show_default=True, envvar="AUDITSINK_BUS_SUBJECT",
                     help="Subject the batches are published on.")(f)
    f = click.option("--bus-stream", default="auditsink", show_default=True, envvar="AUDITSINK_BUS_STREAM",
                     help="JetStream stream holding the batches until a worker stored them.")(f)
    return click.option("--bus", "bus_url", metavar="nats://HOST:PORT[,...]", envvar="AUDITSINK_BUS",
                        help="NATS JetStream servers: `serve` publishes batches there instead of "
                        "storing them, `worker` stores them (docs/bus.md).")(f)


def bus_config(bus_url: str, stream: str, subject: str, replicas: int) -> Any:
    """The options as a :class:`auditsink.bus.nats.BusConfig`, or a usage error."""
    from auditsink.bus.nats import BusConfig, BusError, parse_servers

    try:
        return BusConfig(parse_servers(bus_url), stream=stream, subject=subject, replicas=replicas)
    except BusError as exc:
        raise click.UsageError(str(exc)) from None


def open_bus_sink(bus_url: str, stream: str, subject: str, replicas: int) -> Any:
    """Connect ``serve --bus``'s publisher, or fail with a message saying why."""
    from auditsink.bus.nats import BusError, NatsBus

    sink = NatsBus(bus_config(bus_url, stream, subject, replicas))
    try:
        sink.open()
    except BusError as exc:
        raise click.ClickException(str(exc)) from None
    return sink


@main.command("worker")
@config_option
@bus_options
@store_option
@click.option("--sync", type=click.Choice(["normal", "full"]), default="normal", show_default=True,
              help="normal: a commit survives a crash of auditsink (SIGKILL); full: also a power loss.")
@click.option("--bus-consumer", default="auditsink-worker", show_default=True, envvar="AUDITSINK_BUS_CONSUMER",
              help="Durable consumer name; workers sharing it split the work.")
@click.option("--fetch", default=64, show_default=True, help="Batches pulled (and committed together) at a time.")
@click.option("--ack-wait", default=30.0, show_default=True,
              help="Seconds before a batch a worker took but did not store goes to another worker.")
@click.option("--detect", is_flag=True,
              help="Also run the detection rules on the store (one process at a time runs them; "
              "the others stand by).")
@click.option("--rules", "rule_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="With --detect: Falco-format rule files (default: the built-in rules).")
@click.option("--notify", "notify_specs", multiple=True, metavar="KIND[:URL]",
              help="With --detect: send alerts to stdout, webhook:URL or slack:URL (repeatable).")
@click.option("--metrics-listen", metavar="HOST:PORT", envvar="AUDITSINK_METRICS_LISTEN",
              help="Serve Prometheus metrics (GET /metrics) and /healthz there (default: off).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
def worker_command(bus_url: str | None, bus_stream: str, bus_subject: str, bus_replicas: int, store_url: str,
                   sync: str, bus_consumer: str, fetch: int, ack_wait: float, detect: bool,
                   rule_files: tuple[str, ...], notify_specs: tuple[str, ...], metrics_listen: str | None,
                   log_format: str, log_level: str) -> None:
    """Store the batches `auditsink serve --bus` published; run as many as you need.

    \b
      auditsink worker --bus nats://nats-0:4222,nats://nats-1:4222 --store postgresql://...
    """
    from auditsink.bus.nats import BusError
    from auditsink.bus.worker import Worker
    from auditsink.store.base import StoreError, open_store

    setup_logging(log_format, log_level)
    if not bus_url:
        raise click.UsageError("--bus nats://HOST:PORT is required: the worker reads the bus")
    if (rule_files or notify_specs) and not detect:
        raise click.UsageError("--rules and --notify go with --detect")
    config = bus_config(bus_url, bus_stream, bus_subject, bus_replicas)
    metrics_address = None
    if metrics_listen:
        from auditsink.receive.server import ConfigError, parse_listen

        try:
            metrics_address = parse_listen(metrics_listen, "--metrics-listen")
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
    try:
        store = open_store(store_url, sync=sync)
        store.open()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    stop_background = threading.Event()
    threads: list[threading.Thread] = []
    consumers: list[Any] = []
    try:
        if detect:
            from auditsink.cli.serve import _consumers
            from auditsink.pipeline import Pipeline

            consumers = _consumers(Pipeline(store=store), rule_files, False, notify_specs,
                                   "WARNING", 10, "")
            threads = [threading.Thread(target=c.run, args=(stop_background,), daemon=True,
                                        name=f"auditsink-{type(c).__name__.lower()}") for c in consumers]
            for thread in threads:
                thread.start()
        worker = Worker(config, store, consumer=bus_consumer, fetch=fetch, ack_wait=ack_wait)
        from auditsink.bus.metrics import worker_metrics
        from auditsink.detect import Detector

        detector = next((c for c in consumers if isinstance(c, Detector)), None)
        asyncio.run(_run(worker, metrics_address, worker_metrics(worker, store, detector)))
    except BusError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        stop_background.set()
        for thread in threads:
            thread.join(timeout=10)
        store.close()
    stats = worker.stats
    log.info("worker stopped: %d batches, %d events stored, %d duplicates", stats.messages,
             stats.stored, stats.duplicates)


async def _run(worker: Any, metrics_address: tuple[str, int] | None, metrics: list[Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Finish the batches in hand (commit, ack), then leave: nothing is redelivered needlessly.
        loop.add_signal_handler(sig, stop.set)
    server = None
    if metrics_address is not None:
        from auditsink.bus.metrics import start_metrics_server

        try:
            server = await start_metrics_server(*metrics_address, metrics)
        except OSError as exc:
            raise click.ClickException(f"--metrics-listen {metrics_address[0]}:{metrics_address[1]}:"
                                       f" {exc.strerror or exc}") from None
        log.info("worker metrics on http://%s:%d/metrics", *metrics_address)
    try:
        await worker.run(stop)
    finally:
        if server is not None:
            server.close()
