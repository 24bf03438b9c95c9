"""telemetry.outbox on real SQLite files: sequences, priorities, the size cap and its shed reports, quarantine."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from telemetry.outbox import PRIORITIES, PROTECTED, Outbox, OutboxError


class Clock:
    """Seconds since the epoch, moved by the test (no sleeping)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def covered(outbox_records: list[dict[str, Any]]) -> set[int]:
    """Every sequence named by the shed reports among `outbox_records` (bodies of kind "shed")."""
    named: set[int] = set()
    for body in outbox_records:
        for first, last in body["sequences"]:
            named.update(range(first, last + 1))
    return named


def drain(outbox: Outbox) -> list[tuple[int, str, dict[str, Any]]]:
    """Take everything the outbox would send, acknowledging each batch, as the shipper does."""
    got = []
    while batch := outbox.batch(max_records=1000):
        got += [(r.sequence, r.kind, r.body) for r in batch]
        outbox.ack([r.sequence for r in batch])
    return got


def test_one_sequence_across_kinds_never_reused_and_durable_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.sqlite"
    with Outbox(path) as outbox:
        first = outbox.put("metric", {"cpu": 1.5})
        logs = outbox.put_many("log", [{"line": "a"}, {"line": "b"}])
        alert = outbox.put("alert", {"metric": "disk", "value": 97})
        assert [first, *logs, alert] == [1, 2, 3, 4]
        assert outbox.ack([1, 2, 3, 4]) == 4
        assert outbox.ack([1, 2]) == 0  # a repeated acknowledgement is harmless
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with Outbox(path) as outbox:
        assert outbox.put("metric", {"cpu": 2.0}) == 5  # after delete and reopen: still the next number
        assert outbox.integrity_check() == "ok"
    plain = sqlite3.connect(path)
    assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    plain.close()


def test_batches_send_alerts_first_then_oldest_first_and_respect_the_byte_limit(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as outbox:
        outbox.put_many("log", [{"line": "x" * 100} for _ in range(3)])
        outbox.put("metric", {"cpu": 1})
        outbox.put("alert", {"metric": "disk"})
        assert [r.kind for r in outbox.batch()] == ["alert", "metric", "log", "log", "log"]
        assert [r.sequence for r in outbox.batch()][2:] == [1, 2, 3]
        assert len(outbox.batch(max_bytes=1)) == 1  # at least one record, however big
        assert len(outbox.batch(max_records=2)) == 2
        assert outbox.batch()[0].body == {"metric": "disk"}


def test_over_the_cap_it_sheds_debug_then_logs_then_metrics_never_alerts_and_names_every_drop(tmp_path: Path) -> None:
    clock = Clock()
    with Outbox(tmp_path / "o.sqlite", cap_bytes=20_000, clock=clock) as outbox:
        alerts = [outbox.put("alert", {"n": i}) for i in range(5)]
        metrics = outbox.put_many("metric", [{"n": i, "pad": "m" * 200} for i in range(40)])  # ~9 KB
        debug = outbox.put_many("debug_log", [{"n": i, "pad": "d" * 200} for i in range(20)])  # ~4.5 KB
        logs = outbox.put_many("log", [{"n": i, "pad": "l" * 200} for i in range(60)])  # 13 KB: over the cap now
        status = outbox.status()
        assert status.bytes <= 20_000
        assert status.shed["debug_log"] == 20  # all debug logs went first
        assert 0 < status.shed["log"] < 60  # then enough of the oldest logs
        assert "metric" not in status.shed
        sent = drain(outbox)
    kinds = {seq: kind for seq, kind, _ in sent}
    assert set(alerts) <= kinds.keys()
    assert set(metrics) <= kinds.keys()  # the debug logs and some logs made enough room
    shed_reports = [body for _, kind, body in sent if kind == "shed"]
    missing = set(alerts + metrics + debug + logs) - kinds.keys()
    assert missing  # something was shed...
    assert missing == covered(shed_reports)  # ...and exactly that is named: a gap, never a silent loss
    assert set(debug) <= missing
    assert all("cap of 20000 bytes" in str(body["reason"]) for body in shed_reports)


def test_more_pressure_sheds_metrics_only_after_all_logs(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite", cap_bytes=10_000) as outbox:
        logs = outbox.put_many("log", [{"pad": "l" * 200} for _ in range(20)])
        metrics = outbox.put_many("metric", [{"pad": "m" * 200} for _ in range(60)])
        sent = drain(outbox)
    kept = {seq for seq, _, _ in sent}
    assert not set(logs) & kept  # every log went before any metric
    assert set(metrics) - kept  # then the oldest metrics
    assert max(set(metrics) - kept) < min(set(metrics) & kept)  # oldest first


def test_records_that_are_never_shed_may_outgrow_the_cap(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite", cap_bytes=1_000) as outbox:
        sequences = outbox.put_many("alert", [{"pad": "a" * 100} for _ in range(30)])
        outbox.put_many("session_event", [{"pad": "s" * 100} for _ in range(10)])
        assert outbox.status().bytes > 1_000
        assert outbox.status().shed == {}
        assert set(sequences) <= {r.sequence for r in outbox.batch(max_records=100)}
    assert all(PRIORITIES[k] >= PROTECTED for k in ("alert", "audit_checkpoint", "session_event", "shed"))


def test_a_quarantined_batch_is_kept_reported_and_never_sent_again(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as outbox:
        bad = outbox.put_many("metric", [{"n": 1}, {"n": 2}])
        good = outbox.put("metric", {"n": 3})
        outbox.quarantine(bad, "HTTP 400: invalid OTLP document")
        batch = outbox.batch()
        assert [r.kind for r in batch] == ["quarantined", "metric"]
        assert batch[0].body == {"sequences": [[1, 2]], "count": 2, "reason": "HTTP 400: invalid OTLP document"}
        assert batch[1].sequence == good
        outbox.ack([r.sequence for r in batch])
        status = outbox.status()
        assert (status.records, status.quarantined) == (2, 2)  # still in the database, not dropped


def test_status_counts_ages_and_the_last_push_and_error(tmp_path: Path) -> None:
    clock = Clock()
    with Outbox(tmp_path / "o.sqlite", clock=clock) as outbox:
        empty = outbox.status()
        assert (empty.records, empty.bytes, empty.oldest_age_s, empty.last_push) == (0, 0, None, None)
        outbox.put("metric", {"cpu": 1})
        clock.now += 90
        outbox.put("log", {"line": "x"})
        outbox.note_error("connection refused by portal.example:443")
        status = outbox.status()
        assert (status.records, status.oldest_age_s) == (2, 90.0)
        assert status.last_error == "connection refused by portal.example:443"
        outbox.ack([1])
        after = outbox.status()
        assert (after.records, after.last_push, after.last_error) == (1, clock.now, None)
        assert after.to_dict()["records"] == 1


def test_unknown_kinds_and_damaged_files_are_clear_errors(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as outbox, pytest.raises(ValueError, match="unknown outbox record kind"):
        outbox.put("metrics", {})
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="Move the file aside"):
        Outbox(damaged)


def test_a_72_hour_outage_at_default_intervals_loses_nothing_below_the_cap(tmp_path: Path) -> None:
    """Drive 72 h of default-interval telemetry (a metric document and a few log records a minute, an alert
    every 6 h) into an outbox nobody drains; then the same with a cap it outgrows."""

    def outage(outbox: Outbox, clock: Clock) -> dict[str, list[int]]:
        made: dict[str, list[int]] = {"metric": [], "log": [], "alert": []}
        for minute in range(72 * 60):
            clock.now += 60
            made["metric"].append(outbox.put("metric", {"minute": minute, "values": "v" * 1500}))
            made["log"] += outbox.put_many("log", [{"minute": minute, "line": "l" * 300} for _ in range(3)])
            if minute % 360 == 0:
                made["alert"].append(outbox.put("alert", {"minute": minute}))
        return made

    clock = Clock()
    with Outbox(tmp_path / "big.sqlite", clock=clock) as outbox:
        made = outage(outbox, clock)
        assert outbox.status().shed == {}
        assert outbox.status().oldest_age_s == 72 * 3600 - 60
        assert {seq for seq, _, _ in drain(outbox)} == {s for seqs in made.values() for s in seqs}
    clock = Clock()
    with Outbox(tmp_path / "capped.sqlite", cap_bytes=6_000_000, clock=clock) as outbox:
        made = outage(outbox, clock)
        sent = drain(outbox)
    kept = {seq for seq, _, _ in sent}
    assert set(made["alert"]) <= kept
    assert set(made["log"]) - kept  # logs went first...
    lost_metrics = set(made["metric"]) - kept
    if lost_metrics:  # ...and a metric only once no older log was left
        assert not {s for s in made["log"] if s < max(lost_metrics)} & kept
    missing = {s for seqs in made.values() for s in seqs} - kept
    assert missing == covered([body for _, kind, body in sent if kind == "shed"])
