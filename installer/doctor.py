"""`servicegate-install doctor`: is this installation healthy? Each check says OK, or what exactly to do.

It asks the installed agent (`servicegate status --json`, `servicegate audit verify --json`) instead of importing
it, and reads the configuration with agent.config, as the agent does.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.config import Config, load
from agent.errors import ConfigError
from installer import checks, service
from installer.install import read_record, release_complete
from installer.layout import UNIT_NAME, Layout

MB = 1024 * 1024
CERTIFICATE_WARN_DAYS = 14  # renewal happens at two thirds of the lifetime; this close to the end it has failed


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str  # what was found (OK) or what to do (not OK)
    skipped: bool = False  # not tried (acceptance), and `detail` says why


def examine(layout: Layout, now: datetime | None = None) -> list[Finding]:
    """Every check, in the order site IT would look; later checks need an answering agent."""
    now = now or datetime.now(UTC)
    found: list[Finding] = []

    def add(check: str, ok: bool, detail: str) -> None:
        found.append(Finding(check, ok, detail))

    target = layout.current.readlink() if layout.current.is_symlink() else None
    installed = target is not None and release_complete(layout.releases / target.name)
    add("program installed", installed, f"{layout.current} -> {target}" if installed else
        f"{layout.current} is missing or points to an incomplete release: run `servicegate-install install` (or "
        "`rollback`).")
    config: Config | None = None
    try:
        config = load(layout.agent_toml)
        add("configuration valid", True, str(layout.agent_toml))
    except ConfigError as exc:
        add("configuration valid", False, f"{exc}")
    active = service.is_active(layout)
    state = service.status(layout) if installed else None
    if active is not None:
        add("service running", active, f"systemd: {UNIT_NAME} is active" if active else
            f"{UNIT_NAME} is not running: `systemctl start {UNIT_NAME}`, and look at `journalctl -u {UNIT_NAME}`.")
    add("agent answers", state is not None, f"ServiceGate {state['agent_version']} answers on its control socket"
        if state else "no agent answers `servicegate status`: start the service (`systemctl start "
        f"{UNIT_NAME}`) and look at `journalctl -u {UNIT_NAME}`.")
    if config is not None:
        found.append(_socket(config.paths.control_socket))
        found.append(_disk(config))
    synced = checks.clock_synchronized()
    accepted = bool(read_record(layout).get("accept_unsynced_clock"))
    add("clock synchronised", synced or accepted, "the kernel reports a synchronised clock" if synced else
        "not synchronised by NTP, accepted at install (--accept-unsynced-clock: the clock is kept right another "
        "way)" if accepted else
        "the clock is not synchronised: set up NTP (`timedatectl set-ntp true`, or the site's time server).")
    if state is not None:
        found += _from_status(state, now)
        found.append(audit_check(layout))
    return found


def _socket(path: Path) -> Finding:
    try:
        info, parent = path.lstat(), path.parent.stat()
    except OSError as exc:
        return Finding("control socket", False, f"{path}: {exc.strerror}: the agent makes it when it starts; start "
                                                "the service.")
    problems = []
    if not stat.S_ISSOCK(info.st_mode):
        problems.append(f"{path} is not a socket: remove it and restart the service")
    elif info.st_mode & 0o777 != 0o666:
        problems.append(f"{path} has mode {info.st_mode & 0o777:04o}, not 0666 (roles come from peer credentials): "
                        "restart the service")
    if parent.st_mode & 0o777 != 0o755:
        problems.append(f"{path.parent} has mode {parent.st_mode & 0o777:04o}, not 0755: "
                        f"`chmod 0755 {path.parent}` (the tmpfiles entry makes it so at boot)")
    return Finding("control socket", not problems, "; ".join(problems) or f"{path}, 0666 in a 0755 folder")


def _disk(config: Config) -> Finding:
    need = config.telemetry.outbox_cap_mb * MB
    free = checks.free_bytes(config.paths.state_dir)
    ok = free >= need
    return Finding("disk space for the outbox", ok, f"{free // MB} MB free in {config.paths.state_dir}, the outbox "
                   f"may take {need // MB} MB" + ("" if ok else ": free some space, or lower [telemetry] "
                                                      "outbox_cap_mb"))


def _from_status(state: dict[str, Any], now: datetime) -> list[Finding]:
    portal = state.get("portal", {})
    found = []
    not_after = portal.get("certificate_not_after") or ""
    if not not_after:
        found.append(Finding("device certificate", False, f"{portal.get('error') or 'no certificate'}: enroll with "
                                                          "`servicegate enroll` (the vendor's letter has the values)."))
    else:
        end = datetime.fromisoformat(not_after)
        days = (end - now).days
        renew = portal.get("certificate_renew_at") or ""
        ok = days >= CERTIFICATE_WARN_DAYS
        found.append(Finding("device certificate", ok,
                             f"valid until {end:%Y-%m-%d}" + (f", renewed automatically from {renew[:10]}" if renew
                                                              else "") +
                             ("" if ok else f": {days} days left and not renewed; check the portal connection below, "
                                            "or enroll again")))
    connected = portal.get("state") == "connected"
    found.append(Finding("portal reachable", connected, f"connected to {portal.get('portal_url')}" if connected else
                         f"{portal.get('state')}: {portal.get('error') or 'no answer yet'}. Check that the firewall "
                         "lets this scanner reach the portal on TCP 443 (docs/deployment.md), and [portal] proxy_url."))
    sessions = state.get("sessions", [])
    held = bool(state.get("examination_block", {}).get("held")) or bool(state.get("examinations_blocked"))
    if sessions:
        found.append(Finding("examination block", True, f"{len(sessions)} session(s) open; the block follows them"))
    else:
        found.append(Finding("examination block", not held, "released (no session is active)" if not held else
                             "held although no session is active: `servicegate examinations release`, then tell the "
                             "vendor"))
    return found


def audit_check(layout: Layout, *, against_portal: bool = False) -> Finding:
    """`servicegate audit verify`; with `against_portal` also against the checkpoint heads the portal holds."""
    command = ["audit", "verify", *(["--against-portal"] if against_portal else [])]
    code, answer, output = service.ask_json(layout, *command, "--json")
    ok = code == 0 and bool(answer.get("ok"))
    check = "audit log agrees with the portal" if against_portal else "audit log verifies"
    return Finding(check, ok, f"{answer.get('records', '?')} records, chain and checkpoints intact"
                   + (", the checkpoint heads the portal holds match" if against_portal else "")
                   if ok else f"`servicegate {' '.join(command)}` says: {output.strip()[-400:]} — keep the log as it "
                              "is and tell the vendor's security contact.")


def report(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    return "\n".join(f"{'SKIP' if f.skipped else 'OK' if f.ok else 'FIX':<4} {f.check:<{width}}  {f.detail}"
                     for f in findings)

