"""A real installation on this machine, as root, undone by the test itself: install (with enrollment at a real portal
on loopback) -> the agent runs from /opt/servicegate/current as its own user -> doctor all OK -> upgrade to a second
bundle (an active session is warned and ends with `upgrade`) -> rollback -> uninstall keeps the audit log -> purge
removes the users and groups. And an upgrade to a release whose agent does not start: rolled back, the old version
runs again.

systemd is not PID 1 on these machines, so nothing can start the unit: the test starts the unit's own ExecStart
command line as the unit's User itself (runuser), with systemd's environment and Type=notify readiness (READY=1 on
$NOTIFY_SOCKET), and stops it with SIGTERM and the unit's ExecStopPost as systemd would. Everything else is real:
users, groups, /opt, /etc, /var/lib, the enrollment, the agent's control socket.
"""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agent import totp
from agent.errors import ExitCode
from installer import acceptance, cli, service
from installer.layout import UNIT_FILES, UNIT_NAME, Layout
from installer.steps import CommandFailed, group_exists, user_exists
from tests.bundle_fixtures import CURRENT_VERSION, UPGRADE_VERSION, BundleFactory
from tests.portal_process import PortalProcess
from tests.test_installer import installer

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

LAYOUT = Layout()
CONSOLE_USER = "sgtest-radiographer"
GROUPS = ("servicegate", "servicegate-console", "servicegate-modality", "servicegate-viewer")
UNIT = LAYOUT.unit_file("servicegate.service")


def unit_setting(key: str) -> str:
    return next(line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(f"{key}="))


# What systemd gives a service's processes (no User= variables: runuser sets HOME, SHELL, USER, LOGNAME).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
START_TIMEOUT_S = 60  # the unit's TimeoutStartSec is 5 min (restores of interrupted tasks); here none wait


class UnitFailed(Exception):
    """The start failed, as `systemctl start` reports it: the main process exited before READY=1, or was too slow."""


class InstalledAgent:
    """The unit's ExecStart, run as its User (what systemd would do here)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.journal: Path | None = None  # the agent's stdout and stderr since its last start

    def start(self) -> None:
        """`systemctl start`: the unit's ExecStart (read from the unit file now: a daemon-reload) as its User, in /,
        with systemd's environment; Type=notify, so it is started when the agent sends READY=1 to $NOTIFY_SOCKET
        and has failed (ExecStopPost runs, UnitFailed with its output) when it exits first."""
        handle, name = tempfile.mkstemp(prefix="servicegate-journal-")
        self.journal = Path(name)
        address = f"servicegate-test-notify-{os.getpid()}-{time.monotonic_ns()}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind("\0" + address)  # the abstract namespace: no file the service user needs access to
            notify.settimeout(0.2)
            argv = ["runuser", "-u", unit_setting("User"), "--", *shlex.split(unit_setting("ExecStart"))]
            try:
                self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=handle,
                                                stderr=subprocess.STDOUT, cwd="/",
                                                env={"PATH": SYSTEMD_PATH, "NOTIFY_SOCKET": "@" + address})
            finally:
                os.close(handle)
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                try:
                    if "READY=1" in notify.recv(4096).decode().splitlines():
                        return
                except TimeoutError:
                    pass
                if self.process.poll() is not None:
                    failure = (f"{UNIT_NAME}: the main process exited with {self.process.returncode} before it "
                               f"was ready:\n{self.journal_text()}")
                    break
            else:
                failure = f"{UNIT_NAME}: not ready within {START_TIMEOUT_S} s:\n{self.journal_text()}"
        self.stop()  # systemd stops a failed start (SIGTERM to what is left) and runs ExecStopPost
        raise UnitFailed(failure)

    def journal_text(self) -> str:
        """What the agent wrote to stdout and stderr since this start (systemd's journal of the unit)."""
        return self.journal.read_text(errors="replace") if self.journal else ""

    def stop(self) -> None:
        if self.process is None:
            return
        for pid in agent_pids():
            psutil.Process(pid).send_signal(signal.SIGTERM)  # systemd's stop: SIGTERM to the main process
        self.process.wait(timeout=30)
        self.process = None
        if self.journal:
            self.journal.unlink(missing_ok=True)
            self.journal = None
        # The unit's ExecStopPost, as its user: releases the examination block even after a crash.
        post = subprocess.run(["runuser", "-u", unit_setting("User"), "--",
                               *shlex.split(unit_setting("ExecStopPost"))], capture_output=True, text=True,
                              cwd="/", env={"PATH": SYSTEMD_PATH})
        assert post.returncode == 0, post.stdout + post.stderr

    def restart(self) -> None:
        """`systemctl restart`: stop, then start (UnitFailed when the start fails)."""
        self.stop()
        self.start()


def agent_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if "run" in (p.info["cmdline"] or [])[1:] and any(str(LAYOUT.opt) in a for a in p.info["cmdline"][:2])]


def ask(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed command, as site IT types it (the link in /usr/local/bin)."""
    return subprocess.run([str(LAYOUT.bin_link), *args], capture_output=True, text=True, timeout=60)


def status() -> dict[str, object]:
    answer = ask("status", "--json")
    assert answer.returncode == 0, answer.stderr
    result: dict[str, object] = json.loads(answer.stdout)
    return result


def wait_for(condition: object, what: str, timeout_s: float = 30) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.2)


@pytest.fixture
def clean_machine() -> Iterator[None]:
    """Nothing of ServiceGate on the machine before; nothing after, whatever happened in between."""
    leftovers = [p for p in (LAYOUT.opt, LAYOUT.etc, LAYOUT.state_dir, UNIT, LAYOUT.bin_link, LAYOUT.install_link)
                 if p.exists() or p.is_symlink()]
    if leftovers or user_exists("servicegate"):
        pytest.fail(f"this machine has a ServiceGate installation already ({leftovers}); the real-install test "
                    "would destroy it. Run it on a test machine (CI does).")
    subprocess.run(["useradd", "--create-home", CONSOLE_USER], check=True)
    yield
    for pid in agent_pids():
        psutil.Process(pid).kill()
    for path in (LAYOUT.opt, LAYOUT.etc, LAYOUT.state_dir, LAYOUT.run_dir, LAYOUT.bin_link, LAYOUT.install_link,
                 *(LAYOUT.unit_file(name) for name in UNIT_FILES)):
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    subprocess.run(["userdel", "--remove", CONSOLE_USER], check=False, capture_output=True)
    if user_exists("servicegate"):
        subprocess.run(["userdel", "servicegate"], check=False)
    for group in GROUPS:
        if group_exists(group):
            subprocess.run(["groupdel", group], check=False)


@pytest.fixture
def installed(clean_machine: None, bundle: Path, tmp_path: Path) -> Iterator[str]:
    """CURRENT_VERSION installed on this machine by the bundle's launcher, as site IT runs it, and enrolled at a real
    portal on loopback (which runs until the test ends); what the installer said."""
    with PortalProcess(tmp_path / "portal") as portal:
        otp = tmp_path / "otp"
        otp.write_text(portal.add_device("SG-REAL-0001"))
        site = tmp_path / "site.toml"
        site.write_text(f'[install]\nconsole_users = ["{CONSOLE_USER}"]\nportal_url = "{portal.url}"\n'
                        f'ca_fingerprint = "{portal.ca_fingerprint}"\ndevice_id = "SG-REAL-0001"\n')
        done = installer(bundle, "install", "--site", str(site), "--enroll", "--otp-file", str(otp),
                         "--accept-unsynced-clock")
        assert done.returncode == 0, done.stdout + done.stderr
        yield done.stdout


def test_install_run_doctor_upgrade_rollback_uninstall_on_this_machine(installed: str, bundle: Path,
                                                                       bundle_factory: BundleFactory) -> None:
    newer = bundle_factory(UPGRADE_VERSION)
    assert "enrolled at the vendor's portal" in installed
    assert "systemd is not running on this machine" in installed

    # Accounts, owners and modes on the real machine.
    service_user = pwd.getpwnam("servicegate")
    assert service_user.pw_shell == "/usr/sbin/nologin"
    assert service_user.pw_uid < 1000
    assert all(group_exists(group) for group in GROUPS)
    assert CONSOLE_USER in grp.getgrnam("servicegate-console").gr_mem
    state = LAYOUT.state_dir.stat()
    assert (state.st_uid, state.st_mode & 0o777) == (service_user.pw_uid, 0o700)
    assert (LAYOUT.state_dir / "portal").stat().st_uid == service_user.pw_uid  # enrolled as the service user
    assert LAYOUT.agent_toml.stat().st_uid == 0
    record = json.loads(LAYOUT.record.read_text())
    assert record["created"]["users"] == ["servicegate"]
    assert set(record["created"]["groups"]) == set(GROUPS)

    # systemd's own check of the installed units (the ExecStart program exists now).
    units = [LAYOUT.unit_file(name) for name in UNIT_FILES if name.endswith((".service", ".path"))]
    verified = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    assert "Unknown key" not in verified.stderr
    assert "Unknown section" not in verified.stderr

    agent = InstalledAgent()
    agent.start()
    try:
        [pid] = agent_pids()
        process = psutil.Process(pid)
        assert process.uids().real == service_user.pw_uid
        assert "/opt/servicegate/current/bin/servicegate" in process.cmdline()
        wait_for(lambda: status()["portal"]["state"] == "connected", "the agent connects to the portal")  # type: ignore[index]

        doctor = installer(bundle, "doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "FIX" not in doctor.stdout
        assert {line.split()[1] for line in doctor.stdout.splitlines() if line.startswith("OK")} >= {
            "program", "configuration", "agent", "control", "disk", "clock", "device", "portal", "examination",
            "audit"}

        # The acceptance check site IT runs once it is enrolled: doctor's lines, then the portal named in the letter,
        # telemetry arriving there, the audit log against the portal's heads, and the kill switch, pressed because
        # nothing is open (a fresh installation: No access, no session).
        url = status()["portal"]["portal_url"]  # type: ignore[index]
        accepted = installer(bundle, "acceptance", "--portal", url, "--wait", "90")
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        said = {line[5:].split("  ")[0]: line[:4].strip() for line in accepted.stdout.splitlines()
                if line[:4].strip() in ("OK", "FIX", "SKIP")}
        assert {check: said.get(check) for check in ("enrolled with this portal", "telemetry reaches the portal",
                                                     "audit log agrees with the portal", "kill switch")} == {
            "enrolled with this portal": "OK", "telemetry reaches the portal": "OK",
            "audit log agrees with the portal": "OK", "kill switch": "OK"}
        assert "FIX" not in said.values()
        kills = [r for r in json.loads(ask("audit", "export", "--json").stdout) if r["event"] == "kill"]
        assert [(r["actor"], r["details"]["text"], r["details"]["ended_sessions"]) for r in kills] == [
            ("root", acceptance.KILL_REASON, [])]
        # Another portal than the one enrolled with: said, with what to do, and exit code 1.
        wrong = installer(bundle, "acceptance", "--portal", "https://portal.other.example", "--wait", "0")
        assert wrong.returncode == int(ExitCode.FAILED), wrong.stdout + wrong.stderr
        [line] = [line for line in wrong.stdout.splitlines() if line.startswith("FIX")]
        assert "enrolled with this portal" in line
        assert f"enrolled with {url}, not https://portal.other.example: " in line

        # An active session when the upgrade comes: warned in the banner's data, then ended with `upgrade`.
        assert ask("access", "set", "limited", "--for", "2h").returncode == 0
        requested = json.loads(ask("session", "request", "--engineer-id", "E-1", "--name", "Dana Field",
                                   "--reason", "upgrade test", "--json").stdout)
        secret = base64.b32decode((LAYOUT.state_dir / "portal" / "totp.key").read_text().strip())
        code = totp.code_at(secret, time.time())
        assert ask("session", "authenticate", requested["id"], "--code", code).returncode == 0
        # acceptance while a session is active: the kill switch is not pressed (it would end the session), and says so
        busy = installer(bundle, "acceptance", "--portal", url, "--wait", "0")
        assert busy.returncode == 0, busy.stdout + busy.stderr
        [line] = [line for line in busy.stdout.splitlines() if line.startswith("SKIP")]
        assert "kill switch" in line
        assert "not tried: 1 session(s) open, access is limited, which it would end" in line
        assert "1 not tried (SKIP says why)" in busy.stdout
        upgraded = installer(newer, "upgrade", "--warn-seconds", "2")
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        assert "A remote session is active" in upgraded.stdout
        sessions = json.loads(ask("session", "list", "--json").stdout)
        [ended] = [s for s in sessions if s["id"] == requested["id"]]
        assert (ended["state"], ended["end_reason"]) == ("ended", "upgrade")
        assert LAYOUT.current.readlink() == Path(f"releases/{UPGRADE_VERSION}")
    finally:
        agent.stop()
    agent.start()
    try:
        assert status()["agent_version"] == UPGRADE_VERSION
        wait_for(lambda: status()["portal"]["state"] == "connected", "the upgraded agent connects")  # type: ignore[index]
        again = installer(newer, "doctor")
        assert again.returncode == 0, again.stdout
    finally:
        agent.stop()

    back = installer(newer, "rollback")
    assert back.returncode == 0, back.stdout + back.stderr
    agent.start()
    try:
        assert status()["agent_version"] == CURRENT_VERSION
    finally:
        agent.stop()

    audit = LAYOUT.state_dir / "audit"
    segments = sorted(p.name for p in audit.iterdir())
    removed = installer(newer, "uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not LAYOUT.opt.exists()
    assert not UNIT.exists()
    assert not LAYOUT.bin_link.is_symlink()
    assert sorted(p.name for p in audit.iterdir()) == segments
    assert f"The audit log stays in {audit}" in removed.stdout

    purged = installer(newer, "uninstall", "--purge", "--yes")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not user_exists("servicegate")
    assert not any(group_exists(group) for group in GROUPS)
    assert not LAYOUT.etc.exists()
    assert sorted(p.name for p in audit.iterdir()) == segments  # the legal record stays, now root's
    assert audit.stat().st_uid == 0


def test_upgrade_whose_agent_does_not_start_is_rolled_back(installed: str, bundle: Path,
                                                           bundle_factory: BundleFactory,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11, the failing health check: `upgrade` switches `current` to a release whose agent exits at start;
    the restart fails, so the upgrade switches back, restarts the old version (which answers again) and fails."""
    broken = bundle_factory.broken(UPGRADE_VERSION)
    agent = InstalledAgent()
    agent.start()
    try:
        assert status()["agent_version"] == CURRENT_VERSION
        config = LAYOUT.agent_toml.read_bytes()
        units = {name: LAYOUT.unit_file(name).read_bytes() for name in UNIT_FILES}
        history = [(e["action"], e["version"]) for e in json.loads(LAYOUT.record.read_text())["history"]]

        # systemd cannot run as PID 1 on this machine, so this is the only stand-in: what `systemctl daemon-reload`
        # and `systemctl restart servicegate.service` (installer/service.py restart) do here, with the unit file and
        # the `current` the upgrade has just switched. A start that fails is systemctl's exit 1 (CommandFailed).
        restarts: list[tuple[str, str]] = []

        def systemctl_restart(layout: Layout) -> bool:
            assert layout == LAYOUT
            version = LAYOUT.current.readlink().name
            try:
                agent.restart()
            except UnitFailed as failed:
                restarts.append((version, "failed"))
                raise CommandFailed(["systemctl", "restart", UNIT_NAME], f"Job for {UNIT_NAME} failed because the "
                                    f"control process exited with error code.\n{failed}") from None
            restarts.append((version, "started"))
            return True

        monkeypatch.setattr(service, "restart", systemctl_restart)
        # Not a stand-in: the bundle's launcher runs the installer on /usr/bin/python3, and a release is a venv on the
        # installer's interpreter; this test's (pyenv, below /root, 0700) would give a release the service user
        # cannot even start, and the upgrade would fail for that reason instead.
        monkeypatch.setattr(sys, "executable", "/usr/bin/python3")
        upgraded = cli.main(["--bundle", str(broken), "upgrade", "--warn-seconds", "0"])
        said = capsys.readouterr().out

        assert upgraded == ExitCode.FAILED, said
        assert restarts == [(UPGRADE_VERSION, "failed"), (CURRENT_VERSION, "started")], said
        assert "broken on purpose by the test: `run` exits at start" in said  # the failure made, not another
        assert f"switching back to {CURRENT_VERSION}" in said
        assert f"done: ServiceGate {CURRENT_VERSION} runs and answers" in said
        assert os.readlink(LAYOUT.current) == f"releases/{CURRENT_VERSION}"
        assert not LAYOUT.release(UPGRADE_VERSION).exists()  # never a rollback target, nor reused by the next try
        assert status()["agent_version"] == CURRENT_VERSION
        [pid] = agent_pids()
        assert f"{LAYOUT.current}/bin/servicegate" in psutil.Process(pid).cmdline()
        assert LAYOUT.agent_toml.read_bytes() == config
        assert not (LAYOUT.etc / f"agent.toml.before-{UPGRADE_VERSION}").exists()
        assert {name: LAYOUT.unit_file(name).read_bytes() for name in UNIT_FILES} == units
        record = json.loads(LAYOUT.record.read_text())
        assert [(e["action"], e["version"]) for e in record["history"]] == [
            *history, ("upgrade", UPGRADE_VERSION), ("rollback", CURRENT_VERSION)]

        wait_for(lambda: status()["portal"]["state"] == "connected", "the old version connects again")  # type: ignore[index]
        doctor = installer(bundle, "doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "FIX" not in doctor.stdout
    finally:
        agent.stop()

    removed = installer(bundle, "uninstall", "--purge", "--yes")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not LAYOUT.opt.exists()
    assert not user_exists("servicegate")
