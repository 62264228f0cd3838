"""A ComfyUI API-format prompt written out in the editor (UI) format, as ComfyUI's front-end saves
it: positional widget values, link records, output slots. Tests import both forms of one workflow."""

from __future__ import annotations

#: widget names whose saved value is the front-end's, not an input's
FRONT_END_VALUES = {"upload": "image", "control": "fixed"}


def ui_from_api(api: dict, widgets: dict[str, list[str]], outputs: dict[str, list[str]]) -> dict:
    """``widgets``: class type -> its widget names in ComfyUI's order; ``outputs``: class type -> its
    output types."""
    nodes, links = [], []
    for nid, n in api.items():
        ct = n["class_type"]
        wv = [FRONT_END_VALUES[w] if w in FRONT_END_VALUES else n["inputs"][w] for w in widgets[ct]]
        nodes.append({"id": int(nid), "type": ct, "mode": 0, "widgets_values": wv, "inputs": [],
                      "outputs": [{"name": t, "type": t, "links": []} for t in outputs[ct]]})
    by_id = {node["id"]: node for node in nodes}
    for nid, n in api.items():
        for name, v in n["inputs"].items():
            if isinstance(v, list):
                lid = len(links) + 1
                src, dst = by_id[int(v[0])], by_id[int(nid)]
                dst["inputs"].append({"name": name, "type": src["outputs"][v[1]]["type"], "link": lid})
                src["outputs"][v[1]]["links"].append(lid)
                links.append([lid, int(v[0]), v[1], int(nid), len(dst["inputs"]) - 1, src["outputs"][v[1]]["type"]])
    return {"last_node_id": max(by_id), "last_link_id": len(links), "nodes": nodes, "links": links, "groups": [],
            "version": 0.4}
