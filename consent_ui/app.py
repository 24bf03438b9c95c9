"""`servicegate ui` (`python -m consent_ui`): the consent UI in the technologist's desktop session.

`Console` keeps what the agent last said (status, tasks, uploads), follows its events, and drives the windows: a
small ServiceGate window (the access level, Change access, Enter session ID, and "remote service unavailable"
while the agent cannot be reached), the access and session dialogs, a request the engineer made through the
service centre, the question of a task that waits for the technologist (it opens by itself; a shared screen is
admitted to the X server only from Allow to the task's end: consent_ui.xaccess), the banner (with the shared screen
and its Allow control / View only), the receipt when a session ends, and the approval dialog of an update the
service centre offered (it opens by itself). It holds no
authority and keeps no state of its own: everything comes from the agent, and every decision goes back to it.
The banner and its End session button keep working while a dialog is open (dialogs are not modal to the
application). One UI per user session (a lock file in the user's runtime folder).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QLockFile, QObject, QStandardPaths, QTimer
from PySide6.QtWidgets import QApplication, QHBoxLayout, QPushButton, QSystemTrayIcon, QVBoxLayout, QWidget

from agent.client import Client
from agent.errors import AgentUnreachableError, ServiceGateError
from agent.protocol import SessionState
from consent_ui import i18n, models, style, xaccess
from consent_ui.audit_viewer import AuditViewer
from consent_ui.banner import Banners
from consent_ui.dialogs import (
    AccessDialog,
    ReceiptDialog,
    RequestNotice,
    RequestServiceDialog,
    SessionDialog,
    tr,
    wrapped,
)
from consent_ui.hotkey import GlobalHotkey, HotkeyError
from consent_ui.link import AgentLink
from consent_ui.task_dialog import TaskDialog
from consent_ui.tray import Tray
from consent_ui.update_dialog import UpdateDialog, UpdateListDialog

log = logging.getLogger("servicegate.ui")

DEFAULT_SOCKET = Path("/run/servicegate/control.sock")
Action = tuple[str, str, Callable[[], object]]  # name, label, what it does: the window's buttons, the tray's menu
TICK_MS = 1000  # the banner's clock: elapsed and remaining time
STARTUP_TIMEOUT_S = 3  # the language and theme, asked of the agent before the first window


class Launcher(QWidget):
    """The small ServiceGate window: the access level and the Console's actions as buttons (the tray menu offers
    the same ones; End session is on the banner)."""

    def __init__(self, actions: list[Action]) -> None:
        super().__init__()
        self.setWindowTitle(self.tr("ServiceGate remote service"))
        self.access = wrapped(name="access")
        self.state = wrapped(name="state")
        self.buttons: dict[str, QPushButton] = {}
        layout = QVBoxLayout(self)
        layout.addWidget(self.access)
        layout.addWidget(self.state)
        shown = [action for action in actions if action[0] != "end_session"]
        for pair in (shown[i:i + 2] for i in range(0, len(shown), 2)):
            row = QHBoxLayout()
            for name, label, do in pair:
                button = self.buttons[name] = QPushButton(label)
                button.clicked.connect(do)
                row.addWidget(button)
            layout.addLayout(row)


class Console(QObject):
    def __init__(self, link: AgentLink, screenshots: Path | None = None,
                 x_grant: xaccess.AgentAccess | None = None) -> None:
        super().__init__()
        self.link = link
        self.x_grant = x_grant  # the X server's admission of the agent's user, per screen share (X11 only)
        self.screenshots = screenshots  # where the banner and each receipt are saved as PNG (the demo's record)
        self.status: dict[str, Any] = {}
        self.tasks: list[dict[str, Any]] = []
        self.uploads: list[dict[str, Any]] = []
        self.shares: dict[str, Any] = {}  # the screen shares by task ID (`screen_list`, `screen_changed`)
        self.screen_problem = ""  # a refused Allow control / View only, said on the banner until the next change
        self.up = False
        actions: list[Action] = [
            ("open_access", self.tr("Change access level…"), self.open_access),
            ("open_session_id", self.tr("Enter session ID…"), self.open_session_id),
            ("open_request_service", self.tr("Request service…"), self.open_request_service),
            ("open_audit_log", self.tr("Show audit log…"), self.open_audit_log),
            ("open_updates", self.tr("Updates…"), self.open_updates),
            ("end_session", tr(models.END_SESSION), self.end_session)]
        self.launcher = Launcher(actions)
        self.tray = Tray(actions, self.show_window)
        self.banners = Banners(self.end_session, self.screen_control)
        self.dialogs: list[Any] = []  # open dialogs (kept referenced while shown)
        self.receipts: dict[str, ReceiptDialog] = {}
        self.ended: dict[str, dict[str, Any]] = {}  # the sessions the receipts are of
        self.asked: set[str] = set()  # sessions the engineer requested that were shown already
        self.update_dialogs: dict[str, UpdateDialog] = {}  # one per update, kept to follow it
        self.offered: set[str] = set()  # updates whose dialog opened since they were last offered
        self.update_list: UpdateListDialog | None = None
        self.catalog: dict[str, Any] | None = None  # `task_catalog` by kind, asked when the agent is reached
        self.task_dialogs: dict[str, TaskDialog] = {}  # the question of each waiting task, by task ID
        self.hotkey: GlobalHotkey | None = None  # the agent's `[console] hotkey`, grabbed once the agent said it
        self.hotkey_text = ""
        self.hotkey_problem: models.Text | None = None
        link.agent_event.connect(self._event)
        link.available.connect(self._available)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._show_banner)
        self.timer.start(TICK_MS)
        self._available(False, "")

    def close(self) -> None:
        """Everything this console made, gone: windows, banners, the tray icon, the hotkey (the UI's end; tests)."""
        self.timer.stop()
        self.banners.close()
        self.tray.hide()
        self.tray.deleteLater()
        if self.hotkey is not None:
            self.hotkey.release()
        lists = [self.update_list] if self.update_list is not None else []
        if self.x_grant is not None:
            self.x_grant.revoke()
        for window in [*self.dialogs, *self.receipts.values(), *self.update_dialogs.values(), *lists,
                       *self.task_dialogs.values(), self.launcher]:
            window.close()
            window.deleteLater()
        self.deleteLater()

    # ---- what the agent says ------------------------------------------------------------------------------------

    def refresh(self) -> None:
        self.link.call("status", done=self._status, failed=self._failed)
        self.link.call("task_list", done=self._tasks, failed=self._failed)
        self.link.call("upload_list", done=self._uploads, failed=self._failed)
        self.link.call("screen_list", done=self._screens, failed=self._failed)

    def _status(self, status: dict[str, Any]) -> None:
        self.status = status
        self._follow_hotkey(str(status["console"]["hotkey"]))
        self.launcher.state.setText(tr(self.hotkey_problem) if self.hotkey_problem else "")
        self.launcher.access.setText(tr(models.current_access(status["access"], datetime.now(UTC))))
        self.tray.show_state(models.tray_state(status, datetime.now(UTC)))
        self._show_banner()
        for session in status.get("sessions") or ():  # asked for while this UI was not running or not connected
            self._session_changed(session)

    def _follow_hotkey(self, text: str) -> None:
        """Grab the key the agent's configuration names (again when it changed while the agent restarted)."""
        if text == self.hotkey_text:
            return
        if self.hotkey is not None:
            self.hotkey.release()
            self.hotkey.deleteLater()
            self.hotkey = None
        self.hotkey_text, self.hotkey_problem = text, None
        try:
            self.hotkey = GlobalHotkey(text, self)
        except HotkeyError as exc:
            log.warning("%s: End session stays on the banner", exc)
            self.hotkey_problem = models.hotkey_unusable(str(exc))
            return
        self.hotkey.pressed.connect(self.end_session)

    def _tasks(self, tasks: list[dict[str, Any]]) -> None:
        self.tasks = tasks
        self._show_banner()
        for task in tasks:
            self._task_changed(task)
        if self.x_grant is not None:  # a share that ended while no event said so (long gone from the list)
            listed = {str(task["id"]) for task in tasks}
            for task_id in [t for t in self.x_grant.tasks if t not in listed]:
                self.x_grant.release(task_id)

    def _catalog(self, catalog: list[dict[str, Any]]) -> None:
        self.catalog = models.catalog_by_kind(catalog)
        for task in self.tasks:  # waiting before the catalog said which tasks share the screen
            self._task_changed(task)

    def _task_changed(self, task: dict[str, Any]) -> None:
        """A task as the agent says it now (`task_changed`, `task_list`): a waiting one opens its question (once, and
        only when the catalog is known: it says whether the screen is shared); one no longer waiting closes it; one
        over takes back the X grant of its share."""
        task_id, state = str(task["id"]), task.get("state")
        dialog = self.task_dialogs.get(task_id)
        if dialog is not None:
            dialog.follow(task)
        if state == models.TASK_WAITING and dialog is None and self.catalog is not None:
            self.open_task(task)
        if state not in models.TASK_UNDER_WAY and self.x_grant is not None:
            self.x_grant.release(task_id)

    def open_task(self, task: dict[str, Any]) -> TaskDialog:
        """The question of a waiting task (one per task: the one already made, brought to the front)."""
        task_id = str(task["id"])
        dialog = self.task_dialogs.get(task_id)
        if dialog is None:
            question = models.task_question(task, self.status.get("sessions") or (), self.catalog or {})
            grant = self.x_grant
            dialog = self.task_dialogs[task_id] = TaskDialog(
                self.link, question, before_allow=grant.grant if grant is not None else lambda task_id: None,
                refused=grant.release if grant is not None else lambda task_id: None)
        self._to_front(dialog)
        return dialog

    def _uploads(self, uploads: list[dict[str, Any]]) -> None:
        self.uploads = uploads
        self._show_banner()
        for session_id, dialog in self.receipts.items():  # a file still being sent at the end has arrived, say
            if dialog.isVisible():
                dialog.show_receipt(models.receipt(self.ended[session_id], self.tasks, uploads))

    def _screens(self, shares: list[dict[str, Any]]) -> None:
        self.shares = {}
        for share in shares:
            self.shares = models.follow_share(self.shares, share)
        self._show_banner()

    def _screen_changed(self, changes: list[dict[str, Any]]) -> None:
        """A `screen_changed` event, or the shares `screen_control` changed: the banner follows (and a refusal said
        on it is no longer news)."""
        for change in changes:
            self.shares = models.follow_share(self.shares, change)
            if change.get("state") == "ended" and self.x_grant is not None:
                self.x_grant.release(str(change["task_id"]))
        if self.screen_problem and self.banners.problem == self.screen_problem:
            self.banners.update(self.banners.current, "")
        self.screen_problem = ""
        self._show_banner()

    def _failed(self, error: ServiceGateError) -> None:
        if isinstance(error, AgentUnreachableError):
            return  # the watcher says so (and says when the agent is back)
        self.launcher.state.setText(tr(models.error_text(error).text))

    def _available(self, up: bool, why: str) -> None:
        self.up = up
        for name, button in self.launcher.buttons.items():
            button.setEnabled(up or name == "open_audit_log")  # the audit log says itself why it cannot load
        if up:
            self.launcher.state.setText("")
            self.banners.update(self.banners.current, "")
            self.link.call("task_catalog", done=self._catalog, failed=self._failed)  # before the tasks
            self.refresh()
            self.list_updates()  # offered while this UI was not running or not connected
        else:
            if self.x_grant is not None:  # the agent's tasks end with it: no share needs the display
                self.x_grant.revoke()
            self.launcher.state.setText(self.tr("Remote service unavailable: the ServiceGate agent cannot be "
                                                "reached. Remote access is not possible meanwhile."))
            self.tray.show_state(models.tray_state(None, datetime.now(UTC)))
            self.banners.update(self.banners.current, tr(models.AGENT_DOWN))

    def _event(self, name: str, data: dict[str, Any]) -> None:
        if name in ("access_changed", "session_changed", "task_changed", "examination_block", "upgrade_announced"):
            self.refresh()
        if name == "upload_changed":
            self.link.call("upload_list", done=self._uploads, failed=self._failed)
        if name == "service_request_changed":  # a kept request was sent: its case number
            for dialog in self.dialogs:
                if isinstance(dialog, RequestServiceDialog):
                    dialog.follow(data)
        if name == "task_changed":
            self._task_changed(data)
        if name == "session_changed":
            self._session_changed(data)
        if name == "update_changed":
            self._update_changed(data)
        if name == "screen_changed":
            self._screen_changed([data])

    def _session_changed(self, session: dict[str, Any]) -> None:
        state = session.get("state")
        if state == SessionState.ENDED.value and session.get("activated_at") and session["id"] not in self.ended:
            self._receipt(session)
        elif not session.get("claimed") and session["id"] not in self.asked and state in (
                SessionState.AWAITING_CONSENT.value, SessionState.AUTHENTICATING.value):
            self.asked.add(session["id"])
            self._incoming(session)

    def list_updates(self) -> None:
        self.link.call("update_list", done=self._updates, failed=self._failed)

    def _updates(self, updates: list[dict[str, Any]]) -> None:
        """The agent's updates: a newly offered one opens its dialog; an open list shows them."""
        for update in updates:
            self._ask(update)
        if self.update_list is not None and self.update_list.isVisible():
            self.update_list.show_updates(updates)

    def _ask(self, update: dict[str, Any]) -> None:
        """An offered update's dialog opens by itself once each time it is offered (again after a postponement);
        closed without a decision, it stays offered and Updates… opens it again."""
        update_id = str(update["id"])
        if update.get("state") != "offered":
            self.offered.discard(update_id)
        elif update_id not in self.offered:
            self.offered.add(update_id)
            self.open_update(update)

    def _update_changed(self, update: dict[str, Any]) -> None:
        dialog = self.update_dialogs.get(str(update["id"]))
        if dialog is not None:
            dialog.follow(update)
        if update.get("state") != "offered":
            self.offered.discard(str(update["id"]))
        # A newly offered update is asked about as the list says it is: the site's policy may have approved it at once
        # (the list comes after both of its events).
        if (update.get("state") == "offered" and str(update["id"]) not in self.offered) or (
                self.update_list is not None and self.update_list.isVisible()):
            self.list_updates()

    def _show_banner(self) -> None:
        if not self.status:
            return
        banner = models.banner(self.status, self.tasks, self.uploads, datetime.now(UTC), self.shares.values())
        shown = set(self.banners.bars)
        self.banners.update(banner)
        if banner is not None and not shown:
            for number, bar in enumerate(self.banners.bars.values()):
                self._screenshot(bar, f"banner-{banner.session_id}-{number}.png")

    # ---- what the technologist does -------------------------------------------------------------------------------

    def open_access(self) -> AccessDialog:
        dialog = AccessDialog(self.link, self.status.get("access") or {"level": "no-access", "set_by": "",
                                                                       "set_at": datetime.now(UTC).isoformat()})
        self._show(dialog)
        return dialog

    def open_request_service(self) -> RequestServiceDialog:
        dialog = RequestServiceDialog(self.link)
        self._show(dialog)
        return dialog

    def open_audit_log(self) -> AuditViewer:
        viewer = AuditViewer(self.link)
        self._show(viewer)
        viewer.load()
        return viewer

    def open_update(self, update: dict[str, Any]) -> UpdateDialog:
        """The update's dialog: the one already made for it (brought up to date and to the front), never a second."""
        dialog = self.update_dialogs.get(str(update["id"]))
        if dialog is None:
            dialog = self.update_dialogs[str(update["id"])] = UpdateDialog(self.link, update)
        else:
            dialog.show_update(dict(models.latest_update(dialog.offer, update)))
        self._to_front(dialog)
        return dialog

    def open_updates(self) -> UpdateListDialog:
        """Updates…: the updates that wait for a decision (or that none waits), each opening its dialog."""
        if self.update_list is None:
            self.update_list = UpdateListDialog(self.open_update)
        listed = self.update_list

        def failed(error: ServiceGateError) -> None:
            listed.error.show_error(error)

        self.link.call("update_list", done=listed.show_updates, failed=failed)
        self._to_front(listed)
        return listed

    def show_window(self) -> None:
        """The small ServiceGate window, in front (a left click on the tray icon)."""
        self.launcher.show()
        self.launcher.raise_()
        self.launcher.activateWindow()

    def open_session_id(self) -> SessionDialog:
        dialog = SessionDialog(self.link, self.status.get("access") or {"level": "no-access"},
                               self.status.get("time_limit_min"))
        self._show(dialog)
        return dialog

    def _incoming(self, session: dict[str, Any]) -> None:
        """A session the engineer asked for: it waits for the technologist (above the grant, or FULL), or it only
        informs (within the grant; the engineer is signing in)."""
        notice = models.incoming_request(session, self.status.get("time_limit_min"))
        if notice.needs_action:
            dialog = SessionDialog(self.link, self.status.get("access") or {"level": "no-access"},
                                   self.status.get("time_limit_min"))
            dialog.setWindowTitle(tr(notice.title))
            dialog.show_session(session)
            self._show(dialog)
            return
        info = RequestNotice(notice, self.end_session)
        self._show(info)

    def end_session(self) -> None:
        """The banner's End session: the kill switch, on a connection of its own (it never waits behind a call)."""
        def failed(error: ServiceGateError) -> None:  # said on the banner, where End session was pressed
            self.banners.update(self.banners.current, tr(models.error_text(error).text))

        self.link.call("kill", models.kill_request(tr(models.ENDED_AT_CONSOLE)), urgent=True,
                       done=lambda receipt: self.refresh(), failed=failed)

    def screen_control(self, request: dict[str, Any]) -> None:
        """The banner's Allow control / View only (`models.screen_control_request`); the agent checks it again and
        answers the shares it changed. A refusal is said on the banner, where the button was pressed."""
        def failed(error: ServiceGateError) -> None:
            self.screen_problem = tr(models.screen_control_failed(error))
            self.banners.update(self.banners.current, self.screen_problem)

        self.link.call("screen_control", request, done=self._screen_changed, failed=failed)

    def _receipt(self, session: dict[str, Any]) -> None:
        """The receipt, from the tasks and uploads as they are now (and kept up to date while it is open)."""
        self.ended[str(session["id"])] = session

        def with_tasks(tasks: list[dict[str, Any]]) -> None:
            self.tasks = tasks
            self.link.call("upload_list", done=show, failed=self._failed)

        def show(uploads: list[dict[str, Any]]) -> None:
            self.uploads = uploads
            dialog = ReceiptDialog(models.receipt(session, self.tasks, uploads))
            self.receipts[str(session["id"])] = dialog
            self._show(dialog)
            self._screenshot(dialog, f"receipt-{session['id']}.png")

        self.link.call("task_list", done=with_tasks, failed=self._failed)

    def _screenshot(self, window: QWidget, name: str) -> None:
        """Saved once the window is laid out and painted (offscreen as on a display)."""
        if self.screenshots is not None:
            folder = self.screenshots
            QTimer.singleShot(300, lambda: window.grab().save(str(folder / name)))

    def _to_front(self, dialog: QWidget) -> None:
        """A dialog that may be open already: brought to the front, else shown."""
        if dialog.isVisible():
            dialog.raise_()
            dialog.activateWindow()
        else:
            self._show(dialog)

    def _show(self, dialog: QWidget) -> None:
        self.dialogs = [d for d in self.dialogs if d.isVisible()] + [dialog]
        dialog.show()
        dialog.raise_()
        self.banners.raise_all()


def single_instance(name: str = "servicegate-ui") -> QLockFile | None:
    """The lock of the one UI per user session, or None when another UI holds it."""
    folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.RuntimeLocation) or \
        QStandardPaths.writableLocation(QStandardPaths.StandardLocation.TempLocation)
    lock = QLockFile(os.path.join(folder, f"{name}-{os.getuid()}.lock"))
    lock.setStaleLockTime(0)
    return lock if lock.tryLock(100) else None


def console_settings(socket: Path) -> dict[str, Any]:
    """The agent's `[console]` settings, asked once before the first window is made (the event loop is not running
    yet: nothing waits on the socket); empty (the defaults) when the agent cannot be reached now."""
    try:
        with Client(socket, timeout_s=STARTUP_TIMEOUT_S) as client:
            return dict(client.call("status")["console"])
    except ServiceGateError as exc:
        log.info("the agent's [console] settings are not known now (%s): the defaults", exc)
        return {}


def _revoke_on_signals(x_grant: xaccess.AgentAccess) -> None:
    """SIGTERM (the desktop session's logout, a service manager) and SIGHUP still end the UI at once, as they did,
    but take the X grant back first. Python runs the handler when the GUI thread next runs Python code: the banner's
    clock does that every TICK_MS."""
    def handler(number: int, frame: object) -> None:
        x_grant.revoke()
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)

    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="servicegate ui", description="The ServiceGate consent UI.")
    parser.add_argument("--socket", type=Path, default=DEFAULT_SOCKET, help="the agent's control socket")
    parser.add_argument("--screenshots", type=Path, help="save the banner and each receipt as PNG here (make demo)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="servicegate ui: %(message)s")
    application = QApplication(["servicegate-ui"])  # its X window class, as window managers and trays see it
    settings = console_settings(args.socket)
    i18n.install(application, i18n.choose(str(settings.get("language", "system"))))
    style.apply(application, style.HIGH_CONTRAST if settings.get("high_contrast") else style.DEFAULT)
    application.setQuitOnLastWindowClosed(False)  # the banner and the agent's events outlive the small window
    lock = single_instance()
    if lock is None:
        print("servicegate ui: the ServiceGate UI is already running in this session", file=sys.stderr)
        return 0
    link = AgentLink(args.socket)
    # x11vnc runs as the agent's user: this X server lets that user in while a share the technologist allowed here
    # runs, from Allow to the task's end (consent_ui.xaccess; the Console grants and takes back).
    x_grant = xaccess.AgentAccess(args.socket) if application.platformName() == "xcb" else None
    if args.screenshots is not None:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    console = Console(link, args.screenshots, x_grant)
    if QSystemTrayIcon.isSystemTrayAvailable():
        console.tray.show()  # the small window opens from the tray
    else:
        console.launcher.show()  # no tray on this desktop: the small window stays on screen
    link.start()
    if x_grant is not None:
        _revoke_on_signals(x_grant)
    try:
        return application.exec()
    finally:
        link.stop()
        console.close()
        if x_grant is not None:
            x_grant.revoke()
        lock.unlock()
