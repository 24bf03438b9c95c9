"""Following log files into the outbox, through rotation, without losing or repeating a line.

Each configured file is read from where the last read stopped (inode and offset, kept in the outbox database
and written in the same transaction as the lines they cover, so a crash can neither lose nor repeat them):

- **rename and create** (logrotate's default): the file under the name is a new inode. The old one is still
  open from the last poll (the followed file stays open between polls, as `tail -F` keeps it), so its rest is
  read first even when rotation has already compressed it away, then the new file from its start. After a
  restart of the agent nothing is open yet: the old file is found again by its inode among the rotated files
  beside it (`name.1`, `name-20261127`...).
- **copytruncate**: the same inode, now shorter than the offset, or starting with other bytes than it did
  (truncated and already grown past the offset). What was appended before the copy is read from the copy
  (the rotated file whose start matches), then the truncated file from its start. (Lines
  written between logrotate's copy and its truncation are lost by copytruncate itself, not here.)
- **A rest that cannot be found** (the copy compressed at once, or the agent restarted after the old file was
  compressed or moved away) is not lost silently: a WARN record with `servicegate.gap` says which file and from
  which byte lines may be missing. (`delaycompress` avoids it.)
- **Partial lines** wait for their newline; **long lines** are cut at `max_line_bytes` (the rest of the line is
  skipped, never held in memory) and marked; **invalid UTF-8** becomes U+FFFD; every line is scrubbed
  (`telemetry.scrubber`) before it is queued.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from telemetry.outbox import Outbox
from telemetry.scrubber import Scrubber

log = logging.getLogger("servicegate.telemetry")

MAX_LINE_BYTES = 16 * 1024
READ_BYTES = 256 * 1024  # read at most this much of one file per call; the next call goes on
TRUNCATED = " [line cut: {} bytes more]"
GAP = ("log lines may be missing: {name} was rotated and its old part was gone (compressed or moved away) before "
       "it was read past byte {offset}; use delaycompress in its logrotate configuration")


@dataclass
class _Position:
    inode: int | None = None
    offset: int = 0
    head: str = ""  # the first bytes of the file (hex), to recognise its copy after copytruncate
    skipping: bool = False  # inside a line cut at max_line_bytes whose newline has not come yet


class LogTail:
    def __init__(self, outbox: Outbox, files: list[Path], *, scrubber: Scrubber | None = None,
                 max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.outbox, self.files = outbox, [Path(f) for f in files]
        self.scrubber = scrubber or Scrubber()
        self.max_line_bytes = max_line_bytes
        self._open: dict[Path, BinaryIO] = {}  # the file followed under each name, kept open between polls
        self._lock = threading.Lock()  # a close waits for the poll that is running

    def poll(self) -> int:
        """Queue the new complete lines of every file; return how many. A file that cannot be read is
        logged and left for the next poll; it never keeps the others from being read."""
        count = 0
        with self._lock:
            for path in self.files:
                try:
                    count += self._poll_one(path)
                except OSError as exc:
                    log.warning("cannot read the log file %s: %s", path, exc.strerror or exc)
        return count

    def close(self) -> None:
        """Close the followed files (after the poll that is running, if any); a later poll opens them again."""
        with self._lock:
            for fh in self._open.values():
                fh.close()
            self._open.clear()

    def _poll_one(self, path: Path) -> int:
        key = f"logtail:{path}"
        saved = self.outbox.fact(key)
        position = _Position(**json.loads(saved)) if saved else _Position()
        held = self._open.get(path)
        if held is not None and os.fstat(held.fileno()).st_ino != position.inode:
            held.close()  # the outbox was changed under us: trust the saved position
            del self._open[path]
            held = None
        records: list[dict[str, Any]] = []
        fh: BinaryIO
        try:
            fh = open(path, "rb")  # noqa: SIM115 - kept open in self._open; opened first, so stat and read see one file
        except FileNotFoundError:
            if held is None:
                return 0  # not there yet, or rotated away and not created again yet: the next poll reads on
            fh = held  # renamed away, not created again yet: what is still written to it is read
        current = os.fstat(fh.fileno())
        head = _head(fh, len(position.head) // 2) if position.head else ""
        if position.inode is not None and position.inode != current.st_ino:  # rename and create
            old = held if held is not None else _open_inode(path, position.inode)
            records += self._rest(path, old, position)
            position = _Position()
        elif current.st_size < position.offset or head != position.head:  # copytruncate (then maybe regrown)
            copy = _find_copy(path, position)
            records += self._rest(path, open(copy, "rb") if copy is not None else None, position)  # noqa: SIM115
            position = _Position()
        position.inode = current.st_ino
        if not position.head:
            position.head = _head(fh, 64)
        records += [self._record(path, line) for line in self._read(fh, position)]
        if fh is not held and held is not None:
            held.close()
        self._open[path] = fh
        state = json.dumps(position.__dict__, sort_keys=True)
        if records or state != saved:
            self.outbox.put_many("log", records, facts={key: state})
        return len(records)

    def _rest(self, path: Path, old: BinaryIO | None, position: _Position) -> list[dict[str, Any]]:
        """The records of the rest of a rotated file from `position` (and closes it); a gap record when it is
        gone."""
        if old is None:
            log.warning("%s", GAP.format(name=path, offset=position.offset))
            return [{"body": GAP.format(name=path.name, offset=position.offset), "severity": "WARN",
                     "attributes": {"log.file.name": path.name, "servicegate.gap": True}}]
        with old:
            rest = _Position(position.inode, position.offset, position.head, position.skipping)
            return [self._record(path, line) for line in self._read(old, rest, until_end=True)]

    def _read(self, fh: BinaryIO, position: _Position, *, until_end: bool = False) -> list[str]:
        """Complete lines from `position.offset`; moves the offset past them. `until_end`: a rotated file
        gets no more lines, so its last line counts even without a newline."""
        fh.seek(position.offset)
        lines: list[str] = []
        if position.skipping:  # the rest of a line already cut and queued
            _, complete = _skip_rest_of_line(fh)
            position.offset, position.skipping = fh.tell(), not complete
            if position.skipping:
                return lines
        budget = READ_BYTES if not until_end else None
        while budget is None or budget > 0:
            start = fh.tell()
            raw = fh.readline(self.max_line_bytes + 1)
            if not raw:
                break
            complete = raw.endswith(b"\n")
            if not complete and len(raw) <= self.max_line_bytes and not until_end:
                break  # a line still being written: wait for its newline
            cut = 0
            if not complete and len(raw) > self.max_line_bytes:
                raw = raw[:self.max_line_bytes]
                skipped, complete = _skip_rest_of_line(fh)
                cut = 1 + skipped
                position.skipping = not complete and not until_end
            text = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
            lines.append(text + (TRUNCATED.format(f"{cut}+" if position.skipping else cut) if cut else ""))
            position.offset = fh.tell()
            if budget is not None:
                budget -= position.offset - start
            if position.skipping:
                break
        return lines

    def _record(self, path: Path, line: str) -> dict[str, Any]:
        body: dict[str, Any] = {"body": self.scrubber.scrub(line), "severity": _severity(line),
                                "attributes": {"log.file.name": path.name}}
        return body  # its time is the outbox record's: when the line was read


def _skip_rest_of_line(fh: BinaryIO) -> tuple[int, bool]:
    """Read past the rest of a line that is too long, in chunks: (bytes skipped, the newline not counted;
    whether the newline came). Never holds more than one chunk."""
    skipped = 0
    while True:
        chunk = fh.readline(READ_BYTES)
        if not chunk:
            return skipped, False
        if chunk.endswith(b"\n"):
            return skipped + len(chunk) - 1, True
        skipped += len(chunk)


def _rotated(path: Path) -> list[tuple[Path, os.stat_result]]:
    """Files beside `path` that rotation made of it (`name.1`, `name-20261127`, ...), newest first, with their
    status (a file compressed away meanwhile is simply not among them)."""
    found = []
    for candidate in path.parent.glob(f"{path.name}?*"):
        if candidate.name.endswith((".gz", ".xz", ".bz2", ".zst")):
            continue
        with contextlib.suppress(OSError):
            state = candidate.stat()
            if stat.S_ISREG(state.st_mode):
                found.append((candidate, state))
    return sorted(found, key=lambda item: item[1].st_mtime_ns, reverse=True)


def _head(fh: BinaryIO, size: int) -> str:
    fh.seek(0)
    return fh.read(size).hex()


def _open_inode(path: Path, inode: int) -> BinaryIO | None:
    """The rotated file beside `path` that is the inode followed before (after a restart of the agent)."""
    found = next((p for p, state in _rotated(path) if state.st_ino == inode), None)
    return open(found, "rb") if found is not None else None  # noqa: SIM115 - closed by the caller


def _find_copy(path: Path, position: _Position) -> Path | None:
    """The copy copytruncate made: a rotated file at least as long as what was read, with the same start."""
    for candidate, state in _rotated(path):
        if state.st_size < position.offset:
            continue
        with open(candidate, "rb") as fh:
            if fh.read(len(position.head) // 2).hex() == position.head:  # the start it had when first read
                return candidate
    return None


def _severity(line: str) -> str:
    upper = line.upper()
    for word, severity in (("CRITICAL", "CRITICAL"), ("FATAL", "FATAL"), ("ERROR", "ERROR"), ("WARN", "WARN"),
                           ("DEBUG", "DEBUG")):
        if word in upper:
            return severity
    return "INFO"
