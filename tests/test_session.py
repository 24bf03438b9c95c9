"""The session state machine and its pure decisions, exhaustively, with time passed in."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.access import Grant
from agent.errors import IllegalTransition, RefusedError, UsageError
from agent.protocol import AccessLevel, EndReason, SessionKind, SessionState
from agent.session import (
    TRANSITIONS,
    Basis,
    Engineer,
    Limits,
    Session,
    admission,
    after_grant_change,
    check_admissible,
    check_request,
    due_end,
    new_session_id,
)

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
LIMITS = Limits(idle_timeout=timedelta(minutes=15), time_limit=timedelta(hours=8),
                consent_timeout=timedelta(minutes=5), auth_timeout=timedelta(minutes=5))
ENGINEER = Engineer("E-1001", "Dana Example", "Vendor Service")


def make(state: SessionState = SessionState.REQUESTED, *, level: AccessLevel = AccessLevel.LIMITED,
         basis: Basis = Basis.GRANT, effective: AccessLevel | None = None, at: datetime = T0) -> Session:
    active = state is SessionState.ACTIVE
    return Session(id="12345678", kind=SessionKind.SERVICE, engineer=ENGINEER, reason="tube warm-up fault",
                   requested_level=level, state=state, created_at=at, state_since=at, basis=basis,
                   effective_level=effective, activated_at=at if active else None,
                   last_activity=at if active else None)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(SessionState, SessionState)))
def test_every_transition_is_allowed_exactly_when_the_table_says(current: SessionState,
                                                                  target: SessionState) -> None:
    session = make(current)
    if target in TRANSITIONS[current]:
        moved = session.move(target, T0 + timedelta(seconds=1))
        assert moved.state is target
        assert moved.state_since == T0 + timedelta(seconds=1)
    else:
        with pytest.raises(IllegalTransition) as info:
            session.move(target, T0)
        assert current.value in str(info.value)
        assert target.value in str(info.value)


def test_every_state_but_ended_can_end_and_ended_is_final() -> None:
    for state in SessionState:
        assert (SessionState.ENDED in TRANSITIONS[state]) == (state is not SessionState.ENDED)
    assert TRANSITIONS[SessionState.ENDED] == frozenset()


def test_end_records_reason_and_text() -> None:
    ended = make(SessionState.ACTIVE).end(EndReason.KILLED, T0, "pressed the button")
    assert (ended.state, ended.end_reason, ended.end_text, ended.open) == (
        SessionState.ENDED, EndReason.KILLED, "pressed the button", False)


def test_end_reasons_are_the_agreed_list_and_each_has_a_meaning() -> None:
    assert [r.value for r in EndReason] == [
        "completed", "declined", "consent_timeout", "revoked", "killed", "idle_timeout", "time_limit",
        "grant_expired", "auth_failed", "portal_lost", "upgrade", "agent_restart"]
    assert all(r.meaning for r in EndReason)


@pytest.mark.parametrize("grant_level", list(AccessLevel))
@pytest.mark.parametrize("requested", [AccessLevel.LIMITED, AccessLevel.FULL])
def test_admission(grant_level: AccessLevel, requested: AccessLevel) -> None:
    grant = Grant(grant_level, "tech", T0)
    if grant_level is AccessLevel.NO_ACCESS:
        with pytest.raises(RefusedError, match="session ID"):
            check_admissible(grant)
        return
    check_admissible(grant)
    within = requested is AccessLevel.LIMITED
    assert admission(grant, requested) is (SessionState.AUTHENTICATING if within else SessionState.AWAITING_CONSENT)


@pytest.mark.parametrize("state", [SessionState.REQUESTED, SessionState.AWAITING_CONSENT])
def test_consent_timeout(state: SessionState) -> None:
    session = make(state)
    assert due_end(session, T0 + LIMITS.consent_timeout - timedelta(microseconds=1), LIMITS) is None
    assert due_end(session, T0 + LIMITS.consent_timeout, LIMITS) is EndReason.CONSENT_TIMEOUT


def test_authentication_timeout_fails_the_session() -> None:
    session = make(SessionState.AUTHENTICATING)
    assert due_end(session, T0 + timedelta(minutes=4, seconds=59), LIMITS) is None
    assert due_end(session, T0 + LIMITS.auth_timeout, LIMITS) is EndReason.AUTH_FAILED


def test_idle_timeout_counts_from_the_last_engineer_action() -> None:
    session = make(SessionState.ACTIVE)
    assert due_end(session, T0 + timedelta(minutes=14), LIMITS) is None
    assert due_end(session, T0 + timedelta(minutes=15), LIMITS) is EndReason.IDLE_TIMEOUT
    busy = Session(**{**session.__dict__, "last_activity": T0 + timedelta(minutes=10)})
    assert due_end(busy, T0 + timedelta(minutes=24), LIMITS) is None
    assert due_end(busy, T0 + timedelta(minutes=25), LIMITS) is EndReason.IDLE_TIMEOUT


def test_time_limit_wins_over_activity() -> None:
    session = make(SessionState.ACTIVE)
    busy = Session(**{**session.__dict__, "last_activity": T0 + timedelta(hours=8) - timedelta(seconds=1)})
    assert due_end(busy, T0 + timedelta(hours=8), LIMITS) is EndReason.TIME_LIMIT


def test_ended_sessions_never_end_again() -> None:
    assert due_end(make(SessionState.ENDED), T0 + timedelta(days=30), LIMITS) is None


def grant(level: AccessLevel) -> Grant:
    return Grant(level, "tech", T0)


@pytest.mark.parametrize("previous", list(AccessLevel))
@pytest.mark.parametrize("new", list(AccessLevel))
@pytest.mark.parametrize("basis", list(Basis))
@pytest.mark.parametrize("effective", [AccessLevel.LIMITED, AccessLevel.FULL])
@pytest.mark.parametrize("state", [SessionState.AUTHENTICATING, SessionState.ACTIVE])
def test_grant_changes_exhaustively(previous: AccessLevel, new: AccessLevel, basis: Basis, effective: AccessLevel,
                                    state: SessionState) -> None:
    session = make(state, basis=basis, effective=effective, level=effective)
    changed = after_grant_change(session, grant(previous), grant(new), T0, expired=False)
    if new is AccessLevel.NO_ACCESS:
        assert changed.end_reason is EndReason.REVOKED  # "no access" means no access
    elif new.rank < previous.rank and effective.rank > new.rank:
        assert changed.open
        assert changed.effective_level is AccessLevel.LIMITED  # lowered: narrowed at once
    else:
        assert changed is session  # raised, same, or still within: untouched, consent above the grant included


def test_setting_no_access_revokes_every_open_session() -> None:
    for basis in Basis:
        changed = after_grant_change(make(SessionState.ACTIVE, basis=basis, effective=AccessLevel.FULL),
                                     grant(AccessLevel.FULL), grant(AccessLevel.NO_ACCESS), T0, expired=False)
        assert changed.end_reason is EndReason.REVOKED


def test_lowering_full_to_limited_narrows_and_releases_the_examination_block() -> None:
    session = make(SessionState.ACTIVE, level=AccessLevel.FULL, effective=AccessLevel.FULL)
    assert session.blocks_examinations
    narrowed = after_grant_change(session, grant(AccessLevel.FULL), grant(AccessLevel.LIMITED), T0, expired=False)
    assert narrowed.open
    assert narrowed.effective_level is AccessLevel.LIMITED
    assert not narrowed.blocks_examinations


def test_raising_the_grant_keeps_a_full_session_confirmed_above_it() -> None:
    session = make(SessionState.ACTIVE, level=AccessLevel.FULL, basis=Basis.CONSENT, effective=AccessLevel.FULL)
    raised = after_grant_change(session, grant(AccessLevel.NO_ACCESS), grant(AccessLevel.LIMITED), T0, expired=False)
    assert raised is session
    assert raised.blocks_examinations


def test_expiry_ends_only_sessions_the_grant_admitted() -> None:
    limited, no_access = grant(AccessLevel.LIMITED), Grant(AccessLevel.NO_ACCESS, "servicegate", T0)
    by_grant = make(SessionState.ACTIVE, basis=Basis.GRANT, effective=AccessLevel.LIMITED)
    by_consent = make(SessionState.ACTIVE, basis=Basis.CONSENT, effective=AccessLevel.FULL)
    assert after_grant_change(by_grant, limited, no_access, T0, expired=True).end_reason is EndReason.GRANT_EXPIRED
    assert after_grant_change(by_consent, limited, no_access, T0, expired=True) is by_consent


def test_a_request_needs_a_named_person_a_reason_and_a_session_level() -> None:
    check_request(ENGINEER, "reason", AccessLevel.FULL)
    with pytest.raises(UsageError, match="named person"):
        check_request(Engineer("E-1", " "), "reason", AccessLevel.LIMITED)
    with pytest.raises(UsageError, match="named person"):
        check_request(Engineer("", "Dana"), "reason", AccessLevel.LIMITED)
    with pytest.raises(UsageError, match="reason"):
        check_request(ENGINEER, "  ", AccessLevel.LIMITED)
    with pytest.raises(UsageError, match="limited' or 'full"):
        check_request(ENGINEER, "reason", AccessLevel.PERMANENT_LIMITED)


def test_session_ids_are_eight_digits_and_unique() -> None:
    taken: set[str] = set()
    for _ in range(500):
        sid = new_session_id(taken)
        assert len(sid) == 8
        assert sid.isdigit()
        assert sid not in taken
        taken.add(sid)


@given(state=st.sampled_from(list(SessionState)), basis=st.sampled_from(list(Basis)),
       kind=st.sampled_from(list(SessionKind)), reason=st.text(min_size=1),
       effective=st.sampled_from([None, AccessLevel.LIMITED, AccessLevel.FULL]),
       end=st.sampled_from([None, *EndReason]),
       offset=st.integers(min_value=0, max_value=10**9))
def test_session_survives_a_round_trip_through_its_stored_form(
        state: SessionState, basis: Basis, kind: SessionKind, reason: str, effective: AccessLevel | None,
        end: EndReason | None, offset: int) -> None:
    at = T0 + timedelta(microseconds=offset)
    session = Session(id="00000042", kind=kind, engineer=ENGINEER, reason=reason, requested_level=AccessLevel.FULL,
                      state=state, created_at=T0, state_since=at, basis=basis, effective_level=effective,
                      activated_at=at, last_activity=None, end_reason=end, end_text="x", confirmed_by="tech")
    assert Session.from_dict(session.to_dict()) == session
