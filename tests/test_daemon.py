"""The whole agent: a real `servicegate run` process, the real CLI, a real Unix socket, real users."""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.audit_verify import export, verify
from agent.cli import main as cli_main
from tests.agent_process import AgentProcess


@pytest.fixture
def agent_dir() -> Iterator[Path]:
    # Not tmp_path: that is 0700, and the denial test's second user must reach the socket.
    root = Path(tempfile.mkdtemp(prefix="sg-daemon-"))
    root.chmod(0o755)
    yield root
    subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture
def agent(agent_dir: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(agent_dir).start()
    yield process
    process.stop()


def audit_records(agent: AgentProcess) -> list[dict[str, object]]:
    return export(agent.state / "audit", None, None)


def test_cli_round_trip_against_the_daemon(agent: AgentProcess) -> None:
    assert agent.cli_json("status")["access"]["level"] == "no-access"
    result = agent.cli("access", "set", "limited", "--for", "2h")
    assert result.returncode == 0, result.stderr
    grant = agent.cli_json("access", "show")
    assert grant["level"] == "limited"
    until = datetime.fromisoformat(grant["until"].replace("Z", "+00:00"))
    assert timedelta(minutes=119) < until - datetime.now(UTC) <= timedelta(hours=2)

    session = agent.cli_json("session", "request", "--engineer-id", "E-1", "--name", "Dana Example",
                             "--reason", "gantry error", "--level", "full")
    assert session["state"] == "awaiting_consent"
    sid = session["id"]
    refused = agent.cli("session", "confirm", sid)  # no terminal and no --accept-disclaimer
    assert refused.returncode == 2
    assert "disclaimer" in refused.stderr
    assert agent.cli("session", "confirm", sid, "--level", "full", "--accept-disclaimer").returncode == 0
    agent.give_totp_secret()
    assert agent.cli("session", "authenticate", sid, "--code", agent.totp_code()).returncode == 0
    status = agent.cli_json("status")
    assert status["examinations_blocked"] is True
    assert [s["id"] for s in status["sessions"]] == [sid]

    kill = agent.cli("kill", "--reason", "patient arrived")
    assert kill.returncode == 0
    assert sid in kill.stdout
    listed = {s["id"]: s for s in agent.cli_json("session", "list")}
    assert listed[sid]["end_reason"] == "killed"
    assert agent.cli_json("access", "show")["level"] == "no-access"

    verify_result = agent.cli("audit", "verify")
    assert verify_result.returncode == 0
    assert verify_result.stdout.startswith("intact: ")
    exported = json.loads(agent.cli("audit", "export", "--format", "json").stdout)
    kinds = [r["event"] for r in exported]
    assert {"agent_started", "access_set", "session_requested", "session_confirmed", "session_active",
            "session_ended", "kill"} <= set(kinds)
    csv_text = agent.cli("audit", "export").stdout
    assert csv_text.splitlines()[0].startswith("time_utc,seq,event,actor,session_id,engineer_id")
    assert "Dana Example" in csv_text


def test_usage_errors_exit_2_and_refusals_exit_1(agent: AgentProcess) -> None:
    bad = agent.cli("access", "set", "full", "--for", "2h")
    assert (bad.returncode, "only applies to the 'limited'" in bad.stderr) == (2, True)
    assert agent.cli("access", "set", "limited", "--for", "soon").returncode == 2
    missing = agent.cli("session", "end", "12345678")
    assert missing.returncode == 1
    assert "no session with ID '12345678'" in missing.stderr
    assert "Traceback" not in bad.stderr + missing.stderr


def test_agent_not_running_exits_4(agent_dir: Path) -> None:
    idle = AgentProcess(agent_dir)
    result = idle.cli("status")
    assert result.returncode == 4
    assert str(idle.socket) in result.stderr


def test_sigterm_stops_cleanly_ending_open_sessions(agent: AgentProcess) -> None:
    agent.cli("access", "set", "permanent-limited")
    sid = agent.cli_json("session", "request", "--engineer-id", "E-1", "--name", "Dana", "--reason", "x")["id"]
    assert agent.stop(signal.SIGTERM) == 0
    assert not agent.socket.exists()
    records = audit_records(agent)
    ended = [r for r in records if r["event"] == "session_ended"]
    assert ended[-1]["details"]["session_id"] == sid  # type: ignore[index]
    assert ended[-1]["details"]["end_reason"] == "agent_restart"  # type: ignore[index]
    assert records[-1]["event"] == "agent_stopped"
    assert verify(agent.state / "audit", agent.state / "keys" / "audit-signing.pub").ok


def test_a_killed_agent_ends_the_session_at_next_start(agent: AgentProcess) -> None:
    agent.cli("access", "set", "permanent-limited")
    sid = agent.cli_json("session", "request", "--engineer-id", "E-1", "--name", "Dana", "--reason", "x")["id"]
    agent.cli("session", "authenticate", sid)
    agent.stop(signal.SIGKILL)
    agent.start()
    listed = {s["id"]: s for s in agent.cli_json("session", "list")}
    assert listed[sid]["end_reason"] == "agent_restart"
    assert agent.cli_json("access", "show")["level"] == "permanent-limited"
    assert agent.cli("audit", "verify").returncode == 0


def test_readiness_is_signalled_to_systemd_and_logs_carry_priorities(agent_dir: Path) -> None:
    notify_path = agent_dir / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(30)
        process = AgentProcess(agent_dir, env={"NOTIFY_SOCKET": str(notify_path), "JOURNAL_STREAM": "8:123"})
        process.start()
        try:
            assert notify.recv(4096).decode().startswith("READY=1")
        finally:
            assert process.stop() == 0
        assert notify.recv(4096).decode() == "STOPPING=1"
    lines = process.log.read_text().splitlines()
    assert lines
    assert all(line.startswith(("<6>servicegate.", "<7>servicegate.", "<4>servicegate.")) for line in lines)


# ---- the denial path with a real second user -------------------------------------------------------

@contextlib.contextmanager
def real_user() -> Iterator[str]:
    name = f"sgt{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)


def cli_as(user: str, argv: list[str]) -> int:
    """Run the real CLI in a forked child that drops to `user` (its exit code comes back).

    A fork rather than exec: the test's Python lives under /root, which another user cannot reach.
    """
    entry = pwd.getpwnam(user)
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 99
        try:
            os.setgroups(os.getgrouplist(user, entry.pw_gid))
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                code = cli_main(argv)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.needs_root
def test_a_user_without_a_role_is_denied_and_audited_and_a_console_user_is_not(agent_dir: Path) -> None:
    group = f"sgc{secrets.token_hex(3)}"
    subprocess.run(["groupadd", group], check=True)
    try:
        process = AgentProcess(agent_dir, extra_config=f'[control]\nconsole_group = "{group}"\n').start()
        try:
            with real_user() as user:
                argv = ["--config", str(process.config), "access", "set", "full"]
                assert cli_as(user, argv) == 5
                assert cli_as(user, ["--config", str(process.config), "status"]) == 5
                denied = [r for r in audit_records(process) if r["event"] == "permission_denied"]
                # one record a minute per user: the second refusal is counted, not written
                assert [(d["actor"], d["details"]["operation"]) for d in denied] == [(user, "access_set")]
                assert process.cli_json("access", "show")["level"] == "no-access"

                subprocess.run(["usermod", "-aG", group, user], check=True)
                assert grp.getgrnam(group).gr_mem == [user]
                assert cli_as(user, argv) == 0
                grant = process.cli_json("access", "show")
                assert (grant["level"], grant["set_by"]) == ("full", user)
                assert cli_as(user, ["--config", str(process.config), "event", "scan"]) == 5  # modality only
        finally:
            process.stop()
    finally:
        subprocess.run(["groupdel", group], check=False)


def test_watchers_see_changes_made_by_others(agent: AgentProcess) -> None:
    from agent.client import Client

    with Client(agent.socket) as client:
        client.connect()
        events = client.watch()
        assert agent.cli("access", "set", "permanent-limited").returncode == 0
        seen: list[tuple[str, dict[str, object]]] = []
        for name, data in events:
            seen.append((name, data))
            if name == "access_changed":
                break
    assert ("access_changed", data) == seen[-1]
    assert data["level"] == "permanent-limited"
    assert any(name == "audit_appended" and d["event"] == "access_set" for name, d in seen)


def test_a_second_agent_on_the_same_socket_refuses_to_start(agent: AgentProcess) -> None:
    second = AgentProcess(agent.root)
    result = subprocess.run(second.command(), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "another agent is already running" in result.stderr
    assert agent.cli("access", "set", "full").returncode == 0  # the first one is unharmed...
    assert agent.cli("audit", "verify").returncode == 0  # ...and so is its audit log


def test_a_hung_stop_is_forced_after_the_grace_period(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The deadline timer itself: armed by the first stop request, firing after shutdown_grace_s.

    In-process with the forced exit replaced, because a real os._exit would end pytest; the clean
    path is covered by the SIGTERM tests above against a real process.
    """
    import threading

    from agent import daemon
    from agent.config import from_mapping

    fired = threading.Event()
    monkeypatch.setattr(daemon, "_force_exit", fired.set)
    config = from_mapping({"paths": {"state_dir": str(tmp_path)}, "daemon": {"shutdown_grace_s": 1}})
    instance = daemon.Daemon(config)
    instance.request_stop(signal.SIGTERM)
    instance.request_stop(signal.SIGTERM)  # a second signal arms nothing new
    assert not fired.is_set()
    assert fired.wait(timeout=10)


def test_audit_commands_read_the_files_while_the_agent_is_down(agent: AgentProcess) -> None:
    agent.cli("access", "set", "full")
    assert agent.stop() == 0
    intact = agent.cli("audit", "verify")
    assert intact.returncode == 0
    assert intact.stdout.startswith("intact: ")
    assert "the agent is not running" in intact.stderr
    exported = json.loads(agent.cli("audit", "export", "--format", "json").stdout)
    assert [r["details"]["level"] for r in exported if r["event"] == "access_set"] == ["full"]

    segment = next((agent.state / "audit").glob("audit-*.jsonl"))
    segment.write_text(segment.read_text().replace('"level":"full"', '"level":"no-access"', 1))
    tampered = agent.cli("audit", "verify", "--json")
    assert tampered.returncode == 1
    report = json.loads(tampered.stdout)
    assert report["ok"] is False
    assert report["segment"] == segment.name


@pytest.mark.parametrize(("paths", "key"), [
    ('state_dir = "{file}"', "[paths] state_dir"),
    ('state_dir = "{root}/state"\naudit_dir = "{file}/audit"', "[paths] audit_dir"),
    ('state_dir = "{root}/state"\ncontrol_socket = "{file}/control.sock"', "[paths] control_socket"),
])
def test_unusable_paths_name_the_key_and_never_print_a_traceback(agent_dir: Path, paths: str, key: str) -> None:
    blocker = agent_dir / "a-file"
    blocker.write_text("not a folder")
    config = agent_dir / "agent.toml"
    config.write_text("[paths]\n" + paths.format(file=blocker, root=agent_dir) + "\n")
    result = subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(config), "run"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert key in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("argv", [
    ["access", "set", "limited", "--for", "99999999999d"],
    ["access", "set", "limited", "--for", "3000000d"],
    ["access", "set", "limited", "--until", "9999-12-31T23:59:59.999999-23:59"],
    ["audit", "export", "--since", "0001-01-01T00:00"],
])
def test_out_of_range_times_are_usage_errors(agent: AgentProcess, argv: list[str]) -> None:
    result = agent.cli(*argv)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert agent.cli_json("access", "show")["level"] == "no-access"


def test_mistyped_arguments_are_refused_not_ignored(agent: AgentProcess) -> None:
    from agent.client import Client
    from agent.errors import UsageError

    with Client(agent.socket) as client:
        client.connect()
        with pytest.raises(UsageError, match="unknown argument.*untill"):
            client.call("access_set", level="limited", untill="2030-01-01T00:00:00Z")
        with pytest.raises(UsageError, match="out of range|not an ISO 8601"):
            client.call("audit_export", since="0001-01-01T00:00:00+05:00")
    assert agent.cli_json("access", "show")["level"] == "no-access"
