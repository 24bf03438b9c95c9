"""Screen sharing end to end on a real X display (Xvfb with openbox): the engineer opens an application-support session
at the real portal, the technologist claims it (disclaimer, full access) and the engineer authenticates; the engineer
asks for `share-screen`, the technologist confirms it; the agent's task becomes x11vnc on loopback, the agent's relay
connects out to the portal's relay port, and the engineer's VNC client (vncdotool, in this process) connects to the
portal's viewer port with the one-time password from `servicegate-portal engineer screen`.

It checks what the engineer sees (the shared screen's pixels are an `xwd` capture of the display, but for
the cursor x11vnc paints where it last saw the pointer), that in view-only mode the engineer's keys and pointer
change nothing on the display (xev, in a window with the focus, reports every key and button that reaches it;
xdotool reads the pointer), that once the technologist allows control they do (the positive control), and that
End session (the kill switch, what the banner's button does) disconnects the engineer and leaves no x11vnc
process.

The X server here admits every local client (Xvfb without -auth), so the agent's user needs no grant: on a console,
the consent UI grants it (docs/screen-sharing.md).
"""

from __future__ import annotations

import json
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from PIL import Image

from tests.agent_process import AgentProcess
from tests.portal_process import PortalProcess
from tests.test_connection import FAST_TELEMETRY, audit_events, device, enroll, wait_for
from tests.test_tasks_portal import active_session
from tests.test_ui_x11 import require, x_server

pytestmark = [pytest.mark.window_system,
              pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")]

DEVICE_ID = "ct-screen-1"
TOOLS = ("Xvfb", "openbox", "x11vnc", "xwd", "xev", "xdotool", "xlogo")
CURSOR_BOX = 32  # x11vnc paints the cursor into the picture a viewer without cursor support gets


@dataclass
class Console:
    env: dict[str, str]
    xev_log: Path
    xev_window: str

    def pointer(self) -> tuple[int, int]:
        out = subprocess.run(["xdotool", "getmouselocation", "--shell"], env=self.env, capture_output=True,
                             text=True, check=True).stdout
        values = dict(line.split("=", 1) for line in out.split())
        return int(values["X"]), int(values["Y"])

    def events(self) -> list[str]:
        """The key and button events xev's window got."""
        return [line.split()[0] for line in self.xev_log.read_text(errors="replace").splitlines()
                if line.startswith(("KeyPress", "ButtonPress"))]

    def xwd(self) -> Image.Image:
        data = subprocess.run(["xwd", "-root", "-silent"], env=self.env, capture_output=True, check=True).stdout
        return read_xwd(data)


def read_xwd(data: bytes) -> Image.Image:
    """An X window dump (XWDFile.h) of a TrueColor 24-bit screen, as RGB."""
    header = struct.unpack(">25I", data[:100])
    header_size, depth, width, height, byte_order, bits_per_pixel, bytes_per_line = (
        header[0], header[3], header[4], header[5], header[7], header[11], header[12])
    assert (depth, bits_per_pixel) == (24, 32), header
    pixels = data[header_size + header[19] * 12:]
    return Image.frombuffer("RGBX", (width, height), pixels, "raw", "BGRX" if byte_order == 0 else "XRGB",
                            bytes_per_line, 1).convert("RGB")


def differences(seen: Image.Image, truth: Image.Image) -> list[tuple[int, int]]:
    assert seen.size == truth.size
    a, b, width = seen.tobytes(), truth.tobytes(), seen.size[0]
    return [((i // 3) % width, (i // 3) // width) for i in range(0, len(a), 3) if a[i:i + 3] != b[i:i + 3]]


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    require(TOOLS)
    with x_server(["Xvfb", "-screen", "0", "1024x768x24", "-nolisten", "tcp"], tmp_path / "x.log") as env:
        windows = [subprocess.Popen(["xlogo", "-geometry", "320x240+40+40"], env=env)]
        xev_log = tmp_path / "xev.log"
        with xev_log.open("w") as out:
            windows.append(subprocess.Popen(["xev", "-geometry", "300x200+600+400", "-event", "keyboard", "-event",
                                             "button"], env=env, stdout=out, stderr=subprocess.STDOUT))
        try:
            window = wait_for("xev's window", lambda: subprocess.run(
                ["xdotool", "search", "--name", "Event Tester"], env=env, capture_output=True,
                text=True).stdout.split())
            subprocess.run(["xdotool", "windowactivate", "--sync", window[0], "mousemove", "100", "100"], env=env,
                           check=True)
            yield Console(env, xev_log, window[0])
        finally:
            for process in windows:
                process.terminate()
                process.wait(timeout=10)


@pytest.fixture
def agent(portal: PortalProcess, console: Console, tmp_path: Path) -> Iterator[AgentProcess]:
    process = device(tmp_path, "d" * 32, FAST_TELEMETRY + f'[screen]\ndisplay = "{console.env["DISPLAY"]}"\n')
    assert enroll(process, portal, DEVICE_ID).returncode == 0
    process.start()
    yield process
    process.stop()


def x11vnc_processes() -> list[int]:
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "x11vnc"]


def test_the_engineer_sees_the_console_controls_it_only_when_allowed_and_end_session_stops_it(
        portal: PortalProcess, agent: AgentProcess, console: Console, tmp_path: Path) -> None:
    from vncdotool import api  # twisted's reactor starts in a thread at the first connection

    assert agent.cli("access", "set", "full").returncode == 0  # the standing grant; lowered below
    session_id = active_session(portal, agent, DEVICE_ID, kind="application-support",
                                engineer=("E-21", "Kim Applications"), reason="protocol questions")
    asked = portal.run("engineer", "run-task", "--session", session_id, "--kind", "share-screen")
    assert asked.returncode == 0, asked.stdout + asked.stderr
    waiting = wait_for("the technologist's question", lambda: [
        t for t in agent.cli_json("task", "list") if t["kind"] == "share-screen" and t["state"] == "waiting"])
    assert not x11vnc_processes()  # nothing is shared before the technologist says so
    confirmed = agent.cli("task", "confirm", waiting[0]["id"])
    assert confirmed.returncode == 0, confirmed.stderr
    screen = json.loads(portal.cli("engineer", "screen", "--session-id", session_id, "--wait", "30"))
    assert screen["viewer"] == f"127.0.0.1::{screen['port']}"

    client = api.connect(screen["viewer"], password=screen["password"], timeout=30)
    try:
        client.captureScreen(str(tmp_path / "shared.png"))
        wrong = differences(Image.open(tmp_path / "shared.png").convert("RGB"), console.xwd())
        xs, ys = [px for px, _ in wrong] or [0], [py for _, py in wrong] or [0]
        # The cursor, and nothing else, differs: one cursor-sized spot (where x11vnc last saw the pointer).
        assert max(xs) - min(xs) < CURSOR_BOX, wrong[:10]
        assert max(ys) - min(ys) < CURSOR_BOX, wrong[:10]
        assert len(wrong) < CURSOR_BOX * CURSOR_BOX // 2

        # View-only: the session has full access, but the technologist has not allowed control.
        [share] = agent.cli_json("screen", "list")
        assert (share["control"], share["control_possible"]) == (False, True)
        client.mouseMove(750, 500)
        client.mousePress(1)
        client.keyPress("a")
        client.captureScreen(str(tmp_path / "after-view-only.png"))  # a round trip after the input
        assert console.pointer() == (100, 100)
        assert console.events() == []

        # The positive control: allowed, the same input reaches the console.
        assert agent.cli("screen", "control", "on").returncode == 0
        client.mouseMove(750, 500)
        client.mousePress(1)
        client.keyPress("a")
        client.captureScreen(str(tmp_path / "after-control.png"))
        wait_for("the engineer's input at the console", lambda: console.pointer() == (750, 500) and
                 "KeyPress" in console.events() and "ButtonPress" in console.events())

        # The technologist lowers the standing grant: the session drops to LIMITED, and control goes with it.
        assert agent.cli("access", "set", "permanent-limited").returncode == 0
        [share] = agent.cli_json("screen", "list")
        assert (share["control"], share["control_possible"]) == (False, False)
        events = console.events()
        client.mouseMove(200, 200)
        client.keyPress("b")
        client.captureScreen(str(tmp_path / "after-narrowing.png"))
        assert console.pointer() == (750, 500)
        assert console.events() == events
        refused = agent.cli("screen", "control", "on")
        assert "control needs full access" in refused.stderr

        # End session at the console: the kill switch.
        assert agent.cli("kill", "--reason", "done").returncode == 0
        wait_for("no x11vnc left", lambda: not x11vnc_processes())
        assert client.protocol is not None
        wait_for("the engineer's client disconnected", lambda: client.protocol.transport.disconnected)
    finally:
        if client.protocol is not None and not client.protocol.transport.disconnected:
            client.disconnect()

    records = {r["event"]: r for r in audit_events(agent) if r["event"].startswith("screen_")}
    assert records["screen_share_started"]["details"]["engineer_id"] == "E-21"
    changes = [r["details"] for r in audit_events(agent) if r["event"] == "screen_control_changed"]
    assert [(c["control"], c.get("why")) for c in changes] == [(True, None), (False, "the session lost full access")]
    ended = records["screen_share_ended"]["details"]
    assert ended["bytes_to_portal"] > 1024 * 768  # at least one full screen went out
    assert (ended["dropped"], ended["inputs"]) == (8, 13)  # a move, a click (down, up), a key (down, up) twice;
    # then a move and a key (down, up), dropped again
    shares = wait_for("the share ended at the portal", lambda: [
        s for s in portal.show(DEVICE_ID)["screens"] if s["state"] == "ended"])
    assert shares[0]["bytes_to_viewer"] > 1024 * 768



def test_the_portal_going_away_ends_the_share_and_stops_x11vnc(portal: PortalProcess, agent: AgentProcess,
                                                                console: Console) -> None:
    """A LIMITED application-support session: view-only at the server too (x11vnc -viewonly); then the portal stops
    (SIGTERM), and with its relay connection gone the agent ends the share and stops the VNC server."""
    session_id = active_session(portal, agent, DEVICE_ID, level="limited", kind="application-support",
                                engineer=("E-22", "Lee Apps"), reason="a question")
    assert portal.run("engineer", "run-task", "--session", session_id, "--kind", "share-screen").returncode == 0
    [task] = wait_for("the question", lambda: [t for t in agent.cli_json("task", "list") if t["state"] == "waiting"])
    assert agent.cli("task", "confirm", task["id"]).returncode == 0
    wait_for("the share", lambda: [s for s in agent.cli_json("screen", "list") if s["state"] == "sharing"])
    [pid] = x11vnc_processes()
    assert "-viewonly" in psutil.Process(pid).cmdline()  # no full access: the server itself takes no input
    refused = agent.cli("screen", "control", "on")
    assert refused.returncode != 0
    assert "control needs full access" in refused.stderr

    portal.stop()
    try:
        wait_for("no x11vnc left", lambda: not x11vnc_processes())
        ended = wait_for("the share's end", lambda: [
            r["details"] for r in audit_events(agent) if r["event"] == "screen_share_ended"])
        assert ended[0]["reason"].startswith(("the portal went away", "the engineer's viewer disconnected"))
        run = wait_for("the task's end", lambda: [t for t in agent.cli_json("task", "list")
                                                  if t["id"] == task["id"] and t["state"] != "running"])
        assert run[0]["state"] in ("stopped", "completed")
    finally:
        portal.start()

UNIT = Path(__file__).resolve().parents[1] / "installer" / "units" / "servicegate.service"


def unit_setting(key: str) -> str:
    return next(line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(f"{key}="))


def in_the_units_file_system(console: Console, binds: list[str], command: list[str]) -> int:
    """`command` in a mount namespace made as the unit's file-system settings make the service's: a private /tmp
    (PrivateTmp), empty /root and /home (ProtectHome, so no .Xauthority), and `binds` read-only from the host
    (BindReadOnlyPaths). In a network namespace of its own too, so that the X server's abstract socket (which the
    service reaches anyway: it shares the host's network) is out of reach and only the file-system socket counts:
    what an X server started with `-nolisten local` offers."""
    assert unit_setting("PrivateTmp") == "yes"
    assert unit_setting("ProtectHome") == "yes"
    steps = ["set -e"]
    for number, path in enumerate(binds):  # kept aside before the private /tmp hides them
        steps += [f"mkdir -p /run/sg-bind-{number}", f"mount --bind {path} /run/sg-bind-{number}"]
    steps += ["mount -t tmpfs tmpfs /tmp", "mount -t tmpfs tmpfs /root", "mount -t tmpfs tmpfs /home"]
    for number, path in enumerate(binds):
        steps += [f"mkdir -p {path}", f"mount --move /run/sg-bind-{number} {path}", f"mount -o remount,bind,ro {path}"]
    steps.append(" ".join(command))
    return subprocess.run(["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", "\n".join(steps)],
                          env={**console.env, "XAUTHORITY": "/root/.Xauthority"}, capture_output=True,
                          check=False).returncode


@pytest.mark.needs_root
def test_the_units_sandbox_reaches_the_console_display_through_its_bind_and_only_so(console: Console) -> None:
    require(("unshare", "xdpyinfo"))
    binds = unit_setting("BindReadOnlyPaths").split()
    assert "/tmp/.X11-unix" in binds
    probe = ["xdpyinfo", "-display", console.env["DISPLAY"]]
    assert in_the_units_file_system(console, binds, probe) == 0
    assert in_the_units_file_system(console, [], probe) != 0  # the control: the private /tmp alone hides the display
