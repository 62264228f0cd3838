"""HyperTile (tfernd, https://github.com/tfernd/HyperTile), as ComfyUI's HyperTile node applies it
(comfy_extras/nodes_hypertile.py): the self-attentions (``attn1``) at the chosen depths attend within
tiles, which makes large images cheaper.

ComfyUI's rule, which nodegen follows:

* depth ``i`` (0 .. ``max_depth``) is the UNet level whose tokens number ``(H / 2**i) * (W / 2**i)``
  for a latent ``H x W``; other self-attentions are left alone (SDXL has no attention at depth 0);
* the token grid is taken as ``h, w = round(sqrt(N * W/H)), round(sqrt(N * H/W))`` (for a latent
  that is not square this is the grid transposed; ComfyUI does the same);
* the tile counts: ``nh`` from the smallest divisors of ``h`` that are at least the tile side
  (``max(32, tile_size) // 8`` latent pixels, times ``2**i`` with ``scale_depth``): ``h // d`` for
  the first of them, or with ``swap_size`` > 2 one of the first ``swap_size`` drawn by
  ``torch.randint(0, n - 1)`` (ComfyUI draws from torch's global generator; here the run's patch
  generator, :data:`nodegen.diffusion.step_context.patch_generator`, which stands in for it);
  the same for ``nw`` from ``w``;
* the **queries** are cut into the ``nh x nw`` tiles and put in the batch; keys and values are left
  as they are, so ComfyUI's attention (which splits every input by the queries' batch) gives tile
  ``k`` of an image the ``k``-th run of ``N / (nh * nw)`` consecutive tokens as keys and values;
  nodegen computes exactly that (see :mod:`nodegen.diffusion.self_attention_patches`); the output
  tiles are put back in place.

A tile as large as the grid (``tile_size`` at least the image size) leaves every attention as it
is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


def random_divisor(value: int, min_value: int, max_options: int, generator: torch.Generator) -> int:
    """``value // d`` for one of the ``max_options`` smallest divisors ``d >= min_value`` of
    ``value`` (the first one unless a draw picks another)."""
    min_value = min(min_value, value)
    options = [value // d for d in range(min_value, value + 1) if value % d == 0][:max_options]
    if len(options) > 1:
        return options[int(torch.randint(0, len(options) - 1, (1,), generator=generator).item())]
    return options[0]


def grid_of(tokens: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """ComfyUI's ``(h, w)`` for ``tokens`` of a latent ``(H, W)``."""
    aspect = latent_hw[1] / latent_hw[0]
    return round(math.sqrt(tokens * aspect)), round(math.sqrt(tokens / aspect))


def to_tiles(x: torch.Tensor, nh: int, nw: int, h: int, w: int) -> torch.Tensor:
    """``[B, h*w, C] -> [B*nh*nw, (h/nh)*(w/nw), C]``: the tiles of each image, row by row."""
    b, _, c = x.shape
    return (x.reshape(b, nh, h // nh, nw, w // nw, c).permute(0, 1, 3, 2, 4, 5)
            .reshape(b * nh * nw, (h // nh) * (w // nw), c))


def from_tiles(x: torch.Tensor, nh: int, nw: int, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`to_tiles`."""
    c = x.shape[-1]
    return (x.reshape(-1, nh, nw, h // nh, w // nw, c).permute(0, 1, 3, 2, 4, 5)
            .reshape(-1, h * w, c))


@dataclass(frozen=True)
class HyperTile:
    """A MODEL's ``self_attention_patches`` entry (see :mod:`nodegen.diffusion.self_attention_patches`)."""

    tile_size: int = 256
    swap_size: int = 2
    max_depth: int = 0
    scale_depth: bool = False

    def depth_of(self, tokens: int, latent_hw: tuple[int, int]) -> int | None:
        sizes = [(latent_hw[0] / 2**i) * (latent_hw[1] / 2**i) for i in range(self.max_depth + 1)]
        return sizes.index(tokens) if tokens in sizes else None

    def before(self, q: torch.Tensor, kv: torch.Tensor, latent_hw: tuple[int, int],
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, Callable | None]:
        depth = self.depth_of(q.shape[1], latent_hw)
        if depth is None:
            return q, kv, None
        h, w = grid_of(q.shape[1], latent_hw)
        side = (max(32, self.tile_size) // 8) * (2**depth if self.scale_depth else 1)
        nh = random_divisor(h, side, self.swap_size, generator)
        nw = random_divisor(w, side, self.swap_size, generator)
        if nh * nw <= 1:
            return q, kv, None
        return to_tiles(q, nh, nw, h, w), kv, lambda out: from_tiles(out, nh, nw, h, w)
