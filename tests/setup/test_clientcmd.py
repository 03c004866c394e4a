"""Reading a webhook kubeconfig as client-go does: paths, schemes, data, refusals."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from auditsink.setup.certs import generate_ca, generate_server_cert
from auditsink.setup.clientcmd import (
    KubeconfigError,
    auth_header,
    cert_valid_for,
    load_webhook_config,
    san_text,
    ssl_context,
)


def write(tmp_path: Path, cluster: dict[str, object], user: dict[str, object]) -> Path:
    path = tmp_path / "webhook.yaml"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "d", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "d",
    }))
    return path


@pytest.mark.parametrize(
    ("server", "cluster", "expected"),
    [
        ("https://h:8443/audit/", {}, ("https", "h", 8443, "/audit", "", False)),
        ("https://h", {}, ("https", "h", 443, "/", "", False)),
        ("http://[fd00::5]:8080/?token=x#f", {},
         ("http", "fd00::5", 8080, "/", "token=x#f", False)),
        ("10.0.0.5:8443", {"insecure-skip-tls-verify": True},
         ("https", "10.0.0.5", 8443, "/", "", True)),
        ("localhost:8080/a", {}, ("http", "localhost", 8080, "/a", "", True)),
    ],
)
def test_server_url_like_client_go(tmp_path: Path, server: str, cluster: dict[str, object],
                                   expected: tuple[object, ...]) -> None:
    cfg = load_webhook_config(write(tmp_path, {"server": server, **cluster}, {}))
    assert (cfg.scheme, cfg.host, cfg.port, cfg.path, cfg.dropped_query,
            cfg.scheme_guessed) == expected
    assert cfg.post_target == cfg.path + "?timeout=30s"


def test_relative_paths_inline_data_and_auth(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("  tok-from-file\n")
    ca = base64.b64encode(b"CA PEM").decode()
    cfg = load_webhook_config(write(
        tmp_path, {"server": "https://h/", "certificate-authority-data": ca},
        {"tokenFile": "token", "token": "inline", "client-certificate": "c.crt",
         "client-key": "/abs/c.key"}))
    assert cfg.ca is not None and cfg.ca.read() == b"CA PEM"
    assert cfg.ca.source == "certificate-authority-data"
    assert cfg.client_cert is not None and cfg.client_cert.path == tmp_path.resolve() / "c.crt"
    assert cfg.client_key is not None and cfg.client_key.path == Path("/abs/c.key")
    assert auth_header(cfg) == "Bearer tok-from-file"  # the file wins, trimmed
    basic = load_webhook_config(write(tmp_path, {"server": "https://h/"},
                                      {"username": "a", "password": "pw-secret"}))
    assert auth_header(basic) == "Basic " + base64.b64encode(b"a:pw-secret").decode()
    assert "pw-secret" not in repr(basic) and "tok-from-file" not in repr(cfg)


@pytest.mark.parametrize(
    ("cluster", "user", "message"),
    [
        ({"server": "https://h/", "certificate-authority": "a",
          "certificate-authority-data": "QQ=="},
         {}, "certificate-authority-data and certificate-authority are both set"),
        ({"server": "https://h/"}, {"client-certificate": "c.crt"}, "without client-key"),
        ({"server": "https://h/", "certificate-authority-data": "%%%"}, {}, "not valid base64"),
        ({}, {}, 'cluster "c" has no server'),
        ({"server": "ftp://h/"}, {}, "scheme must be http or https"),
        ({"server": "https://h:99999/"}, {}, "invalid port"),
    ],
)
def test_refusals(tmp_path: Path, cluster: dict[str, object], user: dict[str, object],
                  message: str) -> None:
    with pytest.raises(KubeconfigError, match=message) as info:
        load_webhook_config(write(tmp_path, cluster, user))
    assert str(info.value).startswith(str(tmp_path / "webhook.yaml"))


def test_duplicate_names(tmp_path: Path) -> None:
    path = tmp_path / "webhook.yaml"
    path.write_text("clusters:\n- name: c\n  cluster: {server: https://a}\n"
                    "- name: c\n  cluster: {server: https://b}\n"
                    "contexts: [{name: d, context: {cluster: c}}]\ncurrent-context: d\n")
    with pytest.raises(KubeconfigError, match='webhook.yaml:4: duplicate name "c" in clusters'):
        load_webhook_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="cannot read: No such file"):
        load_webhook_config(tmp_path / "absent.yaml")


def test_san_matching_like_go() -> None:
    ca = generate_ca()
    cert = generate_server_cert(ca, ["*.audit.example", "10.0.0.5", "plain.example"]).cert
    assert cert_valid_for("x.audit.example", cert) and cert_valid_for("PLAIN.example.", cert)
    assert not cert_valid_for("a.b.audit.example", cert)  # one label only
    assert not cert_valid_for("audit.example", cert)
    assert cert_valid_for("10.0.0.5", cert) and not cert_valid_for("10.0.0.6", cert)
    # The CN is *.audit.example too, but Go never falls back to it for an IP.
    assert san_text(cert) == "DNS:*.audit.example, DNS:plain.example, IP:10.0.0.5"


def test_ssl_context_with_inline_client_certificate(tmp_path: Path) -> None:
    ca = generate_ca()
    pair = generate_server_cert(ca, ["h"])
    path = write(tmp_path, {"server": "https://h/",
                            "certificate-authority-data": base64.b64encode(ca.cert_pem).decode()},
                 {"client-certificate-data": base64.b64encode(pair.cert_pem).decode(),
                  "client-key-data": base64.b64encode(pair.key_pem).decode()})
    ctx = ssl_context(load_webhook_config(path))
    assert ctx.verify_mode.name == "CERT_REQUIRED" and len(ctx.get_ca_certs()) == 1
