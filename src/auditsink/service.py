"""The composition root: the whole auditsink process, built from one :class:`Settings`.

``auditsink serve``, ``worker`` and ``import`` parse their settings and call :func:`run`,
:func:`run_worker` and :func:`import_files`; tests (and Python callers) call them, or
:func:`build` to get the assembled parts without serving. This is the one module that knows
how the stages fit together:

    receive ─▶ Pipeline (admit, print) ─▶ store or bus ─┬─▶ read API + web UI (+ rollup)
                                                        ├─▶ rules ─▶ alerts ─▶ notifiers
                                                        └─▶ outputs (forward/)

Errors: :class:`~auditsink.settings.SettingsError` for settings that cannot work (the command
line shows it as a usage error), :class:`ServiceError` for a part that cannot start (a store
that does not open, a rule file that does not load, a bus that does not answer).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from auditsink.selector import SelectorError, compile_predicate, parse_match
from auditsink.logs import setup_logging
from auditsink.model import BodyError, decode_body, iter_file_bodies, snippet
from auditsink.pipeline import Pipeline
from auditsink.printer import Printer
from auditsink.metrics import Metrics
from auditsink.receive.server import ConfigError, ServeOptions
from auditsink.runtime import lower_priority
from auditsink.settings import Settings, SettingsError
from auditsink.store.base import Store, StoreError, open_store
from auditsink.timeutil import parse_duration, parse_when

log = logging.getLogger("auditsink.service")


class ServiceError(RuntimeError):
    """A part of the process could not start, or an input could not be read."""


# -- the ingest side: the pipeline every door goes through --------------------------------------


def parse_size(value: str, setting: str = "max_body") -> int:
    """``64MiB``, ``10MB``, ``512k`` or bytes.

    >>> parse_size("64MiB")
    67108864
    """
    text = value.strip().lower().replace("ib", "").replace("b", "")
    scale = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(text[-1:], 1)
    number = text[:-1] if scale != 1 else text
    try:
        return int(float(number) * scale)
    except ValueError:
        raise SettingsError(f"invalid size {value!r}: use e.g. 64MiB or 1048576",
                            setting) from None


def open_store_from(settings: Settings, **options: Any) -> Store:
    """The store of ``settings.store``, opened (its writer running)."""
    try:
        store = open_store(settings.store, sync=settings.sync, **options)
        store.open()
    except StoreError as exc:
        raise ServiceError(str(exc)) from None
    return store


def build_pipeline(settings: Settings, print_format: str | None = None, store: bool = True,
                   **store_options: Any) -> Pipeline:
    """Admit (match, policy, redact), store unless ``store=False`` or ``store: none``, print.

    ``print_format`` overrides ``settings.format`` (``auditsink import`` prints nothing).
    """
    try:
        match = compile_predicate(parse_match(settings.match))
    except SelectorError as exc:
        raise SettingsError(str(exc), "match") from None
    policy = _load_policy(settings.policy) if settings.policy else None
    if not settings.redact_secrets:
        log.warning("secret redaction is OFF (--no-redact-secrets): Secret values in request and "
                    "response bodies will be stored and printed in clear text")
    stored = store and settings.store != "none"
    opened = open_store_from(settings, **store_options) if stored else None
    fmt = settings.format if print_format is None else print_format
    printer = Printer(fmt) if fmt != "none" else None
    return Pipeline(store=opened, printer=printer, match=match, policy=policy,
                    redact=settings.redact_secrets)


def _load_policy(path: str) -> Callable[[Any], Any]:
    from auditsink.admit import policy as policy_module

    try:
        compiled = policy_module.load_policy(path)
    except (OSError, ValueError) as exc:
        raise ServiceError(str(exc)) from None
    for warning in compiled.warnings:
        log.warning("%s", warning)
    return lambda item: policy_module.apply_policy(compiled, item)


# -- the consumers of the store: rules, notifiers --------------------------------------------


def build_consumers(store: Store | None, settings: Settings, rules: bool,
                    link_base: str = "") -> list[Any]:
    """The rules detector (when ``rules``) and one delivery loop per notifier."""
    if store is None:
        if settings.notify or settings.rules:
            raise SettingsError("--rules and --notify read the store: they need --store")
        return []
    consumers: list[Any] = []
    if rules:
        from auditsink.detect import Detector
        from auditsink.rules.engine import RuleLoadError, load_rule_files
        from auditsink.rules.stateful import StatefulDetectors

        try:
            ruleset = load_rule_files(settings.rules, default=not settings.no_default_rules)
        except RuleLoadError as exc:
            raise ServiceError(str(exc)) from None
        except ValueError as exc:
            raise SettingsError(str(exc), "no_default_rules") from None
        consumers.append(Detector(store, ruleset, stateful=StatefulDetectors()))
    elif settings.notify:
        raise SettingsError("--notify sends the alerts of the rules: drop --no-rules")
    from auditsink.notify.base import Delivery, build, parse_notify

    since = parse_notify_since(settings.notify_since)
    for spec in settings.notify:
        try:
            config = parse_notify(spec, min_priority=settings.notify_min_priority,
                                  rate_per_minute=settings.notify_rate, link_base=link_base,
                                  since=since)
        except ValueError as exc:
            raise SettingsError(str(exc), "notify") from None
        consumers.append(Delivery(store, build(config)))
    return consumers


def parse_notify_since(value: str | None) -> int | None:
    """``notify_since``: None (the notifier's first start), 0 for ``all``, else µs.

    >>> parse_notify_since("2026-11-26T14:19:51Z")
    1795702791000000
    """
    if not value:
        return None
    if value.strip().lower() == "all":
        return 0
    try:
        return parse_when(value)
    except ValueError as exc:
        raise SettingsError(str(exc), "notify_since") from None


def build_outputs(store: Store | None, settings: Settings) -> list[Any]:
    """One forwarder per output (``outputs`` in the config file, then each ``--forward``)."""
    if not settings.outputs and not settings.forward:
        return []
    if store is None:
        raise SettingsError("outputs forward what the store holds: they need --store (with "
                            "--bus, give them to `auditsink worker`)", "forward")
    from auditsink.forward import Forwarder, OutputConfigError, parse_forward, parse_output

    configs = []
    try:
        for index, data in enumerate(settings.outputs):
            configs.append(parse_output(data, f"outputs[{index}]"))
        for spec in settings.forward:
            configs.append(parse_forward(spec, settings.forward_format))
    except OutputConfigError as exc:
        raise SettingsError(str(exc), "forward" if settings.forward else None) from None
    names = [c.name for c in configs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SettingsError(f"outputs: two outputs named {', '.join(map(repr, twice))}: give each "
                            "its own `name` (it names its cursor)")
    try:
        return [Forwarder(store, config) for config in configs]
    except OutputConfigError as exc:
        raise SettingsError(str(exc)) from None


def outputs_of(consumers: Iterable[Any]) -> list[Any]:
    """The forwarders among ``consumers``."""
    from auditsink.forward import Forwarder

    return [c for c in consumers if isinstance(c, Forwarder)]


def detector_of(consumers: Iterable[Any]) -> Any:
    """The rules detector among ``consumers``, or None."""
    from auditsink.detect import Detector

    return next((c for c in consumers if isinstance(c, Detector)), None)


def register_gauges(metrics: Metrics, store: Any, detector: Any) -> None:
    """The gauges read at scrape time: the store's queue, size and commit time, the rules."""
    if store is not None:
        metrics.gauge("auditsink_store_queue_events", "Events waiting for the store writer.",
                      store.queue_depth)
        size = getattr(store, "size_bytes", None)
        if size is not None:
            metrics.gauge("auditsink_store_bytes", "Size of the store on disk.", size)
        if hasattr(store, "last_commit_seconds"):
            metrics.gauge("auditsink_store_last_commit_seconds",
                          "How long the writer's latest group commit took.",
                          lambda: store.last_commit_seconds)
    if detector is not None:
        metrics.gauge("auditsink_rules_lag_events",
                      "Committed events not yet evaluated by the rules.", detector.lag)
        metrics.gauge("auditsink_alerts_raised", "Alerts raised since start.",
                      lambda: detector.raised)
        metrics.gauge("auditsink_rules_active",
                      "Whether this replica runs the rules (1) or another one does (0).",
                      lambda: int(detector.active))


# -- serve ------------------------------------------------------------------------------------


@dataclass
class Service:
    """Everything ``auditsink serve`` runs, assembled and not yet started."""

    settings: Settings
    pipeline: Pipeline
    options: ServeOptions
    api_app: Any = None
    consumers: list[Any] = field(default_factory=list)


def build(settings: Settings) -> Service:
    """Assemble ``serve``: check exposure, open the store (or the bus), build the read API,
    the rules, the notifiers and the rollup. Nothing listens yet; the store's writer runs."""
    options = _serve_options(settings)
    if settings.bus:
        # Publish to JetStream instead of storing; `auditsink worker` stores (docs/bus.md).
        if (settings.retention or settings.rules or settings.notify or settings.outputs
                or settings.forward):
            raise SettingsError(
                "with --bus, serve has no store: give --store, --rules and --notify to "
                "`auditsink worker --detect`, outputs to `auditsink worker`, and --retention to "
                "an `auditsink serve --store URL` beside the store")
        pipeline = build_pipeline(settings, store=False)
        sink = open_bus_sink(settings)
        sink.register_metrics(pipeline.metrics)
        pipeline.store = sink
        register_gauges(pipeline.metrics, sink, None)
        return Service(settings, pipeline, options)
    pipeline = build_pipeline(settings, queue_events=settings.queue_events)
    api_app = None
    if options.api_listen and pipeline.store is not None:
        from auditsink.readlistener import ReadListener
        from auditsink.receive.hostcheck import HostCheck, served_hosts
        from auditsink.receive.server import parse_listen

        api_app = HostCheck(ReadListener(pipeline.store, token=options.api_token),
                            served_hosts(parse_listen(options.api_listen)[0], settings.api_host))
    link_base = f"http://{options.api_listen}" if api_app else ""
    consumers = build_consumers(pipeline.store, settings, not settings.no_rules, link_base)
    consumers += build_outputs(pipeline.store, settings)
    if api_app is not None:
        from auditsink.query.rollup import rollup_for

        consumers.append(rollup_for(pipeline.store))  # keeps the UI's long-range counts fresh
    register_gauges(pipeline.metrics, pipeline.store, detector_of(consumers))
    forwarders = outputs_of(consumers)
    if forwarders:
        from auditsink.forward.metrics import ForwardCollector

        pipeline.metrics.register(ForwardCollector(forwarders))  # the process's one registry
    return Service(settings, pipeline, options, api_app, consumers)


def _serve_options(settings: Settings) -> ServeOptions:
    """The listeners' options, refusing exposure beyond loopback without TLS and auth."""
    from auditsink.receive.auth import AuthConfigError, Authenticator
    from auditsink.receive.server import ListenerLimits, check_exposure, is_loopback, parse_listen
    from auditsink.receive.tls import uvicorn_tls_kwargs

    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise SettingsError("--tls-cert and --tls-key go together")
    api_listen = None if settings.api_listen == "none" else settings.api_listen
    options = ServeOptions(listen=settings.listen, api_listen=api_listen,
                           paths=list(settings.path), max_body=parse_size(settings.max_body),
                           insecure=settings.insecure, body_timeout=settings.body_timeout,
                           max_events=settings.queue_events,
                           inflight_budget=parse_size(settings.inflight_budget, "inflight_budget"),
                           limits=ListenerLimits(
                               parse_size(settings.max_header_bytes, "max_header_bytes"),
                               settings.header_timeout, settings.idle_timeout,
                               settings.tls_handshake_timeout, settings.max_connections))
    if settings.retention:
        try:
            options.retention_seconds = parse_duration(settings.retention)
        except ValueError as exc:
            raise SettingsError(str(exc), "retention") from None
    if settings.tls_cert and settings.tls_key:
        options.tls = uvicorn_tls_kwargs(
            settings.tls_cert, settings.tls_key, settings.client_ca,
            header_auth=bool(settings.token_file or settings.basic_auth_file))
    if settings.token_file or settings.basic_auth_file or settings.client_ca:
        try:
            options.authenticator = Authenticator(
                token_file=settings.token_file, basic_auth_file=settings.basic_auth_file,
                client_ca=settings.client_ca, allowed_cns=list(settings.allowed_cn) or None)
        except AuthConfigError as exc:
            raise ServiceError(str(exc)) from None
    if settings.api_token_file:
        with open(settings.api_token_file, encoding="utf-8") as fh:
            options.api_token = fh.read().strip()
    try:
        check_exposure(options)
        if options.api_listen:
            host, _ = parse_listen(options.api_listen, "--api-listen")
            if not is_loopback(host) and not options.api_token and not settings.insecure:
                raise ConfigError(f"refusing to serve the read API on {options.api_listen} "
                                  "beyond loopback without --api-token-file (or --insecure)")
    except ConfigError as exc:
        raise SettingsError(str(exc)) from None
    return options


def run(settings: Settings) -> None:
    """``auditsink serve``: build, then serve until SIGINT/SIGTERM and drain the store."""
    from auditsink.receive.server import serve

    setup_logging(settings.log_format, settings.log_level)
    check_listeners(settings)
    if not settings.bus and settings.store != "none":
        from auditsink.receive.receivers import receiver_count

        count = receiver_count(settings.receivers, settings.store)
        if count > 1:
            _run_with_receivers(settings, count)
            return
    service = build(settings)
    options, store = service.options, service.pipeline.store
    where = store.url if store is not None else "nowhere (--store none)"
    scheme = "https" if options.tls else "http"
    log.info("auditsink listening on %s://%s, storing to %s%s", scheme, options.listen, where,
             f"; read API on http://{options.api_listen}" if service.api_app else "")
    try:
        serve(service.pipeline, options, service.api_app, service.consumers)
    except ConfigError as exc:
        raise SettingsError(str(exc)) from None


def check_listeners(settings: Settings) -> None:
    """Fail before anything starts when an address of ``serve`` cannot be listened on (a
    second ``serve`` on the same ports), naming the setting instead of uvicorn's raw error."""
    import socket

    from auditsink.receive.server import parse_listen

    wanted = [("listen", "--listen", settings.listen)]
    if settings.api_listen != "none":
        wanted.append(("api_listen", "--api-listen", settings.api_listen))
    for name, flag, value in wanted:
        try:
            host, port = parse_listen(value, flag)
        except ConfigError as exc:
            raise SettingsError(str(exc), name) from None
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            for family, kind, proto, _, address in infos:
                # As asyncio binds (SO_REUSEADDR): a port in TIME_WAIT is fine, one listened
                # on is not. Closed at once; uvicorn binds it moments later.
                with socket.socket(family, kind, proto) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(address)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            hint = (" (is another auditsink serve running? give this one other ports"
                    + (", or --api-listen none" if name == "api_listen" else "") + ")"
                    if exc.errno == errno.EADDRINUSE else "")
            raise SettingsError(f"{flag} {value}: cannot listen there: {reason.lower()}{hint}",
                                name) from None


def _run_with_receivers(settings: Settings, count: int) -> None:
    """``serve`` as ``count`` receiver processes and this one, the writer (issue 16;
    receive/receivers.py). Everything that can refuse the settings runs before the fork."""
    from auditsink.receive.receivers import (
        RECEIVER_NICE,
        RULES_NICE,
        bind,
        serve_writer,
        start_receivers,
    )

    scheme = settings.store.split(":", 1)[0].lower()
    if scheme not in ("sqlite", "postgres", "postgresql"):
        raise SettingsError(f"--receivers above 1 needs an SQLite or PostgreSQL store, not "
                            f"{scheme!r}", "receivers")
    options = _serve_options(settings)
    pipeline = build_pipeline(settings, store=False)
    try:
        listener = bind(options.listen)
    except OSError as exc:
        raise ServiceError(f"--listen {options.listen}: {exc.strerror or exc}") from None
    # SQLite has one writer: the receivers hand it their rows. PostgreSQL takes many: each
    # receiver COPYs into it over a connection of its own, as replicas do (docs/postgres.md).
    own_store = None if scheme == "sqlite" else (lambda: open_store_from(settings))
    receivers = start_receivers(count, listener, pipeline, options, url=settings.store,
                                queue_events=settings.queue_events, own_store=own_store)
    if not settings.no_rules:
        # The rules are the heaviest consumer (~10 µs an event): a core of their own, off
        # the writer's GIL; the cursor and the claim are the store's, as for a replica. They
        # yield the CPU to ingest: nicer than the receivers, which are nicer than one writer.
        nice = RULES_NICE + (RECEIVER_NICE if own_store is None else 0)
        receivers.fork_helper("rules", lambda: _run_rules(settings, nice))
    try:
        service = build(settings)
    except BaseException:
        receivers.kill()
        raise
    store = service.pipeline.store
    assert store is not None
    if receivers.helpers:
        service.consumers = [c for c in service.consumers if c is not detector_of([c])]
        _rules_gauges(service.pipeline.metrics, store, lambda: "rules" in receivers.helpers)
    log.info("auditsink listening on %s://%s with %d receiver processes, storing to %s%s",
             "https" if options.tls else "http", options.listen, count, store.url,
             f"; read API on http://{options.api_listen}" if service.api_app else "")
    if not serve_writer(receivers, service.pipeline, service.options, service.api_app,
                        service.consumers):
        raise ServiceError("a receiver process exited unexpectedly (see the log above)")


def _run_rules(settings: Settings, nice: int) -> int:
    """The rules process of ``serve --receivers``: the detector over its own connection to
    the store, until SIGTERM (notifiers and outputs stay with the writer); it evaluates
    ``nice`` steps nicer than the writer."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # The serving process checkpoints the WAL; a second checkpointer here took SQLite's
    # write lock from ingest between the writer's commits.
    options = {"checkpoint_interval": 0} if settings.store.startswith("sqlite") else {}
    store = open_store_from(settings, **options)
    # Only this thread (nice is per thread on Linux), after the store's writer thread has
    # started: that one commits the alerts and the cursor under SQLite's write lock, and
    # preempted at nice 19 while holding it, it kept the writer of the events waiting
    # (blocking-mode p99 went from 25 to 51 ms). Threads started from here on inherit it.
    lower_priority(nice)
    try:
        detector = detector_of(build_consumers(store, settings, rules=True))
        detector.run(stop)
    finally:
        store.close()
    return 0


def _rules_gauges(metrics: Metrics, store: Store, running: Callable[[], bool]) -> None:
    """The rules gauges when the rules run in a process of their own: from the store."""
    from auditsink.detect import CURSOR

    metrics.gauge("auditsink_rules_lag_events",
                  "Committed events not yet evaluated by the rules.",
                  lambda: max(0, store.last_id() - store.get_cursor(CURSOR)))
    metrics.gauge("auditsink_rules_active",
                  "Whether this replica runs the rules (1) or another one does (0).",
                  lambda: int(running()))
    metrics.gauges.pop("auditsink_alerts_raised", None)  # counted in the rules process


# -- the bus: serve --bus publishes, worker stores --------------------------------------------


def bus_config(settings: Settings) -> Any:
    """``settings.bus*`` as a :class:`auditsink.bus.nats.BusConfig`."""
    from auditsink.bus.nats import BusConfig, BusError, parse_servers

    try:
        return BusConfig(parse_servers(settings.bus or ""), stream=settings.bus_stream,
                         subject=settings.bus_subject, replicas=settings.bus_replicas)
    except BusError as exc:
        raise SettingsError(str(exc)) from None


def open_bus_sink(settings: Settings) -> Any:
    """Connect ``serve --bus``'s publisher, or fail saying why."""
    from auditsink.bus.nats import BusError, NatsBus

    sink = NatsBus(bus_config(settings))
    try:
        sink.open()
    except BusError as exc:
        raise ServiceError(str(exc)) from None
    return sink


def run_worker(settings: Settings) -> Any:
    """``auditsink worker``: store what the bus holds (and run the rules with ``detect``)
    until SIGINT/SIGTERM; returns the worker's :class:`~auditsink.bus.worker.WorkerStats`."""
    from auditsink.bus.metrics import worker_metrics
    from auditsink.bus.nats import BusError
    from auditsink.bus.worker import Worker
    from auditsink.receive.server import parse_listen

    setup_logging(settings.log_format, settings.log_level)
    if not settings.bus:
        raise SettingsError("--bus nats://HOST:PORT is required: the worker reads the bus")
    if (settings.rules or settings.notify) and not settings.detect:
        raise SettingsError("--rules and --notify go with --detect")
    config = bus_config(settings)
    metrics_address = None
    if settings.metrics_listen:
        try:
            metrics_address = parse_listen(settings.metrics_listen, "--metrics-listen")
        except ConfigError as exc:
            raise SettingsError(str(exc)) from None
    store = open_store_from(settings)
    stop_background = threading.Event()
    threads: list[threading.Thread] = []
    try:
        consumers = build_consumers(store, settings, rules=True) if settings.detect else []
        consumers += build_outputs(store, settings)
        threads = [threading.Thread(target=c.run, args=(stop_background,), daemon=True,
                                    name=f"auditsink-{type(c).__name__.lower()}")
                   for c in consumers]
        for thread in threads:
            thread.start()
        worker = Worker(config, store, consumer=settings.bus_consumer, fetch=settings.fetch,
                        ack_wait=settings.ack_wait)
        metrics = worker_metrics(worker, store, detector_of(consumers))
        forwarders = outputs_of(consumers)
        asyncio.run(_run_worker(worker, metrics_address, metrics, forwarders))
    except BusError as exc:
        raise ServiceError(str(exc)) from None
    finally:
        stop_background.set()
        for thread in threads:
            thread.join(timeout=10)
        store.close()
    stats = worker.stats
    log.info("worker stopped: %d batches, %d events stored, %d duplicates", stats.messages,
             stats.stored, stats.duplicates)
    return stats


async def _run_worker(worker: Any, metrics_address: tuple[str, int] | None,
                      metrics: list[Any], forwarders: list[Any] | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Finish the batches in hand (commit, ack), then leave: nothing is redelivered needlessly.
        loop.add_signal_handler(sig, stop.set)
    server = None
    if metrics_address is not None:
        from auditsink.bus.metrics import start_metrics_server

        try:
            collectors = []
            if forwarders:
                from auditsink.forward.metrics import ForwardCollector

                collectors.append(ForwardCollector(forwarders))
            server = await start_metrics_server(*metrics_address, metrics, collectors)
        except OSError as exc:
            raise ServiceError(f"--metrics-listen {metrics_address[0]}:{metrics_address[1]}:"
                               f" {exc.strerror or exc}") from None
        log.info("worker metrics on http://%s:%d/metrics", *metrics_address)
    try:
        await worker.run(stop)
    finally:
        if server is not None:
            server.close()


# -- import -----------------------------------------------------------------------------------


@dataclass
class FileImport:
    """What ``auditsink import`` made of one file."""

    path: str
    stored: int = 0
    duplicates: int = 0
    unreadable: int = 0
    #: parts of the file that could not be read at all, each said with its place in the file
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Nothing of the file could be read (not an audit log, unreadable gzip, ...)."""
        return bool(self.errors) and not (self.stored or self.duplicates)


@dataclass
class ImportResult:
    """What ``auditsink import`` did, in all and file by file."""

    stored: int = 0
    duplicates: int = 0
    unreadable: int = 0
    where: str = "nowhere"
    files: list[FileImport] = field(default_factory=list)


def import_files(settings: Settings, files: Iterable[str], cluster: str = "",
                 print_format: str = "none",
                 on_progress: Callable[[int], None] | None = None,
                 notify: bool = False) -> ImportResult:
    """Import audit-log and EventList files through the same pipeline as ``serve``.

    Safe to re-run: the store deduplicates. ``on_progress`` gets the bytes read so far.
    A file (or part of one) that cannot be read is reported in its :class:`FileImport` and
    the import goes on with the rest: what was read is committed either way.
    Notifiers leave imported history alone (it is older than their start); with ``notify``
    the alerts about what this import stored are notified however old (notify/base.py).
    """
    pipeline = build_pipeline(settings, print_format=print_format)
    result = ImportResult(where=pipeline.store.url if pipeline.store else "nowhere")
    store = pipeline.store
    first = store.last_id() + 1 if notify and store is not None else 0
    try:
        for path in files:
            done = FileImport(path)
            result.files.append(done)
            offset = 0
            try:
                for body in iter_file_bodies(path):
                    offset += len(body)
                    if on_progress is not None:
                        on_progress(len(body))
                    if not body.strip():
                        continue  # an empty file: the API server's log right after rotation
                    try:
                        items, bad = decode_body(body)
                    except BodyError as exc:
                        one_line = offset == len(body) and b"\n" not in body.rstrip(b"\n")
                        where = "line 1" if one_line else f"bytes {offset - len(body)}-{offset}"
                        done.errors.append(f"{path}: {where}: {exc}; starts with "
                                           f"{snippet(body, 60)!r}")
                        done.unreadable += 1
                        continue
                    written = pipeline.ingest_sync(items, bad, cluster)
                    done.stored += written.stored
                    done.duplicates += written.duplicates
                    done.unreadable += len(bad)
            except (OSError, EOFError) as exc:  # unreadable file, bad or truncated gzip
                done.errors.append(f"{path}: cannot read it: {exc}")
            result.stored += done.stored
            result.duplicates += done.duplicates
            result.unreadable += done.unreadable
        if notify and store is not None:
            from auditsink.notify.base import include_for_notifiers

            # Positions, not times: everything committed meanwhile is included too, which
            # only notifies what would have been news anyway.
            include_for_notifiers(store, first, store.last_id())
    finally:
        if pipeline.store is not None:
            pipeline.store.close()
    return result


def total_bytes(files: Iterable[str]) -> int:
    """The size of the files to import (for a progress bar)."""
    return sum(os.path.getsize(f) for f in files)
