"""``syslog``: RFC 5424 messages over TCP or TLS, framed by octet counting (RFC 6587 3.4.1,
``LEN SP MSG``), which rsyslog, syslog-ng and every SIEM collector take.

Each event is one message: PRI from ``facility`` and the severity (informational; warning for
a response of 400 or more), the event's ``stageTimestamp`` as TIMESTAMP, ``hostname`` (this
host), APP-NAME ``app_name``, MSGID ``audit``, structured data ``[auditsink@32473 cluster=...
auditID=... stage=...]`` (32473 is the example enterprise number of RFC 5612), and the
document as MSG. Tested against Debian's rsyslog (imtcp, and imtcp with TLS).
"""

from __future__ import annotations

import os
import select
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from auditsink.forward.base import DeliveryError, Doc, Output, OutputConfig, Rejection

FACILITIES = {"kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
              **{f"local{n}": 16 + n for n in range(8)}}
_INFO, _WARNING = 6, 4


@dataclass
class SyslogConfig(OutputConfig):
    """``address`` HOST:PORT; ``tls`` with ``ca_file`` (and ``cert_file``/``key_file``)."""

    address: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""     # TLS name to check (default: the address's host)
    facility: str = "local0"
    app_name: str = "auditsink"
    hostname: str = ""

    target_key: ClassVar[str] = "address"

    def check(self) -> str:
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            return f"address {self.address!r}: expected HOST:PORT, e.g. siem.example:6514"
        if self.facility not in FACILITIES:
            return f"facility {self.facility!r}: expected one of {', '.join(FACILITIES)}"
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, key)
            if path and not os.path.isfile(path):
                return f"{key}: no such file: {path}"
        return ""


def _sd_value(value: str) -> str:
    # RFC 5424 6.3.3: '"', '\' and ']' are escaped inside PARAM-VALUE.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str, limit: int) -> str:
    # HOSTNAME and APP-NAME are printable US-ASCII without spaces, or "-".
    text = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


def message(doc: Doc, facility: int, hostname: str, app_name: str) -> bytes:
    """One RFC 5424 message (without framing)."""
    event = doc.record.event
    severity = _WARNING if event.code >= 400 else _INFO
    sd = (f'[auditsink@32473 cluster="{_sd_value(doc.record.cluster)}" '
          f'auditID="{_sd_value(event.auditID)}" stage="{_sd_value(event.stage)}"]')
    timestamp = event.stageTimestamp or "-"
    head = (f"<{facility * 8 + severity}>1 {timestamp} {_header_field(hostname, 255)} "
            f"{_header_field(app_name, 48)} - audit {sd} ")
    return head.encode() + doc.body


def render(docs: Sequence[Doc], facility: int, hostname: str, app_name: str) -> bytes:
    """The octet-counted frames of one batch: ``LEN SP MSG`` each."""
    frames = []
    for doc in docs:
        msg = message(doc, facility, hostname, app_name)
        frames.append(b"%d %s" % (len(msg), msg))
    return b"".join(frames)


class SyslogOutput(Output):
    """Writes each batch's frames on one kept-open connection."""

    config_class = SyslogConfig

    def __init__(self, config: SyslogConfig) -> None:
        super().__init__(config)
        self.config: SyslogConfig = config
        host, _, port = config.address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.facility = FACILITIES[config.facility]
        self.hostname = config.hostname or socket.gethostname()
        self._sock: socket.socket | None = None

    def render(self, docs: Sequence[Doc]) -> bytes:
        return render(docs, self.facility, self.hostname, self.config.app_name)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.config.timeout)
        if self.config.tls:
            context = ssl.create_default_context(cafile=self.config.ca_file or None)
            if self.config.cert_file:
                context.load_cert_chain(self.config.cert_file, self.config.key_file or None)
            sock = context.wrap_socket(sock, server_hostname=self.config.server_name or self.host)
        return sock

    def _alive(self) -> bool:
        """Whether the kept-open connection still stands (the server may have restarted
        since the last batch). A syslog server never writes to its clients, so something to
        read means the end: EOF, a reset, TLS close_notify; except TLS 1.3 session tickets,
        which reading consumes."""
        sock = self._sock
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return True
            sock.setblocking(False)
            try:
                if isinstance(sock, ssl.SSLSocket):
                    return sock.recv(1) != b""
                return sock.recv(1, socket.MSG_PEEK) != b""
            finally:
                sock.settimeout(self.config.timeout)
        except (ssl.SSLWantReadError, BlockingIOError):
            return True  # only a session ticket (TLS), nothing to read
        except (OSError, ValueError):
            return False

    def send(self, payload: bytes) -> Sequence[Rejection]:
        # TCP syslog has no acknowledgement (RELP would): bytes the kernel took count as sent.
        # Checking the connection before each batch keeps a server restart from eating one.
        try:
            if not self._alive():
                self.close()
                self._sock = self._connect()
            assert self._sock is not None
            self._sock.sendall(payload)
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise DeliveryError(f"syslog {self.config.address}: {exc}") from None
        return ()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
