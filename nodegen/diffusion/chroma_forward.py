"""One call of a Chroma transformer (diffusers' ``ChromaTransformer2DModel``) for the denoiser, with
the inputs diffusers' ChromaPipeline gives it: the latent packed into 2x2 patches as Flux's (image
position ids, zero text ids), ``timestep = sigma``, the T5 tokens of the conditioning. The items of
one call have the same token count (``nodegen.diffusion.flow_forward.run_flow`` groups them), so
no attention mask is needed: every token given is seen, as ComfyUI runs Chroma.

Chroma has no pooled text input; its approximator takes a distilled-guidance value that diffusers
fixes at 0 and ComfyUI takes from ``FluxGuidance`` (0 without one): a conditioning that carries
another guidance value is refused rather than silently run at 0.
"""

from __future__ import annotations

import torch

from nodegen.diffusion.latent_patches import image_ids, pack, pad_to_patches, unpack


def _check_items(items: list) -> None:
    for it in items:
        guidance = float(it.extras.get("guidance", 0.0) or 0.0)
        if guidance != 0.0:
            raise ValueError(f"this Chroma model runs with distilled guidance 0 (as diffusers' ChromaPipeline); the "
                             f"conditioning asks for {guidance:g} (FluxGuidance / CLIPTextEncodeFlux): remove that "
                             "node or set its guidance to 0")
        if it.extras.get("controls") or it.extras.get("reference_latents"):
            raise ValueError("ControlNets and reference latents are not applied to Chroma models")


def call_chroma(transformer, x: torch.Tensor, sigma: float, ms, items: list, device, dtype) -> torch.Tensor:
    """The velocity for every item in ``items`` (one batch of ``x`` each, concatenated)."""
    _check_items(items)
    b, _, h0, w0 = x.shape
    x = pad_to_patches(x)
    h, w = x.shape[-2:]
    n = len(items)
    packed = pack(x.to(dtype))
    x_in = torch.cat([packed] * n) if n > 1 else packed
    emb = torch.cat([it.embeds.to(device, dtype).expand(b, *it.embeds.shape[1:]) if it.embeds.shape[0] == 1
                     else it.embeds.to(device, dtype) for it in items])
    t = torch.full((b * n,), float(ms.timestep(sigma)), dtype=dtype, device=device)
    txt_ids = torch.zeros(emb.shape[1], 3, device=device, dtype=dtype)
    out = transformer(hidden_states=x_in, encoder_hidden_states=emb, timestep=t, txt_ids=txt_ids,
                      img_ids=image_ids(h, w, device, dtype), return_dict=False)[0]
    return unpack(out, h, w)[:, :, :h0, :w0]
