"""One call of an SD3 / SD 3.5 (MMDiT) or Flux.1 transformer for the denoiser, with the same inputs
diffusers' StableDiffusion3Pipeline / FluxPipeline give it.

* SD3: ``transformer(x, timestep=sigma * 1000, encoder_hidden_states, pooled_projections)``. The
  text embeddings are zero-padded on the feature axis to the transformer's ``joint_attention_dim``
  (diffusers pads the CLIP features to the T5 width; without T5 the T5 tokens are zeros).
* Flux: the latent is packed into 2x2 patches (``[B, h/2 * w/2, 4C]``) with image position ids
  (row, column) and zero text ids, ``timestep = sigma``, ``guidance`` (the CondItem's
  ``extras["guidance"]``, default 3.5) for guidance-distilled models; the output is unpacked.
  Odd latent sizes are padded (replicate) to even and cropped back. Models with more input
  channels (Fill, Canny, Depth) get their extra channels from :mod:`nodegen.diffusion.flux_concat`;
  Kontext's reference images come as extra tokens (:mod:`nodegen.diffusion.flux_reference`).

Items whose token counts (or reference images) differ are run in separate calls (repeating context
tokens is not exact for joint attention).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from nodegen.diffusion.flux_concat import flux_concat
from nodegen.diffusion.flux_reference import reference_ids, reference_key, reference_tokens

FLOW_FAMILIES = ("sd3", "flux")
DEFAULT_FLUX_GUIDANCE = 3.5


def _batched(t: torch.Tensor, b: int) -> torch.Tensor:
    return t.expand(b, *t.shape[1:]) if t.shape[0] == 1 else t


def _pad_features(e: torch.Tensor, width: int) -> torch.Tensor:
    if e.shape[-1] < width:
        return F.pad(e, (0, width - e.shape[-1]))
    if e.shape[-1] > width:
        extra = e[..., width:]
        if bool(extra.abs().max() > 0):
            raise ValueError(f"the conditioning is {e.shape[-1]} wide, but this model takes {width}: "
                             "it comes from other text encoders than this model's")
        return e[..., :width]
    return e


def pack(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, _, d = x.shape
    c = d // 4
    return x.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def image_ids(h: int, w: int, device, dtype) -> torch.Tensor:
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(h // 2)[:, None]
    ids[..., 2] = ids[..., 2] + torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device, dtype)


def _call_sd3(transformer, x, sigma: float, ms, items, device, dtype) -> torch.Tensor:
    cfg = transformer.config
    b = x.shape[0]
    n = len(items)
    emb = torch.cat([_batched(_pad_features(it.embeds.to(device, dtype), int(cfg.joint_attention_dim)), b)
                     for it in items])
    pooled = []
    for it in items:
        p = it.pooled if it.pooled is not None else torch.zeros(1, int(cfg.pooled_projection_dim))
        pooled.append(_batched(p.to(device, dtype), b))
    x_in = torch.cat([x.to(dtype)] * n) if n > 1 else x.to(dtype)
    t = torch.full((b * n,), float(ms.timestep(sigma)), dtype=dtype, device=device)
    return transformer(hidden_states=x_in, timestep=t, encoder_hidden_states=emb,
                       pooled_projections=torch.cat(pooled), return_dict=False)[0]


def _call_flux(transformer, x, sigma: float, ms, items, device, dtype, noise_mask=None) -> torch.Tensor:
    cfg = transformer.config
    b, c, h0, w0 = x.shape
    extra = int(cfg.in_channels) // 4 - c  # latent channels beside the latent's own (Fill, Canny, Depth)
    if extra > 0:
        x = torch.cat([torch.cat([x, flux_concat(it.extras, x, extra, noise_mask)], dim=1) for it in items])
    ph, pw = h0 % 2, w0 % 2
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    h, w = x.shape[-2:]
    n = len(items)
    packed = pack(x.to(dtype))
    x_in = torch.cat([packed] * n) if n > 1 and extra <= 0 else packed
    emb = torch.cat([_batched(it.embeds.to(device, dtype), b) for it in items])
    pooled = []
    for it in items:
        p = it.pooled if it.pooled is not None else torch.zeros(1, int(cfg.pooled_projection_dim))
        pooled.append(_batched(p.to(device, dtype), b))
    guidance = None
    if getattr(cfg, "guidance_embeds", False):
        g = [float(it.extras.get("guidance", DEFAULT_FLUX_GUIDANCE)) for it in items]
        guidance = torch.tensor([v for v in g for _ in range(b)], dtype=torch.float32, device=device)
    t = torch.full((b * n,), float(ms.timestep(sigma)), dtype=dtype, device=device)
    txt_ids = torch.zeros(emb.shape[1], 3, device=device, dtype=dtype)
    img_ids = image_ids(h, w, device, dtype)
    tokens = x_in.shape[1]
    refs = items[0].extras.get("reference_latents")
    if refs:  # Kontext: the reference images' tokens after the latent's (same shapes in every item here)
        method = items[0].extras.get("reference_latents_method", "offset")
        ref_tokens = torch.cat([reference_tokens(it.extras["reference_latents"], b, pack, device, dtype)
                                for it in items])
        x_in = torch.cat([x_in, ref_tokens], dim=1)
        img_ids = torch.cat([img_ids, reference_ids(refs, method, device, dtype)])
    out = transformer(hidden_states=x_in, timestep=t, guidance=guidance, pooled_projections=torch.cat(pooled),
                      encoder_hidden_states=emb, txt_ids=txt_ids, img_ids=img_ids, return_dict=False)[0]
    return unpack(out[:, :tokens], h, w)[:, :, :h0, :w0]


def run_flow(family: str, transformer, x: torch.Tensor, sigma: float, ms, items: list, device, dtype,
             noise_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The model output (velocity) for each CondItem in ``items`` on the sample ``x``;
    ``noise_mask``: the latent's, for a Flux Fill model whose conditioning has no mask."""
    if any(it.extras.get("controls") for it in items):
        raise ValueError(f"ControlNet is not supported for {family} models yet (nodegen's ControlNets are "
                         "SD1/SD2/SDXL UNet ControlNets)")
    call = functools.partial(_call_flux, noise_mask=noise_mask) if family == "flux" else _call_sd3
    outs: list[torch.Tensor | None] = [None] * len(items)
    groups: dict[tuple, list[int]] = {}
    for k, it in enumerate(items):
        groups.setdefault((tuple(it.embeds.shape[1:]), reference_key(it.extras)), []).append(k)
    b = x.shape[0]
    for ks in groups.values():
        res = call(transformer, x, sigma, ms, [items[k] for k in ks], device, dtype)
        for j, k in enumerate(ks):
            outs[k] = res[j * b : (j + 1) * b]
    return outs  # type: ignore[return-value]
