"""The hardware binding (agent.identity) and what enrollment sends: real files as the machine's identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.config import PortalConfig
from agent.enroll import new_key_and_csr
from agent.errors import PortalError
from agent.identity import BINDING_URI_PREFIX, hardware_binding

MACHINE_ID = "0123456789abcdef0123456789abcdef"


def machine(tmp_path: Path, machine_id: str = MACHINE_ID, uuid: str | None = None) -> PortalConfig:
    (tmp_path / "machine-id").write_text(machine_id + "\n")
    if uuid is not None:
        (tmp_path / "uuid").write_text(uuid)
    return PortalConfig(machine_id_file=tmp_path / "machine-id", product_uuid_file=tmp_path / "uuid",
                        product_serial_file=tmp_path / "serial")


def test_the_binding_is_stable_for_one_machine_and_differs_for_another(tmp_path: Path) -> None:
    one = machine(tmp_path)
    first = hardware_binding("ct-1", one)
    assert hardware_binding("ct-1", one) == first
    assert len(first) == 64
    assert hardware_binding("ct-2", one) != first  # keyed with the device ID
    assert hardware_binding("ct-1", machine(tmp_path, uuid="4c4c4544-0042")) != first  # every identifier counts
    assert hardware_binding("ct-1", machine(tmp_path, "f" * 32)) != first


def test_no_readable_identifier_is_an_error_that_names_the_files(tmp_path: Path) -> None:
    nothing = PortalConfig(machine_id_file=tmp_path / "a", product_uuid_file=tmp_path / "b",
                           product_serial_file=tmp_path / "c")
    with pytest.raises(PortalError, match="cannot tell which machine") as caught:
        hardware_binding("ct-1", nothing)
    assert str(tmp_path / "a") in str(caught.value)


def test_the_request_names_the_device_and_its_binding_but_not_the_machine_id(tmp_path: Path) -> None:
    portal = machine(tmp_path, uuid="4c4c4544-0042-3510-8052-b4c04f4d3132")
    key, pem = new_key_and_csr("ct-1", portal)
    csr = x509.load_pem_x509_csr(pem.encode())
    assert csr.is_signature_valid
    assert csr.public_key() == key.public_key()
    assert csr.subject.rfc4514_string() == "CN=ct-1"
    alt = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.UniformResourceIdentifier) == \
        [BINDING_URI_PREFIX + hardware_binding("ct-1", portal)]
    raw = csr.public_bytes(serialization.Encoding.DER)
    for secret in (MACHINE_ID, "4c4c4544-0042-3510-8052-b4c04f4d3132"):
        assert secret.encode() not in raw
        assert bytes.fromhex(secret.replace("-", "")) not in raw
