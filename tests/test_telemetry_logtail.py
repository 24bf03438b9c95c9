"""telemetry.logtail on real files, rotated for real (rename and create; copytruncate), into a real outbox."""

from __future__ import annotations

import os
import shutil
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry.logtail import LogTail
from telemetry.outbox import Outbox
from telemetry.scrubber import REMOVED


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite") as box:
        yield box


def queued(outbox: Outbox) -> list[str]:
    """The log lines queued so far, in order; taken out of the outbox."""
    lines = []
    while batch := outbox.batch(max_records=1000):
        lines += [r.body["body"] for r in batch if r.kind == "log"]
        outbox.ack([r.sequence for r in batch])
    return lines


def append(path: Path, text: str | bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(text.encode() if isinstance(text, str) else text)


def test_new_lines_once_and_a_partial_line_waits(tmp_path: Path, outbox: Outbox) -> None:
    log = tmp_path / "modality.log"
    append(log, "one\ntwo\nthr")
    tail = LogTail(outbox, [log])
    assert tail.poll() == 2
    assert tail.poll() == 0
    append(log, "ee\nfour\n")
    tail.poll()
    assert queued(outbox) == ["one", "two", "three", "four"]
    record = outbox.batch()
    assert record == []


def test_rename_and_create_loses_and_repeats_nothing(tmp_path: Path, outbox: Outbox) -> None:
    log = tmp_path / "modality.log"
    append(log, "a1\na2\n")
    tail = LogTail(outbox, [log])
    tail.poll()
    append(log, "a3\na4\n")  # written after the last poll, before the rotation
    os.rename(log, tmp_path / "modality.log.1")
    append(log, "b1\n")
    tail.poll()
    append(log, "b2\n")
    tail.poll()
    assert queued(outbox) == ["a1", "a2", "a3", "a4", "b1", "b2"]


def copytruncate(outbox: Outbox, log: Path, read: str, unread: str, after: str) -> None:
    """`read` is read; `unread` is appended; logrotate's copytruncate runs; `after` is written; then a poll."""
    tail = LogTail(outbox, [log])
    append(log, read)
    tail.poll()
    append(log, unread)
    shutil.copyfile(log, log.with_name(log.name + ".1"))
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, after)
    tail.poll()


def test_copytruncate_loses_and_repeats_nothing(tmp_path: Path, outbox: Outbox) -> None:
    copytruncate(outbox, tmp_path / "modality.log", "a1\na2\n", "a3\n", "b1\n")
    assert queued(outbox) == ["a1", "a2", "a3", "b1"]


def test_a_restart_of_the_agent_goes_on_where_it_stopped(tmp_path: Path) -> None:
    log = tmp_path / "modality.log"
    append(log, "a1\na2\n")
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        LogTail(outbox, [log]).poll()
    append(log, "a3\n")
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        LogTail(outbox, [log]).poll()  # a new process: the position came from the outbox
        assert queued(outbox) == ["a1", "a2", "a3"]


def test_a_10_mb_line_is_cut_in_constant_memory_and_invalid_utf8_is_replaced(tmp_path: Path,
                                                                               outbox: Outbox) -> None:
    log = tmp_path / "modality.log"
    append(log, b"x" * (10 * 1024 * 1024) + b"\nbad \xff\xfe bytes\nafter\n")
    tracemalloc.start()
    tail = LogTail(outbox, [log], max_line_bytes=4096)
    while tail.poll():  # each poll reads a bounded amount; the next goes on
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    lines = queued(outbox)
    assert lines[0] == "x" * 4096 + f" [line cut: {10 * 1024 * 1024 - 4096} bytes more]"
    assert lines[1:] == ["bad \ufffd\ufffd bytes", "after"]
    assert peak < 2 * 1024 * 1024


def test_a_long_line_still_being_written_leaves_no_fragment(tmp_path: Path, outbox: Outbox) -> None:
    log = tmp_path / "modality.log"
    append(log, "y" * 100)
    tail = LogTail(outbox, [log], max_line_bytes=50)
    tail.poll()
    append(log, "y" * 100 + "\nnext\n")
    tail.poll()
    lines = queued(outbox)
    assert lines[0].startswith("y" * 50 + " [line cut:")
    assert lines[1:] == ["next"]


def test_lines_are_scrubbed_before_they_are_queued(tmp_path: Path, outbox: Outbox) -> None:
    log = tmp_path / "modality.log"
    append(log, "Exam started: PatientName=DOE^JOHN PatientID=12345678 protocol Head\n")
    LogTail(outbox, [log]).poll()
    [line] = queued(outbox)
    assert "DOE" not in line
    assert "12345678" not in line
    assert REMOVED in line
    assert "protocol Head" in line


def test_a_missing_file_is_read_once_it_exists(tmp_path: Path, outbox: Outbox) -> None:
    log = tmp_path / "later.log"
    tail = LogTail(outbox, [log])
    assert tail.poll() == 0
    append(log, "hello\n")
    assert tail.poll() == 1


def test_copytruncate_and_regrown_past_the_old_offset_before_the_next_poll(tmp_path: Path, outbox: Outbox) -> None:
    copytruncate(outbox, tmp_path / "modality.log", "a1\n", "a2\n", "b1 is a longer line than before\nb2\n")
    assert queued(outbox) == ["a1", "a2", "b1 is a longer line than before", "b2"]


def test_a_file_that_cannot_be_read_does_not_keep_the_others_from_being_read(tmp_path: Path,
                                                                              outbox: Outbox) -> None:
    broken = tmp_path / "not-a-file.log"
    broken.mkdir()  # opening it fails (as root, too: a permission test would not)
    good = tmp_path / "modality.log"
    append(good, "fine\n")
    assert LogTail(outbox, [broken, good]).poll() == 1
    assert queued(outbox) == ["fine"]
