"""Read a webhook kubeconfig the way kube-apiserver's client-go (``clientcmd``) does (facts W8-W12).

What client-go refuses to load raises :class:`KubeconfigError` with the file and line. What it
loads but then builds oddly (a dropped query, a guessed scheme) is kept on
:class:`WebhookConfig` for ``auditsink doctor`` to explain. Files are resolved here and read
only when used, so a missing certificate is a finding, not a crash.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509

# The request timeout client-go appends to every POST (facts W9, W10).
POST_QUERY = "?timeout=30s"

Where = tuple[str | int, ...]


class KubeconfigError(ValueError):
    """client-go would refuse this kubeconfig; ``file:line: message``."""

    def __init__(self, message: str, file: str, line: int | None = None) -> None:
        self.message, self.file, self.line = message, file, line
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Material:
    """A CA, certificate, key or token file named by the kubeconfig: a path or inline ``-data``."""

    key: str
    path: Path | None = None
    data: bytes | None = None
    line: int | None = None
    written: str = ""

    @property
    def source(self) -> str:
        """``"certificate-authority /etc/ca.crt"`` or ``"certificate-authority-data"``."""
        return f"{self.key}-data" if self.data is not None else f"{self.key} {self.written}"

    def read(self) -> bytes:
        """The bytes; raises OSError when the file cannot be read."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


@dataclass(frozen=True)
class WebhookConfig:
    """The current context of a webhook kubeconfig, resolved as client-go resolves it."""

    file: str
    context: str
    cluster: str
    user: str
    server: str
    scheme: str
    host: str
    port: int
    path: str
    scheme_guessed: bool = False
    dropped_query: str = ""
    ca: Material | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    proxy_url: str | None = None
    client_cert: Material | None = None
    client_key: Material | None = None
    token: str | None = field(default=None, repr=False)
    token_file: Material | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    exec_command: str | None = None
    auth_provider: str | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def post_target(self) -> str:
        """What the request line carries: ``/k8s-audit?timeout=30s``."""
        return self.path + POST_QUERY

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _compose(text: str) -> tuple[Any, dict[Where, int]]:
    """YAML to plain values plus the 1-based line of every key and item."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[Where, int] = {}
    constructor = yaml.SafeLoader("")

    def walk(n: yaml.Node, where: Where) -> Any:
        lines.setdefault(where, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in n.value:
                key = str(constructor.construct_object(key_node))
                lines[where + (key,)] = key_node.start_mark.line + 1
                out[key] = walk(value_node, where + (key,))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(child, where + (i,)) for i, child in enumerate(n.value)]
        return constructor.construct_object(n)

    return (walk(node, ()) if node is not None else None), lines


def _named(doc: dict[str, Any], section: str, name: str, file: str) -> tuple[dict[str, Any], Where]:
    """The ``cluster``/``context``/``user`` body of the entry called ``name``."""
    inner = section[:-1]
    found: tuple[dict[str, Any], Where] | None = None
    entries = doc.get(section) or []
    if not isinstance(entries, list):
        raise KubeconfigError(f"{section} must be a list of {{name, {inner}}}", file)
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(inner) or {}
            if not isinstance(body, dict):
                raise KubeconfigError(f"{section}[{i}].{inner} must be a mapping", file)
            found = body, (section, i, inner)
    if found is None:
        names = ", ".join(str(e.get("name")) for e in entries if isinstance(e, dict)) or "none"
        raise KubeconfigError(f'{inner} "{name}" does not exist ({section}: {names})', file)
    return found


def load_webhook_config(path: str | Path) -> WebhookConfig:
    """Load ``path`` like ``--audit-webhook-config-file``: current context, cluster, user."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise KubeconfigError(f"cannot read: {reason}", file) from None
    try:
        doc, lines = _compose(text)
    except yaml.YAMLError as exc:
        mark, begun = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
        parts = (getattr(exc, "context", None), getattr(exc, "problem", None))
        reason = " ".join(str(p) for p in parts if p) or str(exc)
        if begun is not None and mark is not None and begun.line != mark.line:
            # An unclosed quote or bracket is found at the end: say where it was opened.
            reason += f" (begun at line {begun.line + 1})"
        raise KubeconfigError(
            f"not valid YAML: {reason}", file, mark.line + 1 if mark is not None else None
        ) from None
    if not isinstance(doc, dict) or not doc:
        # clientcmd: "invalid configuration: no configuration has been provided".
        raise KubeconfigError("no configuration: expected a kubeconfig (kind: Config)", file)
    for section in ("clusters", "contexts", "users"):
        seen: set[str] = set()
        for i, entry in enumerate(doc.get(section) or []):
            name = entry.get("name") if isinstance(entry, dict) else None
            if name in seen:
                # clientcmd's list-to-map conversion refuses the whole file.
                raise KubeconfigError(
                    f'duplicate name "{name}" in {section}: client-go refuses this',
                    file, lines.get((section, i)),
                )
            seen.add(str(name))
    context_name = doc.get("current-context")
    if not context_name:
        raise KubeconfigError(
            "no current-context: client-go would use an empty cluster with no server", file
        )
    try:
        context_and_where = _named(doc, "contexts", str(context_name), file)
    except KubeconfigError as exc:
        raise KubeconfigError(
            f"current-context: {exc.message}", file, lines.get(("current-context",))
        ) from None
    context, ctx_where = context_and_where
    cluster_name, user_name = context.get("cluster"), context.get("user")
    if not cluster_name:
        raise KubeconfigError(
            f'context "{context_name}" names no cluster', file, lines.get(ctx_where)
        )
    cluster, cw = _named_at(doc, "clusters", str(cluster_name), file, lines, ctx_where)
    # A context without a user is valid: the API server then sends no credential.
    user, uw = (
        _named_at(doc, "users", str(user_name), file, lines, ctx_where) if user_name else ({}, ())
    )
    base = Path(path).resolve().parent

    def line(where: Where, key: str) -> int | None:
        return lines.get(where + (key,))

    def material(src: dict[str, Any], where: Where, key: str) -> Material | None:
        data, name = src.get(f"{key}-data"), src.get(key)
        if data and name:
            raise KubeconfigError(
                f"{key}-data and {key} are both set: client-go refuses this", file, line(where, key)
            )
        if data:
            try:
                raw = base64.b64decode(str(data), validate=True)
            except (binascii.Error, ValueError):
                raise KubeconfigError(
                    f"{key}-data is not valid base64", file, line(where, f"{key}-data")
                ) from None
            return Material(key, data=raw, line=line(where, f"{key}-data"))
        if name:
            # client-go resolves relative paths against the kubeconfig's directory.
            return Material(key, path=base / str(name), line=line(where, key), written=str(name))
        return None

    server = str(cluster.get("server") or "")
    if not server:
        raise KubeconfigError(
            f'cluster "{cluster_name}" has no server', file, lines.get(cw)
        )
    ca = material(cluster, cw, "certificate-authority")
    client_cert = material(user, uw, "client-certificate")
    client_key = material(user, uw, "client-key")
    if client_cert and not client_key:
        raise KubeconfigError(
            "client-certificate without client-key: client-go refuses this", file, client_cert.line
        )
    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    scheme, host, port, url_path, query, guessed = _split_server(
        server, tls=bool(ca or client_cert or insecure), file=file, line=line(cw, "server")
    )
    token_file = user.get("tokenFile")
    exec_cfg, provider = user.get("exec"), user.get("auth-provider")
    return WebhookConfig(
        file=file,
        context=str(context_name),
        cluster=str(cluster_name),
        user=str(user_name or ""),
        server=server,
        scheme=scheme,
        host=host,
        port=port,
        path=url_path,
        scheme_guessed=guessed,
        dropped_query=query,
        ca=ca,
        insecure=insecure,
        tls_server_name=cluster.get("tls-server-name") or None,
        proxy_url=cluster.get("proxy-url") or None,
        client_cert=client_cert,
        client_key=client_key,
        token=str(user["token"]) if user.get("token") else None,
        token_file=(
            Material("tokenFile", base / str(token_file), None, line(uw, "tokenFile"),
                     str(token_file))
            if token_file
            else None
        ),
        username=str(user["username"]) if user.get("username") else None,
        password=str(user["password"]) if user.get("password") else None,
        exec_command=str(exec_cfg.get("command", "?")) if isinstance(exec_cfg, dict) else None,
        auth_provider=str(provider.get("name", "?")) if isinstance(provider, dict) else None,
        lines={k: v for k, v in (("server", line(cw, "server")), ("user", lines.get(uw))) if v},
    )


def _named_at(
    doc: dict[str, Any], section: str, name: str, file: str, lines: dict[Where, int],
    ctx_where: Where,
) -> tuple[dict[str, Any], Where]:
    """Like :func:`_named`, with errors pointing at the context line that names the entry."""
    try:
        return _named(doc, section, name, file)
    except KubeconfigError as exc:
        raise KubeconfigError(exc.message, file, lines.get(ctx_where + (section[:-1],))) from None


def _split_server(
    server: str, *, tls: bool, file: str, line: int | None
) -> tuple[str, str, int, str, str, bool]:
    """``https://h:8443/audit/?x=1`` -> ("https", "h", 8443, "/audit", "x=1", False).

    Like client-go's ``DefaultServerURL``: no scheme means https when a CA, client certificate
    or insecure-skip-tls-verify is set, else http; the query is dropped; ``path.Join`` removes a
    trailing slash.
    """
    url = urlsplit(server)
    guessed = not (url.scheme and url.netloc)
    if guessed:
        url = urlsplit(("https://" if tls else "http://") + server)
    if url.scheme not in ("http", "https"):
        raise KubeconfigError(f"server {server!r}: scheme must be http or https", file, line)
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        raise KubeconfigError(f"server {server!r}: invalid port", file, line) from None
    if not url.hostname:
        raise KubeconfigError(f"server {server!r} has no host", file, line)
    query = url.query + (f"#{url.fragment}" if url.fragment else "")
    return url.scheme, url.hostname, port, url.path.rstrip("/") or "/", query, guessed


def auth_header(cfg: WebhookConfig) -> str | None:
    """The ``Authorization`` value client-go sends over https, or None.

    tokenFile wins over an inline token (client-go re-reads the file every minute) and is
    trimmed. Raises OSError when the token file cannot be read.
    """
    if cfg.token_file is not None:
        return "Bearer " + cfg.token_file.read().decode("utf-8", "replace").strip()
    if cfg.token:
        return f"Bearer {cfg.token}"
    if cfg.username:
        raw = f"{cfg.username}:{cfg.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()
    return None


def ssl_context(cfg: WebhookConfig, *, verify: bool = True) -> ssl.SSLContext:
    """The TLS client side: the kubeconfig's CA (or system roots) and client certificate.

    Host names are checked by the caller against ``tls-server-name`` or the host, as Go does
    (SANs only, never the CN). Raises OSError/ssl.SSLError for unreadable material.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # client-go's floor
    ctx.check_hostname = False
    if verify and not cfg.insecure:
        if cfg.ca is not None:
            ctx.load_verify_locations(cadata=cfg.ca.read().decode("ascii", "replace"))
        else:
            ctx.load_default_certs()
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if cfg.client_cert is not None and cfg.client_key is not None:
        # load_cert_chain reads files only: write inline data to a private temporary directory.
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
            cert.write_bytes(cfg.client_cert.read())
            key.write_bytes(cfg.client_key.read())
            ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _sans(
    cert: x509.Certificate,
) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    ips = [ip for ip in san.get_values_for_type(x509.IPAddress)
           if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address))]
    return san.get_values_for_type(x509.DNSName), ips


def cert_valid_for(name: str, cert: x509.Certificate) -> bool:
    """Go's check: an IP matches IP SANs, a name DNS SANs (``*.a.b`` matches ``x.a.b``); no CN."""
    dns, ips = _sans(cert)
    try:
        return ipaddress.ip_address(name) in ips
    except ValueError:
        pass
    name = name.lower().rstrip(".")
    for pattern in (p.lower().rstrip(".") for p in dns):
        if pattern == name or (
            pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:]
        ):
            return True
    return False


def san_text(cert: x509.Certificate) -> str:
    """``"DNS:audit.example, IP:10.0.0.5"``, as openssl prints them."""
    dns, ips = _sans(cert)
    return ", ".join([f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]) or "no SANs at all"
