"""The delivery loop shared by every output: filter, per-output policy, batching, retries,
dead letters and a durable cursor, on real files and a real SQLite store."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

from forward.helpers import forward_all, stored_raw

from auditsink.forward import Forwarder, parse_output
from auditsink.store.sqlite import SQLiteStore


def test_filter_and_policy_apply_to_this_output_only(tmp_path: Path,
                                                     fixture_store: SQLiteStore) -> None:
    policy = tmp_path / "metadata.yaml"
    policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")
    deletes = tmp_path / "deletes.jsonl"
    forwarder = forward_all(fixture_store, {"type": "file", "name": "deletes", "path": str(deletes),
                                            "match": ["verb=delete"], "policy": str(policy)})
    lines = [json.loads(line) for line in deletes.read_text().splitlines()]
    everything = [json.loads(raw) for raw in stored_raw(fixture_store)]
    wanted = [e for e in everything if e["verb"] == "delete"]
    assert lines and [e["auditID"] for e in lines] == [e["auditID"] for e in wanted]
    assert {e["level"] for e in lines} == {"Metadata"}
    assert not any("requestObject" in e for e in lines)
    assert any("requestObject" in e for e in wanted), "the store keeps the bodies"
    assert forwarder.stats.filtered == len(everything) - len(wanted)
    # Everything else is untouched by this output's policy: a second output sees it whole.
    whole = tmp_path / "all.jsonl"
    forward_all(fixture_store, {"type": "file", "name": "all", "path": str(whole)})
    assert len(whole.read_text().splitlines()) == len(everything)


def test_a_failing_output_dead_letters_and_moves_on(tmp_path: Path,
                                                    fixture_store: SQLiteStore) -> None:
    target = tmp_path / "gone"
    target.mkdir()
    config = {"type": "file", "name": "archive", "path": str(target / "a.jsonl"),
              "max_attempts": 3, "backoff_seconds": 0.01, "batch_events": 400}
    forwarder = Forwarder(fixture_store, parse_output({**config, "batch_seconds": 0}))
    shutil.rmtree(target)  # the destination disappears
    stop = threading.Event()
    assert forwarder.step(stop) == 400
    (dead,) = fixture_store.dead_letters("output:archive")
    assert (dead.first, dead.last, dead.events, dead.attempts) == (1, 400, 400, 3)
    assert "No such file or directory" in dead.error
    assert forwarder.stats.failed == 3 and forwarder.stats.dead == 400
    assert fixture_store.get_cursor("output:archive") == 400  # the others go on
    target.mkdir()
    while forwarder.step(stop):
        pass
    assert len((target / "a.jsonl").read_text().splitlines()) == 974 - 400
    # A restart resumes at the cursor: nothing is sent twice.
    again = Forwarder(fixture_store, parse_output(config))
    assert again.step(stop) == 0


def test_a_partial_batch_waits_for_more_then_goes(tmp_path: Path) -> None:
    from auditsink.model import decode_body

    store = SQLiteStore(f"sqlite:///{tmp_path}/a.db")
    store.open()
    path = tmp_path / "out.jsonl"
    forwarder = Forwarder(store, parse_output({"type": "file", "path": str(path),
                                               "batch_events": 100, "batch_seconds": 0.5}))

    def event(n: int) -> bytes:
        return json.dumps({"level": "Metadata", "auditID": f"a{n}", "stage": "ResponseComplete",
                           "verb": "get", "stageTimestamp": "2026-11-26T14:19:51.292366Z"}).encode()

    store.write(decode_body(event(1))[0])
    threading.Timer(0.1, lambda: store.write(decode_body(event(2))[0])).start()
    started = time.monotonic()
    assert forwarder.step(threading.Event()) == 2  # one payload for both
    assert 0.45 < time.monotonic() - started < 3
    assert forwarder.stats.batches == 1 and len(path.read_text().splitlines()) == 2
    store.close()
