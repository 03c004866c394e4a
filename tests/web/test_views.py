"""The UI's view functions and their JSON twins, over a real store filled from real traffic."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import run_rules

from auditsink.cli import main
from auditsink.model import decode_body
from auditsink.priority import RANK
from auditsink.readlistener import ReadListener
from auditsink.store.base import Selector
from auditsink.store.sqlite import SQLiteStore
from auditsink.web import WebUI, charts, urls
from auditsink.web.views import alerts, events, history, overview, request, user

ALICE_SECRETS = "3afb87e7-b22e-4a4c-8389-ff6d65b8bd4b"  # alice: list secrets in demo, 403


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Iterator[SQLiteStore]:
    """The fixture's 974 events, imported as `auditsink import` does, with the rules run."""
    url = f"sqlite:///{tmp_path_factory.mktemp('web')}/audit.db"
    result = CliRunner().invoke(main, ["import", "--store", url, str(fixtures_dir / "audit.log")])
    assert result.exit_code == 0, result.output
    filled = SQLiteStore(url)
    filled.open()
    run_rules(filled)
    yield filled
    filled.close()


@pytest.fixture(scope="module")
def ui(store: SQLiteStore) -> WebUI:
    return WebUI(store)


def _json(ui: WebUI, path: str, query: str = "") -> Any:
    answer = ui.respond(path, query)
    assert answer.content_type == "application/json"
    return answer.status, json.loads(answer.body)


def _html(ui: WebUI, path: str, query: str = "") -> tuple[int, str]:
    answer = ui.respond(path, query)
    assert answer.content_type.startswith("text/html")
    return answer.status, answer.body.decode()


def _same(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data, default=str))


@pytest.mark.parametrize(("path", "view", "args"), [
    ("/ui/overview.json", overview.view, {}),
    ("/ui/events.json", events.view, {}),
    (f"/ui/requests/{ALICE_SECRETS}.json", request.view, {"audit_id": ALICE_SECRETS}),
    ("/ui/objects/pods/demo/web.json", history.view,
     {"resource": "pods", "namespace": "demo", "name": "web"}),
    ("/ui/users/alice.json", user.view, {"username": "alice"}),
    ("/ui/alerts.json", alerts.view, {}),
])
def test_json_twin_is_the_view_dict(ui: WebUI, store: SQLiteStore, path: str, view: Any,
                                    args: dict[str, str]) -> None:
    status, doc = _json(ui, path)
    assert status == 200
    assert doc == _same(view(store, {}, **args))
    html_status, page = _html(ui, path[: -len(".json")])
    assert html_status == 200 and f'href="{path}"' in page  # every page links its twin


def test_overview_counts_the_whole_old_range(ui: WebUI) -> None:
    status, doc = _json(ui, "/ui/overview.json")
    # The fixture is in the past: the default range is everything stored.
    assert status == 200 and doc["range"]["choice"] == "all" and doc["events"] == 974
    chart = doc["chart"]
    assert chart["bucket_seconds"] == 1 and chart["bucket"] == "second"  # a 38-second burst
    assert chart["bucket_span"] == "one second"  # the caption: "Each bar is one second"
    assert sum(b["total"] for b in chart["buckets"]) == 974
    assert {"get", "create", "list", "delete"} <= set(chart["series"])
    assert doc["top_users"][0]["user"] == "system:apiserver"
    assert doc["top_users"][0]["url"].startswith("/ui/users/system:apiserver?")
    assert doc["failures"][0]["count"] >= doc["failures"][-1]["count"]
    assert {f["code"] for f in doc["failures"]} <= {400, 403, 404, 409, 422}
    _, alice = _json(ui, "/ui/overview.json",
                     "since=2026-11-26T14:23:17.1Z&until=2026-11-26T14:23:17.4Z")
    failures = {(f["code"], f["verb"], f["resource"]): f["count"] for f in alice["failures"]}
    assert failures == {(403, "list", "secrets"): 1, (403, "delete", "pods"): 1}
    assert alice["failures"][0]["url"].startswith("/ui/events?code=403&verb=")
    assert doc["alert_counts"] and doc["alert_groups"][0]["url"].startswith("/ui/alerts?")
    # Grouped by rule, the most severe first: the many INFO alerts never bury a WARNING.
    ranks = [RANK[g["priority"]] for g in doc["alert_groups"]]
    assert ranks == sorted(ranks)
    _, page = _html(ui, "/")
    stacks = sum(len(b["counts"]) for b in chart["buckets"])
    assert stacks >= 20 and page.count('<rect class="bar"') == stacks
    assert "events per second" in page and 'class="legend-item"' in page


def test_overview_of_a_day_comes_from_the_rollup_with_the_same_counts(ui: WebUI) -> None:
    # A day is long enough for whole hours to be read from memory (query/rollup.py); the
    # fixture's burst sits inside one of them, so every count must match the scan's.
    _, scanned = _json(ui, "/ui/overview.json")
    _, day = _json(ui, "/ui/overview.json", "since=2026-11-26T00:00:00Z&until=2026-11-27T00:00:00Z")
    assert day["events"] == scanned["events"] == 974
    assert day["chart"]["bucket_seconds"] == 900
    assert sum(b["total"] for b in day["chart"]["buckets"]) == 974

    def counts(rows: list[dict[str, Any]]) -> tuple[list[int], set[tuple[Any, ...]]]:
        """The counts, and the rows above the last count (ties there may differ)."""
        last = min(row["count"] for row in rows)
        return (sorted(row["count"] for row in rows),
                {tuple(v for k, v in row.items() if k != "url") for row in rows
                 if row["count"] > last})

    for key in ("top_users", "top_resources", "failures"):
        assert counts(day[key]) == counts(scanned[key]), key


def test_header_user_box_redirects_to_the_activity_page(ui: WebUI) -> None:
    answer = ui.respond("/ui/users", "user=system:serviceaccount:kube-system:default")
    assert answer.status == 303
    location = dict(answer.headers)[b"location"]
    assert location == b"/ui/users/system:serviceaccount:kube-system:default"


def test_overview_range_choices_and_errors(ui: WebUI) -> None:
    status, doc = _json(ui, "/ui/overview.json", "range=1h")
    assert status == 200 and doc["range"]["choice"] == "1h"  # now: the fixture is older
    assert doc["events"] == 0
    status, doc = _json(ui, "/ui/overview.json",
                        "since=2026-11-26T14:23:17Z&until=2026-11-26T14:23:18Z")
    assert status == 200 and 0 < doc["events"] < 974 and doc["range"]["choice"] == ""
    assert _json(ui, "/ui/overview.json", "range=1y")[0] == 400
    assert _json(ui, "/ui/overview.json", "since=yesterday")[0] == 400


def test_old_data_in_a_big_store_opens_on_its_newest_hour(
        ui: WebUI, monkeypatch: pytest.MonkeyPatch) -> None:
    from auditsink.web.views import _range

    monkeypatch.setattr(_range, "SMALL_STORE", 100)  # the fixture's 974 events are "big" now
    _, doc = _json(ui, "/ui/overview.json")
    assert doc["range"]["choice"] == "" and doc["events"] == 974  # all within its newest hour
    assert doc["range"]["until"] == "2026-11-26T14:23:52.846591Z"  # the newest event, + 1 µs
    assert doc["range"]["until_us"] - doc["range"]["since_us"] == 3600 * 1_000_000


def test_events_filters_and_time_cursor_paging(ui: WebUI) -> None:
    status, doc = _json(ui, "/ui/events.json", "user=alice&limit=2&verb=")  # empty: ignored
    # One row per request by default: alice's three requests, not their six stages.
    assert status == 200 and doc["hits"] == 3 and len(doc["events"]) == 2 and doc["next"]
    assert {e["user"] for e in doc["events"]} == {"alice"}
    assert {e["stage"] for e in doc["events"]} == {"ResponseComplete"}
    assert doc["fields"] == {"user": {"values": ["alice"], "excluded": []}}
    assert doc["query"] == "user:alice" and doc["newer_url"] is None
    path, query = doc["older_url"].split("?")
    _, rest = _json(ui, path + ".json", query)
    assert len(rest["events"]) == 1 and rest["next"] is None and rest["older_url"] is None
    keys = [(e["time_us"], e["id"]) for e in doc["events"] + rest["events"]]
    assert keys == sorted(keys, reverse=True)  # time order, newest first
    # "Newer" from the last page is the first page again.
    path, query = rest["newer_url"].split("?")
    _, back = _json(ui, path + ".json", query)
    assert [e["id"] for e in back["events"]] == [e["id"] for e in doc["events"]]
    _, stages = _json(ui, "/ui/events.json", "user=alice&rows=stages")
    assert stages["hits"] == 6 and not stages["requests_only"]
    assert {e["stage"] for e in stages["events"]} == {"RequestReceived", "ResponseComplete"}
    # Follow mode: what was committed after a log position, in log order.
    ids = sorted(e["id"] for e in stages["events"])
    _, newer = _json(ui, "/ui/events.json", f"user=alice&rows=stages&after_id={ids[3]}")
    assert [e["id"] for e in newer["events"]] == ids[4:]
    assert newer["follow"] == {"after_id": ids[-1], "more": False, "read": 2}
    _, page = _html(ui, "/ui/events", "user=alice&limit=2")
    assert 'name="user" value="alice"' in page and page.count("<tr data-id=") == 2
    assert 'id="q" name="q" value="user:alice"' in page
    assert f'href="{doc["older_url"]}"'.replace("&", "&amp;") in page
    _, forbidden = _json(ui, "/ui/events.json", "code=403")
    assert {(e["verb"], e["resource"]) for e in forbidden["events"]} == {
        ("list", "secrets"), ("delete", "pods")}


def test_events_bad_filters_answer_400(ui: WebUI) -> None:
    status, doc = _json(ui, "/ui/events.json", "stage=Done")
    assert status == 400 and "unknown stage 'Done'" in doc["error"]
    status, page = _html(ui, "/ui/events", "limit=lots")
    assert status == 400 and "expected a whole number" in page
    assert _json(ui, "/ui/events.json", "before=yesterday")[0] == 400
    # A mistyped query stays in the bar, marked invalid, with the reason beside it.
    status, page = _html(ui, "/ui/events", "q=user%3Aalice+colour%3Ablue&range=all")
    assert status == 400 and 'value="user:alice colour:blue"' in page
    assert "unknown field &#39;colour&#39;" in page and 'aria-invalid="true"' in page
    assert 'role="alert" id="q-error"' in page
    status, page = _html(ui, "/ui/events", "since=yesterday")
    assert status == 400 and "invalid time &#39;yesterday&#39;" in page
    assert 'name="since" value="yesterday"' in page  # the picker keeps it, to be corrected


def test_request_view_of_a_forbidden_secret_read(ui: WebUI) -> None:
    status, doc = _json(ui, f"/ui/requests/{ALICE_SECRETS}.json")
    assert status == 200
    assert [s["stage"] for s in doc["stages"]] == ["RequestReceived", "ResponseComplete"]
    assert doc["user"]["username"] == "alice" and doc["source_ips"] == ["127.0.0.1"]
    assert doc["decision"] == "forbid" and doc["status"]["code"] == 403
    # One cluster in this store: the links need not name it.
    assert doc["links"]["user"] == "/ui/users/alice" and doc["links"]["object"] is None
    assert doc["user_agent"].startswith("kubectl/")
    _, page = _html(ui, f"/ui/requests/{ALICE_SECRETS}")
    assert "forbid" in page and "<code>3afb87e7" in page
    assert _json(ui, "/ui/requests/no-such-id.json")[0] == 404
    assert _html(ui, "/ui/requests/no-such-id")[0] == 404


def test_request_view_pretty_prints_objects_and_links_history(ui: WebUI,
                                                             store: SQLiteStore) -> None:
    created = store.query(Selector(resources=["pods"], names=["web"], verbs=["create"],
                                   stages=["ResponseComplete"]), limit=1)[0]
    audit_id = json.loads(created.raw)["auditID"]
    _, doc = _json(ui, f"/ui/requests/{audit_id}.json")
    assert doc["links"]["object"] == "/ui/objects/pods/demo/web"
    assert json.loads(doc["request_object"])["kind"] == "Pod"
    assert doc["response_object"].startswith('{\n  "kind": "Pod"')


def test_scrub_hides_credentials_outside_secrets() -> None:
    review = {"kind": "TokenReview", "spec": {"token": "eyJhbGciOi"}, "items": [{"password": "x"}]}
    assert request.scrub(review) == {"kind": "TokenReview", "spec": {"token": request.HIDDEN},
                                     "items": [{"password": request.HIDDEN}]}
    assert "eyJhbGciOi" not in (request.pretty(review) or "")


def test_history_of_pod_web(ui: WebUI) -> None:
    status, doc = _json(ui, "/ui/objects/pods/demo/web.json", "order=oldest")
    assert status == 200 and doc["order"] == "oldest"
    steps = [(c["verb"], c["resource"], c["user"], c["code"]) for c in doc["changes"]]
    assert steps == [("create", "pods", "admin", 201), ("create", "pods/exec", "admin", 400),
                     ("delete", "pods", "alice", 403), ("delete", "pods", "admin", 200)]
    create, _, denied, delete = doc["changes"]
    assert create["diff"][0] == "--- previous"
    assert any('"name": "web"' in line for line in create["diff"])
    assert denied["diff"] is None and not denied["recorded"]
    assert any(line.startswith('+    "deletionTimestamp"') for line in delete["diff"])
    # Newest first by default, the same changes and diffs.
    _, newest = _json(ui, "/ui/objects/pods/demo/web.json")
    assert newest["order"] == "newest" and newest["changes"] == doc["changes"][::-1]
    assert newest["order_url"] == "/ui/objects/pods/demo/web?order=oldest"
    _, page = _html(ui, "/ui/objects/pods/demo/web")
    assert "<ins>" in page and "<del>" in page and "History of pods" in page
    # Newest on top.
    assert page.index('class="verb v-delete"') < page.index('class="verb v-create"')


def test_history_pages_keep_diffing_against_the_version_before(ui: WebUI) -> None:
    _, newest = _json(ui, "/ui/objects/pods/demo/web.json", "limit=2")
    assert [(c["user"], c["verb"]) for c in newest["changes"]] == [("admin", "delete"),
                                                                   ("alice", "delete")]
    # The create is on the older page, yet the delete is still diffed against it.
    delete = newest["changes"][0]["diff"]
    assert '-    "resourceVersion": "200",' in delete and len(delete) < 30
    assert newest["older_url"].startswith("/ui/objects/pods/demo/web?limit=2&before=")
    assert newest["newer_url"] is None and newest["latest_url"] is None
    path, query = newest["older_url"].split("?")
    _, older = _json(ui, path + ".json", query)
    assert [c["verb"] for c in older["changes"]] == ["create", "create"]
    assert older["older_url"] is None and older["latest_url"] == "/ui/objects/pods/demo/web?limit=2"
    path, query = older["newer_url"].split("?")
    assert _json(ui, path + ".json", query)[1]["changes"] == newest["changes"]


def test_history_of_cluster_scoped_object(ui: WebUI) -> None:
    status, doc = _json(ui, "/ui/objects/namespaces/-/demo.json")
    assert status == 200 and doc["object"]["namespace"] == ""
    assert doc["changes"][0]["verb"] == "create"
    assert urls.object_url("namespaces", "", "demo") == "/ui/objects/namespaces/-/demo"
    # A name ending in .json keeps its HTML page apart from the twin.
    assert urls.object_url("configmaps", "demo", "settings.json").endswith("/settings.json.html")
    assert _json(ui, "/ui/objects/configmaps/demo/settings.json.json")[1]["object"]["name"] == \
        "settings.json"


def test_user_activity_of_alice(ui: WebUI) -> None:
    status, doc = _json(ui, "/ui/users/alice.json")
    assert status == 200 and doc["requests"] == 3
    activity = {(a["resource"], a["namespace"], a["verb"]): a["count"] for a in doc["activity"]}
    assert activity == {("secrets", "demo", "list"): 1, ("pods", "demo", "list"): 1,
                        ("pods", "demo", "delete"): 1}
    assert {(f["verb"], f["resource"], f["code"]) for f in doc["failures"]} == {
        ("list", "secrets", 403), ("delete", "pods", 403)}
    _, page = _html(ui, "/ui/users/alice")
    assert "secrets" in page and '<span class="code c4xx">403</span>' in page


def test_user_alerts_come_from_their_own_events(ui: WebUI) -> None:
    _, admin = _json(ui, "/ui/users/admin.json")
    assert admin["alerts"] and all("admin" in a["output"] for a in admin["alerts"])
    _, nobody = _json(ui, "/ui/users/nobody.json")
    assert nobody["requests"] == 0 and nobody["alerts"] == []


def test_alerts_filters(ui: WebUI) -> None:
    status, everything = _json(ui, "/ui/alerts.json")
    assert status == 200 and everything["alerts"]
    assert sum(everything["counts"].values()) == len(everything["alerts"])
    rule = everything["alerts"][0]["rule"]
    _, one = _json(ui, "/ui/alerts.json", f"rule={rule}")
    assert {a["rule"] for a in one["alerts"]} == {rule}
    _, notice = _json(ui, "/ui/alerts.json", "priority=notice")
    assert all(a["priority"] in ("EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE")
               for a in notice["alerts"])
    assert len(notice["alerts"]) < len(everything["alerts"])
    _, page = _json(ui, "/ui/alerts.json", "limit=2")
    assert len(page["alerts"]) == 2 and page["next"]
    assert _json(ui, "/ui/alerts.json", "priority=loud")[0] == 400
    _, html = _html(ui, "/ui/alerts")
    assert f'href="{everything["alerts"][0]["request_url"]}"' in html


def test_everything_is_escaped(tmp_path: Path) -> None:
    # Every string an event controls, hostile, and a cluster name too (it is the URL's).
    line = ('{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"x<b>1",'
            '"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/n/pods/<script>",'
            '"verb":"get","user":{"username":"<script>alert(1)</script>"},'
            '"impersonatedUser":{"username":"<svg onload=alert(2)>"},"objectRef":'
            '{"resource":"pods","namespace":"n","name":"<img src=x>"},"responseStatus":'
            '{"code":403},"annotations":{"authorization.k8s.io/decision":"forbid"},'
            '"stageTimestamp":"2026-11-26T14:00:00.000000Z"}')
    items, _ = decode_body(line.encode())
    store = SQLiteStore(f"sqlite:///{tmp_path}/x.db")
    store.open()
    try:
        store.write(items)
        store.write(items, cluster='"><script>alert(3)</script>')
        ui = WebUI(store)
        for path, query in (("/", "range=all"), ("/ui/events", "range=all"),
                            ("/ui/events", "range=all&rows=stages&q=user%3A%3Cscript%3E"),
                            ("/ui/events", "q=%22%3Cscript%3E"),  # an unclosed quote: an error
                            ("/ui/requests/x<b>1", ""), ("/ui/requests/x<b>1", "cluster=%22%22"),
                            ("/ui/users/<script>alert(1)</script>", "range=all"),
                            ("/ui/users/<svg onload=alert(2)>", "range=all"),
                            ("/ui/objects/pods/n/<img src=x>", ""), ("/ui/alerts", "")):
            answer = ui.respond(path, query)
            page = answer.body.decode()
            assert answer.status in (200, 400), (path, query)
            for raw in ("<script>alert", "<img src=x>", "x<b>1", "<svg onload"):
                assert raw not in page, (path, query, raw)
    finally:
        store.close()


def test_static_files_and_unknown_pages(ui: WebUI) -> None:
    css = ui.respond("/static/app.css", "")
    assert css.status == 200 and css.content_type.startswith("text/css")
    assert b":focus-visible" in css.body
    assert ui.respond("/static/app.js", "").content_type.startswith("text/javascript")
    assert ui.respond("/static/../store/schema.sql", "").status == 404
    assert ui.respond("/ui/nothing-here", "").status == 404


def test_chart_svg_has_axes_legend_and_titles() -> None:
    chart = {"bucket_seconds": 60, "series": ["get", "delete"], "buckets": [
        {"t": 0, "time": "1970-01-01T00:00:00.000000Z", "counts": {"get": 7, "delete": 2},
         "total": 9},
        {"t": 60_000_000, "time": "1970-01-01T00:01:00.000000Z", "counts": {}, "total": 0}]}
    svg = str(charts.stacked_bars(chart))
    assert svg.startswith("<svg") and svg.count('<rect class="bar"') == 2
    assert "00:00:00.000000Z UTC, get: 7" in svg and 'class="legend-item"' in svg
    assert ">delete 2<" in svg
    assert charts.nice_ticks(87) == [0, 20, 40, 60, 80, 100] and charts.nice_ticks(0) == [0, 1]
    assert overview.bucket_seconds(3600 * 1_000_000) == 60  # the last hour: per minute
    assert overview.bucket_seconds(38 * 1_000_000) == 1


def _asgi_get(app: ReadListener, path: str,
              headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_ui_is_behind_the_read_api_token(store: SQLiteStore) -> None:
    app = ReadListener(store, token="s3cret")
    for path in ("/", "/ui/events", "/static/app.css", "/ui/users/alice.json"):
        assert _asgi_get(app, path, [])[0] == 401
    status, body = _asgi_get(app, "/", [(b"authorization", b"Bearer s3cret")])
    assert status == 200 and b"<svg" in body
    # The JSON API is unchanged.
    status, body = _asgi_get(app, "/api/v1/stats", [(b"authorization", b"Bearer s3cret")])
    assert status == 200 and json.loads(body)["events"] == 974
