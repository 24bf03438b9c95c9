"""telemetry.logtail on real files, rotated for real (rename and create; copytruncate), into a real outbox."""

from __future__ import annotations

import gzip
import os
import shutil
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from telemetry.logtail import LogTail
from telemetry.outbox import Outbox
from telemetry.scrubber import REMOVED


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite") as box:
        yield box


@pytest.fixture
def tails() -> Iterator[Callable[..., LogTail]]:
    """Makes LogTails (which keep the followed files open) and closes them after the test."""
    made: list[LogTail] = []

    def make(outbox: Outbox, files: list[Path], **options: int) -> LogTail:
        made.append(LogTail(outbox, files, **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for tail in made:
        tail.close()


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


def test_new_lines_once_and_a_partial_line_waits(tmp_path: Path, outbox: Outbox,
        tails: Callable[..., LogTail]) -> None:
    log = tmp_path / "modality.log"
    append(log, "one\ntwo\nthr")
    tail = tails(outbox, [log])
    assert tail.poll() == 2
    assert tail.poll() == 0
    append(log, "ee\nfour\n")
    tail.poll()
    assert queued(outbox) == ["one", "two", "three", "four"]
    record = outbox.batch()
    assert record == []


def test_rename_and_create_loses_and_repeats_nothing(tmp_path: Path, outbox: Outbox,
        tails: Callable[..., LogTail]) -> None:
    log = tmp_path / "modality.log"
    append(log, "a1\na2\n")
    tail = tails(outbox, [log])
    tail.poll()
    append(log, "a3\na4\n")  # written after the last poll, before the rotation
    os.rename(log, tmp_path / "modality.log.1")
    append(log, "b1\n")
    tail.poll()
    append(log, "b2\n")
    tail.poll()
    assert queued(outbox) == ["a1", "a2", "a3", "a4", "b1", "b2"]


def copytruncate(tail: LogTail, log: Path, read: str, unread: str, after: str, *, compress: bool = False) -> None:
    """`read` is read; `unread` is appended; logrotate's copytruncate runs (and compresses the copy at once
    with `compress`); `after` is written; then a poll."""
    append(log, read)
    tail.poll()
    append(log, unread)
    shutil.copyfile(log, log.with_name(log.name + ".1"))
    if compress:
        gzip_away(log.with_name(log.name + ".1"))
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, after)
    tail.poll()


def test_copytruncate_loses_and_repeats_nothing(tmp_path: Path, outbox: Outbox, tails: Callable[..., LogTail]) -> None:
    copytruncate(tails(outbox, [tmp_path / "modality.log"]), tmp_path / "modality.log", "a1\na2\n", "a3\n", "b1\n")
    assert queued(outbox) == ["a1", "a2", "a3", "b1"]


def test_a_restart_of_the_agent_goes_on_where_it_stopped(tmp_path: Path, tails: Callable[..., LogTail]) -> None:
    log = tmp_path / "modality.log"
    append(log, "a1\na2\n")
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        tails(outbox, [log]).poll()
        tails(outbox, [log]).close()
    append(log, "a3\n")
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        tails(outbox, [log]).poll()  # a new process: the position came from the outbox
        assert queued(outbox) == ["a1", "a2", "a3"]


def test_a_10_mb_line_is_cut_in_constant_memory_and_invalid_utf8_is_replaced(tmp_path: Path,
                                                                               outbox: Outbox,
        tails: Callable[..., LogTail]) -> None:
    log = tmp_path / "modality.log"
    append(log, b"x" * (10 * 1024 * 1024) + b"\nbad \xff\xfe bytes\nafter\n")
    tracemalloc.start()
    tail = tails(outbox, [log], max_line_bytes=4096)
    while tail.poll():  # each poll reads a bounded amount; the next goes on
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    lines = queued(outbox)
    assert lines[0] == "x" * 4096 + f" [line cut: {10 * 1024 * 1024 - 4096} bytes more]"
    assert lines[1:] == ["bad \ufffd\ufffd bytes", "after"]
    assert peak < 2 * 1024 * 1024


def test_a_long_line_still_being_written_leaves_no_fragment(tmp_path: Path, outbox: Outbox,
        tails: Callable[..., LogTail]) -> None:
    log = tmp_path / "modality.log"
    append(log, "y" * 100)
    tail = tails(outbox, [log], max_line_bytes=50)
    tail.poll()
    append(log, "y" * 100 + "\nnext\n")
    tail.poll()
    lines = queued(outbox)
    assert lines[0].startswith("y" * 50 + " [line cut:")
    assert lines[1:] == ["next"]


def test_lines_are_scrubbed_before_they_are_queued(tmp_path: Path, outbox: Outbox,
        tails: Callable[..., LogTail]) -> None:
    log = tmp_path / "modality.log"
    append(log, "Exam started: PatientName=DOE^JOHN PatientID=12345678 protocol Head\n")
    tails(outbox, [log]).poll()
    [line] = queued(outbox)
    assert "DOE" not in line
    assert "12345678" not in line
    assert REMOVED in line
    assert "protocol Head" in line


def test_a_missing_file_is_read_once_it_exists(tmp_path: Path, outbox: Outbox,
        tails: Callable[..., LogTail]) -> None:
    log = tmp_path / "later.log"
    tail = tails(outbox, [log])
    assert tail.poll() == 0
    append(log, "hello\n")
    assert tail.poll() == 1


def test_copytruncate_and_regrown_past_the_old_offset_before_the_next_poll(tmp_path: Path, outbox: Outbox,
        tails: Callable[..., LogTail]) -> None:
    copytruncate(tails(outbox, [tmp_path / "modality.log"]), tmp_path / "modality.log", "a1\n", "a2\n",
                 "b1 is a longer line than before\nb2\n")
    assert queued(outbox) == ["a1", "a2", "b1 is a longer line than before", "b2"]


def test_a_file_that_cannot_be_read_does_not_keep_the_others_from_being_read(tmp_path: Path,
                                                                              outbox: Outbox,
        tails: Callable[..., LogTail]) -> None:
    broken = tmp_path / "not-a-file.log"
    broken.mkdir()  # opening it fails (as root, too: a permission test would not)
    good = tmp_path / "modality.log"
    append(good, "fine\n")
    assert tails(outbox, [broken, good]).poll() == 1
    assert queued(outbox) == ["fine"]


def gzip_away(path: Path) -> None:
    """What logrotate's compress does: the rotated file becomes name.gz, and the name is gone."""
    with open(path, "rb") as src, gzip.open(path.with_name(path.name + ".gz"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()


def rename_create_compress(tail: LogTail, log: Path) -> None:
    append(log, "a1\n")
    tail.poll()
    append(log, "a2\n")  # written after the last poll
    os.rename(log, log.with_name(log.name + ".1"))
    gzip_away(log.with_name(log.name + ".1"))  # compress without delaycompress: gone before the next poll
    append(log, "b1\n")
    tail.poll()


def test_a_rotated_file_compressed_before_the_next_poll_is_still_read_to_its_end(tmp_path: Path, outbox: Outbox,
        tails: Callable[..., LogTail]) -> None:
    rename_create_compress(tails(outbox, [tmp_path / "modality.log"]), tmp_path / "modality.log")
    assert queued(outbox) == ["a1", "a2", "b1"]


def test_a_rest_that_is_gone_after_a_restart_of_the_agent_is_reported_as_a_gap(tmp_path: Path, outbox: Outbox,
        tails: Callable[..., LogTail]) -> None:
    log = tmp_path / "modality.log"
    append(log, "a1\n")
    tails(outbox, [log]).poll()
    tails(outbox, [log]).close()  # the agent stops; its open file goes with it
    append(log, "a2\n")
    os.rename(log, log.with_name(log.name + ".1"))
    gzip_away(log.with_name(log.name + ".1"))
    append(log, "b1\n")
    tails(outbox, [log]).poll()
    batch = outbox.batch(max_records=10)
    assert [r.body["body"] for r in batch][0] == "a1"
    gap = batch[1].body
    assert gap["severity"] == "WARN"
    assert gap["attributes"]["servicegate.gap"] is True
    assert "modality.log" in gap["body"]
    assert "byte 3" in gap["body"]
    assert "delaycompress" in gap["body"]
    assert batch[2].body["body"] == "b1"


def test_a_copy_compressed_at_once_by_copytruncate_is_reported_as_a_gap(tmp_path: Path, outbox: Outbox,
        tails: Callable[..., LogTail]) -> None:
    log = tmp_path / "modality.log"
    copytruncate(tails(outbox, [log]), log, "a1\n", "a2\n", "b1\n", compress=True)
    lines = queued(outbox)
    assert lines[0] == "a1"
    assert lines[2] == "b1"
    assert lines[1].startswith("log lines may be missing: modality.log")


def test_a_file_renamed_away_and_still_written_is_read_until_the_new_one_comes(tmp_path: Path, outbox: Outbox,
        tails: Callable[..., LogTail]) -> None:
    log = tmp_path / "modality.log"
    tail = tails(outbox, [log])
    append(log, "a1\n")
    tail.poll()
    os.rename(log, log.with_name(log.name + ".1"))
    append(log.with_name(log.name + ".1"), "a2\n")  # the writer has not reopened yet
    assert tail.poll() == 1
    append(log.with_name(log.name + ".1"), "a3\n")
    append(log, "b1\n")  # now it has
    tail.poll()
    assert queued(outbox) == ["a1", "a2", "a3", "b1"]
