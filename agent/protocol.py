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
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
MAX_REQUEST_BYTES = 64 * 1024


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
                  "Request a remote session as the portal would (tests and the demo; the portal does this later).",
                  {"engineer_id": "engineer's unique ID", "name": "engineer's full name",
                   "company": "engineer's company (optional)", "reason": "why the session is needed",
                   "level": "limited | full (default limited)", "kind": "service | application-support"}),
        Operation("session_confirm", Role.CONSOLE,
                  "The technologist confirms a session after reading the privacy disclaimer.",
                  {"session_id": "the session ID", "level": "limited | full: level granted for this session",
                   "disclaimer_accepted": "must be true"}),
        Operation("session_decline", Role.CONSOLE, "The technologist declines a session waiting for consent.",
                  {"session_id": "the session ID"}),
        Operation("session_authenticated", Role.ADMIN,
                  "Mark the engineer as authenticated (the portal connection's TOTP check does this later).",
                  {"session_id": "the session ID"}),
        Operation("session_end", Role.CONSOLE, "End a session normally.",
                  {"session_id": "the session ID (optional: the active one)", "text": "free text (optional)"}),
        Operation("kill", Role.CONSOLE,
                  "The kill switch: end every session with `killed` and set access to no-access. Idempotent.",
                  {"text": "why (optional)"}),
        Operation("audit_verify", Role.VIEWER, "Check the audit log's hash chain and signed checkpoints."),
        Operation("audit_export", Role.VIEWER, "Audit records between two times.",
                  {"since": "ISO 8601 (optional)", "until": "ISO 8601 (optional)"}),
        Operation("record_event", Role.MODALITY, "The scanner software reports a scan or an error.",
                  {"kind": "scan | error", "detail": "short technical text, no patient data (optional)"}),
        Operation("watch", Role.VIEWER,
                  "Subscribe: after the reply the connection carries events (access, session, audit)."),
    )
}

EVENTS: dict[str, str] = {
    "access_changed": "The access grant changed; data is the new grant.",
    "session_changed": "A session changed state; data is the session.",
    "audit_appended": "An audit record was written; data is the record.",
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
    if not isinstance(message, dict):
        raise MessageError("bad_request", "a request must be a JSON object")
    request_id = message.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise MessageError("bad_request", "'id' must be an integer")
    version = message.get("v")
    if version not in SUPPORTED_VERSIONS:
        raise MessageError("unsupported_version",
                           f"protocol version {version!r} is not supported; this agent speaks "
                           f"{sorted(SUPPORTED_VERSIONS)}", request_id)
    op = message.get("op")
    if not isinstance(op, str) or op not in OPERATIONS:
        raise MessageError("bad_request", f"unknown operation {op!r}", request_id)
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise MessageError("bad_request", "'args' must be a JSON object", request_id)
    return Request(id=request_id, op=op, args=args, version=version)

# Shown with the engineer's name, company and reason before a session can be confirmed
# (the seed: "the service engineer could potentially view patient data").
PRIVACY_DISCLAIMER = (
    "Data privacy: during this remote session the service engineer could potentially view patient data. "
    "Confirm only if you expect this session and agree to it. You can end the session at any time."
)
