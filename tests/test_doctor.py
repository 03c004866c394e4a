"""``auditsink doctor`` against real ``auditsink serve`` processes on 127.0.0.1.

Certificates come from ``auditsink.setup.certs`` and kubeconfigs from ``setup.kubeconfig`` (or
are written by hand where they must be wrong), so each case is a mistake a user can make.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import ServerProcess, free_port

from auditsink.cli import main
from auditsink.doctor import ERROR, OK, WARNING, Finding, diagnose
from auditsink.receive.auth import hash_password
from auditsink.setup.certs import (
    generate_bundle,
    generate_ca,
    generate_client_cert,
    generate_server_cert,
    load_key_pair,
)
from auditsink.setup.kubeconfig import Credential, webhook_kubeconfig

TOKEN = "s3cr3t-token-value"
PASSWORD = "pa55-word-value"
INSECURE = {"insecure-skip-tls-verify": True}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    for name, data in generate_bundle(["127.0.0.1", "auditsink.example"]).items():
        (d / name).write_bytes(data)
    ca = load_key_pair((d / "ca.crt").read_bytes(), (d / "ca.key").read_bytes())
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    expired = generate_server_cert(ca, ["127.0.0.1"], days=1, not_before=old)
    (d / "expired.crt").write_bytes(expired.cert_pem)
    (d / "expired.key").write_bytes(expired.key_pem)
    other = generate_ca("another CA")
    (d / "other-ca.crt").write_bytes(other.cert_pem)
    stranger = generate_client_cert(other, "kube-apiserver")
    (d / "stranger.crt").write_bytes(stranger.cert_pem)
    (d / "stranger.key").write_bytes(stranger.key_pem)
    (d / "tokens").write_text(f"{TOKEN}\nprod-token,prod\n")
    (d / "users").write_text(f"kube-apiserver:{hash_password(PASSWORD, rounds=4)}\n")
    return d


def _serve(workdir: Path, *args: str) -> Iterator[ServerProcess]:
    server = ServerProcess(workdir, *args, "--format", "none", "--no-rules").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_server(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """https with a bearer token; --client-ca makes a client certificate optional but checked."""
    yield from _serve(tmp_path_factory.mktemp("tls"), "--tls-cert", str(pki / "server.crt"),
                      "--tls-key", str(pki / "server.key"), "--token-file", str(pki / "tokens"),
                      "--client-ca", str(pki / "ca.crt"), "--path", "/k8s-audit")


@pytest.fixture(scope="module")
def expired_server(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _serve(tmp_path_factory.mktemp("expired"), "--tls-cert", str(pki / "expired.crt"),
                      "--tls-key", str(pki / "expired.key"), "--token-file", str(pki / "tokens"))


@pytest.fixture(scope="module")
def http_server(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The seed article's setup: plain http, basic auth expected."""
    yield from _serve(tmp_path_factory.mktemp("http"), "--basic-auth-file", str(pki / "users"))


def kubeconfig(tmp_path: Path, server: str, cred: Credential | None = None, *,
               ca: Path | None = None, extra: dict[str, Any] | None = None) -> Path:
    """A webhook kubeconfig as `auditsink setup webhook-config` writes it, plus extra keys."""
    text = webhook_kubeconfig(server, cred or Credential(token=TOKEN),
                              ca_file=str(ca) if ca else "placeholder")
    if ca is None:  # setup insists on a CA for https; some cases must go without one
        text = text.replace("    certificate-authority: placeholder\n", "")
    if extra:
        doc = yaml.safe_load(text)
        doc["clusters"][0]["cluster"].update(extra)
        text = yaml.safe_dump(doc, sort_keys=False)
    path = tmp_path / "webhook.yaml"
    path.write_text(text)
    return path


def by_level(findings: list[Finding], level: str) -> list[str]:
    return [f"{f.check}: {f.message}" for f in findings if f.level == level]


def only_error(findings: list[Finding], check: str) -> Finding:
    errors = [f for f in findings if f.level == ERROR]
    assert [f.check for f in errors] == [check], errors
    return errors[0]


def no_secrets(findings: list[Finding]) -> None:
    text = json.dumps([f.__dict__ for f in findings])
    assert TOKEN not in text and PASSWORD not in text


def test_all_good_https_token(tls_server: ServerProcess, pki: Path, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, f"https://127.0.0.1:{tls_server.port}/k8s-audit", ca=pki / "ca.crt")
    findings = diagnose(path)
    assert by_level(findings, ERROR) == [] and by_level(findings, WARNING) == []
    assert [f.check for f in findings] == [
        "kubeconfig", "server", "files", "credentials", "connect", "tls", "post"]
    assert "IP:127.0.0.1" in findings[5].message
    posted = "POST /k8s-audit?timeout=30s with bearer token (token): 200"
    assert findings[6].message.startswith(posted)
    no_secrets(findings)


def test_token_file_path_trailing_slash_and_query(
    tls_server: ServerProcess, pki: Path, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text(f"{TOKEN}\n")
    path = kubeconfig(tmp_path, f"https://127.0.0.1:{tls_server.port}/k8s-audit/",
                      Credential(token_file="token"), ca=pki / "ca.crt")
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["cluster"]["server"] += "?token=x"  # written by hand: setup refuses it
    path.write_text(yaml.safe_dump(doc))
    findings = diagnose(path)
    assert by_level(findings, ERROR) == []
    warnings = by_level(findings, WARNING)
    assert len(warnings) == 2
    assert "drops the query string (token=...)" in warnings[0]
    assert "posts to /k8s-audit, not /k8s-audit/" in warnings[1]
    assert "POST /k8s-audit?timeout=30s with bearer token (tokenFile" in findings[-1].message


def test_wrong_token_is_401(tls_server: ServerProcess, pki: Path, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, f"https://127.0.0.1:{tls_server.port}/k8s-audit",
                      Credential(token="not-the-token"), ca=pki / "ca.crt")
    error = only_error(diagnose(path), "post")
    assert "401" in error.message and "rejected the bearer token (token)" in error.message
    assert "--token-file" in error.remedy
    assert "not-the-token" not in error.message


@pytest.mark.parametrize(
    ("path", "token", "status", "words"),
    [("/other", TOKEN, 404, "nothing takes audit events at /other"),
     ("/clusters/staging", "prod-token", 403, "rejected the bearer token (token)")],
    ids=["wrong-path", "token-for-another-cluster"],
)
def test_path_and_cluster(tls_server: ServerProcess, pki: Path, tmp_path: Path, path: str,
                          token: str, status: int, words: str) -> None:
    path_ = kubeconfig(tmp_path, f"https://127.0.0.1:{tls_server.port}{path}",
                       Credential(token=token), ca=pki / "ca.crt")
    error = only_error(diagnose(path_), "post")
    assert f"POST {path}?timeout=30s with bearer token (token): {status} " in error.message
    assert words in error.message
    assert ("/clusters/CLUSTER" if status == 403 else "serve --path") in error.remedy


def test_https_to_a_plain_http_port(http_server: ServerProcess, pki: Path, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, f"https://127.0.0.1:{http_server.port}/", ca=pki / "ca.crt")
    error = only_error(diagnose(path), "tls")
    assert "does not speak TLS" in error.message and "--tls-cert" in error.remedy


def test_http_with_basic_auth(http_server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "webhook.yaml"
    # The seed article's kubeconfig; `setup webhook-config` refuses to write it.
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "falco", "cluster": {"server": f"http://127.0.0.1:{http_server.port}/"}}],
        "users": [{"name": "u", "user": {"username": "kube-apiserver", "password": PASSWORD}}],
        "contexts": [{"name": "default", "context": {"cluster": "falco", "user": "u"}}],
        "current-context": "default",
    }))
    findings = diagnose(path)
    errors = [f for f in findings if f.level == ERROR]
    assert [f.check for f in errors] == ["transport", "post"]
    assert "client-go silently sends NO credentials" in errors[0].message
    assert "basic auth (username kube-apiserver)" in errors[0].message
    # The receiver really got no credential: exactly what the API server would send.
    assert "with no credential (plain http): 401" in errors[1].message
    assert "auditsink setup certs" in errors[1].remedy
    no_secrets(findings)


def test_wrong_ca(tls_server: ServerProcess, pki: Path, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, f"https://127.0.0.1:{tls_server.port}/k8s-audit",
                      ca=pki / "other-ca.crt")
    error = only_error(diagnose(path), "tls")
    assert "issued by CN=auditsink CA,O=auditsink, is not trusted by certificate-authority" in (
        error.message)
    assert "other-ca.crt" in error.message and "--tls-cert" in error.remedy


@pytest.mark.parametrize(
    ("host", "server_name", "bad_name"),
    [("localhost", None, "localhost"), ("127.0.0.1", "other.example", "other.example"),
     ("127.0.0.1", "auditsink.example", None)],
    ids=["host-not-in-sans", "wrong-tls-server-name", "tls-server-name-honoured"],
)
def test_certificate_names(tls_server: ServerProcess, pki: Path, tmp_path: Path, host: str,
                           server_name: str | None, bad_name: str | None) -> None:
    extra: dict[str, Any] = {"tls-server-name": server_name} if server_name else {}
    path = kubeconfig(tmp_path, f"https://{host}:{tls_server.port}/k8s-audit", ca=pki / "ca.crt",
                      extra=extra)
    findings = diagnose(path)
    if bad_name is None:
        assert by_level(findings, ERROR) == []
        return
    error = only_error(findings, "tls")
    assert f"not valid for {bad_name}" in error.message
    assert error.message.endswith("it is valid for DNS:auditsink.example, IP:127.0.0.1")
    assert f"--host {bad_name}" in error.remedy


def test_expired_server_certificate(expired_server: ServerProcess, pki: Path,
                                    tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, f"https://127.0.0.1:{expired_server.port}/", ca=pki / "ca.crt")
    error = only_error(diagnose(path), "tls")
    assert "the server certificate (CN=127.0.0.1) expired on" in error.message


def test_client_certificate_rejected(tls_server: ServerProcess, pki: Path, tmp_path: Path) -> None:
    cred = Credential(client_cert=str(pki / "stranger.crt"), client_key=str(pki / "stranger.key"))
    path = kubeconfig(tmp_path, f"https://127.0.0.1:{tls_server.port}/k8s-audit", cred,
                      ca=pki / "ca.crt")
    error = only_error(diagnose(path), "post")
    assert "rejected the client certificate" in error.message and "--client-ca" in error.remedy


def test_client_certificate_accepted(tls_server: ServerProcess, pki: Path, tmp_path: Path) -> None:
    cred = Credential(client_cert="kube-apiserver.crt", client_key="kube-apiserver.key")
    path = kubeconfig(pki, f"https://127.0.0.1:{tls_server.port}/k8s-audit", cred,
                      ca=pki / "ca.crt")
    findings = diagnose(path)
    assert by_level(findings, ERROR) == []
    assert "with client certificate (client-certificate " in findings[-1].message


def test_embedded_client_certificate(tls_server: ServerProcess, pki: Path,
                                     tmp_path: Path) -> None:
    cred = Credential(client_cert_data=(pki / "kube-apiserver.crt").read_bytes(),
                      client_key_data=(pki / "kube-apiserver.key").read_bytes())
    path = tmp_path / "webhook.yaml"
    path.write_text(webhook_kubeconfig(f"https://127.0.0.1:{tls_server.port}/k8s-audit", cred,
                                       ca_data=(pki / "ca.crt").read_bytes()))
    findings = diagnose(path)
    assert by_level(findings, ERROR) == []
    assert "with client certificate (client-certificate-data): 200" in findings[-1].message


def test_expired_client_certificate(pki: Path, tmp_path: Path) -> None:
    ca = load_key_pair((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes())
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    pair = generate_client_cert(ca, days=1, not_before=old)
    cred = Credential(client_cert_data=pair.cert_pem, client_key_data=pair.key_pem)
    path = kubeconfig(tmp_path, "https://127.0.0.1:1/", cred, ca=pki / "ca.crt")
    error = only_error(diagnose(path), "files")
    assert "client certificate CN=kube-apiserver expired on" in error.message


def test_insecure_skip_tls_verify(tls_server: ServerProcess, pki: Path, tmp_path: Path) -> None:
    # Against the certificate for the wrong name: Go's InsecureSkipVerify skips that check too.
    url = f"https://localhost:{tls_server.port}/k8s-audit"
    findings = diagnose(kubeconfig(tmp_path, url, ca=None, extra=INSECURE))
    assert by_level(findings, ERROR) == []
    assert [w.split(":")[0] for w in by_level(findings, WARNING)] == ["tls-config", "tls"]
    assert "not valid for localhost" in by_level(findings, WARNING)[1]
    both = kubeconfig(tmp_path, url, ca=pki / "ca.crt", extra=INSECURE)
    error = only_error(diagnose(both), "tls-config")
    assert "client-go refuses this" in error.message
    assert "connect" not in [f.check for f in diagnose(both)]


def test_nothing_listening(pki: Path, tmp_path: Path) -> None:
    port = free_port()
    error = only_error(
        diagnose(kubeconfig(tmp_path, f"https://127.0.0.1:{port}/", ca=pki / "ca.crt")), "connect")
    assert f"cannot connect to 127.0.0.1:{port}" in error.message
    assert "refused" in error.message
    assert f"auditsink serve --listen 127.0.0.1:{port}" in error.remedy


def test_files_and_credentials_checked_before_connecting(pki: Path, tmp_path: Path) -> None:
    path = tmp_path / "webhook.yaml"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1/",
                                               "certificate-authority": "missing.crt"}}],
        "users": [{"name": "u", "user": {
            "client-certificate": str(pki / "kube-apiserver.crt"),
            "client-key": str(pki / "server.key"), "token": TOKEN,
            "username": "a", "password": PASSWORD}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }))
    findings = diagnose(path)
    errors = by_level(findings, ERROR)
    assert len(errors) == 3, errors
    assert "cannot read certificate-authority" in errors[0] and "missing.crt" in errors[0]
    assert "server.key is not the key of client-certificate" in errors[1]
    assert "bearer token and basic auth (username) are both set" in errors[2]
    assert "connect" not in [f.check for f in findings]
    no_secrets(findings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apiVersion: v1\nclusters:\n- name: a\n  cluster: {server: https://h\n",
         "webhook.yaml:5: not valid YAML"),
        ("contexts:\n- name: default\n  context: {cluster: c, user: u}\ncurrent-context: prod\n",
         'webhook.yaml:4: current-context: context "prod" does not exist (contexts: default)'),
        ("clusters: []\ncontexts:\n- name: d\n  context: {cluster: c}\ncurrent-context: d\n",
         'webhook.yaml:4: cluster "c" does not exist (clusters: none)'),
        ("clusters:\n- name: c\n  cluster: {server: https://h}\ncontexts:\n- name: d\n"
         + "  context: {cluster: c, user: nobody}\ncurrent-context: d\n",
         'webhook.yaml:6: user "nobody" does not exist (users: none)'),
        ("kind: Config\nclusters: []\n", "no current-context"),
    ],
    ids=["broken-yaml", "missing-context", "missing-cluster", "missing-user", "no-context"],
)
def test_kubeconfig_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "webhook.yaml"
    path.write_text(text)
    error = only_error(diagnose(path), "kubeconfig")
    assert message in error.message


def test_cluster_addresses_warn(tmp_path: Path, pki: Path) -> None:
    svc = diagnose(kubeconfig(tmp_path, "https://auditsink.auditsink.svc.cluster.local:8443/",
                              ca=pki / "ca.crt"), timeout=0.5)
    error = only_error(svc, "address")
    assert "cannot resolve auditsink.auditsink.svc.cluster.local (a cluster DNS name)" in (
        error.message)
    assert "node's resolv.conf, not cluster DNS" in error.remedy
    ip = diagnose(kubeconfig(tmp_path, "https://10.96.0.10:1/", ca=pki / "ca.crt"), timeout=0.3)
    warning = next(f for f in ip if f.level == WARNING)
    assert "kubeadm/kind/minikube's default Service range 10.96.0.0/12" in warning.message
    assert "hostNetwork" in warning.remedy


def test_policy(tmp_path: Path, pki: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n")
    nothing = tmp_path / "nothing.yaml"
    nothing.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n"
                       "- level: Metadata\n  verbs: [create]\n")
    hidden = tmp_path / "hidden.yaml"
    hidden.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"
                      "- level: RequestResponse\n  resources: [{group: '', resources: [pods]}]\n")
    config = kubeconfig(tmp_path, "https://127.0.0.1:1/", ca=pki / "ca.crt")
    found = [f for f in diagnose(config, broken) if f.check == "policy"]
    assert [f.level for f in found] == [ERROR, ERROR]
    assert found[0].message.startswith(f"{broken}:4: error: rules[0].level: Unsupported value")
    assert "refuses this policy" in found[1].message
    found = [f for f in diagnose(config, nothing) if f.check == "policy"]
    assert "records nothing" in found[0].message and found[-1].level == OK
    found = [f for f in diagnose(config, hidden) if f.check == "policy"]
    assert f"{hidden}:4: rules[0] (Metadata) matches every request" in found[0].message
    assert [f.level for f in found] == [WARNING, OK]


def test_cli_text_and_json(tls_server: ServerProcess, pki: Path, tmp_path: Path) -> None:
    good = kubeconfig(tmp_path, f"https://127.0.0.1:{tls_server.port}/k8s-audit", ca=pki / "ca.crt")
    result = CliRunner().invoke(main, ["doctor", "--webhook-config", str(good)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("ok    kubeconfig   ")
    assert "No errors, 0 warning(s)" in result.output
    bad = tmp_path / "bad" / "webhook.yaml"
    bad.parent.mkdir()
    bad.write_text(good.read_text().replace(TOKEN, "wrong"))
    result = CliRunner().invoke(main, ["doctor", "--webhook-config", str(bad), "--format", "json",
                                       "--timeout", "2"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert (report["ok"], report["errors"], report["warnings"]) == (False, 1, 0)
    assert report["findings"][-1]["level"] == "error" and "401" in report["findings"][-1]["message"]
    result = CliRunner().invoke(main, ["doctor", "--webhook-config", str(bad)])
    assert "FAIL  post" in result.output and "fix: the token must be" in result.output
    assert "1 error(s), 0 warning(s)" in result.output
