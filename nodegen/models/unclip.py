"""SD 2.1 unCLIP checkpoints (Stability's ``sd21-unclip-h`` / ``sd21-unclip-l``): recognise them,
their UNet config, and their embedding noise augmentor.

An unCLIP checkpoint is an SD2 checkpoint (OpenCLIP text encoder under ``cond_stage_model.model.``)
whose UNet has a class-label embedding ``label_emb.0.*`` taking ``[image embedding, noise level
embedding]`` (ComfyUI's ``adm_in_channels``: 2048 for -h, the ViT-H/14 embedding of 1024; 1536 for
-l, ViT-L/14's 768). Besides it the file holds the CLIP image tower under ``embedder.model.visual.*``
(open_clip layout; read by :mod:`nodegen.clip.unclip_vision`; what is left of open_clip's text half
under ``embedder.model.`` is not used) and the noise schedule buffers of ``noise_augmentor.*``. ComfyUI
recomputes the schedule (1000 ``squaredcos_cap_v2`` steps) and uses data mean 0, std 1: the original
model keeps its CLIP statistics as unsaved buffers. This loader does the same, except that a file
which does hold ``noise_augmentor.data_mean`` / ``data_std`` (diffusers' ``image_normalizer`` written
back) has them used.
"""

from __future__ import annotations

import torch

from nodegen.diffusion.unclip import NoiseAugmentor

UNET = "model.diffusion_model."
LABEL_KEY = UNET + "label_emb.0.0.weight"
VISION_PREFIX = "embedder.model.visual."
AUGMENTOR_PREFIX = "noise_augmentor."
EMBEDDER_PREFIX = "embedder."


def is_unclip(shapes: dict, family: str | None) -> bool:
    """Whether a checkpoint's tensors are an SD2 unCLIP model's."""
    return family == "sd2" and LABEL_KEY in shapes


def adm_channels(shapes: dict) -> int:
    """The class label width (twice the image embedding's)."""
    return int(shapes[LABEL_KEY][1])


def unet_config(cfg: dict, shapes: dict) -> dict:
    """``cfg`` (an SD2 UNet config derived from the shapes) with the class-label projection."""
    cfg = {k: v for k, v in cfg.items() if k not in ("addition_embed_type", "addition_time_embed_dim")}
    cfg.update(class_embed_type="projection", projection_class_embeddings_input_dim=adm_channels(shapes))
    return cfg


#: What the image embedder keeps of open_clip's text half (the original code deletes only its
#: transformer), and the noise augmentor's schedule buffers: known, not used.
EMBEDDER_LEFTOVERS = frozenset(EMBEDDER_PREFIX + "model." + k for k in (
    "token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias", "text_projection",
    "logit_scale", "attn_mask"))
AUGMENTOR_BUFFERS = frozenset(AUGMENTOR_PREFIX + k for k in (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod"))
AUGMENTOR_STATS = (AUGMENTOR_PREFIX + "data_mean", AUGMENTOR_PREFIX + "data_std")


def _known(key: str) -> bool:
    return (key.startswith(VISION_PREFIX) or key in EMBEDDER_LEFTOVERS or key in AUGMENTOR_BUFFERS
            or key in AUGMENTOR_STATS)


def take_noise_augmentor(sd, shapes: dict) -> NoiseAugmentor:
    """The noise augmentor of the file. Its known unCLIP entries are taken out of ``sd`` (the image
    tower under ``embedder.model.visual.`` is loaded on its own); any other ``embedder.*`` or
    ``noise_augmentor.*`` tensor stays, for the loader to report as unused."""
    found = {}
    for key in [k for k in list(sd.keys()) if _known(k)]:
        value = sd.pop(key)
        if key in AUGMENTOR_STATS:
            found[key[len(AUGMENTOR_PREFIX):]] = torch.as_tensor(value).float()
    dim = adm_channels(shapes) // 2
    for name, t in found.items():
        if t.numel() != dim:
            raise ValueError(f"noise_augmentor.{name} has {t.numel()} values but the UNet's class label "
                             f"takes {dim}-wide image embeddings")
    return NoiseAugmentor.standard(dim, found.get("data_mean"), found.get("data_std"))
