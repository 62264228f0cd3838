"""Tiled inference for image-to-image models with overlap and feathered blending.

Memory is bounded by the tile size whatever the image size: the model only ever sees one tile
(plus the overlap); the output is accumulated on a canvas the size of the result.

Blending: along every tile edge that lies inside the image (an edge shared with a neighbour),
a tile's weight is 0 for the outer quarter of the overlap, rises linearly over the middle half and
is 1 beyond. Pixels next to a tile's inner edge (where zero padding inside the model makes the
output wrong) therefore never contribute; every pixel keeps a positive total weight because the
neighbouring tile is fully inside its own trusted zone there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: ``progress(done, total)``; it may raise (cancellation) to stop the work.
ProgressFn = Callable[[int, int], None]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with at least ``overlap``."""
    if tile <= 0 or tile >= size:
        return [0]
    step = tile - overlap
    if step <= 0:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile size ({tile})")
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return sorted(set(starts))


def _ramp(length: int, overlap: int, lead: bool, trail: bool) -> torch.Tensor:
    """1-D weights of one tile: feathered on the leading/trailing edge when it has a neighbour."""
    w = torch.ones(length, dtype=torch.float32)
    if overlap <= 0:
        return w
    margin = overlap // 4
    span = max(overlap - 2 * margin, 1)
    d = torch.arange(length, dtype=torch.float32)
    ramp = ((d - margin + 0.5) / span).clamp(0.0, 1.0)
    if lead:
        w = torch.minimum(w, ramp)
    if trail:
        w = torch.minimum(w, ramp.flip(0))
    return w


def check_tiling(tile: int, overlap: int) -> None:
    if tile < 0:
        raise ValueError(f"tile_size must be 0 (no tiling) or positive, got {tile}")
    if overlap < 0:
        raise ValueError(f"overlap must be 0 or more, got {overlap}")
    if tile > 0 and 2 * overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be less than half of tile_size ({tile}); "
                         f"lower overlap or raise tile_size")


def count_tiles(height: int, width: int, tile: int, overlap: int) -> int:
    return len(tile_starts(height, tile, overlap)) * len(tile_starts(width, tile, overlap))


def run_tiled(fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, scale: int,
              tile: int, overlap: int, out_channels: int | None = None,
              progress: ProgressFn | None = None, done: int = 0, total: int | None = None,
              ) -> torch.Tensor:
    """Apply ``fn`` ([1,C,h,w] -> [1,C',h*scale,w*scale]) to ``image`` [1,C,H,W] tile by tile.

    ``tile`` 0 (or a tile larger than the image) runs the whole image at once. ``progress`` is
    called after each tile with ``(done + tiles_so_far, total)``.
    """
    check_tiling(tile, overlap)
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"run_tiled expects one image [1,C,H,W], got {tuple(image.shape)}")
    _, _, H, W = image.shape
    ys = tile_starts(H, tile, overlap)
    xs = tile_starts(W, tile, overlap)
    n = len(ys) * len(xs)
    total = total if total is not None else done + n
    if n == 1:
        out = fn(image)
        _check_out(out, image, scale)
        if progress is not None:
            progress(done + 1, total)
        return out
    th, tw = min(tile, H), min(tile, W)
    canvas = None
    weight = torch.zeros((1, 1, H * scale, W * scale), dtype=torch.float32, device=image.device)
    k = 0
    for y in ys:
        wy = _ramp(th * scale, overlap * scale, y > 0, y + th < H)
        for x in xs:
            wx = _ramp(tw * scale, overlap * scale, x > 0, x + tw < W)
            part = fn(image[:, :, y:y + th, x:x + tw])
            _check_out(part, image[:, :, y:y + th, x:x + tw], scale)
            if canvas is None:
                canvas = torch.zeros((1, part.shape[1], H * scale, W * scale), dtype=torch.float32,
                                     device=image.device)
            w = (wy[:, None] * wx[None, :]).to(image.device)[None, None]
            ys_, xs_ = y * scale, x * scale
            canvas[:, :, ys_:ys_ + th * scale, xs_:xs_ + tw * scale] += part.float().to(image.device) * w
            weight[:, :, ys_:ys_ + th * scale, xs_:xs_ + tw * scale] += w
            k += 1
            if progress is not None:
                progress(done + k, total)
    assert canvas is not None
    return canvas / weight.clamp_min(1e-8)


def _check_out(out: torch.Tensor, inp: torch.Tensor, scale: int) -> None:
    want = (inp.shape[2] * scale, inp.shape[3] * scale)
    if tuple(out.shape[2:]) != want:
        raise RuntimeError(f"the model returned {tuple(out.shape[2:])} for an input of "
                           f"{tuple(inp.shape[2:])}; expected {want} (scale {scale})")
