"""Following the systemd journal into the outbox, through `journalctl` (no library beyond the standard one).

Each poll runs `journalctl --output=json --cursor=C` (with the configured units and least priority), queues at
most `max_entries` entries and stops it; the next poll goes on. The cursor of the last entry queued is kept in
the outbox database and written in the same transaction as the entries, so a crash neither loses nor repeats
one (the same rule as `telemetry.logtail` for files).

- **First start**: reading begins at the journal's end; what was logged before the agent first ran is not sent.
- **Gaps**: the entry under the saved cursor comes first and is skipped. When it does not come (journald
  rotated and vacuumed its files past it, or the journal was cleared), a WARN record with `servicegate.gap`
  says that entries may be missing, and reading goes on from where journalctl puts it.
- **Entries**: MESSAGE as text, or as bytes (journalctl gives those as a list of numbers; invalid UTF-8 becomes
  U+FFFD), cut at `max_line_bytes` and scrubbed (`telemetry.scrubber`) before it is queued; the entry's own
  time; severity from PRIORITY; the unit and syslog identifier as attributes.
- **Errors** (no journalctl, an unreadable journal, a cursor journalctl refuses): one warning naming the cause;
  nothing is queued and the cursor stays, so the next poll tries again. A cursor that journalctl cannot seek to
  at all is dropped, with a gap record, and reading starts again at the journal's end.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from telemetry.logtail import MAX_LINE_BYTES, TRUNCATED
from telemetry.outbox import Outbox
from telemetry.scrubber import Scrubber

log = logging.getLogger("servicegate.telemetry")

PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
SEVERITY = ("FATAL", "FATAL", "CRITICAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG")
MAX_ENTRIES = 5000
KEY = "journal:cursor"
GAP = "journal entries may be missing: the journal no longer has the last entry read ({why})"


class JournalTail:
    def __init__(self, outbox: Outbox, *, units: Sequence[str] = (), priority: str = "info",
                 directory: Path | None = None, scrubber: Scrubber | None = None,
                 max_line_bytes: int = MAX_LINE_BYTES, max_entries: int = MAX_ENTRIES,
                 journalctl: str = "journalctl") -> None:
        if priority not in PRIORITIES:
            raise ValueError(f"journal priority {priority!r}: allowed are {', '.join(PRIORITIES)}")
        self.outbox, self.scrubber = outbox, scrubber or Scrubber()
        self.max_line_bytes, self.max_entries = max_line_bytes, max_entries
        self._base = [journalctl, "--no-pager", "--all", f"--priority=0..{PRIORITIES.index(priority)}",
                      *([f"--directory={directory}"] if directory else []), *(f"--unit={u}" for u in units)]
        self._filter = " ".join(self._base[1:])  # a cursor is only checked against the filter it was read with
        self._last_error = ""

    def poll(self) -> int:
        """Queue the entries written since the last poll (at most `max_entries`); return how many."""
        saved = json.loads(self.outbox.fact(KEY) or "{}")
        if "cursor" not in saved:
            return self._start_at_end(gap=None)
        cursor, same_filter = saved["cursor"], saved.get("filter") == self._filter
        seek = f"--cursor={cursor}" if same_filter else f"--after-cursor={cursor}"
        args = [seek] if cursor else []  # no cursor: the journal was empty, so everything from its start
        entries, error = self._run(["--output=json", *args], limit=self.max_entries + 1)
        if error is not None and not entries:
            if "cursor" in error.lower():
                return self._start_at_end(gap=f"journalctl cannot seek to it: {error}")
            return self._failed(error)
        self._last_error = ""
        records: list[dict[str, Any]] = []
        if cursor and same_filter:
            if entries and entries[0].get("__CURSOR") == cursor:
                entries = entries[1:]
            elif not entries:  # nothing after a cursor that is gone: start again at the end, once
                return self._start_at_end(gap="rotated or vacuumed past it, or cleared")
            else:
                records.append(_gap("rotated or vacuumed past it, or cleared"))
        entries = entries[:self.max_entries]
        records += [self._record(entry) for entry in entries]
        if not records:
            return 0
        last = entries[-1]["__CURSOR"] if entries else cursor
        self.outbox.put_many("log", records, facts={KEY: self._state(last)})
        return len(records)

    def _start_at_end(self, gap: str | None) -> int:
        lines, error = self._run(["--lines=0", "--show-cursor"], limit=None, parse=False)
        empty = "-- No entries --" in lines  # none yet: read from the start when they come
        if error is not None and not empty:
            return self._failed(error)
        end = next((line.removeprefix("-- cursor: ") for line in lines if line.startswith("-- cursor: ")), "")
        records = [_gap(gap)] if gap else []
        self.outbox.put_many("log", records, facts={KEY: self._state(end)})
        return len(records)

    def _state(self, cursor: str) -> str:
        return json.dumps({"cursor": cursor, "filter": self._filter}, sort_keys=True)

    def _failed(self, error: str) -> int:
        if error != self._last_error:  # once per cause, not once a minute
            log.warning("cannot read the systemd journal: %s", error)
            self._last_error = error
        return 0

    def _run(self, args: list[str], *, limit: int | None, parse: bool = True) -> tuple[list[Any], str | None]:
        """journalctl's output lines (parsed as JSON with `parse`), at most `limit` of them, and its error."""
        try:
            proc = subprocess.Popen([*self._base, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, env={**os.environ, "SYSTEMD_COLORS": "0", "LC_ALL": "C"})
        except OSError as exc:
            return [], f"{self._base[0]}: {exc.strerror or exc} (install systemd's journalctl, or set journal = false)"
        assert proc.stdout is not None
        assert proc.stderr is not None
        out: list[Any] = []
        with proc:
            for raw in proc.stdout:
                if not parse:
                    out.append(raw.decode("utf-8", errors="replace").rstrip("\n"))
                elif not raw.startswith(b"-- "):  # "-- No entries --" is no entry
                    try:
                        out.append(json.loads(raw))
                    except ValueError:
                        log.warning("journalctl wrote a line that is not JSON; it is skipped")
                if limit is not None and len(out) >= limit:
                    proc.terminate()  # enough for this poll; the next one goes on from the cursor
                    break
            stderr = proc.stderr.read().decode("utf-8", errors="replace").strip()
        if proc.returncode in (0, -signal.SIGTERM):
            return out, None
        return out, stderr.splitlines()[-1] if stderr else f"journalctl exited with {proc.returncode}"

    def _record(self, entry: dict[str, Any]) -> dict[str, Any]:
        raw = entry.get("MESSAGE")
        data = bytes(raw) if isinstance(raw, list) else str(raw or "").encode("utf-8", errors="replace")
        text = data[:self.max_line_bytes].decode("utf-8", errors="replace").rstrip("\n")
        if len(data) > self.max_line_bytes:
            text += TRUNCATED.format(len(data) - self.max_line_bytes)
        priority = int(entry["PRIORITY"]) if str(entry.get("PRIORITY", "")).isdigit() else 6
        attributes = {"log.source": "journal"}
        for field, name in (("_SYSTEMD_UNIT", "systemd.unit"), ("SYSLOG_IDENTIFIER", "syslog.identifier")):
            if isinstance(entry.get(field), str):
                attributes[name] = entry[field]
        record: dict[str, Any] = {"body": self.scrubber.scrub(text), "severity": SEVERITY[min(priority, 7)],
                                  "attributes": attributes}
        if str(entry.get("__REALTIME_TIMESTAMP", "")).isdigit():
            record["time_unix_nano"] = int(entry["__REALTIME_TIMESTAMP"]) * 1000
        return record


def _gap(why: str) -> dict[str, Any]:
    log.warning("%s", GAP.format(why=why))
    return {"body": GAP.format(why=why), "severity": "WARN",
            "attributes": {"log.source": "journal", "servicegate.gap": True}}
