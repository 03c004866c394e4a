"""What only the SQLite store has: file URLs and paths, and the size of the file on disk.

The behaviour every backend shares is tested in test_store.py, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from auditsink.model import decode_body
from auditsink.store.base import StoreError, open_store
from auditsink.store.postgres import PostgresStore
from auditsink.store.sqlite import SQLiteStore, path_from_url


def _store(tmp_path: Path, **options: Any) -> SQLiteStore:
    store = open_store(f"sqlite:///{tmp_path}/a.db", **options)
    assert isinstance(store, SQLiteStore)
    store.open()
    return store


def _fixture_items(fixtures_dir: Path) -> list[Any]:
    items, bad = decode_body((fixtures_dir / "audit.log").read_bytes())
    assert not bad
    return items


def test_url_forms() -> None:
    assert path_from_url("sqlite:///auditsink.db") == "auditsink.db"
    assert path_from_url("sqlite:////var/lib/a.db") == "/var/lib/a.db"
    with pytest.raises(StoreError, match="unknown scheme"):
        open_store("mysql://x")
    # PostgreSQL is a registered backend now (issue 8); opening a URL does not connect yet.
    assert isinstance(open_store("postgresql://localhost/db"), PostgresStore)
    assert isinstance(open_store("postgres://localhost/db"), PostgresStore)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/nope/a.db")
    with pytest.raises(StoreError, match="does not exist"):
        store.open()


def test_compressed_store_is_small(tmp_path: Path, fixtures_dir: Path) -> None:
    items = _fixture_items(fixtures_dir)
    store = _store(tmp_path)
    for i in range(0, len(items), 400):
        store.write(items[i : i + 400])
    store.close()
    conn = sqlite3.connect(store.path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    conn.close()
    raw = sum(len(i.raw) for i in items)
    assert Path(store.path).stat().st_size < raw * 0.6
