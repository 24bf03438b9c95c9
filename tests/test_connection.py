"""End to end on loopback with real processes: `servicegate-portal serve`, `device add`, `servicegate enroll`,
`servicegate run`; telemetry, checkpoint heads and inbox messages between them; the portal restarted.

The machine's identity comes from files named in `[portal]` (the identity seam), so a test can play a second
machine without touching /etc/machine-id.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.enroll import ATTEMPTS_FILE
from portal.store import OTP_MAX_FAILURES, OTP_VALID_S, Store
from tests.agent_process import AgentProcess
from tests.pki import Ca
from tests.portal_process import PortalProcess
from tests.tls_server import serve_tls

FAST_TELEMETRY = "[telemetry]\ncollect_s = 5\nlogs_s = 5\npush_s = 5\n"
FAST_AUDIT = "[audit]\ncheckpoint_interval_min = 1\n"


def identity(root: Path, machine_id: str) -> str:
    """Identity files of a machine, and the [portal] section that names them."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "machine-id").write_text(machine_id + "\n")
    (root / "product_uuid").write_text("4c4c4544-0042-3510-8052-b4c04f4d3132\n")
    return (f'[portal]\nmachine_id_file = "{root / "machine-id"}"\nproduct_uuid_file = "{root / "product_uuid"}"\n'
            f'product_serial_file = "{root / "no-serial"}"\ninbox_wait_s = 2\n')


def device(tmp_path: Path, machine_id: str, extra: str = "") -> AgentProcess:
    """An agent in its own folder on a machine with `machine_id`."""
    (tmp_path / "device").mkdir()
    return AgentProcess(tmp_path / "device", identity(tmp_path / "machine", machine_id) + extra)


def enroll(agent: AgentProcess, portal: PortalProcess, device_id: str, *, otp: str | None = None,
           fingerprint: str | None = None) -> subprocess.CompletedProcess[str]:
    return agent.cli("enroll", "--portal", portal.url, "--ca-fingerprint", fingerprint or portal.ca_fingerprint,
                     "--otp", otp or portal.add_device(device_id), "--device-id", device_id)


def wait_for(what: str, condition: Callable[[], Any], timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {condition()!r}")


def audit_events(agent: AgentProcess) -> list[dict[str, Any]]:
    return list(agent.cli_json("audit", "export"))


def test_enrolled_agent_delivers_telemetry_and_heads_and_nothing_is_lost_across_a_portal_restart(
        portal: PortalProcess, tmp_path: Path) -> None:
    agent = device(tmp_path, "a" * 32, FAST_TELEMETRY + FAST_AUDIT)
    result = enroll(agent, portal, "ct-1001")
    assert result.returncode == 0, result.stderr
    key = agent.state / "portal" / "device.key"
    assert key.stat().st_mode & 0o777 == 0o600
    agent.start()
    try:
        assert agent.cli_json("status")["portal"]["device_id"] == "ct-1001"
        wait_for("a sample at the portal", lambda: portal.show("ct-1001")["kinds"].get("metric"))
    finally:
        assert agent.stop() == 0  # its last act: a checkpoint, whose head waits in the outbox
    agent.start()
    try:
        shown = wait_for("the checkpoint head at the portal", lambda: (
            s if (s := portal.show("ct-1001"))["audit_heads"] else None))
        assert shown["device"]["binding"]
        # The portal goes away and comes back; the agent goes on and delivers what waited.
        portal.stop()
        agent.cli("event", "scan")
        time.sleep(6)  # at least one push fails while the portal is down
        portal.start()
        before = len(shown["sequences"])
        wait_for("more records after the restart", lambda: len(portal.show("ct-1001")["sequences"]) > before + 2)
        assert wait_for("the link to report connected", lambda: agent.cli_json("status")["portal"]["state"]
                        == "connected")
    finally:
        assert agent.stop() == 0
    # Everything the outbox gave out arrived, once: the sequences the portal holds have no hole but the
    # records still waiting in the outbox when the agent stopped.
    sequences = portal.show("ct-1001")["sequences"]
    with sqlite3.connect(agent.state / "outbox.sqlite") as db:
        waiting = {row[0] for row in db.execute("SELECT sequence FROM records")}
    db.close()
    assert len(sequences) == len(set(sequences))
    assert set(range(1, max(sequences) + 1)) - set(sequences) <= waiting
    enrolled = [e for e in audit_events(agent) if e["event"] == "enrollment"]
    assert [e["details"]["outcome"] for e in enrolled] == ["enrolled"]


def test_enrollment_refusals_are_said_and_logged_on_both_sides(portal: PortalProcess, tmp_path: Path) -> None:
    agent = device(tmp_path, "b" * 32)
    otp = portal.add_device("ct-1002")
    wrong_fingerprint = enroll(agent, portal, "ct-1002", otp=otp, fingerprint="00" * 32)
    assert wrong_fingerprint.returncode == 1
    assert "do not enroll" in wrong_fingerprint.stderr
    assert "Traceback" not in wrong_fingerprint.stderr
    assert not (agent.state / "portal").exists()
    wrong = enroll(agent, portal, "ct-1002", otp="AAAA-BBBB-CCCC-DDDD")
    assert wrong.returncode == 1
    assert "wrong one-time password" in wrong.stderr
    assert enroll(agent, portal, "ct-1002", otp=otp).returncode == 0
    reused = enroll(agent, portal, "ct-1002", otp=otp)
    assert reused.returncode == 1
    assert "already used" in reused.stderr
    assert (agent.state / "portal" / "device.pem").exists()  # the enrollment that worked is still there
    attempts = [json.loads(line) for line in (agent.state / ATTEMPTS_FILE).read_text().splitlines()]
    assert [a["outcome"] for a in attempts] == ["refused", "refused", "enrolled", "refused"]
    portal_events = [e["event"] for e in json.loads(portal.cli("events"))]
    assert portal_events.count("enrollment_refused") == 2  # the fingerprint was refused before the portal heard
    agent.start()
    try:
        audited = [e["details"]["outcome"] for e in audit_events(agent) if e["event"] == "enrollment"]
    finally:
        agent.stop()
    assert audited == ["refused", "refused", "enrolled", "refused"]
    assert not (agent.state / ATTEMPTS_FILE).exists()


def test_expired_and_guessed_passwords_are_refused_and_logged_on_both_sides(portal: PortalProcess,
                                                                          tmp_path: Path) -> None:
    agent = device(tmp_path, "9" * 32)
    # Issued as if 16 minutes ago, through the portal's own store: no waiting.
    expired = Store(portal.data_dir / "portal.sqlite", clock=lambda: time.time() - OTP_VALID_S - 60)
    late = enroll(agent, portal, "ct-1006", otp=expired.add_device("ct-1006"))
    assert late.returncode == 1
    assert "expired" in late.stderr
    otp = portal.add_device("ct-1007")
    guesses = [enroll(agent, portal, "ct-1007", otp=f"GUESS-{i:04d}") for i in range(OTP_MAX_FAILURES)]
    assert [g.returncode for g in guesses] == [1] * OTP_MAX_FAILURES
    assert "now locked" in guesses[-1].stderr
    right = enroll(agent, portal, "ct-1007", otp=otp)
    assert right.returncode == 1
    assert "locked" in right.stderr
    assert not (agent.state / "portal").exists()
    attempts = [json.loads(line) for line in (agent.state / ATTEMPTS_FILE).read_text().splitlines()]
    assert [a["outcome"] for a in attempts] == ["refused"] * (OTP_MAX_FAILURES + 2)
    refused = [e for e in json.loads(portal.cli("events")) if e["event"] == "enrollment_refused"]
    assert [e["device_id"] for e in refused] == ["ct-1006"] + ["ct-1007"] * (OTP_MAX_FAILURES + 1)


def test_while_the_portal_hangs_the_console_and_the_kill_switch_are_served(portal: PortalProcess,
                                                                          tmp_path: Path) -> None:
    agent = device(tmp_path, "8" * 32)
    assert enroll(agent, portal, "ct-1008").returncode == 0
    # A server with a certificate from the vendor CA that answers every request with headers and then nothing.
    ca = Ca(x509.load_pem_x509_certificate(portal.ca_file.read_bytes()), load_key(portal.data_dir / "ca.key"))
    cert, key = ca.server(tmp_path / "hang", "server")
    with hanging_server(cert, key) as (url, requests_seen):
        info_file = agent.state / "portal" / "enrollment.json"
        info = json.loads(info_file.read_text())
        info_file.write_text(json.dumps({**info, "portal_url": url}))
        agent.start()
        try:
            wait_for("the agent to call the hanging portal", lambda: requests_seen)
            assert agent.cli("access", "set", "limited", "--for", "1h").returncode == 0
            kill = agent.cli("kill", "--reason", "portal hangs")
            assert kill.returncode == 0
            status = agent.cli_json("status")
            assert status["access"]["level"] == "no-access"
            assert status["portal"]["state"] == "connecting"
        finally:
            assert agent.stop(timeout=15) == 0


@contextlib.contextmanager
def hanging_server(cert: Path, key: Path) -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"mess')
            self.wfile.flush()
            stop.wait(120)

    with serve_tls(Handler, cert, key) as url:
        try:
            yield url, seen
        finally:
            stop.set()


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def test_a_configuration_copied_to_another_machine_does_not_connect(portal: PortalProcess, tmp_path: Path) -> None:
    agent = device(tmp_path, "c" * 32, FAST_TELEMETRY)
    assert enroll(agent, portal, "ct-1003").returncode == 0
    # Positive control: on its own machine it connects.
    agent.start()
    try:
        wait_for("connected", lambda: agent.cli_json("status")["portal"]["state"] == "connected")
    finally:
        agent.stop()
    # The same state folder and configuration on a machine with another machine ID.
    (tmp_path / "machine" / "machine-id").write_text("d" * 32 + "\n")
    agent.start()
    try:
        status = agent.cli_json("status")["portal"]
        assert status["state"] == "refused"
        assert "another machine" in status["error"]
        assert agent.cli("kill").returncode == 0  # the agent itself runs on: the kill switch works
    finally:
        agent.stop()
    assert "another machine" in agent.log.read_text()


def test_portal_messages_reach_the_agent_once_and_unknown_ones_are_recorded(portal: PortalProcess,
                                                                            tmp_path: Path) -> None:
    agent = device(tmp_path, "e" * 32)
    assert enroll(agent, portal, "ct-1004").returncode == 0
    agent.start()
    try:
        assert agent.cli("access", "set", "permanent-limited").returncode == 0  # the portal may request within it
        request = portal.post("ct-1004", "session_request", {
            "engineer_id": "E-7", "name": "Dana Example", "company": "Vendor Service", "reason": "gantry error 4711",
            "level": "limited", "kind": "service"})
        task = portal.post("ct-1004", "update_offer", {"update": "virus-patterns-2026-12"})
        wait_for("both messages acknowledged", lambda: all(
            m["acknowledged"] for m in portal.show("ct-1004")["messages"]))
        sessions = agent.cli_json("session", "list")
        assert [(s["engineer"]["name"], s["reason"]) for s in sessions] == [("Dana Example", "gantry error 4711")]
        # A lost acknowledgement: the portal sends the message again; the agent does not handle it twice.
        db = sqlite3.connect(portal.data_dir / "portal.sqlite")
        with db:
            db.execute("UPDATE inbox SET acknowledged = NULL WHERE id = ?", (request,))
        db.close()
        wait_for("acknowledged again", lambda: all(m["acknowledged"] for m in portal.show("ct-1004")["messages"]))
        assert len(agent.cli_json("session", "list")) == 1
        events = audit_events(agent)
    finally:
        agent.stop()
    received = [e["details"]["message_id"] for e in events if e["event"] == "portal_message"]
    assert received == [request, task]
    refused = [e["details"] for e in events if e["event"] == "portal_message_refused"]
    assert [(r["message_id"], r["type"]) for r in refused] == [(task, "update_offer")]


def test_audit_verify_against_the_portal_finds_records_cut_off_the_end(portal: PortalProcess,
                                                                       tmp_path: Path) -> None:
    agent = device(tmp_path, "f" * 32, FAST_TELEMETRY + FAST_AUDIT)
    assert enroll(agent, portal, "ct-1005").returncode == 0
    agent.start()
    agent.cli("access", "set", "limited", "--for", "1h")
    agent.stop()  # a checkpoint at the stop; its head waits in the outbox
    agent.start()
    try:
        wait_for("a checkpoint head at the portal", lambda: portal.show("ct-1005")["audit_heads"])
        intact = agent.cli("audit", "verify", "--against-portal")
        assert intact.returncode == 0, intact.stdout + intact.stderr
    finally:
        agent.stop()
    heads = portal.show("ct-1005")["audit_heads"]
    newest = max(h["servicegate.seq"] for h in heads)
    # Cut the log back to just before the newest checkpoint the portal has (a well-formed, shorter log).
    segment = sorted((agent.state / "audit").glob("audit-*.jsonl"))[-1]
    lines = segment.read_text().splitlines(keepends=True)
    kept = [line for line in lines if json.loads(line)["seq"] < newest]
    segment.write_text("".join(kept))
    alone = agent.cli("audit", "verify")
    assert alone.returncode == 0  # the log alone cannot tell
    compared = agent.cli("audit", "verify", "--against-portal")
    assert compared.returncode == 1
    assert "cut off the end" in compared.stdout


def test_enroll_with_bad_arguments_says_what_is_wrong(tmp_path: Path) -> None:
    agent = device(tmp_path, "1" * 32)
    for args, words in ((["--portal", "http://127.0.0.1:1"], "https:// only"),
                        (["--portal", "https://127.0.0.1:1", "--ca-fingerprint", "abc"], "not a SHA-256"),
                        (["--portal", "https://127.0.0.1:1"], "cannot reach")):
        full = {"--portal": "", "--ca-fingerprint": "ab" * 32, "--otp": "X", "--device-id": "ct-9"}
        full.update(dict(zip(args[::2], args[1::2], strict=True)))
        result = subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(agent.config), "enroll",
                                 *[x for pair in full.items() for x in pair]], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 1, args
        assert words in result.stderr
        assert "Traceback" not in result.stderr
