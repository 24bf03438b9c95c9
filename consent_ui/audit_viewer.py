"""The audit viewer: who accessed the scanner remotely, and what they did, read from the device's audit log.

Read-only. It asks the agent for the records between two days (`audit_export`) and lists them oldest first; the
engineers they name fill the Engineer list, and choosing one asks the agent for that engineer's records only.
Export CSV… saves what is shown, as the agent writes CSV (`audit_export` with `format: csv`: one writer for the
CLI and the viewer, with spreadsheet formulas defused).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from PySide6.QtCore import QDate, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateEdit,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from agent.errors import ServiceGateError
from consent_ui import models
from consent_ui.dialogs import ErrorLine, tr
from consent_ui.link import AgentLink

DEFAULT_DAYS = 30


class AuditViewer(QWidget):
    def __init__(self, link: AgentLink, today: date | None = None) -> None:
        super().__init__()
        self.link = link
        self.setWindowTitle(self.tr("ServiceGate audit log"))
        self.records: list[dict[str, Any]] = []
        today = today or datetime.now().date()
        self.first = QDateEdit(QDate(today - timedelta(days=DEFAULT_DAYS)))
        self.last = QDateEdit(QDate(today))
        self.engineer = QComboBox()
        self.engineer.setAccessibleName(self.tr("Engineer"))
        self.show_button = QPushButton(self.tr("Show"))
        self.export_button = QPushButton(self.tr("Export CSV…"))
        self.count = QLabel()
        self.count.setObjectName("count")
        self.error = ErrorLine()
        self.table = QTableWidget(0, len(models.AUDIT_COLUMNS))
        self.table.setHorizontalHeaderLabels([tr(column) for column in models.AUDIT_COLUMNS])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setTabKeyNavigation(False)  # Tab moves on to Export CSV…; the arrow keys move within the table
        self.table.horizontalHeader().setSectionResizeMode(len(models.AUDIT_COLUMNS) - 1,
                                                           QHeaderView.ResizeMode.Stretch)
        self.table.setAccessibleName(self.tr("Audit records"))
        for edit, name in ((self.first, self.tr("From")), (self.last, self.tr("To"))):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setAccessibleName(name)
        self.show_button.clicked.connect(self.load)
        self.export_button.clicked.connect(self.export)
        self.engineer.currentIndexChanged.connect(lambda index: self._narrow())
        filters = QHBoxLayout()
        for label, widget in ((self.tr("From"), self.first), (self.tr("To"), self.last),
                              (self.tr("Engineer"), self.engineer)):
            caption = QLabel(label)
            caption.setBuddy(widget)
            filters.addWidget(caption)
            filters.addWidget(widget)
        filters.addWidget(self.show_button)
        layout = QVBoxLayout(self)
        layout.addLayout(filters)
        layout.addWidget(self.error)
        layout.addWidget(self.table, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.count, 1)
        bottom.addWidget(self.export_button)
        layout.addLayout(bottom)
        self.resize(980, 560)

    def period(self) -> dict[str, str]:
        """The chosen days, from the first one's start to the last one's end, in local time, as UTC."""
        first, last = self.first.date(), self.last.date()
        since = datetime(first.year(), first.month(), first.day()).astimezone(UTC)
        until = datetime.combine(datetime(last.year(), last.month(), last.day()).date(), time.max).astimezone(UTC)
        return {"since": since.isoformat(), "until": until.isoformat()}

    def chosen_engineer(self) -> str:
        return str(self.engineer.currentData() or "")

    def load(self) -> None:
        """The chosen days' records; the Engineer list from them."""
        if self.first.date() > self.last.date():
            self.error.show_text(self.tr("The first day is after the last one: choose a first day before the last."))
            return
        self.error.show_text("")
        self.link.call("audit_export", self.period(), done=self._loaded, failed=self.error.show_error)

    def _loaded(self, records: list[dict[str, Any]]) -> None:
        chosen = self.chosen_engineer()
        self.engineer.blockSignals(True)
        self.engineer.clear()
        self.engineer.addItem(tr(models.ALL_ENGINEERS), "")
        for engineer_id, label in models.audit_engineers(records):
            self.engineer.addItem(label, engineer_id)
        self.engineer.setCurrentIndex(max(0, self.engineer.findData(chosen)))
        self.engineer.blockSignals(False)
        if self.chosen_engineer():
            self._narrow()
        else:
            self._fill(records)

    def _narrow(self) -> None:
        """The chosen engineer's records (all, for All engineers)."""
        self.error.show_text("")
        self.link.call("audit_export", {**self.period(), "engineer_id": self.chosen_engineer()}, done=self._fill,
                       failed=self.error.show_error)

    def _fill(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        rows = models.audit_rows(records)
        self.table.setRowCount(len(rows))
        for number, row in enumerate(rows):
            for column, value in enumerate((row.time, row.event, tr(row.by), row.engineer, row.session_id,
                                            row.details)):
                item = QTableWidgetItem(value)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                self.table.setItem(number, column, item)
        self.table.resizeColumnsToContents()
        self.count.setText(self.tr("%n record(s)", "", len(rows)))

    def export(self) -> None:
        """Where to save: a file dialog modal to this window only (the banner's End session stays usable)."""
        chooser = QFileDialog(self, self.tr("Export the audit log"), str(Path.home() / "servicegate-audit.csv"),
                              "CSV (*.csv)")
        chooser.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        chooser.setWindowModality(Qt.WindowModality.WindowModal)
        chooser.fileSelected.connect(lambda name: self.export_to(Path(name)))
        chooser.finished.connect(chooser.deleteLater)
        chooser.open()

    def export_to(self, path: Path) -> None:
        """Save the shown period (and engineer) as CSV at `path`."""
        def write(text: str) -> None:
            try:
                path.write_text(text, encoding="utf-8")
            except OSError as exc:
                self.error.show_text(self.tr("Cannot save {path}: {why}").replace("{path}", str(path))
                                     .replace("{why}", exc.strerror or str(exc)))
                return
            self.count.setText(self.tr("Saved {path}").replace("{path}", str(path)))

        def failed(error: ServiceGateError) -> None:
            self.error.show_error(error)

        self.link.call("audit_export", {**self.period(), "engineer_id": self.chosen_engineer(), "format": "csv"},
                       done=write, failed=failed)
