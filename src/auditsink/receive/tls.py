"""TLS for the receiver: one SSLContext recipe, also expressed as uvicorn's ``ssl_*`` settings.

Client certificates: with only ``client_ca`` configured the handshake demands a certificate
(CERT_REQUIRED), so an unauthenticated sender never gets to send a byte. When tokens or basic
auth are configured as well, a certificate becomes optional (CERT_OPTIONAL): a presented one is
still verified against ``client_ca`` and a bad one still fails the handshake, but a sender with
only a token can connect, and :class:`auditsink.receive.auth.Authenticator` then requires one of
the two. Python >= 3.10 already refuses TLS < 1.2 for PROTOCOL_TLS_SERVER; we set it explicitly.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any

PathLike = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """The server side of TLS; ``uvicorn_kwargs()`` and ``context()`` describe the same thing."""

    ssl_certfile: str
    ssl_keyfile: str
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: int = ssl.CERT_NONE

    def uvicorn_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``uvicorn.run``/``uvicorn.Config``."""
        kwargs: dict[str, Any] = {
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
            "ssl_cert_reqs": self.ssl_cert_reqs,
        }
        if self.ssl_ca_certs:
            kwargs["ssl_ca_certs"] = self.ssl_ca_certs
        return kwargs

    def context(self) -> ssl.SSLContext:
        """A server SSLContext with these settings (what uvicorn builds, plus TLS >= 1.2)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        if self.ssl_ca_certs:
            ctx.load_verify_locations(cafile=self.ssl_ca_certs)
        ctx.verify_mode = ssl.VerifyMode(self.ssl_cert_reqs)
        return ctx


def tls_config(
    cert: PathLike, key: PathLike, client_ca: PathLike | None = None, *, header_auth: bool = False
) -> TLSConfig:
    """Settings for ``cert``/``key``; ``header_auth`` makes a client certificate optional."""
    if client_ca is None:
        reqs = ssl.CERT_NONE
    else:
        reqs = ssl.CERT_OPTIONAL if header_auth else ssl.CERT_REQUIRED
    return TLSConfig(
        ssl_certfile=os.fspath(cert),
        ssl_keyfile=os.fspath(key),
        ssl_ca_certs=os.fspath(client_ca) if client_ca is not None else None,
        ssl_cert_reqs=reqs,
    )


def build_ssl_context(
    cert: PathLike, key: PathLike, client_ca: PathLike | None = None, *, header_auth: bool = False
) -> ssl.SSLContext:
    """A server SSLContext: TLS >= 1.2, client certificates verified against ``client_ca``."""
    return tls_config(cert, key, client_ca, header_auth=header_auth).context()


def peer_cn(peercert: dict[str, Any] | None) -> str | None:
    """The subject CN of a verified peer certificate, from ``SSLSocket.getpeercert()``.

    ``{"subject": ((("commonName", "kube-apiserver"),),)}`` -> ``"kube-apiserver"``; None when
    there is no certificate (``getpeercert()`` returns ``{}`` unless the chain was verified).
    With several CNs the **last** one counts, as in Go's ``pkix.Name.FillFromRDNSequence``
    (which Kubernetes' x509 authenticator reads): the first would let a certificate that
    Kubernetes knows as one name be taken here for another.
    """
    if not peercert:
        return None
    found: str | None = None
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                found = str(value)
    return found


def peer_cn_from_transport(transport: Any) -> str | None:
    """The verified client CN of an asyncio transport (``get_extra_info("peercert")``)."""
    return peer_cn(transport.get_extra_info("peercert"))


def uvicorn_tls_kwargs(
    cert: PathLike, key: PathLike, client_ca: PathLike | None = None, header_auth: bool = False
) -> dict[str, Any]:
    """``uvicorn.Config`` keyword arguments: ``tls_config(...).uvicorn_kwargs()`` in one call."""
    return tls_config(cert, key, client_ca, header_auth=header_auth).uvicorn_kwargs()
