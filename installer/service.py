"""The installed service: systemd (when it runs here), and the installed agent, asked through its own command line
(`servicegate status --json`), never imported: it may be another version than this installer."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from installer.layout import UNIT_NAME, UPGRADE_PATH_UNIT, Layout
from installer.steps import Say, clean_env, run

ASK_TIMEOUT_S = 60


def systemd_running() -> bool:
    """sd_booted(): PID 1 is systemd."""
    return Path("/run/systemd/system").is_dir()


def managed(layout: Layout) -> bool:
    """systemd runs the service here: a real root, systemd as PID 1."""
    return layout.root == Path("/") and systemd_running() and shutil.which("systemctl") is not None


def activate(layout: Layout, say: Say, *, changed: bool) -> bool:
    """Reload the units, make /run/servicegate, enable and start the service: restarted only when this run changed
    something (a restart ends an open session). False when systemd does not run here (a container, a staging root):
    the summary then says how to start it."""
    if not managed(layout):
        return False
    if changed or not is_active(layout):
        run(["systemctl", "daemon-reload"])
        run(["systemd-tmpfiles", "--create", str(layout.unit_file("servicegate.conf"))])
        run(["systemctl", "enable", UNIT_NAME, UPGRADE_PATH_UNIT])
        run(["systemctl", "restart" if changed else "start", UNIT_NAME])
        run(["systemctl", "start", UPGRADE_PATH_UNIT])
        say(f"  done: enabled and started {UNIT_NAME}")
    return True


def restart(layout: Layout) -> bool:
    """Reload the units (an upgrade may bring new ones) and restart the service."""
    if not managed(layout):
        return False
    run(["systemctl", "daemon-reload"])
    run(["systemctl", "restart", UNIT_NAME])
    return True


def stop_and_disable(layout: Layout) -> bool:
    """Stop and disable the units that are still installed (a second uninstall finds none); then reload."""
    if not managed(layout):
        return False
    units = [unit for unit in (UPGRADE_PATH_UNIT, UNIT_NAME) if layout.unit_file(unit).exists()]
    if units:
        subprocess.run(["systemctl", "disable", "--now", *units], capture_output=True, check=False)
    return True


def reload(layout: Layout) -> None:
    if managed(layout):
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True, check=False)


def is_active(layout: Layout) -> bool | None:
    """systemd's word on the service; None when systemd does not run here."""
    if not managed(layout):
        return None
    return subprocess.run(["systemctl", "is-active", "--quiet", UNIT_NAME], check=False).returncode == 0


def ask(layout: Layout, *args: str, program: Path | None = None) -> tuple[int, str]:
    """Run the installed `servicegate --config agent.toml ARGS...`; its exit code and output (stdout, then
    stderr)."""
    argv = [str(program or layout.program()), "--config", str(layout.agent_toml), *args]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=ASK_TIMEOUT_S,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return result.returncode, result.stdout + result.stderr


def ask_json(layout: Layout, *args: str) -> tuple[int, dict[str, Any], str]:
    """`ask` for a command that answers JSON (`args` include --json): its exit code, the answer ({} when it is not a
    JSON object) and the output as it came (for the message when something is wrong)."""
    code, output = ask(layout, *args)
    try:
        answer = json.loads(output)
    except ValueError:
        answer = {}
    return code, answer if isinstance(answer, dict) else {}, output


def status(layout: Layout) -> dict[str, Any] | None:
    """`servicegate status --json` of the running agent; None when no agent answers."""
    code, answer, _output = ask_json(layout, "status", "--json")
    return answer if code == 0 and answer else None


def agent_processes(layout: Layout) -> list[int]:
    """Pids of `servicegate ... run` processes started from this installation (read from /proc: no psutil here)."""
    found = []
    prefix = str(layout.opt)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [word.decode(errors="replace") for word in argv if word]
        if words and "run" in words[1:] and any(word.startswith(prefix) for word in words[:2]):
            found.append(int(entry.name))
    return found
