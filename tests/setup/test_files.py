"""The file writer: all or nothing, no overwrite without force, secrets private."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditsink.setup.files import SetupError, write_files


def test_writes_with_modes(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir"
    written = write_files(
        out, {"ca.crt": b"C", "ca.key": b"K", "webhook.yaml": "W", "policy.yaml": "P"}
    )
    assert [p.name for p in written] == ["ca.crt", "ca.key", "webhook.yaml", "policy.yaml"]
    modes = {p.name: p.stat().st_mode & 0o777 for p in written}
    assert modes == {"ca.crt": 0o644, "ca.key": 0o600, "webhook.yaml": 0o600, "policy.yaml": 0o644}
    assert (out / "webhook.yaml").read_text() == "W"
    assert sorted(p.name for p in out.iterdir()) == [
        "ca.crt",
        "ca.key",
        "policy.yaml",
        "webhook.yaml",
    ]


def test_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "b").write_text("keep")
    with pytest.raises(SetupError, match=r"refusing to overwrite .*/b \(use --force"):
        write_files(tmp_path, {"a": "new", "b": "new"})
    assert not (tmp_path / "a").exists() and (tmp_path / "b").read_text() == "keep"
    write_files(tmp_path, {"a": "new", "b": "new"}, force=True)
    assert (tmp_path / "b").read_text() == "new"
