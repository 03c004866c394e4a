"""``auditsink serve`` and ``auditsink import``: the two doors into the pipeline.

Both only parse their settings and call the composition root (auditsink/service.py).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from auditsink import service
from auditsink.cli.group import main
from auditsink.cli.options import call_service, settings_from, settings_options
from auditsink.printer import FORMATS

@main.command("serve")
@settings_options("serve")
def serve_command(**kwargs: Any) -> None:
    """Receive audit events from kube-apiserver's webhook, store and print them.

    \b
    Point the API server's --audit-webhook-config-file at this address, e.g.
      auditsink serve --listen 127.0.0.1:8080
    """
    settings = settings_from(kwargs, "serve")
    source = click.get_current_context().get_parameter_source("store")
    if settings.bus and source == click.core.ParameterSource.COMMANDLINE:
        # A `store:` in a shared config file is the worker's; a --store flag is a mistake.
        raise click.UsageError("with --bus, serve has no store: give --store, --rules and --notify "
                               "to `auditsink worker --detect`, and --retention to an "
                               "`auditsink serve --store URL` beside the store")
    call_service(service.run, settings)


@main.command("import")
@settings_options("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--cluster", default="", help="Cluster name to record the events under.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="none", show_default=True,
              help="Also print the imported events.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: when stderr is a terminal).")
@click.option("--notify", is_flag=True,
              help="Have the notifiers of the next `serve` notify alerts about these events, "
              "however old (by default history is left alone).")
def import_command(files: tuple[str, ...], cluster: str, fmt: str, progress: bool | None,
                   notify: bool, **kwargs: Any) -> None:
    """Import audit log files (plain or .gz) and EventList files; safe to re-run.

    \b
      auditsink import /var/log/kubernetes/audit/audit*.log*
    """
    from auditsink.logs import setup_logging

    setup_logging("text", "warning")
    settings = settings_from(kwargs, "import")
    show = sys.stderr.isatty() if progress is None else progress
    with click.progressbar(length=service.total_bytes(files), label="importing", file=sys.stderr,
                           hidden=not show) as bar:
        result = call_service(service.import_files, settings, files, cluster, fmt, bar.update,
                              notify)
    several = len(result.files) > 1
    for done in result.files:
        for error in done.errors:
            click.echo(f"error: {error}", err=True)
        if several or done.errors:
            click.echo(f"{done.path}: {done.stored} stored, {done.duplicates} already there, "
                       f"{done.unreadable} unreadable" + (" (nothing readable)" if done.failed
                                                          else ""), err=True)
    click.echo(f"imported {result.stored} events into {result.where} ({result.duplicates} already "
               f"there, {result.unreadable} unreadable)", err=True)
    failed = [done.path for done in result.files if done.failed]
    if failed:
        # What was read is committed; the exit status says some input was not.
        click.echo(f"{len(failed)} of {len(result.files)} file(s) could not be read: "
                   f"{', '.join(failed)}", err=True)
        sys.exit(1)
