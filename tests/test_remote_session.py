"""A remote session end to end with real processes on loopback: the engineer opens it at the portal, the technologist
claims it by its ID and confirms it with the privacy disclaimer, the engineer's one-time password makes it active,
the engineer ends it with a summary; the audit log names the engineer at every step.
"""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from portal.store import CLAIM_MAX_FAILURES
from portal.uploads import uploads_of
from tests.agent_process import AgentProcess
from tests.dicom_corpus import find_values, planted_series
from tests.portal_process import PortalProcess
from tests.smtp_relay import Inbox, free_port, server_tls, start_relay
from tests.test_connection import FAST_TELEMETRY, audit_events, device, enroll, wait_for

DEVICE_ID = "ct-2001"
ENGINEER = ["--engineer-id", "E-4711", "--name", "Dana Scully", "--company", "Acme Medical Service"]


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path]]:
    """The site's SMTP relay: STARTTLS with a certificate from the site's CA."""
    context, ca_file = server_tls(tmp_path / "relay-pki")
    inbox, port = Inbox(), free_port()
    controller = start_relay(inbox, port, context)
    yield inbox, port, ca_file
    controller.stop()


@pytest.fixture
def agent(portal: PortalProcess, relay: tuple[Inbox, int, Path], tmp_path: Path) -> Iterator[AgentProcess]:
    _, port, ca_file = relay
    notify = (f'[notify]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nca_file = "{ca_file}"\n'
              f'technical_staff = ["biomed@hospital.example"]\nclinical_staff = ["lead-tech@hospital.example"]\n')
    process = device(tmp_path, "a" * 32, FAST_TELEMETRY + notify)
    assert enroll(process, portal, DEVICE_ID).returncode == 0
    process.start()
    yield process
    process.stop()


def open_session(portal: PortalProcess, *extra: str, level: str = "full") -> str:
    out = portal.cli("engineer", "open-session", "--device", DEVICE_ID, *ENGINEER, "--reason", "gantry error 4711",
                     "--level", level, "--kind", "service", *extra)
    session_id = out.splitlines()[0]
    assert re.fullmatch(r"[0-9]{8}", session_id), out
    return session_id


def portal_session(portal: PortalProcess, session_id: str) -> dict[str, Any]:
    return next(s for s in portal.show(DEVICE_ID)["sessions"] if s["session_id"] == session_id)


def test_open_claim_confirm_authenticate_upload_end_with_summary(portal: PortalProcess, agent: AgentProcess,
                                                                 relay: tuple[Inbox, int, Path], tmp_path: Path
                                                                 ) -> None:
    session_id = open_session(portal)
    claim = agent.cli("session", "claim", f"{session_id[:4]} {session_id[4:]}", "--level", "limited",
                      "--accept-disclaimer")
    assert claim.returncode == 0, claim.stderr
    for shown in ("Dana Scully", "E-4711", "Acme Medical Service", "gantry error 4711", "full",
                  "could potentially view patient data"):
        assert shown in claim.stdout
    [session] = agent.cli_json("session", "list")
    assert (session["id"], session["state"], session["effective_level"]) == (session_id, "authenticating", "limited")

    code = portal.cli("engineer", "totp", "--device", DEVICE_ID).strip()
    authenticated = portal.run("engineer", "authenticate", "--session", session_id, "--code", code)
    assert authenticated.returncode == 0, authenticated.stdout + authenticated.stderr
    assert f"session {session_id}: active" in authenticated.stdout
    assert agent.cli_json("status")["sessions"][0]["state"] == "active"
    assert agent.cli_json("status")["examinations_blocked"] is False  # the technologist granted limited only

    # During the session a study goes to the portal, de-identified: the portal's copies hold none of the planted values.
    (tmp_path / "study").mkdir()
    study, planted = planted_series(tmp_path / "study", 3)
    uploaded = agent.cli("upload", str(study[0].parent), "--case", "CASE-77", "--wait", "45")
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    arrived = uploads_of(portal.data_dir, DEVICE_ID)
    assert [(u["state"], u["session_id"], u["case_id"]) for u in arrived] == [("accepted", session_id, "CASE-77")] * 3
    for upload in arrived:
        data = Path(upload["path"]).read_bytes()
        assert find_values(data, planted.values) == set()
        assert pydicom.dcmread(Path(upload["path"])).PatientIdentityRemoved == "YES"

    replayed = portal.run("engineer", "authenticate", "--session", session_id, "--code", code, "--wait", "30")
    assert replayed.returncode == 1  # active already: the code is not taken
    assert "refused" in replayed.stdout

    ended = portal.run("engineer", "end-session", "--session", session_id, "--summary",
                       "replaced the gantry fan; test scan fine")
    assert ended.returncode == 0, ended.stdout + ended.stderr
    listed = agent.cli("session", "list").stdout
    assert "ended (completed)" in listed
    assert "Engineer's summary: replaced the gantry fan; test scan fine" in listed
    at_portal = portal_session(portal, session_id)
    assert (at_portal["state"], at_portal["end_reason"], at_portal["summary"]) == (
        "ended", "completed", "replaced the gantry fan; test scan fine")

    steps = [e for e in audit_events(agent) if e.get("details", {}).get("session_id") == session_id]
    assert [e["event"] for e in steps] == ["session_claimed", "session_awaiting_consent", "session_confirmed",
                                           "session_active", "upload_queued", "upload_accepted", "upload_accepted",
                                           "upload_accepted", "session_ended"]
    assert all(e["details"]["engineer_id"] == "E-4711" for e in steps)
    assert steps[-1]["details"]["text"] == "replaced the gantry fan; test scan fine"

    # Both notices reached the site's relay, over TLS, to technical and clinical staff.
    connected, disconnected = relay[0].wait_for(2)
    for mail in (connected, disconnected):
        assert mail.over_tls
        assert sorted(mail.recipients) == ["biomed@hospital.example", "lead-tech@hospital.example"]
        text = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        for fact in ("Dana Scully", "E-4711", "Acme Medical Service", "gantry error 4711", "limited", session_id):
            assert fact in text
    assert "connected" in str(connected.message["Subject"])
    assert "completed" in str(disconnected.message["Subject"])
    assert "replaced the gantry fan; test scan fine" in \
        disconnected.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_wrong_ids_are_refused_audited_and_rate_limited(portal: PortalProcess, agent: AgentProcess) -> None:
    malformed = agent.cli("session", "claim", "1234", "--accept-disclaimer")
    assert malformed.returncode == 2
    assert "8 digits" in malformed.stderr
    session_id = open_session(portal, level="limited")
    wrong = f"{(int(session_id) + 1) % 10**8:08d}"
    for _ in range(CLAIM_MAX_FAILURES):
        refused = agent.cli("session", "claim", wrong, "--accept-disclaimer")
        assert refused.returncode == 1
        assert "check the number with the engineer" in refused.stderr
    limited = agent.cli("session", "claim", session_id, "--accept-disclaimer")  # even the right one, for now
    assert limited.returncode == 1
    assert "too many wrong session IDs" in limited.stderr
    assert "Traceback" not in malformed.stderr + refused.stderr + limited.stderr
    assert agent.cli_json("session", "list") == []
    refusals = [e for e in audit_events(agent) if e["event"] == "session_claim_refused"]
    assert len(refusals) == CLAIM_MAX_FAILURES + 2
    assert {e["actor"] for e in refusals} == {getpass.getuser()}
    portal_log = [e["event"] for e in json.loads(portal.cli("events")) if e["device_id"] == DEVICE_ID]
    assert portal_log.count("session_claim_refused") == CLAIM_MAX_FAILURES + 1


def test_ten_wrong_codes_end_the_session_and_a_new_one_can_start(portal: PortalProcess, agent: AgentProcess) -> None:
    session_id = open_session(portal, level="limited")
    assert agent.cli("session", "claim", session_id, "--accept-disclaimer").returncode == 0
    right = portal.cli("engineer", "totp", "--device", DEVICE_ID).strip()
    wrong = f"{(int(right) + 500000) % 10**6:06d}"
    for _ in range(10):
        result = portal.run("engineer", "authenticate", "--session", session_id, "--code", wrong)
        assert result.returncode == 1
    at_portal = wait_for("the end at the portal", lambda: (s := portal_session(portal, session_id))["state"] ==
                         "ended" and s)
    assert (at_portal["end_reason"], at_portal["auth_failures"]) == ("auth_failed", 10)
    failures = [e for e in audit_events(agent) if e["event"] == "engineer_auth_failed"]
    assert [(e["actor"], e["details"]["failures"]) for e in failures] == [("E-4711", n) for n in range(1, 11)]
    # Only a new session from the portal can try again; with the right code it becomes active.
    again = open_session(portal, level="limited")
    assert agent.cli("session", "claim", again, "--accept-disclaimer").returncode == 0
    code = portal.cli("engineer", "totp", "--device", DEVICE_ID).strip()
    assert portal.run("engineer", "authenticate", "--session", again, "--code", code).returncode == 0


def test_under_a_standing_grant_the_portal_requests_directly_and_under_no_access_it_cannot(
        portal: PortalProcess, agent: AgentProcess) -> None:
    refused_id = open_session(portal, "--request", level="limited")
    wait_for("the refusal at the portal", lambda: portal_session(portal, refused_id)["note"].startswith("refused"))
    assert agent.cli_json("session", "list") == []
    assert agent.cli("access", "set", "permanent-limited").returncode == 0
    session_id = open_session(portal, "--request", level="limited")
    session = wait_for("the request", lambda: agent.cli_json("session", "list")[-1:])[0]
    assert (session["id"], session["state"], session["claimed"]) == (session_id, "authenticating", False)
    full_id = open_session(portal, "--request", level="full")  # blocks examinations: the console must agree
    full = wait_for("the full request", lambda: [s for s in agent.cli_json("session", "list") if s["id"] == full_id])
    assert full[0]["state"] == "awaiting_consent"
