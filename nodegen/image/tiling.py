"""Tiled inference with overlap and feathered blending: one tiler for every image-to-image model
(upscalers, VAE decode and encode).

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


def tile_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with at least ``overlap``;
    every start is a multiple of ``align`` (so a model that changes the size by ``1/align`` maps
    each tile to whole output pixels)."""
    if tile <= 0 or tile >= size:
        return [0]
    step = tile - overlap
    if step <= 0:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile size ({tile})")
    starts = [s - s % align for s in range(0, size - tile, step)]
    last = size - tile
    starts.append(last - last % align)
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


def count_tiles(height: int, width: int, tile: int, overlap: int, align: int = 1) -> int:
    return len(tile_starts(height, tile, overlap, align)) * len(tile_starts(width, tile, overlap, align))


def run_tiled(fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, scale: float,
              tile: int, overlap: int, out_channels: int | None = None,
              progress: ProgressFn | None = None, done: int = 0, total: int | None = None,
              ) -> torch.Tensor:
    """Apply ``fn`` ([B,C,h,w] -> [B,C',h*scale,w*scale]) to ``image`` [B,C,H,W] tile by tile.

    ``scale`` may be below 1 (a VAE encoder: 1/8); tiles then start on multiples of ``1/scale``.
    ``tile`` 0 (or a tile larger than the image) runs the whole image at once. ``progress`` is
    called after each tile with ``(done + tiles_so_far, total)``.
    """
    check_tiling(tile, overlap)
    if image.dim() != 4:
        raise ValueError(f"run_tiled expects images [B,C,H,W], got {tuple(image.shape)}")
    B, _, H, W = image.shape
    align = max(1, round(1 / scale)) if scale < 1 else 1
    ys = tile_starts(H, tile, overlap, align)
    xs = tile_starts(W, tile, overlap, align)
    n = len(ys) * len(xs)
    total = total if total is not None else done + n
    if n == 1:
        out = fn(image)
        _check_out(out, image, scale)
        if progress is not None:
            progress(done + 1, total)
        return out
    th, tw = min(tile, H), min(tile, W)
    oh, ow, oth, otw, oov = (_scaled(v, scale) for v in (H, W, th, tw, overlap))
    canvas = None
    weight = torch.zeros((1, 1, oh, ow), dtype=torch.float32, device=image.device)
    k = 0
    for y in ys:
        wy = _ramp(oth, oov, y > 0, y + th < H)
        for x in xs:
            wx = _ramp(otw, oov, x > 0, x + tw < W)
            part = fn(image[:, :, y:y + th, x:x + tw])
            _check_out(part, image[:, :, y:y + th, x:x + tw], scale)
            if canvas is None:
                canvas = torch.zeros((B, part.shape[1], oh, ow), dtype=torch.float32, device=image.device)
            w = (wy[:, None] * wx[None, :]).to(image.device)[None, None]
            ys_, xs_ = _scaled(y, scale), _scaled(x, scale)
            canvas[:, :, ys_:ys_ + oth, xs_:xs_ + otw] += part.float().to(image.device) * w
            weight[:, :, ys_:ys_ + oth, xs_:xs_ + otw] += w
            k += 1
            if progress is not None:
                progress(done + k, total)
    assert canvas is not None
    return canvas / weight.clamp_min(1e-8)


def _scaled(length: int, scale: float) -> int:
    return int(round(length * scale))


def _check_out(out: torch.Tensor, inp: torch.Tensor, scale: float) -> None:
    want = (_scaled(inp.shape[2], scale), _scaled(inp.shape[3], scale))
    if tuple(out.shape[2:]) != want:
        raise RuntimeError(f"the model returned {tuple(out.shape[2:])} for an input of "
                           f"{tuple(inp.shape[2:])}; expected {want} (scale {scale})")
