"""The tray icon: ServiceGate's state at a glance, and a menu of what the technologist can do.

The icon tells the state by shape as well as colour (a colour-blind technologist, a grey-scale panel):

    unavailable         grey ring, crossed           the agent cannot be reached
    no access           grey ring
    limited             blue ring with a clock hand  (a time limit)
    permanent limited   blue disc
    full                amber disc
    session active      red disc with a white centre

The tooltip says the same in words. The menu: change access level, enter session ID, request service, show
audit log, end session (the kill switch; offered while a session is open). A left click opens the small
ServiceGate window. On X11 Qt embeds the icon in the desktop's tray (the XEmbed system tray protocol: trayer,
a panel); without a tray the small window stays on screen instead (app.main).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from PySide6.QtCore import QObject, QPointF, Qt
from PySide6.QtGui import QAction, QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from consent_ui import models
from consent_ui.dialogs import tr

GREY, BLUE, AMBER, RED, WHITE = "#616161", "#1565c0", "#ef8f00", "#c62828", "#ffffff"


def tray_pixmap(kind: str, size: int = 64) -> QPixmap:
    """The icon of a `models.TRAY_KINDS` state."""
    if kind not in models.TRAY_KINDS:
        raise ValueError(f"no tray icon for {kind!r}; one of {', '.join(models.TRAY_KINDS)}")
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    centre, radius, stroke = QPointF(size / 2, size / 2), size * 0.40, size * 0.12
    colour = {"unavailable": GREY, "no-access": GREY, "limited": BLUE, "permanent-limited": BLUE, "full": AMBER,
              "session-active": RED}[kind]
    if kind in ("unavailable", "no-access", "limited"):  # rings
        painter.setPen(QPen(QColor(colour), stroke))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawEllipse(centre, radius - stroke / 2, radius - stroke / 2)
        if kind == "limited":  # a clock hand: access with a time limit
            painter.drawLine(centre, QPointF(size / 2, size * 0.28))
            painter.drawLine(centre, QPointF(size * 0.66, size / 2))
        if kind == "unavailable":
            painter.drawLine(QPointF(size * 0.25, size * 0.75), QPointF(size * 0.75, size * 0.25))
    else:  # discs
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(colour))
        painter.drawEllipse(centre, radius, radius)
        if kind == "session-active":
            painter.setBrush(QColor(WHITE))
            painter.drawEllipse(centre, radius * 0.35, radius * 0.35)
    painter.end()
    return pixmap


class Tray(QObject):
    """The tray icon and its menu. `items`: (name, label, action) in menu order; an item named "end_session" (the
    kill switch) comes last, after a line, and is offered only while a session is open; the others only while the
    agent can be reached. `show_window`: what a left click does."""

    def __init__(self, items: list[tuple[str, str, Callable[[], object]]], show_window: Callable[[], object]) -> None:
        super().__init__()
        self.icon = QSystemTrayIcon()
        self.menu = QMenu()
        self.items: dict[str, QAction] = {}
        for name, label, action in items:
            if name == "end_session":
                self.menu.addSeparator()
            item = self.menu.addAction(label)
            item.triggered.connect(action)
            self.items[name] = item
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(
            lambda reason: show_window() if reason == QSystemTrayIcon.ActivationReason.Trigger else None)
        self.state: models.TrayState | None = None
        self.show_state(models.tray_state(None, datetime.now(UTC)))

    def show_state(self, state: models.TrayState) -> None:
        if state != self.state:
            self.state = state
            self.icon.setIcon(QIcon(tray_pixmap(state.kind)))
            self.icon.setToolTip(tr(state.tooltip))
        for name, item in self.items.items():
            item.setEnabled(state.session_open if name == "end_session" else state.kind != "unavailable")

    def show(self) -> None:
        self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    def deleteLater(self) -> None:  # noqa: N802 - Qt's name
        """The icon and its menu with it (they have no parent: a tray icon is a window of its own)."""
        self.icon.deleteLater()
        self.menu.deleteLater()
        super().deleteLater()
