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

import base64
import functools
import logging
import re
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent import __version__, reporting, totp, upload
from agent.access import Grant, GrantStore, expire, new_grant, widens
from agent.audit_log import AuditLog
from agent.clock import Clock, parse_utc, utc_iso
from agent.config import Config
from agent.errors import (
    AuditError,
    ConfigError,
    NotFoundError,
    PortalError,
    RefusedError,
    ServiceGateError,
    UsageError,
)
from agent.exam_block import ExamBlock
from agent.fsutil import read_json, write_json
from agent.policy import Verdict, decide, load_restrictions
from agent.protocol import (
    EVENT_KINDS,
    SESSION_LEVELS,
    SYSTEM_ACTOR,
    AccessLevel,
    EndReason,
    SessionKind,
    SessionState,
    Urgency,
)
from agent.runner import Finished, Launch, Runner, RunnerError
from agent.screen import Hooks as ScreenHooks
from agent.screen import RelayRefused, ScreenShares, Share
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
from agent.taskrun import RELEASABLE, OutputHandler, Restores, TaskRun, Workspace, environment
from agent.tasks import build_argv, check_params, load_catalog
from agent.updates import Hooks, UpdateFlow
from telemetry.scrubber import Scrubber

log = logging.getLogger("servicegate.agent")

KEEP_ENDED_SESSIONS = 50  # how many ended sessions `session list` shows; the audit log keeps them all
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
KEEP_ENDED_TASKS = 100  # likewise for task runs (and their folders under <state_dir>/tasks)
RELEASE_MAX_BYTES = 2 * 1024 * 1024  # a released file travels in one outbox record
KEEP_PROBLEMS = 20
KEEP_SERVICE_REQUESTS = 100  # sent and refused ones, for `service_request_list`; a queued one stays until it is sent
DENIAL_WINDOW = timedelta(minutes=1)

Publish = Callable[[str, dict[str, Any]], None]


class Agent:
    def __init__(self, config: Config, clock: Clock, audit: AuditLog) -> None:
        self.config = config
        self.clock = clock
        self.audit = audit
        # Until the daemon wires it, what is published is kept (the ends of sessions and tasks at start), and told
        # once it is (`publish_held`): the portal and the e-mail notices hear of them too.
        self._held: list[tuple[str, dict[str, Any]]] = []
        self.publish: Publish = lambda event, data: self._held.append((event, data))
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
        # The portal's answer to a service request (agent.uplink.Uplink.request_service): its case number; None when
        # the portal cannot be reached now; PortalError when it refused the request. None here: no link.
        self.portal_service_request: Callable[[dict[str, Any]], str | None] | None = None
        # The daemon's sending thread: told when files or a service request were queued (a no-op without a link).
        self.wake_sender: Callable[[], None] = lambda: None
        # Where a file the technologist released goes: the outbox (kind `task_file`), set by the daemon.
        self.send_file: Callable[[dict[str, Any]], None] = lambda record: None
        # The daemon's task runner (agent.runner) and examination block (agent.exam_block); without a runner, task
        # requests are refused. `in_background` runs slow work (stopping a task waits its grace period) off the
        # event loop.
        self.runner: Runner | None = None
        self.exam_block: ExamBlock | None = None
        self.in_background: Callable[[Callable[[], None]], object] = lambda work: work()
        self._kills = 0  # kill switches at work (pressed twice at once: both finish before anything is accepted)
        self._block_withheld = False  # the kill switch released the examination block; nothing takes it again
        self.problems: list[str] = []  # the latest things that could not be saved or recorded
        # An upgrade site IT's installer announced: {"version", "at"}; open sessions end (`upgrade`) at "at".
        self.upgrade: dict[str, str] | None = None
        self._problem_texts: list[str] = []  # every one since start (the kill switch's receipt lists its own)
        self._denials: dict[int, tuple[datetime, int]] = {}  # uid -> (last recorded, refused since)
        state_dir = config.paths.state_dir
        self._grants = GrantStore(state_dir / "grant.json")
        self._sessions_path = state_dir / "sessions.json"
        self._counters_path = state_dir / "counters.json"
        self._totp_state_path = state_dir / "totp-state.json"  # the highest one-time-password step used
        self._tasks_path = state_dir / "tasks.json"
        self._kill_mark_path = state_dir / "kill.json"  # written first by the kill switch, removed when it is done
        self._requests_path = state_dir / "service-requests.json"
        t = config.tasks
        self.catalog = load_catalog(t.catalog if t.catalog != Path("") else None)
        self.restrictions = load_restrictions(t.restrictions if t.restrictions != Path("") else None)
        unknown = sorted({k for r in self.restrictions for k in (r.kinds or ())} - set(self.catalog.kinds))
        if unknown:
            raise ConfigError(f"{t.restrictions}: task kind {unknown[0]!r} is not in the catalog "
                              f"({self.catalog.source}); its kinds: {', '.join(self.catalog.kinds)}")
        self._restores = Restores(config.modality.tool)
        # What a task printed or wrote, and what the portal hears of it (parameters, file names), is scrubbed with this.
        self.scrubber = Scrubber(config.telemetry.scrub_patterns)
        self._outputs = OutputHandler(self.scrubber, self._upload_task_output)
        s = config.sessions
        self.limits = Limits(idle_timeout=timedelta(minutes=s.idle_timeout_min),
                             time_limit=timedelta(minutes=s.time_limit_min),
                             consent_timeout=timedelta(minutes=s.consent_timeout_min),
                             auth_timeout=timedelta(minutes=s.auth_timeout_min))
        now = clock.now()
        self.grant = self._grants.load(now)
        self.sessions: dict[str, Session] = self._load_sessions()
        self.counters: dict[str, int] = self._load_counters()
        self.task_runs: dict[str, TaskRun] = self._load_tasks()
        self.service_requests: dict[str, dict[str, Any]] = self._load_requests()
        # Updates from the service centre (agent.updates): the late-bound hooks follow what the daemon sets below.
        self.updates = UpdateFlow(state_dir, config.updates, clock, Hooks(
            audit_first=self._audit_first, audit_after=self._audit_after,
            publish=lambda event, data: self.publish(event, data), start_task=self._start_update_task,
            in_core=lambda change: self.in_core(change), wake_sender=lambda: self.wake_sender()), __version__,
            kept_by_site={"configuration": f"this site keeps its own threshold rules ([telemetry] thresholds = "
                                           f"{config.telemetry.thresholds}), which a configuration update would not "
                                           "change; site IT decides on them"}
            if config.telemetry.thresholds != Path("") else {})
        # Screen sharing (agent.screen): the relays of running share-screen tasks; the daemon connects them.
        self.screens = ScreenShares(config.screen.idle_timeout_min * 60, ScreenHooks(
            started=self._screen_started, ended=self._screen_ended, activity=self._screen_activity))
        self.audit.append("agent_started", SYSTEM_ACTOR, {"version": __version__, "level": self.grant.level.value})
        # Fail closed: a session that was open when the agent stopped does not resume, nor does a task (the daemon
        # has killed what was left of its processes; its restore command runs now).
        # A kill switch the agent stopped in the middle of ends them as `killed` (the daemon then finishes it).
        end_reason = EndReason.KILLED if self._kill_mark_path.exists() else EndReason.AGENT_RESTART
        for session in list(self.sessions.values()):
            if session.open:
                self._end(session, end_reason, SYSTEM_ACTOR, "the agent restarted")
        for run in list(self.task_runs.values()):
            if not run.ended:
                shutil.rmtree(Workspace.of(state_dir, run.id).output, ignore_errors=True)  # unchecked: never sent
                restore = self._restores.run(self.catalog.kinds[run.kind], run.id, Workspace.of(
                    state_dir, run.id).output) if run.kind in self.catalog.kinds and run.state == "running" else ""
                self._task_ended(replace(run, state="stopped", stop_reason="agent_restart", restore=restore,
                                         ended_at=now))
        self.tick()

    def publish_held(self, publish: Publish) -> None:
        """From now on publish through `publish`, starting with what was held since the agent started."""
        self.publish = publish
        held, self._held = self._held, []
        for event, data in held:
            publish(event, data)

    @property
    def killing(self) -> bool:
        """The kill switch is at work: no task and no session is accepted."""
        return self._kills > 0

    @property
    def kill_pending(self) -> dict[str, Any] | None:
        """The mark of a kill switch that did not finish (the agent stopped in the middle): the daemon finishes it."""
        try:
            return dict(read_json(self._kill_mark_path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.error("%s is unreadable (%s); finishing the kill switch anyway", self._kill_mark_path, exc)
            return {"actor": SYSTEM_ACTOR, "text": "an unreadable kill mark was found"}

    # ---- reading -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "agent_version": __version__,
            "now": utc_iso(self.clock.now()),
            "access": self.grant.to_dict(),
            "sessions": [s.to_dict() for s in self.sessions.values() if s.open],
            "examinations_blocked": any(s.blocks_examinations for s in self.sessions.values()),
            "examination_block": {"held": self.exam_block.held if self.exam_block else False,
                                  "enforced": bool(self.config.modality.tool)},
            "tasks": [r.to_dict() for r in self.task_runs.values() if not r.ended],
            "killing": self.killing,
            "counters": dict(self.counters),
            "portal": self.link_status(),
            "problems": list(self.problems),
            "upgrade": self.upgrade,
            "time_limit_min": self.config.sessions.time_limit_min,
            "console": {"hotkey": self.config.console.hotkey, "language": self.config.console.language,
                        "high_contrast": self.config.console.high_contrast},
        }

    def session_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in sorted(self.sessions.values(), key=lambda s: s.created_at)]

    # ---- access ----------------------------------------------------------------------------------

    def set_access(self, level: AccessLevel, until: datetime | None, actor: str) -> Grant:
        grant = new_grant(level, actor, self.clock.now(), until)
        self._apply_grant(grant, "access_set", actor, expired=False)
        return grant

    def _apply_grant(self, grant: Grant, event: str, actor: str, *, expired: bool,
                     details: dict[str, Any] | None = None, sessions_follow: bool = True) -> None:
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
        for session in list(self.sessions.values()) if sessions_follow else []:
            changed = after_grant_change(session, previous, grant, now, expired=expired)
            if changed is session:
                continue
            if changed.open:
                self._store(changed)
                self._audit_after("session_narrowed", actor, self._session_details(changed))
                self.publish("session_changed", changed.to_dict())
                self._stop_tasks(changed, "revoked", keep_allowed=True)
                self._withdraw_control(changed, actor)
            else:
                self._record_end(changed, actor)

    # ---- sessions: what widens access (recorded first) --------------------------------------------

    def request_session(self, engineer: Engineer, reason: str, level: AccessLevel, kind: SessionKind,
                        actor: str, session_id: str = "", case_id: str = "") -> Session:
        """The portal asks for a session under the standing grant (`session_id`: the portal's own ID for it)."""
        check_request(engineer, reason, level, case_id)
        self._check_not_killing()
        check_admissible(self.grant)
        self._check_engineer_limit(engineer)
        now = self.clock.now()
        requested = Session(id=self._new_id(session_id), kind=kind, engineer=engineer, reason=reason,
                            requested_level=level, state=SessionState.REQUESTED, created_at=now, state_since=now,
                            case_id=case_id)
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
                      kind: SessionKind, actor: str, case_id: str = "") -> Session:
        """The technologist typed in the ID the engineer read out, and the portal gave the session's details: it
        waits for the technologist's confirmation with the data-privacy disclaimer, whatever the standing grant.
        Claiming an ID that waits already shows it again."""
        self._check_not_killing()
        existing = self.sessions.get(session_id)
        if existing is not None and existing.state is SessionState.AWAITING_CONSENT and existing.claimed:
            return existing
        try:
            check_request(engineer, reason, level, case_id)
            self._check_engineer_limit(engineer)
        except (UsageError, RefusedError) as exc:
            self.claim_refused(session_id, actor, str(exc))
            raise
        now = self.clock.now()
        requested = Session(id=self._new_id(session_id), kind=kind, engineer=engineer, reason=reason,
                            requested_level=level, state=SessionState.REQUESTED, created_at=now, state_since=now,
                            claimed=True, case_id=case_id)
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
        self._check_not_killing()
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

    # ---- service tasks -----------------------------------------------------------------------------

    def request_task(self, session_id: str, engineer_id: str, kind: str, params: Mapping[str, Any],
                     actor: str, task_id: str = "") -> TaskRun:
        """The engineer asks for a task of the catalog: checked, decided (agent.policy), audited, and started, or
        left waiting for the technologist (application support), or refused with the reason. `task_id`: the
        portal's own ID for the run (else the agent makes one)."""
        session = self.sessions.get(session_id)
        details = {"session_id": session_id, "engineer_id": engineer_id, "kind": kind, "task_id": task_id,
                   "by": actor}
        try:
            if self.killing:
                raise RefusedError("the kill switch is at work: no task is accepted")
            if task_id and (not TASK_ID.fullmatch(task_id) or task_id in self.task_runs):
                raise UsageError(f"task ID {task_id[:48]!r} is taken or malformed (letters, digits, - and _, at "
                                 "most 40)")
            task = self.catalog.get(kind)
            values = check_params(task, params, [Path(d) for d in self.config.tasks.allowed_dirs])
            decision = decide(task, session, engineer_id, self.restrictions)
            if decision.verdict is Verdict.DENY:
                raise RefusedError(f"task {kind!r} refused: {decision.reason}")
            if self.runner is None:
                raise RefusedError("tasks cannot run: the task runner is not started")
            if decision.allowed and task.required_level is AccessLevel.FULL and self.config.modality.tool and \
                    self.exam_block is not None and not self.exam_block.held:
                raise RefusedError("examinations are not blocked yet (the modality has not confirmed the block): a "
                                   "task that needs full access waits for it; try again in a few seconds")
            running = sum(1 for r in self.task_runs.values() if r.state == "running")
            if running >= self.config.tasks.max_running:
                raise RefusedError(f"{running} tasks are running, the most [tasks] max_running allows; wait for one")
        except ServiceGateError as exc:
            self._audit_after("task_refused", engineer_id or actor, {**details, "why": str(exc)})
            raise
        assert session is not None  # decide() allows nothing without one
        now = self.clock.now()
        run = TaskRun(id=task_id or f"t{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}", kind=kind, title=task.title,
                      session_id=session_id, engineer_id=engineer_id, params=values,
                      state="waiting" if decision.verdict is Verdict.ASK else "running", created_at=now,
                      blocks=session.blocks_examinations and task.required_level is AccessLevel.FULL)
        self._audit_first("task_allowed" if decision.allowed else "task_awaiting_confirmation", engineer_id,
                          {**run.audit_details(), "reason": decision.reason, "by": actor})
        self.record_activity(session_id)
        if decision.allowed:
            return self._start_task(run)
        self.publish("task_changed", self._store_task(run).to_dict())  # the console asks the technologist
        return run

    def confirm_task(self, task_id: str, actor: str) -> TaskRun:
        """The technologist allows a waiting application-support task: decided again (the session may have
        changed), then started."""
        run = self._waiting_task(task_id)
        decision = decide(self.catalog.get(run.kind), self.sessions.get(run.session_id), run.engineer_id,
                          self.restrictions, confirmed=True)
        running = sum(1 for r in self.task_runs.values() if r.state == "running")
        why = "the kill switch is at work" if self.killing else "the task runner is not started" \
            if self.runner is None else f"{running} tasks are running, the most [tasks] max_running allows" \
            if running >= self.config.tasks.max_running else decision.reason
        if decision.verdict is not Verdict.ALLOW or why != decision.reason:
            self._task_ended(replace(run, state="refused", stop_reason=why, ended_at=self.clock.now()), actor)
            raise RefusedError(f"task {task_id} can no longer run: {why}")
        self._audit_first("task_confirmed", actor, {**run.audit_details(), "reason": decision.reason})
        return self._start_task(replace(run, state="running"))

    def decline_task(self, task_id: str, actor: str) -> TaskRun:
        run = self._waiting_task(task_id)
        return self._task_ended(replace(run, state="declined", stop_reason=f"declined by {actor}",
                                        ended_at=self.clock.now()), actor)

    def stop_task(self, task_id: str, actor: str, session_id: str = "") -> TaskRun:
        """Stop one running task (the technologist, or the engineer through the portal): SIGTERM, the grace period,
        then SIGKILL, in the background; the run ends as `stopped` and its restore command runs."""
        run = self.task_runs.get(task_id)
        if run is None or (session_id and run.session_id != session_id):
            raise NotFoundError(f"no task with ID {task_id!r}" + (f" in session {session_id}" if session_id else "")
                                + " (`servicegate task list` shows them)")
        if run.state == "waiting":
            return self.decline_task(task_id, actor)
        if run.state != "running":
            raise RefusedError(f"task {task_id} is not running ({run.state})")
        run = self._store_task(replace(run, stop_reason=f"stopped by {actor}"))
        self._stop_in_background([run.id])
        return run

    def release_task_files(self, task_id: str, actor: str, disclaimer_accepted: bool) -> TaskRun:
        """The technologist releases what a `files` task wrote, after the data-privacy disclaimer: each file (up to
        RELEASE_MAX_BYTES) goes to the portal through the outbox; larger ones stay quarantined."""
        run = self.task_runs.get(task_id)
        if run is None:
            raise NotFoundError(f"no task with ID {task_id!r} (`servicegate task list` shows them)")
        waiting = [f for f in run.files if str(f["handling"]).startswith(RELEASABLE)]
        if not waiting:
            raise RefusedError(f"task {task_id} has no files waiting for release (a stopped task's files are never "
                               "sent)")
        if not disclaimer_accepted:
            raise RefusedError("the data-privacy disclaimer must be accepted before files are released: they may "
                               "contain patient data")
        quarantine = Workspace.of(self.config.paths.state_dir, task_id).quarantine
        files = []
        for entry in run.files:
            if entry not in waiting:
                files.append(entry)
                continue
            path = quarantine / str(entry["name"])
            size = path.stat().st_size
            if size > RELEASE_MAX_BYTES:
                files.append({**entry, "handling": f"{RELEASABLE} (too large to release: {size} bytes, the limit is "
                                                   f"{RELEASE_MAX_BYTES})"})
                continue
            self._audit_first("task_file_released", actor, {
                "task_id": task_id, "session_id": run.session_id, "engineer_id": run.engineer_id,
                "file": entry["name"], "size": size, "sha256": entry["sha256"], "disclaimer_accepted": True})
            self.send_file({"task_id": task_id, "session_id": run.session_id, "name": entry["name"], "size": size,
                            "sha256": entry["sha256"], "content": base64.b64encode(path.read_bytes()).decode()})
            files.append({**entry, "handling": f"released by {actor}, sent"})
        released = self._store_task(replace(run, files=tuple(files)))
        self.publish("task_changed", released.to_dict())
        return released

    def task_list(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in sorted(self.task_runs.values(), key=lambda r: r.created_at)]

    def on_task_finished(self, finished: Finished) -> None:
        """The runner's callback, in the task's watcher thread: restore if it was stopped early, handle what it
        wrote (scrub, de-identify, quarantine), then record the end where the agent's state lives."""
        run = self.in_core(lambda: self.task_runs.get(finished.task_id))
        if run is None:
            log.error("the runner reported task %s, which the agent does not know", finished.task_id)
            return
        workspace = Workspace.of(self.config.paths.state_dir, run.id)
        restore = self._restore(run.id) if finished.outcome in ("stopped", "timeout") else ""
        try:
            done = self._outputs.handle(run, finished, workspace)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the run ends and nothing unchecked is kept
            log.exception("task %s: its output could not be handled", run.id)
            shutil.rmtree(workspace.output, ignore_errors=True)  # may hold what was not de-identified
            done = replace(run, returncode=finished.returncode,
                           stderr=f"its output could not be handled ({type(exc).__name__}: {exc}); what it wrote "
                                  "was deleted, nothing was sent")
            finished = replace(finished, outcome="failed")
        state = finished.outcome
        stop_reason = "" if state in ("completed", "failed") else run.stop_reason or state  # it may end by itself
        self.in_core(lambda: self._task_ended(replace(done, state=state, stop_reason=stop_reason,
                                                      restore=restore,
                                                      ended_at=self.clock.now())))

    def _start_task(self, run: TaskRun) -> TaskRun:
        task = self.catalog.get(run.kind)
        workspace = Workspace.of(self.config.paths.state_dir, run.id)
        assert self.runner is not None
        try:
            workspace.create()
            argv = build_argv(task.command, run.params, modality=self.config.modality.tool, output=workspace.output)
            env = environment(workspace, run, log_files=self.config.telemetry.log_files,
                              allowed_dirs=self.config.tasks.allowed_dirs,
                              pattern_dir=self.config.updates.virus_pattern_dir,
                              update_dir=self.updates.store.folder, config_dir=self.updates.store.configuration)
            if task.screen:
                session = self.sessions.get(run.session_id)
                env.update(self.screens.prepare(
                    run.id, run.session_id, run.engineer_id, display=self.config.screen.display,
                    control_possible=session is not None and session.effective_level is AccessLevel.FULL))
            self._store_task(run)  # before it starts: its end may be reported at once
            self.runner.start(Launch(task_id=run.id, argv=argv, cwd=workspace.root, env=env,
                                     timeout_s=task.timeout_s, output_cap=self.config.tasks.output_cap_kb * 1024))
            if task.screen:
                self.screens.start(run.id)
        except (OSError, RunnerError, UsageError, RelayRefused) as exc:
            return self._task_ended(replace(run, state="failed", stderr=f"it could not start: {exc}",
                                            ended_at=self.clock.now()))
        self.publish("task_changed", run.to_dict())
        return run

    def _task_ended(self, run: TaskRun, actor: str = SYSTEM_ACTOR) -> TaskRun:
        self.screens.stop(run.id)  # a share's relay closes with its VNC server
        self._store_task(run)
        self._audit_after("task_ended", actor, run.audit_details())
        self.publish("task_changed", run.to_dict())
        if not run.session_id:  # the task of no session: an update's installation
            self.updates.task_ended(run.id, run.state, (run.stderr or run.stdout or run.stop_reason).strip()[-500:])
        return run

    def _start_update_task(self, kind: str, params: dict[str, str], actor: str) -> str:
        """The catalog's task that installs an approved update (agent.updates): no session, no engineer; the kill
        switch stops it like any task. Its ID, or RefusedError when it cannot start."""
        if self.killing:
            raise RefusedError("the kill switch is at work: nothing is installed now")
        if self.runner is None:
            raise RefusedError("tasks cannot run: the task runner is not started")
        task = self.catalog.get(kind)
        if not task.update:
            raise RefusedError(f"the catalog's {kind!r} is not a task that installs updates (update = true)")
        values = check_params(task, params, [self.updates.store.staging])
        now = self.clock.now()
        run = TaskRun(id=f"t{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}", kind=kind, title=task.title, session_id="",
                      engineer_id="", params=values, state="running", created_at=now)
        self._audit_after("task_allowed", actor, {**run.audit_details(), "reason": "an approved update", "by": actor})
        started = self._start_task(run)
        if started.ended:
            raise RefusedError(started.stderr)
        return started.id

    # ---- screen sharing (agent.screen) --------------------------------------------------------------------------

    def set_screen_control(self, session_id: str, allow: bool, actor: str) -> list[dict[str, Any]]:
        """The technologist allows the engineer to control the console, or takes it back (the banner)."""
        session = self.sessions.get(session_id)
        sharing = self.screens.of_session(session_id)
        if session is None or not sharing:
            raise RefusedError(f"session {session_id} shares no screen now")
        shares = [s for s in sharing if s.control_possible]
        if allow and (session.effective_level is not AccessLevel.FULL or not shares):
            raise RefusedError("control needs full access (examinations blocked): the engineer only watches in this "
                               "session")
        if allow and self.config.modality.tool and self.exam_block is not None and not self.exam_block.held:
            raise RefusedError("examinations are not blocked yet (the modality has not confirmed the block): control "
                               "waits for it; try again in a few seconds")
        for share in shares:  # what widens access is recorded first; taking it back, as it happens
            (self._audit_first if allow else self._audit_after)("screen_control_changed", actor,
                                                                {**share.details(), "control": allow})
            share.filter.control = allow
            self.publish("screen_changed", share.view("sharing"))
        return [share.view("sharing") for share in shares]

    def _withdraw_control(self, session: Session, actor: str) -> None:
        """The session lost full access: its shares are view-only from the next message on, for good (x11vnc keeps
        running without -viewonly; the relay's filter drops the input)."""
        if session.effective_level is AccessLevel.FULL:
            return
        for share in self.screens.of_session(session.id):
            if share.control_possible:
                share.control_possible = False
                if share.filter.control:
                    share.filter.control = False
                    self._audit_after("screen_control_changed", actor, {**share.details(), "control": False,
                                                                        "why": "the session lost full access"})
                self.publish("screen_changed", share.view("sharing"))

    def screen_list(self) -> list[dict[str, Any]]:
        return [share.view("sharing" if share.connected else "starting")
                for share in self.screens.shares.values()]

    def _screen_started(self, share: Share) -> None:
        self._audit_after("screen_share_started", SYSTEM_ACTOR, {**share.details(),
                                                                 "control": share.filter.control,
                                                                 "control_possible": share.control_possible})
        self.publish("screen_changed", share.view("sharing"))

    def _screen_ended(self, share: Share, reason: str, stats: dict[str, Any]) -> None:
        """The relay ended, whatever the cause: recorded with what it carried, and the VNC server stopped."""
        self._audit_after("screen_share_ended", SYSTEM_ACTOR, {**share.details(), "reason": reason,
                                                               **stats})
        self.publish("screen_changed", {**share.view("ended"), "reason": reason})
        run = self.task_runs.get(share.task_id)
        if run is not None and run.state == "running" and not run.stop_reason:
            self._store_task(replace(run, stop_reason=f"screen sharing ended: {reason}"))
            self._stop_in_background([run.id])

    def _screen_activity(self, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is not None and session.state is SessionState.ACTIVE:
            self.record_activity(session_id)

    def _store_task(self, run: TaskRun) -> TaskRun:
        self.task_runs[run.id] = run
        self._sync_block()
        ended = sorted((r for r in self.task_runs.values() if r.ended), key=lambda r: r.created_at)
        for old in ended[:-KEEP_ENDED_TASKS]:
            del self.task_runs[old.id]
            shutil.rmtree(Workspace.of(self.config.paths.state_dir, old.id).root, ignore_errors=True)
        self._best_effort("save the task runs",
                          lambda: write_json(self._tasks_path, [r.to_dict() for r in self.task_runs.values()]))
        return run

    def _waiting_task(self, task_id: str) -> TaskRun:
        run = self.task_runs.get(task_id)
        if run is None or run.state != "waiting":
            raise RefusedError(f"task {task_id} is not waiting for confirmation"
                               + (f" ({run.state})" if run else " (no such task)"))
        return run

    def _task_allowed(self, run: TaskRun, session: Session) -> bool:
        task = self.catalog.kinds.get(run.kind)
        return task is not None and decide(task, session, run.engineer_id, self.restrictions,
                                           confirmed=True).allowed

    def _stop_tasks(self, session: Session, reason: str, *, keep_allowed: bool = False) -> None:
        """Stop the session's tasks, with `reason`: all of them, or (`keep_allowed`: the session was narrowed) those
        its new level no longer allows."""
        stopping = []
        for run in list(self.task_runs.values()):
            if run.session_id != session.id or run.ended or (keep_allowed and self._task_allowed(run, session)):
                continue
            if run.state == "waiting":
                self._task_ended(replace(run, state="stopped", stop_reason=reason, ended_at=self.clock.now()))
            elif not run.stop_reason:
                self._store_task(replace(run, stop_reason=reason))
                stopping.append(run.id)
        if stopping:
            self._stop_in_background(stopping)

    def _stop_in_background(self, task_ids: list[str]) -> None:
        runner = self.runner
        if runner is None:
            return

        def stop() -> None:
            for task_id in task_ids:
                runner.stop(task_id)

        self.in_background(stop)

    def _upload_task_output(self, paths: list[Path], session_id: str) -> dict[str, Any]:
        """A `dicom` task's files: de-identified and queued (agent.upload) for the session's case, recorded like any
        upload."""
        report = upload.prepare(paths, self.config.paths.state_dir, self.config.paths.anonymizer_key,
                                case_id=self.in_core(lambda: self.case_of(session_id)), session_id=session_id).to_dict()
        self.in_core(lambda: self.uploads_queued(report, session_id, SYSTEM_ACTOR))
        self.wake_sender()
        return report

    # ---- the kill switch -----------------------------------------------------------------------------

    def kill(self, actor: str, text: str) -> dict[str, Any]:
        """The kill switch (docs/kill-switch.md): one call that ends everything, whatever fails on the way.

        In the daemon it runs in a worker thread, so its waits never hold the event loop; every change of the
        agent's state goes through `in_core`. The steps, each shielded from the failure of the others (a failure is
        listed in the receipt and in the audit record, which is written in any case): a mark on disk first (an agent
        that stops in the middle finishes the job at its next start); access to no-access, and no task or session
        accepted from here on; every task stopped (SIGTERM, the grace period, SIGKILL, confirmed gone); each
        interrupted task's restore command; the examination block released; a software update handed to the upgrade
        service stopped before its switch (agent.updates); every open session ended with
        `killed` (which tells the portal and sends the e-mail notices); the audit record. Safe to press twice.
        """
        started = time.monotonic()
        problems: list[str] = []

        def step(what: str, action: Callable[[], Any]) -> Any:
            try:
                return action()
            except Exception as exc:  # noqa: BLE001 - the kill switch goes on whatever fails
                problems.append(f"could not {what}: {exc}")
                log.error("kill switch: could not %s: %s", what, exc)
                return None

        step("write the kill mark", lambda: write_json(self._kill_mark_path, {"actor": actor, "text": text}))
        before = self.in_core(lambda: len(self._problem_texts))
        step("withdraw access", lambda: self.in_core(lambda: self._kill_begin(actor)))
        runner = self.runner
        report = step("stop the tasks", lambda: runner.stop_all(self.config.tasks.grace_s)) if runner else None
        restores: dict[str, str] = {}
        for task_id in report.interrupted if report else ():
            restores[task_id] = step(f"restore after task {task_id}", functools.partial(self._restore, task_id)) or ""
        released = step("release the examination block", self._release_block)
        cancelled = step("stop a handed-over software update",
                         lambda: self.in_core(lambda: self.updates.cancel_upgrades(actor))) or []
        if released is not None and not released[0]:
            problems.append(f"could not release the examination block: {released[1]}")
        stopped = {"containment": report.containment, "stopped_tasks": list(report.interrupted),
                   "forced": report.forced, "remaining_pids": list(report.remaining)} if report else {}
        stopped["cancelled_updates"] = list(cancelled)
        if report is not None and report.remaining:
            problems.append(f"task processes still alive after the kill: {list(report.remaining)}")
        receipt: dict[str, Any] = step("end the sessions", lambda: self.in_core(lambda: self._kill_end(
            actor, text, {**stopped, "restores": restores, "block_released": bool(released and released[0]),
                          "elapsed_ms": round((time.monotonic() - started) * 1000)}, problems, before))) or {}
        if not receipt:  # the agent's state could not be reached: record what happened anyway
            self._audit_after("kill", actor, {"text": text, "problems": problems, **stopped})
            self._checkpoint_now()
            receipt = {"at": utc_iso(self.clock.now()), "text": text, "problems": problems, "ended_sessions": [],
                       "access": self.grant.to_dict(), **stopped}
        step("remove the kill mark", lambda: self._kill_mark_path.unlink(missing_ok=True))
        return receipt

    def _restore(self, task_id: str) -> str:
        """Run a stopped task's restore command (from a worker thread)."""
        run = self.in_core(lambda: self.task_runs.get(task_id))
        if run is None or run.kind not in self.catalog.kinds:
            return ""
        return self._restores.run(self.catalog.kinds[run.kind], run.id,
                                  Workspace.of(self.config.paths.state_dir, task_id).output)

    def _kill_begin(self, actor: str) -> None:
        self._kills += 1
        for run in list(self.task_runs.values()):
            if run.state == "waiting":
                self._task_ended(replace(run, state="stopped", stop_reason="killed", ended_at=self.clock.now()))
            elif run.state == "running":
                self._store_task(replace(run, stop_reason="killed"))
        if self.grant.level is not AccessLevel.NO_ACCESS:
            self._apply_grant(Grant(AccessLevel.NO_ACCESS, actor, self.clock.now()), "access_set", actor,
                              expired=False, details={"by": "kill"}, sessions_follow=False)

    def _release_block(self) -> tuple[bool, str]:
        """The kill switch's release, once the tasks are gone and restored (from its worker thread)."""
        if self.exam_block is not None:
            self.in_core(self._withhold_block)
            return self.exam_block.release_now()
        return True, "no examination block is held by this agent"

    def _withhold_block(self) -> None:
        self._block_withheld = True

    def _kill_end(self, actor: str, text: str, steps: dict[str, Any], problems: list[str],
                  problems_before: int) -> dict[str, Any]:
        try:
            ended = [self._end(s, EndReason.KILLED, actor, text).id for s in list(self.sessions.values()) if s.open]
        finally:
            self._kills -= 1
            self._block_withheld = self.killing  # a second kill still at work keeps it released
            self._sync_block()
        self._audit_after("kill", actor, {"ended_sessions": ended, "text": text, "level": self.grant.level.value,
                                          **steps, "problems": [*problems, *self._problem_texts[problems_before:]]})
        self._checkpoint_now()
        return {"at": utc_iso(self.clock.now()), "ended_sessions": ended, "access": self.grant.to_dict(),
                "text": text, **steps, "problems": [*problems, *self._problem_texts[problems_before:]]}

    def block_changed(self, held: bool) -> None:
        """The examination block was set or released (agent.exam_block's thread, through the event loop)."""
        self._audit_after("examination_block_held" if held else "examination_block_released", SYSTEM_ACTOR,
                          {"lease_s": self.config.modality.block_lease_s})
        self.publish("examination_block", {"held": held})

    def block_problem(self, text: str) -> None:
        self._problem(text)
        self._audit_after("examination_block_failed", SYSTEM_ACTOR, {"why": text})

    def _sync_block(self) -> None:
        """Examinations stay blocked while a FULL session is active, and after it until each task it started has
        stopped and been restored; the kill switch lets go only at its own step (after the restores)."""
        if self.exam_block is not None:
            wanted = any(s.blocks_examinations for s in self.sessions.values()) or \
                any(r.blocks and not r.ended for r in self.task_runs.values())
            self.exam_block.want(wanted and not self._block_withheld)

    # ---- uploads ---------------------------------------------------------------------------------------

    def case_of(self, session_id: str) -> str:
        """The service case a session is for ("" when none): what its uploads are filed under at the portal."""
        session = self.sessions.get(session_id)
        return session.case_id if session is not None else ""

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
        self.publish("upload_changed", {"session_id": session_id, "batch_id": report["batch_id"],
                                        "files": [e["name"] for e in report["entries"]]})

    def upload_finished(self, entry: dict[str, Any]) -> None:
        """The portal accepted or rejected a queued file (or it could not be sent): recorded."""
        session = self.sessions.get(str(entry.get("session_id") or ""))
        details = self._session_details(session) if session else {"session_id": entry.get("session_id") or ""}
        self._audit_after(f"upload_{entry['state']}", SYSTEM_ACTOR, {
            **details, "file": entry["name"], "sha256": entry["sha256"], "size": entry["size"],
            "case_id": entry.get("case_id", ""), "problems": entry.get("problems", [])})
        self.publish("upload_changed", entry)

    # ---- service requests ------------------------------------------------------------------------------

    def request_service(self, text: str, urgency: Urgency, actor: str) -> dict[str, Any]:
        """The technologist asks the service centre for help. In the daemon it runs in a worker thread, as it waits
        for the portal; the agent's state changes through `in_core`.

        The description is scrubbed first (a patient's name typed in goes no further than this), and a technical
        report of the system goes with it (`reporting.system_report`). The portal answers a case number: `sent`.
        When the portal cannot be reached, the request is kept, report and all, in `service-requests.json` and the
        daemon's sending thread sends it later (`send_service_requests`): `queued`. When the portal refuses it
        (sending it again would not help), it is kept as `refused` and RefusedError says why."""
        now = self.clock.now()
        counters = self.in_core(lambda: dict(self.counters))
        try:
            report = reporting.system_report(self.config, counters, self.scrubber.scrub)
        except Exception as exc:  # noqa: BLE001 - a call for help goes out without its report rather than not at all
            log.exception("the system report for a service request could not be made")
            report = {"problem": f"the system report could not be made ({type(exc).__name__})"}
        request: dict[str, Any] = {
            "request_id": f"r{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}", "requested_at": utc_iso(now),
            "requested_by": actor, "urgency": urgency.value, "text": self.scrubber.scrub(text), "state": "queued",
            "case_id": "", "sent_at": None, "why": "", "report": report}
        case_id, why = self._send_request(request)
        entry = self.in_core(lambda: self._service_requested(request, case_id, why, actor))
        if entry["state"] == "refused":
            raise RefusedError(f"the service centre refused the request ({why}); please call the service centre")
        if entry["state"] == "sent":
            message = f"The service centre has your request: case number {case_id}."
        else:
            self.wake_sender()  # it tries again at once, then with backoff until the portal answers
            message = ("The service centre cannot be reached now. Your request is kept on this device and sent as soon "
                       "as it can be reached; its case number is shown then.")
            if urgency is Urgency.HIGH:
                message += " As the scanner cannot be used, please also call the service centre."
        return {**entry, "message": message}

    def send_service_requests(self) -> bool:
        """Send the queued service requests, oldest first (the daemon's sending thread). False when the portal cannot
        be reached: the rest stay queued for the next try."""
        queued = self.in_core(lambda: [dict(r) for r in self.service_requests.values() if r["state"] == "queued"])
        for request in queued:
            case_id, why = self._send_request(request)
            if not case_id and not why:
                return False
            self.in_core(functools.partial(self._service_request_settled, request["request_id"], case_id, why))
        return True

    def service_request_list(self) -> list[dict[str, Any]]:
        return [_listed(r) for r in self.service_requests.values()]

    def _send_request(self, request: dict[str, Any]) -> tuple[str, str]:
        """(the case number, "") when the portal took the request; ("", why) when it refused it; ("", "") when it
        cannot be reached now. It gets what the service centre needs, not who asked (a local user name)."""
        send = self.portal_service_request
        try:
            case_id = send({key: request[key] for key in ("request_id", "requested_at", "urgency", "text", "report")}
                           ) if send is not None else None
        except PortalError as exc:
            return "", str(exc)
        return case_id or "", ""

    def _service_requested(self, request: dict[str, Any], case_id: str, why: str, actor: str) -> dict[str, Any]:
        """A new request, sent, refused or to be sent later: saved (a queued one must be, or the technologist is
        told), recorded and published."""
        self._settle(request, case_id, why)
        self.service_requests[request["request_id"]] = request
        try:
            self._save_requests()
        except OSError as exc:
            if request["state"] == "queued":
                del self.service_requests[request["request_id"]]
                self._problem(f"a service request could not be kept: {exc}")
                raise ServiceGateError("the service centre cannot be reached, and the request could not be kept on "
                                       f"this device to be sent later ({exc}); please call the service centre") from exc
            self._problem(f"could not save the service requests: {exc}")
        self._audit_after("service_requested", actor, {key: request[key] for key in (
            "request_id", "urgency", "text", "state", "case_id", "why")})
        self.publish("service_request_changed", _listed(request))
        return _listed(request)

    def _service_request_settled(self, request_id: str, case_id: str, why: str) -> None:
        """A queued request was sent (its case number came) or refused by the portal."""
        request = self.service_requests.get(request_id)
        if request is None or request["state"] != "queued":
            return
        self._settle(request, case_id, why)
        self._best_effort("save the service requests", self._save_requests)
        self._audit_after("service_request_sent" if case_id else "service_request_refused", SYSTEM_ACTOR, {
            key: request[key] for key in ("request_id", "urgency", "requested_by", "requested_at", "case_id", "why")})
        self.publish("service_request_changed", _listed(request))

    def _settle(self, request: dict[str, Any], case_id: str, why: str) -> None:
        if case_id:
            request.update(state="sent", case_id=case_id, sent_at=utc_iso(self.clock.now()))
        elif why:
            request.update(state="refused", why=why)
        if request["state"] != "queued":
            request.pop("report", None)  # the portal has it (or will never take it): it was only kept to be sent

    def _save_requests(self) -> None:
        done = [r for r in self.service_requests.values() if r["state"] != "queued"]
        for old in done[:-KEEP_SERVICE_REQUESTS]:
            del self.service_requests[old["request_id"]]
        write_json(self._requests_path, list(self.service_requests.values()))

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
        return self.grant.until is not None or any(s.open for s in self.sessions.values()) or self.audit.pending \
            or self.upgrade is not None or self.updates.waiting()

    def tick(self) -> None:
        """Apply everything that happens by the passing of time; the daemon calls it every second while
        `waiting()`."""
        now = self.clock.now()
        replacement = expire(self.grant, now)
        if replacement is not None:
            self._apply_grant(replacement, "access_expired", SYSTEM_ACTOR, expired=True)
        busy = {r.session_id for r in self.task_runs.values() if r.state == "running"}
        for session in list(self.sessions.values()):
            if session.id in busy and session.state is SessionState.ACTIVE:
                session = replace(session, last_activity=now)  # a task the engineer started is not idleness
                self.sessions[session.id] = session
            if session.open and (reason := due_end(session, now, self.limits)) is not None:
                self._end(session, reason, SYSTEM_ACTOR, "")
        self.updates.tick()
        if self.upgrade is not None and now >= parse_utc(self.upgrade["at"]):
            for session in list(self.sessions.values()):
                if session.open:
                    self._end(session, EndReason.UPGRADE, SYSTEM_ACTOR, "")
        self._best_effort("write an audit checkpoint", self.audit.tick)

    def announce_upgrade(self, version: str, in_s: int, actor: str) -> dict[str, str]:
        """Site IT's installer is about to switch to `version`: the console warns, open sessions end (`upgrade`) in
        `in_s` seconds, and no session is accepted until the agent restarts."""
        self.upgrade = {"version": version, "at": utc_iso(self.clock.now() + timedelta(seconds=in_s))}
        self._audit_after("upgrade_announced", actor, dict(self.upgrade))
        self.publish("upgrade_announced", dict(self.upgrade))
        return dict(self.upgrade)

    def stopping(self) -> None:
        """The agent stops: the tasks still running are stopped next (the daemon's runner), with this reason."""
        for run in list(self.task_runs.values()):
            if run.state == "running" and not run.stop_reason:
                self._store_task(replace(run, stop_reason="agent_stopped"))

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

    def _check_not_killing(self) -> None:
        if self.killing:
            raise RefusedError("the kill switch is at work: no session is accepted now; try again in a moment")
        if self.upgrade is not None:
            raise RefusedError(f"ServiceGate is being updated to {self.upgrade['version']}: no session is accepted "
                               "until it has restarted; try again in a few minutes")

    def _check_engineer_limit(self, engineer: Engineer) -> None:
        """Site IT's limit of open sessions per engineer (`[sessions] max_per_engineer`, 0: none)."""
        limit = self.config.sessions.max_per_engineer
        open_now = sum(s.open and s.engineer.id == engineer.id for s in self.sessions.values())
        if limit and open_now >= limit:
            raise RefusedError(f"engineer {engineer.id} has {open_now} open session(s) already, and site IT allows "
                               f"{limit} at once ([sessions] max_per_engineer): end one first")

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
        self._stop_tasks(session, session.end_reason.value if session.end_reason else "session_ended")
        reason = session.end_reason.value if session.end_reason else None
        self._audit_after("session_ended", actor,
                          {**self._session_details(session), "end_reason": reason, "text": session.end_text})
        self._checkpoint_now()
        self.publish("session_changed", session.to_dict())

    def _checkpoint_now(self) -> None:
        """A signed checkpoint at once (its head goes to the portal): when a session ends and after the kill switch,
        so that cutting a session's records off the end of the log shows in `audit verify --against-portal` right
        away, not only after the checkpoint interval."""
        self._best_effort("write an audit checkpoint", self.audit.checkpoint)

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
        self._problem_texts.append(self.problems[-1])
        del self._problem_texts[:-1000]

    def _store(self, session: Session) -> None:
        self.sessions[session.id] = session
        ended = [s for s in self.sessions.values() if not s.open]
        for old in sorted(ended, key=lambda s: s.state_since)[:-KEEP_ENDED_SESSIONS]:
            del self.sessions[old.id]
        self._best_effort("save the sessions",
                          lambda: write_json(self._sessions_path, [s.to_dict() for s in self.sessions.values()]))
        self._sync_block()

    @staticmethod
    def _session_details(session: Session) -> dict[str, Any]:
        return {"session_id": session.id, "engineer_id": session.engineer.id,
                "engineer_name": session.engineer.name, "company": session.engineer.company,
                "level": (session.effective_level or session.requested_level).value, "reason": session.reason,
                "kind": session.kind.value, "state": session.state.value, "case_id": session.case_id}

    def _load_sessions(self) -> dict[str, Session]:
        try:
            return {s["id"]: Session.from_dict(s) for s in read_json(self._sessions_path)}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Nothing is lost: the audit log has every session; this file is only the working copy.
            log.error("%s is unreadable (%s); starting with no sessions", self._sessions_path, exc)
            return {}

    def _load_tasks(self) -> dict[str, TaskRun]:
        try:
            return {r["id"]: TaskRun.from_dict(r) for r in read_json(self._tasks_path)}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("%s is unreadable (%s); starting with no task runs", self._tasks_path, exc)
            return {}

    def _load_requests(self) -> dict[str, dict[str, Any]]:
        try:
            return {r["request_id"]: r for r in read_json(self._requests_path)}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # The audit log has every request and the portal every one it got; a queued one is lost with this file.
            log.error("%s is unreadable (%s); starting with no service requests", self._requests_path, exc)
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


def _listed(request: dict[str, Any]) -> dict[str, Any]:
    """A service request as the control API shows it: without the report, which only waits here to be sent."""
    return {key: value for key, value in request.items() if key != "report"}
