"""The files of installer/units/ as systemd 252 reads them: the agent's service and its sandbox (exposure by
`systemd-analyze security` at most 3.0), the tmpfiles entry and the consent UI's autostart entry.

Every check has a control: the same check on a broken copy fails. docs/hardening.md explains each setting; the tests
hold the unit and that page to each other (what systemd-analyze still counts, each relaxation). The unit never runs
under systemd here (PID 1 is not systemd): tests/test_installer_real.py runs its command lines as its user.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.cli import build_parser
from agent.config import defaults

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "installer" / "units"
SERVICE = UNITS / "servicegate.service"
TMPFILES = UNITS / "servicegate.conf"
DESKTOP = UNITS / "servicegate-ui.desktop"
HARDENING = REPO / "docs" / "hardening.md"

PROGRAM = "/opt/servicegate/current/bin/servicegate"
CONFIG = "/etc/servicegate/agent.toml"
MAX_EXPOSURE = 3.0
OVERALL = re.compile(r"Overall exposure level for servicegate\.service: (\d+\.\d+)")
# What `systemd-analyze verify` says when it drops a line (an unknown key or section, a bad value): it still exits 0.
DROPPED = re.compile(r"Unknown key|Unknown section|ignoring", re.IGNORECASE)

# The sandbox, setting by setting (docs/hardening.md, "Hardening applied" and "Relaxations").
HARDENED = {
    "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/servicegate /run/servicegate",
    "StateDirectory": "servicegate",
    "StateDirectoryMode": "0700",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateMounts": "yes",
    "UMask": "0077",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictRealtime": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "KeyringMode": "private",
    "RemoveIPC": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service",
    "SystemCallErrorNumber": "EPERM",
    # The relaxations, explicit so that they are visible (and documented) rather than defaults nobody chose.
    "Delegate": "yes",
    "ProtectControlGroups": "no",
    "ProtectProc": "default",
    "ProcSubset": "all",
    "PrivateUsers": "no",
    "PrivateNetwork": "no",
    "IPAddressDeny": "",
}
# What the unit is without any sandbox: the settings that say what runs and how, not what it may do.
NOT_HARDENING = {"Description", "After", "Type", "User", "Group", "ExecStart", "ExecStopPost", "Restart", "RestartSec",
                 "TimeoutStartSec", "TimeoutStopSec", "KillMode", "WantedBy"}


def systemd_tool(name: str) -> str:
    """systemd-analyze and systemd-tmpfiles come with Debian's `systemd` package (installed even where PID 1 is not
    systemd). Off CI a machine without them skips; CI must have them."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed: apt-get install systemd")
        pytest.skip(f"{name} is not installed (Debian package systemd)")
    return path


def settings(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of each assignment of a unit file, in order; comments and blank lines skipped."""
    found: list[tuple[str, str, str]] = []
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def setting(key: str, text: str | None = None) -> str:
    """The value of a key the unit sets exactly once."""
    unit = SERVICE.read_text(encoding="utf-8") if text is None else text
    values = [value for _, k, value in settings(unit) if k == key]
    assert len(values) == 1, f"{key}= is set {len(values)} times in the unit"
    return values[0]


def without(keys: set[str] | frozenset[str], text: str | None = None, *, keep: bool = False) -> str:
    """The unit's text without the lines setting `keys` (with `keep`: without every other assignment)."""
    lines = []
    for line in (SERVICE.read_text(encoding="utf-8") if text is None else text).splitlines():
        stripped = line.strip()
        is_setting = bool(stripped) and not stripped.startswith(("#", ";", "["))
        key = stripped.partition("=")[0].strip()
        if is_setting and (key not in keys if keep else key in keys):
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def analyze(text: str, root: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze security --offline=true` on `text` installed as servicegate.service in a staging root, so
    that drop-ins installed on this machine (/etc/systemd/system/servicegate.service.d/) never count."""
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True, exist_ok=True)
    (units / "servicegate.service").write_text(text, encoding="utf-8")
    return subprocess.run([systemd_tool("systemd-analyze"), "security", "--offline=true", f"--root={root}", *options,
                           "servicegate.service"], capture_output=True, text=True, timeout=120)


def exposure(result: subprocess.CompletedProcess[str]) -> float:
    match = OVERALL.search(result.stdout)
    assert match is not None, f"no overall exposure line:\n{result.stdout}\n{result.stderr}"
    return float(match.group(1))


def counted(text: str, root: Path) -> set[str]:
    """The checks systemd-analyze counts against the unit (the ✗ rows), by name."""
    result = analyze(text, root, "--json=short")
    assert result.returncode == 0, result.stderr
    return {check["name"] for check in json.loads(result.stdout) if check["set"] is False}


def doc_table(heading: str) -> list[list[str]]:
    """The rows of the first table under `heading` in docs/hardening.md, cells stripped (`\\|` unescaped)."""
    text = HARDENING.read_text(encoding="utf-8")
    start = text.index(f"{heading}\n")
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("#"):
            break
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if not set(cells[0]) <= {"-", ":"}:
            rows.append(cells)
    assert rows, f"no table under {heading!r} in {HARDENING}"
    return rows[1:]  # the header row off


def code(cell: str) -> str:
    """A cell's `code` (the unit's spelling), or "" for a cell like "(empty)"."""
    match = re.fullmatch(r"`([^`]*)`", cell)
    return match.group(1) if match else ""


# ---- the service: exposure --------------------------------------------------------------------------------------


def test_the_agents_exposure_is_at_most_3_0(tmp_path: Path) -> None:
    result = analyze(SERVICE.read_text(encoding="utf-8"), tmp_path, "--threshold=30")
    assert result.returncode == 0, f"above the threshold:\n{result.stdout}\n{result.stderr}"
    assert exposure(result) <= MAX_EXPOSURE


@pytest.mark.parametrize(("broken", "keys"), [
    ("no sandbox at all", frozenset(NOT_HARDENING)),
    ("no CapabilityBoundingSet=", frozenset({"CapabilityBoundingSet"})),
])
def test_control_a_weaker_unit_fails_the_gate(tmp_path: Path, broken: str, keys: frozenset[str]) -> None:
    text = without(keys, keep=True) if broken == "no sandbox at all" else without(keys)
    result = analyze(text, tmp_path, "--threshold=30")
    assert exposure(result) > MAX_EXPOSURE
    assert result.returncode != 0


def test_what_still_counts_is_what_docs_hardening_md_lists(tmp_path: Path) -> None:
    documented = {code(row[0]) for row in doc_table("### What systemd-analyze still counts")}
    found = counted(SERVICE.read_text(encoding="utf-8"), tmp_path)
    assert found == documented, (f"counted but not in docs/hardening.md: {sorted(found - documented)}; "
                                 f"listed there but no longer counted: {sorted(documented - found)}")


def test_control_removing_protect_system_shows_in_what_counts(tmp_path: Path) -> None:
    """Without ProtectSystem= the figure stays below 3.0 (2.0), but the list of counted checks changes."""
    documented = {code(row[0]) for row in doc_table("### What systemd-analyze still counts")}
    weaker = without({"ProtectSystem"})
    assert exposure(analyze(weaker, tmp_path / "a")) <= MAX_EXPOSURE
    assert "ProtectSystem=" in counted(weaker, tmp_path / "b") - documented


# ---- the service: its settings ----------------------------------------------------------------------------------


def test_the_unit_runs_the_agent_as_the_installer_lays_it_out() -> None:
    assert setting("Type") == "notify"
    assert (setting("User"), setting("Group")) == ("servicegate", "servicegate")
    assert setting("ExecStart") == f"{PROGRAM} --config {CONFIG} run"
    assert setting("ExecStopPost") == f"{PROGRAM} --config {CONFIG} examinations release"
    assert setting("Restart") == "on-failure"
    assert setting("KillMode") == "mixed"
    assert setting("WantedBy") == "multi-user.target"
    # The command lines are the agent's own: its parser takes them.
    run = build_parser().parse_args(shlex.split(setting("ExecStart"))[1:])
    assert (run.command, str(run.config)) == ("run", CONFIG)
    release = build_parser().parse_args(shlex.split(setting("ExecStopPost"))[1:])
    assert (release.command, release.exam_command, str(release.config)) == ("examinations", "release", CONFIG)


def seconds(value: str) -> float:
    """A systemd time span of one unit, as this unit writes them ("20s", "5min")."""
    match = re.fullmatch(r"(\d+)(s|min)", value)
    assert match is not None, f"unexpected time span {value!r}"
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


def test_systemd_waits_longer_than_the_agent_takes_to_stop() -> None:
    config = defaults()
    assert seconds(setting("TimeoutStopSec")) > config.daemon.shutdown_grace_s + config.tasks.grace_s
    assert seconds(setting("TimeoutStartSec")) >= 120  # restores (60 s each) run before READY=1


@pytest.mark.parametrize(("key", "value"), sorted(HARDENED.items()))
def test_the_sandbox_setting(key: str, value: str) -> None:
    assert setting(key) == value


def relaxations_in_the_unit() -> set[tuple[str, str]]:
    """(key, value) of each setting right below a `# RELAXED` comment (the comment may run on over more lines)."""
    relaxed: set[tuple[str, str]] = set()
    marked = False
    for line in SERVICE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("# RELAXED"):
            marked = True
        elif stripped.startswith("#"):
            continue
        elif marked:
            key, _, value = stripped.partition("=")
            assert key, f"a RELAXED comment above no setting: {stripped!r}"
            assert not stripped.startswith("["), f"a RELAXED comment above no setting: {stripped!r}"
            relaxed.add((key, value))
            marked = False
    return relaxed


def test_every_relaxation_is_marked_in_the_unit_and_has_its_row() -> None:
    documented = {(code(row[0]).rstrip("="), code(row[1])) for row in doc_table("## Relaxations")}
    in_unit = relaxations_in_the_unit()
    assert ("Delegate", "yes") in in_unit  # the parse itself works
    assert in_unit == documented, (f"marked in the unit, no row: {sorted(in_unit - documented)}; "
                                   f"a row, not so in the unit: {sorted(documented - in_unit)}")
    for key, value in in_unit:
        assert setting(key) == value


# ---- the service: systemd's own check ---------------------------------------------------------------------------


def verify(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on a copy whose commands run a program that exists (verify refuses a missing one;
    the installed unit is verified by tests/test_installer_real.py). The copy has a name of its own, so that drop-ins
    installed on this machine for servicegate.service are not read with it."""
    program = tmp_path / "servicegate"
    program.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    program.chmod(0o755)
    unit = tmp_path / "sg-unit-under-test.service"
    unit.write_text(text.replace(PROGRAM, str(program)), encoding="utf-8")
    return subprocess.run([systemd_tool("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True,
                          timeout=120)


def test_systemd_verify_reads_every_line(tmp_path: Path) -> None:
    result = verify(SERVICE.read_text(encoding="utf-8"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert not DROPPED.search(result.stderr), result.stderr


@pytest.mark.parametrize(("broken", "old", "new"), [
    ("a misspelt key", "ProtectSystem=strict", "ProtectSytem=strict"),
    ("a bad value", "ProtectSystem=strict", "ProtectSystem=stric"),
    ("a misspelt section", "[Install]", "[Instal]"),
])
def test_control_verify_exits_0_but_says_what_it_dropped(tmp_path: Path, broken: str, old: str, new: str) -> None:
    text = SERVICE.read_text(encoding="utf-8")
    assert old in text
    result = verify(text.replace(old, new), tmp_path)
    assert result.returncode == 0  # which is why the test above reads stderr too
    assert DROPPED.search(result.stderr), f"{broken}: {result.stderr!r}"


def test_control_verify_refuses_a_missing_program(tmp_path: Path) -> None:
    result = verify(SERVICE.read_text(encoding="utf-8").replace(PROGRAM, str(tmp_path / "missing")), tmp_path)
    assert result.returncode != 0
    assert "is not executable" in result.stderr


# ---- tmpfiles.d ---------------------------------------------------------------------------------------------------


def tmpfiles_lines() -> list[list[str]]:
    lines = TMPFILES.read_text(encoding="utf-8").splitlines()
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


def test_the_tmpfiles_entry_is_the_socket_folder() -> None:
    assert tmpfiles_lines() == [["d", "/run/servicegate", "0755", "servicegate", "servicegate", "-"]]


def stage_users(root: Path) -> tuple[int, int]:
    """A staged /etc/passwd and /etc/group with `servicegate`, which systemd-tmpfiles --root resolves the names
    from. As root (CI) another user, so that the chown is real; otherwise our own ids (a chown to them works)."""
    uid, gid = (4242, 4243) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(f"servicegate:x:{uid}:{gid}::/var/lib/servicegate:/usr/sbin/nologin\n",
                                         encoding="utf-8")
    (root / "etc" / "group").write_text(f"servicegate:x:{gid}:\n", encoding="utf-8")
    return uid, gid


def test_systemd_tmpfiles_makes_the_folder_for_the_service_user(tmp_path: Path) -> None:
    uid, gid = stage_users(tmp_path)
    result = subprocess.run([systemd_tool("systemd-tmpfiles"), "--create", f"--root={tmp_path}", str(TMPFILES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    folder = (tmp_path / "run" / "servicegate").stat()
    assert (oct(folder.st_mode & 0o7777), folder.st_uid, folder.st_gid) == (oct(0o755), uid, gid)


def test_control_systemd_tmpfiles_resolves_the_user_by_name(tmp_path: Path) -> None:
    """Without a servicegate user in the root, systemd-tmpfiles refuses the line and makes nothing."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n", encoding="utf-8")
    (tmp_path / "etc" / "group").write_text("root:x:0:\n", encoding="utf-8")
    result = subprocess.run([systemd_tool("systemd-tmpfiles"), "--create", f"--root={tmp_path}", str(TMPFILES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "servicegate" in result.stderr
    assert not (tmp_path / "run" / "servicegate").exists()


# ---- the consent UI's autostart entry -----------------------------------------------------------------------------


def desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive: Name, Name[de]
    parser.read_string(DESKTOP.read_text(encoding="utf-8"))
    assert parser.sections() == ["Desktop Entry"]
    return parser["Desktop Entry"]


def test_the_autostart_entry_starts_the_consent_ui() -> None:
    entry = desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Exec"] == f"{PROGRAM} ui"
    assert build_parser().parse_args(shlex.split(entry["Exec"])[1:]).command == "ui"
    assert entry["Name"] == "ServiceGate"
    assert entry["Name[de]"]
    assert entry["Comment"]
    assert entry["Comment[de]"] not in ("", entry["Comment"])
    assert (entry["X-GNOME-Autostart-enabled"], entry["NoDisplay"], entry["Terminal"]) == ("true", "true", "false")
    assert "Hidden" not in entry  # Hidden=true would turn the autostart off


def desktop_file_validate(path: Path) -> subprocess.CompletedProcess[str]:
    """desktop-file-validate (Debian package desktop-file-utils), when installed: make test does not install it."""
    validate = shutil.which("desktop-file-validate")
    if validate is None:
        pytest.skip("desktop-file-validate is not installed (Debian package desktop-file-utils)")
    return subprocess.run([validate, str(path)], capture_output=True, text=True, timeout=60)


def test_desktop_file_validate_accepts_the_entry() -> None:
    result = desktop_file_validate(DESKTOP)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (result.stdout + result.stderr).strip(), result.stdout + result.stderr  # not even a hint


def test_control_desktop_file_validate_refuses_a_bad_value(tmp_path: Path) -> None:
    broken = tmp_path / "servicegate-ui.desktop"
    broken.write_text(DESKTOP.read_text(encoding="utf-8").replace("Terminal=false", "Terminal=no"), encoding="utf-8")
    result = desktop_file_validate(broken)
    assert result.returncode != 0
    assert "Terminal" in result.stdout + result.stderr
