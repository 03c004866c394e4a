"""``auditsink doctor``: read a webhook kubeconfig as kube-apiserver does and try it for real.

Each check appends :class:`Finding` s in the order the API server meets the problem: load the
kubeconfig, build the client, resolve and connect, shake hands, POST an empty EventList.
A failure that would stop the API server stops the checks after it, so the first error is the
one to fix. Credentials never appear in a finding.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from auditsink.admit.shadow import find_shadowed
from auditsink.admit.spec import parse_policy
from auditsink.setup.clientcmd import (
    KubeconfigError,
    Material,
    WebhookConfig,
    auth_header,
    cert_valid_for,
    load_webhook_config,
    san_text,
    ssl_context,
)

OK, WARNING, ERROR = "ok", "warning", "error"
EMPTY_EVENT_LIST = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}\n'
SETUP_HTTPS = (
    "use https: `auditsink setup certs` and `auditsink setup webhook-config --new-token` write "
    "the certificates, this file and auditsink's token file (docs/setup.md)"
)
# Default Service ClusterIP ranges; an address in one is probably a Service, not a node.
SERVICE_RANGES = {
    "kubeadm/kind/minikube": ipaddress.ip_network("10.96.0.0/12"),
    "k3s/RKE2": ipaddress.ip_network("10.43.0.0/16"),
    "EKS": ipaddress.ip_network("10.100.0.0/16"),
    "EKS (alternative)": ipaddress.ip_network("172.20.0.0/16"),
    "GKE": ipaddress.ip_network("34.118.224.0/20"),
}
CLUSTER_NETWORK_WHY = (
    "kube-apiserver usually runs as a static pod with hostNetwork: it resolves names with the "
    "node's resolv.conf, not cluster DNS, and it must deliver events while CoreDNS, kube-proxy "
    "and the CNI are down or still starting (they need the API server first). "
    "Point the kubeconfig at an address the node reaches directly: 127.0.0.1 or the node IP with "
    "auditsink beside the API server (`auditsink setup manifests`), or a NodePort/LoadBalancer "
    "address, and put that address in the server certificate (`auditsink setup certs --host`)"
)


@dataclass(frozen=True)
class Finding:
    """One result: ``level`` ok/warning/error, the ``check`` it belongs to, and what to do."""

    level: str
    check: str
    message: str
    remedy: str = ""


@dataclass
class _Report:
    """Findings so far; checks append to it and ask whether to go on."""

    findings: list[Finding] = field(default_factory=list)

    def add(self, level: str, check: str, message: str, remedy: str = "") -> None:
        self.findings.append(Finding(level, check, message, remedy))

    def errors_in(self, *checks: str) -> bool:
        return any(f.level == ERROR and f.check in checks for f in self.findings)

    @property
    def refused(self) -> bool:
        """Would client-go refuse to build the client? Then there is nothing to connect."""
        return self.errors_in("files", "credentials", "tls-config")


def diagnose(webhook_config: str | Path, policy: str | Path | None = None,
             timeout: float = 5.0) -> list[Finding]:
    """Run every check in order; the policy is checked even when the kubeconfig fails."""
    report = _Report()
    cfg = check_kubeconfig(webhook_config, report)
    if cfg is not None:
        check_transport(cfg, report)
        check_files(cfg, report)
        if not report.refused:
            check_network(cfg, report, timeout)
    if policy is not None:
        report.findings.extend(check_policy(policy))
    return report.findings


# -- 1. the kubeconfig ------------------------------------------------------------------------


def check_kubeconfig(path: str | Path, report: _Report) -> WebhookConfig | None:
    """Load it like client-go; warn about what client-go silently changes or we cannot test."""
    try:
        cfg = load_webhook_config(path)
    except KubeconfigError as exc:
        report.add(ERROR, "kubeconfig", str(exc), "kube-apiserver refuses to start with this file; "
                   "`auditsink setup webhook-config` writes a valid one")
        return None
    report.add(OK, "kubeconfig", f"{cfg.file}: context {cfg.context} -> cluster {cfg.cluster}, "
               f"user {cfg.user or '(none)'}")
    where = f"{cfg.file}:{cfg.lines['server']}" if "server" in cfg.lines else cfg.file
    target = f"{cfg.scheme}://{cfg.address}{cfg.post_target}"
    report.add(OK, "server", f"{cfg.server}: the API server will POST to {target}")
    if cfg.scheme_guessed:
        report.add(WARNING, "server", f"{where}: server has no scheme; client-go assumes "
                   f"{cfg.scheme} (https only when a CA, client certificate or "
                   "insecure-skip-tls-verify is set)", f"write {cfg.scheme}://{cfg.server}")
    if cfg.dropped_query:
        report.add(WARNING, "server", f"{where}: client-go drops the query string "
                   f"({cfg.dropped_query.split('=')[0]}=...) from server, so it is never sent",
                   "put everything in the path; credentials go in token or username/password")
    raw_path = urlsplit(cfg.server).path
    if len(raw_path) > 1 and raw_path.endswith("/"):
        report.add(WARNING, "server", f"{where}: client-go removes the trailing slash: the API "
                   f"server posts to {cfg.path}, not {raw_path}",
                   f"write the path as {cfg.path} (and use that in `auditsink serve --path`)")
    for what, name in (("exec plugin", cfg.exec_command), ("auth-provider", cfg.auth_provider)):
        if name:
            report.add(WARNING, "credentials", f"the user has an {what} ({name}): doctor cannot "
                       "run it, so the credential it produces is not tested")
    if cfg.proxy_url:
        report.add(WARNING, "server", "proxy-url is set: doctor connects directly, not through "
                   "the proxy")
    return cfg


# -- 2. credentials over plain http ---------------------------------------------------------------


def credential_kind(cfg: WebhookConfig) -> str:
    """What the API server presents, e.g. ``"bearer token (tokenFile /etc/token)"``."""
    parts = []
    if cfg.client_cert is not None:
        parts.append(f"client certificate ({cfg.client_cert.source})")
    if cfg.token_file is not None:
        parts.append(f"bearer token (tokenFile {cfg.token_file.written})")
    elif cfg.token:
        parts.append("bearer token (token)")
    if cfg.username:
        parts.append(f"basic auth (username {cfg.username})")
    return " + ".join(parts) or "no credential"


def check_transport(cfg: WebhookConfig, report: _Report) -> None:
    """Over http client-go sends no token, no basic auth and of course no client certificate."""
    kind = credential_kind(cfg)
    if cfg.scheme == "http" and kind != "no credential":
        report.add(ERROR, "transport", f"server is http:// and the user sets {kind}: over plain "
                   "http client-go silently sends NO credentials, so the receiver authenticates "
                   "nothing (or rejects every batch)", SETUP_HTTPS)
    if cfg.scheme == "https" and cfg.insecure:
        if cfg.ca is not None:
            report.add(ERROR, "tls-config", "certificate-authority and insecure-skip-tls-verify "
                       "are both set: client-go refuses this ('specifying a root certificates "
                       "file with the insecure flag is not allowed')", "remove one of them")
        else:
            report.add(WARNING, "tls-config", "insecure-skip-tls-verify: the API server does not "
                       "check auditsink's certificate, so anything on the path can read the "
                       "events and the credential", "set certificate-authority to auditsink's CA")


# -- 3. files and credentials --------------------------------------------------------------------


def _read(m: Material, report: _Report) -> bytes | None:
    try:
        return m.read()
    except OSError as exc:
        where = f"{m.path}, kubeconfig line {m.line}" if m.line else str(m.path)
        report.add(ERROR, "files", f"cannot read {m.source} ({where}): {exc.strerror}",
                   "paths are read on the API server's node, relative to the kubeconfig's "
                   "directory: run doctor there, or fix the path")
        return None


def _certs(m: Material, report: _Report) -> list[x509.Certificate]:
    data = _read(m, report)
    if data is None:
        return []
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        report.add(ERROR, "files", f"{m.source}: not a PEM certificate (expected -----BEGIN "
                   "CERTIFICATE-----)")
        return []


def _validity(cert: x509.Certificate, what: str, report: _Report, now: dt.datetime) -> None:
    if cert.not_valid_after_utc < now:
        report.add(ERROR, "files", f"{what} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} "
                   "UTC", "issue a new one: `auditsink setup certs`")
    elif cert.not_valid_before_utc > now:
        report.add(ERROR, "files", f"{what} is not valid before "
                   f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC", "check the clocks")
    elif cert.not_valid_after_utc - now < dt.timedelta(days=30):
        report.add(WARNING, "files", f"{what} expires on "
                   f"{cert.not_valid_after_utc:%Y-%m-%d} UTC", "renew it soon")


def check_files(cfg: WebhookConfig, report: _Report) -> None:
    """CA, client certificate and key, token file: readable, PEM, matching, in date."""
    now = dt.datetime.now(dt.UTC)
    if cfg.ca is not None:
        cas = _certs(cfg.ca, report)
        for ca in cas:
            _validity(ca, f"{cfg.ca.source}: CA {ca.subject.rfc4514_string()}", report, now)
        if cas:
            report.add(OK, "files", f"{cfg.ca.source}: {len(cas)} CA certificate(s) "
                       f"({cas[0].subject.rfc4514_string()})")
    if cfg.client_cert is not None and cfg.client_key is not None:
        _check_client_cert(cfg.client_cert, cfg.client_key, report, now)
    elif cfg.client_key is not None:
        report.add(WARNING, "credentials", "client-key without client-certificate is ignored")
    if cfg.token_file is not None:
        data = _read(cfg.token_file, report)
        if data is not None and not data.strip():
            report.add(ERROR, "files", f"{cfg.token_file.source} is empty: client-go refuses an "
                       "empty token", "write the token into it (one line)")
        if cfg.token:
            report.add(WARNING, "credentials", "token and tokenFile are both set: client-go uses "
                       "the file", "remove one of them")
    if (cfg.token or cfg.token_file) and cfg.username:
        report.add(ERROR, "credentials", "a bearer token and basic auth (username) are both set: "
                   "client-go refuses to build the client ('username/password or bearer token "
                   "may be set, but not both')", "keep one of them")
    elif cfg.password and not cfg.username:
        report.add(WARNING, "credentials", "password without username: client-go sends no "
                   "basic auth", "add username")
    if not report.errors_in("files", "credentials"):
        report.add(OK, "credentials", f"configured: {credential_kind(cfg)}")


def _check_client_cert(cert_m: Material, key_m: Material, report: _Report,
                       now: dt.datetime) -> None:
    certs = _certs(cert_m, report)
    key_data = _read(key_m, report)
    if not certs or key_data is None:
        return
    cert = certs[0]
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError) as exc:
        report.add(ERROR, "files", f"{key_m.source}: not an unencrypted PEM private key ({exc})")
        return
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        report.add(ERROR, "files", f"{key_m.source} is not the key of {cert_m.source}",
                   "use the .key file written together with the .crt")
        return
    subject, before = cert.subject.rfc4514_string(), len(report.findings)
    _validity(cert, f"client certificate {subject}", report, now)
    try:
        usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]  # no EKU: any use is allowed
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        report.add(ERROR, "files", f"{cert_m.source} is not a client certificate (its extended "
                   "key usage lacks clientAuth): TLS servers reject it",
                   "use the kube-apiserver.crt from `auditsink setup certs`")
    if len(report.findings) == before:
        report.add(OK, "files", f"{cert_m.source}: {subject}, until "
                   f"{cert.not_valid_after_utc:%Y-%m-%d}, and its key")


# -- 4-6. address, TLS, POST --------------------------------------------------------------------


def check_network(cfg: WebhookConfig, report: _Report, timeout: float) -> None:
    """Resolve, connect, shake hands and POST, stopping at the first failure."""
    if not _check_address(cfg, report):
        return
    sock = _connect(cfg, report, timeout, first=True)
    if sock is None:
        return
    sock.close()
    ctx: ssl.SSLContext | None = None
    if cfg.scheme == "https":
        ctx = _check_tls(cfg, report, timeout)
        if ctx is None:
            return
    _check_post(cfg, ctx, report, timeout)


def _cluster_dns(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host.endswith((".svc", ".cluster.local")) or ".svc." in host


def _check_address(cfg: WebhookConfig, report: _Report) -> bool:
    try:
        ip = ipaddress.ip_address(cfg.host)
    except ValueError:
        ip = None
    if ip is not None:
        for who, net in SERVICE_RANGES.items():
            if ip in net:
                report.add(WARNING, "address", f"{ip} is in {who}'s default Service range "
                           f"{net}: a ClusterIP is often unreachable from kube-apiserver",
                           CLUSTER_NETWORK_WHY)
        return True
    cluster_dns = _cluster_dns(cfg.host)
    try:
        infos = socket.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        hint = " (a cluster DNS name)" if cluster_dns else ""
        report.add(ERROR, "address", f"cannot resolve {cfg.host}{hint}: {exc.strerror}",
                   CLUSTER_NETWORK_WHY if cluster_dns else
                   "use a name the control-plane node resolves (/etc/hosts, DNS) or an IP")
        return False
    addresses = ", ".join(sorted({str(info[4][0]) for info in infos}))
    if cluster_dns:
        # It resolves here, perhaps inside a pod; the API server's node is another matter.
        report.add(WARNING, "address", f"{cfg.host} (resolves here to {addresses}) is a "
                   "cluster DNS name: kube-apiserver usually cannot resolve it",
                   CLUSTER_NETWORK_WHY)
    else:
        report.add(OK, "address", f"{cfg.host} resolves to {addresses}")
    return True


def _connect(cfg: WebhookConfig, report: _Report, timeout: float,
             first: bool = False) -> socket.socket | None:
    """A TCP connection to the first address that answers, like Go's dialer."""
    problems = []
    try:
        infos = socket.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        problems.append(f"{cfg.host}: {exc.strerror}")
        infos = []
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        ip = str(addr[0])
        where = f"[{ip}]:{cfg.port}" if ":" in ip else f"{ip}:{cfg.port}"
        try:
            sock.connect(addr)
        except TimeoutError:
            problems.append(f"{where}: no answer within {timeout:g} s")
        except OSError as exc:
            problems.append(f"{where}: {exc.strerror or exc}")
        else:
            if first:
                report.add(OK, "connect", f"TCP connection to {where}")
            return sock
        sock.close()
    if len(problems) == 1:
        problems = [problems[0].split(": ", 1)[-1]]  # the one address is in the message already
    report.add(ERROR, "connect", f"cannot connect to {cfg.address}: {'; '.join(problems)}",
               f"is auditsink running and listening there (`auditsink serve --listen "
               f"{cfg.address}`; 127.0.0.1 accepts only local connections)? Is a firewall "
               "in the way? Run doctor on the control-plane node: it sees the network as the "
               "API server does")
    return None


def _handshake(cfg: WebhookConfig, ctx: ssl.SSLContext, report: _Report,
               timeout: float) -> ssl.SSLSocket | None:
    sock = _connect(cfg, report, timeout)
    if sock is None:
        return None
    # SNI as Go sends it: tls-server-name, else the host (Python, like Go, sends none for an IP).
    return ctx.wrap_socket(sock, server_hostname=cfg.tls_server_name or cfg.host)


def _check_tls(cfg: WebhookConfig, report: _Report, timeout: float) -> ssl.SSLContext | None:
    """Fetch the certificate unverified to explain a failure, then verify it as client-go does."""
    try:
        tls = _handshake(cfg, ssl_context(cfg, verify=False), report, timeout)
        if tls is None:
            return None
        with tls:
            der, version = tls.getpeercert(binary_form=True), tls.version()
    except (ssl.SSLError, OSError) as exc:
        report.add(ERROR, "tls", f"TLS handshake with {cfg.address} failed: "
                   f"{_failure(exc, cfg)[0]}", _failure(exc, cfg)[1])
        return None
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    name, subject = cfg.tls_server_name or cfg.host, cert.subject.rfc4514_string()
    problems: list[tuple[str, str]] = []
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
        expired = f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        renew = f"issue a new one (`auditsink setup certs --host {name}`), restart serve with it"
        problems.append((f"the server certificate ({subject}) expired on {expired}", renew))
    if not cert_valid_for(name, cert):
        which = "tls-server-name" if cfg.tls_server_name else "server host"
        names = f"it is valid for {san_text(cert)}"
        fix = ("connect to one of those names, set tls-server-name to one of them, or issue a "
               f"certificate with `auditsink setup certs --host {name}`")
        problems.append((f"the server certificate is not valid for {name} (the {which}): {names}",
                         fix))
    if cfg.insecure:
        # Go's InsecureSkipVerify skips every check, so these would not stop the API server.
        unchecked = "; ".join(p[0] for p in problems) or "it would pass verification"
        report.add(WARNING, "tls", f"{version}; certificate not verified "
                   f"(insecure-skip-tls-verify): {unchecked}")
        return ssl_context(cfg, verify=False)
    for message, remedy in problems:
        report.add(ERROR, "tls", message, remedy)
    trust = cfg.ca.source if cfg.ca is not None else "the system CA bundle"
    verified = ssl_context(cfg)
    try:
        tls = _handshake(cfg, verified, report, timeout)
        if tls is None:
            return None
        tls.close()
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code != 10 or not problems:  # 10: expired, reported above
            report.add(ERROR, "tls", f"the server certificate, issued by "
                       f"{cert.issuer.rfc4514_string()}, is not trusted by {trust}: "
                       f"{exc.verify_message}",
                       "set certificate-authority to the CA that signed auditsink's "
                       "--tls-cert (the ca.crt beside server.crt from `auditsink setup certs`), "
                       "or issue a server certificate from this CA with `auditsink setup certs "
                       "--ca-cert CA --ca-key KEY`")
        return None
    except (ssl.SSLError, OSError) as exc:
        report.add(ERROR, "tls", f"TLS handshake with {cfg.address} failed: "
                   f"{_failure(exc, cfg)[0]}", _failure(exc, cfg)[1])
        return None
    if problems:
        return None
    report.add(OK, "tls", f"{version}; certificate {subject} valid for {name} "
               f"({san_text(cert)}) until {cert.not_valid_after_utc:%Y-%m-%d}, trusted by {trust}")
    return verified


def _failure(exc: BaseException, cfg: WebhookConfig) -> tuple[str, str]:
    """What a failed handshake or exchange means, and what to do about it."""
    reason = getattr(exc, "reason", None)
    reject = ("set client-certificate/client-key to a certificate signed by the CA auditsink "
              "has as --client-ca (with a CN in its --allowed-cn, if any)")
    if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST",
                  "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"):
        fix = ("start auditsink serve with --tls-cert/--tls-key, or (without credentials) "
               "write http:// in the server URL")
        return "the server does not speak TLS (plain http on that port?)", fix
    if reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
        return "the server demands a client certificate and none is configured", reject
    if isinstance(reason, str) and ("ALERT" in reason or "CERTIFICATE" in reason):
        return f"the server rejected the client certificate ({reason})", reject
    if isinstance(exc, (ConnectionError, http.client.RemoteDisconnected, ssl.SSLEOFError)):
        # TLS 1.3: the server checks a client certificate after the client's handshake ends.
        if cfg.client_cert is not None:
            closed = "the server closed the connection after the handshake"
            return f"{closed}: it rejected the client certificate", reject
        fix = ("does it demand a client certificate (auditsink serve --client-ca alone)? "
               "See the receiver's log")
        return "the server closed the connection without answering", fix
    return str(reason or exc), "see the receiver's log"


def _snippet(data: bytes, cfg: WebhookConfig) -> str:
    text = data[:200].decode("utf-8", "replace").strip()
    for secret in (cfg.token, cfg.password):
        if secret:
            text = text.replace(secret, "***")
    return text


def _check_post(cfg: WebhookConfig, ctx: ssl.SSLContext | None, report: _Report,
                timeout: float) -> None:
    """POST an empty EventList exactly as the API server would (facts W1-W9)."""
    kind = credential_kind(cfg) if ctx is not None else "no credential (plain http)"
    headers = {"Content-Type": "application/json", "Accept": "application/json, */*",
               "User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}
    try:
        header = auth_header(cfg) if ctx is not None else None  # none over http (W11, fixtures)
        sock = _handshake(cfg, ctx, report, timeout) if ctx is not None else _connect(
            cfg, report, timeout)
        if sock is None:
            return
        if header:
            headers["Authorization"] = header
        conn = http.client.HTTPConnection(cfg.host, cfg.port, timeout=timeout)
        conn.sock = sock
        try:
            conn.request("POST", cfg.post_target, body=EMPTY_EVENT_LIST, headers=headers)
            response = conn.getresponse()
            status, body = response.status, response.read(65536)
            if response.getheader("Content-Encoding") == "gzip":
                # Go's transport asks for gzip and decodes it; a cut-off body stays as it is.
                with contextlib.suppress(OSError, EOFError):
                    body = gzip.decompress(body)
        finally:
            conn.close()
    except TimeoutError:
        report.add(ERROR, "post", f"no answer to POST {cfg.post_target} within {timeout:g} s",
                   "the API server gives up after 30 s and retries: check auditsink's log")
        return
    except (ssl.SSLError, OSError, http.client.HTTPException) as exc:
        if ctx is None:
            # A TLS server drops a plain-text request (uvicorn) or answers with a TLS alert.
            report.add(ERROR, "post", f"POST {cfg.post_target} over http failed: "
                       f"{type(exc).__name__}: {exc}", "if the receiver serves TLS "
                       "(auditsink serve --tls-cert), write https:// in the server URL")
        else:
            reason, remedy = _failure(exc, cfg)
            report.add(ERROR, "post", f"POST {cfg.post_target} failed: {reason}", remedy)
        return
    said = f"{status} {_snippet(body, cfg)}".strip()
    line = f"POST {cfg.post_target} with {kind}: {said}"
    if 200 <= status <= 206:
        report.add(OK, "post", line)
    elif status in (401, 403):
        report.add(ERROR, "post", f"{line}: the receiver rejected the {kind}", _auth_remedy(
            cfg, status))
    elif status == 404:
        report.add(ERROR, "post", f"{line}: nothing takes audit events at {cfg.path}",
                   "make the server path one the receiver accepts (auditsink: any path unless "
                   "`serve --path` restricts it; /clusters/NAME always)")
    elif 300 <= status < 400:
        report.add(ERROR, "post", f"{line}: a redirect; the API server turns it into a GET "
                   "without the events", "point server at the final URL")
    else:
        report.add(ERROR, "post", line, "the API server retries this 5 times, then drops the "
                   "batch: see the receiver's log")


def _auth_remedy(cfg: WebhookConfig, status: int) -> str:
    if cfg.scheme == "http":
        return "over http the API server sends no credential at all: " + SETUP_HTTPS
    if status == 403:
        return ("the credential is valid but not for this path: a token bound to a cluster "
                "(TOKEN,CLUSTER in --token-file) may only POST to /clusters/CLUSTER or /")
    if cfg.token or cfg.token_file:
        return "the token must be a line of auditsink's --token-file (TOKEN[,CLUSTER])"
    if cfg.username:
        return "username and password must match a line of auditsink's --basic-auth-file"
    if cfg.client_cert is not None:
        return "auditsink needs --client-ca for this certificate's CA (and --allowed-cn its CN)"
    return "add a credential: `auditsink setup webhook-config --new-token` writes both sides"


# -- 7. the audit policy ---------------------------------------------------------------------------


def check_policy(path: str | Path) -> list[Finding]:
    """Validate like kube-apiserver (file:line), and warn when the policy records nothing."""
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return [Finding(ERROR, "policy", f"{file}: cannot read: {exc.strerror}")]
    spec, problems = parse_policy(data, file)
    found = [Finding(ERROR if p.severity == "error" else WARNING, "policy", str(p))
             for p in sorted(problems, key=lambda p: p.line or 0)]
    if spec is None:
        found.append(Finding(ERROR, "policy", f"{file}: kube-apiserver refuses this policy and "
                             "does not start", f"`auditsink policy check {file}` after each fix"))
        return found
    first = spec.rules[0]
    catch_all = not (first.users or first.user_groups or first.verbs or first.resources
                     or first.namespaces or first.non_resource_urls)
    if all(rule.level == "None" for rule in spec.rules) or (catch_all and first.level == "None"):
        found.append(Finding(WARNING, "policy", f"{file}: records nothing: every request ends "
                             "at a level None rule, so the API server sends no events",
                             "`auditsink setup policy` writes a useful policy"))
    elif catch_all and len(spec.rules) > 1:
        found.append(Finding(WARNING, "policy", f"{file}:{first.line}: rules[0] ({first.level}) "
                             f"matches every request: the {len(spec.rules) - 1} rules after it "
                             "never apply", "move the catch-all rule to the end"))
    for shadow in find_shadowed(spec):
        if not (catch_all and shadow.by == 0):
            rule = spec.rules[shadow.rule]
            found.append(Finding(WARNING, "policy", f"{file}:{rule.line}: rules[{shadow.rule}] "
                                 f"can never match: {shadow.reason}"))
    found.append(Finding(OK, "policy", f"{file}: valid, {len(spec.rules)} rules"))
    return found
