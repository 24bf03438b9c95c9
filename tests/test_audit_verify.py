"""Reading the audit log back on real files: verify finds every tampering (and names where), export.

Time comes from a ManualClock; nothing sleeps. The writer itself: test_audit_log.py.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.audit_log import GENESIS_PREV, MAX_LINE_BYTES, canonical, is_checkpoint
from agent.audit_verify import CSV_COLUMNS, PortalHead, export, to_csv, to_json, verify
from agent.clock import ManualClock, parse_utc
from agent.errors import UsageError
from agent.reporting import checkpoint_head
from tests.audit_env import START, Env, build_history, engineer_work, read_lines

# ---------------------------------------------------------------- segments deleted by hand


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


def test_checkpoint_heads_from_the_portal_find_a_changed_record_and_a_cut_end(env: Env) -> None:
    """`audit verify --against-portal`: the heads the portal holds against the local log."""
    log = env.open(checkpoint_interval=timedelta(minutes=1))
    sent: list[dict[str, Any]] = []
    log.listeners.append(lambda record: sent.append(checkpoint_head(record)) if is_checkpoint(record) else None)
    engineer_work(log, env.clock, 6, timedelta(seconds=30))
    log.close()
    heads = [PortalHead(int(h["seq"]), int(h["head_seq"]), str(h["head_hash"])) for h in sent]
    assert len(heads) >= 2
    assert verify(env.directory, env.pub, heads=heads).ok  # positive control
    # A head naming a record the log holds with another hash: that record was changed after it was sent.
    changed = [PortalHead(heads[0].seq, heads[0].head_seq, "0" * 64)]
    result = verify(env.directory, env.pub, heads=changed)
    assert not result.ok
    assert f"record {heads[0].head_seq}" in (result.problem or "")
    assert "changed after it was signed and sent" in (result.problem or "")
    # The newest checkpoint cut off (with what came after it): the log alone is intact, the heads say not.
    segment = sorted(env.directory.glob("audit-*.jsonl"))[-1]
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(line for line in lines if json.loads(line)["seq"] < heads[-1].seq))
    assert verify(env.directory, env.pub).ok
    cut = verify(env.directory, env.pub, heads=heads)
    assert not cut.ok
    assert "cut off the end" in (cut.problem or "")
