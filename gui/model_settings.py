"""Model folders from the editor: a dialog that edits the models roots and the extra search paths
in the same config file the command line reads (:func:`nodegen.models.paths.config_file`), and a
rescan that makes the running engine see the change (model choices, missing-model marks).

Keys of the config file this dialog does not know are kept as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from nodegen.kernel.atomic import atomic_write_text
from nodegen.models.paths import KINDS, ModelPaths, config_file


def read_config() -> dict:
    """The config file as a dict ({} when there is none)."""
    path = config_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the nodegen config file {path}: {e}") from e
    return data if isinstance(data, dict) else {}


def write_config(roots: list[str], extra: dict[str, list[str]]) -> Path:
    """Store the models roots and extra paths (other keys kept); returns the file written."""
    path = config_file()
    try:
        data = read_config()
    except ValueError:
        data = {}
    data["models"] = [str(r) for r in roots]
    data["extra_paths"] = {k: [str(p) for p in v] for k, v in extra.items() if v}
    if not data["extra_paths"]:
        data.pop("extra_paths")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path


def session_roots(paths: ModelPaths) -> list[Path]:
    """The roots given to this session (``--models``), without those from the environment and the
    config file, which a rescan reads again."""
    from_config = ModelPaths((), use_env=True, use_config=True)
    return [r for r in paths.roots if r not in from_config.roots]


def rescan(engine, cli_roots: list[Path]) -> ModelPaths:
    """Re-read the model folders (environment and config file) into the running engine."""
    paths = ModelPaths(cli_roots)
    engine.env.paths = paths
    return paths


class ModelSettingsDialog(QDialog):
    """Models roots (each with checkpoints/, loras/...) and extra folders per model kind."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Model folders")
        self.resize(640, 420)
        cfg = read_config()
        self.roots = QListWidget()
        self.roots.addItems([str(r) for r in cfg.get("models", [])])
        self.extra = QTableWidget(0, 2)
        self.extra.setHorizontalHeaderLabels(["kind", "folder"])
        self.extra.horizontalHeader().setStretchLastSection(True)
        for kind, dirs in (cfg.get("extra_paths") or {}).items():
            for d in dirs:
                self.add_extra(kind, str(d))
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(f"Stored in {config_file()} (the command line reads it too)."))
        lay.addWidget(QLabel("Models roots: folders holding checkpoints/, vae/, loras/, controlnet/, "
                             "upscale_models/, style_models/"))
        lay.addWidget(self.roots)
        row = QHBoxLayout()
        for text, fn in (("Add root\u2026", self._browse_root), ("Remove root", self._remove_root)):
            b = QPushButton(text)
            b.clicked.connect(fn)
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addWidget(QLabel("Extra folders for one kind of model (e.g. another tool's model folders)"))
        lay.addWidget(self.extra)
        row = QHBoxLayout()
        for text, fn in (("Add folder\u2026", self._browse_extra), ("Remove folder", self._remove_extra)):
            b = QPushButton(text)
            b.clicked.connect(fn)
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)
        buttons = QDialogButtonBox(QDialogButtonBox.Cancel)
        self.rescan_button = buttons.addButton("Save and rescan", QDialogButtonBox.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

    # -- editing -------------------------------------------------------------------------
    def add_root(self, path: str) -> None:
        self.roots.addItem(path)

    def add_extra(self, kind: str, path: str) -> None:
        row = self.extra.rowCount()
        self.extra.insertRow(row)
        combo = QComboBox()
        combo.addItems(list(KINDS))
        combo.setCurrentText(kind)
        self.extra.setCellWidget(row, 0, combo)
        self.extra.setItem(row, 1, QTableWidgetItem(path))

    def values(self) -> tuple[list[str], dict[str, list[str]]]:
        roots = [self.roots.item(i).text() for i in range(self.roots.count()) if self.roots.item(i).text()]
        extra: dict[str, list[str]] = {}
        for row in range(self.extra.rowCount()):
            kind = self.extra.cellWidget(row, 0).currentText()
            item = self.extra.item(row, 1)
            if item is not None and item.text().strip():
                extra.setdefault(kind, []).append(item.text().strip())
        return roots, extra

    def save(self) -> Path:
        return write_config(*self.values())

    def _browse_root(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Models root")
        if d:
            self.add_root(d)

    def _remove_root(self) -> None:
        for item in self.roots.selectedItems():
            self.roots.takeItem(self.roots.row(item))

    def _browse_extra(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Model folder")
        if d:
            self.add_extra("checkpoints", d)

    def _remove_extra(self) -> None:
        rows = sorted({i.row() for i in self.extra.selectedIndexes()}, reverse=True)
        for r in rows:
            self.extra.removeRow(r)


def flag_missing_models(window) -> list:
    """Validate the open graph and show its missing files (models, images) on the inputs and in
    the Problems panel, as a run would, without running anything. Returns those problems."""
    plan = window.runner.validate(window.doc.data)
    missing = [p for p in plan.problems + plan.warnings if p.code == "missing_file"]
    by_node: dict[str, list] = {}
    for p in missing:
        if p.node_id is not None:
            by_node.setdefault(str(p.node_id), []).append(p)
    for nid, item in window.scene.items_by_id.items():
        item.set_problems(by_node.get(nid, []))
    return missing

