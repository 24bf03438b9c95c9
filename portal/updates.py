"""Updates from the service centre (software, virus patterns, configuration): the portal's TUF repository, the
endpoints that serve it, and the devices' reports of what they did with an update (docs/protocol.md, "Updates
(TUF)").

A device trusts an update only through The Update Framework: python-tuf's client on the device checks the metadata
this module writes with python-tuf's own Metadata API, signed with securesystemslib's CryptoSigner. Nothing here
defines a format or checks a signature of its own. The repository lies in `<data_dir>/tuf/`:

- `keys/<role>.pem`: one Ed25519 private key (PKCS#8 PEM, 0600) for each top-level role (root, targets, snapshot,
  timestamp), each role with threshold 1. The reference portal keeps all four online, for convenience; a production
  repository keeps the root and targets keys offline.
- `metadata/`: consistent snapshots: `N.root.json` (and `root.json`, the newest root), `N.targets.json`,
  `N.snapshot.json`, `timestamp.json`.
- `targets/<kind>/<sha256>.<file name>`: the published files, named as consistent snapshots ask; never replaced.

It is made with the data folder (like the vendor CA). Publishing adds a target and signs new targets, snapshot and
timestamp versions. `refresh` signs a new timestamp, and a new version of any other role close to its expiry:
`serve` does it when it starts (the snapshot too) and every hour while it runs, `servicegate-portal tuf refresh` when
asked. Writers hold `tuf/.lock`; every file is replaced atomically and the timestamp last, so the server, which reads
the files for each request, never serves a half-made state.

The device learns of an update from an `update_offer` inbox message that names the target and nothing else: what the
update is and whom it is for, the device reads from the signed metadata only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import hashlib
import logging
import os
import re
import secrets
import unicodedata
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

# tuf.api.metadata and securesystemslib.signer re-export these without __all__, which mypy --strict does not follow:
# they are imported from where those modules take them.
from securesystemslib.signer._crypto_signer import CryptoSigner
from tuf.api._payload import MetaFile, Root, Signed, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.metadata import Metadata
from tuf.api.serialization.json import JSONSerializer

from portal.auth import Caller
from portal.store import Store

log = logging.getLogger("servicegate.portal.updates")

KINDS = ("software", "virus-patterns", "configuration")
ROLES = ("root", "targets", "snapshot", "timestamp")
EXPIRY = {"root": datetime.timedelta(days=365), "targets": datetime.timedelta(days=90),
          "snapshot": datetime.timedelta(days=7), "timestamp": datetime.timedelta(days=1)}
# `refresh` signs a new version of a role that expires within this time (the timestamp: at every refresh anyway).
RENEW_BEFORE = {"root": datetime.timedelta(days=60), "targets": datetime.timedelta(days=30),
                "snapshot": datetime.timedelta(days=3), "timestamp": datetime.timedelta(hours=12)}
REFRESH_EVERY_S = 3600
DEFAULT_PUBLISHER = "Vendor Service"
NOTES_MAX = 4000  # what the device shows of the release notes
PUBLISHER_MAX = 200

_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]*(?:\.[A-Za-z0-9_+-]+)*")  # no "/", no leading dot, no ".."
_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+){0,3}")  # what the device compares, part by part as numbers
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_METADATA_NAME = re.compile(r"(?:[1-9][0-9]{0,9}\.(?:root|targets|snapshot)|timestamp)\.json")
_TARGET_PATH = re.compile(rf"(?:{'|'.join(KINDS)})/[0-9a-f]{{64}}\.{_FILE_NAME.pattern}")
_SERIALIZER = JSONSerializer(compact=False)

_Role = TypeVar("_Role", Root, Targets, Snapshot, Timestamp)


class PublishRefused(ValueError):
    """An update the repository will not publish; the message says what is wrong and what to do."""


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Repository:
    """The TUF repository in `<data_dir>/tuf`, created (once) when missing. `now` is the clock expiries count from."""

    def __init__(self, data_dir: Path, *, now: Callable[[], datetime.datetime] = _utc_now) -> None:
        self.folder = data_dir / "tuf"
        self.keys = self.folder / "keys"
        self.metadata = self.folder / "metadata"
        self.targets = self.folder / "targets"
        self._now = now
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.first_root_file.exists():
            with self._lock():
                if not self.first_root_file.exists():
                    self._create()

    @property
    def first_root_file(self) -> Path:
        """The first root: the device gets it at enrollment, then follows the chain of newer roots."""
        return self.metadata / "1.root.json"

    def first_root(self) -> str:
        return self.first_root_file.read_text()

    # --- publishing ------------------------------------------------------------------------------------------

    def publish(self, file: Path, *, kind: str, version: str, models: Sequence[str],
                software_versions: Sequence[str] = (), restart: bool = False, downtime: bool = False,
                notes: str = "", publisher: str = DEFAULT_PUBLISHER) -> dict[str, Any]:
        """Add `file` as the target `<kind>/<file name>` with its custom metadata, and sign new targets, snapshot
        and timestamp versions. PublishRefused says what is wrong with the input; nothing is changed then."""
        custom = custom_metadata(kind=kind, version=version, models=models, software_versions=software_versions,
                                 restart=restart, downtime=downtime, notes=notes, publisher=publisher)
        if not _FILE_NAME.fullmatch(file.name) or len(file.name) > 128:
            raise PublishRefused(f"the file name {file.name!r} cannot be a target name: use at most 128 letters, "
                                 "digits, '.', '_', '+' and '-', starting with a letter or digit, like "
                                 "patterns-2026.12.05.tar")
        if not file.is_file():
            raise PublishRefused(f"{file}: no such file to publish")
        name = f"{kind}/{file.name}"
        with self._lock():
            targets = self._current(Targets)
            if name in targets.signed.targets:
                published = (targets.signed.targets[name].custom or {}).get("version", "?")
                raise PublishRefused(f"{name} is already published (version {published}); a published target is "
                                     "never replaced: publish the new file under a new name")
            for other, info in targets.signed.targets.items():
                same = info.custom or {}
                if (same.get("kind"), same.get("version")) == (kind, version) and \
                        set(same.get("models", [])) & set(custom["models"]):
                    both = ", ".join(sorted(set(same["models"]) & set(custom["models"])))
                    raise PublishRefused(f"{kind} {version} for {both} is already published as {other}: give the "
                                         "update a new version")
            target = self._store_target(file, name)
            target.unrecognized_fields["custom"] = custom
            targets.signed.targets[name] = target
            versions = self._sign_targets(targets)
        log.info("published %s (%s %s)", name, kind, version)
        return {**describe(name, target), **versions}

    def refresh(self, *, force: Collection[str] = ("timestamp",)) -> dict[str, int]:
        """Sign new versions of the roles in `force` and of any role that expires within RENEW_BEFORE (with the
        snapshot and timestamp that must follow them); the new version of each role signed."""
        unknown = set(force) - set(ROLES)
        if unknown:
            raise ValueError(f"no TUF role {', '.join(sorted(unknown))}; the roles are {', '.join(ROLES)}")
        signed: dict[str, int] = {}
        with self._lock():
            root = self._current(Root)
            if "root" in force or self._due(root.signed, "root"):
                signed["root"] = self._sign_new(root, "root")
            targets = self._current(Targets)
            if "targets" in force or self._due(targets.signed, "targets"):
                signed.update(self._sign_targets(targets))
            elif "snapshot" in force or self._due(self._current(Snapshot).signed, "snapshot"):
                signed.update(self._sign_snapshot(targets.signed.version))
            elif "timestamp" in force or self._due(self._current(Timestamp).signed, "timestamp"):
                signed["timestamp"] = self._sign_timestamp(self._latest_version("snapshot"))
        return signed

    def published(self) -> list[dict[str, Any]]:
        """Every target of the current targets metadata, by name."""
        targets = self._current(Targets)
        return [describe(name, info) for name, info in sorted(targets.signed.targets.items())]

    def versions(self) -> dict[str, int]:
        """The current version of each role."""
        return {"root": self._current(Root).signed.version, "targets": self._current(Targets).signed.version,
                "snapshot": self._current(Snapshot).signed.version,
                "timestamp": self._current(Timestamp).signed.version}

    # --- what the server serves -----------------------------------------------------------------------------

    def metadata_bytes(self, filename: str) -> bytes | None:
        """A metadata file as written (`N.root.json`, `N.targets.json`, `N.snapshot.json`, `timestamp.json`), or
        None. Read whole: the timestamp is replaced while the server runs."""
        if not _METADATA_NAME.fullmatch(filename):
            return None
        try:
            return (self.metadata / filename).read_bytes()
        except FileNotFoundError:
            return None

    def target_file(self, path: str) -> Path | None:
        """The stored file for a consistent-snapshot target path `<kind>/<sha256>.<file name>`, or None."""
        if not _TARGET_PATH.fullmatch(path) or ".." in path.split("/"):
            return None
        found = self.targets / path
        return found if found.is_file() else None

    # --- inside ---------------------------------------------------------------------------------------------

    def _create(self) -> None:
        """A new repository: keys, then version 1 of every role; the first root last, as the mark that it is done
        (a repository cut off before that is made anew: nobody can trust a root that was never written)."""
        self.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.metadata.mkdir(parents=True, exist_ok=True)
        self.targets.mkdir(parents=True, exist_ok=True)
        root = Root(expires=self._expiry("root"), consistent_snapshot=True)
        for role in ROLES:
            signer = CryptoSigner.generate_ed25519()
            _write_atomic(self.keys / f"{role}.pem", signer.private_bytes, mode=0o600)
            root.add_key(signer.public_key, role)
        self._write(Metadata(Targets(expires=self._expiry("targets"))), "targets")
        self._write(Metadata(Snapshot(expires=self._expiry("snapshot"), meta={"targets.json": MetaFile(1)})),
                    "snapshot")
        self._write(Metadata(Timestamp(expires=self._expiry("timestamp"), snapshot_meta=MetaFile(1))), "timestamp")
        self._write(Metadata(root), "root")
        log.info("made the TUF repository in %s", self.folder)

    def _sign_targets(self, targets: Metadata[Targets]) -> dict[str, int]:
        version = self._sign_new(targets, "targets")
        return {"targets": version, **self._sign_snapshot(version)}

    def _sign_snapshot(self, targets_version: int) -> dict[str, int]:
        snapshot = Snapshot(version=self._latest_version("snapshot") + 1, expires=self._expiry("snapshot"),
                            meta={"targets.json": MetaFile(targets_version)})
        self._write(Metadata(snapshot), "snapshot")
        return {"snapshot": snapshot.version, "timestamp": self._sign_timestamp(snapshot.version)}

    def _sign_timestamp(self, snapshot_version: int) -> int:
        timestamp = Timestamp(version=self._current(Timestamp).signed.version + 1, expires=self._expiry("timestamp"),
                              snapshot_meta=MetaFile(snapshot_version))
        self._write(Metadata(timestamp), "timestamp")
        return timestamp.version

    def _sign_new(self, metadata: Metadata[Any], role: str) -> int:
        """The next version of `metadata` (root or targets), with a new expiry."""
        metadata.signed.version = self._latest_version(role) + 1
        metadata.signed.expires = self._expiry(role)
        self._write(metadata, role)
        return int(metadata.signed.version)

    def _write(self, metadata: Metadata[Any], role: str) -> None:
        metadata.sign(self._signer(role))
        data = metadata.to_bytes(_SERIALIZER)
        if role == "timestamp":
            _write_atomic(self.metadata / "timestamp.json", data)
            return
        _write_atomic(self.metadata / f"{metadata.signed.version}.{role}.json", data)
        if role == "root":
            _write_atomic(self.metadata / "root.json", data)

    def _signer(self, role: str) -> CryptoSigner:
        key = load_pem_private_key((self.keys / f"{role}.pem").read_bytes(), None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{self.keys / f'{role}.pem'} is not an Ed25519 key")
        return CryptoSigner(key)

    def _current(self, cls: type[_Role]) -> Metadata[_Role]:
        """The newest metadata of a role, as written (its signatures are not checked: this is the repository)."""
        name = "timestamp.json" if cls is Timestamp else f"{self._latest_version(cls.type)}.{cls.type}.json"
        metadata: Metadata[Any] = Metadata.from_file(str(self.metadata / name))
        if not isinstance(metadata.signed, cls):
            raise ValueError(f"{self.metadata / name} is not {cls.type} metadata")
        return metadata

    def _latest_version(self, role: str) -> int:
        """The highest N of the `N.<role>.json` files (the timestamp: the version in timestamp.json)."""
        if role == "timestamp":
            return self._current(Timestamp).signed.version
        found = [int(p.name.split(".", 1)[0]) for p in self.metadata.glob(f"*.{role}.json")
                 if p.name.split(".", 1)[0].isdigit()]
        if not found:
            raise FileNotFoundError(f"no {role} metadata in {self.metadata}: the TUF repository is incomplete")
        return max(found)

    def _store_target(self, file: Path, name: str) -> TargetFile:
        """Copy `file` into targets/ as `<kind>/<sha256>.<file name>`, hashing what is copied."""
        folder = self.targets / name.split("/")[0]
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{secrets.token_hex(8)}.tmp"
        digest, length = hashlib.sha256(), 0
        try:
            with file.open("rb") as source, temporary.open("wb") as copy:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    length += len(chunk)
                    copy.write(chunk)
                copy.flush()
                os.fsync(copy.fileno())
            os.replace(temporary, folder / f"{digest.hexdigest()}.{file.name}")
        finally:
            temporary.unlink(missing_ok=True)
        return TargetFile(length, {"sha256": digest.hexdigest()}, name)

    def _expiry(self, role: str) -> datetime.datetime:
        return self._now().replace(microsecond=0) + EXPIRY[role]

    def _due(self, signed: Signed, role: str) -> bool:
        return bool(signed.expires - RENEW_BEFORE[role] <= self._now())

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def custom_metadata(*, kind: str, version: str, models: Sequence[str], software_versions: Sequence[str],
                    restart: bool, downtime: bool, notes: str, publisher: str) -> dict[str, Any]:
    """A target's `custom` metadata, checked: what the device reads of an update (docs/protocol.md)."""
    if kind not in KINDS:
        raise PublishRefused(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    if not _VERSION.fullmatch(version):
        raise PublishRefused(f"version {version!r}: one to four numbers separated by dots, like 1.2.3 or 2026.12.05")
    models = [m.strip() for m in models if m.strip()]
    if not models:
        raise PublishRefused("no models: name the scanner models the update is for, like --models CT-DEMO,MR-DEMO")
    for model in models:
        if not _MODEL.fullmatch(model):
            raise PublishRefused(f"model {model!r}: at most 64 letters, digits, '.', '_' and '-'")
    software_versions = [v.strip() for v in software_versions if v.strip()]
    for agent_version in software_versions:
        if not _VERSION.fullmatch(agent_version):
            raise PublishRefused(f"software version {agent_version!r}: a ServiceGate version like 0.1.0")
    if len(notes) > NOTES_MAX or any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in notes):
        raise PublishRefused(f"the release notes must be plain text (lines and tabs allowed) of at most {NOTES_MAX} "
                             "characters")
    publisher = publisher.strip()
    if not publisher or len(publisher) > PUBLISHER_MAX or any(unicodedata.category(c) == "Cc" for c in publisher):
        raise PublishRefused(f"the publisher must be a name on one line of at most {PUBLISHER_MAX} characters, like "
                             f"{DEFAULT_PUBLISHER!r}")
    return {"kind": kind, "version": version, "models": sorted(set(models)),
            "software_versions": sorted(set(software_versions)), "restart": bool(restart),
            "downtime": bool(downtime), "notes": notes, "publisher": publisher}


def describe(name: str, target: TargetFile) -> dict[str, Any]:
    """A target as the command line shows it."""
    return {"name": name, "length": target.length, "sha256": target.hashes.get("sha256", ""),
            "custom": target.custom or {}}


def publish(data_dir: Path, file: Path, kind: str, version: str, models: Sequence[str],
            software_versions: Sequence[str] = (), restart: bool = False, downtime: bool = False, notes: str = "",
            publisher: str = DEFAULT_PUBLISHER) -> dict[str, Any]:
    """Publish `file` in the portal data folder's repository (`Repository.publish`): its name, length, sha256 and
    custom metadata, and the versions of the roles signed."""
    return Repository(data_dir).publish(file, kind=kind, version=version, models=models,
                                        software_versions=software_versions, restart=restart, downtime=downtime,
                                        notes=notes, publisher=publisher)


async def keep_fresh(repository: Repository, every_s: float = REFRESH_EVERY_S) -> None:
    """While the server runs: sign what is close to its expiry (the timestamp lives a day)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            signed = await asyncio.to_thread(repository.refresh, force=())
        except (OSError, ValueError) as exc:
            log.error("the TUF metadata could not be re-signed (%s); run `servicegate-portal tuf refresh`", exc)
            continue
        if signed:
            log.info("re-signed TUF metadata: %s", ", ".join(f"{r} v{v}" for r, v in signed.items()))


def _write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# --- the endpoints ----------------------------------------------------------------------------------------------

router = APIRouter(tags=["updates"])


class UpdateReport(BaseModel):
    target: str = Field(min_length=1, max_length=300, description="The target name the offer named, like "
                                                                  "virus-patterns/patterns-2026.12.05.tar.")
    version: str = Field(default="", max_length=64, description="The version the signed metadata gives (empty when "
                                                                "the device could not read it).")
    outcome: Literal["installed", "failed", "rolled_back", "refused", "rejected", "postponed"] = Field(
        description="installed; failed (the installation failed); rolled_back (failed and the previous version was "
                    "restored); refused (the device would not take it: not in the signed metadata, tampered with, "
                    "for another model, not newer); rejected (by the technologist); postponed (by the "
                    "technologist).")
    detail: str = Field(default="", max_length=4000, description="Why, or what happened, in a sentence.")


class ReportAnswer(BaseModel):
    target: str
    outcome: str
    received: str = Field(description="When the portal recorded it (ISO 8601, UTC).")


_FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no client certificate"},
    404: {"description": "no such file: for `N.root.json` it means that root N-1 is the newest"}}


@router.get("/v1/tuf/metadata/{filename}", response_class=Response, responses={
    200: {"content": {"application/json": {}}, "description": "the signed metadata file, as the portal wrote it"},
    **_FILE_RESPONSES})
def tuf_metadata(filename: str, request: Request, device_id: Caller) -> Response:
    """TUF metadata: `N.root.json`, `timestamp.json`, `N.snapshot.json`, `N.targets.json` (consistent snapshots)."""
    repository: Repository = request.app.state.updates
    data = repository.metadata_bytes(filename)
    if data is None:
        raise HTTPException(404, f"no TUF metadata {filename!r} here (N.root.json, N.snapshot.json, N.targets.json, "
                                 "timestamp.json)")
    return Response(data, media_type="application/json")


@router.get("/v1/tuf/targets/{path:path}", response_class=FileResponse, responses={
    200: {"content": {"application/octet-stream": {}}, "description": "the target file's bytes"},
    **_FILE_RESPONSES})
def tuf_target(path: str, request: Request, device_id: Caller) -> FileResponse:
    """A target file by its consistent-snapshot path, `<kind>/<sha256>.<file name>`: check it against the signed
    targets metadata before use."""
    repository: Repository = request.app.state.updates
    found = repository.target_file(path)
    if found is None:
        raise HTTPException(404, f"no target file {path!r} here; a target is fetched as <kind>/<sha256>.<file name> "
                                 "from the signed targets metadata")
    return FileResponse(found, media_type="application/octet-stream")


@router.post("/v1/updates/report", responses={400: {"description": "the report is not valid"}})
async def report(body: UpdateReport, request: Request, device_id: Caller) -> ReportAnswer:
    """What the calling device did with an offered update; kept once per (device, target, outcome), the latest
    detail winning."""
    store: Store = request.app.state.store
    when = await asyncio.to_thread(store.report_update, device_id, body.target, version=body.version,
                                   outcome=body.outcome, detail=body.detail)
    return ReportAnswer(target=body.target, outcome=body.outcome,
                        received=datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat())

