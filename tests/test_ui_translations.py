"""German and English, complete: the committed `.ts` file has every text the UI marks (pyside6-lupdate run on a copy
changes nothing), each one finished, with the same placeholders and plural forms; the committed `.qm` file is its
compilation (pyside6-lrelease); and with the German translation installed the windows speak German.

`make translations` updates both files after a text changed (then translate what it marks unfinished).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QLocale
from pytestqt.qtbot import QtBot

from agent.protocol import AccessLevel
from consent_ui import i18n, models
from consent_ui.dialogs import RequestServiceDialog, tr
from consent_ui.link import AgentLink

REPO = Path(__file__).resolve().parents[1]
TS = REPO / "consent_ui" / "translations" / "servicegate_de.ts"
QM = TS.with_suffix(".qm")
TOOLS = Path(sys.executable).parent
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def messages(ts: Path) -> list[ET.Element]:
    return list(ET.parse(ts).getroot().iter("message"))


def translations(message: ET.Element) -> list[str]:
    element = message.find("translation")
    assert element is not None
    forms = element.findall("numerusform")
    return [form.text or "" for form in forms] if forms else [element.text or ""]


def test_the_ts_file_has_every_text_of_the_ui_each_one_finished(tmp_path: Path) -> None:
    copy = tmp_path / TS.name
    shutil.copy(TS, copy)
    updated = subprocess.run([str(TOOLS / "pyside6-lupdate"), "-no-obsolete", "-locations", "none",
                              *sorted(str(p) for p in (REPO / "consent_ui").glob("*.py")), "-ts", str(copy)],
                             capture_output=True, text=True, timeout=120)
    assert updated.returncode == 0, updated.stderr
    assert copy.read_bytes() == TS.read_bytes(), "the UI's texts changed: run `make translations` and translate"
    found = messages(TS)
    assert len(found) >= 190  # a floor: an empty or truncated file fails here (198 texts on 2026-12-05)
    for message in found:
        source = message.findtext("source") or ""
        element = message.find("translation")
        assert element is not None
        assert element.get("type") is None, f"not finished: {source!r}"
        for text in translations(message):
            assert text.strip(), f"no German for {source!r}"
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(source)), (source, text)
            assert ("%n" in text) == ("%n" in source), (source, text)
        if message.get("numerus") == "yes":
            assert len(translations(message)) == 2, f"German needs a singular and a plural: {source!r}"


def test_the_qm_file_is_the_compiled_ts_file(tmp_path: Path) -> None:
    compiled = tmp_path / QM.name
    result = subprocess.run([str(TOOLS / "pyside6-lrelease"), str(TS), "-qm", str(compiled)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "0 unfinished" in result.stdout
    assert compiled.read_bytes() == QM.read_bytes(), "run `make translations`"


@pytest.mark.parametrize(("setting", "system", "chosen"), [
    ("system", "de_DE", "de"), ("system", "de_AT", "de"), ("system", "fr_FR", "en"), ("system", "C", "en"),
    ("en", "de_DE", "en"), ("de", "en_US", "de"),
])
def test_the_language_follows_the_setting_or_the_desktops_locale(setting: str, system: str, chosen: str) -> None:
    assert i18n.choose(setting, QLocale(system)) == chosen


@pytest.fixture
def german(qapp: QCoreApplication) -> Iterator[None]:
    installed = i18n.install(qapp, "de")
    assert len(installed) == 2  # ServiceGate's and Qt's own (the file dialog, the calendar)
    yield
    for translator in installed:
        qapp.removeTranslator(translator)


def test_with_german_installed_the_models_and_the_windows_speak_german(qtbot: QtBot, german: None,
                                                                        tmp_path: Path) -> None:
    assert tr(models.level_title(AccessLevel.FULL)) == "Vollzugriff"
    assert tr(models.END_SESSION) == "Sitzung beenden"
    dialog = RequestServiceDialog(AgentLink(tmp_path / "no-agent.sock"))
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Service anfordern"
    assert dialog.send_button.text() == "Senden"
    assert i18n.install(QCoreApplication.instance() or QCoreApplication([]), "en") == []  # English needs no file
