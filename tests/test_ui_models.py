"""consent_ui.models without Qt: what each screen shows and what each action sends, from the agent's real dicts
(built with agent.session.Session, agent.access.Grant and agent.taskrun.TaskRun, then `to_dict()`), with a fixed
`now`, UTC as the local zone and an identity translation. Also: pyside6-lupdate really extracts every string."""

from __future__ import annotations

import ast
import dataclasses
import os
import string
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agent.access import Grant, factory_grant, new_grant
from agent.api import session_id_of
from agent.clock import parse_utc, utc_iso
from agent.errors import (
    AgentUnreachableError,
    AuditError,
    NotFoundError,
    PermissionDeniedError,
    PortalError,
    RefusedError,
    ServiceGateError,
    UsageError,
)
from agent.protocol import (
    OPERATIONS,
    PRIVACY_DISCLAIMER,
    SESSION_LEVELS,
    SYSTEM_ACTOR,
    AccessLevel,
    EndReason,
    SessionKind,
    SessionState,
    Urgency,
)
from agent.screen import Share
from agent.session import Basis, Engineer, Session, admission
from agent.taskrun import RELEASABLE, TaskRun
from consent_ui import models
from consent_ui.models import (
    ACCESS_OPTIONS,
    BAD_SESSION_ID,
    END_REASONS,
    KIND_TITLES,
    LEVEL_TITLES,
    LIMIT_PRESETS,
    PRIVACY_NOTICE,
    TASK_STATES,
    InputError,
    LimitPreset,
    Text,
    access_applied,
    access_request,
    banner,
    claim_request,
    clean_session_id,
    clock_time,
    confirm_choices,
    confirm_request,
    current_access,
    cursor_as_typed,
    custom_end_range,
    decline_request,
    duration,
    error_text,
    file_fates,
    follow_share,
    format_as_typed,
    group_id,
    hotkey_unusable,
    identity,
    incoming_request,
    kill_request,
    receipt,
    screen_control_failed,
    screen_control_request,
    session_details,
    verbatim,
)

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "consent_ui" / "models.py"
CONTEXTS = {"AccessDialog", "SessionDialog", "Banner", "Receipt", "Common", "Tray", "AuditViewer", "RequestService",
            "UpdateDialog", "TaskDialog"}
NOW = datetime(2026, 11, 28, 10, 6, tzinfo=UTC)
ENGINEER = Engineer("E-1001", "Dana Field", "Acme Imaging")
SID = "48213907"


def show(text: Text | None) -> str:
    assert text is not None
    return text.render(identity)


def grant(level: AccessLevel, *, set_at: datetime = NOW - timedelta(minutes=2), until: datetime | None = None,
          by: str = "tech1") -> dict[str, Any]:
    return new_grant(level, by, set_at, until).to_dict()


def session(state: SessionState = SessionState.AWAITING_CONSENT, *, level: AccessLevel = AccessLevel.FULL,
            effective: AccessLevel | None = None, basis: Basis = Basis.CONSENT, claimed: bool = True,
            kind: SessionKind = SessionKind.SERVICE, engineer: Engineer = ENGINEER,
            created: datetime = NOW - timedelta(minutes=20), activated: datetime | None = None,
            since: datetime | None = None, end_reason: EndReason | None = None, end_text: str = "",
            session_id: str = SID) -> dict[str, Any]:
    return Session(id=session_id, kind=kind, engineer=engineer, reason="Gradient coil error E-4711 after update",
                   requested_level=level, state=state, created_at=created, state_since=since or created,
                   basis=basis, effective_level=effective, confirmed_by="tech1" if basis is Basis.CONSENT else None,
                   activated_at=activated, last_activity=activated, end_reason=end_reason, end_text=end_text,
                   claimed=claimed).to_dict()


def task(task_id: str, title: str, state: str, *, created: datetime, session_id: str = SID,
         stop_reason: str = "", files: tuple[Mapping[str, Any], ...] = (), stdout: str = "") -> dict[str, Any]:
    ended = state not in ("running", "waiting")
    return TaskRun(id=task_id, kind=title.split()[0].lower(), title=title, session_id=session_id,
                   engineer_id=ENGINEER.id, params={}, state=state, created_at=created,
                   ended_at=created + timedelta(minutes=1) if ended else None, stop_reason=stop_reason,
                   returncode=0 if state == "completed" else None, stdout=stdout, files=files).to_dict()


def upload(name: str, sha: str, state: str, *, session_id: str = SID, problems: tuple[str, ...] = ()) -> dict[str, Any]:
    """An entry of agent.upload's queue, as `upload_list` answers it."""
    return {"entry_id": f"e-{sha}", "name": name, "size": 524288, "sha256": sha, "case_id": "",
            "session_id": session_id, "path": f"/var/lib/servicegate/uploads/b/out/{name}", "state": state,
            "upload_id": None, "sent": 0, "problems": list(problems), "queued_at": utc_iso(NOW), "finished_at": None}


def status(*sessions: dict[str, Any], access: dict[str, Any] | None = None) -> dict[str, Any]:
    """As Agent.status() answers it."""
    return {"agent_version": "0.1.0", "now": utc_iso(NOW), "access": access or grant(AccessLevel.LIMITED),
            "sessions": list(sessions), "examinations_blocked": any(s["blocks_examinations"] for s in sessions),
            "examination_block": {"held": False, "enforced": False}, "tasks": [], "killing": False,
            "counters": {}, "portal": {"state": "connected"}, "problems": [], "upgrade": None,
            "time_limit_min": 480,
            "console": {"hotkey": "Ctrl+Alt+End", "language": "system", "high_contrast": False}}


# ---- the translatable strings ------------------------------------------------------------------------------------

def literals() -> list[tuple[str, str]]:
    """(context, text) of every QT_TRANSLATE_NOOP call in consent_ui/models.py, as lupdate must see them."""
    found = []
    for node in ast.walk(ast.parse(MODELS.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "QT_TRANSLATE_NOOP":
            assert len(node.args) == 2, f"line {node.lineno}: QT_TRANSLATE_NOOP takes a context and a text"
            values = [arg.value if isinstance(arg, ast.Constant) else None for arg in node.args]
            assert all(isinstance(v, str) for v in values), f"line {node.lineno}: lupdate needs string literals"
            found.append((str(values[0]), str(values[1])))
    return found


LITERALS = set(literals())


def texts(value: Any) -> Iterator[Text]:
    """Every Text in a model's answer, nested values included."""
    if isinstance(value, Text):
        yield value
        for inner in value.values.values():
            yield from texts(inner)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from texts(getattr(value, f.name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from texts(item)


def assert_all_marked(value: Any) -> None:
    """What the models show is either marked for translation (and so in lupdate's list) or verbatim."""
    for text in texts(value):
        if not text.verbatim:
            assert (text.context, text.source) in LITERALS, text
            fields = {name for _, name, _, _ in string.Formatter().parse(text.source) if name}
            assert fields == set(text.values), text


def test_every_literal_has_a_known_context_and_well_formed_placeholders() -> None:
    assert len(LITERALS) > 50
    for context, text in LITERALS:
        assert context in CONTEXTS, (context, text)
        for _, name, spec, conversion in string.Formatter().parse(text):  # raises on a stray brace
            assert name is None or (name.isidentifier() and not spec and not conversion), text


def test_lupdate_extracts_every_literal(tmp_path: Path) -> None:
    lupdate = Path(sys.executable).parent / "pyside6-lupdate"
    if not lupdate.exists() and os.environ.get("CI") == "true":
        pytest.fail("pyside6-lupdate is not installed: make test installs the `ui` extra")
    if not lupdate.exists():
        pytest.skip("pyside6-lupdate is not installed (the `ui` extra)")
    ts = tmp_path / "consent_ui.ts"
    result = subprocess.run([str(lupdate), str(MODELS), "-ts", str(ts)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    extracted = {(context.findtext("name"), message.findtext("source"))
                 for context in ET.parse(ts).getroot().iter("context") for message in context.iter("message")}
    assert extracted == LITERALS, (LITERALS - extracted, extracted - LITERALS)


def test_the_models_import_no_qt() -> None:
    code = "import sys, consent_ui.models; sys.exit(any(m.split('.')[0] == 'PySide6' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False, timeout=60).returncode == 0


def test_render_translates_then_fills_values_and_leaves_verbatim_text_alone() -> None:
    german = {("Banner", "Reason: {reason}"): "Grund: {reason}", ("Common", "Full access"): "Vollzugriff",
              ("Banner", "Level: {level}"): "Stufe: {level}"}

    def translate(context: str, source: str) -> str:
        return german.get((context, source), source)

    reason = Text("Banner", "Reason: {reason}", {"reason": verbatim("Full access {not a placeholder}")})
    assert reason.render(translate) == "Grund: Full access {not a placeholder}"
    level = Text("Banner", "Level: {level}", {"level": models.level_title(AccessLevel.FULL)})
    assert level.render(translate) == "Stufe: Vollzugriff"
    assert verbatim("Full access").render(translate) == "Full access"


def test_the_privacy_notice_is_the_agents_disclaimer() -> None:
    assert show(PRIVACY_NOTICE) == PRIVACY_DISCLAIMER
    assert (PRIVACY_NOTICE.context, PRIVACY_NOTICE.source) == ("Common", PRIVACY_DISCLAIMER)


def test_every_level_kind_end_reason_and_task_state_has_words() -> None:
    assert set(LEVEL_TITLES) == set(AccessLevel)
    assert set(KIND_TITLES) == set(SessionKind)
    assert set(END_REASONS) == set(EndReason)
    assert set(TASK_STATES) == {"waiting", "running", "completed", "failed", "timeout", "stopped", "declined",
                                "refused"}
    assert all(len(END_REASONS[reason]) < 100 for reason in EndReason)


@pytest.mark.parametrize(("delta", "words"), [
    (timedelta(0), "less than a minute"), (timedelta(seconds=59), "less than a minute"),
    (timedelta(seconds=-30), "less than a minute"), (timedelta(minutes=1), "1 min"),
    (timedelta(minutes=12, seconds=59), "12 min"), (timedelta(hours=1), "1 h"), (timedelta(minutes=65), "1 h 5 min"),
    (timedelta(hours=8), "8 h"), (timedelta(days=1, hours=3, minutes=20), "1 d 3 h"), (timedelta(days=7), "7 d"),
])
def test_durations_are_human(delta: timedelta, words: str) -> None:
    assert show(duration(delta)) == words


def test_times_are_local_with_the_date_only_on_another_day() -> None:
    when = datetime(2026, 11, 28, 22, 30, tzinfo=UTC)
    assert clock_time(when, NOW, UTC) == "22:30"
    assert clock_time(when, NOW, timezone(timedelta(hours=2))) == "2026-11-29 00:30"
    assert clock_time(when, None, UTC) == "2026-11-28 22:30"


# ---- the access dialog --------------------------------------------------------------------------------------------

def test_the_four_levels_in_order_each_with_one_plain_line() -> None:
    assert [option.level for option in ACCESS_OPTIONS] == [AccessLevel.NO_ACCESS, AccessLevel.LIMITED,
                                                           AccessLevel.PERMANENT_LIMITED, AccessLevel.FULL]
    assert [show(option.title) for option in ACCESS_OPTIONS] == ["No access", "Limited access",
                                                                 "Permanent limited access", "Full access"]
    assert show(ACCESS_OPTIONS[3].consequence) == "Examinations are not possible while a remote session is active."
    for option in ACCESS_OPTIONS:
        line = show(option.consequence)
        assert "\n" not in line
        assert len(line) <= 90
        assert option.needs_end is (option.level is AccessLevel.LIMITED)
    assert_all_marked(ACCESS_OPTIONS)


def test_current_access_says_level_who_when_and_until_when() -> None:
    limited = grant(AccessLevel.LIMITED, set_at=datetime(2026, 11, 28, 10, 4, tzinfo=UTC),
                    until=datetime(2026, 11, 28, 12, 4, 30, tzinfo=UTC))
    assert show(current_access(limited, NOW, UTC)) == \
        "Limited access, set by tech1 at 10:04, until 12:04 (1 h 58 min left)"
    cet = timezone(timedelta(hours=1))
    assert show(current_access(limited, NOW, cet)) == \
        "Limited access, set by tech1 at 11:04, until 13:04 (1 h 58 min left)"
    overnight = grant(AccessLevel.LIMITED, until=NOW + timedelta(days=1))
    assert show(current_access(overnight, NOW, UTC)) == \
        "Limited access, set by tech1 at 10:04, until 2026-11-29 10:06 (1 d left)"
    assert show(current_access(grant(AccessLevel.LIMITED), NOW, UTC)) == \
        "Limited access, set by tech1 at 10:04, with no end time"
    assert show(current_access(grant(AccessLevel.PERMANENT_LIMITED), NOW, UTC)) == \
        "Permanent limited access, set by tech1 at 10:04"
    assert show(current_access(grant(AccessLevel.FULL, by="admin"), NOW, UTC)) == "Full access, set by admin at 10:04"
    assert show(current_access(grant(AccessLevel.NO_ACCESS), NOW, UTC)) == "No access, set by tech1 at 10:04"
    factory = factory_grant(datetime(2026, 11, 20, 7, 0, tzinfo=UTC)).to_dict()
    assert show(current_access(factory, NOW, UTC)) == \
        "No access, set by ServiceGate (automatically) at 2026-11-20 07:00"
    assert_all_marked(current_access(limited, NOW, UTC))


@pytest.mark.parametrize("preset", LIMIT_PRESETS, ids=lambda p: show(p.label))
def test_each_preset_asks_for_limited_access_until_now_plus_its_length(preset: LimitPreset) -> None:
    args = access_request(AccessLevel.LIMITED, NOW, preset=preset)
    assert args == {"level": "limited", "until": (NOW + preset.length).isoformat(timespec="seconds")}
    assert args["until"].endswith("+00:00")
    assert set(args) <= set(OPERATIONS["access_set"].args)
    applied = new_grant(AccessLevel.LIMITED, "tech1", NOW, parse_utc(args["until"])).to_dict()  # the agent takes it
    assert access_applied(args, applied)
    assert show(current_access(applied, NOW, UTC)).endswith(f"({show(duration(preset.length))} left)")


def test_the_presets_are_one_two_four_and_eight_hours() -> None:
    assert [p.length for p in LIMIT_PRESETS] == [timedelta(hours=h) for h in (1, 2, 4, 8)]
    assert [show(p.label) for p in LIMIT_PRESETS] == ["1 hour", "2 hours", "4 hours", "8 hours"]


def test_a_custom_end_is_sent_in_utc_and_a_naive_one_is_local_time() -> None:
    end = datetime(2026, 11, 28, 18, 0, tzinfo=timezone(timedelta(hours=1)))
    assert access_request(AccessLevel.LIMITED, NOW, until=end) == {"level": "limited",
                                                                  "until": "2026-11-28T17:00:00+00:00"}
    naive = datetime(2026, 11, 28, 18, 0)
    assert access_request(AccessLevel.LIMITED, NOW, until=naive, tz=timezone(timedelta(hours=1)))["until"] == \
        "2026-11-28T17:00:00+00:00"
    earliest, latest = custom_end_range(NOW)
    assert access_request(AccessLevel.LIMITED, NOW, until=latest)["until"] == "2026-12-05T10:06:00+00:00"
    assert access_request(AccessLevel.LIMITED, NOW, until=earliest)["until"] == "2026-11-28T10:07:00+00:00"


@pytest.mark.parametrize(("level", "kwargs", "message"), [
    (AccessLevel.LIMITED, {"until": NOW - timedelta(minutes=5)},
     "The end time has passed. Choose a time in the future."),
    (AccessLevel.LIMITED, {"until": NOW}, "The end time has passed. Choose a time in the future."),
    (AccessLevel.LIMITED, {"until": NOW + timedelta(days=7, minutes=1)},
     "Limited access can last at most 7 days. Choose an earlier end time, or permanent limited access."),
    (AccessLevel.LIMITED, {}, "Choose how long limited access lasts: one of the durations, or an end time."),
    (AccessLevel.LIMITED, {"preset": LIMIT_PRESETS[0], "until": NOW + timedelta(hours=3)},
     "Choose either a duration or an end time, not both."),
    (AccessLevel.FULL, {"until": NOW + timedelta(hours=3)}, "An end time applies only to limited access."),
    (AccessLevel.PERMANENT_LIMITED, {"preset": LIMIT_PRESETS[1]}, "An end time applies only to limited access."),
])
def test_bad_time_limits_are_refused_in_words(level: AccessLevel, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as info:
        access_request(level, NOW, **kwargs)
    assert show(info.value.text) == message
    assert str(info.value) == message
    assert_all_marked(info.value.text)


@pytest.mark.parametrize("level", [AccessLevel.NO_ACCESS, AccessLevel.PERMANENT_LIMITED, AccessLevel.FULL])
def test_the_other_levels_send_no_end_time(level: AccessLevel) -> None:
    args = access_request(level, NOW)
    assert args == {"level": level.value}
    assert access_applied(args, grant(level))
    assert not access_applied(args, grant(AccessLevel.LIMITED, until=NOW + timedelta(hours=1)))


def test_the_dialog_closes_only_on_the_grant_it_asked_for() -> None:
    args = access_request(AccessLevel.LIMITED, NOW, preset=LIMIT_PRESETS[1])
    assert access_applied(args, grant(AccessLevel.LIMITED, until=NOW + timedelta(hours=2)))
    assert not access_applied(args, grant(AccessLevel.LIMITED, until=NOW + timedelta(hours=1)))
    assert not access_applied(args, grant(AccessLevel.LIMITED))
    assert not access_applied(args, grant(AccessLevel.NO_ACCESS))


# ---- session IDs ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("typed", ["12345678", "1234-5678", " 1234 5678 ", "12345678\n", "1234.5678", "1234 – 5678",
                                   "12 34 56 78", "\t1234\u00a05678\r\n"])
def test_typed_and_pasted_ids_are_cleaned(typed: str) -> None:
    assert clean_session_id(typed) == "12345678"
    assert session_id_of(clean_session_id(typed)) == "12345678"  # the agent takes what is sent
    assert claim_request(typed) == {"session_id": "12345678"}


@pytest.mark.parametrize("typed", ["1234567", "1234 567a", "", "   ", "123456789", "ID: 1234 5678", "1234_5678",
                                   "１２３４５６７８", "1234/5678"])
def test_wrong_ids_get_a_clear_message(typed: str) -> None:
    with pytest.raises(InputError) as info:
        clean_session_id(typed)
    assert info.value.text == BAD_SESSION_ID
    assert str(info.value) == "A session ID has 8 digits, like 1234 5678. Check the number with the engineer."


@pytest.mark.parametrize(("typed", "shown"), [
    ("", ""), ("1", "1"), ("1234", "1234"), ("12345", "1234 5"), ("1234 5", "1234 5"), ("12345678", "1234 5678"),
    ("1234-56", "1234 56"), ("12a3", "123"), ("123456789", "1234 5678 9"),
])
def test_ids_are_grouped_while_typing(typed: str, shown: str) -> None:
    assert format_as_typed(typed) == shown


def test_the_cursor_stays_after_the_same_digit_while_typing() -> None:
    assert cursor_as_typed("12345", 5) == 6  # "1234 5|"
    assert cursor_as_typed("12345", 4) == 4  # "1234| 5"
    assert cursor_as_typed("1234 56", 2) == 2
    assert cursor_as_typed("1234 56", 7) == 7
    assert cursor_as_typed("", 0) == 0


def test_ids_are_read_out_in_groups_of_four() -> None:
    assert group_id("12345678") == "1234 5678"
    assert group_id(SID) == "4821 3907"


# ---- the session-ID dialog --------------------------------------------------------------------------------------

def test_a_claimed_session_shows_who_why_which_kind_level_and_how_long() -> None:
    details = session_details(session(level=AccessLevel.FULL), time_limit_min=480)
    assert [(show(row.label), show(row.value)) for row in details.rows] == [
        ("Engineer", "Dana Field"), ("Engineer ID", "E-1001"), ("Company", "Acme Imaging"),
        ("Reason", "Gradient coil error E-4711 after update"), ("Kind of session", "Service"),
        ("Access", "Full access"), ("How long", "Until you or the engineer end it; at most 8 h"),
        ("Session ID", "4821 3907")]
    assert details.claimed
    assert details.state is SessionState.AWAITING_CONSENT
    assert show(details.level_meaning) == "Examinations will be blocked while this session is active."
    assert show(details.origin) == "You typed in this session's ID."
    assert_all_marked(details)


def test_without_a_time_limit_or_company_those_are_not_made_up() -> None:
    details = session_details(session(level=AccessLevel.LIMITED, kind=SessionKind.APPLICATION_SUPPORT,
                                      engineer=Engineer("E-7", "Kim Lee")))
    rows = {show(row.label): show(row.value) for row in details.rows}
    assert "How long" not in rows
    assert details.how_long is None
    assert rows["Company"] == "Not given"
    assert rows["Kind of session"] == "Application support"
    assert show(details.level_meaning) == "Examinations remain possible during this session."


@pytest.mark.parametrize("standing", list(AccessLevel))
@pytest.mark.parametrize("requested", SESSION_LEVELS)
def test_confirm_choices_never_exceed_the_request(standing: AccessLevel, requested: AccessLevel) -> None:
    choices = confirm_choices(session(level=requested), grant(standing))
    assert choices
    assert all(c.level in SESSION_LEVELS and c.level.rank <= requested.rank for c in choices)
    assert [c.level for c in choices if c.default] == [requested]
    for choice in choices:
        assert choice.above_grant is (choice.level.rank > standing.rank)
        assert (choice.note is not None) is choice.above_grant
        assert (choice.warning is not None) is (choice.level is AccessLevel.FULL)
    assert_all_marked(choices)


def test_a_full_request_under_limited_access_may_be_lowered_or_given_for_this_session_only() -> None:
    limited, full = confirm_choices(session(level=AccessLevel.FULL), grant(AccessLevel.LIMITED))
    assert (limited.level, limited.above_grant, limited.default, limited.warning) == \
        (AccessLevel.LIMITED, False, False, None)
    assert (full.level, full.above_grant, full.default) == (AccessLevel.FULL, True, True)
    assert show(full.note) == "For this session only: more than your standing access (Limited access)."
    assert show(full.warning) == "Examinations will be blocked while this session is active."
    [only] = confirm_choices(session(level=AccessLevel.LIMITED), grant(AccessLevel.NO_ACCESS))
    assert only.level is AccessLevel.LIMITED
    assert show(only.note) == "For this session only: more than your standing access (No access)."


def test_confirming_needs_the_privacy_notice_and_declining_does_not() -> None:
    with pytest.raises(InputError) as info:
        confirm_request(SID, AccessLevel.FULL, disclaimer_checked=False)
    assert str(info.value) == "Please confirm the data-privacy notice first."
    args = confirm_request("4821 3907", AccessLevel.LIMITED, disclaimer_checked=True)
    assert args == {"session_id": SID, "level": "limited", "disclaimer_accepted": True}
    assert set(args) <= set(OPERATIONS["session_confirm"].args)
    assert decline_request(SID) == {"session_id": SID}
    assert set(decline_request(SID)) <= set(OPERATIONS["session_decline"].args)
    with pytest.raises(ValueError, match="limited or full"):
        confirm_request(SID, AccessLevel.NO_ACCESS, disclaimer_checked=True)


# ---- incoming requests under a standing grant -------------------------------------------------------------------

def requested_under(standing: AccessLevel, level: AccessLevel) -> dict[str, Any]:
    """A session the portal requested, where agent.session.admission sends it under the standing grant."""
    created = NOW - timedelta(seconds=10)
    requested = Session(id=SID, kind=SessionKind.SERVICE, engineer=ENGINEER, reason="Tube warm-up fault",
                        requested_level=level, state=SessionState.REQUESTED, created_at=created,
                        state_since=created)
    standing_grant = Grant(standing, "tech1", NOW - timedelta(hours=1))
    nxt = admission(standing_grant, level)
    if nxt is SessionState.AUTHENTICATING:
        return requested.move(nxt, NOW, basis=Basis.GRANT, effective_level=level).to_dict()
    return requested.move(nxt, NOW, basis=Basis.CONSENT).to_dict()


def test_a_request_within_the_grant_only_informs() -> None:
    note = incoming_request(requested_under(AccessLevel.PERMANENT_LIMITED, AccessLevel.LIMITED), time_limit_min=240)
    assert not note.needs_action
    assert show(note.title) == "Remote service request"
    assert show(note.summary) == "Dana Field (Acme Imaging) asks for Limited access: Tube warm-up fault"
    assert show(note.instruction) == ("Allowed by your standing access level. The engineer is signing in; you can "
                                      "end the session at any time.")
    assert not note.details.claimed
    assert show(note.details.origin) == "The engineer asked for this session through the service centre."
    assert show(note.details.how_long) == "Until you or the engineer end it; at most 4 h"
    assert_all_marked(note)


def test_a_full_request_needs_the_technologist_and_says_examinations_will_be_blocked() -> None:
    note = incoming_request(requested_under(AccessLevel.FULL, AccessLevel.FULL))
    assert note.needs_action
    assert show(note.instruction) == "Confirm or decline this session."
    assert note.details.level_meaning == models.EXAMINATIONS_BLOCKED_WARNING  # the dialog says it at Full access
    assert show(note.summary) == "Dana Field (Acme Imaging) asks for Full access: Tube warm-up fault"
    assert_all_marked(note)


def test_a_request_without_company_names_only_the_engineer() -> None:
    data = requested_under(AccessLevel.LIMITED, AccessLevel.LIMITED)
    data["engineer"]["company"] = ""
    assert show(incoming_request(data).summary) == "Dana Field asks for Limited access: Tube warm-up fault"


# ---- errors in words ----------------------------------------------------------------------------------------------

def test_errors_are_told_in_words_with_the_agents_message_as_detail() -> None:
    down = AgentUnreachableError("cannot reach the ServiceGate agent: there is no socket at /run/servicegate/"
                                 "control.sock. Is the agent running?")
    assert show(error_text(down).text) == "Remote service is unavailable: the ServiceGate agent is not running."
    assert error_text(down).detail == str(down)
    denied = PermissionDeniedError("you may not connect to the ServiceGate agent: ... Ask site IT to add you to the "
                                   "ServiceGate console or viewer group (servicegate-console or servicegate-viewer)")
    said = error_text(denied)
    assert show(said.text).startswith("You are not allowed to do this from your account. Ask site IT to add you")
    assert said.detail == str(denied)
    refused = AuditError("not done: the audit log cannot be written (disk full); no remote access is granted")
    assert show(error_text(refused).text) == ("Not done: the audit log cannot be written (disk full); no remote "
                                              "access is granted")
    assert error_text(refused).detail == ""
    assert show(error_text(RefusedError("the kill switch is at work"), claim=True).text) == \
        "The kill switch is at work"
    for exc in (down, denied, refused):
        assert_all_marked(error_text(exc))


def test_a_hotkey_x_does_not_know_is_told_with_the_way_that_remains() -> None:
    text = hotkey_unusable("hotkey 'Ctrl+Alt+Ende': 'Ende' is not a key name X knows (like End, F12, Pause)")
    assert show(text) == ("The key that ends a session cannot be used (hotkey 'Ctrl+Alt+Ende': 'Ende' is not a key "
                          "name X knows (like End, F12, Pause)). End session on the banner works; ask site IT to "
                          "correct [console] hotkey.")
    assert_all_marked(text)


@pytest.mark.parametrize(("exc", "words"), [
    (PortalError("no session with this ID is waiting for this device (it may have expired or been claimed): check "
                 "the number with the engineer"),
     "The portal does not know this session ID, or it has expired. Check the number with the engineer."),
    (NotFoundError(f"no session with ID '{SID}'"),
     "The portal does not know this session ID, or it has expired. Check the number with the engineer."),
    (PortalError("too many wrong session IDs from this device; try again in 4 minute(s)"),
     "Too many wrong session IDs were typed in. Wait a few minutes, then try again."),
    (PortalError("cannot claim the session: connection refused"),
     "The session ID cannot be checked now: the service centre cannot be reached. Try again in a few minutes."),
    (RefusedError("cannot claim a session: no link to the portal"),
     "The session ID cannot be checked now: the service centre cannot be reached. Try again in a few minutes."),
    (UsageError("'1234' is not a session ID: it has 8 digits, like 1234 5678; check the number with the engineer"),
     "A session ID has 8 digits, like 1234 5678. Check the number with the engineer."),
])
def test_a_failed_claim_says_what_to_do(exc: ServiceGateError, words: str) -> None:
    said = error_text(exc, claim=True)
    assert show(said.text) == words
    assert said.detail == str(exc)
    assert_all_marked(said)


# ---- the session banner -------------------------------------------------------------------------------------------

ACTIVATED = NOW - timedelta(minutes=12, seconds=30)


def active(level: AccessLevel = AccessLevel.LIMITED, basis: Basis = Basis.GRANT, **kwargs: Any) -> dict[str, Any]:
    return session(SessionState.ACTIVE, level=level, effective=level, basis=basis, claimed=False,
                   activated=ACTIVATED, **kwargs)


def test_no_banner_without_an_active_session() -> None:
    assert banner(status(), [], [], NOW) is None
    waiting = session(SessionState.AUTHENTICATING, level=AccessLevel.LIMITED, effective=AccessLevel.LIMITED)
    assert banner(status(waiting), [], [], NOW) is None


def test_the_banner_of_a_limited_session_under_a_time_limited_grant() -> None:
    limited = grant(AccessLevel.LIMITED, until=NOW + timedelta(hours=1, minutes=5, seconds=40))
    log_run = task("t1", "Collect the modality's log files", "completed", created=ACTIVATED + timedelta(minutes=1),
                   stdout="collected 3 files", files=(
                       {"name": "system.log", "size": 2048, "sha256": "a" * 64, "handling": "scrubbed, sent",
                        "dropped": 0, "text": "..."},))
    restart = task("t2", "Restart a modality service", "running", created=NOW - timedelta(minutes=1))
    other = task("t3", "Run the modality's diagnostics", "running", created=NOW, session_id="99999999")
    uploads = [upload("1.2.3_4.5_6.7.dcm", "b" * 64, "accepted"), upload("1.2.3_4.5_6.8.dcm", "c" * 64, "accepted"),
               upload("1.2.3_4.5_6.9.dcm", "d" * 64, "uploading"),
               upload("9.9_9.9_9.9.dcm", "e" * 64, "accepted", session_id="99999999")]
    shown = banner(status(active(), access=limited), [log_run, restart, other], uploads, NOW)
    assert shown is not None
    assert [show(line) for line in shown.lines] == [
        "Remote service: Dana Field (Acme Imaging)", "Reason: Gradient coil error E-4711 after update",
        "Level: Limited access", "Active for 12 min", "Access ends in 1 h 5 min",
        "Running: Restart a modality service", "Files sent: 3, still sending: 1"]
    assert not shown.examinations_blocked
    assert shown.blocked is None
    assert shown.session_id == SID
    assert show(shown.end_label) == "End session"
    assert "No access" in show(shown.end_warning)
    assert kill_request() == {}
    assert kill_request("ended at the console") == {"text": "ended at the console"}
    assert set(kill_request("x")) <= set(OPERATIONS["kill"].args)
    assert_all_marked(shown)


def test_the_banner_of_a_full_session_says_examinations_are_blocked() -> None:
    full = active(AccessLevel.FULL, Basis.CONSENT, kind=SessionKind.APPLICATION_SUPPORT)
    assert full["blocks_examinations"]
    limited = grant(AccessLevel.LIMITED, until=NOW + timedelta(hours=1))  # a session confirmed for itself outlives it
    done = task("t1", "Collect the modality's log files", "completed", created=ACTIVATED)
    shown = banner(status(full, access=limited), [done], [], NOW)
    assert shown is not None
    assert shown.examinations_blocked
    assert [show(line) for line in shown.lines] == [
        "Application support: Dana Field (Acme Imaging)", "Reason: Gradient coil error E-4711 after update",
        "Level: Full access", "Active for 12 min", "Examinations blocked",
        "Last: Collect the modality's log files — completed"]
    assert_all_marked(shown)


def test_the_banner_warns_of_an_announced_upgrade_until_the_session_ends() -> None:
    announced = {**status(active()), "upgrade": {"version": "0.2.0", "at": utc_iso(NOW + timedelta(minutes=3))}}
    shown = banner(announced, [], [], NOW)
    assert shown is not None
    assert "Software update 0.2.0: the session ends in 3 min" in [show(line) for line in shown.lines]
    late = banner(announced, [], [], NOW + timedelta(minutes=3))
    assert late is not None
    assert "Software update 0.2.0: the session is ending" in [show(line) for line in late.lines]
    assert_all_marked(shown)


def test_the_banner_activity_line() -> None:
    bare = active(engineer=Engineer("E-7", "Kim Lee"))
    shown = banner(status(bare), [], [], NOW)
    assert shown is not None
    assert show(shown.headline) == "Remote service: Kim Lee"
    assert show(shown.activity) == "No task run yet"
    assert shown.files is None
    assert shown.remaining is None  # the grant has no end time
    asks = task("t9", "Fetch a file from an allowed folder", "waiting", created=NOW)
    shown = banner(status(bare), [asks], [], NOW)
    assert shown is not None
    assert show(shown.activity) == "Waiting for your approval: Fetch a file from an allowed folder"
    killed = task("t8", "Restart a modality service", "stopped", created=NOW, stop_reason="killed")
    shown = banner(status(bare), [killed], [upload("1_2_3.dcm", "f" * 64, "accepted")], NOW)
    assert shown is not None
    assert show(shown.activity) == "Last: Restart a modality service — stopped (by the kill switch)"
    assert show(shown.files) == "Files sent: 1"
    second = active(session_id="11112222")
    shown = banner(status(bare, second), [], [], NOW)
    assert shown is not None
    assert show(shown.other_sessions) == "Other active sessions: 1"


# ---- the shared screen ---------------------------------------------------------------------------------------------

def share(state: str = "sharing", *, control: bool = False, possible: bool = True, session_id: str = SID,
          task_id: str = "t5") -> dict[str, Any]:
    """A share as the agent shows it (agent.screen.Share.view: screen_list, screen_changed)."""
    made = Share(task_id, session_id, ENGINEER.id, 5901, "secret", possible)
    made.filter.control = control
    return made.view(state)


def screen_lines(shown: Any) -> tuple[str | None, str | None, str | None]:
    """The banner's screen line, its toggle and the toggle's hint, as shown."""
    screen = shown.screen
    if screen is None:
        return None, None, None
    return show(screen.line), show(screen.toggle) if screen.toggle else None, \
        show(screen.toggle_hint) if screen.toggle_hint else None


def test_a_shared_screen_is_on_the_banner_with_its_toggle_only_under_full_access() -> None:
    full = active(AccessLevel.FULL, Basis.CONSENT, kind=SessionKind.APPLICATION_SUPPORT)
    assert share()["state"] == "sharing"
    assert "password" not in share()
    # Still connecting: nothing on the banner yet (the activity line names the running task).
    shown = banner(status(full), [], [], NOW, [share("starting")])
    assert shown is not None
    assert shown.screen is None
    # View only, and the technologist may allow control.
    shown = banner(status(full), [], [], NOW, [share()])
    assert shown is not None
    assert shown.screen is not None
    assert screen_lines(shown) == (
        "Your screen is shared with Dana Field — view only", "Allow control",
        "Let Dana Field use the mouse and keyboard of this console. You can take them back at any time.")
    assert not shown.screen.control
    assert shown.screen.request == screen_control_request(SID, True) == {"session_id": SID, "control": True}
    assert set(shown.screen.request) <= set(OPERATIONS["screen_control"].args)
    assert show(shown.lines[-1]) == "Your screen is shared with Dana Field — view only"
    assert_all_marked(shown)
    # Control allowed: the line says so, and the toggle takes it back.
    shown = banner(status(full), [], [], NOW, [share(control=True)])
    assert shown is not None
    assert shown.screen is not None
    assert screen_lines(shown) == (
        "Your screen is shared with Dana Field — the engineer can use the mouse and keyboard", "View only",
        "Take back the mouse and keyboard: Dana Field can only watch your screen.")
    assert shown.screen.control
    assert shown.screen.request == {"session_id": SID, "control": False}
    assert_all_marked(shown)
    # Without full access the engineer only watches: no toggle, and the line says why.
    shown = banner(status(active()), [], [], NOW, [share(possible=False)])
    assert shown is not None
    assert shown.screen is not None
    assert screen_lines(shown) == (
        "Your screen is shared with Dana Field — view only (control needs full access)", None, None)
    assert shown.screen.request is None
    assert_all_marked(shown)


def test_a_share_of_another_active_session_names_its_engineer_and_none_of_an_ended_session() -> None:
    second = active(AccessLevel.FULL, Basis.CONSENT, session_id="11112222", engineer=Engineer("E-7", "Kim Lee"))
    shown = banner(status(active(), second), [], [], NOW, [share(session_id="11112222")])
    assert shown is not None
    assert screen_lines(shown)[0] == "Your screen is shared with Kim Lee — view only"
    assert shown.screen is not None
    assert shown.screen.request == {"session_id": "11112222", "control": True}
    # The banner's own session first; a share of a session no longer active is not shown.
    shown = banner(status(active(), second), [], [], NOW, [share(session_id="11112222", task_id="t6"),
                                                          share(possible=False)])
    assert shown is not None
    assert screen_lines(shown)[0] == \
        "Your screen is shared with Dana Field — view only (control needs full access)"
    shown = banner(status(active()), [], [], NOW, [share(session_id="99999999")])
    assert shown is not None
    assert shown.screen is None


def test_the_shares_follow_the_agents_events() -> None:
    shares = follow_share({}, share("starting"))
    assert shares == {"t5": share("starting")}
    shares = follow_share(shares, share())
    shares = follow_share(shares, share(task_id="t6", session_id="11112222"))
    assert set(shares) == {"t5", "t6"}
    shares = follow_share(shares, share(control=True))
    assert shares["t5"]["control"] is True
    shares = follow_share(shares, {**share("ended"), "reason": "the task ended"})
    assert set(shares) == {"t6"}
    assert follow_share(shares, {**share("ended", task_id="t9")}) == shares  # an unknown share ended: nothing


def test_a_refused_control_change_is_told_in_words() -> None:
    refused = screen_control_failed(RefusedError("control needs full access (examinations blocked): the engineer "
                                                 "only watches in this session"))
    assert show(refused) == ("Control of your screen was not changed: control needs full access (examinations "
                             "blocked): the engineer only watches in this session")
    assert "console group" in show(screen_control_failed(PermissionDeniedError("screen_control needs the console "
                                                                               "role")))
    assert "not running" in show(screen_control_failed(AgentUnreachableError("no socket")))
    assert_all_marked([refused])


# ---- the end-of-session receipt ------------------------------------------------------------------------------------

def ended(**kwargs: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"level": AccessLevel.FULL, "effective": AccessLevel.FULL, "basis": Basis.CONSENT,
                              "created": datetime(2026, 11, 28, 9, 55, tzinfo=UTC),
                              "activated": datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
                              "since": datetime(2026, 11, 28, 11, 30, tzinfo=UTC),
                              "end_reason": EndReason.COMPLETED,
                              "end_text": "Replaced the gradient amplifier firmware; scanner tested, all good."}
    return session(SessionState.ENDED, **{**values, **kwargs})


def test_the_receipt_lists_who_when_level_why_summary_tasks_and_every_file_with_its_proof() -> None:
    start = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    dicom = {"name": "1.2.3_4.5_6.7.dcm", "size": 524288, "sha256": "b" * 64,
             "handling": "de-identified, queued for upload"}
    study = task("t1", "Fetch a DICOM study (de-identified before it leaves)", "completed", created=start,
                 files=(dicom, {"name": "refused file 1", "size": 0, "sha256": "", "handling":
                                "refused by the anonymizer, kept in the upload quarantine: burned-in text"}))
    logs = task("t2", "Collect the modality's log files", "completed", created=start + timedelta(minutes=5),
                stdout="3 files", files=({"name": "system.log", "size": 4096, "sha256": "a" * 64,
                                          "handling": "scrubbed, sent", "dropped": 0, "text": "..."},))
    fetched = task("t3", "Fetch a file from an allowed folder", "completed", created=start + timedelta(minutes=9),
                   files=({"name": "calib.bin", "size": 100, "sha256": "c" * 64, "handling": "released by tech1, sent"},
                          {"name": "big.bin", "size": 9, "sha256": "9" * 64, "handling": RELEASABLE}))
    restart = task("t4", "Restart a modality service", "stopped", created=start + timedelta(minutes=20),
                   stop_reason="stopped by tech1")
    elsewhere = task("t5", "Collect a technical system report", "completed", created=start, session_id="99999999")
    uploads = [upload("1.2.3_4.5_6.7.dcm", "b" * 64, "accepted"),
               upload("7.7_7.7_7.7.dcm", "d" * 64, "rejected", problems=("burned-in annotation in pixel data",)),
               upload("9.9_9.9_9.9.dcm", "e" * 64, "accepted", session_id="99999999")]
    made = receipt(ended(), [study, logs, fetched, restart, elsewhere], uploads, tz=UTC)
    assert show(made.title) == "Remote session ended"
    assert show(made.who) == "Dana Field (engineer ID E-1001, Acme Imaging)"
    assert show(made.period) == "2026-11-28 10:00 to 11:30 (1 h 30 min)"
    assert show(made.level) == "Level: Full access"
    assert made.end_reason is EndReason.COMPLETED
    assert show(made.end_reason_text) == "The engineer ended the session."
    assert show(made.summary) == ("Engineer's summary: Replaced the gradient amplifier firmware; scanner tested, all "
                                  "good.")
    assert [show(t.line) for t in made.tasks] == [
        "Fetch a DICOM study (de-identified before it leaves) — completed",
        "Collect the modality's log files — completed", "Fetch a file from an allowed folder — completed",
        "Restart a modality service — stopped (stopped by tech1)"]
    assert [t.output is not None for t in made.tasks] == [False, True, False, False]
    assert [(f.name, f.sha256, show(f.proof), f.sent) for f in made.files] == [
        ("1.2.3_4.5_6.7.dcm", "b" * 64, "De-identified, checked by the portal", True),
        ("refused file 1", "", "Refused by the anonymizer: kept on the device, not sent", False),
        ("system.log", "a" * 64, "Scrubbed of identifying text, sent", True),
        ("calib.bin", "c" * 64, "Released by tech1 after the privacy notice, sent", True),
        ("big.bin", "9" * 64, "Kept on the device until you release it; not sent", False),
        ("7.7_7.7_7.7.dcm", "d" * 64,
         "De-identified, refused by the portal's check and deleted there: burned-in annotation in pixel data", True)]
    assert [f.name for f in made.tasks[0].files] == ["1.2.3_4.5_6.7.dcm", "refused file 1"]
    assert made.tasks[3].files == ()
    assert_all_marked(made)


def test_a_declined_session_was_never_granted() -> None:
    declined = ended(effective=None, activated=None, end_reason=EndReason.DECLINED,
                     end_text="declined at the console", since=datetime(2026, 11, 28, 9, 57, tzinfo=UTC))
    made = receipt(declined, [], [], tz=UTC)
    assert show(made.level) == "Not granted (asked for Full access)"
    assert show(made.period) == "2026-11-28 09:55 to 09:57 (2 min)"
    assert show(made.summary) == "Note: declined at the console"
    assert show(made.end_reason_text) == "The session was declined at the console."
    assert made.tasks == ()
    assert made.files == ()


@pytest.mark.parametrize("reason", list(EndReason))
def test_every_end_reason_reads_in_the_receipt(reason: EndReason) -> None:
    made = receipt(ended(end_reason=reason, end_text="", engineer=Engineer("E-7", "Kim Lee")), [], [], tz=UTC)
    assert show(made.end_reason_text) == END_REASONS[reason]
    assert made.summary is None
    assert show(made.who) == "Kim Lee (engineer ID E-7)"
    assert_all_marked(made)


def test_no_receipt_for_an_open_session() -> None:
    with pytest.raises(ValueError, match="has not ended"):
        receipt(active(), [], [])


def test_file_fates_of_tasks_still_at_work() -> None:
    dicom = {"name": "1_2_3.dcm", "size": 10, "sha256": "1" * 64, "handling": "de-identified, queued for upload"}
    run = task("t1", "Fetch a DICOM study", "completed", created=NOW, files=(
        dicom, {"name": "x.log", "size": 1, "sha256": "", "handling": "quarantined: the task did not finish"},
        {"name": "y.dcm", "size": 1, "sha256": "", "handling": "deleted: the task did not finish"}))
    fates = file_fates(SID, [run], [upload("8_8_8.dcm", "8" * 64, "failed", problems=("the local copy is gone",))])
    assert [(show(f.proof), f.sent, f.pending) for f in fates] == [
        ("De-identified, queued for upload", True, True), ("Kept on the device, not sent", False, False),
        ("Deleted on the device, not sent", False, False),
        ("De-identified, could not be sent: the local copy is gone", False, False)]
    assert [f.task_id for f in fates] == ["t1", "t1", "t1", ""]
    assert_all_marked(fates)


# ---- the tray icon and the audit viewer --------------------------------------------------------------------------

def test_the_tray_says_the_state_an_active_session_first() -> None:
    assert models.tray_state(None, NOW).kind == "unavailable"
    assert show(models.tray_state(None, NOW).tooltip) == \
        "ServiceGate: remote service unavailable (the agent cannot be reached)"
    for level in AccessLevel:
        state = models.tray_state(status(access=grant(level)), NOW)
        assert state.kind == level.value
        assert not state.session_open
    waiting = models.tray_state(status(session(), access=grant(AccessLevel.PERMANENT_LIMITED)), NOW)
    assert (waiting.kind, waiting.session_open) == ("permanent-limited", True)  # End session is offered already
    assert show(waiting.tooltip) == "ServiceGate: Permanent limited access, set by tech1 at 10:04"
    active = models.tray_state(status(session(SessionState.ACTIVE, effective=AccessLevel.FULL,
                                              activated=NOW - timedelta(minutes=5))), NOW)
    assert (active.kind, active.session_open) == ("session-active", True)
    assert show(active.tooltip) == f"ServiceGate: remote session active ({ENGINEER.name}, {ENGINEER.company})"
    for state in (waiting, active):
        assert_all_marked(state.tooltip)


RECORDS = [
    {"seq": 7, "ts": "2026-11-28T09:00:01.5Z", "event": "access_set", "actor": "tech1",
     "details": {"level": "permanent-limited", "previous_level": "no-access", "until": None}},
    {"seq": 8, "ts": "2026-11-28T09:10:00Z", "event": "session_active", "actor": "E-2002",
     "details": {"session_id": "40817263", "engineer_id": "E-2002", "engineer_name": "Sam Ortiz", "level": "full",
                 "reason": "tube replacement", "kind": "service"}},
    {"seq": 9, "ts": "2026-11-28T09:20:00Z", "event": "task_allowed", "actor": "E-1001",
     "details": {"session_id": "11112222", "engineer_id": "E-1001", "engineer_name": "Dana Field",
                 "kind": "collect-logs", "files": ["a.log", "b.log"]}},
    {"seq": 10, "ts": "2026-11-28T09:30:00Z", "event": "kill", "actor": SYSTEM_ACTOR, "details": "not an object"},
]


def test_the_audit_viewer_rows_and_engineers() -> None:
    assert models.audit_engineers(RECORDS) == [("E-1001", "Dana Field (E-1001)"), ("E-2002", "Sam Ortiz (E-2002)")]
    rows = models.audit_rows(RECORDS, UTC)
    assert [(r.seq, r.time, r.event, show(r.by), r.engineer, r.session_id) for r in rows] == [
        (7, "2026-11-28 09:00:01", "access_set", "tech1", "", ""),
        (8, "2026-11-28 09:10:00", "session_active", "E-2002", "Sam Ortiz (E-2002)", "40817263"),
        (9, "2026-11-28 09:20:00", "task_allowed", "E-1001", "Dana Field (E-1001)", "11112222"),
        (10, "2026-11-28 09:30:00", "kill", "ServiceGate (automatically)", "", ""),
    ]
    assert rows[0].details == "level: permanent-limited"
    assert rows[1].details == "level: full; reason: tube replacement; kind: service"
    assert rows[2].details == "kind: collect-logs; files: a.log, b.log"
    assert rows[3].details == ""
    assert [show(column) for column in models.AUDIT_COLUMNS] == ["Time", "Event", "By", "Engineer", "Session",
                                                                 "Details"]


# ---- request service ---------------------------------------------------------------------------------------------

def test_a_service_request_is_cleaned_and_checked_before_it_is_sent() -> None:
    assert models.service_request("  the table\n does not\tmove  ", Urgency.HIGH) == {
        "text": "the table does not move", "urgency": "high"}  # pasted line breaks and tabs become spaces
    with pytest.raises(InputError) as short:
        models.service_request(" ab ", Urgency.LOW)
    assert show(short.value.text) == "Describe the problem in a few words (at least 3 characters)."
    with pytest.raises(InputError) as long:
        models.service_request("x" * 501, Urgency.LOW)
    assert show(long.value.text) == ("The description has 501 characters; keep it to at most 500. The service centre "
                                     "will call you for the details.")
    assert [option.urgency for option in models.URGENCY_OPTIONS] == list(Urgency)
    assert [show(option.meaning) for option in models.URGENCY_OPTIONS] == [u.meaning for u in Urgency]
    assert set(models.service_request("abc", Urgency.LOW)) <= set(OPERATIONS["service_request"].args)


def test_what_became_of_a_service_request() -> None:
    sent = {"request_id": "r1", "state": "sent", "case_id": "C-2026-000123", "urgency": "normal"}
    assert show(models.service_result(sent)) == ("Sent to the service centre. Case number: C-2026-000123. Keep it at "
                                                 "hand when the service centre calls.")
    kept = {"request_id": "r1", "state": "queued", "case_id": "", "urgency": "normal"}
    assert show(models.service_result(kept)).startswith("The service centre cannot be reached now. Your request is "
                                                        "kept")
    assert "please also call" in show(models.service_result({**kept, "urgency": "high"}))
    refused = {"request_id": "r1", "state": "refused", "why": "unknown device", "urgency": "low"}
    assert show(models.service_result(refused)) == ("The service centre refused the request: unknown device. Call the "
                                                    "service centre.")
    for request in (sent, kept, refused):
        assert_all_marked(models.service_result(request))


def test_a_session_for_a_service_case_shows_its_number() -> None:
    data = {**session(SessionState.ACTIVE, effective=AccessLevel.FULL, activated=NOW - timedelta(minutes=3)),
            "case_id": "C-2026-000123"}
    rows = {show(row.label): show(row.value) for row in models.session_details(data).rows}
    assert rows["Case number"] == "C-2026-000123"
    shown = models.banner(status(data), [], [], NOW)
    assert shown is not None
    assert show(shown.case) == "Case C-2026-000123"
    assert "Case number" not in {show(row.label) for row in models.session_details(session()).rows}


# ---- a task that waits for the technologist --------------------------------------------------------------------------

CATALOG = models.catalog_by_kind([
    {"kind": "share-screen", "title": "Share the screen", "level": "limited", "flags": ["application_support"],
     "screen": True},
    {"kind": "adjust-protocol", "title": "Adjust a scan protocol", "level": "limited",
     "flags": ["application_support"], "screen": False}])


def waiting(kind: str, title: str) -> dict[str, Any]:
    return {**task("t9", title, "waiting", created=NOW), "kind": kind}


def test_a_shared_screen_is_asked_for_with_what_the_engineer_will_see() -> None:
    active = session(SessionState.ACTIVE, effective=AccessLevel.FULL, kind=SessionKind.APPLICATION_SUPPORT,
                     activated=NOW)
    question = models.task_question(waiting("share-screen", "Share the screen"), [active], CATALOG)
    assert question.screen
    assert question.task_id == "t9"
    assert show(question.title) == "Share your screen?"
    assert show(question.question) == f"{ENGINEER.name} asks to see your screen"
    assert [(show(r.label), show(r.value)) for r in question.rows] == [
        ("Engineer", f"{ENGINEER.name} ({ENGINEER.company})"),
        ("Reason", "Gradient coil error E-4711 after update"), ("Task", "Share the screen")]
    assert question.warning is not None
    assert show(question.warning) == (f"{ENGINEER.name} will see your whole screen, including any patient data on "
                                      "it. The engineer can only watch until you allow control on the banner.")
    assert models.task_decision_request("t9") == {"task_id": "t9"}


def test_another_task_is_asked_for_without_a_screen_warning_and_a_refusal_is_in_words() -> None:
    question = models.task_question(waiting("adjust-protocol", "Adjust a scan protocol"), [], CATALOG)
    assert not question.screen
    assert question.warning is None
    assert show(question.question) == f"{ENGINEER.id} asks for your approval: Adjust a scan protocol"  # no session
    assert [show(r.label) for r in question.rows] == ["Engineer", "Task"]
    # A kind the catalog does not know (or no catalog): never taken for a shared screen.
    assert not models.shares_screen(waiting("other", "Other"), CATALOG)
    assert not models.shares_screen(waiting("share-screen", "Share"), {})
    refused = models.task_refused(RefusedError("task t9 can no longer run: the session is no longer active"))
    assert show(refused) == "The agent did not take your answer: Task t9 can no longer run: the session is no " \
                            "longer active"
    assert show(models.task_refused(AgentUnreachableError("gone"))).startswith("Remote service is unavailable")
