"""Kohya's Deep Shrink ("hires fix" inside the UNet), as ComfyUI's PatchModelAddDownscale applies
it: while the step's sigma lies between ``start_percent`` and ``end_percent`` of the schedule, the
UNet's features after input block ``block_number`` are scaled down by ``downscale_factor`` (so the
deeper blocks see an image of the size they were trained on), and on the way up each feature map
that does not match its skip connection's height is scaled back to the skip's size.

Input blocks are numbered as in ComfyUI's (the original LDM) UNet: 0 is the first convolution;
then each level's layers (ResNet, with its attention when there is one) and, except on the last
level, its downsampler. For SD1/SD2/SDXL block 3 is the first downsampler. ``downscale_after_skip``
(the default) scales only what goes on, not the skip connection taken at that block; nodegen does
that at downsamplers and the first convolution takes only ``downscale_after_skip = False``
(``layer`` blocks likewise).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from nodegen.diffusion.step_context import current_sigma
from nodegen.image.latent_resize import resize


@dataclass(frozen=True)
class DeepShrink:
    block_number: int
    factor: float
    sigma_start: float  # scale down while sigma_end <= sigma <= sigma_start
    sigma_end: float
    after_skip: bool = True
    downscale_method: str = "bicubic"
    upscale_method: str = "bicubic"


def input_blocks(unet) -> dict[int, tuple]:
    """ComfyUI's input block numbers for a diffusers UNet: ``("conv_in",)``, ``("layer", level, j)``
    or ``("down", level)``."""
    out: dict[int, tuple] = {0: ("conv_in",)}
    n = 0
    for level, block in enumerate(unet.down_blocks):
        for j in range(len(block.resnets)):
            n += 1
            out[n] = ("layer", level, j)
        if getattr(block, "downsamplers", None):
            n += 1
            out[n] = ("down", level)
    return out


def check_block(unet, block_number: int, after_skip: bool) -> tuple:
    """The position of ``block_number``, or a ValueError saying which numbers work."""
    blocks = input_blocks(unet)
    downs = [n for n, pos in blocks.items() if pos[0] == "down"]
    if block_number not in blocks:
        raise ValueError(f"block_number {block_number}: this UNet has input blocks 0-{max(blocks)}")
    pos = blocks[block_number]
    if after_skip and pos[0] != "down":
        raise ValueError(f"block_number {block_number} is not a downsampling block; with downscale_after_skip "
                         f"use one of {', '.join(map(str, downs))} (or turn downscale_after_skip off)")
    return pos


def _layer_end(block, j: int) -> torch.nn.Module:
    attentions = getattr(block, "attentions", None)
    return attentions[j] if attentions else block.resnets[j]


def _replace_first(output, fn):
    """``output`` (a tensor, or a tuple whose first item is one) with ``fn`` applied to that tensor."""
    if torch.is_tensor(output):
        return fn(output)
    return (fn(output[0]), *output[1:])


@contextmanager
def installed(unet, settings: DeepShrink | None) -> Iterator[None]:
    """``unet`` with Deep Shrink while the block is open."""
    if settings is None:
        yield
        return
    pos = check_block(unet, settings.block_number, settings.after_skip)
    s = settings

    def active() -> bool:
        sigma = current_sigma.get()
        return sigma is not None and s.sigma_end <= sigma <= s.sigma_start

    def shrink(h: torch.Tensor) -> torch.Tensor:
        size = (round(h.shape[-1] / s.factor), round(h.shape[-2] / s.factor))
        return resize(h, max(1, size[0]), max(1, size[1]), s.downscale_method).to(h.dtype)

    def fit(h: torch.Tensor, like: tuple) -> torch.Tensor:
        """ComfyUI's output-block patch: scaled to the skip's size when the heights differ."""
        if h.shape[-2] == like[0]:
            return h
        return resize(h, like[1], like[0], s.upscale_method).to(h.dtype)

    handles = []
    if pos[0] == "down":
        def after_down(module, args, output):
            if not active():
                return output
            h, skips = output
            h = shrink(h)
            return h, (skips if s.after_skip else (*skips[:-1], h))
        handles.append(unet.down_blocks[pos[1]].register_forward_hook(after_down))
    else:
        target = unet.conv_in if pos[0] == "conv_in" else _layer_end(unet.down_blocks[pos[1]], pos[2])
        handles.append(target.register_forward_hook(
            lambda module, args, output: _replace_first(output, shrink) if active() else output))

    for block in unet.up_blocks:  # each feature map fitted to the skip it is joined with next
        sizes: list[tuple] = []

        def before_up(module, args, kwargs, sizes=sizes):
            skips = kwargs["res_hidden_states_tuple"]
            sizes[:] = [tuple(t.shape[-2:]) for t in reversed(skips)]
            kwargs["hidden_states"] = fit(kwargs["hidden_states"], sizes[0])
            return args, kwargs
        handles.append(block.register_forward_pre_hook(before_up, with_kwargs=True))
        for j in range(len(block.resnets) - 1):
            handles.append(_layer_end(block, j).register_forward_hook(
                lambda module, args, output, j=j, sizes=sizes: _replace_first(output, lambda h: fit(h, sizes[j + 1]))))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
