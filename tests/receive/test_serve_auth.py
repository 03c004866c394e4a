"""`auditsink serve` with TLS and sender authentication, spoken to over real TLS sockets."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from auditsink.receive.auth import hash_password
from auditsink.setup.certs import generate_bundle, generate_ca, generate_client_cert
from conftest import ServerProcess

BODY = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": [
    {"level": "Metadata", "auditID": "tls-1", "stage": "ResponseComplete", "verb": "get",
     "user": {"username": "admin"}, "requestReceivedTimestamp": "2026-11-26T10:00:00.000001Z",
     "stageTimestamp": "2026-11-26T10:00:00.000002Z"}]}).encode()


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    for name, data in generate_bundle(["127.0.0.1", "localhost"]).items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "tokens").write_text("# rotated monthly\ns3cr3t-token,prod\n")
    (tmp_path / "users").write_text(f"kube-apiserver:{hash_password('pa55word')}:staging\n")
    return tmp_path


def _post(server: ServerProcess, pki: Path, path: str = "/?timeout=30s", client: str | None = None,
          **headers: str) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if client:
        context.load_cert_chain(str(pki / f"{client}.crt"), str(pki / f"{client}.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    try:
        conn.request("POST", path, BODY, {"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def _clusters(server: ServerProcess) -> list[str]:
    return sorted(e["cluster"] for e in server.api_get("/api/v1/events")[1]["events"])


def test_tokens_and_basic_auth_name_the_cluster(server_factory: Any, pki: Path) -> None:
    server = server_factory("--tls-cert", str(pki / "server.crt"),
                            "--tls-key", str(pki / "server.key"),
                            "--token-file", str(pki / "tokens"),
                            "--basic-auth-file", str(pki / "users"), "--format", "none")
    assert _post(server, pki, Authorization="Bearer s3cr3t-token")[0] == 200
    basic = base64.b64encode(b"kube-apiserver:pa55word").decode()
    assert _post(server, pki, Authorization=f"Basic {basic}")[0] == 200
    assert _clusters(server) == ["prod", "staging"]
    status, answer = _post(server, pki, Authorization="Bearer wrong")
    assert (status, answer) == (401, {"error": "unauthorized"})
    assert _post(server, pki)[0] == 401
    wrong = base64.b64encode(b"kube-apiserver:nope").decode()
    assert _post(server, pki, Authorization=f"Basic {wrong}")[0] == 401
    # A credential bound to a cluster cannot write as another one.
    assert _post(server, pki, "/clusters/staging", Authorization="Bearer s3cr3t-token")[0] == 403
    log = server.stderr()
    assert "s3cr3t-token" not in log and "pa55word" not in log and "wrong" not in log


def test_mutual_tls(server_factory: Any, pki: Path, tmp_path: Path) -> None:
    server = server_factory("--tls-cert", str(pki / "server.crt"),
                            "--tls-key", str(pki / "server.key"),
                            "--client-ca", str(pki / "ca.crt"), "--format", "none")
    assert _post(server, pki, client="kube-apiserver")[0] == 200
    assert _clusters(server) == ["kube-apiserver"]
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _post(server, pki)  # no client certificate: the handshake fails
    other = generate_client_cert(generate_ca(), "kube-apiserver")
    (tmp_path / "other.crt").write_bytes(other.cert_pem)
    (tmp_path / "other.key").write_bytes(other.key_pem)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _post(server, pki, client="other")  # signed by another CA


def test_beyond_loopback_needs_tls_and_auth(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "--format", "none")
    server.args = ["--listen", "0.0.0.0:1", *server.args]
    with pytest.raises(RuntimeError, match="refusing to listen on 0.0.0.0:1 beyond loopback"):
        server.start()
