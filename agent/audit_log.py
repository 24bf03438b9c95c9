"""The tamper-evident audit log: append-only JSON lines, hash-chained, with signed checkpoints.

Every record carries the SHA-256 of the previous record's line, so an edit, deletion, reorder or
insertion breaks the chain where it happened. A checkpoint is itself a chain record that signs the
record before it with the device's Ed25519 key; without the key nobody can rebuild a consistent
chain after changing it. Records after the last checkpoint are not signed yet, so cutting them off
(or appending well-formed records after them) cannot be seen locally: comparing checkpoint heads
with the portal catches that. docs/audit-log.md describes the format for the people who check it.

This module is the record format and the writer. The reader (verify, export) is agent.audit_verify:
it imports the format from here, so the two sides cannot drift apart, and nothing here imports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.clock import Clock, parse_utc, utc_iso
from agent.errors import AuditError
from agent.fsutil import atomic_write, fsync_dir
from agent.protocol import SYSTEM_ACTOR

DEFAULT_KEY_NAME = "audit-signing.key"
GENESIS_PREV = "0" * 64
CHECKPOINT_EVENT = "checkpoint"
PRUNED_EVENT = "audit_pruned"
MIN_RETENTION_DAYS = 365
MAX_LINE_BYTES = 1 << 20  # the writer refuses longer records, so the reader never holds more than this
_RECORD_KEYS = frozenset({"actor", "details", "event", "prev", "seq", "ts"})
CHECKPOINT_KEYS = frozenset({"head_seq", "head_hash", "key_id", "signature"})
_SIGNING_CONTEXT = b"servicegate-audit-checkpoint-v1\n"  # a signature made here means nothing anywhere else
_SEGMENT_RE = re.compile(r"audit-(\d{4})-(\d{2})\.jsonl")
_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_TAIL_BYTES = 2 * MAX_LINE_BYTES + 2  # always holds the whole last line, and usually the last checkpoint

log = logging.getLogger("servicegate.audit")
Month = tuple[int, int]


def canonical(value: Any) -> str:
    """The one serialisation of a record; verify insists on it, so no byte can change unnoticed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def segment_name(month: Month) -> str:
    return f"audit-{month[0]:04d}-{month[1]:02d}.jsonl"


def public_key_path(key_path: Path) -> Path:
    """The PEM public key beside the private key: `audit-signing.key` -> `audit-signing.pub`."""
    return key_path.with_suffix(".pub")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _month_of(when: datetime) -> Month:
    utc = when.astimezone(UTC)
    return utc.year, utc.month


def month_end(month: Month) -> datetime:
    year, number = month
    return datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)


def segment_files(directory: Path) -> list[tuple[Month, Path]]:
    """The segments in a directory, oldest month first; other files are not the log's."""
    found = []
    for path in directory.iterdir():
        match = _SEGMENT_RE.fullmatch(path.name)
        if match and 1 <= int(match[2]) <= 12 and path.is_file():
            found.append(((int(match[1]), int(match[2])), path))
    return sorted(found)


def is_checkpoint(record: dict[str, Any]) -> bool:
    # The key set counts too: otherwise changing one word ("checkpoint" -> anything) would turn the
    # last, signed checkpoint into an unsigned record, i.e. un-sign the log's end without a trace.
    return bool(record["event"] == CHECKPOINT_EVENT or set(record["details"]) == CHECKPOINT_KEYS)


def signed_message(record: dict[str, Any]) -> bytes:
    """What a checkpoint's signature covers: the whole checkpoint record except the signature itself."""
    details = {key: value for key, value in record["details"].items() if key != "signature"}
    return _SIGNING_CONTEXT + canonical({**record, "details": details}).encode()


def parse_record(line: bytes) -> tuple[dict[str, Any] | None, str]:
    """The record on one line (without its newline), or None and what is wrong with the line."""
    if not line:
        return None, "empty line"
    try:
        text = line.decode("utf-8")
        value = json.loads(text)
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except (ValueError, RecursionError):
        return None, "not a JSON record"
    if not isinstance(value, dict) or set(value) != _RECORD_KEYS:
        return None, f"not an audit record (it needs exactly the keys {', '.join(sorted(_RECORD_KEYS))})"
    if type(value["seq"]) is not int or value["seq"] < 1:
        return None, "the sequence number is not a positive integer"
    if not isinstance(value["prev"], str) or not _HEX64_RE.fullmatch(value["prev"]):
        return None, "prev is not a SHA-256 hash"
    if not isinstance(value["event"], str) or not isinstance(value["actor"], str):
        return None, "event and actor must be text"
    if not isinstance(value["details"], dict):
        return None, "details is not an object"
    if not isinstance(value["ts"], str) or not _TS_RE.fullmatch(value["ts"]):
        return None, "the timestamp is not in the form 2026-11-28T01:02:03.456789Z"
    try:
        parse_utc(value["ts"])
        exact = canonical(value) == text
    except (ValueError, OverflowError, RecursionError):
        return None, "the timestamp or a value is out of range"
    if not exact:
        return None, "not in canonical form (spacing, key order or escaping changed)"
    return value, ""


class AuditLog:
    """The writer. One instance per directory; thread-safe (the daemon appends and ticks from several threads).

    `listeners` are called with every record written, checkpoints included, while the log's lock is
    held (so they see records in order): they must be quick and must not block. An exception in a
    listener is logged and does not undo or fail the append, which is already on disk by then.
    """

    def __init__(self, directory: Path, key_path: Path, clock: Clock, *, retention_days: int = MIN_RETENTION_DAYS,
                 checkpoint_interval: timedelta = timedelta(minutes=5)) -> None:
        if retention_days < MIN_RETENTION_DAYS:
            raise AuditError(f"audit retention of {retention_days} days is too short: records are kept at least "
                             f"{MIN_RETENTION_DAYS} days. Set [audit] retention_days to {MIN_RETENTION_DAYS} or more.")
        if checkpoint_interval <= timedelta(0):
            raise AuditError(f"the audit checkpoint interval must be positive, not {checkpoint_interval}")
        self.directory = directory
        self.key_path = key_path
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._clock = clock
        self._retention = timedelta(days=retention_days)
        self._interval = checkpoint_interval
        self._lock = threading.RLock()
        self._seq = 0
        self._prev = GENESIS_PREV
        self._month: Month | None = None  # of the segment appended to: the newest one with records
        self._dirty = False  # records were written since the last checkpoint
        self._last_checkpoint_at: datetime | None = None
        self._fd: int | None = None
        self._closed = False
        try:
            _make_private_dir(directory)
            tail_key_id = self._read_tail()
        except OSError as exc:
            raise AuditError(f"cannot open the audit log in {directory}: {exc}") from exc
        self._key = _load_or_create_key(key_path, log_has_records=self._seq > 0)
        self._key_id = key_id(self._key.public_key())
        if tail_key_id is not None and tail_key_id != self._key_id:
            raise AuditError(
                f"the audit log in {directory} was signed with key {tail_key_id}, but {key_path} holds key "
                f"{self._key_id}. Restore the original signing key; with another key every earlier checkpoint "
                "would fail verification.")

    def _read_tail(self) -> str | None:
        """Continue seq and prev-hash from the newest segment's last lines; the log can be a year long."""
        for month, path in reversed(segment_files(self.directory)):
            size = path.stat().st_size
            if size == 0:
                continue
            with path.open("rb") as handle:
                start = handle.seek(max(0, size - _TAIL_BYTES))
                data = handle.read()
            advice = (f"Keep a copy of {path} for investigation, then run `servicegate audit verify`. If only the last "
                      "line is damaged (a write cut short by a power loss), remove that line and start again.")
            lines = data.split(b"\n")
            if lines.pop() != b"":
                raise AuditError(f"cannot continue the audit log: the last line of {path} is incomplete. {advice}")
            if start > 0:
                lines = lines[1:]  # the first piece is the end of a line that began before the tail
            record, why = parse_record(lines[-1]) if lines else (None, "too long")
            if record is None:
                raise AuditError(f"cannot continue the audit log: the last line of {path} is unreadable ({why}). "
                                 f"{advice}")
            self._seq, self._prev, self._month = record["seq"], line_hash(lines[-1]), month
            self._dirty = not is_checkpoint(record)
            for line in reversed(lines):
                earlier, _ = parse_record(line)
                if earlier is not None and earlier["event"] == CHECKPOINT_EVENT:
                    self._last_checkpoint_at = parse_utc(earlier["ts"])
                    return str(earlier["details"].get("key_id"))
            return None  # no checkpoint in the tail: one is due as soon as anything is written
        return None

    @property
    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record written; (0, 64 zeros) for an empty log."""
        with self._lock:
            return self._seq, self._prev

    def append(self, event: str, actor: str, details: dict[str, Any]) -> dict[str, Any]:
        """Write one record durably (fsync) and return it as it reads back from the file."""
        if not event or event in (CHECKPOINT_EVENT, PRUNED_EVENT) or set(details) == CHECKPOINT_KEYS:
            raise AuditError(f"the audit event {event!r} with these details is reserved for the audit log itself")
        with self._lock:
            return self._append(event, actor, details)

    def checkpoint(self) -> dict[str, Any] | None:
        """A signed checkpoint now, if anything was written since the last one."""
        with self._lock:
            self._require_open()
            return self._write_checkpoint(self._clock.now()) if self._dirty else None

    @property
    def pending(self) -> bool:
        """Records were written since the last checkpoint: one will be due by the passing of time."""
        return self._dirty

    def tick(self) -> None:
        """Called about every second while `pending`: writes the checkpoint that is due, if one is."""
        with self._lock:
            if not self._closed:
                now = self._clock.now()
                if self._checkpoint_due(now):
                    self._write_checkpoint(now)

    def close(self) -> None:
        """Final checkpoint, then close the segment. Closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._dirty:
                    self._write_checkpoint(self._clock.now())
            finally:
                self._closed = True
                self._close_segment()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def prune(self) -> list[Path]:
        """Delete the oldest segments whose every record is older than the retention; return what was deleted.

        The record saying what goes (with the seq and prev-hash the first kept record carries) is written
        and signed before anything is deleted, oldest segment first: verify accepts a log that starts
        after seq 1 only when such a signed record vouches for exactly that start. The segment being
        written to is never deleted, and neither is anything after a segment that must stay.
        """
        with self._lock:
            self._require_open()
            now = self._clock.now()
            cutoff = now - self._retention
            segments = segment_files(self.directory)
            doomed: list[tuple[Path, dict[str, Any]]] = []
            for month, path in segments:
                info = _segment_info(path)
                if info is None or self._month is None or month >= self._month or month_end(month) > cutoff \
                        or ("newest_ts" in info and parse_utc(info["newest_ts"]) > cutoff):
                    break  # only the oldest run goes: a gap in the middle would break the chain for good
                doomed.append((path, info))
            if not doomed:
                return []
            first_kept = self._seq + 1, self._prev  # when every kept segment is empty, the next record is first
            for _, path in segments[len(doomed):]:
                info = _segment_info(path)
                if info is None or "first_seq" in info:
                    first_kept = (info["first_seq"], info["first_prev"]) if info else first_kept
                    break
            self._append(PRUNED_EVENT, SYSTEM_ACTOR, {
                "first_kept_seq": first_kept[0], "first_kept_prev": first_kept[1],
                "retention_days": self._retention.days, "removed": [info for _, info in doomed]})
            self._write_checkpoint(now)
            try:
                for path, _ in doomed:
                    path.unlink()
                    log.info("audit segment %s deleted: older than %d days", path.name, self._retention.days)
                fsync_dir(self.directory)
            except OSError as exc:  # what is left is still a valid log: the prune record vouches for each step
                raise AuditError(f"cannot delete the old audit segment {path}: {exc}") from exc
            return [path for path, _ in doomed]

    def _append(self, event: str, actor: str, details: dict[str, Any]) -> dict[str, Any]:
        self._require_open()
        now = self._clock.now()
        month = _month_of(now)
        if self._month is None:
            self._month = month
        elif month > self._month:  # a clock stepped back keeps writing to the newest segment, never an older one
            if self._dirty:
                self._write_checkpoint(now)  # seals the old segment: its last record is signed
            self._close_segment()
            self._month = month
        record = self._write(self._record(event, actor, details, now))
        self._dirty = True
        if self._checkpoint_due(now):
            self._write_checkpoint(now)
        return record

    def _checkpoint_due(self, now: datetime) -> bool:
        last = self._last_checkpoint_at
        return self._dirty and (last is None or now - last >= self._interval or now < last)

    def _record(self, event: str, actor: str, details: dict[str, Any], now: datetime) -> dict[str, Any]:
        return {"actor": actor, "details": details, "event": event, "prev": self._prev, "seq": self._seq + 1,
                "ts": utc_iso(now)}

    def _write_checkpoint(self, now: datetime) -> dict[str, Any]:
        record = self._record(CHECKPOINT_EVENT, SYSTEM_ACTOR,
                              {"head_seq": self._seq, "head_hash": self._prev, "key_id": self._key_id}, now)
        record["details"]["signature"] = self._key.sign(signed_message(record)).hex()
        written = self._write(record)
        self._dirty = False
        self._last_checkpoint_at = now
        return written

    def _write(self, record: dict[str, Any]) -> dict[str, Any]:
        try:
            line = canonical(record).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise AuditError(f"the details of audit event {record['event']!r} cannot be stored as JSON: {exc}. "
                             "Pass only text keys and JSON values (text, numbers, lists, objects).") from exc
        if len(line) > MAX_LINE_BYTES:
            raise AuditError(f"the audit record for {record['event']!r} is {len(line)} bytes; at most "
                             f"{MAX_LINE_BYTES} fit in one record. Store large data elsewhere and refer to it.")
        stored: dict[str, Any] = json.loads(line)  # exactly what a reader will see (text keys, lists for tuples)
        self._write_line(line + b"\n")
        self._seq, self._prev = stored["seq"], line_hash(line)
        for listener in list(self.listeners):
            try:
                listener(stored)
            except Exception:  # a broken subscriber must not make a durable audit record look failed
                log.exception("audit listener %r failed on record %d", listener, stored["seq"])
        return stored

    def _write_line(self, data: bytes) -> None:
        path = self.directory / segment_name(self._month or _month_of(self._clock.now()))
        try:
            if self._fd is None:
                existed = path.exists()
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                if not existed:
                    fsync_dir(self.directory)  # the new file's name must survive a power loss too
            offset = os.lseek(self._fd, 0, os.SEEK_END)
        except OSError as exc:
            raise AuditError(f"cannot open the audit log segment {path}: {exc}") from exc
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as exc:
            # Cut off our own half-written line, so the next record does not land after garbage.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, offset)
            raise AuditError(f"cannot write to the audit log {path}: {exc}. Free disk space or fix the "
                             "permissions; nothing that needs an audit record can happen until then.") from exc

    def _close_segment(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _require_open(self) -> None:
        if self._closed:
            raise AuditError(f"the audit log in {self.directory} is closed")


def _make_private_dir(directory: Path) -> None:
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)


def _load_or_create_key(key_path: Path, *, log_has_records: bool) -> Ed25519PrivateKey:
    """The signing key (PKCS#8 PEM, mode 0600), created on first start; its public half is kept beside it."""
    try:
        if not key_path.exists():
            if log_has_records:
                raise AuditError(
                    f"the audit signing key {key_path} is missing, but the audit log already has records. Restore "
                    "the key from backup: with a new key every earlier checkpoint would fail verification.")
            _make_private_dir(key_path.parent)
            key = Ed25519PrivateKey.generate()
            atomic_write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()), mode=0o600)
        else:
            mode = key_path.stat().st_mode & 0o777
            if mode & 0o077:
                raise AuditError(f"the audit signing key {key_path} is readable by other users (mode {mode:o}). "
                                 f"Run `chmod 600 {key_path}`, and consider the key exposed.")
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise AuditError(f"{key_path} is not an Ed25519 private key")
            key = loaded
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        pub_path = public_key_path(key_path)
        if not pub_path.exists() or pub_path.read_bytes() != public:
            atomic_write(pub_path, public, mode=0o644)
        return key
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AuditError(f"cannot load or create the audit signing key {key_path}: {exc}") from exc


def _segment_info(path: Path) -> dict[str, Any] | None:
    """What a prune record says about a segment: its name, first and last seq, its newest record's time."""
    try:
        size = path.stat().st_size
        if size == 0:
            return {"segment": path.name, "records": 0}
        with path.open("rb") as handle:
            first, _ = parse_record(handle.readline(MAX_LINE_BYTES + 2).rstrip(b"\n"))
            handle.seek(max(0, size - MAX_LINE_BYTES - 2))
            last, _ = parse_record(handle.read().rstrip(b"\n").rsplit(b"\n", 1)[-1])
    except OSError:
        return None
    if first is None or last is None:
        return None  # never delete what cannot be read: someone should look at it first
    return {"segment": path.name, "first_seq": first["seq"], "first_prev": first["prev"], "last_seq": last["seq"],
            "newest_ts": last["ts"]}
