"""Latent rescaling and diffusers-folder export of the demo model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from tools.demo import configs

MODEL_NAME = "nodegen-demo-shapes"
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / MODEL_NAME


@torch.no_grad()
def rescale_vae_latents(vae, a: float) -> None:
    """Multiply the VAE's latent by ``a`` without changing what it computes.

    The mean rows of ``quant_conv`` are scaled by ``a`` and ``2 ln a`` is added to the logvar
    rows' bias (so the posterior's std scales by ``a`` too); ``post_quant_conv``'s input weights
    are scaled by ``1/a``, so ``decode(a * z) == old_decode(z)``.
    """
    c = vae.config.latent_channels
    q = vae.quant_conv
    q.weight[:c] *= a
    q.bias[:c] *= a
    q.bias[c:] += 2.0 * math.log(a)
    vae.post_quant_conv.weight[:, :c] /= a


def scheduler_config() -> dict:
    """SD1's scheduler_config.json (PNDMScheduler, as the original SD1 repositories ship)."""
    return {"_class_name": "PNDMScheduler", "_diffusers_version": "0.42.0", **configs.SCHEDULER_CONFIG}


def export_folder(vae, text_encoder, unet, dest=None) -> Path:
    """Write fp16 weights as a standard diffusers folder (unet/, vae/, text_encoder/, scheduler/)."""
    dest = Path(dest) if dest else DEFAULT_DIR
    dest.mkdir(parents=True, exist_ok=True)
    for name, model in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
        model.to(torch.float16).save_pretrained(dest / name, safe_serialization=True)
        model.to(torch.float32)
    (dest / "scheduler").mkdir(exist_ok=True)
    (dest / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config(), indent=2) + "\n")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.0",
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": [None, None],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (dest / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return dest


SINGLE_FILE = DEFAULT_DIR.parent / f"{MODEL_NAME}.safetensors"


def export_single_file(vae, text_encoder, unet, dest=None) -> Path:
    """Write the model as one original-layout (LDM) ``.safetensors`` file in fp16: the form users'
    checkpoints come in, loaded by the same loader and nodes."""
    from safetensors.torch import save_file

    from nodegen.models.ldm_export import convert_pipeline_to_ldm

    dest = Path(dest) if dest else SINGLE_FILE
    dest.parent.mkdir(parents=True, exist_ok=True)
    sd = convert_pipeline_to_ldm(unet, vae, text_encoder, "sd1")
    tmp = dest.with_suffix(".tmp")
    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}, str(tmp),
              metadata={"format": "pt", "nodegen.model": MODEL_NAME})
    tmp.replace(dest)
    dest.chmod(0o644)
    return dest
