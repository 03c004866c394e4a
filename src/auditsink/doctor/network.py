"""Checks 4-6: resolve and connect, the TLS handshake, and a real POST."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import http.client
import ipaddress
import socket
import ssl

from cryptography import x509

from auditsink.doctor.kubeconfig import credential_kind
from auditsink.doctor.report import (
    CLUSTER_NETWORK_WHY,
    EMPTY_EVENT_LIST,
    ERROR,
    OK,
    SERVICE_RANGES,
    SETUP_HTTPS,
    WARNING,
    Report,
)
from auditsink.setup.clientcmd import (
    WebhookConfig,
    auth_header,
    cert_valid_for,
    san_text,
    ssl_context,
)

# -- 4-6. address, TLS, POST --------------------------------------------------------------------


def check_network(cfg: WebhookConfig, report: Report, timeout: float) -> None:
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


def _check_address(cfg: WebhookConfig, report: Report) -> bool:
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


def _connect(cfg: WebhookConfig, report: Report, timeout: float,
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


def _handshake(cfg: WebhookConfig, ctx: ssl.SSLContext, report: Report,
               timeout: float) -> ssl.SSLSocket | None:
    sock = _connect(cfg, report, timeout)
    if sock is None:
        return None
    # SNI as Go sends it: tls-server-name, else the host (Python, like Go, sends none for an IP).
    return ctx.wrap_socket(sock, server_hostname=cfg.tls_server_name or cfg.host)


def _check_tls(cfg: WebhookConfig, report: Report, timeout: float) -> ssl.SSLContext | None:
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


def _check_post(cfg: WebhookConfig, ctx: ssl.SSLContext | None, report: Report,
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
