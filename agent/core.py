"""The agent's state and every decision it acts on: access grant, sessions, counters, audit.

`Agent` is the one object with authority. It is synchronous and single-threaded (the daemon
calls it from its event loop), takes its clock from outside, and records every change in the
audit log. The control API's operations map onto its methods in `agent.api`; the daemon only
wires it to the socket and the timer.

Order of effects, and why. A change that *widens* remote access (a higher grant, a session
request, confirmation or activation) is written to the audit log first and refused if that
fails: no access is granted that the customer could not later find in the log. A change that
*narrows* it (lowering the grant, expiry, any session end, the kill switch) takes effect first and
is then recorded on a best-effort basis: a full disk must never keep a session open. Failures of
that second kind are counted in `status` (`problems`) and returned in the kill switch's receipt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from agent import __version__, totp
from agent.access import Grant, GrantStore, expire, new_grant, widens
from agent.audit_log import AuditLog
from agent.clock import Clock, utc_iso
from agent.config import Config
from agent.errors import AuditError, NotFoundError, RefusedError, UsageError
from agent.fsutil import read_json, write_json
from agent.protocol import EVENT_KINDS, SESSION_LEVELS, SYSTEM_ACTOR, AccessLevel, EndReason, SessionKind, SessionState
from agent.session import (
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

log = logging.getLogger("servicegate.agent")

KEEP_ENDED_SESSIONS = 50  # how many ended sessions `session list` shows; the audit log keeps them all
KEEP_PROBLEMS = 20
DENIAL_WINDOW = timedelta(minutes=1)

Publish = Callable[[str, dict[str, Any]], None]


class Agent:
    def __init__(self, config: Config, clock: Clock, audit: AuditLog) -> None:
        self.config = config
        self.clock = clock
        self.audit = audit
        self.publish: Publish = lambda event, data: None
        # The daemon sets these from the portal link (agent.uplink): its state for `status`, and where
        # `audit verify --against-portal` gets the checkpoint heads the portal holds (None: no link).
        self.link_status: Callable[[], dict[str, Any]] = lambda: {"state": "not enrolled"}
        self.portal_heads: Callable[[], list[dict[str, Any]]] | None = None
        # From the enrollment: the portal claims a session by its ID (the details, or PortalError), and the secret
        # the engineers' one-time passwords are checked against (PortalError when there is none).
        self.portal_claim: Callable[[str], dict[str, Any]] | None = None
        self.totp_secret: Callable[[], bytes] | None = None
        # Runs a change of state where the agent's state lives: the daemon's event loop (an operation offloaded to
        # a worker thread, like a claim that waits for the portal, makes its change through this).
        self.in_core: Callable[[Callable[[], Any]], Any] = lambda change: change()
        # The daemon's upload worker: told when files were queued (a no-op without a link to the portal).
        self.wake_uploads: Callable[[], None] = lambda: None
        self.problems: list[str] = []  # the latest things that could not be saved or recorded
        self._denials: dict[int, tuple[datetime, int]] = {}  # uid -> (last recorded, refused since)
        state_dir = config.paths.state_dir
        self._grants = GrantStore(state_dir / "grant.json")
        self._sessions_path = state_dir / "sessions.json"
        self._counters_path = state_dir / "counters.json"
        self._totp_state_path = state_dir / "totp-state.json"  # the highest one-time-password step used
        s = config.sessions
        self.limits = Limits(idle_timeout=timedelta(minutes=s.idle_timeout_min),
                             time_limit=timedelta(minutes=s.time_limit_min),
                             consent_timeout=timedelta(minutes=s.consent_timeout_min),
                             auth_timeout=timedelta(minutes=s.auth_timeout_min))
        now = clock.now()
        self.grant = self._grants.load(now)
        self.sessions: dict[str, Session] = self._load_sessions()
        self.counters: dict[str, int] = self._load_counters()
        self.audit.append("agent_started", SYSTEM_ACTOR, {"version": __version__, "level": self.grant.level.value})
        # Fail closed: a session that was open when the agent stopped does not resume.
        for session in list(self.sessions.values()):
            if session.open:
                self._end(session, EndReason.AGENT_RESTART, SYSTEM_ACTOR, "the agent restarted")
        self.tick()

    # ---- reading -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "agent_version": __version__,
            "now": utc_iso(self.clock.now()),
            "access": self.grant.to_dict(),
            "sessions": [s.to_dict() for s in self.sessions.values() if s.open],
            "examinations_blocked": any(s.blocks_examinations for s in self.sessions.values()),
            "counters": dict(self.counters),
            "portal": self.link_status(),
            "problems": list(self.problems),
        }

    def session_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in sorted(self.sessions.values(), key=lambda s: s.created_at)]

    # ---- access ----------------------------------------------------------------------------------

    def set_access(self, level: AccessLevel, until: datetime | None, actor: str) -> Grant:
        grant = new_grant(level, actor, self.clock.now(), until)
        self._apply_grant(grant, "access_set", actor, expired=False)
        return grant

    def _apply_grant(self, grant: Grant, event: str, actor: str, *, expired: bool,
                     details: dict[str, Any] | None = None) -> None:
        previous = self.grant
        record = {**(details or {}), "previous_level": previous.level.value, "level": grant.level.value,
                  "until": utc_iso(grant.until) if grant.until else None}
        wider = widens(previous, grant)
        if wider:
            self._audit_first(event, actor, record)
            self._grants.save(grant)  # an error here refuses the change: nothing was applied yet
        self.grant = grant
        if not wider:
            self._best_effort(f"save the access grant ({grant.level.value})", lambda: self._grants.save(grant))
            self._audit_after(event, actor, record)
        self.publish("access_changed", grant.to_dict())
        now = self.clock.now()
        for session in list(self.sessions.values()):
            changed = after_grant_change(session, previous, grant, now, expired=expired)
            if changed is session:
                continue
            if changed.open:
                self._store(changed)
                self._audit_after("session_narrowed", actor, self._session_details(changed))
                self.publish("session_changed", changed.to_dict())
            else:
                self._record_end(changed, actor)

    # ---- sessions: what widens access (recorded first) --------------------------------------------

    def request_session(self, engineer: Engineer, reason: str, level: AccessLevel, kind: SessionKind,
                        actor: str, session_id: str = "") -> Session:
        """The portal asks for a session under the standing grant (`session_id`: the portal's own ID for it)."""
        check_request(engineer, reason, level)
        check_admissible(self.grant)
        now = self.clock.now()
        requested = Session(id=self._new_id(session_id), kind=kind, engineer=engineer, reason=reason,
                            requested_level=level, state=SessionState.REQUESTED, created_at=now, state_since=now)
        nxt = admission(self.grant, level)
        if nxt is SessionState.AUTHENTICATING:
            session = requested.move(nxt, now, basis=Basis.GRANT, effective_level=level)
        else:
            session = requested.move(nxt, now, basis=Basis.CONSENT)
        self._audit_first("session_requested", actor, self._session_details(requested))
        self._audit_first(f"session_{nxt.value}", SYSTEM_ACTOR, self._session_details(session))
        self._store(session)
        self.publish("session_changed", session.to_dict())
        return session

    def claim_session(self, session_id: str, engineer: Engineer, reason: str, level: AccessLevel,
                      kind: SessionKind, actor: str) -> Session:
        """The technologist typed in the ID the engineer read out, and the portal gave the session's details: it
        waits for the technologist's confirmation with the data-privacy disclaimer, whatever the standing grant.
        Claiming an ID that waits already shows it again."""
        existing = self.sessions.get(session_id)
        if existing is not None and existing.state is SessionState.AWAITING_CONSENT and existing.claimed:
            return existing
        try:
            check_request(engineer, reason, level)
        except UsageError as exc:
            self.claim_refused(session_id, actor, str(exc))
            raise
        now = self.clock.now()
        requested = Session(id=self._new_id(session_id), kind=kind, engineer=engineer, reason=reason,
                            requested_level=level, state=SessionState.REQUESTED, created_at=now, state_since=now,
                            claimed=True)
        session = requested.move(SessionState.AWAITING_CONSENT, now, basis=Basis.CONSENT)
        self._audit_first("session_claimed", actor, self._session_details(requested))
        self._audit_first("session_awaiting_consent", SYSTEM_ACTOR, self._session_details(session))
        self._store(session)
        self.publish("session_changed", session.to_dict())
        return session

    def claim_refused(self, session_id: str, actor: str, why: str) -> None:
        """A session ID typed in at the console was refused (by the portal, or as malformed): recorded."""
        self._audit_after("session_claim_refused", actor, {"session_id": session_id, "why": why})

    def confirm_session(self, session_id: str, level: AccessLevel | None, actor: str,
                        disclaimer_accepted: bool) -> Session:
        session = self._get(session_id)
        if not disclaimer_accepted:
            raise RefusedError("the data-privacy disclaimer must be accepted before a session can start: "
                               "the service engineer could potentially view patient data")
        granted = level or session.requested_level
        if granted not in SESSION_LEVELS:
            raise UsageError(f"a session is confirmed at 'limited' or 'full', not {granted.value!r}")
        if granted.rank > session.requested_level.rank:
            raise RefusedError(f"the engineer asked for {session.requested_level.value!r}; "
                               f"a session cannot be given more ({granted.value!r}) than was asked for")
        session = session.move(SessionState.AUTHENTICATING, self.clock.now(), basis=Basis.CONSENT,
                               effective_level=granted, confirmed_by=actor)
        self._audit_first("session_confirmed", actor, {**self._session_details(session), "disclaimer_accepted": True})
        self._store(session)
        self.publish("session_changed", session.to_dict())
        return session

    def authenticate(self, session_id: str, code: str, actor: str) -> Session:
        """The engineer's one-time password (relayed by the portal): the session becomes active, or the failure is
        counted and recorded; at MAX_FAILURES the session ends with `auth_failed`. A code sent before the
        technologist confirmed the session is refused without counting."""
        session = self._get(session_id)
        if session.state is not SessionState.AUTHENTICATING:
            raise RefusedError(f"session {session_id} is {session.state.value}, not waiting for the engineer's "
                               "one-time password" + (" (the technologist has not confirmed it yet)"
                                                      if session.state is SessionState.AWAITING_CONSENT else ""))
        if self.totp_secret is None:
            raise RefusedError("this device has no secret for engineers' one-time passwords: enroll it "
                               "(`servicegate enroll`)")
        secret = self.totp_secret()  # PortalError when the enrollment holds none
        now = self.clock.now()
        verifier = totp.Verifier(secret, self._last_step(), session.auth_failures)
        outcome = verifier.check(code, now.timestamp())
        details = {**self._session_details(session), "by": actor}
        if outcome is totp.Outcome.ACCEPTED:
            try:  # the step is used up before access widens: a code is never accepted twice
                write_json(self._totp_state_path, {"last_step": verifier.last_step})
            except OSError as exc:
                raise AuditError(f"not done: cannot record the used one-time password ({exc}); no session starts "
                                 "while that fails") from exc
            active = session.move(SessionState.ACTIVE, now, activated_at=now, last_activity=now)
            self._audit_first("session_active", session.engineer.id,
                              {**self._session_details(active), "by": actor, "authentication": "totp"})
            self._store(active)
            self.publish("session_changed", active.to_dict())
            return active
        failed = replace(session, auth_failures=verifier.failures)
        self._audit_after("engineer_auth_failed", session.engineer.id,
                          {**details, "outcome": outcome.value, "failures": verifier.failures})
        if verifier.failures >= totp.MAX_FAILURES:
            return self._end(failed, EndReason.AUTH_FAILED, SYSTEM_ACTOR,
                             f"{verifier.failures} wrong one-time passwords")
        self._store(failed)
        self.publish("session_changed", failed.to_dict())
        return failed

    def record_activity(self, session_id: str) -> Session:
        """An action the engineer initiated (task request, input through the relay): resets the idle timer.

        Not audited: the action itself is (the task runner and the relay record it).
        """
        session = self._get(session_id)
        if session.state is not SessionState.ACTIVE:
            raise RefusedError(f"session {session_id} is {session.state.value}, not active")
        session = replace(session, last_activity=self.clock.now())
        self._store(session)
        return session

    # ---- sessions: what narrows access (effective first, recorded after) ----------------------------

    def decline_session(self, session_id: str, actor: str) -> Session:
        session = self._get(session_id)
        if session.state not in (SessionState.REQUESTED, SessionState.AWAITING_CONSENT):
            raise RefusedError(f"only a session waiting for consent can be declined; session {session_id} is "
                               f"{session.state.value} (use the kill switch to end it)")
        return self._end(session, EndReason.DECLINED, actor, "declined at the console")

    def end_session(self, session_id: str | None, actor: str, text: str) -> Session:
        """The engineer (through the portal) ends the session normally: `completed`."""
        if session_id is None:
            open_ones = [s for s in self.sessions.values() if s.open]
            if len(open_ones) != 1:
                raise RefusedError("no open session to end" if not open_ones else
                                   "more than one session is open; name the one to end: "
                                   + ", ".join(s.id for s in open_ones))
            session = open_ones[0]
        else:
            session = self._get(session_id)
        if not session.open:
            raise RefusedError(f"session {session.id} has already ended ({session.end_reason})")
        return self._end(session, EndReason.COMPLETED, actor, text)

    def kill(self, actor: str, text: str) -> dict[str, Any]:
        """The kill switch: end every open session and withdraw access. Never raises; safe to press twice.

        Each step is shielded from the failure of the others; what could not be saved or recorded is
        listed in the receipt's `problems` (the sessions are ended and access withdrawn regardless).
        """
        problems_before = len(self.problems)
        ended = [self._end(s, EndReason.KILLED, actor, text).id for s in list(self.sessions.values()) if s.open]
        if self.grant.level is not AccessLevel.NO_ACCESS:
            self._apply_grant(Grant(AccessLevel.NO_ACCESS, actor, self.clock.now()), "access_set", actor,
                              expired=False, details={"by": "kill"})
        self._audit_after("kill", actor, {"ended_sessions": ended, "text": text, "level": self.grant.level.value})
        return {"at": utc_iso(self.clock.now()), "ended_sessions": ended, "access": self.grant.to_dict(),
                "text": text, "problems": self.problems[problems_before:]}

    def record_denial(self, user: str, uid: int, op: str) -> None:
        """Audit a refused control request; at most one record per user per minute (the rest are counted).

        A user without a role could otherwise fill the year-long audit log, and delay everyone else
        behind an fsync each, by pipelining refused requests.
        """
        now = self.clock.now()
        window = self._denials.get(uid)
        if window is not None and now - window[0] < DENIAL_WINDOW:
            self._denials[uid] = (window[0], window[1] + 1)
            return
        suppressed = window[1] if window else 0
        self._denials[uid] = (now, 0)
        self._audit_after("permission_denied", user, {"operation": op, "uid": uid,
                                                      "refused_since_last_record": suppressed})

    # ---- uploads ---------------------------------------------------------------------------------------

    def active_session_id(self) -> str:
        """The one active session's ID (what an upload is for when none is named), or ""."""
        active = [s.id for s in self.sessions.values() if s.state is SessionState.ACTIVE]
        return active[0] if len(active) == 1 else ""

    def uploads_queued(self, report: dict[str, Any], session_id: str, actor: str) -> None:
        """De-identified files were queued for the portal (and refused ones quarantined): recorded, with the
        session (and so the engineer) they are for. Names no input file: their names can carry patients' names."""
        session = self.sessions.get(session_id)
        self._audit_after("upload_queued", actor, {
            **(self._session_details(session) if session else {"session_id": session_id}),
            "batch_id": report["batch_id"], "queued": report["queued"], "refused": report["refused"],
            "files": [e["name"] for e in report["entries"]]})

    def upload_finished(self, entry: dict[str, Any]) -> None:
        """The portal accepted or rejected a queued file (or it could not be sent): recorded."""
        session = self.sessions.get(str(entry.get("session_id") or ""))
        details = self._session_details(session) if session else {"session_id": entry.get("session_id") or ""}
        self._audit_after(f"upload_{entry['state']}", SYSTEM_ACTOR, {
            **details, "file": entry["name"], "sha256": entry["sha256"], "size": entry["size"],
            "case_id": entry.get("case_id", ""), "problems": entry.get("problems", [])})

    # ---- modality events -------------------------------------------------------------------------

    def record_event(self, kind: str, detail: str, actor: str) -> dict[str, int]:
        if kind not in EVENT_KINDS:
            raise UsageError(f"unknown event kind {kind!r}; use one of: {', '.join(EVENT_KINDS)}")
        key = f"{kind}s"
        self.counters[key] = self.counters.get(key, 0) + 1
        self._best_effort("save the modality counters", lambda: write_json(self._counters_path, self.counters))
        log.debug("modality event %s from %s: %s", kind, actor, detail)
        return dict(self.counters)

    # ---- time ------------------------------------------------------------------------------------

    def waiting(self) -> bool:
        """Whether something may fall due by the passing of time alone: a grant with an end, an open session,
        audit records not yet checkpointed. The daemon ticks every second while it is so, and rarely otherwise."""
        return self.grant.until is not None or any(s.open for s in self.sessions.values()) or self.audit.pending

    def tick(self) -> None:
        """Apply everything that happens by the passing of time; the daemon calls it every second while
        `waiting()`."""
        now = self.clock.now()
        replacement = expire(self.grant, now)
        if replacement is not None:
            self._apply_grant(replacement, "access_expired", SYSTEM_ACTOR, expired=True)
        for session in list(self.sessions.values()):
            if session.open and (reason := due_end(session, now, self.limits)) is not None:
                self._end(session, reason, SYSTEM_ACTOR, "")
        self._best_effort("write an audit checkpoint", self.audit.tick)

    def shutdown(self, reason: EndReason = EndReason.AGENT_RESTART) -> None:
        for session in list(self.sessions.values()):
            if session.open:
                self._end(session, reason, SYSTEM_ACTOR, "the agent is stopping")
        self._audit_after("agent_stopped", SYSTEM_ACTOR, {"version": __version__})

    # ---- internals -------------------------------------------------------------------------------

    def _new_id(self, given: str) -> str:
        if not given:
            return new_session_id(set(self.sessions))
        if given in self.sessions:
            raise RefusedError(f"session {given} is known already ({self.sessions[given].state.value}); the "
                               "engineer opens a new session at the portal")
        return given

    def _last_step(self) -> int:
        try:
            return int(read_json(self._totp_state_path)["last_step"])
        except FileNotFoundError:
            return -1
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Fail closed: with the used steps unknown, no code of the current window may be accepted again.
            log.error("%s is unreadable (%s); codes up to now are taken as used", self._totp_state_path, exc)
            return int(self.clock.now().timestamp()) // totp.STEP_S

    def _get(self, session_id: str) -> Session:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise NotFoundError(f"no session with ID {session_id!r}; check the number the engineer gave you "
                                f"(`servicegate session list` shows the known ones)") from None

    def _end(self, session: Session, reason: EndReason, actor: str, text: str) -> Session:
        ended = session.end(reason, self.clock.now(), text)
        self._record_end(ended, actor)
        return ended

    def _record_end(self, session: Session, actor: str) -> None:
        self._store(session)
        reason = session.end_reason.value if session.end_reason else None
        self._audit_after("session_ended", actor,
                          {**self._session_details(session), "end_reason": reason, "text": session.end_text})
        self.publish("session_changed", session.to_dict())

    def _audit_first(self, event: str, actor: str, details: dict[str, Any]) -> None:
        """Record a change that widens access before making it; refuse the change if that fails."""
        try:
            self.audit.append(event, actor, details)
        except (AuditError, OSError) as exc:
            self._problem(f"the audit log cannot be written ({exc})")
            raise AuditError(f"not done: the audit log cannot be written ({exc}); no remote access is granted "
                             f"while it fails. Check the disk of {self.config.paths.audit_dir}.") from exc

    def _audit_after(self, event: str, actor: str, details: dict[str, Any]) -> None:
        self._best_effort(f"write the audit record '{event}'", lambda: self.audit.append(event, actor, details))

    def _best_effort(self, what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except (AuditError, OSError) as exc:
            self._problem(f"could not {what}: {exc}")

    def _problem(self, text: str) -> None:
        log.error("%s", text)
        self.problems = [*self.problems, f"{utc_iso(self.clock.now())} {text}"][-KEEP_PROBLEMS:]

    def _store(self, session: Session) -> None:
        self.sessions[session.id] = session
        ended = [s for s in self.sessions.values() if not s.open]
        for old in sorted(ended, key=lambda s: s.state_since)[:-KEEP_ENDED_SESSIONS]:
            del self.sessions[old.id]
        self._best_effort("save the sessions",
                          lambda: write_json(self._sessions_path, [s.to_dict() for s in self.sessions.values()]))

    @staticmethod
    def _session_details(session: Session) -> dict[str, Any]:
        return {"session_id": session.id, "engineer_id": session.engineer.id,
                "engineer_name": session.engineer.name, "company": session.engineer.company,
                "level": (session.effective_level or session.requested_level).value, "reason": session.reason,
                "kind": session.kind.value, "state": session.state.value}

    def _load_sessions(self) -> dict[str, Session]:
        try:
            return {s["id"]: Session.from_dict(s) for s in read_json(self._sessions_path)}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Nothing is lost: the audit log has every session; this file is only the working copy.
            log.error("%s is unreadable (%s); starting with no sessions", self._sessions_path, exc)
            return {}

    def _load_counters(self) -> dict[str, int]:
        try:
            data = read_json(self._counters_path)
            return {str(k): int(v) for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            log.error("%s is unreadable (%s); counting from zero", self._counters_path, exc)
            return {}
