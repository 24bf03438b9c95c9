"""`agent.upload` against the real reference portal (`servicegate-portal serve` in its own process) with a device
enrolled over mutual TLS: planted DICOM studies de-identified, queued and uploaded in chunks; a refused file kept
on the device; the portal killed in the middle of a file and the upload resumed by a new uploader after the
restart; a damaged chunk; a file that fails the portal's own check; another device's upload.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmwrite

from agent.config import Config
from agent.enroll import enroll
from agent.uplink import LinkError, Uplink, connect
from agent.upload import Queue, Uploader, prepare
from portal.uploads import uploads_of
from tests.dicom_corpus import Planted, find_values, planted_dataset, planted_series, write_planted_file
from tests.portal_process import PortalProcess
from tests.test_uplink import device_config


def link(config: Config) -> Uplink:
    uplink, state = connect(config)
    assert uplink is not None, state
    return uplink


def enrolled(portal: PortalProcess, root: Path, device_id: str, machine_id: str = "a" * 32) -> tuple[Config, Uplink]:
    """A device enrolled with the portal, and its pinned mutual-TLS link (as the agent builds it)."""
    config = device_config(root, machine_id, request_timeout_s=10)
    enroll(config, portal.url, portal.ca_fingerprint, portal.add_device(device_id), device_id)
    return config, link(config)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def portal_bytes(portal: PortalProcess) -> bytes:
    """Everything the portal keeps on disk (its databases, parts and accepted files), for a search."""
    return b"".join(p.read_bytes() for p in sorted(portal.data_dir.rglob("*")) if p.is_file())


def local_copies(entries: list[dict[str, Any]]) -> dict[str, bytes]:
    """The de-identified files waiting in the queue, by SHA-256 (the uploader deletes them once sent)."""
    copies = {e["sha256"]: Path(e["path"]).read_bytes() for e in entries}
    assert {sha256(data) for data in copies.values()} == set(copies)
    return copies


def test_a_study_arrives_de_identified_byte_for_byte_and_the_local_copies_go(portal: PortalProcess,
                                                                            tmp_path: Path) -> None:
    config, uplink = enrolled(portal, tmp_path / "device", "ct-3001")
    state = config.paths.state_dir
    (tmp_path / "study").mkdir()
    inputs, planted = planted_series(tmp_path / "study", 4, seed=21)  # file names carry the patient's name
    report = prepare([tmp_path / "study"], state, tmp_path / "site.key", case_id="CASE-77", session_id="12345678")
    assert (report.total, report.accepted, report.refused) == (4, 4, [])
    copies = local_copies(report.queued)
    assert not find_values(json.dumps(report.queued).encode(), planted.values)
    assert not find_values((state / "uploads" / "queue.json").read_bytes(), planted.values)

    uploader = Uploader(uplink.call, state, chunk_bytes=4096)
    assert uploader.run_once() == 4
    assert uploader.run_once() == 0  # nothing left to do

    arrived = uploads_of(portal.data_dir, "ct-3001")
    assert len(arrived) == 4
    assert {u["sha256"] for u in arrived} == set(copies)
    for upload in arrived:
        assert (upload["state"], upload["problems"], upload["case_id"], upload["session_id"]) == \
            ("accepted", [], "CASE-77", "12345678")
        data = upload["path"].read_bytes()
        assert data == copies[upload["sha256"]]  # byte for byte what the anonymizer verified
        assert not find_values(data, planted.values)
        assert not find_values(upload["name"].encode(), planted.values)
    assert not find_values(portal_bytes(portal), planted.values)
    assert [e["state"] for e in uploader.list()] == ["accepted"] * 4
    assert not [p for p in (state / "uploads").rglob("*.dcm")]  # the local de-identified copies are gone
    assert all(path.exists() for path in inputs)  # the scanner's own files are never touched
    events = json.loads(portal.cli("events"))
    assert [e["device_id"] for e in events if e["event"] == "upload_accepted"] == ["ct-3001"] * 4


def test_a_file_the_anonymizer_refuses_stays_quarantined_on_the_device_and_never_reaches_the_portal(
        portal: PortalProcess, tmp_path: Path) -> None:
    config, uplink = enrolled(portal, tmp_path / "device", "ct-3002")
    state = config.paths.state_dir
    study = tmp_path / "study"
    study.mkdir()
    good = write_planted_file(study / "Quixote_good.dcm", seed=31)
    ultrasound, refused_planted = planted_dataset(seed=32)
    ultrasound.Modality = "US"  # an ultrasound image without Burned In Annotation: may carry burned-in text
    refused_file = study / "Vandersloot_us.dcm"
    dcmwrite(refused_file, ultrasound, enforce_file_format=True)

    report = prepare([study], state, tmp_path / "site.key")
    assert (report.total, report.accepted) == (2, 1)
    assert [(r.path, "burned-in" in r.reason) for r in report.refused] == [(refused_file, True)]
    assert not find_values(report.refused[0].reason.encode(), refused_planted.values)  # a reason holds no value
    records = list(report.quarantine_dir.glob("*.json"))
    assert len(records) == 1
    assert report.quarantine_dir == state / "uploads" / "quarantine"
    assert [e["path"] for e in Queue(state).entries()] == [report.queued[0]["path"]]  # only the good one

    assert Uploader(uplink.call, state).run_once() == 1
    arrived = uploads_of(portal.data_dir, "ct-3002")
    assert [u["state"] for u in arrived] == ["accepted"]
    assert arrived[0]["sha256"] != sha256(refused_file.read_bytes())
    assert not find_values(portal_bytes(portal), refused_planted.values | good.values)
    assert refused_file.exists()  # both stay on the device
    assert records[0].exists()


def test_the_portal_killed_mid_file_the_upload_resumes_after_restarts_and_arrives_whole_and_once(
        portal: PortalProcess, tmp_path: Path) -> None:
    config, uplink = enrolled(portal, tmp_path / "device", "ct-3003")
    state = config.paths.state_dir
    (tmp_path / "study").mkdir()
    planted = write_planted_file(tmp_path / "study" / "Szczepanski.dcm", seed=41, rows=128, columns=128)
    report = prepare([tmp_path / "study"], state, tmp_path / "site.key")
    [entry] = report.queued
    copy = local_copies(report.queued)[entry["sha256"]]
    chunk = 4096
    assert entry["size"] > 4 * chunk  # many chunks

    stored: list[int] = []

    def kill_after_the_first_chunk(upload_id: str, offset: int) -> None:
        stored.append(offset)
        if len(stored) == 1:
            assert portal.process is not None
            portal.process.kill()  # SIGKILL: no graceful shutdown
            portal.process.wait()

    with pytest.raises(LinkError, match="cannot reach the portal"):
        Uploader(uplink.call, state, chunk_bytes=chunk, on_chunk=kill_after_the_first_chunk).run_once()
    assert stored == [chunk]
    [waiting] = Queue(state).entries()
    assert (waiting["state"], waiting["sent"]) == ("uploading", chunk)
    assert waiting["upload_id"]
    uplink.stop()

    portal.restart()
    # As after an agent restart: a new link and a new uploader, with only the queue on disk.
    resumed: list[int] = []
    uploader = Uploader(link(config).call, state, chunk_bytes=chunk, on_chunk=lambda _, offset: resumed.append(offset))
    assert uploader.run_once() == 1
    assert resumed[0] == 2 * chunk  # it went on from the portal's offset, not from the start
    assert resumed[-1] == entry["size"]

    [arrived] = uploads_of(portal.data_dir, "ct-3003")  # once: one upload at the portal
    assert (arrived["upload_id"], arrived["state"], arrived["size"]) == (waiting["upload_id"], "accepted",
                                                                         entry["size"])
    data = arrived["path"].read_bytes()
    assert sha256(data) == arrived["sha256"] == entry["sha256"]
    assert data == copy
    assert not find_values(data, planted.values)
    assert list((arrived["path"].parent).iterdir()) == [arrived["path"]]
    assert not list(arrived["path"].parent.parent.glob("*.part"))
    assert [e["state"] for e in uploader.list()] == ["accepted"]


def test_chunks_are_taken_only_whole_and_in_order(portal: PortalProcess, tmp_path: Path) -> None:
    _, uplink = enrolled(portal, tmp_path / "device", "ct-3004")
    data = bytes(range(256)) * 40
    announced = {"name": "x.dcm", "size": len(data), "sha256": sha256(data)}
    answer = uplink.call("POST", "/v1/uploads", json=announced)
    assert (answer["received"], answer["state"], answer["problems"]) == (0, "receiving", [])
    upload = f"/v1/uploads/{answer['upload_id']}"
    # A device that lost the answer and announces again gets the same upload.
    assert uplink.call("POST", "/v1/uploads", json=announced)["upload_id"] == answer["upload_id"]

    def put(offset: int, chunk: bytes, digest: str | None = None) -> dict[str, Any]:
        return uplink.call("PUT", upload, params={"offset": offset}, data=chunk,
                           headers={"X-Chunk-SHA256": digest or sha256(chunk),
                                    "Content-Type": "application/octet-stream"})

    with pytest.raises(LinkError, match="does not match its X-Chunk-SHA256") as damaged:
        put(0, data[:1000], sha256(data[:999]))
    assert damaged.value.status == 400
    assert uplink.call("GET", upload)["received"] == 0  # nothing of it was kept
    assert put(0, data[:1000])["received"] == 1000
    with pytest.raises(LinkError, match="goes at offset 1000") as twice:
        put(0, data[:1000])  # the same chunk again (its answer was lost): not written twice
    assert twice.value.status == 409
    with pytest.raises(LinkError, match="1000 of 10240 bytes") as early:
        uplink.call("POST", f"{upload}/complete")
    assert early.value.status == 409
    with pytest.raises(LinkError, match="past the announced size") as long:
        put(1000, data[1000:] + b"more")
    assert long.value.status == 400
    with pytest.raises(LinkError, match="at most 8388608 bytes") as huge:
        put(1000, b"\0" * (8 * 1024 * 1024 + 1))
    assert huge.value.status == 413
    assert put(1000, data[1000:])["received"] == len(data)
    with pytest.raises(LinkError, match="without folders") as folders:
        uplink.call("POST", "/v1/uploads", json={**announced, "name": "../x.dcm"})
    assert folders.value.status == 400


def test_a_file_that_fails_the_portals_check_is_rejected_and_the_device_records_why(portal: PortalProcess,
                                                                                    tmp_path: Path) -> None:
    config, uplink = enrolled(portal, tmp_path / "device", "ct-3005")
    state = config.paths.state_dir
    # A file that was never de-identified, put into the queue behind the anonymizer's back.
    raw = state / "uploads" / "bypass" / "raw.dcm"
    raw.parent.mkdir(parents=True)
    planted: Planted = write_planted_file(raw, seed=51)
    with Queue(state).editing() as entries:
        entries.append({"entry_id": "bypass", "name": "raw.dcm", "size": raw.stat().st_size,
                        "sha256": sha256(raw.read_bytes()), "case_id": "", "session_id": "", "path": str(raw),
                        "state": "queued", "upload_id": None, "sent": 0, "problems": [], "queued_at": "",
                        "finished_at": None})

    uploader = Uploader(uplink.call, state, chunk_bytes=2048)
    assert uploader.run_once() == 1
    [entry] = uploader.list()
    assert entry["state"] == "rejected"
    assert entry["problems"]
    assert not raw.exists()  # the local copy is deleted once the outcome is known
    [rejected] = uploads_of(portal.data_dir, "ct-3005")
    assert (rejected["state"], rejected["path"], rejected["problems"]) == ("rejected", None, entry["problems"])
    assert not [p for p in (portal.data_dir / "uploads").rglob("*") if p.is_file()]  # nothing of it is kept
    [logged] = [e for e in json.loads(portal.cli("events")) if e["event"] == "upload_rejected"]
    assert logged["device_id"] == "ct-3005"
    assert all(problem in logged["detail"] for problem in entry["problems"])
    assert not find_values(json.dumps(entry["problems"]).encode(), planted.values)  # problems name no value


def test_another_device_cannot_see_or_touch_an_upload(portal: PortalProcess, tmp_path: Path) -> None:
    _, owner = enrolled(portal, tmp_path / "a", "ct-3006")
    _, other = enrolled(portal, tmp_path / "b", "ct-3007", machine_id="b" * 32)
    data = b"\x00" * 100
    upload_id = owner.call("POST", "/v1/uploads", json={"name": "y.dcm", "size": 100, "sha256": sha256(data)})[
        "upload_id"]
    assert owner.call("GET", f"/v1/uploads/{upload_id}")["upload_id"] == upload_id  # positive control
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/v1/uploads/{upload_id}", {}),
        ("PUT", f"/v1/uploads/{upload_id}", {"params": {"offset": 0}, "data": data,
                                             "headers": {"X-Chunk-SHA256": sha256(data)}}),
        ("POST", f"/v1/uploads/{upload_id}/complete", {})]
    for method, path, extra in calls:
        with pytest.raises(LinkError) as refused:
            other.call(method, path, **extra)
        assert refused.value.status == 404, method
    assert owner.call("GET", f"/v1/uploads/{upload_id}")["received"] == 0
    assert uploads_of(portal.data_dir, "ct-3007") == []


def test_a_lost_local_copy_is_recorded_as_failed_and_the_queue_goes_on(portal: PortalProcess,
                                                                       tmp_path: Path) -> None:
    config, uplink = enrolled(portal, tmp_path / "device", "ct-3008")
    state = config.paths.state_dir
    (tmp_path / "study").mkdir()
    planted_series(tmp_path / "study", 2, seed=61)
    report = prepare([tmp_path / "study"], state, tmp_path / "site.key")
    Path(report.queued[0]["path"]).unlink()
    uploader = Uploader(uplink.call, state)
    assert uploader.run_once() == 2
    assert [e["state"] for e in uploader.list()] == ["failed", "accepted"]
    assert "no longer on the device" in uploader.list()[0]["problems"][0]
