"""The console's X server lets the agent's user in while the consent UI runs: screen sharing needs it.

Why. The agent shares the console's screen (the catalog task `share-screen`) with x11vnc, which it runs as its
own user, not as the console user whose desktop it is. The X server admits only clients that hold the session's
cookie (`.Xauthority`), and the agent has none, so x11vnc would fail with "cannot open display". The UI, which
runs in the console user's session and holds its cookie, asks the X server to admit the agent's user by its
local user ID (`xhost +si:localuser:<user>`, server-interpreted: the server checks the peer credentials of a
local connection, so only processes of that user on this machine get in, not the network); it takes the grant
back when it quits (`xhost -si:localuser:<user>`).

Why this way. The grant lasts only while the consent UI runs in the console session: the technologist's
session, through the UI, decides, and when the UI is gone (logout, a crash aside) the agent cannot open the
display. No cookie and no `.Xauthority` is handed to the agent: the agent's user gets no secret it could keep.
A grant that was there before the UI started (a desktop that admits its own user, say) is left as it was.

Who the agent's user is: the owner of the agent's control socket, the one the UI connects to (the agent makes
it). X11 only (Qt's `xcb` platform): the UI asks for it nowhere else. A missing `xhost` or a failure is logged as
a warning and the UI goes on: sharing then fails with x11vnc's "cannot open display" in the task's output.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("servicegate.ui.xaccess")

XHOST_TIMEOUT_S = 10


def socket_owner(socket: Path) -> str:
    """The user name of the owner of `socket` (the agent's user). Raises OSError or KeyError (no such user)."""
    return pwd.getpwuid(os.stat(socket).st_uid).pw_name


def entry(user: str) -> str:
    """`user` as xhost writes a server-interpreted local-user entry."""
    return f"SI:localuser:{user}"


def _xhost(args: list[str], env: Mapping[str, str] | None) -> subprocess.CompletedProcess[str] | None:
    """xhost with `args` on $DISPLAY; None (and a warning) when it cannot be run."""
    program = shutil.which("xhost")
    if program is None:
        log.warning("xhost is not installed: the agent's user cannot be admitted to this display, so sharing the "
                    "screen will fail (install x11-xserver-utils)")
        return None
    try:
        return subprocess.run([program, *args], env=dict(env) if env is not None else None, capture_output=True,
                              text=True, timeout=XHOST_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("xhost %s did not run: %s", " ".join(args), exc)
        return None


def listed(user: str, env: Mapping[str, str] | None = None) -> bool | None:
    """Whether the X server admits `user` by its local user ID now (None: xhost could not say)."""
    shown = _xhost([], env)
    if shown is None or shown.returncode != 0:
        return None
    return entry(user).lower() in (line.strip().lower() for line in shown.stdout.splitlines())


class AgentAccess:
    """The X server's admission of the agent's user, for as long as the UI runs: `grant` (again when the agent
    comes back; once it succeeded it does nothing), `revoke` at the UI's end (only what `grant` added)."""

    def __init__(self, socket: Path, env: Mapping[str, str] | None = None) -> None:
        self.socket = socket
        self.env = env  # xhost's environment (DISPLAY, XAUTHORITY); None: this process's
        self.granted: str | None = None  # the user this UI admitted: revoked at its end
        self.done = False  # admitted (by this UI or before it): nothing more to do

    def grant(self) -> bool:
        """Admit the agent's user; True when it is admitted (now or already). Failures: a warning, False."""
        if self.done:
            return True
        try:
            user = socket_owner(self.socket)
        except (OSError, KeyError) as exc:
            log.warning("the agent's user is not known (its control socket %s: %s): it is not admitted to this "
                        "display yet", self.socket, exc)
            return False
        if listed(user, self.env):
            log.info("the X server admits %s already (%s)", user, entry(user))
            self.done = True
            return True
        added = _xhost([f"+si:localuser:{user}"], self.env)
        if added is None:
            return False
        if added.returncode != 0:
            log.warning("xhost could not admit %s to this display (%s): sharing the screen will fail", user,
                        (added.stderr or added.stdout).strip() or f"exit status {added.returncode}")
            return False
        log.info("the X server admits the agent's user %s while the UI runs (%s)", user, entry(user))
        self.granted, self.done = user, True
        return True

    def revoke(self) -> None:
        """Take back what `grant` added (the UI's end); a failure is a warning."""
        user, self.granted, self.done = self.granted, None, False
        if user is None:
            return
        removed = _xhost([f"-si:localuser:{user}"], self.env)
        if removed is not None and removed.returncode != 0:
            log.warning("xhost could not take back %s from this display: %s", user,
                        (removed.stderr or removed.stdout).strip() or f"exit status {removed.returncode}")
        elif removed is not None:
            log.info("the X server no longer admits %s (%s)", user, entry(user))
