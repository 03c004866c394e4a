"""The user page's least-privilege section in real headless Chromium, against a real
`auditsink serve` whose store holds a real API server's audit log of the issue-14 workload
and a granted snapshot kept with `auditsink rbac load`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import os
import shutil

import pytest
import yaml
from click.testing import CliRunner

from auditsink.cli import main

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
DATA = Path("tests") / "data" / "rbac"  # relative: the page names the snapshot as loaded

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) "
                "to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright package is not installed")


@pytest.fixture
def base(server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(ROOT)
    url = f"sqlite:///{tmp_path}/audit.db"
    for args in (["import", "--store", url, str(DATA / "workload-audit.log")],
                 ["rbac", "load", "--store", url, "--granted", str(DATA / "granted-harness.yaml")]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    server = server_factory("--store", url, "--format", "none")
    return f"http://127.0.0.1:{server.api_port}"


@pytest.fixture
def page() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
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
            browser.close()
        assert errors == [], errors  # no script errors, no CSP violations


def test_user_page_shows_suggested_rbac_and_unused_grants(page: Any, base: str) -> None:
    # From the header's user box, as a person would get there: carol only ever acted through
    # admin's impersonation, and was denied.
    page.goto(base + "/")
    page.get_by_label("User", exact=True).fill("carol")
    page.get_by_label("User", exact=True).press("Enter")
    page.wait_for_url("**/ui/users/carol")
    page.get_by_role("heading", name="Least privilege").scroll_into_view_if_needed()
    carol = yaml.safe_load_all(page.locator("#rbac-yaml").inner_text())
    assert next(carol)["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                                     "verbs": ["get", "list", "watch"]}]
    assert "the denied one included" in page.locator("#rbac").inner_text()

    page.goto(base + "/ui/users/system:serviceaccount:work:robot")
    section = page.locator("#rbac")
    assert "51 requests ServiceAccount work/robot made in this range" in section.inner_text()
    docs = [d for d in yaml.safe_load_all(page.locator("#rbac-yaml").inner_text()) if d]
    assert [d["kind"] for d in docs] == ["ClusterRole", "ClusterRoleBinding", "Role",
                                         "RoleBinding"]
    assert page.locator("#rbac-ratio").inner_text().startswith(
        "Used 3 of 4 granted permissions (75%) in this range")
    # The load time is shown in the viewer's zone, like every time in the UI.
    assert "UTC: " in page.locator("#rbac-ratio time").get_attribute("title")
    unused = page.locator("#rbac-unused tbody tr")
    assert unused.count() == 1
    assert unused.first.locator("td").all_inner_texts() == [
        "work", "get configmaps", "RoleBinding/work/robot-cm -> Role/work/cm-reader"]
    assert page.locator("#rbac-wildcards tbody tr").count() == 2
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "user-rbac.png"), full_page=True)
    if os.environ.get("AUDITSINK_UPDATE_DOCS_IMAGES") == "1":  # as tests/web/test_browser.py
        shutil.copy(SHOTS / "user-rbac.png", ROOT / "docs" / "images" / "ui-user-rbac.png")
