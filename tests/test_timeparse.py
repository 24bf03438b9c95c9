from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.errors import UsageError
from agent.timeparse import parse_duration, parse_time


@pytest.mark.parametrize(("text", "expected"), [
    ("90m", timedelta(minutes=90)), ("2h", timedelta(hours=2)), ("1d", timedelta(days=1)),
    (" 3 h ", timedelta(hours=3)),
])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0h", "2", "h", "1w", "-1h", "1.5h", "2 hours"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(UsageError, match="90m, 2h or 1d"):
        parse_duration(text)


def test_times_with_offset_and_in_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_time("2026-11-28T14:00+01:00") == datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
    assert parse_time("2026-11-28T14:00Z") == datetime(2026, 11, 28, 14, 0, tzinfo=UTC)
    naive = datetime(2026, 11, 28, 14, 0)
    assert parse_time("2026-11-28T14:00") == naive.astimezone().astimezone(UTC)
    with pytest.raises(UsageError, match="ISO 8601"):
        parse_time("tomorrow")
