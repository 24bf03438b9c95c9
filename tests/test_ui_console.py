"""The consent UI's windows (pytest-qt, offscreen) against a real agent daemon over the real socket: the access
dialog, the session-ID dialog with a real portal (wrong and right IDs, decline, accept with the privacy notice), the
banner while a session is active, End session stopping a running task (the simulated modality shows its restore),
the receipt, and the agent restarting under the running UI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtWidgets import QLabel, QPushButton
from pytestqt.qtbot import QtBot

from agent.protocol import AccessLevel, SessionState, Urgency
from consent_ui.app import Console
from consent_ui.dialogs import ReceiptDialog, RequestNotice, SessionDialog
from consent_ui.link import AgentLink
from portal import sim_modality
from tests.agent_process import AgentProcess
from tests.dicom_corpus import planted_series
from tests.portal_process import PortalProcess
from tests.shared_fixtures import ModalityAgent
from tests.test_connection import device, enroll, wait_for
from tests.test_kill_switch import alive, full_session, run_task

WAIT_MS = 20_000


def start_console(qtbot: QtBot, agent: AgentProcess) -> tuple[Console, AgentLink]:
    link = AgentLink(agent.socket)
    console = Console(link)
    qtbot.addWidget(console.launcher)
    console.launcher.show()
    link.start()
    qtbot.waitUntil(lambda: console.up and bool(console.status), timeout=WAIT_MS)
    return console, link


def close(console: Console, link: AgentLink) -> None:
    """Everything the UI made, gone before the next test (Qt objects left to the interpreter's exit crash it)."""
    link.stop()
    console.close()
    link.deleteLater()
    QCoreApplication.processEvents()


def test_the_access_dialog_applies_a_level_and_closes_only_when_the_agent_confirms(
        qtbot: QtBot, modality_agent: ModalityAgent) -> None:
    agent, _, _ = modality_agent
    console, link = start_console(qtbot, agent)
    try:
        assert "No access" in console.launcher.access.text()
        dialog = console.open_access()
        qtbot.addWidget(dialog)
        dialog.buttons[AccessLevel.LIMITED].setChecked(True)
        dialog.presets.setCurrentIndex(1)  # 2 hours
        qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
        grant = agent.cli_json("access", "show")
        assert grant["level"] == "limited"
        until = datetime.fromisoformat(grant["until"])
        assert timedelta(minutes=119) < until - datetime.now(UTC) <= timedelta(hours=2)
        qtbot.waitUntil(lambda: "Limited access" in console.launcher.access.text(), timeout=WAIT_MS)
        # A custom end in the past is refused in words, in the dialog, which stays open.
        again = console.open_access()
        qtbot.addWidget(again)
        again.presets.setCurrentIndex(again.presets.count() - 1)  # a time I choose
        again.custom_end.setDateTimeRange(again.custom_end.minimumDateTime().addDays(-2),
                                          again.custom_end.maximumDateTime())
        again.custom_end.setDateTime(again.custom_end.minimumDateTime())
        qtbot.mouseClick(again.apply_button, Qt.MouseButton.LeftButton)
        assert again.isVisible()
        assert "has passed" in again.error.text()
    finally:
        close(console, link)


def test_the_banner_and_end_session_stop_a_running_task_and_the_receipt_follows(
        qtbot: QtBot, modality_agent: ModalityAgent) -> None:
    agent, modality, pids = modality_agent
    console, link = start_console(qtbot, agent)
    try:
        assert console.banners.bars == {}
        session_id = full_session(agent)
        run_task(agent, session_id, "stubborn")
        qtbot.waitUntil(lambda: len(alive(pids)) == 1, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: bool(console.banners.bars) and "stubborn" in next(
            iter(console.banners.bars.values())).activity.text(), timeout=WAIT_MS)
        bar = next(iter(console.banners.bars.values()))
        assert bar.isVisible()
        assert bar.headline.text() == "Remote service: Dana Field (Acme Imaging)"
        assert "Reason: detector calibration" in bar.details.text()
        assert "Level: Full access" in bar.details.text()
        assert bar.blocked.text() == "Examinations blocked"
        assert bar.windowFlags() & Qt.WindowType.WindowStaysOnTopHint
        bar.close()  # the banner cannot be closed while the session lasts
        assert bar.isVisible()

        # End session works while the technologist has dialogs open (they are not modal to the banner).
        for dialog in (console.open_access(), console.open_session_id()):
            qtbot.addWidget(dialog)
            assert dialog.isVisible()
        qtbot.mouseClick(bar.end_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: session_id in console.receipts, timeout=WAIT_MS)
        assert alive(pids) == []
        assert [r["what"] for r in sim_modality.read_state(modality)["restores"]] == ["diagnostics"]
        assert agent.cli_json("access", "show")["level"] == "no-access"
        qtbot.waitUntil(lambda: console.banners.bars == {}, timeout=WAIT_MS)
        receipt: ReceiptDialog = console.receipts[session_id]
        qtbot.addWidget(receipt)
        text = "\n".join(label.text() for label in receipt.findChildren(QLabel))
        assert "Dana Field (engineer ID E-1001, Acme Imaging)" in text
        assert "kill switch" in text
        assert "stubborn" in text
        assert receipt.isVisible()  # it stays until dismissed
    finally:
        close(console, link)


def test_the_agent_restarting_under_the_running_ui(qtbot: QtBot,
                                                   modality_agent: ModalityAgent) -> None:
    agent, _, _ = modality_agent
    console, link = start_console(qtbot, agent)
    try:
        agent.stop()
        qtbot.waitUntil(lambda: not console.up, timeout=WAIT_MS)
        assert "Remote service unavailable" in console.launcher.state.text()
        assert not console.launcher.buttons["open_session_id"].isEnabled()
        agent.start()
        qtbot.waitUntil(lambda: console.up, timeout=WAIT_MS)
        assert console.launcher.state.text() == ""
        assert console.launcher.buttons["open_session_id"].isEnabled()
    finally:
        close(console, link)


DEVICE_ID = "ct-4001"


@pytest.fixture
def enrolled(portal: PortalProcess, tmp_path: Path) -> Iterator[AgentProcess]:
    process = device(tmp_path, "d" * 32)
    assert enroll(process, portal, DEVICE_ID).returncode == 0
    process.start()
    yield process
    process.stop()


def open_session(portal: PortalProcess, level: str = "full", *, request: bool = False) -> str:
    """A session the engineer opens at the portal; `request`: also asked of the device directly (under its standing
    grant it takes the session without the ID being typed in)."""
    return portal.cli("engineer", "open-session", "--device", DEVICE_ID, "--engineer-id", "E-4711", "--name",
                      "Dana Scully", "--company", "Acme Medical Service", "--reason", "gantry error 4711",
                      "--level", level, *(["--request"] if request else [])).splitlines()[0]


def test_session_ids_wrong_and_right_decline_and_accept_with_the_privacy_notice(
        qtbot: QtBot, portal: PortalProcess, enrolled: AgentProcess) -> None:
    console, link = start_console(qtbot, enrolled)
    try:
        dialog = console.open_session_id()
        qtbot.addWidget(dialog)
        qtbot.keyClicks(dialog.id_field, "1234abcd")
        qtbot.mouseClick(dialog.claim_button, Qt.MouseButton.LeftButton)
        assert "8 digits" in dialog.error.text()  # refused before it is sent
        dialog.id_field.clear()
        qtbot.keyClicks(dialog.id_field, "00000000")
        qtbot.mouseClick(dialog.claim_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "does not know this session ID" in dialog.error.text(), timeout=WAIT_MS)
        assert dialog.pages.currentIndex() == 0

        first = open_session(portal)
        dialog.id_field.clear()
        qtbot.keyClicks(dialog.id_field, first)
        assert dialog.id_field.text() == f"{first[:4]} {first[4:]}"  # grouped for reading aloud
        qtbot.mouseClick(dialog.claim_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: dialog.pages.currentIndex() == 1, timeout=WAIT_MS)
        shown = "\n".join(label.text() for label in dialog.findChildren(QLabel))
        for fact in ("Dana Scully", "E-4711", "Acme Medical Service", "gantry error 4711",
                     "Examinations will be blocked", "at most 8 h"):  # [sessions] time_limit_min, from the agent
            assert fact in shown
        qtbot.mouseClick(dialog.decline_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
        assert [s["end_reason"] for s in enrolled.cli_json("session", "list")] == ["declined"]

        second = open_session(portal)
        accept = console.open_session_id()
        qtbot.addWidget(accept)
        qtbot.keyClicks(accept.id_field, f"{second[:4]}-{second[4:]}")
        qtbot.mouseClick(accept.claim_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: accept.pages.currentIndex() == 1, timeout=WAIT_MS)
        qtbot.mouseClick(accept.accept_button, Qt.MouseButton.LeftButton)
        assert "privacy notice" in accept.error.text()  # the notice must be actively confirmed
        accept.level_buttons[AccessLevel.LIMITED].setChecked(True)  # lower for this session
        accept.disclaimer.setChecked(True)
        qtbot.mouseClick(accept.accept_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not accept.isVisible(), timeout=WAIT_MS)
        confirmed = next(s for s in enrolled.cli_json("session", "list") if s["id"] == second)
        assert (confirmed["state"], confirmed["effective_level"]) == ("authenticating", "limited")
    finally:
        close(console, link)


def click(qtbot: QtBot, button: QPushButton) -> None:
    """A left click on `button` (pytest-qt's mouseClick has no type annotations: one ignore here, not at each call)."""
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]


def agent_session(agent: AgentProcess, session_id: str) -> dict[str, Any]:
    """The session as the agent lists it (`servicegate session list`)."""
    return next(s for s in agent.cli_json("session", "list") if s["id"] == session_id)


def test_requests_from_the_service_centre_under_a_standing_grant_inform_or_wait_for_consent(
        qtbot: QtBot, portal: PortalProcess, enrolled: AgentProcess) -> None:
    assert enrolled.cli("access", "set", "permanent-limited").returncode == 0
    console, link = start_console(qtbot, enrolled)
    events: list[tuple[str, dict[str, Any]]] = []
    link.agent_event.connect(lambda name, data: events.append((name, data)))  # after the console's own
    try:
        qtbot.waitUntil(lambda: "Permanent limited access" in console.launcher.access.text(), timeout=WAIT_MS)
        # Within the grant: admitted without a click; the technologist is only told who and why.
        limited = open_session(portal, "limited", request=True)
        qtbot.waitUntil(lambda: any(isinstance(d, RequestNotice) and d.isVisible() for d in console.dialogs),
                        timeout=WAIT_MS)
        notice = next(d for d in console.dialogs if isinstance(d, RequestNotice))
        qtbot.addWidget(notice)
        assert notice.windowTitle() == "Remote service request"
        told = "\n".join(label.text() for label in notice.findChildren(QLabel))
        for fact in ("Dana Scully", "E-4711", "Acme Medical Service", "gantry error 4711", "Limited access",
                     "Allowed by your standing access level"):
            assert fact in told
        assert "Examinations will be blocked" not in told
        admitted = agent_session(enrolled, limited)
        assert (admitted["state"], admitted["claimed"], admitted["effective_level"]) == \
            ("authenticating", False, "limited")

        # FULL blocks examinations: whatever the standing grant, it waits for the technologist to confirm.
        full = open_session(portal, "full", request=True)
        qtbot.waitUntil(lambda: any(isinstance(d, SessionDialog) and d.isVisible() for d in console.dialogs),
                        timeout=WAIT_MS)
        dialog = next(d for d in console.dialogs if isinstance(d, SessionDialog))
        qtbot.addWidget(dialog)
        assert dialog.session is not None
        assert dialog.session["id"] == full
        assert dialog.windowTitle() == "Remote service request"
        assert dialog.pages.currentIndex() == 1  # the details at once: there is no ID to type in
        shown = "\n".join(label.text() for label in dialog.findChildren(QLabel))
        for fact in ("Dana Scully", "E-4711", "Acme Medical Service", "gantry error 4711",
                     "The engineer asked for this session through the service centre",
                     "Examinations will be blocked"):
            assert fact in shown
        assert agent_session(enrolled, full)["state"] == "awaiting_consent"
        click(qtbot, dialog.accept_button)
        assert dialog.isVisible()
        assert "privacy notice" in dialog.error.text()
        assert agent_session(enrolled, full)["state"] == "awaiting_consent"
        dialog.disclaimer.setChecked(True)
        click(qtbot, dialog.accept_button)
        qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
        confirmed = agent_session(enrolled, full)
        assert (confirmed["state"], confirmed["effective_level"]) == ("authenticating", "full")

        # The confirmation is announced with a session_changed of its own, `authenticating` and unclaimed like a
        # request the grant admitted: it is not shown again (a close()d window stays listed until the next one).
        qtbot.waitUntil(lambda: any(name == "session_changed" and data["id"] == full and
                                    data["state"] == "authenticating" for name, data in events), timeout=WAIT_MS)
        QCoreApplication.processEvents()
        assert [type(d).__name__ for d in console.dialogs] == ["RequestNotice", "SessionDialog"]
        assert not any(d.isVisible() for d in console.dialogs if d is not notice)

        # The notice's End session is the kill switch: before the engineer has signed in (and there is a banner).
        click(qtbot, notice.end_button)
        qtbot.waitUntil(lambda: agent_session(enrolled, limited)["state"] == "ended", timeout=WAIT_MS)
        assert [agent_session(enrolled, sid)["end_reason"] for sid in (limited, full)] == ["killed", "killed"]
        assert enrolled.cli_json("access", "show")["level"] == "no-access"
        assert not notice.isVisible()
    finally:
        close(console, link)


def test_the_receipt_follows_a_file_that_was_still_being_sent_when_the_session_ended(
        qtbot: QtBot, portal: PortalProcess, enrolled: AgentProcess, tmp_path: Path) -> None:
    assert enrolled.cli("access", "set", "permanent-limited").returncode == 0
    console, link = start_console(qtbot, enrolled)
    try:
        session_id = open_session(portal, "limited", request=True)
        code = portal.cli("engineer", "totp", "--device", DEVICE_ID).strip()
        signed_in = portal.run("engineer", "authenticate", "--session", session_id, "--code", code)
        assert signed_in.returncode == 0, signed_in.stdout + signed_in.stderr
        qtbot.waitUntil(lambda: bool(console.banners.bars), timeout=WAIT_MS)
        # The portal goes away; a study is de-identified and queued in the session, and cannot leave yet.
        portal.stop()
        (tmp_path / "study").mkdir()
        study, _ = planted_series(tmp_path / "study", 1)
        queued = enrolled.cli("upload", str(study[0].parent))
        assert queued.returncode == 0, queued.stdout + queued.stderr
        qtbot.waitUntil(lambda: "still sending: 1" in next(iter(console.banners.bars.values())).activity.text(),
                        timeout=WAIT_MS)
        bar = next(iter(console.banners.bars.values()))
        click(qtbot, bar.end_button)
        qtbot.waitUntil(lambda: session_id in console.receipts, timeout=WAIT_MS)
        receipt = console.receipts[session_id]
        qtbot.addWidget(receipt)

        def files() -> list[str]:
            return [label.text() for label in receipt.findChildren(QLabel) if label.objectName() == "file"]

        [line] = files()
        assert "De-identified, still being sent" in line
        # The portal is back: the queued file goes out, and the open receipt says so.
        portal.start()
        qtbot.waitUntil(lambda: any("checked by the portal" in text for text in files()), timeout=90_000)
        [line] = files()
        assert line.startswith(enrolled.cli_json("uploads")[0]["name"])
        assert "De-identified, checked by the portal" in line
        assert receipt.isVisible()
    finally:
        close(console, link)


def test_one_ui_per_user_session(tmp_path: Path) -> None:
    """A second `servicegate ui` in the same session says so and leaves; the first goes on (and shows that the agent,
    absent here, cannot be reached)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(runtime)}
    command = [sys.executable, "-m", "consent_ui", "--socket", str(tmp_path / "no-agent.sock")]
    with (tmp_path / "first.log").open("wb") as log:
        first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("the first UI's lock", lambda: any(runtime.glob("servicegate-ui-*.lock")), timeout_s=30)
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0
        assert "already running" in second.stderr
        assert first.poll() is None
    finally:
        first.terminate()
        first.wait(timeout=20)


def test_request_service_from_the_console_gets_a_case_number_now_or_when_the_portal_is_back(
        qtbot: QtBot, portal: PortalProcess, enrolled: AgentProcess) -> None:
    console, link = start_console(qtbot, enrolled)

    def cases() -> list[dict[str, Any]]:
        return list(json.loads(portal.cli("engineer", "cases", "--device", DEVICE_ID)))

    try:
        dialog = console.open_request_service()
        qtbot.addWidget(dialog)
        qtbot.keyClicks(dialog.text_field, "ab")
        click(qtbot, dialog.send_button)
        assert "at least 3 characters" in dialog.error.text()  # refused before anything is sent
        assert cases() == []
        dialog.text_field.clear()
        qtbot.keyClicks(dialog.text_field, "the patient table does not move")
        dialog.urgency_buttons[Urgency.HIGH].setChecked(True)
        click(qtbot, dialog.send_button)
        qtbot.waitUntil(lambda: "Case number" in dialog.answer.text(), timeout=WAIT_MS)
        [case] = cases()
        assert (case["urgency"], case["text"]) == ("high", "the patient table does not move")
        assert f"Case number: {case['case_id']}." in dialog.answer.text()
        assert not dialog.send_button.isVisible()  # sent once; the answer stays until closed

        # The service centre cannot be reached: the request is kept, and its case number appears when it is sent.
        portal.stop()
        kept = console.open_request_service()
        qtbot.addWidget(kept)
        qtbot.keyClicks(kept.text_field, "error 4711 after the update")
        click(qtbot, kept.send_button)
        qtbot.waitUntil(lambda: "cannot be reached now" in kept.answer.text(), timeout=WAIT_MS)
        portal.start()
        qtbot.waitUntil(lambda: "Case number" in kept.answer.text(), timeout=90_000)
        second = next(c for c in cases() if c["text"] == "error 4711 after the update")
        assert second["case_id"] in kept.answer.text()
        assert second["urgency"] == "normal"  # the preselected urgency

        # The engineer takes the case: the session the technologist is asked about shows its number.
        session_id = portal.cli("engineer", "open-session", "--device", DEVICE_ID, "--engineer-id", "E-4711", "--name",
                                "Dana Scully", "--company", "Acme Medical Service", "--reason", "table drive",
                                "--level", "full", "--case-id", second["case_id"]).splitlines()[0]
        asked = console.open_session_id()
        qtbot.addWidget(asked)
        qtbot.keyClicks(asked.id_field, session_id)
        click(qtbot, asked.claim_button)
        qtbot.waitUntil(lambda: asked.pages.currentIndex() == 1, timeout=WAIT_MS)
        assert asked.findChild(QLabel, "row-Case number").text() == second["case_id"]
    finally:
        close(console, link)


def test_a_request_waiting_before_the_ui_started_is_shown_and_escape_declines_it(
        qtbot: QtBot, portal: PortalProcess, enrolled: AgentProcess) -> None:
    assert enrolled.cli("access", "set", "permanent-limited").returncode == 0
    waiting = open_session(portal, "full", request=True)
    qtbot.waitUntil(lambda: any(s["id"] == waiting and s["state"] == "awaiting_consent"
                                for s in enrolled.cli_json("session", "list")), timeout=WAIT_MS)
    console, link = start_console(qtbot, enrolled)  # only now: the agent's status has the waiting session
    try:
        qtbot.waitUntil(lambda: any(isinstance(d, SessionDialog) and d.isVisible() for d in console.dialogs),
                        timeout=WAIT_MS)
        dialog = next(d for d in console.dialogs if isinstance(d, SessionDialog))
        qtbot.addWidget(dialog)
        assert dialog.session is not None
        assert dialog.session["id"] == waiting
        qtbot.keyClick(dialog, Qt.Key.Key_Escape)  # closing it is declining it: never left waiting unseen
        qtbot.waitUntil(lambda: agent_session(enrolled, waiting)["state"] == "ended", timeout=WAIT_MS)
        assert agent_session(enrolled, waiting)["end_reason"] == "declined"
        qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    finally:
        close(console, link)


def test_the_engineers_words_show_as_written_and_never_push_end_session_off_the_screen(qtbot: QtBot) -> None:
    """Markup in a reason is shown, not obeyed; a 500-character reason is cut at the screen's edge (whole in the
    tooltip), and End session stays on the screen."""
    from PySide6.QtGui import QGuiApplication

    from consent_ui import models
    from consent_ui.banner import BannerBar
    from tests.test_ui_models import NOW, session, status

    fake = "<b>Examinations remain possible</b> " + "x" * 500
    active = {**session(SessionState.ACTIVE, effective=AccessLevel.FULL, activated=NOW), "reason": fake}
    screen = QGuiApplication.primaryScreen()
    bar = BannerBar(screen, lambda: None)
    qtbot.addWidget(bar)
    shown = models.banner(status(active), [], [], NOW)
    assert shown is not None
    bar.show_banner(shown)
    assert "<b>Examinations remain possible</b>" in bar.details.text()
    assert bar.details.textFormat() == Qt.TextFormat.PlainText
    assert bar.details.toolTip() == bar.details.text()
    room = screen.geometry()
    assert bar.geometry().right() <= room.right()
    assert bar.end_button.mapTo(bar, bar.end_button.rect().topRight()).x() + bar.x() <= room.right()

    dialog = SessionDialog(AgentLink(Path("/nonexistent.sock")), {"level": "no-access"})
    qtbot.addWidget(dialog)
    dialog.show_session({**session(), "reason": fake})
    [reason] = [label for label in dialog.findChildren(QLabel) if label.text() == fake]
    assert reason.textFormat() == Qt.TextFormat.PlainText


def test_end_session_says_on_the_banner_when_the_agent_is_gone(
        qtbot: QtBot, modality_agent: ModalityAgent) -> None:
    agent, _, _ = modality_agent
    console, link = start_console(qtbot, agent)
    try:
        full_session(agent)
        qtbot.waitUntil(lambda: bool(console.banners.bars), timeout=WAIT_MS)
        bar = next(iter(console.banners.bars.values()))
        agent.stop()  # the agent dies with the session open: the banner stays, and says what that means
        qtbot.waitUntil(lambda: "cannot be reached" in bar.activity.text(), timeout=WAIT_MS)
        assert bar.activity.objectName() == "problem"
        agent.start()
        qtbot.waitUntil(lambda: not shiboken6.isValid(bar.activity) or not bar.isVisible()
                        or "cannot be reached" not in bar.activity.text(), timeout=WAIT_MS)  # gone with the session
    finally:
        close(console, link)


def test_the_banner_shows_a_shared_screen_and_a_refused_control_change_in_words(
        qtbot: QtBot, modality_agent: ModalityAgent) -> None:
    """The shared screen follows the agent's `screen_changed` events (here one as the agent words it, for the real
    session: the agent's own sharing needs x11vnc and the portal's relay, tests/test_screen_sharing.py); Allow
    control sends `screen_control` to the real agent, which shares no screen and refuses: the banner says so, and
    End session stays where it is and still ends the session."""
    agent, _, _ = modality_agent
    console, link = start_console(qtbot, agent)
    try:
        session_id = full_session(agent)
        qtbot.waitUntil(lambda: bool(console.banners.bars), timeout=WAIT_MS)
        bar = next(iter(console.banners.bars.values()))
        assert console.shares == {}
        assert console.launcher.state.text() == ""
        assert bar.screen_line.isHidden()
        assert bar.control_button.isHidden()
        end_at = bar.end_button.geometry()
        share = {"task_id": "t-share", "session_id": session_id, "engineer_id": "E-1001", "state": "sharing",
                 "control": False, "control_possible": True}
        console._event("screen_changed", share)  # noqa: SLF001 - as the watcher passes it on
        assert bar.screen_line.text() == "Your screen is shared with Dana Field — view only"
        assert bar.control_button.text() == "Allow control"
        assert not bar.control_button.isHidden()
        assert bar.control_button.accessibleName() == "Allow control"
        qtbot.waitUntil(lambda: bar.end_button.geometry().right() == end_at.right(), timeout=WAIT_MS)
        qtbot.mouseClick(bar.control_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "was not changed" in bar.activity.text(), timeout=WAIT_MS)
        assert f"session {session_id} shares no screen now" in bar.activity.text()
        assert bar.activity.objectName() == "problem"
        console._event("screen_changed", {**share, "control": True})  # noqa: SLF001
        assert "the engineer can use the mouse and keyboard" in bar.screen_line.text()
        assert bar.control_button.text() == "View only"
        assert "was not changed" not in bar.activity.text()  # the refusal is no longer news
        console._event("screen_changed", {**share, "state": "ended", "reason": "the task ended"})  # noqa: SLF001
        assert bar.screen_line.isHidden()
        assert bar.control_button.isHidden()
        console._event("screen_changed", {**share, "control_possible": False})  # noqa: SLF001
        assert bar.screen_line.text().endswith("view only (control needs full access)")
        assert bar.control_button.isHidden()
        qtbot.mouseClick(bar.end_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: console.banners.bars == {}, timeout=WAIT_MS)
        assert agent.cli_json("session", "list")[-1]["end_reason"] == "killed"
    finally:
        close(console, link)


def test_a_waiting_task_opens_its_question_which_declines_allows_and_closes_when_it_no_longer_waits(
        qtbot: QtBot, portal: PortalProcess, enrolled: AgentProcess) -> None:
    """An application-support session; the engineer asks for `share-screen` (the catalog's `screen`): its question
    opens by itself, once, with who asks and what the engineer will see; Decline sends `task_decline`; a task
    declined elsewhere (the CLI) closes its question; Allow sends `task_confirm`. (The X grant: test_ui_x11.py.)"""
    from consent_ui.task_dialog import TaskDialog
    from tests.test_tasks_portal import active_session

    console, link = start_console(qtbot, enrolled)
    try:
        qtbot.waitUntil(lambda: console.catalog is not None, timeout=WAIT_MS)
        session_id = active_session(portal, enrolled, DEVICE_ID, kind="application-support",
                                    engineer=("E-21", "Kim Applications"), reason="protocol questions")

        def ask() -> TaskDialog:
            asked = portal.run("engineer", "run-task", "--session", session_id, "--kind", "share-screen")
            assert asked.returncode == 0, asked.stdout + asked.stderr
            task_id = asked.stdout.splitlines()[0]
            qtbot.waitUntil(lambda: task_id in console.task_dialogs, timeout=WAIT_MS)
            dialog = console.task_dialogs[task_id]
            qtbot.waitUntil(dialog.isVisible, timeout=WAIT_MS)
            return dialog

        def run(task_id: str) -> dict[str, Any]:
            return dict(next(t for t in enrolled.cli_json("task", "list") if t["id"] == task_id))

        def state(task_id: str) -> str:
            return str(run(task_id)["state"])

        first = ask()
        texts = [label.text() for label in first.findChildren(QLabel)]
        assert first.windowTitle() == "Share your screen?"
        assert "Kim Applications asks to see your screen" in texts
        assert "Share the console's screen with the engineer (application support)" in texts
        assert "protocol questions" in texts
        assert ("Kim Applications will see your whole screen, including any patient data on it. The engineer can "
                "only watch until you allow control on the banner.") in texts
        assert [first.decline_button.accessibleName(), first.allow_button.accessibleName()] == ["Decline", "Allow"]
        click(qtbot, first.decline_button)
        qtbot.waitUntil(lambda: not first.isVisible(), timeout=WAIT_MS)
        assert state(first.task_id) == "declined"
        console.refresh()  # the declined task, listed again: its question does not come back
        qtbot.wait(500)
        assert not first.isVisible()
        assert len(console.task_dialogs) == 1

        second = ask()  # declined at the console with the CLI: its question goes by itself
        assert enrolled.cli("task", "decline", second.task_id).returncode == 0
        qtbot.waitUntil(lambda: not second.isVisible(), timeout=WAIT_MS)

        third = ask()
        click(qtbot, third.allow_button)
        qtbot.waitUntil(lambda: not third.isVisible(), timeout=WAIT_MS)
        allowed = run(third.task_id)  # it ran (no display here: x11vnc may fail at once)
        assert allowed["state"] not in ("waiting", "declined", "refused"), allowed
    finally:
        close(console, link)
