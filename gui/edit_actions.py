"""Editing actions of the main window: add nodes (palette, search, dropped wires, dropped
images), delete, copy/cut/paste/duplicate, align, groups, bypass/mute, collapse, colour, rename,
widget<->port, and the canvas context menu."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtWidgets import QMenu

from . import clipboard, commands
from .defaults import new_node_inputs
from .edge_item import EdgeItem
from .group_item import GroupItem
from .node_item import DEFAULT_W, ROW_H, NodeItem
from .node_paint import TITLE_H

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
COLORS = {"Default": None, "Red": "#5c2b2b", "Brown": "#4d3b29", "Green": "#2b4d33", "Blue": "#2b3d5c",
          "Purple": "#45305c", "Cyan": "#27494d", "Yellow": "#55502a", "Black": "#1a1a1a"}


class EditMixin:
    # -- adding ------------------------------------------------------------------------
    def add_node(self, type_name: str, pos: QPointF, filt: dict | None = None,
                 inputs: dict | None = None) -> str | None:
        info = self.schema.get(type_name)
        if info is None:
            self.statusBar().showMessage(f"unknown node type {type_name}", 5000)
            return None
        inputs = new_node_inputs(info, inputs, self.doc.data, self.schema, self.engine.env)
        stack = self.doc.undo_stack
        stack.beginMacro(f"Add {info.title}")
        cmd = commands.add_node(self.doc, type_name, (pos.x(), pos.y()), inputs,
                                type_version=info.data.get("version"))
        stack.push(cmd)
        if filt:
            self.scene.connect_new_node(cmd.new_id, filt)
        stack.endMacro()
        self.scene.select_ids([cmd.new_id])
        return cmd.new_id

    def add_from_search(self, type_name: str, pos: QPointF, filt: dict | None = None) -> str | None:
        """A node chosen in the quick search (double-click, Tab, a dropped wire): a node made for a
        wire dragged out of an input goes left of the drop point with its output there (it feeds
        that input); the view then scrolls so the new node is seen whole."""
        info = self.schema.get(type_name)
        if info is not None and filt and filt.get("side") == "in" and "produces" in filt:
            names = [o["name"] for o in info.outputs]
            out = self.schema.first_output_for(info, filt["produces"])
            row = names.index(out) if out in names else 0
            pos = QPointF(pos.x() - DEFAULT_W, pos.y() - (TITLE_H + 4 + row * ROW_H + ROW_H / 2))
        nid = self.add_node(type_name, pos, filt)
        item = self.scene.items_by_id.get(nid) if nid else None
        if item is not None:
            self.view.ensureVisible(item.sceneBoundingRect(), 20, 20)
        return nid

    def add_node_at_center(self, type_name: str) -> str | None:
        return self.add_node(type_name, self.view.visible_scene_rect().center())

    def add_from_palette(self, type_name: str) -> str | None:
        """The palette's double-click / Enter: add at the centre; the keyboard goes to the canvas,
        where the new node is selected (Delete removes it, Ctrl+D duplicates it...)."""
        nid = self.add_node_at_center(type_name)
        self.view.setFocus()
        return nid

    def open_search(self, scene_pos: QPointF, filt: dict | None = None) -> None:
        self.scene.release_grab()
        gp = self.view.viewport().mapToGlobal(self.view.mapFromScene(scene_pos))
        self.search.open_at(scene_pos, gp, filt)

    def files_dropped(self, paths: list[str], pos: QPointF) -> None:
        """Files dropped on the canvas: an image dropped on a node with an image-file input goes
        into that input (even a PNG that carries a workflow: it replaced the whole graph); a
        workflow file opens; other images become new LoadImage nodes."""
        images = [p for p in paths if Path(p).suffix.lower() in IMAGE_SUFFIXES]
        target = self.scene.node_at(pos)
        spec = target.image_input() if target is not None and images else None
        name = spec["name"] if spec is not None else None
        if name is not None:
            self.doc.undo_stack.push(commands.set_value(self.doc, target.nid, name, self._image_value(images[0])))
            self.statusBar().showMessage(f"{target.title}: {name} = {Path(images[0]).name}", 5000)
            return
        if self.open_dropped(paths):
            return
        y = pos.y()
        for p in paths:
            if Path(p).suffix.lower() in IMAGE_SUFFIXES and self.schema.get("LoadImage") is not None:
                self.add_node("LoadImage", QPointF(pos.x(), y), inputs={"image": self._image_value(p)})
                y += 300

    def _image_value(self, path: str) -> str:
        """A name in the input folder when the file lies there, else the absolute path."""
        try:
            rel = Path(path).resolve().relative_to(Path(self.engine.env.input_dir).resolve())
            return str(rel).replace(os.sep, "/")
        except ValueError:
            return str(Path(path).resolve())

    # -- selection edits ---------------------------------------------------------------
    def selected(self) -> list[str]:
        return self.scene.selected_ids()

    def delete_selected(self) -> None:
        """Delete the selected nodes and groups (a group's frame only: its nodes stay), as one
        undo step."""
        ids, groups = self.selected(), self.scene.selected_groups()
        stack = self.doc.undo_stack
        if ids and groups:
            stack.beginMacro("Delete")
        if ids:
            stack.push(commands.delete_nodes(self.doc, ids))
        if groups:
            stack.push(commands.group_edit(
                self.doc, "Delete group", lambda gs: [gs.pop(i) for i in sorted(groups, reverse=True)]))
        if ids and groups:
            stack.endMacro()

    def _fragment(self, ids) -> dict:
        ids = [nid for nid in self.doc.nodes if nid in set(ids)]  # document order
        rects = {nid: self.scene.items_by_id[nid].sceneBoundingRect().adjusted(6, 6, -6, -6) for nid in ids}
        return clipboard.fragment(self.doc, ids, rects)

    def copy(self) -> int:
        ids = self.selected()
        if ids:
            clipboard.to_clipboard(self._fragment(ids))
        return len(ids)

    def cut(self) -> None:
        if self.copy():
            self.doc.undo_stack.push(commands.delete_nodes(self.doc, self.selected(), "Cut"))

    def paste(self, at: QPointF | None = None, keep_links: bool = False) -> list[str]:
        """Paste at ``at`` (default: the mouse). As in ComfyUI, the pasted nodes keep the links
        among themselves; ``keep_links`` (Ctrl+Shift+V) also keeps their links from the nodes left
        behind (cut then paste moves nodes with their inputs)."""
        frag = clipboard.from_clipboard()
        if not frag or not frag.get("nodes"):
            self.statusBar().showMessage("nothing to paste (the clipboard holds no workflow)", 5000)
            return []
        return self._paste(frag, at or self.view.cursor_scene_pos(), keep_links)

    def _paste(self, frag: dict, at: QPointF, keep_links: bool = True) -> list[str]:
        x0, y0 = clipboard.top_left(frag)
        cmd = commands.paste(self.doc, frag, (at.x() - x0, at.y() - y0), keep_links=keep_links)
        self.doc.undo_stack.push(cmd)
        ids = list(cmd.mapping.values())
        self.scene.select_ids(ids)
        items = [self.scene.items_by_id[i] for i in ids if i in self.scene.items_by_id]
        if items:  # pasted at the mouse near an edge: scrolled so the paste is seen (its top-left first)
            rect = items[0].sceneBoundingRect()
            for it in items[1:]:
                rect = rect.united(it.sceneBoundingRect())
            self.view.ensureVisible(rect, 20, 20)
        return ids

    def duplicate(self) -> list[str]:
        ids = self.selected()
        if not ids:
            return []
        frag = self._fragment(ids)
        x0, y0 = clipboard.top_left(frag)
        return self._paste(frag, QPointF(x0 + 40, y0 + 40))

    def align(self, edge: str) -> None:
        items = [self.scene.items_by_id[i] for i in self.selected()]
        if len(items) < 2:
            return
        if edge == "left":
            x = min(i.x() for i in items)
            moves = {i.nid: (x, i.y()) for i in items}
        elif edge == "top":
            y = min(i.y() for i in items)
            moves = {i.nid: (i.x(), y) for i in items}
        elif edge == "hdist":
            items.sort(key=lambda i: i.x())
            x, moves = items[0].x(), {}
            for i in items:
                moves[i.nid] = (x, i.y())
                x += i.body_rect().width() + 40
        else:  # vdist
            items.sort(key=lambda i: i.y())
            y, moves = items[0].y(), {}
            for i in items:
                moves[i.nid] = (i.x(), y)
                y += i.body_rect().height() + 30
        moves = {nid: p for nid, p in moves.items()
                 if tuple(self.scene.items_by_id[nid].pos().toTuple()) != p}
        if moves:
            self.doc.undo_stack.push(commands.move_nodes(self.doc, moves))

    def group_selection(self) -> None:
        ids = self.selected()
        rect = self.scene.nodes_rect(set(ids)) if ids else QRectF(self.view.visible_scene_rect().center(), QRectF(0, 0, 300, 200).size())
        b = [round(rect.x() - 20), round(rect.y() - 50), round(rect.width() + 40), round(rect.height() + 70)]
        self.doc.undo_stack.push(commands.group_edit(
            self.doc, "Add group", lambda gs: gs.append({"title": "Group", "bounding": b, "color": "#3f5a73"})))

    def toggle_mode(self, mode: str) -> None:
        ids = self.selected()
        if not ids:
            return
        all_set = all(self.doc.nodes[i].get("mode") == mode for i in ids)
        value = None if all_set else mode
        self.doc.undo_stack.push(commands.set_field(self.doc, ids, "mode", value,
                                                    f"{'Clear' if all_set else 'Set'} {mode}"))

    def toggle_collapse(self) -> None:
        ids = self.selected()
        if ids:
            value = None if all((self.doc.nodes[i].get("ui") or {}).get("collapsed") for i in ids) else True
            self.doc.undo_stack.push(commands.set_ui(self.doc, ids, "collapsed", value, "Collapse"))

    def set_color(self, color: str | None) -> None:
        ids = self.selected()
        if ids:
            self.doc.undo_stack.push(commands.set_ui(self.doc, ids, "color", color, "Colour"))

    def rename_selected(self) -> None:
        ids = self.selected()
        if len(ids) == 1:
            self.scene.edit_title(self.scene.items_by_id[ids[0]])

    # -- context menu ------------------------------------------------------------------
    def canvas_menu(self, view_pos) -> QMenu:
        scene_pos = self.view.mapToScene(view_pos)
        self.scene.release_grab()  # the menu takes the mouse: the press that opened it ends here
        menu = QMenu(self)
        item = self.scene.node_at(scene_pos)
        group = next((g for g in self.scene.items(scene_pos, Qt.IntersectsItemBoundingRect)
                      if isinstance(g, GroupItem)), None)
        wire = next((e for e in self.scene.items(scene_pos) if isinstance(e, EdgeItem)), None)
        if item is None and wire is not None:  # a wire under the cursor (as ComfyUI's link menu)
            menu.addAction("Delete wire", lambda: self.scene.push(self.scene.disconnect_cmd(wire.dst, wire.input)))
            menu.addAction("Add reroute here", lambda: self.scene.insert_reroute(wire, scene_pos))
            menu.addAction("Add node\u2026", lambda: self.open_search(scene_pos))
        elif item is not None:
            if not item.isSelected():
                self.scene.select_ids([item.nid])
            menu.addAction("Rename", self.rename_selected)
            colors = menu.addMenu("Colour")
            for name, col in COLORS.items():
                colors.addAction(name, lambda c=col: self.set_color(c))
            menu.addAction("Collapse / expand", self.toggle_collapse)
            menu.addAction("Bypass", lambda: self.toggle_mode("bypass"))
            menu.addAction("Mute", lambda: self.toggle_mode("muted"))
            self._port_actions(menu, item)
            menu.addSeparator()
            menu.addAction("Copy", self.copy)
            menu.addAction("Duplicate", self.duplicate)
            menu.addAction("Delete", self.delete_selected)
        elif group is not None:
            menu.addAction("Rename group", lambda: self.scene.edit_group_title(group))
            colors = menu.addMenu("Group colour")
            for name, col in COLORS.items():
                colors.addAction(name, lambda c=col, i=group.index: self._group_color(i, c))
            menu.addAction("Delete group", lambda i=group.index: self.doc.undo_stack.push(
                commands.group_edit(self.doc, "Delete group", lambda gs: gs.pop(i))))
        else:
            menu.addAction("Add node\u2026", lambda: self.open_search(scene_pos))
            menu.addAction("Paste", lambda: self.paste(scene_pos))
            menu.addAction("Paste with input links", lambda: self.paste(scene_pos, keep_links=True))
            menu.addAction("Add group", self.group_selection)
        return menu

    def _group_color(self, index: int, color: str | None) -> None:
        def mutate(gs: list) -> None:
            if color:
                gs[index]["color"] = color
            else:
                gs[index].pop("color", None)
        self.doc.undo_stack.push(commands.group_edit(self.doc, "Group colour", mutate))

    def _port_actions(self, menu: QMenu, item: NodeItem) -> None:
        ports = set((item.node.get("ui") or {}).get("ports") or [])
        literal = [s for s in item.info.inputs if s.get("widget") not in (None, "readonly")]
        if not literal:
            return
        sub = menu.addMenu("Widgets and ports")
        for spec in literal:
            name = spec["name"]
            label = f"Convert {name} to widget" if name in ports else f"Convert {name} to input port"
            sub.addAction(label, lambda n=name, d=spec.get("default"): self.doc.undo_stack.push(
                commands.toggle_port(self.doc, item.nid, n, d)))
        sweep = menu.addMenu("Sweep")
        for spec in literal:
            if spec.get("widget") not in ("file", "multiline"):
                sweep.addAction(f"Sweep {spec['name']}\u2026",
                                lambda n=spec["name"]: self.open_sweep_dialog((item.nid, n)))
