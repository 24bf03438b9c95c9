"""The audit log's writer on real files: chain, checkpoints, rotation, the key, retention.

Time comes from a ManualClock; nothing sleeps. Verify, tampering and export: test_audit_verify.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agent.audit_log import GENESIS_PREV, MAX_LINE_BYTES, canonical
from agent.audit_verify import verify
from agent.clock import parse_utc
from agent.errors import AuditError
from tests.audit_env import Env, build_history, read_lines

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
    assert result.summary() == f"intact: {len(records)} records, last checkpoint {checkpoints[-1]['ts']}"
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


# ---------------------------------------------------------------- files


def test_files_are_private(env: Env) -> None:
    build_history(env, months=1)
    for path in env.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert os.access(env.pub, os.R_OK)
