"""The portal's TUF repository (portal/updates.py), checked with python-tuf's own client: a real portal process, a
device enrolled by hand (as in test_portal.py), and `tuf.ngclient.Updater` fetching over mutual TLS with the
device's certificate through a requests session pinned to the vendor CA.

Each attack helper of tests/tuf_repo.py is shown to make the Updater refuse, right after a positive control in which
the same device refreshes and downloads: so the helpers really attack, and the repository really is verifiable.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import json
import os
import ssl
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tuf.api import exceptions
from tuf.api.metadata import Metadata
from tuf.ngclient import FetcherInterface, Updater

from portal.store import Store
from portal.updates import Repository, keep_fresh
from tests import tuf_repo
from tests.portal_process import PortalProcess
from tests.test_portal import Device, body, csr_for, session

PATTERNS = b"virus patterns of 5 December 2026\n" * 100
SOFTWARE = b"#!/bin/sh\necho servicegate 0.2.0\n"


class SessionFetcher(FetcherInterface):
    """python-tuf's downloads through a requests session (the device's certificate, the vendor CA only)."""

    def __init__(self, session: requests.Session, timeout_s: float = 30) -> None:
        self.session, self.timeout_s = session, timeout_s

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            answer = self.session.get(url, stream=True, timeout=self.timeout_s)
        except requests.Timeout as exc:
            raise exceptions.SlowRetrievalError from exc
        if answer.status_code != 200:  # 404 for the root after the newest is normal: it must be DownloadHTTPError
            answer.close()
            raise exceptions.DownloadHTTPError(f"HTTP {answer.status_code} for {url}", answer.status_code)
        return answer.iter_content(chunk_size=8192)


@dataclass
class Enrolled:
    device: Device
    tuf_root: str  # the enrollment answer's


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalProcess]:
    with PortalProcess(tmp_path_factory.mktemp("portal")) as running:
        yield running


def enroll(portal: PortalProcess, device_id: str, folder: Path) -> Enrolled:
    otp = portal.add_device(device_id)
    key = ec.generate_private_key(ec.SECP256R1())
    answer = session(portal).post(f"{portal.url}/v1/enroll", json=body(device_id, otp, csr_for(device_id, key)),
                                  timeout=10)
    assert answer.status_code == 200, answer.text
    device = Device(device_id, folder / f"{device_id}.pem", folder / f"{device_id}.key")
    device.cert.write_text(answer.json()["certificate"])
    device.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    return Enrolled(device, answer.json()["tuf_root"])


@pytest.fixture(scope="module")
def scanner(portal: PortalProcess, tmp_path_factory: pytest.TempPathFactory) -> Enrolled:
    return enroll(portal, "ct-tuf-1", tmp_path_factory.mktemp("device"))


@pytest.fixture(scope="module")
def published(portal: PortalProcess, scanner: Enrolled, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two updates published with the command line: the repository then has several versions of each role."""
    folder = tmp_path_factory.mktemp("files")
    (folder / "patterns-2026.12.05.tar").write_bytes(PATTERNS)
    (folder / "servicegate-0.2.0.run").write_bytes(SOFTWARE)
    portal.cli("publish", str(folder / "patterns-2026.12.05.tar"), "--kind", "virus-patterns", "--version",
               "2026.12.5", "--models", "CT-DEMO,MR-DEMO", "--notes", "New patterns.\nNo restart.")
    portal.cli("publish", str(folder / "servicegate-0.2.0.run"), "--kind", "software", "--version", "0.2.0",
               "--models", "CT-DEMO", "--software-versions", "0.1.0", "--restart", "--downtime",
               "--publisher", "Vendor Service Europe", "--offer-to", scanner.device.device_id)
    return ["virus-patterns/patterns-2026.12.05.tar", "software/servicegate-0.2.0.run"]


@pytest.fixture
def repository(portal: PortalProcess, published: list[str], tmp_path: Path) -> Iterator[Path]:
    """The portal's data folder, its TUF repository put back as it was after the test (attacks, publications)."""
    with tuf_repo.saved_state(portal.data_dir, tmp_path / "saved-tuf"):
        yield portal.data_dir


def updater(portal: PortalProcess, scanner: Enrolled, folder: Path) -> Updater:
    """python-tuf's client as the device uses it: trusting the root from the enrollment the first time, and what it
    verified since (kept in `folder`) afterwards. One refresh per Updater."""
    folder.mkdir(parents=True, exist_ok=True)
    first = not (folder / "root.json").exists()
    return Updater(metadata_dir=str(folder), metadata_base_url=f"{portal.url}/v1/tuf/metadata/",
                   target_base_url=f"{portal.url}/v1/tuf/targets/",
                   fetcher=SessionFetcher(session(portal, scanner.device)),
                   bootstrap=scanner.tuf_root.encode() if first else None)


def download(portal: PortalProcess, scanner: Enrolled, folder: Path, name: str) -> bytes:
    client = updater(portal, scanner, folder)
    client.refresh()
    info = client.get_targetinfo(name)
    assert info is not None, f"{name} is not in the signed targets metadata"
    out = folder.parent / f"{folder.name}-download"
    out.mkdir(exist_ok=True)
    path = client.download_target(info, str(out / name.replace("/", "_")))
    return Path(path).read_bytes()


def control(portal: PortalProcess, scanner: Enrolled, folder: Path, name: str = "software/servicegate-0.2.0.run",
            ) -> None:
    """The positive control: the device refreshes and downloads the target, the bytes published."""
    assert download(portal, scanner, folder, name) == (SOFTWARE if name.startswith("software/") else PATTERNS)


# --- the repository ------------------------------------------------------------------------------------------

def test_the_repository_is_made_with_the_data_folder_once(portal: PortalProcess) -> None:
    tuf = portal.data_dir / "tuf"
    for role in tuf_repo.ROLES:
        key = tuf / "keys" / f"{role}.pem"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in key.read_bytes()
    assert stat.S_IMODE((tuf / "keys").stat().st_mode) == 0o700
    first = (tuf / "metadata" / "1.root.json").read_bytes()
    root = Metadata.from_bytes(first).signed
    assert root.consistent_snapshot is True
    assert {name: (len(role.keyids), role.threshold) for name, role in root.roles.items()} == \
        {role: (1, 1) for role in tuf_repo.ROLES}
    assert len(root.keys) == 4
    assert {k.keytype for k in root.keys.values()} == {"ed25519"}
    now = datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=364) < root.expires - now <= datetime.timedelta(days=365)
    for role, days in (("targets", 90), ("snapshot", 7), ("timestamp", 1)):
        expires = tuf_repo.current(portal.data_dir, role).signed.expires
        assert datetime.timedelta(days=days) - datetime.timedelta(hours=1) < expires - now <= \
            datetime.timedelta(days=days), role
    assert (tuf / "metadata" / "root.json").read_bytes() == first
    keys = {p.name: p.read_bytes() for p in (tuf / "keys").iterdir()}
    Repository(portal.data_dir)  # again: nothing is made anew
    assert (tuf / "metadata" / "1.root.json").read_bytes() == first
    assert {p.name: p.read_bytes() for p in (tuf / "keys").iterdir()} == keys


def test_serve_signs_a_new_snapshot_and_timestamp_when_it_starts(tmp_path: Path) -> None:
    with PortalProcess(tmp_path) as first:
        versions = Repository(first.data_dir).versions()
        assert versions["snapshot"] == 2
        assert versions["timestamp"] == 2
        first.restart()
        assert Repository(first.data_dir).versions() == {**versions, "snapshot": 3, "timestamp": 3}


def test_the_enrollment_answer_carries_the_first_tuf_root(portal: PortalProcess, scanner: Enrolled) -> None:
    assert scanner.tuf_root == (portal.data_dir / "tuf" / "metadata" / "1.root.json").read_text()
    assert Metadata.from_bytes(scanner.tuf_root.encode()).signed.version == 1


def test_publish_makes_a_target_with_the_custom_metadata_and_offers_it(
        portal: PortalProcess, scanner: Enrolled, published: list[str]) -> None:
    listed = {t["name"]: t for t in json.loads(portal.cli("updates", "--json"))}
    assert list(listed) == sorted(published)
    assert listed["virus-patterns/patterns-2026.12.05.tar"]["custom"] == {
        "kind": "virus-patterns", "version": "2026.12.5", "models": ["CT-DEMO", "MR-DEMO"], "software_versions": [],
        "restart": False, "downtime": False, "notes": "New patterns.\nNo restart.", "publisher": "Vendor Service"}
    software = listed["software/servicegate-0.2.0.run"]
    assert software["custom"] == {
        "kind": "software", "version": "0.2.0", "models": ["CT-DEMO"], "software_versions": ["0.1.0"],
        "restart": True, "downtime": True, "notes": "", "publisher": "Vendor Service Europe"}
    targets = tuf_repo.current(portal.data_dir, "targets").signed.targets
    assert targets["software/servicegate-0.2.0.run"].custom == software["custom"]
    assert (software["length"], software["sha256"]) == (len(SOFTWARE), targets[published[1]].hashes["sha256"])
    assert tuf_repo.target_path(portal.data_dir, published[1]).read_bytes() == SOFTWARE
    assert tuf_repo.target_path(portal.data_dir, published[1]).name.startswith(software["sha256"] + ".")
    # The first went to every registered device, the second only where --offer-to said; the body names the target.
    offers = [m["body"] for m in portal.show(scanner.device.device_id)["messages"] if m["type"] == "update_offer"]
    assert offers == [{"target": name} for name in published]
    shown = portal.cli("updates")
    assert "virus-patterns 2026.12.5 for CT-DEMO, MR-DEMO" in shown
    assert "| No restart." in shown


def test_python_tuf_refreshes_and_downloads_every_target_over_mutual_tls(
        portal: PortalProcess, scanner: Enrolled, published: list[str], tmp_path: Path) -> None:
    client = updater(portal, scanner, tmp_path / "device")
    client.refresh()
    for name, content in zip(published, (PATTERNS, SOFTWARE), strict=True):
        info = client.get_targetinfo(name)
        assert info is not None
        assert info.custom["kind"] == name.split("/")[0]
        assert Path(client.download_target(info, str(tmp_path / name.replace("/", "_")))).read_bytes() == content


def test_without_a_client_certificate_the_repository_is_closed(portal: PortalProcess, published: list[str]) -> None:
    sha256 = tuf_repo.current(portal.data_dir, "targets").signed.targets[published[0]].hashes["sha256"]
    for path in ("/v1/tuf/metadata/timestamp.json", "/v1/tuf/metadata/1.root.json",
                 f"/v1/tuf/targets/virus-patterns/{sha256}.patterns-2026.12.05.tar"):
        answer = session(portal).get(f"{portal.url}{path}", timeout=10)
        assert answer.status_code == 401, path
        assert "client certificate" in answer.json()["detail"]
    assert session(portal).post(f"{portal.url}/v1/updates/report", timeout=10,
                                json={"target": published[0], "outcome": "installed"}).status_code == 401


def test_the_files_are_served_as_written_and_nothing_else(portal: PortalProcess, scanner: Enrolled,
                                                          published: list[str]) -> None:
    device = session(portal, scanner.device)
    metadata = portal.data_dir / "tuf" / "metadata"
    for name in ("1.root.json", "timestamp.json", "2.snapshot.json", "2.targets.json"):
        answer = device.get(f"{portal.url}/v1/tuf/metadata/{name}", timeout=10)
        assert answer.status_code == 200, name
        assert answer.content == (metadata / name).read_bytes(), name
        assert answer.headers["content-type"] == "application/json"
    newest_root = tuf_repo.latest_version(portal.data_dir, "root")
    for name in (f"{newest_root + 1}.root.json", "root.json", "snapshot.json", "1.timestamp.json", "99.targets.json",
                 "0.root.json", "..%2Fkeys%2Froot.pem", "..%2Fkeys"):
        answer = device.get(f"{portal.url}/v1/tuf/metadata/{name}", timeout=10)
        assert answer.status_code == 404, name
        assert "PRIVATE KEY" not in answer.text, name
        assert answer.json()["detail"], name
    path = tuf_repo.target_path(portal.data_dir, published[0]).relative_to(portal.data_dir / "tuf" / "targets")
    assert device.get(f"{portal.url}/v1/tuf/targets/{path}", timeout=10).content == PATTERNS
    for wrong in ("virus-patterns/patterns-2026.12.05.tar", f"virus-patterns/..%2F..%2Fkeys%2F{path.name}",
                  "..%2Fkeys%2Froot.pem", f"{path}/x"):
        answer = device.get(f"{portal.url}/v1/tuf/targets/{wrong}", timeout=10)
        assert answer.status_code == 404, wrong
        assert answer.json()["detail"].startswith("no target file"), wrong
    # `..` as it is sent (requests and urllib3 would resolve it before sending)
    for raw in (f"virus-patterns/../virus-patterns/{path.name}", "../keys/root.pem", "../../tuf/keys/root.pem"):
        status, text = raw_get(portal, scanner.device, f"/v1/tuf/targets/{raw}")
        assert status == 404, raw
        assert "PRIVATE KEY" not in text, raw


def raw_get(portal: PortalProcess, device: Device, path: str) -> tuple[int, str]:
    """GET `path` exactly as given (no dot segments resolved), with the device's certificate."""
    context = ssl.create_default_context(cafile=str(portal.ca_file))
    context.load_cert_chain(str(device.cert), str(device.key))
    connection = http.client.HTTPSConnection("127.0.0.1", portal.port, context=context, timeout=10)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize(("args", "says"), [
    (["--kind", "firmware", "--version", "1.0", "--models", "CT-DEMO"], "unknown kind 'firmware'"),
    (["--kind", "software", "--version", "1.0-beta", "--models", "CT-DEMO"], "version '1.0-beta'"),
    (["--kind", "software", "--version", "1.0", "--models", " , "], "no models"),
    (["--kind", "software", "--version", "1.0", "--models", "CT DEMO"], "model 'CT DEMO'"),
    (["--kind", "software", "--version", "1.0", "--models", "CT-DEMO", "--software-versions", "latest"],
     "software version 'latest'"),
    (["--kind", "software", "--version", "1.0", "--models", "CT-DEMO", "--offer-to", "ct-nowhere"],
     "no device ct-nowhere is registered"),
    (["--kind", "software", "--version", "1.0", "--models", "CT-DEMO", "--publisher", " "], "publisher"),
])
def test_bad_publish_input_is_refused_in_words_with_exit_2(
        portal: PortalProcess, repository: Path, tmp_path: Path, args: list[str], says: str) -> None:
    file = tmp_path / "new-1.0.run"
    file.write_bytes(b"new")
    before = Repository(repository).versions()
    result = portal.run("publish", str(file), *args)
    assert result.returncode == 2, result
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert Repository(repository).versions() == before


def test_a_missing_file_or_a_target_published_before_is_refused(portal: PortalProcess, repository: Path,
                                                                 tmp_path: Path) -> None:
    before = Repository(repository).versions()
    missing = portal.run("publish", str(tmp_path / "nowhere.tar"), "--kind", "virus-patterns", "--version", "1.0",
                         "--models", "CT-DEMO")
    assert missing.returncode == 2
    assert "no such file to publish" in missing.stderr
    (tmp_path / "patterns-2026.12.05.tar").write_bytes(b"other patterns")
    again = portal.run("publish", str(tmp_path / "patterns-2026.12.05.tar"), "--kind", "virus-patterns",
                       "--version", "2026.12.6", "--models", "CT-DEMO")
    assert again.returncode == 2
    assert "is already published (version 2026.12.5)" in again.stderr
    (tmp_path / "patterns-2026.12.05b.tar").write_bytes(b"other patterns")
    same_version = portal.run("publish", str(tmp_path / "patterns-2026.12.05b.tar"), "--kind", "virus-patterns",
                              "--version", "2026.12.5", "--models", "MR-DEMO")
    assert same_version.returncode == 2
    assert "virus-patterns 2026.12.5 for MR-DEMO is already published as virus-patterns/patterns-2026.12.05.tar" \
        in same_version.stderr
    assert Repository(repository).versions() == before


def test_tuf_refresh_signs_a_new_timestamp_which_the_device_takes(
        portal: PortalProcess, scanner: Enrolled, repository: Path, tmp_path: Path) -> None:
    control(portal, scanner, tmp_path / "device")
    before = Repository(repository).versions()
    assert portal.cli("tuf", "refresh").strip() == f"signed timestamp v{before['timestamp'] + 1}"
    assert Repository(repository).versions() == {**before, "timestamp": before["timestamp"] + 1}
    client = updater(portal, scanner, tmp_path / "device")
    client.refresh()
    assert Metadata.from_file(str(tmp_path / "device" / "timestamp.json")).signed.version == before["timestamp"] + 1


def test_refresh_renews_whatever_is_close_to_its_expiry(repository: Path) -> None:
    before = Repository(repository).versions()
    later = Repository(repository, now=lambda: datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=320))
    signed = later.refresh(force=())  # root (365 days) and targets (90), so snapshot and timestamp too
    assert signed == {role: before[role] + 1 for role in tuf_repo.ROLES}
    assert later.refresh(force=()) == {}
    root = tuf_repo.current(repository, "root")
    assert root.signed.expires - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=680)
    assert (repository / "tuf" / "metadata" / "root.json").read_bytes() == \
        (repository / "tuf" / "metadata" / f"{before['root'] + 1}.root.json").read_bytes()


def test_a_device_follows_a_new_root(portal: PortalProcess, scanner: Enrolled, repository: Path,
                                     tmp_path: Path) -> None:
    control(portal, scanner, tmp_path / "device")
    Repository(repository).refresh(force=("root",))
    control(portal, scanner, tmp_path / "device")
    assert Metadata.from_file(str(tmp_path / "device" / "root.json")).signed.version == 2


def test_the_devices_report_what_they_did_once_per_outcome(portal: PortalProcess, scanner: Enrolled,
                                                           published: list[str]) -> None:
    device = session(portal, scanner.device)
    url = f"{portal.url}/v1/updates/report"
    for detail in ("approved by the technologist, installed", "installed (reported again)"):
        answer = device.post(url, timeout=10, json={"target": published[1], "version": "0.2.0",
                                                    "outcome": "installed", "detail": detail})
        assert answer.status_code == 200, answer.text
        assert answer.json()["outcome"] == "installed"
    assert device.post(url, timeout=10, json={"target": published[0], "version": "2026.12.5",
                                              "outcome": "postponed", "detail": "until 18:00"}).status_code == 200
    wrong = device.post(url, timeout=10, json={"target": published[0], "outcome": "exploded"})
    assert wrong.status_code == 400
    assert "outcome" in wrong.json()["detail"]
    shown = json.loads(portal.cli("updates", "--device", scanner.device.device_id, "--json"))
    assert [(r["target"], r["outcome"], r["detail"]) for r in shown["reports"]] == [
        (published[1], "installed", "installed (reported again)"), (published[0], "postponed", "until 18:00")]
    assert [o["target"] for o in shown["offers"]] == published
    assert "postponed" in portal.cli("updates", "--device", scanner.device.device_id)
    assert [(r["target"], r["outcome"]) for r in portal.show(scanner.device.device_id)["update_reports"]] == \
        [(published[1], "installed"), (published[0], "postponed")]
    events = [e["event"] for e in Store(portal.data_dir / "portal.sqlite").events(scanner.device.device_id)]
    assert events.count("update_installed") == 2
    assert "update_postponed" in events


# --- the attacks: each refused by python-tuf, beside its positive control --------------------------------------

@pytest.mark.parametrize("role", tuf_repo.ROLES)
def test_metadata_signed_with_a_wrong_key_is_refused(portal: PortalProcess, scanner: Enrolled, repository: Path,
                                                     tmp_path: Path, role: str) -> None:
    control(portal, scanner, tmp_path / "device")
    tuf_repo.sign_with_wrong_key(repository, role)
    for device in ("device", "new-device"):  # one that trusts the current state, one that starts from the first root
        with pytest.raises(exceptions.UnsignedMetadataError):
            updater(portal, scanner, tmp_path / device).refresh()


@pytest.mark.parametrize("role", tuf_repo.ROLES)
def test_metadata_without_signatures_is_refused(portal: PortalProcess, scanner: Enrolled, repository: Path,
                                                tmp_path: Path, role: str) -> None:
    control(portal, scanner, tmp_path / "device")
    tuf_repo.remove_signatures(repository, role)
    for device in ("device", "new-device"):  # one that trusts the current state, one that starts from the first root
        with pytest.raises(exceptions.UnsignedMetadataError):
            updater(portal, scanner, tmp_path / device).refresh()


def test_a_target_with_other_bytes_is_refused(portal: PortalProcess, scanner: Enrolled, repository: Path,
                                              tmp_path: Path, published: list[str]) -> None:
    control(portal, scanner, tmp_path / "device", published[0])
    changed = tuf_repo.tamper_target_bytes(repository, published[0])
    assert len(changed.read_bytes()) == len(PATTERNS)
    assert changed.read_bytes() != PATTERNS
    with pytest.raises(exceptions.LengthOrHashMismatchError):
        download(portal, scanner, tmp_path / "device", published[0])


def test_a_target_with_bytes_appended_is_refused(portal: PortalProcess, scanner: Enrolled, repository: Path,
                                                 tmp_path: Path, published: list[str]) -> None:
    control(portal, scanner, tmp_path / "device", published[0])
    tuf_repo.extend_target(repository, published[0])
    with pytest.raises(exceptions.DownloadLengthMismatchError):
        download(portal, scanner, tmp_path / "device", published[0])


def test_an_expired_timestamp_is_refused(portal: PortalProcess, scanner: Enrolled, repository: Path,
                                         tmp_path: Path) -> None:
    control(portal, scanner, tmp_path / "device")
    tuf_repo.expire_timestamp(repository)
    for device in ("device", "new-device"):
        with pytest.raises(exceptions.ExpiredMetadataError):
            updater(portal, scanner, tmp_path / device).refresh()


def test_a_snapshot_rolled_back_is_refused(portal: PortalProcess, scanner: Enrolled, repository: Path,
                                           tmp_path: Path) -> None:
    control(portal, scanner, tmp_path / "device")
    seen = tuf_repo.latest_version(repository, "snapshot")
    assert tuf_repo.rollback_snapshot(repository) == seen - 1
    with pytest.raises(exceptions.BadVersionNumberError, match=f"snapshot version must be >= {seen}"):
        updater(portal, scanner, tmp_path / "device").refresh()


def test_a_snapshot_from_another_state_is_refused(portal: PortalProcess, scanner: Enrolled, repository: Path,
                                                  tmp_path: Path) -> None:
    control(portal, scanner, tmp_path / "device")
    named = tuf_repo.mix_and_match(repository)
    with pytest.raises(exceptions.BadVersionNumberError, match="targets.json"):  # the targets it lists are older
        updater(portal, scanner, tmp_path / "device").refresh()
    with pytest.raises(exceptions.BadVersionNumberError, match=f"Expected snapshot version {named}"):
        updater(portal, scanner, tmp_path / "new-device").refresh()


def test_a_file_put_beside_the_targets_is_not_a_target(portal: PortalProcess, scanner: Enrolled, repository: Path,
                                                        tmp_path: Path) -> None:
    control(portal, scanner, tmp_path / "device")
    (tmp_path / "servicegate-9.9.9.run").write_bytes(b"#!/bin/sh\nrm -rf /\n")
    name = tuf_repo.unsigned_target(repository, tmp_path / "servicegate-9.9.9.run")
    served = [p for p in (repository / "tuf" / "targets" / "software").iterdir() if p.name.endswith("9.9.9.run")]
    answer = session(portal, scanner.device).get(f"{portal.url}/v1/tuf/targets/software/{served[0].name}", timeout=10)
    assert answer.status_code == 200  # the portal serves it ...
    client = updater(portal, scanner, tmp_path / "device")
    client.refresh()
    assert client.get_targetinfo(name) is None  # ... but no signed metadata names it
    assert client.get_targetinfo("software/servicegate-0.2.0.run") is not None


def test_the_helpers_leave_the_repository_as_it_was(portal: PortalProcess, scanner: Enrolled, published: list[str],
                                                    tmp_path: Path) -> None:
    """After the attacks above (each in `saved_state`), the repository is whole again."""
    control(portal, scanner, tmp_path / "device")
    assert {name for name in os.listdir(portal.data_dir / "tuf") if not name.startswith(".")} == \
        {"keys", "metadata", "targets"}



def test_a_running_portal_re_signs_what_is_close_to_its_expiry(tmp_path: Path) -> None:
    """`keep_fresh`, which `serve` runs: nothing before it is due, then the timestamp (with 12 hours or less left)."""
    now = datetime.datetime.now(datetime.UTC)
    Repository(tmp_path)
    clock = [now]
    repository = Repository(tmp_path, now=lambda: clock[0])

    async def run_for(seconds: float) -> None:
        refresher = asyncio.create_task(keep_fresh(repository, every_s=0.01))
        await asyncio.sleep(seconds)
        refresher.cancel()

    asyncio.run(run_for(0.2))
    assert repository.versions()["timestamp"] == 1
    clock[0] = now + datetime.timedelta(hours=13)
    asyncio.run(run_for(0.2))
    assert repository.versions() == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 2}
