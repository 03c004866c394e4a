"""Webhook certificates: a private CA, auditsink's server cert, the API server's client cert.

ECDSA P-256 keys, SHA-256 signatures. The CA is dedicated to auditsink (never the cluster CA),
so compromising it lets nobody into the cluster.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_CA_DAYS = 3650
DEFAULT_LEAF_DAYS = 825
# Backdate a little: a node whose clock lags must not see a certificate from the future.
_BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The certificate, PEM-encoded."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The private key, unencrypted PKCS#8 PEM (written with mode 0600)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def load_key_pair(cert_pem: bytes, key_pem: bytes) -> KeyPair:
    """Load a PEM certificate and ECDSA key, e.g. an existing auditsink CA."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        # A wrong key type is bad file content, not a programming error.
        raise ValueError("expected an ECDSA private key")  # noqa: TRY004
    return KeyPair(x509.load_pem_x509_certificate(cert_pem), key)


def _validity(days: int, not_before: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    start = not_before or (dt.datetime.now(dt.UTC) - _BACKDATE)
    return start, start + dt.timedelta(days=days)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def generate_ca(
    common_name: str = "auditsink CA",
    *,
    days: int = DEFAULT_CA_DAYS,
    not_before: dt.datetime | None = None,
) -> KeyPair:
    """A self-signed CA that may only sign leaf certificates (pathlen 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days, not_before)
    name = _name(common_name, "auditsink")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def _leaf(
    ca: KeyPair,
    common_name: str,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
    days: int,
    not_before: dt.datetime | None,
) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days, not_before)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def subject_alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """SANs for host names and IP addresses: ``["audit.local", "10.0.0.5"]`` -> DNS + IP entries."""
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return sans


def generate_server_cert(
    ca: KeyPair,
    hosts: Iterable[str],
    *,
    days: int = DEFAULT_LEAF_DAYS,
    not_before: dt.datetime | None = None,
) -> KeyPair:
    """auditsink's serving certificate; client-go checks the host against the SANs only."""
    hosts = list(hosts)
    if not hosts:
        raise ValueError("a server certificate needs at least one DNS name or IP address")
    return _leaf(
        ca, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, subject_alt_names(hosts), days, not_before
    )


def generate_client_cert(
    ca: KeyPair,
    common_name: str = "kube-apiserver",
    *,
    days: int = DEFAULT_LEAF_DAYS,
    not_before: dt.datetime | None = None,
) -> KeyPair:
    """The API server's client certificate; its CN is what ``client_cns`` matches."""
    return _leaf(ca, common_name, ExtendedKeyUsageOID.CLIENT_AUTH, [], days, not_before)


def generate_bundle(
    hosts: Iterable[str],
    *,
    client_cn: str = "kube-apiserver",
    ca: KeyPair | None = None,
    ca_days: int = DEFAULT_CA_DAYS,
    days: int = DEFAULT_LEAF_DAYS,
) -> dict[str, bytes]:
    """Everything for mTLS as file name -> PEM; ``ca.key`` is left out when ``ca`` is given."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", client_cn):
        raise ValueError("the client CN names the files: use letters, digits, '.', '_' or '-'")
    files: dict[str, bytes] = {}
    if ca is None:
        ca = generate_ca(days=ca_days)
        files["ca.key"] = ca.key_pem
    files["ca.crt"] = ca.cert_pem
    server = generate_server_cert(ca, hosts, days=days)
    files["server.crt"] = server.cert_pem
    files["server.key"] = server.key_pem
    client = generate_client_cert(ca, client_cn, days=days)
    files[f"{client_cn}.crt"] = client.cert_pem
    files[f"{client_cn}.key"] = client.key_pem
    return files
