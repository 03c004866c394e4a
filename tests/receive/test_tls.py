"""Real TLS handshakes on 127.0.0.1 with certificates from ``auditsink setup certs``.

The server is stdlib ``http.server`` wrapped in :func:`build_ssl_context` and answering with what
:class:`Authenticator` decided, so these tests cover the same pieces the receiver wires together.
The client side is Python's ssl/http.client, and a small loader that reads the generated webhook
kubeconfig the way client-go does.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from auditsink.receive.auth import Authenticator, hash_password
from auditsink.receive.tls import (
    build_ssl_context,
    peer_cn,
    peer_cn_from_transport,
    tls_config,
    uvicorn_tls_kwargs,
)
from auditsink.setup.certs import KeyPair, generate_ca, generate_client_cert, generate_server_cert
from auditsink.setup.kubeconfig import Credential, webhook_kubeconfig

HOST = "127.0.0.1"


@dataclass
class PKI:
    """A CA plus leaf certificates written to disk."""

    dir: Path
    ca: KeyPair

    def write(self, name: str, pair: KeyPair) -> tuple[Path, Path]:
        cert, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert.write_bytes(pair.cert_pem)
        key.write_bytes(pair.key_pem)
        return cert, key

    @property
    def ca_file(self) -> Path:
        path = self.dir / "ca.crt"
        path.write_bytes(self.ca.cert_pem)
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    p = PKI(tmp_path_factory.mktemp("pki"), generate_ca())
    p.write("server", generate_server_cert(p.ca, ["localhost", HOST]))
    p.write("client", generate_client_cert(p.ca, "kube-apiserver"))
    return p


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    p = PKI(tmp_path_factory.mktemp("other"), generate_ca("another CA"))
    p.write("client", generate_client_cert(p.ca, "kube-apiserver"))
    p.write("server", generate_server_cert(p.ca, [HOST]))
    return p


@dataclass
class Server:
    """A running HTTPS server; ``errors`` collects server-side handshake failures."""

    httpd: ThreadingHTTPServer
    errors: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPS

    def handle(self) -> None:
        conn: ssl.SSLSocket = self.request
        try:
            conn.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            self.server.state.errors.append(str(exc))
            self.close_connection = True
            return
        super().handle()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        header = self.headers.get("Authorization")
        cn = peer_cn(self.request.getpeercert())
        result = self.server.authenticator.authenticate(header.encode() if header else None, cn)
        if result is None:
            payload, status = {"error": "unauthorized"}, 401
        else:
            payload = {
                "cluster": result.cluster,
                "method": result.method,
                "subject": result.subject,
                "path": self.path,
                "bytes": len(body),
            }
            status = 200
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HTTPS(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True

    def __init__(
        self, ctx: ssl.SSLContext, authenticator: Authenticator, state: Server | None = None
    ) -> None:
        super().__init__((HOST, 0), _Handler)
        self.ctx, self.authenticator = ctx, authenticator
        self.state = state or Server(self)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # Handshake in the handler thread, so one bad client cannot stall the accept loop.
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


@pytest.fixture()
def serve() -> Iterator[Any]:
    started: list[tuple[_HTTPS, threading.Thread]] = []

    def start(ctx: ssl.SSLContext, authenticator: Authenticator) -> Server:
        httpd = _HTTPS(ctx, authenticator)
        thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        started.append((httpd, thread))
        return httpd.state

    yield start
    for httpd, thread in started:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def client_ctx(ca: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def post(
    port: int, ctx: ssl.SSLContext, headers: dict[str, str] | None = None, path: str = "/"
) -> tuple[int, Any]:
    conn = http.client.HTTPSConnection(HOST, port, context=ctx, timeout=10)
    try:
        body = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}\n'
        conn.request(
            "POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})}
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def mtls_server(pki: PKI, serve: Any, authenticator: Authenticator | None = None) -> Server:
    a = authenticator or Authenticator(client_ca=pki.ca_file)
    ctx = build_ssl_context(
        pki.dir / "server.crt", pki.dir / "server.key", pki.ca_file, header_auth=a.header_auth
    )
    return serve(ctx, a)  # type: ignore[no-any-return]


def test_valid_client_certificate(pki: PKI, serve: Any) -> None:
    srv = mtls_server(pki, serve)
    status, body = post(
        srv.port, client_ctx(pki.ca_file, (pki.dir / "client.crt", pki.dir / "client.key"))
    )
    assert status == 200
    assert body["cluster"] == "kube-apiserver" and body["method"] == "mtls"
    assert srv.errors == []


def test_context_settings(pki: PKI) -> None:
    ctx = build_ssl_context(pki.dir / "server.crt", pki.dir / "server.key", pki.ca_file)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    cfg = tls_config(pki.dir / "server.crt", pki.dir / "server.key", pki.ca_file, header_auth=True)
    assert cfg.uvicorn_kwargs() == {
        "ssl_certfile": str(pki.dir / "server.crt"),
        "ssl_keyfile": str(pki.dir / "server.key"),
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
        "ssl_ca_certs": str(pki.ca_file),
    }
    assert (
        uvicorn_tls_kwargs(pki.dir / "server.crt", pki.dir / "server.key", pki.ca_file, True)
        == cfg.uvicorn_kwargs()
    )
    plain = tls_config(pki.dir / "server.crt", pki.dir / "server.key")
    assert plain.ssl_cert_reqs == ssl.CERT_NONE and "ssl_ca_certs" not in plain.uvicorn_kwargs()


def _rejected(srv: Server, ctx: ssl.SSLContext) -> str:
    # With TLS 1.3 the client finishes its handshake before the server checks its certificate,
    # so the rejection surfaces on the client's first read; the server's reason is the evidence.
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
        post(srv.port, ctx)
    for _ in range(100):
        if srv.errors:
            break
        threading.Event().wait(0.02)
    assert len(srv.errors) == 1
    return srv.errors[0]


def test_client_certificate_from_another_ca(pki: PKI, other: PKI, serve: Any) -> None:
    srv = mtls_server(pki, serve)
    reason = _rejected(
        srv, client_ctx(pki.ca_file, (other.dir / "client.crt", other.dir / "client.key"))
    )
    assert "certificate verify failed" in reason


def test_no_client_certificate_when_required(pki: PKI, serve: Any) -> None:
    srv = mtls_server(pki, serve)
    reason = _rejected(srv, client_ctx(pki.ca_file))
    assert "peer did not return a certificate" in reason


def test_server_certificate_is_no_client_certificate(pki: PKI, serve: Any) -> None:
    # The server cert is signed by the right CA but its EKU says serverAuth only.
    srv = mtls_server(pki, serve)
    reason = _rejected(
        srv, client_ctx(pki.ca_file, (pki.dir / "server.crt", pki.dir / "server.key"))
    )
    assert "unsuitable certificate purpose" in reason


def test_expired_client_certificate(pki: PKI, serve: Any) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    expired = pki.write(
        "expired-client", generate_client_cert(pki.ca, "kube-apiserver", days=1, not_before=old)
    )
    srv = mtls_server(pki, serve)
    reason = _rejected(srv, client_ctx(pki.ca_file, expired))
    assert "certificate has expired" in reason


def test_client_does_not_trust_another_ca(pki: PKI, other: PKI, serve: Any) -> None:
    srv = mtls_server(pki, serve)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        post(srv.port, client_ctx(other.ca_file, (pki.dir / "client.crt", pki.dir / "client.key")))


def test_expired_server_certificate(pki: PKI, serve: Any) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    cert, key = pki.write(
        "expired-server", generate_server_cert(pki.ca, [HOST], days=1, not_before=old)
    )
    srv = serve(build_ssl_context(cert, key), Authenticator())
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"):
        post(srv.port, client_ctx(pki.ca_file))


def test_certificate_optional_with_tokens(pki: PKI, other: PKI, serve: Any, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-1,prod\n")
    a = Authenticator(
        token_file=tokens, client_ca=pki.ca_file, allowed_cns={"kube-apiserver": "lab"}
    )
    srv = mtls_server(pki, serve, a)
    no_cert = client_ctx(pki.ca_file)
    assert post(srv.port, no_cert, {"Authorization": "Bearer tok-1"})[1]["cluster"] == "prod"
    assert post(srv.port, no_cert)[0] == 401
    with_cert = client_ctx(pki.ca_file, (pki.dir / "client.crt", pki.dir / "client.key"))
    assert post(srv.port, with_cert)[1] == {
        "cluster": "lab",
        "method": "mtls",
        "subject": "kube-apiserver",
        "path": "/",
        "bytes": 77,
    }
    assert srv.errors == []
    # Optional does not mean unchecked: a certificate from another CA still fails the handshake.
    reason = _rejected(
        srv, client_ctx(pki.ca_file, (other.dir / "client.crt", other.dir / "client.key"))
    )
    assert "certificate verify failed" in reason


def load_kubeconfig(path: Path, tmp: Path) -> tuple[str, ssl.SSLContext, dict[str, str]]:
    """Build what client-go builds from a webhook kubeconfig: URL, TLS config, auth headers."""
    cfg = yaml.safe_load(path.read_text())
    context = next(c["context"] for c in cfg["contexts"] if c["name"] == cfg["current-context"])
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == context["user"])

    def material(key: str, source: dict[str, Any]) -> str | None:
        # client-go resolves relative paths against the kubeconfig's directory.
        if f"{key}-data" in source:
            out = tmp / f"{key}.pem"
            out.write_bytes(base64.b64decode(source[f"{key}-data"]))
            return str(out)
        if key in source:
            return str(path.parent / source[key])
        return None

    ctx = ssl.create_default_context(cafile=material("certificate-authority", cluster))
    cert, key = material("client-certificate", user), material("client-key", user)
    if cert and key:
        ctx.load_cert_chain(cert, key)
    headers = {}
    if "token" in user:
        headers["Authorization"] = f"Bearer {user['token']}"
    elif "tokenFile" in user:
        # client-go reads the file (re-reading it every minute) and trims whitespace.
        token = (path.parent / user["tokenFile"]).read_text().strip()
        headers["Authorization"] = f"Bearer {token}"
    elif "username" in user:
        raw = f"{user['username']}:{user['password']}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    return cluster["server"], ctx, headers


@pytest.mark.parametrize("embed", [False, True], ids=["paths", "embedded"])
@pytest.mark.parametrize("kind", ["token", "token-file", "basic", "client-cert"])
def test_generated_kubeconfig_reaches_the_server(
    pki: PKI, serve: Any, tmp_path: Path, kind: str, embed: bool
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-kubeconfig,prod-eu\n")
    basic = tmp_path / "basic"
    basic.write_text(f"apiserver:{hash_password('p@ss w0rd', rounds=4)}:dev\n")
    a = Authenticator(token_file=tokens, basic_auth_file=basic, client_ca=pki.ca_file)
    srv = mtls_server(pki, serve, a)
    server = f"https://{HOST}:{srv.port}/k8s-audit/"
    if kind == "token":
        cred = Credential(token="tok-kubeconfig")
    elif kind == "token-file":
        (pki.dir / "token").write_text("tok-kubeconfig\n")
        cred = Credential(token_file="token")
    elif kind == "basic":
        cred = Credential(username="apiserver", password="p@ss w0rd")
    elif embed:
        cred = Credential(
            client_cert_data=(pki.dir / "client.crt").read_bytes(),
            client_key_data=(pki.dir / "client.key").read_bytes(),
        )
    else:
        cred = Credential(client_cert="client.crt", client_key="client.key")
    text = webhook_kubeconfig(
        server,
        cred,
        ca_file=None if embed else "ca.crt",
        ca_data=pki.ca.cert_pem if embed else None,
    )
    kubeconfig = pki.dir / f"webhook-{kind}-{embed}.yaml"
    kubeconfig.write_text(text)
    url, ctx, headers = load_kubeconfig(kubeconfig, tmp_path)
    # client-go strips the trailing "/" (path.Join) and appends ?timeout=30s (facts W8, W9).
    path = urlsplit(url).path.rstrip("/") + "?timeout=30s"
    status, body = post(srv.port, ctx, headers, path)
    assert status == 200
    expected = {
        "token": ("prod-eu", "token"),
        "token-file": ("prod-eu", "token"),
        "basic": ("dev", "basic"),
        "client-cert": ("kube-apiserver", "mtls"),
    }
    assert (body["cluster"], body["method"]) == expected[kind]
    assert body["path"] == "/k8s-audit?timeout=30s"


def test_peer_cn_from_an_asyncio_transport() -> None:
    """What the receiver calls on uvicorn's transport: ``get_extra_info("peercert")``."""

    class Transport:
        def __init__(self, cert: dict[str, Any] | None) -> None:
            self.cert = cert

        def get_extra_info(self, name: str) -> Any:
            return self.cert if name == "peercert" else None

    subject = {"subject": ((("organizationName", "auditsink"),), (("commonName", "prod-eu"),))}
    assert peer_cn_from_transport(Transport(subject)) == "prod-eu"
    assert peer_cn_from_transport(Transport({})) is None  # TLS without a verified client cert
    assert peer_cn_from_transport(Transport(None)) is None  # plain TCP
    assert peer_cn({"subject": ((("organizationName", "x"),),)}) is None
