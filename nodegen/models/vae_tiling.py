"""Tiled VAE encode/decode: run the VAE on overlapping tiles and blend them with linear
ramps in the overlaps (weights normalised), so large images fit in memory."""

from __future__ import annotations

from collections.abc import Callable

import torch


def _positions(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    pos = list(range(0, length - tile, stride))
    pos.append(length - tile)
    return sorted(set(pos))


def _ramp(n: int, overlap: int, device) -> torch.Tensor:
    i = torch.arange(n, device=device, dtype=torch.float32)
    if overlap <= 0:
        return torch.ones(n, device=device)
    up = (i + 1) / (overlap + 1)
    down = (n - i) / (overlap + 1)
    return torch.clamp(torch.minimum(up, down), max=1.0)


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int, *,
          scale: float, channels_last: bool) -> torch.Tensor:
    """Apply ``fn`` tile by tile. ``x`` is ``[B,H,W,C]`` when ``channels_last`` (the result is
    then ``[B,C',h,w]``), else ``[B,C,h,w]`` (the result ``[B,H,W,C']``); ``scale`` is the
    output size over the input size."""
    if overlap >= tile:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile size {tile}")
    H, W = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
    if H <= tile and W <= tile:
        return fn(x)
    stride = tile - overlap
    out = None
    wsum = None
    o_ov = int(round(overlap * scale))
    for y in _positions(H, tile, stride):
        for x0 in _positions(W, tile, stride):
            part = x[:, y : y + tile, x0 : x0 + tile] if channels_last else x[:, :, y : y + tile, x0 : x0 + tile]
            r = fn(part)
            if not channels_last:  # result is [B,H,W,C]: to channels-first for blending
                r = r.permute(0, 3, 1, 2)
            r = r.float()
            if out is None:
                oh, ow = int(round(H * scale)), int(round(W * scale))
                out = torch.zeros(r.shape[0], r.shape[1], oh, ow, device=r.device)
                wsum = torch.zeros(1, 1, oh, ow, device=r.device)
            rh, rw = r.shape[2], r.shape[3]
            oy, ox = int(round(y * scale)), int(round(x0 * scale))
            m = _ramp(rh, o_ov, r.device)[:, None] * _ramp(rw, o_ov, r.device)[None, :]
            out[:, :, oy : oy + rh, ox : ox + rw] += r * m
            wsum[:, :, oy : oy + rh, ox : ox + rw] += m
    res = out / wsum
    return res if channels_last else res.permute(0, 2, 3, 1).contiguous()
