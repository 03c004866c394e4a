"""The file output: real files, rotation, gzip, retention, and a round trip through
``auditsink import`` that gives back exactly the stored events."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from forward.helpers import forward_all, stored_raw

from auditsink.cli import main
from auditsink.forward import OutputConfigError, parse_forward, parse_output
from auditsink.forward.file import FileOutput, rotated_name
from auditsink.store.sqlite import SQLiteStore


def test_native_file_reimported_equals_the_store(tmp_path: Path,
                                                 fixture_store: SQLiteStore) -> None:
    path = tmp_path / "out" / "audit.jsonl"
    path.parent.mkdir()
    forwarder = forward_all(fixture_store, {"type": "file", "path": str(path)})
    lines = path.read_bytes().splitlines()
    assert len(lines) == 974 == forwarder.stats.delivered
    head = b'{"kind":"Event","apiVersion":"audit.k8s.io/v1",'
    assert all(line.startswith(head) for line in lines)
    assert fixture_store.get_cursor("output:file") == fixture_store.last_id()
    copy = f"sqlite:///{tmp_path}/copy.db"
    result = CliRunner().invoke(main, ["import", "--store", copy, "--cluster", "prod", str(path)])
    assert result.exit_code == 0, result.output
    reimported = SQLiteStore(copy)
    reimported.open(start_writer=False)
    try:
        assert stored_raw(reimported) == stored_raw(fixture_store)
    finally:
        reimported.close()


def test_rotation_by_size_gzip_and_keep(tmp_path: Path, fixture_store: SQLiteStore) -> None:
    path = tmp_path / "audit.jsonl"
    forward_all(fixture_store, {"type": "file", "path": str(path), "rotate_bytes": 200_000,
                                "keep": 3, "batch_events": 50})
    output = FileOutput(parse_output({"type": "file", "path": str(path)}))
    rotated = output.rotated()
    assert len(rotated) == 3 and all(name.endswith(".jsonl.gz") for name in rotated)
    assert os.path.getsize(path) <= 200_000
    kept = [line for name in rotated for line in gzip.open(name).read().splitlines()]
    kept += path.read_bytes().splitlines()
    # The newest lines survive retention, in order, each a whole event.
    events = [json.loads(line)["auditID"] for line in kept]
    everything = [json.loads(raw)["auditID"] for raw in stored_raw(fixture_store)]
    assert events == everything[-len(events):]


def test_rotation_by_age(tmp_path: Path) -> None:
    from forward.helpers import doc

    path = tmp_path / "audit.jsonl"
    output = FileOutput(parse_output({"type": "file", "path": str(path), "rotate_seconds": 30,
                                      "compress": False}))
    output.send(output.render([doc(b'{"n":1}')]))
    output._opened -= 31  # opened 31 s ago
    output.send(output.render([doc(b'{"n":2}')]))
    (old,) = output.rotated()
    assert Path(old).read_bytes() == b'{"n":1}\n' and path.read_bytes() == b'{"n":2}\n'
    output.close()


def test_rotated_names_follow_kube_apiserver() -> None:
    rotated = rotated_name("/x/audit.jsonl", 1795702791.292)
    assert rotated == "/x/audit-2026-11-26T14-19-51.292.jsonl"


def test_bad_settings_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(OutputConfigError, match=r"outputs\[0\] \(file\): unknown key 'rotate'"):
        parse_output({"type": "file", "path": str(tmp_path / "a"), "rotate": 1})
    with pytest.raises(OutputConfigError, match="directory /nonexistent does not exist"):
        parse_forward("file:/nonexistent/a.jsonl")
    with pytest.raises(OutputConfigError, match=r"\.keep: expected a int, got 'many'"):
        parse_output({"type": "file", "path": str(tmp_path / "a"), "keep": "many"})
    with pytest.raises(OutputConfigError, match="unknown output type 'ftp'"):
        parse_output({"type": "ftp"})
    with pytest.raises(OutputConfigError, match="unknown format 'cef'"):
        parse_output({"type": "file", "path": str(tmp_path / "a"), "format": "cef"})
