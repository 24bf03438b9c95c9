"""The update channel against a real portal (its TUF repository over mutual TLS, tests/portal_process.py): the attack
suite. Each attack (tests/tuf_repo.py) is refused with a clear reason and an audit record, nothing is staged, and the
portal is told; beside each, a positive control shows the same device taking a proper update.

In-process: the agent core (agent.core.Agent, real audit log and state files) with python-tuf's client through
the enrolled device's pinned session; the daemon's sending thread is played by calling `fetch_pending` here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.audit_verify import export
from agent.clock import SystemClock
from agent.config import from_mapping
from agent.connection import pinned_session
from agent.core import Agent
from agent.enroll import Enrollment, enroll
from agent.updates import UpdateChannel
from tests import tuf_repo
from tests.portal_process import PortalProcess
from tests.test_connection import identity
from tests.test_core import start

DEVICE_ID = "ct-update-1"
MODEL = "CT-DEMO"


@dataclass
class Device:
    agent: Agent
    portal: PortalProcess
    files: Path  # where the tests write what they publish

    @property
    def data(self) -> Path:
        return self.portal.data_dir

    def publish(self, file_name: str, version: str, **more: Any) -> str:
        """A proper update, published at the portal: its target name."""
        content = f"patterns {version}\n".encode() * 50
        published = tuf_repo.publish_for_test(self.data, self.files, file_name, content, version=version, **more)
        return str(published["name"])

    def offer(self, name: str) -> None:
        """The portal's offer arrives, and the sending thread does its work."""
        self.agent.updates.offer(name, "portal")
        assert self.agent.updates.fetch_pending()

    def offered(self) -> list[str]:
        return [o["name"] for o in self.agent.updates.list() if o["state"] == "offered"]

    def refusals(self) -> list[dict[str, Any]]:
        return [r["details"] for r in export(self.agent.config.paths.audit_dir, None, None)
                if r["event"] == "update_refused"]

    def staged(self) -> list[Path]:
        staging = self.agent.updates.store.staging
        return sorted(p for p in staging.rglob("*") if p.is_file()) if staging.exists() else []


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Device]:
    with PortalProcess(tmp_path / "portal") as portal:
        text = identity(tmp_path / "machine", "d" * 32) + f'[updates]\nmodel = "{MODEL}"\n'
        config = from_mapping({**tomllib.loads(text), "paths": {"state_dir": str(tmp_path / "state"),
                                                                "control_socket": str(tmp_path / "c.sock")}})
        enroll(config, portal.url, portal.ca_fingerprint, portal.add_device(DEVICE_ID), DEVICE_ID)
        enrollment = Enrollment.load(config.paths.state_dir)
        assert enrollment is not None
        session = pinned_session(enrollment.ca_file, client_cert=(enrollment.cert_file, enrollment.key_file))
        agent = start(config, SystemClock())
        agent.updates.channel = lambda: UpdateChannel(config.paths.state_dir, portal.url, session)
        yield Device(agent, portal, tmp_path / "files")
        session.close()


def refused(device: Device, name: str, words: str) -> None:
    """The offer of `name` was refused for `words`, recorded and reported, and nothing of it was staged."""
    before = len(device.refusals())
    device.offer(name)
    assert name not in device.offered()
    [refusal] = device.refusals()[before:]
    assert refusal["target"] == name
    assert words in refusal["why"], refusal["why"]
    assert device.staged() == [p for p in device.staged() if p.parent.name in
                               {o["id"] for o in device.agent.updates.list()}]  # only the offers that passed
    assert device.agent.updates.store.reports()[-1] | {"detail": ""} == {
        "target": name, "version": "", "outcome": "refused", "detail": "",
        "at": device.agent.updates.store.reports()[-1]["at"]}


def test_a_proper_update_is_verified_downloaded_and_waits_for_approval(device: Device) -> None:
    name = device.publish("patterns-1.dat", "2026.1")
    device.offer(name)
    [offer] = device.agent.updates.list()
    assert (offer["name"], offer["state"], offer["kind"], offer["version"]) == (name, "offered", "virus-patterns",
                                                                                "2026.1")
    assert offer["publisher"] == "Vendor Service"
    assert offer["signed_by"] == sorted(tuf_repo.current(device.data, "root").signed.roles["targets"].keyids)
    staged = Path(offer["file"])
    assert staged.read_bytes() == b"patterns 2026.1\n" * 50
    assert staged.parent.parent == device.agent.updates.store.staging
    events = [r["event"] for r in export(device.agent.config.paths.audit_dir, None, None)]
    assert events[-2:] == ["update_offer_received", "update_offered"]


def test_a_file_offered_outside_tuf_is_refused(device: Device) -> None:
    refused(device, "virus-patterns/never-published.dat", "not in the signed targets metadata")
    device.offer(device.publish("patterns-2.dat", "2026.2"))  # the positive control
    assert device.offered() == ["virus-patterns/patterns-2.dat"]


def test_a_file_put_beside_the_targets_without_metadata_is_refused(device: Device) -> None:
    loose = device.files / "loose.dat"
    loose.parent.mkdir(parents=True)
    loose.write_bytes(b"not signed by anyone\n")
    refused(device, tuf_repo.unsigned_target(device.data, loose, kind="virus-patterns"),
            "not in the signed targets metadata")
    device.offer(device.publish("patterns-3.dat", "2026.3"))
    assert device.offered() == ["virus-patterns/patterns-3.dat"]


@pytest.mark.parametrize(("attack", "words"), [
    (lambda data: tuf_repo.sign_with_wrong_key(data, "targets"), "not signed by a key the vendor's root trusts"),
    (lambda data: tuf_repo.remove_signatures(data, "snapshot"), "not signed by a key the vendor's root trusts"),
    (tuf_repo.expire_timestamp, "has expired"),
    (tuf_repo.rollback_snapshot, "older than what this device has seen already"),
    (tuf_repo.mix_and_match, "older than what this device has seen already"),
])
def test_forged_replayed_or_mixed_metadata_is_refused(device: Device, attack: Callable[[Path], object],
                                                      words: str) -> None:
    first = device.publish("patterns-4.dat", "2026.4")
    name = device.publish("patterns-5.dat", "2026.5")
    device.offer(first)  # the positive control; the device has now seen the newest metadata
    assert device.offered() == [first]
    attack(device.data)
    refused(device, name, words)
    # (No control after it: the device now trusts the newest timestamp and snapshot it verified on the way, as TUF
    # requires; the repository's own later versions bring it back, which tests/test_portal_updates.py shows.)


@pytest.mark.parametrize(("attack", "words"), [
    (tuf_repo.tamper_target_bytes, "does not match its signed length and hash"),
    (tuf_repo.extend_target, "longer than its signed length"),
])
def test_target_bytes_changed_on_the_server_are_refused(device: Device, attack: Callable[[Path, str], object],
                                                        words: str) -> None:
    name = device.publish("patterns-6.dat", "2026.6")
    path = tuf_repo.target_path(device.data, name)
    good = path.read_bytes()
    attack(device.data, name)
    refused(device, name, words)
    path.write_bytes(good)
    device.offer(name)
    assert device.offered() == [name]


def test_an_update_for_another_model_or_not_newer_is_refused_though_validly_signed(device: Device) -> None:
    refused(device, device.publish("mr-patterns.dat", "2026.7", models=("MR-OTHER",)),
            "is for MR-OTHER, not for this CT-DEMO")
    device.agent.updates.store.set_installed("virus-patterns", "2026.8")  # what an earlier installation recorded
    refused(device, device.publish("old-patterns.dat", "2026.7"), "not newer than the 2026.8 installed here")
    refused(device, device.publish("same-patterns.dat", "2026.8"), "not newer than the 2026.8 installed here")
    device.offer(device.publish("new-patterns.dat", "2026.9"))
    assert device.offered() == ["virus-patterns/new-patterns.dat"]
