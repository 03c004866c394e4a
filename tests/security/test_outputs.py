"""What a hostile event can make auditsink print or post (issue 17), end to end.

Before: terminal escape sequences and fake lines passed into ``serve --format text``, ``query``,
``tail`` and ``alerts``; Slack messages carried user names and auditIDs unescaped, so a user
named ``<!channel>`` paged a channel and ``<https://evil|events>`` became a disguised link.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from security.attack import event, event_list

HOSTILE_USER = ("<!channel> mallory\x1b[2J\x1b]0;owned\x07\n"
                "FAKE 2026-11-26 admin delete pods kube-system/x 200\u202e")
HOSTILE_ID = "id|<https://evil.example|events>\r\n"


def _exec_event(audit_id: str, user: str) -> dict[str, Any]:
    """kubectl exec as the API server audits it: ResponseStarted on pods/exec."""
    return event(audit_id, stage="ResponseStarted", verb="create", user={"username": user},
                 requestURI="/api/v1/namespaces/demo/pods/web/exec?command=sh",
                 objectRef={"resource": "pods", "subresource": "exec", "namespace": "demo",
                            "name": "web", "apiVersion": "v1"},
                 responseStatus={"metadata": {}, "code": 101})


def _assert_inert(text: str) -> None:
    for char in ("\x1b", "\x07", "\r", "\u202e"):
        assert char not in text, repr(char)
    assert "FAKE" not in text or all("FAKE" not in line[:4] for line in text.splitlines())


def _cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "auditsink", *args], capture_output=True,
                          timeout=60, check=True)
    return done.stdout.decode()


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slack_hook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/services/T0/B0/x", received
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_text_outputs_escape_control_characters(server_factory: Any, tmp_path: Path,
                                                slack_hook: tuple[str, list[dict[str, Any]]],
                                                ) -> None:
    url, received = slack_hook
    server = server_factory("--format", "text", "--notify", f"slack:{url}",
                            "--notify-min-priority", "DEBUG", "--notify-since", "all")
    assert server.post(event_list(_exec_event(HOSTILE_ID, HOSTILE_USER),
                                  event("plain", user={"username": "\x1b[31mred"})))[0] == 200
    deadline = time.monotonic() + 15
    while not received:
        assert time.monotonic() < deadline, "no Slack notification arrived"
        time.sleep(0.1)
    store = f"sqlite:///{tmp_path}/auditsink.db"
    outputs = {
        "serve --format text": server.stdout_path.read_text(),
        "query": _cli("query", "--store", store),
        "query --format text": _cli("query", "--store", store, "--format", "text"),
        "tail": _cli("tail", "--store", store),
        "alerts": _cli("alerts", "--store", store),
        "show": _cli("show", "--store", store, HOSTILE_ID),
        "stats": _cli("stats", "--store", store),
    }
    for name, text in outputs.items():
        _assert_inert(text)
        assert "\\x1b" in text or name == "show", name  # escaped, still visible
    assert outputs["serve --format text"].count("\n") == 2  # one event, one line
    assert outputs["tail"].count("\n") == 2
    assert "Exec/attach" in outputs["alerts"] and outputs["alerts"].count("\n") == 1

    # Slack: no mention, no link but ours, and ours points at the quoted auditID.
    payload = json.dumps(received[0])
    message = received[0]["text"]
    assert "<!channel>" not in payload and "<https://evil" not in payload
    assert "&lt;!channel&gt; mallory" in message
    fields = {f["title"]: f["value"] for f in received[0]["attachments"][0]["fields"]}
    assert fields["auditID"] == "id|&lt;https://evil.example|events&gt;\\x0d\\x0a"
    links = [part.split(">", 1)[0] for part in message.split("<")[1:]]
    assert links == [f"http://127.0.0.1:{server.api_port}/api/v1/events/"
                     "id%7C%3Chttps%3A%2F%2Fevil.example%7Cevents%3E%0D%0A|events"]
