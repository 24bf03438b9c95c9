"""Real journal files for journalctl to read, written by systemd-journal-remote (Debian package
systemd-journal-remote; `make test` installs it as root, and CI runs the tests that need it). This machine runs no
journald, so a test's journal is a folder of files (`[telemetry] journal_directory`); journalctl reads it exactly
as it reads the system journal."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

JOURNAL_REMOTE = Path("/lib/systemd/systemd-journal-remote")

needs_journal_remote = pytest.mark.skipif(
    not JOURNAL_REMOTE.exists() and os.environ.get("CI") != "true",
    reason="needs systemd-journal-remote (Debian package; `make test` installs it as root, and CI runs this test)")

BOOT = "0123456789abcdef0123456789abcdef"


class Journal:
    """A journal folder; each `write` appends entries (journal-remote's export format) to one of its files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.time_us = 1_790_000_000_000_000

    def write(self, *entries: dict[str, str | bytes], file: str = "system") -> None:
        stream = b""
        for fields in entries:
            self.time_us += 1_000_000
            stream += f"__REALTIME_TIMESTAMP={self.time_us}\n__MONOTONIC_TIMESTAMP={self.time_us}\n" \
                      f"_BOOT_ID={BOOT}\n".encode()
            for key, value in {"PRIORITY": "6", **fields}.items():
                if isinstance(value, bytes):  # binary field: name, newline, little-endian 64-bit size, data
                    stream += key.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
                else:
                    stream += f"{key}={value}\n".encode()
            stream += b"\n"
        subprocess.run([str(JOURNAL_REMOTE), f"--output={self.directory / file}.journal", "-"], input=stream,
                       check=True, capture_output=True)

    def lines(self, *messages: str, file: str = "system") -> None:
        self.write(*({"MESSAGE": m} for m in messages), file=file)
