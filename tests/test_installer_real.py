"""A real installation on this machine, as root, undone by the test itself: install (with enrollment at a real portal
on loopback) -> the agent runs from /opt/servicegate/current as its own user -> doctor all OK -> upgrade to a second
bundle (an active session is warned and ends with `upgrade`) -> rollback -> uninstall keeps the audit log -> purge
removes the users and groups.

systemd is not PID 1 on these machines, so nothing can start the unit: the test starts the unit's own ExecStart
command line as the unit's User itself (runuser), and stops it with SIGTERM as systemd would. Everything else is real:
users, groups, /opt, /etc, /var/lib, the enrollment, the agent's control socket.
"""

from __future__ import annotations

import base64
import grp
import json
import pwd
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agent import totp
from installer.layout import UNIT_FILES, Layout
from installer.steps import group_exists, user_exists
from tests.bundle_fixtures import CURRENT_VERSION, UPGRADE_VERSION
from tests.portal_process import PortalProcess
from tests.test_installer import installer

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

LAYOUT = Layout()
CONSOLE_USER = "sgtest-radiographer"
GROUPS = ("servicegate", "servicegate-console", "servicegate-modality", "servicegate-viewer")
UNIT = LAYOUT.unit_file("servicegate.service")


def unit_setting(key: str) -> str:
    return next(line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(f"{key}="))


class InstalledAgent:
    """The unit's ExecStart, run as its User (what systemd would do here)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["runuser", "-u", unit_setting("User"), "--", *shlex.split(unit_setting("ExecStart"))]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                errors = self.process.stderr.read().decode() if self.process.stderr else ""
                raise AssertionError(f"the agent exited: {errors}")
            if ask("status", "--json").returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError("the installed agent did not answer within 30 s")

    def stop(self) -> None:
        if self.process is None:
            return
        for pid in agent_pids():
            psutil.Process(pid).send_signal(signal.SIGTERM)  # systemd's stop: SIGTERM to the main process
        self.process.wait(timeout=30)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None
        # The unit's ExecStopPost, as its user: releases the examination block even after a crash.
        post = subprocess.run(["runuser", "-u", unit_setting("User"), "--",
                               *shlex.split(unit_setting("ExecStopPost"))], capture_output=True, text=True)
        assert post.returncode == 0, post.stdout + post.stderr


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


def test_install_run_doctor_upgrade_rollback_uninstall_on_this_machine(clean_machine: None, bundle: Path,
                                                                       bundle_factory: object, tmp_path: Path) -> None:
    assert callable(bundle_factory)
    newer: Path = bundle_factory(UPGRADE_VERSION)
    with PortalProcess(tmp_path / "portal") as portal:
        otp = tmp_path / "otp"
        otp.write_text(portal.add_device("SG-REAL-0001"))
        site = tmp_path / "site.toml"
        site.write_text(f'[install]\nconsole_users = ["{CONSOLE_USER}"]\nportal_url = "{portal.url}"\n'
                        f'ca_fingerprint = "{portal.ca_fingerprint}"\ndevice_id = "SG-REAL-0001"\n')
        installed = installer(bundle, "install", "--site", str(site), "--enroll", "--otp-file", str(otp),
                              "--accept-unsynced-clock")
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert "enrolled at the vendor's portal" in installed.stdout
        assert "systemd is not running on this machine" in installed.stdout

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

            # An active session when the upgrade comes: warned in the banner's data, then ended with `upgrade`.
            assert ask("access", "set", "limited", "--for", "2h").returncode == 0
            requested = json.loads(ask("session", "request", "--engineer-id", "E-1", "--name", "Dana Field",
                                       "--reason", "upgrade test", "--json").stdout)
            secret = base64.b32decode((LAYOUT.state_dir / "portal" / "totp.key").read_text().strip())
            code = totp.code_at(secret, time.time())
            assert ask("session", "authenticate", requested["id"], "--code", code).returncode == 0
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
