"""The extra input channels of Flux.1 models that take an image beside the latent, as ComfyUI's
``Flux.concat_cond`` builds them (and diffusers' FluxControlPipeline / FluxFillPipeline pass them):

* **Canny / Depth** (``flux1-canny-dev``, ``flux1-depth-dev``: 128 packed input channels): the
  control image's latents (InstructPixToPixConditioning's ``concat_latent_image``) in the model's
  latent space; zeros (moved into that space) when the conditioning has none.
* **Fill** (``flux1-fill-dev``: 384): the masked image's latents and the mask, each latent pixel's
  8x8 mask pixels as 64 channels (InpaintModelConditioning's ``concat_latent_image`` and
  ``concat_mask``; the latent's noise mask when the conditioning has none; else all ones).

The result is ``[B, C, h, w]`` at the latent's size: packed and joined to the packed latent on the
feature axis (``pack(cat([x, concat]))`` equals ``cat([pack(x), pack(concat)])``).
"""

from __future__ import annotations

import torch

from nodegen.diffusion.latent_formats import latent_in
from nodegen.image.composite import repeat_to_batch
from nodegen.image.latent_resize import resize

#: Latent channels of a Flux.1 latent and of the mask part of a Fill model's input (8x8 pixels).
LATENT_CHANNELS = 16
MASK_CHANNELS = 64


def flux_concat(extras: dict, like: torch.Tensor, channels: int, noise_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
    """The ``channels`` extra latent channels for one conditioning (``extras``) and the latent
    ``like`` ``[B, 16, h, w]`` (model space)."""
    b, _, h, w = like.shape
    if channels not in (LATENT_CHANNELS, LATENT_CHANNELS + MASK_CHANNELS):
        raise ValueError(f"this Flux model takes {LATENT_CHANNELS * 4 + channels * 4} input channels; nodegen "
                         f"knows Flux models with {LATENT_CHANNELS * 4} (text to image), "
                         f"{LATENT_CHANNELS * 8} (Canny / Depth) and {(2 * LATENT_CHANNELS + MASK_CHANNELS) * 4} (Fill)")
    image = extras.get("concat_latent_image")
    image = torch.zeros_like(like) if image is None else image.to(like.device, torch.float32)
    image = latent_in("flux", repeat_to_batch(_resized(image, h, w), b))
    if channels == LATENT_CHANNELS:
        return image
    mask = extras.get("concat_mask", noise_mask)
    if mask is None:
        mask = torch.ones(b, 1, h, w, device=like.device)
    mask = mask.to(like.device, torch.float32)
    mask = mask.reshape(-1, 1, *mask.shape[-2:]) if mask.ndim != 4 else mask.mean(dim=1, keepdim=True)
    mask = _resized(mask, h * 8, w * 8)
    mask = mask.view(mask.shape[0], h, 8, w, 8).permute(0, 2, 4, 1, 3).reshape(mask.shape[0], MASK_CHANNELS, h, w)
    return torch.cat([image, repeat_to_batch(mask, b)], dim=1)


def _resized(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``t`` at ``h x w``: as it is when it fits, else ComfyUI's bilinear, centre-cropped resize."""
    return t if tuple(t.shape[-2:]) == (h, w) else resize(t, w, h, "bilinear", crop="center")
