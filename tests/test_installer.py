"""`servicegate-install` from the real bundle (tests/bundle_fixtures.py), into staging roots (--root): the layout,
every file's mode, idempotence, dry runs, rollback on failure, bad input, upgrade, rollback and uninstall.

The installer runs as site IT runs it: the bundle's own launcher, on the system's python3, from the servicegate wheel.
A real installation on this machine (users, the agent running as its user, doctor) is tests/test_installer_real.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent.config import load
from installer import checks, cli, manage
from installer.layout import UNIT_FILES, Layout
from installer.site import load as load_site
from portal.updates import Repository
from tests import tuf_repo
from tests.bundle_fixtures import CURRENT_VERSION, UPGRADE_VERSION

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "installer" / "units"
CONSOLE_USER = "root"  # a user every machine has: a staging install checks that the console users exist
SITE = f"""# the scanner in room 3
[install]
console_users = ["{CONSOLE_USER}"]

[sessions]
idle_timeout_min = 20  # the site's own choice

[console]
language = "de"
"""


def installer(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The bundle's launcher, with the system's python3 (no venv on PATH, no PYTHONPATH: a clean scanner)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return subprocess.run([str(bundle / "servicegate-install"), *args], capture_output=True, text=True, env=env,
                          timeout=600, check=False)


def install(bundle: Path, site: Path, root: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return installer(bundle, "install", "--site", str(site), "--root", str(root), "--accept-unsynced-clock", *more)


def tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path below root: its mode, a file's mtime (a folder's changes with what comes and goes in it) and a
    link's target; what "nothing changed" compares."""
    found = {}
    for path in [root, *root.rglob("*")] if root.exists() else []:
        info = path.lstat()
        found[str(path.relative_to(root))] = (info.st_mode, 0 if path.is_dir() else info.st_mtime_ns,
                                              os.readlink(path) if path.is_symlink() else "")
    return found


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(SITE)
    return path


@pytest.fixture(scope="module")
def installed(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One staging install for the read-only checks below (making a release takes a while): root, output."""
    folder = tmp_path_factory.mktemp("installed")
    (folder / "site.toml").write_text(SITE)
    result = install(bundle, folder / "site.toml", folder / "root")
    assert result.returncode == 0, result.stdout + result.stderr
    return folder / "root", result.stdout


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_staging_install_lays_out_the_release_configuration_state_and_units(installed: tuple[Path, str],
                                                                              bundle: Path) -> None:
    root, output = installed
    version = json.loads((bundle / "bundle.json").read_text())["version"]
    layout = Layout(root)
    assert os.readlink(layout.current) == f"releases/{version}"
    release = layout.release(version)
    assert json.loads((release / "release.json").read_text())["version"] == version
    assert (mode(layout.opt), mode(layout.releases), mode(layout.etc)) == (0o755, 0o755, 0o755)
    assert (mode(layout.state_dir), mode(layout.run_dir)) == (0o700, 0o755)
    # The configuration is the site file without [install], comments and all, and the agent's loader reads it.
    text = layout.agent_toml.read_text()
    assert mode(layout.agent_toml) == 0o644
    assert "[install]" not in text
    assert "console_users" not in text
    assert "idle_timeout_min = 20  # the site's own choice" in text
    config = load(layout.agent_toml)
    assert (config.sessions.idle_timeout_min, config.console.language) == (20, "de")
    for name, where in UNIT_FILES.items():
        assert (root / where).read_bytes() == (UNITS / name).read_bytes()
        assert mode(root / where) == 0o644
    assert os.readlink(layout.bin_link) == "/opt/servicegate/current/bin/servicegate"
    assert os.readlink(layout.install_link) == "/opt/servicegate/current/bin/servicegate-install"
    record = json.loads(layout.record.read_text())
    assert [(h["action"], h["version"]) for h in record["history"]] == [("install", version)]
    assert record["accept_unsynced_clock"] is True
    assert record["created"] == {"groups": [], "users": [], "memberships": []}  # a staging root makes no accounts
    assert f"ServiceGate {version} is installed." in output
    # The release is a working program, without the reference portal and its simulator.
    shown = subprocess.run([str(layout.program(release)), "--version"], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == f"servicegate {version}"
    python = str(release / "bin" / "python")
    # (run from the root: `python -c` imports from its working folder, and this checkout has portal/)
    assert subprocess.run([python, "-c", "import portal"], cwd=root, capture_output=True, check=False).returncode != 0
    assert subprocess.run([python, "-c", "import PySide6.QtWidgets, pydicom, cryptography, apscheduler"], cwd=root,
                          capture_output=True, check=False).returncode == 0
    assert not (release / "bin" / "servicegate-sim-modality").exists()


def test_the_units_name_the_paths_and_user_of_the_layout() -> None:
    unit = (UNITS / "servicegate.service").read_text()
    assert "ExecStart=/opt/servicegate/current/bin/servicegate --config /etc/servicegate/agent.toml run" in unit
    assert "examinations release" in unit
    assert "User=servicegate" in unit
    assert "/run/servicegate" in (UNITS / "servicegate.conf").read_text()
    assert "Exec=/opt/servicegate/current/bin/servicegate ui" in (UNITS / "servicegate-ui.desktop").read_text()


def test_installing_again_changes_nothing_and_says_so(installed: tuple[Path, str], bundle: Path,
                                                      tmp_path: Path) -> None:
    root, _output = installed
    (tmp_path / "site.toml").write_text(SITE)
    before = tree(root)
    again = install(bundle, tmp_path / "site.toml", root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing to change" in again.stdout
    assert tree(root) == before


def test_a_dry_run_prints_the_plan_and_changes_nothing(bundle: Path, site: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = install(bundle, site, root, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    planned = [line for line in result.stdout.splitlines() if line.strip().startswith("would:")]
    assert any("install ServiceGate" in line for line in planned)
    assert any("servicegate.service" in line for line in planned)
    assert not root.exists()


def test_a_failure_midway_rolls_back_what_the_run_did(bundle: Path, site: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    # Something in the way of the last unit file: a folder where the autostart entry goes. A real failure, late.
    (root / "etc" / "xdg" / "autostart" / "servicegate-ui.desktop").mkdir(parents=True)
    before = tree(root)
    result = install(bundle, site, root)
    assert result.returncode == 1
    assert "Failed: write" in result.stdout
    assert "servicegate-ui.desktop" in result.stdout
    assert "undone: install ServiceGate" in result.stdout
    assert "The machine is as it was before this run" in result.stdout
    assert tree(root) == before


def test_a_wrong_key_in_the_site_file_stops_before_anything_changes(bundle: Path, tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(SITE.replace("idle_timeout_min = 20", "idle_timeout = 20"))
    result = install(bundle, site, tmp_path / "root")
    assert result.returncode == 2
    assert "unknown key [sessions] idle_timeout (did you mean 'idle_timeout_min'?)" in result.stderr
    assert str(site) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "root").exists()


def test_a_missing_console_user_stops_before_anything_changes(bundle: Path, tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(SITE.replace(f'["{CONSOLE_USER}"]', '["no-such-radiographer"]'))
    result = install(bundle, site, tmp_path / "root")
    assert result.returncode == 1
    assert "Cannot install; nothing was changed" in result.stdout
    assert "the user 'no-such-radiographer' does not exist on this machine" in result.stdout
    assert not (tmp_path / "root").exists()


def test_a_corrupted_wheel_is_found_before_anything_changes(bundle: Path, site: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "bundle"
    shutil.copytree(bundle, damaged, symlinks=True)
    wheel = next(p for p in (damaged / "wheels").glob("*.whl") if p.name.startswith("pydicom"))
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wheel.write_bytes(bytes(data))
    result = install(damaged, site, tmp_path / "root")
    assert result.returncode == 1
    assert f"wheels/{wheel.name} does not match its hash in requirements.txt: the bundle is damaged" in result.stdout
    assert not (tmp_path / "root").exists()


@pytest.mark.needs_root
def test_no_disk_space_stops_before_anything_changes(bundle: Path, site: Path, tmp_path: Path) -> None:
    root = tmp_path / "small"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(root)], check=True)
    try:
        result = install(bundle, site, root)
        assert result.returncode == 1
        assert "not enough disk space for" in result.stdout
        assert "Free some space" in result.stdout
        assert list(root.iterdir()) == []
    finally:
        subprocess.run(["umount", str(root)], check=True)


def test_an_unsynchronised_clock_stops_the_install_unless_accepted(bundle: Path, site: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # Mocked: whether the kernel's clock is synchronised is this machine's state, not the test's to set.
    monkeypatch.setattr(checks, "clock_synchronized", lambda: False)
    code = cli.main(["--bundle", str(bundle), "install", "--site", str(site), "--root", str(tmp_path / "root"),
                     "--dry-run"])
    assert code == 1
    assert "the clock is not synchronised (no NTP)" in capsys.readouterr().out
    assert cli.main(["--bundle", str(bundle), "install", "--site", str(site), "--root", str(tmp_path / "root"),
                     "--dry-run", "--accept-unsynced-clock"]) == 0


def test_upgrade_rollback_and_uninstall_in_a_staging_root(bundle: Path, bundle_factory: object, site: Path,
                                                          tmp_path: Path) -> None:
    assert callable(bundle_factory)
    newer: Path = bundle_factory(UPGRADE_VERSION)
    root = tmp_path / "root"
    layout = Layout(root)
    assert install(bundle, site, root).returncode == 0
    config_before = layout.agent_toml.read_bytes()
    (layout.state_dir / "audit").mkdir()
    (layout.state_dir / "audit" / "segment-000001.jsonl").write_text("{}\n")
    (layout.state_dir / "keys").mkdir()

    desktop = root / UNIT_FILES["servicegate-ui.desktop"]
    desktop.write_text("[Desktop Entry]\n# as an older version had it\n")
    upgraded = installer(newer, "upgrade", "--root", str(root))
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert os.readlink(layout.current) == f"releases/{UPGRADE_VERSION}"
    assert (layout.release(CURRENT_VERSION) / "release.json").is_file()  # kept for a rollback
    assert layout.agent_toml.read_bytes() == config_before
    shown = subprocess.run([str(layout.program()), "--version"], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == f"servicegate {UPGRADE_VERSION}"
    assert "0.1.0 stays for `servicegate-install rollback`" in upgraded.stdout

    again = installer(newer, "upgrade", "--root", str(root))
    assert (again.returncode, "nothing to upgrade" in again.stdout) == (0, True)
    older = installer(bundle, "upgrade", "--root", str(root))
    assert older.returncode == 2
    assert "an upgrade never goes back" in older.stderr

    assert desktop.read_bytes() == (UNITS / "servicegate-ui.desktop").read_bytes()  # the new version's units
    desktop.write_text("[Desktop Entry]\n# changed by hand\n")
    back = installer(newer, "rollback", "--root", str(root))
    assert back.returncode == 0, back.stdout + back.stderr
    assert os.readlink(layout.current) == f"releases/{CURRENT_VERSION}"
    assert desktop.read_bytes() == (UNITS / "servicegate-ui.desktop").read_bytes()  # the units the release brought
    history = json.loads(layout.record.read_text())["history"]
    assert [(h["action"], h["version"]) for h in history] == [
        ("install", CURRENT_VERSION), ("upgrade", UPGRADE_VERSION), ("rollback", CURRENT_VERSION)]

    removed = installer(newer, "uninstall", "--root", str(root))
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not layout.opt.exists()
    assert not layout.bin_link.is_symlink()
    assert not layout.install_link.is_symlink()
    assert not any((root / where).exists() for where in UNIT_FILES.values())
    assert layout.agent_toml.exists()
    assert (layout.state_dir / "keys").is_dir()
    assert f"The audit log stays in {layout.state_dir / 'audit'}" in removed.stdout

    purged = installer(newer, "uninstall", "--purge", "--yes", "--root", str(root))
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not layout.etc.exists()
    assert [p.name for p in layout.state_dir.iterdir()] == ["audit"]
    assert (layout.state_dir / "audit" / "segment-000001.jsonl").read_text() == "{}\n"


def test_purge_asks_first_and_a_wrong_answer_changes_nothing(installed: tuple[Path, str], bundle: Path) -> None:
    root, _output = installed
    before = tree(root)
    result = subprocess.run([str(bundle / "servicegate-install"), "uninstall", "--purge", "--root", str(root)],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 2
    assert "run it in a terminal to be asked, or add --yes" in result.stderr
    assert tree(root) == before


# ---- the site file and the configuration migration (in-process) ---------------------------------------------------


def test_the_site_file_keeps_comments_and_refuses_what_an_installed_system_cannot_do(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(SITE.replace("[install]\n", "[install]\nconsole_user = 1\n"))
    with pytest.raises(Exception, match=r"unknown key \[install\] console_user \(did you mean 'console_users'\?\)"):
        load_site(path)
    path.write_text(SITE + '\n[paths]\nstate_dir = "/srv/servicegate"\n')
    with pytest.raises(Exception, match=r"\[paths\] state_dir must stay /var/lib/servicegate"):
        load_site(path)
    path.write_text('install.console_users = ["root"]\n[sessions]\nidle_timeout_min = 20\n')
    with pytest.raises(Exception, match="write \\[install\\] as one table"):
        load_site(path)
    path.write_text(SITE.replace('["root"]', "[]"))
    with pytest.raises(Exception, match="console_users is empty"):
        load_site(path)
    path.write_text(SITE)
    loaded = load_site(path)
    assert tomllib.loads(loaded.agent_toml) == {"sessions": {"idle_timeout_min": 20}, "console": {"language": "de"}}
    assert loaded.agent_toml.startswith("# the scanner in room 3\n")


def test_a_configuration_migration_renames_a_key_in_its_section_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manage, "MIGRATIONS", (manage.Rename("0.2.0", "sessions", "idle_min", "idle_timeout_min"),))
    text = "[console]\nidle_min = 1\n\n[sessions]\n# kept\nidle_min = 30\n"
    migrated, changes = manage.migrate(text, "0.1.0", "0.2.0")
    assert migrated == "[console]\nidle_min = 1\n\n[sessions]\n# kept\nidle_timeout_min = 30\n"
    assert changes == ["[sessions] idle_min is now idle_timeout_min"]
    assert manage.migrate(text, "0.2.0", "0.3.0") == (text, [])  # done already: not again


# ---- a software update the agent hands over (servicegate-upgrade.service) -----------------------------------------


def hand_over(bundle_factory: object, root: Path, version: str, vendor: Path) -> subprocess.CompletedProcess[str]:
    """An approved software update as the agent leaves it: the bundle published in the vendor's TUF repository (the
    reference portal's code), the metadata the agent's python-tuf keeps, the vendor's first root where the installer
    keeps it at enrollment, the file staged, and the agent's install-software task run for real."""
    assert callable(bundle_factory)
    bundle_factory(version)
    tarball: Path = bundle_factory.tarball(version)  # type: ignore[attr-defined]
    repository = Repository(vendor)
    repository.publish(tarball, kind="software", version=version, models=["CT-DEMO"])
    layout = Layout(root)
    (layout.update_dir / "tuf").mkdir(parents=True, exist_ok=True)
    for role in ("root", "targets"):
        newest = max(repository.metadata.glob(f"*.{role}.json"), key=lambda p: int(p.name.split(".")[0]))
        shutil.copyfile(newest, layout.update_dir / "tuf" / f"{role}.json")
    (layout.etc / "tuf-root.json").write_text(repository.first_root())
    staged = layout.update_dir / "staging" / "u1" / tarball.name
    staged.parent.mkdir(parents=True)
    shutil.copyfile(tarball, staged)
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()
    env = {**os.environ, "SERVICEGATE_UPDATE_DIR": str(layout.update_dir)}
    return subprocess.run([sys.executable, "-m", "agent.builtin_tasks", "install-software", str(staged), version,
                           digest], capture_output=True, text=True, env=env, cwd=REPO, check=False)


def apply_request(root: Path) -> subprocess.CompletedProcess[str]:
    """servicegate-upgrade.service's ExecStart, as the path unit would start it (with --root: a staging root)."""
    argv = next(line.split("=", 1)[1] for line in (UNITS / "servicegate-upgrade.service").read_text().splitlines()
                if line.startswith("ExecStart=")).split()
    program = root / argv[0].lstrip("/")
    return subprocess.run([str(program), *argv[1:], "--root", str(root)], capture_output=True, text=True,
                          check=False, timeout=600)


def test_a_software_update_handed_over_by_the_agent_is_installed_by_the_upgrade_service(
        bundle: Path, bundle_factory: object, site: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    layout = Layout(root)
    assert install(bundle, site, root).returncode == 0
    handed = hand_over(bundle_factory, root, UPGRADE_VERSION, tmp_path / "vendor")
    assert handed.returncode == 0, handed.stderr
    request = json.loads((layout.update_dir / "upgrade-request.json").read_text())
    assert (request["version"], request["target"]) == (UPGRADE_VERSION, f"software/{Path(request['file']).name}")

    applied = apply_request(root)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert os.readlink(layout.current) == f"releases/{UPGRADE_VERSION}"
    result = json.loads((layout.update_dir / "upgrade-result.json").read_text())
    assert (result["version"], result["outcome"]) == (UPGRADE_VERSION, "installed")
    assert not (layout.update_dir / "upgrade-request.json").exists()
    assert not (root / "var" / "lib" / "servicegate-upgrade").exists()  # root's own copy, removed when done
    assert apply_request(root).stdout.startswith("No software update is waiting")


def test_the_kill_switch_stops_a_handed_over_upgrade_before_its_switch(
        bundle: Path, bundle_factory: object, site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The agent's kill switch leaves `upgrade-cancel.json`; the upgrade service passes it as `--stop-if`, checked
    before the new release is made and again after the session's warning, just before the switch. Pressed during
    the warning (here: while `announce` runs, in this process), the new release stays unused beside the old one, and
    the next upgrade takes it up."""
    assert callable(bundle_factory)
    newer: Path = bundle_factory(UPGRADE_VERSION)
    root = tmp_path / "root"
    layout = Layout(root)
    assert install(bundle, site, root).returncode == 0
    cancel = layout.update_dir / "upgrade-cancel.json"
    layout.update_dir.mkdir()
    monkeypatch.setattr(manage, "announce", lambda *_args: cancel.write_text("{}"))  # the kill switch, pressed now
    argv = ["--bundle", str(newer), "upgrade", "--root", str(root), "--stop-if", str(cancel)]
    assert cli.main(argv) == 1
    assert "Stopped before the switch: the kill switch was pressed at the console" in capsys.readouterr().out
    assert os.readlink(layout.current) == f"releases/{CURRENT_VERSION}"
    assert (layout.release(UPGRADE_VERSION) / "release.json").is_file()  # made, not used
    assert cli.main(argv) == 1  # the file is still there: stopped before anything
    monkeypatch.undo()
    cancel.unlink()
    assert cli.main(argv) == 0
    assert os.readlink(layout.current) == f"releases/{UPGRADE_VERSION}"


@pytest.mark.parametrize("attack", ["bytes", "signature", "outside", "no trusted root"])
def test_the_upgrade_service_runs_nothing_the_vendor_did_not_sign(
        bundle: Path, bundle_factory: object, site: Path, tmp_path: Path, attack: str) -> None:
    """The agent's folder is writable by the agent's user: whatever is changed there after the agent's checks, the
    root service refuses it, changes nothing, and says why."""
    root = tmp_path / "root"
    layout = Layout(root)
    assert install(bundle, site, root).returncode == 0
    assert hand_over(bundle_factory, root, UPGRADE_VERSION, tmp_path / "vendor").returncode == 0
    request_file = layout.update_dir / "upgrade-request.json"
    request = json.loads(request_file.read_text())
    staged = Path(request["file"])
    words = {"bytes": "does not match its signed length and hash",
             "signature": "not signed by the vendor's keys",
             "outside": "is not in the agent's staging folder",
             "no trusted root": "no trusted TUF root"}[attack]
    if attack == "bytes":  # another bundle put in its place (a wheel changed, say)
        staged.write_bytes(staged.read_bytes()[:-100] + b"\0" * 100)
    elif attack == "signature":  # targets metadata re-signed with a key of the attacker's
        tuf_repo.sign_with_wrong_key(tmp_path / "vendor", "targets")
        newest = max((tmp_path / "vendor" / "tuf" / "metadata").glob("*.targets.json"),
                     key=lambda p: int(p.name.split(".")[0]))
        shutil.copyfile(newest, layout.update_dir / "tuf" / "targets.json")
    elif attack == "outside":
        request_file.write_text(json.dumps({**request, "file": str(bundle_factory.tarball(UPGRADE_VERSION))}))  # type: ignore[attr-defined]
    else:
        (layout.etc / "tuf-root.json").unlink()
    applied = apply_request(root)
    assert applied.returncode == 1
    assert os.readlink(layout.current) == f"releases/{CURRENT_VERSION}"
    result = json.loads((layout.update_dir / "upgrade-result.json").read_text())
    assert result["outcome"] == "failed"
    assert words in result["detail"], result["detail"]
    assert not request_file.exists()


@pytest.mark.slow
def test_an_upgrade_killed_at_any_step_leaves_the_old_or_the_new_release_never_a_mix(
        bundle: Path, bundle_factory: object, site: Path, tmp_path: Path) -> None:
    """SIGKILL after each step the upgrade reports (so inside the next one, the venv's pip included): afterwards
    `current` is a complete release, the old or the new one, and says which; the next run finishes the upgrade."""
    assert callable(bundle_factory)
    newer: Path = bundle_factory(UPGRADE_VERSION)
    root = tmp_path / "root"
    layout = Layout(root)
    assert install(bundle, site, root).returncode == 0
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    seen: set[str] = set()
    for kill_after in range(6):
        process = subprocess.Popen([str(newer / "servicegate-install"), "upgrade", "--root", str(root)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert process.stdout is not None
        done = 0
        for line in process.stdout:
            if line.strip().startswith("done:"):
                done += 1
                if done > kill_after:
                    break
        process.kill()  # SIGKILL: no clean-up of its own
        process.wait()
        process.stdout.close()
        target = os.readlink(layout.current)
        version = target.removeprefix("releases/")
        assert version in (CURRENT_VERSION, UPGRADE_VERSION)
        assert (layout.release(version) / "release.json").is_file()  # a complete release, never a half-made one
        says = subprocess.run([str(layout.program()), "--version"], capture_output=True, text=True, check=True)
        assert says.stdout.strip() == f"servicegate {version}"
        seen.add(version)
        if version == UPGRADE_VERSION:  # back to the old one for the next try, and the new release made again
            assert installer(newer, "rollback", "--root", str(root)).returncode == 0
            shutil.rmtree(layout.release(UPGRADE_VERSION))
    assert seen == {CURRENT_VERSION, UPGRADE_VERSION}  # killed both before and after the switch
    finished = installer(newer, "upgrade", "--root", str(root))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert os.readlink(layout.current) == f"releases/{UPGRADE_VERSION}"
