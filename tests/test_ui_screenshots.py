"""`make screenshots` renders every screen of the gallery in a real window (Xvfb, xcb, openbox), in English and German:
each a PNG of the window's size with more than a blank background in it. Xvfb and openbox as in tests/test_ui_x11.py
(a missing tool fails in CI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from consent_ui.i18n import LANGUAGES
from tests import ui_gallery
from tests.test_ui_x11 import TOOLS, require

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.window_system  # make test runs these in a pytest run of their own


def test_every_screen_in_every_language_as_a_picture(tmp_path: Path) -> None:
    require(TOOLS)
    made = subprocess.run([sys.executable, str(REPO / "scripts" / "screenshots.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr
    names = sorted(ui_gallery.screens(ui_gallery.link()))
    for language in LANGUAGES:
        assert sorted(p.stem for p in (tmp_path / language).glob("*.png")) == names
        for name in names:
            image = QImage(str(tmp_path / language / f"{name}.png"))
            assert image.width() >= 300, (language, name, image.width())
            assert image.height() >= 80, (language, name, image.height())
            corners = {image.pixel(1, 1), image.pixel(image.width() // 2, image.height() // 2),
                       image.pixel(image.width() - 2, image.height() - 2)}
            colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
            assert len(colours) > 3, f"{language}/{name} is blank ({corners})"
    english, german = (QImage(str(tmp_path / language / "banner.png")) for language in ("en", "de"))
    assert english != german  # the German one is really German
