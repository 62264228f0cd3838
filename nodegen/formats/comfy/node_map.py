"""One ComfyUI <-> nodegen node mapping (:class:`NodeMap`) and the compact constructor the tables use.

A map says, for a ComfyUI class:

* ``ours``: our node type; ``version``: the version of our node type the map is written for
  (imported nodes carry it as ``type_version``, so a later change of our node is handled by
  the node's own migrations; see docs/VERSIONING.md);
* ``widgets``: ComfyUI's widget names **in ComfyUI's widget order** (the positions of the UI
  format's ``widgets_values``); ``None`` marks a UI-only widget (an upload button) to skip;
* ``seeds``: the widgets ComfyUI follows with a "control after generate" value;
* ``rename``: ComfyUI input name -> our input name, where they differ;
* ``outputs``: our output name for each ComfyUI output slot;
* ``to_ours`` / ``to_comfy``: value converters by ComfyUI input name ("enable" <-> True);
* ``ignore``: ComfyUI inputs with no counterpart here (dropped with a note);
* ``positional``: for nodes whose widget layout depends on a widget's value (ComfyUI's
  DynamicCombo), the widget names of a positional ``widgets_values`` list, given the list
  (``widgets`` then lists every name the node can have);
* ``split`` / ``join``: a ComfyUI widget whose value is a dict (a bounding box) that is several
  inputs here: ``split[name](value) -> {our input: value}`` on import, ``join[name] = (our inputs,
  fn({our input: value}) -> value)`` on export.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Values ComfyUI writes after a seed widget (control_after_generate); old files wrote booleans.
SEED_CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
#: Inputs that only drive ComfyUI's editor (upload buttons); never data.
UI_ONLY_INPUTS = frozenset({"upload", "choose file to upload", "image_upload"})


@dataclass(frozen=True)
class NodeMap:
    comfy: str
    ours: str
    widgets: tuple[str | None, ...] = ()
    outputs: tuple[str, ...] = ()
    seeds: frozenset[str] = frozenset()
    rename: dict[str, str] = field(default_factory=dict)
    to_ours: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    to_comfy: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    ignore: frozenset[str] = frozenset()
    version: int = 1
    #: False for aliases: export writes our type back as another ComfyUI class.
    export: bool = True
    #: Inputs ComfyUI requires that we have no counterpart for: written on export as given.
    comfy_constants: dict[str, Any] = field(default_factory=dict)
    positional: Callable[[list], tuple[str | None, ...]] | None = None
    split: dict[str, Callable[[Any], dict]] = field(default_factory=dict)
    join: dict[str, tuple[tuple[str, ...], Callable[[dict], Any]]] = field(default_factory=dict)

    def widgets_for(self, values: list) -> tuple[str | None, ...]:
        """The widget names of a positional ``widgets_values`` list."""
        return self.positional(values) if self.positional is not None else self.widgets

    def our_input(self, comfy_name: str) -> str:
        return self.rename.get(comfy_name, comfy_name)

    def comfy_input(self, our_name: str) -> str:
        for k, v in self.rename.items():
            if v == our_name:
                return k
        return our_name

    def output_slot(self, our_output: str) -> int | None:
        try:
            return self.outputs.index(our_output)
        except ValueError:
            return None


def enable_to_bool(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("enable", "disable"):
        return value.lower() == "enable"
    return value


def bool_to_enable(value: Any) -> Any:
    return ("enable" if value else "disable") if isinstance(value, bool) else value


ENABLE = {"to_ours": enable_to_bool, "to_comfy": bool_to_enable}


def nm(comfy: str, ours: str | None = None, widgets: str = "", outputs: str = "", *,
       seeds: str = "", enable: str = "", **kw: Any) -> NodeMap:
    """Compact constructor for the tables: names are space-separated; ``-`` in ``widgets`` marks
    a UI-only widget; ``enable`` names inputs ComfyUI writes as "enable"/"disable"."""
    ws = tuple(None if w == "-" else w for w in widgets.split())
    en = enable.split()
    to_ours = dict(kw.pop("to_ours", {}))
    to_comfy = dict(kw.pop("to_comfy", {}))
    for name in en:
        to_ours.setdefault(name, enable_to_bool)
        to_comfy.setdefault(name, bool_to_enable)
    return NodeMap(comfy, ours or comfy, ws, tuple(outputs.split()), frozenset(seeds.split()),
                   to_ours=to_ours, to_comfy=to_comfy, **kw)
