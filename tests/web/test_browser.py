"""The UI end to end: real headless Chromium (Playwright) against a real `auditsink serve`.

The server receives real traffic over HTTP exactly as kube-apiserver sends it: the fixture's
batch bodies (the default cluster) and tests/data/kube-identity's two clusters with
``kubectl --as`` impersonation, posted to ``/clusters/NAME``. Every page is then driven through
the browser, and a screenshot of each is saved to artifacts/screenshots/.
``AUDITSINK_UPDATE_DOCS_IMAGES=1`` also copies them to docs/images/, which docs/ui.md shows.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import DATA, ServerProcess

from auditsink.timeutil import format_micros, parse_timestamp

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
IDENTITY = DATA / "kube-identity"
# The shots docs/ui.md shows, copied to docs/images/ui-NAME.png.
DOC_SHOTS = ("overview", "events", "request", "history", "user", "alerts", "follow",
             "mobile-overview", "mobile-request", "mobile-alerts")
PHONE = {"width": 375, "height": 812}

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) "
                "to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright package is not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module; each test gets its own page."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _tab(browser: Any, viewport: dict[str, int]) -> Iterator[Any]:
    # In a time zone that is not UTC, so local times are visibly converted.
    context = browser.new_context(viewport=viewport, timezone_id="Europe/Berlin",
                                  locale="en-GB")
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.console_errors = errors  # a test that expects an error answer removes its entry
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield tab
    finally:
        context.close()
    assert errors == [], errors  # no script errors, no CSP violations


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A laptop screen."""
    yield from _tab(browser, {"width": 1366, "height": 860})


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    """A phone's screen (an alert link opened from Slack)."""
    yield from _tab(browser, PHONE)


def _post_identity(server: ServerProcess) -> None:
    """Both clusters' audit logs as EventLists of up to 25 items, posted in shuffled order."""
    batches = []
    for cluster in ("cluster-a", "cluster-b"):
        items = [json.loads(line) for line in
                 gzip.decompress((IDENTITY / f"{cluster}.log.gz").read_bytes()).splitlines()]
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        batches += [(cluster, items[i:i + 25]) for i in range(0, len(items), 25)]
    random.Random(18).shuffle(batches)
    for cluster, items in batches:
        body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
                "items": items}
        status, answer = server.post(json.dumps(body).encode(), f"/clusters/{cluster}?timeout=30s")
        assert status == 200, answer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Iterator[Any]:
    """One server for the module, holding the fixture's traffic and both clusters'."""
    started = ServerProcess(tmp_path_factory.mktemp("browser"), "--store", "sqlite:///audit.db",
                            "--format", "none").start()
    try:
        for body in (fixtures_dir / "batch-bodies.jsonl").read_bytes().splitlines():
            status, answer = started.post(body)
            assert status == 200, answer
        _post_identity(started)
        deadline = time.monotonic() + 15
        # The rules run just behind the store: wait for the last cluster's alerts.
        while len(started.api_get("/ui/alerts.json?cluster=cluster-b")[1]["alerts"]) < 2:
            assert time.monotonic() < deadline, "the rules raised no alert on the traffic"
            time.sleep(0.1)
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def base(server: Any) -> str:
    """The UI's address: the read listener."""
    return f"http://127.0.0.1:{server.api_port}"


def _shot(tab: Any, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def _page_width(tab: Any) -> int:
    """How wide the page is: wider than the viewport means it scrolls sideways."""
    return int(tab.evaluate("Math.max(document.documentElement.scrollWidth,"
                            " document.body.scrollWidth)"))


def _hits(tab: Any) -> int:
    return int(re.sub(r"\D", "", tab.locator("#hits").inner_text()))


def test_overview_renders_its_chart_and_security_panel(page: Any, base: str) -> None:
    page.goto(base + "/?range=all")
    assert page.title() == "Overview · auditsink"
    assert page.locator("svg.chart rect.bar").count() >= 6  # a week: two days of traffic, by verb
    assert page.locator("svg.chart .legend-item").count() >= 4
    assert "1,192 events" in page.locator("#h-chart").inner_text()  # 974 + 110 + 108
    # Times are shown in the viewer's zone (Berlin is UTC+1 in winter), UTC on hover.
    first = page.locator("main time").first
    assert first.get_attribute("title").startswith("UTC: 2026-")
    assert "CET" in first.inner_text()
    tiles = page.locator("section.security ul.tiles li").all_inner_texts()
    assert any(t.startswith("6") and "forbidden (403)" in t for t in tiles)  # 2 + 2 + 2
    assert page.get_by_role("link", name="admin as mallory").is_visible()
    groups = page.locator("table.groups tbody tr td:first-child").all_inner_texts()
    assert groups[0] != "INFO" and groups[-1] == "INFO"  # the most severe first
    _shot(page, "overview")
    page.get_by_role("link", name="admin as mallory").click()
    page.wait_for_url("**/ui/events?**")
    assert _hits(page) == 2
    rows = page.locator("#event-table tbody tr[data-id]")
    assert set(rows.locator("td:nth-child(3)").all_inner_texts()) == {"admin as mallory"}


def test_query_bar_and_form_stay_in_sync(page: Any, base: str) -> None:
    page.goto(base + "/ui/events?range=all")
    bar = page.get_by_label("Query", exact=True)
    bar.fill("user:mallory -verb:get -verb:list code:2xx")
    bar.press("Enter")
    page.wait_for_url("**/ui/events?**q=**")
    rows = page.locator("#event-table tbody tr[data-id]")
    assert _hits(page) == 4  # create and patch of the ConfigMap, in each cluster
    assert set(rows.locator("td:nth-child(4)").all_inner_texts()) == {"create", "patch"}
    assert set(rows.locator("td:nth-child(3)").all_inner_texts()) == {"admin as mallory"}
    # The form shows the same query, field by field; change it there.
    page.locator("#fields-box summary").click()
    assert page.locator("#f-user").input_value() == "mallory"
    negated = page.locator('#filters input[name="verb!"]')
    assert [negated.nth(i).input_value() for i in range(negated.count())] == ["get", "list", ""]
    page.locator("#f-cluster").fill("cluster-b")
    page.get_by_role("button", name="Apply fields").click()
    page.wait_for_url("**cluster=cluster-b**")
    assert _hits(page) == 2
    assert bar.input_value() == "user:mallory code:2xx cluster:cluster-b -verb:get -verb:list"
    assert "verb%21=get" in page.url and "q=" not in page.url  # untouched fields left out
    _shot(page, "events")
    # A mistake is shown next to the bar, which keeps what was typed.
    bar.fill("user:mallory colour:blue")
    bar.press("Enter")
    page.wait_for_load_state()
    alert = page.get_by_role("alert")
    assert "unknown field 'colour'" in alert.inner_text()
    assert bar.input_value() == "user:mallory colour:blue"
    assert bar.get_attribute("aria-invalid") == "true"
    page.console_errors.remove("Failed to load resource: the server responded with a status of "
                               "400 (Bad Request)")  # the answer to the mistake is a 400


def test_histogram_bars_narrow_the_range(page: Any, base: str) -> None:
    page.goto(base + "/ui/events?range=all&cluster=cluster-a&rows=stages")
    assert _hits(page) == 110
    bars = page.locator("svg.chart a.narrow")
    assert bars.count() >= 4  # cluster-a's five seconds of traffic, one bar per second
    totals = [int(re.search(r"UTC: (\d+)", bars.nth(i).locator("rect.hit title").text_content())
                  .group(1)) for i in range(bars.count())]
    tallest = max(range(len(totals)), key=lambda i: totals[i])
    bars.nth(tallest).locator("rect.hit").click()
    page.wait_for_url("**since=**")
    query = parse_qs(urlsplit(page.url).query)
    assert query["cluster"] == ["cluster-a"] and query["rows"] == ["stages"]
    since, until = parse_timestamp(query["since"][0]), parse_timestamp(query["until"][0])
    assert until - since == 1_000_000
    assert _hits(page) == totals[tallest]
    assert page.get_by_label("since").input_value() == query["since"][0]
    times = page.locator("#event-table tbody tr[data-id]")
    for i in range(times.count()):
        assert since <= int(times.nth(i).get_attribute("data-time")) < until


def test_typed_times_are_read_in_the_viewers_zone(page: Any, base: str, server: Any) -> None:
    page.goto(base + "/ui/events?rows=stages&cluster=cluster-b&range=all")
    first = parse_timestamp(server.api_get("/ui/events.json?rows=stages&cluster=cluster-b"
                                           "&range=all&limit=500")[1]["events"][-1]["time"])
    # A second after cluster-b's first event, typed as a Berlin wall-clock time (UTC+1).
    utc = format_micros(first + 1_000_000)[:19] + "Z"
    local = format_micros(parse_timestamp(utc) + 3600 * 1_000_000)[:19].replace("T", " ")
    page.get_by_label("since").fill(local)
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**tz=Europe%2FBerlin**")
    assert "is read in your zone (Europe/Berlin)" in page.locator(".range-now").inner_text()
    expected = server.api_get(f"/ui/events.json?rows=stages&cluster=cluster-b&since={utc}")[1][
        "hits"]
    assert 0 < _hits(page) == expected < 108


def test_follow_mode_loses_and_repeats_nothing_in_a_burst(page: Any, server_factory: Any) -> None:
    server = server_factory("--store", "sqlite:///follow.db", "--format", "none")
    page.goto(f"http://127.0.0.1:{server.api_port}/ui/events?user=burst&range=all")
    assert _hits(page) == 0
    page.get_by_role("button", name="Follow live").click()
    # 20 back-to-back batches of 400, their times shuffled across batches as concurrent
    # batches from the API server arrive.
    start = parse_timestamp("2026-12-03T10:00:00.000000Z")
    offsets = list(range(8000))
    random.Random(20).shuffle(offsets)
    events = [{"level": "Metadata", "auditID": f"burst-{n:04d}", "stage": "ResponseComplete",
               "verb": "get", "requestURI": f"/api/v1/namespaces/load/pods/p{n}",
               "user": {"username": "burst"},
               "objectRef": {"resource": "pods", "namespace": "load", "name": f"p{n}"},
               "responseStatus": {"metadata": {}, "code": 200},
               "stageTimestamp": format_micros(start + offset * 1000)}
              for n, offset in enumerate(offsets)]
    failures: list[Any] = []

    def post_all() -> None:
        for i in range(0, len(events), 400):
            body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                    "items": events[i:i + 400]}
            status, answer = server.post(json.dumps(body).encode())
            if status != 200:
                failures.append(answer)

    post_all()  # while the browser follows, as fast as the server acknowledges them
    assert not failures
    rows = page.locator("#event-table tbody tr[data-id]")
    count = "document.querySelectorAll('#event-table tbody tr[data-id]').length"
    deadline = time.monotonic() + 90  # a table of 8,000 rows takes the browser seconds
    while (shown := page.evaluate(count)) < 8000:  # (wait_for_function needs eval: the CSP)
        assert time.monotonic() < deadline, f"{shown} of 8000 events arrived"
        page.wait_for_timeout(200)
    page.wait_for_timeout(2500)  # one more poll: nothing more may arrive
    ids = rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    hrefs = rows.evaluate_all("rows => rows.map(r => r.dataset.href)")
    times = rows.evaluate_all("rows => rows.map(r => Number(r.dataset.time))")
    assert len(ids) == len(set(ids)) == 8000  # none repeated
    assert {h.rsplit("/", 1)[1] for h in hrefs} == {e["auditID"] for e in events}  # none lost
    assert times == sorted(times, reverse=True)  # each placed by its time, not its arrival
    assert _hits(page) == 8000
    assert "8,000 new" in page.locator("#follow-status").inner_text()
    page.mouse.wheel(0, 640)  # the status line and the newest rows
    page.wait_for_timeout(300)
    _shot(page, "follow", full_page=False)
    page.get_by_role("button", name="Stop following").click()


def test_a_row_opens_its_request_and_impersonating_leads_to_mallory(page: Any, base: str) -> None:
    page.goto(base + "/ui/events?q=user%3Amallory+decision%3Aforbid&cluster=cluster-b&range=all")
    rows = page.locator("#event-table tbody tr[data-id]")
    assert rows.count() == 1
    rows.first.locator("td:nth-child(4)").click()  # anywhere on the row
    page.wait_for_url("**/ui/requests/**?cluster=cluster-b")
    assert "list" in page.locator("h1").inner_text()
    assert page.locator("strong.decision").inner_text() == "forbid"
    _shot(page, "request")
    page.get_by_role("link", name="mallory").first.click()
    page.wait_for_url("**/ui/users/mallory?cluster=cluster-b")
    page.get_by_role("link", name="everything").click()
    assert "6 completed requests" in page.locator("main").inner_text()
    assert page.locator("#h-identities + table tbody tr").first.inner_text().split() == [
        "admin", "mallory", "6"]
    failure = page.locator("#failures tbody tr", has_text="secrets")
    assert failure.count() == 1 and "403" in failure.inner_text()
    _shot(page, "user")


def test_cluster_selector_lists_every_cluster_and_never_vanishes(page: Any, base: str) -> None:
    page.goto(base + "/ui/overview?range=all")
    select = page.get_by_label("Cluster", exact=True)
    options = select.locator("option").all_inner_texts()
    assert options == ["all clusters", "default (unnamed)", "cluster-a", "cluster-b"]
    assert select.locator("option:checked").inner_text() == "all clusters"
    select.select_option("cluster-a")  # the script applies it at once
    page.wait_for_url("**cluster=cluster-a**")
    assert "110 events" in page.locator("#h-chart").inner_text()
    assert "range=all" in page.url  # the page's own parameters are kept
    # Every page shows it, with the choice; links carry the cluster.
    page.get_by_role("link", name="Events", exact=True).click()
    assert select.locator("option").count() == 4
    page.goto(base + "/ui/objects/configmaps/ops/settings")
    assert page.get_by_label("Cluster", exact=True).locator("option:checked").inner_text() == \
        "all clusters"
    page.get_by_label("Cluster", exact=True).select_option("cluster-b")
    page.wait_for_url("**cluster=cluster-b**")
    changes = page.locator("article.change h2").all_inner_texts()
    assert len(changes) == 2 and all("cluster-b" in c for c in changes)


def test_object_history_keeps_clusters_apart(page: Any, base: str) -> None:
    page.goto(base + "/ui/objects/configmaps/ops/settings")
    heads = page.locator("article.change h2").all_inner_texts()
    assert [h.split()[3] for h in heads] == ["patch", "create", "patch", "create"]  # newest first
    assert "exists in 2 clusters" in page.locator(".notice").inner_text()
    patches = page.locator("article.change", has_text="patch")
    b_patch = patches.filter(has_text="cluster-b").locator("pre.diff")
    assert b_patch.locator("del").all_inner_texts()[0].strip() == '-    "colour": "red"'
    added = [t.strip() for t in b_patch.locator("ins").all_inner_texts()]
    assert '+    "colour": "yellow"' in added
    assert "blue" not in b_patch.inner_text()
    _shot(page, "history")
    page.get_by_role("link", name="Oldest first").click()
    heads = page.locator("article.change h2").all_inner_texts()
    assert heads[0].split()[3] == "create" and "cluster-a" in heads[0]


def test_alerts_are_grouped_by_rule_with_clusters(page: Any, base: str) -> None:
    page.goto(base + "/ui/alerts")
    groups = page.locator("table.groups tbody tr")
    first = groups.first.inner_text()
    assert "INFO" not in first
    assert page.locator("table.alerts thead").inner_text().split()[:3] == ["Time", "Priority",
                                                                          "Cluster"]
    _shot(page, "alerts")
    page.get_by_role("link", name="view request").first.click()
    page.wait_for_url("**/ui/requests/**")
    assert page.locator("#h-alerts").is_visible()


@pytest.mark.parametrize("name", ["overview", "request", "alerts"])
def test_pages_fit_a_phone_without_scrolling_sideways(phone: Any, base: str, server: Any,
                                                      name: str) -> None:
    if name == "overview":
        url = "/?range=all"
    elif name == "request":
        rows = server.api_get("/ui/events.json?q=user%3Amallory+decision%3Aforbid"
                              "&cluster=cluster-b&range=all")[1]["events"]
        url = rows[0]["request_url"]
    else:
        # What a Slack alert links to: the alerts of one rule in one cluster.
        url = "/ui/alerts?rule=Privileged+Identity+Impersonated&cluster=cluster-a"
    phone.goto(base + url)
    assert _page_width(phone) <= PHONE["width"], f"{name} scrolls sideways"
    for element in ("header.top", "main", "footer"):
        box = phone.locator(element).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, element
    _shot(phone, f"mobile-{name}")


def test_keyboard_reaches_the_content(page: Any, base: str) -> None:
    page.goto(base + "/ui/events")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")  # the query bar, past the header
    assert page.evaluate("document.activeElement.name") == "q"


def test_copy_screenshots_for_the_docs() -> None:
    """With AUDITSINK_UPDATE_DOCS_IMAGES=1, refresh docs/images/ from this run's screenshots."""
    if os.environ.get("AUDITSINK_UPDATE_DOCS_IMAGES") != "1":
        pytest.skip("docs/images/ is refreshed only with AUDITSINK_UPDATE_DOCS_IMAGES=1")
    shots = [SHOTS / f"{name}.png" for name in DOC_SHOTS]
    missing = [str(p) for p in shots if not p.exists()]
    assert not missing, f"run the whole module: no screenshots {missing}"
    images = Path(__file__).resolve().parents[2] / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    for shot in shots:
        shutil.copyfile(shot, images / f"ui-{shot.name}")
