"""HypernetworkLoader: an A1111 / NovelAI hypernetwork on the model's attention inputs, as ComfyUI's
node applies it (see :mod:`nodegen.models.hypernetwork`)."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.models.resolve import choices_for, fingerprint_for, resolve_model


@node("HypernetworkLoader", category="loaders",
      description="Add a hypernetwork (A1111 .pt) to an SD1/SD2/SDXL model: small networks on every "
                  "attention's key and value inputs.",
      inputs=[Input.link("model", T.MODEL),
              Input.file("hypernetwork_name", "hypernetworks", choices=choices_for("hypernetworks"),
                         description="A hypernetwork in the hypernetworks folder"),
              Input.float("strength", 1.0, min=-10.0, max=10.0, step=0.01)],
      outputs=[Output("model", T.MODEL)],
      fingerprint=fingerprint_for("hypernetworks", "hypernetwork_name"),
      keywords=("hypernetwork", "style", "a1111"))
def hypernetwork_loader(ctx, model, hypernetwork_name, strength=1.0):
    from nodegen.models.hypernetwork import load_hypernetwork

    if getattr(model, "prediction_type", None) == "flow":
        raise ValueError(f"HypernetworkLoader: hypernetworks are for SD1/SD2/SDXL UNet models, not {model.family}")
    path = resolve_model(ctx.paths, "hypernetworks", hypernetwork_name, "HypernetworkLoader", "hypernetwork_name")
    try:
        hn = load_hypernetwork(path)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RuntimeError) as e:  # a malformed file
        raise ValueError(f"HypernetworkLoader: hypernetwork_name {hypernetwork_name!r}: {e}") from e
    out = model.clone()
    out.options["hypernetworks"] = [*out.options.get("hypernetworks", ()), (hn, float(strength))]
    return out
