"""Sending DICOM studies to the portal: de-identified first, then uploaded resumably (docs/protocol.md, uploads).

Two steps, so that nothing leaves the device before the anonymizer has passed it:

1. **prepare** de-identifies the inputs with `anonymizer.batch.run_batch` (verified outputs only; a file it
   refuses is recorded in the quarantine `<state_dir>/uploads/quarantine` and never queued) into
   `<state_dir>/uploads/<batch>/out`, and adds every output to the durable queue
   `<state_dir>/uploads/queue.json` with its size and SHA-256. The queue names a file by its de-identified
   UIDs (`<study>_<series>_<instance>.dcm`), never by its input name, which can carry a patient's name.
2. **Uploader.run_once** sends the queue, oldest first: it announces a file (or asks where its upload stands),
   sends chunks from the offset the portal reports, each with its SHA-256, and completes the upload, which the
   portal checks against the whole file's SHA-256 and then for identifying data of its own accord. The queue
   remembers the upload's ID and the offset reached after every chunk, but the portal's `received` is what
   counts: a new run (also in a new process, after the agent restarted) asks the portal and goes on from there,
   so an interrupted file arrives whole and once. The final state (accepted, or rejected with the portal's
   problems) stays in the queue for `list()`; the local de-identified copy is deleted then.

A failure to reach the portal (`agent.uplink.LinkError`) ends a run: everything done so far is kept and the
caller tries again later. Entry states:

    queued     de-identified, waiting to be announced
    uploading  announced; `upload_id` and `sent` (the portal's offset) say how far it got
    accepted   arrived whole and passed the portal's check; the local copy is deleted
    rejected   the portal's check found something (`problems`); deleted at the portal and here
    failed     cannot be sent from here (the local copy is gone or changed); `problems` says why
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.errors import ServiceGateError, UsageError
from agent.fsutil import read_json, write_json
from agent.protocol import MAX_CASE_ID
from agent.uplink import LinkError
from anonymizer.batch import collect_inputs, run_batch

log = logging.getLogger("servicegate.upload")

CHUNK_BYTES = 1024 * 1024
MAX_SESSION_ID = 16
MAX_CONFLICTS = 5  # 409s in a row without progress before a run gives up on the portal
UPLOADS_DIR = "uploads"
QUEUE_FILE = "queue.json"
PENDING = ("queued", "uploading")
FINAL = ("accepted", "rejected", "failed")

Call = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Refusal:
    """An input the anonymizer refused: its local path (the site's own; it stays on the device) and why, by place
    and cause, never by value."""

    path: Path
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "reason": self.reason}


@dataclass
class PrepareReport:
    """What `prepare` did: the queue entries it added and the inputs refused (quarantined, never queued)."""

    batch_id: str
    total: int
    queued: list[dict[str, Any]]
    refused: list[Refusal]
    quarantine_dir: Path
    stopped: str | None = None  # why de-identification stopped early (the output could not be written)
    not_done: list[Path] = field(default_factory=list)  # inputs never tried because it stopped

    @property
    def accepted(self) -> int:
        return len(self.queued)

    def to_dict(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "total": self.total, "queued": len(self.queued),
                "refused": len(self.refused), "entries": self.queued,
                "refusals": [r.to_dict() for r in self.refused], "quarantine_dir": str(self.quarantine_dir),
                "stopped": self.stopped, "not_done": [str(p) for p in self.not_done]}


def prepare(paths: list[Path], state_dir: Path, key_file: Path, *, case_id: str = "",
            session_id: str = "") -> PrepareReport:
    """De-identify `paths` (files, or folders walked) and queue every verified output for upload.

    Raises UsageError for a case or session ID the portal would not take, and what `run_batch` raises for a
    key file it cannot use; a bad input file is only refused.
    """
    if len(case_id) > MAX_CASE_ID:
        raise UsageError(f"the case ID is {len(case_id)} characters long; the portal takes at most {MAX_CASE_ID}")
    if len(session_id) > MAX_SESSION_ID:
        raise UsageError(f"the session ID is {len(session_id)} characters long; at most {MAX_SESSION_ID}")
    queue = Queue(state_dir)
    batch_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
    queue.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    out_dir = (queue.root / batch_id / "out").resolve()  # as run_batch names its outputs
    quarantine = queue.root / "quarantine"
    inputs = collect_inputs(paths)
    report = run_batch(inputs, out_dir, options=frozenset(), key_file=key_file, quarantine_dir=quarantine)
    entries: list[dict[str, Any]] = []
    refused: list[Refusal] = []
    for result in report.results:
        if result.status == "accepted" and result.output is not None:
            size, sha256 = _size_and_sha256(result.output)
            name = "_".join(result.output.relative_to(out_dir).parts)  # <study>_<series>_<instance>.dcm
            entries.append({"entry_id": secrets.token_hex(8), "name": name,
                            "size": size, "sha256": sha256, "case_id": case_id, "session_id": session_id,
                            "path": str(result.output), "state": "queued", "upload_id": None, "sent": 0,
                            "problems": [], "queued_at": _now(), "finished_at": None})
        else:
            refused.append(Refusal(result.source, result.reason or "refused"))
    if entries:
        with queue.editing() as queued:
            queued.extend(entries)
    else:
        _prune(out_dir, queue.root)
    log.info("upload batch %s: %d queued, %d refused", batch_id, len(entries), len(refused))
    return PrepareReport(batch_id=batch_id, total=len(inputs), queued=entries, refused=refused,
                         quarantine_dir=quarantine, stopped=report.stopped, not_done=report.not_done)


class Queue:
    """`<state_dir>/uploads/queue.json`: every file queued, oldest first. Each change is a read, modify and atomic
    write under a lock file, so that `prepare` and an uploader can change it at the same time."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / UPLOADS_DIR
        self.file = self.root / QUEUE_FILE

    def entries(self) -> list[dict[str, Any]]:
        try:
            document = read_json(self.file)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ServiceGateError(f"the upload queue {self.file} cannot be read ({exc}); nothing was changed. "
                                   "Restore it from a backup or move it aside (its files are then not sent)") from None
        entries = document.get("entries") if isinstance(document, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ServiceGateError(f"the upload queue {self.file} holds no list of entries; move it aside")
        return entries

    @contextlib.contextmanager
    def editing(self) -> Iterator[list[dict[str, Any]]]:
        """The entries to change in place; written back when the block ends without an exception."""
        with self.locked(".queue.lock"):
            entries = self.entries()
            yield entries
            write_json(self.file, {"version": 1, "entries": entries})

    def update(self, entry_id: str, **values: Any) -> dict[str, Any]:
        with self.editing() as entries:
            entry = next(e for e in entries if e.get("entry_id") == entry_id)
            entry.update(values)
            return dict(entry)

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.root / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class Uploader:
    """Sends the queue to the portal through `call` (`agent.uplink.Uplink.call`). See the module docstring."""

    def __init__(self, call: Call, state_dir: Path, *, chunk_bytes: int = CHUNK_BYTES,
                 on_chunk: Callable[[str, int], None] | None = None) -> None:
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be at least 1, not {chunk_bytes}")
        self._call = call
        self._queue = Queue(state_dir)
        self._chunk_bytes = chunk_bytes
        self._on_chunk = on_chunk

    def run_once(self) -> int:
        """Send every queued file, oldest first; returns how many reached a final state. LinkError (or the
        link's Stopped) ends the run with everything so far kept; call again later. One run at a time: a second
        one waits for the first."""
        finished = 0
        with self._queue.locked(".run.lock"):
            for entry in self._queue.entries():
                if entry.get("state") in PENDING:
                    finished += self._send(entry) in FINAL
        return finished

    def _send(self, entry: dict[str, Any]) -> str:
        entry_id, size, path = entry["entry_id"], int(entry["size"]), Path(entry["path"])
        answer = self._where(entry)
        conflicts = 0
        while answer["state"] == "receiving":
            upload_id, received = answer["upload_id"], answer["received"]
            entry = self._queue.update(entry_id, state="uploading", upload_id=upload_id, sent=received)
            try:
                if received == size:
                    answer = self._checked(self._call("POST", f"/v1/uploads/{upload_id}/complete"))
                else:
                    chunk = _read(path, received, min(self._chunk_bytes, size - received))
                    if chunk is None:
                        return self._fail(entry, "the de-identified file is no longer on the device (or was cut "
                                                 "short); it was not sent: upload the study again")
                    answer = self._checked(self._call(
                        "PUT", f"/v1/uploads/{upload_id}", params={"offset": received}, data=chunk,
                        headers={"X-Chunk-SHA256": hashlib.sha256(chunk).hexdigest(),
                                 "Content-Type": "application/octet-stream"}))
                    self._queue.update(entry_id, sent=answer["received"])
                    if self._on_chunk is not None:
                        self._on_chunk(upload_id, answer["received"])
                conflicts = 0
            except LinkError as exc:
                if exc.status == 409:  # the portal stands elsewhere (a chunk sent twice, a part it lost): ask
                    conflicts += 1
                    if conflicts > MAX_CONFLICTS:
                        raise
                    answer = self._where(entry)
                elif exc.status == 400 and received == size and _size_and_sha256(path) != (size, entry["sha256"]):
                    return self._fail(entry, "the de-identified file changed on the device after it was queued; "
                                             "it was not accepted: upload the study again")
                else:
                    raise
        return self._finish(entry, answer)

    def _where(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Where the entry's upload stands at the portal: asked for, or announced (again, if the portal does not
        know it: announcing the same file gives the same upload)."""
        if entry.get("upload_id"):
            try:
                return self._checked(self._call("GET", f"/v1/uploads/{entry['upload_id']}"))
            except LinkError as exc:
                if exc.status != 404:
                    raise
                log.warning("the portal does not know upload %s any more; announcing the file again",
                            entry["upload_id"])
        body = {key: entry[key] for key in ("name", "size", "sha256", "case_id", "session_id")}
        return self._checked(self._call("POST", "/v1/uploads", json=body))

    def _checked(self, answer: dict[str, Any]) -> dict[str, Any]:
        upload_id, received, state = answer.get("upload_id"), answer.get("received"), answer.get("state")
        problems = answer.get("problems", [])
        if not isinstance(upload_id, str) or not upload_id or not isinstance(received, int) or received < 0 \
                or state not in ("receiving", "accepted", "rejected") or not isinstance(problems, list):
            raise LinkError(f"the portal's answer about an upload is not one (upload_id, received, state, "
                            f"problems): {str(answer)[:200]}; is the portal URL right?")
        return {"upload_id": upload_id, "received": received, "state": state,
                "problems": [str(p) for p in problems]}

    def _finish(self, entry: dict[str, Any], answer: dict[str, Any]) -> str:
        # The local copy goes first: should the agent stop right here, the next run asks the portal again and
        # records the same outcome, rather than leaving a copy nobody will delete.
        _remove(Path(entry["path"]), self._queue.root)
        self._queue.update(entry["entry_id"], state=answer["state"], upload_id=answer["upload_id"],
                           sent=answer["received"], problems=answer["problems"], finished_at=_now())
        if answer["state"] == "accepted":
            log.info("upload %s (%s) accepted by the portal", answer["upload_id"], entry["name"])
        else:
            log.warning("upload %s (%s) rejected by the portal: %s", answer["upload_id"], entry["name"],
                        "; ".join(answer["problems"]))
        return str(answer["state"])

    def _fail(self, entry: dict[str, Any], problem: str) -> str:
        _remove(Path(entry["path"]), self._queue.root)
        self._queue.update(entry["entry_id"], state="failed", problems=[problem], finished_at=_now())
        log.error("upload of %s failed: %s", entry["name"], problem)
        return "failed"

    def list(self) -> builtins.list[dict[str, Any]]:
        """The queue, oldest first, each entry with its state (and, once final, the portal's problems)."""
        return self._queue.entries()


def _read(path: Path, offset: int, length: int) -> bytes | None:
    """`length` bytes of `path` from `offset`, or None when the file is gone or shorter."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
    except FileNotFoundError:
        return None
    return data if len(data) == length else None


def _size_and_sha256(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as handle:
            while block := handle.read(CHUNK_BYTES):
                digest.update(block)
                size += len(block)
    except FileNotFoundError:
        return -1, ""
    return size, digest.hexdigest()


def _remove(path: Path, root: Path) -> None:
    """Delete a de-identified copy, and the folders of its batch once they are empty."""
    path.unlink(missing_ok=True)
    _prune(path.parent, root)


def _prune(folder: Path, root: Path) -> None:
    """Remove `folder` and its parents below `root` while they are empty."""
    root = root.resolve()
    folder = folder.resolve()
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:  # not empty (or already gone): stop here
            if folder.exists():
                return
        folder = folder.parent


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
