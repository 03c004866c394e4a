"""``auditsink serve`` and ``auditsink import``: the two doors into the pipeline."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from auditsink.admit.match import MatchError, compile_match
from auditsink.cli import main
from auditsink.cli.common import config_option, store_option
from auditsink.cli.worker import bus_options, open_bus_sink
from auditsink.logs import setup_logging
from auditsink.model import BodyError, decode_body, iter_file_bodies
from auditsink.pipeline import Pipeline
from auditsink.printer import FORMATS, Printer
from auditsink.receive.auth import AuthConfigError, Authenticator
from auditsink.receive.tls import uvicorn_tls_kwargs
from auditsink.receive.server import ConfigError, ServeOptions, serve
from auditsink.store.base import StoreError, open_store
from auditsink.timeutil import parse_duration

log = logging.getLogger("auditsink.cli")


def _size(value: str) -> int:
    """``64MiB``, ``10MB``, ``512k`` or bytes."""
    text = value.strip().lower().replace("ib", "").replace("b", "")
    scale = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(text[-1:], 1)
    number = text[:-1] if scale != 1 else text
    try:
        return int(float(number) * scale)
    except ValueError:
        raise click.BadParameter(f"invalid size {value!r}: use e.g. 64MiB or 1048576") from None


def _build_pipeline(store_url: str, fmt: str, matches: tuple[str, ...], policy_file: str | None,
                    redact_secrets: bool, sync: str, **store_options: Any) -> Pipeline:
    try:
        match = compile_match(matches)
    except MatchError as exc:
        raise click.BadParameter(str(exc)) from None
    policy = None
    if policy_file:
        policy = _load_policy(policy_file)
    if not redact_secrets:
        log.warning("secret redaction is OFF (--no-redact-secrets): Secret values in request and "
                    "response bodies will be stored and printed in clear text")
    store = None
    if store_url != "none":
        try:
            store = open_store(store_url, sync=sync, **store_options)
            store.open()
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
    printer = Printer(fmt) if fmt != "none" else None
    return Pipeline(store=store, printer=printer, match=match, policy=policy, redact=redact_secrets)


def _load_policy(path: str) -> Any:
    from auditsink.admit import policy as policy_module

    try:
        compiled = policy_module.load_policy(path)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    for warning in compiled.warnings:
        log.warning("%s", warning)
    return lambda item: policy_module.apply_policy(compiled, item)


def _pipeline_options(f: Any) -> Any:
    f = click.option("--sync", type=click.Choice(["normal", "full"]), default="normal", show_default=True,
                     help="normal: a commit survives a crash of auditsink (SIGKILL); full: also a power loss (fsync per commit).")(f)
    f = click.option("--redact-secrets/--no-redact-secrets", default=True, show_default=True,
                     help="Replace Secret values (data, stringData, last-applied) before storing or printing.")(f)
    f = click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False),
                     help="Audit policy applied before storing: drops None, downgrades levels.")(f)
    f = click.option("--match", "matches", multiple=True, metavar="KEY=VALUE",
                     help="Keep only matching events (user, group, verb, resource, apiGroup, namespace, name, stage, level, code, cluster). Repeatable.")(f)
    f = store_option(f)
    return f


@main.command("serve")
@config_option
@click.option("--listen", default="127.0.0.1:8080", show_default=True, envvar="AUDITSINK_LISTEN",
              help="HOST:PORT for the webhook. Beyond loopback needs TLS and authentication (or --insecure).")
@click.option("--path", "paths", multiple=True, help="Only accept POSTs on this path (repeatable; default: any path). /clusters/NAME is always accepted.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Print each event to stdout: text (one line), json (audit-log line) or none.")
@_pipeline_options
@click.option("--max-body", default="64MiB", show_default=True, help="Largest request body accepted (413 above).")
@click.option("--body-timeout", default=25.0, show_default=True,
              help="Seconds to receive a request body (the API server gives up after 30).")
@click.option("--queue-events", default=16_000, show_default=True,
              help="Events waiting for the store before the receiver answers 429 (bounds memory).")
@click.option("--retention", help="Delete events older than this, e.g. 30d (default: keep everything).")
@click.option("--api-listen", default="127.0.0.1:8081", show_default=True, envvar="AUDITSINK_API_LISTEN",
              help="HOST:PORT for the read API; 'none' to disable.")
@click.option("--api-token-file", type=click.Path(exists=True, dir_okay=False), envvar="AUDITSINK_API_TOKEN_FILE",
              help="Bearer token for the read API (required beyond loopback).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Server certificate (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Server private key (PEM).")
@click.option("--client-ca", type=click.Path(exists=True, dir_okay=False), help="CA for client certificates (mTLS).")
@click.option("--allowed-cn", "allowed_cns", multiple=True, help="Accept only client certificates with this CN (repeatable).")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False), help="Bearer tokens, one per line: TOKEN[,CLUSTER].")
@click.option("--basic-auth-file", type=click.Path(exists=True, dir_okay=False), help="Basic auth lines USER:PASSWORD[:CLUSTER]; bcrypt hashes accepted.")
@click.option("--insecure", is_flag=True, help="Allow listening beyond loopback without TLS and authentication.")
@click.option("--rules", "rule_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Falco-format rule files for the k8s_audit source (repeatable; default: the built-in rules).")
@click.option("--no-rules", is_flag=True, help="Do not evaluate detection rules.")
@click.option("--notify", "notify_specs", multiple=True, metavar="KIND[:URL]",
              help="Send alerts: stdout, webhook:URL or slack:URL (repeatable).")
@click.option("--notify-min-priority", default="WARNING", show_default=True,
              help="Only notify alerts at least this severe (EMERGENCY ... DEBUG).")
@click.option("--notify-rate", default=10, show_default=True,
              help="At most this many notifications per rule per minute (0: no limit).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
@bus_options
def serve_command(listen: str, paths: tuple[str, ...], fmt: str, store_url: str, matches: tuple[str, ...],
                  policy_file: str | None, redact_secrets: bool, sync: str, max_body: str,
                  body_timeout: float, queue_events: int, retention: str | None, api_listen: str, api_token_file: str | None,
                  tls_cert: str | None, tls_key: str | None, client_ca: str | None,
                  allowed_cns: tuple[str, ...], token_file: str | None, basic_auth_file: str | None,
                  insecure: bool, rule_files: tuple[str, ...], no_rules: bool,
                  notify_specs: tuple[str, ...], notify_min_priority: str, notify_rate: int,
                  log_format: str, log_level: str, bus_url: str | None = None, bus_stream: str = "",
                  bus_subject: str = "", bus_replicas: int = 1) -> None:
    """Receive audit events from kube-apiserver's webhook, store and print them.

    \b
    Point the API server's --audit-webhook-config-file at this address, e.g.
      auditsink serve --listen 127.0.0.1:8080
    """
    setup_logging(log_format, log_level)
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    options = ServeOptions(listen=listen, api_listen=None if api_listen == "none" else api_listen,
                           paths=list(paths), max_body=_size(max_body), insecure=insecure,
                           body_timeout=body_timeout)
    if retention:
        try:
            options.retention_seconds = parse_duration(retention)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--retention") from None
    if tls_cert:
        options.tls = uvicorn_tls_kwargs(tls_cert, tls_key, client_ca,
                                         header_auth=bool(token_file or basic_auth_file))
    options.authenticator = _authenticator(token_file, basic_auth_file, client_ca, allowed_cns)
    api_token = None
    if api_token_file:
        with open(api_token_file, encoding="utf-8") as fh:
            api_token = fh.read().strip()
    try:
        from auditsink.receive.server import check_exposure, is_loopback, parse_listen

        check_exposure(options)
        if options.api_listen:
            host, _ = parse_listen(options.api_listen, "--api-listen")
            if not is_loopback(host) and not api_token and not insecure:
                raise ConfigError(f"refusing to serve the read API on {options.api_listen} beyond "
                                  "loopback without --api-token-file (or --insecure)")
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if bus_url:
        # Publish to JetStream instead of storing; `auditsink worker` stores (docs/bus.md).
        if retention or rule_files or notify_specs or click.get_current_context().get_parameter_source(
                "store_url") == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("with --bus, serve has no store: give --store, --rules and --notify "
                                   "to `auditsink worker --detect`, and --retention to an "
                                   "`auditsink serve --store URL` beside the store")
        pipeline = _build_pipeline("none", fmt, matches, policy_file, redact_secrets, sync)
        sink = open_bus_sink(bus_url, bus_stream, bus_subject, bus_replicas)
        sink.register_metrics(pipeline.metrics)
        pipeline.store = sink
        no_rules = True
    else:
        pipeline = _build_pipeline(store_url, fmt, matches, policy_file, redact_secrets, sync,
                                   queue_events=queue_events)
    api_app = None
    if options.api_listen and pipeline.store is not None and not bus_url:
        from auditsink.query.api import ReadAPI

        api_app = ReadAPI(pipeline.store, token=api_token)
    consumers = _consumers(pipeline, rule_files, no_rules, notify_specs, notify_min_priority,
                           notify_rate, f"http://{options.api_listen}" if api_app else "")
    if api_app is not None:
        from auditsink.query.rollup import rollup_for

        consumers.append(rollup_for(pipeline.store))  # keeps the UI's long-range counts fresh
    store_desc = pipeline.store.url if pipeline.store else "nowhere (--store none)"
    scheme = "https" if options.tls else "http"
    log.info("auditsink listening on %s://%s, storing to %s%s", scheme, listen, store_desc,
             f"; read API on http://{options.api_listen}" if api_app else "")
    try:
        serve(pipeline, options, api_app, consumers)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _consumers(pipeline: Pipeline, rule_files: tuple[str, ...], no_rules: bool,
               notify_specs: tuple[str, ...], min_priority: str, rate: int, link_base: str) -> list[Any]:
    """The rules detector and one delivery loop per notifier, reading the store."""
    store = pipeline.store
    if store is None:
        if notify_specs or rule_files:
            raise click.UsageError("--rules and --notify read the store: they need --store")
        return []
    consumers: list[Any] = []
    if not no_rules:
        from auditsink.detect import Detector
        from auditsink.rules.engine import load_rules

        try:
            ruleset = load_rules(list(rule_files) or None)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        from auditsink.rules.stateful import StatefulDetectors

        detector = Detector(store, ruleset, stateful=StatefulDetectors())
        pipeline.metrics.gauge("auditsink_rules_lag_events", "Committed events not yet evaluated by the rules.",
                               detector.lag)
        pipeline.metrics.gauge("auditsink_alerts_raised", "Alerts raised since start.", lambda: detector.raised)
        pipeline.metrics.gauge("auditsink_rules_active",
                               "Whether this replica runs the rules (1) or another one does (0).",
                               lambda: int(detector.follower.active))
        consumers.append(detector)
    elif notify_specs:
        raise click.UsageError("--notify sends the alerts of the rules: drop --no-rules")
    from auditsink.notify.base import Delivery, build, parse_notify

    for spec in notify_specs:
        try:
            config = parse_notify(spec, min_priority=min_priority, rate_per_minute=rate, link_base=link_base)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--notify") from None
        consumers.append(Delivery(store, build(config)))
    return consumers


def _authenticator(token_file: str | None, basic_auth_file: str | None, client_ca: str | None,
                   allowed_cns: tuple[str, ...]) -> Any:
    if not (token_file or basic_auth_file or client_ca):
        return None
    try:
        return Authenticator(token_file=token_file, basic_auth_file=basic_auth_file,
                             client_ca=client_ca, allowed_cns=list(allowed_cns) or None)
    except AuthConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("import")
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@_pipeline_options
@click.option("--cluster", default="", help="Cluster name to record the events under.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="none", show_default=True,
              help="Also print the imported events.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def import_command(files: tuple[str, ...], store_url: str, matches: tuple[str, ...], policy_file: str | None,
                   redact_secrets: bool, sync: str, cluster: str, fmt: str, progress: bool | None) -> None:
    """Import audit log files (plain or .gz) and EventList files; safe to re-run.

    \b
      auditsink import /var/log/kubernetes/audit/audit.log*
    """
    setup_logging("text", "warning")
    pipeline = _build_pipeline(store_url, fmt, matches, policy_file, redact_secrets, sync)
    total_bytes = sum(os.path.getsize(f) for f in files)
    show = sys.stderr.isatty() if progress is None else progress
    stored = duplicates = bad_total = 0
    try:
        with click.progressbar(length=total_bytes, label="importing", file=sys.stderr,
                               hidden=not show) as bar:
            for path in files:
                for body in iter_file_bodies(path):
                    try:
                        items, bad = decode_body(body)
                    except BodyError as exc:
                        raise click.ClickException(f"{path}: {exc}") from None
                    result = pipeline.ingest_sync(items, bad, cluster)
                    stored += result.stored
                    duplicates += result.duplicates
                    bad_total += len(bad)
                    bar.update(len(body))
    finally:
        if pipeline.store is not None:
            pipeline.store.close()
    where = pipeline.store.url if pipeline.store else "nowhere"
    click.echo(f"imported {stored} events into {where} ({duplicates} already there, "
               f"{bad_total} unreadable)", err=True)
