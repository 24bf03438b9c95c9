"""Accessibility of every screen (tests/ui_gallery.py), measured, in English and German, in the default and the
high-contrast theme (pytest-qt, offscreen):

- every control has a non-empty accessible name (what a screen reader says: Qt's QAccessible interface);
- every control is at least 44 px high and wide (consent_ui.style.TOUCH);
- no text is cut off: a label's text (font metrics) fits its rectangle, wrapped labels are tall enough for their
  text, buttons and lists are as wide as their text needs;
- text contrasts with its background at least 4.5:1 (WCAG 2.1 AA), from the palette each widget is drawn with;
- the keyboard reaches every control with Tab, in reading order, and a dialog's main action is its default
  button (Enter); a dialog is operated with the keyboard alone against a real agent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QAccessible, QTextDocument
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QWidget,
)
from pytestqt.qtbot import QtBot

from agent.protocol import Urgency
from consent_ui import i18n, style
from consent_ui.dialogs import AccessDialog, RequestServiceDialog, SessionDialog
from consent_ui.link import AgentLink
from tests import ui_gallery
from tests.shared_fixtures import ModalityAgent
from tests.test_ui_console import WAIT_MS

CONTROLS = (QAbstractButton, QLineEdit, QComboBox, QAbstractSpinBox, QAbstractItemView)
THEMES = {"default": style.DEFAULT, "high-contrast": style.HIGH_CONTRAST}


@pytest.fixture(params=[(language, theme) for language in i18n.LANGUAGES for theme in THEMES],
                ids=[f"{language}-{theme}" for language in i18n.LANGUAGES for theme in THEMES])
def look(request: pytest.FixtureRequest, qapp: QApplication) -> Iterator[tuple[str, str]]:
    language, theme = request.param
    installed = i18n.install(qapp, language)
    style.apply(qapp, THEMES[theme])
    yield language, theme
    for translator in installed:
        qapp.removeTranslator(translator)
    style.apply(qapp, style.DEFAULT)


def shown(qtbot: QtBot, name: str) -> QWidget:
    window = ui_gallery.screens(ui_gallery.link())[name]()
    qtbot.addWidget(window)
    with qtbot.waitExposed(window):
        window.show()
    QCoreApplication.processEvents()
    return window


def controls(window: QWidget) -> list[QWidget]:
    """The visible controls a user operates (not the parts Qt builds into a control: a spin box's line edit, a table's
    headers)."""
    found = [w for w in window.findChildren(QWidget) if isinstance(w, CONTROLS) and w.isVisibleTo(window)]
    return [w for w in found if not isinstance(w, QHeaderView) and not w.objectName().startswith("qt_")
            and not (isinstance(w, QLineEdit) and isinstance(w.parent(), QAbstractSpinBox | QComboBox))]


def texts(window: QWidget) -> list[QWidget]:
    return [w for w in window.findChildren(QWidget) if isinstance(w, QLabel | QAbstractButton) and w.isVisibleTo(window)
            and _plain(w)]


def _plain(widget: QWidget) -> str:
    text = widget.text() if isinstance(widget, QLabel | QAbstractButton) else ""
    if isinstance(widget, QLabel) and re.search(r"<[a-z/]", text):
        document = QTextDocument()
        document.setHtml(text)
        text = document.toPlainText()
    return text


def where(window: QWidget, widget: QWidget) -> str:
    return f"{type(window).__name__} › {type(widget).__name__} {widget.objectName()!r} {_plain(widget)[:50]!r}"


SCREENS = [  # as the gallery names them (checked below)
    "launcher", "launcher-unavailable", "access", "access-error", "session-id", "session-details",
    "session-requested", "request-notice", "banner", "banner-screen-view-only", "banner-screen-control",
    "receipt", "receipt-many-files", "request-service",
    "request-service-sent", "request-service-kept", "audit-log", "update-virus-patterns", "update-software",
    "update-postpone", "update-reject", "update-installed", "updates", "updates-none", "task-share-screen",
    "task-adjust-protocol", "task-refused"]


def test_the_gallery_has_every_screen() -> None:
    assert sorted(ui_gallery.screens(ui_gallery.link())) == sorted(SCREENS)


@pytest.mark.parametrize("name", SCREENS)
def test_names_sizes_text_and_contrast(qtbot: QtBot, look: tuple[str, str], name: str) -> None:
    window = shown(qtbot, name)
    problems = []
    for control in controls(window):
        interface = QAccessible.queryAccessibleInterface(control)
        if interface is None or not interface.text(QAccessible.Text.Name).strip():
            problems.append(f"no accessible name: {where(window, control)}")
        if not isinstance(control, QAbstractItemView) and (control.height() < style.TOUCH or
                                                           control.width() < style.TOUCH):
            problems.append(f"smaller than {style.TOUCH} px ({control.width()}x{control.height()}): "
                            f"{where(window, control)}")
    for widget in texts(window):
        if isinstance(widget, QLabel):
            room = widget.contentsRect()
            if widget.wordWrap():
                if widget.heightForWidth(room.width()) > room.height() + 1:
                    problems.append(f"text cut off (needs {widget.heightForWidth(room.width())} px of height, has "
                                    f"{room.height()}): {where(window, widget)}")
            else:
                widest = max(widget.fontMetrics().horizontalAdvance(line) for line in _plain(widget).splitlines())
                if widest > room.width():
                    problems.append(f"text cut off (needs {widest} px, has {room.width()}): {where(window, widget)}")
        elif widget.sizeHint().width() > widget.width():
            problems.append(f"text cut off (needs {widget.sizeHint().width()} px, has {widget.width()}): "
                            f"{where(window, widget)}")
        if not widget.isEnabled():
            continue  # WCAG 1.4.3 exempts inactive controls (greyed out on purpose)
        palette = widget.palette()
        foreground = palette.color(widget.foregroundRole()).name()
        background = palette.color(widget.backgroundRole()).name()
        if style.contrast(foreground, background) < 4.5:
            problems.append(f"contrast {style.contrast(foreground, background):.2f} ({foreground} on {background}): "
                            f"{where(window, widget)}")
    for combo in [c for c in controls(window) if isinstance(c, QComboBox)]:
        if combo.sizeHint().width() > combo.width():
            problems.append(f"list text cut off: {where(window, combo)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("theme", THEMES.values(), ids=THEMES.keys())
def test_every_text_colour_of_each_theme_has_enough_contrast(theme: style.Theme) -> None:
    low = {where: round(style.contrast(*pair), 2) for where, pair in theme.text_pairs().items()
           if style.contrast(*pair) < 4.5}
    assert low == {}
    assert style.contrast("#ffffff", "#000000") == pytest.approx(21.0)
    assert style.contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


# The button Enter presses. The session's details have none: Accept and Decline are equal, neither is the Enter key.
MAIN_ACTION = {"access": "apply_button", "access-error": "apply_button", "session-id": "claim_button",
               "receipt": "close_button", "receipt-many-files": "close_button", "request-service": "send_button",
               "request-service-sent": "close_button", "request-service-kept": "close_button",
               # An update's Approve, Postpone and Reject are equal, like a session's Accept and Decline: none is Enter.
               "update-postpone": "postpone_send", "update-reject": "reject_send", "update-installed": "close_button",
               "updates": "show_button", "updates-none": "close_button"}


def reading_order(widgets: list[QWidget], window: QWidget) -> list[QWidget]:
    def key(widget: QWidget) -> tuple[int, int]:
        point = widget.mapTo(window, widget.rect().topLeft())
        return point.y() // 24, point.x()  # one line of controls: within 24 px of each other

    return sorted(widgets, key=key)


@pytest.mark.parametrize("name", [s for s in SCREENS if s != "banner"])
def test_tab_reaches_every_control_in_reading_order(qtbot: QtBot, look: tuple[str, str], name: str) -> None:
    """Radio buttons of one group are one stop (the arrow keys choose within it, as everywhere in Qt)."""
    window = shown(qtbot, name)
    with qtbot.waitActive(window):
        window.activateWindow()
    reachable = [c for c in controls(window) if c.isEnabled() and c.focusPolicy() & Qt.FocusPolicy.TabFocus]
    groups = {id(c.group()) for c in reachable if isinstance(c, QRadioButton) and c.group() is not None}
    stops = [c for c in reachable if not (isinstance(c, QRadioButton) and c.group() is not None)]
    visited: list[QWidget] = []
    stops_too = [w for w in window.findChildren(QWidget) if w.isVisibleTo(window) and w.isEnabled()
                 and w.focusPolicy() & Qt.FocusPolicy.TabFocus and not w.objectName().startswith("qt_")
                 and not isinstance(w.parent(), QAbstractSpinBox | QComboBox)]  # a scroll area, say
    first = reading_order(stops_too, window)[0]
    first.setFocus(Qt.FocusReason.TabFocusReason)
    # Enter, while the focus is in a field or a choice (on a button, Enter presses that button, as everywhere in Qt)
    defaults = [b for b in window.findChildren(QPushButton) if b.isDefault() and b.isVisibleTo(window)]
    assert defaults == ([getattr(window, MAIN_ACTION[name])] if name in MAIN_ACTION else []), \
        "Enter does a dialog's main action, and nothing where two choices are equal"
    for _ in range(4 * len(reachable) + 2):  # a date field takes a Tab per part (year, month, day)
        focused = QApplication.focusWidget()
        if isinstance(focused, QLineEdit) and isinstance(focused.parent(), QAbstractSpinBox | QComboBox):
            focused = focused.parent()  # the control whose part has the focus
        if not isinstance(focused, QWidget) or (len(visited) > 1 and focused is visited[0]):
            break
        if not visited or focused is not visited[-1]:
            visited.append(focused)
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
    radio_stops = {id(w.group()) for w in visited if isinstance(w, QRadioButton) and w.group() is not None}
    assert radio_stops == groups, "a group of radio buttons the keyboard does not reach"
    missing = [where(window, c) for c in stops if c not in visited]
    assert missing == []
    plain = [w for w in visited if not isinstance(w, QRadioButton)]
    assert plain == reading_order(plain, window), [where(window, w) for w in plain]


def test_the_access_dialog_with_the_keyboard_alone(qtbot: QtBot, modality_agent: ModalityAgent) -> None:
    """Down to Permanent limited access with the arrow keys, then Enter: the agent applies it."""
    agent = modality_agent[0]
    link = AgentLink(agent.socket)
    link.start()
    dialog = AccessDialog(link, agent.cli_json("access", "show"))
    qtbot.addWidget(dialog)
    try:
        with qtbot.waitActive(dialog):
            dialog.show()
            dialog.activateWindow()
        dialog.buttons[next(iter(dialog.buttons))].setFocus(Qt.FocusReason.TabFocusReason)
        focused = QApplication.focusWidget()
        assert isinstance(focused, QRadioButton)
        for _ in range(2):  # No access -> Limited -> Permanent limited
            qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Down)
        assert re.search("Permanent", QApplication.focusWidget().text())  # type: ignore[union-attr]
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
        assert agent.cli_json("access", "show")["level"] == "permanent-limited"
    finally:
        link.stop()
        link.deleteLater()


def test_request_service_and_the_session_id_with_the_keyboard_alone(qtbot: QtBot,
                                                                     modality_agent: ModalityAgent) -> None:
    """Typed, an urgency chosen with the arrow keys, Enter: the agent has the request (kept: no portal here). A session
    ID typed and Enter: the agent is asked (and answers in words: this device is not enrolled)."""
    agent = modality_agent[0]
    link = AgentLink(agent.socket)
    link.start()
    service = RequestServiceDialog(link)
    asked = SessionDialog(link, agent.cli_json("access", "show"))
    try:
        for dialog in (service, asked):
            qtbot.addWidget(dialog)
        with qtbot.waitActive(service):
            service.show()
            service.activateWindow()
        service.text_field.setFocus(Qt.FocusReason.TabFocusReason)
        qtbot.keyClicks(service.text_field, "the patient table does not move")
        qtbot.keyClick(service.text_field, Qt.Key.Key_Tab)  # to the urgency (its first choice)
        for _ in range(len(Urgency)):
            if service.chosen() is Urgency.HIGH:
                break
            qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Down)
        assert service.chosen() is Urgency.HIGH
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: "cannot be reached now" in service.answer.text(), timeout=WAIT_MS)
        [kept] = agent.cli_json("service-requests")
        assert (kept["text"], kept["urgency"], kept["state"]) == ("the patient table does not move", "high", "queued")

        service.close()
        with qtbot.waitActive(asked):
            asked.show()
            asked.activateWindow()
        asked.id_field.setFocus(Qt.FocusReason.TabFocusReason)
        qtbot.keyClicks(asked.id_field, "12345678")
        qtbot.keyClick(asked.id_field, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: asked.error.text() != "", timeout=WAIT_MS)
        assert asked.pages.currentIndex() == 0
    finally:
        link.stop()
        link.deleteLater()
