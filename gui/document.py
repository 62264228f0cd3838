"""The document model: a :class:`nodegen.kernel.workflow.Workflow` (its JSON dict is the truth) plus the
undo stack, with Qt signals telling views what changed.

Views never change ``data`` themselves: every edit is a command from :mod:`gui.commands`, and
commands change the document only through :meth:`Document.apply_state`, which emits the signals.
Unknown fields anywhere in the document are kept as they are.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from nodegen.kernel.workflow import Workflow, is_link, new_document

#: ``apply_state(groups=ABSENT)`` removes the ``groups`` key (restoring a document that had none).
ABSENT = "__absent__"


class Document(QObject):
    #: node ids added / removed / changed (inputs, title, mode, ui), in one batch per edit
    nodesAdded = Signal(list)
    nodesRemoved = Signal(list)
    nodesChanged = Signal(list)
    groupsChanged = Signal()
    #: the whole document was replaced (open / new)
    reset = Signal()
    pathChanged = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workflow = Workflow(new_document())
        self.undo_stack = QUndoStack(self)
        #: modified without an undo step (a restored recovery file)
        self.dirty = False
        #: tells copies from this document apart from copies from others (node ids only mean
        #: the same node inside one document)
        self.token = uuid.uuid4().hex

    # -- access ------------------------------------------------------------------------
    @property
    def data(self) -> dict:
        return self.workflow.data

    @property
    def nodes(self) -> dict[str, dict]:
        return self.workflow.nodes

    @property
    def groups(self) -> list[dict]:
        return self.data.get("groups", [])

    @property
    def path(self) -> Path | None:
        return self.workflow.path

    def node(self, nid: str) -> dict:
        return self.nodes[nid]

    def next_id(self, taken: set[str] | None = None) -> str:
        numeric = [int(k) for k in list(self.nodes) + list(taken or ()) if k.isdigit()]
        return str(max(numeric, default=0) + 1)

    def ui(self, nid: str) -> dict:
        return self.nodes[nid].get("ui") or {}

    def consumers(self, nid: str) -> list[str]:
        """Ids of the nodes with an input linked to an output of ``nid``."""
        return [other for other, n in self.nodes.items()
                if any(is_link(v) and str(v["from"][0]) == nid for v in (n.get("inputs") or {}).values())]

    def links(self):
        return self.workflow.links()

    @property
    def modified(self) -> bool:
        return self.dirty or not self.undo_stack.isClean()

    def snapshot(self) -> dict:
        """A deep copy of the document (for a run, a test or the clipboard)."""
        return copy.deepcopy(self.data)

    # -- whole-document operations (not undoable) --------------------------------------
    def set_workflow(self, wf: Workflow) -> None:
        self.workflow = wf
        self.dirty = False
        self.undo_stack.clear()
        self.pathChanged.emit()  # first: views resolve relative files against the new folder
        self.reset.emit()

    def new(self) -> None:
        self.set_workflow(Workflow(new_document()))

    def open(self, path: str | Path) -> None:
        """Load a workflow ``.json`` or a PNG that embeds one (raises WorkflowError)."""
        from nodegen.formats import open_any

        self.set_workflow(open_any(path))

    def save(self, path: str | Path | None = None) -> Path:
        target = self.workflow.save(path)
        self.dirty = False
        self.undo_stack.setClean()
        self.pathChanged.emit()
        return target

    def to_json(self) -> str:
        return self.workflow.to_json()

    def dumps(self) -> str:
        return json.dumps(self.data, sort_keys=True)

    # -- the one way commands change the document --------------------------------------
    def apply_state(self, nodes: dict[str, dict | None], order: list[str] | None = None,
                    groups: list | None = None) -> None:
        """Set the given nodes to the given dicts (None removes), put the node map into ``order``
        (when given), replace the groups (when given), then tell the views."""
        current = self.nodes
        added, removed, changed = [], [], []
        for nid, state in nodes.items():
            if state is None:
                if nid in current:
                    del current[nid]
                    removed.append(nid)
            else:
                (changed if nid in current else added).append(nid)
                current[nid] = copy.deepcopy(state)
        if order is not None and list(current) != order:
            ordered = {k: current[k] for k in order if k in current}
            ordered.update({k: v for k, v in current.items() if k not in ordered})
            current.clear()
            current.update(ordered)
        if groups is ABSENT:
            self.data.pop("groups", None)
        elif groups is not None:
            self.data["groups"] = copy.deepcopy(groups)
        if removed:
            self.nodesRemoved.emit(removed)
        if added:
            self.nodesAdded.emit(added)
        if changed:
            self.nodesChanged.emit(changed)
        if groups is not None:
            self.groupsChanged.emit()
