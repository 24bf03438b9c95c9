"""De-identified DICOM files sent up by devices, resumably: announced, sent in chunks, completed and checked.

How an upload goes, and why:

1. **Announce** (`POST /v1/uploads`): name, size, SHA-256 of the whole file, the case and session it belongs to.
   The same device announcing the same file again (same SHA-256, name and size) gets the upload it started
   before, so a device that lost the answer never starts a second copy.
2. **Chunks** (`PUT /v1/uploads/{id}?offset=N`), each with its own SHA-256 (`X-Chunk-SHA256`), at most
   `MAX_CHUNK_BYTES`. A chunk is taken only at the offset the portal has reached (`received`), so a chunk sent
   twice after a lost answer is refused (409) instead of written twice; the device asks where the upload
   stands and goes on from there. A chunk is written and fsynced before `received` moves past it, and the part
   file is cut back to `received` before every write: bytes of a write that a crash interrupted are never kept.
3. **Complete** (`POST /v1/uploads/{id}/complete`): the whole file's SHA-256 must be the one announced (else the
   part is discarded and the device sends it again). Then the second line of defence,
   `portal.dicom_check.check_file`, looks for what must not have left the device: a file it finds anything in
   is deleted and the upload `rejected` with the problems, which the device records; a clean one is `accepted`
   and kept as `<data>/uploads/<device>/accepted/<sha256>.dcm`. Completing again gives the same answer.

Storage: part files in `<data>/uploads/<device>/<upload id>.part`, the metadata in `<data>/uploads.sqlite`
(its own file, WAL, synchronous=FULL; the portal's main store is not touched). One lock per upload keeps two
requests for the same upload (a retry racing the original) from interleaving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, field_validator

from anonymizer.pseudonyms import fsync_dir
from portal.auth import Caller
from portal.dicom_check import check_file
from portal.store import Store, transaction

log = logging.getLogger("servicegate.portal.uploads")

router = APIRouter(tags=["uploads"])

MAX_FILE_BYTES = 4 * 1024**3
MAX_CHUNK_BYTES = 8 * 1024 * 1024
HASH_READ_BYTES = 1024 * 1024
UPLOAD_ID = r"^[0-9a-f]{32}$"
SHA256 = r"^[0-9a-f]{64}$"
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

State = Literal["receiving", "accepted", "rejected"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    case_id TEXT NOT NULL DEFAULT '',
    session_id TEXT NOT NULL DEFAULT '',
    received INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    problems TEXT NOT NULL DEFAULT '[]',
    accepted_path TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_same_file ON uploads (device_id, sha256, name, size);
"""


# --- messages -----------------------------------------------------------------------------------------------

class AnnounceRequest(BaseModel):
    name: str = Field(min_length=1, max_length=255,
                      description="The file's name as the device calls it (no folders, no slashes). It names the "
                                  "de-identified file, never the input file, whose name can carry a patient's name.")
    size: int = Field(ge=0, le=MAX_FILE_BYTES, description="The whole file's size in bytes (at most 4 GiB).")
    sha256: str = Field(pattern=SHA256, description="SHA-256 of the whole file, lower-case hex. The same device "
                                                    "announcing the same SHA-256, name and size again gets the "
                                                    "upload it started before.")
    case_id: str = Field("", max_length=64, description="The service case the file belongs to, or empty.")
    session_id: str = Field("", max_length=16, description="The remote session the file belongs to, or empty.")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
            raise ValueError("a file name without folders: no '/', '\\' or NUL, and not '.' or '..'")
        return name


class UploadAnswer(BaseModel):
    upload_id: str = Field(description="The upload's ID, for the chunks and the completion.")
    received: int = Field(description="How many bytes the portal holds: the offset of the next chunk.")
    state: State = Field(description="receiving: chunks are taken; accepted: the file arrived whole and passed the "
                                     "portal's check; rejected: it failed the check and was deleted (see problems).")
    problems: list[str] = Field(description="Why the file was rejected (what was found and where, never the "
                                            "values); empty otherwise.")


# --- the metadata ---------------------------------------------------------------------------------------------

class _Locks:
    """One lock per upload, alive while someone holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()

    def of(self, key: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock


_LOCKS = _Locks()  # process-wide: every request for one upload, whichever thread serves it, takes the same lock


class Uploads:
    """The uploads of one portal data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.root = data_dir / "uploads"
        self.db_path = data_dir / "uploads.sqlite"
        db = sqlite3.connect(self.db_path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        finally:
            db.close()

    @contextlib.contextmanager
    def _db(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        with transaction(self.db_path, write=write) as db:
            db.row_factory = sqlite3.Row
            yield db

    def lock(self, upload_id: str) -> threading.Lock:
        return _LOCKS.of(f"{self.db_path.resolve()}:{upload_id}")

    def folder(self, device_id: str) -> Path:
        """`<data>/uploads/<device_id>`. Device IDs are whatever the vendor registered; one that is not a plain
        name (a slash, a leading dot) gets a folder named by its hash instead, so that no ID can name a path."""
        if _PLAIN_ID.fullmatch(device_id):
            return self.root / device_id
        return self.root / f"device-{hashlib.sha256(device_id.encode()).hexdigest()[:32]}"

    def part(self, row: sqlite3.Row) -> Path:
        return self.folder(row["device_id"]) / f"{row['upload_id']}.part"

    def accepted_file(self, device_id: str, sha256: str) -> Path:
        return self.folder(device_id) / "accepted" / f"{sha256}.dcm"

    def row(self, device_id: str, upload_id: str) -> sqlite3.Row:
        """The device's upload, or 404 (another device's upload is not this one's to see)."""
        with self._db(write=False) as db:
            row = db.execute("SELECT * FROM uploads WHERE upload_id = ? AND device_id = ?",
                             (upload_id, device_id)).fetchone()
        if row is None:
            raise HTTPException(404, f"no upload {upload_id} from this device: announce the file first "
                                     "(POST /v1/uploads)")
        return row  # type: ignore[no-any-return]

    def rows(self, device_id: str) -> list[sqlite3.Row]:
        with self._db(write=False) as db:
            return db.execute("SELECT * FROM uploads WHERE device_id = ? ORDER BY created, upload_id",
                              (device_id,)).fetchall()

    def announce(self, device_id: str, body: AnnounceRequest) -> sqlite3.Row:
        with self._db() as db:  # the write lock at once: two announcements of one file make one upload
            row = db.execute("SELECT * FROM uploads WHERE device_id = ? AND sha256 = ? AND name = ? AND size = ? "
                             "ORDER BY created LIMIT 1", (device_id, body.sha256, body.name, body.size)).fetchone()
            if row is not None:
                return row  # type: ignore[no-any-return]
            upload_id = secrets.token_hex(16)
            now = time.time()
            db.execute("INSERT INTO uploads (upload_id, device_id, name, size, sha256, case_id, session_id, state, "
                       "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, 'receiving', ?, ?)",
                       (upload_id, device_id, body.name, body.size, body.sha256, body.case_id, body.session_id,
                        now, now))
            return db.execute("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()  # type: ignore[no-any-return]

    def update(self, upload_id: str, **values: Any) -> sqlite3.Row:
        columns = ", ".join(f"{name} = ?" for name in values)
        with self._db() as db:
            db.execute(f"UPDATE uploads SET {columns}, updated = ? WHERE upload_id = ?",  # column names are ours
                       (*values.values(), time.time(), upload_id))
            return db.execute("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()  # type: ignore[no-any-return]


def _answer(row: sqlite3.Row) -> UploadAnswer:
    return UploadAnswer(upload_id=row["upload_id"], received=row["received"], state=row["state"],
                        problems=json.loads(row["problems"]))


def _uploads(request: Request) -> Uploads:
    """The app's uploads, opened on first use (two requests opening them at once open the same file alike)."""
    uploads: Uploads | None = getattr(request.app.state, "uploads", None)
    if uploads is None:
        store: Store = request.app.state.store
        uploads = request.app.state.uploads = Uploads(store.path.parent)
    return uploads


def uploads_of(data_dir: Path, device_id: str) -> list[dict[str, Any]]:
    """Every upload of `device_id` at the portal with this data folder, oldest first (for the command line and
    tests): upload_id, name, size, sha256, case_id, session_id, state, received, problems, and `path`, the
    accepted file (None unless accepted)."""
    if not (data_dir / "uploads.sqlite").exists():
        return []
    return [{"upload_id": r["upload_id"], "name": r["name"], "size": r["size"], "sha256": r["sha256"],
             "case_id": r["case_id"], "session_id": r["session_id"], "state": r["state"], "received": r["received"],
             "problems": json.loads(r["problems"]), "path": Path(r["accepted_path"]) if r["accepted_path"] else None}
            for r in Uploads(data_dir).rows(device_id)]


# --- files ----------------------------------------------------------------------------------------------------

def _make_dirs(directory: Path) -> None:
    """`directory` and its parents, each new one made durable in its parent."""
    missing = []
    for folder in (directory, *directory.parents):
        if folder.exists():
            break
        missing.append(folder)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for folder in reversed(missing):
        fsync_dir(folder.parent)


def _write_chunk(part: Path, offset: int, chunk: bytes) -> None:
    """Write `chunk` at `offset`, after cutting the part back to `offset`, and make it durable."""
    _make_dirs(part.parent)
    created = not part.exists()
    fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, offset)
        view = memoryview(chunk)
        position = offset
        while view:
            written = os.pwrite(fd, view, position)
            view, position = view[written:], position + written
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(part.parent)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _part_holds(part: Path, received: int) -> bool:
    try:
        return part.stat().st_size >= received
    except FileNotFoundError:
        return received == 0


# --- the endpoints --------------------------------------------------------------------------------------------

UploadId = Annotated[str, PathParam(pattern=UPLOAD_ID, description="The ID the announcement gave.")]


@router.post("/v1/uploads")
def announce(body: AnnounceRequest, request: Request, device_id: Caller) -> UploadAnswer:
    """Announce a de-identified file before its chunks; the answer says from which offset to send. Announcing the
    same file again gives the same upload."""
    return _answer(_uploads(request).announce(device_id, body))


@router.get("/v1/uploads/{upload_id}", responses={404: {"description": "no such upload from this device"}})
def status(upload_id: UploadId, request: Request, device_id: Caller) -> UploadAnswer:
    """Where an upload stands: how many bytes arrived, and whether it was accepted or rejected."""
    uploads = _uploads(request)
    row = uploads.row(device_id, upload_id)
    if row["state"] == "receiving" and not _part_holds(uploads.part(row), row["received"]):
        with uploads.lock(upload_id):  # looked again under the lock: a completion may have just moved the part
            row = uploads.row(device_id, upload_id)
            if row["state"] == "receiving" and row["received"] != row["size"] and \
                    not _part_holds(uploads.part(row), row["received"]):
                row = uploads.update(upload_id, received=0)  # the part was lost: the device starts over
    return _answer(row)


@router.put("/v1/uploads/{upload_id}", openapi_extra={"requestBody": {
    "required": True, "description": f"The chunk's bytes, at most {MAX_CHUNK_BYTES} bytes.",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    responses={400: {"description": "the chunk does not match its X-Chunk-SHA256, or runs past the file's size"},
               404: {"description": "no such upload from this device"},
               409: {"description": "the offset is not where the upload stands (the detail says where), or the "
                                    "upload is complete"},
               413: {"description": "the chunk is larger than 8 MiB"}})
async def chunk(upload_id: UploadId, request: Request, device_id: Caller,
                offset: Annotated[int, Query(ge=0, le=MAX_FILE_BYTES, description="Where the chunk goes: the "
                                             "upload's `received`.")],
                x_chunk_sha256: Annotated[str, Header(alias="X-Chunk-SHA256", pattern=SHA256,
                                                      description="SHA-256 of the chunk, lower-case hex.")]
                ) -> UploadAnswer:
    """One chunk of the file, at the offset the portal has reached; written durably before it counts."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_CHUNK_BYTES:
        raise HTTPException(413, f"a chunk is at most {MAX_CHUNK_BYTES} bytes; send smaller chunks")
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > MAX_CHUNK_BYTES:
            raise HTTPException(413, f"a chunk is at most {MAX_CHUNK_BYTES} bytes; send smaller chunks")
    if not data:
        raise HTTPException(400, "the chunk is empty: send the file's bytes from the upload's `received` offset")
    if hashlib.sha256(data).hexdigest() != x_chunk_sha256:
        raise HTTPException(400, f"the chunk at offset {offset} does not match its X-Chunk-SHA256 (damaged on the "
                                 "way?); it was not stored: send it again")
    return await asyncio.to_thread(_store_chunk, _uploads(request), device_id, upload_id, offset, bytes(data))


def _store_chunk(uploads: Uploads, device_id: str, upload_id: str, offset: int, data: bytes) -> UploadAnswer:
    with uploads.lock(upload_id):
        row = uploads.row(device_id, upload_id)
        if row["state"] != "receiving":
            raise HTTPException(409, f"upload {upload_id} is complete ({row['state']}); nothing more is taken")
        received = row["received"]
        part = uploads.part(row)
        if not _part_holds(part, received):
            row, received = uploads.update(upload_id, received=0), 0
        if offset != received:
            raise HTTPException(409, f"the portal holds {received} bytes of upload {upload_id}, so the next chunk "
                                     f"goes at offset {received}, not {offset}: ask GET /v1/uploads/{upload_id} and "
                                     "go on from its `received`")
        if offset + len(data) > row["size"]:
            raise HTTPException(400, f"the chunk runs to byte {offset + len(data)}, past the announced size "
                                     f"{row['size']}; announce the file with its real size")
        _write_chunk(part, offset, data)
        return _answer(uploads.update(upload_id, received=offset + len(data)))


@router.post("/v1/uploads/{upload_id}/complete",
             responses={400: {"description": "the whole file does not match its SHA-256; the part was discarded"},
                        404: {"description": "no such upload from this device"},
                        409: {"description": "not every byte has arrived yet"}})
def complete(upload_id: UploadId, request: Request, device_id: Caller) -> UploadAnswer:
    """Check the whole file (its SHA-256, then the portal's own look for identifying data) and accept or reject
    it. Completing an upload again gives its answer again."""
    uploads = _uploads(request)
    store: Store = request.app.state.store
    with uploads.lock(upload_id):
        row = uploads.row(device_id, upload_id)
        part = uploads.part(row)
        if row["state"] != "receiving":
            part.unlink(missing_ok=True)  # left over if the portal stopped right after a rejection
            return _answer(row)
        if row["received"] != row["size"]:
            raise HTTPException(409, f"{row['received']} of {row['size']} bytes have arrived: send the rest from "
                                     f"offset {row['received']}, then complete the upload")
        accepted = uploads.accepted_file(device_id, row["sha256"])
        if not part.exists() and row["size"] > 0:
            # Accepted just before the portal stopped, before it could say so; or the part was lost.
            if accepted.exists() and _sha256_of(accepted) == row["sha256"]:
                return _accept(uploads, store, row, accepted)
            uploads.update(upload_id, received=0)
            raise HTTPException(409, f"the portal lost the bytes of upload {upload_id}: send the file again from "
                                     "offset 0")
        if row["size"] == 0:
            _write_chunk(part, 0, b"")
        os.truncate(part, row["size"])  # nothing past the announced size counts
        actual = _sha256_of(part)
        if actual != row["sha256"]:
            part.unlink(missing_ok=True)
            uploads.update(upload_id, received=0)
            store.log(device_id, "upload_damaged", f"upload {upload_id}: the whole file's SHA-256 is {actual}, "
                                                   f"not the announced {row['sha256']}; discarded")
            raise HTTPException(400, f"the file that arrived does not match the SHA-256 it was announced with; it "
                                     f"was discarded: send it again from offset 0 (GET /v1/uploads/{upload_id})")
        problems = check_file(part)
        if problems:
            row = uploads.update(upload_id, state="rejected", problems=json.dumps(problems))
            part.unlink(missing_ok=True)  # after the record: a crash in between only leaves a part to tidy up
            store.log(device_id, "upload_rejected", f"upload {upload_id} ({row['name']}, {row['size']} bytes, "
                                                    f"sha256 {row['sha256']}): {'; '.join(problems)}")
            log.warning("upload %s from %s rejected: %s", upload_id, device_id, "; ".join(problems))
            return _answer(row)
        _make_dirs(accepted.parent)
        os.replace(part, accepted)  # the same bytes if a copy is there already: names by SHA-256
        fsync_dir(accepted.parent)
        fsync_dir(part.parent)
        return _accept(uploads, store, row, accepted)


def _accept(uploads: Uploads, store: Store, row: sqlite3.Row, accepted: Path) -> UploadAnswer:
    row = uploads.update(row["upload_id"], state="accepted", accepted_path=str(accepted))
    store.log(row["device_id"], "upload_accepted", f"upload {row['upload_id']} ({row['name']}, {row['size']} bytes, "
                                                   f"sha256 {row['sha256']}, case {row['case_id'] or '-'})")
    return _answer(row)
