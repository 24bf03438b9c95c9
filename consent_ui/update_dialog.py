"""The update approval dialog, and the list of the updates that wait for a decision (Updates… in the ServiceGate
window and the tray).

The agent verified an update with TUF and staged it; it waits for the technologist (`offered`). `UpdateDialog` shows
what `consent_ui.models.update_view` says of it (what, from whom, signed by which key, its size, what installing it
needs, the release notes) and sends the decision: Approve (`update_approve`), Postpone until one of a few times
(`update_postpone`) or Reject with an optional reason (`update_reject`). Escape or the window's close button sends
nothing: the update stays offered, and Updates… opens it again. After a decision the dialog shows the agent's answer
and follows the update's `update_changed` events (installing -> installed or failed), as the receipt follows uploads.
The agent checks every decision again (only the console role may decide; a viewer gets permission_denied, shown in
words).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLayout,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from agent.errors import ServiceGateError
from consent_ui import models, style
from consent_ui.dialogs import ErrorLine, Scrolled, add_choice, clear, now, tr, wrapped
from consent_ui.link import AgentLink

NOTES_MAX_PX = 180  # the release notes scroll beyond this height: the decision stays in view


class UpdateDialog(QDialog):
    """One offered update and the technologist's decision. `follow(update)` brings it up to date from the agent's
    `update_changed` event (for this update only)."""

    DECIDE, POSTPONE, REJECT, DONE = range(4)  # the pages under the details

    def __init__(self, link: AgentLink, update: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumWidth(style.DIALOG_WIDTH)  # wrapped text reads in lines, not a narrow column
        self.link = link
        self.update_id = str(update["id"])
        self.offer: dict[str, Any] = update  # as the agent last said (not `update`: QWidget.update repaints)
        self.decided = False  # a decision was answered here: its answer stays in view
        self.setWindowTitle(self.tr("Update from the service centre"))
        layout = QVBoxLayout(self)
        self.title = wrapped(name="title", bold=True)
        layout.addWidget(self.title)
        self.warning = wrapped(name="warning", bold=True)  # examination downtime: red, as an error (consent_ui.style)
        layout.addWidget(self.warning)
        self.rows = QFormLayout()
        layout.addLayout(self.rows)
        layout.addWidget(wrapped(self.tr("Release notes:"), bold=True))
        self.notes_scroller = Scrolled()
        self.notes_scroller.setFrameShape(QFrame.Shape.StyledPanel)  # a document of its own, which may scroll
        self.notes_scroller.body.setContentsMargins(6, 6, 6, 6)
        self.notes_scroller.setAccessibleName(self.tr("Release notes"))
        self.notes = wrapped(name="notes")
        self.notes_scroller.body.addWidget(self.notes)
        layout.addWidget(self.notes_scroller)
        self.status = wrapped(name="status", bold=True)  # the agent's answer
        layout.addWidget(self.status)
        self.error = ErrorLine()
        layout.addWidget(self.error)
        self.pages = QStackedWidget()
        layout.addWidget(self.pages)

        # Decide: three equal choices, none of them the Enter key (an update is never installed by a stray Enter).
        self.reject_button = QPushButton(self.tr("Reject…"))
        self.postpone_button = QPushButton(self.tr("Postpone…"))
        self.approve_button = QPushButton(self.tr("Approve"))
        for button in (self.reject_button, self.postpone_button, self.approve_button):
            button.setAutoDefault(False)
        self._page([], [self.reject_button, self.postpone_button, self.approve_button])
        self.reject_button.clicked.connect(lambda: self._go(self.REJECT))
        self.postpone_button.clicked.connect(lambda: self._go(self.POSTPONE))
        self.approve_button.clicked.connect(self.approve)

        # Postpone: when it is offered again (the times as they are when the page opens).
        self.when = QButtonGroup(self)
        self.when_box = QVBoxLayout()
        self.when_buttons: dict[str, QRadioButton] = {}
        self.postpone_back = QPushButton(self.tr("Back"))
        self.postpone_send = QPushButton(self.tr("Postpone"))
        self._page([wrapped(self.tr("When shall it be offered again?")), self.when_box],
                   [self.postpone_back, self.postpone_send])
        self.postpone_back.clicked.connect(lambda: self._go(self.DECIDE))
        self.postpone_send.clicked.connect(self.postpone)

        # Reject: why, if the technologist wants to say (the service centre is told).
        question = wrapped(self.tr("Why do you reject it? (optional; the service centre is told)"))
        self.reason = QLineEdit()
        self.reason.setMaxLength(models.REJECT_REASON_MAX)
        self.reason.setAccessibleName(self.tr("Reason"))
        self.reason.setPlaceholderText(self.tr("e.g. not during the busy week"))
        self.reject_back = QPushButton(self.tr("Back"))
        self.reject_send = QPushButton(self.tr("Reject update"))
        self._page([question, self.reason], [self.reject_back, self.reject_send])
        self.reject_back.clicked.connect(lambda: self._go(self.DECIDE))
        self.reject_send.clicked.connect(self.reject_update)

        # Done: the agent's answer is in the status line above.
        self.close_button = QPushButton(self.tr("Close"))
        self._page([], [self.close_button])
        self.close_button.clicked.connect(self.accept)

        self.defaults = {self.DECIDE: None, self.POSTPONE: self.postpone_send, self.REJECT: self.reject_send,
                         self.DONE: self.close_button}
        self.show_update(update)

    def _page(self, content: Sequence[QWidget | QLayout], buttons: Sequence[QPushButton]) -> None:
        """A page of the decision area: `content`, then its buttons in a row, right-aligned (the Tab order is the
        order they are added in: the reading order)."""
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        for item in content:
            if isinstance(item, QWidget):
                layout.addWidget(item)
            else:
                layout.addLayout(item)
        row = QHBoxLayout()
        row.addStretch()
        for button in buttons:
            row.addWidget(button)
        layout.addLayout(row)
        self.pages.addWidget(page)

    def _go(self, page: int) -> None:
        if page == self.POSTPONE:
            self._fill_choices()
        self.error.show_text("")
        self.pages.setCurrentIndex(page)
        for index in range(self.pages.count()):  # as tall as the page shown, not as the tallest page
            policy = QSizePolicy.Policy.Preferred if index == page else QSizePolicy.Policy.Ignored
            if (widget := self.pages.widget(index)) is not None:
                widget.setSizePolicy(policy, policy)
        self.pages.updateGeometry()
        default = self.defaults[page]
        for button in self.findChildren(QPushButton):
            button.setDefault(button is default)
        if page == self.REJECT:
            self.reason.setFocus()
        self._fit()

    def _fit(self) -> None:
        """As tall as the wrapped text needs at the dialog's width (adjustSize would measure the text at the narrower
        width of the size hint, and leave the difference as empty space around the buttons)."""
        layout = self.layout()
        width = max(self.width() if self.isVisible() else 0, self.minimumSizeHint().width(), style.DIALOG_WIDTH)
        if layout is not None and layout.hasHeightForWidth():
            self.resize(width, layout.totalHeightForWidth(width))
        else:
            self.adjustSize()

    def _fill_choices(self) -> None:
        """The times to postpone to, as they are now (the page may be opened long after the dialog)."""
        chosen = next((key for key, button in self.when_buttons.items() if button.isChecked()), "")
        for button in self.when.buttons():
            self.when.removeButton(button)
        clear(self.when_box)
        self.when_buttons = {}
        for choice in models.postpone_choices(now()):
            button = QRadioButton(tr(choice.label))
            button.setAccessibleName(tr(choice.label))
            self.when.addButton(button)
            self.when_box.addWidget(button)
            self.when_buttons[choice.key] = button
        (self.when_buttons.get(chosen) or next(iter(self.when_buttons.values()))).setChecked(True)
        # Made after the page's buttons: put them before them in the Tab order, as they are on the screen.
        QWidget.setTabOrder(button, self.postpone_back)
        QWidget.setTabOrder(self.postpone_back, self.postpone_send)

    def show_update(self, update: dict[str, Any]) -> None:
        """The update as the agent says it is now."""
        self.offer = update
        view = models.update_view(update, now())
        self.title.setText(tr(view.title))
        self.warning.setText(tr(view.warning) if view.warning is not None else "")
        self.warning.setVisible(view.warning is not None)
        while self.rows.rowCount():
            self.rows.removeRow(0)
        for row in view.rows:
            value = wrapped(tr(row.value), name=f"row-{row.label.source}")
            self.rows.addRow(tr(row.label) + ":", value)
        self.notes.setText(tr(view.notes))
        self._fit_notes()
        if view.state == "offered":
            self.decided = False  # offered (again): the decision is the technologist's once more
        self.status.setText(tr(view.status))
        self.status.setVisible(view.state != "offered")
        if not view.waiting or self.decided:
            self._go(self.DONE)
        elif self.pages.currentIndex() == self.DONE:
            self._go(self.DECIDE)
        else:
            self._go(self.pages.currentIndex())

    def _fit_notes(self) -> None:
        inner = style.DIALOG_WIDTH - 60  # the dialog's margins and the scroll bar
        body = self.notes_scroller.body
        needed = body.heightForWidth(inner) if body.hasHeightForWidth() else self.notes.sizeHint().height()
        frame = 2 * self.notes_scroller.frameWidth()
        self.notes_scroller.setFixedHeight(min(needed + frame, NOTES_MAX_PX))

    def follow(self, update: dict[str, Any]) -> None:
        """The agent's `update_changed` event, when it is of this update."""
        if str(update.get("id")) == self.update_id:
            self.show_update(update)

    # ---- the decisions ----------------------------------------------------------------------------------------------

    def approve(self) -> None:
        self._send("update_approve", models.approve_request(self.update_id))

    def postpone(self) -> None:
        key = next((key for key, button in self.when_buttons.items() if button.isChecked()), "")
        try:
            request = models.postpone_request(self.update_id, key, now())
        except models.InputError as exc:
            self._fill_choices()
            self.error.show_text(tr(exc.text))
            return
        self._send("update_postpone", request)

    def reject_update(self) -> None:
        try:
            request = models.reject_request(self.update_id, self.reason.text())
        except models.InputError as exc:
            self.error.show_text(tr(exc.text))
            return
        self._send("update_reject", request)

    def _send(self, op: str, request: dict[str, Any]) -> None:
        self.error.show_text("")
        self.pages.setEnabled(False)

        def done(update: dict[str, Any]) -> None:
            self.pages.setEnabled(True)
            self.decided = True
            self.show_update(dict(models.latest_update(self.offer, update)))

        def failed(error: ServiceGateError) -> None:
            self.pages.setEnabled(True)
            self.error.show_error(error)

        self.link.call(op, request, done=done, failed=failed)


class UpdateListDialog(QDialog):
    """The updates that wait for a decision, one to choose and Show… (its dialog); or that none waits.
    `show_updates` fills it from `update_list` (and again when an update changed while it is open)."""

    def __init__(self, open_update: Callable[[dict[str, Any]], object], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumWidth(style.DIALOG_WIDTH)
        self.open_update = open_update
        self.setWindowTitle(self.tr("Updates"))
        layout = QVBoxLayout(self)
        self.list = QVBoxLayout()
        layout.addLayout(self.list)
        self.error = ErrorLine()
        layout.addWidget(self.error)
        self.close_button = QPushButton(self.tr("Close"))  # made first: the Tab order is the reading order
        self.show_button = QPushButton(self.tr("Show…"))
        self.close_button.clicked.connect(self.accept)
        self.show_button.clicked.connect(self.show_chosen)
        row = QHBoxLayout()
        row.addStretch()
        row.addWidget(self.close_button)
        row.addWidget(self.show_button)
        layout.addLayout(row)
        self.choices = QButtonGroup(self)
        self.updates: dict[str, dict[str, Any]] = {}  # update ID -> the update, as the agent listed it
        self.shown: dict[str, QRadioButton] = {}  # update ID -> its choice
        self.show_button.hide()  # until the agent has listed what waits
        self.close_button.setDefault(True)

    def show_updates(self, updates: Sequence[dict[str, Any]]) -> None:
        chosen = self.chosen()
        for button in self.choices.buttons():
            self.choices.removeButton(button)
        clear(self.list)
        self.updates, self.shown = {}, {}
        waiting = models.waiting_updates(updates)
        if waiting:
            self.list.addWidget(wrapped(self.tr("These updates wait for your decision:")))
        else:
            self.list.addWidget(wrapped(tr(models.NO_UPDATES), name="none"))
        for update in waiting:
            view = models.update_view(update, now())
            self.updates[view.update_id] = dict(update)
            self.shown[view.update_id] = add_choice(self.list, self.choices, tr(view.title), tr(view.status),
                                                    name="status")
        if self.shown:
            (self.shown.get(chosen) or next(iter(self.shown.values()))).setChecked(True)
            # Made after the buttons: put them before them in the Tab order, as they are on the screen.
            QWidget.setTabOrder(list(self.shown.values())[-1], self.close_button)
            QWidget.setTabOrder(self.close_button, self.show_button)
        self.show_button.setVisible(bool(self.shown))
        (self.show_button if self.shown else self.close_button).setDefault(True)  # Enter shows the chosen one
        self.adjustSize()

    def chosen(self) -> str:
        return next((update_id for update_id, button in self.shown.items() if button.isChecked()), "")

    def show_chosen(self) -> None:
        if (update := self.updates.get(self.chosen())) is not None:
            self.open_update(update)
