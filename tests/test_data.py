"""tests/data holds unchanged copies of ../shared's test material; they must not drift."""

from __future__ import annotations

import pytest

from conftest import DATA, SHARED

# Captured or recorded for this repository, not copied: each directory's README says how.
ORIGINALS = ("rbac", "kube-identity", "rules")
COPIES = sorted(p.relative_to(DATA) for p in DATA.rglob("*")
                if p.is_file() and p != DATA / "README.md"
                and p.relative_to(DATA).parts[0] not in ORIGINALS)


def test_data_is_small() -> None:
    total = sum((DATA / p).stat().st_size for p in COPIES)
    assert COPIES and total < 5 * 1024**2, f"tests/data holds {total} bytes: keep copies small"


def test_copies_equal_their_origin() -> None:
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is absent: nothing to compare tests/data with")
    orphans = [str(p) for p in COPIES if not (SHARED / p).exists()]
    assert not orphans, f"no origin in ../shared (say where they came from): {orphans}"
    drifted = [str(p) for p in COPIES if (DATA / p).read_bytes() != (SHARED / p).read_bytes()]
    assert not drifted, f"tests/data copies differ from ../shared: {drifted}"
