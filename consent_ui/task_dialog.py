"""The question of a task that waits for the technologist: Allow or Decline (`task_confirm` / `task_decline`).

An application-support task (the catalog's `application_support` flag, `share-screen` among them) runs only once
the technologist allows it (docs/tasks.md). The dialog opens by itself when such a task starts waiting (one per
task, `consent_ui.app.Console`), says what the engineer asks for and who asks, and for a shared screen (the
catalog's `screen` flag) that the engineer will see the whole screen, patient data on it included, and can only
watch until control is allowed on the banner. It closes when the agent has taken the answer, or when the task no
longer waits (`follow`: the engineer withdrew it, the session ended); a refusal is said in words inside it.

Before it sends `task_confirm` for a shared screen it calls `before_allow(task_id)`: the UI admits the agent's
user to the X server right then (consent_ui.xaccess), and `refused(task_id)` takes it back when the agent does not
take the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QDialog, QFormLayout, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from agent.errors import ServiceGateError
from consent_ui import models, style
from consent_ui.dialogs import ErrorLine, tr, wrapped
from consent_ui.link import AgentLink


def _nothing(task_id: str) -> None:
    """No X grant to make or take back (the gallery, a platform other than X11)."""


class TaskDialog(QDialog):
    """Allow or Decline one waiting task (equal buttons, neither the Enter key); closing it declines."""

    def __init__(self, link: AgentLink, question: models.TaskQuestion, *,
                 before_allow: Callable[[str], object] = _nothing, refused: Callable[[str], object] = _nothing,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumWidth(style.DIALOG_WIDTH)  # wrapped text reads in lines, not a narrow column
        self.link = link
        self.question = question
        self.before_allow = before_allow
        self.refused = refused
        self.answered = False  # the agent took Allow or Decline: closing sends nothing more
        self.setWindowTitle(tr(question.title))
        layout = QVBoxLayout(self)
        layout.addWidget(wrapped(tr(question.question), name="question", bold=True))
        rows = QFormLayout()
        for row in question.rows:
            value = wrapped(tr(row.value))
            value.setObjectName(f"row-{row.label.source}")
            rows.addRow(tr(row.label) + ":", value)
        layout.addLayout(rows)
        layout.addSpacing(6)
        if question.warning is not None:
            layout.addWidget(wrapped(tr(question.warning), name="screen-warning", bold=True))
        layout.addWidget(wrapped(tr(question.note), name="note"))
        layout.addStretch(1)  # a taller window leaves its room above the buttons, not between the lines
        self.error = ErrorLine()
        layout.addWidget(self.error)
        buttons = QHBoxLayout()
        self.decline_button = QPushButton(self.tr("Decline"))
        self.allow_button = QPushButton(self.tr("Allow"))
        for button in (self.decline_button, self.allow_button):
            button.setAutoDefault(False)  # equal: neither is the Enter key
            button.setAccessibleName(button.text())
            buttons.addWidget(button)
        if question.warning is not None:  # a screen reader says what Allow shares
            self.allow_button.setAccessibleDescription(tr(question.warning))
        self.decline_button.clicked.connect(self.decline)
        self.allow_button.clicked.connect(self.allow)
        layout.addLayout(buttons)
        self._fit()

    def _fit(self) -> None:
        """As tall as its wrapped lines need at its width (never less: the form's rows would be cut)."""
        width = max(self.width(), style.DIALOG_WIDTH) if self.isVisible() else style.DIALOG_WIDTH
        if (height := self.heightForWidth(width)) > 0:
            self.resize(width, max(height, self.height() if self.isVisible() else 0))

    def show_refusal(self, error: ServiceGateError) -> None:
        """The agent did not take the answer: why, in words, inside the dialog."""
        self.error.show_text(tr(models.task_refused(error)))
        self._fit()

    @property
    def task_id(self) -> str:
        return self.question.task_id

    def allow(self) -> None:
        if self.question.screen:
            self.before_allow(self.task_id)  # admitted before the agent starts x11vnc
        self._send("task_confirm", allowing=True)

    def decline(self) -> None:
        self._send("task_decline", allowing=False)

    def reject(self) -> None:
        """Escape or the window's close button: the task is declined, never left waiting unseen (once the decline
        failed, and said why, the window closes)."""
        if not self.answered and not self.error.text():
            self.decline()
            return
        super().reject()

    def follow(self, task: dict[str, Any]) -> None:
        """The task as the agent says it now: the dialog goes once it no longer waits."""
        if str(task.get("id")) == self.task_id and task.get("state") != models.TASK_WAITING:
            self.answered = True
            self.accept()

    def _send(self, op: str, *, allowing: bool) -> None:
        self.allow_button.setEnabled(False)
        self.decline_button.setEnabled(False)
        self.error.show_text("")

        def done(_: Any) -> None:
            self.answered = True
            self.accept()

        def failed(error: ServiceGateError) -> None:
            if allowing and self.question.screen:
                self.refused(self.task_id)
            self.allow_button.setEnabled(True)
            self.decline_button.setEnabled(True)
            self.show_refusal(error)

        self.link.call(op, models.task_decision_request(self.task_id), done=done, failed=failed)
