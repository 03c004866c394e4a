"""Certificate generation: key type, extensions, SANs, validity, determinism of everything else."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from auditsink.setup.certs import (
    generate_bundle,
    generate_ca,
    generate_client_cert,
    generate_server_cert,
    load_key_pair,
)


def ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType:
    return cert.extensions.get_extension_for_class(kind).value


def test_ca_is_a_p256_leaf_only_ca() -> None:
    ca = generate_ca()
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey) and ca.key.curve.name == "secp256r1"
    bc = ext(ca.cert, x509.BasicConstraints)
    assert isinstance(bc, x509.BasicConstraints) and bc.ca and bc.path_length == 0
    assert ca.cert.subject == ca.cert.issuer
    ca.cert.verify_directly_issued_by(ca.cert)
    days = (ca.cert.not_valid_after_utc - ca.cert.not_valid_before_utc).days
    assert days == 3650


def test_server_certificate_sans_and_usage() -> None:
    ca = generate_ca()
    server = generate_server_cert(ca, ["auditsink.example", "10.0.0.5", "::1"], days=30)
    server.cert.verify_directly_issued_by(ca.cert)
    sans = ext(server.cert, x509.SubjectAlternativeName)
    assert isinstance(sans, x509.SubjectAlternativeName)
    assert sans.get_values_for_type(x509.DNSName) == ["auditsink.example"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("::1"),
    ]
    assert list(ext(server.cert, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.SERVER_AUTH]  # type: ignore[call-overload]
    assert not ext(server.cert, x509.BasicConstraints).ca  # type: ignore[attr-defined]
    assert (server.cert.not_valid_after_utc - server.cert.not_valid_before_utc).days == 30
    with pytest.raises(ValueError, match="at least one"):
        generate_server_cert(ca, [])


def test_client_certificate_cn_and_usage() -> None:
    ca = generate_ca()
    client = generate_client_cert(ca, "apiserver-eu")
    assert (
        client.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "apiserver-eu"
    )
    assert list(ext(client.cert, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.CLIENT_AUTH]  # type: ignore[call-overload]
    with pytest.raises(x509.ExtensionNotFound):
        client.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_validity_in_the_past() -> None:
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    old = generate_client_cert(generate_ca(), days=1, not_before=start)
    assert old.cert.not_valid_before_utc == start
    assert old.cert.not_valid_after_utc == start + dt.timedelta(days=1)


def test_bundle_is_deterministic_except_keys_serials_dates() -> None:
    def shape(files: dict[str, bytes]) -> list[tuple[str, object, object, list[str]]]:
        out = []
        for name, data in files.items():
            if name.endswith(".crt"):
                cert = x509.load_pem_x509_certificate(data)
                out.append(
                    (
                        name,
                        cert.subject.rfc4514_string(),
                        cert.issuer.rfc4514_string(),
                        sorted(e.oid.dotted_string for e in cert.extensions),
                    )
                )
            else:
                out.append((name, None, None, [data.splitlines()[0].decode()]))
        return out

    a = generate_bundle(["localhost", "127.0.0.1"])
    b = generate_bundle(["localhost", "127.0.0.1"])
    assert list(a) == [
        "ca.key",
        "ca.crt",
        "server.crt",
        "server.key",
        "kube-apiserver.crt",
        "kube-apiserver.key",
    ]
    assert shape(a) == shape(b)
    assert a["ca.key"] != b["ca.key"]  # fresh keys every time
    assert shape(a)[1][2] == "CN=auditsink CA,O=auditsink"  # RFC 4514 lists the last RDN first


def test_bundle_reuses_an_existing_ca() -> None:
    first = generate_bundle(["localhost"])
    ca = load_key_pair(first["ca.crt"], first["ca.key"])
    second = generate_bundle(["audit.example"], client_cn="apiserver-b", ca=ca)
    assert "ca.key" not in second and second["ca.crt"] == first["ca.crt"]
    x509.load_pem_x509_certificate(second["apiserver-b.crt"]).verify_directly_issued_by(ca.cert)
    with pytest.raises(ValueError, match="client CN names the files"):
        generate_bundle(["localhost"], client_cn="../evil")
