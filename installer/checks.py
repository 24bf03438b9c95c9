"""Prerequisites, checked before anything is changed: each problem says what to fix.

Every check runs, so site IT gets the whole list at once instead of one problem per attempt.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import pwd
import shutil
import sys
from pathlib import Path

from installer.bundle import Bundle
from installer.layout import Layout
from installer.site import Site

MB = 1024 * 1024
# A release's virtual environment takes about this many times its wheels' size on disk (unpacked, compiled).
UNPACKED_FACTOR = 4
_TIME_ERROR = 5  # adjtimex(2): the kernel's clock is not synchronised (STA_UNSYNC)


def clock_synchronized() -> bool:
    """What the kernel says (adjtimex with no change asked for): the NTP/PTP daemon has synchronised the clock."""
    libc = ctypes.CDLL(None, use_errno=True)
    timex = ctypes.create_string_buffer(512)  # struct timex is 208 bytes on x86_64; modes = 0 reads only
    return int(libc.adjtimex(timex)) not in (-1, _TIME_ERROR)


def existing_ancestor(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(existing_ancestor(path)).free


def prerequisites(bundle: Bundle, layout: Layout, *, staging: bool, new_release: bool, site: Site | None = None,
                  accept_unsynced_clock: bool = True) -> list[str]:
    """What must be fixed before installing `bundle` into `layout` (with `site`: a first install); empty when all
    is well."""
    problems = []
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != bundle.python:
        problems.append(f"python3 is {running}, but this bundle's wheels are for Python {bundle.python}: use the "
                        f"bundle built for this operating system, or install Python {bundle.python}.")
    if importlib.util.find_spec("ensurepip") is None or importlib.util.find_spec("venv") is None:
        problems.append("python3 cannot make virtual environments: install the package python3-venv.")
    if not staging:
        if os.geteuid() != 0:
            problems.append("not run as root: run it with sudo (or use --root DIR to install into a staging "
                            "folder).")
        if shutil.which("systemctl") is None:
            problems.append("systemd is not installed (no systemctl): ServiceGate runs as a systemd service.")
        for tool in ("useradd", "groupadd", "gpasswd", "runuser"):
            if shutil.which(tool) is None:
                problems.append(f"the command {tool} is missing: install the package passwd (or util-linux).")
    for key, users in site.install.users().items() if site else ():
        for user in users:
            try:
                pwd.getpwnam(user)
            except KeyError:
                problems.append(f"[install] {key}: the user {user!r} does not exist on this machine: create the "
                                "account first, or correct the name in the site file.")
    if not accept_unsynced_clock and not clock_synchronized():
        problems.append("the clock is not synchronised (no NTP): certificates, one-time passwords and the audit "
                        "log's times depend on it. Set up time synchronisation (timedatectl set-ntp true), or pass "
                        "--accept-unsynced-clock if the clock is kept right another way.")
    problems += [f"{problem}: the bundle is damaged; copy it again from the vendor's release and check its "
                 "sha256" for problem in bundle.damaged_wheels()]
    min_free_mb = site.install.min_free_mb if site else 0
    problems += _disk_problems(bundle, layout, new_release, min_free_mb)
    return problems


def _disk_problems(bundle: Bundle, layout: Layout, new_release: bool, min_free_mb: int) -> list[str]:
    """Room for the release (only if it is new) in /opt, and [install] min_free_mb in /var/lib, per file system."""
    needs: dict[int, list[tuple[Path, int]]] = {}
    wanted = [(layout.state_dir, min_free_mb * MB)]
    if new_release:
        wanted.append((layout.releases, bundle.size() * UNPACKED_FACTOR))
    for path, amount in wanted:
        device = os.stat(existing_ancestor(path)).st_dev
        needs.setdefault(device, []).append((path, amount))
    problems = []
    for items in needs.values():
        total = sum(amount for _path, amount in items)
        free = free_bytes(items[0][0])
        if free < total:
            where = " and ".join(str(path) for path, _amount in items)
            problems.append(f"not enough disk space for {where}: {total // MB} MB needed, {free // MB} MB free "
                            f"on {existing_ancestor(items[0][0])}. Free some space and start again.")
    return problems
