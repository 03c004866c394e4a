"""``auditsink db migrate|status``: create or upgrade a PostgreSQL store's schema."""

from __future__ import annotations

import click

from auditsink.cli.group import main
from auditsink.cli.common import config_option, store_option
from auditsink.store.base import Store, StoreError, open_store


def _postgres(store_url: str) -> Store:
    if not store_url.lower().startswith(("postgres:", "postgresql:")):
        raise click.UsageError(
            f"--store {store_url!r}: `db` manages PostgreSQL stores (postgresql://USER@HOST/DB); "
            "SQLite files create their schema when opened")
    try:
        return open_store(store_url)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


@main.group("db")
def db_group() -> None:
    """Manage the schema of a PostgreSQL store."""


@db_group.command("migrate")
@config_option
@store_option
def migrate_command(store_url: str) -> None:
    """Apply pending schema migrations (idempotent; safe while replicas run).

    \b
      auditsink db migrate --store postgresql://auditsink@db.example/auditsink
    """
    from auditsink.store.postgres import schema as pg_schema

    store = _postgres(store_url)
    try:
        applied = store.migrate()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    for name in applied:
        click.echo(f"applied {name}")
    click.echo(f"schema is at version {pg_schema.latest_version()}"
               + ("" if applied else " (nothing to do)"))


@db_group.command("status")
@config_option
@store_option
def status_command(store_url: str) -> None:
    """Show the schema version and the daily partitions of events."""
    from auditsink.store.postgres import schema as pg_schema

    store = _postgres(store_url)
    try:
        conn = store._connect()  # type: ignore[attr-defined]
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        current, wanted = pg_schema.applied_version(conn), pg_schema.latest_version()
        click.echo(f"schema version {current} (this auditsink needs {wanted})"
                   + ("; run `auditsink db migrate`" if current < wanted else ""))
        if current:
            days = pg_schema.partitions(conn)
            if days:
                click.echo(f"events partitions: {len(days)} days, {days[0][0]} .. {days[-1][0]}")
    finally:
        conn.close()
