"""Sweeps from the editor: run the open graph over a list or range of one or two widgets' values
(seeds first in the list), results shown as a grid in the gallery.

The value syntax is the one ``python main.py sweep --over NODE.INPUT=SPEC`` uses:

* ``1..8``       every integer from 1 to 8 (both ends included)
* ``1..100:10``  from 1 to 100 in steps of 10 (1, 11, ... 91); floats work too (``0.5..1:0.25``)
* ``a,b,c``      a list (numbers, names, choices)
* ``random:N``   N random seeds (recorded in the sweep's manifest, so a re-run uses the same ones)

The dialog checks what is typed as it is typed (:func:`parse_spec`: the shared spec syntax of
:mod:`nodegen.runtime.sweep.specs` plus the input's type and range) and hands the window the
``NODE.INPUT=SPEC`` items and the output folder. The sweep itself runs through the same core as the
sweep command (:mod:`nodegen.runtime.sweep`), on the editor's engine: see ``run_view.run_sweep``.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QVBoxLayout,
)

from nodegen.runtime.sweep.axes import SweepError
from nodegen.runtime.sweep.specs import SpecError
from nodegen.runtime.sweep.specs import expand as expand_spec

#: more jobs than this need a confirmation in the dialog (the OK button says how many)
MAX_JOBS = 1000


@dataclass
class Axis:
    node_id: str
    input: str
    spec: str  # as typed
    values: list  # for the count shown in the dialog; the sweep expands ``spec`` itself
    ref: str = ""  # the NODE of NODE.INPUT: see node_ref()

    @property
    def key(self) -> str:
        return f"{self.ref or self.node_id}.{self.input}"

    @property
    def over(self) -> str:
        """The ``NODE.INPUT=SPEC`` item of the sweep command."""
        return f"{self.key}={self.spec.strip()}"


def _number(text: str, spec: dict, where: str):
    kind = spec.get("widget")
    try:
        if kind in ("int", "seed"):
            f = float(text)
            if f != int(f):
                raise ValueError
            return int(f)
        return float(text)
    except ValueError:
        raise SweepError(f"{where}: {text!r} is not a{'n integer' if kind in ('int', 'seed') else ' number'}") from None


def _cast(text: str, spec: dict, where: str):
    kind = spec.get("widget")
    text = text.strip()
    if kind in ("int", "seed", "float"):
        return _number(text, spec, where)
    if kind == "bool":
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise SweepError(f"{where}: {text!r} is not true or false")
    return text


def _check(value, spec: dict, where: str) -> None:
    lo, hi = spec.get("min"), spec.get("max")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if lo is not None and value < lo or hi is not None and value > hi:
            raise SweepError(f"{where}: {value} is outside {lo}..{hi}")
    choices = spec.get("choices")
    if choices and spec.get("widget") == "choice" and value not in choices:
        raise SweepError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")


def parse_spec(text: str, spec: dict, where: str = "value", rng: random.Random | None = None) -> list:
    """The values a sweep spec stands for, typed and checked for the input ``spec`` (its widget
    kind, min/max, choices). The spec syntax is the sweep command's
    (:func:`nodegen.runtime.sweep.specs.expand`); the editor adds the input's type and range.
    ``where`` names the input in errors."""
    text = text.strip()
    if not text:
        raise SweepError(f"{where}: no values given")
    kind = spec.get("widget")
    if text.startswith("random:") and kind not in ("int", "seed"):
        raise SweepError(f"{where}: random:N needs an integer input and N >= 1")
    if ".." in text and kind == "float" and ":" not in text:
        raise SweepError(f"{where}: a float range needs a step, e.g. {text}:0.1")
    try:
        texts = expand_spec(text, rng=rng)
    except SpecError as e:
        raise SweepError(f"{where}: {e}") from None
    values = [_cast(part, spec, where) for part in texts if part.strip()]
    for v in values:
        _check(v, spec, where)
    return values


def node_ref(doc: dict, nid: str) -> str:
    """How a sweep names a node: its title when no other node has it (``Sampler.seed``, as one
    types it for ``main.py sweep``, so the command and the editor find each other's jobs in a
    folder), else its id."""
    nodes = doc.get("nodes", {})
    title = nodes.get(nid, {}).get("title")
    if not title or "." in title or title in nodes:
        return nid
    return title if sum(1 for n in nodes.values() if n.get("title") == title) == 1 else nid


def caption(combination: dict, titles: dict[str, str]) -> str:
    """``seed=3  cfg=5.0`` (input names, with the node title when two axes share a name)."""
    names = [k.rpartition(".")[2] for k in combination]
    parts = []
    for key, value in combination.items():
        nid, _, name = key.rpartition(".")
        label = name if names.count(name) == 1 else f"{titles.get(nid, nid)}.{name}"
        parts.append(f"{label}={value}")
    return "  ".join(parts)


def default_folder(output_dir: str | Path, doc: dict, graph_path: Path | None, axes: list[Axis]) -> Path:
    """Where a sweep of ``doc`` over ``axes`` writes: ``OUTPUT/sweeps/<graph>-<inputs>-<hash>``. The
    hash is of the graph without its layout and without the swept inputs' own values, so the same
    sweep of the same graph finds its folder again (and resumes), while a sweep of an edited graph
    gets a folder of its own instead of taking the old images for its jobs."""
    swept = {(a.node_id, a.input) for a in axes}
    nodes = {}
    for nid, n in doc.get("nodes", {}).items():
        inputs = {k: v for k, v in (n.get("inputs") or {}).items() if (nid, k) not in swept}
        nodes[nid] = {"type": n.get("type"), "type_version": n.get("type_version"), "inputs": inputs}
    digest = hashlib.sha1(json.dumps(nodes, sort_keys=True, default=str).encode()).hexdigest()[:8]
    stem = graph_path.stem if graph_path is not None else "untitled"
    names = "-".join(a.input for a in axes)
    return Path(output_dir) / "sweeps" / f"{stem}-{names}-{digest}"


def sweepable_inputs(doc: dict, schema) -> list[tuple[str, str, dict, str]]:
    """(node id, input, spec, label) of every literal widget input in the graph, seeds first."""
    rows = []
    for nid, n in doc.get("nodes", {}).items():
        info = schema.get(n.get("type", ""))
        if info is None:
            continue
        linked = {k for k, v in (n.get("inputs") or {}).items() if isinstance(v, dict)}
        for spec in info.inputs:
            if spec.get("widget") in (None, "readonly", "file", "multiline") or spec["name"] in linked:
                continue
            title = n.get("title") or info.title
            rows.append((nid, spec["name"], spec, f"{title} ({nid}) \u00b7 {spec['name']}"))
    rows.sort(key=lambda r: (r[2].get("widget") != "seed", r[1] != "seed"))
    return rows


class SweepDialog(QDialog):
    """Pick one or two widgets and their values, and the output folder; ``axes()`` and
    ``folder()`` give what to run."""

    def __init__(self, doc: dict, schema, parent=None, preset: tuple[str, str] | None = None, *,
                 output_dir: str | Path = "output", graph_path: Path | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sweep")
        self.doc = doc
        self.output_dir, self.graph_path = output_dir, graph_path
        self.rows = sweepable_inputs(doc, schema)
        form = QFormLayout()
        self.first, self.first_values = QComboBox(), QLineEdit()
        self.second, self.second_values = QComboBox(), QLineEdit()
        self.second.addItem("(none)", None)
        for i, row in enumerate(self.rows):
            label = row[3]
            self.first.addItem(label, i)
            self.second.addItem(label, i)
        if preset is not None:
            for i, (nid, name, _spec, _label) in enumerate(self.rows):
                if (nid, name) == preset:
                    self.first.setCurrentIndex(i)
        self.first_values.setPlaceholderText("1..8   1..100:10   a,b,c   random:4")
        self.second_values.setPlaceholderText("(optional second axis: a grid)")
        form.addRow("Sweep", self.first)
        form.addRow("over", self.first_values)
        form.addRow("and", self.second)
        form.addRow("over", self.second_values)
        self.folder_edit = QLineEdit()
        self.folder_edit.setToolTip("The sweep's images, sweep.jsonl and grid.png go here; the same sweep "
                                    "into the same folder resumes (finished jobs are not run again)")
        browse = QToolButton(text="\u2026")
        browse.clicked.connect(self.browse_folder)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        form.addRow("into", row)
        self._folder_typed = False
        self.folder_edit.textEdited.connect(lambda _: setattr(self, "_folder_typed", True))
        self.summary = QLabel()
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.button(QDialogButtonBox.Ok).setText("Run sweep")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.summary)
        lay.addWidget(self.buttons)
        for w in (self.first_values, self.second_values):
            w.textChanged.connect(self.update_summary)
        for w in (self.first, self.second):
            w.currentIndexChanged.connect(self.update_summary)
        self.update_summary()

    def _axis(self, combo: QComboBox, edit: QLineEdit) -> Axis | None:
        i = combo.currentData()
        if i is None:
            return None
        nid, name, spec, label = self.rows[i]
        return Axis(nid, name, edit.text(), parse_spec(edit.text(), spec, label), node_ref(self.doc, nid))

    def folder(self) -> Path:
        """The output folder: as typed, else the default for the chosen inputs."""
        typed = self.folder_edit.text().strip()
        return Path(typed).expanduser() if typed else default_folder(self.output_dir, self.doc, self.graph_path, self.axes())

    def browse_folder(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Sweep output folder", self.folder_edit.text())
        if chosen:
            self.folder_edit.setText(chosen)
            self._folder_typed = True

    def axes(self) -> list[Axis]:
        """The chosen axes (raises SweepError with a message for the user)."""
        first = self._axis(self.first, self.first_values)
        if first is None:
            raise SweepError("the graph has no widget to sweep")
        axes = [first]
        if self.second.currentData() is not None and self.second_values.text().strip():
            second = self._axis(self.second, self.second_values)
            if second.key == first.key:
                raise SweepError("choose two different inputs")
            axes.append(second)
        return axes

    def update_summary(self) -> None:
        ok = self.buttons.button(QDialogButtonBox.Ok)
        try:
            axes = self.axes()
        except SweepError as e:
            self.summary.setText(str(e))
            ok.setEnabled(False)
            return
        n = 1
        for a in axes:
            n *= len(a.values)
        if not self._folder_typed:
            self.folder_edit.setText(str(default_folder(self.output_dir, self.doc, self.graph_path, axes)))
        self.summary.setText(f"{n} run(s)" + (" \u2014 that is a lot" if n > MAX_JOBS else ""))
        ok.setEnabled(n > 0)
