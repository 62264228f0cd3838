"""DiffControlNetLoader: load a ControlNet; a 'diff' ControlNet gets the model's UNet weights added,
as ComfyUI's node; see :mod:`nodegen.models.diff_controlnet`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.models.resolve import choices_for, fingerprint_for, resolve_model


@node("DiffControlNetLoader", category="controlnet",
      description="Load a ControlNet; a 'diff' ControlNet (weights stored as differences from a base model) "
                  "gets the model's UNet weights added. Other ControlNets load as with ControlNetLoader.",
      inputs=[Input.link("model", T.MODEL, description="The model the diff ControlNet was made from"),
              Input.file("control_net_name", "controlnet", choices=choices_for("controlnet"),
                         description="ControlNet file or folder in the controlnet models folder")],
      outputs=[Output("control_net", T.CONTROL_NET)],
      fingerprint=fingerprint_for("controlnet", "control_net_name"), keywords=("controlnet", "diff"))
def diff_controlnet_loader(ctx, model, control_net_name):
    from nodegen.models.control_files import load_control
    from nodegen.models.diff_controlnet import base_unet_weights

    path = resolve_model(ctx.paths, "controlnet", control_net_name, "DiffControlNetLoader", "control_net_name")
    manager = getattr(ctx, "models", None)

    def base():
        try:
            return base_unet_weights(model)
        except (ValueError, AttributeError) as e:
            raise ValueError(f"DiffControlNetLoader: input 'model': {e}") from None

    try:
        return load_control(path, manager=manager if hasattr(manager, "use") else None, base=base)
    except ValueError as e:
        if str(e).startswith("DiffControlNetLoader"):
            raise
        raise ValueError(f"DiffControlNetLoader: input 'control_net_name': {e}") from e
