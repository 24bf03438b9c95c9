"""The consent UI on a real X display with the xcb platform and a window manager (openbox). The UI runs as its own
process (`python -m consent_ui`), as at the console, against a real agent with an active session.

- On Xvfb: the banner is on top of the other windows (`_NET_CLIENT_LIST_STACKING`, bottom to top, from xprop) and
  has the window manager's "above" state; the global hotkey, pressed with xdotool while another window has the
  focus, ends the session.
- On two screens: Xvfb cannot give Qt two (its Xinerama heads overlap and it ignores RandR monitors), so this test
  runs Xorg with the dummy video driver, whose RandR outputs are real screens to Qt (and two Xinerama heads to
  xdpyinfo). A banner is on each screen, covering its top edge; a banner moved away comes back; when a screen
  goes (xrandr --off) its banner goes, and when it comes back, so does its banner.

Xvfb, Xorg with the dummy driver, openbox, xdotool, xprop and xrandr come from debian-packages.txt (make test
installs them as root; Xorg runs only as root). In CI they must be there: a missing tool fails these tests there
instead of skipping them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from tests.agent_process import AgentProcess
from tests.portal_process import PortalProcess
from tests.test_connection import wait_for
from tests.test_kill_switch import full_session, kill_leftovers, make_agent

pytestmark = pytest.mark.window_system  # make test runs these in a pytest run of their own

TOOLS = ("Xvfb", "openbox", "xdotool", "xprop")
TRAY_TOOLS = ("trayer", "xwininfo")
TWO_SCREEN_TOOLS = ("Xorg", "xrandr")
DUMMY_DRIVER = Path("/usr/lib/xorg/modules/drivers/dummy_drv.so")

# Xorg with the dummy driver: one X screen whose RandR outputs DUMMY0..DUMMY15 can each be a monitor.
XORG_CONF = """
Section "ServerFlags"
    Option "AutoAddDevices" "false"
    Option "AutoAddGPU" "false"
    Option "DontVTSwitch" "true"
EndSection
Section "Device"
    Identifier "card"
    Driver "dummy"
    VideoRam 64000
EndSection
Section "Monitor"
    Identifier "monitor"
    HorizSync 5.0-1000.0
    VertRefresh 5.0-200.0
EndSection
Section "Screen"
    Identifier "screen"
    Device "card"
    Monitor "monitor"
    DefaultDepth 24
    SubSection "Display"
        Depth 24
        Modes "1280x800"
    EndSubSection
EndSection
"""
HOTKEY = "Ctrl+Shift+End"  # the agent's [console] hotkey, which the UI takes from the agent (not the default)
SECOND = ["--output", "DUMMY1", "--mode", "1024x768", "--right-of", "DUMMY0"]


def require(tools: tuple[str, ...], *, root: bool = False) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if "Xorg" in tools and not DUMMY_DRIVER.exists():
        missing.append("the Xorg dummy driver (xserver-xorg-video-dummy)")
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"missing {', '.join(missing)}: make test installs them (debian-packages.txt)")
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (run make test as root to install them)")
    if root and os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("Xorg with the dummy driver runs only as root here: run the tests as root in CI")
        pytest.skip("Xorg with the dummy driver runs only as root")


@contextlib.contextmanager
def x_server(command: list[str], log: Path) -> Iterator[dict[str, str]]:
    """An X server started with `command`, which picks a free display itself (-displayfd: no race with another
    test run on this machine), once it answers, with openbox managing it (their output in `log`). Once in a CI run
    openbox could not open a display the server had just announced (the server had gone, saying nothing): such a
    start is tried once more, and the second failure fails the test with both logs."""
    try:
        with _x_server(command, log) as env:
            yield env
            return
    except _NotStarted as first:
        with _x_server(command, log.with_suffix(".again")) as env:
            log.write_text(f"{first}\n(started again)\n")
            yield env


class _NotStarted(Exception):
    pass


@contextlib.contextmanager
def _x_server(command: list[str], log: Path) -> Iterator[dict[str, str]]:
    read, write = os.pipe()
    with log.open("wb") as out:
        server = subprocess.Popen([*command, "-displayfd", str(write)], stdout=out, stderr=subprocess.STDOUT,
                                  pass_fds=(write,))
    os.close(write)
    manager = None
    try:
        with os.fdopen(read) as displayfd:
            number = displayfd.readline().strip()  # written when the server accepts connections
        assert number.isdigit(), f"the X server did not start: {log.read_text(errors='replace')}"
        env = {**os.environ, "DISPLAY": f":{number}", "QT_QPA_PLATFORM": "xcb"}
        with log.open("ab") as out:
            manager = subprocess.Popen(["openbox"], env=env, stdout=out, stderr=subprocess.STDOUT)
        started = manager

        def managing() -> bool:
            if started.poll() is not None:
                raise _NotStarted(f"openbox ended (the X server {'runs' if server.poll() is None else 'ended'}): "
                                  f"{log.read_text(errors='replace')}")
            return "_NET_SUPPORTING_WM_CHECK(WINDOW)" in xprop(env, "-root")

        wait_for("the window manager", managing, timeout_s=30)
        yield env
    finally:
        for process in (manager, server):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)


@pytest.fixture
def display(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Xvfb, one screen."""
    require(TOOLS)
    with x_server(["Xvfb", "-screen", "0", "1280x800x24", "+extension", "RANDR", "-nolisten", "tcp"],
                  tmp_path / "x.log") as env:
        yield env


@pytest.fixture
def two_screens(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Xorg with the dummy driver: 1280x800 and, right of it, 1024x768."""
    require(TOOLS + TWO_SCREEN_TOOLS, root=True)
    (tmp_path / "xorg.conf").write_text(XORG_CONF)
    with x_server(["Xorg", "-config", str(tmp_path / "xorg.conf"), "-noreset", "-nolisten", "tcp", "-novtswitch",
                   "-sharevts", "-logfile", str(tmp_path / "xorg.log")], tmp_path / "x.log") as env:
        xrandr(env, "--addmode", "DUMMY1", "1024x768")
        xrandr(env, *SECOND)
        yield env


def xrandr(env: dict[str, str], *args: str) -> None:
    subprocess.run(["xrandr", *args], env=env, capture_output=True, text=True, timeout=20, check=True)


def xprop(env: dict[str, str], *args: str) -> str:
    return subprocess.run(["xprop", *args], env=env, capture_output=True, text=True, timeout=10).stdout


def window_ids(env: dict[str, str], name: str) -> list[int]:
    found = subprocess.run(["xdotool", "search", "--name", name], env=env, capture_output=True, text=True,
                           timeout=10).stdout.split()
    return [int(w) for w in found]


def geometry(env: dict[str, str], window: int) -> tuple[int, int, int, int]:
    """x, y, width, height of a window (xdotool)."""
    shell = subprocess.run(["xdotool", "getwindowgeometry", "--shell", str(window)], env=env, capture_output=True,
                           text=True, timeout=10).stdout
    values = dict(line.split("=", 1) for line in shell.split())
    return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


def banner_places(env: dict[str, str]) -> list[tuple[int, int, int]]:
    """x, y and width of every banner window, left to right."""
    return sorted(geometry(env, window)[:3] for window in window_ids(env, "ServiceGate banner"))


def visible(env: dict[str, str], name: str) -> bool:
    return subprocess.run(["xdotool", "search", "--onlyvisible", "--name", name], env=env, capture_output=True,
                          text=True, timeout=10).stdout.strip() != ""


def tray_icons(env: dict[str, str]) -> list[tuple[int, int, int, int, str]]:
    """x, y, width, height (on the screen) and xwininfo's line of the windows in trayer's panel (`xwininfo -root
    -tree`): for each icon, trayer's socket window, then the icon's own window in it."""
    tree = subprocess.run(["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True,
                          timeout=10).stdout.splitlines()
    icons = []
    for number, line in enumerate(tree):
        if '("panel" "trayer")' not in line:
            continue
        depth = len(line) - len(line.lstrip())
        for child in tree[number + 1:]:
            if child.strip() and len(child) - len(child.lstrip()) <= depth:
                break
            if found := re.search(r"(\d+)x(\d+)[+-]-?\d+[+-]-?\d+\s+\+(-?\d+)\+(-?\d+)\s*$", child):
                width, height, x, y = (int(v) for v in found.groups())
                if width > 1 and height > 1:  # not trayer's own 1x1 helper windows
                    icons.append((x, y, width, height, child))
    return icons


def stacking(env: dict[str, str]) -> list[int]:
    line = xprop(env, "-root", "_NET_CLIENT_LIST_STACKING")
    return [int(w, 16) for w in line.split("#", 1)[1].replace(",", " ").split()] if "#" in line else []


@contextlib.contextmanager
def ui_with_session(env: dict[str, str], tmp_path: Path, *,
                    session: bool = True) -> Iterator[tuple[dict[str, str], AgentProcess, str]]:
    """A real agent with an active FULL session (unless `session` is False) and the UI as its own process on `env`'s
    display."""
    agent, _, pids = make_agent(tmp_path, cgroups=False, more_config=f'[console]\nhotkey = "{HOTKEY}"\n')
    agent.start()
    with (tmp_path / "ui.log").open("wb") as log:
        ui = subprocess.Popen([sys.executable, "-m", "consent_ui", "--socket", str(agent.socket)], env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        yield env, agent, full_session(agent) if session else ""
    finally:
        ui.send_signal(signal.SIGTERM)
        try:
            ui.wait(timeout=10)
        except subprocess.TimeoutExpired:
            ui.kill()
        agent.stop()
        kill_leftovers(pids)


@pytest.fixture
def ui_and_agent(display: dict[str, str], tmp_path: Path) -> Iterator[tuple[dict[str, str], AgentProcess, str]]:
    with ui_with_session(display, tmp_path) as running:
        yield running


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
    # The global hotkey of the agent's configuration, pressed while the ServiceGate window (not the banner) has the
    # focus, ends the session.
    subprocess.run(["xdotool", "key", "ctrl+shift+End"], env=env, timeout=10, check=True)
    ended = wait_for("the session ended by the hotkey", lambda: next(
        (s for s in agent.cli_json("session", "list") if s["id"] == session_id and s["state"] == "ended"), None),
        timeout_s=30)
    assert ended["end_reason"] == "killed"
    assert agent.cli_json("access", "show")["level"] == "no-access"
    wait_for("the banner gone", lambda: not window_ids(env, "ServiceGate banner"), timeout_s=20)


def test_a_banner_on_each_of_two_screens_that_follows_the_screens(two_screens: dict[str, str],
                                                                   tmp_path: Path) -> None:
    with ui_with_session(two_screens, tmp_path) as (env, agent, _):
        assert "head #1: 1024x768 @ 1280,0" in subprocess.run(["xdpyinfo", "-ext", "XINERAMA"], env=env,
                                                              capture_output=True, text=True, timeout=10).stdout
        places = wait_for("a banner on each screen", lambda: banner_places(env) if len(banner_places(env)) == 2
                          else None, timeout_s=30)
        assert places == [(0, 0, 1280), (1280, 0, 1024)]
        for window in window_ids(env, "ServiceGate banner"):
            assert "_NET_WM_STATE_ABOVE" in xprop(env, "-id", str(window), "_NET_WM_STATE")
        # Moved away (by a program, or a window manager's keyboard move), a banner comes back to its screen's top.
        left = next(w for w in window_ids(env, "ServiceGate banner") if geometry(env, w)[0] == 0)
        subprocess.run(["xdotool", "windowmove", str(left), "200", "500"], env=env, timeout=10, check=True)
        wait_for("the moved banner back at the top", lambda: geometry(env, left)[:2] == (0, 0))
        # The second screen goes: its banner goes with it; it comes back: so does a banner on it.
        xrandr(env, "--output", "DUMMY1", "--off")
        wait_for("one banner for one screen", lambda: banner_places(env) == [(0, 0, 1280)], timeout_s=30)
        xrandr(env, *SECOND)
        wait_for("a banner on the screen that came back",
                 lambda: banner_places(env) == [(0, 0, 1280), (1280, 0, 1024)], timeout_s=30)
        assert agent.cli_json("session", "list")[-1]["state"] == "active"


def test_the_tray_icon_sits_in_the_desktops_tray_and_opens_the_windows(display: dict[str, str],
                                                                        tmp_path: Path) -> None:
    """With a tray (trayer, the XEmbed system tray), the UI shows its icon there instead of its small window; a left
    click opens the window, and the right-click menu is worked with the keyboard."""
    require(TRAY_TOOLS)
    with (tmp_path / "trayer.log").open("wb") as log:
        host = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype", "request",
                                 "--height", "32"], env=display, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("the tray's panel", lambda: any('("panel" "trayer")' in line for line in subprocess.run(
            ["xwininfo", "-root", "-tree"], env=display, capture_output=True, text=True, timeout=10).stdout
            .splitlines()), timeout_s=20)
        with ui_with_session(display, tmp_path, session=False) as (env, _, _):
            wait_for("the ServiceGate icon in the tray", lambda: len(tray_icons(env)) == 2, timeout_s=30)
            assert '("servicegate-ui" ' in tray_icons(env)[-1][4]  # the icon's window is the UI's (its X class)
            assert not visible(env, "ServiceGate remote service")  # the tray stands in for the small window

            def middle() -> list[str]:  # where the icon is now (the panel resizes and moves as icons arrive)
                x, y, width, height, _ = tray_icons(env)[-1]
                return [str(x + width // 2), str(y + height // 2)]

            def left_click() -> bool:  # again until the icon, embedded asynchronously, takes it
                subprocess.run(["xdotool", "mousemove", *middle(), "click", "1"], env=env, timeout=10, check=True)
                return visible(env, "ServiceGate remote service")

            wait_for("the small window after a left click", left_click, timeout_s=30)
            subprocess.run(["xdotool", "mousemove", *middle(), "click", "3"], env=env, timeout=10, check=True)
            time.sleep(0.5)  # the menu maps asynchronously; nothing to wait on but the keys' effect below
            subprocess.run(["xdotool", "key", "Down", "Down", "Down", "Down", "Return"], env=env, timeout=10,
                           check=True)  # the fourth item
            wait_for("the audit log from the tray's menu", lambda: visible(env, "ServiceGate audit log"))
    finally:
        host.terminate()
        host.wait(timeout=10)


def test_the_xcb_platform_plugin_finds_every_library_it_needs() -> None:
    """What debian-packages.txt installs for Qt's xcb plugin: `ldd` finds each of its libraries."""
    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    assert plugin.exists(), plugin
    linked = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=30, check=True).stdout
    missing = [line.split()[0] for line in linked.splitlines() if "not found" in line]
    assert missing == [], f"add their Debian packages to debian-packages.txt: {missing}"


# ---- the X server admits the agent's user (consent_ui.xaccess): screen sharing ---------------------------------------

GRANT_TOOLS = ("Xvfb", "openbox", "xprop", "xhost", "xauth", "mcookie", "xdpyinfo")


@pytest.fixture
def guarded_display(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Xvfb WITH access control (-auth): only clients that hold its cookie get in. -displayfd chooses the display
    number, so the cookie is written for any display (xauth's wildcard family ffff, no address, no number). The
    environment (and so openbox, which x_server starts with os.environ) has XAUTHORITY."""
    require(GRANT_TOOLS)
    cookie = tmp_path / "xauthority"
    secret = subprocess.run(["mcookie"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    subprocess.run(["xauth", "-q", "-f", str(cookie), "nmerge", "-"], timeout=10, check=True, text=True,
                   input=f"ffff 0000  0000  0012 {b'MIT-MAGIC-COOKIE-1'.hex()} 0010 {secret}\n",
                   capture_output=True)
    monkeypatch.setenv("XAUTHORITY", str(cookie))
    with x_server(["Xvfb", "-screen", "0", "1280x800x24", "-nolisten", "tcp", "-auth", str(cookie)],
                  tmp_path / "x.log") as env:
        yield env


def xhost_list(env: dict[str, str]) -> list[str]:
    shown = subprocess.run(["xhost"], env=env, capture_output=True, text=True, timeout=10, check=True).stdout
    return [line.strip() for line in shown.splitlines()]


def agent_socket_of(user: str, folder: Path) -> Path:
    """A Unix socket owned by `user`, as the agent's control socket is by the agent's user (nobody listens)."""
    import pwd
    import socket as sockets

    path = folder / "control.sock"
    with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as made:
        made.bind(str(path))
    entry = pwd.getpwnam(user)
    if os.geteuid() == 0:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def connects_without_cookie(env: dict[str, str], user: str) -> bool:
    """Whether a client running as `user`, without the display's cookie, is let in (xdpyinfo)."""
    as_user = ["runuser", "-u", user, "--"] if os.geteuid() == 0 and user != "root" else []
    bare = {"PATH": os.environ["PATH"], "DISPLAY": env["DISPLAY"], "XAUTHORITY": "/nonexistent/xauthority"}
    return subprocess.run([*as_user, "xdpyinfo"], env=bare, capture_output=True, text=True,
                          timeout=20).returncode == 0


def test_the_ui_alone_does_not_admit_the_agents_user_to_the_display(guarded_display: dict[str, str],
                                                                    tmp_path: Path) -> None:
    """The UI on X11 admits the agent's user (the owner of the control socket) only for a share the technologist
    allowed (below): while it merely runs, and after it quits (SIGTERM, as at logout), the agent's user is refused.
    Run as root the agent's user is `nobody` and its client runs as nobody (runuser), without the cookie; otherwise
    it is this user, whose client goes without the cookie."""
    env = guarded_display
    user = "nobody" if os.geteuid() == 0 else __import__("pwd").getpwuid(os.geteuid()).pw_name
    socket = agent_socket_of(user, tmp_path)
    assert "access control enabled, only authorized clients can connect" in xhost_list(env)
    # The controls: without the cookie, the agent's user is refused; with it (the console user's UI), a client is in.
    assert not connects_without_cookie(env, user)
    assert subprocess.run(["xdpyinfo"], env=env, capture_output=True, timeout=20).returncode == 0
    runtime = tmp_path / "runtime"  # the one-UI-per-session lock of its own (a UI of `make demo` may be running)
    runtime.mkdir(mode=0o700)
    with (tmp_path / "ui.log").open("wb") as log:
        ui = subprocess.Popen([sys.executable, "-m", "consent_ui", "--socket", str(socket)],
                              env={**env, "XDG_RUNTIME_DIR": str(runtime)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("the ServiceGate window", lambda: window_ids(env, "ServiceGate remote service"), timeout_s=30)
        time.sleep(1)  # what it would do at start it has done: nothing to wait on but its absence
        assert f"SI:localuser:{user}" not in xhost_list(env)
        assert not connects_without_cookie(env, user)
    finally:
        ui.send_signal(signal.SIGTERM)
        try:
            code = ui.wait(timeout=20)
        except subprocess.TimeoutExpired:
            ui.kill()
            raise
    output = (tmp_path / "ui.log").read_text(errors="replace")
    assert code == -signal.SIGTERM, output  # it ends at once, as before
    assert f"SI:localuser:{user}" not in xhost_list(env), output
    assert "admits" not in output


def test_a_grant_that_was_there_before_the_ui_is_left_and_failures_are_warnings(
        guarded_display: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from consent_ui import xaccess

    env = guarded_display
    user = "nobody" if os.geteuid() == 0 else __import__("pwd").getpwuid(os.geteuid()).pw_name
    socket = agent_socket_of(user, tmp_path)
    assert xaccess.socket_owner(socket) == user
    subprocess.run(["xhost", f"+si:localuser:{user}"], env=env, capture_output=True, timeout=10, check=True)
    access = xaccess.AgentAccess(socket, env)
    assert access.grant("t-1")
    assert access.granted is None
    access.release("t-1")
    access.revoke()
    assert f"SI:localuser:{user}" in xhost_list(env)
    subprocess.run(["xhost", f"-si:localuser:{user}"], env=env, capture_output=True, timeout=10, check=True)
    # Granted by this UI: held per task, taken back with the last one; a task released twice changes nothing.
    access = xaccess.AgentAccess(socket, env)
    assert access.grant("t-1")
    assert access.granted == user
    assert access.grant("t-2")
    assert f"SI:localuser:{user}" in xhost_list(env)
    access.release("t-1")
    access.release("t-1")
    assert f"SI:localuser:{user}" in xhost_list(env)  # t-2 still shares
    access.release("t-2")
    assert f"SI:localuser:{user}" not in xhost_list(env)
    assert access.grant("t-3")
    access.revoke()  # the agent gone, the UI's end: every task's
    assert f"SI:localuser:{user}" not in xhost_list(env)
    assert access.tasks == set()
    # No agent socket yet, no display, no xhost: a warning each, and no grant (the UI goes on).
    caplog.set_level("WARNING", logger="servicegate.ui.xaccess")
    assert not xaccess.AgentAccess(tmp_path / "missing.sock", env).grant("t-4")
    assert not xaccess.AgentAccess(socket, {**env, "DISPLAY": ":9999"}).grant("t-4")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not xaccess.AgentAccess(socket, env).grant("t-4")
    warnings = " | ".join(record.getMessage() for record in caplog.records)
    for said in ("is not known", "could not admit", "xhost is not installed"):
        assert said in warnings, warnings


# ---- the grant lasts from the technologist's Allow to the share's end ------------------------------------------------

SHARE_DEVICE = "ct-4002"


def test_the_agents_user_is_admitted_from_allowing_a_share_to_its_end(
        guarded_display: dict[str, str], portal: PortalProcess, tmp_path: Path, qtbot: QtBot) -> None:
    """A real agent and portal, the UI's Console in this process (the offscreen platform) with the X grant on the
    guarded display: in an application-support session the engineer asks for `share-screen`; the question opens by
    itself; Allow admits the agent's user right before `task_confirm` is sent; End session ends the share, and the
    grant is taken back. The agent runs as this user (the owner of its socket), whose client goes without the
    cookie."""
    from consent_ui import xaccess
    from consent_ui.app import Console
    from consent_ui.link import AgentLink
    from consent_ui.task_dialog import TaskDialog
    from tests.test_connection import device, enroll
    from tests.test_tasks_portal import active_session

    env = guarded_display
    agent = device(tmp_path, "d" * 32, f'[screen]\ndisplay = "{env["DISPLAY"]}"\n')
    assert enroll(agent, portal, SHARE_DEVICE).returncode == 0
    agent.start()
    user = xaccess.socket_owner(agent.socket)
    link = AgentLink(agent.socket)
    grant = xaccess.AgentAccess(agent.socket, env)
    console = Console(link, x_grant=grant)
    qtbot.addWidget(console.launcher)
    link.start()
    try:
        qtbot.waitUntil(lambda: console.up and bool(console.status) and console.catalog is not None, timeout=20_000)
        assert agent.cli("access", "set", "full").returncode == 0
        session_id = active_session(portal, agent, SHARE_DEVICE, kind="application-support",
                                    engineer=("E-21", "Kim Applications"), reason="protocol questions")
        assert f"SI:localuser:{user}" not in xhost_list(env)  # the UI merely runs, a session is active
        assert not connects_without_cookie(env, user)
        asked = portal.run("engineer", "run-task", "--session", session_id, "--kind", "share-screen")
        assert asked.returncode == 0, asked.stdout + asked.stderr
        qtbot.waitUntil(lambda: bool(console.task_dialogs), timeout=20_000)
        [dialog] = console.task_dialogs.values()
        assert isinstance(dialog, TaskDialog)
        assert dialog.isVisible()
        assert dialog.question.screen
        assert f"SI:localuser:{user}" not in xhost_list(env)  # asked, not yet allowed
        dialog.allow_button.click()  # the grant, then `task_confirm` (sent in the background)
        assert f"SI:localuser:{user}" in xhost_list(env)
        assert connects_without_cookie(env, user)  # x11vnc, as the agent's user, can open the display
        qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=20_000)
        assert grant.tasks == {dialog.task_id}
        [run] = [t for t in agent.cli_json("task", "list") if t["id"] == dialog.task_id]
        assert run["state"] == "running", run
        assert f"SI:localuser:{user}" in xhost_list(env)  # while the share runs
        # End session: the share's task stops, and the agent's user is refused again.
        console.end_session()
        qtbot.waitUntil(lambda: f"SI:localuser:{user}" not in xhost_list(env), timeout=30_000)
        assert not connects_without_cookie(env, user)
        stopped = [t for t in agent.cli_json("task", "list") if t["id"] == dialog.task_id]
        assert stopped[0]["state"] not in ("waiting", "running"), stopped
    finally:
        link.stop()
        console.close()
        link.deleteLater()
        agent.stop()
    assert f"SI:localuser:{user}" not in xhost_list(env)
