"""The explorer through its JSON twin and page: time order whatever the arrival order, lossless
follow, the query bar and the form in sync, the histogram, the time picker's zones, exports.

The traffic is real (tests/data/kube-identity, two clusters with impersonation) written in
shuffled batches, as kube-apiserver sends them concurrently and out of order, plus generated
bursts where a test needs thousands of events."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from conftest import ui_json as _get

from auditsink.model import decode_body
from auditsink.selector import FIELDS
from auditsink.store.base import Selector
from auditsink.store.sqlite import SQLiteStore
from auditsink.timeutil import format_micros, parse_timestamp
from auditsink.web import WebUI

DATA = ROOT / "tests" / "data" / "kube-identity"
CLUSTERS = ("cluster-a", "cluster-b")


def _lines(cluster: str) -> list[bytes]:
    return gzip.decompress((DATA / f"{cluster}.log.gz").read_bytes()).splitlines()


def _event(audit_id: str, when: int, stage: str = "ResponseComplete", user: str = "burst",
           **extra: Any) -> dict[str, Any]:
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": audit_id, "stage": stage, "requestURI": "/api/v1/namespaces/load/pods",
            "verb": "list", "user": {"username": user},
            "objectRef": {"resource": "pods", "namespace": "load", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200}, "stageTimestamp": format_micros(when),
            "requestReceivedTimestamp": format_micros(when), **extra}


def _write(store: SQLiteStore, events: list[dict[str, Any]], cluster: str = "") -> None:
    items, bad = decode_body(b"\n".join(json.dumps(e).encode() for e in events))
    assert not bad
    store.write(items, cluster=cluster)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    """The two clusters' traffic in shuffled batches of 25, and 30 events at one instant."""
    filled = SQLiteStore(f"sqlite:///{tmp_path_factory.mktemp('explorer')}/audit.db")
    filled.open()
    batches = []
    for cluster in CLUSTERS:
        lines = _lines(cluster)
        batches += [(cluster, lines[i:i + 25]) for i in range(0, len(lines), 25)]
    random.Random(18).shuffle(batches)
    for cluster, lines in batches:
        items, bad = decode_body(b"\n".join(lines))
        assert not bad
        filled.write(items, cluster=cluster)
    # Ties in time: the log position orders them, so a page boundary inside them is exact.
    instant = parse_timestamp("2026-12-03T12:40:50.000000Z")
    _write(filled, [_event(f"tie-{n}", instant) for n in range(30)], "cluster-a")
    yield filled
    filled.close()


@pytest.fixture(scope="module")
def ui(store: SQLiteStore) -> WebUI:
    return WebUI(store)


def test_pages_are_in_time_order_without_gaps_or_repeats(ui: WebUI, store: SQLiteStore) -> None:
    every = store.page(Selector(), 10_000)
    expected = sorted(((e.time, e.id) for e in every), reverse=True)
    assert len(expected) == 248 and [e.key for e in every] == expected
    arrival = [e.id for e in every]
    assert arrival != sorted(arrival, reverse=True)  # the batches really came out of order
    seen: list[tuple[int, int]] = []
    pages = []
    url: str | None = "/ui/events?rows=stages&range=all&limit=17"
    while url:
        status, doc = _get(ui, url)
        assert status == 200 and doc["hits"] == 248
        seen += [(e["time_us"], e["id"]) for e in doc["events"]]
        pages.append([e["id"] for e in doc["events"]])
        url = doc["older_url"]
    assert seen == expected  # every event once, newest first by time, ties by position
    # Back up with "newer": the same pages, in reverse.
    url = f"/ui/events?rows=stages&range=all&limit=17&after={doc['events'][0]['key']}"
    back = [pages[-1]]
    while url:
        _, doc = _get(ui, url)
        back.append([e["id"] for e in doc["events"]])
        url = doc["newer_url"]
    assert back == pages[::-1]


def test_one_row_per_request_and_its_stages_behind_a_click(ui: WebUI) -> None:
    _, requests = _get(ui, "/ui/events?range=all&limit=500&cluster=cluster-a")
    _, stages = _get(ui, requests["rows_url"].replace("limit=500", "limit=500"))
    assert requests["requests_only"] and not stages["requests_only"] and stages["rows"] == "stages"
    assert stages["hits"] == 140 and requests["hits"] < stages["hits"]
    assert {e["stage"] for e in requests["events"]} <= {"ResponseComplete", "Panic"}
    assert len({(e["cluster"], e["auditID"]) for e in requests["events"]}) == requests["hits"]
    # A row's request view holds its stages.
    row = next(e for e in requests["events"] if e["verb"] == "patch")
    _, request = _get(ui, row["request_url"].replace("?", "?", 1))
    assert [s["stage"] for s in request["stages"]] == ["RequestReceived", "ResponseComplete"]
    # Asking for a stage shows that stage, one row per request or not.
    _, received = _get(ui, "/ui/events?range=all&stage=RequestReceived&cluster=cluster-a")
    assert received["hits"] > 0 and {e["stage"] for e in received["events"]} == {"RequestReceived"}


def test_query_bar_and_form_are_one_selector(ui: WebUI) -> None:
    _, bar = _get(ui, "/ui/events?q=user%3Amallory+-namespace%3Akube-system+code%3A4xx&range=all")
    _, form = _get(ui, "/ui/events?user=mallory&namespace%21=kube-system&code=4xx&range=all")
    assert bar["query"] == form["query"] == "user:mallory code:4xx -namespace:kube-system"
    assert bar["fields"] == form["fields"] == {
        "user": {"values": ["mallory"], "excluded": []},
        "namespace": {"values": [], "excluded": ["kube-system"]},
        "code": {"values": ["4xx"], "excluded": []}}
    assert bar["events"] == form["events"] and bar["hits"] == 2
    assert bar["older_url"] is None and bar["pairs"] == form["pairs"]
    # OR by repetition, NOT by "-", in both spellings; the bar's since: goes to the picker.
    _, either = _get(ui, "/ui/events?q=verb%3Apatch+verb%3Acreate+-cluster%3Acluster-b&range=all")
    _, same = _get(ui, "/ui/events?verb=patch&verb=create&-cluster=cluster-b&range=all")
    assert either["events"] == same["events"] and {e["verb"] for e in either["events"]} == {
        "patch", "create"} and {e["cluster"] for e in either["events"]} == {"cluster-a"}
    _, timed = _get(ui, "/ui/events?q=user%3Amallory+since%3A2026-12-03T12%3A40%3A55Z")
    assert timed["query"] == "user:mallory" and timed["range"]["typed"]["since"] == \
        "2026-12-03T12:40:55Z" and {e["cluster"] for e in timed["events"]} == {"cluster-b"}
    # Empty values are written "" in both: the core API group, no impersonation.
    _, core = _get(ui, '/ui/events?q=apiGroup%3A%22%22+impersonatedUser%3A%22%22&range=all')
    _, core_form = _get(ui, "/ui/events?apiGroup=%22%22&impersonatedUser=%22%22&range=all")
    assert core["hits"] == core_form["hits"] > 0 and core["query"] == \
        'impersonatedUser:"" apiGroup:""'


def test_form_is_generated_from_every_field_of_the_vocabulary(ui: WebUI) -> None:
    page = ui.respond("/ui/events", "q=verb%3Apatch+-cluster%3Acluster-b&range=all").body.decode()
    for spec in FIELDS:
        assert f'<label for="f-{spec.name}">{spec.name}</label>' in page, spec.name
        assert f'name="{spec.name}!"' in page  # each field can be negated
        help_text = spec.help.replace('"', "&#34;").replace("'", "&#39;")
        assert help_text in page, spec.name
    assert 'id="f-verb" name="verb" value="patch"' in page
    assert 'name="cluster!" value="cluster-b"' in page
    assert 'id="q" name="q" value="verb:patch -cluster:cluster-b"' in page


def test_histogram_bars_narrow_the_range(ui: WebUI) -> None:
    _, doc = _get(ui, "/ui/events?range=all&rows=stages")
    chart = doc["chart"]
    assert chart["total"] == doc["hits"] == 248 and chart["bucket_seconds"] == 1
    bars = [b for b in chart["buckets"] if b["total"]]
    assert all("href" in b for b in bars) and not any("href" in b for b in chart["buckets"]
                                                       if not b["total"])
    bar = max(bars, key=lambda b: b["total"])
    _, narrowed = _get(ui, bar["href"])
    assert narrowed["hits"] == bar["total"] and narrowed["range"]["choice"] == ""
    assert narrowed["range"]["since_us"] == bar["t"]
    assert narrowed["range"]["until_us"] == bar["t"] + 1_000_000
    assert all(bar["t"] <= e["time_us"] < bar["t"] + 1_000_000 for e in narrowed["events"])
    svg = ui.respond("/ui/events", "range=all&rows=stages").body.decode()
    assert svg.count('<a class="narrow" href=') == len(bars)


def test_everything_means_everything_and_typed_times_use_the_viewers_zone(ui: WebUI) -> None:
    _, every = _get(ui, "/ui/events?range=all&rows=stages")
    assert every["range"]["since_us"] is None and every["range"]["until_us"] is None
    assert every["range"]["label"] == "everything stored" and every["hits"] == 248
    # 13:40:55 in Berlin (UTC+1 in December) is 12:40:55Z: cluster-b's traffic is after it.
    berlin = "since=2026-12-03+13%3A40%3A55&tz=Europe%2FBerlin&rows=stages"
    _, local = _get(ui, f"/ui/events?{berlin}")
    _, utc = _get(ui, "/ui/events?since=2026-12-03T12%3A40%3A55Z&rows=stages")
    assert local["hits"] == utc["hits"] == 108 and local["events"] == utc["events"]
    assert local["range"]["since"] == "2026-12-03T12:40:55.000000Z"
    assert local["range"]["notes"] == ["2026-12-03 13:40:55 is read in your zone (Europe/Berlin)"]
    _, offset = _get(ui, "/ui/events?since=2026-12-03+13%3A40%3A55&tz=%2B01%3A00&rows=stages")
    assert offset["hits"] == 108
    # A server without data for the zone falls back to the browser's current offset.
    _, fallback = _get(ui, "/ui/events?since=2026-12-03+13%3A40%3A55&tz=Mars%2FOlympus"
                           "&tzo=%2B01%3A00&rows=stages")
    assert fallback["hits"] == 108 and "current offset +01:00" in fallback["range"]["notes"][0]
    _, bare = _get(ui, "/ui/events?since=2026-12-03+12%3A40%3A55&rows=stages")
    assert bare["hits"] == 108 and "read as UTC" in bare["range"]["notes"][0]
    status, bad = _get(ui, "/ui/events?since=2026-12-03+13%3A40&tz=Mars%2FOlympus")
    assert status == 400 and "unknown time zone" in bad["error"]
    page = ui.respond("/ui/events", berlin).body.decode()
    assert "is read in your zone (Europe/Berlin)" in page
    assert '<input type="hidden" name="tz" class="tz" value="Europe/Berlin">' in page


def test_follow_delivers_20_batches_of_400_exactly_once(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/follow.db")
    store.open()
    try:
        ui = WebUI(store)
        _write(store, [_event("before", parse_timestamp("2026-12-03T09:00:00.000000Z"))])
        _, page = _get(ui, "/ui/events?user=burst&range=all")
        assert page["hits"] == 1
        follow_url = page["follow_url"]
        # 20 back-to-back batches of 400 requests, each with both stages, times shuffled
        # across batches (the API server sends batches concurrently, out of order).
        start = parse_timestamp("2026-12-03T10:00:00.000000Z")
        times = list(range(4000))
        random.Random(7).shuffle(times)
        events = []
        for n, offset in enumerate(times):
            when = start + offset * 1000
            events += [_event(f"r{n}", when - 500, "RequestReceived"), _event(f"r{n}", when)]
        for i in range(0, len(events), 400):
            _write(store, events[i:i + 400])
        _write(store, [_event("other", start, user="someone-else")])
        got: list[dict[str, Any]] = []
        polls = 0
        while True:
            _, answer = _get(ui, follow_url)
            polls += 1
            got += answer["events"]
            follow_url = follow_url.replace(f"after_id={follow_url.rsplit('after_id=', 1)[1]}",
                                            f"after_id={answer['follow']['after_id']}")
            if not answer["follow"]["more"]:
                break
        ids = [e["auditID"] for e in got]
        assert len(ids) == 4000 and set(ids) == {f"r{n}" for n in range(4000)}  # none lost
        assert {e["stage"] for e in got} == {"ResponseComplete"}  # one row per request
        assert polls == 17  # 8,000 stages in polls of 500: the cursor covered them all
        _, again = _get(ui, follow_url)
        assert again["events"] == [] and not again["follow"]["more"]  # and nothing twice
        # Every stage, when asked for: all 8,000.
        stages_url = page["follow_url"].replace("user=burst", "user=burst&rows=stages")
        seen: list[int] = []
        while True:
            _, answer = _get(ui, stages_url)
            seen += [e["id"] for e in answer["events"]]
            stages_url = stages_url.rsplit("after_id=", 1)[0] + \
                f"after_id={answer['follow']['after_id']}"
            if not answer["follow"]["more"]:
                break
        assert len(seen) == len(set(seen)) == 8000
    finally:
        store.close()


def test_export_is_the_whole_result_as_audit_lines_or_csv(ui: WebUI, store: SQLiteStore,
                                                          tmp_path: Path) -> None:
    answer = ui.respond("/ui/events.jsonl", "rows=stages&range=all&limit=5")
    assert answer.status == 200 and answer.content_type == "application/x-ndjson"
    assert dict(answer.headers)[b"content-disposition"] == \
        b'attachment; filename="auditsink-events.jsonl"'
    assert answer.chunks is not None
    lines = b"".join(answer.chunks).splitlines()
    assert len(lines) == 248  # not capped at a page (limit is the page's, not the export's)
    prefix = b'{"kind":"Event","apiVersion":"audit.k8s.io/v1",'
    assert all(line.startswith(prefix) for line in lines)
    times = [parse_timestamp(json.loads(line)["stageTimestamp"]) for line in lines]
    assert times == sorted(times)  # oldest first, like an audit log
    # Re-importable: the lines decode as the events they came from.
    items, bad = decode_body(b"\n".join(lines))
    assert not bad and len(items) == 248
    mallory = ui.respond("/ui/events.csv", "q=user%3Amallory&range=all")
    assert mallory.content_type == "text/csv; charset=utf-8" and mallory.chunks is not None
    rows = list(csv.reader(io.StringIO(b"".join(mallory.chunks).decode())))
    assert rows[0][:7] == ["time", "cluster", "auditID", "stage", "level", "user",
                           "impersonatedUser"]
    assert len(rows) == 13 and {(r[5], r[6]) for r in rows[1:]} == {("admin", "mallory")}
    assert {r[1] for r in rows[1:]} == set(CLUSTERS)
    assert ui.respond("/ui/events.csv", "stage=Done").status == 400


def test_csv_cells_cannot_become_formulas(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/x.db")
    store.open()
    try:
        hostile = _event("x", parse_timestamp("2026-12-03T09:00:00.000000Z"),
                         user='=HYPERLINK("http://evil.example","click")',
                         userAgent="+cmd|' /C calc'!A0")
        _write(store, [hostile])
        answer = WebUI(store).respond("/ui/events.csv", "range=all")
        rows = list(csv.reader(io.StringIO(b"".join(answer.chunks or []).decode())))
        assert rows[1][5] == "'" + hostile["user"]["username"]
        assert rows[1][15] == "'+cmd|' /C calc'!A0"
    finally:
        store.close()


def test_export_streams_over_http_and_imports_back(server_factory: Any, tmp_path: Path) -> None:
    """A real `auditsink serve`: the export arrives chunked, whole, and `import` takes it."""
    import http.client

    from click.testing import CliRunner

    from auditsink.cli import main

    server = server_factory("--store", "sqlite:///export.db", "--format", "none")
    start = parse_timestamp("2026-12-03T10:00:00.000000Z")
    events = [_event(f"e{n}", start + n * 1000, user="exporter") for n in range(2500)]
    for item in events:
        item.pop("kind")
        item.pop("apiVersion")
    for i in range(0, len(events), 400):
        body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events[i:i + 400]}
        assert server.post(json.dumps(body).encode())[0] == 200
    conn = http.client.HTTPConnection("127.0.0.1", server.api_port, timeout=30)
    try:
        conn.request("GET", "/ui/events.jsonl?user=exporter&range=all")
        answer = conn.getresponse()
        assert answer.status == 200
        assert answer.getheader("transfer-encoding") == "chunked"  # streamed, no length
        assert answer.getheader("content-length") is None
        data = answer.read()
    finally:
        conn.close()
    lines = data.splitlines()
    assert len(lines) == 2500  # 50 pages' worth: the whole result
    exported = tmp_path / "export.jsonl"
    exported.write_bytes(data)
    url = f"sqlite:///{tmp_path}/again.db"
    result = CliRunner().invoke(main, ["import", "--store", url, str(exported)])
    assert result.exit_code == 0, result.output
    again = SQLiteStore(url)
    again.open(start_writer=False)
    try:
        back = again.page(Selector(users=["exporter"]), 5000, oldest_first=True)
        assert [json.loads(e.raw)["auditID"] for e in back] == [f"e{n}" for n in range(2500)]
    finally:
        again.close()
