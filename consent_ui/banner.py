"""The session banner: a frameless bar on top of every screen while a remote session is active.

It says who is connected and why, at which level, for how long, whether examinations are blocked, and
what the engineer is doing; its End session button is the kill switch. While the console's screen is shared with
the engineer it says so, view-only or with control, and offers the toggle (Allow control / View only) when the
session's access allows control. It cannot be closed, is put
back when something moves it, stays above the UI's own windows, and follows the screens as they are
added and removed. It takes no keyboard focus when it appears (the technologist's work goes on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QPoint, Qt
from PySide6.QtGui import QCloseEvent, QGuiApplication, QMoveEvent, QScreen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from consent_ui import models
from consent_ui.dialogs import tr

HEIGHT = 84
Control = Callable[[dict[str, Any]], None]  # sends `screen_control` with these args


def _no_control(request: dict[str, Any]) -> None:
    """A banner that only shows (the gallery, tests): the toggle sends nothing."""


class BannerBar(QWidget):
    """One screen's banner."""

    def __init__(self, screen: QScreen, on_end: Callable[[], None], on_control: Control = _no_control) -> None:
        flags = Qt.WindowType.WindowStaysOnTopHint | Qt.WindowType.FramelessWindowHint | Qt.WindowType.Tool
        super().__init__(None, flags)
        self.setAttribute(Qt.WidgetAttribute.WA_ShowWithoutActivating)
        self.setObjectName("banner")
        self.setWindowTitle("ServiceGate banner")  # what window managers and xdotool see
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)  # its colours: consent_ui.style (#banner)
        self.screen_ = screen
        self.closable = False
        self.headline = QLabel()
        self.headline.setObjectName("headline")
        font = self.headline.font()
        font.setBold(True)
        font.setPointSize(font.pointSize() + 2)
        self.headline.setFont(font)
        self.details = QLabel()
        self.details.setObjectName("details")
        self.blocked = QLabel()
        self.blocked.setObjectName("blocked")
        self.activity = QLabel()
        self.activity.setObjectName("activity")
        self.screen_line = QLabel()  # the shared screen
        self.screen_line.setObjectName("screen")
        self.control_button = QPushButton()  # Allow control / View only, left of End session (which stays put)
        self.control_button.setObjectName("control")
        self.control_button.hide()
        self.control_request: dict[str, Any] | None = None
        self.on_control = on_control
        self.control_button.clicked.connect(self._control_clicked)
        self.end_button = QPushButton()
        self.end_button.setObjectName("end")
        self.end_button.clicked.connect(on_end)
        self.text = QVBoxLayout()
        self.labels = (self.headline, self.details, self.blocked, self.activity, self.screen_line)
        for label in self.labels:
            label.setTextFormat(Qt.TextFormat.PlainText)  # the engineer's words show as written, never as markup
            # Long lines wrap within the screen (the bar grows taller); they never push End session off it.
            label.setWordWrap(True)
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            self.text.addWidget(label)
        self.row = QHBoxLayout(self)
        self.row.setContentsMargins(16, 4, 16, 4)
        self.row.addLayout(self.text, 1)
        self.row.addWidget(self.control_button)
        self.row.addWidget(self.end_button)
        self.place()

    def place(self) -> None:
        """Across the top of its screen, as tall as its lines need at that width."""
        self.ensurePolished()  # the style's fonts and padding, before measuring
        area = self.screen_.geometry()
        margins, spacing = self.row.contentsMargins(), self.text.spacing()
        buttons = [button for button in (self.control_button, self.end_button) if not button.isHidden()]
        width = area.width() - margins.left() - margins.right() - \
            sum(self.row.spacing() + button.sizeHint().width() for button in buttons)
        lines = [label.heightForWidth(width) for label in self.labels if not label.isHidden()]
        text = sum(lines) + spacing * (len(lines) - 1)
        height = margins.top() + margins.bottom() + max(text, *(b.sizeHint().height() for b in buttons))
        self.setGeometry(area.x(), area.y(), area.width(), max(HEIGHT, height))

    def show_banner(self, banner: models.Banner, problem: str = "") -> None:
        """`problem`: End session could not reach the agent (shown instead of the activity line, in words)."""
        self.headline.setText(tr(banner.headline))
        parts = [banner.reason, banner.case, banner.level, banner.elapsed, banner.remaining]
        self.details.setText("   ·   ".join(tr(part) for part in parts if part is not None))
        self.blocked.setText(tr(banner.blocked) if banner.blocked is not None else "")
        self.blocked.setVisible(banner.blocked is not None)
        activity = "   ·   ".join(tr(part) for part in (banner.activity, banner.files, banner.other_sessions)
                                  if part is not None)
        self.activity.setText(problem or activity)
        self.activity.setObjectName("problem" if problem else "activity")
        self.activity.style().polish(self.activity)  # its colour follows its name (consent_ui.style)
        self._show_screen(banner.screen)
        for label in (self.headline, self.details, self.activity, self.screen_line):
            label.setToolTip(label.text())
        self.end_button.setText(tr(banner.end_label))
        self.end_button.setToolTip(tr(banner.end_warning))
        self.end_button.setAccessibleName(tr(banner.end_label))
        self.end_button.setAccessibleDescription(tr(banner.end_warning))
        self.place()
        if not self.isVisible():
            self.show()
        self.raise_()

    def _show_screen(self, share: models.ScreenShare | None) -> None:
        """The shared screen's line, and the toggle when the session's access allows control."""
        self.screen_line.setText(tr(share.line) if share is not None else "")
        self.screen_line.setVisible(share is not None)
        self.screen_line.setObjectName("screen-control" if share is not None and share.control else "screen")
        self.screen_line.style().polish(self.screen_line)
        self.control_request = share.request if share is not None else None
        if share is None or share.toggle is None:
            self.control_button.hide()
            return
        self.control_button.setText(tr(share.toggle))
        self.control_button.setAccessibleName(tr(share.toggle))
        hint = tr(share.toggle_hint) if share.toggle_hint is not None else ""
        self.control_button.setToolTip(hint)
        self.control_button.setAccessibleDescription(hint)
        self.control_button.show()

    def _control_clicked(self) -> None:
        if self.control_request is not None:
            self.on_control(dict(self.control_request))

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        if self.closable:
            event.accept()
        else:
            event.ignore()  # only the end of the session takes it away

    def moveEvent(self, event: QMoveEvent) -> None:  # noqa: N802 - Qt's name
        super().moveEvent(event)
        home = self.screen_.geometry().topLeft()
        if event.pos() != QPoint(home.x(), home.y()):
            self.place()


class Banners:
    """A BannerBar on every screen while `update` is given a banner; none otherwise."""

    def __init__(self, on_end: Callable[[], None], on_control: Control = _no_control) -> None:
        self.on_end = on_end
        self.on_control = on_control
        self.bars: dict[QScreen, BannerBar] = {}
        self.current: models.Banner | None = None
        self.problem = ""
        application = QGuiApplication.instance()
        assert isinstance(application, QGuiApplication)
        self._screens = [application.screenAdded.connect(lambda screen: self.update(self.current)),
                         application.screenRemoved.connect(self._screen_removed)]

    def close(self) -> None:
        """No banner any more, and no following the screens (the UI's end)."""
        for connection in self._screens:
            QObject.disconnect(connection)
        self._screens = []
        self.update(None)

    def update(self, banner: models.Banner | None, problem: str | None = None) -> None:
        """`problem`: a new one ("" clears it); None keeps the one shown."""
        self.current = banner
        if problem is not None:
            self.problem = problem
        if banner is None:
            for screen in list(self.bars):
                self._remove(screen)
            return
        for screen in QGuiApplication.screens():
            bar = self.bars.get(screen)
            if bar is None:
                bar = self.bars[screen] = BannerBar(screen, self.on_end, self.on_control)
            bar.show_banner(banner, self.problem)

    def raise_all(self) -> None:
        for bar in self.bars.values():
            bar.raise_()

    def _screen_removed(self, screen: QScreen) -> None:
        self._remove(screen)
        self.update(self.current)

    def _remove(self, screen: QScreen) -> None:
        bar = self.bars.pop(screen, None)
        if bar is not None:
            bar.closable = True
            bar.close()
            bar.deleteLater()
