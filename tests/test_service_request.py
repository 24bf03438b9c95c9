"""Request service end to end with real processes on loopback: the technologist's description (a patient's name
typed in is scrubbed on the device) and a technical system report go to the reference portal, which opens a case;
its number comes back to the console. A request made while the portal cannot be reached is kept (across a restart
of the agent) and sent when the portal is back; a session the engineer opens for the case shows its number.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.client import Client
from agent.enroll import Enrollment
from agent.errors import UsageError
from tests.agent_process import AgentProcess
from tests.portal_process import PortalProcess
from tests.test_connection import FAST_TELEMETRY, audit_events, device, enroll, wait_for

DEVICE_ID = "ct-3001"
PATIENT, MRN = "Garcia Lopez, Maria", "556677"
DESCRIPTION = f"gantry stops at 30 degrees during the scan of patient '{PATIENT}' (MRN {MRN})"
CASE_ID = re.compile(r"C-\d{4}-\d{6}")
ENGINEER = ["--engineer-id", "E-4711", "--name", "Dana Scully", "--company", "Acme Medical Service",
            "--reason", "gantry stops", "--level", "limited"]


@pytest.fixture
def agent(portal: PortalProcess, tmp_path: Path) -> Iterator[AgentProcess]:
    """An enrolled agent that follows a modality log with the same patient in it (log lines never go with a
    request)."""
    log = tmp_path / "modality.log"
    log.write_text(f"2026-03-01 09:14:58 ERROR gantry stopped; PatientName={PATIENT} MRN={MRN}\n")
    process = device(tmp_path, "c" * 32, FAST_TELEMETRY + f'log_files = ["{log}"]\n')
    assert enroll(process, portal, DEVICE_ID).returncode == 0
    process.start()
    yield process
    process.stop()


def cases_table(portal: PortalProcess) -> list[dict[str, Any]]:
    """The portal's `cases` table, read straight from its SQLite file."""
    with contextlib.closing(sqlite3.connect(portal.data_dir / "portal.sqlite")) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM cases ORDER BY number")]


def planted(text: str) -> list[str]:
    return [value for value in ("Garcia", "Lopez", "Maria", MRN) if value in text]


def service_records(agent: AgentProcess) -> list[dict[str, Any]]:
    return [e for e in audit_events(agent) if e["event"].startswith("service_request")]


def test_a_request_gets_a_case_number_and_the_portal_holds_no_patient_data(portal: PortalProcess,
                                                                           agent: AgentProcess) -> None:
    answer = agent.cli_json("request-service", "--urgency", "high", DESCRIPTION)
    assert answer["state"] == "sent"
    assert CASE_ID.fullmatch(answer["case_id"])
    assert answer["case_id"] in answer["message"]
    assert answer["text"] == "gantry stops at 30 degrees during the scan of patient 'REMOVED' (MRN REMOVED)"

    [row] = cases_table(portal)
    assert (row["case_id"], row["device_id"], row["request_id"], row["urgency"], row["text"]) == (
        answer["case_id"], DEVICE_ID, answer["request_id"], "high", answer["text"])
    assert planted(json.dumps(row)) == []  # text, report, every column
    report = json.loads(row["report"])
    assert any(line.startswith("os: ") for line in report["system"])
    assert {"system.memory.usage", "system.filesystem.usage"} <= {point["name"] for point in report["metrics"]}
    [case] = json.loads(portal.cli("engineer", "cases", "--device", DEVICE_ID))
    assert (case["case_id"], case["text"], case["report"]) == (answer["case_id"], answer["text"], report)

    listed = agent.cli_json("service-requests")
    assert listed == [{key: value for key, value in answer.items() if key != "message"}]
    [record] = service_records(agent)
    assert (record["event"], record["actor"]) == ("service_requested", getpass.getuser())
    assert record["details"] == {"request_id": answer["request_id"], "urgency": "high", "text": answer["text"],
                                 "state": "sent", "case_id": answer["case_id"], "why": ""}
    assert "case " + answer["case_id"] in agent.cli("service-requests").stdout


def test_a_session_the_engineer_opens_for_the_case_shows_its_number(portal: PortalProcess,
                                                                    agent: AgentProcess) -> None:
    case_id = agent.cli_json("request-service", "--urgency", "normal", "table does not move")["case_id"]
    session_id = portal.cli("engineer", "open-session", "--device", DEVICE_ID, *ENGINEER,
                            "--case-id", case_id).splitlines()[0]
    claim = agent.cli("session", "claim", session_id, "--accept-disclaimer")
    assert claim.returncode == 0, claim.stderr
    assert f"Case:     {case_id}" in claim.stdout
    [session] = agent.cli_json("session", "list")
    assert (session["id"], session["case_id"]) == (session_id, case_id)
    assert f"Session {session_id} (case {case_id})" in agent.cli("session", "list").stdout
    claimed = [e for e in audit_events(agent) if e["event"] == "session_claimed"]
    assert [e["details"]["case_id"] for e in claimed] == [case_id]
    # Asked for directly, within a standing grant, the session carries the case too.
    assert agent.cli("access", "set", "permanent-limited").returncode == 0
    requested_id = portal.cli("engineer", "open-session", "--device", DEVICE_ID, *ENGINEER, "--case-id", case_id,
                              "--request").splitlines()[0]
    requested = wait_for("the requested session", lambda: [s for s in agent.cli_json("session", "list")
                                                           if s["id"] == requested_id])
    assert requested[0]["case_id"] == case_id


def test_the_same_request_gets_the_same_case_and_bad_ones_are_refused_in_words(portal: PortalProcess,
                                                                               agent: AgentProcess) -> None:
    """The device's side written out with its own certificate: a request sent again after a lost answer opens no
    second case; a malformed one is a 400 with a sentence, never a 500."""
    enrollment = Enrollment.load(agent.state)
    assert enrollment is not None
    url = f"{portal.url}/v1/service-requests"
    body = {"request_id": "r20260301091500-abc123", "requested_at": "2026-03-01T09:15:00Z", "urgency": "normal",
            "text": "table does not move", "report": {"system": ["os: Linux"], "metrics": []}}
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(enrollment.ca_file)
        session.cert = (str(enrollment.cert_file), str(enrollment.key_file))
        first, again = session.post(url, json=body), session.post(url, json=body)
        assert first.status_code == again.status_code == 200, first.text
        assert first.json() == again.json()
        other = session.post(url, json={**body, "request_id": "r20260301091600-def456"})
        assert other.status_code == 200
        assert CASE_ID.fullmatch(other.json()["case_id"])
        assert other.json()["case_id"] != first.json()["case_id"]
        for change, words in (({"urgency": "panic"}, "urgency: Input should be 'low', 'normal' or 'high'"),
                              ({"text": "   "}, "the description is empty"),
                              ({"text": "table\nstuck"}, "plain text on one line"),
                              ({"text": "x" * 2001}, "at most 2000 characters"),
                              ({"report": [1, 2]}, "report"),
                              ({"request_id": "../etc"}, "request_id"),
                              ({"requested_at": "yesterday"}, "not an ISO 8601 time")):
            refused = session.post(url, json={**body, "request_id": "r-bad", **change})
            assert refused.status_code == 400, (change, refused.text)
            assert words in refused.json()["detail"], (change, refused.text)
        missing = session.post(url, json={key: value for key, value in body.items() if key != "report"})
        assert missing.status_code == 400
        assert "report" in missing.json()["detail"]
        garbled = session.post(url, data=b'{"request_id": ', headers={"Content-Type": "application/json"})
        assert garbled.status_code == 400
    assert [row["request_id"] for row in cases_table(portal)] == [body["request_id"], "r20260301091600-def456"]


def test_bad_descriptions_and_urgencies_are_refused_in_words_and_nothing_is_sent(portal: PortalProcess,
                                                                                 agent: AgentProcess) -> None:
    for text, words in (("ab", "at least 3 characters"), ("   ", "at least 3 characters"),
                        ("x" * 501, "keep it to at most 500"), ("gantry\tstuck", "plain text on one line"),
                        ("gantry\nstuck", "no line breaks")):
        result = agent.cli("request-service", "--urgency", "low", text)
        assert result.returncode == 2, (text, result.stdout)
        assert words in result.stderr
        assert "Traceback" not in result.stderr
    with Client(agent.socket) as client:
        client.connect()
        with pytest.raises(UsageError, match=r"use one of: low \(.*\); normal \(.*\); high \(The scanner cannot"):
            client.call("service_request", text="table does not move", urgency="panic")
        with pytest.raises(UsageError, match="'urgency' is required"):
            client.call("service_request", text="table does not move")
        with pytest.raises(UsageError, match="describe the problem in a few words"):
            client.call("service_request", urgency="low")
        with pytest.raises(UsageError, match="'text' must be text"):
            client.call("service_request", text=42, urgency="low")
    assert cases_table(portal) == []
    assert agent.cli_json("service-requests") == []
    assert service_records(agent) == []


def test_a_request_made_while_the_portal_is_down_is_kept_and_sent_when_it_is_back(portal: PortalProcess,
                                                                                  agent: AgentProcess) -> None:
    portal.stop()
    answer = agent.cli_json("request-service", "--urgency", "high", DESCRIPTION)
    assert (answer["state"], answer["case_id"]) == ("queued", "")
    assert "cannot be reached" in answer["message"]
    assert "please also call the service centre" in answer["message"]  # the scanner cannot be used
    agent.stop()
    agent.start()  # kept on disk: the request, and the report taken when it was made
    [kept] = agent.cli_json("service-requests")
    assert (kept["request_id"], kept["state"]) == (answer["request_id"], "queued")
    assert planted((agent.state / "service-requests.json").read_text()) == []

    client = Client(agent.socket)
    events = client.watch()  # subscribed when it returns: nothing published after this is missed
    received: list[tuple[str, dict[str, Any]]] = []
    watching = threading.Thread(target=lambda: received.extend(events), daemon=True)
    watching.start()
    portal.start()
    sent = wait_for("the case number", lambda: [data for event, data in received
                                                if event == "service_request_changed" and data["state"] == "sent"])
    client.close()
    watching.join(timeout=10)
    [event] = sent
    assert event["request_id"] == answer["request_id"]
    assert CASE_ID.fullmatch(event["case_id"])
    [listed] = agent.cli_json("service-requests")
    assert listed == event
    [row] = cases_table(portal)
    assert (row["case_id"], row["request_id"], row["requested_at"]) == (event["case_id"], answer["request_id"],
                                                                        answer["requested_at"])
    assert planted(json.dumps(row)) == []
    assert json.loads(row["report"])["system"]
    records = service_records(agent)
    assert [(e["event"], e["actor"], e["details"]["case_id"]) for e in records] == [
        ("service_requested", getpass.getuser(), ""), ("service_request_sent", "servicegate", event["case_id"])]
    assert records[0]["details"]["state"] == "queued"
    assert (agent.state / "service-requests.json").exists()
    assert "report" not in json.loads((agent.state / "service-requests.json").read_text())[0]
