"""The UI end to end: real headless Chromium (Playwright) against a real `auditsink serve`.

The server receives the fixture's batch bodies over HTTP exactly as kube-apiserver sent them;
every page is then driven through the browser, and a screenshot of each is saved to
artifacts/screenshots/. ``AUDITSINK_UPDATE_DOCS_IMAGES=1`` also copies them to docs/images/,
which docs/ui.md shows.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

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


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # A laptop screen, in a time zone that is not UTC so local times are visibly converted.
    context = browser.new_context(viewport={"width": 1366, "height": 860},
                                  timezone_id="Europe/Berlin", locale="en-GB")
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield tab
    finally:
        context.close()
    assert errors == [], errors  # no script errors, no CSP violations


@pytest.fixture
def server(server_factory: Any, fixtures_dir: Path) -> Any:
    """A server holding the fixture traffic, POSTed as the API server's batches."""
    started = server_factory("--store", "sqlite:///audit.db", "--format", "none")
    for body in (fixtures_dir / "batch-bodies.jsonl").read_bytes().splitlines():
        status, answer = started.post(body)
        assert status == 200, answer
    deadline = time.monotonic() + 10
    while not started.api_get("/api/v1/alerts?limit=1")[1]["alerts"]:  # rules run just behind
        assert time.monotonic() < deadline, "the rules raised no alert on the fixture"
        time.sleep(0.1)
    return started


@pytest.fixture
def base(server: Any) -> str:
    """The UI's address: the read listener."""
    return f"http://127.0.0.1:{server.api_port}"


def _shot(tab: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_overview_renders_its_chart(page: Any, base: str) -> None:
    page.goto(base + "/")
    assert page.title() == "Overview · auditsink"
    bars = page.locator("svg.chart rect.bar")
    assert bars.count() >= 20  # a column per second of the 38-second capture, one bar per verb
    assert page.locator("svg.chart .legend-item").count() >= 4
    assert "974 events" in page.locator("#h-chart").inner_text()
    # Times are shown in the viewer's zone (Berlin is UTC+1 in November), UTC on hover.
    first = page.locator("main time").first
    assert first.get_attribute("title").startswith("UTC: 2026-11-26T")
    assert "CET" in first.inner_text()
    assert page.get_by_role("link", name="system:apiserver").is_visible()
    _shot(page, "overview")


def test_filter_narrows_the_table_and_a_row_opens_its_request(page: Any, base: str) -> None:
    page.goto(base + "/ui/events")
    rows = page.locator("#event-table tbody tr[data-id]")
    assert rows.count() == 50
    page.get_by_label("user", exact=True).fill("alice")
    page.get_by_label("code", exact=True).fill("403")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/ui/events?user=alice&code=403")  # untouched fields left out
    assert rows.count() == 2  # her two forbidden requests (RequestReceived has no code)
    assert set(rows.locator("td:nth-child(3)").all_inner_texts()) == {"alice"}
    _shot(page, "events")
    # Clicking anywhere on a row (here its verb) opens the request view.
    secret_row = rows.filter(has_text="secrets").first
    secret_row.locator("td:nth-child(4)").click()
    page.wait_for_url("**/ui/requests/3afb87e7-b22e-4a4c-8389-ff6d65b8bd4b")
    assert "list" in page.locator("h1").inner_text()
    assert page.locator("strong.decision").inner_text() == "forbid"
    assert page.get_by_role("link", name="alice").first.is_visible()
    _shot(page, "request")


def test_follow_mode_shows_new_events(page: Any, server: Any, base: str) -> None:
    page.goto(base + "/ui/events?user=bob")
    assert page.locator("#event-table tbody tr[data-id]").count() == 0
    page.get_by_role("button", name="Follow live").click()
    assert page.get_by_role("button", name="Stop following").get_attribute("aria-pressed") == "true"
    event = {"level": "Metadata", "auditID": "bob-1", "stage": "ResponseComplete", "verb": "get",
             "requestURI": "/api/v1/namespaces/demo/pods", "user": {"username": "bob"},
             "objectRef": {"resource": "pods", "namespace": "demo"},
             "responseStatus": {"metadata": {}, "code": 200},
             "stageTimestamp": "2026-11-26T14:30:00.000000Z"}
    body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [event]}
    assert server.post(json.dumps(body).encode())[0] == 200
    page.locator("#event-table tbody tr[data-id]").first.wait_for()
    assert "bob" in page.locator("#event-table tbody tr").first.inner_text()
    page.get_by_role("button", name="Stop following").click()


def test_object_history_of_pod_web(page: Any, base: str) -> None:
    page.goto(base + "/ui/objects/pods/demo/web")
    changes = page.locator("article.change h2")
    texts = changes.all_inner_texts()
    assert "create" in texts[0] and "admin" in texts[0]
    assert "delete" in texts[-1] and "admin" in texts[-1]
    assert any("delete" in t and "alice" in t and "403" in t for t in texts)
    assert page.locator("pre.diff ins").count() > 10
    added = page.locator("article.change").last.locator("ins").all_inner_texts()
    assert any("deletionTimestamp" in line for line in added)
    _shot(page, "history")


def test_alice_activity_shows_her_forbidden_secret_read(page: Any, base: str) -> None:
    page.goto(base + "/ui/users/alice")
    activity = page.locator("table.counts tbody tr")
    assert any(t.split()[:3] == ["secrets", "demo", "list"] for t in activity.all_inner_texts())
    failure = page.locator("#failures tbody tr", has_text="secrets")
    assert failure.count() == 1
    assert "list" in failure.inner_text() and "403" in failure.inner_text()
    assert "demo" in failure.inner_text()
    _shot(page, "user")


def test_alerts_link_to_their_requests(page: Any, base: str) -> None:
    page.goto(base + "/ui/alerts")
    links = page.get_by_role("link", name="view request")
    assert links.count() > 0
    _shot(page, "alerts")
    links.first.click()
    page.wait_for_url("**/ui/requests/**")
    assert page.locator("#h-alerts").is_visible()


def test_keyboard_reaches_the_content(page: Any, base: str) -> None:
    page.goto(base + "/ui/events")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")  # the first filter field, past the header
    assert page.evaluate("document.activeElement.name") == "user"
    assert page.evaluate("document.activeElement.closest('form').id") == "filters"


def test_copy_screenshots_for_the_docs() -> None:
    """With AUDITSINK_UPDATE_DOCS_IMAGES=1, refresh docs/images/ from this run's screenshots."""
    if os.environ.get("AUDITSINK_UPDATE_DOCS_IMAGES") != "1":
        pytest.skip("docs/images/ is refreshed only with AUDITSINK_UPDATE_DOCS_IMAGES=1")
    names = ("overview", "events", "request", "history", "user", "alerts")
    shots = [SHOTS / f"{name}.png" for name in names]
    missing = [str(p) for p in shots if not p.exists()]
    assert not missing, f"run the whole module: no screenshots {missing}"
    images = Path(__file__).resolve().parents[2] / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    for shot in shots:
        shutil.copyfile(shot, images / f"ui-{shot.name}")
