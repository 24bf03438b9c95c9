"""A remote session as an explicit state machine, and the pure decisions about it.

    requested -> awaiting_consent -> authenticating -> active -> ended(reason)
             \\_______________________^

A session comes into being in one of two ways. The technologist *claims* it by the ID the engineer
reads out (any standing grant, NO_ACCESS included): it always waits for the technologist's
confirmation with the data-privacy disclaimer. The portal *requests* it under a standing grant:
within the grant it skips `awaiting_consent`; above the grant, or FULL (which blocks
examinations), it waits for the console; under NO_ACCESS it is refused. `authenticating` ends
when the engineer's one-time password is accepted (agent.totp). Every state can end; `ended`
is final. An illegal move raises IllegalTransition naming both states. Time is passed in, never
read, so expiry, idle timeout and time limit are tested without sleeping.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from agent.access import Grant
from agent.clock import parse_utc, utc_iso
from agent.errors import IllegalTransition, RefusedError, UsageError
from agent.protocol import MAX_CASE_ID, SESSION_LEVELS, AccessLevel, EndReason, SessionKind, SessionState


class Basis(StrEnum):
    """Where the session's level comes from; decides what a change of the standing grant does to it."""

    GRANT = "grant"  # admitted by the standing grant: narrowed or ended when the grant is lowered or expires
    CONSENT = "consent"  # confirmed at the console for this session alone: survives the grant's expiry


TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.REQUESTED: frozenset({SessionState.AWAITING_CONSENT, SessionState.AUTHENTICATING,
                                       SessionState.ENDED}),
    SessionState.AWAITING_CONSENT: frozenset({SessionState.AUTHENTICATING, SessionState.ENDED}),
    SessionState.AUTHENTICATING: frozenset({SessionState.ACTIVE, SessionState.ENDED}),
    SessionState.ACTIVE: frozenset({SessionState.ENDED}),
    SessionState.ENDED: frozenset(),
}

@dataclass(frozen=True)
class Engineer:
    id: str
    name: str
    company: str = ""


@dataclass(frozen=True)
class Limits:
    idle_timeout: timedelta
    time_limit: timedelta
    consent_timeout: timedelta
    auth_timeout: timedelta


@dataclass(frozen=True)
class Session:
    id: str
    kind: SessionKind
    engineer: Engineer
    reason: str
    requested_level: AccessLevel
    state: SessionState
    created_at: datetime
    state_since: datetime
    basis: Basis = Basis.GRANT
    effective_level: AccessLevel | None = None
    confirmed_by: str | None = None
    activated_at: datetime | None = None
    last_activity: datetime | None = None
    end_reason: EndReason | None = None
    end_text: str = ""
    auth_failures: int = 0  # wrong or replayed one-time passwords the engineer sent for this session
    claimed: bool = False  # the technologist typed in its ID (rather than the portal requesting it)
    case_id: str = ""  # the service case the engineer opened it for (a service request's case number), or ""

    @property
    def open(self) -> bool:
        return self.state is not SessionState.ENDED

    @property
    def blocks_examinations(self) -> bool:
        return self.state is SessionState.ACTIVE and self.effective_level is AccessLevel.FULL

    def move(self, target: SessionState, now: datetime, **changes: Any) -> Session:
        if target not in TRANSITIONS[self.state]:
            raise IllegalTransition(self.state.value, target.value)
        return replace(self, state=target, state_since=now, **changes)

    def end(self, reason: EndReason, now: datetime, text: str = "") -> Session:
        return self.move(SessionState.ENDED, now, end_reason=reason, end_text=text)

    def to_dict(self) -> dict[str, Any]:
        def iso(when: datetime | None) -> str | None:
            return utc_iso(when) if when else None

        return {
            "id": self.id, "kind": self.kind.value, "state": self.state.value, "reason": self.reason,
            "engineer": {"id": self.engineer.id, "name": self.engineer.name, "company": self.engineer.company},
            "requested_level": self.requested_level.value, "basis": self.basis.value,
            "effective_level": self.effective_level.value if self.effective_level else None,
            "confirmed_by": self.confirmed_by, "created_at": iso(self.created_at),
            "state_since": iso(self.state_since), "activated_at": iso(self.activated_at),
            "last_activity": iso(self.last_activity),
            "end_reason": self.end_reason.value if self.end_reason else None, "end_text": self.end_text,
            "auth_failures": self.auth_failures, "claimed": self.claimed, "case_id": self.case_id,
            "blocks_examinations": self.blocks_examinations,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        def when(key: str) -> datetime | None:
            value = data.get(key)
            return parse_utc(value) if value else None

        engineer = data["engineer"]
        return cls(
            id=data["id"], kind=SessionKind(data["kind"]), reason=data["reason"],
            engineer=Engineer(engineer["id"], engineer["name"], engineer.get("company", "")),
            requested_level=AccessLevel(data["requested_level"]), state=SessionState(data["state"]),
            created_at=parse_utc(data["created_at"]), state_since=parse_utc(data["state_since"]),
            basis=Basis(data["basis"]),
            effective_level=AccessLevel(data["effective_level"]) if data.get("effective_level") else None,
            confirmed_by=data.get("confirmed_by"), activated_at=when("activated_at"),
            last_activity=when("last_activity"),
            end_reason=EndReason(data["end_reason"]) if data.get("end_reason") else None,
            end_text=data.get("end_text", ""), auth_failures=int(data.get("auth_failures", 0)),
            claimed=bool(data.get("claimed", False)), case_id=str(data.get("case_id", "")),
        )


def new_session_id(taken: set[str]) -> str:
    """Eight digits, easy to read over the phone; unique among the sessions the agent knows."""
    while True:
        candidate = f"{secrets.randbelow(10**8):08d}"
        if candidate not in taken:
            return candidate


def check_request(engineer: Engineer, reason: str, level: AccessLevel, case_id: str = "") -> None:
    """A session must name a person and a reason, and ask for limited or full access; its case ID, if any, is short
    plain text (the console shows it)."""
    if not engineer.id.strip() or not engineer.name.strip():
        raise UsageError("a session needs the engineer's ID and full name; a request without a named person "
                         "is refused")
    if not reason.strip():
        raise UsageError("a session needs a reason; a request without one is refused")
    if level not in SESSION_LEVELS:
        raise UsageError(f"a session asks for 'limited' or 'full' access, not {level.value!r}")
    if len(case_id) > MAX_CASE_ID or not case_id.isprintable():
        raise UsageError(f"the case ID {case_id[:MAX_CASE_ID]!r} is not one: at most {MAX_CASE_ID} printable "
                         "characters")


def admission(grant: Grant, requested: AccessLevel) -> SessionState:
    """Where a session the portal requests goes next under the standing grant.

    Within the grant it goes straight to authentication (the technologist is notified). It waits
    for the console when it asks for more than the grant, or when it asks for FULL: blocking
    examinations always needs someone at the scanner to agree. Under NO_ACCESS the portal cannot
    request a session at all (`check_admissible`): only a session claimed by its ID exists.
    """
    if requested is AccessLevel.FULL or requested.rank > grant.level.rank:
        return SessionState.AWAITING_CONSENT
    return SessionState.AUTHENTICATING


def check_admissible(grant: Grant) -> None:
    """A session the portal requests needs a standing grant; under NO_ACCESS it is refused."""
    if grant.level is AccessLevel.NO_ACCESS:
        raise RefusedError("access is set to no-access: the portal cannot start a session; the engineer gives "
                           "the technologist the session ID to type in at the console")


def due_end(session: Session, now: datetime, limits: Limits) -> EndReason | None:
    """The reason a session must end at `now` on its own, or None."""
    age = now - session.state_since
    if session.state in (SessionState.REQUESTED, SessionState.AWAITING_CONSENT):
        return EndReason.CONSENT_TIMEOUT if age >= limits.consent_timeout else None
    if session.state is SessionState.AUTHENTICATING:
        return EndReason.AUTH_FAILED if age >= limits.auth_timeout else None
    if session.state is SessionState.ACTIVE and session.activated_at is not None:
        if now - session.activated_at >= limits.time_limit:
            return EndReason.TIME_LIMIT
        if now - (session.last_activity or session.activated_at) >= limits.idle_timeout:
            return EndReason.IDLE_TIMEOUT
    return None


def after_grant_change(session: Session, previous: Grant, grant: Grant, now: datetime, *,
                       expired: bool) -> Session:
    """What a new standing grant does to an open session.

    The customer setting NO_ACCESS ends every session (`revoked`): pressing "no access" means no
    access. Lowering the level narrows the sessions above the new level at once, whatever their
    basis: the customer asked for less. Raising it, or setting the same level again, changes no
    session; a session confirmed for itself above the grant keeps its level. An expiring LIMITED
    grant ends only the sessions it admitted (`grant_expired`); a session confirmed at the console
    keeps its level, because that consent was given for the session, not for the grant's duration.
    """
    if not session.open:
        return session
    if expired:
        return session.end(EndReason.GRANT_EXPIRED, now) if session.basis is Basis.GRANT else session
    if grant.level is AccessLevel.NO_ACCESS:
        return session.end(EndReason.REVOKED, now, "access set to no-access")
    level = session.effective_level
    if grant.level.rank < previous.level.rank and level is not None and level.rank > grant.level.rank:
        return replace(session, effective_level=AccessLevel.LIMITED)
    return session
