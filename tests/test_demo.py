"""`make demo` is checked by what it leaves behind (the audit log), not by what it prints."""

from __future__ import annotations

import getpass
import json
import struct
import subprocess
import sys
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from agent.audit_verify import export, verify
from portal.store import Store
from portal.uploads import uploads_of
from tests.bundle_fixtures import CURRENT_VERSION

REPO = Path(__file__).resolve().parents[1]


def test_demo_walks_the_story_and_leaves_an_intact_audit_log(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    audit_dir = tmp_path / "state" / "audit"
    assert verify(audit_dir, tmp_path / "state" / "keys" / "audit-signing.pub").ok
    records = export(audit_dir, None, None)

    def details(event: str) -> list[dict[str, object]]:
        return [r["details"] for r in records if r["event"] == event]

    assert [d["level"] for d in details("access_set")] == ["limited", "no-access"]
    assert details("access_set")[0]["until"] is not None
    ended = {d["session_id"]: d["end_reason"] for d in details("session_ended")}
    assert sorted(ended.values()) == ["completed", "completed", "killed"]
    shared, confirmed = details("session_confirmed")
    assert [(d["engineer_name"], d["level"]) for d in (shared, confirmed)] == [
        ("Kim Applications", "limited"), ("Sam Sample", "full")]
    assert details("kill")[0]["ended_sessions"] == [confirmed["session_id"]]
    assert records[-1]["event"] == "agent_stopped"

    # the installer step: the bundle installed into a staging root, once (the second run changed nothing)
    staging = tmp_path / "staging"
    assert (staging / "opt" / "servicegate" / "current").readlink() == Path(f"releases/{CURRENT_VERSION}")
    release = staging / "opt" / "servicegate" / "releases" / CURRENT_VERSION
    shown = subprocess.run([str(release / "bin" / "servicegate"), "--version"], capture_output=True, text=True)
    assert shown.stdout.strip() == f"servicegate {CURRENT_VERSION}"
    assert "idle_timeout_min = 20" in (staging / "etc" / "servicegate" / "agent.toml").read_text()
    history = json.loads((staging / "etc" / "servicegate" / "install.json").read_text())["history"]
    assert [h["action"] for h in history] == ["install"]

    # the de-identification step: one output, verified, named by its new UIDs, without the patient's data
    outputs = list((tmp_path / "deidentified").rglob("*.dcm"))
    assert len(outputs) == 1
    original = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    result = pydicom.dcmread(outputs[0])
    assert result.PatientIdentityRemoved == "YES"
    assert str(original.PatientName) not in outputs[0].read_bytes().decode("latin-1")
    assert outputs[0].stem == result.SOPInstanceUID != original.SOPInstanceUID

    # the portal steps: enrolled, a session requested through its inbox (the agent records the portal as asking),
    # and telemetry over mutual TLS, each record once
    portal = Store(tmp_path / "portal" / "portal.sqlite")
    device = portal.device("CT-DEMO-01")
    assert device is not None
    assert device["binding"]
    assert [(m["type"], m["acknowledged"] is not None) for m in portal.messages("CT-DEMO-01")] == [
        ("session_request", True), ("session_authenticate", True), ("session_end", True),
        ("session_authenticate", True), ("task_request", True), ("session_end", True),
        ("session_authenticate", True), ("task_request", True), ("task_request", True), ("update_offer", True),
        ("task_request", True)]
    # the first session requested by the portal under the standing grant, the second claimed by its ID at the console;
    # both made active by the engineer's one-time password, relayed by the portal
    requested = [r for r in records if r["event"] == "session_requested"]
    assert [(r["actor"], r["details"]["engineer_name"]) for r in requested] == [("portal", "Dana Example")]
    claimed = [r for r in records if r["event"] == "session_claimed"]
    assert [r["details"]["engineer_name"] for r in claimed] == ["Kim Applications", "Sam Sample"]
    assert claimed[1]["details"]["session_id"] == confirmed["session_id"]
    active = [r for r in records if r["event"] == "session_active"]
    assert [(r["actor"], r["details"]["authentication"]) for r in active] == [
        ("E-1001", "totp"), ("E-3003", "totp"), ("E-2002", "totp")]
    completed = [d for d in details("session_ended") if d["end_reason"] == "completed"]
    assert completed[0]["text"] == "error log collected; fan replacement ordered"
    sessions = {s["session_id"]: s for s in portal.sessions("CT-DEMO-01")}
    assert sessions[requested[0]["details"]["session_id"]]["summary"] == completed[0]["text"]
    # the service request before it: a case at the portal with a system report; the engineer's session is for it
    [case] = portal.cases("CT-DEMO-01")
    assert (case["urgency"], case["text"]) == ("normal", "gantry error 4711 after the morning warm-up")
    assert case["report"]
    [asked] = details("service_requested")
    assert (asked["state"], asked["case_id"]) == ("sent", case["case_id"])
    assert sessions[requested[0]["details"]["session_id"]]["case_id"] == case["case_id"]
    assert requested[0]["details"]["case_id"] == case["case_id"]
    assert [r["details"]["outcome"] for r in records if r["event"] == "enrollment"] == ["enrolled"]
    # the de-identified upload during the claimed session: accepted by the portal's own check, no patient name in it
    [upload] = [u for u in uploads_of(tmp_path / "portal", "CT-DEMO-01") if u["case_id"] == "CASE-4711"]
    assert (upload["state"], upload["case_id"], upload["session_id"]) == ("accepted", "CASE-4711",
                                                                          claimed[1]["details"]["session_id"])
    assert str(original.PatientName).encode() not in Path(upload["path"]).read_bytes()
    assert {r["details"]["engineer_id"] for r in records if r["event"] == "upload_accepted"} == {"E-2002"}
    # the service tasks in the FULL session (the simulated modality as the scanner): diagnostics completed, a study
    # fetched and uploaded de-identified, and a long diagnostics run stopped by the kill switch, its restore run, the
    # examination block held during the session and released by the kill
    sid = str(claimed[1]["details"]["session_id"])
    tasks = {t["kind"] + ":" + t["params"].get("suite", ""): t for t in portal.tasks("CT-DEMO-01", sid)}
    assert tasks["run-diagnostics:quick"]["state"] == "completed"
    assert "ok" in tasks["run-diagnostics:quick"]["stdout"]
    assert (tasks["run-diagnostics:full"]["state"], tasks["run-diagnostics:full"]["stop_reason"]) == ("stopped",
                                                                                                       "killed")
    fetched = tasks["fetch-study:"]
    assert fetched["state"] == "completed"
    fetched_names = {f["name"] for f in fetched["files"]}
    accepted = {u["name"]: u for u in uploads_of(tmp_path / "portal", "CT-DEMO-01") if u["state"] == "accepted"}
    assert fetched_names
    assert fetched_names <= set(accepted)
    from portal import sim_modality

    modality = sim_modality.read_state(tmp_path / "modality")
    planted = [s["patient_name"] for s in modality["studies"]]
    assert all(name.encode() not in Path(accepted[n]["path"]).read_bytes() for n in fetched_names for name in planted)
    assert [r["what"] for r in modality["restores"]] == ["diagnostics"]
    assert modality["blocked"] is False
    kill = details("kill")[0]
    assert (kill["stopped_tasks"], kill["remaining_pids"], kill["block_released"]) == (
        [tasks["run-diagnostics:full"]["id"]], [], True)
    assert [r["event"] for r in records if r["event"].startswith("examination_block_")][:2] == [
        "examination_block_released", "examination_block_held"]  # at start (whatever was held), then the session
    # the consent UI (offscreen here): the banner appeared for the FULL session, and its receipt after the kill
    for picture in (f"banner-{sid}-0.png", f"receipt-{sid}.png"):
        data = (tmp_path / "screenshots" / picture).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(data) > 1000
    kinds = [r["kind"] for r in portal.records("CT-DEMO-01")]
    assert "metric" in kinds
    assert "alert" in kinds
    alerts = portal.records("CT-DEMO-01", "alert")
    assert alerts[0]["items"][0]["servicegate.rule"] == "demo-uptime"

    # the update step: offered, verified, approved by the technologist, installed by the catalog's task
    approvals = [(r["actor"], r["details"]["version"]) for r in records if r["event"] == "update_approved"]
    assert approvals == [(getpass.getuser(), "2026.12.5")]
    assert [r["details"]["version"] for r in records if r["event"] == "update_installed"] == ["2026.12.5"]
    installed = tmp_path / "virus-patterns" / "current" / "patterns-2026.12.05.dat"
    assert installed.read_bytes() == b"demo virus signatures 2026.12.05\n" * 1000
    assert [(r["target"], r["outcome"]) for r in portal.update_reports("CT-DEMO-01")] == [
        ("virus-patterns/patterns-2026.12.05.dat", "installed")]

    # the screen-sharing step: an application-support session at LIMITED access, the share confirmed at the console,
    # view-only (control impossible at that level), relayed through the portal to the specialist's viewer, who saw
    # the console's screen; ended when the viewer closed
    [started] = details("screen_share_started")
    [ended_share] = details("screen_share_ended")
    assert started["session_id"] == shared["session_id"] == ended_share["session_id"]
    assert (started["engineer_id"], started["control"], started["control_possible"]) == ("E-3003", False, False)
    assert ended_share["reason"] == "the engineer's viewer disconnected"
    assert int(str(ended_share["bytes_to_portal"])) > 1280 * 800  # at least a whole screen went out
    [viewed] = portal.screens(device_id="CT-DEMO-01", session_id=str(shared["session_id"]))
    assert viewed["state"] == "ended"
    assert viewed["bytes_to_viewer"] == ended_share["bytes_to_portal"]
    seen = (tmp_path / "screenshots" / "engineer-view.png").read_bytes()
    assert seen.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", seen[16:24]) == (1280, 800)  # the console's whole screen, as the specialist saw it
