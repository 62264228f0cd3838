"""One call of an SD3 / SD 3.5 (MMDiT) or Flux.1 transformer for the denoiser, with the same inputs
diffusers' StableDiffusion3Pipeline / FluxPipeline give it (Chroma: :mod:`nodegen.diffusion.chroma_forward`).

* SD3: ``transformer(x, timestep=sigma * 1000, encoder_hidden_states, pooled_projections)``. The
  text embeddings are zero-padded on the feature axis to the transformer's ``joint_attention_dim``
  (diffusers pads the CLIP features to the T5 width; without T5 the T5 tokens are zeros).
* Flux: the latent is packed into 2x2 patches (``[B, h/2 * w/2, 4C]``) with image position ids
  (row, column) and zero text ids, ``timestep = sigma``, ``guidance`` (the CondItem's
  ``extras["guidance"]``, default 3.5; None: no guidance embedding, ComfyUI's FluxDisableGuidance,
  :mod:`nodegen.diffusion.flux_guidance_off`) for guidance-distilled models; the output is unpacked.
  Odd latent sizes are padded (replicate) to even and cropped back. Models with more input
  channels (Fill, Canny, Depth) get their extra channels from :mod:`nodegen.diffusion.flux_concat`;
  Kontext's reference images come as extra tokens (:mod:`nodegen.diffusion.flux_reference`);
  ControlNets' residuals (:mod:`nodegen.models.flux_controlnet`) are passed as diffusers'
  FluxControlNetPipeline passes them; SD3 ControlNets' (:mod:`nodegen.models.sd3_controlnet`) as
  StableDiffusion3ControlNetPipeline passes them (``block_controlnet_hidden_states``).

Items whose token counts (or reference images) differ are run in separate calls (repeating context
tokens is not exact for joint attention).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from nodegen.diffusion import attention_bias
from nodegen.diffusion.chroma_forward import call_chroma
from nodegen.diffusion.flux_concat import flux_concat
from nodegen.diffusion.flux_guidance_off import guidance_off
from nodegen.diffusion.flux_reference import reference_ids, reference_key, reference_tokens
from nodegen.diffusion.latent_patches import (  # (others import them from here too)
    image_ids,
    pack,
    pad_to_patches,
    unpack,
)
from nodegen.models.objects import FLOW_FAMILIES  # noqa: F401 - named here too
from nodegen.models.sd3_controlnet import per_block
from nodegen.models.sd35_stability_controlnet import last_block_residual

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


def _call_sd3(transformer, x, sigma: float, ms, items, device, dtype, progress: float = 0.0) -> torch.Tensor:
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
    pooled_in = torch.cat(pooled)
    controls = [c for c in items[0].extras.get("controls") or () if c.active(progress)]
    residuals = last = None
    for control in controls:  # SD3 ControlNets' residuals, summed (diffusers' SD3MultiControlNetModel)
        r = per_block(control.residuals(transformer, x_in, t, emb, pooled_in), len(transformer.transformer_blocks))
        residuals = r if residuals is None else [a + c for a, c in zip(residuals, r, strict=True)]
        if control.adds_to_last_block:  # Stability-layout SD 3.5 files, as ComfyUI runs them
            last = r[-1] if last is None else last + r[-1]
    with last_block_residual(transformer, last):
        return transformer(hidden_states=x_in, timestep=t, encoder_hidden_states=emb, pooled_projections=pooled_in,
                           block_controlnet_hidden_states=residuals, return_dict=False)[0]


def _input_width(transformer) -> int:
    """The packed features the Flux transformer takes: its input layer's, which a control LoRA
    widens for its MODEL's runs (:mod:`nodegen.models.flux_control_lora`), else the config's."""
    weight = getattr(getattr(transformer, "x_embedder", None), "weight", None)
    if not (isinstance(weight, torch.Tensor) and weight.ndim == 2):
        return int(transformer.config.in_channels)
    from nodegen.models.gguf_linear import logical_shape  # GGUF blocks: the shape of their values

    return int(logical_shape(weight)[1])


def _call_flux(transformer, x, sigma: float, ms, items, device, dtype, noise_mask=None,
               progress: float = 0.0) -> torch.Tensor:
    cfg = transformer.config
    b, c, h0, w0 = x.shape
    extra = _input_width(transformer) // 4 - c  # latent channels beside the latent's own (Fill, Canny, Depth)
    if extra > 0:
        x = torch.cat([torch.cat([x, flux_concat(it.extras, x, extra, noise_mask)], dim=1) for it in items])
    x = pad_to_patches(x)
    h, w = x.shape[-2:]
    n = len(items)
    packed = pack(x.to(dtype))
    x_in = torch.cat([packed] * n) if n > 1 and extra <= 0 else packed
    emb = torch.cat([_batched(it.embeds.to(device, dtype), b) for it in items])
    pooled = []
    for it in items:
        p = it.pooled if it.pooled is not None else torch.zeros(1, int(cfg.pooled_projection_dim))
        pooled.append(_batched(p.to(device, dtype), b))
    g = [it.extras.get("guidance", DEFAULT_FLUX_GUIDANCE) for it in items]
    rows_off = [v is None for v in g for _ in range(b)]  # FluxDisableGuidance (ControlNets keep the default)
    g_tensor = torch.tensor([DEFAULT_FLUX_GUIDANCE if v is None else float(v) for v in g for _ in range(b)],
                            dtype=torch.float32, device=device)
    guidance = g_tensor if getattr(cfg, "guidance_embeds", False) else None
    t = torch.full((b * n,), float(ms.timestep(sigma)), dtype=dtype, device=device)
    txt_ids = torch.zeros(emb.shape[1], 3, device=device, dtype=dtype)
    img_ids = image_ids(h, w, device, dtype)
    tokens = x_in.shape[1]
    pooled_in = torch.cat(pooled)
    controls = [c for c in items[0].extras.get("controls") or () if c.active(progress)]
    control_kwargs = {}
    if controls:
        if extra > 0:
            raise ValueError("ControlNets are not applied to Flux models that take an image beside the latent "
                             "(Fill, Canny, Depth): they are controlled through their own conditioning")
        control_kwargs = _control_residuals(controls, x_in, h, w, timestep=t, guidance=g_tensor,
                                            pooled_projections=pooled_in, encoder_hidden_states=emb,
                                            txt_ids=txt_ids, img_ids=img_ids)
    refs = items[0].extras.get("reference_latents")
    if refs:  # Kontext: the reference images' tokens after the latent's (same shapes in every item here)
        if controls:
            raise ValueError("a Flux ControlNet and Kontext reference images cannot be combined in one sampling")
        method = items[0].extras.get("reference_latents_method", "offset")
        ref_tokens = torch.cat([reference_tokens(it.extras["reference_latents"], b, pack, device, dtype)
                                for it in items])
        x_in = torch.cat([x_in, ref_tokens], dim=1)
        img_ids = torch.cat([img_ids, reference_ids(refs, method, device, dtype, (h, w))])
    ranges = items[0].extras.get(attention_bias.KEY)
    if ranges:  # StyleModelApply's attn_bias (same ranges in every item here)
        mask = attention_bias.bias_mask(ranges, emb.shape[1], x_in.shape[1], device, dtype)
        control_kwargs["joint_attention_kwargs"] = {"attention_mask": mask}
    with guidance_off(transformer, rows_off):
        out = transformer(hidden_states=x_in, timestep=t, guidance=guidance, pooled_projections=pooled_in,
                          encoder_hidden_states=emb, txt_ids=txt_ids, img_ids=img_ids, return_dict=False,
                          **control_kwargs)[0]
    return unpack(out[:, :tokens], h, w)[:, :, :h0, :w0]


def _control_residuals(controls: list, hidden: torch.Tensor, h: int, w: int, **inputs) -> dict:
    """The transformer's ControlNet arguments: each active control's residuals, summed (diffusers'
    FluxMultiControlNetModel); XLabs' models repeat their blocks over the transformer's."""
    double = single = None
    for control in controls:
        d, s = control.residuals(hidden, h, w, pack, **dict(inputs))
        double = list(d) if double is None else [a + c for a, c in zip(double, d, strict=True)]
        if s is not None and len(s):
            single = list(s) if single is None else [a + c for a, c in zip(single, s, strict=True)]
    return {"controlnet_block_samples": double, "controlnet_single_block_samples": single,
            "controlnet_blocks_repeat": any(c.control_net.takes_pixels for c in controls)}


def run_flow(family: str, transformer, x: torch.Tensor, sigma: float, ms, items: list, device, dtype,
             noise_mask: torch.Tensor | None = None, progress: float = 0.0) -> list[torch.Tensor]:
    """The model output (velocity) for each CondItem in ``items`` on the sample ``x``;
    ``noise_mask``: the latent's, for a Flux Fill model whose conditioning has no mask;
    ``progress``: the step's fraction of the schedule (ControlNets' start..end)."""
    _check_controls(family, items)
    if family != "flux" and any(it.extras.get(attention_bias.KEY) for it in items):
        raise ValueError(f"StyleModelApply's attn_bias needs a Flux model; this is {family}: use strength_type "
                         "'multiply'")
    if family == "flux":
        call = functools.partial(_call_flux, noise_mask=noise_mask, progress=progress)
    elif family == "chroma":
        call = call_chroma
    else:
        call = functools.partial(_call_sd3, progress=progress)
    outs: list[torch.Tensor | None] = [None] * len(items)
    groups: dict[tuple, list[int]] = {}
    for k, it in enumerate(items):
        controls = tuple(id(c) for c in it.extras.get("controls") or ())
        key = (tuple(it.embeds.shape[1:]), reference_key(it.extras), controls, it.extras.get(attention_bias.KEY))
        groups.setdefault(key, []).append(k)
    b = x.shape[0]
    for ks in groups.values():
        res = call(transformer, x, sigma, ms, [items[k] for k in ks], device, dtype)
        for j, k in enumerate(ks):
            outs[k] = res[j * b : (j + 1) * b]
    return outs  # type: ignore[return-value]


def _check_controls(family: str, items: list) -> None:
    for it in items:
        for control in it.extras.get("controls") or ():
            kind = getattr(control, "kind", "controlnet")
            if (kind, family) in (("flux_controlnet", "flux"), ("sd3_controlnet", "sd3")):
                continue
            what = {"flux_controlnet": "a Flux.1 ControlNet", "sd3_controlnet": "an SD3 / SD 3.5 ControlNet"}.get(
                kind, "an SD1/SD2/SDXL ControlNet or T2I-Adapter")
            name = getattr(getattr(control, "control_net", None), "name", "")
            raise ValueError(f"ControlNet {name!r} is {what}; it cannot control this {family} model "
                             f"(nodegen applies Flux.1 ControlNets to Flux models and SD3 ControlNets to "
                             "SD3 / SD 3.5 models)")
