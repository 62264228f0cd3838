"""Switch: pass one of two values on, as ComfyUI's ComfySwitchNode (comfy_extras/nodes_logic.py).
ComfyUI evaluates only the chosen branch; nodegen runs both (inputs are not lazy here), so both
branches must be able to run. An unconnected branch passes the other one on, as ComfyUI does."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("ComfySwitchNode", category="logic", display_name="Switch",
      description="Pass on_true on when switch is on, else on_false (both branches run in nodegen).",
      inputs=[Input.bool("switch", False),
              Input.link("on_false", T.ANY, optional=True), Input.link("on_true", T.ANY, optional=True)],
      outputs=[Output("output", T.ANY)], keywords=("if", "choose", "branch"))
def switch(ctx, switch=False, on_false=None, on_true=None):
    if on_true is None and on_false is None:
        raise ValueError("ComfySwitchNode: connect input 'on_true' or 'on_false'")
    if on_true is None:
        return on_false
    if on_false is None:
        return on_true
    return on_true if switch else on_false
