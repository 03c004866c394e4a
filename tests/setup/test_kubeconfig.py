"""The webhook kubeconfig: exact output, and refusals that mirror client-go's behaviour."""

from __future__ import annotations

import base64

import pytest
import yaml

from auditsink.setup.files import SetupError
from auditsink.setup.kubeconfig import Credential, server_url, webhook_kubeconfig


def test_token_kubeconfig_exact() -> None:
    text = webhook_kubeconfig(
        "https://127.0.0.1:8443/clusters/prod",
        Credential(token="s3cr3t"),
        ca_file="/etc/kubernetes/audit/ca.crt",
    )
    assert text.splitlines()[3:] == [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: auditsink",
        "  cluster:",
        "    server: https://127.0.0.1:8443/clusters/prod",
        "    certificate-authority: /etc/kubernetes/audit/ca.crt",
        "users:",
        "- name: kube-apiserver",
        "  user:",
        "    token: s3cr3t",
        "contexts:",
        "- name: default",
        "  context:",
        "    cluster: auditsink",
        "    user: kube-apiserver",
        "current-context: default",
    ]
    assert text.startswith("# Webhook kubeconfig")


def test_deterministic_and_embedded() -> None:
    cred = Credential(
        username="apiserver", password="p: w#rd", client_cert_data=b"CERT", client_key_data=b"KEY"
    )
    a = webhook_kubeconfig(
        "https://audit.example:443/", cred, ca_data=b"-----BEGIN CERTIFICATE-----\n"
    )
    assert a == webhook_kubeconfig(
        "https://audit.example:443/", cred, ca_data=b"-----BEGIN CERTIFICATE-----\n"
    )
    doc = yaml.safe_load(a)
    user = doc["users"][0]["user"]
    assert user["password"] == "p: w#rd"  # quoted correctly, survives the round trip
    assert base64.b64decode(user["client-certificate-data"]) == b"CERT"
    assert base64.b64decode(user["client-key-data"]) == b"KEY"
    assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]).startswith(
        b"-----BEGIN"
    )


def test_token_file() -> None:
    cred = Credential(token_file="/etc/kubernetes/audit/token")
    doc = yaml.safe_load(webhook_kubeconfig("https://h:8443/", cred, ca_file="ca.crt"))
    assert doc["users"][0]["user"] == {"tokenFile": "/etc/kubernetes/audit/token"}
    assert not cred.empty
    with pytest.raises(SetupError, match="inline or as a file"):
        webhook_kubeconfig("https://h/", Credential(token="t", token_file="f"), ca_file="ca.crt")
    with pytest.raises(SetupError, match="not both"):
        webhook_kubeconfig(
            "https://h/", Credential(token_file="f", username="u", password="p"), ca_file="c"
        )


def test_http_without_credentials_is_allowed() -> None:
    # The seed's setup minus the basic auth that client-go would not send anyway.
    doc = yaml.safe_load(webhook_kubeconfig("http://127.0.0.1:8080/", Credential()))
    assert doc["users"][0]["user"] == {}


@pytest.mark.parametrize(
    ("server", "cred", "ca", "message"),
    [
        (
            "http://127.0.0.1:8080/",
            Credential(username="some-user", password="some-password"),
            None,
            "client-go sends tokens and basic auth only over https",
        ),
        ("http://127.0.0.1:8080/", Credential(token="t"), None, "only over https"),
        (
            "https://h:8443/",
            Credential(token="t", username="u", password="p"),
            "ca.crt",
            "not both",
        ),
        (
            "https://h:8443/",
            Credential(username="u"),
            "ca.crt",
            "needs both --username and --password",
        ),
        ("https://h:8443/", Credential(client_cert="c.crt"), "ca.crt", "needs its key too"),
        ("https://h:8443/", Credential(token="t"), None, "https needs the CA"),
        ("https://h:8443/?token=x", Credential(token="t"), "ca.crt", "drops the query string"),
        ("ftp://h/", Credential(), None, r"must be an http\(s\) URL"),
    ],
)
def test_refusals(server: str, cred: Credential, ca: str | None, message: str) -> None:
    with pytest.raises(SetupError, match=message):
        webhook_kubeconfig(server, cred, ca_file=ca)


def test_server_url() -> None:
    assert server_url("10.0.0.5", 8443, "/audit") == "https://10.0.0.5:8443/audit"
    assert server_url("fd00::5", 8443, "clusters/a") == "https://[fd00::5]:8443/clusters/a"
    assert server_url("localhost") == "https://localhost:8443/"
