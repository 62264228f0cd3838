"""unCLIP image conditioning: a CLIP image embedding given to the UNet as its class label.

Stability's SD 2.1 unCLIP models (``sd21-unclip-h`` / ``-l``) add a CLIP image embedding to the
timestep embedding through the UNet's ``label_emb`` (diffusers: ``class_embed_type="projection"``,
``class_labels``). The embedding is noise-augmented first, as ComfyUI's ``unclip_adm`` with its
``CLIPEmbeddingNoiseAugmentation`` and diffusers' ``StableUnCLIPImg2ImgPipeline.noise_image_embeddings``
do: normalised by the data mean / std, noised to level ``round(999 * noise_augmentation)`` on a
1000-step ``squaredcos_cap_v2`` schedule, un-normalised, and followed by the sinusoidal embedding of
that noise level (cos first). One entry (``unCLIPConditioning``) gives ``[embedding, level] * strength``;
several (chained nodes, or a batch of images in one output) are summed and the summed embedding is
noised once more at the merge level (ComfyUI's 0.05). A conditioning without unCLIP entries gives zeros
(ComfyUI's SD21UNCLIP; diffusers' unconditional branch).

The augmentation noise is drawn from ``seed - 10`` (``seed``: the sampler's), as ComfyUI draws it;
ComfyUI draws the merge step's noise from the global generator, this module from the same seed (so a
run is reproducible).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import torch

#: ComfyUI's default noise level of the merged embedding when several unCLIP entries meet.
MERGE_NOISE_AUGMENTATION = 0.05
#: The key of a CondItem's extras that holds its unCLIP entries (ComfyUI's name).
EXTRAS_KEY = "unclip_conditioning"


@cache  # read only (NoiseAugmentor indexes it); built in a Python loop of 1000 steps
def squaredcos_alphas_cumprod(steps: int = 1000, max_beta: float = 0.999) -> torch.Tensor:
    """The cumulative alphas of the ``squaredcos_cap_v2`` (cosine) schedule, float64."""
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)]
    return torch.cumprod(1.0 - torch.tensor(betas, dtype=torch.float64), 0)


def timestep_embedding(level: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of integer levels, cosines first (ComfyUI's
    ``timestep_embedding``; diffusers' with ``flip_sin_to_cos=True, downscale_freq_shift=0``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = level.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


@dataclass
class NoiseAugmentor:
    """An unCLIP model's embedding noise augmentation (``noise_augmentor`` in the checkpoints)."""

    data_mean: torch.Tensor  # [1, dim]
    data_std: torch.Tensor  # [1, dim]
    alphas_cumprod: torch.Tensor  # [max_noise_level], float64
    max_noise_level: int = 1000

    @classmethod
    def standard(cls, dim: int, data_mean: torch.Tensor | None = None,
                 data_std: torch.Tensor | None = None) -> NoiseAugmentor:
        mean = torch.zeros(1, dim) if data_mean is None else data_mean.float().reshape(1, dim)
        std = torch.ones(1, dim) if data_std is None else data_std.float().reshape(1, dim)
        return cls(mean, std, squaredcos_alphas_cumprod(1000))

    @property
    def dim(self) -> int:
        return int(self.data_mean.shape[-1])

    def level(self, noise_augmentation: float) -> int:
        return round((self.max_noise_level - 1) * float(noise_augmentation))

    def __call__(self, embeds: torch.Tensor, level: int, seed: int) -> torch.Tensor:
        """``[noised embedding, level embedding]`` ``[B, 2 * dim]`` of ``embeds`` ``[B, dim]``."""
        x = (embeds.float() - self.data_mean) / self.data_std
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(int(seed)))
        a = self.alphas_cumprod[level]
        z = a.sqrt().float() * x + (1 - a).sqrt().float() * noise
        z = z * self.data_std + self.data_mean
        return torch.cat([z, timestep_embedding(torch.full((x.shape[0],), level), self.dim)], dim=1)


def unclip_adm(entries: list[dict], augmentor: NoiseAugmentor, seed: int,
               merge: float = MERGE_NOISE_AUGMENTATION) -> torch.Tensor:
    """The class label ``[1, 2 * dim]`` of a conditioning's unCLIP ``entries`` (dicts with
    ``clip_vision_output``, ``strength``, ``noise_augmentation``), as ComfyUI's ``unclip_adm``;
    ``seed`` is the sampler's (the noise comes from ``seed - 10``)."""
    seed = int(seed) - 10
    outs = []
    for entry in entries:
        for row in entry["clip_vision_output"].image_embeds:
            level = augmentor.level(entry["noise_augmentation"])
            outs.append(augmentor(row.reshape(1, -1), level, seed) * float(entry["strength"]))
    if len(outs) == 1:
        return outs[0]
    total = torch.stack(outs).sum(0)
    return augmentor(total[:, : augmentor.dim], augmentor.level(merge), seed)


#: The MODEL option that holds an unCLIP model's :class:`NoiseAugmentor` (set by the loader).
MODEL_OPTION = "unclip_noise_augmentor"


def augmentor_of(model) -> NoiseAugmentor | None:
    return (getattr(model, "options", None) or {}).get(MODEL_OPTION)


def class_labels(model, items: list, batch: int, seed: int, device, dtype) -> torch.Tensor | None:
    """The UNet's ``class_labels`` for the conditioning ``items`` of one call (each repeated to
    ``batch``), or None for a model without unCLIP conditioning. Raises when an item carries unCLIP
    entries the model cannot take."""
    augmentor = augmentor_of(model)
    if augmentor is None:
        if getattr(model, "family", None) in SDXL_FAMILIES:
            return None  # their image prompts go in as the pooled output: sdxl_pooled
        if any(it.extras.get(EXTRAS_KEY) for it in items):
            raise ValueError(f"unCLIPConditioning: input 'clip_vision_output' needs an unCLIP model "
                             f"(sd21-unclip-h / -l loaded with unCLIPCheckpointLoader or CheckpointLoaderSimple); "
                             f"this model is {getattr(model, 'family', 'unknown')} without unCLIP conditioning")
        return None
    labels = []
    for item in items:
        entries = item.extras.get(EXTRAS_KEY) or []
        _check_widths(entries, augmentor.dim, "this unCLIP model")
        adm = unclip_adm(entries, augmentor, seed) if entries else torch.zeros(1, 2 * augmentor.dim)
        labels.append(adm.expand(batch, -1))
    return torch.cat(labels).to(device, dtype)


def _check_widths(entries: list[dict], dim: int, what: str) -> None:
    for entry in entries:
        width = int(entry["clip_vision_output"].image_embeds.shape[-1])
        if width != dim:
            raise ValueError(f"unCLIPConditioning: input 'clip_vision_output' holds {width}-wide image embeddings, "
                             f"but {what} takes {dim}-wide ones (use the matching CLIP vision: an unCLIP "
                             "checkpoint's own from unCLIPCheckpointLoader; CLIP-G for SDXL)")


SDXL_FAMILIES = ("sdxl", "sdxl_refiner")


def sdxl_pooled(extras: dict, seed: int, width: int) -> torch.Tensor | None:
    """SDXL "revision": a conditioning's unCLIP entries replace its pooled text output (``[1, width]``),
    as ComfyUI's ``sdxl_pooled``: the noise-augmented image embedding (data mean 0, std 1) times the
    strength, without the level embedding. None when ``extras`` has no unCLIP entries."""
    entries = extras.get(EXTRAS_KEY)
    if not entries:
        return None
    _check_widths(entries, width, "this SDXL model's pooled input")
    return unclip_adm(entries, NoiseAugmentor.standard(width), seed)[:, :width]
