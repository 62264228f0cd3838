"""The control input of inpainting ControlNets (Alimama's SD3 and Flux.1 inpainting ControlNets):
the image with the area to repaint blacked out, VAE-encoded, plus one more channel that tells the
ControlNet which part of the latent to keep (1: keep, 0: repaint).

As ComfyUI's ControlNetInpaintingAliMamaApply builds it: the mask is resized to the image (bilinear,
centre-cropped) and rounded, the image multiplied by ``round(1 - mask)``; the "keep" channel is
``1 - mask`` resized to the latent's size (nearest-exact, centre-cropped). diffusers'
``StableDiffusion3ControlNetInpaintingPipeline`` and Alimama's Flux pipeline do the same for a
binary mask (pixels where ``mask > 0.5`` set to black, the mask resized to the latent by nearest
neighbour). Without a mask (an inpainting ControlNet given to plain ControlNetApply) the whole
image is kept: ComfyUI's default "keep" channel of ones.
"""

from __future__ import annotations

import torch

from nodegen.image.latent_resize import resize


class InpaintMaskError(ValueError):
    pass


def as_mask(mask: torch.Tensor, image: torch.Tensor, node: str) -> torch.Tensor:
    """``mask`` as ``[B, 1, H, W]`` in [0, 1]; refused (naming ``node`` and its input 'mask') when it
    is not a MASK, its batch does not fit the image's, or its shape is not the image's shape (another
    aspect ratio would shift the repainted area against the image when it is fitted)."""
    if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 3):
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InpaintMaskError(f"{node}: mask: expected a MASK [B,H,W] or [H,W], got {got}")
    m = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()
    ih, iw = int(image.shape[1]), int(image.shape[2])
    mh, mw = int(m.shape[-2]), int(m.shape[-1])
    if mh * iw != mw * ih:
        raise InpaintMaskError(f"{node}: mask: the mask is {mw}x{mh} but the image is {iw}x{ih}; give a mask "
                               "of the image's size (or at least its aspect ratio), so the area to repaint "
                               "lines up with the image")
    if m.shape[0] not in (1, image.shape[0]):
        raise InpaintMaskError(f"{node}: mask: {m.shape[0]} masks for {image.shape[0]} images; give one mask or "
                               "one per image")
    return m


def masked_image(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """IMAGE ``[B, H, W, C]`` with the area to repaint (``mask`` ``[B, 1, h, w]`` rounded) black."""
    keep = resize(1.0 - mask, int(image.shape[2]), int(image.shape[1]), "bilinear", crop="center").round()
    return image * keep.movedim(1, -1).to(image.dtype)


def keep_channel(keep: torch.Tensor | None, batch: int, h: int, w: int) -> torch.Tensor:
    """The "keep" channel ``[batch, 1, h, w]`` for a latent of ``h x w``; ``keep`` ``[B, 1, H, W]``
    is ``1 - mask`` (None: keep everything)."""
    if keep is None:
        return torch.ones(batch, 1, h, w)
    k = resize(keep.float(), w, h, "nearest-exact", crop="center")
    reps = -(-batch // k.shape[0])
    return k.repeat(reps, 1, 1, 1)[:batch]
