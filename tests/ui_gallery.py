"""Every screen of the consent UI, filled with example data (the agent's own dicts, as tests/test_ui_models.py makes
them): what the accessibility checks (tests/test_ui_accessibility.py) walk and `make screenshots`
(scripts/screenshots.py) photographs. No agent is needed: the windows get an AgentLink that is never started, so
nothing is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

from agent.errors import AuditError, RefusedError
from agent.protocol import AccessLevel, EndReason, SessionKind, SessionState, Urgency
from consent_ui import models
from consent_ui.app import Console
from consent_ui.audit_viewer import AuditViewer
from consent_ui.banner import BannerBar
from consent_ui.dialogs import (
    AccessDialog,
    ReceiptDialog,
    RequestNotice,
    RequestServiceDialog,
    SessionDialog,
    tr,
)
from consent_ui.link import AgentLink
from consent_ui.task_dialog import TaskDialog
from consent_ui.update_dialog import UpdateDialog, UpdateListDialog
from tests.test_ui_models import NOW, RECORDS, grant, requested_under, session, status, task, upload
from tests.test_ui_updates import offer, software

CASE = "C-2026-000123"


def _active() -> dict[str, Any]:
    return {**session(SessionState.ACTIVE, effective=AccessLevel.FULL, activated=NOW - timedelta(minutes=12)),
            "case_id": CASE}


def _tasks() -> list[dict[str, Any]]:
    return [task("t1", "Collect the modality's log files", "completed", created=NOW - timedelta(minutes=10),
                 stdout="3 files"),
            task("t2", "Run the modality's diagnostics", "running", created=NOW - timedelta(minutes=2))]


def _uploads() -> list[dict[str, Any]]:
    return [upload("1.2.826.0.1.3680043.10.1_1_1.dcm", "ab" * 32, "accepted"),
            upload("1.2.826.0.1.3680043.10.1_1_2.dcm", "cd" * 32, "queued")]


def _share(*, control: bool) -> dict[str, Any]:
    """A screen share of the active session (screen_list's entry), with control possible (the session is FULL)."""
    return {"task_id": "t3", "session_id": str(_active()["id"]), "engineer_id": str(_active()["engineer"]["id"]),
            "state": "sharing", "control": control, "control_possible": True}


CATALOG = models.catalog_by_kind([
    {"kind": "share-screen", "title": "Share the console's screen with the engineer", "level": "limited",
     "flags": ["application_support"],
     "screen": True},
    {"kind": "adjust-protocol", "title": "Adjust a scan protocol", "level": "limited",
     "flags": ["application_support"], "screen": False}])


def _support() -> dict[str, Any]:
    """An active application-support session (the only kind a screen is shared in)."""
    return session(SessionState.ACTIVE, effective=AccessLevel.FULL, kind=SessionKind.APPLICATION_SUPPORT,
                   activated=NOW - timedelta(minutes=5))


def _waiting(kind: str) -> dict[str, Any]:
    """A task of `kind` that waits for the technologist (task_changed's data)."""
    return {**task("t4", str(CATALOG[kind]["title"]), "waiting", created=NOW), "kind": kind}


def screens(link: AgentLink) -> dict[str, Callable[[], QWidget]]:
    """Name -> a function that makes the screen (shown by the caller)."""
    now = datetime.now(UTC)  # what the windows measure time left against
    limited = grant(AccessLevel.LIMITED, set_at=now - timedelta(minutes=2), until=now + timedelta(hours=2))

    def launcher() -> QWidget:
        console = Console(link)
        console._available(True, "")  # noqa: SLF001 - as when the agent answers
        console._status(status(access=limited))  # noqa: SLF001
        console.timer.stop()
        return console.launcher

    def access() -> QWidget:
        return AccessDialog(link, limited)

    def session_id() -> QWidget:
        return SessionDialog(link, grant(AccessLevel.NO_ACCESS))

    def session_details() -> QWidget:
        dialog = SessionDialog(link, grant(AccessLevel.LIMITED))
        dialog.show_session({**session(), "case_id": CASE})
        return dialog

    def request_notice() -> QWidget:
        return RequestNotice(models.incoming_request(requested_under(AccessLevel.PERMANENT_LIMITED,
                                                                     AccessLevel.LIMITED), 240), lambda: None)

    def banner() -> QWidget:
        bar = BannerBar(QGuiApplication.primaryScreen(), lambda: None)
        shown = models.banner(status(_active()), _tasks(), _uploads(), NOW)
        assert shown is not None
        bar.show_banner(shown)
        return bar

    def shared_banner(control: bool) -> QWidget:
        bar = BannerBar(QGuiApplication.primaryScreen(), lambda: None)
        shown = models.banner(status(_active()), _tasks(), _uploads(), NOW, [_share(control=control)])
        assert shown is not None
        bar.show_banner(shown)
        return bar

    def receipt() -> QWidget:
        ended = session(SessionState.ENDED, effective=AccessLevel.FULL, activated=NOW - timedelta(minutes=40),
                        since=NOW, end_reason=EndReason.KILLED, end_text="patient on the table")
        return ReceiptDialog(models.receipt(ended, _tasks()[:1], _uploads()))

    def request_service() -> QWidget:
        return RequestServiceDialog(link)

    def request_service_sent() -> QWidget:
        dialog = RequestServiceDialog(link)
        dialog.text_field.setText("The patient table does not move up")
        dialog._sent({"request_id": "r-1", "state": "sent", "case_id": CASE, "urgency": "normal"})  # noqa: SLF001
        return dialog

    def audit_log() -> QWidget:
        viewer = AuditViewer(link, today=NOW.date())
        viewer._loaded(RECORDS)  # noqa: SLF001 - as the agent's answer
        return viewer

    def launcher_unavailable() -> QWidget:
        console = Console(link)  # the agent never answers: "remote service unavailable"
        console.timer.stop()
        return console.launcher

    def session_requested() -> QWidget:
        dialog = SessionDialog(link, grant(AccessLevel.PERMANENT_LIMITED), 480)
        dialog.setWindowTitle(tr(models.incoming_request(requested_under(AccessLevel.PERMANENT_LIMITED,
                                                                          AccessLevel.FULL)).title))
        dialog.show_session(requested_under(AccessLevel.PERMANENT_LIMITED, AccessLevel.FULL))
        return dialog

    def access_error() -> QWidget:
        dialog = AccessDialog(link, limited)
        dialog.error.show_error(AuditError("not done: the audit log cannot be written (disk full); no remote access "
                                           "is granted"))
        return dialog

    def request_service_kept() -> QWidget:
        dialog = RequestServiceDialog(link)
        dialog.text_field.setText("The gantry does not rotate")
        dialog.urgency_buttons[Urgency.HIGH].setChecked(True)
        dialog._sent({"request_id": "r-2", "state": "queued", "case_id": "", "urgency": "high"})  # noqa: SLF001
        return dialog

    def receipt_many_files() -> QWidget:
        ended = session(SessionState.ENDED, effective=AccessLevel.FULL, activated=NOW - timedelta(minutes=40),
                        since=NOW, end_reason=EndReason.COMPLETED, end_text="replaced the gantry fan")
        files = [upload(f"1.2.826.0.1.3680043.10.1_1_{n}.dcm", f"{n:064x}", "accepted") for n in range(120)]
        return ReceiptDialog(models.receipt(ended, _tasks()[:1], files))

    def update_virus_patterns() -> QWidget:
        return UpdateDialog(link, offer())

    def update_software() -> QWidget:
        return UpdateDialog(link, software())

    def update_postpone() -> QWidget:
        dialog = UpdateDialog(link, software())
        dialog.postpone_button.click()
        return dialog

    def update_reject() -> QWidget:
        dialog = UpdateDialog(link, offer())
        dialog.reject_button.click()
        dialog.reason.setText("Not during the clinic's busy week")
        return dialog

    def update_installed() -> QWidget:
        dialog = UpdateDialog(link, offer())
        dialog.decided = True  # as when the agent answered Approve, and then said it is installed
        dialog.show_update(offer(state="installed", decided_by="tech1"))
        return dialog

    def updates() -> QWidget:
        listed = UpdateListDialog(lambda update: None)
        listed.show_updates([offer(), software("postponed", decided_by="tech1", until=now + timedelta(hours=1))])
        return listed

    def updates_none() -> QWidget:
        listed = UpdateListDialog(lambda update: None)
        listed.show_updates([offer(state="installed", decided_by="tech1")])
        return listed

    def task_question(kind: str) -> QWidget:
        return TaskDialog(link, models.task_question(_waiting(kind), [_support()], CATALOG))

    def task_refused() -> QWidget:
        dialog = TaskDialog(link, models.task_question(_waiting("adjust-protocol"), [_support()], CATALOG))
        dialog.show_refusal(RefusedError("task t4 can no longer run: the session is no longer active"))
        return dialog

    return {"launcher": launcher, "launcher-unavailable": launcher_unavailable, "access": access,
            "access-error": access_error, "session-id": session_id, "session-details": session_details,
            "session-requested": session_requested, "request-notice": request_notice, "banner": banner,
            "banner-screen-view-only": lambda: shared_banner(False),
            "banner-screen-control": lambda: shared_banner(True),
            "receipt": receipt, "receipt-many-files": receipt_many_files, "request-service": request_service,
            "request-service-sent": request_service_sent, "request-service-kept": request_service_kept,
            "audit-log": audit_log, "update-virus-patterns": update_virus_patterns,
            "update-software": update_software, "update-postpone": update_postpone, "update-reject": update_reject,
            "update-installed": update_installed, "updates": updates, "updates-none": updates_none,
            "task-share-screen": lambda: task_question("share-screen"),
            "task-adjust-protocol": lambda: task_question("adjust-protocol"), "task-refused": task_refused}


def link() -> AgentLink:
    """A link that is never started: the screens can be made and shown, and send nothing."""
    return AgentLink(Path("/nonexistent/servicegate-gallery.sock"))
