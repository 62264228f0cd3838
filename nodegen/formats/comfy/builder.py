"""Shared import machinery: turn ComfyUI nodes (named values + positional links) into our document.

Both importers (API format, UI format) feed a :class:`Builder` one ComfyUI node at a time with
its *named* literal values and its links ``{comfy_input: (source_id, source_slot)}``; the
builder applies the node map (renames, value conversions, version), keeps unmapped classes as
placeholder nodes, and finally turns slots into our output names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from nodegen.formats.comfy.mapping import UI_ONLY_INPUTS, NodeMap, for_comfy, for_ours

#: ComfyUI suffixes file names of its own folders ("x.png [input]"). The input folder is where our
#: image loaders look anyway, so ``[input]`` is dropped; ``[output]`` and ``[temp]`` keep their
#: meaning (the engine resolves them in its output and temp folders) and export back unchanged.
_INPUT_SUFFIX = re.compile(r" \[input\]$")
_NO = object()
#: Why some dropped inputs do not matter, or what to do about them.
_DROPPED_WHY = {
    "config_name": " (the model's layout is read from the file; a setting the config file carries, "
                   "such as a CLIP skip, is not applied: add a CLIPSetLastLayer node for that)",
}


class ComfyImportError(ValueError):
    """The file is not a ComfyUI workflow this importer can read."""


@dataclass
class _Pending:
    nid: str
    comfy_input: str
    our_input: str
    src: str
    slot: int


@dataclass
class Builder:
    source: str = ""
    nodes: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    maps: dict[str, NodeMap | None] = field(default_factory=dict)
    #: Output names of placeholder (unmapped) nodes, by slot.
    placeholder_outputs: dict[str, list[str]] = field(default_factory=dict)
    _links: list[_Pending] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def add(self, nid: str, class_type: str, values: dict[str, Any], links: dict[str, tuple[str, int]],
            original: dict, *, title: str | None = None, mode: str | None = None,
            ui: dict | None = None, output_names: list[str] | None = None) -> dict:
        """Add one ComfyUI node; ``values`` are its named literal inputs."""
        m = for_comfy(class_type)
        self.maps[nid] = m
        node: dict[str, Any]
        if m is None:
            node = {"type": _placeholder_type(class_type), "missing": True, "comfy": original, "inputs": {}}
            self.placeholder_outputs[nid] = _output_names(output_names or [])
            self.note(f"node {nid}: ComfyUI node type {class_type!r} has no nodegen equivalent; "
                      f"kept as a placeholder (the rest of the graph still runs where it is not needed)")
            for name, (src, slot) in links.items():
                self._links.append(_Pending(nid, name, name or "input", src, slot))
        else:
            node = {"type": m.ours, "type_version": m.version, "inputs": {}}
            for name, value in values.items():
                if name in UI_ONLY_INPUTS:
                    continue
                if value is None:  # a choice left empty (no model picked when it was saved)
                    self.note(f"node {nid} ({class_type}): no value saved for {name!r}; left unset")
                    continue
                if name in m.ignore:
                    if m.comfy_constants.get(name, _NO) != value:  # a default is no news
                        self.note(f"node {nid} ({class_type}): input {name!r} = {value!r} has no "
                                  f"nodegen counterpart; dropped{_DROPPED_WHY.get(name, '')}")
                    continue
                if name in m.split and isinstance(value, dict):  # one ComfyUI value, several inputs here
                    node["inputs"].update(m.split[name](value))
                    continue
                conv = m.to_ours.get(name)
                if conv is not None:
                    value = conv(value)
                if isinstance(value, str):
                    value = _INPUT_SUFFIX.sub("", value)
                node["inputs"][m.our_input(name)] = value
            for name, (src, slot) in links.items():
                if name in m.ignore:
                    self.note(f"node {nid} ({class_type}): input {name!r} has no nodegen "
                              f"counterpart; its link is dropped")
                    continue
                self._links.append(_Pending(nid, name, m.our_input(name), src, slot))
        if title:
            node["title"] = title
        if mode and mode != "normal":
            node["mode"] = mode
        if ui:
            node["ui"] = ui
        self.nodes[nid] = node
        return node

    def add_native(self, nid: str, our_type: str, inputs: dict, outputs: list[str], *,
                   title: str | None = None, mode: str | None = None, ui: dict | None = None) -> dict:
        """Add one of our nodes directly (for editor-only ComfyUI nodes such as PrimitiveNode)."""
        self.maps[nid] = NodeMap("PrimitiveNode", our_type, outputs=tuple(outputs), export=False)
        node: dict[str, Any] = {"type": our_type, "type_version": 1, "inputs": dict(inputs)}
        if title:
            node["title"] = title
        if mode and mode != "normal":
            node["mode"] = mode
        if ui:
            node["ui"] = ui
        self.nodes[nid] = node
        return node

    def output_name(self, src: str, slot: int) -> str | None:
        if src in self.placeholder_outputs:
            names = self.placeholder_outputs[src]
            return names[slot] if 0 <= slot < len(names) else f"output_{slot}"
        m = self.maps.get(src)
        if m is None or not (0 <= slot < len(m.outputs)):
            return None
        return m.outputs[slot]

    def finish_links(self) -> None:
        for p in self._links:
            dst = self.nodes[p.nid]
            if p.src not in self.nodes:
                self.note(f"node {p.nid}: input {p.comfy_input!r} is linked to node {p.src}, which "
                          f"is not in the file; the link is dropped")
                continue
            out = self.output_name(p.src, p.slot)
            if out is None:
                m = self.maps.get(p.src)
                self.note(f"node {p.nid}: input {p.comfy_input!r} is linked to output slot {p.slot} "
                          f"of node {p.src} ({m.comfy if m else '?'}), which has no such output; "
                          f"the link is dropped")
                continue
            dst["inputs"][p.our_input] = {"from": [p.src, out]}
        self._links.clear()


def _placeholder_type(class_type: str) -> str:
    """A placeholder's type: the ComfyUI class, unless that name is also one of our node types
    (ours mapped from another ComfyUI class), which would make the placeholder pass for ours."""
    return f"{class_type} (ComfyUI)" if for_ours(class_type) is not None else class_type


def _output_names(names: list[str]) -> list[str]:
    out: list[str] = []
    for i, name in enumerate(names):
        base = (name or "").strip().lower().replace(" ", "_") or f"output_{i}"
        cand = base
        while cand in out:
            cand = f"{base}_{i}"
        out.append(cand)
    return out
