"""`make screenshots`: every screen of the consent UI in a real window, in English and German, as PNG.

It starts an X server of its own (Xvfb, 1280x800, with openbox managing it, as tests/test_ui_x11.py does), shows
each screen of tests/ui_gallery.py there with the xcb platform, and takes the window's pixels from the X server.
Written to docs/screenshots/<language>/<screen>.png (or --out DIR).

    python scripts/screenshots.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.ui_gallery: the screens with their example data

SETTLE_MS = 300  # after a window is exposed: the window manager places it, Qt paints it


def render(language: str, out: Path) -> None:
    """In this process, on $DISPLAY: every screen in `language`, saved in `out`."""
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from consent_ui import i18n, style
    from tests import ui_gallery

    application = QApplication(["servicegate-ui"])
    i18n.install(application, language)
    style.apply(application)
    out.mkdir(parents=True, exist_ok=True)
    for name, make in ui_gallery.screens(ui_gallery.link()).items():
        window = make()
        window.show()
        if not QTest.qWaitForWindowExposed(window, 10_000):
            raise SystemExit(f"screenshots: the {name} window was not shown")
        QTest.qWait(SETTLE_MS)
        screen = window.screen()
        picture = screen.grabWindow(window.winId())
        if picture.isNull() or not picture.save(str(out / f"{name}.png")):
            raise SystemExit(f"screenshots: cannot save {out / f'{name}.png'}")
        window.close()
        window.deleteLater()
    application.processEvents()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--render", metavar="LANGUAGE", help=argparse.SUPPRESS)  # the child process's part
    args = parser.parse_args(argv)
    if args.render:
        render(args.render, args.out)
        return 0
    from consent_ui.i18n import LANGUAGES
    from tests.test_ui_x11 import x_server

    with tempfile.TemporaryDirectory() as folder, \
            x_server(["Xvfb", "-screen", "0", "1280x800x24", "-nolisten", "tcp"], Path(folder) / "x.log") as env:
        for language in LANGUAGES:
            print(f"screenshots: {language} -> {args.out / language}", flush=True)
            subprocess.run([sys.executable, __file__, "--render", language, "--out", str(args.out / language)],
                           env={**env, "QT_QPA_PLATFORM": "xcb", "PYTHONPATH": os.pathsep.join(sys.path)},
                           check=True, timeout=300)
    return 0


if __name__ == "__main__":
    sys.exit(main())
