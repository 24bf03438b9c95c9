"""The control protocol between the agent and its local clients (CLI, consent UI, modality).

JSON lines over a Unix socket, one object per line:

    request   {"v": 1, "id": N, "op": NAME, "args": {...}}
    response  {"id": N, "ok": true, "result": ...}
              {"id": N, "ok": false, "error": {"code": CODE, "message": TEXT}}
    event     {"event": NAME, "data": {...}}          (only after a `watch` request)

A client starts with `hello` (the version handshake). A request line longer than
MAX_REQUEST_BYTES is refused with `too_large` and the connection closed. Each operation needs a
role; roles come from the caller's peer credentials (see `agent.control`). This module is plain
Python so the consent UI can import it without pulling in the agent's core.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent.errors import UsageError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
MAX_REQUEST_BYTES = 64 * 1024


# ---- the shared vocabulary: the spellings every client sees ---------------------------------------
# The agent's core builds on these enums; the consent UI and the CLI use them to show and to send.

SYSTEM_ACTOR = "servicegate"  # the actor of what the agent does by itself (expiry, timeouts, restarts)


class AccessLevel(StrEnum):
    """The standing access grant the customer gives the vendor (see docs/sessions.md)."""

    NO_ACCESS = "no-access"  # only sessions the technologist confirms by their ID
    LIMITED = "limited"  # limited access, optionally until an end time
    PERMANENT_LIMITED = "permanent-limited"  # limited access without a time limit
    FULL = "full"  # full access; examinations blocked while a remote session is active

    @property
    def rank(self) -> int:
        """How much the level allows: LIMITED and PERMANENT_LIMITED differ only in duration."""
        return _RANK[self]

    @property
    def consequence(self) -> str:
        return _CONSEQUENCE[self]

    @classmethod
    def parse(cls, text: str) -> AccessLevel:
        try:
            return cls(text)
        except ValueError:
            raise UsageError(f"unknown access level {text!r}; use one of: "
                             f"{', '.join(level.value for level in cls)}") from None


_RANK = {AccessLevel.NO_ACCESS: 0, AccessLevel.LIMITED: 1, AccessLevel.PERMANENT_LIMITED: 1, AccessLevel.FULL: 2}
_CONSEQUENCE = {
    AccessLevel.NO_ACCESS: "No remote access unless you confirm a session by its ID. Examinations are possible.",
    AccessLevel.LIMITED: "Limited remote access, until the time you choose. Examinations are possible.",
    AccessLevel.PERMANENT_LIMITED: "Limited remote access with no time limit. Examinations are possible.",
    AccessLevel.FULL: "Full remote access. Examinations are not possible while a remote session is active.",
}

SESSION_LEVELS = (AccessLevel.LIMITED, AccessLevel.FULL)  # what a single session can ask for
MAX_CASE_ID = 64  # characters of a service case's ID (a session's, an upload's), as the portal takes them


class SessionState(StrEnum):
    REQUESTED = "requested"  # created, not yet decided
    AWAITING_CONSENT = "awaiting_consent"  # shown at the console; waits for the technologist
    AUTHENTICATING = "authenticating"  # allowed; waits for the engineer's one-time password
    ACTIVE = "active"  # the engineer works; the banner shows
    ENDED = "ended"  # final; `end_reason` says why


class SessionKind(StrEnum):
    SERVICE = "service"
    APPLICATION_SUPPORT = "application-support"


class EndReason(StrEnum):
    """Why a session ended: one list for the agent, the audit log, the portal and the UI."""

    COMPLETED = "completed"
    DECLINED = "declined"
    CONSENT_TIMEOUT = "consent_timeout"
    REVOKED = "revoked"
    KILLED = "killed"
    IDLE_TIMEOUT = "idle_timeout"
    TIME_LIMIT = "time_limit"
    GRANT_EXPIRED = "grant_expired"
    AUTH_FAILED = "auth_failed"
    PORTAL_LOST = "portal_lost"
    UPGRADE = "upgrade"
    AGENT_RESTART = "agent_restart"

    @property
    def meaning(self) -> str:
        return END_REASON_MEANING[self]


END_REASON_MEANING: dict[EndReason, str] = {
    EndReason.COMPLETED: "The engineer (or the portal on their behalf) ended the session normally.",
    EndReason.DECLINED: "The technologist declined the session.",
    EndReason.CONSENT_TIMEOUT: "Nobody confirmed the session at the console in time.",
    EndReason.REVOKED: "The customer lowered the access level below what the session used.",
    EndReason.KILLED: "The kill switch was used.",
    EndReason.IDLE_TIMEOUT: "The engineer did nothing for longer than the idle timeout.",
    EndReason.TIME_LIMIT: "The session reached its time limit.",
    EndReason.GRANT_EXPIRED: "The limited access grant the session relied on reached its end time.",
    EndReason.AUTH_FAILED: "The engineer did not authenticate (wrong or no one-time password in time).",
    EndReason.PORTAL_LOST: "The connection to the service centre was lost.",
    EndReason.UPGRADE: "The agent stopped for a software update.",
    EndReason.AGENT_RESTART: "The agent stopped while the session was open; it is ended at the next start.",
}

EVENT_KINDS = ("scan", "error")  # what the scanner software reports with `record_event`


class Urgency(StrEnum):
    """How urgent a service request is, as the technologist picks it; the UI shows each with its meaning."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"

    @property
    def meaning(self) -> str:
        return URGENCY_MEANING[self]

    @classmethod
    def parse(cls, text: str) -> Urgency:
        try:
            return cls(text)
        except ValueError:
            raise UsageError(f"unknown urgency {text!r}; use one of: "
                             + "; ".join(f"{u.value} ({u.meaning})" for u in cls)) from None


URGENCY_MEANING: dict[Urgency, str] = {
    Urgency.LOW: "A question or a small problem; the scanner works as usual.",
    Urgency.NORMAL: "A problem that hampers work; the scanner can still be used.",
    Urgency.HIGH: "The scanner cannot be used.",
}

SERVICE_TEXT_MIN, SERVICE_TEXT_MAX = 3, 500  # characters of a service request's description, as typed


def service_request_text(text: str) -> str:
    """A service request's description as the technologist typed it, trimmed; UsageError says what to write."""
    text = text.strip()
    if len(text) < SERVICE_TEXT_MIN:
        raise UsageError(f"describe the problem in a few words (at least {SERVICE_TEXT_MIN} characters), like "
                         "'the table does not move'")
    if len(text) > SERVICE_TEXT_MAX:
        raise UsageError(f"the description has {len(text)} characters; keep it to at most {SERVICE_TEXT_MAX}: the "
                         "service centre calls you for the details")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise UsageError("write the description as plain text on one line: no line breaks, tabs or other control "
                         "characters")
    return text


UPGRADE_WARN_MAX_S = 600  # the longest warning an upgrade gives an open session


class Role(StrEnum):
    ANYONE = "anyone"  # only the version handshake
    VIEWER = "viewer"  # read state and the audit log
    MODALITY = "modality"  # the scanner software: only `record_event`
    CONSOLE = "console"  # the technologist: access, sessions, kill switch
    ADMIN = "admin"  # root or the agent's own service user


# Which roles a role includes. MODALITY is deliberately not below CONSOLE: the technologist
# does not report scans, and the scanner software does not change access.
_INCLUDES: dict[Role, frozenset[Role]] = {
    Role.ANYONE: frozenset({Role.ANYONE}),
    Role.VIEWER: frozenset({Role.ANYONE, Role.VIEWER}),
    Role.MODALITY: frozenset({Role.ANYONE, Role.MODALITY}),
    Role.CONSOLE: frozenset({Role.ANYONE, Role.VIEWER, Role.CONSOLE}),
    Role.ADMIN: frozenset(Role),
}


def allowed(roles: frozenset[Role], needed: Role) -> bool:
    """True when any of the caller's roles includes the role an operation needs."""
    return any(needed in _INCLUDES[r] for r in roles | {Role.ANYONE})


@dataclass(frozen=True)
class Operation:
    name: str
    role: Role
    summary: str
    args: dict[str, str] = field(default_factory=dict)  # argument -> meaning


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("hello", Role.ANYONE, "Version handshake; answers the agent's version and the caller's roles.",
                  {"versions": "list of protocol versions the client speaks"}),
        Operation("status", Role.VIEWER, "Access grant, sessions, examination block and counters in one reply."),
        Operation("access_show", Role.VIEWER, "The current access grant: level, who set it, when, until when."),
        Operation("access_set", Role.CONSOLE, "Set the standing access level.",
                  {"level": "no-access | limited | permanent-limited | full",
                   "until": "ISO 8601 end time, only for limited (optional)"}),
        Operation("session_list", Role.VIEWER, "Open sessions and the most recent ended ones."),
        Operation("session_request", Role.ADMIN,
                  "Request a remote session as the portal would under a standing grant (the portal's requests come "
                  "through its inbox; tests and the demo use this). Refused under no-access.",
                  {"engineer_id": "engineer's unique ID", "name": "engineer's full name",
                   "company": "engineer's company (optional)", "reason": "why the session is needed",
                   "level": "limited | full (default limited)", "kind": "service | application-support",
                   "session_id": "the portal's 8-digit ID for it (optional: the agent makes one)",
                   "case_id": "the service case it is for (optional)"}),
        Operation("session_claim", Role.CONSOLE,
                  "The technologist types in the session ID the engineer read out: the agent claims it from the "
                  "portal and shows who, which company, why and which level; it then waits for `session_confirm`.",
                  {"session_id": "the 8-digit session ID (spaces and dashes allowed)"}),
        Operation("session_confirm", Role.CONSOLE,
                  "The technologist confirms a session after reading the privacy disclaimer.",
                  {"session_id": "the session ID", "level": "limited | full: level granted for this session",
                   "disclaimer_accepted": "must be true"}),
        Operation("session_decline", Role.CONSOLE, "The technologist declines a session waiting for consent.",
                  {"session_id": "the session ID"}),
        Operation("session_authenticate", Role.ADMIN,
                  "The engineer's time-based one-time password (the portal relays it); the session becomes active "
                  "when it is right. Wrong and replayed codes are counted; after 10 the session ends (auth_failed).",
                  {"session_id": "the session ID", "code": "the 6-digit code"}),
        Operation("session_activity", Role.ADMIN,
                  "The engineer did something (a task, input through the relay): resets the idle timer. "
                  "The task runner and relay report this later; tests and the demo use it now.",
                  {"session_id": "the session ID"}),
        Operation("session_end", Role.ADMIN,
                  "The engineer ends the session normally (`completed`), through the portal, with a summary that the "
                  "console shows and the audit log keeps. At the console, the kill switch ends a session.",
                  {"session_id": "the session ID (optional: the one open session)",
                   "text": "the engineer's summary (optional)"}),
        Operation("kill", Role.CONSOLE,
                  "The kill switch: set access to no-access, stop every task (SIGTERM, the grace period, SIGKILL), "
                  "run their restore commands, release the examination block, end every session with `killed`. "
                  "Idempotent; answers the receipt when all of it is done.",
                  {"text": "why (optional)"}),
        Operation("task_catalog", Role.VIEWER, "The task kinds this device offers: parameters, level, flags."),
        Operation("task_list", Role.VIEWER, "Waiting and running tasks, and the most recent ended ones, with "
                                            "their (scrubbed) output and what happened to their files."),
        Operation("task_run", Role.ADMIN,
                  "Ask for a task as the session's engineer would through the portal (the portal's requests come "
                  "through its inbox; tests and the demo use this). Checked, decided by the policy, audited.",
                  {"session_id": "the active session", "engineer_id": "the engineer asking",
                   "kind": "a task kind of the catalog", "params": "its parameters, an object",
                   "task_id": "the portal's ID for the run (optional: the agent makes one)"}),
        Operation("task_confirm", Role.CONSOLE, "The technologist allows a waiting application-support task.",
                  {"task_id": "the task's ID"}),
        Operation("task_decline", Role.CONSOLE, "The technologist declines a waiting task.",
                  {"task_id": "the task's ID"}),
        Operation("task_release", Role.CONSOLE,
                  "The technologist releases the files a task left in quarantine (output `files`), after the "
                  "data-privacy disclaimer; each (up to 2 MiB) is sent to the portal.",
                  {"task_id": "the task's ID", "disclaimer_accepted": "must be true"}),
        Operation("task_stop", Role.CONSOLE,
                  "Stop one task (SIGTERM, the grace period, SIGKILL); its restore command runs.",
                  {"task_id": "the task's ID", "session_id": "the session it belongs to (optional)"}),
        Operation("upload", Role.CONSOLE,
                  "De-identify DICOM files (or folders) and queue them for a resumable upload to the portal; files the "
                  "anonymizer refuses stay quarantined on the device and are listed, never sent. Answers the batch "
                  "report; the upload runs in the background (`upload_list`).",
                  {"paths": "list of files or folders, as the agent's user can read them",
                   "case_id": "the service case (optional: the session's case)",
                   "session_id": "the session it is for (optional: the one active session, if any)"}),
        Operation("upload_list", Role.VIEWER, "The upload queue: each file with its state (queued, uploading, "
                                              "accepted, rejected with the portal's problems, failed)."),
        Operation("service_request", Role.CONSOLE,
                  "The technologist asks the service centre for help: the description (scrubbed of patient data) "
                  "and a technical report of the system go to the portal, which answers a case number. When the "
                  "portal cannot be reached the request is kept and sent later (`service_request_changed`).",
                  {"text": f"the problem in a few words ({SERVICE_TEXT_MIN} to {SERVICE_TEXT_MAX} characters, "
                           "one line)",
                   "urgency": " | ".join(u.value for u in Urgency)}),
        Operation("service_request_list", Role.VIEWER,
                  "The service requests made at this device, oldest first: state (sent, queued, refused) and case "
                  "number."),
        Operation("audit_verify", Role.VIEWER, "Check the audit log's hash chain and signed checkpoints.",
                  {"against_portal": "true: also compare with the checkpoint heads the portal holds (optional)"}),
        Operation("audit_export", Role.VIEWER, "Audit records between two times (of one engineer).",
                  {"since": "ISO 8601 (optional)", "until": "ISO 8601 (optional)",
                   "engineer_id": "only what this engineer did or what concerned the engineer's sessions (optional)",
                   "format": "json (the records, the default) | csv (the same as CSV text)"}),
        Operation("update_offer", Role.ADMIN,
                  "The portal offers an update by its target's name (its inbox message `update_offer`): the agent "
                  "looks it up in the vendor's signed TUF metadata, checks it is meant for this device and newer than "
                  "what is installed, downloads and checks it, and then it waits for an approval "
                  "(`update_changed`). What fails a check is refused and recorded, never staged.",
                  {"target": "the update's target name in the TUF repository"}),
        Operation("update_list", Role.VIEWER, "The updates offered to this device: what, from whom, signed by which "
                                              "key, size, restart or examination downtime needed, release notes, and "
                                              "their state (offered, postponed, approved, installing, installed, "
                                              "failed, rejected)."),
        Operation("update_approve", Role.CONSOLE,
                  "Install a waiting update: the approval is recorded first, then the catalog's task installs it (the "
                  "kill switch stops it like any task).", {"update_id": "the update's ID"}),
        Operation("update_reject", Role.CONSOLE, "Reject a waiting update; its file is deleted.",
                  {"update_id": "the update's ID", "reason": "why (optional)"}),
        Operation("update_postpone", Role.CONSOLE, "Ask again at a later time (at most 30 days ahead).",
                  {"update_id": "the update's ID", "until": "ISO 8601 time with offset"}),
        Operation("upgrade_announce", Role.ADMIN,
                  "Site IT's installer announces an upgrade (`servicegate-install upgrade`): the console warns, open "
                  "sessions end with `upgrade` after `in_s` seconds, and no session is accepted until the agent "
                  "restarts.",
                  {"version": "the version being installed", "in_s": f"seconds until open sessions end (0 to "
                                                                     f"{UPGRADE_WARN_MAX_S})"}),
        Operation("screen_list", Role.VIEWER,
                  "The screens shared now (each a running share-screen task): session, engineer, whether the engineer "
                  "may control the console, and whether control is possible at all (full access)."),
        Operation("screen_control", Role.CONSOLE,
                  "The technologist lets the engineer control the console through the shared screen, or takes it "
                  "back: view-only again at once. Control needs a session with full access.",
                  {"session_id": "the session whose screen is shared", "control": "true or false"}),
        Operation("record_event", Role.MODALITY, "The scanner software reports a scan or an error.",
                  {"kind": "scan | error", "detail": "short technical text, no patient data (optional)"}),
        Operation("watch", Role.VIEWER,
                  "Subscribe: after the reply the connection carries events (access, session, audit)."),
    )
}

EVENTS: dict[str, str] = {
    "access_changed": "The access grant changed; data is the new grant.",
    "session_changed": "A session changed state; data is the session.",
    "session_refused": "A request of the portal about a session was refused; data: id, type (the inbox message "
                       "type) and why.",
    "examination_block": "The examination block was set or released; data: held (true or false).",
    "task_changed": "A task was asked for, started, or ended; data is the task run.",
    "upload_changed": "De-identified files were queued for the portal (data: session_id, batch_id, files), or one "
                      "reached its final state (data: the upload queue entry).",
    "service_request_changed": "A service request was made, or a kept one was sent (its case number came) or "
                               "refused; data is the request as service_request_list gives it.",
    "audit_appended": "An audit record was written; data is the record.",
    "update_changed": "An update was offered, decided on, installed or failed; data is the update as update_list "
                      "gives it.",
    "upgrade_announced": "An upgrade was announced; data: version, at (when open sessions end with `upgrade`).",
    "screen_changed": "A screen share started, its control changed, or it ended; data: task_id, session_id, "
                      "engineer_id, state (starting, sharing, ended), control, control_possible, and reason when it "
                      "ended.",
}


@dataclass(frozen=True)
class Request:
    id: int
    op: str
    args: dict[str, Any]
    version: int = PROTOCOL_VERSION


class MessageError(Exception):
    """A line that is not a valid request; `code` is the protocol error code to answer with."""

    def __init__(self, code: str, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def request_message(request_id: int, op: str, args: dict[str, Any] | None = None) -> bytes:
    return encode({"v": PROTOCOL_VERSION, "id": request_id, "op": op, "args": args or {}})


def ok_message(request_id: int, result: Any) -> bytes:
    return encode({"id": request_id, "ok": True, "result": result})


def error_message(request_id: int | None, code: str, message: str) -> bytes:
    return encode({"id": request_id, "ok": False, "error": {"code": code, "message": message}})


def event_message(name: str, data: dict[str, Any]) -> bytes:
    return encode({"event": name, "data": data})


def parse_request(line: bytes) -> Request:
    """Decode one request line, or raise MessageError saying what is wrong with it."""
    if len(line) > MAX_REQUEST_BYTES:
        raise MessageError("too_large", f"request of {len(line)} bytes exceeds the limit of {MAX_REQUEST_BYTES}")
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError("bad_request", f"not a JSON object: {exc}") from None
    except RecursionError:
        raise MessageError("bad_request", "the request is nested too deeply") from None
    if not isinstance(message, dict):
        raise MessageError("bad_request", "a request must be a JSON object")
    request_id = message.get("id")
    if type(request_id) is not int:  # bool is an int subclass; true is not an id
        raise MessageError("bad_request", "'id' must be an integer")
    version = message.get("v")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise MessageError("unsupported_version",
                           f"protocol version {version!r} is not supported; this agent speaks "
                           f"{sorted(SUPPORTED_VERSIONS)}", request_id)
    op = message.get("op")
    if not isinstance(op, str) or op not in OPERATIONS:
        raise MessageError("bad_request", f"unknown operation {op!r}", request_id)
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise MessageError("bad_request", "'args' must be a JSON object", request_id)
    unknown = sorted(set(args) - set(OPERATIONS[op].args))
    if unknown:  # a mistyped argument must not be silently ignored ("untill" would grant with no end)
        allowed = ", ".join(OPERATIONS[op].args) or "none"
        raise MessageError("bad_request", f"unknown argument(s) {', '.join(unknown)} for {op}; allowed: {allowed}",
                           request_id)
    return Request(id=request_id, op=op, args=args, version=version)

# Shown with the engineer's name, company and reason before a session can be confirmed
# (the seed: "the service engineer could potentially view patient data").
PRIVACY_DISCLAIMER = (
    "Data privacy: during this remote session the service engineer could potentially view patient data. "
    "Confirm only if you expect this session and agree to it. You can end the session at any time."
)


# The consent UI's global hotkey (`[console] hotkey`, sent in `status`): its modifiers (consent_ui.hotkey maps
# them to X's); the key is an X key name like End or F12.
HOTKEY_MODIFIERS = ("ctrl", "control", "alt", "shift", "super")
_KEY_NAME = re.compile(r"[A-Za-z0-9_]+")


def hotkey_parts(text: str) -> tuple[tuple[str, ...], str]:
    """"Ctrl+Alt+End" -> (("ctrl", "alt"), "End"). Raises ValueError saying what to write."""
    parts = [part.strip() for part in text.split("+")]
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"hotkey {text!r}: write modifiers and a key joined by +, like Ctrl+Alt+End")
    for part in parts[:-1]:
        if part.lower() not in HOTKEY_MODIFIERS:
            raise ValueError(f"hotkey {text!r}: {part!r} is not a modifier; use Ctrl, Alt, Shift or Super")
    if not _KEY_NAME.fullmatch(parts[-1]):
        raise ValueError(f"hotkey {text!r}: {parts[-1]!r} is not a key name; use one like End, Pause or F12")
    return tuple(part.lower() for part in parts[:-1]), parts[-1]
