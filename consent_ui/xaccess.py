"""The console's X server lets the agent's user in while a screen share the technologist allowed runs.

Why. The agent shares the console's screen (the catalog task `share-screen`) with x11vnc, which it runs as its
own user, not as the console user whose desktop it is. The X server admits only clients that hold the session's
cookie (`.Xauthority`), and the agent has none, so x11vnc would fail with "cannot open display". The UI, which
runs in the console user's session and holds its cookie, asks the X server to admit the agent's user by its
local user ID (`xhost +si:localuser:<user>`, server-interpreted: the server checks the peer credentials of a
local connection, so only processes of that user on this machine get in, not the network); it takes the grant
back (`xhost -si:localuser:<user>`) when the share is over.

Why this way. The grant lasts only while a share runs that the technologist allowed in this UI: the UI grants it
right before it sends `task_confirm` for a task with the catalog's `screen` flag, and takes it back when that task
ends (`task_changed` no longer waiting or running, `screen_changed` ended), when the agent cannot be reached (its
tasks end with it), and when the UI quits. Grants are kept per task ID: the X server admits the user while any of
them holds. While no share runs, no process of the agent's user (the agent, its catalog tasks, a modality tool)
can open the display. No cookie and no `.Xauthority` is handed to the agent: the agent's user gets no secret it
could keep. A grant that was there before the UI asked (a desktop that admits its own user, say) is left as it was:
only what this UI added is taken back.

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
    """The X server's admission of the agent's user, per screen-share task: `grant(task_id)` before the share is
    confirmed, `release(task_id)` when it ends, `revoke()` for all of them (the agent gone, the UI's end). The
    entry is added with the first task and taken back with the last, and only when this UI added it."""

    def __init__(self, socket: Path, env: Mapping[str, str] | None = None) -> None:
        self.socket = socket
        self.env = env  # xhost's environment (DISPLAY, XAUTHORITY); None: this process's
        self.granted: str | None = None  # the user this UI admitted: taken back with the last task
        self.tasks: set[str] = set()  # the share tasks the admission is held for

    def grant(self, task_id: str) -> bool:
        """Admit the agent's user for `task_id`; True when it is admitted (now or already). Failures: a warning,
        False (the task is not held)."""
        if self.tasks:
            self.tasks.add(task_id)
            return True
        try:
            user = socket_owner(self.socket)
        except (OSError, KeyError) as exc:
            log.warning("the agent's user is not known (its control socket %s: %s): it is not admitted to this "
                        "display, so sharing the screen will fail", self.socket, exc)
            return False
        if listed(user, self.env):
            log.info("the X server admits %s already (%s): left as it is", user, entry(user))
            self.tasks.add(task_id)
            return True
        added = _xhost([f"+si:localuser:{user}"], self.env)
        if added is None:
            return False
        if added.returncode != 0:
            log.warning("xhost could not admit %s to this display (%s): sharing the screen will fail", user,
                        (added.stderr or added.stdout).strip() or f"exit status {added.returncode}")
            return False
        log.info("the X server admits the agent's user %s for the screen share %s (%s)", user, task_id, entry(user))
        self.granted = user
        self.tasks.add(task_id)
        return True

    def release(self, task_id: str) -> None:
        """`task_id` no longer needs the admission (its share ended): taken back with the last task."""
        if task_id not in self.tasks:
            return
        self.tasks.discard(task_id)
        if not self.tasks:
            self._take_back()

    def revoke(self) -> None:
        """Every task's admission taken back (the agent unreachable, the UI's end); a failure is a warning."""
        self.tasks.clear()
        self._take_back()

    def _take_back(self) -> None:
        user, self.granted = self.granted, None
        if user is None:
            return
        removed = _xhost([f"-si:localuser:{user}"], self.env)
        if removed is not None and removed.returncode != 0:
            log.warning("xhost could not take back %s from this display: %s", user,
                        (removed.stderr or removed.stdout).strip() or f"exit status {removed.returncode}")
        elif removed is not None:
            log.info("the X server no longer admits %s (%s)", user, entry(user))
