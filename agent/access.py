"""The standing access grant: which of the four access levels the customer has given the vendor.

    NO_ACCESS          access only case by case: a session the technologist confirmed by its ID
    LIMITED            limited access, optionally until an end time; examinations possible
    PERMANENT_LIMITED  limited access without a time limit; examinations possible
    FULL               full access; examinations are blocked while a remote session is active

A grant records who set it, when and until when. It persists across restarts (atomic write)
and a LIMITED grant whose end time passed falls back to NO_ACCESS by itself (`expired`, which
the audit log keeps apart from `revoked`). The decisions here are pure; `GrantStore` is the I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.clock import parse_utc, utc_iso
from agent.errors import UsageError
from agent.fsutil import read_json, write_json
from agent.protocol import SYSTEM_ACTOR, AccessLevel

log = logging.getLogger("servicegate.access")

@dataclass(frozen=True)
class Grant:
    level: AccessLevel
    set_by: str
    set_at: datetime
    until: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.level is AccessLevel.LIMITED and self.until is not None and now >= self.until

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level.value, "set_by": self.set_by, "set_at": utc_iso(self.set_at),
                "until": utc_iso(self.until) if self.until else None, "consequence": self.level.consequence}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grant:
        until = data.get("until")
        return cls(level=AccessLevel(data["level"]), set_by=str(data["set_by"]), set_at=parse_utc(data["set_at"]),
                   until=parse_utc(until) if until else None)


def factory_grant(now: datetime) -> Grant:
    """What a new device starts with: no access until the customer decides otherwise."""
    return Grant(AccessLevel.NO_ACCESS, SYSTEM_ACTOR, now)


def new_grant(level: AccessLevel, set_by: str, now: datetime, until: datetime | None = None) -> Grant:
    """Validate and build a grant the customer asked for."""
    if until is not None:
        if level is not AccessLevel.LIMITED:
            raise UsageError(f"an end time only applies to the 'limited' level, not to {level.value!r}; "
                             f"leave out --for/--until or choose 'limited'")
        if until <= now:
            raise UsageError(f"the end time {utc_iso(until)} is not in the future; choose a later time")
    return Grant(level, set_by, now, until)


def widens(old: Grant, new: Grant) -> bool:
    """True when `new` allows more than `old`: a higher level, or the same level for longer.

    Changes that widen access are refused when they cannot be recorded in the audit log; changes
    that narrow it always take effect (fail closed for access, never stuck open).
    """
    if new.level.rank != old.level.rank:
        return new.level.rank > old.level.rank
    return new.level.rank > 0 and _end(new) > _end(old)


def _end(grant: Grant) -> datetime:
    return grant.until if grant.level is AccessLevel.LIMITED and grant.until else datetime.max.replace(tzinfo=UTC)


def expire(grant: Grant, now: datetime) -> Grant | None:
    """The grant that replaces an expired one, or None while it still holds."""
    if grant.expired(now):
        return Grant(AccessLevel.NO_ACCESS, SYSTEM_ACTOR, now)
    return None


class GrantStore:
    """The grant on disk (`<state_dir>/grant.json`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, now: datetime) -> Grant:
        """The saved grant; a new device or an unreadable file means NO_ACCESS (fail closed)."""
        try:
            return Grant.from_dict(read_json(self.path))
        except FileNotFoundError:
            return factory_grant(now)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("%s is unreadable (%s); falling back to no-access until the customer sets a level",
                      self.path, exc)
            return factory_grant(now)

    def save(self, grant: Grant) -> None:
        write_json(self.path, grant.to_dict())
