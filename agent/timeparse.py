"""The CLI's spellings of durations and times: `90m`, `2h`, `1d`; ISO 8601 with offset or in local time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from agent.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
LONGEST = timedelta(days=3650)  # ten years: anything longer is a typing mistake, not a plan


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"{text!r} is not a duration; write a positive number with a unit: 90m, 2h or 1d")
    amount, unit = int(match.group(1)), _UNITS[match.group(2)]
    if amount > LONGEST // unit:
        raise UsageError(f"{text!r} is longer than ten years; for access without an end use 'permanent-limited'")
    return amount * unit


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; without an offset it is local time. Returns aware UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
        if when.tzinfo is None:
            when = when.astimezone()  # a naive time is the console's local time
        return when.astimezone(UTC)
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO 8601 time; examples: 2026-11-28T14:00 (local time) "
                         f"or 2026-11-28T14:00+01:00") from None
    except OverflowError:
        raise UsageError(f"{text!r} is outside the range of times this system can handle") from None


def local(when: datetime) -> str:
    """A time as people at the console read it: local, to the minute, with the offset."""
    return when.astimezone().strftime("%Y-%m-%d %H:%M %Z")
