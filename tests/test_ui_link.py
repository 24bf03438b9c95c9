"""consent_ui.link against a real agent daemon over the real socket (pytest-qt, offscreen): calls answered on the
GUI thread, events passed on, the agent going away and coming back, the kill switch on a connection of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QCoreApplication
from pytestqt.qtbot import QtBot

from agent.errors import ServiceGateError, UsageError
from consent_ui.link import AgentLink
from tests.agent_process import AgentProcess
from tests.dicom_corpus import planted_series


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path).start()
    yield process
    process.stop()


@pytest.fixture
def link(agent: AgentProcess, qtbot: QtBot) -> Iterator[AgentLink]:
    link = AgentLink(agent.socket)
    with qtbot.waitSignal(link.available, timeout=10_000) as up:
        link.start()
    assert up.args == [True, ""]
    yield link
    link.stop()
    link.deleteLater()
    QCoreApplication.processEvents()


def answer(qtbot: QtBot, link: AgentLink, op: str, args: dict[str, Any] | None = None,
           urgent: bool = False) -> Any:
    results: list[Any] = []
    link.call(op, args, done=results.append, failed=results.append, urgent=urgent)
    qtbot.waitUntil(lambda: bool(results), timeout=30_000)
    return results[0]


def test_calls_are_answered_and_events_passed_on(qtbot: QtBot, link: AgentLink) -> None:
    assert answer(qtbot, link, "status")["access"]["level"] == "no-access"
    with qtbot.waitSignal(link.agent_event, timeout=10_000,
                          check_params_cb=lambda name, data: name == "access_changed") as changed:
        granted = answer(qtbot, link, "access_set", {"level": "permanent-limited"})
    assert granted["level"] == "permanent-limited"
    assert changed.args[1]["level"] == "permanent-limited"
    refused = answer(qtbot, link, "access_set", {"level": "everything"})
    assert isinstance(refused, UsageError)
    assert "unknown access level" in str(refused)


def test_the_kill_switch_does_not_wait_behind_other_calls(qtbot: QtBot, link: AgentLink, tmp_path: Path) -> None:
    """An ordinary call that takes long (a series of 200 images de-identified for upload) is under way on the link's
    worker when End session is pressed: the kill switch's answer comes first, on its own connection."""
    answer(qtbot, link, "access_set", {"level": "full"})
    (tmp_path / "series").mkdir()
    planted_series(tmp_path / "series", 200)
    order: list[str] = []
    link.call("upload", {"paths": [str(tmp_path / "series")]}, done=lambda _: order.append("upload"),
              failed=lambda error: order.append(f"upload failed: {error}"))
    qtbot.wait(200)  # the upload is on its way (it takes seconds)
    receipts: list[Any] = []
    link.call("kill", {"text": "patient on the table"}, urgent=True, done=lambda r: (order.append("kill"),
                                                                                    receipts.append(r)),
              failed=lambda error: order.append(f"kill failed: {error}"))
    qtbot.waitUntil(lambda: len(order) == 2, timeout=120_000)
    assert order == ["kill", "upload"]
    assert receipts[0]["access"]["level"] == "no-access"


def test_the_agent_going_away_and_coming_back(qtbot: QtBot, link: AgentLink, agent: AgentProcess) -> None:
    with qtbot.waitSignal(link.available, timeout=10_000) as down:
        agent.stop()
    assert down.args[0] is False
    failed = answer(qtbot, link, "status")
    assert isinstance(failed, ServiceGateError)
    with qtbot.waitSignal(link.available, timeout=20_000) as up:
        agent.start()
    assert up.args == [True, ""]
    assert answer(qtbot, link, "status")["access"]["level"] == "no-access"
