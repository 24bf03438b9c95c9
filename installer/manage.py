"""`upgrade`, `rollback` and `uninstall`: what changes an installation after the first install.

An upgrade installs the new release beside the old one, so the switch is one rename of the `current` symlink and a
rollback is another. Configuration, state, keys, outbox and audit log are outside the releases and stay. The
configuration is migrated to the new version's schema (MIGRATIONS) and checked with the new version's loader before
anything changes; the old text is kept as agent.toml.before-VERSION, which a rollback puts back.
"""

from __future__ import annotations

import os
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from agent import versions
from agent.config import from_mapping
from agent.errors import ConfigError
from installer import service
from installer.bundle import Bundle
from installer.install import install_release, read_record, record_step, release_complete, unit_text
from installer.layout import UNIT_FILES, Layout
from installer.steps import (
    ROOT_OWNER,
    CommandFailed,
    Owner,
    Say,
    Step,
    file_step,
    group_exists,
    is_member,
    nothing_to_undo,
    remove_tree,
    run,
    symlink_step,
    user_exists,
)

HEALTHY_WITHIN_S = 60  # after a restart, the new version must answer `status` within this long, else it is undone
POLL_S = 1.0


@dataclass(frozen=True)
class Rename:
    """A configuration key that moved: [section] old -> [section] new, from `version` on."""

    version: str
    section: str
    old: str
    new: str


# Every schema change since 0.1.0, oldest first. Empty so far: 0.1.x reads every 0.1.0 file as it is.
MIGRATIONS: tuple[Rename, ...] = ()


def version_key(version: str) -> tuple[int, ...]:
    try:
        return versions.version_key(version)
    except ValueError as exc:
        raise ConfigError(f"{exc}: the bundle is damaged.") from None


def current_version(layout: Layout) -> str | None:
    """The version `current` points to; None when nothing is installed."""
    if not layout.current.is_symlink():
        return None
    target = layout.current.readlink()
    return target.name if release_complete(layout.releases / target.name) else None


def migrate(text: str, old: str, new: str) -> tuple[str, list[str]]:
    """The configuration text with the keys renamed between versions `old` (exclusive) and `new` (inclusive)."""
    changes = []
    for rename in MIGRATIONS:
        if not version_key(old) < version_key(rename.version) <= version_key(new):
            continue
        pattern = re.compile(rf"(\[{re.escape(rename.section)}\][^\[]*?^\s*){re.escape(rename.old)}(\s*=)",
                             re.MULTILINE | re.DOTALL)
        text, count = pattern.subn(rf"\g<1>{rename.new}\g<2>", text)
        if count:
            changes.append(f"[{rename.section}] {rename.old} is now {rename.new}")
    return text, changes


def check_config(layout: Layout, text: str) -> None:
    """The configuration as the new version's loader reads it; ConfigError says what to fix."""
    try:
        from_mapping(tomllib.loads(text), layout.agent_toml)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{layout.agent_toml}: not valid TOML ({exc}); fix it first.") from None


def upgrade_steps(bundle: Bundle, layout: Layout, old: str,
                  owner: Owner | None) -> tuple[list[Step], list[Step], list[str]]:
    """The steps of an upgrade from `old` to the bundle's version: those that prepare (the new release beside the old
    one, checked) and those that switch (configuration, units, `current`); and the configuration changes."""
    release = layout.release(bundle.version)
    text = layout.agent_toml.read_text(encoding="utf-8")
    migrated, changes = migrate(text, old, bundle.version)
    check_config(layout, migrated)
    prepare = []
    if not release_complete(release):
        prepare.append(Step(f"install ServiceGate {bundle.version} into {release} (beside {old})",
                            lambda: install_release(bundle, release), lambda: remove_tree(release)))
    prepare.append(Step(f"check that {bundle.version} starts", lambda: _check_starts(layout, release, bundle.version),
                        nothing_to_undo))
    steps: list[Step] = []
    if changes:
        backup = layout.etc / f"agent.toml.before-{bundle.version}"
        steps += [s for s in (file_step(backup, text.encode("utf-8"), 0o644, owner),
                              file_step(layout.agent_toml, migrated.encode("utf-8"), 0o644, owner)) if s]
    steps += unit_steps(layout, unit_text, owner)  # this installer's units are the new version's
    switch = symlink_step(layout.current, f"releases/{bundle.version}")
    assert switch is not None  # current points to the old version
    steps += [switch, record_step(layout, owner, "upgrade", bundle.version)]
    return prepare, steps, changes


def unit_steps(layout: Layout, text_of: Callable[[str], bytes], owner: Owner | None) -> list[Step]:
    """The units as `text_of` gives them, where they differ from the installed ones."""
    return [step for name in UNIT_FILES if (step := file_step(layout.unit_file(name), text_of(name), 0o644, owner))]


def release_units(release: Path) -> Callable[[str], bytes]:
    """The units a release brought (in its own installer package)."""
    packages = sorted(release.glob("lib/python3*/site-packages/installer/units"))

    def text_of(name: str) -> bytes:
        if not packages:
            raise ConfigError(f"{release} has no installer/units: the release is damaged; install it again.")
        return (packages[0] / name).read_bytes()

    return text_of


def _check_starts(layout: Layout, release: Path, version: str) -> None:
    code, output = service.ask(layout, "--version", program=layout.program(release))
    if code != 0 or version not in output:
        raise RuntimeError(f"{layout.program(release)} --version did not answer {version}: {output.strip()[-300:]}")


def announce(layout: Layout, version: str, warn_s: int, say: Say, sleep: Callable[[float], None]) -> None:
    """Warn an active session in the banner, give it `warn_s` seconds, and let the agent end it (`upgrade`)."""
    state = service.status(layout)
    if not state or not state.get("sessions"):
        return
    code, output = service.ask(layout, "announce-upgrade", version, "--in", str(warn_s))
    if code != 0:
        say(f"  note: the running agent did not take the warning ({output.strip()}); its sessions end when it "
            "stops")
        return
    say(f"  A remote session is active: the console shows a warning, and the session ends in {warn_s} s.")
    sleep(warn_s + POLL_S)


def restart_and_check(layout: Layout, version: str, say: Say, sleep: Callable[[float], None]) -> bool | None:
    """Restart under systemd and wait for `version` to answer; None when systemd does not run here."""
    try:
        if not service.restart(layout):
            return None
    except CommandFailed as exc:  # systemd could not start it (Type=notify: it never said ready)
        say(f"  the service did not start: {exc}")
        return False
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while time.monotonic() < deadline:
        state = service.status(layout)
        if state and state.get("agent_version") == version:
            say(f"  done: ServiceGate {version} runs and answers")
            return True
        sleep(POLL_S)
    return False


def previous_version(layout: Layout, current: str) -> str | None:
    """The version to roll back to: the latest other one in the history whose release is still complete, else the
    newest other complete release."""
    for entry in reversed(read_record(layout).get("history", [])):
        version = str(entry.get("version", ""))
        if version and version != current and release_complete(layout.release(version)):
            return version
    others = [p.name for p in layout.releases.iterdir() if p.name != current and release_complete(p)] \
        if layout.releases.is_dir() else []
    valid = [v for v in others if versions.VERSION.fullmatch(v)]
    return max(valid, key=version_key) if valid else None


def rollback_steps(layout: Layout, current: str, target: str, owner: Owner | None) -> list[Step]:
    steps = []
    backup = layout.etc / f"agent.toml.before-{current}"
    if backup.is_file():
        step = file_step(layout.agent_toml, backup.read_bytes(), 0o644, owner)
        if step:
            steps.append(step)
    steps += unit_steps(layout, release_units(layout.release(target)), owner)
    switch = symlink_step(layout.current, f"releases/{target}")
    assert switch is not None
    return [*steps, switch, record_step(layout, owner, "rollback", target)]


def prune_releases(layout: Layout, keep: set[str]) -> list[str]:
    """Remove the releases other than `keep` (the running one and the one a rollback goes to)."""
    removed = []
    for release in sorted(layout.releases.iterdir()) if layout.releases.is_dir() else []:
        if release.name not in keep:
            remove_tree(release)
            removed.append(release.name)
    return removed


def uninstall_steps(layout: Layout) -> list[Step]:
    """Units, the command link and the releases; configuration, state and audit log stay."""
    paths = [layout.unit_file(name) for name in UNIT_FILES] + [layout.bin_link, layout.install_link, layout.opt,
                                                               layout.run_dir]
    return [Step(f"remove {path}", partial(remove_tree, path)) for path in paths if path.is_symlink() or path.exists()]


def purge_steps(layout: Layout, staging: bool, audit_dir: Path) -> list[Step]:
    """Everything else but the audit log: configuration, state, keys, outbox, and the users, groups and
    memberships the installer created (install.json). The audit log is handed to root."""
    steps = []
    for entry in sorted(layout.state_dir.iterdir()) if layout.state_dir.is_dir() else []:
        if entry != audit_dir:
            steps.append(Step(f"remove {entry}", partial(remove_tree, entry)))
    if audit_dir.is_dir() and not staging:
        steps.append(Step(f"give the audit log {audit_dir} to root (its user is removed)",
                          lambda: _chown_tree(audit_dir, ROOT_OWNER)))
    created = read_record(layout).get("created", {})
    if not staging:
        for user, group in created.get("memberships", []):
            steps.append(Step(f"remove {user} from group {group}", partial(_leave, user, group)))
        for user in created.get("users", []):
            steps.append(Step(f"remove user {user}", partial(_gone, user_exists, ["userdel", user])))
        for group in created.get("groups", []):  # userdel may have taken the user's own group already
            steps.append(Step(f"remove group {group}", partial(_gone, group_exists, ["groupdel", group])))
    if layout.etc.exists():
        steps.append(Step(f"remove {layout.etc}", lambda: remove_tree(layout.etc)))
    return steps


def _leave(user: str, group: str) -> None:
    if group_exists(group) and user_exists(user) and is_member(user, group):
        run(["gpasswd", "--delete", user, group])


def _gone(exists: Callable[[str], bool], argv: list[str]) -> None:
    """Remove a user or group (argv's last word) unless it is gone already."""
    if exists(argv[-1]):
        run(argv)


def _chown_tree(top: Path, owner: Owner) -> None:
    uid, gid = owner.ids()
    for directory, _dirs, files in os.walk(top):
        os.chown(directory, uid, gid)
        for name in files:
            os.chown(os.path.join(directory, name), uid, gid)

