"""Access levels and the persisted grant, on real files."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.access import Grant, GrantStore, expire, factory_grant, new_grant, widens
from agent.errors import UsageError
from agent.protocol import AccessLevel

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def test_levels_spelled_as_the_cli_spells_them_and_ranked() -> None:
    assert [lvl.value for lvl in AccessLevel] == ["no-access", "limited", "permanent-limited", "full"]
    assert AccessLevel.NO_ACCESS.rank < AccessLevel.LIMITED.rank == AccessLevel.PERMANENT_LIMITED.rank
    assert AccessLevel.PERMANENT_LIMITED.rank < AccessLevel.FULL.rank
    assert "not possible" in AccessLevel.FULL.consequence
    with pytest.raises(UsageError, match="no-access, limited, permanent-limited, full"):
        AccessLevel.parse("everything")


def test_an_end_time_belongs_to_limited_only_and_must_be_in_the_future() -> None:
    grant = new_grant(AccessLevel.LIMITED, "tech", T0, T0 + timedelta(hours=2))
    assert grant.until == T0 + timedelta(hours=2)
    assert new_grant(AccessLevel.LIMITED, "tech", T0).until is None
    with pytest.raises(UsageError, match="only applies to the 'limited'"):
        new_grant(AccessLevel.FULL, "tech", T0, T0 + timedelta(hours=1))
    with pytest.raises(UsageError, match="not in the future"):
        new_grant(AccessLevel.LIMITED, "tech", T0, T0)


def test_a_limited_grant_expires_to_no_access_at_its_end_time() -> None:
    grant = new_grant(AccessLevel.LIMITED, "tech", T0, T0 + timedelta(hours=2))
    assert expire(grant, T0 + timedelta(hours=2) - timedelta(microseconds=1)) is None
    replacement = expire(grant, T0 + timedelta(hours=2))
    assert replacement is not None
    assert replacement.level is AccessLevel.NO_ACCESS
    assert replacement.set_by == "servicegate"


@pytest.mark.parametrize("level", [AccessLevel.NO_ACCESS, AccessLevel.PERMANENT_LIMITED, AccessLevel.FULL])
def test_other_levels_never_expire(level: AccessLevel) -> None:
    assert expire(new_grant(level, "tech", T0), T0 + timedelta(days=3650)) is None


def test_grant_persists_atomically_with_private_mode(tmp_path: Path) -> None:
    store = GrantStore(tmp_path / "state" / "grant.json")
    assert store.load(T0) == factory_grant(T0)
    grant = new_grant(AccessLevel.LIMITED, "alice", T0, T0 + timedelta(minutes=90))
    store.save(grant)
    assert GrantStore(store.path).load(T0 + timedelta(days=1)) == grant
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert [p.name for p in store.path.parent.iterdir()] == ["grant.json"]  # no temp file left behind


@pytest.mark.parametrize("content", ["", "{", '{"level": "all"}', "[]", '{"level": "full"}'])
def test_an_unreadable_grant_file_fails_closed(tmp_path: Path, content: str) -> None:
    path = tmp_path / "grant.json"
    path.write_text(content)
    assert GrantStore(path).load(T0).level is AccessLevel.NO_ACCESS


def test_grant_round_trip() -> None:
    grant = Grant(AccessLevel.FULL, "bob", T0)
    assert Grant.from_dict(grant.to_dict()) == grant


def test_widens_means_more_level_or_longer() -> None:
    def g(level: AccessLevel, hours: int | None = None) -> Grant:
        return Grant(level, "t", T0, T0 + timedelta(hours=hours) if hours else None)

    assert widens(g(AccessLevel.NO_ACCESS), g(AccessLevel.LIMITED, 1))
    assert widens(g(AccessLevel.LIMITED, 1), g(AccessLevel.LIMITED, 2))
    assert widens(g(AccessLevel.LIMITED, 1), g(AccessLevel.PERMANENT_LIMITED))
    assert widens(g(AccessLevel.PERMANENT_LIMITED), g(AccessLevel.FULL))
    assert not widens(g(AccessLevel.LIMITED, 2), g(AccessLevel.LIMITED, 1))
    assert not widens(g(AccessLevel.PERMANENT_LIMITED), g(AccessLevel.LIMITED, 5))
    assert not widens(g(AccessLevel.FULL), g(AccessLevel.LIMITED))
    assert not widens(g(AccessLevel.NO_ACCESS), g(AccessLevel.NO_ACCESS))
    assert not widens(g(AccessLevel.FULL), g(AccessLevel.FULL))
