"""Sweeps from the editor: run the open graph over a list or range of any widget's values (seeds
first in the list), one queued job per combination, results shown as a grid in the gallery.

The value syntax is the one ``python main.py sweep --over NODE.INPUT=SPEC`` uses:

* ``1..8``       every integer from 1 to 8 (both ends included)
* ``1..100:10``  from 1 to 100 in steps of 10 (1, 11, ... 91); floats work too (``0.5..1:0.25``)
* ``a,b,c``      a list (numbers, names, choices)
* ``random:N``   N random seeds

The spec syntax is parsed by :mod:`nodegen.runtime.sweep.specs`, the same code the sweep command
uses; :func:`parse_spec` adds the input's type and range, :func:`expand` the combinations (first
axis slowest). The jobs run through the editor's own queue (one warm engine), not through the
sweep command's worker processes.
"""

from __future__ import annotations

import copy
import itertools
import random
from dataclasses import dataclass

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
)

from nodegen.runtime.sweep.specs import SpecError
from nodegen.runtime.sweep.specs import expand as expand_spec

#: more jobs than this need a confirmation in the dialog (the OK button says how many)
MAX_JOBS = 1000


class SweepError(ValueError):
    pass


@dataclass
class Axis:
    node_id: str
    input: str
    values: list

    @property
    def key(self) -> str:
        return f"{self.node_id}.{self.input}"


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


def expand(axes: list[Axis]) -> list[dict]:
    """Every combination of the axes' values, first axis slowest: ``[{"3.seed": 1, ...}, ...]``."""
    keys = [a.key for a in axes]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*[a.values for a in axes])]


def apply(doc: dict, combination: dict) -> dict:
    """A copy of ``doc`` with the combination's values set (links on those inputs are replaced)."""
    out = copy.deepcopy(doc)
    for key, value in combination.items():
        nid, _, name = key.partition(".")
        out["nodes"][nid].setdefault("inputs", {})[name] = value
    return out


def caption(combination: dict, titles: dict[str, str]) -> str:
    """``seed=3  cfg=5.0`` (input names, with the node title when two axes share a name)."""
    names = [k.partition(".")[2] for k in combination]
    parts = []
    for key, value in combination.items():
        nid, _, name = key.partition(".")
        label = name if names.count(name) == 1 else f"{titles.get(nid, nid)}.{name}"
        parts.append(f"{label}={value}")
    return "  ".join(parts)


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
    """Pick one or two widgets and their values; ``axes()`` gives what to run."""

    def __init__(self, doc: dict, schema, parent=None, preset: tuple[str, str] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sweep")
        self.doc = doc
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
        self.summary = QLabel()
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.button(QDialogButtonBox.Ok).setText("Queue runs")
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
        self._seed = random.randrange(2**31)  # random:N gives the same values in summary and run
        self.update_summary()

    def _axis(self, combo: QComboBox, edit: QLineEdit) -> Axis | None:
        i = combo.currentData()
        if i is None:
            return None
        nid, name, spec, label = self.rows[i]
        return Axis(nid, name, parse_spec(edit.text(), spec, label, random.Random(f"{self._seed}{nid}{name}")))

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
        self.summary.setText(f"{n} run(s)" + (" \u2014 that is a lot" if n > MAX_JOBS else ""))
        ok.setEnabled(n > 0)
