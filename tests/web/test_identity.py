"""Identities and clusters through the UI's JSON twins and pages, on real API-server traffic in
two clusters with ``kubectl --as`` impersonation (tests/data/kube-identity, see its README):
admin acting as mallory, the ConfigMap ops/settings changed blue→green in cluster-a and
red→yellow in cluster-b, a 403 as mallory and alice's 403 in each."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, run_rules
from conftest import ui_json as _get

from auditsink.model import decode_body
from auditsink.store.sqlite import SQLiteStore
from auditsink.web import WebUI

DATA = ROOT / "tests" / "data" / "kube-identity"
CLUSTERS = ("cluster-a", "cluster-b")
EVERYTHING = "range=all"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    """Both clusters' traffic, cluster-b written first (batches come in any order), rules run."""
    filled = SQLiteStore(f"sqlite:///{tmp_path_factory.mktemp('identity')}/audit.db")
    filled.open()
    for cluster in reversed(CLUSTERS):
        items, bad = decode_body(gzip.decompress((DATA / f"{cluster}.log.gz").read_bytes()))
        assert not bad
        filled.write(items, cluster=cluster)
    run_rules(filled)
    yield filled
    filled.close()


@pytest.fixture(scope="module")
def ui(store: SQLiteStore) -> WebUI:
    return WebUI(store)


def _html(ui: WebUI, url: str) -> str:
    path, _, query = url.partition("?")
    answer = ui.respond(path, query)
    assert answer.status == 200, answer.body[:300]
    return answer.body.decode()


def test_rows_show_both_sides_and_the_impersonating_link_finds_mallory(ui: WebUI) -> None:
    _, patches = _get(ui, f"/ui/events?verb=patch&resource=configmaps&{EVERYTHING}")
    rows = patches["events"]
    assert [(r["cluster"], r["user"], r["impersonated"]) for r in rows] == [
        ("cluster-b", "admin", "mallory"), ("cluster-a", "admin", "mallory")]
    assert "<a href=\"/ui/users/admin?cluster=cluster-b\">admin</a> <span class=\"as\">as</span>" \
        in _html(ui, f"/ui/events?verb=patch&resource=configmaps&{EVERYTHING}")
    # The request view's "Impersonating mallory" leads to a page with mallory's requests.
    _, request = _get(ui, rows[0]["request_url"])
    assert request["impersonated_user"]["username"] == "mallory"
    assert request["links"]["impersonated"] == "/ui/users/mallory?cluster=cluster-b"
    _, mallory = _get(ui, request["links"]["impersonated"] + "&" + EVERYTHING)
    assert mallory["requests"] == 6  # create, list, get, patch, the forbidden list, namespaces
    assert mallory["identities"] == [{"user": "admin", "impersonated": "mallory", "count": 6,
                                      "url": mallory["identities"][0]["url"]}]
    assert {(f["verb"], f["resource"], f["code"]) for f in mallory["failures"]} == {
        ("list", "secrets", 403)}
    assert mallory["alerts"] and {a["cluster"] for a in mallory["alerts"]} == {"cluster-b"}


def test_user_page_selects_by_or_as_and_each_side_alone(ui: WebUI) -> None:
    def requests(name: str, side: str = "") -> int:
        status, doc = _get(ui, f"/ui/users/{name}?side={side}&{EVERYTHING}")
        assert status == 200
        return int(doc["requests"])

    assert requests("mallory") == requests("mallory", "impersonated") == 12
    assert requests("mallory", "authenticated") == 0  # she never signed in herself
    admin = requests("admin", "authenticated")
    assert requests("admin") == admin and admin > 12
    assert requests("admin", "impersonated") == 0
    _, page = _get(ui, f"/ui/users/mallory?{EVERYTHING}")
    assert page["events_url"].startswith("/ui/events?user=mallory&")  # by or as, in the explorer
    _, explored = _get(ui, page["events_url"])
    assert explored["hits"] == 12
    _, only_as = _get(ui, page["sides"]["impersonated"])
    assert only_as["side"] == "impersonated" and only_as["requests"] == 12
    assert _get(ui, "/ui/users/mallory?side=sideways")[0] == 400


def test_cluster_selector_lists_every_cluster_on_every_page(ui: WebUI, store: SQLiteStore) -> None:
    _, some = _get(ui, f"/ui/events?{EVERYTHING}&limit=1")
    audit_id = some["events"][0]["auditID"]
    for url in ("/ui/overview", "/ui/events", "/ui/alerts", "/ui/users/mallory",
                "/ui/objects/configmaps/ops/settings", f"/ui/requests/{audit_id}",
                "/ui/requests/no-such-id"):
        status, doc = _get(ui, url)
        if status == 200:
            assert doc["clusters"] == list(CLUSTERS) and doc["cluster_filter"] == [], url
        page = ui.respond(url.split("?")[0], "").body.decode()
        assert '<option value="" selected>all clusters</option>' in page, url
        assert "(default)" not in page and '<option value="cluster-b">cluster-b</option>' in page
    # Chosen, the selector shows it and the page is about that cluster only.
    page = _html(ui, f"/ui/overview?cluster=cluster-a&{EVERYTHING}")
    assert '<option value="cluster-a" selected>cluster-a</option>' in page
    _, overview = _get(ui, f"/ui/overview?cluster=cluster-a&{EVERYTHING}")
    assert overview["events"] == 110 and overview["cluster"] == "cluster-a"
    assert all("cluster=cluster-a" in u["url"] for u in overview["top_users"])
    # The selector keeps the page's other parameters: the header form carries them.
    page = _html(ui, "/ui/events?user=mallory&range=all")
    start = page.index('id="cluster-form"')
    form = page[start:page.index("</form>", start)]
    assert '<input type="hidden" name="user" value="mallory">' in form
    assert '<input type="hidden" name="range" value="all">' in form


def test_object_history_is_per_cluster(ui: WebUI) -> None:
    _, both = _get(ui, f"/ui/objects/configmaps/ops/settings?{EVERYTHING}")
    assert [(c["cluster"], c["verb"]) for c in both["changes"]] == [
        ("cluster-b", "patch"), ("cluster-b", "create"), ("cluster-a", "patch"),
        ("cluster-a", "create")]
    assert sorted(c["cluster"] for c in both["clusters_of_object"]) == list(CLUSTERS)
    diffs = {c["cluster"]: "\n".join(c["diff"]) for c in both["changes"] if c["verb"] == "patch"}
    # Each patch is diffed against its own cluster's create, never the other cluster's.
    assert '-    "colour": "red"' in diffs["cluster-b"]
    assert '+    "colour": "yellow"' in diffs["cluster-b"]
    assert '-    "colour": "blue"' in diffs["cluster-a"]
    assert '+    "colour": "green"' in diffs["cluster-a"]
    assert "blue" not in diffs["cluster-b"] and "green" not in diffs["cluster-b"]
    creates = [c for c in both["changes"] if c["verb"] == "create"]
    assert all(c["diff"][2].startswith("@@ -0,0") for c in creates)  # a create has no base
    one = next(c for c in both["clusters_of_object"] if c["cluster"] == "cluster-a")
    _, only_a = _get(ui, one["url"])
    assert [c["cluster"] for c in only_a["changes"]] == ["cluster-a", "cluster-a"]
    assert all("cluster=cluster-a" in c["request_url"] for c in only_a["changes"])


def test_request_view_asks_which_cluster_when_an_auditid_is_in_two(tmp_path: Path) -> None:
    # A client chooses its Audit-ID: two clusters may record the same one.
    line = ('{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"same",'
            '"stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":'
            '{"username":"USER"},"responseStatus":{"code":200},'
            '"stageTimestamp":"2026-11-26T14:00:00.000000Z"}')
    store = SQLiteStore(f"sqlite:///{tmp_path}/x.db")
    store.open()
    try:
        for cluster, user in (("east", "ann"), ("west", "bo")):
            store.write(decode_body(line.replace("USER", user).encode())[0], cluster=cluster)
        ui = WebUI(store)
        _, choose = _get(ui, "/ui/requests/same")
        assert [(c["cluster"], c["url"]) for c in choose["choose"]] == [
            ("east", "/ui/requests/same?cluster=east"), ("west", "/ui/requests/same?cluster=west")]
        _, west = _get(ui, "/ui/requests/same?cluster=west")
        assert west["user"]["username"] == "bo" and len(west["stages"]) == 1
        assert _get(ui, "/ui/requests/same?cluster=north")[0] == 404
    finally:
        store.close()


def test_alerts_show_and_filter_by_cluster(ui: WebUI) -> None:
    _, every = _get(ui, "/ui/alerts")
    assert {a["cluster"] for a in every["alerts"]} == set(CLUSTERS)
    assert all(f"cluster={a['cluster']}" in a["request_url"] for a in every["alerts"])
    keys = [tuple(map(int, a["key"].split("-"))) for a in every["alerts"]]
    assert keys == sorted(keys, reverse=True)  # time order, newest first
    # Groups by rule and cluster, the most severe first (WARNING above the many INFO).
    groups = [(g["priority"], g["rule"], g["cluster"]) for g in every["groups"]]
    assert groups[0][0] == "WARNING" and groups[-1][0] == "INFO"
    assert {g[2] for g in groups} == set(CLUSTERS)
    _, only_b = _get(ui, "/ui/alerts?cluster=cluster-b")
    assert only_b["alerts"] and {a["cluster"] for a in only_b["alerts"]} == {"cluster-b"}
    assert {g["cluster"] for g in only_b["groups"]} == {"cluster-b"}
    _, rule = _get(ui, only_b["groups"][0]["url"])
    assert {(a["rule"], a["cluster"]) for a in rule["alerts"]} == {
        (only_b["groups"][0]["rule"], "cluster-b")}
    page = _html(ui, "/ui/alerts")
    assert '<td data-label="Cluster">cluster-a</td>' in page


def test_security_panel_counts_refusals_and_links_to_them(ui: WebUI) -> None:
    _, overview = _get(ui, f"/ui/overview?{EVERYTHING}")
    security = overview["security"]
    # In each cluster: mallory's forbidden list of secrets and alice's of configmaps.
    assert security["forbidden"] == 4 and security["forbid"] == 4
    assert {(w["user"], w["impersonated"], w["count"]) for w in security["forbid_by"]} == {
        ("admin", "mallory", 2), ("alice", "", 2)}
    assert security["warnings"] >= 2  # the impersonation of system:masters, once per cluster
    _, refused = _get(ui, security["forbid_url"])
    assert refused["hits"] == 4 and {e["code"] for e in refused["events"]} == {403}
    _, alice = _get(ui, next(w["url"] for w in security["forbid_by"] if w["user"] == "alice"))
    assert alice["hits"] == 2 and {e["user"] for e in alice["events"]} == {"alice"}
    assert alice["query"] == 'authenticatedUser:alice impersonatedUser:"" decision:forbid'
    burst = security["bursts"][0]
    _, in_burst = _get(ui, burst["url"])
    assert in_burst["hits"] == burst["count"] and {e["code"] for e in in_burst["events"]} == {403}
    _, warnings = _get(ui, security["warnings_url"])
    assert warnings["alerts"] and {a["priority"] for a in warnings["alerts"]} <= {
        "EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING"}
