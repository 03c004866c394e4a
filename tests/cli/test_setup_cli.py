"""``auditsink setup ...`` through click's CliRunner: stdout, --out, --force, next steps."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner

from auditsink.cli import main
from auditsink.receive.auth import Authenticator, AuthResult
from auditsink.setup.policy import policy_text

FIXTURE = Path(__file__).resolve().parents[1] / "setup" / "data" / "kube-apiserver.yaml"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["setup", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_certs_refuses_to_overwrite(tmp_path: Path) -> None:
    code, _, err = run(
        "certs", "--host", "127.0.0.1", "--host", "audit.local", "--out", str(tmp_path)
    )
    assert code == 0, err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "ca.crt",
        "ca.key",
        "kube-apiserver.crt",
        "kube-apiserver.key",
        "server.crt",
        "server.key",
    ]
    assert "next:" in err and "webhook-config" in err
    before = (tmp_path / "ca.key").read_bytes()
    code, _, err = run("certs", "--host", "127.0.0.1", "--out", str(tmp_path))
    assert code == 1 and "refusing to overwrite" in err and "--force" in err
    assert (tmp_path / "ca.key").read_bytes() == before
    code, _, _ = run("certs", "--host", "127.0.0.1", "--out", str(tmp_path), "--force")
    assert code == 0 and (tmp_path / "ca.key").read_bytes() != before
    # Reusing the CA: a second cluster's client certificate from the same CA.
    other = tmp_path / "b"
    code, _, err = run(
        "certs",
        "--host",
        "127.0.0.1",
        "--client-cn",
        "apiserver-b",
        "--out",
        str(other),
        "--ca-cert",
        str(tmp_path / "ca.crt"),
        "--ca-key",
        str(tmp_path / "ca.key"),
    )
    assert code == 0, err
    assert (
        not (other / "ca.key").exists()
        and (other / "ca.crt").read_bytes() == (tmp_path / "ca.crt").read_bytes()
    )


def test_certs_needs_out() -> None:
    code, _, err = run("certs", "--host", "127.0.0.1")
    assert code == 2 and "--out" in err


def test_webhook_config_with_new_token(tmp_path: Path) -> None:
    code, out, err = run(
        "webhook-config",
        "--host",
        "10.0.0.5",
        "--ca",
        "/etc/kubernetes/audit/ca.crt",
        "--new-token",
        "--cluster",
        "prod",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    assert out == ""
    cfg = yaml.safe_load((tmp_path / "webhook.yaml").read_text())
    assert cfg["clusters"][0]["cluster"]["server"] == "https://10.0.0.5:8443/"
    token = cfg["users"][0]["user"]["token"]
    auth = Authenticator(token_file=tmp_path / "tokens")
    assert auth.authenticate(f"Bearer {token}".encode(), None) == AuthResult(
        "prod", "token", "token:tokens:2"
    )
    assert (tmp_path / "webhook.yaml").stat().st_mode & 0o777 == 0o600
    assert token not in err


def test_webhook_config_with_token_path(tmp_path: Path) -> None:
    code, _, err = run(
        "webhook-config",
        "--ca",
        "/etc/kubernetes/audit/ca.crt",
        "--new-token",
        "--token-path",
        "/etc/kubernetes/audit/token",
        "--cluster",
        "lab",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    user = yaml.safe_load((tmp_path / "webhook.yaml").read_text())["users"][0]["user"]
    assert user == {"tokenFile": "/etc/kubernetes/audit/token"}
    token = (tmp_path / "token").read_text().strip()
    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    auth = Authenticator(token_file=tmp_path / "tokens")
    assert auth.authenticate(f"Bearer {token}".encode(), None) is not None
    assert "webhook.yaml and token to /etc/kubernetes/audit/" in err


def test_webhook_config_with_new_password(tmp_path: Path) -> None:
    code, _, err = run(
        "webhook-config",
        "--ca",
        "/etc/kubernetes/audit/ca.crt",
        "--new-password",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    user = yaml.safe_load((tmp_path / "webhook.yaml").read_text())["users"][0]["user"]
    assert (
        "$2b$" in (tmp_path / "basic-auth").read_text()
        and user["password"] not in (tmp_path / "basic-auth").read_text()
    )
    header = b"Basic " + base64.b64encode(f"{user['username']}:{user['password']}".encode())
    assert Authenticator(basic_auth_file=tmp_path / "basic-auth").authenticate(
        header, None
    ) == AuthResult("", "basic", "kube-apiserver")


def test_webhook_config_embed_to_stdout(tmp_path: Path) -> None:
    run("certs", "--host", "127.0.0.1", "--out", str(tmp_path))
    code, out, err = run(
        "webhook-config",
        "--ca",
        str(tmp_path / "ca.crt"),
        "--embed",
        "--client-cert",
        str(tmp_path / "kube-apiserver.crt"),
        "--client-key",
        str(tmp_path / "kube-apiserver.key"),
        "--path",
        "/clusters/lab",
    )
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:8443/clusters/lab"
    assert (
        base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
        == (tmp_path / "ca.crt").read_bytes()
    )
    assert set(cfg["users"][0]["user"]) == {"client-certificate-data", "client-key-data"}


def test_webhook_config_refuses_http_with_credentials() -> None:
    # The seed's kubeconfig: http plus basic auth, which client-go would silently not send.
    code, out, err = run(
        "webhook-config",
        "--server",
        "http://127.0.0.1:8080/",
        "--username",
        "some-user",
        "--password",
        "some-password",
    )
    assert code == 2 and out == ""
    assert "only over https" in err
    code, _, err = run("webhook-config", "--server", "http://127.0.0.1:8080/")
    assert code == 0 and "warning: no credential" in err


def test_policy(tmp_path: Path) -> None:
    code, out, err = run("policy", "--preset", "seed")
    assert code == 0 and out == policy_text("seed") and "next:" in err
    assert run("policy", "--out", str(tmp_path))[0] == 0
    assert (tmp_path / "policy.yaml").read_text() == policy_text("detection")
    code, _, err = run("policy", "--preset", "minimal", "--out", str(tmp_path))
    assert code == 1 and "refusing to overwrite" in err
    assert run("policy", "--preset", "minimal", "--out", str(tmp_path), "--force")[0] == 0
    assert (tmp_path / "policy.yaml").read_text() == policy_text("minimal")


def test_kubeadm_diff_then_apply(tmp_path: Path) -> None:
    manifest = tmp_path / "kube-apiserver.yaml"
    shutil.copy(FIXTURE, manifest)
    code, out, err = run("kubeadm", str(manifest), "--batch-max-size", "100")
    assert code == 0, err
    assert out.startswith("--- a/") and "+    - --audit-webhook-batch-max-size=100" in out
    assert manifest.read_text() == FIXTURE.read_text()  # a diff only, nothing written
    assert "--apply" in err
    code, out, err = run("kubeadm", str(manifest), "--apply", "--batch-max-size", "100")
    assert code == 0 and out == "" and "crictl" in err
    (backup,) = tmp_path.glob(".kube-apiserver.yaml.*.bak")
    assert backup.read_text() == FIXTURE.read_text() and f"previous version: {backup}" in err
    code, out, err = run("kubeadm", str(manifest), "--apply", "--batch-max-size", "100")
    assert code == 0 and "nothing to do" in err
    assert list(tmp_path.glob(".kube-apiserver.yaml.*.bak")) == [backup]
    code, _, err = run("kubeadm", str(manifest), "--initial-backoff", "soon")
    assert code == 1 and "Go duration" in err
    # --out writes the patched copy next to nothing else.
    code, _, _ = run("kubeadm", str(FIXTURE), "--out", str(tmp_path / "patched"))
    assert code == 0
    assert (
        tmp_path / "patched" / "kube-apiserver.yaml"
    ).read_text() == manifest.read_text().replace("    - --audit-webhook-batch-max-size=100\n", "")


def test_manifests(tmp_path: Path) -> None:
    code, out, err = run("manifests")
    assert code == 0 and yaml.safe_load(out)["kind"] == "Pod" and "/etc/kubernetes/manifests" in err
    code, out, _ = run("manifests", "--kind", "systemd", "--auth", "mtls")
    assert "--client-ca /etc/auditsink/ca.crt" in out
    code, _, _ = run(
        "manifests",
        "--kind",
        "deployment",
        "--image",
        "registry.local/auditsink:dev",
        "--out",
        str(tmp_path),
    )
    docs = list(yaml.safe_load_all((tmp_path / "auditsink-deployment.yaml").read_text()))
    assert (
        docs[-1]["spec"]["template"]["spec"]["containers"][0]["image"]
        == "registry.local/auditsink:dev"
    )
    code, _, err = run("manifests", "--kind", "deployment", "--out", str(tmp_path))
    assert code == 1 and "refusing to overwrite" in err
