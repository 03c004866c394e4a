"""What the HTTP outputs (http, splunk, elasticsearch, loki, otlp) share: their connection
settings and one kept-alive connection per output.

Credentials come from the config (inline or from a file) and are never part of an error
message or a log line: errors name the URL without its user-info.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import os
import ssl
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from auditsink.forward.base import DeliveryError, OutputConfig


@dataclass
class HttpConfig(OutputConfig):
    """Connection settings of every HTTP output."""

    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    bearer_token: str = ""
    bearer_token_file: str = ""
    username: str = ""
    password: str = ""
    password_file: str = ""
    ca_file: str = ""           # CA to verify the server with (default: the system's)
    cert_file: str = ""         # client certificate (mTLS)
    key_file: str = ""
    tls_skip_verify: bool = False
    compress: bool = False      # gzip the body (Content-Encoding: gzip)

    target_key: ClassVar[str] = "url"

    def check(self) -> str:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"url {safe_url(self.url)!r}: expected http(s)://HOST[:PORT]/PATH"
        for key in ("bearer_token_file", "password_file", "ca_file", "cert_file", "key_file"):
            path = getattr(self, key)
            if path and not os.path.isfile(path):
                return f"{key}: no such file: {path}"
        if bool(self.cert_file) != bool(self.key_file):
            return "cert_file and key_file go together"
        return ""


def safe_url(url: str) -> str:
    """``https://user:pw@host/x`` -> ``https://host/x`` (for messages)."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return parts._replace(netloc=netloc).geturl()
    return url


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


class HttpClient:
    """POSTs to one URL on a kept-alive connection, reconnecting after any failure."""

    def __init__(self, config: HttpConfig, url: str | None = None) -> None:
        self.config = config
        self.url = url or config.url
        parts = urlsplit(self.url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers = {"User-Agent": "auditsink", **config.headers}
        token = config.bearer_token or (_read(config.bearer_token_file)
                                        if config.bearer_token_file else "")
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        # user:password in the URL is percent-encoded (RFC 3986): "pw%40" is "pw@".
        username = config.username or unquote(parts.username or "")
        password = config.password or (_read(config.password_file) if config.password_file
                                       else unquote(parts.password or ""))
        if username:
            pair = base64.b64encode(f"{username}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {pair}"
        self.context = self._tls_context() if self.https else None
        self._conn: http.client.HTTPConnection | None = None

    def _tls_context(self) -> ssl.SSLContext:
        config = self.config
        context = ssl.create_default_context(cafile=config.ca_file or None)
        if config.tls_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file)
        return context

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                self._conn = http.client.HTTPSConnection(self.host, self.port,
                                                         timeout=self.config.timeout,
                                                         context=self.context)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self.config.timeout)
        return self._conn

    def post(self, body: bytes, content_type: str, headers: dict[str, str] | None = None,
             ok: tuple[int, ...] = ()) -> tuple[int, bytes]:
        """POST ``body``; returns (status, answer) for a 2xx (or a status in ``ok``), raises
        :class:`DeliveryError` for anything else."""
        sent = {**self.headers, "Content-Type": content_type, **(headers or {})}
        if self.config.compress:
            body = gzip.compress(body, compresslevel=6)
            sent["Content-Encoding"] = "gzip"
        try:
            conn = self._connection()
            conn.request("POST", self.path, body=body, headers=sent)
            response = conn.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise DeliveryError(f"{safe_url(self.url)}: {exc.__class__.__name__}: {exc}") from None
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        if 200 <= response.status < 300 or response.status in ok:
            return response.status, answer
        snippet = answer[:200].decode("utf-8", "replace").strip()
        raise DeliveryError(f"HTTP {response.status} from {safe_url(self.url)}"
                            + (f": {snippet}" if snippet else ""))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def join_url(base: str, path: str) -> str:
    """``https://h:8088`` + ``/services/collector/event``; a base that already has a path is
    taken as the full endpoint.

    >>> join_url("https://h:8088", "/services/collector/event")
    'https://h:8088/services/collector/event'
    >>> join_url("https://h/custom/hec", "/services/collector/event")
    'https://h/custom/hec'
    """
    parts = urlsplit(base)
    if parts.path not in ("", "/"):
        return base
    return base.rstrip("/") + path


def raw_json(body: bytes) -> Any:
    """An encoded document spliced into a JSON envelope without decoding it again."""
    import msgspec

    return msgspec.Raw(body)
