"""Rules as a consumer of the store: every committed event evaluated once, across restarts."""

from __future__ import annotations

import json
from pathlib import Path

from auditsink.detect import Detector
from auditsink.model import decode_body
from auditsink.rules.engine import load_rules
from auditsink.store.base import AlertSelector
from auditsink.store.sqlite import SQLiteStore


def _trace_items(falco_dir: Path, name: str) -> list:  # type: ignore[type-arg]
    items, bad = decode_body((falco_dir / "traces" / name).read_bytes())
    assert not bad
    return items


def test_detector_resumes_from_its_cursor(tmp_path: Path, falco_dir: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/a.db")
    store.open()
    rules = load_rules()
    store.write(_trace_items(falco_dir, "exec_pod.json"))
    detector = Detector(store, rules)
    assert detector.step() == 1 and detector.step() == 0
    first = store.alerts(AlertSelector())
    assert [a.rule for a in first]
    assert all(a.audit_id == "ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6" for a in first)
    # A restart (new detector, same store) re-evaluates nothing ...
    again = Detector(store, rules)
    assert again.position == detector.position and again.step() == 0
    # ... and misses nothing committed since.
    store.write(_trace_items(falco_dir, "create_nginx_pod_privileged.json"))
    assert again.step() == 1
    rules_fired = {a.rule for a in store.alerts(AlertSelector())}
    assert any("Privileged" in r for r in rules_fired), rules_fired
    latest = store.alerts(AlertSelector(), limit=1)[0]
    assert latest.event == store.last_id()
    store.close()


def test_alerts_command(tmp_path: Path, falco_dir: Path) -> None:
    from click.testing import CliRunner

    from auditsink.cli import main

    store = SQLiteStore(f"sqlite:///{tmp_path}/a.db")
    store.open()
    for name in ("exec_pod.json", "create_nginx_pod_privileged.json", "create_service.json"):
        store.write(_trace_items(falco_dir, name))
    Detector(store, load_rules()).step()
    store.close()
    url = f"sqlite:///{tmp_path}/a.db"
    everything = CliRunner().invoke(main, ["alerts", "--store", url, "--format", "json"])
    assert everything.exit_code == 0, everything.output
    docs = json.loads(everything.output)
    assert {"INFO", "NOTICE"} <= {d["priority"] for d in docs}
    serious = CliRunner().invoke(main, ["alerts", "--store", url, "--priority", "notice"])
    lines = serious.output.splitlines()
    assert lines and not any(" INFO " in line for line in lines)
    assert all("(auditID " in line for line in lines)
    bad = CliRunner().invoke(main, ["alerts", "--store", url, "--priority", "loud"])
    assert bad.exit_code == 2 and "unknown priority" in bad.output
