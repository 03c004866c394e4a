"""PostgreSQL schema management: versioned migrations and the daily partitions of ``events``.

Migrations are the files ``store/migrations/NNNN_name.sql``, applied in order, each in its own
transaction together with its row in ``schema_migrations``; a session advisory lock makes
replicas that start at the same time apply them once.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from auditsink.store.base import StoreError
from auditsink.store.postgres.upgrade import STEPS

# Advisory lock keys (pg_advisory_lock takes any bigint; these spell "auditsk" + a digit).
MIGRATE_LOCK = 0x6175646974736B01
PARTITION_LOCK = 0x6175646974736B02
LOG_LOCK = 0x6175646974736B03
# Two-key advisory locks (class, hashtext(consumer name)) live apart from the one-key ones:
# a session lock per consumer held by the replica running it, and a transaction lock that
# serializes one consumer's cursor commits. Different classes, so the replica holding the
# claim never waits on itself when it commits.
CLAIM_LOCK_CLASS = 0x61756401
CURSOR_LOCK_CLASS = 0x61756402

DAY_US = 86_400_000_000
_EPOCH = dt.date(1970, 1, 1)
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PARTITION_NAME = re.compile(r"^events_(\d{8})$")


@dataclass(frozen=True)
class Migration:
    """One schema version: ``0001_initial.sql`` -> Migration(1, "initial", sql)."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with this auditsink, oldest first."""
    found = []
    for entry in resources.files("auditsink.store.postgres").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def latest_version() -> int:
    """The schema version this auditsink needs."""
    return migrations()[-1].version


def applied_version(conn: Any) -> int:
    """The newest version recorded in ``schema_migrations`` (0 on an empty database)."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(conn: Any) -> list[Migration]:
    """Apply pending migrations (idempotent, safe from several replicas); returns those applied.

    ``conn`` is an autocommit psycopg connection.
    """
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = applied_version(conn)
        known = migrations()
        if current > known[-1].version:
            raise StoreError(
                f"the database schema is version {current}, newer than this auditsink knows "
                f"({known[-1].version}): upgrade auditsink"
            )
        done = []
        for migration in known:
            if migration.version <= current:
                continue
            with conn.transaction():
                conn.execute(migration.sql)
                step = STEPS.get(migration.version)
                if step is not None:
                    step(conn)
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                             (migration.version, migration.name))
            done.append(migration)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))


def check_version(conn: Any, url: str) -> None:
    """Raise a StoreError telling the user to run ``db migrate`` when the schema is behind."""
    current, wanted = applied_version(conn), latest_version()
    if current < wanted:
        raise StoreError(
            f"store {url!r}: schema version {current}, this auditsink needs {wanted}: "
            f"run `auditsink db migrate --store URL` (or start `auditsink serve`, which migrates)"
        )
    if current > wanted:
        raise StoreError(f"store {url!r}: schema version {current} is newer than this "
                         f"auditsink ({wanted}): upgrade auditsink")


def day_of(time_us: int) -> int:
    """Days since 1970-01-01 of a stageTimestamp in µs (what partitions are cut by)."""
    return time_us // DAY_US


def partition_name(day: int) -> str:
    """``events_20261126`` for the day 20783 (2026-11-26)."""
    try:
        date = _EPOCH + dt.timedelta(days=day)
    except OverflowError:
        raise StoreError(f"timestamp outside years 1-9999 (day {day})") from None
    return f"events_{date:%Y%m%d}"


def partition_day(name: str) -> int | None:
    """The inverse of :func:`partition_name`; None for a table that is not a day partition."""
    match = _PARTITION_NAME.match(name)
    if not match:
        return None
    text = match.group(1)
    return (dt.date(int(text[:4]), int(text[4:6]), int(text[6:])) - _EPOCH).days


def ensure_partitions(conn: Any, days: set[int]) -> None:
    """Create the daily partitions of ``days`` that do not exist yet (autocommit ``conn``)."""
    names = {partition_name(day): day for day in days}
    rows = conn.execute(
        "SELECT n FROM unnest(%s::text[]) AS n WHERE to_regclass(n) IS NULL", (list(names),)
    ).fetchall()
    if not rows:
        return
    # Replicas may want the same new day at once: one creates it, the others find it made.
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        for (name,) in rows:
            if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None:
                continue
            day = names[name]
            conn.execute(
                f"CREATE TABLE {name} PARTITION OF events FOR VALUES FROM ({day * DAY_US})"
                f" TO ({(day + 1) * DAY_US})"
            )


def partitions(conn: Any) -> list[tuple[str, int]]:
    """(name, day) of every daily partition of ``events``, oldest first."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass"
    ).fetchall()
    found = [(name, partition_day(name)) for (name,) in rows]
    return sorted((name, day) for name, day in found if day is not None)
