"""The everyday nodes of the ComfyUI_IPAdapter_plus pack (by cubiq), built in: IPAdapterUnifiedLoader
(a preset finds the IP-Adapter and CLIP-vision files by their usual names), IPAdapter and
IPAdapterAdvanced (encode the prompt image with CLIP vision and apply the adapter), and the
embeddings helpers IPAdapterEncoder, IPAdapterCombineEmbeds and IPAdapterEmbeds. Published
workflows map onto them with every widget on a named input (nodegen.formats.comfy.map_ip_adapter).

What the pack computes and these nodes do alike: the image is encoded at the CLIP-vision size
(centre crop); without a negative image, base adapters take zeros and plus / face adapters the
encoding of a black image; several images are combined before the projection (add, subtract,
average, norm average); the weight scales the adapter's attention output ("V only") and varies
over the UNet's blocks by the weight type (:mod:`nodegen.models.ip_adapter_weights`). The pack's
"precise" weight types, K+V scalings and attention masks are not offered (the choices list what
is), so a workflow that uses them is refused when it is checked, naming the node and input.
"""

from __future__ import annotations

from typing import Any

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.kernel.types import SocketType, register_type
from nodegen.models.ip_adapter_presets import PRESETS
from nodegen.models.ip_adapter_weights import WEIGHT_TYPES

COMBINE = ["concat", "add", "subtract", "average", "norm average"]
#: IPAdapter's (simple) weight types, as the pack turns them into IPAdapterAdvanced's
SIMPLE_WEIGHT_TYPES = {"standard": "linear", "prompt is more important": "ease out", "style transfer": "style transfer"}


def _preset_fingerprint(inputs: dict, env: Any) -> Any:
    """The files the preset picks (for either family): the loader re-runs when they change."""
    from nodegen.models.ip_adapter_presets import PresetError, preset_files
    from nodegen.models.manager import file_key
    from nodegen.models.resolve import _paths_of

    paths = _paths_of(env)
    keys: list = []
    for sdxl in (False, True):
        try:
            names = preset_files(paths, inputs.get("preset", ""), sdxl)
        except PresetError as e:
            keys.append(str(e))
            continue
        keys.append((file_key(paths.resolve("ipadapter", names[0])), file_key(paths.resolve("clip_vision", names[1]))))
    return tuple(keys)


@node("IPAdapterUnifiedLoader", category="conditioning/ip_adapter",
      description="Find the IP-Adapter and CLIP-vision files a preset names (by their published file names) "
                  "for the model's family and load both.",
      inputs=[Input.link("model", T.MODEL), Input.choice("preset", list(PRESETS), PRESETS[1]),
              Input.link("ipadapter", T.IPADAPTER, optional=True,
                         description="ComfyUI's pipe from an earlier loader; ignored (each loader loads its own files)")],
      outputs=[Output("model", T.MODEL), Output("ipadapter", T.IPADAPTER)], fingerprint=_preset_fingerprint,
      keywords=("image prompt", "ip-adapter", "ipadapter_plus"))
def ip_adapter_unified_loader(ctx, model, preset, ipadapter=None):
    from nodegen.models.ip_adapter import load_ip_adapter
    from nodegen.models.ip_adapter_presets import PresetError, preset_files
    from nodegen.models.resolve import resolve_model

    from .clip import _load

    try:
        adapter_name, vision_name = preset_files(ctx.paths, preset, str(model.family).startswith("sdxl"))
    except PresetError as e:
        raise ValueError(f"IPAdapterUnifiedLoader: input 'preset': {e}") from e
    adapter = load_ip_adapter(resolve_model(ctx.paths, "ipadapter", adapter_name, "IPAdapterUnifiedLoader", "preset"))
    vision = _load(ctx, "clip_vision", vision_name, "IPAdapterUnifiedLoader", vision_only=True)
    return model, adapter.with_clip_vision(vision)


def _combined(embeds, method: str, node_type: str, name: str = "image"):
    """The pack's combination of several images' CLIP-vision embeddings (before the projection)."""
    import torch

    if embeds.shape[0] == 1:
        return embeds
    if method == "concat":
        raise ValueError(f"{node_type}: input {name!r} holds {embeds.shape[0]} images; concatenated, one image is "
                         f"supported: combine them (add, subtract, average, norm average)")
    if method == "add":
        return embeds.sum(0, keepdim=True)
    if method == "subtract":
        return (embeds[0] - embeds[1:].mean(0))[None]
    if method == "average":
        return embeds.mean(0, keepdim=True)
    if method == "max":
        return embeds.max(0, keepdim=True).values
    if method == "min":
        return embeds.min(0, keepdim=True).values
    return (embeds / torch.norm(embeds, dim=0, keepdim=True)).mean(0, keepdim=True)  # norm average


def _vision(node_type: str, ipadapter, clip_vision):
    vision = clip_vision if clip_vision is not None else getattr(ipadapter, "clip_vision", None)
    if vision is None:
        raise ValueError(f"{node_type}: input 'clip_vision' is not connected and input 'ipadapter' carries no "
                         f"CLIP-vision model: connect a CLIPVisionLoader or load with IPAdapterUnifiedLoader")
    return vision


def _encoded(ctx, ipadapter, vision, image, name: str):
    """What the adapter reads of ``image``'s CLIP-vision encoding (centre crop), ``[B, ...]``."""
    from .ip_adapter import _embeds

    return _embeds(ipadapter, vision.encode(image, "center", getattr(ctx, "device", None)), name)


def _default_negative(ctx, node_type: str, ipadapter, clip_vision, positive):
    """The pack's negative with no negative image: a black image's encoding for plus / face
    adapters, zeros for base adapters."""
    import torch

    if not ipadapter.uses_hidden_states:
        return torch.zeros_like(positive[:1])
    vision = _vision(node_type, ipadapter, clip_vision)
    black = torch.zeros(1, vision.image_size, vision.image_size, 3)
    return _encoded(ctx, ipadapter, vision, black, "image_negative")


def _no_mask(node_type: str, name: str, mask) -> None:
    if mask is not None:
        raise ValueError(f"{node_type}: input {name!r} (a mask) is not supported; disconnect it")


def apply_embeds(node_type: str, model, ipadapter, positive, negative, weight: float, start_at: float,
                 end_at: float, weight_type: str = "linear"):
    """``model`` with ``ipadapter`` prompted by CLIP-vision embeddings (one image's, ``[1, ...]``)."""
    from nodegen.models.ip_adapter import IPApplication

    if start_at > end_at:
        raise ValueError(f"{node_type}: start_at ({start_at}) must not exceed end_at ({end_at})")
    positive = _combined(positive, "concat", node_type, "pos_embed")
    out = model.clone()
    out.options["ip_adapters"] = [*out.options.get("ip_adapters", []),
                                  IPApplication(ipadapter, positive, negative[:1], float(weight), float(start_at),
                                                float(end_at), weight_type)]
    return out


def apply_image_prompt(ctx, node_type: str, model, ipadapter, image, weight: float, start_at: float,
                       end_at: float, weight_type: str = "linear", combine_embeds: str = "concat",
                       image_negative=None, clip_vision=None, attn_mask=None):
    """``model`` with ``ipadapter`` prompted by ``image`` (encoded with ``clip_vision`` or the one
    the loader chose), as ComfyUI_IPAdapter_plus applies it."""
    _no_mask(node_type, "attn_mask", attn_mask)
    vision = _vision(node_type, ipadapter, clip_vision)
    pos = _combined(_encoded(ctx, ipadapter, vision, image, "image"), combine_embeds, node_type)
    neg = (_encoded(ctx, ipadapter, vision, image_negative, "image_negative") if image_negative is not None
           else _default_negative(ctx, node_type, ipadapter, vision, pos))
    return apply_embeds(node_type, model, ipadapter, pos, neg, weight, start_at, end_at, weight_type)


_COMMON = dict(category="conditioning/ip_adapter", outputs=[Output("model", T.MODEL)],
               keywords=("image prompt", "ip-adapter", "ipadapter_plus"))


def _range_inputs():
    return [Input.float("start_at", 0.0, min=0.0, max=1.0, step=0.001, description="Fraction of the schedule"),
            Input.float("end_at", 1.0, min=0.0, max=1.0, step=0.001, description="Fraction of the schedule")]


@node("IPAdapter", description="Prompt with an image: the IP-Adapter from IPAdapterUnifiedLoader with the "
                               "image's CLIP-vision encoding, a weight over part of the schedule.",
      inputs=[Input.link("model", T.MODEL), Input.link("ipadapter", T.IPADAPTER), Input.link("image", T.IMAGE),
              Input.float("weight", 1.0, min=-1.0, max=3.0, step=0.05), *_range_inputs(),
              Input.choice("weight_type", list(SIMPLE_WEIGHT_TYPES), "standard",
                           description="standard: the same weight in every block; prompt is more important: "
                                       "ease out; style transfer: the style blocks only"),
              Input.link("attn_mask", T.MASK, optional=True, description="Not supported: leave unconnected")],
      **_COMMON)
def ip_adapter_simple(ctx, model, ipadapter, image, weight, start_at, end_at, weight_type="standard",
                      attn_mask=None):
    return apply_image_prompt(ctx, "IPAdapter", model, ipadapter, image, weight, start_at, end_at,
                              SIMPLE_WEIGHT_TYPES[weight_type], attn_mask=attn_mask)


@node("IPAdapterAdvanced", description="Prompt with an image (or several, combined), an optional negative image "
                                       "and CLIP vision, a weight over part of the schedule.",
      inputs=[Input.link("model", T.MODEL), Input.link("ipadapter", T.IPADAPTER), Input.link("image", T.IMAGE),
              Input.float("weight", 1.0, min=-1.0, max=5.0, step=0.05),
              Input.choice("weight_type", list(WEIGHT_TYPES), "linear",
                           description="How the weight varies over the UNet's blocks (linear: the same in all)"),
              Input.choice("combine_embeds", COMBINE, "concat", description="How several images are combined"),
              *_range_inputs(),
              Input.choice("embeds_scaling", ["V only"], "V only",
                           description="The weight scales the adapter's attention output"),
              Input.link("image_negative", T.IMAGE, optional=True,
                         description="Negative image; unset: zeros (base) or a black image (plus, face)"),
              Input.link("attn_mask", T.MASK, optional=True, description="Not supported: leave unconnected"),
              Input.link("clip_vision", T.CLIP_VISION, optional=True,
                         description="CLIP vision to encode with; unset: the unified loader's")],
      **_COMMON)
def ip_adapter_advanced(ctx, model, ipadapter, image, weight, weight_type, combine_embeds, start_at, end_at,
                        embeds_scaling="V only", image_negative=None, attn_mask=None, clip_vision=None):
    return apply_image_prompt(ctx, "IPAdapterAdvanced", model, ipadapter, image, weight, start_at, end_at,
                              weight_type, combine_embeds, image_negative, clip_vision, attn_mask)


#: The pack's EMBEDS: CLIP-vision embeddings an adapter reads, ``[B, ...]`` (image embeds for base
#: adapters, penultimate hidden states for plus / face adapters).
EMBEDS = register_type(SocketType("EMBEDS", "#e1bee7", frozenset(), False,
                                  "IP-Adapter image embeddings (CLIP-vision features the adapter reads)"))


@node("IPAdapterEncoder", category="conditioning/ip_adapter",
      description="Encode an image for an IP-Adapter (weighted): embeddings to combine, save or apply later.",
      inputs=[Input.link("ipadapter", T.IPADAPTER), Input.link("image", T.IMAGE),
              Input.float("weight", 1.0, min=-1.0, max=3.0, step=0.01),
              Input.link("mask", T.MASK, optional=True, description="Not supported: leave unconnected"),
              Input.link("clip_vision", T.CLIP_VISION, optional=True,
                         description="CLIP vision to encode with; unset: the unified loader's")],
      outputs=[Output("pos_embed", EMBEDS), Output("neg_embed", EMBEDS)],
      keywords=("image prompt", "ip-adapter", "ipadapter_plus"))
def ip_adapter_encoder(ctx, ipadapter, image, weight, mask=None, clip_vision=None):
    _no_mask("IPAdapterEncoder", "mask", mask)
    vision = _vision("IPAdapterEncoder", ipadapter, clip_vision)
    pos = _encoded(ctx, ipadapter, vision, image, "image")
    neg = _default_negative(ctx, "IPAdapterEncoder", ipadapter, vision, pos)
    return (pos * weight if weight != 1 else pos), neg


@node("IPAdapterCombineEmbeds", category="conditioning/ip_adapter",
      description="Combine up to five IP-Adapter embeddings (concatenate, add, subtract, average, max, min).",
      inputs=[Input.link("embed1", EMBEDS), Input.choice("method", [*COMBINE, "max", "min"], "concat"),
              *[Input.link(f"embed{i}", EMBEDS, optional=True) for i in range(2, 6)]],
      outputs=[Output("embeds", EMBEDS)], keywords=("image prompt", "ip-adapter", "ipadapter_plus"))
def ip_adapter_combine_embeds(ctx, embed1, method, embed2=None, embed3=None, embed4=None, embed5=None):
    import torch

    embeds = torch.cat([e for e in (embed1, embed2, embed3, embed4, embed5) if e is not None])
    return embeds if method == "concat" else _combined(embeds, method, "IPAdapterCombineEmbeds", "embed1")


@node("IPAdapterEmbeds", description="Prompt with IP-Adapter embeddings (from IPAdapterEncoder), a weight over "
                                     "part of the schedule.",
      inputs=[Input.link("model", T.MODEL), Input.link("ipadapter", T.IPADAPTER), Input.link("pos_embed", EMBEDS),
              Input.float("weight", 1.0, min=-1.0, max=3.0, step=0.05),
              Input.choice("weight_type", list(WEIGHT_TYPES), "linear",
                           description="How the weight varies over the UNet's blocks (linear: the same in all)"),
              *_range_inputs(),
              Input.choice("embeds_scaling", ["V only"], "V only",
                           description="The weight scales the adapter's attention output"),
              Input.link("neg_embed", EMBEDS, optional=True,
                         description="Negative embeddings; unset: zeros (base) or a black image's (plus, face)"),
              Input.link("attn_mask", T.MASK, optional=True, description="Not supported: leave unconnected"),
              Input.link("clip_vision", T.CLIP_VISION, optional=True,
                         description="Encodes the black image a plus adapter's default negative needs")],
      **_COMMON)
def ip_adapter_embeds(ctx, model, ipadapter, pos_embed, weight, weight_type, start_at, end_at,
                      embeds_scaling="V only", neg_embed=None, attn_mask=None, clip_vision=None):
    _no_mask("IPAdapterEmbeds", "attn_mask", attn_mask)
    neg = neg_embed if neg_embed is not None else _default_negative(ctx, "IPAdapterEmbeds", ipadapter, clip_vision,
                                                                     pos_embed)
    return apply_embeds("IPAdapterEmbeds", model, ipadapter, pos_embed, neg, weight, start_at, end_at, weight_type)
