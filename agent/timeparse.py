"""The CLI's spellings of durations and times: `90m`, `2h`, `1d`; ISO 8601 with offset or in local time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from agent.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"{text!r} is not a duration; write a positive number with a unit: 90m, 2h or 1d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; without an offset it is local time. Returns aware UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO 8601 time; examples: 2026-11-28T14:00 (local time) "
                         f"or 2026-11-28T14:00+01:00") from None
    if when.tzinfo is None:
        when = when.astimezone()  # a naive time is the console's local time
    return when.astimezone(UTC)


def local(when: datetime) -> str:
    """A time as people at the console read it: local, to the minute, with the offset."""
    return when.astimezone().strftime("%Y-%m-%d %H:%M %Z")
