"""A tiny SD 2.1 unCLIP checkpoint (random weights, real architecture) in the LDM single-file layout
Stability's ``sd21-unclip-h`` uses, and diffusers' ``StableUnCLIPImg2ImgPipeline`` over the same
components (the oracle).

The file holds: the UNet with a class-label projection (``label_emb.0.*``, input 2 x the image
embedding width), the SD2 OpenCLIP text encoder (with its unused 24th-style extra layer and
projection), the VAE, the CLIP image tower under ``embedder.model.visual.*`` (open_clip layout) plus what the
real files keep of the text half (``embedder.model.token_embedding``, ``ln_final``, ...), the noise
schedule buffers of ``noise_augmentor.*`` and non-trivial ``noise_augmentor.data_mean`` / ``data_std``
(diffusers' ``image_normalizer``), so the normalisation is exercised.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import torch

from tests.support.clip_fixtures import tiny_clip, to_open_clip, vision_only
from tests.support.fixtures import SD_SCHEDULER, VAE_CONFIG, _randomize_, clip_config

EMBED = 32  # the image embedding width (ViT-H: 1024)
_CACHE: dict[str, SimpleNamespace] = {}
_LOCK = threading.Lock()


def _noise_schedule_buffers(mean: torch.Tensor, std: torch.Tensor) -> dict[str, torch.Tensor]:
    from nodegen.diffusion.unclip import squaredcos_alphas_cumprod

    ac = squaredcos_alphas_cumprod(1000)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    bufs = {"betas": 1 - ac / prev, "alphas_cumprod": ac, "alphas_cumprod_prev": prev,
            "sqrt_alphas_cumprod": ac.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - ac).sqrt(),
            "log_one_minus_alphas_cumprod": (1 - ac).log(), "sqrt_recip_alphas_cumprod": (1 / ac).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1 / ac - 1).sqrt()}
    out = {f"noise_augmentor.{k}": v.float() for k, v in bufs.items()}
    out["noise_augmentor.data_mean"] = mean.reshape(1, -1).clone()
    out["noise_augmentor.data_std"] = std.reshape(1, -1).clone()
    return out


def _build(root: Path) -> SimpleNamespace:
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )
    from safetensors.torch import save_file
    from transformers import (
        CLIPImageProcessor,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    from nodegen.models.clip_tokenizer import load_clip_tokenizer
    from nodegen.models.ldm_export import convert_pipeline_to_ldm, open_clip_to_ldm

    torch.manual_seed(40)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(64, 128), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=64,
        attention_head_dim=(1, 2), use_linear_projection=True, upcast_attention=True, norm_num_groups=32,
        class_embed_type="projection", projection_class_embeddings_input_dim=2 * EMBED)
    with torch.no_grad():  # a class label strong enough to move the image visibly
        unet.class_embedding.linear_1.weight.mul_(20)
    torch.manual_seed(41)
    vae = AutoencoderKL(**VAE_CONFIG, scaling_factor=0.18215)
    torch.manual_seed(42)
    te = CLIPTextModel(clip_config(64, act="gelu"))
    torch.manual_seed(43)
    extra = CLIPTextModel(clip_config(64, layers=1, act="gelu"))
    extra_layer = {k.split(".", 4)[-1]: v for k, v in
                   open_clip_to_ldm(extra.state_dict(), "x.").items() if ".resblocks.0." in k}
    for m in (unet, vae, te):
        _randomize_(m, 44)
        m.eval()
    clip = tiny_clip(seed=45, width=64, vision_width=64, image_size=32, patch=8, layers=2, dim=EMBED)
    vcfg = CLIPVisionConfig(**{k: getattr(clip.config.vision_config, k) for k in (
        "image_size", "patch_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "hidden_act")}, projection_dim=EMBED)
    image_encoder = CLIPVisionModelWithProjection(vcfg).eval()
    image_encoder.load_state_dict(vision_only(clip), strict=False)
    g = torch.Generator().manual_seed(46)
    mean, std = torch.randn(1, EMBED, generator=g) * 0.1, 0.5 + torch.rand(1, EMBED, generator=g)
    normalizer = StableUnCLIPImageNormalizer(embedding_dim=EMBED)
    with torch.no_grad():
        normalizer.mean.copy_(mean)
        normalizer.std.copy_(std)

    sd = convert_pipeline_to_ldm(unet, vae, te, "sd2", extra_text_layer=extra_layer)
    sd["cond_stage_model.model.text_projection"] = torch.randn(64, 64, generator=g)
    oc = to_open_clip(clip)
    # the image embedder is open_clip's CLIP without the text transformer (the original code deletes it)
    sd.update({"embedder.model." + k: v for k, v in oc.items() if not k.startswith("transformer.")})
    sd.update(_noise_schedule_buffers(mean, std))
    sd = {k: v.contiguous() for k, v in sd.items()}
    path = root / "tiny-sd21-unclip-h.safetensors"
    save_file(sd, str(path))

    tok = load_clip_tokenizer(pad_token="!")
    sched = DDIMScheduler(**SD_SCHEDULER, prediction_type="v_prediction")
    noising = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")

    def pipeline():
        from diffusers import StableUnCLIPImg2ImgPipeline

        return StableUnCLIPImg2ImgPipeline(
            feature_extractor=CLIPImageProcessor(), image_encoder=image_encoder, image_normalizer=normalizer,
            image_noising_scheduler=noising, tokenizer=tok, text_encoder=te, unet=unet, scheduler=sched, vae=vae)

    return SimpleNamespace(single_file=path, state_dict=sd, unet=unet, vae=vae, text_encoder=te, tokenizer=tok,
                           image_encoder=image_encoder, normalizer=normalizer, scheduler=sched,
                           data_mean=mean, data_std=std, pipeline=pipeline)


def unclip_fixture(tmp) -> SimpleNamespace:
    """The tiny unCLIP checkpoint and its oracle pipeline, built on first use (``tmp``: a folder)."""
    with _LOCK:
        if "unclip" not in _CACHE:
            torch.set_num_threads(1)
            Path(tmp).mkdir(parents=True, exist_ok=True)
            _CACHE["unclip"] = _build(Path(tmp))
        return _CACHE["unclip"]
