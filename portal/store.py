"""The portal's state: one SQLite file (`portal.sqlite` in its data folder), so that it survives restarts.

- devices: registered devices, the hash of their one-time enrollment password (single use, 15 minutes,
  locked after 5 wrong tries), and what was enrolled (hardware binding, certificate serial and expiry).
- records: every telemetry record received, once per (device, sequence): the de-duplication the device's
  at-least-once delivery relies on. Audit checkpoint heads, session events and the gaps named by shed
  records are kept apart as well, for the endpoints and people that read them.
- inbox: messages for a device (session requests, task requests, update offers), each with an ID, kept
  until the device acknowledges it.
- tasks: each run's latest state, from the device's task events.
- cases: the service cases opened by the devices' service requests, once per (device, request ID).
- update_reports: what each device did with an offered update (installed, failed, refused, ...), once per
  (device, target, outcome). The updates themselves are in the TUF repository (portal/updates.py), not here.
- screens: each screen the devices shared through the relay (portal/relay.py): its session and task, the
  engineer's viewer port and VNC password, waiting -> viewing -> ended with the reason and the bytes relayed.
- events: the portal's own log (enrollments, refusals), which `servicegate-portal` prints.

Each call opens its own connection (WAL, synchronous=FULL), so the server's threads and the command line
can use the file at the same time.
"""

from __future__ import annotations

import base64
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
MESSAGE_TYPES = ("session_request", "session_authenticate", "session_end", "task_request", "task_stop",
                 "update_offer")
SESSION_LEVELS = ("limited", "full")
SESSION_KINDS = ("service", "application-support")
CLAIM_VALID_S = 30 * 60  # an opened session must be claimed at the console within this time
CLAIM_MAX_FAILURES = 5  # wrong session IDs from one device within CLAIM_WINDOW_S, then claims wait
CLAIM_WINDOW_S = 10 * 60
# A screen share's states, and the moves between them (portal/relay.py makes them):
#   waiting - the device is connected and its VNC server's greeting waits for the engineer's viewer
#   viewing - the viewer is connected; bytes flow both ways
#   ended   - either side closed, no viewer came, a refusal after the start, or the portal stopped
SCREEN_MOVES = {"waiting": ("viewing", "ended"), "viewing": ("ended",), "ended": ()}

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
    cert_not_after REAL,
    totp_secret TEXT
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
CREATE TABLE IF NOT EXISTS tasks (
    device_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    state TEXT NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (device_id, task_id)
);
CREATE TABLE IF NOT EXISTS task_files (
    device_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (device_id, task_id, name)
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    engineer_id TEXT NOT NULL,
    name TEXT NOT NULL,
    company TEXT NOT NULL,
    reason TEXT NOT NULL,
    level TEXT NOT NULL,
    kind TEXT NOT NULL,
    case_id TEXT NOT NULL DEFAULT '',
    opened REAL NOT NULL,
    claim_until REAL NOT NULL,
    claimed REAL,
    state TEXT NOT NULL,
    end_reason TEXT,
    summary TEXT NOT NULL DEFAULT '',
    auth_failures INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    number INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    urgency TEXT NOT NULL,
    text TEXT NOT NULL,
    report TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (device_id, request_id)
);
CREATE TABLE IF NOT EXISTS update_reports (
    device_id TEXT NOT NULL,
    target TEXT NOT NULL,
    version TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (device_id, target, outcome)
);
CREATE TABLE IF NOT EXISTS screens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    viewer_port INTEGER NOT NULL,
    password TEXT NOT NULL,
    state TEXT NOT NULL,
    started REAL NOT NULL,
    viewer_connected REAL,
    ended REAL,
    end_reason TEXT,
    bytes_to_viewer INTEGER NOT NULL DEFAULT 0,
    bytes_to_device INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS screens_of_session ON screens (session_id, state);
CREATE TABLE IF NOT EXISTS claim_failures (
    device_id TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    device_id TEXT,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


@contextlib.contextmanager
def transaction(path: Path, *, write: bool = True) -> Iterator[sqlite3.Connection]:
    """One transaction on its own connection: IMMEDIATE (the write lock at once) for changes, a plain snapshot for
    reads; synchronous=FULL. The portal's SQLite files (this store, the uploads) all go through it."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
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


class EnrollmentRefused(Exception):
    """The one-time password was not accepted; the message is safe to show the caller."""


class ScreenRefused(Exception):
    """A screen relay was not accepted; the message is safe to show the device (portal/relay.py)."""


class ClaimRefused(Exception):
    """A session ID was not accepted; the message is safe to show the caller. `limited`: too many wrong ones."""

    def __init__(self, message: str, *, limited: bool = False) -> None:
        super().__init__(message)
        self.limited = limited


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
            columns = {row[1] for row in db.execute("PRAGMA table_info(devices)")}
            if "totp_secret" not in columns:  # a data folder from before engineers' one-time passwords
                db.execute("ALTER TABLE devices ADD COLUMN totp_secret TEXT")
        finally:
            db.close()

    def _db(self, *, write: bool = True) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path, write=write)

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
                 renewed_from: int | None = None, totp_secret: str | None = None) -> None:
        """A certificate was issued. After a renewal the certificate that asked for it (`renewed_from`) stays
        valid too, until the device is first seen with the new one: requests in flight do not fail, and a lost
        answer does not lock the device out. A new enrollment leaves only the new certificate, and brings the
        device's new secret for the engineers' one-time passwords (`totp_secret`, base32)."""
        with self._db() as db:
            db.execute("UPDATE devices SET enrolled = ?, binding = ?, previous_serial = ?, cert_serial = ?, "
                       "cert_not_after = ?, totp_secret = COALESCE(?, totp_secret) WHERE device_id = ?",
                       (self._clock(), binding, None if renewed_from is None else str(renewed_from), str(serial),
                        not_after, totp_secret, device_id))
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
                    self._session_seen(db, device_id, content)
                elif kind == "task_event":
                    self._task_seen(db, device_id, sequence, content)
                elif kind == "task_file":
                    self._task_file(db, device_id, content)
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

    # --- sessions ------------------------------------------------------------------------------------------

    def totp_secret(self, device_id: str) -> str | None:
        with self._db(write=False) as db:
            row = db.execute("SELECT totp_secret FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return row[0] if row else None

    def open_session(self, device_id: str, *, engineer_id: str, name: str, company: str, reason: str, level: str,
                     kind: str, case_id: str = "") -> str:
        """A session the engineer opens; returns its 8-digit ID (read out to the technologist, who claims it).
        ValueError says what is missing."""
        for what, value in (("the engineer's ID", engineer_id), ("the engineer's full name", name),
                            ("a reason", reason)):
            if not value.strip():
                raise ValueError(f"a session needs {what}: a session without a named person and a reason is refused")
        if level not in SESSION_LEVELS:
            raise ValueError(f"level {level!r}: a session asks for one of {', '.join(SESSION_LEVELS)}")
        if kind not in SESSION_KINDS:
            raise ValueError(f"kind {kind!r}: one of {', '.join(SESSION_KINDS)}")
        now = self._clock()
        with self._db() as db:
            row = db.execute("SELECT enrolled FROM devices WHERE device_id = ?", (device_id,)).fetchone()
            if row is None or row[0] is None:
                raise ValueError(f"device {device_id!r} is not enrolled")
            while True:
                session_id = f"{secrets.randbelow(10**8):08d}"
                if db.execute("SELECT 1 FROM sessions WHERE session_id = ?", (session_id,)).fetchone() is None:
                    break
            db.execute("INSERT INTO sessions (session_id, device_id, engineer_id, name, company, reason, level, kind, "
                       "case_id, opened, claim_until, state, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (session_id, device_id, engineer_id.strip(), name.strip(), company.strip(), reason.strip(),
                        level, kind, case_id, now, now + CLAIM_VALID_S, "open", now))
            self._log(db, device_id, "session_opened", f"session {session_id} by engineer {engineer_id}")
        return session_id

    def claim(self, device_id: str, session_id: str) -> dict[str, Any]:
        """The device claims the session the technologist typed in: its details, once. ClaimRefused otherwise;
        every refusal counts, and after CLAIM_MAX_FAILURES within CLAIM_WINDOW_S the device must wait."""
        now = self._clock()
        refusal: ClaimRefused | None = None
        with self._db() as db:
            db.row_factory = sqlite3.Row
            recent = db.execute("SELECT COUNT(*), MIN(time) FROM claim_failures WHERE device_id = ? AND time > ?",
                                (device_id, now - CLAIM_WINDOW_S)).fetchone()
            row = db.execute("SELECT * FROM sessions WHERE session_id = ? AND device_id = ?",
                             (session_id, device_id)).fetchone()
            session = dict(row) if row else None
            if recent[0] >= CLAIM_MAX_FAILURES:
                minutes = max(1, round((recent[1] + CLAIM_WINDOW_S - now) / 60))
                refusal = ClaimRefused(f"too many wrong session IDs from this device; try again in {minutes} "
                                       "minute(s)", limited=True)
            elif session is None or session["state"] != "open" or session["claim_until"] < now:
                # Said alike for an unknown ID, another device's and an expired one: nothing to learn by guessing.
                refusal = ClaimRefused("no session with this ID is waiting for this device (it may have expired "
                                       "or been claimed): check the number with the engineer")
                db.execute("INSERT INTO claim_failures VALUES (?, ?)", (device_id, now))
            else:
                db.execute("UPDATE sessions SET state = 'claimed', claimed = ?, updated = ? WHERE session_id = ?",
                           (now, now, session_id))
            self._log(db, device_id, "session_claim_refused" if refusal else "session_claimed",
                      f"session ID {session_id}: {refusal}" if refusal else f"session {session_id}")
        if refusal is not None:
            raise refusal
        assert session is not None
        return {key: session[key] for key in ("session_id", "engineer_id", "name", "company", "reason", "level",
                                              "kind", "case_id")}

    def session(self, session_id: str) -> dict[str, Any] | None:
        with self._db(write=False) as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        return dict(row) if row else None

    def sessions(self, device_id: str) -> list[dict[str, Any]]:
        with self._db(write=False) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT * FROM sessions WHERE device_id = ? ORDER BY opened", (device_id,)).fetchall()
        return [dict(r) for r in rows]

    def _session_seen(self, db: sqlite3.Connection, device_id: str, content: dict[str, Any]) -> None:
        """A session event from the device: what the portal shows of the session follows it. A refusal (of an
        engineer's request about the session) changes only its note."""
        session_id = str(content.get("servicegate.session_id", ""))
        if "servicegate.refused" in content:
            db.execute("UPDATE sessions SET note = ?, updated = ? WHERE session_id = ? AND device_id = ?",
                       (f"refused: {content['servicegate.refused']}", self._clock(), session_id, device_id))
            return
        failures = int(content.get("servicegate.auth_failures", 0))
        db.execute("UPDATE sessions SET state = ?, end_reason = ?, summary = ?, auth_failures = ?, note = ?, "
                   "updated = ? WHERE session_id = ? AND device_id = ?",
                   (str(content.get("servicegate.state", "")), str(content.get("servicegate.end_reason", "")) or None,
                    str(content.get("servicegate.end_text", "")), failures,
                    f"{failures} wrong one-time password(s)" if failures else "", self._clock(), session_id,
                    device_id))

    # --- screen shares ---------------------------------------------------------------------------------------

    def start_screen(self, device_id: str, session_id: str, *, task_id: str, password: str, viewer_port: int) -> int:
        """A device offers its screen in `session_id`: accepted (returns the share's ID, state `waiting`) when the
        session is this device's and active and no other share of it is open; ScreenRefused otherwise. Checked and
        recorded in one transaction, so two relays for one session cannot both get through. Every refusal is
        logged with what the device is not told (whose session it is)."""
        now = self._clock()
        refusal: str | None = None
        with self._db() as db:
            row = db.execute("SELECT device_id, state FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
            open_share = db.execute("SELECT task_id FROM screens WHERE session_id = ? AND state != 'ended'",
                                    (session_id,)).fetchone()
            detail = ""
            if row is None or row[0] != device_id:
                # Said alike for an unknown session and another device's: nothing to learn about other devices.
                refusal = f"no session {session_id} of this device: check the session ID"
                detail = " (it is another device's)" if row is not None else " (unknown)"
            elif row[1] != "active":
                refusal = (f"session {session_id} is {row[1] or 'not started'}, not active: a screen is shared only "
                           "in an active session (after the engineer's one-time password)")
            elif open_share is not None:
                refusal = (f"the screen of session {session_id} is already relayed (task {open_share[0]}); only one "
                           "relay per session: end that one first")
            if refusal is not None:
                self._log(db, device_id, "screen_refused", f"session {session_id}, task {task_id}: {refusal}{detail}")
                screen_id = 0
            else:
                screen_id = int(db.execute(
                    "INSERT INTO screens (session_id, device_id, task_id, viewer_port, password, state, started) "
                    "VALUES (?, ?, ?, ?, ?, 'waiting', ?)",
                    (session_id, device_id, task_id, viewer_port, password, now)).lastrowid or 0)
                self._log(db, device_id, "screen_started", f"session {session_id}, task {task_id}: waiting for the "
                                                           f"viewer on 127.0.0.1:{viewer_port}")
        if refusal is not None:
            raise ScreenRefused(refusal)
        return screen_id

    def screen_viewing(self, screen_id: int) -> None:
        """The engineer's viewer connected."""
        with self._db() as db:
            self._screen_move(db, screen_id, "viewing")
            db.execute("UPDATE screens SET viewer_connected = ? WHERE id = ?", (self._clock(), screen_id))

    def screen_ended(self, screen_id: int, reason: str, *, bytes_to_viewer: int, bytes_to_device: int) -> None:
        """The share ended (either side closed, no viewer came, the portal stopped), with the bytes relayed."""
        with self._db() as db:
            device_id = self._screen_move(db, screen_id, "ended")
            db.execute("UPDATE screens SET ended = ?, end_reason = ?, bytes_to_viewer = ?, bytes_to_device = ?, "
                       "password = '' WHERE id = ?", (self._clock(), reason, bytes_to_viewer, bytes_to_device,
                                                      screen_id))  # one-time: no use once ended
            self._log(db, device_id, "screen_ended", f"screen share {screen_id}: {reason}; {bytes_to_viewer} bytes "
                                                     f"to the viewer, {bytes_to_device} to the device")

    def end_open_screens(self, reason: str) -> int:
        """End every share still waiting or viewing (at the relay's start: the process that relayed them is gone)."""
        with self._db() as db:
            return db.execute("UPDATE screens SET state = 'ended', ended = ?, end_reason = ?, password = '' "
                              "WHERE state != 'ended'", (self._clock(), reason)).rowcount

    def screens(self, *, device_id: str = "", session_id: str = "", passwords: bool = False) -> list[dict[str, Any]]:
        """The screen shares of a device or a session, oldest first; the VNC passwords only with `passwords` (for
        the engineer's command, nothing else)."""
        with self._db(write=False) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT * FROM screens WHERE (? = '' OR device_id = ?) AND (? = '' OR session_id = ?) "
                              "ORDER BY id", (device_id, device_id, session_id, session_id)).fetchall()
        shares = [dict(row) for row in rows]
        if not passwords:
            for share in shares:
                del share["password"]
        return shares

    def _screen_move(self, db: sqlite3.Connection, screen_id: int, to: str) -> str:
        """Move a share to state `to` (SCREEN_MOVES); returns its device. An illegal move is a bug: ValueError."""
        row = db.execute("SELECT state, device_id FROM screens WHERE id = ?", (screen_id,)).fetchone()
        if row is None:
            raise ValueError(f"no screen share {screen_id}")
        if to not in SCREEN_MOVES[row[0]]:
            raise ValueError(f"screen share {screen_id} cannot move from {row[0]} to {to}")
        db.execute("UPDATE screens SET state = ? WHERE id = ?", (to, screen_id))
        return str(row[1])

    # --- service cases --------------------------------------------------------------------------------------

    def open_case(self, device_id: str, request_id: str, *, urgency: str, text: str, report: dict[str, Any],
                  requested_at: str) -> str:
        """The case for a device's service request: a new one, numbered C-<year>-<6 digits>, or the one this device's
        `request_id` opened before (the device sends a request again when it lost the answer)."""
        now = self._clock()
        with self._db() as db:
            row = db.execute("SELECT case_id FROM cases WHERE device_id = ? AND request_id = ?",
                             (device_id, request_id)).fetchone()
            if row is not None:
                return str(row[0])
            number = db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM cases").fetchone()[0]
            case_id = f"C-{time.gmtime(now).tm_year}-{number:06d}"
            db.execute("INSERT INTO cases (number, case_id, device_id, request_id, urgency, text, report, "
                       "requested_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (number, case_id, device_id, request_id, urgency, text, json.dumps(report), requested_at, now))
            self._log(db, device_id, "case_opened", f"case {case_id} ({urgency}) for service request {request_id}")
        return case_id

    def cases(self, device_id: str) -> list[dict[str, Any]]:
        """The device's service cases, oldest first, each with its report."""
        with self._db(write=False) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT case_id, device_id, request_id, urgency, text, report, requested_at, created_at "
                              "FROM cases WHERE device_id = ? ORDER BY number", (device_id,)).fetchall()
        return [{**dict(row), "report": json.loads(row["report"])} for row in rows]

    # --- updates -------------------------------------------------------------------------------------------

    def report_update(self, device_id: str, target: str, *, version: str, outcome: str, detail: str) -> float:
        """A device's report of what it did with an offered update; the same (device, target, outcome) again
        replaces the version and detail (a device reports again when the answer was lost). Returns its time."""
        now = self._clock()
        with self._db() as db:
            db.execute("INSERT INTO update_reports VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, target, outcome) "
                       "DO UPDATE SET version = excluded.version, detail = excluded.detail, time = excluded.time",
                       (device_id, target, version, outcome, detail, now))
            self._log(db, device_id, f"update_{outcome}", f"{target} {version}: {detail}".strip().rstrip(":"))
        return now

    def update_reports(self, device_id: str | None = None) -> list[dict[str, Any]]:
        """The devices' update reports (of one device), oldest first."""
        with self._db(write=False) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT device_id, target, version, outcome, detail, time FROM update_reports "
                              "WHERE ? IS NULL OR device_id = ? ORDER BY time, rowid",
                              (device_id, device_id)).fetchall()
        return [dict(r) for r in rows]

    # --- inbox ---------------------------------------------------------------------------------------------

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

    def tasks(self, device_id: str, session_id: str = "") -> list[dict[str, Any]]:
        """The latest state of each task run the device reported (of one session), oldest first."""
        with self._db(write=False) as db:
            rows = db.execute("SELECT event FROM tasks WHERE device_id = ? AND (? = '' OR session_id = ?) "
                              "ORDER BY rowid", (device_id, session_id, session_id)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def task_files(self, device_id: str, task_id: str) -> list[dict[str, Any]]:
        """The files the technologist released from a task (name, size, sha256; `task_file` has the bytes)."""
        with self._db(write=False) as db:
            rows = db.execute("SELECT name, size, sha256 FROM task_files WHERE device_id = ? AND task_id = ? "
                              "ORDER BY name", (device_id, task_id)).fetchall()
        return [{"name": n, "size": s, "sha256": h} for n, s, h in rows]

    def task_file(self, device_id: str, task_id: str, name: str) -> bytes | None:
        with self._db(write=False) as db:
            row = db.execute("SELECT content FROM task_files WHERE device_id = ? AND task_id = ? AND name = ?",
                             (device_id, task_id, name)).fetchone()
        return bytes(row[0]) if row else None

    def _task_file(self, db: sqlite3.Connection, device_id: str, content: dict[str, Any]) -> None:
        """A released file: kept when its bytes match the SHA-256 the device names (else the portal's log says so)."""
        try:
            data = base64.b64decode(str(content.get("servicegate.content", "")), validate=True)
        except ValueError:
            data = b""
        name, task_id = str(content.get("servicegate.name", "")), str(content.get("servicegate.task_id", ""))
        if hashlib.sha256(data).hexdigest() != content.get("servicegate.sha256"):
            db.execute("INSERT INTO events (time, device_id, event, detail) VALUES (?, ?, ?, ?)",
                       (self._clock(), device_id, "task_file_refused", f"{task_id}/{name}: SHA-256 does not match"))
            return
        db.execute("INSERT INTO task_files VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                   (device_id, task_id, name, len(data), hashlib.sha256(data).hexdigest(), data))

    def _task_seen(self, db: sqlite3.Connection, device_id: str, sequence: int, content: dict[str, Any]) -> None:
        """A task event: the run's latest state (a later sequence replaces an earlier one, whatever the order of
        arrival). Structured fields arrive as JSON text (docs/protocol.md)."""
        event = {key.removeprefix("servicegate."): value for key, value in content.items()
                 if key.startswith("servicegate.") and key not in ("servicegate.sequence", "servicegate.kind")}
        event["kind"] = event.pop("task_kind", "")
        for key in ("params", "files", "returncode"):
            if isinstance(event.get(key), str):
                with contextlib.suppress(ValueError):
                    event[key] = json.loads(event[key])
        task_id, session_id = str(event.get("id", "")), str(event.get("session_id", ""))
        db.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, task_id) DO UPDATE SET "
                   "sequence = excluded.sequence, state = excluded.state, event = excluded.event "
                   "WHERE excluded.sequence > tasks.sequence",
                   (device_id, task_id, session_id, sequence, str(event.get("state", "")), json.dumps(event)))


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
