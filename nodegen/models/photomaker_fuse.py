"""PhotoMaker's fuse module: it merges a prompt token's embedding with a face's id embedding.

The layers follow TencentARC's PhotoMaker v1 (``photomaker/model.py``, Apache-2.0), as ComfyUI's
``comfy_extras/nodes_photomaker.py`` carries them; the parameter names are the file's
(``fuse_module.mlp1.layernorm.weight``, ...). For a class-word embedding ``p`` and an id embedding
``i`` (both ``D`` wide, 2048 for SDXL)::

    x = mlp1(cat(p, i)) + p          # mlp1: 2D -> D -> D, no residual
    x = mlp2(x)                      # mlp2: D -> D -> D, with a residual
    out = layer_norm(x)

where ``mlp(x) = fc2(gelu(fc1(layernorm(x))))`` (exact GELU).
"""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """LayerNorm, Linear, GELU, Linear; with ``use_residual`` the input is added back."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, use_residual: bool = True) -> None:
        super().__init__()
        if use_residual and in_dim != out_dim:
            raise ValueError(f"a residual MLP needs equal widths, got {in_dim} -> {out_dim}")
        self.layernorm = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim)
        self.use_residual = use_residual
        self.act_fn = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc2(self.act_fn(self.fc1(self.layernorm(x))))
        return out + x if self.use_residual else out


class FuseModule(nn.Module):
    """``D``-wide prompt embeddings and id embeddings ``[N, D]`` -> fused embeddings ``[N, D]``."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.mlp1 = MLP(embed_dim * 2, embed_dim, embed_dim, use_residual=False)
        self.mlp2 = MLP(embed_dim, embed_dim, embed_dim, use_residual=True)
        self.layer_norm = nn.LayerNorm(embed_dim)

    @property
    def embed_dim(self) -> int:
        return int(self.layer_norm.normalized_shape[0])

    def forward(self, prompt_embeds: torch.Tensor, id_embeds: torch.Tensor) -> torch.Tensor:
        x = self.mlp1(torch.cat([prompt_embeds, id_embeds], dim=-1)) + prompt_embeds
        return self.layer_norm(self.mlp2(x))
