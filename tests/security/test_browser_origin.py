"""Browser-origin attacks in real Chromium (issue 17): a foreign page forging events into the
ingest port, and a DNS-rebinding page reading the read API.

Before: any web page could forge events on a loopback receiver with a cross-origin
``text/plain`` form POST (no CORS preflight for it), and the token-less loopback read API
answered any ``Host``, so a page whose name resolves to 127.0.0.1 could read the whole log.
Chromium's ``--host-resolver-rules`` plays the attacker's DNS: ``evil.example`` and
``rebind.example`` resolve to 127.0.0.1, exactly what a rebinding DNS server answers.
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from security.attack import event, event_list

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP evil.example 127.0.0.1, MAP rebind.example 127.0.0.1"]

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) "
                "to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright package is not installed")

FORGED = event("forged-by-a-web-page", user={"username": "system:admin"}, verb="delete")


def _attack_page(ingest: int) -> bytes:
    """What evil.example serves: a form a victim's browser submits on load, and two fetches."""
    # text/plain forms send name=value: {"kind":...,"pad":"=""} is valid JSON, an EventList
    prefix = html.escape(event_list(FORGED).decode()[:-1])
    target = f"http://127.0.0.1:{ingest}/"
    return f"""<!doctype html><title>cat pictures</title>
<form id=f method=POST action="{target}" enctype="text/plain" target=sink>
<input type=hidden name='{prefix},"pad":"' value='"}}'></form>
<iframe name=sink></iframe>
<script>
const body = {json.dumps(event_list(FORGED).decode())};
fetch("{target}", {{method: "POST", mode: "no-cors", body}});                       // text/plain
fetch("{target}", {{method: "POST", mode: "no-cors", body: new Blob([body])}});       // no type
fetch("{target}", {{method: "POST", mode: "no-cors", body: new URLSearchParams({{x: body}})}});
document.getElementById("f").submit();
</script>""".encode()


@pytest.fixture
def evil_site() -> Iterator[Any]:
    """An HTTP server for evil.example on its own port; ``.page`` is what it serves."""
    state: dict[str, bytes] = {"page": b""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = state["page"]
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.state = state  # type: ignore[attr-defined]
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _refused(server: Any) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = server.request("GET", "/metrics")[1].decode()
    return {s.labels["code"]: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "auditsink_http_requests_total"}


def test_a_foreign_page_cannot_forge_events(browser: Any, server_factory: Any,
                                            evil_site: Any) -> None:
    server = server_factory("--format", "none")
    evil_site.state["page"] = _attack_page(server.port)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://evil.example:{evil_site.server_address[1]}/")
        deadline = time.monotonic() + 10
        while sum(_refused(server).values()) < 4:  # the form and the three fetches arrived
            assert time.monotonic() < deadline, _refused(server)
            time.sleep(0.1)
    finally:
        context.close()
    assert server.api_get("/api/v1/events")[1]["events"] == []
    codes = _refused(server)
    assert set(codes) <= {"403"} and codes["403"] >= 4, codes
    # The control: the same events from a non-browser client are stored.
    assert server.post(event_list(FORGED))[0] == 200
    assert len(server.api_get("/api/v1/events")[1]["events"]) == 1


def test_dns_rebinding_cannot_read_the_api(browser: Any, server_factory: Any) -> None:
    server = server_factory("--format", "none")
    assert server.post(event_list(event("private")))[0] == 200
    context = browser.new_context()
    try:
        page = context.new_page()
        for path in ("/api/v1/events", "/"):
            answer = page.goto(f"http://rebind.example:{server.api_port}{path}")
            assert answer is not None and answer.status == 421, path
            assert "private" not in page.content()
        # Loopback names still work in the browser (the UI on http://127.0.0.1:8081/).
        answer = page.goto(f"http://localhost:{server.api_port}/api/v1/events")
        assert answer is not None and answer.status == 200 and "private" in page.content()
    finally:
        context.close()


def test_api_host_names_a_served_host(browser: Any, server_factory: Any) -> None:
    server = server_factory("--format", "none", "--api-host", "rebind.example")
    assert server.post(event_list(event("named")))[0] == 200
    context = browser.new_context()
    try:
        page = context.new_page()
        answer = page.goto(f"http://rebind.example:{server.api_port}/api/v1/events")
        assert answer is not None and answer.status == 200 and "named" in page.content()
    finally:
        context.close()
