"""The outbox: one SQLite database that every record bound for the portal goes through, and that loses nothing.

Records are JSON documents of a *kind* (metric, log, alert, ...). Each gets the next number of one sequence
per device, shared by every kind (SQLite's AUTOINCREMENT: a number is never used twice, even after the
records before it were delivered and deleted). Delivery is at-least-once: the shipper takes a batch,
sends it, and acknowledges it only after the receiver said so; a crash in between sends it again, and the
receiver de-duplicates by (device, sequence).

Durability: WAL journal, `synchronous=FULL` (a committed record survives a power loss), every change in
one transaction. The database is opened (and created 0600) by whoever needs it; SQLite's locking lets the
daemon write while `servicegate telemetry status` reads.

**The size cap.** The outbox holds at most `cap_bytes` of record bodies (default 256 MB). Above it, it
sheds the lowest priority first: debug logs, then logs, then metrics, oldest first, down to
`SHED_TO` of the cap (so it does not shed again on the next insert). Alerts, audit checkpoints, session
events and the outbox's own reports are never shed; if they alone exceed the cap, the outbox grows
rather than lose one. Every shed is itself a record (kind "shed", never shed) that names the sequences
dropped, their kind and why, so the receiver can tell a gap from a loss.

**Quarantine.** A batch the receiver refuses as malformed (HTTP 400) is not retried and not dropped: its
records are marked quarantined (with the reason), stay in the database, count in the status and are
reported by a record of kind "quarantined".
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CAP_BYTES = 256 * 1024 * 1024
SHED_TO = 0.9  # after shedding, the outbox holds at most this share of its cap
PROTECTED = 100  # priorities at or above this are never shed

# kind -> priority: the lower, the earlier it is shed (and the later it is sent).
PRIORITIES: dict[str, int] = {
    "debug_log": 0,
    "log": 10,
    "metric": 20,
    "alert": PROTECTED + 20,
    "audit_checkpoint": PROTECTED + 10,
    "session_event": PROTECTED + 10,
    "task_event": PROTECTED + 10,  # what a remote engineer ran, and its (scrubbed) output
    "task_file": PROTECTED + 10,  # a file the technologist released at the console (at most 2 MiB)
    "mail_notice": PROTECTED + 10,  # agent.notify keeps e-mail notices in an outbox of their own
    "shed": PROTECTED,
    "quarantined": PROTECTED,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    created REAL NOT NULL,
    body BLOB NOT NULL,
    size INTEGER NOT NULL,
    quarantined TEXT
);
CREATE INDEX IF NOT EXISTS records_to_send ON records (quarantined, priority DESC, sequence);
CREATE INDEX IF NOT EXISTS records_to_shed ON records (priority, sequence);
CREATE TABLE IF NOT EXISTS totals (priority INTEGER PRIMARY KEY, bytes INTEGER NOT NULL, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class OutboxError(Exception):
    """The outbox database cannot be used (unreadable, damaged, not a database)."""


@dataclass(frozen=True)
class Record:
    sequence: int
    kind: str
    created: float  # seconds since the epoch
    body: dict[str, Any]


@dataclass(frozen=True)
class Status:
    """What `servicegate telemetry status` shows. No record content, only counts and times."""

    records: int
    bytes: int
    cap_bytes: int
    quarantined: int
    oldest_age_s: float | None
    shed: dict[str, int] = field(default_factory=dict)  # kind -> records shed since the outbox was created
    last_push: float | None = None
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "bytes": self.bytes, "cap_bytes": self.cap_bytes,
                "quarantined": self.quarantined, "oldest_age_s": self.oldest_age_s, "shed": dict(self.shed),
                "last_push": self.last_push, "last_error": self.last_error}


class Outbox:
    """The device's outbox at `path`. Thread-safe: one connection, one lock; every method is one transaction."""

    def __init__(self, path: Path, *, cap_bytes: int = DEFAULT_CAP_BYTES,
                 clock: Callable[[], float] = time.time) -> None:
        if cap_bytes < 1:
            raise ValueError(f"cap_bytes must be positive, not {cap_bytes}")
        self.path, self.cap_bytes, self._clock = path, cap_bytes, clock
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"{path}: cannot open the outbox ({exc}). Move the file aside and restart the "
                              "agent: a new outbox is created; the old file keeps what it holds.") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing --------------------------------------------------------------------------------

    def put(self, kind: str, body: dict[str, Any]) -> int:
        """Queue one record; return its sequence number."""
        return self.put_many(kind, [body])[0]

    def put_many(self, kind: str, bodies: Iterable[dict[str, Any]], *,
                 facts: Mapping[str, str] | None = None) -> list[int]:
        """Queue records of one kind in one transaction; return their sequence numbers, in order. `facts` are
        set in the same transaction (a log file's read position with the lines it covers: both or neither)."""
        priority = _priority(kind)
        encoded = [json.dumps(b, separators=(",", ":"), ensure_ascii=False).encode() for b in bodies]
        with self._transaction() as db:
            sequences = [self._insert(db, kind, priority, data) for data in encoded]
            for key, value in (facts or {}).items():
                _set_fact(db, key, value)
            self._shed_if_over(db)
        return sequences

    def ack(self, sequences: Sequence[int]) -> int:
        """The receiver has these: delete them. Returns how many were still there (a repeat is harmless)."""
        if not sequences:
            return 0
        with self._transaction() as db:
            gone = self._delete(db, sequences)
            _set_fact(db, "last_push", repr(self._clock()))
            db.execute("DELETE FROM facts WHERE key = 'last_error'")
        return gone

    def quarantine(self, sequences: Sequence[int], reason: str) -> None:
        """The receiver refused these as malformed: keep them out of every batch, and report that."""
        if not sequences:
            return
        with self._transaction() as db:
            db.executemany("UPDATE records SET quarantined = ? WHERE sequence = ?", [(reason, s) for s in sequences])
            reports = {row[0] for row in db.execute(
                f"SELECT sequence FROM records WHERE kind IN ('quarantined', 'shed') AND sequence IN "
                f"({','.join('?' * len(sequences))})", list(sequences))}
            named = [s for s in sequences if s not in reports]  # a refused report is not reported again: no loop
            if named:
                report = {"sequences": _ranges(named), "count": len(named), "reason": reason}
                self._insert(db, "quarantined", _priority("quarantined"), json.dumps(report).encode())

    def note_error(self, message: str) -> None:
        """Remember the last delivery error, for the status (cleared by the next successful ack)."""
        with self._transaction() as db:
            _set_fact(db, "last_error", message)

    def set_fact(self, key: str, value: str) -> None:
        """Keep a small piece of telemetry state (the collectors' counters) as durably as the records."""
        with self._transaction() as db:
            _set_fact(db, key, value)

    # ---- reading --------------------------------------------------------------------------------

    def fact(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM facts WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def batch(self, max_records: int = 500, max_bytes: int = 4 * 1024 * 1024) -> list[Record]:
        """The next records to send: highest priority first (alerts before metrics before logs), oldest first
        within a priority; quarantined records never. At least one record when any is waiting, whatever its size."""
        out: list[Record] = []
        size = 0
        with self._lock:
            rows = self._db.execute(
                "SELECT sequence, kind, created, body, size FROM records WHERE quarantined IS NULL "
                "ORDER BY priority DESC, sequence LIMIT ?", (max_records,))
            for sequence, kind, created, body, length in rows:
                if out and size + length > max_bytes:
                    break
                out.append(Record(sequence, kind, created, json.loads(body)))
                size += length
        return out

    def status(self) -> Status:
        with self._lock:
            db = self._db
            records, total = db.execute(
                "SELECT COALESCE(SUM(count), 0), COALESCE(SUM(bytes), 0) FROM totals").fetchone()
            quarantined = db.execute("SELECT COUNT(*) FROM records WHERE quarantined IS NOT NULL").fetchone()[0]
            first = db.execute("SELECT created FROM records ORDER BY sequence LIMIT 1").fetchone()
            oldest = first[0] if first else None
            facts = dict(db.execute("SELECT key, value FROM facts").fetchall())
        shed = {k.removeprefix("shed:"): int(v) for k, v in facts.items() if k.startswith("shed:")}
        return Status(records=int(records), bytes=int(total), cap_bytes=self.cap_bytes, quarantined=int(quarantined),
                      oldest_age_s=max(0.0, self._clock() - oldest) if oldest is not None else None, shed=shed,
                      last_push=float(facts["last_push"]) if "last_push" in facts else None,
                      last_error=facts.get("last_error"))

    def integrity_check(self) -> str:
        """SQLite's own check of the file: "ok" when it is sound."""
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # ---- inside a transaction -------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _insert(self, db: sqlite3.Connection, kind: str, priority: int, data: bytes) -> int:
        cursor = db.execute("INSERT INTO records (kind, priority, created, body, size) VALUES (?, ?, ?, ?, ?)",
                            (kind, priority, self._clock(), data, len(data)))
        db.execute("INSERT INTO totals (priority, bytes, count) VALUES (?, ?, 1) ON CONFLICT (priority) DO UPDATE "
                   "SET bytes = bytes + excluded.bytes, count = count + 1", (priority, len(data)))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _delete(self, db: sqlite3.Connection, sequences: Sequence[int]) -> int:
        gone = 0
        for chunk in _chunks(list(sequences), 500):
            marks = ",".join("?" * len(chunk))
            sizes = db.execute(f"SELECT priority, SUM(size), COUNT(*) FROM records WHERE sequence IN ({marks}) "
                               "GROUP BY priority", chunk).fetchall()
            db.execute(f"DELETE FROM records WHERE sequence IN ({marks})", chunk)
            for priority, size, count in sizes:
                db.execute("UPDATE totals SET bytes = bytes - ?, count = count - ? WHERE priority = ?",
                           (size, count, priority))
                gone += count
        return gone

    def _shed_if_over(self, db: sqlite3.Connection) -> None:
        total = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM totals").fetchone()[0]
        if total <= self.cap_bytes:
            return
        excess = total - int(self.cap_bytes * SHED_TO)
        for priority, in db.execute("SELECT priority FROM totals WHERE priority < ? AND count > 0 ORDER BY priority",
                                    (PROTECTED,)).fetchall():
            if excess <= 0:
                break
            dropped: list[int] = []
            kinds: dict[str, int] = {}
            for sequence, kind, size in db.execute(
                    "SELECT sequence, kind, size FROM records WHERE priority = ? ORDER BY sequence", (priority,)):
                dropped.append(sequence)
                kinds[kind] = kinds.get(kind, 0) + 1
                excess -= size
                if excess <= 0:
                    break
            self._delete(db, dropped)
            for kind, count in kinds.items():
                previous = db.execute("SELECT value FROM facts WHERE key = ?", (f"shed:{kind}",)).fetchone()
                _set_fact(db, f"shed:{kind}", str(int(previous[0]) + count if previous else count))
            report = {"sequences": _ranges(dropped), "count": len(dropped), "kinds": kinds,
                      "reason": f"the outbox was over its cap of {self.cap_bytes} bytes while the service centre "
                                "could not be reached; the lowest priority records were dropped, oldest first"}
            self._insert(db, "shed", _priority("shed"), json.dumps(report).encode())


def _priority(kind: str) -> int:
    try:
        return PRIORITIES[kind]
    except KeyError:
        raise ValueError(f"unknown outbox record kind {kind!r}; known kinds: {', '.join(PRIORITIES)}") from None


def _set_fact(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT INTO facts (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
               (key, value))


def _ranges(sequences: Iterable[int]) -> list[list[int]]:
    """[[first, last], ...] of consecutive runs: how a gap is named compactly."""
    runs: list[list[int]] = []
    for number in sorted(sequences):
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return runs


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
