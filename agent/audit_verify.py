"""Reading the audit log back: verify the chain and the checkpoints, and export who did what, when.

Nothing here writes to the log. The record format both sides share (canonical form, parsing,
segment files, the checkpoint's signed message) lives in agent.audit_log; this module imports it
from there and never the other way round. docs/audit-log.md describes what verify checks.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.audit_log import (
    CHECKPOINT_EVENT,
    CHECKPOINT_KEYS,
    GENESIS_PREV,
    MAX_LINE_BYTES,
    PRUNED_EVENT,
    canonical,
    is_checkpoint,
    key_id,
    line_hash,
    month_end,
    parse_record,
    segment_files,
    signed_message,
)
from agent.clock import parse_utc, utc_iso
from agent.errors import AuditError, UsageError
from agent.protocol import SYSTEM_ACTOR

CSV_COLUMNS = ("time_utc", "seq", "event", "actor", "session_id", "engineer_id", "engineer_name", "level",
               "reason", "details")
_CSV_DETAIL_KEYS = CSV_COLUMNS[4:9]
_SIGNATURE_RE = re.compile(r"[0-9a-f]{128}")

log = logging.getLogger("servicegate.audit")


def _checkpoint_problem(record: dict[str, Any], public_key: Ed25519PublicKey, expected_key_id: str) -> str | None:
    details = record["details"]
    if record["event"] != CHECKPOINT_EVENT or record["actor"] != SYSTEM_ACTOR or set(details) != CHECKPOINT_KEYS:
        return "a checkpoint record was changed (its event, actor or fields are not a checkpoint's)"
    if details["head_seq"] != record["seq"] - 1 or details["head_hash"] != record["prev"]:
        return "the checkpoint does not sign the record before it"
    if details["key_id"] != expected_key_id:
        return (f"the checkpoint was signed with key {details['key_id']!r}, but the public key given has id "
                f"{expected_key_id!r} (a different key, or the signing key was replaced)")
    signature = details["signature"]
    # Exactly 128 hex digits: bytes.fromhex skips spaces, and a changed byte must never verify.
    if not isinstance(signature, str) or not _SIGNATURE_RE.fullmatch(signature):
        return "the checkpoint's signature is not 128 hex digits"
    try:
        public_key.verify(bytes.fromhex(signature), signed_message(record))
    except InvalidSignature:
        return "the checkpoint's signature is not valid"
    return None



@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int  # records checked, checkpoints included (all of them when ok)
    last_checkpoint: datetime | None
    problem: str | None  # None when ok
    segment: str | None = None  # the segment file the problem names, and its line (from 1)
    line: int | None = None

    def summary(self) -> str:
        if self.ok:
            when = utc_iso(self.last_checkpoint) if self.last_checkpoint else "none"
            return f"intact: {self.records} records, last checkpoint {when}"
        return self.problem or "the audit log is damaged"

    def to_dict(self) -> dict[str, Any]:
        """The control API's and `--json`'s form of the result."""
        return {"ok": self.ok, "records": self.records, "problem": self.problem, "summary": self.summary(),
                "segment": self.segment, "line": self.line,
                "last_checkpoint": utc_iso(self.last_checkpoint) if self.last_checkpoint else None}


class _Broken(Exception):
    def __init__(self, problem: str, segment: str | None = None, line: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.segment, self.line = problem, segment, line


@dataclass(frozen=True)
class PortalHead:
    """A checkpoint as the portal received it: its own seq, and the record it signed (seq and hash)."""

    seq: int
    head_seq: int
    head_hash: str


@dataclass
class _Place:
    seq: int
    prev: str
    hash: str
    segment: str
    line: int

    def __str__(self) -> str:
        return f"record {self.seq} ({self.segment} line {self.line})"


class _ChainCheck:
    """Follows the chain record by record; raises _Broken at the first record that does not fit.

    When two neighbours disagree (seq or prev), the earlier one is named: an edit of a record is
    only visible in the next one's prev, so the earlier record is where the damage can start.
    """

    def __init__(self, public_key: Ed25519PublicKey, heads: Sequence[PortalHead] = ()) -> None:
        self.public_key = public_key
        self.head_hashes = {head.head_seq: head.head_hash for head in heads}
        self.portal_reach = max((head.seq for head in heads), default=0)
        self.key_id = key_id(public_key)
        self.records = 0
        self.last: _Place | None = None
        self.last_checkpoint: datetime | None = None
        self.start: _Place | None = None  # a start after seq 1, not (yet) vouched for by a signed prune record
        self.vouched: set[tuple[int, str]] = set()
        self.unsigned_vouchers: set[tuple[int, str]] = set()  # from prune records no checkpoint covers yet

    def feed(self, raw: bytes, segment: str, line: int) -> None:
        if not raw.endswith(b"\n"):
            too_long = len(raw) > MAX_LINE_BYTES
            raise _Broken(f"{segment} line {line}: " + ("longer than any record" if too_long else
                          "incomplete (no newline at its end: cut off or appended to)"), segment, line)
        record, why = parse_record(raw[:-1])
        if record is None:
            raise _Broken(f"{segment} line {line}: {why}", segment, line)
        here = _Place(record["seq"], record["prev"], line_hash(raw[:-1]), segment, line)
        last = self.last
        if last is None:
            if record["seq"] != 1:
                self.start = here
            elif record["prev"] != GENESIS_PREV:
                raise _Broken(f"{here}: the first record must carry prev {GENESIS_PREV}", segment, line)
        elif record["seq"] != last.seq + 1:
            raise _Broken(f"{last}: the chain breaks after this record: the next one ({segment} line {line}) has seq "
                          f"{record['seq']}, expected {last.seq + 1}; records were removed, inserted or reordered "
                          "here, or one of them was changed", last.segment, last.line)
        elif record["prev"] != last.hash:
            raise _Broken(f"{last}: hash chain broken: the next record ({segment} line {line}) carries prev "
                          f"{record['prev'][:16]}..., but this record hashes to {last.hash[:16]}...; this record was "
                          "changed, or records after it were removed, inserted or reordered", last.segment, last.line)
        if self.head_hashes.get(here.seq, here.hash) != here.hash:
            raise _Broken(f"{here}: differs from what the portal was told of it in a checkpoint: the record was "
                          "changed after it was signed and sent", segment, line)
        if is_checkpoint(record):
            problem = _checkpoint_problem(record, self.public_key, self.key_id)
            if problem:
                raise _Broken(f"{here}: {problem}", segment, line)
            self.last_checkpoint = parse_utc(record["ts"])
            self.vouched |= self.unsigned_vouchers
            self.unsigned_vouchers.clear()
            if self.start is not None and (self.start.seq, self.start.prev) in self.vouched:
                self.start = None
        elif record["event"] == PRUNED_EVENT and record["actor"] == SYSTEM_ACTOR:
            self.unsigned_vouchers |= _vouchers(record["details"])
        self.records += 1
        self.last = here

    def finish(self) -> None:
        last_seq = self.last.seq if self.last is not None else 0
        if self.portal_reach > last_seq:
            where = (self.last.segment, self.last.line) if self.last is not None else (None, None)
            raise _Broken(f"the log ends at record {last_seq}, but the portal holds a checkpoint at record "
                          f"{self.portal_reach}: records were cut off the end of the log", *where)
        if self.start is not None:
            raise _Broken(f"{self.start}: the log starts at seq {self.start.seq}, but no signed prune record vouches "
                          "for removing the records before it: a segment was deleted", self.start.segment,
                          self.start.line)


def _vouchers(details: dict[str, Any]) -> set[tuple[int, str]]:
    """The log starts a prune record accepts: after it, and after each segment it deletes (oldest first)."""
    found = {(details.get("first_kept_seq"), details.get("first_kept_prev"))}
    removed = details.get("removed")
    for info in removed if isinstance(removed, list) else []:
        if isinstance(info, dict):
            found.add((info.get("first_seq"), info.get("first_prev")))
    return {(seq, prev) for seq, prev in found if type(seq) is int and isinstance(prev, str)}


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line with its newline) one at a time; a line never costs more than MAX_LINE_BYTES."""
    with path.open("rb") as handle:
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 2):
            number += 1
            yield number, raw


def verify(directory: Path, public_key_path: Path, upto_seq: int | None = None,
           heads: Sequence[PortalHead] | None = None) -> VerifyResult:
    """Check the whole chain and every checkpoint, streaming; report the first damage found. Never raises.

    `upto_seq` stops after that record: the running agent passes its head, so records appended while
    a worker thread verifies (possibly half-written at that instant) are not judged.

    `heads` are the checkpoints the portal received: each record a head names must hash as the portal was told,
    and the log must reach the newest checkpoint the portal has. That finds records cut off the end, which the
    log alone cannot show.
    """
    try:
        public_key = serialization.load_pem_public_key(public_key_path.read_bytes())
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return VerifyResult(False, 0, None, f"cannot read the audit public key {public_key_path}: {exc}")
    if not isinstance(public_key, Ed25519PublicKey):
        return VerifyResult(False, 0, None, f"{public_key_path} is not an Ed25519 public key")
    check = _ChainCheck(public_key, heads or [])
    try:
        for _, path in segment_files(directory):
            for line, raw in _lines(path):
                check.feed(raw, path.name, line)
                if upto_seq is not None and check.last is not None and check.last.seq >= upto_seq:
                    break
            else:
                continue
            break
        check.finish()
    except _Broken as broken:
        return VerifyResult(False, check.records, check.last_checkpoint, broken.problem, broken.segment, broken.line)
    except OSError as exc:
        return VerifyResult(False, check.records, check.last_checkpoint, f"cannot read the audit log: {exc}")
    return VerifyResult(True, check.records, check.last_checkpoint, None)


def iter_records(directory: Path, since: datetime | None, until: datetime | None) -> Iterator[dict[str, Any]]:
    """Records with since <= ts <= until, oldest first, checkpoints left out; streams the segments.

    This does not check the chain (that is verify's job); a line that cannot be read is skipped and logged.
    """
    for bound in (since, until):
        if bound is not None and bound.tzinfo is None:
            raise UsageError(f"export times need a time zone: {bound.isoformat()} has none")
    try:
        segments = segment_files(directory)
    except OSError as exc:
        raise AuditError(f"cannot read the audit log in {directory}: {exc}") from exc
    for month, path in segments:
        # A segment holds no (non-checkpoint) record from after its month: a later month always rotates.
        if since is not None and month_end(month) <= since:
            continue
        try:
            for line, raw in _lines(path):
                record, why = parse_record(raw.rstrip(b"\n"))
                if record is None:
                    log.warning("audit export skips %s line %d: %s", path.name, line, why)
                    continue
                when = parse_utc(record["ts"])
                if not is_checkpoint(record) and (since is None or when >= since) and (until is None or when <= until):
                    yield record
        except OSError as exc:
            raise AuditError(f"cannot read the audit log segment {path}: {exc}") from exc


def export(directory: Path, since: datetime | None, until: datetime | None,
           engineer_id: str = "") -> list[dict[str, Any]]:
    """Who did what and when, between two times (inclusive, None = open); checkpoints are left out. With
    `engineer_id`, only what that engineer did or what concerned the engineer's sessions."""
    return [record for record in iter_records(directory, since, until)
            if not engineer_id or engineer_id in (record.get("actor"), _details(record).get("engineer_id"))]


def _details(record: dict[str, Any]) -> dict[str, Any]:
    details = record.get("details")
    return details if isinstance(details, dict) else {}


def to_json(records: list[dict[str, Any]]) -> str:
    return json.dumps(records, ensure_ascii=False, indent=2) + "\n"


def to_csv(records: list[dict[str, Any]]) -> str:
    """One row per record; the detail keys callers use for remote access get their own columns.

    A cell that a spreadsheet would run as a formula (= + - @ at its start) gets a leading
    apostrophe: an engineer's free-text reason must not execute on the auditor's computer.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        details = _details(record)
        rest = {key: value for key, value in details.items() if key not in _CSV_DETAIL_KEYS}
        row = [record.get("ts"), record.get("seq"), record.get("event"), record.get("actor"),
               *(details.get(key) for key in _CSV_DETAIL_KEYS)]
        writer.writerow([_cell(value) for value in row] + [canonical(rest)])
    return out.getvalue()


def _cell(value: Any) -> str:
    text = "" if value is None else value if isinstance(value, str) else canonical(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
