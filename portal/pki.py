"""The portal's private vendor CA: made on first start in the data folder, it signs the portal's server
certificate and every device certificate.

Files in the data folder: `ca.pem` and `ca.key` (0600), `server.pem` and `server.key` (0600). A device
certificate carries the device ID as its common name and, copied from the device's request, its hardware
binding as a subject alternative name URI (`urn:servicegate:hardware:<hex>`); the portal never sees the
machine's identifiers themselves.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BINDING_URI_PREFIX = "urn:servicegate:hardware:"
CA_YEARS = 10
SERVER_DAYS = 825


class CsrError(Exception):
    """A certificate request the portal will not sign; the message says why."""


class PortalPki:
    """The CA and server certificate in `data_dir`, created when missing."""

    def __init__(self, data_dir: Path, *, server_names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> None:
        self.ca_file = data_dir / "ca.pem"
        self.ca_key_file = data_dir / "ca.key"
        self.server_cert = data_dir / "server.pem"
        self.server_key = data_dir / "server.key"
        if not self.ca_file.exists():
            _write_ca(self.ca_file, self.ca_key_file)
        self.ca = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        key = serialization.load_pem_private_key(self.ca_key_file.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self._ca_key = key
        if not self.server_cert.exists() or _names(self.server_cert) != set(server_names):
            self._write_server(server_names)

    @property
    def ca_pem(self) -> str:
        return self.ca.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the CA certificate (DER), hex: what site IT is given to check at enrollment."""
        return hashlib.sha256(self.ca.public_bytes(serialization.Encoding.DER)).hexdigest()

    def sign_device(self, csr_pem: str, device_id: str, *, days: int, binding: str | None = None) -> x509.Certificate:
        """A client certificate for `device_id` from its request. The request must name the device, carry a
        hardware binding (equal to `binding` when renewing) and an EC P-256 key, and be signed by that key."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError:
            raise CsrError("the certificate request is not a PEM CSR") from None
        if not csr.is_signature_valid:
            raise CsrError("the certificate request's signature does not match its key")
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names or names[0].value != device_id:
            raise CsrError(f"the certificate request must name the device {device_id!r} as its common name")
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise CsrError("the device key must be EC P-256")
        requested = binding_of(csr)
        if requested is None:
            raise CsrError(f"the certificate request carries no hardware binding ({BINDING_URI_PREFIX}...)")
        if binding is not None and requested != binding:
            raise CsrError("the hardware binding differs from the device's certificate: a renewal must come from "
                           "the same machine; enroll the new machine instead")
        now = datetime.datetime.now(datetime.UTC)
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
                .issuer_name(self.ca.subject).public_key(key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
                    BINDING_URI_PREFIX + requested)]), critical=False)
                .sign(self._ca_key, hashes.SHA256()))

    def _write_server(self, server_names: tuple[str, ...]) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        alt: list[x509.GeneralName] = []
        for name in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        certificate = (x509.CertificateBuilder()
                       .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_names[0])]))
                       .issuer_name(self.ca.subject).public_key(key.public_key())
                       .serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(minutes=5))
                       .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
                       .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                       .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                       .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                       .sign(self._ca_key, hashes.SHA256()))
        _write_private(self.server_key, key)
        self.server_cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def binding_of(item: x509.Certificate | x509.CertificateSigningRequest) -> str | None:
    """The hardware binding a certificate or request carries, or None."""
    try:
        alt = item.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in alt.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(BINDING_URI_PREFIX) and len(uri) > len(BINDING_URI_PREFIX):
            return uri.removeprefix(BINDING_URI_PREFIX)
    return None


def device_of(certificate: x509.Certificate) -> str | None:
    """The device ID a client certificate names (its common name)."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def _write_ca(cert_file: Path, key_file: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ServiceGate reference portal"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "ServiceGate vendor CA")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(key, hashes.SHA256()))
    _write_private(key_file, key)
    cert_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _names(cert_file: Path) -> set[str]:
    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    try:
        alt = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in alt.get_values_for_type(x509.IPAddress)} | set(alt.get_values_for_type(x509.DNSName))
