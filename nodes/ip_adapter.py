"""IP-Adapter nodes: load an adapter file, apply it to a MODEL with a CLIP-vision encoding of the
prompt image (see :mod:`nodegen.models.ip_adapter`)."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node
from nodegen.models.resolve import choices_for, fingerprint_for, resolve_model

torch = lazy_import("torch")


@node("IPAdapterLoader", category="conditioning/ip_adapter",
      description="Load an IP-Adapter (SD1.5 or SDXL; base, plus, plus-face, full-face).",
      inputs=[Input.file("ipadapter_file", "ipadapter", choices=choices_for("ipadapter"),
                         description="IP-Adapter file in the ipadapter models folder")],
      outputs=[Output("ipadapter", T.IPADAPTER)], fingerprint=fingerprint_for("ipadapter", "ipadapter_file"),
      keywords=("image prompt", "ip-adapter"))
def ip_adapter_loader(ctx, ipadapter_file):
    from nodegen.models.ip_adapter import load_ip_adapter

    return load_ip_adapter(resolve_model(ctx.paths, "ipadapter", ipadapter_file, "IPAdapterLoader",
                                         "ipadapter_file"))


def _embeds(adapter, output, name: str) -> torch.Tensor:
    attr = "penultimate_hidden_states" if adapter.uses_hidden_states else "image_embeds"
    value = getattr(output, attr, None)
    if not torch.is_tensor(value):
        raise ValueError(f"input {name!r} must be a CLIP_VISION_OUTPUT with {attr} (a {adapter.variant} "
                         f"IP-Adapter reads it)")
    return value.detach().float().cpu()


@node("IPAdapterApply", category="conditioning/ip_adapter",
      description="Prompt with an image: the IP-Adapter adds the image's CLIP-vision encoding to the "
                  "UNet's cross-attention, with a weight over part of the schedule.",
      inputs=[Input.link("model", T.MODEL), Input.link("ipadapter", T.IPADAPTER),
              Input.link("clip_vision_output", T.CLIP_VISION_OUTPUT),
              Input.float("weight", 1.0, min=-1.0, max=5.0, step=0.05),
              Input.float("start_at", 0.0, min=0.0, max=1.0, step=0.001, description="Fraction of the schedule"),
              Input.float("end_at", 1.0, min=0.0, max=1.0, step=0.001, description="Fraction of the schedule"),
              Input.link("negative_clip_vision_output", T.CLIP_VISION_OUTPUT, optional=True,
                         description="Encoding for the negative prompt (plus adapters: encode a blank "
                                     "image); unset: zeros")],
      outputs=[Output("model", T.MODEL)], keywords=("image prompt", "ip-adapter"))
def ip_adapter_apply(ctx, model, ipadapter, clip_vision_output, weight, start_at, end_at,
                     negative_clip_vision_output=None):
    from nodegen.models.ip_adapter import IPApplication

    if start_at > end_at:
        raise ValueError(f"IPAdapterApply: start_at ({start_at}) must not exceed end_at ({end_at})")
    pos = _embeds(ipadapter, clip_vision_output, "clip_vision_output")
    neg = (_embeds(ipadapter, negative_clip_vision_output, "negative_clip_vision_output")
           if negative_clip_vision_output is not None else torch.zeros_like(pos))
    out = model.clone()
    out.options["ip_adapters"] = [*out.options.get("ip_adapters", []),
                                  IPApplication(ipadapter, pos, neg, float(weight), float(start_at), float(end_at))]
    return out
