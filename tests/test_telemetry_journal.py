"""telemetry.journal with the real journalctl reading real journal files (`tests.journal`), into a real outbox."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry.journal import JournalTail
from telemetry.outbox import Outbox, Record
from telemetry.scrubber import REMOVED
from tests.journal import Journal, needs_journal_remote

pytestmark = needs_journal_remote


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    (tmp_path / "journal").mkdir()
    return Journal(tmp_path / "journal")


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite") as box:
        yield box


def taken(outbox: Outbox) -> list[Record]:
    records = []
    while batch := outbox.batch(max_records=1000):
        records += batch
        outbox.ack([r.sequence for r in batch])
    return records


def bodies(outbox: Outbox) -> list[str]:
    return [r.body["body"] for r in taken(outbox)]


def test_starts_at_the_end_then_queues_each_new_entry_once_with_its_time_unit_and_severity(
        journal: Journal, outbox: Outbox) -> None:
    journal.lines("before the agent was installed")
    tail = JournalTail(outbox, directory=journal.directory)
    assert tail.poll() == 0
    journal.write({"MESSAGE": "tube warm-up done", "_SYSTEMD_UNIT": "scanner.service", "SYSLOG_IDENTIFIER": "scan"},
                  {"MESSAGE": "gantry fault 17", "PRIORITY": "3", "_SYSTEMD_UNIT": "scanner.service"})
    assert tail.poll() == 2
    assert tail.poll() == 0
    first, second = taken(outbox)
    assert first.body == {"body": "tube warm-up done", "severity": "INFO", "time_unix_nano": journal.time_us * 1000
                          - 1_000_000_000, "attributes": {"log.source": "journal", "systemd.unit": "scanner.service",
                                                          "syslog.identifier": "scan"}}
    assert second.body["severity"] == "ERROR"
    assert second.body["body"] == "gantry fault 17"


def test_a_restart_of_the_agent_neither_repeats_nor_loses_an_entry(journal: Journal, tmp_path: Path) -> None:
    journal.lines("old")
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        JournalTail(outbox, directory=journal.directory).poll()
        journal.lines("one", "two")
        JournalTail(outbox, directory=journal.directory).poll()
    journal.lines("three")
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        JournalTail(outbox, directory=journal.directory).poll()  # a new process: the cursor came from the outbox
        assert bodies(outbox) == ["one", "two", "three"]


def test_a_poll_queues_at_most_max_entries_and_the_next_goes_on(journal: Journal, outbox: Outbox) -> None:
    tail = JournalTail(outbox, directory=journal.directory, max_entries=5)
    tail.poll()
    journal.lines(*(f"line {i}" for i in range(12)))
    assert [tail.poll(), tail.poll(), tail.poll(), tail.poll()] == [5, 5, 2, 0]
    assert bodies(outbox) == [f"line {i}" for i in range(12)]


def test_entries_are_scrubbed_cut_and_decoded_before_they_are_queued(journal: Journal, outbox: Outbox) -> None:
    tail = JournalTail(outbox, directory=journal.directory, max_line_bytes=100)
    tail.poll()
    journal.write({"MESSAGE": "Exam started: PatientName=DOE^JOHN PatientID=12345678 protocol Head"},
                  {"MESSAGE": b"raw \xff\xfe bytes"},
                  {"MESSAGE": "z" * 5000})
    tail.poll()
    scrubbed, binary, long = bodies(outbox)
    assert "DOE" not in scrubbed
    assert "12345678" not in scrubbed
    assert REMOVED in scrubbed
    assert "protocol Head" in scrubbed
    assert binary == "raw \ufffd\ufffd bytes"
    assert long == "z" * 100 + " [line cut: 4900 bytes more]"


def test_only_the_configured_units_and_priorities_are_read(journal: Journal, outbox: Outbox) -> None:
    tail = JournalTail(outbox, directory=journal.directory, units=["scanner.service"], priority="notice")
    tail.poll()
    journal.write({"MESSAGE": "wanted", "PRIORITY": "4", "_SYSTEMD_UNIT": "scanner.service"},
                  {"MESSAGE": "other unit", "PRIORITY": "4", "_SYSTEMD_UNIT": "cron.service"},
                  {"MESSAGE": "too chatty", "PRIORITY": "6", "_SYSTEMD_UNIT": "scanner.service"},
                  {"MESSAGE": "also wanted", "PRIORITY": "5", "_SYSTEMD_UNIT": "scanner.service"})
    tail.poll()
    assert bodies(outbox) == ["wanted", "also wanted"]


def test_an_empty_journal_at_the_first_start_is_read_from_its_start_once_entries_come(
        journal: Journal, outbox: Outbox) -> None:
    tail = JournalTail(outbox, directory=journal.directory)
    assert tail.poll() == 0
    journal.lines("first ever")
    tail.poll()
    assert bodies(outbox) == ["first ever"]


def test_entries_vacuumed_before_they_were_read_are_reported_as_a_gap(journal: Journal, outbox: Outbox) -> None:
    tail = JournalTail(outbox, directory=journal.directory)
    tail.poll()
    journal.lines("a1", "a2", file="old")
    tail.poll()
    journal.lines("b1", "b2", file="new")  # journald rotates to a new file ...
    (journal.directory / "old.journal").unlink()  # ... and vacuums the old one before the next poll
    tail.poll()
    records = taken(outbox)
    texts = [r.body["body"] for r in records]
    assert texts[:2] == ["a1", "a2"]
    gap = records[2].body
    assert gap["attributes"] == {"log.source": "journal", "servicegate.gap": True}
    assert gap["severity"] == "WARN"
    assert "journal entries may be missing" in gap["body"]
    assert set(texts[3:]) <= {"b1", "b2"}
    assert texts[-1] == "b2"
    journal.lines("b3", file="new")
    tail.poll()
    assert bodies(outbox) == ["b3"]  # one gap record, not one per poll


def test_a_journal_that_cannot_be_read_queues_nothing_warns_once_and_is_read_from_its_end_when_it_can(
        tmp_path: Path, outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    missing = Journal(tmp_path / "not-yet")
    tail = JournalTail(outbox, directory=missing.directory)
    with caplog.at_level(logging.WARNING, "servicegate.telemetry"):
        assert [tail.poll(), tail.poll()] == [0, 0]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert warnings[0] == f"cannot read the systemd journal: Failed to open {missing.directory}: No such file or " \
                          "directory"
    missing.directory.mkdir()
    missing.lines("before it was readable")
    assert tail.poll() == 0  # the first read, as at a first start, begins at the end
    missing.lines("now readable")
    tail.poll()
    assert bodies(outbox) == ["now readable"]


def test_without_journalctl_the_message_says_what_to_do(outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    tail = JournalTail(outbox, journalctl="/nonexistent/journalctl")
    with caplog.at_level(logging.WARNING, "servicegate.telemetry"):
        assert tail.poll() == 0
    assert "install systemd's journalctl, or set journal = false" in caplog.text
    assert outbox.status().records == 0


def test_a_cursor_journalctl_cannot_seek_to_is_dropped_with_a_gap_record(journal: Journal, outbox: Outbox) -> None:
    journal.lines("old")
    outbox.set_fact("journal:cursor", '{"cursor": "not-a-cursor", "filter": "x"}')
    tail = JournalTail(outbox, directory=journal.directory)
    assert tail.poll() == 1
    journal.lines("new")
    tail.poll()
    texts = bodies(outbox)
    assert texts[0].startswith("journal entries may be missing")
    assert texts[1:] == ["new"]
