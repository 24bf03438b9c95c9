"""The portal's state: one SQLite file (`portal.sqlite` in its data folder), so that it survives restarts.

- devices: registered devices, the hash of their one-time enrollment password (single use, 15 minutes,
  locked after 5 wrong tries), and what was enrolled (hardware binding, certificate serial and expiry).
- records: every telemetry record received, once per (device, sequence): the de-duplication the device's
  at-least-once delivery relies on. Audit checkpoint heads, session events and the gaps named by shed
  records are kept apart as well, for the endpoints and people that read them.
- inbox: messages for a device (session requests, task requests, update offers), each with an ID, kept
  until the device acknowledges it.
- task_results, and events: the portal's own log (enrollments, refusals), which `servicegate-portal` prints.

Each call opens its own connection (WAL, synchronous=FULL), so the server's threads and the command line
can use the file at the same time.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OTP_VALID_S = 15 * 60
OTP_MAX_FAILURES = 5
OTP_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: read out over the phone
MESSAGE_TYPES = ("session_request", "task_request", "update_offer")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    otp_hash TEXT,
    otp_expires REAL,
    otp_failures INTEGER NOT NULL DEFAULT 0,
    enrolled REAL,
    binding TEXT,
    cert_serial TEXT,
    previous_serial TEXT,
    cert_not_after REAL
);
CREATE TABLE IF NOT EXISTS records (
    device_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    kind TEXT NOT NULL,
    received REAL NOT NULL,
    items TEXT NOT NULL,
    PRIMARY KEY (device_id, sequence)
);
CREATE TABLE IF NOT EXISTS gaps (
    device_id TEXT NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    reason TEXT NOT NULL,
    reported_by INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_heads (
    device_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    head TEXT NOT NULL,
    PRIMARY KEY (device_id, sequence)
);
CREATE TABLE IF NOT EXISTS session_events (
    device_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (device_id, sequence)
);
CREATE TABLE IF NOT EXISTS inbox (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created REAL NOT NULL,
    acknowledged REAL
);
CREATE INDEX IF NOT EXISTS inbox_open ON inbox (device_id, acknowledged, created);
CREATE TABLE IF NOT EXISTS task_results (
    device_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    received REAL NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (device_id, task_id)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    device_id TEXT,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


class EnrollmentRefused(Exception):
    """The one-time password was not accepted; the message is safe to show the caller."""


@dataclass(frozen=True)
class Message:
    id: str
    type: str
    body: dict[str, Any]
    created: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "body": self.body, "created": self.created}


@dataclass(frozen=True)
class Item:
    """One data point or log record of a telemetry document, with the record it belongs to."""

    sequence: int
    kind: str
    content: dict[str, Any]


class Store:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        db = sqlite3.connect(path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        finally:
            db.close()

    @contextlib.contextmanager
    def _db(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction: IMMEDIATE (the write lock at once) for changes, a plain snapshot for reads."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    # --- devices and enrollment -------------------------------------------------------------------------

    def add_device(self, device_id: str) -> str:
        """Register `device_id` (or re-register it) and return a new one-time enrollment password."""
        otp = "-".join("".join(secrets.choice(OTP_ALPHABET) for _ in range(4)) for _ in range(4))
        now = self._clock()
        with self._db() as db:
            db.execute("INSERT INTO devices (device_id, created) VALUES (?, ?) ON CONFLICT DO NOTHING",
                       (device_id, now))
            db.execute("UPDATE devices SET otp_hash = ?, otp_expires = ?, otp_failures = 0 WHERE device_id = ?",
                       (_otp_hash(otp), now + OTP_VALID_S, device_id))
            self._log(db, device_id, "otp_issued", f"valid until {time.ctime(now + OTP_VALID_S)}")
        return otp

    def redeem_otp(self, device_id: str, otp: str) -> None:
        """Accept `otp` for `device_id` once, or raise EnrollmentRefused. Every refusal is logged."""
        now = self._clock()
        refusal: str | None = None
        with self._db() as db:
            row = db.execute("SELECT otp_hash, otp_expires, otp_failures FROM devices WHERE device_id = ?",
                             (device_id,)).fetchone()
            if row is None:  # said like a wrong password: the answer does not tell which device IDs exist
                refusal = "wrong one-time password or device ID"
            elif row[0] is None:
                refusal = "this one-time password was already used: ask the vendor for a new one"
            elif row[2] >= OTP_MAX_FAILURES:
                refusal = "locked after too many wrong one-time passwords: ask the vendor for a new one"
            elif row[1] < now:
                refusal = "the one-time password has expired (it is valid for 15 minutes): ask the vendor for a new one"
            elif not hmac.compare_digest(row[0], _otp_hash(otp)):
                failures = row[2] + 1
                db.execute("UPDATE devices SET otp_failures = ? WHERE device_id = ?", (failures, device_id))
                refusal = "wrong one-time password" + (
                    "; it is now locked: ask the vendor for a new one" if failures >= OTP_MAX_FAILURES else
                    f" ({OTP_MAX_FAILURES - failures} tries left)")
            else:
                db.execute("UPDATE devices SET otp_hash = NULL WHERE device_id = ?", (device_id,))
            self._log(db, device_id, "enrollment_refused" if refusal else "otp_accepted", refusal or "")
        if refusal:
            raise EnrollmentRefused(refusal)

    def enrolled(self, device_id: str, binding: str, serial: int, not_after: float, *,
                 renewed_from: int | None = None) -> None:
        """A certificate was issued. After a renewal the certificate that asked for it (`renewed_from`) stays
        valid too, until the device is first seen with the new one: requests in flight do not fail, and a lost
        answer does not lock the device out. A new enrollment leaves only the new certificate."""
        with self._db() as db:
            db.execute("UPDATE devices SET enrolled = ?, binding = ?, previous_serial = ?, cert_serial = ?, "
                       "cert_not_after = ? WHERE device_id = ?",
                       (self._clock(), binding, None if renewed_from is None else str(renewed_from), str(serial),
                        not_after, device_id))
            self._log(db, device_id, "certificate_issued", f"serial {serial:x}, valid until {time.ctime(not_after)}")

    def switched(self, device_id: str) -> None:
        """The device used its current certificate: the one it renewed from is no longer accepted."""
        with self._db() as db:
            db.execute("UPDATE devices SET previous_serial = NULL WHERE device_id = ?", (device_id,))

    def device(self, device_id: str) -> dict[str, Any] | None:
        with self._db(write=False) as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT device_id, created, enrolled, binding, cert_serial, previous_serial, "
                             "cert_not_after, otp_failures FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return dict(row) if row else None

    def devices(self) -> list[dict[str, Any]]:
        with self._db(write=False) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT device_id, created, enrolled, cert_not_after, "
                              "(SELECT COUNT(*) FROM records r WHERE r.device_id = d.device_id) AS records "
                              "FROM devices d ORDER BY device_id").fetchall()
        return [dict(r) for r in rows]

    def log(self, device_id: str | None, event: str, detail: str) -> None:
        with self._db() as db:
            self._log(db, device_id, event, detail)

    def events(self, device_id: str | None = None) -> list[dict[str, Any]]:
        with self._db(write=False) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT time, device_id, event, detail FROM events WHERE ? IS NULL OR device_id = ? "
                              "ORDER BY id", (device_id, device_id)).fetchall()
        return [dict(r) for r in rows]

    def _log(self, db: sqlite3.Connection, device_id: str | None, event: str, detail: str) -> None:
        db.execute("INSERT INTO events (time, device_id, event, detail) VALUES (?, ?, ?, ?)",
                   (self._clock(), device_id, event, detail))

    # --- telemetry ----------------------------------------------------------------------------------------

    def ingest(self, device_id: str, items: list[Item]) -> int:
        """Keep each record of `items` unless (device, sequence) arrived before; returns how many were new.
        A record's items (a metric record's points) arrive together, in one document."""
        by_sequence: dict[int, list[Item]] = {}
        for item in items:
            by_sequence.setdefault(item.sequence, []).append(item)
        new = 0
        now = self._clock()
        with self._db() as db:
            for sequence, group in by_sequence.items():
                kind = group[0].kind
                inserted = db.execute(
                    "INSERT INTO records (device_id, sequence, kind, received, items) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (device_id, sequence, kind, now, json.dumps([i.content for i in group]))).rowcount
                if not inserted:
                    continue
                new += 1
                content = group[0].content
                if kind == "shed":
                    reason = str(content.get("servicegate.reason", ""))
                    for first, last in _json_list(content.get("servicegate.sequences")):
                        db.execute("INSERT INTO gaps VALUES (?, ?, ?, ?, ?)",
                                   (device_id, first, last, reason, sequence))
                elif kind == "audit_checkpoint":
                    db.execute("INSERT INTO audit_heads VALUES (?, ?, ?)", (device_id, sequence, json.dumps(content)))
                elif kind == "session_event":
                    db.execute("INSERT INTO session_events VALUES (?, ?, ?)",
                               (device_id, sequence, json.dumps(content)))
        return new

    def sequences(self, device_id: str) -> list[int]:
        with self._db(write=False) as db:
            return [r[0] for r in db.execute("SELECT sequence FROM records WHERE device_id = ? ORDER BY sequence",
                                             (device_id,))]

    def records(self, device_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The records received from `device_id` (of one kind), in sequence order, each with its items."""
        with self._db(write=False) as db:
            rows = db.execute("SELECT sequence, kind, received, items FROM records WHERE device_id = ? "
                              "AND (? IS NULL OR kind = ?) ORDER BY sequence", (device_id, kind, kind)).fetchall()
        return [{"sequence": s, "kind": k, "received": r, "items": json.loads(i)} for s, k, r, i in rows]

    def gaps(self, device_id: str) -> list[dict[str, Any]]:
        with self._db(write=False) as db:
            rows = db.execute("SELECT first, last, reason, reported_by FROM gaps WHERE device_id = ? ORDER BY first",
                              (device_id,)).fetchall()
        return [{"first": f, "last": la, "reason": r, "reported_by": b} for f, la, r, b in rows]

    def audit_heads(self, device_id: str) -> list[dict[str, Any]]:
        with self._db(write=False) as db:
            rows = db.execute("SELECT head FROM audit_heads WHERE device_id = ? ORDER BY sequence", (device_id,))
            return [json.loads(r[0]) for r in rows]

    def session_events(self, device_id: str) -> list[dict[str, Any]]:
        with self._db(write=False) as db:
            rows = db.execute("SELECT event FROM session_events WHERE device_id = ? ORDER BY sequence", (device_id,))
            return [json.loads(r[0]) for r in rows]

    # --- inbox and task results ---------------------------------------------------------------------------

    def post(self, device_id: str, type: str, body: dict[str, Any]) -> Message:
        """Queue a message for `device_id`."""
        if type not in MESSAGE_TYPES:
            raise ValueError(f"unknown message type {type!r}; known: {', '.join(MESSAGE_TYPES)}")
        message = Message(secrets.token_hex(8), type, body, self._clock())
        with self._db() as db:
            db.execute("INSERT INTO inbox (id, device_id, type, body, created) VALUES (?, ?, ?, ?, ?)",
                       (message.id, device_id, type, json.dumps(body), message.created))
        return message

    def pending(self, device_id: str, limit: int = 100) -> list[Message]:
        """`device_id`'s messages not acknowledged yet, oldest first."""
        with self._db(write=False) as db:
            rows = db.execute("SELECT id, type, body, created FROM inbox WHERE device_id = ? AND acknowledged IS NULL "
                              "ORDER BY created, id LIMIT ?", (device_id, limit)).fetchall()
        return [Message(i, t, json.loads(b), c) for i, t, b, c in rows]

    def acknowledge(self, device_id: str, ids: list[str]) -> int:
        """Mark `device_id`'s messages `ids` acknowledged; another device's IDs are ignored. Returns how many
        were newly acknowledged (acknowledging twice is harmless)."""
        with self._db() as db:
            return sum(db.execute("UPDATE inbox SET acknowledged = ? WHERE id = ? AND device_id = ? "
                                  "AND acknowledged IS NULL", (self._clock(), i, device_id)).rowcount for i in ids)

    def messages(self, device_id: str) -> list[dict[str, Any]]:
        """Every message for `device_id`, acknowledged or not (for the command line and tests)."""
        with self._db(write=False) as db:
            rows = db.execute("SELECT id, type, body, created, acknowledged FROM inbox WHERE device_id = ? "
                              "ORDER BY created, id", (device_id,)).fetchall()
        return [{"id": i, "type": t, "body": json.loads(b), "created": c, "acknowledged": a} for i, t, b, c, a in rows]

    def task_result(self, device_id: str, task_id: str, result: dict[str, Any]) -> bool:
        """Keep a task's result; the first one counts (a device may send it again). True if it was new."""
        with self._db() as db:
            return bool(db.execute("INSERT INTO task_results VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                   (device_id, task_id, self._clock(), json.dumps(result))).rowcount)

    def task_results(self, device_id: str) -> dict[str, dict[str, Any]]:
        with self._db(write=False) as db:
            rows = db.execute("SELECT task_id, result FROM task_results WHERE device_id = ?", (device_id,))
            return {t: json.loads(r) for t, r in rows}


def _otp_hash(otp: str) -> str:
    """The password is random and high-entropy (80 bits), so a plain SHA-256 of its normal form suffices."""
    normal = "".join(c for c in otp.upper() if c.isalnum())
    return hashlib.sha256(normal.encode()).hexdigest()


def _json_list(value: Any) -> list[tuple[int, int]]:
    """The `[[first, last], ...]` ranges of a shed record (sent as JSON text in an attribute)."""
    try:
        ranges = json.loads(value) if isinstance(value, str) else value
        return [(int(a), int(b)) for a, b in ranges if 0 <= int(a) <= int(b) < 2**63]
    except (TypeError, ValueError, RecursionError):
        return []
