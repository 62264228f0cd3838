"""Reference images for Flux.1 Kontext, as ComfyUI's Flux model takes them (``reference_latents``
in the conditioning, from the ReferenceLatent node) and diffusers' FluxKontextPipeline passes one:
each reference latent, moved into the model's space and packed like the latent, is appended to the
image tokens; its position ids carry an index in the first axis, so the model tells it from the
image being made, and the model's output for those tokens is dropped.

Placement (``reference_latents_method``, FluxKontextMultiReferenceLatentMethod): ``offset`` (the
default) gives every reference index 1 and places each next to the previous ones (to the right
when that keeps the combined area squarer, else below); ``index`` gives the n-th reference index n
at the origin; ``uxo/uno`` (ComfyUI's ``uxo``, after ByteDance's UNO) gives every reference index 0
(the latent's own) and places them diagonally past the latent's bottom-right corner, each past the
previous one.
"""

from __future__ import annotations

import torch

from nodegen.diffusion.latent_formats import latent_in
from nodegen.diffusion.latent_patches import pad_to_patches
from nodegen.image.composite import repeat_to_batch

METHODS = ("offset", "index", "uxo/uno")


def reference_key(extras: dict) -> tuple:
    """What must agree for two conditionings to share one model call: the references' shapes and placement."""
    refs = extras.get("reference_latents") or []
    return tuple(tuple(r.shape[-2:]) for r in refs), extras.get("reference_latents_method", "offset")


def reference_ids(refs: list[torch.Tensor], method: str, device, dtype,
                  latent_size: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Position ids ``[T, 3]`` of the references' tokens (ComfyUI's ``process_img`` with the
    method's index and offsets; sizes and offsets in latent pixels, 2x2 patches). ``latent_size``:
    the latent's own height and width, padded to whole patches (``uxo/uno`` places past it)."""
    if method not in METHODS:
        raise ValueError(f"reference_latents_method {method!r} is not supported; use one of {', '.join(METHODS)}")
    ids, h = [], 0
    w = index = 0
    for ref in refs:
        rh, rw = ref.shape[-2:]
        if method == "index":
            index, h_off, w_off = index + 1, 0, 0
        elif method == "uxo/uno":
            index, h_off, w_off = 0, latent_size[0] + h, latent_size[1] + w
            h, w = h + rh, w + rw
        else:
            index, h_off, w_off = 1, 0, 0
            if rh + h > rw + w:
                w_off = w
            else:
                h_off = h
            h, w = max(h, rh + h_off), max(w, rw + w_off)
        hl, wl = (rh + 1) // 2, (rw + 1) // 2
        grid = torch.zeros(hl, wl, 3)
        grid[..., 0] = index
        grid[..., 1] = torch.arange(hl)[:, None] + (h_off + 1) // 2
        grid[..., 2] = torch.arange(wl)[None, :] + (w_off + 1) // 2
        ids.append(grid.reshape(-1, 3))
    return torch.cat(ids).to(device, dtype)


def reference_tokens(refs: list[torch.Tensor], b: int, pack, device, dtype) -> torch.Tensor:
    """The references' packed tokens ``[b, T, 64]`` (raw latents moved into Flux's space, odd sizes
    padded by repeating the edge, batches repeated to ``b``)."""
    out = []
    for ref in refs:
        r = latent_in("flux", ref.to(device, torch.float32))
        r = pad_to_patches(r)
        out.append(pack(repeat_to_batch(r, b).to(dtype)))
    return torch.cat(out, dim=1)
