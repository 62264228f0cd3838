"""Join several images, masks or latents into one batch, as ComfyUI's BatchImagesNode,
BatchMasksNode and BatchLatentsNode do (comfy_extras/nodes_post_processing.py ``batch_images``,
``batch_masks``, ``batch_latents``): every item after the first is resized to the first's size
(bilinear, cut to its aspect ratio around the centre first); images of 3 channels get an opaque
alpha channel when another has 4; a latent batch keeps the first latent's other entries and joins
the ``batch_index`` lists (a latent without one counts 0, 1, ... by itself).
"""

from __future__ import annotations

import torch

from nodegen.image.latent_resize import resize


def _fit(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B,C,h,w]`` resized to ``height`` x ``width`` as ComfyUI's common_upscale(bilinear, center)."""
    return t if tuple(t.shape[-2:]) == (height, width) else resize(t, width, height, "bilinear", crop="center")


def batch_images(images: list[torch.Tensor]) -> torch.Tensor:
    channels = max(int(i.shape[-1]) for i in images)
    padded = [torch.nn.functional.pad(i, (0, 1), value=1.0) if i.shape[-1] < channels else i for i in images]
    _, height, width, _ = padded[0].shape
    fitted = [_fit(i.movedim(-1, 1), height, width).movedim(1, -1) for i in padded]
    return torch.cat([f.to(padded[0]) for f in fitted], dim=0)


def batch_masks(masks: list[torch.Tensor]) -> torch.Tensor:
    masks = [m if m.ndim == 3 else m.reshape(-1, *m.shape[-2:]) for m in masks]
    _, height, width = masks[0].shape
    return torch.cat([_fit(m.unsqueeze(1), height, width).squeeze(1).to(masks[0]) for m in masks], dim=0)


def batch_latents(latents: list[dict]) -> dict:
    first = latents[0]["samples"]
    out = dict(latents[0])
    index: list[int] = []
    samples = []
    for latent in latents:
        s = latent["samples"]
        samples.append(_fit(s, *first.shape[-2:]).to(first) if s.shape[1:] != first.shape[1:] else s)
        index.extend(latent.get("batch_index", list(range(s.shape[0]))))
    out["samples"] = torch.cat(samples, dim=0)
    out["batch_index"] = index
    return out
