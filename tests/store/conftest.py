"""Run the store tests on every backend: ``store_url`` is parametrized over sqlite and postgres.

PostgreSQL comes from ``AUDITSINK_TEST_POSTGRES`` (a URL to a server we may create databases
on, e.g. from ``scripts/start-postgres.sh``); when unset, a private server is started for the
session if the PostgreSQL binaries are installed, else the postgres cases are skipped. Each
test gets its own database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import ROOT, free_port

START_SCRIPT = ROOT / "scripts" / "start-postgres.sh"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Marked here, not with pytest.param(marks=...): this module is imported before its
    # pytest_configure registers the marker, and --strict-markers would reject it.
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("store_url") == "postgres":
            item.add_marker(pytest.mark.postgres)


def _pg_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A URL of a PostgreSQL server for the session (env, or a private one), or skip."""
    url = os.environ.get("AUDITSINK_TEST_POSTGRES")
    if url:
        yield url
        return
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.skip("no PostgreSQL: set AUDITSINK_TEST_POSTGRES or install postgresql (initdb)")
    data = Path(tempfile.mkdtemp(prefix="auditsink-pg-"))
    port = free_port()
    env = {**os.environ, "PGPORT": str(port), "PGDATA_DIR": str(data), "PGBIN": str(pg_bin)}
    started = subprocess.run([str(START_SCRIPT)], env=env, capture_output=True, text=True,
                             check=False)
    if started.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        pytest.skip(f"could not start a private PostgreSQL: {started.stderr.strip()}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        stop = [str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        if os.getuid() == 0:
            stop = ["runuser", "-u", "postgres", "--", *stop]
        subprocess.run(stop, capture_output=True, check=False)
        shutil.rmtree(data, ignore_errors=True)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's server; dropped after the test."""
    import psycopg

    name = f"auditsink_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield _with_database(postgres_server, name)
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``sqlite:///TMP/a.db`` or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/a.db"
    url: str = request.getfixturevalue("postgres_url")
    return url
