"""Stability AI's own SD 3.5 ControlNet files (``sd3.5_large_controlnet_canny|depth|blur.safetensors``),
loaded into diffusers' ``SD3ControlNetModel`` and run as ComfyUI runs them (``load_controlnet_sd35``,
``comfy/cldm/dit_embedder.py``).

The file: original MMDiT block names (``attn.qkv``, ``attn.proj``, ``mlp.fc1|fc2``,
``adaLN_modulation.1``) beside diffusers' names for the rest, and a ``control_type`` number. The
keys are mapped as diffusers' ``scripts/convert_sd3_controlnet_to_diffusers.py`` maps them (the
fused ``qkv`` split in three), for any number of blocks and any width; ComfyUI's names for the
time and pooled-text embedders (``t_embedder`` / ``y_embedder``) are accepted too. Patch-embedding
weights of the main model in the file (``x_embedder``) are not used: ComfyUI replaces them with
the main model's. Files whose pooled-text embedder takes the main model's output (ComfyUI's
``double_y_emb``: a square ``y_embedder``) are refused.

What ComfyUI does differently from diffusers' StableDiffusion3ControlNetPipeline at run time:

* the control image (``[0, 1]``, resized to the latent's size in pixels) is changed by the control
  type before the VAE encodes it: canny ``a * 255 * 0.5 + 0.5``, depth ``1 - a``, blur (0) and a
  file without ``control_type`` as it is; the latent is shifted and scaled like any SD3 latent;
* the noisy latent is patch-embedded by the main model's ``x_embedder`` (diffusers' transformer's
  ``pos_embed.proj``) plus a sin-cos position table made for the latent's size (centre 7.5, half
  extent 7.5 along the shorter side: :func:`positions`), not the main model's cropped table;
* each block's residual is repeated ``ceil(depth / blocks)`` times (``depth``: the width / 64, the
  main model's block count) and block ``i`` of the main model gets residual ``i`` of that list,
  the last block included (diffusers adds none after its last block): :func:`spread`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)

#: ComfyUI's control types (``round(sd["control_type"])``); any other number, or none: the image as it is.
CONTROL_TYPES = {0: "blur", 1: "canny", 2: "depth"}
#: ComfyUI's names for the embedders (``MMDIT_MAP_BASIC``) -> diffusers'.
EMBEDDER_NAMES = {"t_embedder.mlp.0.": "time_text_embed.timestep_embedder.linear_1.",
                  "t_embedder.mlp.2.": "time_text_embed.timestep_embedder.linear_2.",
                  "y_embedder.mlp.0.": "time_text_embed.text_embedder.linear_1.",
                  "y_embedder.mlp.2.": "time_text_embed.text_embedder.linear_2."}
#: Original block names -> diffusers' (``attn.qkv`` is split separately).
BLOCK_NAMES = {"attn.proj.": "attn.to_out.0.", "mlp.fc1.": "ff.net.0.proj.", "mlp.fc2.": "ff.net.2.",
               "adaLN_modulation.1.": "norm1.linear."}
KEPT = ("time_text_embed.", "controlnet_blocks.", "pos_embed_input.")
#: The main model's patch embedding, which ComfyUI puts in place of any copy in the file.
MAIN_MODEL = ("x_embedder.",)
#: What the model's configuration is read from (diffusers' names).
REQUIRED = ("pos_embed_input.proj.weight", "controlnet_blocks.0.weight", "transformer_blocks.0.norm1.linear.weight",
            "time_text_embed.text_embedder.linear_1.weight")
BLOCK_KEY = re.compile(r"transformer_blocks\.(\d+)\.(.+)")


class StabilityControlNetError(ValueError):
    pass


def control_type(sd: dict[str, torch.Tensor]) -> str | None:
    """The file's control type ("blur", "canny", "depth") as ComfyUI reads it, or None."""
    t = sd.get("control_type")
    return None if t is None else CONTROL_TYPES.get(round(float(t.reshape(-1)[0])))


def to_diffusers(sd: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The file's tensors under ``SD3ControlNetModel``'s names (``name``: the file, for errors)."""
    out: dict[str, torch.Tensor] = {}
    ignored = []
    for key, value in sd.items():
        for old, new in EMBEDDER_NAMES.items():
            if key.startswith(old):
                key = new + key[len(old):]
        block = BLOCK_KEY.fullmatch(key)
        if block:
            out.update(_block(int(block.group(1)), block.group(2), value))
        elif key.startswith(KEPT):
            out[key] = value
        elif key != "control_type":
            ignored.append(key)
    foreign = [k for k in ignored if not k.startswith(MAIN_MODEL)]
    if foreign:  # ComfyUI loads these files with strict=False: keys it has no place for are left out
        log.warning("%s: %d tensor(s) the SD 3.5 ControlNet does not use, left out as ComfyUI leaves them out: %s",
                    name, len(foreign), ", ".join(foreign[:8]))
    missing = [k for k in REQUIRED if k not in out]
    if missing:
        raise StabilityControlNetError(f"{name}: an SD 3.5 ControlNet in Stability's layout without {missing}: "
                                       "the file is incomplete")
    pooled = out["time_text_embed.text_embedder.linear_1.weight"]
    if pooled.shape[0] == pooled.shape[1]:
        raise StabilityControlNetError(
            f"{name} is an SD 3.5 ControlNet in Stability's layout whose pooled-text embedder reads the main "
            "model's (a square y_embedder, ComfyUI's double_y_emb): nodegen does not apply this kind")
    return out


def _block(i: int, rest: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    prefix = f"transformer_blocks.{i}."
    if rest.startswith("attn.qkv."):
        suffix = rest[len("attn.qkv."):]
        q, k, v = torch.chunk(value, 3, dim=0)
        return {f"{prefix}attn.to_q.{suffix}": q, f"{prefix}attn.to_k.{suffix}": k,
                f"{prefix}attn.to_v.{suffix}": v}
    for old, new in BLOCK_NAMES.items():
        if rest.startswith(old):
            return {prefix + new + rest[len(old):]: value}
    return {prefix + rest: value}  # anything else: diffusers' name already, or refused as a misfit by the build


def preprocess(image: torch.Tensor, kind: str | None) -> torch.Tensor:
    """The control image (``[0, 1]`` pixels, any layout) as ComfyUI hands it to the VAE for this type."""
    if kind == "canny":
        return image * 255 * 0.5 + 0.5
    if kind == "depth":
        return 1.0 - image
    return image


def positions(width: int, h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``[h * w, width]`` sin-cos positions of an ``h x w`` patch grid (rows first), ComfyUI's
    ``get_2d_sincos_pos_embed_torch(width, w, h)``: both axes span ``7.5 +- 7.5`` along the
    shorter side and proportionally more along the longer; column features first."""
    small = min(h, w)
    half_h, half_w = h / small * 7.5, w / small * 7.5
    grid_h, grid_w = torch.meshgrid(torch.linspace(7.5 - half_h, 7.5 + half_h, h, device=device, dtype=dtype),
                                    torch.linspace(7.5 - half_w, 7.5 + half_w, w, device=device, dtype=dtype),
                                    indexing="ij")
    return torch.cat([_sincos(width // 2, grid_w), _sincos(width // 2, grid_h)], dim=1)


def _sincos(dim: int, pos: torch.Tensor) -> torch.Tensor:
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, device=pos.device, dtype=pos.dtype) / (dim / 2.0))
    out = pos.reshape(-1, 1) * omega
    return torch.cat([out.sin(), out.cos()], dim=1)


def embed_latent(transformer, x: torch.Tensor) -> torch.Tensor:
    """The noisy latent ``[B, C, H, W]`` as the ControlNet's tokens ``[B, H/p * W/p, width]``: the
    main model's patch projection plus :func:`positions` for this size."""
    patches = transformer.pos_embed.proj(x)
    h, w = patches.shape[-2:]  # ComfyUI's (size + 1) // patch for the even sizes SD3 latents have
    tokens = patches.flatten(2).transpose(1, 2)
    return tokens + positions(tokens.shape[-1], h, w, x.device).to(tokens.dtype)


def spread(residuals: list[torch.Tensor], blocks: int) -> list[torch.Tensor]:
    """One residual per main-model block as ComfyUI spreads them: each repeated
    ``ceil(depth / len(residuals))`` times, ``depth`` the width / 64; blocks past the list get none
    (zeros)."""
    depth = int(residuals[0].shape[-1]) // 64
    repeated = [r for r in residuals for _ in range(math.ceil(depth / len(residuals)))][:blocks]
    return repeated + [torch.zeros_like(residuals[0])] * (blocks - len(repeated))


@contextmanager
def last_block_residual(transformer, residual: torch.Tensor | None) -> Iterator[None]:
    """While inside, the SD3 transformer's last block adds ``residual`` to its image tokens, as
    ComfyUI's MMDiT does after every block (diffusers' transformer adds none after its last one)."""
    if residual is None:
        yield
        return

    def add(_module, _args, out):
        context, hidden = out
        return context, hidden + residual

    handle = transformer.transformer_blocks[-1].register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()
