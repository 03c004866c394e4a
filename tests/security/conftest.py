"""Fixtures for the attack tests; the helpers are in attack.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditsink.setup.certs import generate_bundle
from security.attack import TOKEN


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and a token file."""
    for name, data in generate_bundle(["127.0.0.1", "localhost"]).items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "tokens").write_text(f"{TOKEN}\n")
    return tmp_path
