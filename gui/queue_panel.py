"""The queue panel: every run of this session with its state (pending, running, done, failed,
cancelled), the running one's progress, and buttons to cancel the selected job or all of them."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

JOB_ROLE = Qt.UserRole + 1
STATUS_COLORS = {"pending": "#9a9ca3", "running": "#66bb6a", "done": "#e0e0e0", "failed": "#ef5350",
                 "cancelled": "#ffb74d"}


def describe(job) -> str:
    if job.status == "running":
        done = f"{job.progress[0]}/{job.progress[1]} \u00b7 " if job.progress else ""  # a sweep's jobs
        return f"running {done}{job.elapsed():.0f}s"
    if job.status in ("done", "failed") and job.seconds is not None:
        return f"{job.status} in {job.seconds:.1f}s"
    return job.status


class QueuePanel(QWidget):
    def __init__(self, runner, parent=None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["#", "job", "state", "images"])
        self.tree.setRootIsDecorated(False)
        for col, width in enumerate((34, 100, 100)):
            self.tree.setColumnWidth(col, width)
        self.cancel_button = QToolButton(text="Cancel job", autoRaise=True)
        self.cancel_button.setToolTip("Cancel the selected job; the others go on")
        self.cancel_all_button = QToolButton(text="Cancel all", autoRaise=True)
        self.clear_button = QToolButton(text="Clear", autoRaise=True)
        self.clear_button.setToolTip("Hide finished jobs")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.cancel_all_button.clicked.connect(runner.cancel)
        self.clear_button.clicked.connect(self.clear_finished)
        bar = QHBoxLayout()
        for b in (self.cancel_button, self.cancel_all_button, self.clear_button):
            bar.addWidget(b)
        bar.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(bar)
        lay.addWidget(self.tree)
        self.hidden: set[int] = set()
        runner.jobsChanged.connect(self.refresh)
        self.ticker = QTimer(self)  # the running job's time, once a second
        self.ticker.timeout.connect(lambda: self.runner.busy and self.refresh())
        self.ticker.start(1000)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected_job()
        self.tree.clear()
        for job in sorted(self.runner.jobs.values(), key=lambda j: -j.number):
            if job.number in self.hidden:
                continue
            item = QTreeWidgetItem([str(job.number), job.label, describe(job), str(len(job.outputs))])
            item.setData(0, JOB_ROLE, job.number)
            item.setForeground(2, QColor(STATUS_COLORS.get(job.status, "#e0e0e0")))
            if job.info.get("error") or job.info.get("failures"):
                item.setToolTip(2, "\n".join([job.info.get("error", "")] + list(job.info.get("failures") or [])))
            self.tree.addTopLevelItem(item)
            if job.number == selected:
                item.setSelected(True)
        self._update_buttons()

    def rows(self) -> list[tuple[int, str]]:
        """(job number, state) as listed, newest first (for tests and the status bar)."""
        return [(int(self.tree.topLevelItem(i).text(0)), self.runner.jobs[int(self.tree.topLevelItem(i).text(0))].status)
                for i in range(self.tree.topLevelItemCount())]

    def select_job(self, number: int) -> None:
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            item.setSelected(item.data(0, JOB_ROLE) == number)

    def selected_job(self) -> int | None:
        items = self.tree.selectedItems() if hasattr(self, "tree") else []
        return items[0].data(0, JOB_ROLE) if items else None

    def cancel_selected(self) -> bool:
        number = self.selected_job()
        return number is not None and self.runner.cancel_job(number)

    def clear_finished(self) -> None:
        self.hidden |= {n for n, j in self.runner.jobs.items() if j.status in ("done", "failed", "cancelled")}
        self.refresh()

    def _update_buttons(self) -> None:
        number = self.selected_job()
        job = self.runner.jobs.get(number) if number is not None else None
        self.cancel_button.setEnabled(job is not None and job.status in ("pending", "running"))
        self.cancel_all_button.setEnabled(any(j.status in ("pending", "running") for j in self.runner.jobs.values()))
