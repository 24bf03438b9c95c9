"""The agent core with a real audit log and real state files, the clock injected (no sleeping)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent import totp
from agent.access import GrantStore
from agent.audit_log import AuditLog, is_checkpoint, public_key_path
from agent.audit_verify import export, verify
from agent.clock import ManualClock
from agent.config import Config, from_mapping
from agent.core import Agent
from agent.errors import AuditError, IllegalTransition, NotFoundError, RefusedError, UsageError
from agent.protocol import AccessLevel, EndReason, SessionKind, SessionState
from agent.session import Basis, Engineer

DANA = Engineer("E-1001", "Dana Example", "Vendor Service")
SECRET = bytes(range(20))


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return from_mapping({"paths": {"state_dir": str(tmp_path / "state"),
                                   "control_socket": str(tmp_path / "control.sock")}})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def start(config: Config, clock: ManualClock) -> Agent:
    key = config.paths.state_dir / "keys" / "audit-signing.key"
    agent = Agent(config, clock, AuditLog(config.paths.audit_dir, key, clock))
    agent.totp_secret = lambda: SECRET
    return agent


@pytest.fixture
def agent(config: Config, clock: ManualClock) -> Agent:
    return start(config, clock)


def events(agent: Agent) -> list[str]:
    return [r["event"] for r in export(agent.config.paths.audit_dir, None, None)]


def request(agent: Agent, level: AccessLevel = AccessLevel.LIMITED) -> str:
    """A session as the portal requests it under a standing grant; under no-access, one claimed by its ID (the only
    way a session exists then)."""
    if agent.grant.level is AccessLevel.NO_ACCESS:
        session_id = f"{40000000 + len(agent.sessions)}"
        return agent.claim_session(session_id, DANA, "gantry error 4711", level, SessionKind.SERVICE, "alice").id
    return agent.request_session(DANA, "gantry error 4711", level, SessionKind.SERVICE, "root").id


def authenticate(agent: Agent, session_id: str) -> None:
    """The engineer's right one-time password for now, as the portal relays it (half a minute later when this
    step's code was used already: a code is accepted once)."""
    state = agent.config.paths.state_dir / "totp-state.json"
    if state.exists() and json.loads(state.read_text())["last_step"] >= agent.clock.now().timestamp() // totp.STEP_S:
        assert isinstance(agent.clock, ManualClock)
        agent.clock.advance(timedelta(seconds=totp.STEP_S))
    code = totp.code_at(SECRET, agent.clock.now().timestamp())
    assert agent.authenticate(session_id, code, "portal").state is SessionState.ACTIVE


def test_a_new_device_has_no_access(agent: Agent) -> None:
    assert agent.grant.level is AccessLevel.NO_ACCESS
    assert agent.status()["sessions"] == []
    assert events(agent) == ["agent_started"]


def test_limited_grant_expires_by_itself_and_is_logged_as_expired(agent: Agent, clock: ManualClock) -> None:
    agent.set_access(AccessLevel.LIMITED, clock.now() + timedelta(hours=2), "alice")
    clock.advance(timedelta(hours=2) - timedelta(seconds=1))
    agent.tick()
    assert agent.grant.level is AccessLevel.LIMITED
    clock.advance(timedelta(seconds=1))
    agent.tick()
    assert agent.grant.level is AccessLevel.NO_ACCESS
    records = export(agent.config.paths.audit_dir, None, None)
    expired = [r for r in records if r["event"] == "access_expired"]
    assert len(expired) == 1
    assert expired[0]["actor"] == "servicegate"
    assert not any(r["event"] == "session_ended" for r in records)


def test_consent_path_full_for_this_session_alone_then_kill(agent: Agent, clock: ManualClock) -> None:
    sid = request(agent, AccessLevel.FULL)
    assert agent.sessions[sid].state is SessionState.AWAITING_CONSENT
    with pytest.raises(RefusedError, match="disclaimer"):
        agent.confirm_session(sid, AccessLevel.FULL, "alice", disclaimer_accepted=False)
    session = agent.confirm_session(sid, AccessLevel.FULL, "alice", disclaimer_accepted=True)
    assert (session.state, session.basis, session.effective_level) == (
        SessionState.AUTHENTICATING, Basis.CONSENT, AccessLevel.FULL)
    authenticate(agent, sid)
    status = agent.status()
    assert status["examinations_blocked"] is True
    assert agent.grant.level is AccessLevel.NO_ACCESS  # the standing grant did not change

    receipt = agent.kill("alice", "patient arrived")
    assert receipt["ended_sessions"] == [sid]
    assert agent.sessions[sid].end_reason is EndReason.KILLED
    assert agent.status()["examinations_blocked"] is False
    again = agent.kill("alice", "pressed twice")
    assert again["ended_sessions"] == []
    assert agent.grant.level is AccessLevel.NO_ACCESS

    records = export(agent.config.paths.audit_dir, None, None)
    confirmed = next(r for r in records if r["event"] == "session_confirmed")
    assert confirmed["actor"] == "alice"
    assert confirmed["details"]["engineer_id"] == "E-1001"
    assert confirmed["details"]["engineer_name"] == "Dana Example"
    assert confirmed["details"]["level"] == "full"
    assert confirmed["details"]["reason"] == "gantry error 4711"
    assert [r["event"] for r in records].count("kill") == 2
    assert verify(agent.config.paths.audit_dir, public_key_path(agent.audit.key_path)).ok


def test_kill_withdraws_a_standing_grant(agent: Agent) -> None:
    agent.set_access(AccessLevel.PERMANENT_LIMITED, None, "alice")
    sid = request(agent)
    assert agent.sessions[sid].state is SessionState.AUTHENTICATING
    agent.kill("bob", "")
    assert agent.grant.level is AccessLevel.NO_ACCESS
    assert agent.grant.set_by == "bob"


def test_a_session_cannot_get_more_than_was_asked_for(agent: Agent) -> None:
    sid = request(agent, AccessLevel.LIMITED)
    with pytest.raises(RefusedError, match="cannot be given more"):
        agent.confirm_session(sid, AccessLevel.FULL, "alice", disclaimer_accepted=True)
    with pytest.raises(UsageError):
        agent.confirm_session(sid, AccessLevel.PERMANENT_LIMITED, "alice", disclaimer_accepted=True)


def test_standing_grant_admits_within_it_and_expiry_ends_what_it_admitted(agent: Agent,
                                                                          clock: ManualClock) -> None:
    agent.set_access(AccessLevel.LIMITED, clock.now() + timedelta(hours=1), "alice")
    by_grant = request(agent)
    assert agent.sessions[by_grant].basis is Basis.GRANT
    by_consent = request(agent, AccessLevel.FULL)
    agent.confirm_session(by_consent, None, "alice", disclaimer_accepted=True)
    for sid in (by_grant, by_consent):
        authenticate(agent, sid)
    clock.advance(timedelta(minutes=59))
    agent.record_activity(by_grant)
    agent.record_activity(by_consent)
    clock.advance(timedelta(minutes=1))
    agent.tick()
    assert agent.sessions[by_grant].end_reason is EndReason.GRANT_EXPIRED
    assert agent.sessions[by_consent].state is SessionState.ACTIVE


def test_lowering_the_grant_narrows_then_revokes(agent: Agent) -> None:
    agent.set_access(AccessLevel.FULL, None, "alice")
    sid = request(agent, AccessLevel.FULL)
    assert agent.sessions[sid].state is SessionState.AWAITING_CONSENT  # FULL always asks the console
    agent.confirm_session(sid, None, "alice", disclaimer_accepted=True)
    authenticate(agent, sid)
    assert agent.status()["examinations_blocked"]
    agent.set_access(AccessLevel.LIMITED, None, "alice")
    assert agent.sessions[sid].effective_level is AccessLevel.LIMITED
    assert not agent.status()["examinations_blocked"]
    agent.set_access(AccessLevel.NO_ACCESS, None, "alice")
    assert agent.sessions[sid].end_reason is EndReason.REVOKED
    assert "session_narrowed" in events(agent)


def test_idle_timeout_and_activity(agent: Agent, clock: ManualClock) -> None:
    agent.set_access(AccessLevel.PERMANENT_LIMITED, None, "alice")
    sid = request(agent)
    authenticate(agent, sid)
    clock.advance(timedelta(minutes=14))
    agent.record_activity(sid)
    clock.advance(timedelta(minutes=14))
    agent.tick()
    assert agent.sessions[sid].state is SessionState.ACTIVE
    clock.advance(timedelta(minutes=1))
    agent.tick()
    assert agent.sessions[sid].end_reason is EndReason.IDLE_TIMEOUT


def test_unconfirmed_session_times_out_and_unknown_ids_are_refused(agent: Agent, clock: ManualClock) -> None:
    sid = request(agent)
    clock.advance(timedelta(minutes=5))
    agent.tick()
    assert agent.sessions[sid].end_reason is EndReason.CONSENT_TIMEOUT
    with pytest.raises(IllegalTransition, match="'ended' to 'authenticating'"):
        agent.confirm_session(sid, None, "alice", disclaimer_accepted=True)
    with pytest.raises(NotFoundError, match="no session with ID '99999999'"):
        agent.decline_session("99999999", "alice")


def test_end_session_without_id_needs_exactly_one_open(agent: Agent) -> None:
    with pytest.raises(RefusedError, match="no open session"):
        agent.end_session(None, "alice", "")
    first, second = request(agent), request(agent)
    with pytest.raises(RefusedError, match="more than one"):
        agent.end_session(None, "alice", "")
    agent.decline_session(first, "alice")
    assert agent.end_session(None, "alice", "done").id == second
    assert agent.sessions[second].end_reason is EndReason.COMPLETED


def test_a_crash_never_resumes_a_session_and_state_survives(config: Config, clock: ManualClock) -> None:
    agent = start(config, clock)
    agent.set_access(AccessLevel.PERMANENT_LIMITED, None, "alice")
    sid = request(agent)
    authenticate(agent, sid)
    agent.record_event("scan", "", "modality")
    # no shutdown(): the process died
    restarted = start(config, clock)
    assert restarted.sessions[sid].end_reason is EndReason.AGENT_RESTART
    assert restarted.grant.level is AccessLevel.PERMANENT_LIMITED
    assert restarted.counters == {"scans": 1}
    assert verify(config.paths.audit_dir, public_key_path(restarted.audit.key_path)).ok


def test_clean_shutdown_ends_open_sessions(config: Config, clock: ManualClock) -> None:
    agent = start(config, clock)
    sid = request(agent)
    agent.shutdown()
    agent.audit.close()
    assert agent.sessions[sid].end_reason is EndReason.AGENT_RESTART
    assert events(agent)[-1] == "agent_stopped"


def test_modality_events(agent: Agent) -> None:
    assert agent.record_event("scan", "", "ct") == {"scans": 1}
    assert agent.record_event("error", "E42", "ct") == {"scans": 1, "errors": 1}
    with pytest.raises(UsageError, match="scan, error"):
        agent.record_event("reboot", "", "ct")


def broken_audit(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit disk is full. A stand-in for `append` only: a real full disk cannot be made here
    without root-owned loop devices, and the point is what the agent does when appending fails."""
    def append(event: str, actor: str, details: dict[str, object]) -> dict[str, object]:
        raise AuditError("No space left on device")

    monkeypatch.setattr(agent.audit, "append", append)


def test_widening_access_is_refused_when_it_cannot_be_recorded(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    agent.set_access(AccessLevel.LIMITED, None, "alice")
    broken_audit(agent, monkeypatch)
    with pytest.raises(AuditError, match="no remote access is granted"):
        agent.set_access(AccessLevel.FULL, None, "alice")
    assert agent.grant.level is AccessLevel.LIMITED
    assert GrantStore(agent.config.paths.state_dir / "grant.json").load(agent.clock.now()).level is AccessLevel.LIMITED
    with pytest.raises(AuditError):
        request(agent)
    assert agent.sessions == {}


def test_the_kill_switch_works_when_nothing_can_be_recorded(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    agent.set_access(AccessLevel.FULL, None, "alice")
    sid = request(agent, AccessLevel.FULL)
    agent.confirm_session(sid, None, "alice", disclaimer_accepted=True)
    authenticate(agent, sid)
    broken_audit(agent, monkeypatch)
    receipt = agent.kill("alice", "patient arrived")
    assert receipt["ended_sessions"] == [sid]
    assert agent.sessions[sid].end_reason is EndReason.KILLED
    assert agent.grant.level is AccessLevel.NO_ACCESS
    assert GrantStore(agent.config.paths.state_dir / "grant.json").load(agent.clock.now()).level is \
        AccessLevel.NO_ACCESS
    assert any("'kill'" in p for p in receipt["problems"])
    assert agent.status()["problems"]
    agent.set_access(AccessLevel.NO_ACCESS, None, "alice")  # narrowing still works


def test_decline_only_waits_for_consent_and_an_ended_session_cannot_end_again(agent: Agent) -> None:
    agent.set_access(AccessLevel.PERMANENT_LIMITED, None, "alice")
    sid = request(agent)
    authenticate(agent, sid)
    with pytest.raises(RefusedError, match="only a session waiting for consent"):
        agent.decline_session(sid, "alice")
    agent.end_session(sid, "E-1001", "done")
    with pytest.raises(RefusedError, match="already ended"):
        agent.end_session(sid, "E-1001", "again")
    with pytest.raises(RefusedError, match="not active"):
        agent.record_activity(sid)


def test_denials_are_audited_at_most_once_a_minute_per_user(agent: Agent, clock: ManualClock) -> None:
    for _ in range(500):
        agent.record_denial("mallory", 1234, "kill")
    agent.record_denial("eve", 1235, "access_set")
    clock.advance(timedelta(minutes=1))
    agent.record_denial("mallory", 1234, "kill")
    denied = [r for r in export(agent.config.paths.audit_dir, None, None) if r["event"] == "permission_denied"]
    assert [(r["actor"], r["details"]["refused_since_last_record"]) for r in denied] == [
        ("mallory", 0), ("eve", 0), ("mallory", 499)]


def test_the_agent_waits_on_the_clock_only_while_something_can_fall_due(agent: Agent, clock: ManualClock) -> None:
    """The daemon ticks every second only while `waiting()`; otherwise rarely (its idle cost)."""
    assert not agent.waiting()  # the first record is checkpointed at once
    agent.set_access(AccessLevel.LIMITED, clock.now() + timedelta(hours=2), "alice")
    clock.advance(timedelta(minutes=5))
    agent.tick()
    assert agent.waiting()  # the grant's end
    agent.set_access(AccessLevel.PERMANENT_LIMITED, None, "alice")
    clock.advance(timedelta(minutes=5))
    agent.tick()
    assert not agent.waiting()  # no end, and checkpointed
    sid = request(agent)
    agent.audit.checkpoint()
    assert agent.waiting()  # checkpointed, but the session is open until its timeout ends it
    agent.end_session(sid, "alice", "done")
    assert not agent.waiting()  # a session's end is checkpointed at once
    agent.set_access(AccessLevel.NO_ACCESS, None, "alice")
    assert agent.waiting()  # the record of the change, until its checkpoint
    clock.advance(timedelta(minutes=5))
    agent.tick()
    assert not agent.waiting()


def test_a_session_s_end_and_the_kill_switch_are_checkpointed_at_once(agent: Agent, clock: ManualClock) -> None:
    """Their records are signed and their head goes to the portal right away (audit verify --against-portal), not
    after the checkpoint interval."""
    heads: list[dict[str, Any]] = []
    agent.audit.listeners.append(lambda record: heads.append(record) if is_checkpoint(record) else None)
    agent.set_access(AccessLevel.PERMANENT_LIMITED, None, "alice")
    first = request(agent)
    agent.end_session(first, "alice", "done")
    assert [h["details"]["head_seq"] for h in heads] == [agent.audit.head[0] - 1]  # session_ended, signed
    request(agent)
    agent.kill("alice", "patient on the table")
    records = export(agent.config.paths.audit_dir, None, None)
    assert records[-1]["event"] == "kill"
    assert heads[-1]["details"]["head_seq"] == records[-1]["seq"]


# ---- claimed sessions and the engineer's one-time password ------------------------------------------------------

def test_under_no_access_the_portal_cannot_start_a_session_but_a_claimed_one_waits_for_consent(
        agent: Agent) -> None:
    with pytest.raises(RefusedError, match="session ID"):
        agent.request_session(DANA, "gantry error 4711", AccessLevel.LIMITED, SessionKind.SERVICE, "portal")
    session = agent.claim_session("12345678", DANA, "gantry error 4711", AccessLevel.FULL, SessionKind.SERVICE,
                                  "alice")
    assert (session.id, session.state, session.claimed) == ("12345678", SessionState.AWAITING_CONSENT, True)
    assert agent.claim_session("12345678", DANA, "gantry error 4711", AccessLevel.FULL, SessionKind.SERVICE,
                               "alice") == session  # typed in twice: shown again, not a second session
    confirmed = agent.confirm_session("12345678", AccessLevel.LIMITED, "alice", disclaimer_accepted=True)
    assert confirmed.effective_level is AccessLevel.LIMITED  # the technologist granted less than was asked
    records = export(agent.config.paths.audit_dir, None, None)
    claimed = next(r for r in records if r["event"] == "session_claimed")
    assert (claimed["actor"], claimed["details"]["engineer_id"], claimed["details"]["level"]) == (
        "alice", "E-1001", "full")
    assert next(r for r in records if r["event"] == "session_confirmed")["details"]["level"] == "limited"


def test_a_claim_without_a_named_person_or_reason_is_refused_and_recorded(agent: Agent) -> None:
    with pytest.raises(UsageError, match="named person"):
        agent.claim_session("12345678", Engineer("E-1", ""), "reason", AccessLevel.LIMITED, SessionKind.SERVICE,
                            "alice")
    with pytest.raises(UsageError, match="reason"):
        agent.claim_session("12345678", DANA, " ", AccessLevel.LIMITED, SessionKind.SERVICE, "alice")
    assert agent.sessions == {}
    refused = [r for r in export(agent.config.paths.audit_dir, None, None) if r["event"] == "session_claim_refused"]
    assert [r["details"]["session_id"] for r in refused] == ["12345678", "12345678"]


def claimed_and_confirmed(agent: Agent, session_id: str = "12345678") -> str:
    agent.claim_session(session_id, DANA, "gantry error 4711", AccessLevel.LIMITED, SessionKind.SERVICE, "alice")
    agent.confirm_session(session_id, None, "alice", disclaimer_accepted=True)
    return session_id


def auth_failures(agent: Agent) -> list[tuple[str, str, int]]:
    return [(r["actor"], r["details"]["outcome"], r["details"]["failures"])
            for r in export(agent.config.paths.audit_dir, None, None) if r["event"] == "engineer_auth_failed"]


def test_totp_positive_control_then_replay_and_an_old_code_are_refused_and_audited(agent: Agent,
                                                                                   clock: ManualClock) -> None:
    sid = claimed_and_confirmed(agent)
    now = clock.now().timestamp()
    code = totp.code_at(SECRET, now)
    assert agent.authenticate(sid, code, "portal").state is SessionState.ACTIVE  # positive control
    active = next(r for r in export(agent.config.paths.audit_dir, None, None) if r["event"] == "session_active")
    assert (active["actor"], active["details"]["authentication"]) == ("E-1001", "totp")

    second = claimed_and_confirmed(agent, "87654321")
    replayed = agent.authenticate(second, code, "portal")  # the same code, still within its window
    assert (replayed.state, replayed.auth_failures) == (SessionState.AUTHENTICATING, 1)
    old = agent.authenticate(second, totp.code_at(SECRET, now - 2 * totp.STEP_S), "portal")
    assert (old.state, old.auth_failures) == (SessionState.AUTHENTICATING, 2)
    assert auth_failures(agent) == [("E-1001", "replayed", 1), ("E-1001", "wrong", 2)]
    clock.advance(timedelta(seconds=totp.STEP_S))  # positive control: the next step's code is accepted
    assert agent.authenticate(second, totp.code_at(SECRET, clock.now().timestamp()), "portal").state is \
        SessionState.ACTIVE


def test_the_previous_step_counts_and_a_code_from_the_future_does_not(agent: Agent, clock: ManualClock) -> None:
    sid = claimed_and_confirmed(agent)
    now = clock.now().timestamp()
    assert agent.authenticate(sid, totp.code_at(SECRET, now + totp.STEP_S), "portal").auth_failures == 1
    assert agent.authenticate(sid, totp.code_at(SECRET, now - totp.STEP_S), "portal").state is SessionState.ACTIVE


def test_ten_wrong_codes_end_the_session_with_auth_failed_and_nothing_is_accepted_after(
        agent: Agent, clock: ManualClock) -> None:
    sid = claimed_and_confirmed(agent)
    right = totp.code_at(SECRET, clock.now().timestamp())
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for attempt in range(1, totp.MAX_FAILURES):
        assert agent.authenticate(sid, wrong, "portal").auth_failures == attempt
    ended = agent.authenticate(sid, "12ab56", "portal")  # not even digits: the tenth failure
    assert (ended.state, ended.end_reason) == (SessionState.ENDED, EndReason.AUTH_FAILED)
    with pytest.raises(RefusedError, match="not waiting"):
        agent.authenticate(sid, right, "portal")
    assert len(auth_failures(agent)) == totp.MAX_FAILURES
    ended_record = [r for r in export(agent.config.paths.audit_dir, None, None) if r["event"] == "session_ended"]
    assert ended_record[-1]["details"]["end_reason"] == "auth_failed"
    # Only a new session from the portal can try again, and it can.
    assert agent.authenticate(claimed_and_confirmed(agent, "11112222"), right, "portal").state is \
        SessionState.ACTIVE


def test_a_code_before_the_technologist_confirmed_is_refused_without_counting(agent: Agent,
                                                                             clock: ManualClock) -> None:
    agent.claim_session("12345678", DANA, "gantry error 4711", AccessLevel.LIMITED, SessionKind.SERVICE, "alice")
    with pytest.raises(RefusedError, match="has not confirmed"):
        agent.authenticate("12345678", totp.code_at(SECRET, clock.now().timestamp()), "portal")
    assert agent.sessions["12345678"].auth_failures == 0


def test_an_unenrolled_device_refuses_codes(agent: Agent) -> None:
    agent.totp_secret = None
    sid = claimed_and_confirmed(agent)
    with pytest.raises(RefusedError, match="enroll"):
        agent.authenticate(sid, "123456", "portal")


def test_the_engineers_summary_is_kept(agent: Agent, clock: ManualClock) -> None:
    sid = claimed_and_confirmed(agent)
    authenticate(agent, sid)
    ended = agent.end_session(sid, "portal", "replaced the gantry fan; scans verified")
    assert (ended.end_reason, ended.end_text) == (EndReason.COMPLETED, "replaced the gantry fan; scans verified")
    record = [r for r in export(agent.config.paths.audit_dir, None, None) if r["event"] == "session_ended"][-1]
    assert (record["details"]["text"], record["details"]["engineer_id"]) == (
        "replaced the gantry fan; scans verified", "E-1001")


def test_an_announced_upgrade_ends_open_sessions_with_upgrade_when_the_warning_is_over(agent: Agent,
                                                                                      clock: ManualClock) -> None:
    agent.set_access(AccessLevel.LIMITED, None, "alice")
    sid = request(agent)
    authenticate(agent, sid)
    announced = agent.announce_upgrade("0.2.0", 60, "root")
    assert agent.status()["upgrade"] == announced
    assert agent.waiting()
    with pytest.raises(RefusedError, match="being updated to 0.2.0"):
        request(agent)
    clock.advance(timedelta(seconds=59))
    agent.tick()
    assert agent.sessions[sid].open  # the warning is not over yet
    clock.advance(timedelta(seconds=1))
    agent.tick()
    assert agent.sessions[sid].end_reason is EndReason.UPGRADE
    records = export(agent.config.paths.audit_dir, None, None)
    [record] = [r for r in records if r["event"] == "upgrade_announced"]
    assert (record["actor"], record["details"]) == ("root", announced)
    assert events(agent).index("upgrade_announced") < events(agent).index("session_ended")


def test_site_it_limits_the_open_sessions_of_one_engineer(tmp_path: Path, clock: ManualClock) -> None:
    """IEC 62443-4-2 CR 2.7: `[sessions] max_per_engineer` sessions of one engineer at once, requested by the portal
    or claimed at the console; others' sessions are not counted, and an ended one frees its place."""
    agent = start(from_mapping({"paths": {"state_dir": str(tmp_path / "state"),
                                          "control_socket": str(tmp_path / "control.sock")},
                                "sessions": {"max_per_engineer": 1}}), clock)
    agent.set_access(AccessLevel.PERMANENT_LIMITED, None, "alice")
    first = agent.request_session(DANA, "gantry error 4711", AccessLevel.LIMITED, SessionKind.SERVICE, "portal").id
    with pytest.raises(RefusedError, match=r"engineer E-1001 has 1 open session\(s\) already, and site IT allows 1 "
                                           r"at once \(\[sessions\] max_per_engineer\): end one first"):
        agent.request_session(DANA, "second look", AccessLevel.LIMITED, SessionKind.SERVICE, "portal")
    with pytest.raises(RefusedError, match="max_per_engineer"):
        agent.claim_session("40000001", DANA, "second look", AccessLevel.LIMITED, SessionKind.SERVICE, "alice")
    refused = [r["details"] for r in export(agent.config.paths.audit_dir, None, None)
               if r["event"] == "session_claim_refused"]
    assert [(d["session_id"], "max_per_engineer" in d["why"]) for d in refused] == [("40000001", True)]
    other = Engineer("E-2002", "Sam Sample", "Vendor Service")
    assert agent.request_session(other, "detector", AccessLevel.LIMITED, SessionKind.SERVICE, "portal").state in (
        SessionState.AUTHENTICATING, SessionState.AWAITING_CONSENT)
    agent.end_session(first, "alice", "done")
    assert agent.request_session(DANA, "second look", AccessLevel.LIMITED, SessionKind.SERVICE, "portal").open


def test_without_a_limit_one_engineer_may_have_several_sessions(agent: Agent) -> None:
    assert agent.config.sessions.max_per_engineer == 0  # the default
    agent.set_access(AccessLevel.PERMANENT_LIMITED, None, "alice")
    opened = [agent.request_session(DANA, f"look {n}", AccessLevel.LIMITED, SessionKind.SERVICE, "portal").open
              for n in range(3)]
    assert opened == [True, True, True]
