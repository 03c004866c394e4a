"""Names and credentials (issue 17): cluster names, metric labels, certificate CNs and bcrypt,
each against a real server process over real sockets (TLS where the finding needs it).

Before: newlines in an event's verb, in /clusters/NAME or in a certificate CN injected lines into
/metrics; cluster names were not validated (HTML, "..", 65 KB, control characters); mTLS took
the first of several CNs where Go and Kubernetes take the last; a password over 72 bytes gave a
500 with a traceback, the shared bcrypt limiter let anyone make the API server's first login
fail, and the answer time told which user names exist.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import socket
import ssl
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from auditsink.receive.auth import hash_password
from security.attack import event, event_list, tls_args, tls_context


@pytest.mark.parametrize("name", ["<script>alert(1)</script>", "..", "a" * 65_000, "prod%0Aevil",
                                  "prod%1B%5B2J", "-x", "x" * 64, "a%20b", "caf%C3%A9"])
def test_invalid_cluster_names_are_refused(server_factory: Any, name: str) -> None:
    server = server_factory("--format", "none", api=False)
    status, answer = server.post(event_list(event("c")), f"/clusters/{name}")
    assert status in (400, 431), answer  # 431: the 65 KB name does not fit the header limit
    if status == 400:
        assert "cluster name must be" in answer["error"] and len(answer["error"]) < 400
    status, text = server.request("GET", "/metrics")
    assert b"evil" not in text and b"script" not in text


def test_valid_cluster_names_are_kept(server_factory: Any) -> None:
    server = server_factory("--format", "none")
    for name in ("prod", "prod-eu-1", "Prod.EU_1", "a", "x" * 63):
        assert server.post(event_list(event(f"c-{name}")), f"/clusters/{name}")[0] == 200, name


def _samples(text: bytes) -> list[Any]:
    return [s for family in text_string_to_metric_families(text.decode()) for s in family.samples]


def test_hostile_verbs_cannot_inject_metric_lines(server_factory: Any) -> None:
    server = server_factory("--format", "none", api=False)
    verbs = ['get"} 1\nauditsink_fake_total 99\n#', "x\\", "\u2028", *[f"v{i}" for i in range(500)]]
    body = event_list(*[event(f"v{i}", verb=verb) for i, verb in enumerate(verbs)])
    assert server.post(body)[0] == 200
    status, text = server.request("GET", "/metrics")
    samples = _samples(text)  # prometheus-client's own parser reads it back
    assert not any(s.name.startswith("auditsink_fake") for s in samples)
    received = [s for s in samples if s.name == "auditsink_events_received_total"]
    assert {s.labels["verb"] for s in received} == {"other"}
    assert sum(s.value for s in received) == len(verbs)
    assert len(text) < 20_000  # 500 distinct verbs are not 500 series


def _cert_with_cns(pki: Path, cns: list[str], path: Path) -> str:
    """A client certificate signed by the test CA whose subject holds several CNs."""
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in cns]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return path.name


def _mtls_post(port: int, pki: Path, client: str, audit_id: str) -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=tls_context(pki, client),
                                       timeout=10)
    try:
        conn.request("POST", "/", event_list(event(audit_id)), {"Content-Type": "application/json"})
        return conn.getresponse().status
    except (ssl.SSLError, ConnectionResetError):
        return 0
    finally:
        conn.close()


def test_mtls_takes_the_last_cn_like_go_and_checks_it(server_factory: Any, pki: Path) -> None:
    server = server_factory("--format", "none", *tls_args(pki), "--client-ca", str(pki / "ca.crt"))
    two = _cert_with_cns(pki, ["first", "last"], pki / "two")
    assert _mtls_post(server.port, pki, two, "cn-1") == 200
    _, page = server.api_get("/api/v1/events")
    assert [e["cluster"] for e in page["events"]] == ["last"]
    for i, cn in enumerate(["<b>x</b>", "prod\nevil", "a" * 64, ".."]):
        bad = _cert_with_cns(pki, [cn], pki / f"bad{i}")
        assert _mtls_post(server.port, pki, bad, f"cn-bad-{i}") == 401, cn
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=tls_context(pki, two))
    conn.request("GET", "/metrics")
    text = conn.getresponse().read()
    conn.close()
    assert b"auditsink_auth_failures_total" in text
    assert b"evil" not in text and b"<b>" not in text and b"aaaa" not in text


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _post_from(port: int, source: str, authorization: str) -> tuple[int, float]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.sock = sock
    try:
        started = time.perf_counter()
        conn.request("POST", "/", event_list(event(f"b-{source}-{time.monotonic_ns()}")),
                     {"Content-Type": "application/json", "Authorization": authorization})
        status = conn.getresponse().status
        return status, time.perf_counter() - started
    finally:
        conn.close()


@pytest.fixture
def basic_server(server_factory: Any, tmp_path: Path) -> Any:
    users = tmp_path / "users"
    users.write_text(f"kube-apiserver:{hash_password('the-real-password', rounds=10)}\n")
    return server_factory("--format", "none", "--basic-auth-file", str(users), api=False)


def test_long_passwords_are_401_not_500(basic_server: Any) -> None:
    for password in ("p" * 73, "p" * 100, "\u00e9" * 40, "x" * 10_000):
        for user in ("kube-apiserver", "nobody"):
            status, _ = _post_from(basic_server.port, "127.0.0.1", _basic(user, password))
            assert status == 401
    # Every answer was a 401 (above); and nothing failed inside the server meanwhile. (Not a
    # search for "500" in the log: client ports and timestamps' milliseconds contain it.)
    log = basic_server.stderr()
    assert "Traceback" not in log and "Exception in ASGI application" not in log
    assert _post_from(basic_server.port, "127.0.0.1",
                      _basic("kube-apiserver", "the-real-password"))[0] == 200


def test_guessing_cannot_lock_the_sender_out(basic_server: Any) -> None:
    """A guesser on 127.0.0.2 spends its own bcrypt budget; the API server on 127.0.0.1
    logs in first time, right after a restart (nothing cached yet)."""
    stop = threading.Event()
    refused = [0]

    def guess() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            status, _ = _post_from(basic_server.port, "127.0.0.2",
                                   _basic("kube-apiserver", f"g{n}"))
            refused[0] += status == 401

    guessers = [threading.Thread(target=guess) for _ in range(4)]
    for thread in guessers:
        thread.start()
    time.sleep(1.5)  # the guessers' burst is long spent
    try:
        status, _ = _post_from(basic_server.port, "127.0.0.1",
                               _basic("kube-apiserver", "the-real-password"))
    finally:
        stop.set()
        for thread in guessers:
            thread.join()
    assert refused[0] > 8
    assert status == 200


def test_a_sender_cannot_pose_as_another_address(basic_server: Any) -> None:
    """X-Forwarded-For from a loopback sender is not believed: the address in the log and in
    the per-address bcrypt budget is the socket's (uvicorn trusted it from 127.0.0.1)."""
    forged = "203.0.113.77"
    conn = http.client.HTTPConnection("127.0.0.1", basic_server.port, timeout=30)
    try:
        conn.request("POST", "/", event_list(event("forwarded")),
                     {"Content-Type": "application/json", "X-Forwarded-For": forged,
                      "Authorization": _basic("kube-apiserver", "a-guess")})
        assert conn.getresponse().status == 401
    finally:
        conn.close()
    rejected = [line for line in basic_server.stderr().splitlines()
                if "rejected unauthenticated request" in line]
    assert rejected and "from 127.0.0.1:" in rejected[-1], rejected
    assert forged not in basic_server.stderr()


def test_unknown_users_take_as_long_as_known_ones(basic_server: Any) -> None:
    known: list[float] = []
    unknown: list[float] = []
    for i in range(10):  # each from its own address: the rate limit is per address
        status, took = _post_from(basic_server.port, f"127.0.1.{i + 1}",
                                  _basic("kube-apiserver", f"w{i}"))
        assert status == 401
        known.append(took)
        status, took = _post_from(basic_server.port, f"127.0.2.{i + 1}",
                                  _basic(f"nobody{i}", f"w{i}"))
        assert status == 401
        unknown.append(took)
    k, u = statistics.median(known), statistics.median(unknown)
    assert k > 0.01, "bcrypt at cost 10 takes tens of milliseconds"
    # Before, an unknown user was answered in about a millisecond: a ratio near 0.02.
    assert 0.5 < u / k < 2.0, (known, unknown)
