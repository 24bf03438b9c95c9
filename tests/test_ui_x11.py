"""The consent UI on a real X display: Xvfb with the xcb platform and a window manager (openbox). The UI runs as its
own process (`python -m consent_ui`), as at the console, against a real agent with an active session: its banner
is on top of the other windows (`_NET_CLIENT_LIST_STACKING`, bottom to top, from xprop) and has the window
manager's "above" state; the global hotkey, pressed with xdotool while another window has the focus, ends the
session.

Xvfb, openbox, xdotool and xprop come from debian-packages.txt (make test installs them as root). In CI they must
be there: a missing tool fails these tests there instead of skipping them. Two real screens are not tested: Xvfb
gives Qt only one (docs/consent-ui.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess
from tests.test_connection import wait_for
from tests.test_kill_switch import full_session, kill_leftovers, make_agent

TOOLS = ("Xvfb", "openbox", "xdotool", "xprop")


def require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"missing {', '.join(missing)}: make test installs them (debian-packages.txt)")
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (run make test as root to install them)")


@pytest.fixture
def display(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An X server of its own (a free display number) with openbox managing it."""
    require_tools()
    number = next(n for n in range(90, 190) if not Path(f"/tmp/.X11-unix/X{n}").exists()
                  and not Path(f"/tmp/.X{n}-lock").exists())
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x800x24", "+extension", "RANDR",
                               "-nolisten", "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**os.environ, "DISPLAY": f":{number}", "QT_QPA_PLATFORM": "xcb"}
    wait_for("the X server", lambda: Path(f"/tmp/.X11-unix/X{number}").exists(), timeout_s=20)
    manager = subprocess.Popen(["openbox"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("the window manager", lambda: "_NET_SUPPORTING_WM_CHECK(WINDOW)" in xprop(env, "-root"), timeout_s=20)
    yield env
    for process in (manager, server):
        process.terminate()
        process.wait(timeout=10)


def xprop(env: dict[str, str], *args: str) -> str:
    return subprocess.run(["xprop", *args], env=env, capture_output=True, text=True, timeout=10).stdout


def window_ids(env: dict[str, str], name: str) -> list[int]:
    found = subprocess.run(["xdotool", "search", "--name", name], env=env, capture_output=True, text=True,
                           timeout=10).stdout.split()
    return [int(w) for w in found]


def stacking(env: dict[str, str]) -> list[int]:
    line = xprop(env, "-root", "_NET_CLIENT_LIST_STACKING")
    return [int(w, 16) for w in line.split("#", 1)[1].replace(",", " ").split()] if "#" in line else []


@pytest.fixture
def ui_and_agent(display: dict[str, str], tmp_path: Path) -> Iterator[tuple[dict[str, str], AgentProcess, str]]:
    agent, _, pids = make_agent(tmp_path, cgroups=False)
    agent.start()
    with (tmp_path / "ui.log").open("wb") as log:
        ui = subprocess.Popen([sys.executable, "-m", "consent_ui", "--socket", str(agent.socket), "--hotkey",
                               "Ctrl+Alt+End"], env=display, stdout=log, stderr=subprocess.STDOUT)
    try:
        session_id = full_session(agent)
        yield display, agent, session_id
    finally:
        ui.send_signal(signal.SIGTERM)
        try:
            ui.wait(timeout=10)
        except subprocess.TimeoutExpired:
            ui.kill()
        agent.stop()
        kill_leftovers(pids)


def test_the_banner_stays_above_other_windows_and_the_hotkey_ends_the_session(
        ui_and_agent: tuple[dict[str, str], AgentProcess, str]) -> None:
    env, agent, session_id = ui_and_agent
    [banner] = wait_for("the banner window", lambda: window_ids(env, "ServiceGate banner"), timeout_s=30)
    [launcher] = wait_for("the ServiceGate window", lambda: window_ids(env, "ServiceGate remote service"))
    # Another window takes the focus and is raised: the banner stays above it.
    subprocess.run(["xdotool", "windowactivate", "--sync", str(launcher)], env=env, timeout=10, check=False)
    subprocess.run(["xdotool", "windowraise", str(launcher)], env=env, timeout=10, check=True)
    time.sleep(0.5)  # the window manager restacks asynchronously; nothing to wait on but the order itself
    order = wait_for("both windows in the stacking order",
                     lambda: stacking(env) if {banner, launcher} <= set(stacking(env)) else None)
    assert order.index(banner) > order.index(launcher), order
    assert "_NET_WM_STATE_ABOVE" in xprop(env, "-id", str(banner), "_NET_WM_STATE")
    # The global hotkey, pressed while the ServiceGate window (not the banner) has the focus, ends the session.
    subprocess.run(["xdotool", "key", "ctrl+alt+End"], env=env, timeout=10, check=True)
    ended = wait_for("the session ended by the hotkey", lambda: next(
        (s for s in agent.cli_json("session", "list") if s["id"] == session_id and s["state"] == "ended"), None),
        timeout_s=30)
    assert ended["end_reason"] == "killed"
    assert agent.cli_json("access", "show")["level"] == "no-access"
    wait_for("the banner gone", lambda: not window_ids(env, "ServiceGate banner"), timeout_s=20)
