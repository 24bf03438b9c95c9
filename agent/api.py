"""The control API's operations, mapped onto the Agent: argument checking and nothing else.

Each handler takes the request's arguments and the caller (whose user name becomes the audit
record's actor) and returns what goes back as `result`. Roles were checked by the server
before the handler runs, from `protocol.OPERATIONS`. `hello` and `watch` are answered by the
server itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from agent import upload
from agent.audit_log import public_key_path
from agent.audit_verify import PortalHead, export, to_csv, verify
from agent.clock import parse_utc
from agent.core import Agent
from agent.errors import RefusedError, ServiceGateError, UsageError
from agent.protocol import (
    OPERATIONS,
    SYSTEM_ACTOR,
    UPGRADE_WARN_MAX_S,
    AccessLevel,
    Request,
    SessionKind,
    Urgency,
    service_request_text,
)
from agent.roles import Caller
from agent.session import Engineer

Handler = Callable[[Agent, dict[str, Any], Caller], Any]

# The portal, as the caller of what its inbox messages ask for (its messages come over the pinned mutual-TLS link,
# not the control socket, so no peer credentials): the audit records name it as the actor.
PORTAL = Caller(pid=0, uid=-1, gid=-1, user="portal", roles=frozenset())
# Inbox message type -> the control operation it asks for.
INBOX_OPERATIONS = {"session_request": "session_request", "session_authenticate": "session_authenticate",
                    "session_end": "session_end", "task_request": "task_run", "task_stop": "task_stop",
                    "update_offer": "update_offer"}
SESSION_ID_DIGITS = 8


def _text(args: dict[str, Any], key: str, *, required: bool = False, default: str = "") -> str:
    value = args.get(key, default)
    if not isinstance(value, str):
        raise UsageError(f"'{key}' must be text, not {value!r}")
    if required and not value.strip():
        raise UsageError(f"'{key}' is required")
    return value


def _time(args: dict[str, Any], key: str) -> datetime | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"'{key}' must be an ISO 8601 time with offset, not {value!r}")
    try:
        return parse_utc(value)
    except (ValueError, OverflowError):
        raise UsageError(f"'{key}' = {value!r} is not an ISO 8601 time with offset "
                         f"(example: 2026-11-28T14:00:00+01:00)") from None


def _level(args: dict[str, Any], key: str = "level") -> AccessLevel | None:
    value = args.get(key)
    return None if value is None else AccessLevel.parse(_text(args, key))


def _access_set(agent: Agent, args: dict[str, Any], caller: Caller) -> Any:
    level = _level(args)
    if level is None:
        raise UsageError("'level' is required: no-access | limited | permanent-limited | full")
    return agent.set_access(level, _time(args, "until"), caller.user).to_dict()


def _kind(args: dict[str, Any]) -> SessionKind:
    kind_text = _text(args, "kind", default=SessionKind.SERVICE.value)
    try:
        return SessionKind(kind_text)
    except ValueError:
        raise UsageError(f"unknown session kind {kind_text!r}; use 'service' or 'application-support'") from None


def _session_request(agent: Agent, args: dict[str, Any], caller: Caller) -> Any:
    engineer = Engineer(_text(args, "engineer_id"), _text(args, "name"), _text(args, "company"))
    level = _level(args) or AccessLevel.LIMITED
    session_id = _text(args, "session_id")
    if session_id:
        session_id = session_id_of(session_id)
    return agent.request_session(engineer, _text(args, "reason"), level, _kind(args), caller.user,
                                 session_id, _text(args, "case_id")).to_dict()


def session_id_of(text: str) -> str:
    """The 8 digits of a session ID as typed or pasted ("1234 5678", "1234-5678"), or UsageError."""
    digits = "".join(c for c in text if c not in " -\t")
    if len(digits) != SESSION_ID_DIGITS or not digits.isdigit():
        raise UsageError(f"{text.strip()[:20]!r} is not a session ID: it has {SESSION_ID_DIGITS} digits, like "
                         "1234 5678; check the number with the engineer")
    return digits


def _session_claim(agent: Agent, args: dict[str, Any], caller: Caller) -> Any:
    """Offloaded: it waits for the portal in a worker thread, and changes the agent's state through `in_core`."""
    typed = _text(args, "session_id", required=True)
    try:
        session_id = session_id_of(typed)
    except UsageError as exc:
        why = str(exc)
        agent.in_core(lambda: agent.claim_refused(typed.strip()[:20], caller.user, why))
        raise
    if agent.portal_claim is None:
        raise RefusedError(f"cannot claim a session: {agent.link_status().get('error') or 'no link to the portal'}")
    try:
        details = agent.portal_claim(session_id)
    except ServiceGateError as exc:
        why = str(exc)
        agent.in_core(lambda: agent.claim_refused(session_id, caller.user, why))
        raise
    engineer = Engineer(_text(details, "engineer_id"), _text(details, "name"), _text(details, "company"))
    level = _level(details) or AccessLevel.LIMITED
    return agent.in_core(lambda: agent.claim_session(session_id, engineer, _text(details, "reason"), level,
                                                     _kind(details), caller.user, _text(details, "case_id")).to_dict())


def _session_confirm(agent: Agent, args: dict[str, Any], caller: Caller) -> Any:
    accepted = args.get("disclaimer_accepted") is True
    return agent.confirm_session(_text(args, "session_id", required=True), _level(args), caller.user,
                                 accepted).to_dict()


def _session_end(agent: Agent, args: dict[str, Any], caller: Caller) -> Any:
    session_id = _text(args, "session_id") or None
    return agent.end_session(session_id, caller.user, _text(args, "text")).to_dict()


def _upload(agent: Agent, args: dict[str, Any], caller: Caller) -> Any:
    """Offloaded: de-identification reads and writes every file; the queue's change is recorded through `in_core`."""
    paths = args.get("paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise UsageError("'paths' must be a list of one or more files or folders")
    session_id = _text(args, "session_id") or agent.in_core(agent.active_session_id)
    case_id = _text(args, "case_id") or agent.in_core(lambda: agent.case_of(session_id))  # the session's, by default
    report = upload.prepare([Path(p) for p in paths], agent.config.paths.state_dir,
                            agent.config.paths.anonymizer_key, case_id=case_id, session_id=session_id)
    agent.in_core(lambda: agent.uploads_queued(report.to_dict(), session_id, caller.user))
    agent.wake_sender()
    return report.to_dict()


def _service_request(agent: Agent, args: dict[str, Any], caller: Caller) -> Any:
    """Offloaded: it waits for the portal in a worker thread, and changes the agent's state through `in_core`."""
    text = service_request_text(_text(args, "text"))  # missing or empty: it says what to write
    if "urgency" not in args:
        raise UsageError("'urgency' is required: " + "; ".join(f"{u.value} ({u.meaning})" for u in Urgency))
    return agent.request_service(text, Urgency.parse(_text(args, "urgency")), caller.user)


def _task_run(agent: Agent, args: dict[str, Any], caller: Caller) -> Any:
    params = args.get("params", {})
    if not isinstance(params, dict):
        raise UsageError("'params' must be an object of parameter names and values")
    return agent.request_task(_text(args, "session_id", required=True), _text(args, "engineer_id", required=True),
                              _text(args, "kind", required=True), params, caller.user,
                              _text(args, "task_id")).to_dict()


def _audit_verify(agent: Agent, args: dict[str, Any], caller: Caller) -> Any:
    # Runs in a worker thread (the server offloads it): judge the log up to the head as of now.
    heads = None
    if args.get("against_portal") is True:
        if agent.portal_heads is None:
            raise RefusedError(f"cannot compare with the portal: {agent.link_status().get('error') or 'no link'}")
        heads = portal_heads(agent.portal_heads())
    head_seq, _ = agent.audit.head
    return verify(agent.config.paths.audit_dir, public_key_path(agent.audit.key_path), upto_seq=head_seq,
                  heads=heads).to_dict()


def portal_heads(heads: list[dict[str, Any]]) -> list[PortalHead]:
    """The heads as the portal keeps them (each checkpoint's attributes, docs/protocol.md), checked."""
    try:
        return [PortalHead(int(head["servicegate.seq"]), int(head["servicegate.head_seq"]),
                           str(head["servicegate.head_hash"])) for head in heads]
    except (KeyError, TypeError, ValueError):
        raise RefusedError("the portal sent a checkpoint head without seq, head_seq and head_hash") from None


def _audit_export(agent: Agent, args: dict[str, Any], caller: Caller) -> Any:
    """The records (a list), or with `format: csv` the same as CSV text (the consent UI's export)."""
    form = _text(args, "format") or "json"
    if form not in ("json", "csv"):
        raise UsageError(f"'format' must be 'json' or 'csv', not {form!r}")
    records = export(agent.config.paths.audit_dir, _time(args, "since"), _time(args, "until"),
                     _text(args, "engineer_id"))
    return to_csv(records) if form == "csv" else records



def _screen_control(agent: Agent, args: dict[str, Any], caller: Caller) -> Any:
    control = args.get("control")
    if not isinstance(control, bool):
        raise UsageError("'control' must be true (the engineer may control the console) or false (view-only)")
    return agent.set_screen_control(_text(args, "session_id", required=True), control, caller.user)


def _update_postpone(agent: Agent, args: dict[str, Any], caller: Caller) -> Any:
    until = _time(args, "until")
    if until is None:
        raise UsageError("'until' is required: when to ask again (ISO 8601 with offset)")
    return agent.updates.postpone(_text(args, "update_id", required=True), caller.user, until).to_dict()


def _upgrade_announce(agent: Agent, args: dict[str, Any], caller: Caller) -> Any:
    in_s = args.get("in_s", 0)
    if not isinstance(in_s, int) or isinstance(in_s, bool) or not 0 <= in_s <= UPGRADE_WARN_MAX_S:
        raise UsageError(f"'in_s' must be a whole number of seconds from 0 to {UPGRADE_WARN_MAX_S}, not {in_s!r}")
    return agent.announce_upgrade(_text(args, "version", required=True), in_s, caller.user)

HANDLERS: dict[str, Handler] = {
    "status": lambda agent, args, caller: agent.status(),
    "access_show": lambda agent, args, caller: agent.grant.to_dict(),
    "access_set": _access_set,
    "session_list": lambda agent, args, caller: agent.session_list(),
    "session_request": _session_request,
    "session_confirm": _session_confirm,
    "session_decline": lambda agent, args, caller: agent.decline_session(
        _text(args, "session_id", required=True), caller.user).to_dict(),
    "session_claim": _session_claim,
    "session_authenticate": lambda agent, args, caller: agent.authenticate(
        _text(args, "session_id", required=True), _text(args, "code", required=True), caller.user).to_dict(),
    "session_activity": lambda agent, args, caller: agent.record_activity(
        _text(args, "session_id", required=True)).to_dict(),
    "session_end": _session_end,
    "kill": lambda agent, args, caller: agent.kill(caller.user, _text(args, "text")),
    "task_catalog": lambda agent, args, caller: [t.to_dict() for t in agent.catalog.kinds.values()],
    "task_list": lambda agent, args, caller: agent.task_list(),
    "task_run": _task_run,
    "task_confirm": lambda agent, args, caller: agent.confirm_task(_text(args, "task_id", required=True),
                                                                   caller.user).to_dict(),
    "task_decline": lambda agent, args, caller: agent.decline_task(_text(args, "task_id", required=True),
                                                                   caller.user).to_dict(),
    "task_release": lambda agent, args, caller: agent.release_task_files(
        _text(args, "task_id", required=True), caller.user, args.get("disclaimer_accepted") is True).to_dict(),
    "task_stop": lambda agent, args, caller: agent.stop_task(_text(args, "task_id", required=True), caller.user,
                                                             _text(args, "session_id")).to_dict(),
    "upload": _upload,
    "upload_list": lambda agent, args, caller: upload.Queue(agent.config.paths.state_dir).entries(),
    "service_request": _service_request,
    "service_request_list": lambda agent, args, caller: agent.service_request_list(),
    "audit_verify": _audit_verify,
    "audit_export": _audit_export,
    "update_offer": lambda agent, args, caller: agent.updates.offer(_text(args, "target", required=True), caller.user),
    "update_list": lambda agent, args, caller: agent.updates.list(),
    "update_approve": lambda agent, args, caller: agent.updates.approve(
        _text(args, "update_id", required=True), caller.user).to_dict(),
    "update_reject": lambda agent, args, caller: agent.updates.reject(
        _text(args, "update_id", required=True), caller.user, _text(args, "reason")).to_dict(),
    "update_postpone": _update_postpone,
    "upgrade_announce": _upgrade_announce,
    "screen_list": lambda agent, args, caller: agent.screen_list(),
    "screen_control": _screen_control,
    "record_event": lambda agent, args, caller: agent.record_event(
        _text(args, "kind", required=True), _text(args, "detail"), caller.user),
}

SERVER_HANDLED = frozenset({"hello", "watch"})
if set(HANDLERS) | SERVER_HANDLED != set(OPERATIONS):  # a programming error, caught at import by every test
    raise RuntimeError(f"operations without a handler: {set(OPERATIONS) - set(HANDLERS) - SERVER_HANDLED}")


def handle_portal_message(agent: Agent, message_id: str, type: str, body: dict[str, Any]) -> None:
    """An inbox message: recorded first, then done as the operation it asks for. A message that cannot be done
    (unknown type, bad arguments, not allowed now) is recorded as refused, with why; the link acknowledges it
    either way, so the portal does not send it again."""
    details = {"message_id": message_id, "type": type}
    agent.audit.append("portal_message", PORTAL.user, details)
    op = INBOX_OPERATIONS.get(type)
    if op is None:
        agent.audit.append("portal_message_refused", SYSTEM_ACTOR,
                           {**details, "why": f"this agent does not handle {type!r} messages"})
        return
    try:
        HANDLERS[op](agent, body, PORTAL)
    except ServiceGateError as exc:
        agent.audit.append("portal_message_refused", SYSTEM_ACTOR, {**details, "why": str(exc)})
        session_id = body.get("session_id")
        if isinstance(session_id, str) and session_id:  # the engineer learns why, through the portal
            agent.publish("session_refused", {"id": session_id, "type": type, "why": str(exc)})


def dispatcher(agent: Agent) -> Callable[[Request, Caller], Any]:
    """The control server's handler for this agent."""

    def handle(request: Request, caller: Caller) -> Any:
        return HANDLERS[request.op](agent, request.args, caller)

    return handle
