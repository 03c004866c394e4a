"""Stores full of real API-server traffic for the forward tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from auditsink.model import decode_body
from auditsink.store.sqlite import SQLiteStore


@pytest.fixture
def fixture_store(tmp_path: Path, fixtures_dir: Path) -> Iterator[SQLiteStore]:
    """A SQLite store holding the 974 events of the kube-apiserver 1.20 capture."""
    store = SQLiteStore(f"sqlite:///{tmp_path}/events.db")
    store.open()
    items, bad = decode_body((fixtures_dir / "audit.log").read_bytes())
    assert not bad
    store.write(items, cluster="prod")
    yield store
    store.close()


# The PostgreSQL server of the store tests, for the two-replica output test.
from store.conftest import postgres_server, postgres_url  # noqa: E402,F401
