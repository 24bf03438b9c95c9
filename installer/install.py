"""`servicegate-install install`: the plan of steps that brings this machine to what the bundle and site file say.

Order: groups and the service user, console users into their groups, directories, the release (its own
virtual environment, from the bundle's wheels with pip --no-index --require-hashes), `current`, the
configuration, the units, the installer's record; then, outside the plan, systemd is told (when it runs).
In a staging root (--root) no users, groups or owners are set (they belong to the target machine) and
systemd is left alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from agent.fsutil import fsync_dir
from installer.bundle import Bundle
from installer.layout import SERVICE_USER, UNIT_FILES, Layout
from installer.site import Site
from installer.steps import (
    Owner,
    Step,
    clean_env,
    directory_step,
    file_step,
    group_exists,
    group_step,
    is_member,
    membership_step,
    remove_tree,
    run,
    symlink_step,
    user_exists,
    user_step,
    write_file,
)

RELEASE_MANIFEST = "release.json"  # written last into a release: its presence means the release is complete


def unit_text(name: str) -> bytes:
    """A file of installer/units/, as installed."""
    return resources.files("installer").joinpath("units", name).read_bytes()


def release_complete(release: Path) -> bool:
    return (release / RELEASE_MANIFEST).is_file()


class Plan:
    """The steps, and what they will create that uninstall must later remove (the installer's record)."""

    def __init__(self, layout: Layout, staging: bool) -> None:
        self.layout, self.staging = layout, staging
        self.steps: list[Step] = []
        self.created: dict[str, list[Any]] = {"groups": [], "users": [], "memberships": []}

    def add(self, step: Step | None) -> None:
        if step is not None:
            self.steps.append(step)

    def owner(self, user: str, group: str) -> Owner | None:
        return None if self.staging else Owner(user, group)


def install_plan(bundle: Bundle, site: Site, layout: Layout, *, staging: bool,
                 accept_unsynced_clock: bool = False) -> Plan:
    plan = Plan(layout, staging)
    if not staging:
        _accounts(plan, site)
    service = plan.owner(SERVICE_USER, SERVICE_USER)
    root = plan.owner("root", "root")
    for directory in (layout.opt, layout.releases, layout.etc):
        plan.add(directory_step(directory, 0o755, root))
    plan.add(directory_step(layout.state_dir, 0o700, service))
    plan.add(directory_step(layout.run_dir, 0o755, service))
    release = layout.release(bundle.version)
    if not release_complete(release):
        plan.add(Step(f"install ServiceGate {bundle.version} into {release} ({len(bundle.wheel_files())} wheels, "
                      "no package index)", lambda: install_release(bundle, release), lambda: remove_tree(release)))
    plan.add(symlink_step(layout.current, f"releases/{bundle.version}"))
    plan.add(directory_step(layout.bin_link.parent, 0o755, root))
    for link in (layout.bin_link, layout.install_link):
        program = layout.current / "bin" / link.name
        plan.add(symlink_step(link, str(Path("/") / program.relative_to(layout.root))))
    plan.add(file_step(layout.agent_toml, site.agent_toml.encode("utf-8"), 0o644, root))
    for name in UNIT_FILES:
        path = layout.unit_file(name)
        plan.add(directory_step(path.parent, 0o755, root))
        plan.add(file_step(path, unit_text(name), 0o644, root))
    if plan.steps:
        plan.add(record_step(layout, root, "install", bundle.version, plan.created,
                             {"accept_unsynced_clock": accept_unsynced_clock}))
    return plan


def _accounts(plan: Plan, site: Site) -> None:
    """Groups, the service user and the memberships the site file asks for; each only if missing."""
    groups = dict.fromkeys([SERVICE_USER, *site.groups_of().values()])
    for group in groups:
        if not group_exists(group):
            plan.add(group_step(group))
            plan.created["groups"].append(group)
    if not user_exists(SERVICE_USER):
        plan.add(user_step(SERVICE_USER, Path("/var/lib/servicegate")))
        plan.created["users"].append(SERVICE_USER)
    for key, group in site.groups_of().items():
        for user in getattr(site.install, key):
            if group in plan.created["groups"] or not is_member(user, group):
                plan.add(membership_step(user, group))
                plan.created["memberships"].append([user, group])


def install_release(bundle: Bundle, release: Path) -> None:
    """A virtual environment of its own with the bundle's wheels, checked against their hashes; then the manifest
    that marks it complete. A half-made release from an interrupted run is removed first."""
    remove_tree(release)
    env = clean_env()
    run([sys.executable, "-m", "venv", str(release)], env=env)
    run([str(release / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--no-cache-dir",
         "--require-hashes", "--find-links", str(bundle.wheels), "-r", str(bundle.requirements)], env=env)
    manifest = {"version": bundle.version, "python": bundle.python, "wheel": bundle.wheel,
                "installed_at": datetime.now(UTC).isoformat(timespec="seconds")}
    subprocess.run(["sync", "--file-system", str(release)], check=False)  # the release's files, before its mark
    write_file(release / RELEASE_MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode(), 0o644, None)
    fsync_dir(release.parent)


def read_record(layout: Layout) -> dict[str, Any]:
    """What earlier runs created (install.json); empty when there is none."""
    try:
        data = json.loads(layout.record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"created": {"groups": [], "users": [], "memberships": []}, "history": []}
    return data if isinstance(data, dict) else {}


def record_step(layout: Layout, owner: Owner | None, action: str, version: str,
                created: dict[str, list[Any]] | None = None, settings: dict[str, Any] | None = None) -> Step:
    """install.json: what this and earlier runs created, the site's choices (`settings`), and one more line of
    history."""
    record = read_record(layout)
    record.update(settings or {})
    known = record.setdefault("created", {})
    for key, items in (created or {}).items():
        known[key] = known.get(key, []) + [item for item in items if item not in known.get(key, [])]
    record.setdefault("history", []).append({"action": action, "version": version,
                                             "at": datetime.now(UTC).isoformat(timespec="seconds")})
    step = file_step(layout.record, (json.dumps(record, indent=2) + "\n").encode("utf-8"), 0o644, owner)
    assert step is not None  # the history line makes the content new
    return Step(f"record the {action} in {layout.record}", step.do, step.undo)


def enroll(layout: Layout, values: dict[str, Any], otp: str) -> None:
    """`servicegate enroll` of the installed release, as the service user (the keys must be its own)."""
    run(["runuser", "-u", SERVICE_USER, "--", str(layout.program()), "--config", str(layout.agent_toml), "enroll",
         "--portal", values["portal_url"], "--ca-fingerprint", values["ca_fingerprint"], "--otp", otp,
         "--device-id", values["device_id"]], env=clean_env())


def enrolled(layout: Layout) -> bool:
    return (layout.state_dir / "portal").is_dir()
