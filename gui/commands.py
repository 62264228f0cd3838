"""Every edit of the document as a ``QUndoCommand``.

Each command records the full before/after state of the nodes it touches (and of the groups when it
changes them), so undo and redo give back exactly the same document dict, unknown fields included.
Commands are built by the functions below (``add_node``, ``delete_nodes``, ``connect``...), which
work out which nodes an edit touches.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable

from PySide6.QtGui import QUndoCommand

from nodegen.kernel.workflow import is_link, link

from .document import ABSENT, Document

MOVE_ID = 1
VALUE_ID = 2
_sessions = itertools.count(1)


def new_session() -> int:
    """A fresh merge key for one slider/spin drag (commands with the same key merge)."""
    return next(_sessions)


class SnapshotCommand(QUndoCommand):
    """Change some nodes (and maybe the groups) with ``mutate(doc_data)``; undo restores them."""

    def __init__(self, doc: Document, text: str, nids: Iterable[str], mutate: Callable[[dict], None],
                 *, groups: bool = False, merge_id: int = -1, merge_key=None) -> None:
        super().__init__(text)
        self.doc = doc
        self.nids = list(dict.fromkeys(nids))
        self._mutate = mutate
        self._merge_id = merge_id
        self.merge_key = merge_key
        self.touch_groups = groups
        self.before = {nid: copy.deepcopy(doc.nodes.get(nid)) for nid in self.nids}
        self.order_before = list(doc.nodes)
        self.groups_before = copy.deepcopy(doc.data["groups"]) if "groups" in doc.data else ABSENT
        self.after: dict | None = None

    def id(self) -> int:  # noqa: A003 - Qt API
        return self._merge_id

    def redo(self) -> None:
        if self.after is None:
            data = copy.deepcopy({k: self.doc.nodes.get(k) for k in self.nids})
            work = {"nodes": {k: v for k, v in data.items() if v is not None}}
            if self.touch_groups:
                work["groups"] = copy.deepcopy(self.doc.data.get("groups", []))
            self._mutate(work)
            self.after = {nid: work["nodes"].get(nid) for nid in self.nids}
            self.order_after = [k for k in self.order_before if k in work["nodes"] or k not in self.nids]
            self.order_after += [k for k in work["nodes"] if k not in self.order_after]
            self.groups_after = work.get("groups") if self.touch_groups else None
        self.doc.apply_state(self.after, self.order_after, self.groups_after if self.touch_groups else None)

    def undo(self) -> None:
        self.doc.apply_state(self.before, self.order_before,
                             self.groups_before if self.touch_groups else None)

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt API
        if not isinstance(other, SnapshotCommand) or other.id() != self.id() or self.merge_key is None:
            return False
        if other.merge_key != self.merge_key or other.nids != self.nids:
            return False
        self.after = other.after
        self.order_after = other.order_after
        self.groups_after = other.groups_after
        if self.after == self.before and (not self.touch_groups or self.groups_after == self.groups_before):
            self.setObsolete(True)
        return True


# -- builders -----------------------------------------------------------------------------------

def add_node(doc: Document, type_name: str, pos: tuple[float, float], inputs: dict | None = None,
             *, nid: str | None = None, type_version: int | None = None) -> SnapshotCommand:
    nid = nid or doc.next_id()

    def mutate(d: dict) -> None:
        n: dict = {"type": type_name}
        if type_version is not None:
            n["type_version"] = type_version
        n["inputs"] = dict(inputs or {})
        n["ui"] = {"pos": [round(pos[0]), round(pos[1])]}
        d["nodes"][nid] = n

    cmd = SnapshotCommand(doc, f"Add {type_name}", [nid], mutate)
    cmd.new_id = nid
    return cmd


def delete_nodes(doc: Document, nids: Iterable[str], text: str = "Delete") -> SnapshotCommand:
    nids = [n for n in nids if n in doc.nodes]
    gone = set(nids)
    touched = list(nids) + [c for nid in nids for c in doc.consumers(nid) if c not in gone]

    def mutate(d: dict) -> None:
        for nid in gone:
            d["nodes"].pop(nid, None)
        for n in d["nodes"].values():
            ins = n.get("inputs") or {}
            for k, v in list(ins.items()):
                if is_link(v) and str(v["from"][0]) in gone:
                    del ins[k]

    return SnapshotCommand(doc, f"{text} {len(nids)} node(s)", touched, mutate)


def move_nodes(doc: Document, positions: dict[str, tuple[float, float]],
               group_moves: dict[int, tuple[float, float]] | None = None) -> SnapshotCommand:
    def mutate(d: dict) -> None:
        for nid, (x, y) in positions.items():
            d["nodes"][nid].setdefault("ui", {})["pos"] = [round(x), round(y)]
        for gi, (x, y) in (group_moves or {}).items():
            b = d["groups"][gi]["bounding"]
            d["groups"][gi]["bounding"] = [round(x), round(y), b[2], b[3]]

    return SnapshotCommand(doc, f"Move {len(positions)} node(s)", positions, mutate,
                           groups=bool(group_moves), merge_id=MOVE_ID)


def connect(doc: Document, src: str, output: str, dst: str, input_name: str,
            make_port: bool = False) -> SnapshotCommand:
    """Link ``src.output`` into ``dst.input_name`` (replacing what was there). ``make_port``: the
    input is a literal shown as a widget; list it in ``ui.ports`` so it shows as a port."""
    def mutate(d: dict) -> None:
        node = d["nodes"][dst]
        node.setdefault("inputs", {})[input_name] = link(src, output)
        if make_port:
            ui = node.setdefault("ui", {})
            ports = list(ui.get("ports") or [])
            if input_name not in ports:
                ui["ports"] = ports + [input_name]

    return SnapshotCommand(doc, f"Connect {output} -> {input_name}", [dst], mutate)


def disconnect(doc: Document, dst: str, input_name: str, restore: object = None,
               keep: bool = False) -> SnapshotCommand:
    """Remove the link into ``dst.input_name``; ``restore`` puts a literal value back (the widget's
    default), else the input is left unset."""
    def mutate(d: dict) -> None:
        ins = d["nodes"][dst].setdefault("inputs", {})
        if restore is not None:
            ins[input_name] = restore
        else:
            ins.pop(input_name, None)

    return SnapshotCommand(doc, f"Disconnect {input_name}", [dst], mutate)


def set_value(doc: Document, nid: str, input_name: str, value, merge_key=None) -> SnapshotCommand:
    def mutate(d: dict) -> None:
        d["nodes"][nid].setdefault("inputs", {})[input_name] = value

    return SnapshotCommand(doc, f"Set {input_name}", [nid], mutate, merge_id=VALUE_ID,
                           merge_key=(nid, input_name, merge_key) if merge_key is not None else None)


def set_field(doc: Document, nids: Iterable[str], key: str, value, text: str) -> SnapshotCommand:
    """Set a top-level node field (``title``, ``mode``); None removes it."""
    def mutate(d: dict) -> None:
        for n in d["nodes"].values():
            if value is None:
                n.pop(key, None)
            else:
                n[key] = value

    return SnapshotCommand(doc, text, nids, mutate)


def set_ui(doc: Document, nids: Iterable[str], key: str, value, text: str) -> SnapshotCommand:
    """Set ``node["ui"][key]`` (``color``, ``collapsed``, ``size``, ``ports``, ``seed_control``);
    None removes it."""
    def mutate(d: dict) -> None:
        for n in d["nodes"].values():
            ui = n.setdefault("ui", {})
            if value is None:
                ui.pop(key, None)
            else:
                ui[key] = copy.deepcopy(value)

    return SnapshotCommand(doc, text, nids, mutate)


def set_seed_control(doc: Document, nid: str, input_name: str, mode: str) -> SnapshotCommand:
    def mutate(d: dict) -> None:
        ui = d["nodes"][nid].setdefault("ui", {})
        ui.setdefault("seed_control", {})[input_name] = mode

    return SnapshotCommand(doc, f"Seed control: {mode}", [nid], mutate)


def _ports(n: dict) -> list | None:
    return (n.get("ui") or {}).get("ports")


def toggle_port(doc: Document, nid: str, input_name: str, default) -> SnapshotCommand:
    """Show a literal input as a port, or back as a widget (dropping its link, restoring the
    default value when the input has none)."""
    n = doc.nodes[nid]
    ports = list(_ports(n) or [])
    to_port = input_name not in ports

    def mutate(d: dict) -> None:
        node = d["nodes"][nid]
        ui = node.setdefault("ui", {})
        ps = list(ui.get("ports") or [])
        if to_port:
            ps.append(input_name)
        else:
            ps.remove(input_name)
            ins = node.setdefault("inputs", {})
            if is_link(ins.get(input_name)):
                if default is not None:
                    ins[input_name] = default
                else:
                    ins.pop(input_name, None)
        if ps:
            ui["ports"] = ps
        else:
            ui.pop("ports", None)

    return SnapshotCommand(doc, f"{'Convert to port' if to_port else 'Convert to widget'}: {input_name}",
                           [nid], mutate)


def paste(doc: Document, fragment: dict, offset: tuple[float, float], *,
          keep_links: bool = True) -> SnapshotCommand:
    """Insert the nodes (and groups) of a workflow fragment with fresh ids; links among pasted
    nodes follow the new ids; with ``keep_links``, links to nodes outside the fragment are kept
    when the fragment was copied from this document and those nodes still exist (ComfyUI's
    Ctrl+Shift+V; its Ctrl+V drops them)."""
    taken: set[str] = set()
    mapping: dict[str, str] = {}
    for old in fragment.get("nodes", {}):
        new = doc.next_id(taken)
        mapping[old] = new
        taken.add(new)
    same_doc = (fragment.get("metadata") or {}).get("copied_from") == doc.token
    existing = set(doc.nodes) if same_doc and keep_links else set()  # in another document ids mean other nodes
    groups = fragment.get("groups") or []

    def mutate(d: dict) -> None:
        for old, n in fragment.get("nodes", {}).items():
            n = copy.deepcopy(n)
            for k, v in list((n.get("inputs") or {}).items()):
                if is_link(v):
                    src = str(v["from"][0])
                    if src in mapping:
                        n["inputs"][k] = link(mapping[src], v["from"][1])
                    elif src not in existing:
                        del n["inputs"][k]
            ui = n.setdefault("ui", {})
            x, y = (ui.get("pos") or [0, 0])[:2]
            ui["pos"] = [round(x + offset[0]), round(y + offset[1])]
            d["nodes"][mapping[old]] = n
        for g in groups:
            g = copy.deepcopy(g)
            b = list(g.get("bounding") or [0, 0, 200, 100])
            g["bounding"] = [round(b[0] + offset[0]), round(b[1] + offset[1]), b[2], b[3]]
            d.setdefault("groups", []).append(g)

    cmd = SnapshotCommand(doc, f"Paste {len(mapping)} node(s)", list(mapping.values()), mutate,
                          groups=bool(groups))
    cmd.mapping = mapping
    return cmd


def group_edit(doc: Document, text: str, mutate_groups: Callable[[list], None]) -> SnapshotCommand:
    def mutate(d: dict) -> None:
        mutate_groups(d.setdefault("groups", []))

    return SnapshotCommand(doc, text, [], mutate, groups=True)
