"""The tray icon and the audit viewer (pytest-qt, offscreen) against a real agent daemon over the real socket.

The tray's icon and menu follow the agent's state; its items open the windows they name and End session is the
kill switch. The audit viewer lists the device's audit records of the chosen days, narrows them to one engineer
(the agent filters), and exports what it shows as the agent's CSV (spreadsheet formulas defused).

On the offscreen platform there is no tray to embed the icon in: the icon's state and menu are real Qt objects
and are tested here; that it appears in a real tray (trayer on Xvfb) is tested in tests/test_ui_x11.py.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from PySide6.QtGui import QColor
from pytestqt.qtbot import QtBot

from consent_ui import models
from consent_ui.app import Console
from consent_ui.audit_viewer import AuditViewer
from consent_ui.dialogs import AccessDialog, RequestServiceDialog, SessionDialog
from consent_ui.link import AgentLink
from consent_ui.tray import tray_pixmap
from consent_ui.update_dialog import UpdateListDialog
from tests.agent_process import AgentProcess
from tests.shared_fixtures import ModalityAgent
from tests.test_kill_switch import full_session
from tests.test_ui_console import WAIT_MS, close, start_console


def request(agent: AgentProcess, engineer_id: str, name: str, reason: str) -> str:
    """A LIMITED session asked for locally (the grant admits it), then declined or left: records naming the engineer."""
    session = agent.cli_json("session", "request", "--engineer-id", engineer_id, "--name", name, "--company",
                             "Acme Imaging", "--reason", reason, "--level", "limited")
    return str(session["id"])


def centre(kind: str) -> QColor:
    image = tray_pixmap(kind).toImage()
    return image.pixelColor(image.width() // 2, image.height() // 2)


def test_each_tray_state_has_its_own_icon(qapp: object) -> None:
    """Told apart by shape as well as colour: rings (empty centre) for no or limited access, discs for the rest."""
    images = {kind: tray_pixmap(kind).toImage() for kind in models.TRAY_KINDS}
    assert len({bytes(image.constBits()) for image in images.values()}) == len(models.TRAY_KINDS)
    assert centre("no-access").alpha() == 0
    assert centre("permanent-limited").name() == "#1565c0"
    assert centre("full").name() == "#ef8f00"
    assert centre("session-active").name() == "#ffffff"  # the white centre of the red disc
    with pytest.raises(ValueError, match="no tray icon for 'limitless'"):
        tray_pixmap("limitless")


def test_the_tray_follows_the_agent_and_its_menu_does_what_it_says(qtbot: QtBot, modality_agent: ModalityAgent) -> None:
    agent = modality_agent[0]
    console, link = start_console(qtbot, agent)
    tray = console.tray
    try:
        assert tray.state is not None
        assert tray.state.kind == "no-access"
        assert tray.icon.toolTip().startswith("ServiceGate: No access, set by")
        assert not tray.items["end_session"].isEnabled()  # no session to end
        assert [a.text() for a in tray.menu.actions() if not a.isSeparator()] == [
            "Change access level…", "Enter session ID…", "Request service…", "Show audit log…", "Updates…",
            "End session"]

        tray.items["open_access"].trigger()
        assert isinstance(console.dialogs[-1], AccessDialog)
        tray.items["open_session_id"].trigger()
        assert isinstance(console.dialogs[-1], SessionDialog)
        tray.items["open_request_service"].trigger()
        assert isinstance(console.dialogs[-1], RequestServiceDialog)
        tray.items["open_audit_log"].trigger()
        assert isinstance(console.dialogs[-1], AuditViewer)
        tray.items["open_updates"].trigger()
        assert isinstance(console.dialogs[-1], UpdateListDialog)
        for window in console.dialogs:
            qtbot.addWidget(window)
            assert window.isVisible()

        session_id = full_session(agent)
        qtbot.waitUntil(lambda: tray.state is not None and tray.state.kind == "session-active", timeout=WAIT_MS)
        assert tray.icon.toolTip() == "ServiceGate: remote session active (Dana Field, Acme Imaging)"
        assert tray.items["end_session"].isEnabled()
        tray.items["end_session"].trigger()  # the kill switch
        qtbot.waitUntil(lambda: tray.state is not None and tray.state.kind == "no-access", timeout=WAIT_MS)
        ended = next(s for s in agent.cli_json("session", "list") if s["id"] == session_id)
        assert (ended["state"], ended["end_reason"]) == ("ended", "killed")

        agent.stop()
        qtbot.waitUntil(lambda: tray.state is not None and tray.state.kind == "unavailable", timeout=WAIT_MS)
        assert "remote service unavailable" in tray.icon.toolTip()
        assert not tray.items["open_access"].isEnabled()
    finally:
        close(console, link)


def test_the_audit_viewer_lists_narrows_to_one_engineer_and_exports_csv(qtbot: QtBot, modality_agent: ModalityAgent,
                                                                        tmp_path: Path) -> None:
    agent = modality_agent[0]
    assert agent.cli("access", "set", "permanent-limited").returncode == 0
    first = request(agent, "E-1001", "Dana Field", "detector calibration")
    second = request(agent, "E-2002", "Sam Ortiz", "=HYPERLINK(\"http://evil.example\")")
    for session_id in (first, second):
        assert agent.cli("session", "end", session_id, "--summary", "done").returncode == 0
    link = AgentLink(agent.socket)
    viewer = AuditViewer(link)
    qtbot.addWidget(viewer)
    link.start()
    try:
        viewer.show()
        viewer.load()
        qtbot.waitUntil(lambda: viewer.table.rowCount() > 0 and viewer.engineer.count() == 3, timeout=WAIT_MS)
        everything = viewer.table.rowCount()
        events = [viewer.table.item(row, 1).text() for row in range(everything)]
        assert "access_set" in events
        assert events.count("session_ended") == 2
        assert [viewer.engineer.itemText(i) for i in range(3)] == ["All engineers", "Dana Field (E-1001)",
                                                                    "Sam Ortiz (E-2002)"]
        assert viewer.table.editTriggers() == viewer.table.EditTrigger.NoEditTriggers  # read-only

        viewer.engineer.setCurrentIndex(2)  # Sam Ortiz only: the agent narrows the records
        qtbot.waitUntil(lambda: 0 < viewer.table.rowCount() < everything, timeout=WAIT_MS)
        engineers = {viewer.table.item(row, 3).text() for row in range(viewer.table.rowCount())}
        assert engineers == {"Sam Ortiz (E-2002)"}
        sessions = {viewer.table.item(row, 4).text() for row in range(viewer.table.rowCount())}
        assert sessions == {second}
        assert viewer.count.text() == f"{viewer.table.rowCount()} record(s)"

        exported = tmp_path / "export" / "audit.csv"
        exported.parent.mkdir()
        viewer.export_to(exported)
        qtbot.waitUntil(exported.exists, timeout=WAIT_MS)
        rows = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8"))))
        assert len(rows) == viewer.table.rowCount()
        assert {row["engineer_id"] for row in rows} == {"E-2002"}
        assert {row["reason"] for row in rows} == {"'=HYPERLINK(\"http://evil.example\")"}  # defused
        assert [row["seq"] for row in rows] == sorted((row["seq"] for row in rows), key=int)

        # A folder that cannot be written to is said in words, in the window; nothing else changes.
        viewer.export_to(tmp_path / "missing" / "audit.csv")
        qtbot.waitUntil(lambda: "Cannot save" in viewer.error.text(), timeout=WAIT_MS)
        assert viewer.table.rowCount() == len(rows)

        # The first day after the last: said in words, the list as it was.
        shown_rows = viewer.table.rowCount()
        viewer.first.setDate(viewer.last.date().addDays(1))
        viewer.show_button.click()
        assert "first day is after the last" in viewer.error.text()
        assert viewer.table.rowCount() == shown_rows
        # Days before any of it: nothing (the agent reads only the chosen days).
        viewer.first.setDate(viewer.first.date().addDays(-10))
        viewer.last.setDate(viewer.first.date().addDays(2))
        viewer.engineer.setCurrentIndex(0)
        viewer.show_button.click()
        qtbot.waitUntil(lambda: viewer.table.rowCount() == 0, timeout=WAIT_MS)
        assert viewer.count.text() == "0 record(s)"
    finally:
        link.stop()
        viewer.close()
        viewer.deleteLater()
        link.deleteLater()


def test_console_opens_the_audit_log_from_its_window(qtbot: QtBot, modality_agent: ModalityAgent) -> None:
    agent = modality_agent[0]
    console: Console
    console, link = start_console(qtbot, agent)
    try:
        console.launcher.buttons["open_audit_log"].click()
        viewer = console.dialogs[-1]
        assert isinstance(viewer, AuditViewer)
        qtbot.addWidget(viewer)
        qtbot.waitUntil(lambda: viewer.table.rowCount() > 0, timeout=WAIT_MS)  # loaded at once
    finally:
        close(console, link)
