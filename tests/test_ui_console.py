"""The consent UI's windows (pytest-qt, offscreen) against a real agent daemon over the real socket: the access
dialog, the session-ID dialog with a real portal (wrong and right IDs, decline, accept with the privacy notice), the
banner while a session is active, End session stopping a running task (the simulated modality shows its restore),
the receipt, and the agent restarting under the running UI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from agent.protocol import AccessLevel
from consent_ui.app import Console
from consent_ui.dialogs import ReceiptDialog
from consent_ui.link import AgentLink
from portal import sim_modality
from tests.agent_process import AgentProcess
from tests.portal_process import PortalProcess
from tests.test_connection import device, enroll, wait_for
from tests.test_kill_switch import alive, full_session, kill_leftovers, make_agent, run_task

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
    console.timer.stop()
    console.banners.update(None)
    for window in [*console.dialogs, *console.receipts.values()]:
        window.close()
        window.deleteLater()
    console.deleteLater()
    link.deleteLater()
    QCoreApplication.processEvents()


@pytest.fixture
def modality_agent(tmp_path: Path) -> Iterator[tuple[AgentProcess, Path, Path]]:
    agent, modality, pids = make_agent(tmp_path, cgroups=False)
    agent.start()
    yield agent, modality, pids
    agent.stop()
    kill_leftovers(pids)


def test_the_access_dialog_applies_a_level_and_closes_only_when_the_agent_confirms(
        qtbot: QtBot, modality_agent: tuple[AgentProcess, Path, Path]) -> None:
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
        qtbot: QtBot, modality_agent: tuple[AgentProcess, Path, Path]) -> None:
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
                                                   modality_agent: tuple[AgentProcess, Path, Path]) -> None:
    agent, _, _ = modality_agent
    console, link = start_console(qtbot, agent)
    try:
        agent.stop()
        qtbot.waitUntil(lambda: not console.up, timeout=WAIT_MS)
        assert "Remote service unavailable" in console.launcher.state.text()
        assert not console.launcher.enter.isEnabled()
        agent.start()
        qtbot.waitUntil(lambda: console.up, timeout=WAIT_MS)
        assert console.launcher.state.text() == ""
        assert console.launcher.enter.isEnabled()
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


def open_session(portal: PortalProcess, level: str = "full") -> str:
    return portal.cli("engineer", "open-session", "--device", DEVICE_ID, "--engineer-id", "E-4711", "--name",
                      "Dana Scully", "--company", "Acme Medical Service", "--reason", "gantry error 4711",
                      "--level", level).splitlines()[0]


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
                     "Examinations will be blocked"):
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
