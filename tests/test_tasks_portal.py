"""Service tasks from the engineer's side, end to end with real processes on loopback: the engineer asks through the
portal, the device decides and runs, the result and the files the technologist releases come back through the
outbox; a refused task is explained to the engineer; the kill switch works with the portal gone, and the portal
learns of it when it is back.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from portal.uploads import uploads_of
from tests.agent_process import AgentProcess
from tests.portal_process import PortalProcess
from tests.test_connection import FAST_TELEMETRY, audit_events, device, enroll, wait_for

DEVICE_ID = "ct-3001"


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    folder = tmp_path / "service-files"
    folder.mkdir()
    (folder / "detector-map.bin").write_bytes(bytes(range(256)) * 64)
    (folder / "last-exam.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm", download=False) or "").read_bytes())
    (folder / "scanner.log").write_text("12:01 Patient DOE^JANE (ID 12345678) registered\n12:02 gantry ok\n")
    return folder


@pytest.fixture
def agent(portal: PortalProcess, allowed: Path, tmp_path: Path) -> Iterator[AgentProcess]:
    process = device(tmp_path, "c" * 32, FAST_TELEMETRY + f'[tasks]\nallowed_dirs = ["{allowed}"]\n')
    assert enroll(process, portal, DEVICE_ID).returncode == 0
    process.start()
    yield process
    process.stop()


def active_session(portal: PortalProcess, agent: AgentProcess, device_id: str = DEVICE_ID, *, level: str = "full",
                   kind: str = "service", engineer: tuple[str, str] = ("E-77", "Robin Field"),
                   reason: str = "detector map check") -> str:
    """A session the engineer opens at the portal, the technologist claims at the console (with the disclaimer, at
    `level`) and the engineer makes active with the one-time password: its ID."""
    out = portal.cli("engineer", "open-session", "--device", device_id, "--engineer-id", engineer[0], "--name",
                     engineer[1], "--company", "Acme Medical Service", "--reason", reason, "--level", level, "--kind",
                     kind)
    session_id = out.splitlines()[0]
    claimed = agent.cli("session", "claim", session_id, "--level", level, "--accept-disclaimer")
    assert claimed.returncode == 0, claimed.stderr
    code = portal.cli("engineer", "totp", "--device", device_id).strip()
    done = portal.run("engineer", "authenticate", "--session", session_id, "--code", code)
    assert done.returncode == 0, done.stdout + done.stderr
    return session_id


def test_a_fetched_file_waits_in_quarantine_until_the_technologist_releases_it(
        portal: PortalProcess, agent: AgentProcess, allowed: Path, tmp_path: Path) -> None:
    session_id = active_session(portal, agent)
    asked = portal.run("engineer", "run-task", "--session", session_id, "--kind", "fetch-file", "--param",
                       f"path={allowed / 'detector-map.bin'}", "--wait", "60")
    assert asked.returncode == 0, asked.stdout + asked.stderr
    task_id = asked.stdout.splitlines()[0]
    [run] = [t for t in portal.show(DEVICE_ID)["tasks"] if t["id"] == task_id]
    assert run["state"] == "completed"
    assert [(f["name"], f["handling"]) for f in run["files"]] == [
        ("detector-map.bin", "quarantined until the technologist releases it")]
    out = tmp_path / "at-the-portal.bin"
    early = portal.run("engineer", "task-file", "--session", session_id, "--task", task_id, "--name",
                       "detector-map.bin", "--out", str(out))
    assert early.returncode != 0
    assert "no released file" in early.stderr  # nothing left the device yet

    refused = agent.cli("task", "release", task_id)  # no terminal, no --accept-disclaimer: nothing is sent
    assert refused.returncode == 2
    assert "disclaimer" in refused.stderr
    released = agent.cli("task", "release", task_id, "--accept-disclaimer")
    assert released.returncode == 0, released.stderr
    wait_for("the released file at the portal", lambda: portal.run(
        "engineer", "task-file", "--session", session_id, "--task", task_id, "--name", "detector-map.bin", "--out",
        str(out)).returncode == 0)
    assert out.read_bytes() == (allowed / "detector-map.bin").read_bytes()
    [record] = [e for e in audit_events(agent) if e["event"] == "task_file_released"]
    assert (record["details"]["file"], record["details"]["engineer_id"]) == ("detector-map.bin", "E-77")
    assert record["details"]["disclaimer_accepted"] is True


def test_the_engineer_learns_why_a_task_was_refused(portal: PortalProcess, agent: AgentProcess) -> None:
    session_id = active_session(portal, agent)
    outside = portal.run("engineer", "run-task", "--session", session_id, "--kind", "fetch-file", "--param",
                         "path=/etc/shadow", "--wait", "30")
    assert outside.returncode == 1
    assert "outside the folders a task may read" in outside.stdout
    refused = [e["details"] for e in audit_events(agent) if e["event"] == "task_refused"]
    assert [(r["kind"], r["engineer_id"]) for r in refused] == [("fetch-file", "E-77")]


def test_the_kill_switch_works_without_the_portal_which_learns_of_it_when_back(
        portal: PortalProcess, agent: AgentProcess) -> None:
    session_id = active_session(portal, agent)
    portal.stop()
    killed = agent.cli("kill", "--reason", "portal down, patient waiting", "--json")
    assert killed.returncode == 0, killed.stderr
    assert json.loads(killed.stdout)["ended_sessions"] == [session_id]
    assert agent.cli_json("access", "show")["level"] == "no-access"
    portal.start()
    at_portal = wait_for("the session's end at the portal", lambda: next(
        (s for s in portal.show(DEVICE_ID)["sessions"] if s["session_id"] == session_id and s["state"] == "ended"),
        None))
    assert at_portal["end_reason"] == "killed"


def test_the_portal_learns_of_a_session_ended_by_a_crash_of_the_agent(portal: PortalProcess,
                                                                      agent: AgentProcess) -> None:
    session_id = active_session(portal, agent)
    agent.stop(signal.SIGKILL)
    agent.start()
    at_portal = wait_for("the session's end at the portal", lambda: next(
        (s for s in portal.show(DEVICE_ID)["sessions"] if s["session_id"] == session_id and s["state"] == "ended"),
        None))
    assert at_portal["end_reason"] == "agent_restart"


def test_what_a_task_fetched_is_handled_by_what_it_is(portal: PortalProcess, agent: AgentProcess,
                                                      allowed: Path) -> None:
    session_id = active_session(portal, agent)
    runs = {}
    for name in ("last-exam.dcm", "scanner.log"):
        asked = portal.run("engineer", "run-task", "--session", session_id, "--kind", "fetch-file", "--param",
                           f"path={allowed / name}", "--wait", "60")
        assert asked.returncode == 0, asked.stdout + asked.stderr
        runs[name] = next(t for t in portal.show(DEVICE_ID)["tasks"] if t["id"] == asked.stdout.splitlines()[0])
    [dicom] = runs["last-exam.dcm"]["files"]
    assert dicom["handling"] == "de-identified, queued for upload"  # never sent raw, not even after a release
    uploaded = wait_for("the de-identified image at the portal", lambda: [
        u for u in uploads_of(portal.data_dir, DEVICE_ID) if u["state"] == "accepted"])
    assert [u["name"] for u in uploaded] == [dicom["name"]]
    assert b"CompressedSamples" not in Path(uploaded[0]["path"]).read_bytes()  # the sample's patient name
    [log] = runs["scanner.log"]["files"]
    assert log["handling"] == "scrubbed, sent"
    assert "gantry ok" in log["text"]
    assert "DOE" not in log["text"]
    assert "12345678" not in log["text"]
