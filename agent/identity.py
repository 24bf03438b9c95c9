"""The device's hardware binding: which machine a device certificate belongs to, without telling anyone what the
machine's identifiers are.

The binding is an HMAC-SHA-256, keyed with the device ID, of the machine ID, the DMI product UUID and the DMI serial
number (each where readable; the files come from `[portal]` in agent.toml). It goes into the certificate request at
enrollment and so into the certificate. When the agent starts its link to the portal, it computes it again and
refuses to connect when it differs: a configuration and key copied to another machine do not connect. Keyed with
the device ID, the same machine gives different bindings under different IDs, and the raw machine ID never leaves
this module.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from cryptography import x509

from agent.config import PortalConfig
from agent.errors import PortalError

BINDING_URI_PREFIX = "urn:servicegate:hardware:"  # how a certificate carries it (a subject alternative name)
_KEY_PREFIX = b"servicegate hardware binding v1\0"


def hardware_binding(device_id: str, portal: PortalConfig) -> str:
    """This machine's binding for `device_id`, hex."""
    values = {name: _read(path) for name, path in (("machine-id", portal.machine_id_file),
                                                   ("product-uuid", portal.product_uuid_file),
                                                   ("product-serial", portal.product_serial_file))}
    if not any(values.values()):
        raise PortalError(f"cannot tell which machine this is: none of {portal.machine_id_file}, "
                          f"{portal.product_uuid_file}, {portal.product_serial_file} is readable. Check [portal] in "
                          "agent.toml (machine_id_file and the others) and the files' permissions.")
    text = "".join(f"{name}={value}\n" for name, value in values.items())
    return hmac.new(_KEY_PREFIX + device_id.encode(), text.encode(), hashlib.sha256).hexdigest()


def binding_of(certificate: x509.Certificate) -> str | None:
    """The binding a certificate carries, or None."""
    try:
        alt = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in alt.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(BINDING_URI_PREFIX) and len(uri) > len(BINDING_URI_PREFIX):
            return uri.removeprefix(BINDING_URI_PREFIX)
    return None


def check_binding(certificate: x509.Certificate, device_id: str, portal: PortalConfig) -> None:
    """Refuse (PortalError) when `certificate` was issued to another machine than this one."""
    if binding_of(certificate) != hardware_binding(device_id, portal):
        raise PortalError("this device certificate was issued to another machine (its hardware binding differs "
                          "from this machine's): a copied configuration cannot connect. Enroll this machine with "
                          "`servicegate enroll`.")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
