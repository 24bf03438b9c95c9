"""The update approval dialog.

- The view model (consent_ui.models, no Qt): what it shows of an update the agent offers (agent.updates' own Offer,
  `to_dict()`), what each decision sends, the times to postpone to, with a fixed `now` and a fixed zone.
- The dialog against a real agent enrolled at a real portal (pytest-qt, offscreen): the vendor publishes virus patterns
  and offers them to the device; the agent verifies and stages them; the dialog opens by itself, and Approve installs
  them (the pattern folder has them), Postpone asks again later, Reject deletes them with the reason in the audit log,
  Escape changes nothing, and an update postponed until a time comes back by itself.
- A viewer (no console role) is refused by the agent's control server: the dialog says so in words.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtWidgets import QLabel, QWidget
from pytestqt.qtbot import QtBot

from agent.client import Client
from agent.clock import utc_iso
from agent.errors import PermissionDeniedError
from agent.protocol import Request, Role
from agent.roles import Caller
from agent.updates import Offer, UpdateInfo
from consent_ui import models
from consent_ui.app import Console
from consent_ui.link import AgentLink
from consent_ui.models import InputError, error_text, identity
from consent_ui.update_dialog import UpdateDialog, UpdateListDialog
from tests.agent_process import AgentProcess
from tests.control_server import RunningServer
from tests.portal_process import PortalProcess
from tests.test_connection import audit_events, wait_for
from tests.test_control_roles import FixedRoles
from tests.test_ui_console import click, close, start_console
from tests.test_ui_models import NOW, assert_all_marked, show
from tests.test_updates_flow import publish as publish_update
from tests.test_updates_flow import reports

KEY = "3f2a9c01d4e5b6a7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5"
OTHER_KEY = "77e1b0c2d3e4f5061728394a5b6c7d8e9f00112233445566778899aabbccddee"


def offer(kind: str = "virus-patterns", version: str = "2026.12.5", state: str = "offered", *,
          length: int = 1_234_567, restart: bool = False, downtime: bool = False,
          notes: str = "Weekly virus patterns.\nDetects EICAR-2026-11.", publisher: str = "Acme Imaging Service",
          signed_by: tuple[str, ...] = (KEY,), decided_by: str = "", until: datetime | None = None, why: str = "",
          offered_at: datetime = NOW - timedelta(minutes=5),
          offer_id: str = "u20261128100100-a1b2c3") -> dict[str, Any]:
    """An update as the agent sends it (`update_list`, `update_changed`): agent.updates' own Offer."""
    info = UpdateInfo(name=f"{kind}/{kind}-{version}.dat", kind=kind, version=version, length=length,
                      sha256="ab" * 32, models=("CT-DEMO",), software_versions=(), restart=restart, downtime=downtime,
                      notes=notes, publisher=publisher, signed_by=signed_by)
    return Offer(offer_id, info, state, offered_at, file=f"/var/lib/servicegate/updates/staging/{offer_id}/x.dat",
                 decided_by=decided_by, decided_at=NOW if decided_by else None, until=until, why=why).to_dict()


def software(state: str = "offered", **more: Any) -> dict[str, Any]:
    """A software update that restarts ServiceGate and needs examination downtime."""
    return offer("software", "0.2.0", state, length=48_300_000, restart=True, downtime=True,
                 notes="ServiceGate 0.2.0\n\n- The update approval dialog\n- Faster de-identification of large "
                       "series\n- Fixes: the banner's clock after a time change", offer_id="u20261128100200-d4e5f6",
                 **more)


def rows(view: models.UpdateView) -> dict[str, str]:
    return {show(row.label): show(row.value) for row in view.rows}


# ---- the view model ------------------------------------------------------------------------------------------------

def test_virus_patterns_say_what_from_whom_signed_by_size_needs_and_notes() -> None:
    view = models.update_view(offer(), NOW, UTC)
    assert_all_marked(view)
    assert show(view.title) == "Virus patterns 2026.12.5"
    assert rows(view) == {"From": "Acme Imaging Service", "Signed by": "The vendor's signing key 3f2a9c01…",
                          "Size": "1.2 MB", "What it needs": "Nothing: the scanner works as usual"}
    assert show(view.notes) == "Weekly virus patterns.\nDetects EICAR-2026-11."
    assert view.notes.verbatim  # as the vendor wrote it: never translated, never markup
    assert view.warning is None
    assert (view.update_id, view.kind, view.state, view.waiting, view.finished) == (
        "u20261128100100-a1b2c3", "virus-patterns", "offered", True, False)
    assert show(view.status) == "Waiting for your decision"


def test_a_software_update_needing_a_restart_and_downtime_says_so_prominently() -> None:
    view = models.update_view(software(), NOW, UTC)
    assert_all_marked(view)
    assert show(view.title) == "Software update 0.2.0"
    assert rows(view)["What it needs"] == "A restart of ServiceGate; examinations must pause while it installs"
    assert rows(view)["Size"] == "48.3 MB"
    assert show(view.warning).startswith("Examinations must pause while this update installs.")
    configuration = models.update_view(offer("configuration", "3", restart=True, publisher="", signed_by=()), NOW)
    assert show(configuration.title) == "Configuration update 3"
    assert rows(configuration) == {"From": "The vendor", "Signed by": "Not given", "Size": "1.2 MB",
                                   "What it needs": "A restart of ServiceGate"}
    assert configuration.warning is None
    downtime = models.update_view(offer(downtime=True, notes=""), NOW)
    assert rows(downtime)["What it needs"] == "Examinations must pause while it installs"
    assert show(downtime.notes) == "No release notes."
    assert show(models.update_view(offer(signed_by=(KEY, OTHER_KEY)), NOW).rows[1].value) == \
        "The vendor's signing keys 3f2a9c01…, 77e1b0c2…"


@pytest.mark.parametrize(("length", "shown"), [
    (0, "0 bytes"), (999, "999 bytes"), (1000, "1 kB"), (850_400, "850 kB"), (999_499, "999 kB"),
    (999_500, "1.0 MB"), (1_234_567, "1.2 MB"), (999_949_999, "999.9 MB"), (999_950_000, "1.0 GB"),
    (3_400_000_000, "3.4 GB"),
])
def test_sizes_are_human(length: int, shown: str) -> None:
    assert show(models.size_text(length)) == shown


def test_the_decimal_separator_is_the_translations() -> None:
    german = {("UpdateDialog", "{whole}.{tenth} MB"): "{whole},{tenth} MB"}
    assert models.size_text(1_234_567).render(lambda context, source: german.get((context, source), source)) == \
        "1,2 MB"


def test_what_became_of_an_update_in_words() -> None:
    def status(update: dict[str, Any]) -> str:
        view = models.update_view(update, NOW, UTC)
        assert_all_marked(view)
        return show(view.status)

    assert status(offer("virus-patterns", state="postponed", decided_by="tech1", until=NOW + timedelta(hours=1))) == \
        "Postponed until 11:06: it will be offered again then."
    assert status(offer(state="postponed", decided_by="tech1", until=NOW + timedelta(days=1))) == \
        "Postponed until 2026-11-29 10:06: it will be offered again then."
    assert status(offer(state="installing", decided_by="tech1")) == \
        "Approved by tech1: installing now. This window says when it is done."
    assert status(offer(state="installing", decided_by="site-policy")) == \
        "Approved by the site's policy for virus patterns: installing now. This window says when it is done."
    assert status(offer(state="approved", decided_by="tech1")) == "Approved by tech1: the installation is starting."
    assert status(offer(state="installed", decided_by="tech1")) == "Installed: Virus patterns 2026.12.5 is in use now."
    assert status(offer(state="failed", decided_by="tech1", why="the installation could not start: the kill switch "
                                                               "is at work: nothing is installed now")) == \
        "Not installed: the installation could not start: the kill switch is at work: nothing is installed now. " \
        "Tell site IT."
    assert status(offer(state="failed", decided_by="tech1")) == "Not installed. Tell site IT."
    assert status(offer(state="rejected", decided_by="tech1", why="not in the busy week")) == \
        "Rejected by tech1 (not in the busy week): it will not be installed. The service centre is told."
    assert status(offer(state="rejected", decided_by="tech1")) == \
        "Rejected by tech1: it will not be installed. The service centre is told."
    for state, waiting, finished in (("offered", True, False), ("postponed", True, False), ("approved", False, False),
                                     ("installing", False, False), ("installed", False, True),
                                     ("failed", False, True), ("rejected", False, True)):
        view = models.update_view(offer(state=state, decided_by="tech1", until=NOW + timedelta(hours=1)), NOW)
        assert (view.waiting, view.finished) == (waiting, finished), state


def test_the_updates_list_holds_the_waiting_ones_oldest_first() -> None:
    updates = [offer(offer_id="u3", offered_at=NOW - timedelta(minutes=1)),
               offer(offer_id="u1", state="installed", decided_by="tech1"),
               offer(offer_id="u2", state="postponed", decided_by="tech1", until=NOW + timedelta(hours=1),
                     offered_at=NOW - timedelta(hours=2)),
               offer(offer_id="u4", state="rejected", decided_by="tech1")]
    assert [u["id"] for u in models.waiting_updates(updates)] == ["u2", "u3"]
    assert models.waiting_updates([]) == []
    assert show(models.NO_UPDATES) == "No updates are waiting."


def test_news_of_an_update_never_takes_it_back_to_an_earlier_state() -> None:
    """The answer to Approve (installing) may arrive after the event that it is installed: the dialog stays at
    installed. A postponed update is offered again: that is news too."""
    offered, postponed = offer(), offer(state="postponed", decided_by="tech1", until=NOW + timedelta(hours=1))
    installing, installed = offer(state="installing", decided_by="tech1"), offer(state="installed", decided_by="tech1")
    assert models.latest_update(installed, installing) is installed
    assert models.latest_update(installing, installed) is installed
    assert models.latest_update(offered, installing) is installing
    assert models.latest_update(postponed, offered) is offered
    assert models.latest_update(offered, postponed) is postponed


def test_what_approve_and_reject_send() -> None:
    assert models.approve_request("u1") == {"update_id": "u1"}
    assert models.reject_request("u1") == {"update_id": "u1", "reason": ""}
    assert models.reject_request("u1", "  not in\nthe busy\tweek ") == {"update_id": "u1",
                                                                         "reason": "not in the busy week"}
    with pytest.raises(InputError) as refused:
        models.reject_request("u1", "x" * 501)
    assert show(refused.value.text) == "The reason has 501 characters; keep it to at most 500."


def choices(now: datetime, tz: Any = UTC) -> list[tuple[str, str, str]]:
    return [(c.key, show(c.label), c.until.astimezone(tz).isoformat()) for c in models.postpone_choices(now, tz)]


def test_postpone_in_an_hour_tonight_or_tomorrow_morning() -> None:
    assert choices(NOW) == [("hour", "In 1 hour (11:06)", "2026-11-28T11:06:00+00:00"),
                            ("tonight", "Tonight at 22:00", "2026-11-28T22:00:00+00:00"),
                            ("morning", "Tomorrow at 07:00", "2026-11-29T07:00:00+00:00")]
    # Late in the evening "tonight" has passed; early in the morning 07:00 is still today.
    assert choices(NOW.replace(hour=21, minute=30)) == [
        ("hour", "In 1 hour (22:30)", "2026-11-28T22:30:00+00:00"),
        ("morning", "Tomorrow at 07:00", "2026-11-29T07:00:00+00:00")]
    assert choices(NOW.replace(hour=2, minute=0)) == [
        ("hour", "In 1 hour (03:00)", "2026-11-28T03:00:00+00:00"),
        ("morning", "This morning at 07:00", "2026-11-28T07:00:00+00:00"),
        ("tonight", "Tonight at 22:00", "2026-11-28T22:00:00+00:00")]
    assert [key for key, _, _ in choices(NOW.replace(hour=6, minute=30))] == ["hour", "tonight", "morning"]
    for choice in models.postpone_choices(NOW, UTC):
        assert_all_marked(choice)
        assert NOW < choice.until <= NOW + models.MAX_POSTPONE


def test_postpone_times_are_local_wall_clock_times_across_a_clock_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # summer time begins on 2026-03-29 at 02:00 local time
    now = datetime(2026, 3, 28, 19, 30, tzinfo=UTC)  # 20:30 local (+01:00)
    assert choices(now, berlin) == [("hour", "In 1 hour (21:30)", "2026-03-28T21:30:00+01:00"),
                                    ("tonight", "Tonight at 22:00", "2026-03-28T22:00:00+01:00"),
                                    ("morning", "Tomorrow at 07:00", "2026-03-29T07:00:00+02:00")]
    assert models.postpone_request("u1", "morning", now, berlin) == {"update_id": "u1",
                                                                     "until": "2026-03-29T05:00:00+00:00"}


def test_what_postpone_sends_is_computed_when_it_is_sent() -> None:
    assert models.postpone_request("u1", "hour", NOW, UTC) == {"update_id": "u1", "until": "2026-11-28T11:06:00+00:00"}
    assert models.postpone_request("u1", "tonight", NOW, UTC)["until"] == "2026-11-28T22:00:00+00:00"
    # The page was opened at 10:06 and "Tonight at 22:00" chosen at 21:30: that has passed (it would be in an hour).
    with pytest.raises(InputError) as passed:
        models.postpone_request("u1", "tonight", NOW.replace(hour=21, minute=30), UTC)
    assert show(passed.value.text) == "That time has passed. Choose another one."


def test_a_viewer_is_told_that_only_the_console_group_decides() -> None:
    words = error_text(PermissionDeniedError("may not use `update_approve`: it needs the console role"))
    assert "ServiceGate console group" in words.text.render(identity)


# ---- the dialog against a real agent and portal -------------------------------------------------------------------

WAIT_MS = 90_000  # the agent fetches an offer from the portal in its sending thread (TUF refresh, download)


@pytest.fixture
def agent(update_agent: AgentProcess) -> AgentProcess:
    return update_agent


def publish(portal: PortalProcess, tmp_path: Path, version: str) -> str:
    """Virus patterns published and offered to the device, with release notes of two lines and a publisher."""
    return publish_update(portal, tmp_path, version, "--notes", f"Weekly patterns {version}.\nDetects "
                          f"EICAR-{version}.", "--publisher", "Acme Imaging Service")


def listed(agent: AgentProcess, name: str) -> dict[str, Any]:
    """The update as the agent lists it (`servicegate update list`)."""
    return next(u for u in agent.cli_json("update", "list") if u["name"] == name)


def dialog_for(qtbot: QtBot, console: Console, agent: AgentProcess, name: str) -> UpdateDialog:
    """The dialog that opened by itself for the update `name` (once the agent has it offered)."""
    def shown() -> bool:
        return any(u["name"] == name and u["id"] in console.update_dialogs and
                   console.update_dialogs[u["id"]].isVisible() for u in agent.cli_json("update", "list"))

    qtbot.waitUntil(shown, timeout=WAIT_MS)
    dialog = console.update_dialogs[listed(agent, name)["id"]]
    qtbot.addWidget(dialog)
    return dialog


def label(dialog: QWidget, name: str) -> str:
    found = dialog.findChild(QLabel, name)
    assert found is not None, name
    return found.text()


def decisions(agent: AgentProcess) -> list[tuple[str, str]]:
    return [(r["event"], r["details"]["update_id"]) for r in audit_events(agent)
            if r["event"] in ("update_approved", "update_rejected", "update_postponed")]


def update_windows(console: Console) -> list[UpdateDialog]:
    return [d for d in console.dialogs if isinstance(d, UpdateDialog)]


def test_an_offered_update_opens_by_itself_and_approve_installs_it(
        qtbot: QtBot, portal: PortalProcess, agent: AgentProcess, tmp_path: Path) -> None:
    console, link = start_console(qtbot, agent)
    try:
        name = publish(portal, tmp_path, "2026.12.5")
        dialog = dialog_for(qtbot, console, agent, name)
        offered = listed(agent, name)
        assert offered["state"] == "offered"
        assert dialog.windowTitle() == "Update from the service centre"
        assert label(dialog, "title") == "Virus patterns 2026.12.5"
        assert label(dialog, "row-From") == "Acme Imaging Service"
        assert label(dialog, "row-Signed by") == f"The vendor's signing key {offered['signed_by'][0][:8]}…"
        assert label(dialog, "row-Size") == "2 kB" == f"{round(offered['length'] / 1000)} kB"
        assert label(dialog, "row-What it needs") == "Nothing: the scanner works as usual"
        assert label(dialog, "notes") == "Weekly patterns 2026.12.5.\nDetects EICAR-2026.12.5."
        assert not dialog.warning.isVisible()
        assert not dialog.status.isVisible()
        assert dialog.pages.currentIndex() == dialog.DECIDE

        click(qtbot, dialog.approve_button)
        qtbot.waitUntil(lambda: label(dialog, "status").startswith("Installed"), timeout=WAIT_MS)
        assert label(dialog, "status") == "Installed: Virus patterns 2026.12.5 is in use now."
        assert dialog.pages.currentIndex() == dialog.DONE
        assert dialog.close_button.isVisible()
        installed = listed(agent, name)
        assert (installed["state"], installed["decided_by"]) == ("installed", getpass.getuser())
        current = tmp_path / "patterns" / "current" / "patterns-2026.12.5.dat"
        assert current.read_bytes() == b"signatures 2026.12.5\n" * 100
        assert decisions(agent) == [("update_approved", offered["id"])]
        assert len(update_windows(console)) == 1  # one dialog, opened once
        wait_for("the report at the portal", lambda: (name, "installed") in reports(portal))
    finally:
        close(console, link)


def test_escape_postpone_reject_and_an_update_offered_again(
        qtbot: QtBot, portal: PortalProcess, agent: AgentProcess, tmp_path: Path) -> None:
    console, link = start_console(qtbot, agent)
    try:
        first = publish(portal, tmp_path, "2026.12.6")
        dialog = dialog_for(qtbot, console, agent, first)
        update_id = listed(agent, first)["id"]

        # Escape changes nothing: the update stays offered, and Updates… opens the same dialog again.
        qtbot.keyClick(dialog, Qt.Key.Key_Escape)
        assert not dialog.isVisible()
        updates = console.open_updates()
        qtbot.addWidget(updates)
        qtbot.waitUntil(lambda: update_id in updates.shown, timeout=WAIT_MS)
        assert updates.shown[update_id].text() == "Virus patterns 2026.12.6"
        assert updates.shown[update_id].isChecked()
        assert label(updates, "status") == "Waiting for your decision"
        click(qtbot, updates.show_button)
        assert dialog.isVisible()
        assert console.update_dialogs == {update_id: dialog}
        assert listed(agent, first)["state"] == "offered"
        assert decisions(agent) == []

        # Postponed elsewhere (the CLI, another console) until a moment from now: when that comes, it is offered again
        # and its dialog opens by itself again.
        dialog.close()
        with Client(agent.socket) as client:
            client.call("update_postpone", update_id=update_id, until=utc_iso(datetime.now(UTC) + timedelta(seconds=2)))
        qtbot.waitUntil(lambda: listed(agent, first)["state"] == "postponed", timeout=WAIT_MS)
        qtbot.waitUntil(lambda: dialog.isVisible() and listed(agent, first)["state"] == "offered", timeout=WAIT_MS)
        assert dialog.pages.currentIndex() == dialog.DECIDE
        assert len(update_windows(console)) == 1

        # Postpone "in 1 hour": the agent asks again then.
        click(qtbot, dialog.postpone_button)
        assert dialog.pages.currentIndex() == dialog.POSTPONE
        dialog.when_buttons["hour"].setChecked(True)
        assert dialog.when_buttons["hour"].text().startswith("In 1 hour (")
        clicked = datetime.now(UTC)
        click(qtbot, dialog.postpone_send)
        qtbot.waitUntil(lambda: label(dialog, "status").startswith("Postponed until"), timeout=WAIT_MS)
        postponed = listed(agent, first)
        assert postponed["state"] == "postponed"
        until = datetime.fromisoformat(postponed["until"].replace("Z", "+00:00"))
        assert timedelta(minutes=59) < until - clicked < timedelta(minutes=61)
        assert dialog.pages.currentIndex() == dialog.DONE

        # Another update: rejected with a reason, which the audit log keeps; its file is deleted.
        second = publish(portal, tmp_path, "2026.12.7")
        other = dialog_for(qtbot, console, agent, second)
        assert other is not dialog
        click(qtbot, other.reject_button)
        assert other.pages.currentIndex() == other.REJECT
        qtbot.keyClicks(other.reason, "not during the clinic's busy week")
        click(qtbot, other.reject_send)
        qtbot.waitUntil(lambda: label(other, "status").startswith("Rejected"), timeout=WAIT_MS)
        rejected = listed(agent, second)
        assert (rejected["state"], rejected["why"]) == ("rejected", "not during the clinic's busy week")
        assert not Path(rejected["file"]).exists()
        [record] = [r for r in audit_events(agent) if r["event"] == "update_rejected"]
        assert (record["details"]["update_id"], record["details"]["reason"]) == (
            rejected["id"], "not during the clinic's busy week")
        assert label(other, "status") == f"Rejected by {getpass.getuser()} (not during the clinic's busy week): it " \
                                         "will not be installed. The service centre is told."

        # The list follows: the postponed one waits, the rejected one does not.
        qtbot.waitUntil(lambda: list(updates.shown) == [update_id], timeout=WAIT_MS)
        assert not (tmp_path / "patterns" / "current").exists()  # nothing was installed
        assert [event for event, _ in decisions(agent)] == ["update_postponed", "update_postponed",
                                                            "update_rejected"]
    finally:
        close(console, link)


def test_no_updates_waiting_is_said_in_the_list(qtbot: QtBot, portal: PortalProcess, agent: AgentProcess) -> None:
    console, link = start_console(qtbot, agent)
    try:
        updates = console.open_updates()
        qtbot.addWidget(updates)
        qtbot.waitUntil(lambda: updates.findChild(QLabel, "none") is not None, timeout=WAIT_MS)
        assert label(updates, "none") == "No updates are waiting."
        assert console.launcher.buttons["open_updates"].text() == "Updates…"
        assert "Updates…" in [a.text() for a in console.tray.menu.actions()]
    finally:
        close(console, link)


def test_a_viewer_is_refused_by_the_agent_and_told_so_in_words(
        qtbot: QtBot, start: Any) -> None:
    """The agent's control server checks the role of the caller's peer credentials: a viewer may list the updates,
    not decide on them (the handler is never reached)."""
    answered: list[str] = []

    def handler(request: Request, caller: Caller) -> Any:
        answered.append(request.op)
        return [offer()] if request.op == "update_list" else {}

    server: RunningServer = start(role_map=FixedRoles(frozenset({Role.VIEWER})), handler=handler)
    link = AgentLink(server.path)
    link.start()
    dialog = UpdateDialog(link, offer())
    qtbot.addWidget(dialog)
    try:
        dialog.show()
        click(qtbot, dialog.approve_button)
        qtbot.waitUntil(lambda: dialog.error.isVisible(), timeout=WAIT_MS)
        assert dialog.error.text().startswith("You are not allowed to do this from your account. Ask site IT to add "
                                              "you to the ServiceGate console group.")
        assert "update_approve" in dialog.error.text()  # the agent's own words, as the detail
        assert server.denied == [(getpass.getuser(), "update_approve")]
        assert answered == []
        assert dialog.pages.currentIndex() == dialog.DECIDE
        assert dialog.approve_button.isEnabled()
    finally:
        link.stop()
        link.deleteLater()
        QCoreApplication.processEvents()


def test_the_list_dialog_opens_each_waiting_update(qtbot: QtBot) -> None:
    opened: list[str] = []
    updates = UpdateListDialog(lambda update: opened.append(update["id"]))
    qtbot.addWidget(updates)
    later = datetime.now(UTC) + timedelta(hours=1)
    updates.show_updates([offer(offer_id="u1"), offer(offer_id="u2", state="installed", decided_by="tech1"),
                          software(state="postponed", decided_by="tech1", until=later)])
    assert list(updates.shown) == ["u1", "u20261128100200-d4e5f6"]
    assert updates.shown["u1"].isChecked()
    assert updates.shown["u1"].accessibleDescription() == "Waiting for your decision"
    assert updates.shown["u20261128100200-d4e5f6"].text() == "Software update 0.2.0"
    updates.shown["u20261128100200-d4e5f6"].setChecked(True)
    click(qtbot, updates.show_button)
    assert opened == ["u20261128100200-d4e5f6"]
    updates.show_updates([offer(offer_id="u1")])  # the software update was decided on elsewhere
    assert list(updates.shown) == ["u1"]
    assert updates.shown["u1"].isChecked()
    updates.show_updates([])
    assert updates.shown == {}
    assert not updates.show_button.isVisibleTo(updates)
    assert label(updates, "none") == "No updates are waiting."
    assert updates.close_button.isDefault()
