"""The technologist's dialogs: access level, session ID with the privacy notice, and the end-of-session receipt.

Each dialog shows what `consent_ui.models` says and sends what the technologist decides through the
`AgentLink` (never on the GUI thread). A dialog that changes something closes only when the agent has
confirmed the change; until then its buttons wait, and an error is shown in words inside it.
Every text is translated: the models' texts with `tr` (QCoreApplication.translate), the dialogs' own
with `self.tr`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QCoreApplication, QDateTime, Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
    QDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from agent.errors import ServiceGateError
from agent.protocol import SERVICE_TEXT_MAX, AccessLevel, Urgency
from consent_ui import models, style
from consent_ui.link import AgentLink
from consent_ui.models import InputError, Text


def tr(text: Text) -> str:
    return text.render(QCoreApplication.translate)


def now() -> datetime:
    return datetime.now(UTC)


def add_rows(form: QFormLayout, details: models.SessionDetails) -> None:
    """A session's details (who, why, kind, level, how long) as label and value rows."""
    for row in details.rows:
        value = wrapped(tr(row.value))
        value.setObjectName(f"row-{row.label.source}")
        form.addRow(tr(row.label) + ":", value)


def add_choice(layout: QVBoxLayout, group: QButtonGroup, title: str, explanation: str, *, name: str = "",
               bold: bool = False) -> QRadioButton:
    """A radio button with what it means in a line right under it; a screen reader says that line with it."""
    button = QRadioButton(title)
    button.setAccessibleName(title)
    button.setAccessibleDescription(explanation)
    group.addButton(button)
    line = wrapped(explanation, name=name, bold=bold)
    line.setIndent(24)  # under the button's text
    pair = QVBoxLayout()
    pair.setSpacing(0)
    pair.setContentsMargins(0, 0, 0, 6)  # apart from the next choice
    pair.addWidget(button)
    pair.addWidget(line)
    layout.addLayout(pair)
    return button


class Scrolled(QScrollArea):
    """Content that scrolls when the screen is too small for it (a long receipt, the session's details on a small
    console screen), so the buttons under it stay in reach. `body` is its layout; `fit()` after filling it."""

    ROOM = 300  # px: a window's title, the text and buttons under the scrolling part, the panel

    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.content = QWidget()
        self.body = QVBoxLayout(self.content)
        self.body.setContentsMargins(0, 0, 0, 0)
        self.setWidget(self.content)

    def fit(self) -> None:
        """As tall as the content needs at the dialog's width, as far as the screen leaves room for what is around
        it (ROOM); beyond that it scrolls."""
        inner = style.DIALOG_WIDTH - 60  # the dialog's margins and the scroll bar
        needed = self.body.heightForWidth(inner) if self.body.hasHeightForWidth() else self.content.sizeHint().height()
        self.setMinimumHeight(min(needed, max(200, self.screen().availableGeometry().height() - self.ROOM)))


def clear(layout: QLayout) -> None:
    """Every widget and layout in `layout`, gone."""
    while (item := layout.takeAt(0)) is not None:
        if (widget := item.widget()) is not None:
            widget.setParent(None)
            widget.deleteLater()
        elif (inner := item.layout()) is not None:
            clear(inner)


def wrapped(text: str = "", *, name: str = "", bold: bool = False) -> QLabel:
    """A label of plain text, wrapped. Never rich text: names and reasons come from the engineer, and markup in them
    must show as written, not format (or fake) what the technologist reads."""
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    if bold:
        font = label.font()
        font.setBold(True)
        label.setFont(font)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if name:
        label.setObjectName(name)
    return label


class ErrorLine(QLabel):
    """An error in words, in the dialog (never a pop-up over it): empty while there is none."""

    def __init__(self) -> None:
        super().__init__()
        self.setWordWrap(True)
        self.setObjectName("error")  # its colour: consent_ui.style
        self.hide()

    def show_text(self, text: str) -> None:
        self.setText(text)
        self.setVisible(bool(text))

    def show_error(self, error: ServiceGateError, *, claim: bool = False) -> None:
        words = models.error_text(error, claim=claim)
        self.show_text(tr(words.text) + (f"\n({words.detail})" if words.detail else ""))


class AccessDialog(QDialog):
    """The four access levels, each with its consequence; LIMITED with a duration or an end time."""

    def __init__(self, link: AgentLink, grant: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumWidth(style.DIALOG_WIDTH)  # wrapped text reads in lines, not a narrow column
        self.link = link
        self.setWindowTitle(self.tr("Remote access"))
        self.current = wrapped(tr(models.current_access(grant, now())), name="current")
        self.levels = QButtonGroup(self)
        layout = QVBoxLayout(self)
        layout.addWidget(self.current)
        self.buttons: dict[AccessLevel, QRadioButton] = {}
        for option in models.ACCESS_OPTIONS:
            self.buttons[option.level] = add_choice(layout, self.levels, tr(option.title), tr(option.consequence))
        self.presets = QComboBox()
        for preset in models.LIMIT_PRESETS:
            self.presets.addItem(tr(preset.label))
        self.presets.addItem(self.tr("Until a time I choose"))
        self.presets.setAccessibleName(self.tr("How long"))
        self.custom_end = QDateTimeEdit()
        self.custom_end.setCalendarPopup(True)
        self.custom_end.setDisplayFormat("yyyy-MM-dd HH:mm")
        earliest, latest = models.custom_end_range(now())
        self.custom_end.setDateTimeRange(QDateTime(earliest.astimezone()), QDateTime(latest.astimezone()))
        self.custom_end.setDateTime(QDateTime((now() + models.LIMIT_PRESETS[1].length).astimezone()))
        self.custom_end.setAccessibleName(self.tr("End time"))
        limit = QHBoxLayout()
        limit.addWidget(QLabel(self.tr("How long:")))
        limit.addWidget(self.presets)
        limit.addWidget(self.custom_end)
        layout.addLayout(limit)
        self.error = ErrorLine()
        layout.addWidget(self.error)
        cancel = QPushButton(self.tr("Cancel"), self)  # made first: the Tab order is the reading order
        self.apply_button = QPushButton(self.tr("Apply"), self)
        self.apply_button.setDefault(True)  # Enter applies (never Cancel)
        row = QHBoxLayout()
        row.addStretch()
        row.addWidget(cancel)
        row.addWidget(self.apply_button)
        layout.addLayout(row)
        self.buttons[AccessLevel(grant["level"])].setChecked(True)
        self.levels.buttonToggled.connect(self._update)
        self.presets.currentIndexChanged.connect(self._update)
        self.apply_button.clicked.connect(self.apply)
        cancel.clicked.connect(self.reject)
        self._update()

    def chosen(self) -> AccessLevel:
        return next(level for level, button in self.buttons.items() if button.isChecked())

    def _update(self) -> None:
        limited = self.chosen() is AccessLevel.LIMITED
        self.presets.setEnabled(limited)
        self.custom_end.setEnabled(limited and self.presets.currentIndex() == len(models.LIMIT_PRESETS))

    def request(self) -> dict[str, str]:
        level = self.chosen()
        if level is not AccessLevel.LIMITED:
            return models.access_request(level, now())
        index = self.presets.currentIndex()
        if index < len(models.LIMIT_PRESETS):
            return models.access_request(level, now(), preset=models.LIMIT_PRESETS[index])
        end = self.custom_end.dateTime().toSecsSinceEpoch()
        return models.access_request(level, now(), until=datetime.fromtimestamp(end, UTC))

    def apply(self) -> None:
        try:
            request = self.request()
        except InputError as exc:
            self.error.show_text(tr(exc.text))
            return
        self.error.show_text("")
        self.apply_button.setEnabled(False)

        def done(grant: dict[str, Any]) -> None:
            self.apply_button.setEnabled(True)
            if models.access_applied(request, grant):
                self.accept()
            else:
                self.error.show_text(self.tr("The agent did not apply this level. Please try again."))

        def failed(error: ServiceGateError) -> None:
            self.apply_button.setEnabled(True)
            self.error.show_error(error)

        self.link.call("access_set", request, done=done, failed=failed)


class SessionDialog(QDialog):
    """Type in the session ID the engineer reads out; see who, why, which kind, at which level; confirm the privacy
    notice and accept, or decline (as easy as accepting). Also shows a session the engineer asked for through the
    service centre (`show_session`), which waits for the technologist the same way."""

    def __init__(self, link: AgentLink, grant: dict[str, Any], time_limit_min: int | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumWidth(style.DIALOG_WIDTH)  # wrapped text reads in lines, not a narrow column
        self.link = link
        self.grant = grant
        self.time_limit_min = time_limit_min  # the agent's [sessions] time_limit_min: "How long"
        self.session: dict[str, Any] | None = None
        self.setWindowTitle(self.tr("Remote service session"))
        self.pages = QStackedWidget()
        layout = QVBoxLayout(self)
        layout.addWidget(self.pages)
        self.error = ErrorLine()
        layout.addWidget(self.error)
        # page 1: the ID
        entry = QWidget()
        entry_layout = QVBoxLayout(entry)
        entry_layout.addWidget(wrapped(self.tr("Type in the session ID the engineer gives you on the phone.")))
        self.id_field = QLineEdit()
        self.id_field.setPlaceholderText("1234 5678")
        self.id_field.setAccessibleName(self.tr("Session ID"))
        self.id_field.setMaxLength(24)
        font = self.id_field.font()
        font.setPointSize(font.pointSize() + 6)
        self.id_field.setFont(font)
        self.id_field.textEdited.connect(self._regroup)
        entry_layout.addWidget(self.id_field)
        self.claim_button = QPushButton(self.tr("Continue"), self)
        self.claim_button.setDefault(True)  # Enter in the ID field
        self.claim_button.clicked.connect(self.claim)
        entry_layout.addWidget(self.claim_button)
        self.pages.addWidget(entry)
        # page 2: who and why, the level, the privacy notice
        details = QWidget()
        page = QVBoxLayout(details)
        page.setContentsMargins(0, 0, 0, 0)
        self.details_scroller = Scrolled()
        page.addWidget(self.details_scroller)
        self.details_layout = self.details_scroller.body
        self.rows = QFormLayout()
        self.details_layout.addLayout(self.rows)
        self.origin = wrapped()
        self.details_layout.addWidget(self.origin)
        self.levels = QButtonGroup(self)
        self.level_box = QVBoxLayout()
        self.details_layout.addLayout(self.level_box)
        # The privacy notice, its checkbox and the buttons stay in view under the details, however small the screen.
        page.addWidget(wrapped(tr(models.PRIVACY_NOTICE), name="privacy"))
        self.disclaimer = QCheckBox(tr(models.PRIVACY_CHECKBOX))
        self.disclaimer.setAccessibleName(tr(models.PRIVACY_CHECKBOX))
        page.addWidget(self.disclaimer)
        buttons = QHBoxLayout()
        self.decline_button = QPushButton(self.tr("Decline"))
        self.accept_button = QPushButton(self.tr("Accept"))
        for button in (self.decline_button, self.accept_button):
            button.setAutoDefault(False)  # equal: neither is the Enter key
            buttons.addWidget(button)
        self.decline_button.clicked.connect(self.decline)
        self.accept_button.clicked.connect(self.confirm)
        page.addLayout(buttons)  # under the scrolling details: always in reach
        self.pages.addWidget(details)

    def _regroup(self, text: str) -> None:
        cursor = models.cursor_as_typed(text, self.id_field.cursorPosition())
        self.id_field.setText(models.format_as_typed(text))
        self.id_field.setCursorPosition(cursor)

    def claim(self) -> None:
        try:
            request = models.claim_request(self.id_field.text())
        except InputError as exc:
            self.error.show_text(tr(exc.text))
            return
        self.error.show_text("")
        self.claim_button.setEnabled(False)

        def failed(error: ServiceGateError) -> None:
            self.claim_button.setEnabled(True)
            self.error.show_error(error, claim=True)

        self.link.call("session_claim", request, done=self._claimed, failed=failed)

    def _claimed(self, session: dict[str, Any]) -> None:
        self.claim_button.setEnabled(True)
        self.show_session(session)

    def show_session(self, session: dict[str, Any]) -> None:
        """Page 2 for `session`: its details, the levels it may be granted, the privacy notice."""
        self.session = session
        details = models.session_details(session, self.time_limit_min)
        while self.rows.rowCount():
            self.rows.removeRow(0)
        add_rows(self.rows, details)
        self.origin.setText(tr(details.origin))
        for button in self.levels.buttons():
            self.levels.removeButton(button)
            button.deleteLater()
        clear(self.level_box)
        self.level_buttons: dict[AccessLevel, QRadioButton] = {}
        for choice in models.confirm_choices(session, self.grant):
            lines = [tr(choice.warning if choice.warning is not None else choice.meaning)]
            if choice.note is not None:
                lines.append(tr(choice.note))
            button = add_choice(self.level_box, self.levels, tr(choice.title), "\n".join(lines),
                                name=f"meaning-{choice.level.value}", bold=choice.warning is not None)
            button.setChecked(choice.default)
            self.level_buttons[choice.level] = button
        self.disclaimer.setChecked(False)
        self.error.show_text("")
        self.pages.setCurrentIndex(1)
        self.details_scroller.fit()

    def chosen_level(self) -> AccessLevel:
        return next(level for level, button in self.level_buttons.items() if button.isChecked())

    def confirm(self) -> None:
        assert self.session is not None
        try:
            request = models.confirm_request(str(self.session["id"]), self.chosen_level(), self.disclaimer.isChecked())
        except InputError as exc:
            self.error.show_text(tr(exc.text))
            return
        self._send("session_confirm", request)

    def decline(self) -> None:
        assert self.session is not None
        self._send("session_decline", models.decline_request(str(self.session["id"])))

    def reject(self) -> None:
        """Escape or the window's close button: a session shown for consent is declined, never left waiting unseen
        (once the decline failed, and said why, the window closes)."""
        if self.session is not None and self.pages.currentIndex() == 1 and not self.error.text():
            self.decline()
            return
        super().reject()

    def _send(self, op: str, request: dict[str, Any]) -> None:
        self.accept_button.setEnabled(False)
        self.decline_button.setEnabled(False)

        def done(_: Any) -> None:
            self.accept()

        def failed(error: ServiceGateError) -> None:
            self.accept_button.setEnabled(True)
            self.decline_button.setEnabled(True)
            self.error.show_error(error)

        self.link.call(op, request, done=done, failed=failed)


class RequestServiceDialog(QDialog):
    """Request service: the problem in a few words and how urgent; the agent sends it with a technical system report
    (no patient data) and the case number comes back. When the service centre cannot be reached the request is
    kept and sent later: the dialog, while open, shows the case number when it arrives (`follow`)."""

    def __init__(self, link: AgentLink, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumWidth(style.DIALOG_WIDTH)  # wrapped text reads in lines, not a narrow column
        self.link = link
        self.request_id = ""
        self.setWindowTitle(self.tr("Request service"))
        layout = QVBoxLayout(self)
        intro = wrapped(self.tr("Describe the problem in a few words. A technical report of the system (no patient "
                                "data) is sent with it."))
        layout.addWidget(intro)
        self.text_field = QLineEdit()
        self.text_field.setMaxLength(SERVICE_TEXT_MAX)
        self.text_field.setPlaceholderText(self.tr("e.g. the patient table does not move"))
        self.text_field.setAccessibleName(self.tr("Problem"))
        layout.addWidget(self.text_field)
        layout.addWidget(wrapped(self.tr("How urgent is it?")))
        self.urgency = QButtonGroup(self)
        self.urgency_buttons: dict[Urgency, QRadioButton] = {}
        for option in models.URGENCY_OPTIONS:
            self.urgency_buttons[option.urgency] = add_choice(layout, self.urgency, tr(option.title),
                                                              tr(option.meaning))
        self.urgency_buttons[Urgency.NORMAL].setChecked(True)
        self.answer = wrapped(name="result")
        self.answer.hide()
        layout.addWidget(self.answer)
        self.error = ErrorLine()
        layout.addWidget(self.error)
        self.close_button = QPushButton(self.tr("Cancel"), self)  # made first: the Tab order is the reading order
        self.send_button = QPushButton(self.tr("Send"), self)
        self.send_button.setDefault(True)
        row = QHBoxLayout()
        row.addStretch()
        for action in (self.close_button, self.send_button):
            row.addWidget(action)
        layout.addLayout(row)
        self.send_button.clicked.connect(self.send)
        self.close_button.clicked.connect(self.reject)

    def chosen(self) -> Urgency:
        return next(urgency for urgency, button in self.urgency_buttons.items() if button.isChecked())

    def send(self) -> None:
        try:
            request = models.service_request(self.text_field.text(), self.chosen())
        except InputError as exc:
            self.error.show_text(tr(exc.text))
            return
        self.error.show_text("")
        self.send_button.setEnabled(False)
        self.send_button.setText(self.tr("Sending…"))

        def failed(error: ServiceGateError) -> None:
            self.send_button.setEnabled(True)
            self.send_button.setText(self.tr("Send"))
            self.error.show_error(error)

        self.link.call("service_request", request, done=self._sent, failed=failed)

    def _sent(self, request: dict[str, Any]) -> None:
        """Sent (or kept to send later): the form is done; the answer stays until closed."""
        self.request_id = str(request["request_id"])
        for widget in (self.text_field, *self.urgency_buttons.values()):
            widget.setEnabled(False)
        self.send_button.hide()
        self.close_button.setText(self.tr("Close"))
        self.close_button.setDefault(True)
        self.follow(request)

    def follow(self, request: dict[str, Any]) -> None:
        """The request's state (the agent's answer, or its `service_request_changed` event) when it is this one."""
        if request.get("request_id") == self.request_id:
            self.answer.setText(tr(models.service_result(request)))
            self.answer.show()
            self.adjustSize()  # room for the answer


class ReceiptDialog(QDialog):
    """What happened in a session that ended: stays until the technologist closes it. `show_receipt` brings it up to
    date (a file still being sent when the session ended reaches the portal later)."""

    def __init__(self, receipt: models.Receipt, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumWidth(style.DIALOG_WIDTH)  # wrapped text reads in lines, not a narrow column
        self.setWindowTitle(tr(receipt.title))
        self.receipt = receipt
        layout = QVBoxLayout(self)
        self.scroller = Scrolled()  # a fetched series can be hundreds of files: Close stays in reach
        self.body = self.scroller.body
        layout.addWidget(self.scroller)
        self.close_button = QPushButton(self.tr("Close"), self)
        self.close_button.setDefault(True)
        self.close_button.clicked.connect(self.accept)
        layout.addWidget(self.close_button)
        self.show_receipt(receipt)

    def show_receipt(self, receipt: models.Receipt) -> None:
        self.receipt = receipt
        while (item := self.body.takeAt(0)) is not None:
            if (widget := item.widget()) is not None:
                widget.setParent(None)  # gone from the dialog now, deleted by Qt later
                widget.deleteLater()
        self.body.addWidget(wrapped(tr(receipt.title), bold=True))
        for text in (receipt.who, receipt.period, receipt.level, receipt.end_reason_text, receipt.summary):
            if text is not None:
                self.body.addWidget(wrapped(tr(text)))
        if receipt.tasks:
            self.body.addWidget(wrapped(self.tr("Tasks"), bold=True))
        for task in receipt.tasks:
            self.body.addWidget(wrapped(tr(task.line), name="task"))
        if receipt.files:
            self.body.addWidget(wrapped(self.tr("Files"), bold=True))
        for fate in receipt.files:
            self.body.addWidget(wrapped(f"{fate.name}: {tr(fate.proof)}" + (f" (SHA-256 {fate.sha256[:16]}…)"
                                                                            if fate.sha256 else ""), name="file"))
        self.scroller.fit()


class RequestNotice(QWidget):
    """A session the standing grant admitted: the technologist is told who and why, and can end it here at once (the
    banner, with its End session, appears only when the engineer has signed in)."""

    def __init__(self, notice: models.Notification, on_end: Callable[[], None]) -> None:
        super().__init__()
        self.setMinimumWidth(style.DIALOG_WIDTH)
        self.setWindowTitle(tr(notice.title))
        layout = QVBoxLayout(self)
        layout.addWidget(wrapped(tr(notice.summary), name="summary"))
        rows = QFormLayout()
        add_rows(rows, notice.details)
        layout.addLayout(rows)
        layout.addWidget(wrapped(tr(notice.instruction)))
        ok = QPushButton(self.tr("OK"))
        self.end_button = QPushButton(tr(models.END_SESSION))
        self.end_button.setObjectName("end")  # red, as on the banner: the kill switch
        self.end_button.setToolTip(tr(models.END_WARNING))
        self.end_button.clicked.connect(on_end)
        self.end_button.clicked.connect(self.close)
        ok.clicked.connect(self.close)
        row = QHBoxLayout()
        for button in (ok, self.end_button):
            row.addWidget(button)
        layout.addLayout(row)
