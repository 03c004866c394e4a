"""The kubeconfig kube-apiserver reads from ``--audit-webhook-config-file`` (facts W8, W11, W12).

client-go drops the query string of ``server``, keeps its path (minus a trailing ``/``), and sends
a token or basic auth **only over https**: over http it silently sends nothing, which is why we
refuse to write an http kubeconfig that carries credentials.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from auditsink.setup.files import SetupError

HEADER = (
    "# Webhook kubeconfig for kube-apiserver --audit-webhook-config-file,\n"
    "# written by auditsink setup.\n"
    "# Keep it readable by root only: it holds the credential auditsink checks.\n"
)


@dataclass(frozen=True)
class Credential:
    """What the API server presents: a token, a username/password, and/or a client certificate.

    ``client_cert``/``client_key`` are paths on the control-plane node, or PEM bytes in
    ``client_cert_data``/``client_key_data`` to embed. ``token_file`` is a path the API server
    reads the token from (``tokenFile``); client-go re-reads it every minute, so a token can be
    rotated without restarting the API server.
    """

    token: str | None = None
    token_file: str | None = None
    username: str | None = None
    password: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = None

    def validate(self) -> None:
        """Reject what client-go would reject, or what cannot work."""
        if self.token and self.token_file:
            raise SetupError("give the token inline or as a file, not both")
        if (self.token or self.token_file) and (self.username or self.password):
            raise SetupError(
                "give a token or a username/password, not both: "
                "client-go refuses to build the client "
                "('username/password or bearer token may be set, but not both')"
            )
        if bool(self.username) != bool(self.password):
            raise SetupError("basic auth needs both --username and --password")
        has_cert = bool(self.client_cert or self.client_cert_data)
        has_key = bool(self.client_key or self.client_key_data)
        if has_cert != has_key:
            raise SetupError(
                "a client certificate needs its key too (--client-cert and --client-key)"
            )

    @property
    def empty(self) -> bool:
        """True when the API server would send no credential at all."""
        return not (
            self.token
            or self.token_file
            or self.username
            or self.client_cert
            or self.client_cert_data
        )


def server_url(host: str, port: int = 8443, path: str = "/", scheme: str = "https") -> str:
    """``server_url("10.0.0.5", 8443, "/audit")`` -> ``"https://10.0.0.5:8443/audit"``."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"{scheme}://{host}:{port}/{path.lstrip('/')}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def webhook_kubeconfig(
    server: str,
    credential: Credential,
    *,
    ca_file: str | None = None,
    ca_data: bytes | None = None,
    cluster_name: str = "auditsink",
    user_name: str = "kube-apiserver",
) -> str:
    """The kubeconfig text; deterministic for the same arguments."""
    credential.validate()
    url = urlsplit(server)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise SetupError(
            f"server must be an http(s) URL like https://HOST:PORT/PATH, not {server!r}"
        )
    if url.query or url.fragment:
        raise SetupError(
            "client-go drops the query string and fragment of server: put everything in the path"
        )
    if url.scheme == "http" and not credential.empty:
        raise SetupError(
            "refusing to put credentials in an http kubeconfig: client-go sends tokens and "
            "basic auth only over https, so over http the API server would silently send none "
            "(and a client certificate needs TLS anyway). Use an https:// server with --ca."
        )
    if url.scheme == "https" and not (ca_file or ca_data):
        raise SetupError(
            "https needs the CA that signed auditsink's certificate: "
            "pass --ca (see `auditsink setup certs`)"
        )
    if ca_file and ca_data:
        raise SetupError("give the CA as a path or as embedded data, not both")
    cluster: dict[str, object] = {"server": server}
    if ca_file:
        cluster["certificate-authority"] = ca_file
    if ca_data:
        cluster["certificate-authority-data"] = _b64(ca_data)
    user: dict[str, object] = {}
    if credential.client_cert:
        user["client-certificate"] = credential.client_cert
    if credential.client_cert_data:
        user["client-certificate-data"] = _b64(credential.client_cert_data)
    if credential.client_key:
        user["client-key"] = credential.client_key
    if credential.client_key_data:
        user["client-key-data"] = _b64(credential.client_key_data)
    if credential.token:
        user["token"] = credential.token
    if credential.token_file:
        user["tokenFile"] = credential.token_file
    if credential.username:
        user["username"] = credential.username
        user["password"] = credential.password
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": "default", "context": {"cluster": cluster_name, "user": user_name}}],
        "current-context": "default",
    }
    return HEADER + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1 << 16)


def read_pem(path: str | Path) -> bytes:
    """Read a PEM file to embed, with an error that names it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SetupError(f"{path}: cannot read: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise SetupError(f"{path}: not a PEM file (expected -----BEGIN ...)")
    return data
