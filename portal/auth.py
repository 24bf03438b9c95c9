"""Which device is calling: the verified TLS client certificate that `portal.tlsproto` puts into the request scope.

The certificate must be the one the portal issued to that device last (or the one before, while a renewal is
being switched to). Every endpoint that serves an enrolled device takes `Caller`; the screen relay
(portal/relay.py), which has TLS connections of its own, decides with the same `certified_device`.
"""

from __future__ import annotations

from typing import Annotated

from cryptography import x509
from fastapi import Depends, HTTPException, Request

from portal.pki import device_of
from portal.store import Store


class CertificateRefused(Exception):
    """A certificate from the vendor CA that is not an enrolled device's current one; the message is safe to show."""


def certified_device(store: Store, certificate: x509.Certificate) -> str:
    """The enrolled device `certificate` (verified against the vendor CA) names, or CertificateRefused (logged).
    The first use of a renewed certificate retires the one it was renewed from. Blocking: SQLite."""
    device_id = device_of(certificate)
    device = store.device(device_id) if device_id else None
    serials = {device.get("cert_serial"), device.get("previous_serial")} if device else set()
    if device_id is None or device is None or str(certificate.serial_number) not in serials:
        store.log(device_id, "certificate_refused", f"serial {certificate.serial_number:x} is not the "
                                                    "device's current certificate")
        raise CertificateRefused("this certificate is not the current one of an enrolled device: enroll again")
    if device["previous_serial"] is not None and str(certificate.serial_number) == device["cert_serial"]:
        store.switched(device_id)
    return device_id


def caller(request: Request) -> str:
    """The device named by the request's verified client certificate, or 401/403."""
    store: Store = request.app.state.store
    chain = request.scope.get("extensions", {}).get("tls", {}).get("client_cert_chain") or []
    if not chain:
        raise HTTPException(401, "a client certificate is needed: enroll the device first (servicegate enroll)")
    certificate = x509.load_pem_x509_certificate(chain[0].encode())
    try:
        device_id = certified_device(store, certificate)
    except CertificateRefused as exc:
        raise HTTPException(403, str(exc)) from None
    request.state.serial = certificate.serial_number
    return device_id


Caller = Annotated[str, Depends(caller)]
