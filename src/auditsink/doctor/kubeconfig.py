"""Checks 1-3: the kubeconfig as client-go loads it, http credentials, the files it names."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from auditsink.doctor.report import (
    ERROR,
    OK,
    SETUP_HTTPS,
    WARNING,
    Report,
)
from auditsink.setup.clientcmd import (
    KubeconfigError,
    Material,
    WebhookConfig,
    load_webhook_config,
)

# -- 1. the kubeconfig ------------------------------------------------------------------------


def check_kubeconfig(path: str | Path, report: Report) -> WebhookConfig | None:
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


def check_transport(cfg: WebhookConfig, report: Report) -> None:
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


def _read(m: Material, report: Report) -> bytes | None:
    try:
        return m.read()
    except OSError as exc:
        where = f"{m.path}, kubeconfig line {m.line}" if m.line else str(m.path)
        report.add(ERROR, "files", f"cannot read {m.source} ({where}): {exc.strerror}",
                   "paths are read on the API server's node, relative to the kubeconfig's "
                   "directory: run doctor there, or fix the path")
        return None


def _certs(m: Material, report: Report) -> list[x509.Certificate]:
    data = _read(m, report)
    if data is None:
        return []
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        report.add(ERROR, "files", f"{m.source}: not a PEM certificate (expected -----BEGIN "
                   "CERTIFICATE-----)")
        return []


def _validity(cert: x509.Certificate, what: str, report: Report, now: dt.datetime) -> None:
    if cert.not_valid_after_utc < now:
        report.add(ERROR, "files", f"{what} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} "
                   "UTC", "issue a new one: `auditsink setup certs`")
    elif cert.not_valid_before_utc > now:
        report.add(ERROR, "files", f"{what} is not valid before "
                   f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC", "check the clocks")
    elif cert.not_valid_after_utc - now < dt.timedelta(days=30):
        report.add(WARNING, "files", f"{what} expires on "
                   f"{cert.not_valid_after_utc:%Y-%m-%d} UTC", "renew it soon")


def check_files(cfg: WebhookConfig, report: Report) -> None:
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


def _check_client_cert(cert_m: Material, key_m: Material, report: Report,
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
