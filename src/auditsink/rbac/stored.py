"""A granted snapshot kept in the store (``auditsink rbac load``), one per cluster.

The web UI's user page and ``rbac diff`` with no ``--granted`` read it from there, so every
replica and every command sees the same snapshot, and refreshing it is re-running the load (a
cron job, or after each change to RBAC). It is parsed once per version, not per page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from auditsink.rbac.granted import Snapshot
from auditsink.store.base import Store

STATE = "rbac-granted"


@dataclass(frozen=True)
class StoredSnapshot:
    """A loaded snapshot, where it came from and when it was loaded."""

    snapshot: Snapshot
    loaded: str
    sources: tuple[str, ...]


def state_name(cluster: str = "") -> str:
    """``rbac-granted`` for the unnamed cluster, ``rbac-granted:NAME`` for another."""
    return f"{STATE}:{cluster}" if cluster else STATE


def save(store: Store, snapshot: Snapshot, loaded: str, cluster: str = "") -> int:
    """Keep ``snapshot`` as the cluster's granted permissions; returns the bytes kept."""
    data = json.dumps({"version": 1, "loaded": loaded, "sources": snapshot.sources,
                       "objects": snapshot.objects}, separators=(",", ":")).encode()
    store.save_state(state_name(cluster), data)
    return len(data)


def load(store: Store, cluster: str = "") -> StoredSnapshot | None:
    """The snapshot ``rbac load`` kept for ``cluster``, or None."""
    data = store.load_state(state_name(cluster))
    return _parse(data) if data else None


@lru_cache(maxsize=8)
def _parse(data: bytes) -> StoredSnapshot:
    """Compiled once per version: the bytes are the cache key."""
    doc = json.loads(data)
    snapshot = Snapshot()
    where = f"the granted snapshot in the store (loaded {doc.get('loaded', '?')})"
    for i, obj in enumerate(doc.get("objects", [])):
        snapshot.add(obj, f"{where}: object {i}")  # GrantedError names it
    snapshot.sources = list(doc.get("sources", []))
    return StoredSnapshot(snapshot, str(doc.get("loaded", "")), tuple(snapshot.sources))
