"""Attacks on the reference portal's TUF repository, for the tests: each helper changes `<data_dir>/tuf/` on disk, with
python-tuf's Metadata API, the way an attacker who controls the server (or the network) could; the running portal
serves the files as they are then, since it reads them for each request.

Each attack is meant to be refused by python-tuf's client: the tests of the portal (test_portal_updates.py) show
that each one really is, beside a positive control; the agent's tests use the same helpers against the agent.

Where an attack changes metadata, it writes a *new* version (and, where that is what an attacker holding those keys
would do, a new snapshot and timestamp pointing to it, signed with the portal's real keys), so that a device which
already trusts the current state fetches it, and a device starting from the first root fetches it too. Restarting
the portal (`serve` signs a new snapshot and timestamp) or publishing again undoes most of them: attack after the
portal has started, and restore the `tuf/` folder between tests (`saved_state`).
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Snapshot, Timestamp
from tuf.api.serialization.json import JSONSerializer

from portal.updates import Repository

ROLES = ("root", "targets", "snapshot", "timestamp")
_SERIALIZER = JSONSerializer(compact=False)


# --- the repository as it is on disk ---------------------------------------------------------------------------

def tuf_dir(data_dir: Path) -> Path:
    return data_dir / "tuf"


def signer(data_dir: Path, role: str) -> CryptoSigner:
    """The portal's own key for `role`."""
    return CryptoSigner(load_pem_private_key((tuf_dir(data_dir) / "keys" / f"{role}.pem").read_bytes(), None))


def latest_version(data_dir: Path, role: str) -> int:
    if role == "timestamp":
        return int(load(data_dir, "timestamp.json").signed.version)
    metadata = tuf_dir(data_dir) / "metadata"
    return max(int(p.name.split(".")[0]) for p in metadata.glob(f"*.{role}.json") if p.name.split(".")[0].isdigit())


def filename(role: str, version: int) -> str:
    return "timestamp.json" if role == "timestamp" else f"{version}.{role}.json"


def load(data_dir: Path, name: str) -> Metadata[Any]:
    return Metadata.from_file(str(tuf_dir(data_dir) / "metadata" / name))


def current(data_dir: Path, role: str) -> Metadata[Any]:
    return load(data_dir, filename(role, latest_version(data_dir, role)))


def write(data_dir: Path, metadata: Metadata[Any], name: str) -> None:
    (tuf_dir(data_dir) / "metadata" / name).write_bytes(metadata.to_bytes(_SERIALIZER))


def target_path(data_dir: Path, name: str) -> Path:
    """The stored file of the published target `name` (`<kind>/<sha256>.<file name>` under tuf/targets/)."""
    info = current(data_dir, "targets").signed.targets[name]
    kind, _, base = name.rpartition("/")
    return tuf_dir(data_dir) / "targets" / kind / f"{info.hashes['sha256']}.{base}"


def _in(days: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=days)


def _new_timestamp(data_dir: Path, snapshot_version: int, *, expires: datetime.datetime | None = None,
                   sign: Callable[[Metadata[Any]], None] | None = None) -> None:
    """A new timestamp version pointing to `snapshot_version`, signed with the real key (or by `sign`)."""
    timestamp = Metadata(Timestamp(version=latest_version(data_dir, "timestamp") + 1, expires=expires or _in(1),
                                   snapshot_meta=MetaFile(snapshot_version)))
    (sign or (lambda m: m.sign(signer(data_dir, "timestamp"))))(timestamp)
    write(data_dir, timestamp, "timestamp.json")


def _new_snapshot(data_dir: Path, targets_version: int, *,
                  sign: Callable[[Metadata[Any]], None] | None = None) -> int:
    snapshot = Metadata(Snapshot(version=latest_version(data_dir, "snapshot") + 1, expires=_in(7),
                                 meta={"targets.json": MetaFile(targets_version)}))
    (sign or (lambda m: m.sign(signer(data_dir, "snapshot"))))(snapshot)
    write(data_dir, snapshot, filename("snapshot", snapshot.signed.version))
    return int(snapshot.signed.version)


def _forge(data_dir: Path, role: str, sign: Callable[[Metadata[Any]], None]) -> None:
    """A new version of `role`'s current metadata, signed by `sign` (wrongly), and the snapshot and timestamp that
    lead to it signed properly: an attacker who holds every key but `role`'s."""
    if role not in ROLES:
        raise ValueError(f"no TUF role {role!r}: one of {', '.join(ROLES)}")
    metadata = current(data_dir, role)
    metadata.signed.version += 1
    metadata.signed.expires = _in(1 if role == "timestamp" else 7)
    if role == "timestamp":
        sign(metadata)
        write(data_dir, metadata, "timestamp.json")
        return
    sign(metadata)
    write(data_dir, metadata, filename(role, metadata.signed.version))
    if role == "targets":
        _new_timestamp(data_dir, _new_snapshot(data_dir, metadata.signed.version))
    elif role == "snapshot":
        _new_timestamp(data_dir, metadata.signed.version)


# --- the attacks -------------------------------------------------------------------------------------------------

def sign_with_wrong_key(data_dir: Path, role: str) -> None:
    """Forged metadata: a new version of `role` signed with a key the root does not name for it (an attacker's),
    with a properly signed snapshot and timestamp leading to it. For `root`, a next root (`N+1.root.json`) signed
    only by the attacker's key: the device must not follow it. Expected: UnsignedMetadataError."""
    _forge(data_dir, role, lambda metadata: metadata.sign(CryptoSigner.generate_ed25519()))


def remove_signatures(data_dir: Path, role: str) -> None:
    """Unsigned metadata: a new version of `role` with no signature at all (its snapshot and timestamp signed
    properly). Expected: UnsignedMetadataError."""
    _forge(data_dir, role, lambda metadata: metadata.signatures.clear())


def tamper_target_bytes(data_dir: Path, name: str) -> Path:
    """A target file altered on the server: the same name and length, other bytes (every byte flipped). The signed
    metadata is untouched. Expected: LengthOrHashMismatchError when it is downloaded. Returns the file changed."""
    path = target_path(data_dir, name)
    path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))
    return path


def extend_target(data_dir: Path, name: str, extra: bytes = b"\n# and one more thing\n") -> Path:
    """A target file with bytes appended on the server (an endless-data attack, in small): python-tuf stops reading
    at the signed length. Expected: DownloadLengthMismatchError. Returns the file changed."""
    path = target_path(data_dir, name)
    with path.open("ab") as f:
        f.write(extra)
    return path


def expire_timestamp(data_dir: Path) -> None:
    """A freeze attack: a new timestamp version, properly signed, that expired a day ago (an attacker replaying
    metadata from the past, when nothing newer may be seen). Expected: ExpiredMetadataError."""
    _new_timestamp(data_dir, latest_version(data_dir, "snapshot"), expires=_in(-1))


def rollback_snapshot(data_dir: Path) -> int:
    """A rollback attack: a new timestamp, properly signed, that points to the snapshot version before the current
    one (whose file, validly signed, is still on the server). Refused by a device that has seen the current
    snapshot: BadVersionNumberError (a device that never saw a newer one cannot tell). Returns the version served."""
    older = latest_version(data_dir, "snapshot") - 1
    if older < 1:
        raise ValueError("a rollback needs two snapshot versions: start the portal or publish first")
    _new_timestamp(data_dir, older)
    return older


def mix_and_match(data_dir: Path) -> int:
    """A mix-and-match attack: a new timestamp, properly signed, points to a new snapshot version, but the file
    served under that version's name is an older, validly signed snapshot (from another state of the repository,
    listing an older targets version). Expected: BadVersionNumberError (the snapshot's version is not the one the
    timestamp names; for a device that has seen newer targets, also a targets rollback). Returns the version the
    timestamp names."""
    newest = latest_version(data_dir, "snapshot")
    if newest < 2:
        raise ValueError("mix and match needs two snapshot versions: start the portal or publish first")
    metadata = tuf_dir(data_dir) / "metadata"
    shutil.copyfile(metadata / filename("snapshot", newest - 1), metadata / filename("snapshot", newest + 1))
    _new_timestamp(data_dir, newest + 1)
    return newest + 1


def unsigned_target(data_dir: Path, file: Path, kind: str = "software") -> str:
    """A file put on the server beside the real targets, with a plausible name (`<kind>/<sha256>.<file name>`), but
    in no signed targets metadata: the device must not take it, even though the portal serves it. Expected:
    `Updater.get_targetinfo(name)` is None. Returns the target name an offer would use for it."""
    data = file.read_bytes()
    folder = tuf_dir(data_dir) / "targets" / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{hashlib.sha256(data).hexdigest()}.{file.name}").write_bytes(data)
    return f"{kind}/{file.name}"


# --- set-up -----------------------------------------------------------------------------------------------------

def publish_for_test(data_dir: Path, folder: Path, file_name: str = "patterns-2026.12.05.tar",
                     content: bytes = b"virus patterns\n", *, kind: str = "virus-patterns",
                     version: str = "2026.12.5", models: Sequence[str] = ("CT-DEMO",), **more: Any) -> dict[str, Any]:
    """Write `content` as `folder/file_name` and publish it (portal.updates.Repository.publish; `more`: its other
    keyword arguments). Returns what publish returns: name, length, sha256, custom, the versions signed."""
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / file_name
    file.write_bytes(content)
    return Repository(data_dir).publish(file, kind=kind, version=version, models=models, **more)


@contextmanager
def saved_state(data_dir: Path, into: Path) -> Iterator[None]:
    """The repository (`tuf/`) as it is now, put back afterwards, whatever the attacks did meanwhile."""
    shutil.copytree(tuf_dir(data_dir), into)
    try:
        yield
    finally:
        shutil.rmtree(tuf_dir(data_dir))
        shutil.copytree(into, tuf_dir(data_dir))
