"""Inline editors on the canvas: a line or text editor over a widget row or a title, and the
menu of choices for choice/file widgets. Committing an editor pushes an undo command."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QAction, QTextCursor
from PySide6.QtWidgets import QFileDialog, QLineEdit, QMenu, QPlainTextEdit

from . import commands
from .prompt_weight import reweighted
from .widgets import format_value, multiline_text_rect, parse_value, text_index_at


class _KeyFilter(QObject):
    def __init__(self, scene, multiline: bool) -> None:
        super().__init__()
        self.scene, self.multiline = scene, multiline

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if event.type() == QEvent.KeyPress:
            if event.key() == Qt.Key_Escape:
                # a one-line field: cancel; a multi-line text (a prompt): keep what was typed
                # (Escape threw a long prompt away; Ctrl+Z undoes it like any edit)
                if self.multiline:
                    self.scene.commit_editor()
                else:
                    self.scene.close_editor()
                return True
            if event.key() in (Qt.Key_Tab, Qt.Key_Backtab):
                # commit, then edit the node's next (Shift+Tab: previous) field, as in a form
                self.scene.edit_next_field(forward=event.key() == Qt.Key_Tab
                                           and not event.modifiers() & Qt.ShiftModifier)
                return True
            if event.key() in (Qt.Key_Return, Qt.Key_Enter) and (
                    not self.multiline or event.modifiers() & Qt.ControlModifier):
                self.scene.commit_editor()
                return True
            if self.multiline and event.key() in (Qt.Key_Up, Qt.Key_Down) and event.modifiers() & Qt.ControlModifier:
                reweigh(obj, up=event.key() == Qt.Key_Up)  # ComfyUI's Ctrl+Up/Down on a prompt
                return True
        elif event.type() == QEvent.FocusOut:
            self.scene.commit_editor()
        return False


#: widgets edited by typing: Tab goes from one to the next
TYPED_WIDGETS = ("int", "float", "seed", "string", "multiline")

#: a list longer than this says at its top that typing filters it
HINT_FROM = 10


def reweigh(edit: QPlainTextEdit, up: bool) -> None:
    """Raise or lower the weight of the selected words (or those at the cursor) in a prompt
    editor, as one step of the editor's own undo, leaving the edited group selected."""
    cursor = edit.textCursor()
    change = reweighted(edit.toPlainText(), cursor.selectionStart(), cursor.selectionEnd(), up)
    if change is None:
        return
    start, end, new = change
    cursor.setPosition(start)
    cursor.setPosition(end, QTextCursor.KeepAnchor)
    cursor.insertText(new)
    cursor.setPosition(start)
    cursor.setPosition(start + len(new), QTextCursor.KeepAnchor)
    edit.setTextCursor(cursor)


class ChoiceMenu(QMenu):
    """The menu of a choice widget, filtered by typing (as ComfyUI's combo list): each typed
    character narrows the list to the choices holding every typed word, Backspace widens it,
    Enter picks the highlighted one. Long lists of model files and samplers are found by name."""

    def __init__(self) -> None:
        super().__init__()
        self.typed = ""
        self.anchor = None  # where the menu was opened (screen pos)
        self.choice_actions: list = []
        self._header = None

    def _typed_key(self, event) -> bool:
        text = event.text()
        return bool(text) and text.isprintable() and not event.modifiers() & (Qt.ControlModifier | Qt.AltModifier)

    def event(self, event) -> bool:
        if event.type() == QEvent.ShortcutOverride and (self._typed_key(event) or event.key() == Qt.Key_Backspace):
            event.accept()  # typed letters filter the list ("m" toggled the canvas minimap)
            return True
        return super().event(event)

    def popup(self, pos, *args) -> None:
        self.anchor = pos
        super().popup(pos, *args)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        text = event.text()
        if event.key() == Qt.Key_Backspace and self.typed:
            self.set_filter(self.typed[:-1])
        elif self._typed_key(event):
            self.set_filter(self.typed + text)
        else:
            super().keyPressEvent(event)

    def set_filter(self, typed: str) -> None:
        self.typed = typed
        if self._header is None:
            self._header = QAction(self)
            self._header.setEnabled(False)
            self.insertAction(self.actions()[0] if self.actions() else None, self._header)
        words = typed.lower().split()
        shown = [a for a in self.choice_actions if all(w in a.text().lower() for w in words)]
        for act in self.choice_actions:
            act.setVisible(act in shown)
        if typed:
            self._header.setText(f"filter: {typed}\u2502" + ("" if shown else "   (nothing matches)"))
        else:
            self._header.setText("type to filter\u2026")
        self._header.setVisible(bool(typed) or len(self.choice_actions) > HINT_FROM)
        if shown:  # the first match; with nothing typed, the current value
            self.setActiveAction(next((a for a in shown if a.isChecked()), shown[0]) if not typed else shown[0])
        self._stay_near_anchor()

    def _stay_near_anchor(self) -> None:
        """A long list opened high on the screen; once filtered short it moves back down to
        where it was opened (it stayed at the screen's top edge)."""
        anchor = self.anchor
        if anchor is None or not self.isVisible():
            return
        self.resize(self.sizeHint())
        screen = self.screen().availableGeometry()
        y = max(screen.top(), min(anchor.y(), screen.bottom() - self.height()))
        self.move(self.x(), y)


class EditorMixin:
    def __init__(self) -> None:
        self.editor_item = None
        self.editor = None           # the QLineEdit / QPlainTextEdit while editing
        self._editor_proxy = None
        self._editor_target = None   # ("input", name, spec) or ("title",)
        self.active_menu: QMenu | None = None

    def _open(self, item, rect: QRectF, text: str, multiline: bool, target, cursor: int | None = None) -> None:
        """An editor over ``rect`` of ``item``. A multi-line one shows its text where the node
        draws it (under the input's name, same font and wrapping) with the cursor at ``cursor``
        (where the text was clicked; at the end when opened from the keyboard)."""
        self.close_editor()
        w = QPlainTextEdit() if multiline else QLineEdit()
        style = "background:#15161a; color:#f0f0f0; border:1px solid #64b5f6;"
        if multiline:
            w.document().setDocumentMargin(1)
            # the node's font (the theme's style sheet sets every widget's size), and border +
            # padding + margin as the painted text's inset
            style += (f" font-family:'{item.FONT.family()}'; font-size:{item.FONT.pointSizeF():g}pt;"
                      " padding:0px 0px 0px 4px;")
            top = multiline_text_rect(rect).top() - 2
            rect = QRectF(rect.left(), top, rect.width(), rect.bottom() - top)
            w.setPlainText(text)
            at = QTextCursor(w.document())
            at.setPosition(len(text) if cursor is None else max(0, min(len(text), cursor)))
            w.setTextCursor(at)  # typing adds to the prompt, or goes where clicked
        else:
            w.setText(text)
            w.selectAll()
        w.setStyleSheet(style)
        w.setMinimumSize(1, 1)  # a text box's size hint made it taller than its row
        w.resize(int(rect.width()), int(rect.height()))  # inside the node (it ran over its edge)
        self._filter = _KeyFilter(self, multiline)
        w.installEventFilter(self._filter)
        proxy = self.addWidget(w)
        proxy.setParentItem(item)
        proxy.setPos(rect.topLeft())
        proxy.setZValue(20)
        self.editor_item, self.editor, self._editor_proxy, self._editor_target = item, w, proxy, target
        w.setFocus()

    def open_editor(self, item, name: str, spec: dict, at: QPointF | None = None) -> None:
        """Edit a widget row's value; ``at``: where it was clicked (item coordinates), for the
        cursor of a multi-line text."""
        multiline = spec.get("widget") == "multiline"
        value = item.value_of(name)
        text = "" if value is None else (str(value) if multiline or spec.get("widget") != "float"
                                          else format_value(spec, value))
        rect = item.widget_rect(name)
        cursor = None
        if multiline and at is not None:
            cursor = text_index_at(text, item.FONT, multiline_text_rect(rect), at)
        self._open(item, rect, text, multiline, ("input", name, spec), cursor)

    def edit_title(self, item) -> None:
        self._open(item, QRectF(4, 2, item.body_rect().width() - 8, 22), item.title, False, ("title",))

    def edit_group_title(self, group) -> None:
        self._open(group, QRectF(4, 2, group.w - 8, 24), group.title, False, ("group", group.index))

    def commit_editor(self) -> None:
        if self.editor is None:
            return
        item, target, w = self.editor_item, self._editor_target, self.editor
        text = w.toPlainText() if isinstance(w, QPlainTextEdit) else w.text()
        self.close_editor()
        if target[0] == "group":
            index, title = target[1], text.strip() or "Group"

            def retitle(groups: list) -> None:
                groups[index]["title"] = title
            if index < len(self.doc.groups) and self.doc.groups[index].get("title") != title:
                self.push(commands.group_edit(self.doc, "Rename group", retitle))
            return
        if item is None or item.nid not in self.doc.nodes:
            return
        if target[0] == "title":
            new = text.strip() or None
            if new == item.info.title:
                new = None
            if new != self.doc.nodes[item.nid].get("title"):
                self.push(commands.set_field(self.doc, [item.nid], "title", new, "Rename"))
            return
        _, name, spec = target
        try:
            value = parse_value(spec, text)
        except ValueError:
            self.message.emit(f"{name}: {text!r} is not a valid {spec.get('widget')} value")
            return
        if value != item.value_of(name) or name not in (self.doc.nodes[item.nid].get("inputs") or {}):
            self.push(commands.set_value(self.doc, item.nid, name, value))

    def edit_next_field(self, forward: bool = True) -> None:
        """Tab / Shift+Tab in an editor: commit it, then open the editor of the node's next /
        previous typed field (numbers and texts, round the node); a title only commits."""
        item, target = self.editor_item, self._editor_target
        self.commit_editor()
        if item is None or target is None or target[0] != "input" or item.nid not in self.doc.nodes:
            return
        item = self.items_by_id.get(item.nid, item)
        typed = [spec for spec in item.widget_rows if spec.get("widget") in TYPED_WIDGETS
                 and item.widget_rect(spec["name"]) is not None]
        names = [spec["name"] for spec in typed]
        if target[1] not in names or len(names) < 2:
            return  # the node's only field: Tab just commits it
        spec = typed[(names.index(target[1]) + (1 if forward else -1)) % len(typed)]
        self.open_editor(item, spec["name"], spec)

    def close_editor(self) -> None:
        proxy, w = self._editor_proxy, self.editor
        self.editor_item = self.editor = self._editor_proxy = self._editor_target = None
        if w is not None:
            w.removeEventFilter(self._filter)
        if proxy is not None:
            proxy.setWidget(None)
            if proxy.scene() is not None:
                proxy.scene().removeItem(proxy)
            w.deleteLater()

    def open_choice_menu(self, item, name: str, spec: dict, screen_pos) -> QMenu:
        """A menu of the input's choices (recomputed choices come with a schema refresh);
        image files also offer Browse...; the menu is kept in ``active_menu``."""
        self.release_grab()  # the menu takes the mouse: the press that opened it ends here
        menu = ChoiceMenu()
        current = item.value_of(name)
        choices = list(spec.get("choices") or [])
        if spec.get("widget") == "file" and current not in (None, "") and current not in choices:
            choices.insert(0, current)  # a file outside the listed folders (beside the workflow): shown, ticked
        for choice in choices:
            act = menu.addAction(str(choice))
            act.setCheckable(True)
            act.setChecked(choice == current)
            act.triggered.connect(lambda _=False, c=choice: self._choose(item, name, c))
            menu.choice_actions.append(act)
        if spec.get("widget") == "file":
            if menu.actions():
                menu.addSeparator()
            act = menu.addAction("Browse\u2026")
            act.triggered.connect(lambda: self._browse(item, name, spec))
        if not menu.actions():
            menu.addAction("(no choices found)").setEnabled(False)
        if len(menu.choice_actions) > HINT_FROM:
            menu.set_filter("")  # the "type to filter" line on top
        self.active_menu = menu
        menu.popup(screen_pos.toPoint() if hasattr(screen_pos, "toPoint") else screen_pos)
        # the scene grabs the mouse for the pressed item after this handler returns: undo that too
        QTimer.singleShot(0, self, self.release_grab)
        return menu

    def _choose(self, item, name: str, value) -> None:
        if item.nid in self.doc.nodes and value != item.value_of(name):
            self.push(commands.set_value(self.doc, item.nid, name, value))

    def _browse(self, item, name: str, spec: dict) -> None:
        filt = "Images (*.png *.jpg *.jpeg *.webp *.bmp)" if spec.get("file_kind") == "image" else "All files (*)"
        path, _ = QFileDialog.getOpenFileName(None, f"Choose {name}", "", filt)
        if path:
            self._choose(item, name, path)
