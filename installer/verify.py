"""The upgrade service's own check of a software update the agent handed over (`apply-request`, as root).

The agent's folder is writable by the agent's user, so the service trusts nothing in it: it copies the bundle into
a folder only root writes (/var/lib/servicegate-upgrade), and checks the copy against the vendor's signed targets
metadata with python-tuf's Metadata API, under the TUF root that root keeps itself (/etc/servicegate/tuf-root.json,
copied by the installer when it enrolls the device). Freshness (expiry, rollback) was checked by the agent when the
update was offered; this check is about who signed it: a bundle the vendor's targets key did not sign is never run
as root. Only then is the copy unpacked, there, and its own installer run.

The installed release's environment has python-tuf; this module is imported only by `apply-request`, which runs from
it (the bundle's launcher, on the system's python3, never needs it).
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from installer.bundle import Bundle
from installer.layout import Layout


def trusted_root(layout: Layout) -> Path:
    return layout.etc / "tuf-root.json"


def work_dir(layout: Layout) -> Path:
    return layout.at("/var/lib/servicegate-upgrade")


def verified_bundle(layout: Layout, request: dict[str, Any]) -> Bundle:
    """The bundle the request names, copied, checked against the vendor's signature, and unpacked where only root
    writes. ConfigError says why not."""
    from tuf.api._payload import Root, Targets  # where tuf.api.metadata takes them from (no __all__ there)
    from tuf.api.metadata import Metadata

    version, target = str(request["version"]), str(request["target"])
    source = Path(str(request["file"]))
    staging = (layout.update_dir / "staging").resolve()
    if not source.resolve().is_relative_to(staging):
        raise ConfigError(f"the file {source} is not in the agent's staging folder {staging}")
    metadata = layout.update_dir / "tuf"
    try:
        root = Metadata[Root].from_bytes(trusted_root(layout).read_bytes())
    except OSError as exc:
        raise ConfigError(f"no trusted TUF root ({exc.strerror}): enroll the device with `servicegate-install "
                          "install --enroll`, which keeps the vendor's root where only root writes") from None
    try:
        newest = Metadata[Root].from_file(str(metadata / "root.json"))
        if newest.signed.version != root.signed.version:  # the vendor changed its keys since the enrollment
            root.verify_delegate(Root.type, newest)
            newest.verify_delegate(Root.type, newest)
            root = newest
        targets = Metadata[Targets].from_file(str(metadata / "targets.json"))
        root.verify_delegate(Targets.type, targets)
    except Exception as exc:  # noqa: BLE001 - python-tuf and securesystemslib raise several kinds for bad metadata
        raise ConfigError(f"the targets metadata is not signed by the vendor's keys ({exc})") from None
    info = targets.signed.targets.get(target)
    if info is None or info.custom.get("kind") != "software" or info.custom.get("version") != version:
        raise ConfigError(f"{target} {version} is not a software update in the vendor's signed targets")
    work = work_dir(layout)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(mode=0o700, parents=True)
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(info.length + 1)
    try:
        info.verify_length_and_hashes(data)
    except Exception as exc:  # noqa: BLE001 - LengthOrHashMismatchError, or a hash python-tuf cannot compute
        raise ConfigError(f"{target} does not match its signed length and hash ({exc})") from None
    copy = work / Path(target).name
    copy.write_bytes(data)
    try:
        with tarfile.open(copy) as archive:
            archive.extractall(work, members=_plain_members(archive, target))
    except (tarfile.TarError, OSError) as exc:
        raise ConfigError(f"{target} is not a readable bundle ({exc})") from None
    bundle = Bundle.open(work / f"servicegate-{version}")
    if bundle.version != version:
        raise ConfigError(f"the bundle says it is {bundle.version}, the update {version}")
    return bundle


def _plain_members(archive: tarfile.TarFile, target: str) -> list[tarfile.TarInfo]:
    """Only folders and regular files, each inside the extraction folder (Debian 12's Python 3.11.2 has no
    `filter="data"` yet, which would check the same)."""
    members = archive.getmembers()
    for member in members:
        parts = Path(member.name).parts
        if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
            raise ConfigError(f"{target} holds {member.name!r}, which a bundle never does: not unpacked")
        member.mode &= 0o755
    return members
