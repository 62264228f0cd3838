"""Conditioning nodes: text encoding (SD1/SD2, SDXL with size conditioning, SDXL refiner) and
combining conditionings (combine = average of predictions, concat = join tokens, zero out,
area)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node
from nodegen.models.embeddings import lookup_for, text_fingerprint

if TYPE_CHECKING:
    from nodegen.diffusion.conditioning import CondItem

torch = lazy_import("torch")
C = lazy_import("nodegen.diffusion.conditioning")

MAX_SIZE = 16384


def _check_clip(clip, families: tuple[str, ...], node_type: str) -> None:
    fam = getattr(clip, "family", None)
    if fam not in families:
        raise ValueError(f"{node_type}: input 'clip' is a {fam} text encoder; this node needs "
                         f"{' or '.join(families)}")


def _check_cond(cond, name: str) -> list:
    from nodegen.diffusion.conditioning import CondItem

    if not isinstance(cond, list) or not all(isinstance(c, CondItem) for c in cond):
        raise TypeError(f"input '{name}' must be a CONDITIONING (a list of CondItem)")
    return cond


@node("CLIPTextEncode", category="conditioning",
      description="Encode a prompt with the text encoder ((word:1.2) weights, long prompts).",
      inputs=[Input.link("clip", T.CLIP), Input.string("text", "", multiline=True)],
      outputs=[Output("conditioning", T.CONDITIONING)], keywords=("prompt", "text"),
      fingerprint=text_fingerprint("text"))
def clip_text_encode(ctx, clip, text):
    if not isinstance(text, str):
        raise TypeError("input 'text' must be text")
    return clip.encode(text, device=getattr(ctx, "device", None), embeddings=lookup_for(getattr(ctx, "paths", None)))


def encode_sdxl_pair(clip, text_l: str, text_g: str, device=None, embeddings=None) -> CondItem:
    """SDXL: CLIP-L encodes ``text_l``, OpenCLIP-G encodes ``text_g`` (and gives the pooled
    output); the shorter one is padded with empty-prompt chunks, then features are concatenated."""
    from nodegen.diffusion.conditioning import CondItem
    from nodegen.models.clip_encode import encode_text
    from nodegen.models.objects import TEXT_FAMILY

    spec = TEXT_FAMILY["sdxl"]
    layer = clip.layer_idx if clip.layer_idx is not None else spec["layer"]
    kw = dict(layer_idx=layer, norm_hidden=spec["norm"])
    with torch.no_grad(), clip.use(device, None) as encs:
        (tok_l, tok_g), (enc_l, enc_g) = clip.tokenizers, encs
        z_l, _ = encode_text([tok_l], [enc_l], text_l, pooled_from=None, embeddings=embeddings,
                             embedding_keys=("clip_l",), **kw)
        z_g, pooled = encode_text([tok_g], [enc_g], text_g, pooled_from=0, embeddings=embeddings,
                                  embedding_keys=("clip_g",), **kw)
        if z_l.shape[1] != z_g.shape[1]:
            e_l, _ = encode_text([tok_l], [enc_l], "", pooled_from=None, **kw)
            e_g, _ = encode_text([tok_g], [enc_g], "", pooled_from=None, **kw)
            while z_l.shape[1] < z_g.shape[1]:
                z_l = torch.cat([z_l, e_l], dim=1)
            while z_g.shape[1] < z_l.shape[1]:
                z_g = torch.cat([z_g, e_g], dim=1)
    embeds = torch.cat([z_l, z_g.to(z_l)], dim=-1).to("cpu", torch.float32)
    return CondItem(embeds, pooled.to("cpu", torch.float32), {})


@node("CLIPTextEncodeSDXL", category="conditioning",
      description="SDXL text encoding with size and crop conditioning (text_g: OpenCLIP-G, text_l: CLIP-L).",
      inputs=[Input.link("clip", T.CLIP),
              Input.int("width", 1024, min=0, max=MAX_SIZE), Input.int("height", 1024, min=0, max=MAX_SIZE),
              Input.int("crop_w", 0, min=0, max=MAX_SIZE), Input.int("crop_h", 0, min=0, max=MAX_SIZE),
              Input.int("target_width", 1024, min=0, max=MAX_SIZE),
              Input.int("target_height", 1024, min=0, max=MAX_SIZE),
              Input.string("text_g", "", multiline=True), Input.string("text_l", "", multiline=True)],
      outputs=[Output("conditioning", T.CONDITIONING)], fingerprint=text_fingerprint("text_g", "text_l"))
def clip_text_encode_sdxl(ctx, clip, width, height, crop_w, crop_h, target_width, target_height, text_g, text_l):
    _check_clip(clip, ("sdxl",), "CLIPTextEncodeSDXL")
    item = encode_sdxl_pair(clip, text_l, text_g, getattr(ctx, "device", None),
                            lookup_for(getattr(ctx, "paths", None)))
    item.extras.update(width=width, height=height, crop_w=crop_w, crop_h=crop_h,
                       target_width=target_width, target_height=target_height)
    return [item]


@node("CLIPTextEncodeSDXLRefiner", category="conditioning",
      description="SDXL refiner text encoding with aesthetic score and size conditioning.",
      inputs=[Input.link("clip", T.CLIP), Input.float("ascore", 6.0, min=0.0, max=1000.0, step=0.01),
              Input.int("width", 1024, min=0, max=MAX_SIZE), Input.int("height", 1024, min=0, max=MAX_SIZE),
              Input.string("text", "", multiline=True)],
      outputs=[Output("conditioning", T.CONDITIONING)], fingerprint=text_fingerprint("text"))
def clip_text_encode_sdxl_refiner(ctx, clip, ascore, width, height, text):
    _check_clip(clip, ("sdxl_refiner",), "CLIPTextEncodeSDXLRefiner")
    cond = clip.encode(text, device=getattr(ctx, "device", None), embeddings=lookup_for(getattr(ctx, "paths", None)))
    return [c.copy(extras=dict(c.extras, aesthetic_score=ascore, width=width, height=height)) for c in cond]


@node("ConditioningCombine", category="conditioning",
      description="Use both conditionings: their predictions are averaged.",
      inputs=[Input.link("conditioning_1", T.CONDITIONING), Input.link("conditioning_2", T.CONDITIONING)],
      outputs=[Output("conditioning", T.CONDITIONING)])
def conditioning_combine(ctx, conditioning_1, conditioning_2):
    return C.combine(_check_cond(conditioning_1, "conditioning_1"), _check_cond(conditioning_2, "conditioning_2"))


@node("ConditioningConcat", category="conditioning",
      description="Append the tokens of conditioning_from to conditioning_to.",
      inputs=[Input.link("conditioning_to", T.CONDITIONING), Input.link("conditioning_from", T.CONDITIONING)],
      outputs=[Output("conditioning", T.CONDITIONING)])
def conditioning_concat(ctx, conditioning_to, conditioning_from):
    frm = _check_cond(conditioning_from, "conditioning_from")
    if not frm:
        raise ValueError("input 'conditioning_from' is empty")
    return C.concat(_check_cond(conditioning_to, "conditioning_to"), frm)


@node("ConditioningZeroOut", category="conditioning",
      description="Zero embeddings and pooled output (an empty negative for SDXL).",
      inputs=[Input.link("conditioning", T.CONDITIONING)], outputs=[Output("conditioning", T.CONDITIONING)])
def conditioning_zero_out(ctx, conditioning):
    return C.zero_out(_check_cond(conditioning, "conditioning"))


@node("ConditioningSetArea", category="conditioning",
      description="Apply a conditioning only inside a rectangle (pixels, multiples of 8).",
      inputs=[Input.link("conditioning", T.CONDITIONING),
              Input.int("width", 64, min=64, max=MAX_SIZE, step=8), Input.int("height", 64, min=64, max=MAX_SIZE, step=8),
              Input.int("x", 0, min=0, max=MAX_SIZE, step=8), Input.int("y", 0, min=0, max=MAX_SIZE, step=8),
              Input.float("strength", 1.0, min=0.0, max=10.0, step=0.01)],
      outputs=[Output("conditioning", T.CONDITIONING)])
def conditioning_set_area(ctx, conditioning, width, height, x, y, strength):
    for name, v in (("width", width), ("height", height), ("x", x), ("y", y)):
        if v % 8:
            raise ValueError(f"input '{name}' must be a multiple of 8, got {v}")
    return C.set_area(_check_cond(conditioning, "conditioning"), width, height, x, y, strength)


@node("ConditioningSetAreaPercentage", category="conditioning",
      description="Apply a conditioning only inside a rectangle given as fractions of the image (0-1).",
      inputs=[Input.link("conditioning", T.CONDITIONING),
              *(Input.float(name, default, min=0.0, max=1.0, step=0.01)
                for name, default in (("width", 1.0), ("height", 1.0), ("x", 0.0), ("y", 0.0))),
              Input.float("strength", 1.0, min=0.0, max=10.0, step=0.01)],
      outputs=[Output("conditioning", T.CONDITIONING)], keywords=("area", "region", "percent"))
def conditioning_set_area_percentage(ctx, conditioning, width, height, x, y, strength):
    return C.set_area_fraction(_check_cond(conditioning, "conditioning"), width, height, x, y, strength)


@node("ConditioningSetAreaStrength", category="conditioning",
      description="Set how strongly a conditioning counts where areas overlap (the weight ConditioningSetArea "
                  "also sets).",
      inputs=[Input.link("conditioning", T.CONDITIONING), Input.float("strength", 1.0, min=0.0, max=10.0, step=0.01)],
      outputs=[Output("conditioning", T.CONDITIONING)])
def conditioning_set_area_strength(ctx, conditioning, strength):
    return [c.copy(extras=dict(c.extras, strength=float(strength))) for c in _check_cond(conditioning, "conditioning")]


@node("InstructPixToPixConditioning", category="conditioning/instructpix2pix",
      description="Give a model that takes an image beside its latent that image: Flux.1 Canny / Depth "
                  "(the control image: a canny or depth map) and InstructPix2Pix models (the image to edit). "
                  "Both conditionings carry its latents; the latent output is empty, of the image's size.",
      inputs=[Input.link("positive", T.CONDITIONING), Input.link("negative", T.CONDITIONING),
              Input.link("vae", T.VAE), Input.link("pixels", T.IMAGE)],
      outputs=[Output("positive", T.CONDITIONING), Output("negative", T.CONDITIONING), Output("latent", T.LATENT)],
      keywords=("flux canny", "flux depth", "control", "edit", "ip2p"))
def instruct_pix_to_pix_conditioning(ctx, positive, negative, vae, pixels):
    from nodegen.diffusion.latent_scale import encoded_extras

    from .vae import crop_to_multiple

    _check_cond(positive, "positive")
    _check_cond(negative, "negative")
    if not torch.is_tensor(pixels) or pixels.ndim != 4:
        raise ValueError("input 'pixels' must be an IMAGE [batch, height, width, channels]")
    px, _, _ = crop_to_multiple(pixels[..., :3])
    concat_latent = vae.encode(px, device=getattr(ctx, "device", None))
    extras = encoded_extras(vae, {"concat_latent_image": concat_latent})
    pos = [c.copy(extras=dict(c.extras, **extras)) for c in positive]
    neg = [c.copy(extras=dict(c.extras, **extras)) for c in negative]
    return {"positive": pos, "negative": neg, "latent": {"samples": torch.zeros_like(concat_latent)}}


@node("InpaintModelConditioning", category="conditioning/inpaint",
      description="Inputs for inpainting models (SD 9 channels, Flux.1 Fill): masked-image latents and mask "
                  "go with the conditioning; the latent holds the original image (and the mask to blend).",
      inputs=[Input.link("positive", T.CONDITIONING), Input.link("negative", T.CONDITIONING),
              Input.link("vae", T.VAE), Input.link("pixels", T.IMAGE), Input.link("mask", T.MASK),
              Input.bool("noise_mask", True, description="Also keep the unmasked area (blend while sampling)")],
      outputs=[Output("positive", T.CONDITIONING), Output("negative", T.CONDITIONING), Output("latent", T.LATENT)])
def inpaint_model_conditioning(ctx, positive, negative, vae, pixels, mask, noise_mask=True):
    from nodegen.diffusion.latent_scale import encoded, encoded_extras

    from .vae import crop_to_multiple, inpaint_inputs

    _check_cond(positive, "positive")
    _check_cond(negative, "negative")
    if not torch.is_tensor(pixels) or pixels.ndim != 4:
        raise ValueError("input 'pixels' must be an IMAGE [batch, height, width, channels]")
    device = getattr(ctx, "device", None)
    masked, m = inpaint_inputs(pixels, mask, 0)
    concat_latent = vae.encode(masked, device=device)
    orig, _, _ = crop_to_multiple(pixels[..., :3])
    # a VAE whose scale is only assumed: both latents record it, for the model to rescale them
    latent = encoded(vae, {"samples": vae.encode(orig, device=device)})
    if noise_mask:
        latent["noise_mask"] = m
    extras = encoded_extras(vae, {"concat_latent_image": concat_latent, "concat_mask": m})
    pos = [c.copy(extras=dict(c.extras, **extras)) for c in positive]
    neg = [c.copy(extras=dict(c.extras, **extras)) for c in negative]
    return {"positive": pos, "negative": neg, "latent": latent}
