"""Mouse handling on the canvas scene: drag wires between ports (compatible targets highlight,
incompatible ones are refused with a reason), re-drag a wire to move it or drag it out to remove
it, Shift-drag an output to move all its wires to another output (as in ComfyUI), drop a wire on
a node's body to connect its first fitting port, drop it on empty canvas to search for a node,
and record node moves as one undo step."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt

from . import commands
from .edge_item import DragWire


class WireDrag:
    def __init__(self, item, side: str, name: str, type_name: str, detached=None) -> None:
        self.item, self.side, self.name, self.type = item, side, name, type_name
        self.detached = detached  # (dst id, input) of a wire picked up from an input
        self.wire: DragWire | None = None
        #: Shift-drag of an output: its wires, (dst id, input), carried to another output
        self.carried: list[tuple[str, str]] = []
        self.source: tuple[str, str] | None = None  # the output they come from
        self.extra_wires: list[DragWire] = []  # the drawn wires of carried[1:]


class WiringMixin:
    def __init__(self) -> None:
        self._wire: WireDrag | None = None

    # -- queries the items use while painting -------------------------------------------
    def drag_info(self):
        w = self._wire
        return None if w is None else (w.item, w.side, w.name, w.type)

    def node_at(self, pos: QPointF):
        from .node_item import NodeItem

        for it in self.items(pos):
            if isinstance(it, NodeItem):
                return it
        return None

    def port_at(self, pos: QPointF):
        """(item, side, name) of the port (or widget row, as "widget") under a scene point."""
        item = self.node_at(pos)
        if item is None:
            return None
        h = item.hit(item.mapFromScene(pos))
        if h and h[0] in ("in", "out", "widget"):
            return item, h[0], h[1]
        return None

    def check_link(self, drag, item, side: str, name: str) -> tuple[bool, str]:
        """Can the wire being dragged end on this port? (ok, reason when not)."""
        src_item, src_side, src_name, src_type = drag
        if side == "widget":
            spec = item.info.input(name) or {}
            if spec.get("widget") in (None, "readonly"):
                return False, f"input {name!r} cannot take a link"
            side = "in"
        if item is src_item:
            return False, "a node cannot connect to itself"
        if side == src_side:
            return False, f"connect an {'output' if side == 'in' else 'input'} to an {'input' if side == 'in' else 'output'}"
        t = item.port_type(side, name)
        out_t, in_t = (src_type, t) if src_side == "out" else (t, src_type)
        out_name, in_name = (src_name, name) if src_side == "out" else (name, src_name)
        if not self.schema.compatible(out_t, in_t):
            return False, (f"cannot connect: output {out_name!r} gives {out_t}, but input {in_name!r} "
                           f"expects {in_t}")
        return True, ""

    def can_accept(self, drag, item, side: str, name: str) -> bool:
        return self.check_link(drag, item, side, name)[0]

    # -- wire dragging -------------------------------------------------------------------
    def start_carry(self, item, name: str) -> bool:
        """Shift-press on an output with wires: pick all of them up by their source end (drop
        them on another output to move them there). False when the output has no wires."""
        links = sorted(key for key, e in self.edges.items() if e.src == item.nid and e.output == name)
        if not links:
            return False
        first = links[0]
        dst = self.items_by_id[first[0]]
        self._wire = WireDrag(dst, "in", first[1], dst.port_type("in", first[1]))
        self._wire.carried, self._wire.source = links, (item.nid, name)
        for i, (d, inp) in enumerate(links):
            self.edges[(d, inp)].hide()
            anchor = self.items_by_id[d].port_scene_pos("in", inp)
            wire = DragWire(anchor, "in", self.schema.color(self.items_by_id[d].port_type("in", inp)))
            wire.move_to(item.port_scene_pos("out", name))
            self.addItem(wire)
            if i == 0:
                self._wire.wire = wire
            else:
                self._wire.extra_wires.append(wire)
        self.message.emit(f"moving {len(links)} wire(s) from {name}: drop them on another output")
        self._repaint_nodes()
        return True

    def _finish_carry(self, w: WireDrag, target) -> None:
        """Drop carried wires: on a compatible output they all move there as one undo step;
        anywhere else they stay where they were."""
        if target is None or target[1] != "out" or (target[0].nid, target[2]) == w.source:
            return
        item, _, name = target
        for dst, inp in w.carried:
            dst_item = self.items_by_id[dst]
            ok, reason = self.check_link((dst_item, "in", inp, dst_item.port_type("in", inp)), item, "out", name)
            if not ok:
                self.message.emit(reason)
                return
        self.doc.undo_stack.beginMacro(f"Move {len(w.carried)} wire(s) to {name}")
        for dst, inp in w.carried:
            self.push(commands.connect(self.doc, item.nid, name, dst, inp))
        self.doc.undo_stack.endMacro()
        self.message.emit(f"moved {len(w.carried)} wire(s) to {item.title}.{name}")

    def start_wire(self, item, side: str, name: str) -> None:
        detached = None
        if side == "in":
            v = (self.doc.nodes[item.nid].get("inputs") or {}).get(name)
            edge = self.edges.get((item.nid, name))
            if edge is not None and isinstance(v, dict):
                src_item = self.items_by_id[edge.src]
                detached = (item.nid, name)
                edge.hide()
                item, side, name = src_item, "out", edge.output
        self._wire = WireDrag(item, side, name, item.port_type(side, name), detached)
        anchor = item.port_scene_pos(side, name)
        self._wire.wire = DragWire(anchor, side, self.schema.color(self._wire.type))
        self._wire.wire.move_to(anchor)
        self.addItem(self._wire.wire)
        self._repaint_nodes()

    def cancel_wire(self) -> None:
        w = self._wire
        if w is None:
            return
        self._wire = None
        for wire in [w.wire, *w.extra_wires]:
            if wire is not None and wire.scene() is self:
                self.removeItem(wire)
        for key in [w.detached] if w.detached else w.carried:
            e = self.edges.get(key)
            if e is not None:
                e.show()
        self._repaint_nodes()

    def _repaint_nodes(self) -> None:
        for it in self.items_by_id.values():
            it.update()

    def finish_wire(self, pos: QPointF) -> None:
        w = self._wire
        drag = self.drag_info()
        target = self.port_at(pos)
        self.cancel_wire()
        if w.carried:
            self._finish_carry(w, target)
            return
        body = self.node_at(pos) if target is None else None
        if body is w.item and body is not None:  # let go over its own node: nothing changes
            return
        if body is not None:  # dropped on a node, not on a port
            target = self.port_for_drop(drag, body)
            if target is None:
                need = "input" if w.side == "out" else "output"
                self.message.emit(f"{body.title} has no {need} for {w.type}")
                return
        doc = self.doc
        if target is not None and target[0] is not w.item:
            item, side, name = target
            ok, reason = self.check_link(drag, item, side, name)
            if not ok:
                self.message.emit(reason)
                return
            if w.side == "out":
                src, out, dst, inp = w.item.nid, w.name, item.nid, name
            else:
                src, out, dst, inp = item.nid, name, w.item.nid, w.name
            make_port = side == "widget"
            if w.detached and w.detached != (dst, inp):
                doc.undo_stack.beginMacro("Move wire")
                self.push(self.disconnect_cmd(*w.detached))
                self.push(commands.connect(doc, src, out, dst, inp, make_port))
                doc.undo_stack.endMacro()
            elif not w.detached or w.detached != (dst, inp):
                self.push(commands.connect(doc, src, out, dst, inp, make_port))
            self.message.emit(f"connected {out} \u2192 {inp}")
            return
        if target is not None:  # dropped back on its own node
            return
        if w.detached:
            self.push(self.disconnect_cmd(*w.detached))
            self.message.emit(f"removed the link into {w.detached[1]}")
            return
        filt = {"accepts": w.type} if w.side == "out" else {"produces": w.type}
        filt.update(node=w.item.nid, side=w.side, port=w.name)
        self.wireDropped.emit(pos, filt)

    def port_for_drop(self, drag, item):
        """Where a wire dropped on ``item``'s body goes (as in ComfyUI): for a dragged output the
        first free input that takes it (else the first taken one, else a widget that can become
        an input); for a dragged input the first output that fits. None when nothing fits."""
        if drag[1] == "out":
            ports = [("in", s["name"]) for s in item.in_ports]
            free = [p for p in ports if (item.nid, p[1]) not in self.edges]
            widgets = [("widget", s["name"]) for s in item.widget_rows]
            candidates = free + [p for p in ports if p not in free] + widgets
        else:
            candidates = [("out", o["name"]) for o in item.outputs]
        for side, name in candidates:
            if self.check_link(drag, item, side, name)[0]:
                return item, side, name
        return None

    def disconnect_cmd(self, dst: str, input_name: str):
        """The undo command removing the wire into ``dst.input_name`` (a widget input that had
        been turned into a port gets its default value back)."""
        item = self.items_by_id[dst]
        spec = item.info.input(input_name) or {}
        restore = None
        if spec.get("widget") not in (None, "readonly") and "default" in spec:
            ports = (self.doc.nodes[dst].get("ui") or {}).get("ports") or []
            if input_name not in ports:
                restore = spec["default"]
        return commands.disconnect(self.doc, dst, input_name, restore)

    def connect_new_node(self, nid: str, filt: dict) -> None:
        """After the search from a dropped wire added node ``nid``: connect it (one macro with
        the add, see MainWindow.add_node_from_search)."""
        item = self.items_by_id.get(nid)
        if item is None or "node" not in filt:
            return
        if "accepts" in filt:
            name = self.schema.first_input_for(item.info, filt["accepts"])
            if name is not None:
                spec = item.info.input(name) or {}
                self.push(commands.connect(self.doc, filt["node"], filt["port"], nid, name,
                                           spec.get("widget") is not None))
        else:
            name = self.schema.first_output_for(item.info, filt["produces"])
            if name is not None:
                self.push(commands.connect(self.doc, nid, name, filt["node"], filt["port"]))

    # -- Qt events -------------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:  # noqa: N802
        if self.press is not None or self.mouseGrabberItem() is not None:
            self.release_grab()  # the release of an earlier press never came: start afresh
        if event.button() == Qt.LeftButton and self._wire is None:
            hit = self.port_at(event.scenePos())
            if hit is not None and hit[1] == "out" and event.modifiers() & Qt.ShiftModifier \
                    and self.start_carry(hit[0], hit[2]):
                event.accept()
                return
            if hit is not None and hit[1] in ("in", "out"):
                self.start_wire(*hit)
                event.accept()
                return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._wire is not None:
            for wire in [self._wire.wire, *self._wire.extra_wires]:
                wire.move_to(event.scenePos())
            target = self.port_at(event.scenePos())
            if target is not None and target[0] is not self._wire.item:
                ok, reason = self.check_link(self.drag_info(), *target)
                self.message.emit("release to connect" if ok else reason)
            event.accept()
            return
        if self.press is not None and not event.buttons() & Qt.LeftButton:
            self.release_grab()  # the button went up where we did not see it
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._wire is not None:
            self.finish_wire(event.scenePos())
            event.accept()
            return
        if event.button() != Qt.LeftButton:
            super().mouseReleaseEvent(event)
            return
        # taken first: the release ungrabs the item, and that must not count as a lost grab
        press, self.press = self.press, None
        super().mouseReleaseEvent(event)
        if press is not None:
            self._record(press.moved(self.items_by_id))

    def focusOutEvent(self, event) -> None:  # noqa: N802
        self.release_grab()
        super().focusOutEvent(event)
