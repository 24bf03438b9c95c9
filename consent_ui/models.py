"""What each consent-UI screen shows and what each action sends, without Qt.

The PySide6 widgets only lay out what these models say and pass on what they return, so that the logic is tested
without a display. Everything here is plain data in, plain data out:

- the dicts are the control API's (agent.protocol): the grant (`access_show`), sessions (`session_list`, `status`),
  task runs (`task_list`) and upload queue entries (`upload_list`);
- time is passed in (`now`), never read from the clock; times are shown in local time (`tz`: None means the
  system's local zone, tests pass UTC);
- what an action sends is the `args` dict of its operation (`access_set`, `session_claim`, `session_confirm`,
  `session_decline`, `kill`); input the agent would refuse anyway raises InputError with the words to show.

Translation. Every user-visible string is a `QT_TRANSLATE_NOOP("Context", "text")` literal, so that
`pyside6-lupdate consent_ui/models.py` extracts it; a string with values uses `{placeholders}`, filled after
translation. The models return `Text` (context, source, values): a widget shows `text.render(translate)` with
`QCoreApplication.translate`, tests with an identity function. QT_TRANSLATE_NOOP returns the text unchanged, as a
`Source` (a `str` that also remembers its context): `_text` takes only a Source, so mypy makes sure no source text
reaches the screen without having been marked for translation. What others wrote (the engineer's name, a reason,
the agent's own error messages, task titles) is shown as written: `verbatim(...)`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, TypeAlias

from agent.errors import (
    AgentUnreachableError,
    NotFoundError,
    PermissionDeniedError,
    PortalError,
    ServiceGateError,
    UsageError,
)
from agent.protocol import (
    SERVICE_TEXT_MAX,
    SERVICE_TEXT_MIN,
    SESSION_LEVELS,
    SYSTEM_ACTOR,
    AccessLevel,
    EndReason,
    SessionKind,
    SessionState,
    Urgency,
)

# ---- translatable text ---------------------------------------------------------------------------------------------

Translate: TypeAlias = Callable[[str, str], str]  # (context, source) -> translation: QCoreApplication.translate


class Source(str):
    """A source text marked for translation: the text itself, which also knows its translation context."""

    context: str

    def __new__(cls, context: str, text: str) -> Source:
        source = super().__new__(cls, text)
        source.context = context
        return source


def QT_TRANSLATE_NOOP(context: str, text: str) -> Source:  # noqa: N802 - the name pyside6-lupdate looks for
    """Marks `text` for translation in `context`; returns it unchanged (translated later, by Text.render)."""
    return Source(context, text)


def identity(context: str, source: str) -> str:
    """The translate function of a UI without translations (and of the tests)."""
    return source


Value: TypeAlias = "str | int | Text"


@dataclass(frozen=True)
class Text:
    """A user-visible text: translated by `render`, then its `{placeholders}` filled from `values` (a Text value is
    rendered with the same translate function). A verbatim Text is shown as written, untranslated."""

    context: str
    source: str
    values: Mapping[str, Value] = field(default_factory=dict, hash=False)
    verbatim: bool = False

    def render(self, translate: Translate) -> str:
        if self.verbatim:
            return self.source
        values = {key: value.render(translate) if isinstance(value, Text) else value
                  for key, value in self.values.items()}
        return translate(self.context, self.source).format(**values)


def _text(source: Source, **values: Value) -> Text:
    return Text(source.context, str(source), values)


def verbatim(text: str) -> Text:
    """Text that others wrote (a name, a reason, the agent's message): shown as it is."""
    return Text("", text, verbatim=True)


class InputError(ValueError):
    """Input the dialog must not send: `text` says what is wrong, in words for the technologist."""

    def __init__(self, text: Text) -> None:
        super().__init__(text.render(identity))
        self.text = text


# ---- words shared by every screen ----------------------------------------------------------------------------------

LEVEL_TITLES: dict[AccessLevel, Source] = {
    AccessLevel.NO_ACCESS: QT_TRANSLATE_NOOP("Common", "No access"),
    AccessLevel.LIMITED: QT_TRANSLATE_NOOP("Common", "Limited access"),
    AccessLevel.PERMANENT_LIMITED: QT_TRANSLATE_NOOP("Common", "Permanent limited access"),
    AccessLevel.FULL: QT_TRANSLATE_NOOP("Common", "Full access"),
}

KIND_TITLES: dict[SessionKind, Source] = {
    SessionKind.SERVICE: QT_TRANSLATE_NOOP("Common", "Service"),
    SessionKind.APPLICATION_SUPPORT: QT_TRANSLATE_NOOP("Common", "Application support"),
}

# The same text as agent.protocol.PRIVACY_DISCLAIMER (a test checks): lupdate needs the literal here.
PRIVACY_NOTICE = _text(QT_TRANSLATE_NOOP(
    "Common",
    "Data privacy: during this remote session the service engineer could potentially view patient data. "
    "Confirm only if you expect this session and agree to it. You can end the session at any time."))
PRIVACY_CHECKBOX = _text(QT_TRANSLATE_NOOP("Common", "I have read the data-privacy notice and agree to this session."))

EXAMINATIONS_BLOCKED_WARNING = _text(QT_TRANSLATE_NOOP(
    "Common", "Examinations will be blocked while this session is active."))
NOT_GIVEN = _text(QT_TRANSLATE_NOOP("Common", "Not given"))
SYSTEM = _text(QT_TRANSLATE_NOOP("Common", "ServiceGate (automatically)"))


def level_title(level: AccessLevel) -> Text:
    return _text(LEVEL_TITLES[level])


def kind_title(kind: SessionKind) -> Text:
    return _text(KIND_TITLES[kind])


def duration(delta: timedelta) -> Text:
    """A duration as people say it: "less than a minute", "12 min", "1 h 5 min", "2 h", "1 d 3 h" (rounded down)."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return _text(QT_TRANSLATE_NOOP("Common", "less than a minute"))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return _text(QT_TRANSLATE_NOOP("Common", "{days} d {hours} h"), days=days, hours=hours) if hours else \
            _text(QT_TRANSLATE_NOOP("Common", "{days} d"), days=days)
    if hours:
        return _text(QT_TRANSLATE_NOOP("Common", "{hours} h {minutes} min"), hours=hours, minutes=minutes) \
            if minutes else _text(QT_TRANSLATE_NOOP("Common", "{hours} h"), hours=hours)
    return _text(QT_TRANSLATE_NOOP("Common", "{minutes} min"), minutes=minutes)


def clock_time(when: datetime, reference: datetime | None, tz: tzinfo | None = None) -> str:
    """`when` in local time: "10:04" on the same local day as `reference`, else "2026-11-28 10:04"."""
    local = when.astimezone(tz)
    if reference is not None and reference.astimezone(tz).date() == local.date():
        return f"{local:%H:%M}"
    return f"{local:%Y-%m-%d %H:%M}"


def _time(value: Any) -> datetime | None:
    """A timestamp of the agent's dicts (ISO 8601 with 'Z' or an offset), or None."""
    if not value:
        return None
    when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _required_time(value: Any) -> datetime:
    when = _time(value)
    if when is None:
        raise ValueError("a timestamp the agent always sends is missing")
    return when


def _actor(user: str) -> Text:
    return SYSTEM if user == SYSTEM_ACTOR else verbatim(user)


def _capitalised(message: str) -> str:
    return message[:1].upper() + message[1:]


# ---- the access dialog ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AccessOption:
    level: AccessLevel
    title: Text
    consequence: Text  # one plain line
    needs_end: bool  # the time-limit picker applies (LIMITED)


ACCESS_OPTIONS: tuple[AccessOption, ...] = (
    AccessOption(AccessLevel.NO_ACCESS, level_title(AccessLevel.NO_ACCESS), _text(QT_TRANSLATE_NOOP(
        "AccessDialog", "No remote access, except a session you confirm by its ID.")), needs_end=False),
    AccessOption(AccessLevel.LIMITED, level_title(AccessLevel.LIMITED), _text(QT_TRANSLATE_NOOP(
        "AccessDialog", "Limited remote service until the time you choose. Examinations are possible.")),
        needs_end=True),
    AccessOption(AccessLevel.PERMANENT_LIMITED, level_title(AccessLevel.PERMANENT_LIMITED), _text(QT_TRANSLATE_NOOP(
        "AccessDialog", "Limited remote service with no end time. Examinations are possible.")), needs_end=False),
    AccessOption(AccessLevel.FULL, level_title(AccessLevel.FULL), _text(QT_TRANSLATE_NOOP(
        "AccessDialog", "Examinations are not possible while a remote session is active.")), needs_end=False),
)


def current_access(grant: Mapping[str, Any], now: datetime, tz: tzinfo | None = None) -> Text:
    """The standing grant (`access_show`, `status["access"]`) in one line: level, who set it, when, until when."""
    level = AccessLevel(grant["level"])
    who, when = _actor(str(grant["set_by"])), clock_time(_required_time(grant["set_at"]), now, tz)
    until = _time(grant.get("until"))
    if level is AccessLevel.LIMITED and until is not None:
        return _text(QT_TRANSLATE_NOOP("AccessDialog", "Limited access, set by {who} at {when}, until {until} "
                                                       "({left} left)"),
                     who=who, when=when, until=clock_time(until, now, tz), left=duration(until - now))
    if level is AccessLevel.LIMITED:
        return _text(QT_TRANSLATE_NOOP("AccessDialog", "Limited access, set by {who} at {when}, with no end time"),
                     who=who, when=when)
    if level is AccessLevel.PERMANENT_LIMITED:
        return _text(QT_TRANSLATE_NOOP("AccessDialog", "Permanent limited access, set by {who} at {when}"),
                     who=who, when=when)
    if level is AccessLevel.FULL:
        return _text(QT_TRANSLATE_NOOP("AccessDialog", "Full access, set by {who} at {when}"), who=who, when=when)
    return _text(QT_TRANSLATE_NOOP("AccessDialog", "No access, set by {who} at {when}"), who=who, when=when)


@dataclass(frozen=True)
class LimitPreset:
    length: timedelta
    label: Text


LIMIT_PRESETS: tuple[LimitPreset, ...] = (
    LimitPreset(timedelta(hours=1), _text(QT_TRANSLATE_NOOP("AccessDialog", "1 hour"))),
    LimitPreset(timedelta(hours=2), _text(QT_TRANSLATE_NOOP("AccessDialog", "2 hours"))),
    LimitPreset(timedelta(hours=4), _text(QT_TRANSLATE_NOOP("AccessDialog", "4 hours"))),
    LimitPreset(timedelta(hours=8), _text(QT_TRANSLATE_NOOP("AccessDialog", "8 hours"))),
)
MAX_LIMITED = timedelta(days=7)  # the furthest end time the dialog accepts; longer is "permanent limited"
MIN_LIMITED = timedelta(minutes=1)  # an end time closer than this has as good as passed


def custom_end_range(now: datetime) -> tuple[datetime, datetime]:
    """The earliest and the latest end time the custom picker offers (aware, UTC)."""
    return now + MIN_LIMITED, now + MAX_LIMITED


def access_request(level: AccessLevel, now: datetime, *, preset: LimitPreset | None = None,
                   until: datetime | None = None, tz: tzinfo | None = None) -> dict[str, str]:
    """The args of `access_set`: `level`, and for LIMITED `until` (ISO 8601, UTC, with offset), from a preset or a
    custom end (a naive `until` is local time, in `tz`). InputError says what is wrong with the choice."""
    if level is not AccessLevel.LIMITED:
        if preset is not None or until is not None:
            raise InputError(_text(QT_TRANSLATE_NOOP("AccessDialog", "An end time applies only to limited access.")))
        return {"level": level.value}
    if preset is not None and until is not None:
        raise InputError(_text(QT_TRANSLATE_NOOP("AccessDialog",
                                                 "Choose either a duration or an end time, not both.")))
    if preset is not None:
        end = now + preset.length
    elif until is not None:
        end = until if until.tzinfo is not None else until.replace(tzinfo=tz) if tz else until.astimezone()
    else:
        raise InputError(_text(QT_TRANSLATE_NOOP("AccessDialog", "Choose how long limited access lasts: one of the "
                                                                 "durations, or an end time.")))
    if end < now + MIN_LIMITED:
        raise InputError(_text(QT_TRANSLATE_NOOP("AccessDialog",
                                                 "The end time has passed. Choose a time in the future.")))
    if end > now + MAX_LIMITED:
        raise InputError(_text(QT_TRANSLATE_NOOP("AccessDialog", "Limited access can last at most {days} days. "
                                                                 "Choose an earlier end time, or permanent limited "
                                                                 "access."), days=MAX_LIMITED.days))
    return {"level": level.value, "until": end.astimezone(UTC).isoformat(timespec="seconds")}


def access_applied(request: Mapping[str, Any], grant: Mapping[str, Any]) -> bool:
    """The grant the agent answered (or announced with `access_changed`) is the one `request` asked for: the dialog
    closes only then."""
    if grant.get("level") != request.get("level"):
        return False
    asked, got = _time(request.get("until")), _time(grant.get("until"))
    if asked is None or got is None:
        return asked is got
    return abs(asked - got) < timedelta(seconds=1)


# ---- session IDs ---------------------------------------------------------------------------------------------------

SESSION_ID_DIGITS = 8
_DIGITS = frozenset("0123456789")
_SEPARATORS = frozenset(" \t\r\n\u00a0-\u2010\u2011\u2012\u2013\u2014.")  # what typing and pasting leave around them
BAD_SESSION_ID = _text(QT_TRANSLATE_NOOP(
    "SessionDialog", "A session ID has 8 digits, like 1234 5678. Check the number with the engineer."))


def clean_session_id(text: str) -> str:
    """The 8 digits of a session ID as typed or pasted ("1234 5678", "1234-5678", "12345678\\n"); anything but
    digits, spaces, dashes and dots, or another number of digits, raises InputError."""
    if any(c not in _DIGITS and c not in _SEPARATORS for c in text):
        raise InputError(BAD_SESSION_ID)
    digits = "".join(c for c in text if c in _DIGITS)
    if len(digits) != SESSION_ID_DIGITS:
        raise InputError(BAD_SESSION_ID)
    return digits


def group_id(digits: str) -> str:
    """Digits in groups of four, for reading aloud: "12345678" -> "1234 5678"."""
    return " ".join(digits[i:i + 4] for i in range(0, len(digits), 4))


def format_as_typed(text: str) -> str:
    """The session-ID field while typing: its digits, grouped ("12345" -> "1234 5"); other characters dropped."""
    return group_id("".join(c for c in text if c in _DIGITS))


def cursor_as_typed(text: str, cursor: int) -> int:
    """Where the cursor goes in `format_as_typed(text)`: after the same number of digits as before it in `text`."""
    digits = sum(1 for c in text[:cursor] if c in _DIGITS)
    return digits + max(0, (digits - 1) // 4)


def claim_request(text: str) -> dict[str, str]:
    """The args of `session_claim` for the ID as the technologist typed it."""
    return {"session_id": clean_session_id(text)}


# ---- a session's details: the session-ID dialog and the incoming-request notification -----------------------------

@dataclass(frozen=True)
class Row:
    label: Text
    value: Text


@dataclass(frozen=True)
class SessionDetails:
    session_id: str
    shown_id: str  # "1234 5678"
    engineer_name: str
    engineer_id: str
    company: str
    reason: str
    kind: SessionKind
    state: SessionState
    requested_level: AccessLevel
    level: AccessLevel  # granted (once confirmed or admitted by the grant), else requested
    level_meaning: Text
    how_long: Text | None  # only when the time limit is known
    claimed: bool  # the technologist typed in its ID; else the engineer requested it under the standing grant
    origin: Text
    rows: tuple[Row, ...]  # label and value, top to bottom


def _session_meaning(level: AccessLevel) -> Text:
    if level is AccessLevel.FULL:
        return EXAMINATIONS_BLOCKED_WARNING
    return _text(QT_TRANSLATE_NOOP("SessionDialog", "Examinations remain possible during this session."))


def session_details(session: Mapping[str, Any], time_limit_min: int | None = None) -> SessionDetails:
    """Who (name, engineer ID, company), why, which kind, at which level and what that means, for how long (given
    the agent's `[sessions] time_limit_min`, which the session dict does not hold)."""
    engineer = session["engineer"]
    company = str(engineer.get("company") or "")
    requested = AccessLevel(session["requested_level"])
    level = AccessLevel(session["effective_level"]) if session.get("effective_level") else requested
    kind = SessionKind(session["kind"])
    how_long = None if time_limit_min is None else _text(QT_TRANSLATE_NOOP(
        "SessionDialog", "Until you or the engineer end it; at most {limit}"),
        limit=duration(timedelta(minutes=time_limit_min)))
    claimed = bool(session.get("claimed"))
    origin = _text(QT_TRANSLATE_NOOP("SessionDialog", "You typed in this session's ID.")) if claimed else \
        _text(QT_TRANSLATE_NOOP("SessionDialog", "The engineer asked for this session through the service centre."))
    rows = [
        Row(_text(QT_TRANSLATE_NOOP("SessionDialog", "Engineer")), verbatim(str(engineer["name"]))),
        Row(_text(QT_TRANSLATE_NOOP("SessionDialog", "Engineer ID")), verbatim(str(engineer["id"]))),
        Row(_text(QT_TRANSLATE_NOOP("SessionDialog", "Company")), verbatim(company) if company else NOT_GIVEN),
        Row(_text(QT_TRANSLATE_NOOP("SessionDialog", "Reason")), verbatim(str(session["reason"]))),
        Row(_text(QT_TRANSLATE_NOOP("SessionDialog", "Kind of session")), kind_title(kind)),
        Row(_text(QT_TRANSLATE_NOOP("SessionDialog", "Access")), level_title(level)),
    ]
    if how_long is not None:
        rows.append(Row(_text(QT_TRANSLATE_NOOP("SessionDialog", "How long")), how_long))
    if session.get("case_id"):
        rows.append(Row(_text(QT_TRANSLATE_NOOP("SessionDialog", "Case number")), verbatim(str(session["case_id"]))))
    rows.append(Row(_text(QT_TRANSLATE_NOOP("SessionDialog", "Session ID")), verbatim(group_id(str(session["id"])))))
    return SessionDetails(
        session_id=str(session["id"]), shown_id=group_id(str(session["id"])), engineer_name=str(engineer["name"]),
        engineer_id=str(engineer["id"]), company=company, reason=str(session["reason"]), kind=kind,
        state=SessionState(session["state"]), requested_level=requested, level=level,
        level_meaning=_session_meaning(level), how_long=how_long, claimed=claimed, origin=origin, rows=tuple(rows))


@dataclass(frozen=True)
class LevelChoice:
    level: AccessLevel
    title: Text
    meaning: Text
    above_grant: bool  # more than the standing grant allows: given for this session alone
    note: Text | None  # says so, when above_grant
    warning: Text | None  # FULL: examinations will be blocked
    default: bool  # the level the engineer asked for


def confirm_choices(session: Mapping[str, Any], grant: Mapping[str, Any]) -> list[LevelChoice]:
    """The levels the technologist may confirm a session at: limited or full, never more than the engineer asked
    for (the agent refuses more). A level above the standing grant is for this session only."""
    requested = AccessLevel(session["requested_level"])
    standing = AccessLevel(grant["level"])
    choices = []
    for level in SESSION_LEVELS:
        if level.rank > requested.rank:
            continue
        above = level.rank > standing.rank
        note = _text(QT_TRANSLATE_NOOP("SessionDialog", "For this session only: more than your standing access "
                                                        "({standing})."), standing=level_title(standing))
        choices.append(LevelChoice(level=level, title=level_title(level), meaning=_session_meaning(level),
                                   above_grant=above, note=note if above else None,
                                   warning=EXAMINATIONS_BLOCKED_WARNING if level is AccessLevel.FULL else None,
                                   default=level is requested))
    return choices


def confirm_request(session_id: str, level: AccessLevel, disclaimer_checked: bool) -> dict[str, Any]:
    """The args of `session_confirm`; InputError until the data-privacy notice is confirmed."""
    if level not in SESSION_LEVELS:
        raise ValueError(f"a session is confirmed at limited or full access, not {level.value!r}")
    if not disclaimer_checked:
        raise InputError(_text(QT_TRANSLATE_NOOP("SessionDialog", "Please confirm the data-privacy notice first.")))
    return {"session_id": clean_session_id(session_id), "level": level.value, "disclaimer_accepted": True}


def decline_request(session_id: str) -> dict[str, str]:
    """The args of `session_decline`: as easy as accepting, no notice to confirm."""
    return {"session_id": clean_session_id(session_id)}


@dataclass(frozen=True)
class Notification:
    title: Text
    summary: Text  # one line: who asks for what, and why
    details: SessionDetails
    needs_action: bool  # waits for the technologist to confirm or decline; else informational
    instruction: Text


def incoming_request(session: Mapping[str, Any], time_limit_min: int | None = None) -> Notification:
    """A session the engineer requested (the portal, under the standing grant): a notification with the details.
    It needs the technologist when it waits for consent (above the grant, or FULL); else it only informs."""
    details = session_details(session, time_limit_min)
    needs_action = details.state is SessionState.AWAITING_CONSENT
    level = level_title(details.level)
    name, reason = verbatim(details.engineer_name), verbatim(details.reason)
    summary = _text(QT_TRANSLATE_NOOP("SessionDialog", "{name} ({company}) asks for {level}: {reason}"),
                    name=name, company=verbatim(details.company), level=level, reason=reason) if details.company \
        else _text(QT_TRANSLATE_NOOP("SessionDialog", "{name} asks for {level}: {reason}"),
                   name=name, level=level, reason=reason)
    instruction = _text(QT_TRANSLATE_NOOP("SessionDialog", "Confirm or decline this session.")) if needs_action \
        else _text(QT_TRANSLATE_NOOP("SessionDialog", "Allowed by your standing access level. The engineer is "
                                                      "signing in; you can end the session at any time."))
    return Notification(title=_text(QT_TRANSLATE_NOOP("SessionDialog", "Remote service request")), summary=summary,
                        details=details, needs_action=needs_action, instruction=instruction)


# ---- errors in words -----------------------------------------------------------------------------------------------

def hotkey_unusable(detail: str) -> Text:
    """The agent's `[console] hotkey` cannot be grabbed here (a key X does not know)."""
    return _text(QT_TRANSLATE_NOOP("Common", "The key that ends a session cannot be used ({detail}). End session on "
                                             "the banner works; ask site IT to correct [console] hotkey."),
                 detail=verbatim(detail))


@dataclass(frozen=True)
class ErrorText:
    text: Text  # what to show
    detail: str  # the agent's own message, for a "Details" line ("" when `text` is that message)


def error_text(exc: ServiceGateError, *, claim: bool = False) -> ErrorText:
    """An error the agent raised (agent.client re-raises the agent's errors), in words for the technologist.
    `claim`: it answered a `session_claim`, whose failures are mostly a wrong or expired ID.

    A claim's failures come as the portal words them (PortalError); two are told apart by the words of
    agent.uplink and portal.store, the rest read as a wrong ID, with the agent's message as the detail.
    """
    message = str(exc)
    if isinstance(exc, AgentUnreachableError):
        return ErrorText(_text(QT_TRANSLATE_NOOP(
            "Common", "Remote service is unavailable: the ServiceGate agent is not running.")), message)
    if isinstance(exc, PermissionDeniedError):
        return ErrorText(_text(QT_TRANSLATE_NOOP(
            "Common", "You are not allowed to do this from your account. Ask site IT to add you to the "
                      "ServiceGate console group.")), message)
    if claim and isinstance(exc, UsageError):  # the agent's own check of the ID (the dialog cleans it first)
        return ErrorText(BAD_SESSION_ID, message)
    if claim and message.startswith("cannot claim"):  # no link to the portal, or the portal did not answer
        return ErrorText(_text(QT_TRANSLATE_NOOP(
            "SessionDialog", "The session ID cannot be checked now: the service centre cannot be reached. Try "
                             "again in a few minutes.")), message)
    if claim and "too many wrong session IDs" in message:
        return ErrorText(_text(QT_TRANSLATE_NOOP(
            "SessionDialog", "Too many wrong session IDs were typed in. Wait a few minutes, then try again.")),
            message)
    if claim and isinstance(exc, NotFoundError | PortalError):
        return ErrorText(_text(QT_TRANSLATE_NOOP(
            "SessionDialog", "The portal does not know this session ID, or it has expired. Check the number with "
                             "the engineer.")), message)
    return ErrorText(verbatim(_capitalised(message)), "")


# ---- tasks and files: what the engineer did and what left the device ----------------------------------------------

TASK_STATES: dict[str, Source] = {
    "waiting": QT_TRANSLATE_NOOP("Common", "waiting for your approval"),
    "running": QT_TRANSLATE_NOOP("Common", "running"),
    "completed": QT_TRANSLATE_NOOP("Common", "completed"),
    "failed": QT_TRANSLATE_NOOP("Common", "failed"),
    "timeout": QT_TRANSLATE_NOOP("Common", "stopped: it took too long"),
    "stopped": QT_TRANSLATE_NOOP("Common", "stopped"),
    "declined": QT_TRANSLATE_NOOP("Common", "declined"),
    "refused": QT_TRANSLATE_NOOP("Common", "refused"),
}


def _task_state(state: str) -> Text:
    return _text(TASK_STATES[state]) if state in TASK_STATES else verbatim(state)


def _stop_reason(reason: str) -> Text | None:
    """Why a task stopped (agent.taskrun's stop_reason), in words; None when there is none."""
    if not reason or reason in ("completed", "failed", "stopped"):
        return None
    if reason == "killed":
        return _text(QT_TRANSLATE_NOOP("Common", "by the kill switch"))
    if reason == "revoked":
        return _text(QT_TRANSLATE_NOOP("Common", "remote access was lowered"))
    if reason == "timeout":
        return _text(QT_TRANSLATE_NOOP("Common", "it took too long"))
    if reason in ("agent_restart", "agent_stopped"):
        return _text(QT_TRANSLATE_NOOP("Common", "ServiceGate stopped"))
    if reason in {r.value for r in EndReason} or reason == "session_ended":
        return _text(QT_TRANSLATE_NOOP("Common", "the session ended"))
    for prefix, source in (("stopped by ", QT_TRANSLATE_NOOP("Common", "stopped by {who}")),
                           ("declined by ", QT_TRANSLATE_NOOP("Common", "declined by {who}"))):
        if reason.startswith(prefix):
            return _text(source, who=_actor(reason.removeprefix(prefix)))
    return verbatim(reason)


def task_line(task: Mapping[str, Any]) -> Text:
    """"Collect the modality's log files — completed", with why it stopped when it did."""
    title, state = verbatim(str(task["title"])), _task_state(str(task["state"]))
    why = _stop_reason(str(task.get("stop_reason") or ""))
    if why is None:
        return _text(QT_TRANSLATE_NOOP("Common", "{title} — {state}"), title=title, state=state)
    return _text(QT_TRANSLATE_NOOP("Common", "{title} — {state} ({why})"), title=title, state=state, why=why)


@dataclass(frozen=True)
class FileFate:
    """What happened to one file: the proof of its handling, and whether it left (or is leaving) the device."""

    name: str
    size: int
    sha256: str
    proof: Text
    sent: bool
    pending: bool  # queued or uploading: still leaving
    task_id: str  # the task that wrote it; "" for a file sent with `upload`


def _upload_fate(entry: Mapping[str, Any], task_id: str = "") -> FileFate:
    """An upload queue entry (agent.upload): named by its new UIDs, de-identified and verified before it was queued."""
    state = str(entry.get("state") or "")
    problems = verbatim("; ".join(str(p) for p in entry.get("problems") or ()))
    sent, pending = True, False
    if state == "accepted":
        proof = _text(QT_TRANSLATE_NOOP("Receipt", "De-identified, checked by the portal"))
    elif state == "rejected":
        proof = _text(QT_TRANSLATE_NOOP("Receipt", "De-identified, refused by the portal's check and deleted there: "
                                                   "{problems}"), problems=problems)
    elif state == "failed":
        proof = _text(QT_TRANSLATE_NOOP("Receipt", "De-identified, could not be sent: {problems}"), problems=problems)
        sent = False
    else:  # queued, uploading
        proof = _text(QT_TRANSLATE_NOOP("Receipt", "De-identified, still being sent"))
        pending = True
    return FileFate(str(entry["name"]), int(entry.get("size") or 0), str(entry.get("sha256") or ""), proof, sent,
                    pending, task_id)


def _task_file_fate(entry: Mapping[str, Any], task_id: str) -> FileFate:
    """A file a task wrote, by its `handling` (agent.taskrun, agent.core.release_task_files)."""
    handling = str(entry.get("handling") or "")
    sent, pending = False, False
    if handling.startswith("released by "):
        who = handling.removeprefix("released by ").removesuffix(", sent")
        proof = _text(QT_TRANSLATE_NOOP("Receipt", "Released by {who} after the privacy notice, sent"),
                      who=_actor(who))
        sent = True
    elif handling.startswith("scrubbed"):
        proof = _text(QT_TRANSLATE_NOOP("Receipt", "Scrubbed of identifying text, sent"))
        sent = True
    elif handling.startswith("de-identified"):
        proof = _text(QT_TRANSLATE_NOOP("Receipt", "De-identified, queued for upload"))
        sent = pending = True
    elif handling.startswith("refused by the anonymizer"):
        proof = _text(QT_TRANSLATE_NOOP("Receipt", "Refused by the anonymizer: kept on the device, not sent"))
    elif handling.startswith("quarantined until the technologist releases it"):
        proof = _text(QT_TRANSLATE_NOOP("Receipt", "Kept on the device until you release it; not sent"))
    elif handling.startswith("quarantined"):
        proof = _text(QT_TRANSLATE_NOOP("Receipt", "Kept on the device, not sent"))
    elif handling.startswith("deleted"):
        proof = _text(QT_TRANSLATE_NOOP("Receipt", "Deleted on the device, not sent"))
    else:
        proof = verbatim(handling)
    return FileFate(str(entry["name"]), int(entry.get("size") or 0), str(entry.get("sha256") or ""), proof, sent,
                    pending, task_id)


def _session_tasks(session_id: str, tasks: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted((t for t in tasks if t.get("session_id") == session_id), key=lambda t: str(t["created_at"]))


def file_fates(session_id: str, tasks: Iterable[Mapping[str, Any]],
               uploads: Iterable[Mapping[str, Any]]) -> list[FileFate]:
    """Every file of the session: the tasks' files, then the uploads (a task's DICOM file, which is in the upload
    queue too, is listed once, with the queue's state)."""
    session_tasks = _session_tasks(session_id, tasks)
    queued = [u for u in uploads if u.get("session_id") == session_id]
    queued_by_sha = {str(u.get("sha256")): u for u in queued}
    fates: list[FileFate] = []
    shown: set[int] = set()
    for task in session_tasks:
        task_id = str(task["id"])
        for entry in task.get("files") or ():
            upload = queued_by_sha.get(str(entry.get("sha256")))
            if str(entry.get("handling") or "").startswith("de-identified") and upload is not None:
                fates.append(_upload_fate(upload, task_id))
                shown.add(id(upload))
            else:
                fates.append(_task_file_fate(entry, task_id))
    fates += [_upload_fate(u) for u in queued if id(u) not in shown]
    return fates


# ---- the audit viewer ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditRow:
    """One audit record as the viewer lists it (read-only)."""

    seq: int
    time: str  # local time, "2026-11-28 10:04:05"
    event: str  # the record's event name, as in the log and its export (docs/audit-log.md)
    by: Text  # who did it (a user, an engineer ID, or "the system")
    engineer: str  # "Dana Field (E-1001)" when the record is about an engineer's session, else ""
    session_id: str
    details: str  # the other facts: level, reason, task, file, ...


AUDIT_COLUMNS: tuple[Text, ...] = (
    _text(QT_TRANSLATE_NOOP("AuditViewer", "Time")), _text(QT_TRANSLATE_NOOP("AuditViewer", "Event")),
    _text(QT_TRANSLATE_NOOP("AuditViewer", "By")), _text(QT_TRANSLATE_NOOP("AuditViewer", "Engineer")),
    _text(QT_TRANSLATE_NOOP("AuditViewer", "Session")), _text(QT_TRANSLATE_NOOP("AuditViewer", "Details")),
)
ALL_ENGINEERS = _text(QT_TRANSLATE_NOOP("AuditViewer", "All engineers"))
_AUDIT_DETAIL_KEYS = ("level", "requested_level", "reason", "end_reason", "kind", "task", "file", "files", "why",
                      "outcome", "text", "case_id")


def audit_engineers(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(engineer ID, "Name (ID)") of every engineer the records name, by name."""
    found: dict[str, str] = {}
    for record in records:
        details = _record_details(record)
        engineer_id = str(details.get("engineer_id") or "")
        if engineer_id:
            found[engineer_id] = f"{details.get('engineer_name') or engineer_id} ({engineer_id})"
    return sorted(found.items(), key=lambda item: item[1].lower())


def audit_rows(records: Iterable[Mapping[str, Any]], tz: tzinfo | None = None) -> list[AuditRow]:
    """The records (`audit_export`, which also narrows them to one engineer) as rows, oldest first."""
    rows = []
    for record in records:
        details = _record_details(record)
        about = str(details.get("engineer_id") or "")
        actor = str(record.get("actor") or "")
        when = _required_time(record["ts"]).astimezone(tz)
        engineer = f"{details.get('engineer_name') or about} ({about})" if about else ""
        facts = [f"{key}: {_fact(details[key])}" for key in _AUDIT_DETAIL_KEYS if details.get(key) not in (None, "")]
        rows.append(AuditRow(int(record.get("seq") or 0), f"{when:%Y-%m-%d %H:%M:%S}", str(record.get("event")),
                             _actor(actor), engineer, str(details.get("session_id") or ""), "; ".join(facts)))
    return rows


def _record_details(record: Mapping[str, Any]) -> Mapping[str, Any]:
    details = record.get("details")
    return details if isinstance(details, dict) else {}


def _fact(value: Any) -> str:
    return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)


# ---- request service -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UrgencyOption:
    urgency: Urgency
    title: Text
    meaning: Text  # one plain line (agent.protocol.URGENCY_MEANING, translated)


URGENCY_OPTIONS: tuple[UrgencyOption, ...] = (
    UrgencyOption(Urgency.LOW, _text(QT_TRANSLATE_NOOP("RequestService", "Low")), _text(QT_TRANSLATE_NOOP(
        "RequestService", "A question or a small problem; the scanner works as usual."))),
    UrgencyOption(Urgency.NORMAL, _text(QT_TRANSLATE_NOOP("RequestService", "Normal")), _text(QT_TRANSLATE_NOOP(
        "RequestService", "A problem that hampers work; the scanner can still be used."))),
    UrgencyOption(Urgency.HIGH, _text(QT_TRANSLATE_NOOP("RequestService", "High")), _text(QT_TRANSLATE_NOOP(
        "RequestService", "The scanner cannot be used."))),
)


def service_request(text: str, urgency: Urgency) -> dict[str, str]:
    """The args of `service_request` for the description as typed (pasted line breaks and tabs become spaces)."""
    cleaned = " ".join("".join(" " if unicodedata.category(c) == "Cc" else c for c in text).split())
    if len(cleaned) < SERVICE_TEXT_MIN:
        raise InputError(_text(QT_TRANSLATE_NOOP("RequestService", "Describe the problem in a few words (at least "
                                                                   "{minimum} characters)."), minimum=SERVICE_TEXT_MIN))
    if len(cleaned) > SERVICE_TEXT_MAX:
        raise InputError(_text(QT_TRANSLATE_NOOP("RequestService", "The description has {count} characters; keep it "
                                                                   "to at most {maximum}. The service centre will "
                                                                   "call you for the details."),
                               count=len(cleaned), maximum=SERVICE_TEXT_MAX))
    return {"text": cleaned, "urgency": urgency.value}


def service_result(request: Mapping[str, Any]) -> Text:
    """What became of a service request (`service_request`'s answer, `service_request_changed`'s data)."""
    if request.get("state") == "sent" and request.get("case_id"):
        return _text(QT_TRANSLATE_NOOP("RequestService", "Sent to the service centre. Case number: {case}. Keep it "
                                                         "at hand when the service centre calls."),
                     case=verbatim(str(request["case_id"])))
    if request.get("state") == "refused":
        return _text(QT_TRANSLATE_NOOP("RequestService", "The service centre refused the request: {why}. Call the "
                                                         "service centre."), why=verbatim(str(request.get("why"))))
    if request.get("urgency") == Urgency.HIGH.value:
        return _text(QT_TRANSLATE_NOOP("RequestService", "The service centre cannot be reached now. Your request is "
                                                         "kept and sent as soon as it can be; the case number will "
                                                         "appear here. The scanner cannot be used: please also call "
                                                         "the service centre."))
    return _text(QT_TRANSLATE_NOOP("RequestService", "The service centre cannot be reached now. Your request is kept "
                                                     "and sent as soon as it can be; the case number will appear "
                                                     "here."))


# ---- the tray icon -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrayState:
    kind: str  # TRAY_KINDS: what the icon shows
    tooltip: Text  # the same in words (never only a colour)
    session_open: bool  # End session in the menu is offered


TRAY_KINDS = ("unavailable", "no-access", "limited", "permanent-limited", "full", "session-active")


def tray_state(status: Mapping[str, Any] | None, now: datetime, tz: tzinfo | None = None) -> TrayState:
    """The tray icon for the agent's `status` (None: the agent cannot be reached): an active session above all,
    else the standing access level."""
    if status is None:
        return TrayState("unavailable", _text(QT_TRANSLATE_NOOP(
            "Tray", "ServiceGate: remote service unavailable (the agent cannot be reached)")), False)
    sessions = list(status.get("sessions") or ())
    active = [s for s in sessions if s.get("state") == SessionState.ACTIVE.value]
    if active:
        engineer = active[0]["engineer"]
        name, company = verbatim(str(engineer["name"])), str(engineer.get("company") or "")
        tooltip = _text(QT_TRANSLATE_NOOP("Tray", "ServiceGate: remote session active ({name}, {company})"),
                        name=name, company=verbatim(company)) if company else \
            _text(QT_TRANSLATE_NOOP("Tray", "ServiceGate: remote session active ({name})"), name=name)
        return TrayState("session-active", tooltip, True)
    level = AccessLevel(status["access"]["level"])
    return TrayState(level.value, _text(QT_TRANSLATE_NOOP("Tray", "ServiceGate: {access}"),
                                        access=current_access(status["access"], now, tz)), bool(sessions))


# ---- the session banner --------------------------------------------------------------------------------------------

# The kill switch's button, on the banner and on a request's notice.
END_SESSION = _text(QT_TRANSLATE_NOOP("Banner", "End session"))
AGENT_DOWN = _text(QT_TRANSLATE_NOOP("Banner", "The ServiceGate agent cannot be reached: remote access stops with it. "
                                              "Tell site IT."))
ENDED_AT_CONSOLE = _text(QT_TRANSLATE_NOOP("Banner", "Ended at the console"))  # the kill switch's note (audit, receipt)
END_WARNING = _text(QT_TRANSLATE_NOOP("Banner", "End session stops every remote task now, ends every remote session "
                                                "and sets remote access to No access."))

@dataclass(frozen=True)
class Banner:
    session_id: str
    headline: Text  # "Remote service: Dana Field (Acme Imaging)"
    reason: Text
    case: Text | None  # "Case C-2026-000123": the service case the session belongs to
    level: Text
    elapsed: Text  # "Active for 12 min"
    remaining: Text | None  # "Access ends in 1 h 5 min": only under a time-limited grant that can end the session
    upgrade: Text | None  # site IT installs an update: when the session ends for it
    examinations_blocked: bool
    blocked: Text | None  # "Examinations blocked"
    activity: Text  # running tasks, else the one waiting for approval, else the last one
    files: Text | None  # files sent (and still being sent)
    other_sessions: Text | None
    end_label: Text
    end_warning: Text  # what End session does: it is the kill switch
    screen: ScreenShare | None = None  # the console's screen is shared with the engineer (share-screen)

    @property
    def lines(self) -> tuple[Text, ...]:
        shown = (self.headline, self.reason, self.case, self.level, self.elapsed, self.remaining, self.upgrade,
                 self.blocked,
                 self.activity, self.files, self.other_sessions, self.screen.line if self.screen else None)
        return tuple(line for line in shown if line is not None)


def banner(status: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]], uploads: Sequence[Mapping[str, Any]],
           now: datetime, shares: Iterable[Mapping[str, Any]] = ()) -> Banner | None:
    """The banner while a session is active (None otherwise), from `status`, `task_list`, `upload_list` and the
    screen shares (`screen_list`, kept up to date by `screen_changed`: `follow_share`)."""
    active = sorted((s for s in status.get("sessions") or () if s.get("state") == SessionState.ACTIVE.value),
                    key=lambda s: str(s.get("activated_at") or s.get("state_since")))
    if not active:
        return None
    session = active[0]
    engineer = session["engineer"]
    name, company = verbatim(str(engineer["name"])), str(engineer.get("company") or "")
    service = SessionKind(session["kind"]) is SessionKind.SERVICE
    if company:
        headline = _text(QT_TRANSLATE_NOOP("Banner", "Remote service: {name} ({company})"), name=name,
                         company=verbatim(company)) if service else \
            _text(QT_TRANSLATE_NOOP("Banner", "Application support: {name} ({company})"), name=name,
                  company=verbatim(company))
    else:
        headline = _text(QT_TRANSLATE_NOOP("Banner", "Remote service: {name}"), name=name) if service else \
            _text(QT_TRANSLATE_NOOP("Banner", "Application support: {name}"), name=name)
    level = AccessLevel(session.get("effective_level") or session["requested_level"])
    since = _time(session.get("activated_at") or session.get("state_since")) or now
    grant = status.get("access") or {}
    until = _time(grant.get("until")) if grant.get("level") == AccessLevel.LIMITED.value else None
    # A session confirmed for itself at the console (basis "consent") outlives the grant's end time.
    remaining = _text(QT_TRANSLATE_NOOP("Banner", "Access ends in {left}"), left=duration(until - now)) \
        if until is not None and session.get("basis") == "grant" else None
    blocked = bool(session.get("blocks_examinations") or status.get("examinations_blocked"))
    session_tasks = _session_tasks(str(session["id"]), tasks)
    fates = file_fates(str(session["id"]), tasks, uploads)
    sent = sum(1 for f in fates if f.sent and not f.pending)
    pending = sum(1 for f in fates if f.pending)
    files = None
    if pending:
        files = _text(QT_TRANSLATE_NOOP("Banner", "Files sent: {sent}, still sending: {pending}"), sent=sent,
                      pending=pending)
    elif sent:
        files = _text(QT_TRANSLATE_NOOP("Banner", "Files sent: {sent}"), sent=sent)
    others = len(active) - 1
    return Banner(
        session_id=str(session["id"]), headline=headline,
        reason=_text(QT_TRANSLATE_NOOP("Banner", "Reason: {reason}"), reason=verbatim(str(session["reason"]))),
        case=_text(QT_TRANSLATE_NOOP("Banner", "Case {case}"), case=verbatim(str(session["case_id"])))
        if session.get("case_id") else None,
        level=_text(QT_TRANSLATE_NOOP("Banner", "Level: {level}"), level=level_title(level)),
        elapsed=_text(QT_TRANSLATE_NOOP("Banner", "Active for {elapsed}"), elapsed=duration(now - since)),
        remaining=remaining, upgrade=_upgrade(status.get("upgrade"), now), examinations_blocked=blocked,
        blocked=_text(QT_TRANSLATE_NOOP("Banner", "Examinations blocked")) if blocked else None,
        activity=_activity(session_tasks), files=files,
        other_sessions=_text(QT_TRANSLATE_NOOP("Banner", "Other active sessions: {count}"), count=others)
        if others else None,
        end_label=END_SESSION, end_warning=END_WARNING, screen=screen_share(active, shares))


def _upgrade(upgrade: Mapping[str, Any] | None, now: datetime) -> Text | None:
    """Site IT announced an update (`servicegate-install upgrade`): the session ends for it at `at`."""
    at = _time(upgrade.get("at")) if upgrade else None
    if upgrade is None or at is None:
        return None
    if at <= now:
        return _text(QT_TRANSLATE_NOOP("Banner", "Software update {version}: the session is ending"),
                     version=verbatim(str(upgrade.get("version", ""))))
    return _text(QT_TRANSLATE_NOOP("Banner", "Software update {version}: the session ends in {left}"),
                 version=verbatim(str(upgrade.get("version", ""))), left=duration(at - now))


def _activity(tasks: Sequence[Mapping[str, Any]]) -> Text:
    """What the engineer is doing: the running tasks; else what waits for approval; else the last task."""
    running = [str(t["title"]) for t in tasks if t["state"] == "running"]
    if running:
        return _text(QT_TRANSLATE_NOOP("Banner", "Running: {tasks}"), tasks=verbatim(", ".join(running)))
    waiting = [str(t["title"]) for t in tasks if t["state"] == "waiting"]
    if waiting:
        return _text(QT_TRANSLATE_NOOP("Banner", "Waiting for your approval: {tasks}"),
                     tasks=verbatim(", ".join(waiting)))
    if tasks:
        return _text(QT_TRANSLATE_NOOP("Banner", "Last: {task}"), task=task_line(tasks[-1]))
    return _text(QT_TRANSLATE_NOOP("Banner", "No task run yet"))


def kill_request(text: str = "") -> dict[str, str]:
    """The args of `kill` (the banner's End session button)."""
    return {"text": text} if text else {}


# ---- the shared screen (the catalog task share-screen) -------------------------------------------------------------
# The engineer sees the console's screen through the agent's relay; the agent keeps it view-only until the
# technologist allows control, which it allows only while the session has full access (`control_possible`).

@dataclass(frozen=True)
class ScreenShare:
    """The banner's line of a shared screen, and its toggle."""

    session_id: str
    control: bool  # the engineer may use the mouse and keyboard now
    line: Text  # "Your screen is shared with Dana Field — view only"
    toggle: Text | None  # "Allow control" / "View only"; None: no button (control needs full access)
    toggle_hint: Text | None  # what the toggle does (its tooltip, what a screen reader says)
    request: dict[str, Any] | None  # the args of `screen_control` the toggle sends


def follow_share(shares: Mapping[str, Mapping[str, Any]], change: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The shares (by task ID) after a `screen_changed` event or an entry of `screen_control`'s answer: an ended
    share is gone."""
    followed = dict(shares)
    if change.get("state") == "ended":
        followed.pop(str(change["task_id"]), None)
    else:
        followed[str(change["task_id"])] = change
    return followed


def screen_share(active: Sequence[Mapping[str, Any]], shares: Iterable[Mapping[str, Any]]) -> ScreenShare | None:
    """What the banner says of the screen shared in one of the `active` sessions (the banner's session first);
    None while no share is `sharing` (one `starting` is still connecting: the activity line names its task)."""
    sessions = {str(s["id"]): s for s in active}
    order = list(sessions)
    sharing = sorted((share for share in shares
                      if share.get("state") == "sharing" and str(share.get("session_id")) in sessions),
                     key=lambda share: order.index(str(share["session_id"])))
    if not sharing:
        return None
    share = sharing[0]
    session_id = str(share["session_id"])
    name = verbatim(str(sessions[session_id]["engineer"]["name"]))
    control = bool(share.get("control"))
    if not share.get("control_possible"):
        return ScreenShare(session_id, False, _text(QT_TRANSLATE_NOOP(
            "Banner", "Your screen is shared with {name} — view only (control needs full access)"), name=name),
            None, None, None)
    if control:
        return ScreenShare(
            session_id, True,
            _text(QT_TRANSLATE_NOOP("Banner", "Your screen is shared with {name} — the engineer can use the mouse "
                                              "and keyboard"), name=name),
            _text(QT_TRANSLATE_NOOP("Banner", "View only")),
            _text(QT_TRANSLATE_NOOP("Banner", "Take back the mouse and keyboard: {name} can only watch your "
                                              "screen."), name=name),
            screen_control_request(session_id, False))
    return ScreenShare(
        session_id, False,
        _text(QT_TRANSLATE_NOOP("Banner", "Your screen is shared with {name} — view only"), name=name),
        _text(QT_TRANSLATE_NOOP("Banner", "Allow control")),
        _text(QT_TRANSLATE_NOOP("Banner", "Let {name} use the mouse and keyboard of this console. You can take "
                                          "them back at any time."), name=name),
        screen_control_request(session_id, True))


def screen_control_request(session_id: str, control: bool) -> dict[str, Any]:
    """The args of `screen_control` (the banner's Allow control / View only)."""
    return {"session_id": session_id, "control": control}


def screen_control_failed(exc: ServiceGateError) -> Text:
    """The agent refused to change control (no full access any more, the share ended): said on the banner."""
    if isinstance(exc, AgentUnreachableError | PermissionDeniedError):
        return error_text(exc).text
    return _text(QT_TRANSLATE_NOOP("Banner", "Control of your screen was not changed: {why}"),
                 why=verbatim(str(exc)))


# ---- a task that waits for the technologist (application support: `task_confirm` / `task_decline`) -------------
# The policy asks the technologist before an application-support task runs (docs/tasks.md); the agent says so with
# `task_changed` (`state: "waiting"`). Whether the task shares the screen is the catalog's `screen` flag
# (`task_catalog`), never guessed from its kind or title.

TASK_WAITING = "waiting"
TASK_UNDER_WAY = ("waiting", "running")  # any other state: the task is over


@dataclass(frozen=True)
class TaskQuestion:
    """What the confirmation dialog of a waiting task shows."""

    task_id: str
    screen: bool  # it shares the console's screen: the X server must admit the agent's user (consent_ui.xaccess)
    title: Text  # the window's title
    question: Text  # "Dana Field asks for your approval: Share the screen"
    rows: tuple[Row, ...]  # who, the session's reason, the task
    warning: Text | None  # what the engineer will see (a shared screen), in bold
    note: Text  # what Allow and Decline mean


def catalog_by_kind(catalog: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """`task_catalog`'s answer by task kind."""
    return {str(entry["kind"]): entry for entry in catalog}


def shares_screen(task: Mapping[str, Any], catalog: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether `task` shares the console's screen: its catalog entry says `screen: true`."""
    return bool((catalog.get(str(task.get("kind"))) or {}).get("screen"))


def task_question(task: Mapping[str, Any], sessions: Iterable[Mapping[str, Any]],
                  catalog: Mapping[str, Mapping[str, Any]]) -> TaskQuestion:
    """The question of a waiting task (`task_changed`, `task_list`): what the engineer of its session (`status`'s
    sessions; the engineer ID when the session is not known) asks for, and for a shared screen what it shows."""
    session = next((s for s in sessions if str(s.get("id")) == str(task.get("session_id"))), None)
    engineer = (session or {}).get("engineer") or {}
    name = verbatim(str(engineer.get("name") or task.get("engineer_id") or ""))
    company = str(engineer.get("company") or "")
    who = _text(QT_TRANSLATE_NOOP("TaskDialog", "{name} ({company})"), name=name, company=verbatim(company)) \
        if company else name
    rows = [Row(_text(QT_TRANSLATE_NOOP("TaskDialog", "Engineer")), who)]
    if session is not None:
        rows.append(Row(_text(QT_TRANSLATE_NOOP("TaskDialog", "Reason")), verbatim(str(session.get("reason") or ""))))
    title = verbatim(str(task.get("title") or task.get("kind") or ""))
    rows.append(Row(_text(QT_TRANSLATE_NOOP("TaskDialog", "Task")), title))
    details = tuple(rows)
    screen = shares_screen(task, catalog)
    if screen:
        return TaskQuestion(
            str(task["id"]), True, _text(QT_TRANSLATE_NOOP("TaskDialog", "Share your screen?")),
            _text(QT_TRANSLATE_NOOP("TaskDialog", "{name} asks to see your screen"), name=name),
            details,
            _text(QT_TRANSLATE_NOOP("TaskDialog", "{name} will see your whole screen, including any patient data "
                                                  "on it. The engineer can only watch until you allow control on "
                                                  "the banner."), name=name),
            _text(QT_TRANSLATE_NOOP("TaskDialog", "Close or cover what the engineer must not see before you allow. "
                                                  "End session on the banner stops the sharing at any time.")))
    return TaskQuestion(
        str(task["id"]), False, _text(QT_TRANSLATE_NOOP("TaskDialog", "Allow this task?")),
        _text(QT_TRANSLATE_NOOP("TaskDialog", "{name} asks for your approval: {task}"), name=name, task=title),
        details, None,
        _text(QT_TRANSLATE_NOOP("TaskDialog", "The task runs only if you allow it. End session on the banner stops "
                                              "it at any time.")))


def task_decision_request(task_id: str) -> dict[str, str]:
    """The args of `task_confirm` and of `task_decline`."""
    return {"task_id": task_id}


def task_refused(exc: ServiceGateError) -> Text:
    """The agent did not take the technologist's answer (the task ended meanwhile, the session lost its level)."""
    if isinstance(exc, AgentUnreachableError | PermissionDeniedError):
        return error_text(exc).text
    return _text(QT_TRANSLATE_NOOP("TaskDialog", "The agent did not take your answer: {why}"),
                 why=verbatim(_capitalised(str(exc))))


# ---- the end-of-session receipt ------------------------------------------------------------------------------------

END_REASONS: dict[EndReason, Source] = {
    EndReason.COMPLETED: QT_TRANSLATE_NOOP("Receipt", "The engineer ended the session."),
    EndReason.DECLINED: QT_TRANSLATE_NOOP("Receipt", "The session was declined at the console."),
    EndReason.CONSENT_TIMEOUT: QT_TRANSLATE_NOOP("Receipt", "Nobody confirmed the session at the console in time."),
    EndReason.REVOKED: QT_TRANSLATE_NOOP("Receipt", "Remote access was lowered below what the session used."),
    EndReason.KILLED: QT_TRANSLATE_NOOP("Receipt", "The session was ended with the kill switch (End session)."),
    EndReason.IDLE_TIMEOUT: QT_TRANSLATE_NOOP("Receipt", "The engineer did nothing for longer than the idle "
                                                         "timeout."),
    EndReason.TIME_LIMIT: QT_TRANSLATE_NOOP("Receipt", "The session reached its time limit."),
    EndReason.GRANT_EXPIRED: QT_TRANSLATE_NOOP("Receipt", "The limited access the session relied on reached its end "
                                                          "time."),
    EndReason.AUTH_FAILED: QT_TRANSLATE_NOOP("Receipt", "The engineer did not sign in (wrong or no one-time password "
                                                        "in time)."),
    EndReason.PORTAL_LOST: QT_TRANSLATE_NOOP("Receipt", "The connection to the service centre was lost."),
    EndReason.UPGRADE: QT_TRANSLATE_NOOP("Receipt", "ServiceGate stopped for a software update."),
    EndReason.AGENT_RESTART: QT_TRANSLATE_NOOP("Receipt", "ServiceGate stopped while the session was open; it was "
                                                          "ended when it started again."),
}


@dataclass(frozen=True)
class ReceiptTask:
    line: Text  # "Collect the modality's log files — completed"
    output: Text | None  # its output text went to the portal, scrubbed
    files: tuple[FileFate, ...]


@dataclass(frozen=True)
class Receipt:
    session_id: str
    title: Text
    who: Text  # "Dana Field (engineer ID E-1001, Acme Imaging)"
    period: Text  # "2026-11-28 10:04 to 11:30 (1 h 26 min)"
    level: Text
    end_reason: EndReason | None
    end_reason_text: Text
    summary: Text | None  # the engineer's summary (or the note the session ended with)
    tasks: tuple[ReceiptTask, ...]
    files: tuple[FileFate, ...]  # every file of the session: each with its proof, sent or not


def receipt(session: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]], uploads: Sequence[Mapping[str, Any]],
            tz: tzinfo | None = None) -> Receipt:
    """The receipt of an ended session, from its dict (`session_changed`, `session_list`), `task_list` and
    `upload_list`: who, from when to when, level, why it ended, the summary, tasks run, files and data sent."""
    if session.get("state") != SessionState.ENDED.value:
        raise ValueError(f"session {session.get('id')} has not ended: a receipt is made when it has")
    engineer = session["engineer"]
    name, engineer_id = verbatim(str(engineer["name"])), verbatim(str(engineer["id"]))
    company = str(engineer.get("company") or "")
    who = _text(QT_TRANSLATE_NOOP("Receipt", "{name} (engineer ID {id}, {company})"), name=name, id=engineer_id,
                company=verbatim(company)) if company else \
        _text(QT_TRANSLATE_NOOP("Receipt", "{name} (engineer ID {id})"), name=name, id=engineer_id)
    start = _time(session.get("activated_at")) or _required_time(session["created_at"])
    end = _required_time(session["state_since"])
    period = _text(QT_TRANSLATE_NOOP("Receipt", "{start} to {end} ({length})"), start=clock_time(start, None, tz),
                   end=clock_time(end, start, tz), length=duration(end - start))
    if session.get("effective_level"):
        level = _text(QT_TRANSLATE_NOOP("Receipt", "Level: {level}"),
                      level=level_title(AccessLevel(session["effective_level"])))
    else:
        level = _text(QT_TRANSLATE_NOOP("Receipt", "Not granted (asked for {level})"),
                      level=level_title(AccessLevel(session["requested_level"])))
    reason = EndReason(session["end_reason"]) if session.get("end_reason") else None
    end_text = str(session.get("end_text") or "")
    summary = None
    if end_text:
        summary = _text(QT_TRANSLATE_NOOP("Receipt", "Engineer's summary: {text}"), text=verbatim(end_text)) \
            if reason is EndReason.COMPLETED else _text(QT_TRANSLATE_NOOP("Receipt", "Note: {text}"),
                                                        text=verbatim(end_text))
    fates = file_fates(str(session["id"]), tasks, uploads)
    receipt_tasks = []
    for task in _session_tasks(str(session["id"]), tasks):
        output = _text(QT_TRANSLATE_NOOP("Receipt", "Its output was sent, scrubbed of identifying text")) \
            if task.get("stdout") or task.get("stderr") else None
        receipt_tasks.append(ReceiptTask(task_line(task), output,
                                         tuple(f for f in fates if f.task_id == str(task["id"]))))
    return Receipt(
        session_id=str(session["id"]), title=_text(QT_TRANSLATE_NOOP("Receipt", "Remote session ended")), who=who,
        period=period, level=level, end_reason=reason,
        end_reason_text=_text(END_REASONS[reason]) if reason else verbatim(""), summary=summary,
        tasks=tuple(receipt_tasks), files=tuple(fates))


# ---- updates from the service centre -------------------------------------------------------------------------------
#
# An update the vendor offered, as the agent gives it (`update_list`, the `update_changed` event: agent.updates
# Offer.to_dict): verified with TUF and staged by the agent, it waits for the technologist's decision (`offered`;
# `postponed` until a time), then `approved` -> `installing` -> `installed` | `failed`, or `rejected`.

UPDATE_WAITING = ("offered", "postponed")  # the technologist may approve, postpone or reject it
UPDATE_FINISHED = ("installed", "failed", "rejected")  # nothing more happens to it
POLICY_ACTOR = "site-policy"  # who approved under `[updates] auto_approve_virus_patterns` (agent.updates)
MAX_POSTPONE = timedelta(days=30)  # the agent's limit (agent.updates.MAX_POSTPONE)
POSTPONE_HOUR = timedelta(hours=1)
EVENING = (22, 0)  # "tonight at 22:00": after the day's examinations
MORNING = (7, 0)  # "tomorrow at 07:00": before them
REJECT_REASON_MAX = 500  # characters of a rejection's reason

UPDATE_TITLES: dict[str, Source] = {
    "software": QT_TRANSLATE_NOOP("UpdateDialog", "Software update {version}"),
    "virus-patterns": QT_TRANSLATE_NOOP("UpdateDialog", "Virus patterns {version}"),
    "configuration": QT_TRANSLATE_NOOP("UpdateDialog", "Configuration update {version}"),
}
NO_UPDATES = _text(QT_TRANSLATE_NOOP("UpdateDialog", "No updates are waiting."))
DOWNTIME_WARNING = _text(QT_TRANSLATE_NOOP(
    "UpdateDialog", "Examinations must pause while this update installs. Approve it when no patient is being "
                    "examined, or postpone it."))


@dataclass(frozen=True)
class UpdateView:
    """One offered update, as the update dialog shows it."""

    update_id: str
    kind: str
    state: str
    title: Text  # "Virus patterns 2026.12.5"
    rows: tuple[Row, ...]  # From, Signed by, Size, What it needs
    warning: Text | None  # examinations must pause: said prominently
    notes: Text  # the release notes as the vendor wrote them (plain text), or that there are none
    status: Text  # "Waiting for your decision", "Postponed until 22:00: ...", "Installed: ..."
    waiting: bool  # offered or postponed: Approve, Postpone and Reject apply
    finished: bool  # installed, failed or rejected


def update_title(update: Mapping[str, Any]) -> Text:
    kind, version = str(update.get("kind") or ""), verbatim(str(update.get("version") or ""))
    if kind in UPDATE_TITLES:
        return _text(UPDATE_TITLES[kind], version=version)
    return verbatim(f"{kind} {update.get('version') or ''}".strip())


def size_text(length: int) -> Text:
    """A file's size as people read it: "512 bytes", "850 kB", "1.2 MB", "3.4 GB" (decimal units; the decimal
    separator is the translation's)."""
    if length < 1000:
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "{count} bytes"), count=length)
    if length < 999_500:
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "{whole} kB"), whole=max(1, round(length / 1000)))
    tenths = round(length / 100_000)
    if tenths < 10_000:
        whole, tenth = divmod(tenths, 10)
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "{whole}.{tenth} MB"), whole=whole, tenth=tenth)
    whole, tenth = divmod(round(length / 100_000_000), 10)
    return _text(QT_TRANSLATE_NOOP("UpdateDialog", "{whole}.{tenth} GB"), whole=whole, tenth=tenth)


def signed_by_text(key_ids: Sequence[str]) -> Text:
    """The targets role's keys that sign the update, each shortened to 8 characters ("3f2a9c01…", the start of what
    `servicegate update show` prints)."""
    keys = [f"{str(key)[:8]}…" for key in key_ids if key]
    if not keys:
        return NOT_GIVEN
    if len(keys) == 1:
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "The vendor's signing key {key}"), key=verbatim(keys[0]))
    return _text(QT_TRANSLATE_NOOP("UpdateDialog", "The vendor's signing keys {keys}"), keys=verbatim(", ".join(keys)))


def update_needs(restart: bool, downtime: bool) -> Text:
    """What installing it takes from the site: a restart, examination downtime, or nothing."""
    if restart and downtime:
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "A restart of ServiceGate; examinations must pause while it "
                                                       "installs"))
    if restart:
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "A restart of ServiceGate"))
    if downtime:
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "Examinations must pause while it installs"))
    return _text(QT_TRANSLATE_NOOP("UpdateDialog", "Nothing: the scanner works as usual"))


def _decider(user: str) -> Text:
    if user == POLICY_ACTOR:
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "the site's policy for virus patterns"))
    return SYSTEM if not user or user == SYSTEM_ACTOR else verbatim(user)


def update_status(update: Mapping[str, Any], now: datetime, tz: tzinfo | None = None) -> Text:
    """What became of the update, in one or two sentences (the dialog's answer line; the list's state)."""
    state = str(update.get("state") or "")
    who = _decider(str(update.get("decided_by") or ""))
    why = str(update.get("why") or "").strip().rstrip(".")
    if state == "offered":
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "Waiting for your decision"))
    if state == "postponed":
        until = _time(update.get("until"))
        if until is None:
            return _text(QT_TRANSLATE_NOOP("UpdateDialog", "Postponed: it will be offered again later."))
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "Postponed until {until}: it will be offered again then."),
                     until=clock_time(until, now, tz))
    if state == "approved":
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "Approved by {who}: the installation is starting."), who=who)
    if state == "installing":
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "Approved by {who}: installing now. This window says when it "
                                                       "is done."), who=who)
    if state == "installed":
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "Installed: {title} is in use now."),
                     title=update_title(update))
    if state == "failed":
        if why:
            return _text(QT_TRANSLATE_NOOP("UpdateDialog", "Not installed: {why}. Tell site IT."),
                         why=verbatim(why))
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "Not installed. Tell site IT."))
    if state == "rejected":
        if why:
            return _text(QT_TRANSLATE_NOOP("UpdateDialog", "Rejected by {who} ({reason}): it will not be installed. "
                                                           "The service centre is told."),
                         who=who, reason=verbatim(why))
        return _text(QT_TRANSLATE_NOOP("UpdateDialog", "Rejected by {who}: it will not be installed. The service "
                                                       "centre is told."), who=who)
    return verbatim(state)


def update_view(update: Mapping[str, Any], now: datetime, tz: tzinfo | None = None) -> UpdateView:
    """The update dialog of one update (`update_list`'s entry, `update_changed`'s data): what it is, from whom,
    signed by which key, its size, what installing it needs, the release notes, and what became of it."""
    restart, downtime = bool(update.get("restart")), bool(update.get("downtime"))
    publisher = str(update.get("publisher") or "")
    notes = str(update.get("notes") or "").strip()
    rows = (
        Row(_text(QT_TRANSLATE_NOOP("UpdateDialog", "From")),
            verbatim(publisher) if publisher else _text(QT_TRANSLATE_NOOP("UpdateDialog", "The vendor"))),
        Row(_text(QT_TRANSLATE_NOOP("UpdateDialog", "Signed by")), signed_by_text(list(update.get("signed_by") or ()))),
        Row(_text(QT_TRANSLATE_NOOP("UpdateDialog", "Size")), size_text(int(update.get("length") or 0))),
        Row(_text(QT_TRANSLATE_NOOP("UpdateDialog", "What it needs")), update_needs(restart, downtime)),
    )
    state = str(update.get("state") or "")
    return UpdateView(
        update_id=str(update["id"]), kind=str(update.get("kind") or ""), state=state, title=update_title(update),
        rows=rows, warning=DOWNTIME_WARNING if downtime else None,
        notes=verbatim(notes) if notes else _text(QT_TRANSLATE_NOOP("UpdateDialog", "No release notes.")),
        status=update_status(update, now, tz), waiting=state in UPDATE_WAITING, finished=state in UPDATE_FINISHED)


_PROGRESS = {"offered": 0, "postponed": 0, "approved": 1, "installing": 2, "installed": 3, "failed": 3, "rejected": 3}


def latest_update(shown: Mapping[str, Any], news: Mapping[str, Any]) -> Mapping[str, Any]:
    """Of the update a window shows and news of it, the one further along (`news` when they are as far). The agent's
    answer to a decision and a list come on the UI's call connection, its events on the watch connection: the
    event of the installation's end may arrive before the answer that it is installing."""
    return shown if _PROGRESS.get(str(shown.get("state")), 0) > _PROGRESS.get(str(news.get("state")), 0) else news


def waiting_updates(updates: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The updates that wait for a decision (offered or postponed), oldest offer first: the Updates… list."""
    return sorted((u for u in updates if u.get("state") in UPDATE_WAITING), key=lambda u: str(u.get("offered_at")))


def approve_request(update_id: str) -> dict[str, str]:
    """The args of `update_approve`."""
    return {"update_id": update_id}


def reject_request(update_id: str, reason: str = "") -> dict[str, str]:
    """The args of `update_reject`: the reason as typed (optional; pasted line breaks become spaces)."""
    cleaned = " ".join("".join(" " if unicodedata.category(c) == "Cc" else c for c in reason).split())
    if len(cleaned) > REJECT_REASON_MAX:
        raise InputError(_text(QT_TRANSLATE_NOOP("UpdateDialog", "The reason has {count} characters; keep it to at "
                                                                 "most {maximum}."),
                               count=len(cleaned), maximum=REJECT_REASON_MAX))
    return {"update_id": update_id, "reason": cleaned}


@dataclass(frozen=True)
class PostponeChoice:
    key: str  # "hour", "tonight", "morning"
    label: Text  # "In 1 hour (11:06)", "Tonight at 22:00", "Tomorrow at 07:00"
    until: datetime


def _local_at(day: date, hour_minute: tuple[int, int], tz: tzinfo | None) -> datetime:
    """That wall-clock time on `day` in the local zone (`tz`; None: the system's), aware."""
    naive = datetime(day.year, day.month, day.day, *hour_minute)
    return naive.replace(tzinfo=tz) if tz is not None else naive.astimezone()


def postpone_choices(now: datetime, tz: tzinfo | None = None) -> tuple[PostponeChoice, ...]:
    """When a busy technologist may have the update asked again: in an hour; tonight at 22:00 (while that is later
    than in an hour); the next 07:00 (this morning, while that is more than an hour away, else tomorrow)."""
    hour = now + POSTPONE_HOUR
    today = now.astimezone(tz).date()
    choices = [PostponeChoice("hour", _text(QT_TRANSLATE_NOOP("UpdateDialog", "In 1 hour ({time})"),
                                            time=clock_time(hour, now, tz)), hour)]
    tonight = _local_at(today, EVENING, tz)
    morning = _local_at(today, MORNING, tz)
    if morning > hour:
        choices.append(PostponeChoice("morning", _text(QT_TRANSLATE_NOOP("UpdateDialog", "This morning at {time}"),
                                                       time=f"{MORNING[0]:02d}:{MORNING[1]:02d}"), morning))
    if tonight > hour:
        choices.append(PostponeChoice("tonight", _text(QT_TRANSLATE_NOOP("UpdateDialog", "Tonight at {time}"),
                                                       time=f"{EVENING[0]:02d}:{EVENING[1]:02d}"), tonight))
    if morning <= hour:
        tomorrow = _local_at(today + timedelta(days=1), MORNING, tz)
        choices.append(PostponeChoice("morning", _text(QT_TRANSLATE_NOOP("UpdateDialog", "Tomorrow at {time}"),
                                                       time=f"{MORNING[0]:02d}:{MORNING[1]:02d}"), tomorrow))
    return tuple(choices)


def postpone_request(update_id: str, key: str, now: datetime, tz: tzinfo | None = None) -> dict[str, str]:
    """The args of `update_postpone` for the choice `key` as it is now (a page left open for long is not sent with a
    time that has passed): `until` in ISO 8601 with its offset (UTC)."""
    choice = next((c for c in postpone_choices(now, tz) if c.key == key), None)
    if choice is None:
        raise InputError(_text(QT_TRANSLATE_NOOP("UpdateDialog", "That time has passed. Choose another one.")))
    if not now < choice.until <= now + MAX_POSTPONE:
        raise InputError(_text(QT_TRANSLATE_NOOP("UpdateDialog", "An update can be postponed by at most {days} "
                                                                 "days."), days=MAX_POSTPONE.days))
    return {"update_id": update_id, "until": choice.until.astimezone(UTC).isoformat(timespec="seconds")}
