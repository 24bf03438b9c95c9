"""Steps: each change the installer makes, with how to undo it, and `carry_out`, which rolls back on failure.

A plan is built by looking at the machine first, so it holds only the steps still needed: installing twice gives
an empty plan the second time. Files are written to a temporary name beside the target and renamed over it, so a
file is either the old or the new one, never half of each.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from agent.fsutil import atomic_symlink, atomic_write

Say = Callable[[str], None]


def nothing_to_undo() -> None:
    """The undo of a step that changes nothing (a check)."""


@dataclass(frozen=True)
class Step:
    what: str  # shown to site IT: "create group servicegate-console"
    do: Callable[[], None]
    undo: Callable[[], None] | None = None  # None: it cannot be undone (a removal)


class StepFailed(Exception):
    """A step failed and what this run did was rolled back (as far as `not_undone` does not say otherwise)."""

    def __init__(self, step: Step, reason: str, undone: list[str], not_undone: list[str]) -> None:
        super().__init__(f"{step.what}: {reason}")
        self.step, self.reason, self.undone, self.not_undone = step, reason, undone, not_undone


class CommandFailed(Exception):
    def __init__(self, argv: Sequence[str], output: str) -> None:
        tail = "\n".join(output.strip().splitlines()[-8:])
        super().__init__(f"{' '.join(argv[:3])}... failed:\n{tail}" if tail else f"{' '.join(argv)} failed")


def carry_out(steps: Sequence[Step], say: Say) -> None:
    """Do each step in order; on a failure (or Ctrl-C) undo the done ones in reverse and raise StepFailed."""
    done: list[Step] = []
    for step in steps:
        try:
            step.do()
        except (Exception, KeyboardInterrupt) as exc:  # any failure: this run's changes must not stay half-done
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc) or type(exc).__name__
            undone, not_undone = [], []
            for earlier in reversed(done):
                if earlier.undo is None:
                    not_undone.append(earlier.what)
                    continue
                try:
                    earlier.undo()
                    if earlier.undo is not nothing_to_undo:
                        undone.append(earlier.what)
                except Exception as undo_exc:  # keep undoing the rest; say what stayed
                    not_undone.append(f"{earlier.what} (its undo failed: {undo_exc})")
            raise StepFailed(step, reason, undone, not_undone) from exc
        done.append(step)
        say(f"  done: {step.what}")


def run(argv: Sequence[str], *, env: dict[str, str] | None = None) -> str:
    """Run a command; its output, or CommandFailed with the end of it."""
    result = subprocess.run(list(argv), capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise CommandFailed(argv, result.stdout + result.stderr)
    return result.stdout


def clean_env() -> dict[str, str]:
    """The environment for the programs the installer starts: none of the Python or pip settings of the caller
    (the launcher's PYTHONPATH points into the bundle's wheel)."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))} | {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}


# --- files ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    user: str
    group: str

    def ids(self) -> tuple[int, int]:
        return pwd.getpwnam(self.user).pw_uid, grp.getgrnam(self.group).gr_gid


ROOT_OWNER = Owner("root", "root")


def write_file(path: Path, data: bytes, mode: int, owner: Owner | None) -> None:
    """Atomically replace `path` with `data`, mode and owner set before the rename (agent.fsutil)."""
    atomic_write(path, data, mode, owner.ids() if owner else None)


def file_step(path: Path, data: bytes, mode: int, owner: Owner | None) -> Step | None:
    """Make `path` hold `data` with `mode`; None when it already does. Undo puts back what was there."""
    old = path.read_bytes() if path.is_file() else None
    if old == data and (path.stat().st_mode & 0o7777) == mode and _owned(path, owner):
        return None
    old_mode = path.stat().st_mode & 0o7777 if old is not None else mode

    def undo() -> None:
        if old is None:
            path.unlink(missing_ok=True)
        else:
            write_file(path, old, old_mode, owner)

    verb = "write" if old is None else "update" if old != data else "set the mode or owner of"
    return Step(f"{verb} {path} ({mode:04o})", lambda: write_file(path, data, mode, owner), undo)


def directory_step(path: Path, mode: int, owner: Owner | None) -> Step | None:
    """Create `path` (the missing parents too, 0755) with `mode` and owner; None when it is already so."""
    if path.is_dir():
        if (path.stat().st_mode & 0o7777) == mode and _owned(path, owner):
            return None
        old_mode, old_ids = path.stat().st_mode & 0o7777, (path.stat().st_uid, path.stat().st_gid)

        def fix() -> None:
            if owner:
                os.chown(path, *owner.ids())
            path.chmod(mode)

        def restore() -> None:
            os.chown(path, *old_ids)
            path.chmod(old_mode)

        return Step(f"set {path} to {mode:04o}{_by(owner)}", fix, restore)
    made: list[Path] = []  # what this step created (an earlier step may create some of the parents first)

    def create() -> None:
        for directory in [p for p in [path, *path.parents] if not p.exists()][::-1]:
            directory.mkdir(mode=0o755)
            made.append(directory)
        if owner:
            os.chown(path, *owner.ids())
        path.chmod(mode)

    def remove() -> None:
        for directory in reversed(made):
            directory.rmdir()

    return Step(f"create {path} ({mode:04o}{_by(owner)})", create, remove)


def symlink_step(link: Path, target: str) -> Step | None:
    """Point `link` at `target`, switched atomically (a new link renamed over the old); None when it does."""
    old = os.readlink(link) if link.is_symlink() else None
    if old == target:
        return None

    def point(to: str | None) -> None:
        if to is None:
            link.unlink(missing_ok=True)
        else:
            atomic_symlink(link, to)

    return Step(f"point {link} to {target}", lambda: point(target), lambda: point(old))


def _owned(path: Path, owner: Owner | None) -> bool:
    if owner is None:
        return True
    try:
        return (path.stat().st_uid, path.stat().st_gid) == owner.ids()
    except KeyError:  # the user or group does not exist yet: a step before this one creates it
        return False


def _by(owner: Owner | None) -> str:
    return f", {owner.user}:{owner.group}" if owner else ""


# --- users and groups -------------------------------------------------------------------------------------------


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def is_member(user: str, group: str) -> bool:
    entry = grp.getgrnam(group)
    return user in entry.gr_mem or pwd.getpwnam(user).pw_gid == entry.gr_gid


def command_step(what: str, argv: list[str], undo: list[str] | None = None) -> Step:
    """A step that runs a command (and, to undo it, another)."""
    return Step(what, partial(_quiet, argv), partial(_quiet, undo) if undo else None)


def group_step(name: str) -> Step:
    return command_step(f"create group {name}", ["groupadd", "--system", name], ["groupdel", name])


def user_step(name: str, home: Path) -> Step:
    argv = ["useradd", "--system", "--gid", name, "--home-dir", str(home), "--no-create-home",
            "--shell", "/usr/sbin/nologin", "--comment", "ServiceGate agent", name]
    return command_step(f"create system user {name} (no login)", argv, ["userdel", name])


def membership_step(user: str, group: str) -> Step:
    return command_step(f"add {user} to group {group}", ["gpasswd", "--add", user, group],
                        ["gpasswd", "--delete", user, group])


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _quiet(argv: list[str]) -> None:
    run(argv)
