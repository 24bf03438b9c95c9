"""The UI's languages: English (the source texts) and German.

Every text is marked for Qt's translation system (models.py with QT_TRANSLATE_NOOP, the widgets with self.tr);
`make translations` extracts them into `translations/servicegate_de.ts` (pyside6-lupdate keeps what is
translated) and compiles that into the `.qm` file the UI loads (pyside6-lrelease). Both files are committed; a
test checks that the `.ts` file has every text, each one finished, and that the `.qm` file is its compilation.

The language is `[console] language` of agent.toml (the UI asks the agent when it starts): "en", "de", or
"system" (the default), which follows the desktop session's locale (LANG, LC_MESSAGES). Qt's own texts (the
file dialog, the calendar) come from Qt's translations for the same language.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QLibraryInfo, QLocale, QTranslator

log = logging.getLogger("servicegate.ui.i18n")

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
LANGUAGES = ("en", "de")  # English is the source language: it needs no file


def choose(setting: str, system: QLocale | None = None) -> str:
    """The language for `[console] language` ("system": the desktop's, when it is one of LANGUAGES, else English)."""
    if setting in LANGUAGES:
        return setting
    name = (system or QLocale.system()).name().split("_")[0]
    return name if name in LANGUAGES else "en"


def install(application: QCoreApplication, language: str) -> list[QTranslator]:
    """Load and install the translations of `language` (none for English); returns them (keep them alive)."""
    if language == "en":
        return []
    installed = []
    qt_own = QLibraryInfo.path(QLibraryInfo.LibraryPath.TranslationsPath)
    for name, folder in ((f"servicegate_{language}", TRANSLATIONS), (f"qtbase_{language}", Path(qt_own))):
        translator = QTranslator(application)
        if translator.load(name, str(folder)):
            application.installTranslator(translator)
            installed.append(translator)
        else:
            log.warning("no %s translations in %s: those texts stay in English", name, folder)
    return installed
