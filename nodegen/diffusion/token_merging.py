"""Token Merging for Stable Diffusion (Bolya & Hoffman 2023, "Token Merging for Fast Stable
Diffusion", arXiv:2303.17604; the ``tomesd`` package), as ComfyUI's TomePatchModel applies it
(comfy_extras/nodes_tomesd.py).

ComfyUI's variant, which nodegen follows:

* only the self-attentions (``attn1``) that see the latent at full resolution act (the first UNet
  level: ComfyUI's ``downsample <= 1`` rule); SDXL has no attention there, so nothing changes for it;
* the **queries** are merged (their similarity measure is the normed hidden states, the queries'
  input), keys and values keep every token; the attention output is unmerged after ``to_out``
  (each merged-away token gets its destination's output);
* the destinations: one token per 2x2 cell of the latent grid, chosen at random
  (``torch.randint`` on torch's global generator in ComfyUI; here the run's patch generator,
  :data:`nodegen.diffusion.step_context.patch_generator`, which stands in for it), the rest are
  sources; the ``int(tokens * ratio)`` sources most similar (cosine) to their best destination are
  averaged into it.

``ratio`` 0 changes nothing and draws nothing. The destinations are drawn on the CPU, so a seed
gives the same image on every device: ComfyUI's on the CPU (on a GPU ComfyUI draws them from the
GPU's generator instead). ``merge`` and ``unmerge`` equal ``tomesd``'s
``bipartite_soft_matching_random2d`` given the same generator (checked bit for bit).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Fn = Callable[[torch.Tensor], torch.Tensor]


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def destination_order(w: int, h: int, sx: int, sy: int, generator: torch.Generator,
                      device: torch.device) -> torch.Tensor:
    """``[1, h*w, 1]`` token indices, destinations (one random token per ``sy x sx`` cell) first,
    then the sources (tokens outside whole cells are sources)."""
    hsy, wsx = h // sy, w // sx
    pick = torch.randint(sy * sx, size=(hsy, wsx, 1), generator=generator).to(device)
    cells = torch.zeros(hsy, wsx, sy * sx, device=device, dtype=torch.int64)
    cells.scatter_(dim=2, index=pick, src=-torch.ones_like(pick))
    marks = cells.view(hsy, wsx, sy, sx).transpose(1, 2).reshape(hsy * sy, wsx * sx)
    if hsy * sy < h or wsx * sx < w:
        grid = torch.zeros(h, w, device=device, dtype=torch.int64)
        grid[: hsy * sy, : wsx * sx] = marks
        marks = grid
    return marks.reshape(1, -1, 1).argsort(dim=1)  # the -1 marks (destinations) sort first


def bipartite_soft_matching(metric: torch.Tensor, w: int, h: int, sx: int, sy: int, r: int,
                            generator: torch.Generator) -> tuple[Fn, Fn]:
    """``(merge, unmerge)`` for tokens ``metric`` ``[B, h*w, C]``: ``merge`` averages ``r`` source
    tokens into their most similar destination (``[B, N, C] -> [B, N - r, C]``: the unmerged sources,
    then the destinations); ``unmerge`` gives every token its destination's value back."""
    batch, tokens, _ = metric.shape
    if r <= 0 or w == 1 or h == 1:
        return _same, _same
    with torch.no_grad():
        order = destination_order(w, h, sx, sy, generator, metric.device)
        n_dst = (h // sy) * (w // sx)
        src_idx, dst_idx = order[:, n_dst:, :], order[:, :n_dst, :]

        def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            c = x.shape[-1]
            return (torch.gather(x, 1, src_idx.expand(batch, tokens - n_dst, c)),
                    torch.gather(x, 1, dst_idx.expand(batch, n_dst, c)))

        a, b = split(metric / metric.norm(dim=-1, keepdim=True))
        scores = a @ b.transpose(-1, -2)
        r = min(a.shape[1], r)
        best, best_dst = scores.max(dim=-1)
        ranked = best.argsort(dim=-1, descending=True)[..., None]
        kept, merged = ranked[..., r:, :], ranked[..., :r, :]
        target = torch.gather(best_dst[..., None], dim=-2, index=merged)

    def merge(x: torch.Tensor) -> torch.Tensor:
        src, dst = split(x)
        n, t, c = src.shape
        unmerged = torch.gather(src, -2, kept.expand(n, t - r, c))
        moved = torch.gather(src, -2, merged.expand(n, r, c))
        dst = dst.scatter_reduce(-2, target.expand(n, r, c), moved, reduce="mean")
        return torch.cat([unmerged, dst], dim=1)

    def unmerge(x: torch.Tensor) -> torch.Tensor:
        n_kept = kept.shape[1]
        unmerged, dst = x[..., :n_kept, :], x[..., n_kept:, :]
        c = unmerged.shape[-1]
        moved = torch.gather(dst, -2, target.expand(batch, r, c))
        out = torch.zeros(batch, tokens, c, device=x.device, dtype=x.dtype)
        src_of = src_idx.expand(batch, src_idx.shape[1], 1)
        out.scatter_(-2, dst_idx.expand(batch, n_dst, c), dst)
        out.scatter_(-2, torch.gather(src_of, 1, kept).expand(batch, n_kept, c), unmerged)
        out.scatter_(-2, torch.gather(src_of, 1, merged).expand(batch, r, c), moved)
        return out

    return merge, unmerge


@dataclass(frozen=True)
class TokenMerging:
    """A MODEL's ``self_attention_patches`` entry (see :mod:`nodegen.diffusion.self_attention_patches`)."""

    ratio: float

    def functions(self, q: torch.Tensor, latent_hw: tuple[int, int], generator: torch.Generator) -> tuple[Fn, Fn]:
        """ComfyUI's ``get_functions``: merging only where the tokens are the latent's own grid."""
        h0, w0 = latent_hw
        downsample = int(math.ceil(math.sqrt((h0 * w0) // q.shape[1])))
        if downsample > 1:
            return _same, _same
        w, h = int(math.ceil(w0 / downsample)), int(math.ceil(h0 / downsample))
        return bipartite_soft_matching(q, w, h, 2, 2, int(q.shape[1] * self.ratio), generator)

    def before(self, q: torch.Tensor, kv: torch.Tensor, latent_hw: tuple[int, int],
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, Fn | None]:
        merge, unmerge = self.functions(q, latent_hw, generator)
        return (q, kv, None) if merge is _same else (merge(q), kv, unmerge)
