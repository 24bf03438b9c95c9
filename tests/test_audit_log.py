"""The audit log on real files: chain, checkpoints, rotation, retention, verify and export.

Time comes from a ManualClock; nothing sleeps.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.audit_log import (
    CSV_COLUMNS,
    DEFAULT_KEY_NAME,
    GENESIS_PREV,
    MAX_LINE_BYTES,
    AuditLog,
    canonical,
    export,
    public_key_path,
    to_csv,
    to_json,
    verify,
)
from agent.clock import ManualClock, parse_utc
from agent.errors import AuditError, UsageError

START = datetime(2026, 10, 30, 22, 0, tzinfo=UTC)


@dataclass
class Env:
    root: Path
    clock: ManualClock

    @property
    def directory(self) -> Path:
        return self.root / "audit"

    @property
    def key(self) -> Path:
        return self.root / "keys" / DEFAULT_KEY_NAME

    @property
    def pub(self) -> Path:
        return public_key_path(self.key)

    def open(self, **kwargs: Any) -> AuditLog:
        return AuditLog(self.directory, self.key, self.clock, **kwargs)

    def verify(self) -> Any:
        return verify(self.directory, self.pub)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for _, line in read_lines(self.directory)]

    def segment_names(self) -> list[str]:
        return sorted(path.name for path in self.directory.glob("audit-*.jsonl"))


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path, ManualClock(START))


def read_lines(directory: Path) -> list[tuple[str, bytes]]:
    """Every line of every segment, in log order, without newlines."""
    lines = []
    for path in sorted(directory.glob("audit-*.jsonl")):
        lines += [(path.name, line) for line in path.read_bytes().split(b"\n")[:-1]]
    return lines


def engineer_work(log: AuditLog, clock: ManualClock, count: int, step: timedelta) -> None:
    """Records as the daemon writes them, ticking every `step` as its timer would."""
    for n in range(count):
        log.append("session_started" if n % 2 == 0 else "task_run", f"eng-{n % 3}",
                   {"session_id": f"S-{n}", "engineer_id": f"eng-{n % 3}", "engineer_name": "Dana Smith",
                    "level": "LIMITED", "reason": "tube replacement", "task": "log_collect", "n": n})
        clock.advance(step)
        log.tick()


def build_history(env: Env, months: int, per_month: int = 4) -> None:
    """A log spanning `months` month boundaries, closed cleanly."""
    with env.open() as log:
        for _ in range(months):
            engineer_work(log, env.clock, per_month, timedelta(minutes=3))
            env.clock.advance(timedelta(days=30))


# ---------------------------------------------------------------- format, chain, checkpoints


def test_record_lines_are_canonical_and_chained(env: Env) -> None:
    seen: list[dict[str, Any]] = []
    with env.open() as log:
        log.listeners.append(seen.append)
        first = log.append("access_changed", "anna", {"level": "FULL", "zeta": [1, 2], "umlaut": "Größe"})
        second = log.append("session_started", "eng-7", {"session_id": "S-1"})  # seq 3: a checkpoint is seq 2
        assert log.head == (3, hashlib.sha256(read_lines(env.directory)[-1][1]).hexdigest())
    lines = [line for _, line in read_lines(env.directory)]
    assert lines[0].decode() == canonical(first)
    assert first == {"actor": "anna", "details": {"level": "FULL", "umlaut": "Größe", "zeta": [1, 2]},
                     "event": "access_changed", "prev": GENESIS_PREV, "seq": 1, "ts": "2026-10-30T22:00:00.000000Z"}
    assert "Größe".encode() in lines[0]  # stored as UTF-8, not \\u escapes
    for before, after in zip(lines, lines[1:], strict=False):
        assert json.loads(after)["prev"] == hashlib.sha256(before).hexdigest()
    assert [r["seq"] for r in seen] == list(range(1, len(lines) + 1))  # listeners got every record, checkpoints too
    assert second in seen


def test_untouched_log_across_months_verifies_intact(env: Env) -> None:
    build_history(env, months=4)  # October 2026 .. January 2027: a year boundary too
    result = env.verify()
    records = env.records()
    checkpoints = [r for r in records if r["event"] == "checkpoint"]
    assert env.segment_names() == ["audit-2026-10.jsonl", "audit-2026-11.jsonl", "audit-2026-12.jsonl",
                                   "audit-2027-01.jsonl"]
    assert result.ok, result.problem
    assert result.records == len(records) == records[-1]["seq"]
    assert result.last_checkpoint == parse_utc(checkpoints[-1]["ts"])
    assert result.summary() == f"intact: {len(records)} records, last checkpoint {checkpoints[-1]['ts'][:19]}Z"
    assert len(checkpoints) >= 5


def test_checkpoint_at_most_every_interval_while_records_arrive(env: Env) -> None:
    interval = timedelta(minutes=2)
    log = env.open(checkpoint_interval=interval)
    for second in range(1800):  # half an hour; a record every 25 s; the daemon ticks every second
        if second % 25 == 0:
            log.append("task_run", "eng-1", {"n": second})
        env.clock.advance(timedelta(seconds=1))
        log.tick()
    records = env.records()
    checkpoints = [r for r in records if r["event"] == "checkpoint"]
    for record in records:
        if record["event"] != "checkpoint":
            covering = next(c for c in checkpoints if c["details"]["head_seq"] >= record["seq"])
            assert parse_utc(covering["ts"]) - parse_utc(record["ts"]) <= interval
    gaps = [parse_utc(b["ts"]) - parse_utc(a["ts"]) for a, b in zip(checkpoints, checkpoints[1:], strict=False)]
    assert max(gaps) <= interval + timedelta(seconds=1)
    assert min(gaps) >= interval  # and not more often than needed
    log.close()
    assert env.verify().ok


def test_no_checkpoint_without_new_records(env: Env) -> None:
    with env.open() as log:
        assert log.checkpoint() is None  # empty log
        log.append("task_run", "eng-1", {})
        assert env.records()[-1]["event"] == "checkpoint"  # the first record after a long quiet gets one at once
        assert log.checkpoint() is None
        for _ in range(3600):
            env.clock.advance(timedelta(seconds=1))
            log.tick()
        assert len(env.records()) == 2  # an hour of ticks with nothing new: no checkpoint
        log.append("task_run", "eng-1", {})
        assert env.records()[-1]["event"] == "checkpoint"  # the last one is older than the interval
        env.clock.advance(timedelta(seconds=10))
        log.append("task_run", "eng-1", {})
        assert env.records()[-1]["event"] == "task_run"  # the last one is 10 s old: not due yet
        env.clock.advance(timedelta(seconds=10))
        checkpoint = log.checkpoint()  # but one can be asked for
        assert checkpoint is not None
        assert checkpoint["details"]["head_seq"] == checkpoint["seq"] - 1 == 5
        assert checkpoint["ts"] == "2026-10-30T23:00:20.000000Z"
    assert len(env.records()) == 6


def test_rotation_by_utc_month_seals_the_old_segment(env: Env) -> None:
    env.clock.set(datetime(2026, 11, 30, 23, 58, tzinfo=UTC))
    with env.open() as log:
        log.append("task_run", "eng-1", {"n": 1})  # the first record is checkpointed at once
        env.clock.advance(timedelta(seconds=30))
        log.append("task_run", "eng-1", {"n": 2})  # not yet due: no checkpoint after it
        env.clock.set(datetime(2026, 12, 1, 1, 59, tzinfo=timezone(timedelta(hours=2))))  # still November in UTC
        log.append("task_run", "eng-1", {"n": 3})
        env.clock.set(datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC))
        log.append("task_run", "eng-1", {"n": 4})
    november = [json.loads(line) for line in (env.directory / "audit-2026-11.jsonl").read_bytes().splitlines()]
    december = [json.loads(line) for line in (env.directory / "audit-2026-12.jsonl").read_bytes().splitlines()]
    assert [r["details"].get("n") for r in november] == [1, None, 2, 3, None]
    seal = november[-1]
    assert seal["event"] == "checkpoint"
    assert seal["details"]["head_seq"] == november[-2]["seq"]
    assert december[0]["details"] == {"n": 4}
    seal_line = (env.directory / "audit-2026-11.jsonl").read_bytes().splitlines()[-1]
    assert december[0]["prev"] == hashlib.sha256(seal_line).hexdigest()
    assert env.verify().ok


def test_clock_stepping_back_never_writes_to_an_older_segment(env: Env) -> None:
    env.clock.set(datetime(2026, 12, 1, 0, 0, 5, tzinfo=UTC))
    with env.open() as log:
        log.append("task_run", "eng-1", {})
        env.clock.set(datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))  # NTP step backwards
        log.append("task_run", "eng-1", {})
    assert env.segment_names() == ["audit-2026-12.jsonl"]
    assert env.verify().ok


def test_restart_continues_the_chain(env: Env) -> None:
    build_history(env, months=2)
    head = env.open().head
    with env.open() as log:
        assert log.head == head
        record = log.append("agent_started", "servicegate-admin", {})
        assert record["seq"] == head[0] + 1
        assert record["prev"] == head[1]
    assert env.verify().ok


def test_restart_after_a_crash_signs_the_unsigned_tail(env: Env) -> None:
    log = env.open()
    log.append("task_run", "eng-1", {})
    env.clock.advance(timedelta(seconds=5))
    log.append("task_run", "eng-1", {})  # not covered by a checkpoint; then the agent dies without close()
    log._close_segment()
    restarted = env.open()
    env.clock.advance(timedelta(minutes=4))
    restarted.tick()
    assert env.records()[-1]["event"] == "task_run"
    env.clock.advance(timedelta(minutes=1))  # five minutes after the checkpoint found in the tail
    restarted.tick()
    assert env.records()[-1]["event"] == "checkpoint"
    assert env.records()[-1]["details"]["head_seq"] == 3
    restarted.close()
    assert env.verify().ok


def test_start_reads_only_the_tail(env: Env) -> None:
    build_history(env, months=1, per_month=6)
    segment = env.directory / "audit-2026-10.jsonl"
    lines = segment.read_bytes().split(b"\n")
    lines[0] = lines[0].replace(b"eng-", b"ENG-")  # damage early in the newest segment
    segment.write_bytes(b"\n".join(lines))
    with env.open() as log:  # starts anyway: the start does not re-read the log ...
        log.append("task_run", "eng-1", {})
    result = env.verify()  # ... and verify still finds the damage
    assert not result.ok
    assert (result.segment, result.line) == ("audit-2026-10.jsonl", 1)


@pytest.mark.parametrize("tail", [b'{"actor":"eng-1","det', b"\x00\xff garbage\n", b"[1, 2]\n"])
def test_unreadable_tail_stops_the_start_with_a_clear_message(env: Env, tail: bytes) -> None:
    build_history(env, months=1)
    with (env.directory / "audit-2026-10.jsonl").open("ab") as handle:
        handle.write(tail)
    with pytest.raises(AuditError, match=r"cannot continue the audit log: the last line of .*audit-2026-10\.jsonl"):
        env.open()


def test_append_refuses_reserved_events_and_non_json_details(env: Env) -> None:
    with env.open() as log:
        for event, details in (("checkpoint", {}), ("audit_pruned", {}),
                               ("x", {"head_seq": 1, "head_hash": "", "key_id": "", "signature": ""})):
            with pytest.raises(AuditError, match="reserved"):
                log.append(event, "eng-1", details)
        unstorable: list[dict[Any, Any]] = [{"when": datetime.now(UTC)}, {"nan": float("nan")}, {1: "a", "b": 2},
                                            {"s": "\udcff"}]
        for bad in unstorable:
            with pytest.raises(AuditError, match="cannot be stored as JSON"):
                log.append("task_run", "eng-1", bad)
        with pytest.raises(AuditError, match="bytes"):
            log.append("task_run", "eng-1", {"blob": "x" * MAX_LINE_BYTES})
        assert log.head == (0, GENESIS_PREV)  # nothing half-written
    assert env.verify().ok


def test_a_failing_listener_does_not_fail_the_append(env: Env) -> None:
    def broken(record: dict[str, Any]) -> None:
        raise RuntimeError("subscriber gone")

    with env.open() as log:
        log.listeners.append(broken)
        assert log.append("task_run", "eng-1", {})["seq"] == 1
    assert env.verify().ok


def test_closed_log_refuses_appends(env: Env) -> None:
    log = env.open()
    log.close()
    log.close()
    log.tick()
    with pytest.raises(AuditError, match="closed"):
        log.append("task_run", "eng-1", {})


# ---------------------------------------------------------------- the key


def test_key_created_private_and_reused(env: Env) -> None:
    with env.open() as log:
        log.append("task_run", "eng-1", {})
    assert stat.S_IMODE(env.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(env.key.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(env.directory.stat().st_mode) == 0o700
    assert env.pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    key_bytes = env.key.read_bytes()
    env.pub.unlink()  # the public half is re-derived from the private key
    with env.open() as log:
        log.append("task_run", "eng-1", {})
    assert env.key.read_bytes() == key_bytes
    key_ids = {r["details"]["key_id"] for r in env.records() if r["event"] == "checkpoint"}
    assert len(key_ids) == 1
    assert env.verify().ok


def test_key_readable_by_others_is_refused(env: Env) -> None:
    env.open().close()
    env.key.chmod(0o644)
    with pytest.raises(AuditError, match="chmod 600"):
        env.open()


def test_missing_key_with_an_existing_log_is_refused(env: Env) -> None:
    build_history(env, months=1)
    env.key.unlink()
    with pytest.raises(AuditError, match="missing, but the audit log already has records"):
        env.open()


def test_replaced_key_is_refused_and_detected(env: Env) -> None:
    build_history(env, months=1)
    other = Env(env.root / "other", env.clock)
    other.open().close()
    env.key.write_bytes(other.key.read_bytes())
    with pytest.raises(AuditError, match="was signed with key"):
        env.open()
    result = verify(env.directory, other.pub)
    assert not result.ok
    assert "signed with key" in (result.problem or "")


def test_retention_below_a_year_is_refused(env: Env) -> None:
    with pytest.raises(AuditError, match="at least 365 days"):
        env.open(retention_days=364)


# ---------------------------------------------------------------- retention


def newest_ts(content: bytes) -> datetime:
    return parse_utc(json.loads(content.splitlines()[-1])["ts"])


def younger_than(cutoff: datetime, name: str, content: bytes) -> bool:
    """A segment is young while its newest record or the end of its month is after the cutoff."""
    year, month = int(name[6:10]), int(name[11:13])
    return newest_ts(content) > cutoff or datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC) > cutoff


def test_prune_deletes_only_segments_older_than_retention(env: Env) -> None:
    env.clock.set(datetime(2025, 1, 10, tzinfo=UTC))
    build_history(env, months=15, per_month=2)  # January 2025 .. March 2026
    before = {path.name: path.read_bytes() for path in env.directory.glob("audit-*.jsonl")}
    with env.open() as log:
        removed = [path.name for path in log.prune()]
    cutoff = env.clock.now() - timedelta(days=365)
    assert removed == sorted(before)[: len(removed)]
    assert len(removed) >= 2
    assert all(newest_ts(before[name]) <= cutoff for name in removed)  # only old ones went ...
    first_kept = env.segment_names()[0]
    assert younger_than(cutoff, first_kept, before[first_kept])  # ... and all of those
    pruned = next(r for r in env.records() if r["event"] == "audit_pruned")
    assert pruned["actor"] == "servicegate"
    assert [info["segment"] for info in pruned["details"]["removed"]] == removed
    first = env.records()[0]
    assert (pruned["details"]["first_kept_seq"], pruned["details"]["first_kept_prev"]) == (first["seq"], first["prev"])
    result = env.verify()
    assert result.ok, result.problem
    with env.open() as log:
        assert log.prune() == []  # nothing more is old enough


def test_prune_keeps_a_segment_one_day_inside_retention(env: Env) -> None:
    env.clock.set(datetime(2025, 5, 20, tzinfo=UTC))
    with env.open() as log:
        log.append("task_run", "eng-1", {})
        env.clock.advance(timedelta(minutes=1))
        log.append("task_run", "eng-1", {})  # not checkpointed yet ...
        env.clock.set(datetime(2025, 6, 2, tzinfo=UTC))  # ... so May is sealed on June 2: its newest record
        log.append("task_run", "eng-1", {})
    for day, expected in ((datetime(2026, 6, 1, tzinfo=UTC), []), (datetime(2026, 6, 2, 0, 0, 1, tzinfo=UTC),
                                                                   ["audit-2025-05.jsonl"])):
        env.clock.set(day)
        with env.open() as log:
            assert [p.name for p in log.prune()] == expected
    assert env.verify().ok


def test_prune_with_longer_retention_keeps_more(env: Env) -> None:
    env.clock.set(datetime(2024, 1, 10, tzinfo=UTC))
    build_history(env, months=26, per_month=1)
    before = {path.name: path.read_bytes() for path in env.directory.glob("audit-*.jsonl")}
    with env.open(retention_days=730) as log:
        removed = [path.name for path in log.prune()]
    cutoff = env.clock.now() - timedelta(days=730)
    assert removed
    assert all(newest_ts(before[name]) <= cutoff for name in removed)
    first_kept = env.segment_names()[0]
    assert younger_than(cutoff, first_kept, before[first_kept])
    assert not younger_than(env.clock.now() - timedelta(days=365), first_kept, before[first_kept])  # 365 would not
    assert env.verify().ok


def test_deleting_a_young_segment_by_hand_is_detected(env: Env) -> None:
    build_history(env, months=3)
    (env.directory / "audit-2026-11.jsonl").unlink()  # from the middle
    result = env.verify()
    assert not result.ok
    assert result.segment == "audit-2026-10.jsonl"
    assert "the chain breaks after this record" in (result.problem or "")


def test_deleting_the_oldest_segment_by_hand_is_detected(env: Env) -> None:
    build_history(env, months=3)
    (env.directory / "audit-2026-10.jsonl").unlink()
    result = env.verify()
    assert not result.ok
    assert (result.segment, result.line) == ("audit-2026-11.jsonl", 1)
    assert "no signed prune record vouches" in (result.problem or "")


def test_deleting_more_than_prune_did_is_detected(env: Env) -> None:
    env.clock.set(datetime(2025, 1, 10, tzinfo=UTC))
    build_history(env, months=15, per_month=2)
    with env.open() as log:
        log.prune()
    oldest = env.segment_names()[0]
    (env.directory / oldest).unlink()
    result = env.verify()
    assert not result.ok
    assert "no signed prune record vouches" in (result.problem or "")


# ---------------------------------------------------------------- verify on junk, and its blind spot


def test_truncation_after_the_last_checkpoint_is_not_visible_locally(env: Env) -> None:
    """The documented blind spot: the end of the log is cut off back to a checkpoint (portal comparison finds it)."""
    build_history(env, months=1, per_month=6)
    lines = [line for _, line in read_lines(env.directory)]
    cut = max(i for i, line in enumerate(lines[:-1]) if json.loads(line)["event"] == "checkpoint")
    (env.directory / "audit-2026-10.jsonl").write_bytes(b"".join(line + b"\n" for line in lines[: cut + 1]))
    result = env.verify()
    assert result.ok
    assert result.records == cut + 1


@pytest.mark.parametrize(("junk", "problem"), [
    (b"not json\n", "not a JSON record"),
    (b"\x00\xff\xfe\x80\n", "not UTF-8"),
    (b'{"seq": 9}\n', "not an audit record"),
    (b"[" * 200_000 + b"\n", "not a JSON record"),
    (b"\n", "empty line"),
    (b"x" * (MAX_LINE_BYTES + 10) + b"\n", "longer than any record"),
    (b'{"actor":"a"', "incomplete"),
])
def test_verify_reports_junk_with_file_and_line(env: Env, junk: bytes, problem: str) -> None:
    build_history(env, months=1)
    segment = env.directory / "audit-2026-10.jsonl"
    count = len(segment.read_bytes().splitlines())
    with segment.open("ab") as handle:
        handle.write(junk)
    result = env.verify()
    assert not result.ok
    assert (result.segment, result.line) == ("audit-2026-10.jsonl", count + 1)
    assert problem in (result.problem or "")
    assert "audit-2026-10.jsonl line" in (result.problem or "")


def test_verify_without_a_key_or_log(env: Env) -> None:
    build_history(env, months=1)
    assert "cannot read the audit public key" in (verify(env.directory, env.root / "nope.pub").problem or "")
    env.pub.write_bytes(b"garbage")
    assert not verify(env.directory, env.pub).ok
    env.open().close()  # rewrites the public key
    assert not verify(env.root / "missing", env.pub).ok
    assert verify(env.root / "keys", env.pub).summary() == "intact: 0 records, last checkpoint none"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(min_size=1, max_size=200), where=st.sampled_from(["append", "replace", "new"]))
def test_verify_never_raises_on_junk(env_with_history: tuple[Path, Path], junk: bytes, where: str) -> None:
    directory, pub = env_with_history
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        for path in directory.iterdir():
            (copy / path.name).write_bytes(path.read_bytes())
        target = copy / ("audit-2030-01.jsonl" if where == "new" else "audit-2026-10.jsonl")
        target.write_bytes(junk if where != "append" else target.read_bytes() + junk)
        result = verify(copy, pub)
    assert not result.ok
    assert result.problem


# ---------------------------------------------------------------- tampering, property-based


@dataclass(frozen=True)
class Base:
    """An untouched log whose last record is a checkpoint, as (segment, line) pairs in log order."""

    lines: tuple[tuple[str, bytes], ...]
    pub: Path


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> list[Base]:
    made = []
    for name, start, months, prune in (("plain", START, 3, False),
                                       ("pruned", datetime(2025, 3, 5, tzinfo=UTC), 14, True)):
        env = Env(tmp_path_factory.mktemp(name), ManualClock(start))
        build_history(env, months=months, per_month=3)
        if prune:
            with env.open() as log:
                assert log.prune()
                engineer_work(log, env.clock, 3, timedelta(minutes=1))
        assert env.verify().ok
        assert env.records()[-1]["event"] == "checkpoint"
        assert (env.records()[0]["seq"] > 1) == prune
        made.append(Base(tuple(read_lines(env.directory)), env.pub))
    return made


@pytest.fixture(scope="module")
def env_with_history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    env = Env(tmp_path_factory.mktemp("junk"), ManualClock(START))
    build_history(env, months=1)
    return env.directory, env.pub


Lines = list[tuple[str, bytes]]
HEX = "0123456789abcdef"
json_values = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**12), st.text(st.characters(codec="utf-8"),
                                                                                      max_size=12))


def position(data: st.DataObject, lines: Lines, label: str, low: int = 0, high: int | None = None) -> int:
    """Any position, but the edges often: the last record (the final checkpoint), segment boundaries, the first."""
    high = len(lines) - 1 if high is None else high
    edges = {0, len(lines) - 1, len(lines)} | {i for i in range(1, len(lines)) if lines[i][0] != lines[i - 1][0]}
    favoured = sorted(i for i in edges | {i - 1 for i in edges} if low <= i <= high)
    last = min(len(lines) - 1, high)
    choices = [st.integers(low, high), st.sampled_from(favoured)] + ([st.just(last)] if last >= low else [])
    return data.draw(st.one_of(choices), label=label)


def edit_value(data: st.DataObject, lines: Lines) -> Lines:
    index = position(data, lines, "index")
    segment, raw = lines[index]
    record = json.loads(raw)
    field = data.draw(st.sampled_from(["actor", "event", "ts", "seq", "prev", "details+",
                                       *(f"details.{key}" for key in record["details"])]), label="field")
    if field == "ts":
        shift = data.draw(st.integers(-10**9, 10**9).filter(bool))
        record["ts"] = (parse_utc(record["ts"]) + timedelta(microseconds=shift)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    elif field in ("prev", "details.head_hash", "details.signature"):
        size = 128 if field.endswith("signature") else 64
        fresh = data.draw(st.text(HEX, min_size=size, max_size=size))
        if field == "prev":
            record["prev"] = fresh
        else:
            record["details"][field.split(".")[1]] = fresh
    elif field == "details+":
        record["details"][data.draw(st.text(min_size=1, max_size=5))] = data.draw(json_values)
    elif field.startswith("details."):
        record["details"][field.split(".", 1)[1]] = data.draw(json_values)
    elif field == "seq":
        record["seq"] = data.draw(st.integers(-3, 10**6))
    else:
        record[field] = data.draw(st.text(st.characters(codec="utf-8"), max_size=12))
    return [*lines[:index], (segment, canonical(record).encode()), *lines[index + 1:]]


def edit_byte(data: st.DataObject, lines: Lines) -> Lines:
    index = position(data, lines, "index")
    segment, raw = lines[index]
    byte = data.draw(st.sampled_from([b" ", b"\t", b"\r", b"\n"]) | st.binary(min_size=1, max_size=1))
    if data.draw(st.booleans(), label="insert"):
        offset = data.draw(st.integers(0, len(raw)))
        changed = raw[:offset] + byte + raw[offset:]
    else:
        offset = data.draw(st.integers(0, len(raw) - 1))
        changed = raw[:offset] + byte + raw[offset + 1:]
    return [*lines[:index], (segment, changed), *lines[index + 1:]]


def delete(data: st.DataObject, lines: Lines) -> Lines:
    index = position(data, lines, "index")
    return lines[:index] + lines[index + 1:]


def swap(data: st.DataObject, lines: Lines) -> Lines:
    first = position(data, lines, "first", high=len(lines) - 2)
    second = position(data, lines, "second", low=first + 1)
    changed = list(lines)
    # Each line moves with its content, the file names stay where they were.
    changed[first], changed[second] = (lines[first][0], lines[second][1]), (lines[second][0], lines[first][1])
    return changed


def insert(data: st.DataObject, lines: Lines) -> Lines:
    where = position(data, lines, "position", high=len(lines))
    how = data.draw(st.sampled_from(["duplicate", "made_up", "crafted"]), label="how")
    if how == "duplicate":
        line = lines[position(data, lines, "copy of")][1]
    else:
        record = {"actor": data.draw(st.text(max_size=8)), "event": data.draw(st.sampled_from(["task_run", "x"])),
                  "details": {"reason": data.draw(st.text(max_size=8))}, "ts": "2026-11-02T10:00:00.000000Z",
                  "seq": data.draw(st.integers(1, 200)), "prev": data.draw(st.text(HEX, min_size=64, max_size=64))}
        if how == "crafted":
            # Fits its predecessor exactly. At the very end this is the same blind spot as truncation: the
            # records after the last checkpoint are not signed, so a well-formed one can be added there.
            assume(where < len(lines))
            before = json.loads(lines[where - 1][1]) if where else None
            record["seq"] = before["seq"] + 1 if before else 1
            record["prev"] = hashlib.sha256(lines[where - 1][1]).hexdigest() if before else GENESIS_PREV
        line = canonical(record).encode()
    neighbours = {lines[min(where, len(lines) - 1)][0], lines[max(where - 1, 0)][0]}
    segment = data.draw(st.sampled_from(sorted(neighbours)), label="segment")
    return [*lines[:where], (segment, line), *lines[where:]]


TAMPERINGS: dict[str, Callable[[st.DataObject, Lines], Lines]] = {
    "edit_value": edit_value, "edit_byte": edit_byte, "delete": delete, "swap": swap, "insert": insert}


def write_log(directory: Path, lines: Lines) -> list[bytes]:
    """Write the segments; return the log's lines as verify will read them (an edit may add a newline)."""
    contents: dict[str, bytes] = {}
    for segment, line in lines:
        contents[segment] = contents.get(segment, b"") + line + b"\n"
    for segment, content in contents.items():
        (directory / segment).write_bytes(content)
    return [line for _, line in read_lines(directory)]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_verify_catches_every_tampering_at_the_right_place(bases: list[Base], data: st.DataObject) -> None:
    """One edit (a value, or a byte), deletion, swap or insertion anywhere; verify names the damaged place."""
    base = data.draw(st.sampled_from(bases), label="base")
    kind = data.draw(st.sampled_from(sorted(TAMPERINGS)), label="kind")
    original = [line for _, line in base.lines]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        tampered = write_log(directory, TAMPERINGS[kind](data, list(base.lines)))
        assume(tampered != original)
        # Cutting records off the end leaves a valid shorter log: the documented blind spot, excluded here
        # (it is caught by comparing checkpoint heads with the portal). Every other change must be caught.
        assume(tampered[: len(original)] != original[: len(tampered)] or len(tampered) > len(original))
        result = verify(directory, base.pub)
        lengths = {path.name: len(path.read_bytes().split(b"\n")) - 1 for path in directory.glob("audit-*.jsonl")}
    first_change = next(i for i, (a, b) in enumerate(zip(original, tampered, strict=False)) if a != b) \
        if tampered[: len(original)] != original[: len(tampered)] else min(len(original), len(tampered))
    assert not result.ok, f"{kind} not caught"
    assert result.segment is not None, result.problem
    assert result.line is not None
    named = sum(length for name, length in lengths.items() if name < result.segment) + result.line - 1
    # An edit shows only in the next record's prev, so the record just before a break is the one named.
    assert first_change - 1 <= named <= first_change, (kind, first_change, named, result.problem)


def test_every_change_to_the_last_checkpoint_is_caught(env: Env) -> None:
    """The last record has no successor whose prev would show an edit: its signature and form must."""
    build_history(env, months=1)
    segment = env.directory / "audit-2026-10.jsonl"
    lines = segment.read_bytes().splitlines()
    last = json.loads(lines[-1])
    changed: list[bytes] = []
    for field in ("actor", "event", "ts", "seq", "prev", *(f"details.{key}" for key in last["details"])):
        record = json.loads(lines[-1])
        target, key = (record["details"], field[8:]) if field.startswith("details.") else (record, field)
        value = target[key]
        target[key] = value + 1 if isinstance(value, int) else value[:-2] + ("0" if value[-2] != "0" else "1") + \
            value[-1]
        changed.append(canonical(record).encode())
    changed += [lines[-1][:offset] + b" " + lines[-1][offset:] for offset in range(len(lines[-1]) + 1)]
    for line in changed:
        segment.write_bytes(b"\n".join([*lines[:-1], line]) + b"\n")
        result = env.verify()
        assert not result.ok, line
        assert result.line in (len(lines) - 1, len(lines)), result.problem


def test_a_prune_record_vouches_only_once_signed(env: Env) -> None:
    """Deleting the oldest segment and appending a made-up prune record for it does not pass."""
    build_history(env, months=3)
    oldest = env.directory / "audit-2026-10.jsonl"
    first_kept = json.loads((env.directory / "audit-2026-11.jsonl").read_bytes().splitlines()[0])
    oldest.unlink()
    newest = env.directory / "audit-2026-12.jsonl"
    tail = newest.read_bytes().splitlines()[-1]
    forged = {"actor": "servicegate", "event": "audit_pruned", "seq": json.loads(tail)["seq"] + 1,
              "prev": hashlib.sha256(tail).hexdigest(), "ts": "2026-12-31T00:00:00.000000Z",
              "details": {"first_kept_seq": first_kept["seq"], "first_kept_prev": first_kept["prev"],
                          "retention_days": 365, "removed": []}}
    with newest.open("ab") as handle:
        handle.write(canonical(forged).encode() + b"\n")
    result = env.verify()
    assert not result.ok
    assert "no signed prune record vouches" in (result.problem or "")


def test_changing_the_last_checkpoint_into_a_plain_record_is_caught(env: Env) -> None:
    build_history(env, months=1)
    segment = env.directory / "audit-2026-10.jsonl"
    lines = segment.read_bytes().splitlines()
    record = json.loads(lines[-1])
    record["event"] = "task_run"
    segment.write_bytes(b"\n".join([*lines[:-1], canonical(record).encode()]) + b"\n")
    result = env.verify()
    assert not result.ok
    assert "checkpoint record was changed" in (result.problem or "")


# ---------------------------------------------------------------- export


def test_export_between_two_times(env: Env) -> None:
    with env.open() as log:
        for hour in range(6):
            env.clock.set(datetime(2026, 10, 30, 8 + hour, tzinfo=UTC))
            log.append("session_started", f"eng-{hour}", {"session_id": f"S-{hour}"})
    since, until = datetime(2026, 10, 30, 10, tzinfo=UTC), datetime(2026, 10, 30, 12, tzinfo=UTC)
    assert [r["actor"] for r in export(env.directory, since, until)] == ["eng-2", "eng-3", "eng-4"]  # inclusive
    assert [r["actor"] for r in export(env.directory, None, since)] == ["eng-0", "eng-1", "eng-2"]
    assert len(export(env.directory, until, None)) == 2
    assert all(r["event"] != "checkpoint" for r in export(env.directory, None, None))
    local = since.astimezone(timezone(timedelta(hours=1)))
    assert export(env.directory, local, until) == export(env.directory, since, until)
    with pytest.raises(UsageError, match="time zone"):
        export(env.directory, datetime(2026, 10, 30), None)


def test_export_skips_segments_before_since(env: Env) -> None:
    build_history(env, months=3)
    since = datetime(2026, 12, 1, tzinfo=UTC)
    (env.directory / "audit-2026-10.jsonl").write_bytes(b"not read\n")
    records = export(env.directory, since, None)
    assert records
    assert all(parse_utc(r["ts"]) >= since for r in records)


def test_csv_and_json_answer_who_when_which_level_why(env: Env) -> None:
    with env.open() as log:
        log.append("session_started", "eng-42", {"session_id": "S-9", "engineer_id": "eng-42",
                                                 "engineer_name": "Dana Smith", "level": "FULL",
                                                 "reason": "=HYPERLINK(\"x\")", "task": "log_collect", "n": 3})
        log.append("access_changed", "anna", {"level": "NO_ACCESS"})
    records = export(env.directory, None, None)
    rows = list(csv.reader(io.StringIO(to_csv(records))))
    assert tuple(rows[0]) == CSV_COLUMNS == ("time_utc", "seq", "event", "actor", "session_id", "engineer_id",
                                             "engineer_name", "level", "reason", "details")
    assert rows[1] == ["2026-10-30T22:00:00.000000Z", "1", "session_started", "eng-42", "S-9", "eng-42",
                       "Dana Smith", "FULL", "'=HYPERLINK(\"x\")", '{"n":3,"task":"log_collect"}']
    assert rows[2][2:] == ["access_changed", "anna", "", "", "", "NO_ACCESS", "", "{}"]
    assert len(rows) == 3
    assert json.loads(to_json(records)) == records
    assert records[0]["details"]["reason"] == "=HYPERLINK(\"x\")"  # JSON keeps the value as it is


def test_export_skips_unreadable_lines(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    build_history(env, months=1)
    with (env.directory / "audit-2026-10.jsonl").open("ab") as handle:
        handle.write(b"junk\n")
    assert len(export(env.directory, None, None)) == 4
    assert "skips audit-2026-10.jsonl line" in caplog.text


def test_files_are_private(env: Env) -> None:
    build_history(env, months=1)
    for path in env.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert os.access(env.pub, os.R_OK)
