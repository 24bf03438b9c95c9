"""The UI's look, in one place: colours, touch-target sizes, and the application style sheet made from them.

Two themes: the default one and a high-contrast one (`[console] high_contrast`, for a site's accessibility needs).
Every colour pair that carries text is listed in `Theme.text_pairs`, and a test checks each against WCAG 2.1's
contrast minimum (4.5:1); the widgets take their colours from the application palette and the style sheet made
here, never from a colour of their own. Every control is at least `TOUCH` pixels high (the console is often a
touch screen, used with gloves).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

TOUCH = 44  # px: the smallest control (WCAG 2.5.5, Apple and Android guidelines)
DIALOG_WIDTH = 520  # px: the narrowest dialog (fits a 1024-pixel-wide screen twice over)


@dataclass(frozen=True)
class Theme:
    name: str
    window: str  # dialogs' background
    text: str  # their text
    base: str  # input fields, tables
    base_text: str
    placeholder: str  # an example in an empty field: unlike typed text, still readable
    button: str
    button_text: str
    highlight: str  # selection, focus
    highlight_text: str
    error: str  # an error line, and a warning (an update needs examination downtime), on `window`
    banner: str  # the session banner's background
    banner_text: str
    blocked: str  # "Examinations blocked", on `banner`
    end: str  # End session (the kill switch), red
    end_text: str

    def text_pairs(self) -> dict[str, tuple[str, str]]:
        """Every (text colour, background) the UI shows, by where."""
        return {"dialog text": (self.text, self.window), "input text": (self.base_text, self.base),
                "placeholder": (self.placeholder, self.base),
                "button text": (self.button_text, self.button), "selection": (self.highlight_text, self.highlight),
                "error": (self.error, self.window), "banner text": (self.banner_text, self.banner),
                "examinations blocked": (self.blocked, self.banner), "end session": (self.end_text, self.end)}


DEFAULT = Theme("default", window="#f2f2f2", text="#1a1a1a", base="#ffffff", base_text="#1a1a1a", placeholder="#5f5f5f",
                button="#e1e1e1",
                button_text="#1a1a1a", highlight="#1f5fa8", highlight_text="#ffffff", error="#a40000",
                banner="#1f3a5f", banner_text="#ffffff", blocked="#ffd54f", end="#c62828", end_text="#ffffff")
HIGH_CONTRAST = Theme("high-contrast", window="#000000", text="#ffffff", base="#000000", base_text="#ffffff",
                      placeholder="#b0b0b0",
                      button="#000000", button_text="#ffff00", highlight="#ffff00", highlight_text="#000000",
                      error="#ff8080", banner="#000000", banner_text="#ffffff", blocked="#ffff00", end="#b00000",
                      end_text="#ffffff")


def palette(theme: Theme) -> QPalette:
    colours = QPalette()
    for role, colour in ((QPalette.ColorRole.Window, theme.window), (QPalette.ColorRole.WindowText, theme.text),
                         (QPalette.ColorRole.Base, theme.base), (QPalette.ColorRole.AlternateBase, theme.window),
                         (QPalette.ColorRole.Text, theme.base_text), (QPalette.ColorRole.Button, theme.button),
                         (QPalette.ColorRole.ButtonText, theme.button_text),
                         (QPalette.ColorRole.Highlight, theme.highlight),
                         (QPalette.ColorRole.HighlightedText, theme.highlight_text),
                         (QPalette.ColorRole.ToolTipBase, theme.base),
                         (QPalette.ColorRole.ToolTipText, theme.base_text),
                         (QPalette.ColorRole.PlaceholderText, theme.placeholder)):
        for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
            colours.setColor(group, role, QColor(colour))
    return colours


def style_sheet(theme: Theme) -> str:
    return f"""
QPushButton, QRadioButton, QCheckBox, QLineEdit, QComboBox, QDateEdit, QDateTimeEdit {{ min-height: {TOUCH}px; }}
QPushButton {{ min-width: {TOUCH}px; padding: 0 14px; }}
QMenu::item {{ min-height: {TOUCH}px; padding: 0 24px; }}
QPushButton:focus, QRadioButton:focus, QCheckBox:focus {{ outline: 2px solid {theme.highlight}; }}
#error, #warning {{ color: {theme.error}; font-weight: bold; }}
#banner {{ background: {theme.banner}; }}
#banner QLabel {{ color: {theme.banner_text}; background: {theme.banner}; }}
#banner QLabel#blocked, #banner QLabel#problem, #banner QLabel#screen-control {{
    color: {theme.blocked}; font-weight: bold; }}
QPushButton#end {{ background: {theme.end}; color: {theme.end_text}; font-weight: bold; border-radius: 6px; }}
#banner QPushButton#end {{ font-size: 15px; padding: 6px 16px; min-height: 56px; min-width: 160px; }}
#banner QPushButton#control {{ font-size: 15px; padding: 6px 16px; min-height: 56px; }}
"""


def apply(application: QApplication, theme: Theme = DEFAULT) -> None:
    """The theme for every window of `application` (made before or after)."""
    application.setStyle("Fusion")  # the same look on every desktop, and one the palette fully controls
    application.setPalette(palette(theme))
    application.setStyleSheet(style_sheet(theme))


def contrast(foreground: str, background: str) -> float:
    """WCAG 2.1 contrast ratio of two colours (1 to 21)."""
    def luminance(colour: str) -> float:
        rgb = QColor(colour)
        channels = [rgb.redF(), rgb.greenF(), rgb.blueF()]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return float(0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2])

    light, dark = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)
