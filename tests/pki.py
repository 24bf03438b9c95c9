"""A private CA made in the test, with a server certificate for 127.0.0.1 and a client certificate for a device.

Real certificates (cryptography), written to files, so that real TLS servers and `requests` sessions use
them exactly as the device and the portal will. EC P-256 keys: quick to make.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@dataclass(frozen=True)
class Ca:
    """A CA in memory, to issue certificates with."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def write(self, path: Path) -> Path:
        path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, name: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName] | None, *,
              not_before: datetime.datetime, not_after: datetime.datetime) -> tuple[bytes, bytes]:
        """A leaf certificate and its new key, both PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(self.certificate.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))

    def server(self, directory: Path, name: str, *, sans: tuple[str, ...] = ("127.0.0.1",), days: float = 1,
               expired: bool = False) -> tuple[Path, Path]:
        """A server certificate for `sans` (IP addresses or DNS names), written as `name`.pem and `name`.key."""
        now = datetime.datetime.now(datetime.UTC)
        alt: list[x509.GeneralName] = []
        for san in sans:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                alt.append(x509.DNSName(san))
        window = (now - datetime.timedelta(days=3), now - datetime.timedelta(days=1)) if expired else \
            (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days))
        cert, key = self.issue(sans[0], ExtendedKeyUsageOID.SERVER_AUTH, alt, not_before=window[0],
                               not_after=window[1])
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.pem").write_bytes(cert)
        (directory / f"{name}.key").write_bytes(key)
        return directory / f"{name}.pem", directory / f"{name}.key"


def make_ca(name: str = "ServiceGate test vendor CA", *, valid_days: int = 1) -> Ca:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=valid_days, minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=valid_days + 1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .sign(key, hashes.SHA256()))
    return Ca(certificate, key)


def make_pki(directory: Path, *, device_id: str = "device-0001", valid_days: int = 1) -> Pki:
    """`valid_days` before and after now (a test that steps the clock needs room on both sides)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca = make_ca(valid_days=valid_days)
    window = {"not_before": now - datetime.timedelta(days=valid_days, minutes=5),
              "not_after": now + datetime.timedelta(days=valid_days)}
    server = ca.issue("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
                      [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")], **window)
    client = ca.issue(device_id, ExtendedKeyUsageOID.CLIENT_AUTH, None, **window)
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key",
              directory / "client.pem", directory / "client.key")
    ca.write(pki.ca_cert)
    pki.server_cert.write_bytes(server[0])
    pki.server_key.write_bytes(server[1])
    pki.client_cert.write_bytes(client[0])
    pki.client_key.write_bytes(client[1])
    for key in (pki.server_key, pki.client_key):
        key.chmod(0o600)
    return pki
