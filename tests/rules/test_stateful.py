"""Burst detectors: secret read bursts and repeated 401/403 from one address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditsink.model import decode_body, iter_file_bodies
from auditsink.rules.stateful import BurstDetector, StatefulDetectors, denied_source


def secret_get(second: float, user: str = "mallory", code: int = 200) -> dict[str, Any]:
    return {
        "auditID": f"s{second}",
        "stage": "ResponseComplete",
        "verb": "get",
        "user": {"username": user},
        "objectRef": {"resource": "secrets", "namespace": "prod", "name": f"s{int(second)}"},
        "responseStatus": {"code": code},
        "sourceIPs": ["10.1.2.3"],
        "stageTimestamp": f"2024-05-01T10:{int(second) // 60:02d}:{second % 60:09.6f}Z",
    }


def test_secret_read_burst_fires_once_per_window() -> None:
    detectors = StatefulDetectors()
    fired = []
    for i in range(45):  # one read a second for 45 s: 20 within a minute at second 19
        fired += [(i, d.rule, d.output) for d in detectors.observe(secret_get(float(i)))]
    assert fired == [(19, "Secret Read Burst", "20 successful secret reads by mallory within 60s")]
    # After the window has passed, a new burst is reported again.
    later = [d.rule for i in range(100, 125) for d in detectors.observe(secret_get(float(i)))]
    assert later == ["Secret Read Burst"]


def test_slow_reads_failed_reads_and_controllers_do_not_count() -> None:
    detectors = StatefulDetectors()
    events = [secret_get(i * 4.0) for i in range(40)]  # 15 per minute at most
    events += [secret_get(float(i), code=404) for i in range(30)]
    events += [secret_get(float(i), user="system:serviceaccount:kube-system:x") for i in range(30)]
    assert [d for e in events for d in detectors.observe(e)] == []


def test_repeated_denials_by_source_address() -> None:
    detectors = StatefulDetectors()
    events = []
    for i in range(12):
        denied = secret_get(float(i), user="", code=401)
        denied["stage"] = "ResponseStarted"
        denied["sourceIPs"] = ["203.0.113.9"]
        events.append(denied)
    found = [d for e in events for d in detectors.observe(e)]
    assert [(d.rule, d.output_fields["key"], d.output_fields["count"]) for d in found] == [
        ("Repeated Access Denied", "203.0.113.9", 10)
    ]


def test_denied_counts_403_only_on_completion() -> None:
    forbidden = secret_get(1.0, code=403)
    assert denied_source(forbidden) == "10.1.2.3"
    assert denied_source({**forbidden, "stage": "RequestReceived"}) is None
    assert denied_source(secret_get(1.0)) is None


def test_key_count_is_bounded() -> None:
    detector = BurstDetector(
        "t", "INFO", key_of=lambda doc: doc["auditID"], describe="{key}", threshold=2, max_keys=3
    )
    for i in range(10):
        detector.observe(secret_get(float(i)) | {"auditID": f"k{i}"}, b"")
    assert len(detector._seen) == 3


def test_quiet_on_fixture_traffic(fixtures_dir: Path) -> None:
    detectors = StatefulDetectors()
    found = []
    for body in iter_file_bodies(str(fixtures_dir / "audit.log")):
        good, _ = decode_body(body)
        for item in good:
            found += detectors.observe(item.raw)
    assert found == []
