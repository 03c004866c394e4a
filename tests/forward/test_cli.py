"""``auditsink outputs`` and ``outputs replay`` over a real store and real files."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import yaml
from click.testing import CliRunner

from auditsink.cli import main
from auditsink.forward import Forwarder, parse_output
from auditsink.store.sqlite import SQLiteStore


def test_status_and_replays(tmp_path: Path, fixture_store: SQLiteStore) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    output = {"type": "file", "name": "archive", "path": str(archive / "a.jsonl"),
              "max_attempts": 2, "backoff_seconds": 0.01, "batch_events": 500}
    config = tmp_path / "auditsink.yaml"
    config.write_text(yaml.safe_dump({"store": fixture_store.url, "outputs": [output]}))
    forwarder = Forwarder(fixture_store, parse_output({**output, "batch_seconds": 0}))
    shutil.rmtree(archive)              # the first batch fails for good: a dead letter
    forwarder.step(threading.Event())
    archive.mkdir()
    runner = CliRunner()
    listed = runner.invoke(main, ["outputs", "--config", str(config), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)
    assert (row["name"], row["type"], row["position"], row["lag_events"], row["dead_letters"],
            row["dead_events"]) == ("archive", "file", 500, 474, 1, 500)
    assert "No such file or directory" in row["last_error"]
    # Seen from another process: it is failing, since when, and why.
    assert row["failed_attempts"] == 2 and row["failing_since"].startswith("20")
    assert "No such file or directory" in row["failure"]
    text = runner.invoke(main, ["outputs", "--config", str(config)])
    assert text.output.startswith("archive  [file/native]  at 500, 474 events behind (next: ")
    assert "\n  failing since " in text.output
    forwarder.step(threading.Event())  # the next batch goes through: no longer failing
    (row,) = json.loads(runner.invoke(main, ["outputs", "--config", str(config), "--format",
                                             "json"]).output)
    assert row["failing_since"] == "" and row["position"] == 974
    # The dead letter, sent again once the destination is back, is forgotten.
    replayed = runner.invoke(main, ["outputs", "replay", "archive", "--config", str(config),
                                    "--dead-letters"])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 500 events to archive" in replayed.output
    assert fixture_store.dead_letters() == []
    lines = (archive / "a.jsonl").read_text().splitlines()
    assert len(lines) == 974 and fixture_store.get_cursor("output:archive") == 974
    # A time range, sent again whole (duplicates are the point of a replay).
    again = runner.invoke(main, ["outputs", "replay", "archive", "--config", str(config),
                                 "--since", "2000-01-01T00:00:00Z"])
    assert again.exit_code == 0 and "replayed 974 events" in again.output
    assert len((archive / "a.jsonl").read_text().splitlines()) == 1948
    unknown = runner.invoke(main, ["outputs", "replay", "siem", "--config", str(config),
                                   "--since", "1h"])
    assert unknown.exit_code == 2 and "no output named 'siem'" in unknown.output


def test_config_errors_name_the_entry(tmp_path: Path) -> None:
    config = tmp_path / "auditsink.yaml"
    config.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path}/x.db",
                                      "outputs": [{"type": "splunk", "url": "https://h:8088"}]}))
    result = CliRunner().invoke(main, ["outputs", "--config", str(config)])
    assert result.exit_code == 2
    assert "outputs[0] (splunk): token (or token_file) is required" in result.output
